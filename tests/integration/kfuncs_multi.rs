//! Several kernel functions in one hook (`call: list:NAME`): on a kernel with kprobe.multi
//! one program serves them all (the hook id is the attach cookie); elsewhere one kprobe each.
//! Events name the function that ran. Guest-only (`kfunc_`); expected values by hand.

use std::process::Command;

use crate::harness::*;
use crate::kernel_caps;
use crate::kfuncs::wait_or_log;

/// Runs an agent with `policy` while the helper opens `path` for appending
/// (security_file_open) and writes to it (security_file_permission); returns the helper's
/// pid, the events once both functions were reported for it, and the agent's log.
fn open_and_write(
    agent_name: &str,
    policy: &str,
    policy_name: &str,
    path: &str,
) -> (u64, Vec<serde_json::Value>, String) {
    let agent = Agent::start(agent_name, &["--tracing-policy", policy]);
    let pid = u64::from(run(Command::new(helper_bin()).args(["write", path])));
    let events = wait_or_log(&agent, "open and write of the file", |ev| {
        let of_pid: Vec<_> = of_policy(ev, "process_kprobe", policy_name)
            .into_iter()
            .filter(|e| pid_of(e) == pid)
            .collect();
        ["security_file_open", "security_file_permission"]
            .iter()
            .all(|f| of_pid.iter().any(|e| e["function_name"] == *f))
    });
    let (_, log) = agent.stop();
    (pid, events, log)
}

#[test]
fn kfunc_a_list_of_functions_runs_on_kprobe_multi_where_the_kernel_has_it() {
    if !kernel_caps::require("kprobe") {
        return;
    }
    // Which mechanism to expect (probed, not a gate: the test runs on both kernels).
    let multi = kernel_caps::probe("kprobe_multi").is_ok();
    let _g = serial();
    let dir = scratch_dir("kfunc-multi-files");
    let file = dir.join("watched");
    std::fs::write(&file, "x\n").unwrap();
    let path = file.display().to_string();
    let yaml = format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: file-multi
spec:
  lists:
  - name: "file-ops"
    values: ["security_file_open", "security_file_permission"]
  kprobes:
  - call: "list:file-ops"
    syscall: false
    args:
    - index: 0
      type: "file"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Equal"
        values: ["{path}"]
"#
    );
    let policy = write_policy(&dir, "file-multi", &yaml);
    let (_, events, log) = open_and_write("kfunc-multi", &policy, "file-multi", &path);
    for e in of_policy(&events, "process_kprobe", "file-multi") {
        assert_eq!(e["args"][0]["file_arg"]["path"], path.as_str(), "{e}");
    }
    let want = if multi { "kprobe.multi" } else { "kprobe" };
    for f in ["security_file_open", "security_file_permission"] {
        assert_eq!(
            crate::kfuncs::mechanism(&log, f).as_deref(),
            Some(want),
            "{f}:\n{log}"
        );
    }
}

/// `return: true` on a list of functions (no fexit for several functions): a kprobe at entry
/// keeps what it read, a kretprobe finishes the hook with the return value, which
/// matchReturnArgs filters in the kernel.
#[test]
fn kfunc_return_probes_on_a_list_run_as_kprobe_and_kretprobe() {
    if !kernel_caps::require("kprobe") {
        return;
    }
    let _g = serial();
    let dir = scratch_dir("kfunc-kretprobe-files");
    let file = dir.join("watched");
    std::fs::write(&file, "x\n").unwrap();
    let path = file.display().to_string();
    let yaml = format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: file-returns
spec:
  options:
  - name: disable-kprobe-multi
    value: "true"
  lists:
  - name: "file-ops"
    values: ["security_file_open", "security_file_permission"]
  kprobes:
  - call: "list:file-ops"
    syscall: false
    return: true
    args:
    - index: 0
      type: "file"
    returnArg:
      index: 0
      type: "int"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Equal"
        values: ["{path}"]
      matchReturnArgs:
      - index: 0
        operator: "Equal"
        values: ["0"]
"#
    );
    let policy = write_policy(&dir, "file-returns", &yaml);
    let (pid, events, log) = open_and_write("kfunc-kretprobe", &policy, "file-returns", &path);
    for e in of_policy(&events, "process_kprobe", "file-returns")
        .into_iter()
        .filter(|e| pid_of(e) == pid)
    {
        assert_eq!(e["args"][0]["file_arg"]["path"], path.as_str(), "{e}");
        assert_eq!(e["return"]["int_arg"], 0, "the return value: {e}");
    }
    for f in ["security_file_open", "security_file_permission"] {
        assert_eq!(
            crate::kfuncs::mechanism(&log, f).as_deref(),
            Some("kretprobe"),
            "{f}:\n{log}"
        );
    }
}
