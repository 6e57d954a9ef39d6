//! `--enable-process-exec-sha256`: process_exec events wait (a bounded time) for the SHA-256
//! of their executed file, which `vigil_runtime::exec_hash` computes off this thread. Events
//! wait in one FIFO, as in the pod wait (`containers::PodIdentity`), so the output keeps the
//! kernel's order: an event behind a waiting exec (its exit, a policy event) waits with it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_bpf::abi::{VIGIL_EXEC_ERR_PATH, VIGIL_EXEC_PATH_DELETED, VIGIL_EXEC_TRUNC_PATH};
use vigil_bpf::records::ExecRecord;
use vigil_process::model::{BinaryLocation, ProcessInfo};
use vigil_proto::tetragon::{self, get_events_response::Event};
use vigil_runtime::exec_hash::{ExecutedFile, Hasher, Missing, Outcome, Request, hex};

/// Events waiting for hashes hold at most this many bytes: past it the oldest go out
/// without waiting longer (marked `TIMEOUT`; nothing is dropped).
const MAX_WAITING_BYTES: usize = 16 << 20;

/// How often the main loop looks for finished hashes while events wait.
pub const POLL: Duration = Duration::from_millis(1);

/// An event on its way to the pod stage.
pub struct Outgoing {
    pub event: Event,
    pub ktime: u64,
    pub process: Option<Arc<ProcessInfo>>,
    pub parent: Option<Arc<ProcessInfo>>,
}

struct Waiting {
    out: Outgoing,
    /// The exec's file, while its outcome is not known.
    file: Option<ExecutedFile>,
    since: Instant,
    deadline: Instant,
    size: usize,
}

/// What the hashes did, for the summary log line (and the tests that read it).
#[derive(Debug, Default, Clone, Copy)]
pub struct WaitStats {
    pub execs: u64,
    pub with_hash: u64,
    /// By `Missing` (timeout, too large, replaced, unreadable, queue full).
    pub missing: [u64; 5],
    /// Execs that had to wait, and how long in total and at most.
    pub waited: u64,
    pub waited_total: Duration,
    pub waited_max: Duration,
}

pub struct HashWait {
    hasher: Hasher,
    wait: Duration,
    queue: VecDeque<Waiting>,
    queued: usize,
    pub stats: WaitStats,
}

/// The hash request of an exec record: `None` paths where no path names the file.
pub fn request(rec: &ExecRecord, info: &ProcessInfo) -> Request {
    let m = &rec.msg;
    let no_path = VIGIL_EXEC_PATH_DELETED | VIGIL_EXEC_TRUNC_PATH | VIGIL_EXEC_ERR_PATH;
    let ordinary = info.file.as_ref().is_some_and(|f| {
        matches!(
            f.location,
            BinaryLocation::Ordinary | BinaryLocation::DevShm
        )
    });
    Request {
        file: ExecutedFile {
            dev: u64::from(m.file_dev),
            ino: m.file_ino,
            size: m.file_size,
            ctime_ns: m.file_ctime_ns,
        },
        pid: m.process.pid,
        ppid: m.ppid,
        path: (ordinary && m.flags & no_path == 0).then(|| info.binary.clone()),
        mnt_ns: m.ns.mnt,
        peers: Vec::new(),
        background: false,
    }
}

/// The hash request of a process found by the start-up scan (alive then: its
/// `/proc/PID/exe` is the file; no path, which may name another file by now).
pub fn scanned_request(p: &vigil_process::procfs::ScannedProcess) -> Option<Request> {
    (p.exe_ino != 0 && !p.kernel_thread).then(|| Request {
        file: ExecutedFile {
            dev: p.exe_dev,
            ino: p.exe_ino,
            size: p.exe_size,
            ctime_ns: p.exe_ctime_ns,
        },
        pid: p.pid,
        ppid: p.ppid,
        path: None,
        mnt_ns: p.namespaces.mnt,
        peers: Vec::new(),
        background: true,
    })
}

fn missing_name(m: Missing) -> tetragon::BinaryHashMissing {
    use tetragon::BinaryHashMissing as B;
    match m {
        Missing::Timeout => B::Timeout,
        Missing::TooLarge => B::TooLarge,
        Missing::Replaced => B::Replaced,
        Missing::Unreadable => B::Unreadable,
        Missing::QueueFull => B::QueueFull,
    }
}

impl HashWait {
    pub fn new(hasher: Hasher, wait: Duration) -> Self {
        Self {
            hasher,
            wait,
            queue: VecDeque::new(),
            queued: 0,
            stats: WaitStats::default(),
        }
    }

    /// Whether events are waiting (the main loop then polls every [`POLL`]).
    pub fn waiting(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Puts the outcome on the exec's process and counts it.
    fn fill(&mut self, event: &mut Event, outcome: Outcome) {
        let Event::ProcessExec(e) = event else {
            return;
        };
        let Some(p) = e.process.as_mut() else {
            return;
        };
        self.stats.execs += 1;
        match outcome {
            Ok(d) => {
                self.stats.with_hash += 1;
                p.binary_sha256 = hex(&d);
            }
            Err(m) => {
                self.stats.missing[m as usize] += 1;
                p.binary_sha256_missing = missing_name(m) as i32;
            }
        }
    }

    /// Takes an event (with its exec's hash request); returns the events ready, in order.
    pub fn admit(
        &mut self,
        mut out: Outgoing,
        request: Option<Request>,
        now: Instant,
    ) -> Vec<Outgoing> {
        let mut file = None;
        if let Some(req) = request {
            let f = req.file;
            match self.hasher.lookup(req) {
                Some(outcome) => self.fill(&mut out.event, outcome),
                None => file = Some(f),
            }
        }
        if file.is_none() && self.queue.is_empty() {
            return vec![out];
        }
        let size = out.event.encoded_len();
        self.queued += size;
        self.queue.push_back(Waiting {
            out,
            file,
            since: now,
            deadline: now + self.wait,
            size,
        });
        self.release(now, false)
    }

    /// The events at the head whose hash is known or whose wait ran out (all with `all`).
    pub fn release(&mut self, now: Instant, all: bool) -> Vec<Outgoing> {
        let mut ready = Vec::new();
        if self.queue.is_empty() {
            return ready;
        }
        self.hasher.collect();
        while let Some(front) = self.queue.front() {
            let outcome = match &front.file {
                None => None,
                Some(f) => match self.hasher.outcome(f) {
                    Some(o) => Some(o),
                    None if all || now >= front.deadline || self.queued > MAX_WAITING_BYTES => {
                        Some(Err(Missing::Timeout))
                    }
                    None => break,
                },
            };
            let Some(mut w) = self.queue.pop_front() else {
                break;
            };
            self.queued -= w.size;
            if let Some(o) = outcome {
                let waited = now.saturating_duration_since(w.since);
                self.stats.waited += 1;
                self.stats.waited_total += waited;
                self.stats.waited_max = self.stats.waited_max.max(waited);
                self.fill(&mut w.out.event, o);
            }
            ready.push(w.out);
        }
        ready
    }

    /// One summary line (at shutdown).
    pub fn log_summary(&self) {
        let s = &self.stats;
        let h = &self.hasher.stats;
        tracing::info!(
            execs = s.execs,
            with_hash = s.with_hash,
            cache_hits = h.cache_hits,
            files_hashed = h.hashed,
            bytes_hashed = h.hashed_bytes,
            missing_timeout = s.missing[Missing::Timeout as usize],
            missing_too_large = s.missing[Missing::TooLarge as usize],
            missing_replaced = s.missing[Missing::Replaced as usize],
            missing_unreadable = s.missing[Missing::Unreadable as usize],
            missing_queue_full = s.missing[Missing::QueueFull as usize],
            waited = s.waited,
            waited_total_us = s.waited_total.as_micros() as u64,
            waited_max_us = s.waited_max.as_micros() as u64,
            cached = self.hasher.cached(),
            "process_exec sha256 summary"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use vigil_runtime::exec_hash::{HasherConfig, kernel_dev};

    fn exec_event(pid: u32) -> Event {
        Event::ProcessExec(tetragon::ProcessExec {
            process: Some(tetragon::Process {
                pid: Some(pid.into()),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn out(pid: u32) -> Outgoing {
        Outgoing {
            event: exec_event(pid),
            ktime: 0,
            process: None,
            parent: None,
        }
    }

    fn pid_of(o: &Outgoing) -> u32 {
        match &o.event {
            Event::ProcessExec(e) => e.process.as_ref().unwrap().pid.unwrap().value,
            _ => 0,
        }
    }

    /// An exec waiting for its hash holds the events behind it; a second exec of a file
    /// hashed already does not wait; the order stays the admission order.
    #[test]
    fn events_keep_their_order_behind_a_waiting_exec() {
        let dir = std::env::temp_dir().join(format!("vigil-hashwait-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bin");
        std::fs::write(&f, b"abc").unwrap();
        let m = std::fs::metadata(&f).unwrap();
        let req = Request {
            file: ExecutedFile {
                dev: kernel_dev(m.dev()),
                ino: m.ino(),
                size: m.len(),
                ctime_ns: (m.ctime() as u64) * 1_000_000_000 + m.ctime_nsec() as u64,
            },
            pid: u32::MAX - 1,
            ppid: u32::MAX - 1,
            path: Some(f.display().to_string()),
            mnt_ns: 0,
            peers: Vec::new(),
            background: false,
        };
        let cfg = HasherConfig {
            proc_root: "/proc".into(),
            max_file_bytes: 1 << 20,
            cache_bytes: 1 << 20,
            workers: 1,
            queue: 8,
        };
        let mut w = HashWait::new(Hasher::start(&cfg).unwrap(), Duration::from_secs(10));
        let t0 = Instant::now();
        let mut got = w.admit(out(1), Some(req.clone()), t0);
        got.extend(w.admit(out(2), None, t0));
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.waiting() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
            got.extend(w.release(Instant::now(), false));
        }
        got.extend(w.admit(out(3), Some(req), Instant::now()));
        assert_eq!(got.iter().map(pid_of).collect::<Vec<_>>(), vec![1, 2, 3]);
        let sha = |o: &Outgoing| match &o.event {
            Event::ProcessExec(e) => e.process.as_ref().unwrap().binary_sha256.clone(),
            _ => String::new(),
        };
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha(&got[0]), abc);
        assert_eq!(sha(&got[2]), abc);
        // Event 2 asked for no hash (as an exit or a procFS exec): not counted, no field.
        assert_eq!(sha(&got[1]), "");
        assert_eq!(
            (w.stats.execs, w.stats.with_hash, w.stats.waited),
            (2, 2, 1)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
