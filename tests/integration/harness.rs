//! Starting the real agent, collecting its JSON lines, and helpers to find events.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

/// Agent tests share the kernel and the machine: one at a time, within this binary (the
/// mutex) and across test runs of other checkouts on the same host (the file lock), since
/// tests compare host-wide sets of eBPF programs and count host-wide ring-buffer losses.
static SERIAL: Mutex<()> = Mutex::new(());

pub struct Serial {
    _in_process: MutexGuard<'static, ()>,
    _across_processes: std::fs::File,
}

pub fn serial() -> Serial {
    let in_process = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/vigil-tests.lock")
        .expect("open /run/vigil-tests.lock");
    file.lock().expect("lock /run/vigil-tests.lock");
    Serial {
        _in_process: in_process,
        _across_processes: file,
    }
}

pub fn vigil_bin() -> PathBuf {
    std::env::var_os("VIGIL_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vigil")), PathBuf::from)
}

pub fn helper_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_TEST_HELPER") {
        return PathBuf::from(p);
    }
    let p = vigil_bin().with_file_name("vigil-test-helper");
    assert!(
        p.exists(),
        "{} missing: build it with `cargo build --workspace --bins`",
        p.display()
    );
    p
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Agent {
    child: Child,
    pub events_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Agent {
    /// Starts `vigil agent` with `args`, exporting to a fresh file, and waits until ready.
    pub fn start(name: &str, args: &[&str]) -> Agent {
        Self::start_with_env(name, args, &[])
    }

    /// `start` with extra environment variables for the agent.
    pub fn start_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Agent {
        Agent::start_in(&scratch_dir(name), args, |c| {
            c.envs(env.iter().copied());
        })
    }

    /// As [`Agent::start`], with the agent's files in `dir` and `customize` applied to the
    /// command before it is spawned (e.g. a `pre_exec` confinement).
    pub fn start_in(dir: &Path, args: &[&str], customize: impl FnOnce(&mut Command)) -> Agent {
        let events_path = dir.join("events.json");
        let stderr_path = dir.join("agent.log");
        let mut command = Command::new(vigil_bin());
        command
            .arg("agent")
            .arg("--export-filename")
            .arg(&events_path)
            .arg("--state-dir")
            .arg(dir)
            // Tests read one file: no size rotation unless a test asks for it.
            .arg("--export-file-max-size-mb=100000")
            // Each test agent has its own API socket and no health port, so that it never
            // meets another agent on this machine (tests that need them pass their own).
            .arg(format!(
                "--server-address=unix://{}/vigil.sock",
                dir.display()
            ))
            .arg("--health-server-address=")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&stderr_path).unwrap()));
        customize(&mut command);
        let mut child = command.spawn().expect("spawn vigil agent");
        // Emulated kernels (the qemu tier) run tens of times slower than this host.
        let patience = if std::env::var_os("VIGIL_KERNEL_COLUMN").is_some() {
            120
        } else {
            20
        };
        let deadline = Instant::now() + Duration::from_secs(patience);
        loop {
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            // The built-in io_uring policy (default `auto`) is loaded beside the start, after
            // `ready`: tests that count kernel objects or programs need it settled.
            if log.contains("vigil agent ready") && log.contains("io_uring: ") {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("agent exited before ready ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "agent not ready after 20 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent {
            child,
            events_path,
            stderr_path,
        }
    }

    /// Runs a `vigil` client command against this agent's API socket: (exit code, stdout,
    /// stderr).
    pub fn cli(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let sock = format!(
            "unix://{}",
            self.events_path.with_file_name("vigil.sock").display()
        );
        let out = Command::new(vigil_bin())
            .args(args)
            .arg("--server-address")
            .arg(&sock)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every event line so far, parsed.
    pub fn events(&self) -> Vec<Value> {
        read_events(&self.events_path)
    }

    /// Polls until `pred` holds on the events so far.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events();
            if pred(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; {} events seen",
                events.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls the agent's log until it holds `needle`; returns the log.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?} in the agent's log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, wait for exit, return all events and the log.
    pub fn stop(mut self) -> (Vec<Value>, String) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "agent exit status {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not stop within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        (read_events(&self.events_path), log)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kubeconfig in `dir` naming the local list/watch server on `port` (no credentials).
pub fn fake_kubeconfig(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: nobody\n\
         current-context: fake\nusers:\n- name: nobody\n  user: {{}}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub fn read_events(path: &Path) -> Vec<Value> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.ends_with('}')) // a line still being written is picked up next poll
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

/// The `process` of exec events (kind = "process_exec") or exit events.
pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter_map(|e| e.get(kind)).collect()
}

pub fn pid_of(event: &Value) -> u64 {
    event["process"]["pid"].as_u64().unwrap_or(0)
}

pub fn execs_of_pid(events: &[Value], pid: u32) -> Vec<&Value> {
    of_kind(events, "process_exec")
        .into_iter()
        .filter(|e| pid_of(e) == u64::from(pid))
        .collect()
}

pub fn exits_of_pid(events: &[Value], pid: u32) -> Vec<&Value> {
    of_kind(events, "process_exit")
        .into_iter()
        .filter(|e| pid_of(e) == u64::from(pid))
        .collect()
}

/// Decodes the lossless `argv` field (base64 bytes per argument).
pub fn argv_of(process: &Value) -> Vec<Vec<u8>> {
    process["argv"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    base64::engine::general_purpose::STANDARD
                        .decode(s.as_str().unwrap())
                        .unwrap()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a command to completion and returns its pid.
pub fn run(cmd: &mut Command) -> u32 {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Loss events (`events_lost`) in `events`, summed per (stage, event_type).
pub fn lost(events: &[Value], stage: &str, event_type: &str) -> u64 {
    of_kind(events, "events_lost")
        .iter()
        .filter(|l| l["stage"] == stage && l["event_type"] == event_type)
        .map(|l| {
            l["count"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// Writes a policy file `NAME.yaml` in `dir`; returns its path for `--tracing-policy`.
pub fn write_policy(dir: &Path, name: &str, yaml: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

/// The `process_kprobe` events of policy `policy`.
pub fn kprobes<'a>(events: &'a [Value], policy: &str) -> Vec<&'a Value> {
    of_kind(events, "process_kprobe")
        .into_iter()
        .filter(|e| e["policy_name"] == policy)
        .collect()
}

/// The events of kind `kind` posted by policy `policy`.
pub fn of_policy<'a>(events: &'a [Value], kind: &str, policy: &str) -> Vec<&'a Value> {
    of_kind(events, kind)
        .into_iter()
        .filter(|e| e["policy_name"] == policy)
        .collect()
}

/// A `sys_openat` TracingPolicy, the hook most tests use: the path argument (index 1), the
/// dirfd (index 0) when asked, and one selector whose path filter, binaries and actions the
/// test chooses. `yaml()` is the text a user would write.
#[derive(Debug, Clone, Default)]
pub struct OpenatPolicy {
    name: String,
    dirfd: bool,
    path: Option<(String, Vec<String>)>,
    binaries: Vec<String>,
    actions: Vec<(String, Vec<String>)>,
}

impl OpenatPolicy {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..Self::default()
        }
    }

    /// Also report the dirfd (index 0, `int`).
    pub fn dirfd(mut self) -> Self {
        self.dirfd = true;
        self
    }

    /// Select on the path with `operator` (Equal, Prefix, ...) and these values.
    pub fn path(mut self, operator: &str, values: &[&str]) -> Self {
        self.path = Some((
            operator.to_string(),
            values.iter().map(|v| v.to_string()).collect(),
        ));
        self
    }

    /// Only for processes running `binary` (matchBinaries In).
    pub fn binary(mut self, binary: &str) -> Self {
        self.binaries.push(binary.to_string());
        self
    }

    /// Adds a matchActions entry: `action`, then `fields` as written (`key: value`).
    pub fn action(mut self, action: &str, fields: &[&str]) -> Self {
        self.actions.push((
            action.to_string(),
            fields.iter().map(|f| f.to_string()).collect(),
        ));
        self
    }

    pub fn yaml(&self) -> String {
        // JSON strings are YAML double-quoted scalars: paths need no escaping rules of their own.
        let list = |vs: &[String]| {
            vs.iter()
                .map(|v| serde_json::to_string(v).unwrap())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut y = format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: {}\nspec:\n  kprobes:\n  - call: \"sys_openat\"\n    syscall: true\n    args:\n",
            self.name
        );
        if self.dirfd {
            y.push_str("    - index: 0\n      type: \"int\"\n");
        }
        y.push_str("    - index: 1\n      type: \"string\"\n");
        let mut selector = Vec::new();
        if let Some((op, values)) = &self.path {
            selector.push(format!(
                "matchArgs:\n      - index: 1\n        operator: \"{op}\"\n        values: [{}]\n",
                list(values)
            ));
        }
        if !self.binaries.is_empty() {
            selector.push(format!(
                "matchBinaries:\n      - operator: \"In\"\n        values: [{}]\n",
                list(&self.binaries)
            ));
        }
        if !self.actions.is_empty() {
            let mut a = String::from("matchActions:\n");
            for (action, fields) in &self.actions {
                a.push_str(&format!("      - action: {action}\n"));
                for f in fields {
                    a.push_str(&format!("        {f}\n"));
                }
            }
            selector.push(a);
        }
        if !selector.is_empty() {
            y.push_str("    selectors:\n    - ");
            y.push_str(&selector.join("      "));
        }
        y
    }
}
