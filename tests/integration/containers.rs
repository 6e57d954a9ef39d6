//! Real containers run by runc in Kubernetes-like cgroup layouts: the container id and
//! `in_init_tree` on the events of processes started by the container's init, entered with
//! `runc exec` (what `kubectl exec` does) and entered with `nsenter` only (namespaces without
//! the container's cgroup). The rootfs is a directory holding the host's static busybox.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(15);

/// A runc container, deleted (with its cgroups) on drop.
pub struct Container {
    pub name: String,
    root: PathBuf,
    cgroup_path: String,
}

fn runc_available() -> bool {
    Command::new("runc")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Container {
    /// Starts `init_script` (busybox sh) detached, in cgroup `cgroup_path`.
    pub fn start(dir: &Path, name: &str, cgroup_path: &str, init_script: &str) -> Container {
        Self::start_with(dir, name, cgroup_path, init_script, &Value::Null)
    }

    /// `start` with `extra` (an object) merged into config.json's top level: hooks,
    /// annotations.
    pub fn start_with(
        dir: &Path,
        name: &str,
        cgroup_path: &str,
        init_script: &str,
        extra: &Value,
    ) -> Container {
        assert!(runc_available(), "runc is required for the container tests");
        let bundle = dir.join(format!("bundle-{name}"));
        let rootfs = bundle.join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        let busybox = Path::new("/usr/bin/busybox");
        assert!(
            busybox.exists(),
            "the container tests need a static busybox"
        );
        std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let root = dir.join("runc-state");
        let status = Command::new("runc")
            .arg("spec")
            .current_dir(&bundle)
            .status()
            .unwrap();
        assert!(status.success(), "runc spec");
        let spec_path = bundle.join("config.json");
        let mut spec: Value =
            serde_json::from_str(&std::fs::read_to_string(&spec_path).unwrap()).unwrap();
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", init_script]);
        spec["root"] = serde_json::json!({"path": "rootfs", "readonly": true});
        spec["linux"]["cgroupsPath"] = cgroup_path.into();
        // No network namespace: nothing here needs one and it keeps setup quick.
        let namespaces = spec["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.retain(|n| n["type"] != "network");
        if let Some(extra) = extra.as_object() {
            for (k, v) in extra {
                spec[k] = v.clone();
            }
        }
        std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        // A detached container keeps runc's stdio: a file, never a pipe we would wait on.
        let log = bundle.join("runc.log");
        let status = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "runc run: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Container {
            name: name.to_string(),
            root,
            cgroup_path: cgroup_path.to_string(),
        }
    }

    fn runc(&self) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root").arg(&self.root);
        c
    }

    /// The host pid of the container's init.
    pub fn init_pid(&self) -> u32 {
        let out = self.runc().args(["state", &self.name]).output().unwrap();
        let state: Value = serde_json::from_slice(&out.stdout).unwrap();
        state["pid"].as_u64().unwrap() as u32
    }

    /// `runc exec`: a new process that joins the container's namespaces and cgroup.
    pub fn exec(&self, args: &[&str]) {
        let status = self
            .runc()
            .arg("exec")
            .arg(&self.name)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "runc exec {args:?}");
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self
            .runc()
            .args(["delete", "-f", &self.name])
            .stderr(Stdio::null())
            .status();
        // runc removes the container's own cgroup; remove the parents it created too, in
        // every hierarchy (v1 controllers and the unified one), deepest first.
        let mut mounts: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        mounts.push(PathBuf::from("/sys/fs/cgroup"));
        let rel = self.cgroup_path.trim_start_matches('/');
        for mount in mounts {
            let mut p = PathBuf::from(rel);
            loop {
                let _ = std::fs::remove_dir(mount.join(&p));
                if !p.pop() || p.as_os_str().is_empty() {
                    break;
                }
            }
        }
    }
}

fn find_exec<'a>(events: &'a [Value], args: &str) -> Option<&'a Value> {
    of_kind(events, "process_exec")
        .into_iter()
        .find(|e| e["process"]["arguments"] == args)
}

fn flags(p: &Value) -> Vec<&str> {
    p["flags"].as_str().unwrap_or("").split(' ').collect()
}

/// The acceptance case of issue 9 (container half): a kubelet cgroupfs layout.
#[test]
fn runc_container_identity_init_exec_and_nsenter() {
    let _g = serial();
    // Written by hand: 64 hex characters, and their first 31.
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const DOCKER: &str = "0123456789abcdef0123456789abcde";
    let agent = Agent::start("runc-identity", &["--enable-process-ns"]);
    let dir = scratch_dir("runc-identity-bundles");
    let cgroup = format!("/kubepods/besteffort/pod6f0e2a39-7c55-4b1a-9d0e-0c8a5f2b9e11/{ID}");
    let name = format!("vigil-it-{}", std::process::id());
    let ctr = Container::start(&dir, &name, &cgroup, "while :; do /bin/sleep 0.2; done");
    let init = ctr.init_pid();
    ctr.exec(&["/bin/sleep", "0.031"]);
    let nsenter = Command::new("nsenter")
        .args([
            "-t",
            &init.to_string(),
            "-p",
            "-m",
            "--",
            "/bin/sleep",
            "0.032",
        ])
        .status()
        .unwrap();
    assert!(nsenter.success(), "nsenter");
    let events = agent.wait_for("the three container processes", WAIT, |ev| {
        find_exec(ev, "0.2").is_some()
            && find_exec(ev, "0.031").is_some()
            && find_exec(ev, "0.032").is_some()
    });
    drop(ctr);
    agent.stop();

    // The container's init: pid 1 in its namespace, our id, in the init tree.
    let init_exec = execs_of_pid(&events, init);
    assert_eq!(init_exec.len(), 1, "one exec of the container init");
    let ip = &init_exec[0]["process"];
    assert_eq!(ip["docker"], DOCKER);
    assert_eq!(ip["in_init_tree"], true);
    assert!(flags(ip).contains(&"inInitTree"), "{ip}");

    // A child of the init: the same.
    let child = find_exec(&events, "0.2").unwrap();
    let cp = &child["process"];
    assert_eq!(cp["docker"], DOCKER);
    assert_eq!(cp["in_init_tree"], true);
    assert_eq!(child["parent"]["pid"], init);

    // Entered with runc exec: in the container (cgroup and namespaces), not in the tree.
    let exec = &find_exec(&events, "0.031").unwrap()["process"];
    assert_eq!(exec["docker"], DOCKER);
    assert_eq!(exec["in_init_tree"], false);
    assert!(!flags(exec).contains(&"inInitTree"));
    assert_eq!(exec["ns"]["pid"]["inum"], ip["ns"]["pid"]["inum"]);

    // Entered with nsenter only: the container's PID namespace, but the cgroup of whoever
    // ran nsenter, so that cgroup's identity (none on a bare host; the test machine's own
    // when the tests run inside a container) and not the runc container's.
    let ns = &find_exec(&events, "0.032").unwrap()["process"];
    assert_eq!(ns["ns"]["pid"]["inum"], ip["ns"]["pid"]["inum"]);
    assert_ne!(ns["docker"], DOCKER, "{ns}");
    assert_eq!(ns["in_init_tree"], false);
    let host = of_kind(&events, "process_exec")
        .into_iter()
        .find(|e| e["process"]["binary"] == "/usr/bin/nsenter")
        .expect("exec of nsenter");
    assert_eq!(ns["docker"], host["process"]["docker"]);
    assert_eq!(host["process"]["in_init_tree"], false);
    crate::proto_check::assert_lines_parse_with_protobuf(&events);
}

/// A layout where the leaf is not the container (podman's payload cgroup below its scope):
/// the agent finds the id higher up the full path.
#[test]
fn runc_container_nested_cgroup_layout() {
    let _g = serial();
    const ID: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    const DOCKER: &str = "fedcba9876543210fedcba987654321";
    let agent = Agent::start("runc-nested", &[]);
    let dir = scratch_dir("runc-nested-bundles");
    let cgroup = format!("/machine.slice/libpod-{ID}.scope/container");
    let name = format!("vigil-it-nested-{}", std::process::id());
    let ctr = Container::start(&dir, &name, &cgroup, "while :; do /bin/sleep 0.21; done");
    let events = agent.wait_for("a sleep in the container", WAIT, |ev| {
        find_exec(ev, "0.21").is_some()
    });
    drop(ctr);
    agent.stop();
    let p = &find_exec(&events, "0.21").unwrap()["process"];
    assert_eq!(p["docker"], DOCKER);
    assert_eq!(p["in_init_tree"], true);
}

/// config.json additions: `vigil oci-hook` as a createRuntime hook (runc runs it after
/// creating the cgroup, before the container's first exec) and CRI pod annotations.
fn hook_spec(grpc_address: &str, log: &Path) -> Value {
    serde_json::json!({
        "hooks": {"createRuntime": [{
            "path": vigil_bin(),
            "args": ["vigil", "oci-hook", "createRuntime", format!("--grpc-address={grpc_address}"),
                     format!("--log-fname={}", log.display())],
            "timeout": 10,
        }]},
        "annotations": {
            "io.kubernetes.cri.sandbox-name": "web-0",
            "io.kubernetes.cri.sandbox-namespace": "shop",
            "io.kubernetes.cri.container-name": "nginx",
        },
    })
}

/// Issue 9, runtime hooks: the hook registers the container before its first exec, so the
/// init's exec already carries the id and pod although neither the cgroup path nor /proc
/// names a container.
#[test]
fn oci_hook_registers_container_before_first_exec() {
    let _g = serial();
    let agent = Agent::start("oci-hook", &["--log-format=json"]);
    let dir = scratch_dir("oci-hook-bundles");
    let name = format!("vigil-hook-{}", std::process::id());
    // No id-like component: without the hook this container would have no identity.
    let cgroup = format!("/vigil-hook-test/{name}");
    let socket = format!(
        "unix://{}/vigil.sock",
        agent.stderr_path.parent().unwrap().display()
    );
    let log = dir.join("hook.log");
    let extra = hook_spec(&socket, &log);
    let ctr = Container::start_with(
        &dir,
        &name,
        &cgroup,
        "while :; do /bin/sleep 0.22; done",
        &extra,
    );
    let init = ctr.init_pid();
    let events = agent.wait_for("a sleep in the container", WAIT, |ev| {
        find_exec(ev, "0.22").is_some()
    });
    drop(ctr);
    let (_, agent_log) = agent.stop();
    let hook_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(hook_log.is_empty(), "the hook logged a failure: {hook_log}");
    let registered = agent_log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["fields"]["message"] == "runtime hook: container registered"
                && l["fields"]["container_id"] == name.as_str()
        })
        .unwrap_or_else(|| panic!("no registration in the agent log:\n{agent_log}"));
    // The very first exec in the container: the init's, after the registration (both are
    // UTC wall-clock times of this host).
    let init_exec = execs_of_pid(&events, init);
    assert_eq!(init_exec.len(), 1, "one exec of the container init");
    let at = utc_seconds(registered["timestamp"].as_str().unwrap());
    let init_line = events
        .iter()
        .find(|e| {
            e.get("process_exec")
                .is_some_and(|x| pid_of(x) == u64::from(init))
        })
        .unwrap();
    let exec_at = utc_seconds(init_line["time"].as_str().unwrap());
    assert!(at < exec_at, "registered at {at}, first exec at {exec_at}");
    eprintln!(
        "registered {:.1} ms before the first exec",
        (exec_at - at) * 1e3
    );
    for p in [
        &init_exec[0]["process"],
        &find_exec(&events, "0.22").unwrap()["process"],
    ] {
        assert_eq!(p["docker"], name.as_str(), "{p}");
        assert_eq!(p["pod"]["name"], "web-0", "{p}");
        assert_eq!(p["pod"]["namespace"], "shop", "{p}");
        assert_eq!(p["pod"]["container"]["name"], "nginx", "{p}");
    }
    crate::proto_check::assert_lines_parse_with_protobuf(&events);
}

/// A hook that cannot reach the agent logs one line and lets the container start.
#[test]
fn oci_hook_without_agent_does_not_block_the_container() {
    let _g = serial();
    let dir = scratch_dir("oci-hook-noagent");
    let name = format!("vigil-hook-noagent-{}", std::process::id());
    let log = dir.join("hook.log");
    let missing = format!("unix://{}/nobody.sock", dir.display());
    let extra = hook_spec(&missing, &log);
    let ctr = Container::start_with(
        &dir,
        &name,
        &format!("/vigil-hook-test/{name}"),
        "/bin/sleep 30",
        &extra,
    );
    assert!(ctr.init_pid() > 0);
    drop(ctr);
    let hook_log = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = hook_log.lines().collect();
    assert_eq!(lines.len(), 1, "{hook_log}");
    assert!(
        lines[0].contains("container not registered") && lines[0].contains("nobody.sock"),
        "{hook_log}"
    );
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-11-28T21:36:15.9915Z`).
pub(crate) fn utc_seconds(t: &str) -> f64 {
    let (date, time) = t.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let hms: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    days as f64 * 86_400.0 + hms[0] * 3600.0 + hms[1] * 60.0 + hms[2]
}
