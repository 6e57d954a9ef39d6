//! The user-space process cache, keyed by process image (pid + ktime, i.e. exec_id).
//!
//! Reference counting follows Tetragon's scheme in a simpler form: an entry is held by its
//! own process while that image is alive and by every cached child whose parent it is. When
//! both are gone it becomes *releasable*, and it is removed one `gc_interval` later so that
//! events already in flight still find it. Removal releases the parent in turn.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::exec_id::ProcessKey;
use crate::model::ProcessInfo;

/// Bytes of process data (argv, environment, paths) the cache holds at most: argv and the
/// environment are a workload's choice (up to 32 KiB each per image), so a count of
/// entries alone does not bound memory.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// The heap bytes an entry holds, roughly: its variable-length fields.
fn data_bytes(info: &ProcessInfo) -> usize {
    let strings = info.exec_id.len()
        + info.parent_exec_id.len()
        + info.binary.len()
        + info.arguments.len()
        + info.cwd.len()
        + info.cgroup_name.len()
        + info.container_id.len()
        + info.docker.len();
    let argv: usize = info.argv.iter().map(|a| a.len() + 24).sum();
    let env: usize = info
        .environment
        .iter()
        .map(|(k, v)| k.len() + v.len() + 48)
        .sum();
    std::mem::size_of::<ProcessInfo>() + strings + argv + env
}

#[derive(Debug)]
struct Entry {
    info: Arc<ProcessInfo>,
    bytes: usize,
    alive: bool,
    children: u32,
    releasable_since: Option<Instant>,
}

/// A snapshot of one entry, for debugging dumps and tests.
#[derive(Debug, Clone)]
pub struct EntrySnapshot {
    pub key: ProcessKey,
    pub exec_id: String,
    pub binary: String,
    pub alive: bool,
    pub refcnt: u32,
    /// How long the entry has been waiting for removal (None: still referenced).
    pub releasable_for: Option<Duration>,
}

/// Counters a metrics endpoint and tests read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub inserted: u64,
    pub removed: u64,
    /// Inserts refused because the cache was full of entries still in use.
    pub refused_full: u64,
}

#[derive(Debug)]
pub struct ProcessCache {
    entries: HashMap<ProcessKey, Entry>,
    /// Current live image of each pid, for messages that only know a pid.
    by_pid: HashMap<u32, ProcessKey>,
    releasable: VecDeque<(ProcessKey, Instant)>,
    capacity: usize,
    /// Bytes held (see [`data_bytes`]) and their bound.
    bytes: usize,
    max_bytes: usize,
    gc_interval: Duration,
    stats: CacheStats,
}

impl ProcessCache {
    pub fn new(capacity: usize, gc_interval: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            by_pid: HashMap::new(),
            releasable: VecDeque::new(),
            capacity: capacity.max(1),
            bytes: 0,
            max_bytes: DEFAULT_MAX_BYTES,
            gc_interval,
            stats: CacheStats::default(),
        }
    }

    /// Bounds the bytes of process data held (default [`DEFAULT_MAX_BYTES`]).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Bytes of process data held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn get(&self, key: &ProcessKey) -> Option<Arc<ProcessInfo>> {
        self.entries.get(key).map(|e| e.info.clone())
    }

    /// The live image of `pid`, if the cache knows one.
    pub fn by_pid(&self, pid: u32) -> Option<Arc<ProcessInfo>> {
        self.by_pid.get(&pid).and_then(|k| self.get(k))
    }

    /// Resolves a parent reference from the kernel: an exact key, or only a pid when the
    /// kernel did not know the parent's image (ktime 0).
    pub fn resolve(&self, key: ProcessKey) -> Option<Arc<ProcessInfo>> {
        if key.ktime != 0
            && let Some(info) = self.get(&key)
        {
            return Some(info);
        }
        self.by_pid(key.pid)
    }

    /// Adds a live image. Returns false when the cache is full of entries in use; the
    /// caller still reports the event, only later lookups miss.
    pub fn insert(&mut self, info: Arc<ProcessInfo>, now: Instant) -> bool {
        let key = info.key;
        if self.entries.contains_key(&key) {
            return true;
        }
        let bytes = data_bytes(&info);
        let full =
            |c: &Self| c.entries.len() >= c.capacity || c.bytes.saturating_add(bytes) > c.max_bytes;
        if full(self) {
            self.collect(now, true);
            if full(self) {
                self.stats.refused_full += 1;
                return false;
            }
        }
        self.bytes += bytes;
        if let Some(parent) = info.parent_key.and_then(|p| self.entries.get_mut(&p)) {
            parent.children += 1;
            parent.releasable_since = None;
        }
        self.entries.insert(
            key,
            Entry {
                info,
                bytes,
                alive: true,
                children: 0,
                releasable_since: None,
            },
        );
        // A pid has one live image: an older one still marked alive missed its exit (e.g. a
        // zombie seen by the start-up scan) and is over now that the pid is reused.
        if let Some(old) = self.by_pid.insert(key.pid, key)
            && old != key
        {
            if let Some(e) = self.entries.get_mut(&old) {
                e.alive = false;
            }
            self.mark_if_releasable(old, now);
        }
        self.stats.inserted += 1;
        true
    }

    /// The image ended: by exit, or replaced by a new exec of the same pid.
    pub fn end(&mut self, key: ProcessKey, now: Instant) {
        if let Some(e) = self.entries.get_mut(&key) {
            e.alive = false;
        }
        if self.by_pid.get(&key.pid) == Some(&key) {
            self.by_pid.remove(&key.pid);
        }
        self.mark_if_releasable(key, now);
    }

    fn mark_if_releasable(&mut self, key: ProcessKey, now: Instant) {
        if let Some(e) = self.entries.get_mut(&key)
            && !e.alive
            && e.children == 0
            && e.releasable_since.is_none()
        {
            e.releasable_since = Some(now);
            self.releasable.push_back((key, now));
        }
    }

    /// Removes entries releasable for at least `gc_interval` (all releasable ones when
    /// `force`). Returns how many were removed.
    pub fn collect(&mut self, now: Instant, force: bool) -> usize {
        let mut removed = 0;
        while let Some(&(key, since)) = self.releasable.front() {
            if !force && now.duration_since(since) < self.gc_interval {
                break;
            }
            self.releasable.pop_front();
            let still = self
                .entries
                .get(&key)
                .is_some_and(|e| !e.alive && e.children == 0 && e.releasable_since == Some(since));
            if !still {
                continue;
            }
            let entry = self.entries.remove(&key).expect("checked above");
            self.bytes -= entry.bytes;
            removed += 1;
            self.stats.removed += 1;
            if let Some(parent_key) = entry.info.parent_key {
                if let Some(parent) = self.entries.get_mut(&parent_key) {
                    parent.children = parent.children.saturating_sub(1);
                }
                self.mark_if_releasable(parent_key, now);
            }
        }
        removed
    }

    /// Ancestors beyond the parent, nearest first, up to `limit`.
    pub fn ancestors(&self, parent: &ProcessInfo, limit: usize) -> Vec<Arc<ProcessInfo>> {
        let mut out = Vec::new();
        let mut next = parent.parent_key;
        while let Some(key) = next {
            if out.len() >= limit {
                break;
            }
            let Some(info) = self.get(&key) else { break };
            next = info.parent_key.filter(|p| *p != key);
            out.push(info);
        }
        out
    }

    /// Gives memory back after a burst: tables sized for a peak keep their capacity.
    pub fn shrink(&mut self) {
        let len = self.entries.len();
        if self.entries.capacity() > 1024 && self.entries.capacity() > 4 * len {
            self.entries.shrink_to(len * 2);
            self.by_pid.shrink_to(len * 2);
            self.releasable.shrink_to(len);
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.len(),
            ..self.stats
        }
    }

    pub fn snapshot(&self, now: Instant) -> Vec<EntrySnapshot> {
        let mut out: Vec<_> = self
            .entries
            .iter()
            .map(|(k, e)| EntrySnapshot {
                key: *k,
                exec_id: e.info.exec_id.clone(),
                binary: e.info.binary.clone(),
                alive: e.alive,
                refcnt: u32::from(e.alive) + e.children,
                releasable_for: e.releasable_since.map(|t| now.saturating_duration_since(t)),
            })
            .collect();
        out.sort_by_key(|s| s.key);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: u32, ktime: u64, parent: Option<(u32, u64)>) -> Arc<ProcessInfo> {
        Arc::new(ProcessInfo {
            key: ProcessKey::new(pid, ktime),
            parent_key: parent.map(|(p, k)| ProcessKey::new(p, k)),
            ..Default::default()
        })
    }

    #[test]
    fn child_keeps_dead_parent_until_it_goes() {
        let t0 = Instant::now();
        let gc = Duration::from_secs(1);
        let mut c = ProcessCache::new(100, gc);
        c.insert(info(1, 10, None), t0);
        c.insert(info(2, 20, Some((1, 10))), t0);
        c.end(ProcessKey::new(1, 10), t0);
        assert_eq!(
            c.collect(t0 + gc * 2, false),
            0,
            "parent is held by its live child"
        );
        c.end(ProcessKey::new(2, 20), t0 + gc);
        assert_eq!(c.collect(t0 + gc, false), 0, "not before gc_interval");
        assert_eq!(c.collect(t0 + gc * 2, false), 1, "child goes first");
        assert_eq!(
            c.collect(t0 + gc * 4, false),
            1,
            "then the parent it released"
        );
        assert_eq!(c.stats().entries, 0);
    }

    #[test]
    fn resolve_falls_back_to_the_live_image_of_a_pid() {
        let t0 = Instant::now();
        let mut c = ProcessCache::new(10, Duration::ZERO);
        c.insert(info(7, 70, None), t0);
        assert_eq!(c.resolve(ProcessKey::new(7, 0)).unwrap().key.ktime, 70);
        assert_eq!(c.resolve(ProcessKey::new(7, 70)).unwrap().key.ktime, 70);
        c.end(ProcessKey::new(7, 70), t0);
        assert!(c.resolve(ProcessKey::new(7, 0)).is_none());
    }

    /// Entries with 32 KiB of argv each: the byte budget refuses before the entry count,
    /// and what exits gives its bytes back.
    #[test]
    fn the_cache_is_bounded_in_bytes() {
        let t0 = Instant::now();
        let mut c = ProcessCache::new(100_000, Duration::ZERO).with_max_bytes(1 << 20);
        let big = |pid: u32| {
            let mut i = (*info(pid, u64::from(pid), None)).clone();
            i.argv = vec![vec![b'a'; 32 << 10]];
            Arc::new(i)
        };
        let mut inserted: u32 = 0;
        for pid in 1..100u32 {
            if c.insert(big(pid), t0) {
                inserted += 1;
            }
        }
        assert!(inserted < 40 && inserted > 20, "{inserted} inserted");
        assert!(c.bytes() <= 1 << 20);
        assert_eq!(c.stats().refused_full, u64::from(99 - inserted));
        for pid in 1..=inserted {
            c.end(ProcessKey::new(pid, u64::from(pid)), t0);
        }
        c.collect(t0, true);
        assert_eq!(c.bytes(), 0);
        assert!(c.insert(big(500), t0));
    }

    #[test]
    fn full_cache_refuses_instead_of_evicting_live_entries() {
        let t0 = Instant::now();
        let mut c = ProcessCache::new(2, Duration::from_secs(60));
        assert!(c.insert(info(1, 1, None), t0));
        assert!(c.insert(info(2, 2, None), t0));
        assert!(!c.insert(info(3, 3, None), t0));
        c.end(ProcessKey::new(1, 1), t0);
        assert!(
            c.insert(info(3, 3, None), t0),
            "a releasable entry makes room"
        );
        assert_eq!(c.stats().refused_full, 1);
    }

    #[test]
    fn pid_reuse_ends_a_stale_image() {
        let t0 = Instant::now();
        let mut c = ProcessCache::new(10, Duration::ZERO);
        c.insert(info(5, 1, None), t0);
        c.insert(info(5, 2, None), t0);
        assert_eq!(
            c.collect(t0, false),
            1,
            "the stale image of pid 5 is released"
        );
        assert_eq!(c.by_pid(5).unwrap().key.ktime, 2);
    }

    #[test]
    fn ancestors_walk_up_nearest_first() {
        let t0 = Instant::now();
        let mut c = ProcessCache::new(10, Duration::ZERO);
        c.insert(info(1, 1, None), t0);
        c.insert(info(2, 2, Some((1, 1))), t0);
        c.insert(info(3, 3, Some((2, 2))), t0);
        let parent = c.get(&ProcessKey::new(3, 3)).unwrap();
        let anc: Vec<u32> = c.ancestors(&parent, 10).iter().map(|i| i.key.pid).collect();
        assert_eq!(anc, vec![2, 1]);
    }
}
