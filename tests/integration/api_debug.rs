//! `vigil debug` (programs, maps, process cache), `vigil loglevel`, the socket's mode and
//! group, and gRPC policies that survive a restart.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn cli(sock: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(vigil_bin())
        .args(args)
        .arg("--server-address")
        .arg(sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(sock: &str, args: &[&str]) -> String {
    let (code, out, err) = cli(sock, args);
    assert_eq!(code, 0, "vigil {args:?}: {err}");
    out
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn sock_of(agent: &Agent) -> String {
    format!(
        "unix://{}",
        agent.events_path.with_file_name("vigil.sock").display()
    )
}

/// id -> name of every program (or map) on the host, as bpftool lists them.
fn bpftool(kind: &str) -> BTreeMap<u64, String> {
    let out = Command::new("bpftool")
        .args([kind, "show", "--json"])
        .output()
        .expect("bpftool");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|o| Some((o["id"].as_u64()?, o["name"].as_str()?.to_string())))
        .collect()
}

const POLICY: &str = r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: dbg-open
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
        values: ["/nonexistent/vigil-debug-test"]
"#;

#[test]
fn debug_lists_the_agents_programs_maps_and_process_cache() {
    let _g = serial();
    let dir = scratch_dir("dbg-files");
    let policy = dir.join("p.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let agent = Agent::start("dbg", &["--tracing-policy", policy.to_str().unwrap()]);
    let sock = sock_of(&agent);
    // Started before the dump: it must be in the cache.
    let mut sleeper = Command::new("/usr/bin/sleep").arg("30").spawn().unwrap();

    // Programs: the lifecycle ids the agent logged at start, and the policy's program.
    let log = std::fs::read_to_string(&agent.stderr_path).unwrap();
    let lifecycle: Vec<u64> = log
        .split("program_ids=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let progs = json_lines(&ok(&sock, &["debug", "progs", "-o", "json"]));
    let host = bpftool("prog");
    for p in &progs {
        assert_eq!(p["agent_pid"], agent.pid(), "{p}");
        let id = p["id"].as_u64().unwrap();
        // The kernel keeps 15 characters of a name; bpftool completes it from BTF.
        let name = p["name"].as_str().unwrap();
        assert!(
            name.len() <= 15 && host.get(&id).is_some_and(|h| h.starts_with(name)),
            "{p} vs bpftool {:?}",
            host.get(&id)
        );
    }
    let ids: Vec<u64> = progs.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    for id in &lifecycle {
        assert!(
            ids.contains(id),
            "lifecycle program {id} missing: {progs:?}"
        );
    }
    let names: Vec<&str> = progs.iter().map(|p| p["name"].as_str().unwrap()).collect();
    for n in ["vigil_exec", "vigil_fork", "vigil_exit", "vigil_sys_enter"] {
        assert!(names.contains(&n), "{n} missing: {names:?}");
    }

    // Run counts over a window with statistics on: every exec runs vigil_exec.
    let runner = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..20 {
            Command::new("/usr/bin/true").status().unwrap();
        }
    });
    let progs = json_lines(&ok(
        &sock,
        &["debug", "progs", "--stats", "2s", "-o", "json"],
    ));
    runner.join().unwrap();
    let exec = progs.iter().find(|p| p["name"] == "vigil_exec").unwrap();
    assert!(exec["run_cnt"].as_u64().unwrap() >= 20, "{exec}");
    assert!(exec["run_time_ns"].as_u64().unwrap() > 0, "{exec}");
    let text = ok(&sock, &["debug", "progs"]);
    assert!(
        text.starts_with("ID") && text.contains("vigil_exec"),
        "{text}"
    );

    // Maps: the agent's, named as bpftool names them, with memlock.
    let maps = json_lines(&ok(&sock, &["debug", "maps", "-o", "json"]));
    let host = bpftool("map");
    for m in &maps {
        let id = m["id"].as_u64().unwrap();
        let name = m["name"].as_str().unwrap();
        assert!(
            host.get(&id).is_some_and(|h| h.starts_with(name)),
            "{m} vs bpftool {:?}",
            host.get(&id)
        );
    }
    // The kernel reports memory in use: the ring buffer has its pages, an empty trie none.
    let ring = maps.iter().find(|m| m["name"] == "vigil_events").unwrap();
    assert!(ring["memlock"].as_u64().unwrap() >= 1 << 20, "{ring}");
    let names: Vec<&str> = maps.iter().map(|m| m["name"].as_str().unwrap()).collect();
    for n in ["vigil_events", "vigil_procs", "vigil_sys_hooks"] {
        assert!(names.contains(&n), "{n} missing: {names:?}");
    }

    // Process cache: the sleeper, with its binary and exec id.
    let cache = json_lines(&ok(&sock, &["debug", "dump", "processcache"]));
    // (The fork before its exec is cached too, as the test binary's clone.)
    let s = cache
        .iter()
        .find(|p| p["process"]["pid"] == sleeper.id() && p["process"]["binary"] == "/usr/bin/sleep")
        .unwrap_or_else(|| panic!("sleeper {} not in the cache dump", sleeper.id()));
    assert_eq!(s["process"]["arguments"], "30", "{s}");
    assert!(
        s["process"]["exec_id"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    // Log level, read and changed at run time.
    assert_eq!(ok(&sock, &["loglevel", "get"]), "Current log level: info\n");
    assert_eq!(
        ok(&sock, &["loglevel", "set", "debug"]),
        "Log level set to: debug\n"
    );
    assert_eq!(
        ok(&sock, &["loglevel", "get"]),
        "Current log level: debug\n"
    );
    let (code, _, err) = cli(&sock, &["loglevel", "set", "loud"]);
    assert!(code == 1 && err.contains("loud"), "{err}");
    agent.stop();

    // No agent: one line naming the socket.
    let (code, _, err) = cli(&sock, &["debug", "progs"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&sock) && err.contains("vigil agent"), "{err}");
}

fn stat(path: &std::path::Path) -> String {
    let out = Command::new("stat")
        .args(["-c", "%a %u %g"])
        .arg(path)
        .output()
        .expect("stat");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn socket_is_root_only_or_group_shared() {
    let _g = serial();
    let agent = Agent::start("sock-default", &[]);
    let path = agent.events_path.with_file_name("vigil.sock");
    assert_eq!(stat(&path), "600 0 0");
    agent.stop();
    let agent = Agent::start("sock-group", &["--server-socket-group", "1"]);
    let path = agent.events_path.with_file_name("vigil.sock");
    assert_eq!(stat(&path), "660 0 1");
    // A group that does not exist is named, and the agent does not start.
    let out = Command::new(vigil_bin())
        .args([
            "agent",
            "--server-address=unix:///tmp/vigil-it-nogroup.sock",
            "--health-server-address=",
            "--server-socket-group",
            "no-such-group-vigil",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no-such-group-vigil"), "{err}");
    agent.stop();
}

#[test]
fn grpc_policies_persist_across_restarts() {
    let _g = serial();
    let keep = scratch_dir("persist-store");
    let files = scratch_dir("persist-files");
    let target = files.join("watched");
    std::fs::write(&target, "x").unwrap();
    let yaml = POLICY
        .replace("dbg-open", "kept")
        .replace("/nonexistent/vigil-debug-test", target.to_str().unwrap());
    let policy = files.join("kept.yaml");
    std::fs::write(&policy, yaml).unwrap();
    let flags = [
        "--persist-grpc-policies",
        "--persist-grpc-policies-dir",
        keep.to_str().unwrap(),
    ];
    let first = Agent::start("persist-1", &flags);
    ok(&sock_of(&first), &["tp", "add", policy.to_str().unwrap()]);
    first.stop();

    let second = Agent::start("persist-2", &flags);
    let sock = sock_of(&second);
    let list: Value = serde_json::from_str(&ok(&sock, &["tp", "list", "-o", "json"])).unwrap();
    let p = &list["policies"][0];
    assert_eq!(
        (&p["name"], &p["domain"], &p["state"]),
        (
            &Value::from("kept"),
            &Value::from("grpc"),
            &Value::from("TP_STATE_ENABLED")
        ),
        "{list}"
    );
    // Back in the kernel, not only in the list.
    let cat = run(Command::new("/usr/bin/cat").arg(&target));
    second.wait_for(
        "the restored policy's event",
        Duration::from_secs(15),
        |ev| {
            of_kind(ev, "process_kprobe")
                .iter()
                .any(|e| e["policy_name"] == "kept" && pid_of(e) == u64::from(cat))
        },
    );
    ok(&sock, &["tp", "delete", "kept"]);
    second.stop();

    let third = Agent::start("persist-3", &flags);
    let list: Value =
        serde_json::from_str(&ok(&sock_of(&third), &["tp", "list", "-o", "json"])).unwrap();
    assert!(
        list.get("policies").is_none(),
        "deleted policy came back: {list}"
    );
    third.stop();
}
