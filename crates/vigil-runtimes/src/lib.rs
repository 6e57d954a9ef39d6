//! Names and images of containers run without Kubernetes, from the runtimes themselves:
//! containerd's own API (every namespace, not only CRI's `k8s.io`) and Docker's engine API.
//!
//! The pipeline knows a process's cgroup; the runtimes know which cgroup each container
//! got. A worker thread asks them (`containerd`: the `linux.cgroupsPath` of every
//! container's spec; `docker`: the container whose id the cgroup path carries) and keeps
//! the answers by cgroup id in a cache bounded in bytes. The pipeline waits for an answer
//! at most `wait`, once per cgroup it has not seen before, and not at all while no runtime
//! answers; later events of that cgroup read the cache without waiting.
//!
//! Everything a runtime returns is treated as hostile: messages and responses are bounded,
//! strings are cut to fixed lengths, paths are checked before they are used.

pub mod cgroup;
pub mod containerd;
pub mod docker;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Longest container id, name and image reference kept (bytes).
pub const MAX_ID: usize = 128;
pub const MAX_NAME: usize = 256;
pub const MAX_IMAGE: usize = 512;

/// Requests queued for the worker at most; past it a cgroup goes unnamed (not waited for).
const MAX_QUEUED: usize = 1024;
/// containerd is listed again at most this often (new cgroups in a burst share a listing).
const MIN_RELIST: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("bad answer: {0}")]
    Protocol(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    Docker,
}

impl Runtime {
    /// Tetragon's id prefix (`containerd://<id>`).
    pub fn scheme(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::Docker => "docker",
        }
    }
}

/// A container as its runtime describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub runtime: Runtime,
    pub id: String,
    pub name: String,
    /// The image reference as given (`docker.io/library/busybox:latest`).
    pub image: String,
    /// containerd: `repo@digest`; Docker: the image's id (`sha256:...`). Empty if unknown.
    pub image_id: String,
    /// containerd: the cgroup directory below the cgroup root; Docker: empty.
    pub cgroup_dir: String,
}

impl Found {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.id.len()
            + self.name.len()
            + self.image.len()
            + self.image_id.len()
            + self.cgroup_dir.len()
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[derive(Debug, Clone)]
pub struct Config {
    /// containerd's socket; `None`: not asked.
    pub containerd: Option<PathBuf>,
    /// Docker's socket; `None`: not asked.
    pub docker: Option<PathBuf>,
    /// The cgroup v2 mount (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    pub procfs: PathBuf,
    /// Per call to a runtime.
    pub timeout: Duration,
    /// Longest an event waits for a new cgroup's answer.
    pub wait: Duration,
    /// Bytes of cached answers.
    pub cache_bytes: usize,
}

/// What the worker is asked: who is in cgroup `cgroup_id`.
struct Request {
    cgroup_id: u64,
    pid: u32,
    /// The id a runtime's cgroup layout carries (Docker's), if any.
    container_id: String,
}

#[derive(Default)]
struct State {
    /// Cgroup id -> the container in it (`None`: no runtime knows one).
    by_cgroup: HashMap<u64, Option<Arc<Found>>>,
    bytes: usize,
    asked: HashSet<u64>,
    /// Some configured runtime answered its last call: worth waiting for.
    answering: bool,
}

struct Shared {
    state: Mutex<State>,
    answered: Condvar,
    cache_bytes: usize,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pipeline's handle: `resolve` on a new image, `get` when encoding.
pub struct RuntimeNames {
    shared: Arc<Shared>,
    requests: SyncSender<Request>,
    wait: Duration,
}

impl RuntimeNames {
    /// Starts the worker thread; the first listing happens at once, so that the runtimes'
    /// state is logged at start.
    pub fn start(config: Config) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            answered: Condvar::new(),
            cache_bytes: config.cache_bytes,
        });
        let (tx, rx) = std::sync::mpsc::sync_channel(MAX_QUEUED);
        let wait = config.wait;
        let worker = Worker::new(config, shared.clone())?;
        std::thread::Builder::new()
            .name("vigil-runtimes".into())
            .spawn(move || worker.run(&rx))?;
        Ok(Self {
            shared,
            requests: tx,
            wait,
        })
    }

    /// The container in `cgroup_id`, asking the runtimes the first time the cgroup is seen
    /// and then, with `wait`, waiting for them at most the configured wait (not at all
    /// while none answers).
    pub fn ask(
        &self,
        cgroup_id: u64,
        pid: u32,
        container_id: &str,
        wait: bool,
    ) -> Option<Arc<Found>> {
        if cgroup_id == 0 {
            return None;
        }
        let mut state = self.shared.lock();
        if let Some(known) = state.by_cgroup.get(&cgroup_id) {
            return known.clone();
        }
        if !state.asked.insert(cgroup_id) {
            return None;
        }
        let request = Request {
            cgroup_id,
            pid,
            container_id: container_id.to_string(),
        };
        // Full queue (a burst of new cgroups) or no worker: unnamed, asked again next time.
        if self.requests.try_send(request).is_err() {
            state.asked.remove(&cgroup_id);
            return None;
        }
        if !wait || !state.answering {
            return None;
        }
        let deadline = Instant::now() + self.wait;
        loop {
            if let Some(known) = state.by_cgroup.get(&cgroup_id) {
                return known.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self
                .shared
                .answered
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// What is known about `cgroup_id` now (never waits, never asks).
    pub fn get(&self, cgroup_id: u64) -> Option<Arc<Found>> {
        self.shared
            .lock()
            .by_cgroup
            .get(&cgroup_id)
            .cloned()
            .flatten()
    }
}

/// Whether a runtime answered its last call: a change is logged once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Health {
    Unknown,
    Up,
    Down,
}

struct Worker {
    containerd: Option<containerd::Containerd>,
    docker: Option<docker::Docker>,
    cgroup_root: PathBuf,
    procfs: PathBuf,
    shared: Arc<Shared>,
    tokio: tokio::runtime::Runtime,
    health: [Health; 2],
    /// containerd's containers by cgroup directory, from the last listing.
    listed: HashMap<String, Arc<Found>>,
    listed_at: Option<Instant>,
}

impl Worker {
    fn new(config: Config, shared: Arc<Shared>) -> std::io::Result<Self> {
        Ok(Self {
            containerd: config
                .containerd
                .map(|s| containerd::Containerd::new(s, config.timeout)),
            docker: config
                .docker
                .map(|s| docker::Docker::new(s, config.timeout)),
            cgroup_root: config.cgroup_root,
            procfs: config.procfs,
            shared,
            tokio: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            health: [Health::Unknown; 2],
            listed: HashMap::new(),
            listed_at: None,
        })
    }

    fn run(mut self, requests: &Receiver<Request>) {
        self.relist();
        if let Some(d) = &self.docker {
            // A probe: an unknown id answers 404 from a live engine.
            let outcome = d.inspect(&"0".repeat(64)).map(|_| ());
            self.note(Runtime::Docker, outcome.as_ref().err());
        }
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            while batch.len() < 64
                && let Ok(more) = requests.try_recv()
            {
                batch.push(more);
            }
            if self.listed_at.is_none_or(|t| t.elapsed() >= MIN_RELIST) {
                self.relist();
            }
            for request in batch {
                let answer = self.answer(&request);
                self.store(request.cgroup_id, answer);
            }
            self.shared.answered.notify_all();
        }
    }

    fn relist(&mut self) {
        let Some(c) = &self.containerd else {
            return;
        };
        let outcome = self.tokio.block_on(c.list());
        self.listed_at = Some(Instant::now());
        let outcome = outcome.map(|found| {
            self.listed = found
                .into_iter()
                .map(|f| (f.cgroup_dir.clone(), Arc::new(f)))
                .collect();
        });
        self.note(Runtime::Containerd, outcome.as_ref().err());
    }

    /// Logs a runtime's change of health, once per change.
    fn note(&mut self, runtime: Runtime, error: Option<&Error>) {
        let (slot, socket) = match runtime {
            Runtime::Containerd => (0, self.containerd.as_ref().map(|c| c.socket())),
            Runtime::Docker => (1, self.docker.as_ref().map(|d| d.socket())),
        };
        let socket = socket.map(|s| s.display().to_string()).unwrap_or_default();
        let now = if error.is_none() {
            Health::Up
        } else {
            Health::Down
        };
        if now != self.health[slot] {
            match error {
                None => {
                    tracing::info!(runtime = runtime.scheme(), %socket, "container runtime answers: containers get their names and images")
                }
                Some(e) => {
                    tracing::warn!(runtime = runtime.scheme(), %socket, error = %e, "container runtime does not answer: its containers go without names until it does")
                }
            }
            self.health[slot] = now;
        }
        let answering = self.health.contains(&Health::Up);
        self.shared.lock().answering = answering;
    }

    fn answer(&mut self, request: &Request) -> Option<Arc<Found>> {
        if let Some(f) = self.in_listing(request) {
            return Some(f);
        }
        let docker = self.docker.as_ref()?;
        if request.container_id.is_empty() {
            return None;
        }
        let outcome = docker.inspect(&request.container_id);
        let found = outcome.as_ref().ok().cloned().flatten();
        self.note(Runtime::Docker, outcome.as_ref().err());
        found.map(Arc::new)
    }

    /// The containerd container whose cgroup is the process's or the shallowest of its
    /// ancestors: cgroups a container makes below its own do not change its identity.
    fn in_listing(&self, request: &Request) -> Option<Arc<Found>> {
        if self.listed.is_empty() {
            return None;
        }
        let text =
            std::fs::read_to_string(self.procfs.join(request.pid.to_string()).join("cgroup"));
        if let Ok(text) = text
            && let Some(path) = cgroup::unified_path(&text)
        {
            let mut prefix = String::new();
            for part in path.split('/').filter(|p| !p.is_empty()) {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                if let Some(f) = self.listed.get(&prefix) {
                    return Some(f.clone());
                }
            }
            return None;
        }
        // The process is gone: its cgroup may still be the container's own.
        self.listed.values().find_map(|f| {
            let dir = self.cgroup_root.join(&f.cgroup_dir);
            std::fs::metadata(dir)
                .is_ok_and(|m| m.ino() == request.cgroup_id)
                .then(|| f.clone())
        })
    }

    fn store(&self, cgroup_id: u64, answer: Option<Arc<Found>>) {
        let mut state = self.shared.lock();
        let cost = 16 + answer.as_ref().map_or(0, |f| f.bytes());
        if state.bytes + cost > self.shared.cache_bytes {
            // Dropping everything is safe: a cgroup asked again costs one more call.
            state.by_cgroup.clear();
            state.asked.clear();
            state.bytes = 0;
        }
        state.bytes += cost;
        state.by_cgroup.insert(cgroup_id, answer);
    }
}

/// The pipeline's side against a slow Docker-speaking server: an event waits at most the
/// configured wait, the answer lands in the cache for later events, and nothing waits
/// while no runtime answers.
#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Write};
    use std::os::unix::net::UnixListener;

    fn config(docker: PathBuf, wait: Duration) -> Config {
        Config {
            containerd: None,
            docker: Some(docker),
            cgroup_root: PathBuf::from("/nonexistent"),
            procfs: PathBuf::from("/proc"),
            timeout: Duration::from_secs(2),
            wait,
            cache_bytes: 1 << 20,
        }
    }

    /// Answers the start-up probe at once and every other inspect after `delay`.
    fn slow_docker(sock: &std::path::Path, delay: Duration) {
        let listener = UnixListener::bind(sock).unwrap();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { return };
                let mut line = String::new();
                let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
                reader.read_line(&mut line).unwrap();
                if line.contains(&"0".repeat(64)) {
                    let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    continue;
                }
                std::thread::sleep(delay);
                let body = r#"{"Id":"x","Name":"/slow","Image":"sha256:1","Config":{"Image":"i"}}"#;
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vigil-names-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn events_wait_at_most_the_wait_then_read_the_cache() {
        let d = dir("slow");
        let sock = d.join("docker.sock");
        slow_docker(&sock, Duration::from_millis(400));
        let names = RuntimeNames::start(config(sock, Duration::from_millis(50))).unwrap();
        wait_until("the probe answered", || names.shared.lock().answering);
        let id = "ab".repeat(32);
        let t = Instant::now();
        assert!(names.ask(7, 1, &id, true).is_none(), "slower than the wait");
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_millis(300),
            "{waited:?}"
        );
        // Asked already: the next event of the cgroup does not wait again.
        let t = Instant::now();
        assert!(names.ask(7, 1, &id, true).is_none());
        assert!(t.elapsed() < Duration::from_millis(40));
        wait_until("the answer cached", || names.get(7).is_some());
        assert_eq!(names.get(7).unwrap().name, "slow");
        assert_eq!(names.ask(7, 1, &id, true).unwrap().name, "slow");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn nothing_waits_while_no_runtime_answers() {
        let d = dir("absent");
        let names =
            RuntimeNames::start(config(d.join("absent.sock"), Duration::from_secs(1))).unwrap();
        // Give the start-up probe time to fail.
        std::thread::sleep(Duration::from_millis(50));
        assert!(!names.shared.lock().answering);
        let t = Instant::now();
        for cgroup in 1..=20 {
            assert!(names.ask(cgroup, 1, &"ab".repeat(32), true).is_none());
        }
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
