//! The adversarial tier (issue 17): what a workload, a policy author or a client could do to
//! the agent, reproduced for real. After each: the agent is up, the loss or refusal is
//! visible, enforcement holds.

use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(20);

/// A one-hook syscall policy named `name` (getpgid is called by nothing else here).
fn getpgid_policy(name: &str) -> String {
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: {name}
spec:
  kprobes:
  - call: "sys_getpgid"
    syscall: true
    args:
    - index: 0
      type: "int"
"#
    )
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Ids of every BPF program and link on the host.
fn bpf_object_count() -> usize {
    let count = |what: &str| {
        let out = std::process::Command::new("bpftool")
            .args(["-j", what, "show"])
            .output()
            .expect("bpftool");
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
            .map(|v| v.len())
            .unwrap_or(0)
    };
    count("prog") + count("link") + count("map")
}

/// Policy churn: add + delete of one small policy, many times against one agent (every
/// Kubernetes update of a TracingPolicy is a replace). Hook ids were never given back: add
/// #257 failed for good. Now every add succeeds, events name the policy that really posted
/// them while its id is reused by others, and kernel objects and RSS stay flat.
/// `VIGIL_SOAK_CYCLES=3000` runs the soak.
#[test]
fn adversarial_policy_churn_gives_ids_and_kernel_objects_back() {
    let _g = serial();
    let cycles: usize = std::env::var("VIGIL_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = scratch_dir("adversarial-churn-files");
    let files = [
        write_policy(&dir, "churn-a", &getpgid_policy("churn-a")),
        write_policy(&dir, "churn-b", &getpgid_policy("churn-b")),
    ];
    let agent = Agent::start("adversarial-churn", &[]);
    let me = u64::from(std::process::id());
    let (mut objects_after_first, mut rss_after_first) = (0, 0);
    let t0 = Instant::now();
    for i in 0..cycles {
        let name = if i % 2 == 0 { "churn-a" } else { "churn-b" };
        let (code, out, err) = agent.cli(&["tracingpolicy", "add", &files[i % 2]]);
        assert_eq!(code, Some(0), "add #{} refused: {out}{err}", i + 1);
        if i % 50 == 0 || i == cycles - 1 {
            // The hook (whose id the previous policy held) reports as this policy.
            // SAFETY: getpgid(2) of the caller.
            let marker = 10_000 + i as i32;
            unsafe { libc::getpgid(marker) };
            agent.wait_for(&format!("{name}'s event #{i}"), WAIT, |ev| {
                kprobes(ev, name).iter().any(|e| {
                    pid_of(e) == me && e["args"][0]["int_arg"] == serde_json::json!(marker)
                })
            });
        }
        let (code, out, err) = agent.cli(&["tracingpolicy", "delete", name]);
        assert_eq!(code, Some(0), "delete #{}: {out}{err}", i + 1);
        if i == 0 {
            objects_after_first = bpf_object_count();
            rss_after_first = rss_kb(agent.pid());
        }
    }
    let elapsed = t0.elapsed();
    // Programs, links and maps are freed after an RCU grace period: poll.
    let deadline = Instant::now() + WAIT;
    let objects = loop {
        let n = bpf_object_count();
        if n <= objects_after_first || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let rss = rss_kb(agent.pid());
    eprintln!(
        "churn: {cycles} add/delete cycles in {:.1} s; BPF progs+links+maps {objects_after_first} -> {objects}; \
         agent RSS {rss_after_first} kB -> {rss} kB",
        elapsed.as_secs_f64()
    );
    assert!(
        objects <= objects_after_first,
        "kernel objects grew: {objects_after_first} after the first cycle, {objects} after {cycles}"
    );
    assert!(
        rss < rss_after_first + 16 * 1024,
        "RSS grew from {rss_after_first} kB to {rss} kB over {cycles} cycles"
    );
    let (events, log) = agent.stop();
    assert!(
        !log.contains("event from an unknown hook"),
        "an event lost its hook:\n{log}"
    );
    // Every event of a policy came while that policy was loaded: none is attributed to the
    // other one (they alternate on the same hook id).
    for name in ["churn-a", "churn-b"] {
        for e in kprobes(&events, name) {
            if pid_of(e) != me {
                continue;
            }
            let marker = e["args"][0]["int_arg"].as_i64().unwrap_or(0) - 10_000;
            let expected = if marker % 2 == 0 {
                "churn-a"
            } else {
                "churn-b"
            };
            assert_eq!(
                name, expected,
                "event of cycle {marker} attributed to {name}"
            );
        }
    }
}

/// Runs `vigil agent ARGS` in a private mount namespace prepared by `prepare` (shell), with
/// its own socket and export file; returns the child and its log path.
fn agent_in_mount_ns(
    name: &str,
    prepare: &str,
    args: &str,
) -> (std::process::Child, std::path::PathBuf) {
    let dir = scratch_dir(name);
    let log = dir.join("agent.log");
    let script = format!(
        "{prepare} && exec {bin} agent --export-filename {dir}/events.json --state-dir {dir} \
         --server-address unix://{dir}/vigil.sock --health-server-address= {args}",
        bin = vigil_bin().display(),
        dir = dir.display(),
    );
    let child = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("unshare (util-linux)");
    (child, log)
}

/// A fresh machine has no bpffs at /sys/fs/bpf (CI hid this once). The agent mounts it;
/// `--keep-sensors-on-exit` is checked at start: where bpffs cannot be had, the agent refuses
/// to start, naming why, instead of promising at exit what it did not keep.
#[test]
fn adversarial_keep_sensors_promise_is_checked_at_start() {
    // /sys/fs/bpf is an empty tmpfs directory: what a machine without bpffs has.
    let (mut child, log) = agent_in_mount_ns(
        "adversarial-bpffs-absent",
        "mount -t tmpfs none /sys/fs/bpf",
        "--keep-sensors-on-exit",
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("vigil agent ready") {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("agent exited ({status}) where it could mount bpffs:\n{text}");
        }
        assert!(Instant::now() < deadline, "not ready:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{status}\n{text}");
    assert!(text.contains("bpffs mounted"), "{text}");
    assert!(
        !text.contains("not kept") && !text.contains("NOT every"),
        "a promise was not kept:\n{text}"
    );

    // No bpffs can be mounted (no /sys/fs/bpf on a read-only /sys/fs): refused at start.
    let (mut child, log) = agent_in_mount_ns(
        "adversarial-bpffs-impossible",
        "mount -t tmpfs -o ro none /sys/fs",
        "--keep-sensors-on-exit",
    );
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "agent still running:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("--keep-sensors-on-exit cannot be kept") && text.contains("bpffs"),
        "{text}"
    );
    assert!(!text.contains("vigil agent ready"), "{text}");
}

/// The cgroup v2 mount (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
fn cgroup2_mount() -> std::path::PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
        })
        .expect("a cgroup v2 mount")
}

/// A cgroup named like a container's (`docker-<id>.scope`) that no runtime made gives a
/// process no container identity (it took the victim's, with its export filters and
/// pod-scoped policies); a process in a runtime layout keeps its identity.
#[test]
fn adversarial_user_made_cgroup_names_give_no_container_identity() {
    let _g = serial();
    const VICTIM: &str = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
    let root = cgroup2_mount();
    let forged = root
        .join(format!("vigil-forge-{}", std::process::id()))
        .join(format!("docker-{VICTIM}.scope"));
    std::fs::create_dir_all(&forged).unwrap();
    let agent = Agent::start("adversarial-cgroup-forge", &[]);
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec /bin/sleep 0.0417",
        forged.display()
    );
    let status = std::process::Command::new("sh")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
    let events = agent.wait_for("the sleep in the forged cgroup", WAIT, |ev| {
        of_kind(ev, "process_exec")
            .iter()
            .any(|e| e["process"]["arguments"] == "0.0417")
    });
    agent.stop();
    let _ = std::fs::remove_dir(&forged);
    let _ = std::fs::remove_dir(forged.parent().unwrap());
    let exec = of_kind(&events, "process_exec")
        .into_iter()
        .find(|e| e["process"]["arguments"] == "0.0417")
        .unwrap();
    assert_eq!(
        exec["process"]["docker"].as_str().unwrap_or_default(),
        "",
        "a user-made cgroup gave an identity: {exec}"
    );
    // No host process has an identity either (this machine's v1 memory cgroup is a bare id).
    for e in of_kind(&events, "process_exec") {
        let docker = e["process"]["docker"].as_str().unwrap_or_default();
        assert!(docker.is_empty(), "host process with an identity: {e}");
    }
}

/// Opens of /etc/... by anyone, matched on the kernel-resolved path (at the call's exit).
const ETC_OPENS: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: etc-opens
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 0
      type: "int"
    - index: 1
      type: "string"
    selectors:
    - matchArgs:
      - index: 1
        operator: "Prefix"
        values: ["/etc/"]
"#;

/// Threads of an unprivileged user parked in open() of a FIFO; released (a writer opens
/// the FIFO) and reaped when dropped, whatever the test's outcome.
struct Parked {
    child: std::process::Child,
    fifo: std::path::PathBuf,
}

impl Parked {
    fn start(fifo: &std::path::Path, threads: usize) -> Parked {
        let c = std::ffi::CString::new(fifo.display().to_string()).unwrap();
        // SAFETY: mkfifo(3) / chmod(2) on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        assert_eq!(unsafe { libc::chmod(c.as_ptr(), 0o666) }, 0);
        let mut child = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(helper_bin())
            .args(["fifo-park", &threads.to_string()])
            .arg(fifo)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("setpriv (util-linux)");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let parked = Parked {
            child,
            fifo: fifo.to_path_buf(),
        };
        assert_eq!(line.trim(), "parked");
        // Every thread is started; give the last ones time to enter open().
        std::thread::sleep(Duration::from_millis(500));
        parked
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.fifo);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An unprivileged user parks 4,200 threads in open() of a FIFO. The state that carries an
/// open-like call's entry to its exit was a 4,096-entry table: it filled, and every other
/// thread's exit-time checks silently stopped (failing closed instead would have killed
/// bystanders). It is now one task-storage slot per thread: a bystander's open under
/// /etc is still matched at its exit, nothing is reported lost, the agent's RSS stays
/// bounded.
#[test]
fn adversarial_parked_opens_do_not_blind_other_threads_exit_checks() {
    let _g = serial();
    let dir = scratch_dir("adversarial-fifo-files");
    let policy = write_policy(&dir, "etc-opens", ETC_OPENS);
    let agent = Agent::start("adversarial-fifo", &["--tracing-policy", &policy]);
    let parked = Parked::start(&dir.join("fifo"), 4200);
    // A bystander's open whose match needs the exit (a relative path under /etc).
    let bystander = run(std::process::Command::new("/usr/bin/cat")
        .arg("hostname")
        .current_dir("/etc"));
    // Its open of "hostname" matches only through the path the kernel opened.
    let relative = |e: &&serde_json::Value| {
        pid_of(e) == u64::from(bystander) && e["args"][1]["string_arg"] == "hostname"
    };
    let events = agent.wait_for("the bystander's open matched at its exit", WAIT, |ev| {
        kprobes(ev, "etc-opens").iter().any(relative)
    });
    drop(parked);
    let hit = kprobes(&events, "etc-opens")
        .into_iter()
        .find(relative)
        .unwrap();
    let resolved = hit["args"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["label"] == "resolved_path")
        .and_then(|a| a["file_arg"]["path"].as_str());
    assert_eq!(resolved, Some("/etc/hostname"), "{hit}");
    let rss = rss_kb(agent.pid());
    eprintln!("parked opens: 4,200 threads; agent RSS {rss} kB");
    assert!(rss < 150 * 1024, "agent RSS {rss} kB");
    let (events, _) = agent.stop();
    assert_eq!(
        lost(&events, "LOSS_STAGE_POLICY_STATE", "PROCESS_KPROBE"),
        0,
        "exit-time state was lost"
    );
}

/// Policy events that do not fit the ring (a consumer too slow; here a 16 KiB ring and a
/// stopped agent) were dropped silently (`VIGIL_CNT_RB_LOST_POLICY` was never reported):
/// now they are an events_lost event, a log line and a metric, and the policy's actions
/// still ran.
#[test]
fn adversarial_policy_events_lost_at_a_full_ring_are_reported() {
    let _g = serial();
    let dir = scratch_dir("adversarial-ringfull-files");
    let policy = write_policy(&dir, "etc-opens", ETC_OPENS);
    let agent = Agent::start(
        "adversarial-ringfull",
        &["--rb-size-total", "16K", "--tracing-policy", &policy],
    );
    agent.signal(libc::SIGSTOP);
    let status = std::process::Command::new("sh")
        .args([
            "-c",
            "i=0; while [ $i -lt 3000 ]; do : < /etc/hostname; i=$((i+1)); done",
        ])
        .status()
        .unwrap();
    agent.signal(libc::SIGCONT);
    assert!(status.success());
    let events = agent.wait_for("the policy-event loss reported", WAIT, |ev| {
        lost(ev, "LOSS_STAGE_RING_BUFFER", "PROCESS_KPROBE") > 0
    });
    let n = lost(&events, "LOSS_STAGE_RING_BUFFER", "PROCESS_KPROBE");
    let got = kprobes(&events, "etc-opens").len() as u64;
    eprintln!("ring full: {got} policy events delivered, {n} reported lost");
    assert!(got + n >= 3000, "delivered {got} + lost {n} < 3000 opens");
    let (_, log) = agent.stop();
    assert!(log.contains("events lost"), "{log}");
}

/// One validation path (item 20): Tetragon's six negative specs are refused by `validate`,
/// by `tracingpolicy add` and by `--tracing-policy`, each naming the same fault (`add`
/// loaded `syswrongargtype.yaml`, which `validate` refused).
#[test]
fn adversarial_negative_specs_are_refused_by_every_path() {
    let _g = serial();
    let dir = std::path::Path::new("/work/shared/compat/tetragon-negative-specs");
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/compat/tetragon-negative-specs")
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 6, "{files:?}");
    let args: Vec<String> = files
        .iter()
        .flat_map(|f| ["--tracing-policy".to_string(), f.display().to_string()])
        .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start("adversarial-negative-specs", &refs);
    for f in &files {
        let file = f.display().to_string();
        let out = std::process::Command::new(vigil_bin())
            .args(["tracingpolicy", "validate", &file])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "validate accepted {file}:\n{text}"
        );
        // validate's fault: the line naming the file (`file:line:col: path: reason [kernel]`).
        let fault = text
            .lines()
            .find(|l| l.starts_with(&file))
            .unwrap_or_else(|| panic!("{text}"))
            .trim_end_matches(" [kernel]")
            .to_string();
        // The API does not know the file's name (the CLI sends its text): the same
        // position, path and reason.
        let fault = fault.strip_prefix(&file).unwrap_or(&fault).to_string();
        let (code, out, err) = agent.cli(&["tracingpolicy", "add", &file]);
        assert_ne!(code, Some(0), "add loaded {file}: {out}");
        assert!(
            err.contains(&fault),
            "add's refusal does not name validate's fault\n  validate: {fault}\n  add: {err}"
        );
    }
    let (code, out, _) = agent.cli(&["tracingpolicy", "list"]);
    assert_eq!(code, Some(0));
    for name in ["lseek", "sys-lseek"] {
        assert!(!out.contains(name), "{name} listed as loaded:\n{out}");
    }
    let (_, log) = agent.stop();
    let not_loaded = log
        .lines()
        .filter(|l| l.contains("tracing policy not loaded"))
        .count();
    assert_eq!(not_loaded, 6, "{log}");
}
