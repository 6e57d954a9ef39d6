//! Credentials on kernel-function hooks: `cred` arguments, `resolve` through a kernel
//! argument, and Sigkill on `commit_creds` raising a process to root. Guest-only (`kfunc_`):
//! this host has no kprobes or fentry. Expected values are written here by hand.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::*;
use crate::kernel_caps;
use crate::kfuncs::wait_or_log;

const RAISE_POLICY: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: no-raise-to-root
spec:
  kprobes:
  - call: "commit_creds"
    syscall: false
    message: "credentials of the helper"
    args:
    - index: 0
      type: "cred"
    selectors:
    - matchBinaries:
      - operator: "In"
        values: ["HELPER"]
  - call: "commit_creds"
    syscall: false
    message: "raise to root"
    args:
    - index: 0
      type: "uint32"
      resolve: "euid.val"
    data:
    - index: 0
      type: "uint32"
      source: "current_task"
      resolve: "cred.euid.val"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Equal"
        values: ["0"]
      matchData:
      - index: 0
        operator: "NotEqual"
        values: ["0"]
      matchActions:
      - action: Sigkill
"#;

fn helper(args: &[&str]) -> (u32, std::process::Output) {
    let child = Command::new(helper_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("helper starts");
    let pid = child.id();
    (pid, child.wait_with_output().expect("helper ends"))
}

fn of_message<'a>(events: &'a [Value], message: &str) -> Vec<&'a Value> {
    of_policy(events, "process_kprobe", "no-raise-to-root")
        .into_iter()
        .filter(|e| e["message"] == message)
        .collect()
}

/// Sigkill on `commit_creds` when a non-root euid becomes 0: the helper that drops to uid
/// 1000 (saved uid 0) and calls seteuid(0) is killed before seteuid returns (it never prints
/// "raised"); dropping alone, and root's own execs, go on. The `cred` argument reports the
/// new credentials.
#[test]
fn kfunc_sigkill_on_commit_creds_raising_to_root() {
    if !kernel_caps::require("fentry") {
        return;
    }
    let _g = serial();
    let dir = scratch_dir("kfunc-commit-creds-files");
    let helper_path = helper_bin().display().to_string();
    let policy = write_policy(
        &dir,
        "no-raise-to-root",
        &RAISE_POLICY.replace("HELPER", &helper_path),
    );
    let agent = Agent::start("kfunc-commit-creds", &["--tracing-policy", &policy]);

    let (drop_pid, dropped) = helper(&["drop-euid", "1000"]);
    assert!(
        dropped.status.success(),
        "dropping privileges is not refused: {dropped:?}"
    );
    let true_pid = run(&mut Command::new("/usr/bin/true"));

    let (raise_pid, raised) = helper(&["drop-euid", "1000", "raise"]);
    let out = String::from_utf8_lossy(&raised.stdout);
    assert_eq!(
        raised.status.signal(),
        Some(libc::SIGKILL),
        "the raise to root is killed: {raised:?}; agent log:\n{}",
        std::fs::read_to_string(&agent.stderr_path).unwrap_or_default()
    );
    assert!(
        out.contains("dropped"),
        "the helper ran up to the drop: {out}"
    );
    assert!(
        !out.contains("raised"),
        "killed before seteuid returned to user space: {out}"
    );

    let events = wait_or_log(&agent, "the raise and the credentials", |ev| {
        of_message(ev, "raise to root")
            .iter()
            .any(|e| pid_of(e) == u64::from(raise_pid))
            && of_message(ev, "credentials of the helper")
                .iter()
                .any(|e| pid_of(e) == u64::from(drop_pid))
    });
    agent.stop();
    let kills = of_message(&events, "raise to root");
    let kill = kills
        .iter()
        .find(|e| pid_of(e) == u64::from(raise_pid))
        .unwrap();
    assert_eq!(kill["action"], "KPROBE_ACTION_SIGKILL");
    assert_eq!(kill["function_name"], "commit_creds");
    assert_eq!(kill["args"][0]["uint_arg"], 0, "the new euid: {kill}");
    assert_eq!(kill["data"][0]["uint_arg"], 1000, "the euid before: {kill}");
    assert!(
        kills
            .iter()
            .all(|e| pid_of(e) != u64::from(drop_pid) && pid_of(e) != u64::from(true_pid)),
        "a drop and root's exec are not raises: {kills:?}"
    );

    let creds = of_message(&events, "credentials of the helper");
    let drop = creds
        .iter()
        .find(|e| pid_of(e) == u64::from(drop_pid))
        .unwrap();
    let c = &drop["args"][0]["process_credentials_arg"];
    assert_eq!(c["uid"], 1000, "{drop}");
    assert_eq!(c["euid"], 1000, "{drop}");
    assert_eq!(c["suid"], 0, "the saved uid stays root: {drop}");
    assert_eq!(c["gid"], 0, "{drop}");
    assert_eq!(c["user_ns"]["level"], 0, "{drop}");
    assert_eq!(c["user_ns"]["ns"]["is_host"], true, "{drop}");
    // Leaving root clears the effective capabilities (no SECBIT_KEEP_CAPS).
    assert!(
        c["caps"]["effective"].as_array().is_none_or(Vec::is_empty),
        "{drop}"
    );
}

/// `bpf_attr` on `bpf_check`: the agent's own program loads (a second policy added over
/// gRPC) are reported with Tetragon's bpf_attr_arg: program type, instruction count, name.
#[test]
fn kfunc_bpf_attr_reports_the_programs_the_agent_loads() {
    if !kernel_caps::require("fentry") {
        return;
    }
    let _g = serial();
    let dir = scratch_dir("kfunc-bpf-attr-files");
    let watch = write_policy(
        &dir,
        "bpf-loads",
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: bpf-loads
spec:
  kprobes:
  - call: "bpf_check"
    syscall: false
    args:
    - index: 1
      type: "bpf_attr"
"#,
    );
    let other = write_policy(
        &dir,
        "hostname-open",
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: hostname-open
spec:
  kprobes:
  - call: "security_file_open"
    syscall: false
    args:
    - index: 0
      type: "file"
"#,
    );
    let agent = Agent::start("kfunc-bpf-attr", &["--tracing-policy", &watch]);
    let (code, _, err) = agent.cli(&["tracingpolicy", "add", &other]);
    assert_eq!(code, Some(0), "{err}");
    let events = wait_or_log(&agent, "the fentry program's load", |ev| {
        of_policy(ev, "process_kprobe", "bpf-loads")
            .iter()
            .any(|e| e["args"][0]["bpf_attr_arg"]["ProgName"] == "vigil_fentry")
    });
    agent.stop();
    let load = of_policy(&events, "process_kprobe", "bpf-loads")
        .into_iter()
        .find(|e| e["args"][0]["bpf_attr_arg"]["ProgName"] == "vigil_fentry")
        .unwrap();
    let attr = &load["args"][0]["bpf_attr_arg"];
    assert_eq!(attr["ProgType"], "BPF_PROG_TYPE_TRACING", "{load}");
    assert!(attr["InsnCnt"].as_u64().unwrap_or(0) > 100, "{load}");
    assert_eq!(
        load["process"]["binary"],
        vigil_bin().display().to_string(),
        "the agent loaded it: {load}"
    );
}
