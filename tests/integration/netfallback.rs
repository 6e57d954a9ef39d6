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
    // A UDP connect to the same address is not TCP: the Protocol filter lets it through.
    let udp = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    udp.connect(("127.0.0.2", port)).expect("UDP is not denied");

    let me = u64::from(std::process::id());
    let events = agent.wait_for("the Override event", WAIT, |ev| {
        of_kind(ev, "process_kprobe")
            .iter()
            .any(|e| e["policy_name"] == "deny-127-0-0-2" && pid_of(e) == me)
    });
    let mine: Vec<_> = of_kind(&events, "process_kprobe")
        .into_iter()
        .filter(|e| e["policy_name"] == "deny-127-0-0-2")
        .collect();
    assert_eq!(mine.len(), 1, "only the denied connect matches: {mine:?}");
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
