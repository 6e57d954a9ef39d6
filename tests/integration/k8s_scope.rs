//! Pod-scoped policies filtered in the kernel by cgroup (issue 9): a TracingPolicyNamespaced
//! applies to its namespace's pods only, a podSelector policy follows pod labels. Real runc
//! containers; the pods and policies come from a local HTTP server speaking list and watch,
//! whose watch streams get the events the test pushes.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::containers::Container as RuncContainer;
use crate::harness::*;

const WAIT: Duration = Duration::from_secs(20);

/// Objects served per resource path (`/api/v1/pods`, `/apis/cilium.io/...`): the list, and
/// watch events pushed by the test, which every watch of that path streams.
#[derive(Default)]
struct Served {
    lists: Vec<(String, Vec<Value>)>,
    events: Vec<(String, String)>,
}

pub(crate) struct FakeApi {
    port: u16,
    served: Arc<Mutex<Served>>,
    stop: Arc<AtomicBool>,
}

pub(crate) const PODS: &str = "/api/v1/pods";
pub(crate) const TPN: &str = "/apis/cilium.io/v1alpha1/tracingpoliciesnamespaced";
pub(crate) const TP: &str = "/apis/cilium.io/v1alpha1/tracingpolicies";

fn respond(mut s: TcpStream, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

impl FakeApi {
    pub(crate) fn start(lists: Vec<(&str, Vec<Value>)>) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(Mutex::new(Served {
            lists: lists
                .into_iter()
                .map(|(p, items)| (p.to_string(), items))
                .collect(),
            events: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (sv, st) = (served.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(s) = conn else { continue };
                let (sv, st) = (sv.clone(), st.clone());
                std::thread::spawn(move || serve(s, &sv, &st));
            }
        });
        FakeApi { port, served, stop }
    }

    /// A watch event (`ADDED`, `MODIFIED`, `DELETED`) for every watch of `path`.
    fn push(&self, path: &str, kind: &str, object: &Value) {
        let line = json!({"type": kind, "object": object}).to_string();
        self.served
            .lock()
            .unwrap()
            .events
            .push((path.to_string(), line));
    }

    pub(crate) fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        fake_kubeconfig(dir, self.port)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(s: TcpStream, served: &Mutex<Served>, stop: &AtomicBool) {
    let mut line = String::new();
    let mut r = BufReader::new(s.try_clone().unwrap());
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut h = String::new();
    while r.read_line(&mut h).is_ok_and(|n| n > 2) {
        h.clear();
    }
    let target = line.split(' ').nth(1).unwrap_or("").to_string();
    let path = target.split('?').next().unwrap_or("").to_string();
    let watch = target.contains("watch=true") || target.contains("watch=1");
    if !watch {
        let items = served
            .lock()
            .unwrap()
            .lists
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, i)| i.clone())
            .unwrap_or_default();
        let body = json!({"apiVersion": "v1", "kind": "List",
                          "metadata": {"resourceVersion": "1"}, "items": items});
        respond(s, &body.to_string());
        return;
    }
    let mut s = s;
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let _ = s.flush();
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        let lines: Vec<String> = served
            .lock()
            .unwrap()
            .events
            .iter()
            .filter(|(p, _)| *p == path)
            .skip(sent)
            .map(|(_, l)| l.clone())
            .collect();
        for l in lines {
            let data = format!("{l}\n");
            if write!(s, "{:x}\r\n{data}\r\n", data.len()).is_err() {
                return;
            }
            let _ = s.flush();
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = write!(s, "0\r\n\r\n");
}

fn pod(namespace: &str, name: &str, labels: &Value, container_id: &str, rv: u32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
                     "labels": labels, "resourceVersion": rv.to_string()},
        "spec": {"containers": [{"name": "main", "image": "registry.example/app:1.0"}]},
        "status": {"containerStatuses": [{"name": "main",
            "containerID": format!("containerd://{container_id}"),
            "image": "registry.example/app:1.0", "imageID": "", "ready": true,
            "restartCount": 0}]}
    })
}

/// A policy on execve: every exec of a selected container is an event (the filename is
/// the argument), nothing from the host or other pods.
fn exec_policy(kind: &str, name: &str, namespace: Option<&str>, extra: &Value) -> Value {
    let mut spec = json!({ "kprobes": [{
        "call": "sys_execve", "syscall": true,
        "args": [{ "index": 0, "type": "string" }]
    }]});
    if let Some(o) = extra.as_object() {
        for (k, v) in o {
            spec[k] = v.clone();
        }
    }
    let mut meta = json!({"name": name, "generation": 1, "resourceVersion": "5"});
    if let Some(ns) = namespace {
        meta["namespace"] = ns.into();
    }
    json!({"apiVersion": "cilium.io/v1alpha1", "kind": kind, "metadata": meta, "spec": spec})
}

/// A runc container whose rootfs also has `applets` (busybox). Each container execs its own
/// applets, so an event's filename says which container it came from (the process of an
/// exec event is `runc init`, which was started outside the container).
fn container(dir: &Path, tag: &str, id: &str, applets: &[&str]) -> RuncContainer {
    let name = format!("vigil-scope-{tag}-{}", std::process::id());
    let cgroup = format!("/kubepods/besteffort/pod-{tag}/{id}");
    let c = RuncContainer::start(dir, &name, &cgroup, "exec /bin/sleep 1000");
    let bin = dir.join(format!("bundle-{name}/rootfs/bin"));
    for applet in applets {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    c
}

fn execs<'a>(events: &'a [Value], policy: &str, file: &str) -> Vec<&'a Value> {
    of_kind(events, "process_kprobe")
        .into_iter()
        .filter(|e| e["policy_name"] == policy && e["args"][0]["string_arg"] == file)
        .collect()
}

fn policy_events<'a>(events: &'a [Value], policy: &str) -> Vec<&'a Value> {
    of_kind(events, "process_kprobe")
        .into_iter()
        .filter(|e| e["policy_name"] == policy)
        .collect()
}

/// Execs `file` in `c` until the agent reports it (the scope fills asynchronously).
fn exec_until_seen(agent: &Agent, c: &RuncContainer, policy: &str, file: &str) {
    let deadline = Instant::now() + WAIT;
    while execs(&agent.events(), policy, file).is_empty() {
        assert!(Instant::now() < deadline, "no {policy} event for {file}");
        c.exec(&[file]);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for an event of `policy` for `file` after the first `from` events; returns the
/// events after `from`.
fn wait_after(agent: &Agent, from: usize, policy: &str, file: &str) -> Vec<Value> {
    let events = agent.wait_for(file, WAIT, |ev| {
        !execs(&ev[from.min(ev.len())..], policy, file).is_empty()
    });
    events[from..].to_vec()
}

fn listed(agent: &Agent) -> Vec<Value> {
    let (code, out, err) = agent.cli(&["tracingpolicy", "list", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["policies"].as_array().cloned().unwrap_or_default()
}

/// The kernel's posted counter of the policy `namespace/name`, if it is listed.
fn posted(agent: &Agent, name: &str, namespace: &str) -> Option<u64> {
    listed(agent)
        .iter()
        .find(|p| p["name"] == name && p["namespace"].as_str().unwrap_or("") == namespace)
        .map(|p| {
            p["stats"]["action_counters"]["post"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        })
}

fn wait_listed(agent: &Agent, name: &str, namespace: &str, listed: bool) {
    let deadline = Instant::now() + WAIT;
    while posted(agent, name, namespace).is_some() != listed {
        assert!(
            Instant::now() < deadline,
            "{namespace}/{name} listed should be {listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Acceptance (issue 9): a TracingPolicyNamespaced in `a` produces events for the pod in `a`
/// and none for the identical pod in `b`; a same-name policy in `b` coexists; deleting the
/// object removes the policy.
#[test]
fn k8s_namespaced_policy_applies_to_its_namespace_only() {
    let _g = serial();
    const ID_A: &str = "aaaa0000aaaa0000aaaa0000aaaa0000aaaa0000aaaa0000aaaa0000aaaa0000";
    const ID_B: &str = "bbbb0000bbbb0000bbbb0000bbbb0000bbbb0000bbbb0000bbbb0000bbbb0000";
    const NAME: &str = "scoped-exec";
    let dir = scratch_dir("k8s-scope-ns-bundles");
    let ca = container(&dir, "a", ID_A, &["true", "echo"]);
    let cb = container(&dir, "b", ID_B, &["pwd", "uname"]);
    let in_a = exec_policy("TracingPolicyNamespaced", NAME, Some("a"), &Value::Null);
    let api = FakeApi::start(vec![
        (
            PODS,
            vec![
                pod("a", "web", &json!({"app": "web"}), ID_A, 2),
                pod("b", "web", &json!({"app": "web"}), ID_B, 3),
            ],
        ),
        (TPN, vec![in_a.clone()]),
        (TP, vec![]),
    ]);
    let agent = Agent::start(
        "k8s-scope-ns",
        &[
            "--enable-k8s-api",
            &format!("--k8s-kubeconfig-path={}", api.kubeconfig(&dir).display()),
        ],
    );
    exec_until_seen(&agent, &ca, NAME, "/bin/true");
    // The identical pod in b execs; then the sentinel in a.
    let from = agent.events().len();
    for _ in 0..3 {
        cb.exec(&["/bin/pwd"]);
        cb.exec(&["/bin/uname"]);
    }
    ca.exec(&["/bin/echo"]);
    let late = wait_after(&agent, from, NAME, "/bin/echo");
    let events = agent.events();
    for file in ["/bin/pwd", "/bin/uname"] {
        assert_eq!(execs(&events, NAME, file).len(), 0, "b's {file} reported");
    }
    assert_eq!(execs(&late, NAME, "/bin/echo").len(), 1);
    // The kernel posted exactly what came out, all of it from a.
    let ours = policy_events(&events, NAME);
    assert!(ours.iter().all(|e| {
        let f = &e["args"][0]["string_arg"];
        *f == "/bin/true" || *f == "/bin/echo"
    }));
    assert_eq!(posted(&agent, NAME, "a"), Some(ours.len() as u64));

    // A same-name policy in b: both listed, each for its own namespace.
    api.push(
        TPN,
        "ADDED",
        &exec_policy("TracingPolicyNamespaced", NAME, Some("b"), &Value::Null),
    );
    wait_listed(&agent, NAME, "b", true);
    exec_until_seen(&agent, &cb, NAME, "/bin/pwd");
    assert!(posted(&agent, NAME, "a").is_some());

    // Deleting a's object removes a's policy only.
    api.push(TPN, "DELETED", &in_a);
    wait_listed(&agent, NAME, "a", false);
    let from = agent.events().len();
    ca.exec(&["/bin/echo"]);
    cb.exec(&["/bin/uname"]);
    let late = wait_after(&agent, from, NAME, "/bin/uname");
    assert_eq!(
        execs(&late, NAME, "/bin/echo").len(),
        0,
        "a's policy still applies after deletion"
    );
    let (_, log) = agent.stop();
    assert!(
        log.contains("Kubernetes TracingPolicyNamespaced loaded"),
        "{log}"
    );
}

/// Acceptance (issue 9): a podSelector policy starts applying to a new matching pod and stops
/// for a relabelled one.
#[test]
fn k8s_pod_selector_follows_new_and_relabelled_pods() {
    let _g = serial();
    const ID_1: &str = "1111000011110000111100001111000011110000111100001111000011110000";
    const ID_2: &str = "2222000022220000222200002222000022220000222200002222000022220000";
    const NAME: &str = "web-exec";
    let dir = scratch_dir("k8s-scope-sel-bundles");
    let c1 = container(&dir, "one", ID_1, &["true", "echo"]);
    let c2 = container(&dir, "two", ID_2, &["pwd", "uname"]);
    let policy = exec_policy(
        "TracingPolicy",
        NAME,
        None,
        &json!({"podSelector": {"matchLabels": {"app": "web"}}}),
    );
    let api = FakeApi::start(vec![
        (PODS, vec![pod("a", "one", &json!({"app": "web"}), ID_1, 2)]),
        (TPN, vec![]),
        (TP, vec![policy]),
    ]);
    let agent = Agent::start(
        "k8s-scope-sel",
        &[
            "--enable-k8s-api",
            &format!("--k8s-kubeconfig-path={}", api.kubeconfig(&dir).display()),
        ],
    );
    exec_until_seen(&agent, &c1, NAME, "/bin/true");
    // Pod two is not known yet: nothing from it.
    let from = agent.events().len();
    c2.exec(&["/bin/pwd"]);
    c1.exec(&["/bin/echo"]);
    wait_after(&agent, from, NAME, "/bin/echo");
    assert_eq!(execs(&agent.events(), NAME, "/bin/pwd").len(), 0);

    // A new matching pod: selected from now on.
    api.push(
        PODS,
        "ADDED",
        &pod("a", "two", &json!({"app": "web"}), ID_2, 4),
    );
    exec_until_seen(&agent, &c2, NAME, "/bin/uname");

    // Pod one relabelled: no longer selected. Its activity, then a sentinel from two, until
    // one's exec is no longer reported (the update is asynchronous).
    api.push(
        PODS,
        "MODIFIED",
        &pod("a", "one", &json!({"app": "db"}), ID_1, 5),
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let from = agent.events().len();
        c1.exec(&["/bin/true"]);
        c2.exec(&["/bin/pwd"]);
        let late = wait_after(&agent, from, NAME, "/bin/pwd");
        if execs(&late, NAME, "/bin/true").is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relabelled pod is still selected"
        );
    }
    agent.stop();
}

/// Without the Kubernetes API nothing says which cgroups are a pod's: a pod-scoped policy is
/// refused with one error naming why, and the agent keeps running.
#[test]
fn k8s_scoped_policy_without_the_api_is_refused() {
    let _g = serial();
    let dir = scratch_dir("k8s-scope-noapi-files");
    let file = dir.join("scoped.json");
    let policy = exec_policy(
        "TracingPolicy",
        "needs-pods",
        None,
        &json!({"podSelector": {"matchLabels": {"app": "web"}}}),
    );
    std::fs::write(&file, policy.to_string()).unwrap();
    let agent = Agent::start("k8s-scope-noapi", &[]);
    let (code, _, err) = agent.cli(&["tracingpolicy", "add", &file.display().to_string()]);
    assert_ne!(code, Some(0));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("needs-pods") && err.contains("--enable-k8s-api"),
        "{err}"
    );
    assert!(listed(&agent).iter().all(|p| p["name"] != "needs-pods"));
    // Per-selector workload scopes are refused by name (not silently ignored).
    let mut workloads = exec_policy("TracingPolicy", "per-selector", None, &Value::Null);
    workloads["spec"]["kprobes"][0]["selectors"] = json!([{"matchWorkloads": [
        {"podSelector": {"matchLabels": {"app": "web"}}}]}]);
    std::fs::write(&file, workloads.to_string()).unwrap();
    let (code, _, err) = agent.cli(&["tracingpolicy", "add", &file.display().to_string()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("matchWorkloads"), "{err}");
    agent.stop();
}

const NODES: &str = "/api/v1/nodes";

fn node(labels: &Value, rv: u32) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": "this-node", "labels": labels, "resourceVersion": rv.to_string()}})
}

fn state(agent: &Agent, name: &str) -> String {
    listed(agent)
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn wait_state(agent: &Agent, name: &str, want: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = state(agent, name);
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: {now}, expected {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// nodeSelector: a cluster policy whose selector does not select this node's labels is
/// listed as skipped and not loaded; relabelling the node swaps which one runs. Events carry
/// the node's labels (`node_labels`).
#[test]
fn k8s_node_selector_and_node_labels() {
    let _g = serial();
    let dir = scratch_dir("k8s-scope-node-files");
    let edge = exec_policy(
        "TracingPolicy",
        "edge-only",
        None,
        &json!({"nodeSelector": {"matchLabels": {"role": "edge"}}}),
    );
    let core = exec_policy(
        "TracingPolicy",
        "core-only",
        None,
        &json!({"nodeSelector": {"matchExpressions": [
            {"key": "role", "operator": "In", "values": ["core"]}]}}),
    );
    let api = FakeApi::start(vec![
        (NODES, vec![node(&json!({"role": "edge", "zone": "z1"}), 1)]),
        (PODS, vec![]),
        (TPN, vec![]),
        (TP, vec![edge, core]),
    ]);
    let agent = Agent::start(
        "k8s-scope-node",
        &[
            "--enable-k8s-api",
            &format!("--k8s-kubeconfig-path={}", api.kubeconfig(&dir).display()),
        ],
    );
    wait_state(&agent, "edge-only", "TP_STATE_ENABLED");
    wait_state(&agent, "core-only", "TP_STATE_SKIPPED");
    // The loaded one posts (every exec: the policy is not pod-scoped), with node labels.
    let probe = dir.join("probe");
    std::os::unix::fs::symlink("/bin/true", &probe).unwrap();
    let file = probe.display().to_string();
    let deadline = Instant::now() + WAIT;
    while execs(&agent.events(), "edge-only", &file).is_empty() {
        assert!(Instant::now() < deadline, "edge-only never posted");
        run(&mut std::process::Command::new(&probe));
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = agent.events();
    let labels_of = |events: &[Value], policy: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| {
                e["process_kprobe"]["policy_name"] == policy
                    && e["process_kprobe"]["args"][0]["string_arg"] == file.as_str()
            })
            .map(|e| e["node_labels"].clone())
            .collect()
    };
    let edge_labels = labels_of(&events, "edge-only");
    assert!(!edge_labels.is_empty());
    assert!(
        edge_labels
            .iter()
            .all(|l| *l == json!({"role": "edge", "zone": "z1"})),
        "{edge_labels:?}"
    );
    assert!(execs(&events, "core-only", &file).is_empty());

    // The node is relabelled: core-only loads, edge-only is unloaded and listed skipped.
    api.push(NODES, "MODIFIED", &node(&json!({"role": "core"}), 2));
    wait_state(&agent, "core-only", "TP_STATE_ENABLED");
    wait_state(&agent, "edge-only", "TP_STATE_SKIPPED");
    let from = agent.events().len();
    run(&mut std::process::Command::new(&probe));
    let late = wait_after(&agent, from, "core-only", &file);
    assert!(execs(&late, "edge-only", &file).is_empty());
    assert_eq!(labels_of(&late, "core-only")[0], json!({"role": "core"}));
    agent.stop();
}

/// Pods on the parent and the ancestors (issue 9): a process two shells deep in a container
/// has its container's pod on `process`, `parent` and the in-container ancestor.
#[test]
fn k8s_pods_on_parent_and_ancestors() {
    let _g = serial();
    const ID: &str = "3333000033330000333300003333000033330000333300003333000033330000";
    let dir = scratch_dir("k8s-scope-anc-bundles");
    let c = container(&dir, "anc", ID, &["true"]);
    let api = FakeApi::start(vec![
        (PODS, vec![pod("a", "deep", &json!({"app": "deep"}), ID, 2)]),
        (TPN, vec![]),
        (TP, vec![]),
    ]);
    let agent = Agent::start(
        "k8s-scope-anc",
        &[
            "--enable-k8s-api",
            &format!("--k8s-kubeconfig-path={}", api.kubeconfig(&dir).display()),
            "--enable-ancestors",
            "base",
        ],
    );
    // `; :` keeps each shell from exec'ing its last command: three images in a chain.
    c.exec(&["/bin/sh", "-c", "/bin/sh -c '/bin/true; :'; :"]);
    // Applets run as /bin/busybox; the innermost exec is the one whose parent is the inner
    // shell.
    let inner = |e: &Value| e["process_exec"]["parent"]["arguments"] == "-c \"/bin/true; :\"";
    let events = agent.wait_for("the innermost exec", WAIT, |ev| ev.iter().any(inner));
    let e = &events.iter().find(|e| inner(e)).unwrap()["process_exec"];
    assert_eq!(e["process"]["pod"]["name"], "deep", "{e}");
    assert_eq!(e["parent"]["binary"], "/bin/busybox", "{e}");
    assert_eq!(e["parent"]["pod"]["name"], "deep", "{e}");
    let ancestors = e["ancestors"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        ancestors.first().map(|a| &a["arguments"]),
        Some(&json!("-c \"/bin/sh -c '/bin/true; :'; :\"")),
        "{e}"
    );
    assert_eq!(ancestors[0]["pod"]["name"], "deep", "{e}");
    assert_eq!(ancestors[0]["pod"]["namespace"], "a", "{e}");
    // Above the container's shells, runc's processes are the host's: no pod.
    assert!(
        ancestors.iter().skip(1).all(|a| a.get("pod").is_none()),
        "{e}"
    );
    agent.stop();
}
