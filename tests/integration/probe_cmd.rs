//! `vigil probe` against what the kernel-caps tests establish for the running kernel: the
//! committed matrix column (tests/kernel-matrix/capabilities.toml) and kernel_caps' own
//! bpf(2) probes, which share no code with the agent's.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

use crate::harness::vigil_bin;
use crate::kernel_caps;

fn vigil_probe(args: &[&str]) -> String {
    let out = Command::new(vigil_bin())
        .arg("probe")
        .args(args)
        .output()
        .expect("run vigil probe");
    assert!(
        out.status.success(),
        "vigil probe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs on the host and in the kernel-matrix guests (`portable_`): every mechanism of the
/// matrix is a row of `vigil probe -o json`, present exactly where the running kernel's
/// column says so and where kernel_caps' probe finds it; absent rows say why.
#[test]
fn portable_probe_agrees_with_capability_matrix() {
    let report: Value = serde_json::from_str(&vigil_probe(&["-o", "json"])).expect("json");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(report["kernel"]["release"], release.trim());
    let rows: BTreeMap<&str, &Value> = report["features"]
        .as_array()
        .expect("features array")
        .iter()
        .map(|r| (r["name"].as_str().expect("row name"), r))
        .collect();
    let matrix = kernel_caps::matrix();
    let column = kernel_caps::current_column();
    let mut wrong = Vec::new();
    for (name, mech) in &matrix.mechanisms {
        let Some(row) = rows.get(name.as_str()) else {
            wrong.push(format!("{name}: no row in vigil probe"));
            continue;
        };
        let expected = mech.present[&column];
        let probed = kernel_caps::probe(name);
        let reported = row["present"].as_bool().expect("present is a boolean");
        eprintln!(
            "probe_cmd: {column}: {name}: matrix {expected}, kernel_caps {probed:?}, vigil probe {row}"
        );
        if reported != expected || reported != probed.is_ok() {
            wrong.push(format!(
                "{name}: vigil probe says {reported}, matrix {expected}, kernel_caps probe {probed:?}"
            ));
        }
        if !reported {
            let reason = row["reason"].as_str().unwrap_or_default();
            if reason.len() < 10 {
                wrong.push(format!("{name}: absent without a reason: {row}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "vigil probe disagrees on {column} (kernel {}):\n{}",
        release.trim(),
        wrong.join("\n")
    );
    // Tetragon's row names are there for tetra users.
    let tetra: Vec<&str> = rows
        .values()
        .filter_map(|r| r["tetragon"].as_str())
        .collect();
    for name in [
        "override_return",
        "kprobe_multi",
        "fmodret",
        "signal",
        "large",
        "lsm",
    ] {
        assert!(
            tetra.contains(&name),
            "no row carries tetra's {name}: {tetra:?}"
        );
    }

    // The table: a line per row, absent ones with their reason.
    let text = vigil_probe(&[]);
    for (name, row) in &rows {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no table line for {name}:\n{text}"));
        match row["reason"].as_str() {
            Some(reason) => assert!(
                line.contains("absent") && line.contains(reason),
                "{name}: {line}"
            ),
            None => assert!(line.contains("present"), "{name}: {line}"),
        }
    }
}
