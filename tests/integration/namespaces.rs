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
    let log = std::fs::read_to_string(&agent.stderr_path).unwrap();
    assert!(
        log.contains("tracing policy loaded"),
        "the policy must load:\n{log}"
    );
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

/// The same selectors on a tracepoint hook (the engine every kernel runs: syscall hooks use
/// kprobes where the kernel has them). No `unshare` binary: the child enters a new pid
/// namespace itself, so its own child (the cat) is pid 1 there.
#[test]
fn portable_namespace_selectors_on_a_tracepoint() {
    use std::os::unix::process::CommandExt;
    let _g = serial();
    let name = "ns-exec-tp";
    let dir = scratch_dir(&format!("{name}-files"));
    let file = dir.join("tp.yaml");
    std::fs::write(
        &file,
        r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: ns-exec-tp
spec:
  tracepoints:
  - subsystem: "sched"
    event: "sched_process_exec"
    args:
    - index: 4
      type: "data_loc"
    selectors:
    - matchArgs:
      - index: 4
        operator: "Postfix"
        values: ["/cat"]
      matchPIDs:
      - operator: In
        isNamespacePID: true
        values: [1]
      matchNamespaces:
      - namespace: Pid
        operator: NotIn
        values: ["host_ns"]
"#,
    )
    .unwrap();
    let agent = Agent::start(name, &["--tracing-policy", file.to_str().unwrap()]);
    let log = std::fs::read_to_string(&agent.stderr_path).unwrap();
    assert!(
        log.contains("tracing policy loaded"),
        "the policy must load:\n{log}"
    );
    let host = run(Command::new("/usr/bin/cat").arg("/dev/null"));
    let mut sh = Command::new("/bin/sh");
    sh.args(["-c", "/usr/bin/cat /dev/null; true"]);
    // SAFETY: unshare(2) only, between fork and exec.
    unsafe {
        sh.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWPID) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let sh = run(&mut sh);
    let events = agent.wait_for("the namespaced cat", WAIT, |ev| {
        of_kind(ev, "process_tracepoint")
            .iter()
            .any(|e| e["policy_name"] == name && e["parent"]["pid"] == sh)
    });
    agent.stop();
    let mine: Vec<_> = of_kind(&events, "process_tracepoint")
        .into_iter()
        .filter(|e| e["policy_name"] == name)
        .collect();
    assert!(
        mine.iter().all(|e| pid_of(e) != u64::from(host)),
        "the host cat (pid {host}) must not match: {mine:?}"
    );
}
