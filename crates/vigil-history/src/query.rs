//! Queries over the slices, read-only: they work while the agent writes (WAL readers) and
//! after it stopped. Filters are first turned into SQL over the batch indexes (`batch_query`)
//! to pick the batches that can hold a match, then checked on each decoded event with the
//! same functions the writer indexed them with (`keys`).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use vigil_proto::tetragon::GetEventsResponse;

use crate::{HistoryError, keys, schema, slices};

/// A batch decompresses to this many bytes at most (the writer makes 256 KiB ones).
const MAX_BATCH_BYTES: i64 = 64 << 20;
/// A tree query follows at most this many processes (a fork bomb's tree is not printed whole).
const MAX_TREE: usize = 100_000;
/// Exec ids per `IN (...)` list.
const IN_CHUNK: usize = 500;

/// One process, as the slices know it (merged across them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessRow {
    pub exec_id: String,
    pub parent_exec_id: String,
    pub pid: Option<u32>,
    pub binary: String,
    pub arguments: String,
    pub pod: Option<(String, String)>,
    pub start_ns: Option<i64>,
    pub exit_ns: Option<i64>,
}

/// An event as recorded: its JSON line verbatim and the event decoded from it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub line: String,
    pub event: GetEventsResponse,
}

/// A process's tree: the asked process, its ancestors, siblings and descendants, and every
/// event of each, in the order the agent published them.
#[derive(Debug, Clone)]
pub struct Tree {
    pub root: String,
    /// By exec id.
    pub processes: BTreeMap<String, ProcessRow>,
    pub events: Vec<StoredEvent>,
}

/// What `vigil history events` selects; empty fields select everything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// ns since the epoch, inclusive.
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    pub binary: Option<String>,
    /// (namespace, name)
    pub pod: Option<(String, String)>,
    pub policy: Option<String>,
    /// `KPROBE_ACTION_*`
    pub action: Option<String>,
    /// `PROCESS_*` (EventType name)
    pub event_type: Option<String>,
    /// Events of these processes only.
    pub exec_ids: Option<HashSet<String>>,
}

impl EventFilter {
    /// The exact check on one decoded event.
    pub fn matches(&self, ev: &GetEventsResponse) -> bool {
        let time = keys::event_time_ns(ev);
        if let Some(since) = self.since_ns
            && time.is_none_or(|t| t < since)
        {
            return false;
        }
        if let Some(until) = self.until_ns
            && time.is_none_or(|t| t > until)
        {
            return false;
        }
        let process = keys::process(ev);
        if let Some(b) = &self.binary
            && process.is_none_or(|p| &p.binary != b)
        {
            return false;
        }
        if let Some((ns, name)) = &self.pod
            && process.and_then(keys::pod) != Some((ns.as_str(), name.as_str()))
        {
            return false;
        }
        if let Some(ids) = &self.exec_ids
            && process.is_none_or(|p| !ids.contains(&p.exec_id))
        {
            return false;
        }
        if let Some(p) = &self.policy
            && keys::policy(ev) != p
        {
            return false;
        }
        if let Some(a) = &self.action
            && keys::action(ev) != a
        {
            return false;
        }
        if let Some(t) = &self.event_type
            && keys::type_name(ev) != t
        {
            return false;
        }
        true
    }
}

/// The SQL that picks the batches which can hold events matching `f` (all of them do not:
/// the indexes are per batch), in publication order, and its parameters. Exec ids are
/// matched separately (`batches_of`).
pub fn batch_query(f: &EventFilter) -> (String, Vec<Value>) {
    let mut sql = String::from("SELECT b.id, b.codec, b.raw_bytes, b.data FROM batches b");
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    if let Some(since) = f.since_ns {
        clauses.push("b.last_ns >= ?".into());
        params.push(Value::Integer(since));
    }
    if let Some(until) = f.until_ns {
        clauses.push("b.first_ns <= ?".into());
        params.push(Value::Integer(until));
    }
    if f.policy.is_some() || f.action.is_some() {
        let mut sub = String::from("SELECT batch_id FROM batch_policies WHERE 1");
        if let Some(p) = &f.policy {
            sub.push_str(" AND policy = ?");
            params.push(Value::Text(p.clone()));
        }
        if let Some(a) = &f.action {
            sub.push_str(" AND action = ?");
            params.push(Value::Text(a.clone()));
        }
        clauses.push(format!("b.id IN ({sub})"));
    }
    if f.binary.is_some() || f.pod.is_some() {
        let mut sub = String::from(
            "SELECT x.batch_id FROM processes p JOIN batch_processes x ON x.exec_id = p.exec_id WHERE 1",
        );
        if let Some(b) = &f.binary {
            sub.push_str(" AND p.binary = ?");
            params.push(Value::Text(b.clone()));
        }
        if let Some((ns, name)) = &f.pod {
            sub.push_str(" AND p.pod_namespace = ? AND p.pod_name = ?");
            params.push(Value::Text(ns.clone()));
            params.push(Value::Text(name.clone()));
        }
        clauses.push(format!("b.id IN ({sub})"));
    }
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY b.id");
    (sql, params)
}

struct Slice {
    path: PathBuf,
    conn: Connection,
}

/// The history directory, opened for reading.
pub struct History {
    slices: Vec<Slice>,
    /// Slices that could not be read (named, with the reason): reported, not fatal.
    pub skipped: Vec<String>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("slices", &self.slices.len())
            .finish()
    }
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> HistoryError + '_ {
    move |source| HistoryError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

impl History {
    pub fn open(dir: &Path) -> Result<Self, HistoryError> {
        let listed = match slices::list(dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(HistoryError::Dir {
                    path: dir.to_path_buf(),
                    reason: "does not exist (is the agent running with --history-dir?)".into(),
                });
            }
            Err(source) => {
                return Err(HistoryError::Io {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        };
        let mut slices = Vec::new();
        let mut skipped = Vec::new();
        for (_, path) in listed {
            match schema::open_reader(&path) {
                Ok(conn) => slices.push(Slice { path, conn }),
                // Removed by retention since it was listed.
                Err(_) if !path.exists() => {}
                Err(e) => skipped.push(e.to_string()),
            }
        }
        if slices.is_empty() {
            return Err(HistoryError::Empty(dir.to_path_buf()));
        }
        Ok(Self { slices, skipped })
    }

    /// A process, merged across slices (a later slice adds its exit).
    pub fn process(&self, exec_id: &str) -> Result<Option<ProcessRow>, HistoryError> {
        let mut found: Option<ProcessRow> = None;
        for s in &self.slices {
            let row = s
                .conn
                .query_row(
                    "SELECT exec_id, parent_exec_id, pid, binary, arguments, pod_namespace, \
                     pod_name, start_ns, exit_ns FROM processes WHERE exec_id = ?1",
                    [exec_id],
                    row_of,
                )
                .optional()
                .map_err(sql_err(&s.path))?;
            if let Some(r) = row {
                match &mut found {
                    None => found = Some(r),
                    Some(f) => f.exit_ns = f.exit_ns.or(r.exit_ns),
                }
            }
        }
        Ok(found)
    }

    /// The newest process (latest start) that had `pid`.
    pub fn newest_with_pid(&self, pid: u32) -> Result<Option<ProcessRow>, HistoryError> {
        let mut best: Option<(i64, String)> = None;
        for s in &self.slices {
            let row: Option<(Option<i64>, String)> = s
                .conn
                .query_row(
                    "SELECT start_ns, exec_id FROM processes WHERE pid = ?1 \
                     ORDER BY start_ns DESC LIMIT 1",
                    [pid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql_err(&s.path))?;
            if let Some((start, id)) = row {
                let start = start.unwrap_or(i64::MIN);
                if best.as_ref().is_none_or(|(b, _)| start >= *b) {
                    best = Some((start, id));
                }
            }
        }
        match best {
            Some((_, id)) => self.process(&id),
            None => Ok(None),
        }
    }

    /// Exec ids of the processes whose parent is `exec_id`.
    pub fn children(&self, exec_id: &str) -> Result<Vec<String>, HistoryError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for s in &self.slices {
            let mut stmt = s
                .conn
                .prepare_cached("SELECT exec_id FROM processes WHERE parent_exec_id = ?1")
                .map_err(sql_err(&s.path))?;
            let ids = stmt
                .query_map([exec_id], |r| r.get::<_, String>(0))
                .map_err(sql_err(&s.path))?;
            for id in ids {
                let id = id.map_err(sql_err(&s.path))?;
                if seen.insert(id.clone()) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// The tree of `exec_id`: ancestors, siblings, descendants, and their events.
    pub fn tree(&self, exec_id: &str) -> Result<Tree, HistoryError> {
        let root = self
            .process(exec_id)?
            .ok_or_else(|| HistoryError::UnknownExecId(exec_id.to_string()))?;
        let mut processes = BTreeMap::new();
        // Ancestors, as far as the history knows them.
        let mut parent = root.parent_exec_id.clone();
        while !parent.is_empty() && !processes.contains_key(&parent) && processes.len() < MAX_TREE {
            let Some(p) = self.process(&parent)? else {
                break;
            };
            parent = p.parent_exec_id.clone();
            processes.insert(p.exec_id.clone(), p);
        }
        // Siblings, then descendants (breadth first).
        let mut queue = VecDeque::from([root.exec_id.clone()]);
        if !root.parent_exec_id.is_empty() {
            for id in self.children(&root.parent_exec_id)? {
                if id != root.exec_id
                    && processes.len() < MAX_TREE
                    && let Some(p) = self.process(&id)?
                {
                    processes.insert(id, p);
                }
            }
        }
        processes.insert(root.exec_id.clone(), root.clone());
        while let Some(id) = queue.pop_front() {
            for child in self.children(&id)? {
                if processes.len() >= MAX_TREE || processes.contains_key(&child) {
                    continue;
                }
                if let Some(p) = self.process(&child)? {
                    processes.insert(child.clone(), p);
                    queue.push_back(child);
                }
            }
        }
        let ids: HashSet<String> = processes.keys().cloned().collect();
        let filter = EventFilter {
            exec_ids: Some(ids),
            ..Default::default()
        };
        let events = self.events(&filter)?;
        Ok(Tree {
            root: root.exec_id,
            processes,
            events,
        })
    }

    /// Events matching `f`, in the order the agent published them.
    pub fn events(&self, f: &EventFilter) -> Result<Vec<StoredEvent>, HistoryError> {
        let mut out = Vec::new();
        self.each_event(f, |e| {
            out.push(e);
            true
        })?;
        Ok(out)
    }

    /// Calls `each` with every event matching `f`, in publication order, until it returns
    /// false.
    pub fn each_event(
        &self,
        f: &EventFilter,
        mut each: impl FnMut(StoredEvent) -> bool,
    ) -> Result<(), HistoryError> {
        for s in &self.slices {
            let err = sql_err(&s.path);
            let wanted: Option<HashSet<i64>> = match &f.exec_ids {
                Some(ids) => Some(batches_of(&s.conn, ids).map_err(&err)?),
                None => None,
            };
            let (sql, params) = batch_query(f);
            let mut stmt = s.conn.prepare(&sql).map_err(&err)?;
            let mut rows = stmt.query(params_from_iter(params)).map_err(&err)?;
            while let Some(row) = rows.next().map_err(&err)? {
                let id: i64 = row.get(0).map_err(&err)?;
                if wanted.as_ref().is_some_and(|w| !w.contains(&id)) {
                    continue;
                }
                let codec: String = row.get(1).map_err(&err)?;
                let raw_bytes: i64 = row.get(2).map_err(&err)?;
                let data: Vec<u8> = row.get(3).map_err(&err)?;
                for e in decode(&s.path, id, &codec, raw_bytes, &data)? {
                    if f.matches(&e.event) && !each(e) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// `PRAGMA integrity_check` of every slice: (slice, result) for the ones not "ok".
    pub fn integrity(&self) -> Vec<(PathBuf, String)> {
        self.slices
            .iter()
            .filter_map(|s| {
                let r: String = s
                    .conn
                    .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                    .unwrap_or_else(|e| e.to_string());
                (r != "ok").then(|| (s.path.clone(), r))
            })
            .collect()
    }
}

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProcessRow> {
    let ns: Option<String> = r.get(5)?;
    let name: Option<String> = r.get(6)?;
    Ok(ProcessRow {
        exec_id: r.get(0)?,
        parent_exec_id: r.get(1)?,
        pid: r.get(2)?,
        binary: r.get(3)?,
        arguments: r.get(4)?,
        pod: ns.zip(name),
        start_ns: r.get(7)?,
        exit_ns: r.get(8)?,
    })
}

/// The batches of one slice holding events of these processes.
fn batches_of(conn: &Connection, ids: &HashSet<String>) -> rusqlite::Result<HashSet<i64>> {
    let ids: Vec<&String> = ids.iter().collect();
    let mut out = HashSet::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql =
            format!("SELECT DISTINCT batch_id FROM batch_processes WHERE exec_id IN ({marks})");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(chunk.iter()), |r| r.get::<_, i64>(0))?;
        for id in rows {
            out.insert(id?);
        }
    }
    Ok(out)
}

/// A batch's events. A batch that does not decode is an error naming it: the slice is
/// damaged, and saying so beats printing part of it.
fn decode(
    path: &Path,
    id: i64,
    codec: &str,
    raw_bytes: i64,
    data: &[u8],
) -> Result<Vec<StoredEvent>, HistoryError> {
    let corrupt = |reason: String| HistoryError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("batch {id}: {reason}"),
    };
    if codec != schema::CODEC_ZSTD_JSON_LINES {
        return Err(corrupt(format!("unknown codec {codec:?}")));
    }
    if !(0..=MAX_BATCH_BYTES).contains(&raw_bytes) {
        return Err(corrupt(format!("implausible size {raw_bytes}")));
    }
    let raw = zstd::bulk::decompress(data, raw_bytes as usize)
        .map_err(|e| corrupt(format!("does not decompress: {e}")))?;
    let text = String::from_utf8(raw).map_err(|_| corrupt("not UTF-8".into()))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            serde_json::from_str::<GetEventsResponse>(line)
                .map(|event| StoredEvent {
                    line: line.to_string(),
                    event,
                })
                .map_err(|e| corrupt(format!("an event does not parse: {e}")))
        })
        .collect()
}

#[path = "overview.rs"]
mod overview;

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
