//! Selectors on the calling process's lineage and privileges, in the kernel:
//! matchParentBinaries (followChildren), matchCapabilities, matchCapabilityChanges,
//! matchNamespaceChanges, and the capabilities / namespaces their events carry. Each test
//! runs its negatives first and a positive sentinel last: the sentinel's event proves the
//! negatives' would have arrived by then. Expected values are written here by hand.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(15);

/// An openat policy on /etc/hostname with `selector` added to its selector.
fn hostname_policy(name: &str, selector: &str) -> String {
    format!(
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
    )
}

fn from_pid(e: &Value, pid: u32) -> bool {
    e["process"]["pid"] == pid
}

fn parent_is(e: &Value, pid: u32) -> bool {
    e["parent"]["pid"] == pid
}

#[test]
fn match_parent_binaries_selects_children_of_the_listed_parent() {
    let _g = serial();
    let dir = scratch_dir("procsel-parent-files");
    // A copy of sh under its own name: the cats it starts have it as parent.
    let shell = dir.join("parent-sh");
    std::fs::copy("/bin/sh", &shell).unwrap();
    let selector = |follow: bool| {
        format!(
            "      matchParentBinaries:\n      - operator: In\n        values: [\"{}\"]\n        followChildren: {follow}",
            shell.display()
        )
    };
    let direct = write_policy(
        &dir,
        "direct",
        &hostname_policy("parent-direct", &selector(false)),
    );
    let follow = write_policy(
        &dir,
        "follow",
        &hostname_policy("parent-follow", &selector(true)),
    );
    let agent = Agent::start(
        "procsel-parent",
        &["--tracing-policy", &direct, "--tracing-policy", &follow],
    );
    let cat = "/usr/bin/cat /etc/hostname; true";
    // Negatives first: the same cat under a plain sh; a grandchild of parent-sh (only the
    // followChildren policy covers it).
    let plain = run(Command::new("/bin/sh").args(["-c", cat]));
    let grand_sh = format!("/bin/sh -c '{cat}'; true");
    let grand = run(Command::new(&shell).args(["-c", &grand_sh]));
    let sentinel = run(Command::new(&shell).args(["-c", cat]));
    agent.wait_for("the sentinel cat's event", WAIT, |ev| {
        kprobes(ev, "parent-direct")
            .iter()
            .any(|e| parent_is(e, sentinel))
    });
    let (events, _) = agent.stop();
    let direct = kprobes(&events, "parent-direct");
    let follow = kprobes(&events, "parent-follow");
    let grand_pid = |e: &Value| {
        execs_of_pid(&events, e["parent"]["pid"].as_u64().unwrap_or(0) as u32)
            .iter()
            .any(|x| parent_is(x, grand))
    };
    let sentinel_event = direct
        .iter()
        .find(|e| parent_is(e, sentinel))
        .expect("sentinel");
    assert_eq!(sentinel_event["process"]["binary"], "/usr/bin/cat");
    assert_eq!(
        sentinel_event["parent"]["binary"],
        shell.display().to_string()
    );
    assert!(
        follow.iter().any(|e| parent_is(e, sentinel)),
        "followChildren also covers the direct child: {follow:?}"
    );
    for policy in [&direct, &follow] {
        assert!(
            policy.iter().all(|e| !parent_is(e, plain)),
            "a cat under a plain sh never matches: {policy:?}"
        );
    }
    assert!(
        follow.iter().any(|e| grand_pid(e)),
        "followChildren covers the grandchild: {follow:?}"
    );
    assert!(
        direct.iter().all(|e| !grand_pid(e)),
        "without followChildren the grandchild does not match: {direct:?}"
    );
}

#[test]
fn match_capabilities_tells_a_process_without_the_capability() {
    let _g = serial();
    let dir = scratch_dir("procsel-caps-files");
    let lacking = write_policy(
        &dir,
        "lacking",
        &hostname_policy(
            "caps-lacking",
            "      matchCapabilities:\n      - type: Effective\n        operator: NotIn\n        values: [\"CAP_NET_RAW\"]",
        ),
    );
    let having = write_policy(
        &dir,
        "having",
        &hostname_policy(
            "caps-having",
            "      matchCapabilities:\n      - type: Permitted\n        operator: In\n        values: [\"CAP_NET_RAW\"]\n      matchBinaries:\n      - operator: In\n        values: [\"/usr/bin/cat\"]",
        ),
    );
    let agent = Agent::start(
        "procsel-caps",
        &[
            "--tracing-policy",
            &lacking,
            "--tracing-policy",
            &having,
            "--enable-process-cred",
        ],
    );
    // Negative for caps-lacking (root keeps CAP_NET_RAW), positive for caps-having.
    let full = run(Command::new("/usr/bin/cat").arg("/etc/hostname"));
    // Root without CAP_NET_RAW in its bounding set: exec leaves it out of every set.
    let dropped = run(Command::new("/usr/bin/setpriv").args([
        "--bounding-set=-net_raw",
        "--inh-caps=-net_raw",
        "/usr/bin/cat",
        "/etc/hostname",
    ]));
    agent.wait_for("the setpriv cat's event", WAIT, |ev| {
        kprobes(ev, "caps-lacking")
            .iter()
            .any(|e| from_pid(e, dropped))
    });
    let (events, _) = agent.stop();
    let lacking = kprobes(&events, "caps-lacking");
    let having = kprobes(&events, "caps-having");
    assert!(
        lacking.iter().all(|e| !from_pid(e, full)),
        "a root cat has CAP_NET_RAW: {lacking:?}"
    );
    assert!(
        having.iter().any(|e| from_pid(e, full)),
        "... which caps-having sees: {having:?}"
    );
    assert!(
        having.iter().all(|e| !from_pid(e, dropped)),
        "the setpriv cat lacks it: {having:?}"
    );
    // The events carry the capabilities the selector looked at.
    let caps = |e: &Value, set: &str| -> Vec<String> {
        e["process"]["cap"][set]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| c.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let e = lacking.iter().find(|e| from_pid(e, dropped)).unwrap();
    assert!(!caps(e, "effective").contains(&"CAP_NET_RAW".to_string()));
    assert!(caps(e, "effective").contains(&"CAP_SYS_ADMIN".to_string()));
    let e = having.iter().find(|e| from_pid(e, full)).unwrap();
    assert!(caps(e, "permitted").contains(&"CAP_NET_RAW".to_string()));
}

#[test]
fn portable_match_capability_changes_catches_a_drop_after_exec_once() {
    let _g = serial();
    let dir = scratch_dir("procsel-capchg-files");
    let policy = write_policy(
        &dir,
        "capchg",
        &hostname_policy(
            "cap-changes",
            "      matchCapabilityChanges:\n      - type: Effective\n        operator: In\n        values: [\"CAP_NET_RAW\"]",
        ),
    );
    let agent = Agent::start(
        "procsel-capchg",
        &["--tracing-policy", &policy, "--enable-process-cred"],
    );
    let helper = helper_bin();
    // Negatives: no change at all; a capability dropped that the selector does not list
    // (CAP_CHOWN, 0). Each opens the file twice.
    let unchanged = run(Command::new(&helper).args(["drop-cap-open", "-1", "/etc/hostname", "2"]));
    let other = run(Command::new(&helper).args(["drop-cap-open", "0", "/etc/hostname", "2"]));
    // Positive: CAP_NET_RAW (13) dropped after exec, then two opens.
    let dropped = run(Command::new(&helper).args(["drop-cap-open", "13", "/etc/hostname", "2"]));
    agent.wait_for("the dropping helper's event", WAIT, |ev| {
        kprobes(ev, "cap-changes")
            .iter()
            .any(|e| from_pid(e, dropped))
    });
    // Give a second event from the same process time to arrive, were there one.
    std::thread::sleep(Duration::from_millis(500));
    let (events, _) = agent.stop();
    let mine = kprobes(&events, "cap-changes");
    for pid in [unchanged, other] {
        assert!(
            mine.iter().all(|e| !from_pid(e, pid)),
            "pid {pid} did not change CAP_NET_RAW: {mine:?}"
        );
    }
    let caught: Vec<_> = mine.iter().filter(|e| from_pid(e, dropped)).collect();
    assert_eq!(
        caught.len(),
        1,
        "one change, reported once (it becomes the new baseline): {caught:?}"
    );
    let effective = caught[0]["process"]["cap"]["effective"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !effective.contains(&Value::from("CAP_NET_RAW")),
        "the event shows the capabilities after the drop: {effective:?}"
    );
}

#[test]
fn match_namespace_changes_catches_unshare_before_its_exec() {
    let _g = serial();
    let dir = scratch_dir("procsel-nschg-files");
    let policy = write_policy(
        &dir,
        "nschg",
        r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: ns-changes
spec:
  kprobes:
  - call: "sys_execve"
    syscall: true
    args:
    - index: 0
      type: "string"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Equal"
        values: ["/usr/bin/cat"]
      matchNamespaceChanges:
      - operator: In
        values: ["Mnt"]
"#,
    );
    let agent = Agent::start(
        "procsel-nschg",
        &["--tracing-policy", &policy, "--enable-process-ns"],
    );
    // Negatives: env execs cat without changing namespaces; unshare of the uts namespace
    // only (not listed).
    let plain = run(Command::new("/usr/bin/env").args(["/usr/bin/cat", "/etc/hostname"]));
    let uts = run(Command::new("/usr/bin/unshare").args(["-u", "/usr/bin/cat", "/etc/hostname"]));
    // Positive: unshare enters a new mount namespace, then executes cat.
    let mnt = run(Command::new("/usr/bin/unshare").args(["-m", "/usr/bin/cat", "/etc/hostname"]));
    agent.wait_for("the unshare -m event", WAIT, |ev| {
        kprobes(ev, "ns-changes").iter().any(|e| from_pid(e, mnt))
    });
    let (events, _) = agent.stop();
    let mine = kprobes(&events, "ns-changes");
    for pid in [plain, uts] {
        assert!(
            mine.iter().all(|e| !from_pid(e, pid)),
            "pid {pid} kept its mount namespace: {mine:?}"
        );
    }
    let e = mine.iter().find(|e| from_pid(e, mnt)).unwrap();
    assert_eq!(e["process"]["binary"], "/usr/bin/unshare");
    assert_eq!(e["args"][0]["string_arg"], "/usr/bin/cat");
    // The event shows the namespace the call ran in: a new one, not the one this test (and
    // the agent) run in.
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let host_mnt = host_mnt.to_string_lossy();
    let inum = e["process"]["ns"]["mnt"]["inum"].as_u64().unwrap();
    assert!(
        !host_mnt.contains(&inum.to_string()),
        "{host_mnt} vs {inum}"
    );
    assert_ne!(e["process"]["ns"]["mnt"]["is_host"], true);
    assert_eq!(e["process"]["ns"]["uts"]["is_host"], true);
}
