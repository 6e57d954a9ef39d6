//! Tetragon's example policies (`../shared/compat/tetragon-policies`) loaded for real in the
//! Debian guests, against the oracle `expected-outcomes.md` (Debian section): every file
//! loads except refusals for missing error injection (Override/enforcer on a syscall), a
//! target file or symbol absent from the guest, or a kernel function absent from that kernel.
//! Run with `tests/kernel-matrix/run --filter compat_`.
//!
//! One agent (with the Kubernetes API of a local list/watch server, so that pod-scoped
//! policies have their pods); each file is added over gRPC in monitor mode (nothing of the
//! guest is denied or killed meanwhile), checked in `tracingpolicy list`, and deleted: several
//! files share a metadata.name. The quickstart's `${PODCIDR}`/`${SERVICECIDR}` are template
//! values its instructions fill with envsubst; the test fills them the same way.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::harness::*;
use crate::k8s_scope::{FakeApi, PODS, TP, TPN};
use crate::kernel_caps;

/// Whether a refusal is one of the oracle's allowed ones for `file`.
fn allowed_refusal(file: &str, reason: &str) -> bool {
    let syscall_override = ["hardlink-override", "symlink-override", "killer"]
        .iter()
        .any(|n| file.contains(n));
    (syscall_override && reason.contains("error injection"))
        || ((file.contains("uprobe") || file.contains("usdt"))
            && (reason.contains("does not exist") || reason.contains("not found")))
        || reason.contains("not found in this kernel")
        || reason.contains("this kernel lacks")
        // A signature that changed (security_inode_copy_up_xattr gained a dentry in 6.10):
        // the parameter the policy reads is not there on this kernel.
        || reason.contains("on this kernel takes no")
        // Named by the kernel checks every policy passes first (one validation path): a
        // function this kernel lacks, or its signature on this kernel (tty_54.yaml is
        // written for 5.4's three-parameter tty_write).
        || reason.contains("does not exist on this kernel")
        || reason.contains("on this kernel has")
}

fn corpus(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            corpus(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// The file as a user would load it: template values filled (envsubst).
fn filled(file: &Path, scratch: &Path) -> PathBuf {
    let text = std::fs::read_to_string(file).unwrap();
    if !text.contains("${") {
        return file.to_path_buf();
    }
    let text = text
        .replace("${PODCIDR}", "10.244.0.0/16")
        .replace("${SERVICECIDR}", "10.96.0.0/12");
    let out = scratch.join(file.file_name().unwrap());
    std::fs::write(&out, text).unwrap();
    out
}

#[test]
fn compat_debian_corpus_matches_expected_outcomes() {
    let column = kernel_caps::current_column();
    if !column.starts_with("debian-") {
        eprintln!("not applicable: the Debian oracle applies to the qemu tier, not {column}");
        return;
    }
    let root = PathBuf::from(
        std::env::var("VIGIL_COMPAT_POLICIES")
            .unwrap_or_else(|_| "/vigil/compat/tetragon-policies".to_string()),
    );
    let mut files = Vec::new();
    corpus(&root, &mut files);
    files.sort();
    assert!(
        files.len() > 50,
        "the corpus is in {}: {} files",
        root.display(),
        files.len()
    );
    let _g = serial();
    let scratch = scratch_dir("compat-debian-files");
    let api = FakeApi::start(vec![(PODS, vec![]), (TP, vec![]), (TPN, vec![])]);
    let kubeconfig = api.kubeconfig(&scratch);
    let agent = Agent::start(
        "compat-debian",
        &[
            "--enable-k8s-api",
            &format!("--k8s-kubeconfig-path={}", kubeconfig.display()),
            "--export-rate-limit=0",
        ],
    );
    let t0 = Instant::now();
    let mut mismatches = Vec::new();
    let mut loaded = 0;
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap().display().to_string();
        let name = crate::hooks::metadata_name(f);
        let path = filled(f, &scratch).display().to_string();
        let started = Instant::now();
        let (code, _, err) = agent.cli(&["tracingpolicy", "add", &path, "--mode", "monitor"]);
        let secs = started.elapsed().as_secs_f64();
        let err = err.trim().to_string();
        if code == Some(0) {
            let (_, list, _) = agent.cli(&["tracingpolicy", "list", "--output", "json"]);
            let entry = serde_json::from_str::<serde_json::Value>(&list)
                .ok()
                .and_then(|v| {
                    v["policies"]
                        .as_array()?
                        .iter()
                        .find(|p| p["name"] == json!(name))
                        .cloned()
                })
                .unwrap_or_default();
            let state = entry["state"].as_str().unwrap_or("").to_string();
            let namespace = entry["namespace"].as_str().unwrap_or("");
            let (del, _, derr) =
                agent.cli(&["tracingpolicy", "delete", &name, "--namespace", namespace]);
            assert_eq!(del, Some(0), "{rel}: delete {name}: {derr}");
            eprintln!("compat {rel}: loaded in {secs:.1} s, state {state}");
            if state == "TP_STATE_ENABLED" {
                loaded += 1;
            } else {
                mismatches.push(format!("{rel}: added but {state:?} in the list"));
            }
        } else if allowed_refusal(&rel, &err) && err.lines().count() == 1 {
            eprintln!("compat {rel}: allowed refusal ({secs:.1} s): {err}");
        } else {
            mismatches.push(format!("{rel}: {err}"));
        }
    }
    agent.stop();
    eprintln!(
        "compat on {column}: {} files, {loaded} loaded, {} mismatches, {} s",
        files.len(),
        mismatches.len(),
        t0.elapsed().as_secs()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} files differ from expected-outcomes.md:\n{}",
        mismatches.len(),
        files.len(),
        mismatches.join("\n")
    );
}
