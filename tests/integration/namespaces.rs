//! Namespace-aware selectors: matchNamespaces (with `host_ns`) and matchPIDs isNamespacePID.
//! A process in a new pid namespace (`unshare --pid --fork`) against the same program on the
//! host: one must match, the other must not.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(15);

fn policy(dir: &std::path::Path, name: &str, selector: &str) -> String {
    let yaml = format!(
        r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: {name}
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 0
      type: "int"
    - index: 1
      type: "string"
    selectors:
    - matchArgs:
      - index: 1
        operator: "Equal"
        values: ["/etc/hostname"]
{selector}
"#
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

fn cats<'a>(events: &'a [Value], policy: &str) -> Vec<&'a Value> {
    of_kind(events, "process_kprobe")
        .into_iter()
        .filter(|e| e["policy_name"] == policy && e["process"]["binary"] == "/usr/bin/cat")
        .collect()
}

/// Runs `cat /etc/hostname` on the host, then `inside` (a command line that runs the same
/// cat) in a new pid namespace; the namespaced cat must match and the host cat must not.
fn check(name: &str, selector: &str, inside: &[&str]) {
    let _g = serial();
    let dir = scratch_dir(&format!("{name}-files"));
    let file = policy(&dir, name, selector);
    let agent = Agent::start(name, &["--tracing-policy", &file]);
    let host = run(Command::new("/usr/bin/cat").arg("/etc/hostname"));
    run(Command::new("/usr/bin/unshare")
        .args(["--pid", "--fork"])
        .args(inside));
    let events = agent.wait_for("the namespaced cat", WAIT, |ev| {
        cats(ev, name).iter().any(|e| pid_of(e) != u64::from(host))
    });
    agent.stop();
    let mine = cats(&events, name);
    assert!(
        mine.iter().all(|e| pid_of(e) != u64::from(host)),
        "the host cat (pid {host}) must not match: {mine:?}"
    );
}

#[test]
fn match_namespaces_not_in_host_ns_matches_only_a_new_pid_namespace() {
    check(
        "ns-pid-not-host",
        r#"      matchNamespaces:
      - namespace: Pid
        operator: NotIn
        values: ["host_ns"]"#,
        &["/usr/bin/cat", "/etc/hostname"],
    );
}

#[test]
fn is_namespace_pid_compares_the_pid_inside_the_namespace() {
    // Pid 1 of the host is never a cat: only the namespaced cat, pid 1 inside, matches.
    check(
        "nspid-one",
        r#"      matchPIDs:
      - operator: In
        isNamespacePID: true
        values: [1]"#,
        &["/usr/bin/cat", "/etc/hostname"],
    );
}

#[test]
fn is_namespace_pid_with_follow_forks_covers_descendants() {
    // Inside: sh (pid 1) -> sh (pid 2) -> cat (pid 3): the cat descends from pid 2 there.
    // On the host pid 2 is kthreadd, which no user process descends from.
    check(
        "nspid-two-forks",
        r#"      matchPIDs:
      - operator: In
        isNamespacePID: true
        followForks: true
        values: [2]"#,
        &[
            "/bin/sh",
            "-c",
            "/bin/sh -c '/usr/bin/cat /etc/hostname; true'; true",
        ],
    );
}
