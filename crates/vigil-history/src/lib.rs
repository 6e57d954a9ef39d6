//! The flight recorder: every event the agent publishes (after redaction), kept on the node
//! in SQLite files, and the queries over them (`vigil history`).
//!
//! Storage (`schema`): the history directory holds time slices, `history-<start ms>.db`,
//! each a SQLite database in WAL mode with one row per process (exec id, parent, pid,
//! binary, pod, start and exit times) and the events as zstd-compressed batches of their
//! Tetragon JSON lines, indexed by time, by process and by (policy, action). SQLite does not
//! give deleted pages back to the file system, so retention (`slices`) drops whole slices,
//! oldest first, when the files of all slices (database, WAL, shared memory) would pass the
//! byte budget or a slice's newest event is older than the age limit.
//!
//! Writing (`sink`, `writer`): the bus sink only queues the shared event (a queue bounded in
//! bytes); a writer thread renders, batches, compresses and commits. A full queue, a full
//! disk or a corrupt file drops events, counts them (`Sink::lost`, which the pipeline turns
//! into `events_lost` stage `LOSS_STAGE_SINK`) and logs once per episode: the pipeline never
//! waits for the disk.
//!
//! Reading (`query`): read-only connections, which work while the agent writes.

use std::path::PathBuf;

mod dir;
pub mod keys;
pub mod query;
mod record;
pub mod schema;
mod sink;
pub mod slices;
mod writer;

pub use dir::prepare_dir;
pub use query::{EventFilter, History, ProcessRow, StoredEvent, Tree};
pub use sink::{HistoryConfig, HistoryCounters, HistorySink};

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history directory {path}: {reason}")]
    Dir { path: PathBuf, reason: String },
    #[error("history directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("history slice {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("history slice {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("history directory {0} has no recorded events yet")]
    Empty(PathBuf),
    #[error("no process with exec id {0:?} in the history")]
    UnknownExecId(String),
    #[error("no process with pid {0} in the history")]
    UnknownPid(u32),
    #[error("--history-max-bytes {0}: below the minimum of {min} bytes", min = slices::MIN_BUDGET)]
    BudgetTooSmall(u64),
    #[error("cannot start the history writer thread: {0}")]
    Thread(std::io::Error),
}
