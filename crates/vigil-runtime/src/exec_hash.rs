//! SHA-256 of executed files (`--enable-process-exec-sha256`), off the pipeline thread.
//!
//! The kernel's exec record names the file it executed by identity (device, inode) and by
//! state (size, ctime); that is the cache key, so a cache hit needs no I/O at all, and a
//! file rewritten in place (new ctime) or replaced by rename (new inode) is a new key.
//!
//! Short-lived processes are the common case, so a hash must not depend on the process
//! still running. A miss goes to a worker that opens, in order, each way to the file that
//! may still exist, and keeps the first that is the kernel's (device, inode):
//! 1. `/proc/PID/exe`: the very file, while the process lives (also memfd and unlinked);
//! 2. the path under the parent's root (`/proc/PPID/root`, `openat2` with `RESOLVE_IN_ROOT`):
//!    a process that exited at once usually leaves a parent in the same container;
//! 3. the path under the root of another process seen executing in the same mount
//!    namespace (a container's long-lived processes, when the exec's parent is outside it,
//!    as with `nsenter` or a runtime's exec);
//! 4. the path in the agent's own mount namespace (host processes whose parent is gone).
//!
//! Paths are walked with `RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` and opened
//! `O_NONBLOCK` (no FIFO can block a worker), and only a regular file whose identity,
//! size and ctime are the kernel's is read: whatever a workload puts at the path later is
//! never hashed in its place. The content is checked unchanged after the read (size read
//! and ctime again): a file modified during the read is `Replaced`, not a wrong hash.
//! Nothing is pinned in the kernel: an exited process's unlinked or memfd file is gone.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The executed file as the kernel saw it at exec: the cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExecutedFile {
    /// The kernel's encoding (`major << 20 | minor`), as in the exec record.
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub ctime_ns: u64,
}

/// Why an exec has no hash (the proto's `BinaryHashMissing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Missing {
    #[error("not hashed within the wait")]
    Timeout,
    #[error("larger than the size limit")]
    TooLarge,
    #[error("the file changed or was replaced after the exec")]
    Replaced,
    #[error("the executed file could not be opened or read")]
    Unreadable,
    #[error("the hash queue was full")]
    QueueFull,
}

pub type Digest = [u8; 32];
pub type Outcome = Result<Digest, Missing>;

/// One exec to hash: its file and the ways to reach it.
#[derive(Debug, Clone)]
pub struct Request {
    pub file: ExecutedFile,
    pub pid: u32,
    pub ppid: u32,
    /// The path in the process's root; `None` where no path can name the file (memfd,
    /// unlinked, a truncated path).
    pub path: Option<String>,
    /// The process's mount namespace (inode number).
    pub mnt_ns: u32,
    /// Other processes seen executing in that namespace ([`Hasher::lookup`] fills them).
    pub peers: Vec<u32>,
    /// A process found by the start-up scan: read after every waiting exec's file.
    pub background: bool,
}

/// `st_dev` as the kernel's `s_dev` encoding.
pub fn kernel_dev(st_dev: u64) -> u64 {
    (u64::from(libc::major(st_dev)) << 20) | u64::from(libc::minor(st_dev))
}

/// Lowercase hex of a digest.
pub fn hex(d: &Digest) -> String {
    vigil_hex::encode(d)
}

fn openat2(dir: libc::c_int, path: &str, resolve: u64) -> std::io::Result<File> {
    let c = std::ffi::CString::new(path)
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain old data; all-zero is its empty value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC) as u64;
    how.resolve = resolve | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2(2) with a NUL-terminated path and an open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd from openat2, owned from here on.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

/// The candidates, in order (see the module comment).
fn candidates(proc_root: &str, req: &Request) -> Vec<std::io::Result<File>> {
    let mut out = Vec::with_capacity(3);
    // The magic link is meant here: it is the kernel's own reference to the file.
    out.push(
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(format!("{proc_root}/{}/exe", req.pid)),
    );
    if let Some(path) = &req.path {
        let root = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(format!("{proc_root}/{}/root", req.ppid));
        out.push(root.and_then(|r| in_root(&r, path)));
        for peer in &req.peers {
            // The pid may be another process's by now: only one still in the namespace.
            let same_ns = std::fs::metadata(format!("{proc_root}/{peer}/ns/mnt"))
                .is_ok_and(|m| m.ino() == u64::from(req.mnt_ns));
            if same_ns {
                let root = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
                    .open(format!("{proc_root}/{peer}/root"));
                out.push(root.and_then(|r| in_root(&r, path)));
            }
        }
        out.push(openat2(libc::AT_FDCWD, path, 0));
    }
    out
}

/// `path` resolved with `root` as its `/`.
fn in_root(root: &File, path: &str) -> std::io::Result<File> {
    openat2(
        root.as_raw_fd(),
        path.trim_start_matches('/'),
        libc::RESOLVE_IN_ROOT,
    )
}

fn ctime_ns(m: &std::fs::Metadata) -> u64 {
    (m.ctime() as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(m.ctime_nsec() as u64)
}

/// Opens the file `req` names, checked to be the kernel's file in the kernel's state.
pub fn open_executed(proc_root: &str, req: &Request) -> Result<File, Missing> {
    let want = req.file;
    let mut other_file = false;
    for f in candidates(proc_root, req) {
        let Ok(f) = f else { continue };
        let Ok(meta) = f.metadata() else { continue };
        if kernel_dev(meta.dev()) != want.dev || meta.ino() != want.ino {
            // Something else is at the path now (or the pid is another process's).
            other_file = true;
            continue;
        }
        if !meta.file_type().is_file() {
            return Err(Missing::Unreadable);
        }
        if meta.len() != want.size || ctime_ns(&meta) != want.ctime_ns {
            return Err(Missing::Replaced);
        }
        return Ok(f);
    }
    Err(if other_file {
        Missing::Replaced
    } else {
        Missing::Unreadable
    })
}

/// Hashes the file `req` names, at most `max` bytes (see the module comment).
pub fn hash_executed(proc_root: &str, req: &Request, max: u64) -> Outcome {
    if req.file.size > max {
        return Err(Missing::TooLarge);
    }
    let mut f = open_executed(proc_root, req)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Missing::Unreadable),
        };
        total += n as u64;
        if total > req.file.size {
            return Err(Missing::Replaced);
        }
        ctx.update(&buf[..n]);
    }
    let after = f.metadata().map_err(|_| Missing::Unreadable)?;
    if total != req.file.size || ctime_ns(&after) != req.file.ctime_ns {
        return Err(Missing::Replaced);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

/// Settings of the hash service.
#[derive(Debug, Clone)]
pub struct HasherConfig {
    pub proc_root: String,
    /// Files larger than this are not read (`TooLarge`).
    pub max_file_bytes: u64,
    /// Bytes the cache of digests may take.
    pub cache_bytes: usize,
    pub workers: usize,
    /// Requests waiting for a worker at most; more are `QueueFull`.
    pub queue: usize,
}

/// Cost of one cache entry: the key in the map and in the eviction order, the digest and
/// the map's own overhead.
const ENTRY_BYTES: usize = 2 * std::mem::size_of::<ExecutedFile>() + 32 + 48;

/// Failures are kept only for the events waiting on them, this long (longer than the
/// longest wait the agent allows, so a waiting event never finds its answer gone).
const FAILURE_KEPT: Duration = Duration::from_secs(10);

/// Failures remembered at most.
const MAX_FAILURES: usize = 4096;

/// Counters, for the log line and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct HasherStats {
    pub lookups: u64,
    pub cache_hits: u64,
    /// Files read and hashed by the workers.
    pub hashed: u64,
    pub hashed_bytes: u64,
    pub queue_full: u64,
    pub failed: u64,
    pub evicted: u64,
}

/// Files larger than this are read by one worker at a time, so that a burst of large
/// files never holds up every worker while small ones (most binaries) wait.
const LARGE_FILE: u64 = 8 << 20;

/// The workers' queue: execs' files first (small ones before large ones, at most one
/// large read at a time), the start-up scan's after them.
#[derive(Default)]
struct Queue {
    small: VecDeque<Request>,
    large: VecDeque<Request>,
    background: VecDeque<Request>,
    large_busy: bool,
    closed: bool,
}

impl Queue {
    fn len(&self) -> usize {
        self.small.len() + self.large.len() + self.background.len()
    }

    fn push(&mut self, req: Request) {
        if req.background {
            self.background.push_back(req);
        } else if req.file.size > LARGE_FILE {
            self.large.push_back(req);
        } else {
            self.small.push_back(req);
        }
    }

    /// The next request a free worker takes, and whether it is a large one.
    fn next(&mut self) -> Option<(Request, bool)> {
        if let Some(r) = self.small.pop_front() {
            return Some((r, false));
        }
        if !self.large_busy
            && let Some(r) = self.large.pop_front()
        {
            self.large_busy = true;
            return Some((r, true));
        }
        let busy = self.large_busy;
        let i = self
            .background
            .iter()
            .position(|r| r.file.size <= LARGE_FILE || !busy)?;
        let r = self.background.remove(i)?;
        let large = r.file.size > LARGE_FILE;
        self.large_busy |= large;
        Some((r, large))
    }
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

fn worker(shared: &Shared, done: &std::sync::mpsc::SyncSender<Done>, root: &str, max: u64) {
    loop {
        let (req, large) = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if q.closed {
                    return;
                }
                if let Some(job) = q.next() {
                    break job;
                }
                q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let outcome = hash_executed(root, &req, max);
        if large {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.large_busy = false;
            shared.ready.notify_all();
        }
        let bytes = if outcome.is_ok() { req.file.size } else { 0 };
        if done.send((req.file, outcome, bytes)).is_err() {
            return;
        }
    }
}

type Done = (ExecutedFile, Outcome, u64);

/// The hash service: a bounded queue to worker threads, a byte-bounded cache of digests
/// by [`ExecutedFile`], and the requests in flight (one read per file however many execs
/// wait for it). Used from one thread (the pipeline); only the workers run elsewhere.
pub struct Hasher {
    shared: Arc<Shared>,
    queue_cap: usize,
    done: Receiver<Done>,
    cache: HashMap<ExecutedFile, Digest>,
    order: VecDeque<ExecutedFile>,
    max_entries: usize,
    failures: HashMap<ExecutedFile, (Missing, Instant)>,
    in_flight: HashSet<ExecutedFile>,
    max_file_bytes: u64,
    /// Recent execs' pids per mount namespace: ways into a namespace after an exec's own
    /// process and parent are gone.
    peers: HashMap<u32, VecDeque<u32>>,
    proc_root: String,
    pub stats: HasherStats,
}

/// Pids remembered per mount namespace, and namespaces remembered (cleared when full).
const PEERS_PER_NS: usize = 4;
const MAX_NAMESPACES: usize = 4096;

impl Hasher {
    pub fn start(cfg: &HasherConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        });
        // Every accepted request gives one result; the channel holds what queue and workers
        // can.
        let (done_tx, done) = sync_channel(cfg.queue.max(1) + cfg.workers.max(1));
        for i in 0..cfg.workers.max(1) {
            let shared = Arc::clone(&shared);
            let done_tx = done_tx.clone();
            let root = cfg.proc_root.clone();
            let max = cfg.max_file_bytes;
            std::thread::Builder::new()
                .name(format!("vigil-exec-hash-{i}"))
                .spawn(move || worker(&shared, &done_tx, &root, max))?;
        }
        Ok(Self {
            shared,
            queue_cap: cfg.queue.max(1),
            done,
            cache: HashMap::new(),
            order: VecDeque::new(),
            max_entries: (cfg.cache_bytes / ENTRY_BYTES).max(1),
            failures: HashMap::new(),
            in_flight: HashSet::new(),
            max_file_bytes: cfg.max_file_bytes,
            peers: HashMap::new(),
            proc_root: cfg.proc_root.clone(),
            stats: HasherStats::default(),
        })
    }

    /// The outcome for `req` if known now (a cache hit, a fixed answer); otherwise the
    /// file is queued for a worker (once) and [`Hasher::outcome`] answers later.
    pub fn lookup(&mut self, mut req: Request) -> Option<Outcome> {
        self.stats.lookups += 1;
        self.collect();
        self.note_peer(&mut req);
        if let Some(d) = self.cache.get(&req.file) {
            self.stats.cache_hits += 1;
            return Some(Ok(*d));
        }
        if req.file.size > self.max_file_bytes {
            return Some(Err(Missing::TooLarge));
        }
        if self.in_flight.contains(&req.file) {
            if !req.background {
                // Waiting behind the start-up scan: an exec waits for it now.
                let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(i) = q.background.iter().position(|r| r.file == req.file) {
                    q.background.remove(i);
                    q.push(req);
                }
            }
            return None;
        }
        // A failure that waiting events have seen is tried again for a new exec: the
        // process of this one may still be alive.
        self.failures.remove(&req.file);
        let file = req.file;
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.queue_cap {
            self.stats.queue_full += 1;
            return Some(Err(Missing::QueueFull));
        }
        q.push(req);
        self.shared.ready.notify_one();
        drop(q);
        self.in_flight.insert(file);
        None
    }

    /// Gives `req` the namespace's known processes and remembers its own.
    fn note_peer(&mut self, req: &mut Request) {
        if self.peers.len() >= MAX_NAMESPACES && !self.peers.contains_key(&req.mnt_ns) {
            self.peers.clear();
        }
        let known = self.peers.entry(req.mnt_ns).or_default();
        req.peers = known
            .iter()
            .rev()
            .copied()
            .filter(|p| *p != req.pid)
            .collect();
        known.retain(|p| *p != req.pid);
        if known.len() >= PEERS_PER_NS {
            // Short-lived processes must not crowd out the namespace's long-lived ones (a
            // container's init): the exited go first (a stat of procfs, never blocking).
            let root = &self.proc_root;
            known.retain(|p| std::path::Path::new(&format!("{root}/{p}")).exists());
        }
        if known.len() >= PEERS_PER_NS {
            known.pop_front();
        }
        known.push_back(req.pid);
    }

    /// The outcome for `file` once its worker is done (`None`: still in flight).
    pub fn outcome(&self, file: &ExecutedFile) -> Option<Outcome> {
        if let Some(d) = self.cache.get(file) {
            return Some(Ok(*d));
        }
        if let Some((m, _)) = self.failures.get(file) {
            return Some(Err(*m));
        }
        // Neither cached nor in flight: evicted right after hashing (a tiny cache).
        (!self.in_flight.contains(file)).then_some(Err(Missing::Timeout))
    }

    /// Whether any file is being hashed.
    pub fn busy(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Takes the workers' results into the cache.
    pub fn collect(&mut self) {
        let now = Instant::now();
        while let Ok((file, outcome, bytes)) = self.done.try_recv() {
            self.in_flight.remove(&file);
            match outcome {
                Ok(d) => {
                    self.stats.hashed += 1;
                    self.stats.hashed_bytes += bytes;
                    self.insert(file, d);
                }
                Err(m) => {
                    self.stats.failed += 1;
                    if self.failures.len() >= MAX_FAILURES {
                        self.failures.retain(|_, (_, at)| now - *at < FAILURE_KEPT);
                    }
                    if self.failures.len() < MAX_FAILURES {
                        self.failures.insert(file, (m, now));
                    }
                }
            }
        }
        if !self.failures.is_empty() {
            self.failures.retain(|_, (_, at)| now - *at < FAILURE_KEPT);
        }
    }

    fn insert(&mut self, file: ExecutedFile, d: Digest) {
        if self.cache.insert(file, d).is_none() {
            self.order.push_back(file);
        }
        while self.cache.len() > self.max_entries {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.cache.remove(&old);
            self.stats.evicted += 1;
        }
    }

    /// Entries in the cache (for tests and the log).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.closed = true;
        self.shared.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(path: &std::path::Path) -> ExecutedFile {
        let m = std::fs::metadata(path).unwrap();
        ExecutedFile {
            dev: kernel_dev(m.dev()),
            ino: m.ino(),
            size: m.len(),
            ctime_ns: ctime_ns(&m),
        }
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("vigil-exec-hash-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// `printf abc | sha256sum`
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn gone_process_request(path: &std::path::Path) -> Request {
        // pid/ppid that do not exist: only the path in this mount namespace is left.
        Request {
            file: file_of(path),
            pid: u32::MAX - 1,
            ppid: u32::MAX - 1,
            path: Some(path.display().to_string()),
            mnt_ns: 0,
            peers: Vec::new(),
            background: false,
        }
    }

    #[test]
    fn a_file_of_a_gone_process_is_hashed_by_path() {
        let d = dir("path");
        let f = d.join("bin");
        std::fs::write(&f, b"abc").unwrap();
        let got = hash_executed("/proc", &gone_process_request(&f), 1 << 20).unwrap();
        assert_eq!(hex(&got), ABC);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A live process's file through `/proc/PID/exe` alone (no path given).
    #[test]
    fn a_live_process_is_hashed_through_its_exe() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
        let req = Request {
            file: file_of(&exe),
            pid: child.id(),
            ppid: std::process::id(),
            path: None,
            mnt_ns: 0,
            peers: Vec::new(),
            background: false,
        };
        let got = hash_executed("/proc", &req, u64::MAX);
        let _ = child.kill();
        let _ = child.wait();
        let want = crate::elf::sha256_hex(&std::fs::read(&exe).unwrap());
        assert_eq!(hex(&got.unwrap()), want);
    }

    #[test]
    fn a_rewritten_or_renamed_over_file_is_replaced_not_misreported() {
        let d = dir("replaced");
        let f = d.join("bin");
        std::fs::write(&f, b"abc").unwrap();
        let req = gone_process_request(&f);
        // Same inode, other content (ctime moves even when the size does not).
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&f, b"abd").unwrap();
        assert_eq!(
            hash_executed("/proc", &req, 1 << 20),
            Err(Missing::Replaced)
        );
        // Another inode renamed over the path.
        let req = gone_process_request(&f);
        let tmp = d.join("new");
        std::fs::write(&tmp, b"abc").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        assert_eq!(
            hash_executed("/proc", &req, 1 << 20),
            Err(Missing::Replaced)
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn links_sizes_and_absent_files_are_refused() {
        let d = dir("refused");
        let f = d.join("bin");
        std::fs::write(&f, b"abc").unwrap();
        let l = d.join("link");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        let mut req = gone_process_request(&f);
        req.path = Some(l.display().to_string());
        assert_eq!(
            hash_executed("/proc", &req, 1 << 20),
            Err(Missing::Unreadable)
        );
        let req = gone_process_request(&f);
        assert_eq!(hash_executed("/proc", &req, 2), Err(Missing::TooLarge));
        let mut req = gone_process_request(&f);
        req.path = Some(d.join("absent").display().to_string());
        assert_eq!(
            hash_executed("/proc", &req, 1 << 20),
            Err(Missing::Unreadable)
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    fn queued(size: u64, background: bool, ino: u64) -> Request {
        Request {
            file: ExecutedFile {
                dev: 1,
                ino,
                size,
                ctime_ns: 0,
            },
            pid: 1,
            ppid: 1,
            path: None,
            mnt_ns: 0,
            peers: Vec::new(),
            background,
        }
    }

    /// Execs' small files first, one large read at a time, the start-up scan's last.
    #[test]
    fn the_queue_serves_small_exec_files_first_and_one_large_at_a_time() {
        let mut q = Queue::default();
        let big = LARGE_FILE + 1;
        for (size, background, ino) in [
            (10, true, 1),
            (big, false, 2),
            (big, false, 3),
            (10, false, 4),
            (big, true, 5),
        ] {
            q.push(queued(size, background, ino));
        }
        let take = |q: &mut Queue| q.next().map(|(r, large)| (r.file.ino, large));
        assert_eq!(take(&mut q), Some((4, false)));
        assert_eq!(take(&mut q), Some((2, true)));
        // The large lane is busy: the scan's small file, not the next large one.
        assert_eq!(take(&mut q), Some((1, false)));
        assert_eq!(take(&mut q), None);
        q.large_busy = false;
        assert_eq!(take(&mut q), Some((3, true)));
        q.large_busy = false;
        assert_eq!(take(&mut q), Some((5, true)));
        assert_eq!(q.len(), 0);
    }

    fn wait_outcome(h: &mut Hasher, file: &ExecutedFile) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            h.collect();
            if let Some(o) = h.outcome(file) {
                return o;
            }
            assert!(Instant::now() < deadline, "no outcome");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn the_service_hashes_once_caches_and_bounds_its_cache() {
        let d = dir("service");
        let cfg = HasherConfig {
            proc_root: "/proc".into(),
            max_file_bytes: 1 << 20,
            cache_bytes: 2 * ENTRY_BYTES,
            workers: 1,
            queue: 4,
        };
        let mut h = Hasher::start(&cfg).unwrap();
        let mut files = Vec::new();
        for i in 0..3 {
            let f = d.join(format!("bin{i}"));
            std::fs::write(&f, format!("content {i}")).unwrap();
            files.push(f);
        }
        let req = gone_process_request(&files[0]);
        assert_eq!(h.lookup(req.clone()), None);
        // A second exec of the same file: waits for the same read (or, if the worker was
        // already done, hits the cache); never a second read.
        let second = h.lookup(req.clone());
        let got = wait_outcome(&mut h, &req.file).unwrap();
        assert_eq!(hex(&got), crate::elf::sha256_hex(b"content 0"));
        assert!(second.is_none() || second == Some(Ok(got)), "{second:?}");
        assert_eq!(h.lookup(req.clone()), Some(Ok(got)));
        assert_eq!(h.stats.hashed, 1);
        assert!(h.stats.cache_hits >= 1);
        for f in &files[1..] {
            let r = gone_process_request(f);
            assert_eq!(h.lookup(r.clone()), None);
            wait_outcome(&mut h, &r.file).unwrap();
        }
        assert_eq!(h.cached(), 2);
        assert_eq!(h.stats.evicted, 1);
        let _ = std::fs::remove_dir_all(&d);
    }
}
