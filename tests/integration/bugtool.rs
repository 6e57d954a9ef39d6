//! `vigil bugtool`: the archive of a running agent with a policy, unpacked and read as a
//! maintainer would; then the same without an agent.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::*;

fn bugtool_policy() -> String {
    OpenatPolicy::new("bugtool-open")
        .path("Equal", &["/nonexistent/vigil-bugtool-test"])
        .yaml()
}

/// Runs `vigil bugtool --out OUT ARGS`; returns the printed path.
fn bugtool(out: &Path, args: &[&str]) -> PathBuf {
    let o = Command::new(vigil_bin())
        .arg("bugtool")
        .arg("--out")
        .arg(out)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "vigil bugtool: {stderr}");
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// Unpacks with the system's tar; file name (without the top directory) -> content.
fn unpack(archive: &Path, into: &Path) -> BTreeMap<String, String> {
    std::fs::create_dir_all(into).unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(st.success(), "tar -xzf {}", archive.display());
    let tops: Vec<_> = std::fs::read_dir(into).unwrap().flatten().collect();
    assert_eq!(tops.len(), 1, "one top directory in the archive");
    std::fs::read_dir(tops[0].path())
        .unwrap()
        .flatten()
        .map(|e| {
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            let name = e.file_name().to_string_lossy().into_owned();
            assert_eq!(mode, 0o600, "{name} mode {mode:o}");
            (name, std::fs::read_to_string(e.path()).unwrap())
        })
        .collect()
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn uname_r() -> String {
    let o = Command::new("uname").arg("-r").output().unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// (id, name) of the BPF programs `pid` holds, from its fdinfo and bpftool.
fn programs_of(pid: u32) -> Vec<(u64, String)> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        ids.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|v| v.trim().parse::<u64>().ok()),
        );
    }
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .expect("bpftool");
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .filter_map(|p| Some((p["id"].as_u64()?, p["name"].as_str()?.to_string())))
        .filter(|(id, _)| ids.contains(id))
        .collect()
}

#[test]
fn bugtool_archive_of_a_running_agent_and_without_one() {
    let _g = serial();
    let env_marker = format!("vigil-bugtool-env-marker-{}", std::process::id());
    let argv_marker = format!("vigil-bugtool-argv-marker-{}", std::process::id());
    let dir = scratch_dir("bugtool-files");
    let policy = write_policy(&dir, "bugtool.yaml", &bugtool_policy());
    let agent = Agent::start_with_env(
        "bugtool",
        &["--tracing-policy", &policy],
        &[("VIGIL_BUGTOOL_TEST_MARKER", env_marker.as_str())],
    );
    let sock = format!(
        "unix://{}",
        agent.events_path.with_file_name("vigil.sock").display()
    );
    // A process with a secret-looking argument, alive while bugtool reads the cache.
    let mut sleeper = Command::new("sh")
        .args(["-c", "sleep 30", &argv_marker])
        .spawn()
        .unwrap();
    agent.wait_for(
        "the sleeper's exec",
        std::time::Duration::from_secs(10),
        |evs| !execs_of_pid(evs, sleeper.id()).is_empty(),
    );
    // Counters with something in them: an open the policy matches.
    let _ = std::fs::File::open("/nonexistent/vigil-bugtool-test");

    let out = dir.join("bt.tar.gz");
    let printed = bugtool(&out, &["--server-address", &sock]);
    assert_eq!(printed, out);
    assert_eq!(mode_of(&out), 0o600);
    let files = unpack(&out, &dir.join("unpacked"));
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    for part in [
        "summary.txt",
        "version.txt",
        "agent.txt",
        "kernel.txt",
        "probe.txt",
        "probe.json",
        "bpf.txt",
        "policies.txt",
        "agent-log.txt",
        "process-cache.txt",
    ] {
        assert!(names.contains(&part), "{part} missing: {names:?}");
    }
    assert!(
        files["summary.txt"].contains(&format!("agent: running, pid {}", agent.pid())),
        "{}",
        files["summary.txt"]
    );
    let version = Command::new(vigil_bin()).arg("version").output().unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    assert!(
        files["version.txt"].contains(version.trim()),
        "{}",
        files["version.txt"]
    );
    // The flags the agent runs with, from the agent.
    let agent_txt = &files["agent.txt"];
    assert!(
        agent_txt.contains(&format!("--server-address={sock}")),
        "{agent_txt}"
    );
    assert!(
        agent_txt.contains(&format!("--tracing-policy={policy}")),
        "{agent_txt}"
    );
    assert!(
        agent_txt.contains(&format!("agent pid: {}\n", agent.pid())),
        "{agent_txt}"
    );
    // Kernel facts of this kernel.
    let release = uname_r();
    assert!(
        files["kernel.txt"]
            .lines()
            .any(|l| l == format!("release: {release}")),
        "{}",
        files["kernel.txt"]
    );
    assert!(files["kernel.txt"].contains("BTF /sys/kernel/btf/vmlinux: present"));
    let probe: Value = serde_json::from_str(&files["probe.json"]).unwrap();
    assert_eq!(probe["kernel"]["release"], release.as_str());
    assert!(probe["features"].as_array().unwrap().len() >= 20);
    assert!(files["probe.txt"].contains("tracepoint"));
    // Every program the agent holds, by id and name as bpftool sees them.
    let progs = programs_of(agent.pid());
    assert!(!progs.is_empty(), "the agent holds no programs?");
    for (id, name) in &progs {
        // The kernel keeps 15 characters of a name; bpftool completes longer ones from BTF.
        let kernel_name = &name[..name.len().min(15)];
        assert!(
            files["bpf.txt"].contains(&format!("{id}\t{kernel_name}\t")),
            "program {id} {name} not in bpf.txt:\n{}",
            files["bpf.txt"]
        );
    }
    assert!(files["bpf.txt"].contains("maps held by the agent"));
    // The policy with its counters.
    let policies = &files["policies.txt"];
    assert!(policies.contains("bugtool-open"), "{policies}");
    assert!(policies.contains("\"stats\""), "{policies}");
    // The agent's own log lines (the harness sends its stderr to a file).
    assert!(
        files["agent-log.txt"].contains("vigil agent ready"),
        "{}",
        files["agent-log.txt"]
    );
    let cache = &files["process-cache.txt"];
    assert!(cache.contains("process cache: "), "{cache}");
    assert!(
        cache.contains("/usr/bin/sleep") || cache.contains("/bin/sleep"),
        "{cache}"
    );
    for (name, text) in &files {
        assert!(
            !text.contains(&env_marker),
            "{name} holds the agent's env value"
        );
        assert!(
            !text.contains(&argv_marker),
            "{name} holds a process argument"
        );
    }
    // The archive bytes too (names, headers).
    let raw = Command::new("sh")
        .arg("-c")
        .arg(format!("zcat {} | grep -c {env_marker}", out.display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&raw.stdout).trim(), "0");

    // An existing file is not overwritten.
    let again = Command::new(vigil_bin())
        .args(["bugtool", "--out"])
        .arg(&out)
        .args(["--server-address", &sock])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains(&out.display().to_string()));

    // Without an agent: says so, collects the rest.
    drop(agent.stop());
    let out2 = dir.join("bt-none.tar.gz");
    bugtool(&out2, &["--server-address", &sock]);
    assert_eq!(mode_of(&out2), 0o600);
    let files = unpack(&out2, &dir.join("unpacked-none"));
    assert!(
        files["summary.txt"].contains("agent: NOT RUNNING"),
        "{}",
        files["summary.txt"]
    );
    assert!(!files.contains_key("policies.txt"));
    assert!(files["kernel.txt"].contains(&format!("release: {release}")));
    assert!(files["probe.json"].contains("\"tracepoint\""));
    assert!(files["bpf.txt"].contains("no running agent"));
}
