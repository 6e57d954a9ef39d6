//! The in-kernel policy engine beyond entry-time selection: exit pairing (return values,
//! matchReturnArgs, the kernel-resolved path of open-like calls), policy mode, fail-closed
//! unreadable arguments, Post rateLimit. Expected values are written here by hand.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(15);

fn user_path(e: &Value) -> &str {
    e["args"][1]["string_arg"].as_str().unwrap_or("")
}

/// The `resolved_path` argument the engine appends for open-like calls.
fn resolved(e: &Value) -> Option<&str> {
    e["args"]
        .as_array()?
        .iter()
        .find(|a| a["label"] == "resolved_path")
        .and_then(|a| a["file_arg"]["path"].as_str())
}

fn counters(agent: &Agent, policy: &str) -> Value {
    let path = agent.events_path.with_file_name("policy-counters.json");
    let _ = std::fs::remove_file(&path);
    agent.signal(libc::SIGUSR1);
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(&path)
            && !text.is_empty()
        {
            return text
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .find(|r| r["policy"] == policy)
                .unwrap_or_else(|| panic!("no counter row for {policy}: {text}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no policy counters after SIGUSR1");
}

const ETC_CAT: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: etc-cat-resolved
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
        operator: "Prefix"
        values: ["/etc/"]
      matchBinaries:
      - operator: "In"
        values: ["/usr/bin/cat"]
"#;

#[test]
fn open_paths_are_matched_through_the_kernel_resolved_path() {
    let _g = serial();
    let dir = scratch_dir("engine-resolved-files");
    let other = dir.join("plain.txt");
    std::fs::write(&other, "x").unwrap();
    let policy = write_policy(&dir, "etc-cat", ETC_CAT);
    let agent = Agent::start("engine-resolved", &["--tracing-policy", &policy]);
    let relative = run(Command::new("/usr/bin/cat")
        .arg("hostname")
        .current_dir("/etc"));
    let dotdot = run(Command::new("/usr/bin/cat").arg("/tmp/../etc/hostname"));
    let head = run(Command::new("/usr/bin/head").arg("/etc/hostname"));
    let plain = run(Command::new("/usr/bin/cat").arg(&other));
    let sentinel = run(Command::new("/usr/bin/cat").arg("/etc/hostname"));
    let events = agent.wait_for("sentinel", WAIT, |ev| {
        kprobes(ev, "etc-cat-resolved")
            .iter()
            .any(|e| pid_of(e) == u64::from(sentinel) && user_path(e) == "/etc/hostname")
    });
    let mine = kprobes(&events, "etc-cat-resolved");
    let of = |pid: u32, user: &str| {
        mine.iter()
            .find(|e| pid_of(e) == u64::from(pid) && user_path(e) == user)
            .copied()
    };
    let rel = of(relative, "hostname").expect("cd /etc && cat hostname matched");
    assert_eq!(resolved(rel), Some("/etc/hostname"), "{rel}");
    let dd = of(dotdot, "/tmp/../etc/hostname").expect("cat /tmp/../etc/hostname matched");
    assert_eq!(resolved(dd), Some("/etc/hostname"), "{dd}");
    assert_eq!(dd["function_name"], "__x64_sys_openat");
    assert!(
        mine.iter().all(|e| pid_of(e) != u64::from(head)),
        "head is not cat"
    );
    assert!(
        mine.iter()
            .all(|e| pid_of(e) != u64::from(plain) || user_path(e) != other.to_str().unwrap()),
        "a path outside /etc never matches"
    );
    // Every event matched on the user string or on the resolved path, never on neither.
    for e in &mine {
        assert!(
            user_path(e).starts_with("/etc/")
                || resolved(e).is_some_and(|p| p.starts_with("/etc/")),
            "{e}"
        );
    }
    let row = counters(&agent, "etc-cat-resolved");
    let (events, _) = agent.stop();
    let posted = kprobes(&events, "etc-cat-resolved").len() as u64;
    assert_eq!(row["posted"].as_u64().unwrap(), posted, "{row}");
    assert_eq!(row["matched"], row["posted"], "{row}");
    assert_eq!(
        row["selectors"][0][1], row["posted"],
        "per-selector posted: {row}"
    );
}

#[test]
fn return_values_are_reported_and_filtered_by_match_return_args() {
    let _g = serial();
    let dir = scratch_dir("engine-ret-files");
    let policy = write_policy(
        &dir,
        "failed-opens",
        r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: failed-opens
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    return: true
    args:
    - index: 0
      type: "int"
    - index: 1
      type: "string"
    returnArg:
      index: 0
      type: "int"
    selectors:
    - matchReturnArgs:
      - index: 0
        operator: "LessThan"
        values: ["0"]
      matchBinaries:
      - operator: "In"
        values: ["/usr/bin/cat"]
"#,
    );
    let agent = Agent::start("engine-ret", &["--tracing-policy", &policy]);
    let missing = dir.join("no-such-file");
    let ok = run(Command::new("/usr/bin/cat").arg("/etc/hostname"));
    let failed = Command::new("/usr/bin/cat").arg(&missing).status().unwrap();
    assert_eq!(failed.code(), Some(1), "cat of a missing file fails");
    let events = agent.wait_for("the failed open", WAIT, |ev| {
        kprobes(ev, "failed-opens")
            .iter()
            .any(|e| user_path(e) == missing.to_str().unwrap())
    });
    let mine = kprobes(&events, "failed-opens");
    let e = mine
        .iter()
        .find(|e| user_path(e) == missing.to_str().unwrap())
        .unwrap();
    assert_eq!(e["return"]["int_arg"], -libc::ENOENT, "{e}");
    assert!(
        mine.iter()
            .all(|e| e["return"]["int_arg"].as_i64().unwrap() < 0),
        "only failed opens: {mine:?}"
    );
    assert!(
        mine.iter()
            .all(|e| pid_of(e) != u64::from(ok) || user_path(e) != "/etc/hostname"),
        "the successful open is not reported"
    );
    agent.stop();
}

pub(crate) fn kill_policy(name: &str, target: &str, options: &str) -> String {
    format!(
        r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: {name}
spec:
{options}
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
        values: ["{target}"]
      matchActions:
      - action: Sigkill
"#
    )
}

#[test]
fn monitor_mode_reports_a_sigkill_without_killing() {
    let _g = serial();
    let dir = scratch_dir("engine-monitor-files");
    let target = dir.join("watched.txt");
    std::fs::write(&target, "still here\n").unwrap();
    let yaml = kill_policy(
        "kill-monitored",
        target.to_str().unwrap(),
        "  options:\n  - name: policy-mode\n    value: monitor",
    );
    let policy = write_policy(&dir, "monitor", &yaml);
    let agent = Agent::start("engine-monitor", &["--tracing-policy", &policy]);
    let out = Command::new("/usr/bin/cat").arg(&target).output().unwrap();
    assert!(
        out.status.success(),
        "cat survives in monitor mode: {out:?}"
    );
    assert_eq!(out.stdout, b"still here\n");
    let events = agent.wait_for("monitor event", WAIT, |ev| {
        !kprobes(ev, "kill-monitored").is_empty()
    });
    let e = kprobes(&events, "kill-monitored")[0];
    // Tetragon reports the selector's action even when monitor mode elided it.
    assert_eq!(e["action"], "KPROBE_ACTION_SIGKILL", "{e}");
    let row = counters(&agent, "kill-monitored");
    agent.stop();
    assert_eq!(row["mode"], "monitor", "{row}");
    assert_eq!(row["monitor"], 1, "{row}");
    assert_eq!(row["enforced"], 0, "{row}");
    assert_eq!(row["posted"], 1, "{row}");
}

#[test]
fn an_unreadable_argument_fails_closed_for_an_enforcing_selector() {
    let _g = serial();
    let dir = scratch_dir("engine-closed-files");
    let helper = helper_bin();
    let yaml = format!(
        r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: fail-closed
spec:
  kprobes:
  - call: "sys_mkdirat"
    syscall: true
    args:
    - index: 0
      type: "int"
    - index: 1
      type: "string"
    selectors:
    - matchArgs:
      - index: 1
        operator: "Prefix"
        values: ["/etc/secret"]
      matchBinaries:
      - operator: "In"
        values: ["{}"]
      matchActions:
      - action: Sigkill
"#,
        helper.display()
    );
    let policy = write_policy(&dir, "closed", &yaml);
    let agent = Agent::start("engine-closed", &["--tracing-policy", &policy]);
    // No mkdirat at all: the helper lives.
    let fine = Command::new(&helper).args(["sleep", "1"]).status().unwrap();
    assert!(fine.success(), "{fine:?}");
    let out = Command::new(&helper)
        .arg("mkdir-bad-pointer")
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "an unreadable path fails closed: {out:?}"
    );
    let events = agent.wait_for("fail-closed event", WAIT, |ev| {
        !kprobes(ev, "fail-closed").is_empty()
    });
    let e = kprobes(&events, "fail-closed")[0];
    assert!(e["args"][1]["error_arg"].is_object(), "{e}");
    assert_eq!(e["action"], "KPROBE_ACTION_SIGKILL");
    agent.stop();
}

#[test]
fn post_rate_limit_keeps_one_event_per_interval() {
    let _g = serial();
    let dir = scratch_dir("engine-rate-files");
    let policy = write_policy(
        &dir,
        "rate",
        r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: hostname-rate
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
      matchBinaries:
      - operator: "In"
        values: ["/usr/bin/cat"]
      matchActions:
      - action: Post
        rateLimit: "1m"
        rateLimitScope: "global"
"#,
    );
    let agent = Agent::start("engine-rate", &["--tracing-policy", &policy]);
    for _ in 0..5 {
        run(Command::new("/usr/bin/cat").arg("/etc/hostname"));
    }
    agent.wait_for("first event", WAIT, |ev| {
        !kprobes(ev, "hostname-rate").is_empty()
    });
    let row = counters(&agent, "hostname-rate");
    let (events, _) = agent.stop();
    assert_eq!(
        kprobes(&events, "hostname-rate").len(),
        1,
        "one event per minute"
    );
    assert_eq!(row["matched"], 5, "{row}");
    assert_eq!(row["posted"], 1, "{row}");
    assert_eq!(row["rate_limited"], 4, "{row}");
}

#[test]
fn follow_children_covers_descendants_of_a_matched_binary() {
    let _g = serial();
    let dir = scratch_dir("engine-follow-files");
    // A copy of sh under its own name: its children (cat) match, a plain sh's do not.
    let shell = dir.join("follow-sh");
    std::fs::copy("/bin/sh", &shell).unwrap();
    let policy = write_policy(
        &dir,
        "follow",
        &format!(
            r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: follow-children
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
      matchBinaries:
      - operator: "In"
        values: ["{}"]
        followChildren: true
"#,
            shell.display()
        ),
    );
    let agent = Agent::start("engine-follow", &["--tracing-policy", &policy]);
    // Grandchild: follow-sh -> sh -> cat.
    let followed =
        run(Command::new(&shell)
            .args(["-c", "/bin/sh -c '/usr/bin/cat /etc/hostname; true'; true"]));
    let plain = run(Command::new("/bin/sh").args(["-c", "/usr/bin/cat /etc/hostname; true"]));
    let sentinel = run(Command::new(&shell).args(["-c", "/usr/bin/cat /etc/hostname; true"]));
    let events = agent.wait_for("sentinel child", WAIT, |ev| {
        kprobes(ev, "follow-children")
            .iter()
            .any(|e| e["parent"]["pid"] == sentinel)
    });
    agent.stop();
    let mine = kprobes(&events, "follow-children");
    let ancestry = |e: &Value, pid: u32| {
        e["parent"]["pid"] == pid
            || execs_of_pid(&events, e["parent"]["pid"].as_u64().unwrap() as u32)
                .iter()
                .any(|x| x["parent"]["pid"] == pid)
    };
    assert!(
        mine.iter()
            .any(|e| e["process"]["binary"] == "/usr/bin/cat" && ancestry(e, followed)),
        "the grandchild of follow-sh is covered: {mine:?}"
    );
    assert!(
        mine.iter().all(|e| !ancestry(e, plain)),
        "a cat under a plain sh is not: {mine:?}"
    );
}
