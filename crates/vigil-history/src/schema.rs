//! The schema of one slice, and how its connections are opened.
//!
//! One slice = one SQLite file. The tables are meant for readers besides `vigil history`
//! (a web explorer, policy backtests): `batches` hold every event, verbatim, in the order the
//! agent published them (`id` ascending); `processes` and the two batch indexes only say
//! where to look.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::HistoryError;

/// Bumped when a table changes meaning; readers refuse slices of another version.
pub const SCHEMA_VERSION: i64 = 1;

/// The codec of `batches.data`: zstd frames of JSON lines (`\n`-terminated), one per event.
pub const CODEC_ZSTD_JSON_LINES: &str = "zstd-jsonl";

pub const CREATE: &str = "
CREATE TABLE IF NOT EXISTS slice (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
-- One row per process any event of this slice is about (or names as its parent): a slice
-- answers tree queries for its own events without the others.
CREATE TABLE IF NOT EXISTS processes (
    exec_id        TEXT PRIMARY KEY,
    parent_exec_id TEXT NOT NULL,
    pid            INTEGER,
    binary         TEXT NOT NULL,
    arguments      TEXT NOT NULL,
    pod_namespace  TEXT,
    pod_name       TEXT,
    start_ns       INTEGER,
    exit_ns        INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS processes_parent ON processes (parent_exec_id);
CREATE INDEX IF NOT EXISTS processes_pid ON processes (pid, start_ns);
CREATE INDEX IF NOT EXISTS processes_binary ON processes (binary);
CREATE INDEX IF NOT EXISTS processes_pod ON processes (pod_namespace, pod_name);
-- Events in publication order; first_ns/last_ns bound the events' own times.
CREATE TABLE IF NOT EXISTS batches (
    id        INTEGER PRIMARY KEY,
    first_ns  INTEGER NOT NULL,
    last_ns   INTEGER NOT NULL,
    events    INTEGER NOT NULL,
    raw_bytes INTEGER NOT NULL,
    codec     TEXT NOT NULL,
    data      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_time ON batches (last_ns, first_ns);
-- Which batches hold events of a process (the event's `process`), and how many.
CREATE TABLE IF NOT EXISTS batch_processes (
    exec_id  TEXT NOT NULL,
    batch_id INTEGER NOT NULL,
    events   INTEGER NOT NULL,
    PRIMARY KEY (exec_id, batch_id)
) WITHOUT ROWID;
-- Which batches hold events of a policy, per action (\"\" for events without one).
CREATE TABLE IF NOT EXISTS batch_policies (
    policy   TEXT NOT NULL,
    action   TEXT NOT NULL,
    batch_id INTEGER NOT NULL,
    events   INTEGER NOT NULL,
    PRIMARY KEY (policy, action, batch_id)
) WITHOUT ROWID;
";

fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> HistoryError + '_ {
    move |source| HistoryError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// The writer's connection to a new slice (the file exists, created 0600 by the caller).
/// `wal_limit` bounds the WAL between checkpoints (bytes).
pub fn open_writer(path: &Path, wal_limit: u64, node: &str) -> Result<Connection, HistoryError> {
    let err = sqlite_err(path);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(&err)?;
    let pages = (wal_limit / 4096).max(16);
    // synchronous=NORMAL: a commit is durable against a crash of the agent (the WAL is in
    // the page cache), not against a power cut; checkpoints sync.
    conn.execute_batch(&format!(
        "PRAGMA page_size = 4096;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA wal_autocheckpoint = {pages};
         PRAGMA journal_size_limit = {wal_limit};
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -4096;"
    ))
    .map_err(&err)?;
    conn.execute_batch(CREATE).map_err(&err)?;
    conn.execute(
        "INSERT OR REPLACE INTO slice (key, value) VALUES ('schema_version', ?1), ('node', ?2)",
        rusqlite::params![SCHEMA_VERSION.to_string(), node],
    )
    .map_err(&err)?;
    Ok(conn)
}

/// A read-only connection; it sees what the writer committed, and never writes the file.
pub fn open_reader(path: &Path) -> Result<Connection, HistoryError> {
    let err = sqlite_err(path);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(&err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(&err)?;
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM slice WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .map_err(&err)?;
    match version.as_deref().map(str::parse::<i64>) {
        Some(Ok(SCHEMA_VERSION)) => Ok(conn),
        other => Err(HistoryError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("schema version {other:?}, this vigil reads version {SCHEMA_VERSION}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_slice_has_the_schema_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history-1.db");
        std::fs::File::create(&path).unwrap();
        let w = open_writer(&path, 1 << 20, "node-a").unwrap();
        let mode: String = w
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        w.execute(
            "INSERT INTO processes (exec_id, parent_exec_id, pid, binary, arguments) VALUES ('a', '', 1, '/bin/sh', '')",
            [],
        )
        .unwrap();
        let r = open_reader(&path).unwrap();
        let n: i64 = r
            .query_row("SELECT count(*) FROM processes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let node: String = r
            .query_row("SELECT value FROM slice WHERE key = 'node'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(node, "node-a");
    }

    #[test]
    fn a_file_that_is_not_a_slice_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history-2.db");
        std::fs::write(&path, b"not sqlite at all, just text that is long enough").unwrap();
        let e = open_reader(&path).unwrap_err().to_string();
        assert!(e.contains("history-2.db"), "{e}");
    }
}
