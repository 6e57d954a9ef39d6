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
