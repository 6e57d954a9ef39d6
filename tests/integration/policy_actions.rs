//! User-space policy actions, on loopback only: GetUrl (an HTTP GET the agent makes when the
//! selector's event arrives) and DnsLookup (a DNS query, sent to `--dns-lookup-server`). The
//! event is still posted. Expected values are written here by hand.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(15);

/// A one-line HTTP server on 127.0.0.1 that records the request line of every GET.
fn http_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).unwrap_or(0);
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            out.lock()
                .unwrap()
                .push(text.lines().next().unwrap_or("").to_string());
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (port, seen)
}

/// A UDP socket on 127.0.0.1 that counts the DNS queries it receives for `qname` (wire
/// format), without answering.
fn dns_listener(qname: &'static [u8]) -> (u16, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let out = Arc::clone(&count);
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            // Header (12 bytes), then the question's name.
            if n > 12 && buf[12..n].starts_with(qname) {
                out.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, count)
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn get_url_and_dns_lookup_run_from_the_agent_and_the_event_is_posted() {
    let _g = serial();
    let dir = scratch_dir("actions-files");
    let canary = dir.join("canary");
    let other = dir.join("other");
    std::fs::write(&canary, "x").unwrap();
    std::fs::write(&other, "x").unwrap();
    let (http_port, gets) = http_server();
    let (dns_port, queries) = dns_listener(b"\x06canary\x05vigil\x04test\x00");
    let policy = dir.join("actions.yaml");
    std::fs::write(
        &policy,
        OpenatPolicy::new("canary-actions")
            .dirfd()
            .path("Equal", &[&canary.display().to_string()])
            .action(
                "GetUrl",
                &[&format!(
                    "argUrl: \"http://127.0.0.1:{http_port}/canary?token=42\""
                )],
            )
            .action("DnsLookup", &["argFqdn: \"canary.vigil.test\""])
            .yaml(),
    )
    .unwrap();
    let dns = format!("--dns-lookup-server=127.0.0.1:{dns_port}");
    let agent = Agent::start(
        "actions",
        &["--tracing-policy", policy.to_str().unwrap(), &dns],
    );
    // Negative first: another file triggers nothing.
    let negative = run(Command::new("/usr/bin/cat").arg(&other));
    let first = run(Command::new("/usr/bin/cat").arg(&canary));
    let second = run(Command::new("/usr/bin/cat").arg(&canary));
    wait_until("two GETs", || gets.lock().unwrap().len() >= 2);
    wait_until("two DNS queries", || queries.load(Ordering::SeqCst) >= 2);
    let events = agent.wait_for("both events", WAIT, |ev| {
        let mine: Vec<&Value> = of_kind(ev, "process_kprobe")
            .into_iter()
            .filter(|e| e["policy_name"] == "canary-actions")
            .collect();
        [first, second]
            .iter()
            .all(|p| mine.iter().any(|e| e["process"]["pid"] == *p))
    });
    // A third request would have come by now, were the negative to trigger one.
    std::thread::sleep(Duration::from_millis(500));
    agent.stop();
    let gets = gets.lock().unwrap().clone();
    assert_eq!(
        gets,
        vec!["GET /canary?token=42 HTTP/1.1".to_string(); 2],
        "one GET per matching open"
    );
    assert_eq!(
        queries.load(Ordering::SeqCst),
        2,
        "one query per matching open"
    );
    let mine: Vec<&Value> = of_kind(&events, "process_kprobe")
        .into_iter()
        .filter(|e| e["policy_name"] == "canary-actions")
        .collect();
    assert!(mine.iter().all(|e| e["process"]["pid"] != negative));
    for e in &mine {
        assert_eq!(e["action"], "KPROBE_ACTION_GETURL", "{e}");
        assert_eq!(e["args"][1]["string_arg"], canary.display().to_string());
    }
}

#[test]
fn get_url_without_a_usable_url_is_refused_by_name() {
    let _g = serial();
    let dir = scratch_dir("actions-bad-files");
    let policy = dir.join("bad.yaml");
    std::fs::write(
        &policy,
        r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: bad-url
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: "string"
    selectors:
    - matchActions:
      - action: GetUrl
        argUrl: "ftp://example.test/"
"#,
    )
    .unwrap();
    let agent = Agent::start(
        "actions-bad",
        &["--tracing-policy", policy.to_str().unwrap()],
    );
    let (_, log) = agent.stop();
    assert!(
        log.contains("spec.kprobes[0].selectors[0].matchActions")
            && log.contains("GetUrl needs argUrl with an http:// URL"),
        "{log}"
    );
}

#[test]
fn stack_traces_name_the_helpers_function_and_the_kernels_syscall_path() {
    let _g = serial();
    let dir = scratch_dir("stack-files");
    let target = dir.join("stacked");
    std::fs::write(&target, "x").unwrap();
    let policy = |name: &str, stack: bool| {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            OpenatPolicy::new(name)
                .path("Equal", &[&target.display().to_string()])
                .action(
                    "Post",
                    &[
                        &format!("userStackTrace: {stack}"),
                        &format!("kernelStackTrace: {stack}"),
                    ],
                )
                .yaml(),
        )
        .unwrap();
        path.display().to_string()
    };
    let with = policy("with-stack", true);
    let without = policy("without-stack", false);
    let agent = Agent::start(
        "stack",
        &["--tracing-policy", &with, "--tracing-policy", &without],
    );
    let helper = helper_bin();
    let pid = run(Command::new(&helper).args(["stack-open", target.to_str().unwrap(), "1000"]));
    let events = agent.wait_for("both events", WAIT, |ev| {
        ["with-stack", "without-stack"].iter().all(|p| {
            of_kind(ev, "process_kprobe")
                .iter()
                .any(|e| e["policy_name"] == *p && e["process"]["pid"] == pid)
        })
    });
    agent.stop();
    let of = |p: &str| {
        of_kind(&events, "process_kprobe")
            .into_iter()
            .find(|e| e["policy_name"] == p && e["process"]["pid"] == pid)
            .unwrap()
    };
    let frames = of("with-stack")["user_stack_trace"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let helper_path = std::fs::canonicalize(&helper).unwrap();
    let first = frames.first().expect("a user stack");
    assert_eq!(first["symbol"], "vigil_stack_open", "{frames:?}");
    assert_eq!(first["module"], helper_path.display().to_string());
    assert!(
        first["offset"].as_str().is_some_and(|o| o != "0"),
        "{first}"
    );
    assert!(
        first.get("address").is_none(),
        "addresses only with --expose-stack-addresses: {first}"
    );
    assert!(
        of("without-stack").get("user_stack_trace").is_none(),
        "no stack unless asked for"
    );
    // The kernel side: the tracepoint fires on the system-call entry path.
    let kframes = of("with-stack")["kernel_stack_trace"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        kframes.iter().any(|f| f["symbol"] == "do_syscall_64"),
        "the kernel stack passes through do_syscall_64: {kframes:?}"
    );
    assert!(
        kframes.iter().all(|f| f.get("address").is_none()),
        "kernel addresses only with --expose-stack-addresses: {kframes:?}"
    );
    assert!(of("without-stack").get("kernel_stack_trace").is_none());
}
