//! `--enable-k8s-api` against a local HTTP server that speaks the API server's list and watch
//! (no Kubernetes API server can run here). Its objects are k8s-openapi types serialised to
//! JSON; its transcript has a list, a watch with a bookmark, a `410 Gone` (Expired) error
//! event, the re-list that follows it and a second watch. The container is a real runc
//! container whose id the served Pod lists.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStatus, Pod, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ListMeta, ObjectMeta, OwnerReference, Status, Time, WatchEvent,
};
use serde_json::Value;

use crate::containers::Container as RuncContainer;
use crate::harness::*;

const ID: &str = "5eed5eed0123456789abcdef0123456789abcdef0123456789abcdef5eed5eed";
const DOCKER: &str = "5eed5eed0123456789abcdef0123456";
const OTHER_ID: &str = "0a0a0a0a0123456789abcdef0123456789abcdef0123456789abcdef0a0a0a0a";

fn pod(namespace: &str, name: &str, uid: &str, container_id: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            generate_name: Some("api-7d9f8c6b5-".into()),
            namespace: Some(namespace.into()),
            uid: Some(uid.into()),
            labels: Some(BTreeMap::from([
                ("app".to_string(), "api".to_string()),
                ("pod-template-hash".to_string(), "7d9f8c6b5".to_string()),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "api-7d9f8c6b5".into(),
                uid: "rs-uid".into(),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node()),
            containers: vec![Container {
                name: "main".into(),
                image: Some("registry.example/api:1.0".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "main".into(),
                container_id: Some(format!("containerd://{container_id}")),
                image: "registry.example/api:1.0".into(),
                image_id: "registry.example/api@sha256:0123".into(),
                ready: true,
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time("2026-11-28T20:00:01Z".parse().unwrap())),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn node() -> String {
    std::env::var("NODE_NAME").unwrap_or_else(|_| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .to_string()
    })
}

fn list(pods: Vec<Pod>, rv: &str) -> String {
    let l = k8s_openapi::List {
        items: pods,
        metadata: ListMeta {
            resource_version: Some(rv.into()),
            ..Default::default()
        },
    };
    serde_json::to_string(&l).unwrap()
}

fn bookmark(rv: &str) -> String {
    serde_json::to_string(&WatchEvent::<Pod>::Bookmark {
        annotations: BTreeMap::new(),
        resource_version: rv.into(),
    })
    .unwrap()
}

fn gone() -> String {
    serde_json::to_string(&WatchEvent::<Pod>::ErrorStatus(Status {
        code: Some(410),
        reason: Some("Expired".into()),
        message: Some("too old resource version: 101 (150)".into()),
        status: Some("Failure".into()),
        ..Default::default()
    }))
    .unwrap()
}

/// The fake API server: answers in transcript order; `release` lets the first watch end
/// with 410 Gone (so the pod appears only in the re-list, after the container started).
struct FakeApi {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    release: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

fn respond(mut s: TcpStream, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn stream_lines(mut s: TcpStream, first: &[String], hold: impl Fn() -> bool, last: Option<String>) {
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let chunk = |s: &mut TcpStream, line: &str| {
        let data = format!("{line}\n");
        let _ = write!(s, "{:x}\r\n{data}\r\n", data.len());
        let _ = s.flush();
    };
    for l in first {
        chunk(&mut s, l);
    }
    while hold() {
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(l) = last {
        chunk(&mut s, &l);
    }
    let _ = write!(s, "0\r\n\r\n");
}

impl FakeApi {
    fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, rel, st) = (requests.clone(), release.clone(), stop.clone());
        std::thread::spawn(move || {
            let other = pod("other", "other-1", "uid-other", OTHER_ID);
            let target = pod("payments", "api-7d9f8c6b5-x7k2p", "uid-api", ID);
            for conn in listener.incoming() {
                let Ok(s) = conn else { continue };
                let mut line = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                // Skip the headers.
                let mut h = String::new();
                while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                // The TracingPolicy and Node watches (k8s_policies.rs and k8s_scope.rs test
                // them): no objects, and not part of the pod transcript.
                if path.starts_with("/apis/cilium.io/") || path.starts_with("/api/v1/nodes") {
                    let st = st.clone();
                    std::thread::spawn(move || {
                        if path.contains("watch=") {
                            stream_lines(s, &[], || !st.load(Ordering::Relaxed), None);
                        } else {
                            respond(s, r#"{"metadata":{"resourceVersion":"1"},"items":[]}"#);
                        }
                    });
                    continue;
                }
                let n = {
                    let mut v = reqs.lock().unwrap();
                    v.push(path.clone());
                    v.len()
                };
                let watch = path.contains("watch=true") || path.contains("watch=1");
                let (rel, st) = (rel.clone(), st.clone());
                let (other, target) = (other.clone(), target.clone());
                std::thread::spawn(move || match (watch, n) {
                    // 1: the first list: only a pod of another container.
                    (false, 1) => respond(s, &list(vec![other], "100")),
                    // 2: the first watch: a bookmark, then (when released) 410 Gone.
                    (true, 2) => stream_lines(
                        s,
                        &[bookmark("101")],
                        || !rel.load(Ordering::Relaxed) && !st.load(Ordering::Relaxed),
                        Some(gone()),
                    ),
                    // 3: the re-list: now with the container's pod.
                    (false, _) => respond(s, &list(vec![other, target], "200")),
                    // Later watches: a bookmark, then open until the test ends.
                    (true, _) => {
                        stream_lines(s, &[bookmark("201")], || !st.load(Ordering::Relaxed), None)
                    }
                });
            }
        });
        FakeApi {
            port,
            requests,
            release,
            stop,
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

fn exec_with_args<'a>(events: &'a [Value], args: &str) -> Option<&'a Value> {
    of_kind(events, "process_exec")
        .into_iter()
        .find(|e| e["process"]["arguments"] == args)
}

/// Acceptance (issue 9): a process in a runc container carries the container id and, with a
/// Pod served for that container, namespace, name, labels and workload; its events waited
/// for the pod, which arrived only after a 410 Gone and a re-list.
#[test]
fn k8s_pod_identity_from_list_and_watch() {
    let _g = serial();
    let api = FakeApi::start();
    let dir = scratch_dir("k8s-bundles");
    let kubeconfig = api.kubeconfig(&dir);
    let agent = Agent::start(
        "k8s-identity",
        &[
            "--enable-k8s-api",
            &format!("--k8s-kubeconfig-path={}", kubeconfig.display()),
            "--k8s-pod-wait=20s",
        ],
    );
    let name = format!("vigil-it-k8s-{}", std::process::id());
    let cgroup = format!("/kubepods/besteffort/poduid-api/{ID}");
    let ctr = RuncContainer::start(&dir, &name, &cgroup, "while :; do /bin/sleep 0.23; done");
    // The container's processes are running; its pod is not known yet. Let them wait a
    // moment, then let the watch expire so that the re-list brings the pod.
    std::thread::sleep(Duration::from_millis(700));
    let before = agent.events();
    assert!(
        exec_with_args(&before, "0.23").is_none(),
        "an event went out before its pod was known"
    );
    api.release.store(true, Ordering::Relaxed);
    let events = agent.wait_for(
        "a container exec with its pod",
        Duration::from_secs(20),
        |ev| exec_with_args(ev, "0.23").is_some(),
    );
    drop(ctr);

    let e = exec_with_args(&events, "0.23").unwrap();
    let p = &e["process"];
    assert_eq!(p["docker"], DOCKER);
    let pod = &p["pod"];
    assert_eq!(pod["namespace"], "payments");
    assert_eq!(pod["name"], "api-7d9f8c6b5-x7k2p");
    assert_eq!(pod["uid"], "uid-api");
    assert_eq!(pod["pod_labels"]["app"], "api");
    assert_eq!(pod["workload"], "api");
    assert_eq!(pod["workload_kind"], "Deployment");
    let c = &pod["container"];
    assert_eq!(c["id"], format!("containerd://{ID}"));
    assert_eq!(c["name"], "main");
    assert_eq!(c["image"]["name"], "registry.example/api:1.0");
    assert_eq!(c["image"]["id"], "registry.example/api@sha256:0123");
    assert_eq!(c["start_time"], "2026-11-28T20:00:01Z");
    // The sleep is a child of the container's init (pid 1): its own pid there is not 1.
    assert!(c["pid"].as_u64().unwrap() > 1, "{c}");
    // The parent (the container's init shell) carries the pod too, with pid 1.
    assert_eq!(e["parent"]["pod"]["container"]["pid"], 1);
    // Annotations only with --enable-pod-annotations.
    assert!(pod.get("pod_annotations").is_none());
    // Every line, pods included, is valid Tetragon JSON for protobuf's own parser.
    crate::proto_check::assert_lines_parse_with_protobuf(&events);

    // The transcript the client went through: list, watch (bookmark, 410), list, watch.
    let reqs = api.requests.lock().unwrap().clone();
    assert!(reqs.len() >= 4, "{reqs:?}");
    let selector = format!("fieldSelector=spec.nodeName%3D{}", node());
    assert!(
        reqs[0].starts_with("/api/v1/pods?") && reqs[0].contains(&selector),
        "{reqs:?}"
    );
    assert!(
        reqs[1].contains("watch=true") && reqs[1].contains("resourceVersion=100"),
        "{reqs:?}"
    );
    assert!(
        !reqs[2].contains("watch=true"),
        "re-list after 410: {reqs:?}"
    );
    assert!(
        reqs[3].contains("watch=true") && reqs[3].contains("resourceVersion=200"),
        "{reqs:?}"
    );
    drop(reqs);
    agent.stop();
}

/// Without a pod for its container, an event goes out after --k8s-pod-wait, without `pod`.
#[test]
fn k8s_unknown_container_goes_out_after_the_wait() {
    let _g = serial();
    let api = FakeApi::start();
    let dir = scratch_dir("k8s-unknown-bundles");
    let kubeconfig = api.kubeconfig(&dir);
    let agent = Agent::start(
        "k8s-unknown",
        &[
            "--enable-k8s-api",
            &format!("--k8s-kubeconfig-path={}", kubeconfig.display()),
            "--k8s-pod-wait=1s",
        ],
    );
    const LONELY: &str = "1ce1ce1ce0123456789abcdef0123456789abcdef0123456789abcdef1ce1ce1";
    let name = format!("vigil-it-k8s-unknown-{}", std::process::id());
    let cgroup = format!("/kubepods/besteffort/poduid-none/{LONELY}");
    let ctr = RuncContainer::start(&dir, &name, &cgroup, "while :; do /bin/sleep 0.24; done");
    let events = agent.wait_for(
        "a container exec without pod",
        Duration::from_secs(10),
        |ev| exec_with_args(ev, "0.24").is_some(),
    );
    drop(ctr);
    agent.stop();
    let p = &exec_with_args(&events, "0.24").unwrap()["process"];
    assert_eq!(p["docker"], &LONELY[..31]);
    assert!(p.get("pod").is_none(), "{p}");
}

/// A kubeconfig that cannot be read stops the agent at start with one line naming the flag.
#[test]
fn k8s_bad_kubeconfig_is_one_clear_error() {
    let dir = scratch_dir("k8s-bad-kubeconfig");
    let out = std::process::Command::new(vigil_bin())
        .args(["agent", "--enable-k8s-api", "--health-server-address="])
        .arg(format!("--k8s-kubeconfig-path={}/missing", dir.display()))
        .arg(format!(
            "--server-address=unix://{}/vigil.sock",
            dir.display()
        ))
        .arg("--state-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = format!("--k8s-kubeconfig-path {}/missing", dir.display());
    assert_eq!(stderr.matches(&line).count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}
