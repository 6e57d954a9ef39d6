//! The writer thread: takes queued events, renders each to its Tetragon JSON line, packs
//! them into compressed batches, and commits them with their index rows, one transaction
//! per chunk. Before each transaction retention makes room for it (`slices::plan`), so the
//! files stay within the budget at every moment, WAL included.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, params};
use vigil_export::Event;
use vigil_proto::tetragon::get_events_response::Event as Payload;

use crate::sink::{HistoryConfig, HistoryCounters, Recorded, Shared};
use crate::slices::{self, Budget, SliceState};
use crate::{HistoryError, keys, schema};

/// Events per compressed batch, and their JSON bytes, at most.
const BATCH_EVENTS: usize = 512;
const BATCH_BYTES: usize = 256 << 10;
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
/// A smaller drain is written, then the writer waits this long so that batches fill.
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

fn now_ns() -> i64 {
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
struct Batch {
    first_ns: i64,
    last_ns: i64,
    events: u32,
    raw_bytes: usize,
    data: Vec<u8>,
    processes: HashMap<String, u32>,
    policies: HashMap<(String, &'static str), u32>,
}

/// A process row to insert if the slice has none.
struct Row {
    exec_id: String,
    parent_exec_id: String,
    pid: Option<u32>,
    binary: String,
    arguments: String,
    pod: Option<(String, String)>,
    start_ns: Option<i64>,
}

/// A chunk, prepared outside the transaction.
#[derive(Default)]
struct Chunk {
    batches: Vec<Batch>,
    rows: Vec<Row>,
    exits: Vec<(String, i64)>,
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
}

impl Writer {
    /// Takes over the slices a previous agent left: a WAL left by a crash is folded into
    /// its database, slices past the age limit go.
    pub fn open(cfg: HistoryConfig, counters: Arc<HistoryCounters>) -> Result<Self, HistoryError> {
        let listed = slices::list(&cfg.dir).map_err(|source| HistoryError::Io {
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
        };
        w.make_room(0);
        Ok(w)
    }

    pub fn run(mut self, shared: &Shared) {
        loop {
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
            let small = drained.len() < BATCH_EVENTS;
            for chunk in drained.chunks(self.chunk_events()) {
                let charged: u64 = chunk.iter().map(|r| r.charge).sum();
                self.write(chunk);
                shared.release(charged);
            }
            if drained.is_empty() || self.last_housekeeping.elapsed() >= Duration::from_secs(5) {
                self.housekeeping();
            }
            if closing && shared.lock().items.is_empty() {
                break;
            }
            if small && !closing {
                std::thread::sleep(LINGER);
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

    fn write(&mut self, events: &[Recorded]) {
        if let Some(until) = self.backoff_until {
            if Instant::now() < until {
                self.count_lost(events.len() as u64);
                return;
            }
            self.backoff_until = None;
        }
        let chunk = prepare(events);
        // Events that could not be rendered are in no batch (each was logged).
        self.count_lost(events.len() as u64 - chunk.events);
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

/// Renders and compresses a chunk, and collects its index rows.
fn prepare(events: &[Recorded]) -> Chunk {
    let mut chunk = Chunk::default();
    let mut batch = BatchBuilder::default();
    for recorded in events {
        let ev = &recorded.event;
        let time_ns = keys::event_time_ns(ev).unwrap_or_else(now_ns);
        chunk.newest_ns = chunk.newest_ns.max(time_ns);
        let parts = vigil_export::event::parts(ev);
        for p in [parts.process, parts.parent].into_iter().flatten() {
            if !p.exec_id.is_empty() {
                chunk.rows.push(Row {
                    exec_id: p.exec_id.clone(),
                    parent_exec_id: p.parent_exec_id.clone(),
                    pid: p.pid.map(|v| v.value),
                    binary: p.binary.clone(),
                    arguments: p.arguments.clone(),
                    pod: keys::pod(p).map(|(ns, n)| (ns.to_string(), n.to_string())),
                    start_ns: keys::timestamp_ns(p.start_time.as_ref()),
                });
            }
        }
        if let (Some(Payload::ProcessExit(_)), Some(p)) = (&ev.event, parts.process) {
            chunk.exits.push((p.exec_id.clone(), time_ns));
        }
        let exec_id = parts.process.map(|p| p.exec_id.as_str()).unwrap_or("");
        if !batch.add(ev, recorded.json.as_deref(), time_ns, exec_id) {
            continue;
        }
        if batch.events as usize >= BATCH_EVENTS || batch.json.len() >= BATCH_BYTES {
            chunk.batches.extend(std::mem::take(&mut batch).finish());
        }
    }
    chunk.batches.extend(batch.finish());
    chunk.events = chunk.batches.iter().map(|b| u64::from(b.events)).sum();
    chunk
}

#[derive(Default)]
struct BatchBuilder {
    json: Vec<u8>,
    events: u32,
    first_ns: i64,
    last_ns: i64,
    processes: HashMap<String, u32>,
    policies: HashMap<(String, &'static str), u32>,
}

impl BatchBuilder {
    fn add(&mut self, ev: &Event, line: Option<&[u8]>, time_ns: i64, exec_id: &str) -> bool {
        let start = self.json.len();
        if let Some(line) = line {
            self.json.extend_from_slice(line);
        } else if let Err(e) = serde_json::to_writer(&mut self.json, &**ev) {
            self.json.truncate(start);
            tracing::error!(error = %e, "history: cannot encode event, dropped");
            return false;
        }
        self.json.push(b'\n');
        if self.events == 0 {
            (self.first_ns, self.last_ns) = (time_ns, time_ns);
        }
        self.first_ns = self.first_ns.min(time_ns);
        self.last_ns = self.last_ns.max(time_ns);
        self.events += 1;
        if !exec_id.is_empty() {
            *self.processes.entry(exec_id.to_string()).or_default() += 1;
        }
        let policy = keys::policy(ev);
        if !policy.is_empty() {
            *self
                .policies
                .entry((policy.to_string(), keys::action(ev)))
                .or_default() += 1;
        }
        true
    }

    fn finish(self) -> Option<Batch> {
        if self.events == 0 {
            return None;
        }
        let data = match zstd::bulk::compress(&self.json, ZSTD_LEVEL) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "history: cannot compress a batch, dropped");
                return None;
            }
        };
        Some(Batch {
            first_ns: self.first_ns,
            last_ns: self.last_ns,
            events: self.events,
            raw_bytes: self.json.len(),
            data,
            processes: self.processes,
            policies: self.policies,
        })
    }
}

/// One transaction: process rows this slice lacks, exits, batches and their index rows.
/// Returns the exec ids that got their row.
fn commit(cur: &mut Current, chunk: &Chunk) -> rusqlite::Result<Vec<String>> {
    let tx = cur.conn.transaction()?;
    let mut new_ids = Vec::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO processes (exec_id, parent_exec_id, pid, binary, arguments, \
             pod_namespace, pod_name, start_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (exec_id) DO NOTHING",
        )?;
        let mut in_chunk = HashSet::new();
        for r in &chunk.rows {
            if cur.seen.contains(&r.exec_id) || !in_chunk.insert(r.exec_id.as_str()) {
                continue;
            }
            let (ns, name) = r.pod.clone().unzip();
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
