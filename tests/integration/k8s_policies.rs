//! `--enable-k8s-api` loads the cluster's TracingPolicy objects (domain `k8s`): a local HTTP
//! server speaking list and watch serves one in the list (with an invalid one), then a
//! MODIFIED event changing its path prefix, a `410 Gone` and a re-list of the same objects,
//! then DELETED; and a TracingPolicyNamespaced, loaded with its namespace (its scope is
//! tested in k8s_scope.rs).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

const NAME: &str = "k8s-open";

fn policy(generation: i64, prefix: &str) -> Value {
    json!({
        "apiVersion": "cilium.io/v1alpha1",
        "kind": "TracingPolicy",
        "metadata": { "name": NAME, "generation": generation,
                      "resourceVersion": format!("{}", 10 + generation) },
        "spec": { "kprobes": [{
            "call": "sys_openat", "syscall": true,
            "args": [{ "index": 0, "type": "int" }, { "index": 1, "type": "string" }],
            "selectors": [{ "matchArgs": [{ "index": 1, "operator": "Prefix",
                                            "values": [prefix] }] }]
        }]}
    })
}

/// A policy our parser refuses (an unknown argument type).
fn invalid() -> Value {
    let mut p = policy(1, "/nowhere/");
    p["metadata"]["name"] = "k8s-bad".into();
    p["spec"]["kprobes"][0]["args"][1]["type"] = "nonsense".into();
    p
}

fn gone() -> String {
    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "code": 410, "reason": "Expired", "message": "too old resource version"}})
    .to_string()
}

fn list(items: &[Value], kind: &str) -> String {
    json!({ "apiVersion": "cilium.io/v1alpha1", "kind": format!("{kind}List"),
            "metadata": { "resourceVersion": "10" }, "items": items })
    .to_string()
}

fn respond(mut s: TcpStream, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A chunked watch stream: the lines of `events` whose step has come, in order, until stop.
fn stream(mut s: TcpStream, events: &[(u8, String)], step: &AtomicU8, stop: &AtomicBool) {
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let _ = s.flush();
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        while sent < events.len() && events[sent].0 <= step.load(Ordering::Relaxed) {
            let data = format!("{}\n", events[sent].1);
            let _ = write!(s, "{:x}\r\n{data}\r\n", data.len());
            let _ = s.flush();
            sent += 1;
            // An error event ends the watch, as the API server does.
            if data.contains("\"code\":410") {
                let _ = write!(s, "0\r\n\r\n");
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = write!(s, "0\r\n\r\n");
}

struct FakeApi {
    port: u16,
    step: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    /// TracingPolicy lists served.
    lists: Arc<AtomicUsize>,
}

fn lists_seen(api: &FakeApi) -> usize {
    api.lists.load(Ordering::Relaxed)
}

impl FakeApi {
    fn start(prefix_a: String, prefix_b: String) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let step = Arc::new(AtomicU8::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (step.clone(), stop.clone());
        let (lists, watches) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let lists_out = lists.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(s) = conn else { continue };
                let mut line = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let mut h = String::new();
                while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let watch = path.contains("watch=true") || path.contains("watch=1");
                let (st, sp) = (st.clone(), sp.clone());
                let (a, b) = (prefix_a.clone(), prefix_b.clone());
                let (lists, watches) = (lists.clone(), watches.clone());
                std::thread::spawn(move || {
                    if path.starts_with("/apis/cilium.io/v1alpha1/tracingpoliciesnamespaced") {
                        let mut p = policy(1, "/nowhere/");
                        p["kind"] = "TracingPolicyNamespaced".into();
                        p["metadata"]["name"] = "ns-open".into();
                        p["metadata"]["namespace"] = "payments".into();
                        if watch {
                            stream(s, &[], &st, &sp);
                        } else {
                            respond(s, &list(&[p], "TracingPolicyNamespaced"));
                        }
                    } else if path.starts_with("/apis/cilium.io/v1alpha1/tracingpolicies") {
                        // First watch: MODIFIED, then 410 Gone; the re-list has the same
                        // objects (nothing to reload); the next watch: DELETED.
                        if watch && watches.fetch_add(1, Ordering::Relaxed) == 0 {
                            let modified = json!({"type": "MODIFIED", "object": policy(2, &b)});
                            stream(s, &[(1, modified.to_string()), (1, gone())], &st, &sp);
                        } else if watch {
                            let deleted = json!({"type": "DELETED", "object": policy(2, &b)});
                            stream(s, &[(2, deleted.to_string())], &st, &sp);
                        } else if lists.fetch_add(1, Ordering::Relaxed) == 0 {
                            respond(s, &list(&[policy(1, &a), invalid()], "TracingPolicy"));
                        } else {
                            respond(s, &list(&[policy(2, &b), invalid()], "TracingPolicy"));
                        }
                    } else if watch {
                        stream(s, &[], &st, &sp);
                    } else {
                        respond(
                            s,
                            r#"{"apiVersion":"v1","kind":"PodList","metadata":{"resourceVersion":"1"},"items":[]}"#,
                        );
                    }
                });
            }
        });
        FakeApi {
            port,
            step,
            stop,
            lists: lists_out,
        }
    }

    fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        fake_kubeconfig(dir, self.port)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn opens_of(events: &[Value], path: &std::path::Path) -> usize {
    let path = path.display().to_string();
    of_kind(events, "process_kprobe")
        .into_iter()
        .filter(|e| e["policy_name"] == NAME && e["args"][1]["string_arg"] == path.as_str())
        .count()
}

fn open(path: &std::path::Path) {
    let _ = std::fs::read(path);
}

/// Opens `path` until the agent reports it, or panics after 20 s.
fn open_until_seen(agent: &Agent, path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while opens_of(&agent.events(), path) == 0 {
        assert!(Instant::now() < deadline, "no event for {}", path.display());
        open(path);
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn listed(sock: &str) -> Vec<Value> {
    let out = Command::new(vigil_bin())
        .args([
            "tracingpolicy",
            "list",
            "-o",
            "json",
            "--server-address",
            sock,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["policies"].as_array().cloned().unwrap_or_default()
}

/// Acceptance (issue 9): a cluster TracingPolicy is loaded while it exists, replaced when
/// modified, unloaded when deleted; a namespaced one is loaded with its namespace.
#[test]
fn k8s_tracing_policy_added_modified_deleted() {
    let _g = serial();
    let dir = scratch_dir("k8s-policies-files");
    let a = dir.join("first.txt");
    let b = dir.join("second.txt");
    std::fs::write(&a, "a").unwrap();
    std::fs::write(&b, "b").unwrap();
    let api = FakeApi::start(a.display().to_string(), b.display().to_string());
    let kubeconfig = api.kubeconfig(&dir);
    let agent = Agent::start(
        "k8s-policies",
        &[
            "--enable-k8s-api",
            &format!("--k8s-kubeconfig-path={}", kubeconfig.display()),
        ],
    );
    let sock = format!(
        "unix://{}/vigil.sock",
        agent.events_path.parent().unwrap().display()
    );

    // Listed: the first path is traced, the second not.
    open_until_seen(&agent, &a);
    open(&b);
    let names: Vec<Value> = listed(&sock).iter().map(|p| p["name"].clone()).collect();
    assert!(names.contains(&NAME.into()), "{names:?}");
    assert!(!names.contains(&"k8s-bad".into()), "{names:?}");

    // Modified: the second path is traced, the first no longer.
    api.step.store(1, Ordering::Relaxed);
    open_until_seen(&agent, &b);
    let a_before = opens_of(&agent.events(), &a);
    open(&a);
    open(&b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while opens_of(&agent.events(), &b) < 2 {
        assert!(Instant::now() < deadline, "the sentinel open went unseen");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        opens_of(&agent.events(), &a),
        a_before,
        "old version still loaded"
    );
    assert_eq!(
        listed(&sock).iter().filter(|p| p["name"] == NAME).count(),
        1
    );
    // The 410 and the re-list that follows it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while lists_seen(&api) < 2 {
        assert!(Instant::now() < deadline, "no re-list after 410 Gone");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Deleted: unlisted, and nothing traced any more.
    api.step.store(2, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed(&sock).iter().any(|p| p["name"] == NAME) {
        assert!(Instant::now() < deadline, "still listed after DELETED");
        std::thread::sleep(Duration::from_millis(100));
    }
    let b_before = opens_of(&agent.events(), &b);
    open(&b);
    open(&a);
    std::thread::sleep(Duration::from_millis(1500));
    let (events, log) = agent.stop();
    assert_eq!(opens_of(&events, &b), b_before, "traced after deletion");
    assert!(
        log.lines()
            .any(|l| l.contains("Kubernetes TracingPolicyNamespaced loaded")
                && l.contains("ns-open")
                && l.contains("payments")),
        "{log}"
    );
    // Each change acted on once: the re-list reloaded nothing and did not retry the
    // invalid policy, which was logged with its name and reason.
    let lines = |what: &str, name: &str| {
        log.lines()
            .filter(|l| l.contains(what) && l.contains(&format!("policy=\"{name}\"")))
            .count()
    };
    assert_eq!(lines("Kubernetes TracingPolicy loaded", NAME), 1, "{log}");
    assert_eq!(lines("Kubernetes TracingPolicy replaced", NAME), 1, "{log}");
    assert_eq!(lines("Kubernetes TracingPolicy unloaded", NAME), 1, "{log}");
    assert_eq!(
        lines("Kubernetes TracingPolicy not loaded", "k8s-bad"),
        1,
        "{log}"
    );
    assert!(
        log.contains("TracingPolicy k8s-bad:") && log.contains("nonsense"),
        "{log}"
    );
}
