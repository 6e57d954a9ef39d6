//! The writer thread: takes the sink's groups of JSON lines, compresses them into batches
//! (a full group is one batch; small ones are joined), and commits them with their index
//! rows, one transaction per chunk. Before each transaction retention makes room for it
//! (`slices::plan`), so the
//! files stay within the budget at every moment, WAL included.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, params};

use crate::record::{BATCH_BYTES, BATCH_EVENTS, Group, Row};
use crate::sink::{HistoryConfig, HistoryCounters, Shared};
use crate::slices::{self, Budget, SliceState};
use crate::{HistoryError, schema};
/// Events per transaction at most (the WAL grows by a transaction before a checkpoint);
/// fewer with a small budget (`chunk_events`).
const CHUNK_EVENTS: usize = 4096;
/// Bytes of pages a new process row costs with its index entries, and an index row of a
/// batch, for the estimate of a transaction's size before it is written.
const ROW_COST: u64 = 512;
const INDEX_ROW_COST: u64 = 128;
/// zstd level: the writer shares the machine with the pipeline; level 1 compresses JSON
/// lines of one node about tenfold already.
const ZSTD_LEVEL: i32 = 1;
/// After a smaller drain the writer waits this long so that batches fill, or less when the
/// queue passes a quarter of its bytes first (the sink wakes it then).
const LINGER: Duration = Duration::from_millis(100);
/// After a failed write, events are counted lost without trying for this long.
const BACKOFF: Duration = Duration::from_secs(1);
/// Exec ids remembered per slice as already having their row; past this it starts over
/// (rows are inserted with ON CONFLICT DO NOTHING, so forgetting costs only work).
const SEEN_MAX: usize = 1 << 18;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

struct Current {
    conn: Connection,
    path: PathBuf,
    start_ms: u64,
    opened: Instant,
    newest_ms: u64,
    /// Exec ids whose row this slice has.
    seen: HashSet<String>,
}

struct Closed {
    path: PathBuf,
    newest_ms: u64,
}

/// One compressed batch, ready to insert.
struct Batch<'a> {
    first_ns: i64,
    last_ns: i64,
    events: u32,
    raw_bytes: usize,
    data: Vec<u8>,
    processes: HashMap<&'a str, u32>,
    policies: HashMap<(&'a str, &'static str), u32>,
}

/// A chunk, prepared outside the transaction.
#[derive(Default)]
struct Chunk<'a> {
    batches: Vec<Batch<'a>>,
    /// The chunk's processes and parents, each once.
    rows: Vec<&'a Row>,
    exits: Vec<(&'a str, i64)>,
    events: u64,
    newest_ns: i64,
}

pub(crate) struct Writer {
    dir: PathBuf,
    budget: Budget,
    node: String,
    counters: Arc<HistoryCounters>,
    closed: Vec<Closed>,
    current: Option<Current>,
    /// Bytes the last transactions added (WAL and database), for the next plan.
    last_growth: u64,
    failing: bool,
    backoff_until: Option<Instant>,
    last_housekeeping: Instant,
    /// One compression context for all batches (making one per batch showed in profiles).
    compressor: zstd::bulk::Compressor<'static>,
}

impl Writer {
    /// Takes over the slices a previous agent left: a WAL left by a crash is folded into
    /// its database, slices past the age limit go.
    pub fn open(cfg: HistoryConfig, counters: Arc<HistoryCounters>) -> Result<Self, HistoryError> {
        let listed = slices::list(&cfg.dir).map_err(|source| HistoryError::Io {
            path: cfg.dir.clone(),
            source,
        })?;
        let compressor =
            zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|source| HistoryError::Io {
                path: cfg.dir.clone(),
                source,
            })?;
        let mut closed = Vec::new();
        for (start_ms, path) in listed {
            let newest_ms = settle_old_slice(&path).unwrap_or(start_ms);
            closed.push(Closed { path, newest_ms });
        }
        let mut w = Self {
            dir: cfg.dir,
            budget: cfg.budget,
            node: cfg.node,
            counters,
            closed,
            current: None,
            last_growth: 0,
            failing: false,
            backoff_until: None,
            last_housekeeping: Instant::now(),
            compressor,
        };
        w.make_room(0);
        Ok(w)
    }

    pub fn run(mut self, shared: &Shared) {
        loop {
            #[cfg(test)]
            while shared.hold_writer.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let (drained, closing) = {
                let mut q = shared.lock();
                while q.items.is_empty() && !q.closing {
                    let (guard, _) = shared
                        .ready
                        .wait_timeout(q, Duration::from_secs(1))
                        .unwrap_or_else(|e| e.into_inner());
                    q = guard;
                    if q.items.is_empty()
                        && self.last_housekeeping.elapsed() >= Duration::from_secs(5)
                    {
                        break;
                    }
                }
                (q.items.take(usize::MAX), q.closing)
            };
            let events: usize = drained.iter().map(|g| g.metas.len()).sum();
            let small = events < BATCH_EVENTS;
            let per_chunk = self.chunk_events();
            let mut rest = drained.as_slice();
            while !rest.is_empty() {
                let (chunk, after) = rest.split_at(leading_groups(rest, per_chunk, usize::MAX));
                let charged: u64 = chunk.iter().map(|g| g.charge).sum();
                self.write(chunk);
                shared.release(charged);
                rest = after;
            }
            if drained.is_empty() || self.last_housekeeping.elapsed() >= Duration::from_secs(5) {
                self.housekeeping();
            }
            if closing && shared.lock().items.is_empty() {
                break;
            }
            if small && !closing {
                shared.linger(LINGER);
            }
        }
        self.close_current();
    }

    /// Events per transaction: one per 8 KiB of budget (an event with its process row takes
    /// about 1 KiB, counted twice, WAL and database), within [256, 4096]: 512 at the 4 MiB
    /// minimum, 4,096 from 32 MiB.
    fn chunk_events(&self) -> usize {
        usize::try_from(self.budget.max_bytes / 8192)
            .unwrap_or(CHUNK_EVENTS)
            .clamp(256, CHUNK_EVENTS)
    }

    /// Rotation by age and age retention while little is written.
    fn housekeeping(&mut self) {
        self.last_housekeeping = Instant::now();
        self.rotate_if_due();
        self.make_room(0);
    }

    fn write(&mut self, groups: &[Group]) {
        let events: u64 = groups.iter().map(|g| g.metas.len() as u64).sum();
        if let Some(until) = self.backoff_until {
            if Instant::now() < until {
                self.count_lost(events);
                return;
            }
            self.backoff_until = None;
        }
        let chunk = prepare(groups, &mut self.compressor);
        // Batches that could not be compressed are in no batch (each was logged).
        self.count_lost(events - chunk.events);
        self.rotate_if_due();
        let compressed: u64 = chunk.batches.iter().map(|b| b.data.len() as u64).sum();
        let index_rows: usize = chunk
            .batches
            .iter()
            .map(|b| b.processes.len() + b.policies.len() + 1)
            .sum();
        let index = ROW_COST * chunk.rows.len() as u64 + INDEX_ROW_COST * index_rows as u64;
        // The transaction's pages sit in the WAL, and again in the database after the
        // checkpoint: twice its size, or twice what the last one really took if more.
        let incoming = (2 * (compressed + index) + (64 << 10)).max(2 * self.last_growth);
        if !self.make_room(incoming) {
            self.count_lost(chunk.events);
            self.fail_episode("no room within --history-max-bytes for the next batch");
            return;
        }
        if self.current.is_none()
            && let Err(e) = self.new_slice()
        {
            self.count_lost(chunk.events);
            self.fail_episode(&e.to_string());
            self.backoff_until = Some(Instant::now() + BACKOFF);
            return;
        }
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        let before = slices::bytes_of(&cur.path);
        let result = commit(cur, &chunk);
        let path = cur.path.clone();
        match result {
            Ok(new_ids) => {
                let Some(cur) = self.current.as_mut() else {
                    return;
                };
                if cur.seen.len() + new_ids.len() > SEEN_MAX {
                    cur.seen.clear();
                }
                cur.seen.extend(new_ids);
                cur.newest_ms = cur
                    .newest_ms
                    .max((chunk.newest_ns / 1_000_000).max(0) as u64);
                let wal_limit = self.budget.wal_limit();
                let peak = slices::bytes_of(&cur.path);
                if wal_size(&cur.path) > wal_limit {
                    // A reader in the middle of a snapshot can keep it from resetting; the
                    // next plan counts whatever is left.
                    let _ = cur
                        .conn
                        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                }
                let after = slices::bytes_of(&cur.path).max(peak);
                self.last_growth = after.saturating_sub(before);
                self.counters
                    .recorded
                    .fetch_add(chunk.events, Ordering::Relaxed);
                if self.failing {
                    self.failing = false;
                    tracing::warn!(dir = %self.dir.display(), lost_so_far = self.counters.lost(),
                        "history writes resumed");
                }
            }
            Err(e) => {
                self.count_lost(chunk.events);
                let corrupt = matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
                );
                let full = matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull));
                self.fail_episode(&format!("{}: {e}", path.display()));
                if corrupt {
                    // Left where it is (retention removes it in its turn); writing goes on
                    // in a new slice.
                    tracing::error!(slice = %path.display(),
                        "history slice corrupt; starting a new one");
                    self.abandon_current();
                } else if full {
                    // The disk is full below the budget: the oldest slice makes room.
                    self.drop_oldest_closed();
                }
                self.backoff_until = Some(Instant::now() + BACKOFF);
            }
        }
    }

    fn count_lost(&self, n: u64) {
        self.counters
            .lost_write_failed
            .fetch_add(n, Ordering::Relaxed);
    }

    fn fail_episode(&mut self, what: &str) {
        if !self.failing {
            self.failing = true;
            tracing::error!(dir = %self.dir.display(), error = %what,
                lost_so_far = self.counters.lost(),
                "history write failed; events are counted as lost until writes succeed again");
        }
    }

    fn rotate_if_due(&mut self) {
        let due = self.current.as_ref().is_some_and(|c| {
            c.opened.elapsed() >= self.budget.slice_span()
                || slices::bytes_of(&c.path) >= self.budget.slice_bytes()
        });
        if due {
            self.close_current();
        }
    }

    /// Drops what retention says must go so that `incoming` more bytes fit; false when even
    /// an empty directory would not hold them.
    fn make_room(&mut self, incoming: u64) -> bool {
        for _ in 0..3 {
            let mut states: Vec<SliceState> = self
                .closed
                .iter()
                .map(|c| SliceState {
                    bytes: slices::bytes_of(&c.path),
                    newest_ms: c.newest_ms,
                    current: false,
                })
                .collect();
            if let Some(c) = &self.current {
                states.push(SliceState {
                    bytes: slices::bytes_of(&c.path),
                    newest_ms: c.newest_ms.max(c.start_ms),
                    current: true,
                });
            }
            let plan = slices::plan(&states, &self.budget, incoming, now_ms());
            for &i in plan.drop.iter().rev() {
                let gone = self.closed.remove(i);
                self.remove_slice(&gone.path);
            }
            if !plan.rotate {
                return true;
            }
            self.close_current();
        }
        let total: u64 = self.closed.iter().map(|c| slices::bytes_of(&c.path)).sum();
        total + incoming <= self.budget.max_bytes
    }

    fn remove_slice(&self, path: &Path) {
        match slices::remove(path) {
            Ok(()) => {
                self.counters.slices_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(slice = %path.display(), "history slice dropped by retention");
            }
            Err(e) => {
                tracing::error!(slice = %path.display(), error = %e, "cannot remove history slice");
            }
        }
    }

    fn drop_oldest_closed(&mut self) {
        if !self.closed.is_empty() {
            let gone = self.closed.remove(0);
            self.remove_slice(&gone.path);
        }
    }

    fn new_slice(&mut self) -> Result<(), HistoryError> {
        let last_start = self
            .closed
            .iter()
            .filter_map(|c| c.path.file_name()?.to_str().and_then(slices::parse_name))
            .max()
            .unwrap_or(0);
        let start_ms = now_ms().max(last_start + 1);
        let path = self.dir.join(slices::file_name(start_ms));
        let io = |source| HistoryError::Io {
            path: path.clone(),
            source,
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io)?;
        let conn = match schema::open_writer(&path, self.budget.wal_limit(), &self.node) {
            Ok(c) => c,
            Err(e) => {
                let _ = slices::remove(&path);
                return Err(e);
            }
        };
        self.current = Some(Current {
            conn,
            path,
            start_ms,
            opened: Instant::now(),
            newest_ms: start_ms,
            seen: HashSet::new(),
        });
        Ok(())
    }

    /// Closes the slice being written: its WAL folded in and removed, so readers of a closed
    /// slice need no WAL and the files are only the database.
    fn close_current(&mut self) {
        let Some(cur) = self.current.take() else {
            return;
        };
        let _ = cur
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        let _ = cur
            .conn
            .query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()));
        drop(cur.conn);
        self.closed.push(Closed {
            path: cur.path,
            newest_ms: cur.newest_ms,
        });
    }

    fn abandon_current(&mut self) {
        if let Some(cur) = self.current.take() {
            drop(cur.conn);
            self.closed.push(Closed {
                path: cur.path,
                newest_ms: cur.newest_ms,
            });
        }
    }
}

fn wal_size(db: &Path) -> u64 {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    std::fs::symlink_metadata(PathBuf::from(name)).map_or(0, |m| m.len())
}

/// A slice from before this agent: its WAL (after a crash) folded in, its newest event's
/// time read. None when it cannot be read: it stays until retention takes it.
fn settle_old_slice(path: &Path) -> Option<u64> {
    let settle = || -> rusqlite::Result<Option<i64>> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )?;
        conn.busy_timeout(Duration::from_secs(2))?;
        conn.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
        conn.query_row("SELECT max(last_ns) FROM batches", [], |r| r.get(0))
    };
    match settle() {
        Ok(newest) => newest.map(|ns| (ns / 1_000_000).max(0) as u64),
        Err(e) => {
            tracing::warn!(slice = %path.display(), error = %e,
                "history slice unreadable; kept until retention removes it");
            None
        }
    }
}

/// How many of the first groups fit in `max_events` events and `max_bytes` of lines
/// together; at least one (a group is never split).
fn leading_groups(groups: &[Group], max_events: usize, max_bytes: usize) -> usize {
    let (mut n, mut events, mut bytes) = (0, 0, 0);
    for g in groups {
        events += g.metas.len();
        bytes += g.json.len();
        if n > 0 && (events > max_events || bytes > max_bytes) {
            break;
        }
        n += 1;
    }
    n
}

/// Compresses a chunk's groups into batches (a full group as it is, small ones joined), and
/// collects its index rows.
fn prepare<'a>(groups: &'a [Group], compressor: &mut zstd::bulk::Compressor<'static>) -> Chunk<'a> {
    let mut chunk = Chunk::default();
    let mut in_chunk: HashSet<&str> = HashSet::new();
    let mut joined: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < groups.len() {
        // The groups of the next batch: [i, j).
        let j = i + leading_groups(&groups[i..], BATCH_EVENTS, BATCH_BYTES);
        let json: &[u8] = if j == i + 1 {
            &groups[i].json
        } else {
            joined.clear();
            for g in &groups[i..j] {
                joined.extend_from_slice(&g.json);
            }
            &joined
        };
        let data = match compressor.compress(json) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "history: cannot compress a batch, dropped");
                i = j;
                continue;
            }
        };
        let mut batch = Batch {
            first_ns: i64::MAX,
            last_ns: i64::MIN,
            events: 0,
            raw_bytes: json.len(),
            data,
            processes: HashMap::new(),
            policies: HashMap::new(),
        };
        for meta in groups[i..j].iter().flat_map(|g| &g.metas) {
            batch.first_ns = batch.first_ns.min(meta.time_ns);
            batch.last_ns = batch.last_ns.max(meta.time_ns);
            batch.events += 1;
            for row in [&meta.process, &meta.parent].into_iter().flatten() {
                if in_chunk.insert(row.exec_id.as_str()) {
                    chunk.rows.push(row);
                }
            }
            if let Some(p) = &meta.process {
                *batch.processes.entry(p.exec_id.as_str()).or_default() += 1;
                if meta.exit {
                    chunk.exits.push((p.exec_id.as_str(), meta.time_ns));
                }
            }
            if let Some((policy, action)) = &meta.policy {
                *batch.policies.entry((&**policy, *action)).or_default() += 1;
            }
        }
        chunk.newest_ns = chunk.newest_ns.max(batch.last_ns);
        chunk.events += u64::from(batch.events);
        chunk.batches.push(batch);
        i = j;
    }
    chunk
}

/// One transaction: process rows this slice lacks, exits, batches and their index rows.
/// Returns the exec ids that got their row.
fn commit(cur: &mut Current, chunk: &Chunk<'_>) -> rusqlite::Result<Vec<String>> {
    let tx = cur.conn.transaction()?;
    let mut new_ids = Vec::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO processes (exec_id, parent_exec_id, pid, binary, arguments, \
             pod_namespace, pod_name, start_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (exec_id) DO NOTHING",
        )?;
        for r in &chunk.rows {
            if cur.seen.contains(&r.exec_id) {
                continue;
            }
            let (ns, name) = r
                .pod
                .as_ref()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .unzip();
            insert.execute(params![
                r.exec_id,
                r.parent_exec_id,
                r.pid,
                r.binary,
                r.arguments,
                ns,
                name,
                r.start_ns
            ])?;
            new_ids.push(r.exec_id.clone());
        }
        let mut exit = tx.prepare_cached("UPDATE processes SET exit_ns = ?2 WHERE exec_id = ?1")?;
        for (id, ns) in &chunk.exits {
            exit.execute(params![id, ns])?;
        }
        let mut batch = tx.prepare_cached(
            "INSERT INTO batches (first_ns, last_ns, events, raw_bytes, codec, data) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut by_process = tx.prepare_cached(
            "INSERT INTO batch_processes (exec_id, batch_id, events) VALUES (?1, ?2, ?3)",
        )?;
        let mut by_policy = tx.prepare_cached(
            "INSERT INTO batch_policies (policy, action, batch_id, events) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for b in &chunk.batches {
            batch.execute(params![
                b.first_ns,
                b.last_ns,
                b.events,
                b.raw_bytes as i64,
                schema::CODEC_ZSTD_JSON_LINES,
                b.data
            ])?;
            let id = tx.last_insert_rowid();
            for (exec_id, n) in &b.processes {
                by_process.execute(params![exec_id, id, n])?;
            }
            for ((policy, action), n) in &b.policies {
                by_policy.execute(params![policy, action, id, n])?;
            }
        }
    }
    tx.commit()?;
    Ok(new_ids)
}
