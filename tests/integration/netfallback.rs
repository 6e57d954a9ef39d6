//! Network enforcement without kernel-function hooks (vigil's extension): on a kernel with
//! no kprobes, fentry or BPF LSM (this host), an enforcing policy on
//! `security_socket_connect` runs in cgroup sock_addr programs on the root cgroup v2.
//! Expected values are written here by hand.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::kernel_caps;
use crate::kfuncs_net::{connect, listener};

const WAIT: Duration = Duration::from_secs(20);

/// Ids of every BPF program and link in the kernel (bpftool's view).
fn bpf_ids() -> (Vec<u64>, Vec<u64>) {
    let ids = |what: &str| -> Vec<u64> {
        let out = Command::new("bpftool")
            .args([what, "show", "-j"])
            .output()
            .expect("bpftool");
        let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut ids: Vec<u64> = v.iter().filter_map(|p| p["id"].as_u64()).collect();
        ids.sort_unstable();
        ids
    };
    (ids("prog"), ids("link"))
}

fn no_function_hooks() -> bool {
    let m = kernel_caps::matrix();
    let column = kernel_caps::current_column();
    let absent = ["kprobe", "fentry", "lsm"]
        .iter()
        .all(|k| !m.expects(&column, k).unwrap_or(true));
    if !absent {
        eprintln!("not applicable: {column} has kernel-function hooks (the fallback is not used)");
    }
    absent
}

#[test]
fn connect_deny_runs_on_cgroup_hooks_where_kernel_functions_cannot_be_hooked() {
    if !no_function_hooks() {
        return;
    }
    let _g = serial();
    let (_l, port) = listener();
    let dir = scratch_dir("netfallback-connect-files");
    let yaml = format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: deny-127-0-0-2
spec:
  kprobes:
  - call: "security_socket_connect"
    syscall: false
    args:
    - index: 0
      type: "socket"
    - index: 1
      type: "sockaddr"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Protocol"
        values: ["IPPROTO_TCP"]
      - index: 1
        operator: "SAddr"
        values: ["127.0.0.2/32"]
      - index: 1
        operator: "SPort"
        values: ["{port}"]
      matchActions:
      - action: Override
        argError: -1
"#
    );
    let policy = dir.join("deny.yaml");
    std::fs::write(&policy, yaml).unwrap();
    let agent = Agent::start("netfallback-connect", &[]);
    // The agent's own objects are loaded: what the policy adds is what must go again.
    let before = bpf_ids();
    let (code, out, err) = agent.cli(&["tracingpolicy", "add", &policy.display().to_string()]);
    assert_eq!(code, Some(0), "{out}{err}");
    let cgroup = Command::new("bpftool")
        .args(["cgroup", "show", &cgroup2_root()])
        .output()
        .expect("bpftool cgroup show");
    let attached = String::from_utf8_lossy(&cgroup.stdout);
    assert!(
        attached.contains("vigil_connect4") && attached.contains("vigil_connect6"),
        "both connect programs are on the root cgroup:\n{attached}"
    );
    let err = connect("127.0.0.2", port).expect_err("the connect to 127.0.0.2 is denied");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    connect("127.0.0.1", port).expect("127.0.0.1 still connects");
    // An IPv4-mapped IPv6 address is the IPv4 address it carries: an AF_INET6 socket gets
    // the same deny (it was a bypass).
    let err = connect("[::ffff:127.0.0.2]", port)
        .expect_err("the connect to ::ffff:127.0.0.2 from an AF_INET6 socket is denied");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    connect("[::ffff:127.0.0.1]", port).expect("::ffff:127.0.0.1 still connects");
    // A UDP connect to the same address is not TCP: the Protocol filter lets it through.
    let udp = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    udp.connect(("127.0.0.2", port)).expect("UDP is not denied");

    let me = u64::from(std::process::id());
    let events = agent.wait_for("both Override events", WAIT, |ev| {
        of_kind(ev, "process_kprobe")
            .iter()
            .filter(|e| e["policy_name"] == "deny-127-0-0-2" && pid_of(e) == me)
            .count()
            >= 2
    });
    let mine: Vec<_> = of_kind(&events, "process_kprobe")
        .into_iter()
        .filter(|e| e["policy_name"] == "deny-127-0-0-2")
        .collect();
    assert_eq!(mine.len(), 2, "only the denied connects match: {mine:?}");
    assert_eq!(mine[1]["action"], "KPROBE_ACTION_OVERRIDE");
    assert_eq!(mine[1]["args"][1]["sockaddr_arg"]["family"], "AF_INET6");
    assert_eq!(
        mine[1]["args"][1]["sockaddr_arg"]["addr"],
        "::ffff:127.0.0.2"
    );
    let hit = mine[0];
    assert_eq!(hit["action"], "KPROBE_ACTION_OVERRIDE");
    assert_eq!(hit["function_name"], "security_socket_connect");
    assert_eq!(hit["args"][1]["sockaddr_arg"]["addr"], "127.0.0.2");
    assert_eq!(hit["args"][1]["sockaddr_arg"]["port"], u64::from(port));
    assert_eq!(hit["args"][1]["sockaddr_arg"]["family"], "AF_INET");
    assert_eq!(hit["args"][0]["sock_arg"]["protocol"], "IPPROTO_TCP");
    assert_eq!(hit["args"][0]["sock_arg"]["type"], "SOCK_STREAM");

    // The mechanism is reported per hook: the log, and the policy's sensor in `tp list`.
    let log = std::fs::read_to_string(&agent.stderr_path).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.contains("kernel hook attached")
            && l.contains("security_socket_connect")
            && l.contains("cgroup_sock_addr")),
        "{log}"
    );
    let (code, out, err) = agent.cli(&["tracingpolicy", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("cgroup_sock_addr:security_socket_connect"),
        "{out}"
    );
    let (code, out, err) = agent.cli(&["tracingpolicy", "delete", "deny-127-0-0-2"]);
    assert_eq!(code, Some(0), "{out}{err}");
    connect("127.0.0.2", port).expect("the policy is gone: 127.0.0.2 connects");
    // Programs and links are freed after an RCU grace period: poll.
    let deadline = Instant::now() + WAIT;
    loop {
        let after = bpf_ids();
        if after == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "program/link ids before the policy {before:?} != after its deletion {after:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    agent.stop();
}

fn cgroup2_root() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_string())
        })
        .expect("a cgroup v2 mount")
}

/// Sigkill through the fallback: the connect is denied in the kernel (nothing reaches the
/// listener) and the agent kills the process on the event (no bpf_send_signal there).
#[test]
fn sigkill_on_connect_denies_and_kills_through_the_fallback() {
    use std::os::unix::process::ExitStatusExt;
    if !no_function_hooks() {
        return;
    }
    let _g = serial();
    let (l, port) = listener();
    l.set_nonblocking(true).unwrap();
    let dir = scratch_dir("netfallback-kill-files");
    let yaml = format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: kill-connect
spec:
  kprobes:
  - call: "tcp_connect"
    syscall: false
    args:
    - index: 0
      type: "sock"
    selectors:
    - matchArgs:
      - index: 0
        operator: "DAddr"
        values: ["127.0.0.2/32"]
      - index: 0
        operator: "DPort"
        values: ["{port}"]
      matchBinaries:
      - operator: "In"
        values: ["/usr/bin/bash"]
      matchActions:
      - action: Sigkill
"#
    );
    let policy = dir.join("kill.yaml");
    std::fs::write(&policy, yaml).unwrap();
    let agent = Agent::start(
        "netfallback-kill",
        &["--tracing-policy", &policy.display().to_string()],
    );
    // The test process itself is not bash: it still connects.
    connect("127.0.0.2", port).expect("not a matching binary");
    let _ = l.accept().expect("the test's own connection arrived");
    let started = Instant::now();
    let status = Command::new("/usr/bin/bash")
        .arg("-c")
        .arg(format!(
            "{{ : 3<>/dev/tcp/127.0.0.2/{port}; }} 2>/dev/null; sleep 15"
        ))
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "killed, not finished"
    );
    assert!(
        l.accept().is_err(),
        "the denied connect never reached the listener"
    );
    let events = agent.wait_for("the Sigkill event", WAIT, |ev| {
        of_kind(ev, "process_kprobe")
            .iter()
            .any(|e| e["policy_name"] == "kill-connect")
    });
    let hit = of_kind(&events, "process_kprobe")
        .into_iter()
        .find(|e| e["policy_name"] == "kill-connect")
        .unwrap();
    assert_eq!(hit["action"], "KPROBE_ACTION_SIGKILL");
    assert_eq!(hit["function_name"], "tcp_connect");
    assert_eq!(hit["process"]["binary"], "/usr/bin/bash");
    assert_eq!(hit["args"][0]["sock_arg"]["daddr"], "127.0.0.2");
    assert_eq!(hit["args"][0]["sock_arg"]["dport"], u64::from(port));
    agent.stop();
}

/// The issue-8 rule for the compat corpus on a kernel without kernel-function hooks, read
/// from the policy file itself (not from the agent): a policy whose hooks are all on
/// `security_socket_connect`, `tcp_connect` or `security_socket_bind`, each with a selector
/// that enforces (Override, Sigkill, Signal) and every filter one the cgroup socket context
/// decides exactly (socket: Family, Protocol, and for tcp_connect its peer
/// DAddr/DPort/DPortPriv and Not forms; sockaddr: SAddr/SPort/SPortPriv and Not forms,
/// Family; literal addresses only; matchBinaries/matchPIDs), is loaded by the cgroup
/// fallback, where expected-outcomes.md (written before the fallback) says "refuse".
pub fn runs_on_cgroup_fallback(file: &std::path::Path) -> bool {
    if !kernel_has_no_function_hooks() {
        return false;
    }
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let Ok(doc) = serde_saphyr::from_str::<Value>(&text) else {
        return false;
    };
    let spec = &doc["spec"];
    let Some(spec_obj) = spec.as_object() else {
        return false;
    };
    let hook_sections = [
        "kprobes",
        "tracepoints",
        "uprobes",
        "lsmhooks",
        "usdts",
        "fentries",
    ];
    if spec_obj
        .keys()
        .any(|k| hook_sections.contains(&k.as_str()) && k != "kprobes")
    {
        return false;
    }
    let Some(kprobes) = spec["kprobes"].as_array().filter(|k| !k.is_empty()) else {
        return false;
    };
    kprobes.iter().all(kprobe_fits)
}

fn kernel_has_no_function_hooks() -> bool {
    let m = kernel_caps::matrix();
    let column = kernel_caps::current_column();
    ["kprobe", "fentry", "lsm"]
        .iter()
        .all(|k| !m.expects(&column, k).unwrap_or(true))
}

fn kprobe_fits(k: &Value) -> bool {
    let call = k["call"].as_str().unwrap_or("");
    if ![
        "security_socket_connect",
        "tcp_connect",
        "security_socket_bind",
    ]
    .contains(&call)
        || k["syscall"].as_bool() != Some(false)
        || k["return"].as_bool() == Some(true)
        || !k["data"].is_null()
    {
        return false;
    }
    let tcp = call == "tcp_connect";
    let mut types = std::collections::HashMap::new();
    for a in k["args"].as_array().into_iter().flatten() {
        let (i, t) = (
            a["index"].as_u64().unwrap_or(99),
            a["type"].as_str().unwrap_or(""),
        );
        let ok = match (i, t) {
            (0, "sock" | "socket") => true,
            (1, "sockaddr") | (2, "int") => !tcp,
            _ => false,
        };
        if !ok || !a["resolve"].is_null() || !a["btfType"].is_null() {
            return false;
        }
        types.insert(i, t.to_string());
    }
    let mut enforcing = false;
    for sel in k["selectors"].as_array().into_iter().flatten() {
        let Some(obj) = sel.as_object() else {
            return false;
        };
        let allowed = ["matchArgs", "matchBinaries", "matchPIDs", "matchActions"];
        if obj.keys().any(|key| !allowed.contains(&key.as_str())) {
            return false;
        }
        for a in sel["matchActions"].as_array().into_iter().flatten() {
            let act = a["action"].as_str().unwrap_or("").to_ascii_lowercase();
            match act.as_str() {
                "override" | "sigkill" | "signal" => enforcing = true,
                "post" | "nopost" => {}
                _ => return false,
            }
        }
        for m in sel["matchArgs"].as_array().into_iter().flatten() {
            let idx = m["index"].as_u64().unwrap_or(99);
            let Some(t) = types.get(&idx) else {
                return false;
            };
            let op = m["operator"].as_str().unwrap_or("");
            let sockaddr = t == "sockaddr";
            let ok = match op {
                "Family" => true,
                "Protocol" => !sockaddr,
                "DAddr" | "NotDAddr" | "DPort" | "NotDPort" | "DPortPriv" | "NotDPortPriv" => {
                    tcp && !sockaddr
                }
                "SAddr" | "NotSAddr" | "SPort" | "NotSPort" | "SPortPriv" | "NotSPortPriv" => {
                    sockaddr
                }
                _ => false,
            };
            if !ok {
                return false;
            }
            if op.ends_with("Addr") {
                let literal = m["values"].as_array().into_iter().flatten().all(|v| {
                    let v = v.as_str().unwrap_or("");
                    let ip = v.split_once('/').map_or(v, |(ip, _)| ip);
                    ip.parse::<std::net::IpAddr>().is_ok()
                });
                if !literal {
                    return false;
                }
            }
        }
    }
    enforcing
}

/// bind() through the fallback (bind4/bind6): the denied address fails with the policy's
/// errno, another address binds.
#[test]
fn bind_deny_runs_on_cgroup_hooks_with_the_policy_errno() {
    if !no_function_hooks() {
        return;
    }
    let _g = serial();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let dir = scratch_dir("netfallback-bind-files");
    let yaml = format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: deny-bind
spec:
  kprobes:
  - call: "security_socket_bind"
    syscall: false
    args:
    - index: 0
      type: "socket"
    - index: 1
      type: "sockaddr"
    selectors:
    - matchArgs:
      - index: 1
        operator: "SAddr"
        values: ["127.0.0.2"]
      - index: 1
        operator: "SPort"
        values: ["{port}"]
      matchActions:
      - action: Override
        argError: -13
"#
    );
    let policy = dir.join("bind.yaml");
    std::fs::write(&policy, yaml).unwrap();
    let agent = Agent::start(
        "netfallback-bind",
        &["--tracing-policy", &policy.display().to_string()],
    );
    let err = std::net::TcpListener::bind(("127.0.0.2", port)).expect_err("denied");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("another address binds");
    let events = agent.wait_for("the bind event", WAIT, |ev| {
        of_kind(ev, "process_kprobe")
            .iter()
            .any(|e| e["policy_name"] == "deny-bind")
    });
    agent.stop();
    let mine: Vec<_> = of_kind(&events, "process_kprobe")
        .into_iter()
        .filter(|e| e["policy_name"] == "deny-bind")
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["function_name"], "security_socket_bind");
    assert_eq!(mine[0]["action"], "KPROBE_ACTION_OVERRIDE");
    assert_eq!(mine[0]["args"][1]["sockaddr_arg"]["addr"], "127.0.0.2");
}
