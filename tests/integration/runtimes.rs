//! `--enable-container-runtimes`: containers run without Kubernetes carry their runtime's
//! name and image in `process.container`. The test runs its own containerd (Debian's
//! package; its root, state and socket in a scratch directory, CRI off), imports an OCI
//! image it builds from a static busybox (no registry is reachable here), and starts a
//! named container with `ctr run` in a namespace of its own.
//!
//! Docker: Debian's `docker.io` daemon, started the same way (its own data root, exec root
//! and socket; no iptables, no bridge, the vfs storage driver), loads the same archive
//! (it carries Docker's `manifest.json` beside the OCI index) and runs a named container.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(20);
/// containerd namespace of the test's containers (not `default`, not CRI's `k8s.io`).
const NAMESPACE: &str = "vigil-it";
const IMAGE: &str = "vigil.test/busybox:1";

/// A containerd of the test's own, stopped (with its containers) on drop.
struct Containerd {
    child: Child,
    dir: PathBuf,
    containers: Vec<String>,
}

impl Containerd {
    fn start(dir: &Path) -> Containerd {
        for tool in ["containerd", "ctr", "runc", "containerd-shim-runc-v2"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(found, "{tool} is required (scripts/install-deps --test)");
        }
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{d}/containerd.sock\"\n\
                 [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let me = Containerd {
            child,
            dir: dir.to_path_buf(),
            containers: Vec::new(),
        };
        let deadline = Instant::now() + WAIT;
        while !me.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer:\n{}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        me
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", NAMESPACE])
            .args(args)
            .output()
            .unwrap()
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ctr run -d IMAGE name argv...`.
    fn run(&mut self, name: &str, argv: &[&str]) {
        let mut args = vec!["run", "-d", IMAGE, name];
        args.extend_from_slice(argv);
        self.ctr_ok(&args);
        self.containers.push(name.to_string());
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for name in std::mem::take(&mut self.containers) {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", &name]);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !self.ctr(&["task", "delete", &name]).status.success()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.ctr(&["container", "delete", &name]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The namespace's parent cgroup, which runc leaves behind in every hierarchy.
        remove_cgroup_everywhere(NAMESPACE);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the (empty) top-level cgroup `name` from every hierarchy.
fn remove_cgroup_everywhere(name: &str) {
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            let _ = std::fs::remove_dir(e.path().join(name));
        }
    }
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(name));
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Writes `content` as a blob of the OCI layout; returns (digest, size).
fn blob(layout: &Path, path: &Path) -> (String, u64) {
    let hex = sha256_of(path);
    let dest = layout.join("blobs/sha256").join(&hex);
    std::fs::copy(path, dest).unwrap();
    (
        format!("sha256:{hex}"),
        std::fs::metadata(path).unwrap().len(),
    )
}

/// An image archive built here: the OCI layout `ctr image import` reads, plus the
/// `manifest.json` `docker load` reads, over the same blobs.
struct Image {
    archive: PathBuf,
    manifest_digest: String,
    config_digest: String,
}

/// An image (one uncompressed layer: busybox and a few applets) named `IMAGE`.
fn build_image(dir: &Path) -> Image {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    let busybox = Path::new("/usr/bin/busybox");
    assert!(
        busybox.exists(),
        "a static busybox is required (busybox-static)"
    );
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let layer = dir.join("layer.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "tar layer");
    let (layer_digest, layer_size) = blob(&layout, &layer);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let write = |name: &str, v: Value| {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        blob(&layout, &p)
    };
    let (config_digest, config_size) = write(
        "config.json",
        serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }),
    );
    let (manifest_digest, manifest_size) = write(
        "manifest.json",
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer_size}],
        }),
    );
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {"io.containerd.image.name": IMAGE,
                            "org.opencontainers.image.ref.name": "1"},
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let docker_manifest = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", hex(&config_digest)),
        "RepoTags": [IMAGE],
        "Layers": [format!("blobs/sha256/{}", hex(&layer_digest))],
    }]);
    std::fs::write(layout.join("manifest.json"), docker_manifest.to_string()).unwrap();
    let archive = dir.join("image.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "tar image");
    Image {
        archive,
        manifest_digest,
        config_digest,
    }
}

/// The exec event (its `process_exec` object) whose process has these arguments.
fn exec_with_args<'a>(events: &'a [Value], args: &str) -> Option<&'a Value> {
    of_kind(events, "process_exec")
        .into_iter()
        .find(|e| e["process"]["arguments"] == args)
}

/// Acceptance of issue 19 (containerd): a container started with `ctr run` shows its name
/// and image on its events; a host process shows none.
#[test]
fn ctr_run_container_has_name_and_image() {
    let _g = serial();
    let dir = scratch_dir("runtimes-containerd");
    let image = build_image(&dir);
    let containerd_dir = dir.join("containerd");
    std::fs::create_dir_all(&containerd_dir).unwrap();
    let mut containerd = Containerd::start(&containerd_dir);
    containerd.ctr_ok(&["image", "import", image.archive.to_str().unwrap()]);
    let socket = containerd.socket();
    let agent = Agent::start(
        "runtimes-containerd-agent",
        &[
            "--enable-container-runtimes",
            &format!("--containerd-address={}", socket.display()),
            "--docker-address=",
            // This machine's two cores are shared by parallel builds: the default 100 ms
            // can pass before containerd answers the first listing.
            "--container-runtime-wait=1s",
        ],
    );
    agent.wait_log("container runtime answers", WAIT);
    containerd.run("vigil-web", &["/bin/sh", "-c", "sleep 3602; true"]);
    run(Command::new("/bin/sleep").arg("0.0191"));
    let events = agent.wait_for("the container's and the host's execs", WAIT, |ev| {
        exec_with_args(ev, "3602").is_some() && exec_with_args(ev, "0.0191").is_some()
    });
    drop(containerd);
    let (_, log) = agent.stop();

    let expected = serde_json::json!({
        "id": "containerd://vigil-web",
        "name": "vigil-web",
        "image": {
            "id": format!("vigil.test/busybox@{}", image.manifest_digest),
            "name": IMAGE,
        },
    });
    // The container's init (sh, pid 1 inside) and the process it starts (sleep).
    for (args, nspid) in [("-c \"sleep 3602; true\"", Some(1)), ("3602", None)] {
        let exec = exec_with_args(&events, args)
            .unwrap_or_else(|| panic!("no exec with arguments {args:?}"));
        let process = &exec["process"];
        let container = &process["container"];
        for field in ["id", "name", "image"] {
            assert_eq!(container[field], expected[field], "{field} of {process}");
        }
        if let Some(pid) = nspid {
            assert_eq!(container["pid"], pid, "{process}");
        }
        assert!(process.get("pod").is_none(), "no pod invented: {process}");
    }
    // The sleep's parent is the container's sh: it carries the container too.
    let sleep = exec_with_args(&events, "3602").unwrap();
    assert_eq!(sleep["parent"]["container"]["name"], "vigil-web", "{sleep}");
    // A host process carries none.
    let host = exec_with_args(&events, "0.0191").unwrap();
    assert!(host["process"].get("container").is_none(), "{host}");
    assert_eq!(
        log.matches("container runtime answers").count(),
        1,
        "one line when containerd answers:\n{log}"
    );
}

/// A runtime that is not there costs one log line, and events do not wait for it.
#[test]
fn absent_runtime_is_one_log_line() {
    let _g = serial();
    let dir = scratch_dir("runtimes-absent");
    let agent = Agent::start(
        "runtimes-absent-agent",
        &[
            "--enable-container-runtimes",
            &format!("--containerd-address={}", dir.join("none.sock").display()),
            "--docker-address=",
            // Waiting this long for every new cgroup would show in the time taken below.
            "--container-runtime-wait=1s",
        ],
    );
    agent.wait_log("container runtime does not answer", WAIT);
    let started = Instant::now();
    for i in 0..3 {
        // New cgroups: each is a cgroup the agent has not seen.
        let cg = format!("/sys/fs/cgroup/unified/vigil-it-absent-{i}");
        let cg = if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
            cg
        } else {
            cg.replace("/unified", "")
        };
        std::fs::create_dir_all(&cg).unwrap();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {cg}/cgroup.procs && exec /bin/sleep 0.019{i}"
            ))
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::remove_dir(&cg).unwrap();
    }
    let events = agent.wait_for("the three execs", WAIT, |ev| {
        (0..3).all(|i| exec_with_args(ev, &format!("0.019{i}")).is_some())
    });
    let took = started.elapsed();
    let (_, log) = agent.stop();
    assert!(
        took < Duration::from_secs(3),
        "events waited for an absent runtime: {took:?}"
    );
    for i in 0..3 {
        let e = exec_with_args(&events, &format!("0.019{i}")).unwrap();
        assert!(e["process"].get("container").is_none(), "{e}");
    }
    assert_eq!(
        log.matches("container runtime does not answer").count(),
        1,
        "one line, not one per event:\n{log}"
    );
}

/// A dockerd of the test's own, stopped (with its containers) on drop.
struct Dockerd {
    child: Child,
    dir: PathBuf,
    /// The `docker` parent cgroups did not exist before: removed on drop.
    made_cgroup_parent: bool,
}

impl Dockerd {
    fn start(dir: &Path) -> Dockerd {
        for tool in ["dockerd", "docker"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                found,
                "{tool} is required (docker.io: scripts/install-deps --test)"
            );
        }
        let made_cgroup_parent = !Path::new("/sys/fs/cgroup/unified/docker").exists()
            && !Path::new("/sys/fs/cgroup/docker").exists();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            // Nothing of the host's network is touched: containers run with --network none.
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args(["--storage-driver=vfs"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let me = Dockerd {
            child,
            dir: dir.to_path_buf(),
            made_cgroup_parent,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !me.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer:\n{}",
                std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        me
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args)
            .output()
            .unwrap()
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.docker(&["rm", "-f", "vigil-dweb"]);
        // SIGTERM: dockerd stops its own containerd and unmounts what it mounted.
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // dockerd mounts its data root on itself; a killed one leaves the mount behind.
        let data =
            std::ffi::CString::new(self.dir.join("data").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: umount2(2) with a NUL-terminated path we own.
        unsafe { libc::umount2(data.as_ptr(), libc::MNT_DETACH) };
        if self.made_cgroup_parent {
            remove_cgroup_everywhere("docker");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Docker: a container started with `docker run --name` shows its name and image.
#[test]
fn docker_run_container_has_name_and_image() {
    let _g = serial();
    let dir = scratch_dir("runtimes-docker");
    let image = build_image(&dir);
    let docker_dir = dir.join("docker");
    std::fs::create_dir_all(&docker_dir).unwrap();
    let dockerd = Dockerd::start(&docker_dir);
    dockerd.docker_ok(&["load", "-i", image.archive.to_str().unwrap()]);
    let agent = Agent::start(
        "runtimes-docker-agent",
        &[
            "--enable-container-runtimes",
            "--containerd-address=",
            &format!("--docker-address={}", dockerd.socket().display()),
            "--container-runtime-wait=1s",
        ],
    );
    agent.wait_log("container runtime answers", WAIT);
    let id = dockerd.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "vigil-dweb",
        IMAGE,
        "/bin/sh",
        "-c",
        "sleep 3603; true",
    ]);
    assert_eq!(id.len(), 64, "docker run printed {id:?}");
    let events = agent.wait_for("the container's execs", WAIT, |ev| {
        exec_with_args(ev, "3603").is_some()
    });
    drop(dockerd);
    agent.stop();
    let exec = exec_with_args(&events, "3603").unwrap();
    let process = &exec["process"];
    assert_eq!(process["docker"], &id[..31], "{process}");
    let container = &process["container"];
    assert_eq!(container["id"], format!("docker://{id}"), "{process}");
    assert_eq!(container["name"], "vigil-dweb", "{process}");
    assert_eq!(container["image"]["name"], IMAGE, "{process}");
    assert_eq!(container["image"]["id"], image.config_digest, "{process}");
    assert_eq!(exec["parent"]["container"]["name"], "vigil-dweb", "{exec}");
}
