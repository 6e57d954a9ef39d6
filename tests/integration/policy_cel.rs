//! `CelExpr` matchArgs (issue 19): the integer subset filters in the kernel as the engine's
//! comparisons; the rest is refused alike by `validate`, `add` and `--tracing-policy`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Agent, kprobes, pid_of, run, scratch_dir, serial, vigil_bin, write_policy};

const WAIT: Duration = Duration::from_secs(15);

fn lseek_policy(name: &str, dd: &Path, expr: &str) -> String {
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: {name}
spec:
  kprobes:
  - call: "sys_lseek"
    syscall: true
    args:
    - index: 0
      type: "int"
    - index: 1
      type: "long"
    - index: 2
      type: "int"
    selectors:
    - matchArgs:
      - args: [1]
        operator: "CelExpr"
        values:
        - "{expr}"
      matchBinaries:
      - operator: "In"
        values: ["{}"]
"#,
        dd.display()
    )
}

/// `dd skip=N` seeks its input to N (lseek(0, N, SEEK_CUR)); returns dd's pid.
fn seek(dd: &Path, file: &Path, offset: u32) -> u32 {
    run(Command::new(dd)
        .arg(format!("if={}", file.display()))
        .args(["of=/dev/null", "bs=1", "count=1", "status=none"])
        .arg(format!("skip={offset}")))
}

#[test]
fn cel_expr_integer_comparisons_filter_in_the_kernel() {
    let _g = serial();
    let dir = scratch_dir("policy-cel-files");
    let dd = dir.join("cel-dd");
    std::fs::copy("/usr/bin/dd", &dd).unwrap();
    let data = dir.join("data");
    std::fs::write(&data, vec![b'x'; 400]).unwrap();
    let policy = write_policy(
        &dir,
        "cel-lseek",
        &lseek_policy("cel-lseek", &dd, "arg0 > 100 && arg0 <= 199"),
    );
    let agent = Agent::start("policy-cel", &["--tracing-policy", &policy]);
    let offsets = [50, 100, 101, 150, 200, 250];
    let pids: Vec<(u32, u32)> = offsets.iter().map(|&o| (o, seek(&dd, &data, o))).collect();
    let sentinel = seek(&dd, &data, 199);
    let events = agent.wait_for("the sentinel's lseek", WAIT, |ev| {
        kprobes(ev, "cel-lseek")
            .iter()
            .any(|e| pid_of(e) == u64::from(sentinel))
    });
    // protojson writes 64-bit integers as strings
    let offset_of = |e: &&Value| -> i64 {
        let v = &e["args"][1]["long_arg"];
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or_else(|| panic!("no long_arg: {e}"))
    };
    let mine = kprobes(&events, "cel-lseek");
    let seen: Vec<i64> = mine.iter().map(offset_of).collect();
    // Only the seeks inside (100, 199] are posted: 101, 150 and the sentinel's 199.
    assert!(seen.iter().all(|o| *o > 100 && *o <= 199), "{seen:?}");
    for (offset, pid) in pids {
        let posted = mine.iter().any(|e| pid_of(e) == u64::from(pid));
        assert_eq!(
            posted,
            (101..=199).contains(&offset),
            "dd skip={offset}: {seen:?}"
        );
    }
}

#[test]
fn cel_expr_outside_the_subset_is_refused_alike_everywhere() {
    let _g = serial();
    let dir = scratch_dir("policy-cel-refused-files");
    let file = write_policy(
        &dir,
        "cel-or",
        &lseek_policy("cel-or", Path::new("/usr/bin/dd"), "arg0 < 5 || arg0 > 10"),
    );
    let reason = "CelExpr: only comparisons of integer arguments with constants joined by && \
                  are supported; `||` is not";
    let out = Command::new(vigil_bin())
        .args(["tracingpolicy", "validate", &file])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("spec.kprobes[0].selectors[0].matchArgs[0].values[0]")
            && text.contains(reason),
        "{text}"
    );
    let agent = Agent::start("policy-cel-refused", &["--tracing-policy", &file]);
    let (code, out, err) = agent.cli(&["tracingpolicy", "add", &file]);
    assert_ne!(code, Some(0), "add loaded it: {out}");
    assert!(err.contains(reason), "{err}");
    let (_, log) = agent.stop();
    assert!(
        log.lines()
            .any(|l| l.contains("tracing policy not loaded") && l.contains(reason)),
        "{log}"
    );
}
