//! TrackSock: events on a socket, raised in another task's context, name the socket's owner.
//! On loopback, data the server sends is received on the client's socket in the sender's
//! context (the softirq runs as the sender leaves the device queue), so a hook on the
//! client's `tcp_rcv_established` sees the server as the current task. With TrackSock at the
//! client's `tcp_connect`, the event names the client. Guest-only (`kfunc_`); expected values
//! are written by hand.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::*;
use crate::kernel_caps;
use crate::kfuncs::wait_or_log;
use crate::kfuncs_net::listener;

fn policy(name: &str, port: u16, track: bool) -> String {
    let track = if track {
        "      matchActions:\n      - action: TrackSock\n        argSock: 0\n"
    } else {
        ""
    };
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: {name}
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
        operator: "DPort"
        values: ["{port}"]
{track}  - call: "tcp_close"
    syscall: false
    args:
    - index: 0
      type: "sock"
    selectors:
    - matchArgs:
      - index: 0
        operator: "DPort"
        values: ["{port}"]
      matchActions:
      - action: UntrackSock
        argSock: 0
  - call: "tcp_rcv_established"
    syscall: false
    message: "client receives"
    args:
    - index: 0
      type: "sock"
    selectors:
    - matchArgs:
      - index: 0
        operator: "DPort"
        values: ["{port}"]
"#
    )
}

/// One exchange: the helper connects and reads; this process accepts and sends. Returns
/// the helper's pid.
fn exchange(l: &std::net::TcpListener) -> u32 {
    let port = l.local_addr().unwrap().port();
    let client = Command::new(helper_bin())
        .args(["tcp-recv", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("helper");
    let pid = client.id();
    let (mut conn, _) = l.accept().expect("accept");
    conn.write_all(b"hello from the server").unwrap();
    drop(conn);
    let out = client.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "21", "{out:?}");
    pid
}

fn receives(events: &[Value], policy: &str) -> Vec<Value> {
    of_policy(events, "process_kprobe", policy)
        .into_iter()
        .filter(|e| e["message"] == "client receives")
        .cloned()
        .collect()
}

#[test]
fn kfunc_track_sock_names_the_owner_of_a_loopback_receive() {
    if !kernel_caps::require("fentry") {
        return;
    }
    let _g = serial();
    let me = u64::from(std::process::id());
    let dir = scratch_dir("kfunc-socktrack-files");

    for (name, track) in [("untracked", false), ("tracked", true)] {
        let (l, port) = listener();
        let path = write_policy(&dir, name, &policy(name, port, track));
        let agent = Agent::start(
            &format!("kfunc-socktrack-{name}"),
            &["--tracing-policy", &path],
        );
        let client = u64::from(exchange(&l));
        let events = wait_or_log(&agent, "the client's receive", |ev| {
            !receives(ev, name).is_empty()
        });
        agent.stop();
        let got = receives(&events, name);
        let pids: Vec<u64> = got.iter().map(pid_of).collect();
        eprintln!("{name}: receive events name pids {pids:?} (client {client}, server {me})");
        if track {
            assert!(
                pids.iter().all(|&p| p == client),
                "TrackSock: every receive on the client's socket names the client: {got:?}"
            );
            assert_eq!(
                got[0]["process"]["binary"],
                helper_bin().display().to_string()
            );
        } else {
            // The data arrives in the sender's context; a segment the client's own syscall
            // processes (its socket backlog) may name the client: some, not all, do.
            assert!(
                pids.iter().any(|&p| p != client),
                "without TrackSock a receive runs in another task's context: {got:?}"
            );
        }
    }
}
