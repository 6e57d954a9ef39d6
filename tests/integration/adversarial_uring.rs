//! io_uring past a syscall policy on a kernel without kernel-function hooks (this host): an
//! open submitted through io_uring never fires `syscalls:sys_enter_openat`, so an enforcing
//! openat policy does not stop it. `--io-uring` (default `auto`: `report` here) makes the
//! ring visible as an event of the built-in policy `vigil-io-uring`; `kill` ends the
//! process when it creates the ring, before any request runs. Expected values are written
//! here by hand.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(15);
const BUILT_IN: &str = "vigil-io-uring";

/// An enforcing openat policy: whoever opens `file` by openat(2) is killed.
fn openat_kill(file: &str) -> String {
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: uring-openat-kill
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: "string"
    selectors:
    - matchArgs:
      - index: 1
        operator: "Equal"
        values: ["{file}"]
      matchActions:
      - action: Sigkill
"#
    )
}

/// Runs `vigil-test-helper uring-open FILE`: its pid, output and wall time.
fn uring_open(file: &str) -> (u32, Output, Duration) {
    let started = Instant::now();
    let child = Command::new(helper_bin())
        .args(["uring-open", file])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("helper runs");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    (pid, out, started.elapsed())
}

/// A watched file and an unwatched one in a fresh directory, and the policy file.
fn setup(name: &str) -> (String, String, String) {
    let dir = scratch_dir(&format!("{name}-files"));
    let watched = dir.join("watched");
    let other = dir.join("other");
    std::fs::write(&watched, "secret\n").unwrap();
    std::fs::write(&other, "plain\n").unwrap();
    let watched = watched.display().to_string();
    let policy = write_policy(&dir, "uring-openat-kill", &openat_kill(&watched));
    (watched, other.display().to_string(), policy)
}

/// The built-in policy's ring-creation events of `pid`.
fn ring_events(events: &[serde_json::Value], pid: u32) -> Vec<&serde_json::Value> {
    of_policy(events, "process_tracepoint", BUILT_IN)
        .into_iter()
        .filter(|e| pid_of(e) == u64::from(pid) && e["event"] == "io_uring_create")
        .collect()
}

/// Event time (RFC 3339 with nanoseconds, UTC) as nanoseconds of the day: enough to
/// subtract two times of one short test.
fn nanos_of_day(t: &str) -> i128 {
    let clock = t.split('T').nth(1).unwrap_or("").trim_end_matches('Z');
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    let mut parts = hms.split(':').map(|p| p.parse::<i128>().unwrap_or(0));
    let (h, m, s) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    let frac: i128 = format!("{frac:0<9}")[..9].parse().unwrap_or(0);
    ((h * 60 + m) * 60 + s) * 1_000_000_000 + frac
}

#[test]
fn adversarial_uring_default_reports_the_ring_that_bypasses_an_enforcing_openat_policy() {
    let _g = serial();
    let (watched, _, policy) = setup("adversarial-uring-report");
    let agent = Agent::start("adversarial-uring-report", &["--tracing-policy", &policy]);
    // Under the default the built-in policy is attached beside the start, not before ready.
    agent.wait_log("io_uring: rings are reported", WAIT);

    // The syscall path is enforced: cat dies opening the watched file.
    let cat = Command::new("/usr/bin/cat").arg(&watched).output().unwrap();
    assert_eq!(cat.status.signal(), Some(libc::SIGKILL), "{cat:?}");
    // io_uring is not: the helper opens the same file and lives (the documented gap).
    let (pid, out, _) = uring_open(&watched);
    let fd: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(i32::MIN);
    assert!(
        out.status.success() && fd >= 0,
        "the io_uring open passes the openat policy: {out:?}"
    );
    let events = agent.wait_for("the io_uring ring event", WAIT, |ev| {
        !ring_events(ev, pid).is_empty()
    });
    let rings = ring_events(&events, pid);
    assert_eq!(rings.len(), 1, "one ring created: {rings:?}");
    let e = rings[0];
    assert_eq!(e["subsys"], "io_uring");
    assert_eq!(
        e["process"]["binary"],
        helper_bin().display().to_string(),
        "{e}"
    );
    assert_eq!(e["action"], "KPROBE_ACTION_POST", "report only: {e}");
    assert!(
        e["args"][0]["int_arg"].as_i64().unwrap_or(-1) >= 0,
        "the ring fd: {e}"
    );
    assert_eq!(
        e["args"][1]["uint_arg"], 4,
        "the helper asks for 4 entries: {e}"
    );
    assert!(
        e["message"].as_str().unwrap_or("").contains("io_uring"),
        "{e}"
    );
    // The openat policy saw cat only: the io_uring open never reached its tracepoint.
    let openat: Vec<u64> = kprobes(&events, "uring-openat-kill")
        .iter()
        .map(|e| pid_of(e))
        .collect();
    assert!(!openat.contains(&u64::from(pid)), "{openat:?}");
    // The agent's own policy is not one of the operator's: the list shows theirs only.
    let (code, list, err) = agent.cli(&["tracingpolicy", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        list.contains("uring-openat-kill") && !list.contains(BUILT_IN),
        "{list}"
    );
    agent.stop();
}

#[test]
fn adversarial_uring_kill_ends_the_process_at_ring_creation_and_spares_plain_opens() {
    let _g = serial();
    let (watched, other, policy) = setup("adversarial-uring-kill");
    let agent = Agent::start(
        "adversarial-uring-kill",
        &["--tracing-policy", &policy, "--io-uring=kill"],
    );
    let (pid, out, wall) = uring_open(&watched);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "killed at io_uring_setup: {out:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "no request ran, so no result was printed: {out:?}"
    );
    // A plain open(2) of another file is not io_uring's business.
    let cat = Command::new("/usr/bin/cat").arg(&other).output().unwrap();
    assert!(cat.status.success(), "{cat:?}");
    assert_eq!(cat.stdout, b"plain\n");

    let events = agent.wait_for("the ring event and the helper's exit", WAIT, |ev| {
        !ring_events(ev, pid).is_empty()
            && exits_of_pid(ev, pid)
                .iter()
                .any(|e| e["signal"] == "SIGKILL")
    });
    let ring = ring_events(&events, pid)[0];
    assert_eq!(ring["action"], "KPROBE_ACTION_SIGKILL", "{ring}");
    assert_eq!(
        ring["process"]["binary"],
        helper_bin().display().to_string()
    );
    // The times of the two events (the kernel's, on the outer object).
    let time_of = |kind: &str| {
        events
            .iter()
            .find(|e| pid_of(&e[kind]) == u64::from(pid) && e[kind]["process"].is_object())
            .map(|e| nanos_of_day(e["time"].as_str().unwrap_or("")))
            .unwrap_or(0)
    };
    let (created, died) = (time_of("process_tracepoint"), time_of("process_exit"));
    let micros = (died - created) / 1000;
    eprintln!(
        "io_uring kill: ring created -> process exit {micros} us (kernel times); helper wall \
         time {} us",
        wall.as_micros()
    );
    assert!(
        (0..1_000_000).contains(&micros),
        "the exit follows the ring creation: {micros} us"
    );
    // No request was submitted: the submit hook never fired for the helper.
    assert!(
        of_policy(&events, "process_tracepoint", BUILT_IN)
            .iter()
            .all(|e| pid_of(e) != u64::from(pid) || e["event"] == "io_uring_create"),
        "only the ring creation"
    );
    // cat's open of the unwatched file: no kill by either policy.
    assert!(
        of_kind(&events, "process_exit")
            .iter()
            .all(|e| !(e["process"]["binary"] == "/usr/bin/cat" && e["signal"] == "SIGKILL"))
    );
    agent.stop();
}

#[test]
fn adversarial_uring_allow_loads_nothing() {
    let _g = serial();
    let (watched, _, policy) = setup("adversarial-uring-allow");
    let agent = Agent::start(
        "adversarial-uring-allow",
        &["--tracing-policy", &policy, "--io-uring=allow"],
    );
    let (pid, out, _) = uring_open(&watched);
    assert!(out.status.success(), "{out:?}");
    // Wait for the helper's exit so that a ring event, had there been one, was read first.
    let events = agent.wait_for("the helper's exit", WAIT, |ev| {
        !exits_of_pid(ev, pid).is_empty()
    });
    assert!(ring_events(&events, pid).is_empty());
    let (_, log) = agent.stop();
    assert!(log.contains("io_uring: no built-in policy loaded"), "{log}");
}

/// Creates an io_uring ring, says `ready`, waits for a line on stdin, then submits one NOP
/// request (raw syscalls through ctypes: no liburing on the machine) and says `submitted`.
const LATE_SUBMIT: &str = r#"
import ctypes, mmap, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
p = ctypes.create_string_buffer(120)
fd = libc.syscall(425, ctypes.c_uint(4), p)
if fd < 0:
    sys.exit(2)
print("ready", flush=True)
sys.stdin.readline()
entries = struct.unpack_from("I", p, 0)[0]
head, tail, mask, n, flags, dropped, array = struct.unpack_from("7I", p, 40)
sq = mmap.mmap(fd, array + 4 * entries, mmap.MAP_SHARED,
               mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
sqes = mmap.mmap(fd, 64 * entries, mmap.MAP_SHARED,
                 mmap.PROT_READ | mmap.PROT_WRITE, offset=0x10000000)
sqes[0:64] = bytes(64)
struct.pack_into("I", sq, array, 0)
struct.pack_into("I", sq, tail, struct.unpack_from("I", sq, tail)[0] + 1)
r = libc.syscall(426, ctypes.c_uint(fd), ctypes.c_uint(1), ctypes.c_uint(0),
                 ctypes.c_uint(0), None, ctypes.c_size_t(0))
print("submitted", r, flush=True)
"#;

#[test]
fn adversarial_uring_kill_ends_a_process_submitting_on_a_ring_made_before_the_agent() {
    use std::io::{BufRead, Write};
    let _g = serial();
    let mut py = Command::new("/usr/bin/python3")
        .args(["-c", LATE_SUBMIT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let pid = py.id();
    let mut stdout = std::io::BufReader::new(py.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n", "the ring exists before the agent starts");
    let agent = Agent::start("adversarial-uring-late", &["--io-uring=kill"]);
    py.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = py.wait().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "killed at its first request: {status:?} {rest:?}"
    );
    assert!(rest.is_empty(), "killed before it printed: {rest:?}");
    let events = agent.wait_for("the request event", WAIT, |ev| {
        of_policy(ev, "process_tracepoint", BUILT_IN)
            .iter()
            .any(|e| pid_of(e) == u64::from(pid) && e["event"] == "io_uring_submit_req")
    });
    let e = of_policy(&events, "process_tracepoint", BUILT_IN)
        .into_iter()
        .find(|e| pid_of(e) == u64::from(pid))
        .unwrap();
    assert_eq!(
        e["event"], "io_uring_submit_req",
        "no ring creation seen: {e}"
    );
    assert_eq!(e["action"], "KPROBE_ACTION_SIGKILL", "{e}");
    assert_eq!(e["args"][1]["string_arg"], "NOP", "the opcode's name: {e}");
    agent.stop();
}
