//! Event sinks. A sink writes one JSON object per line, as Tetragon's export does.
//!
//! A sink never stops the agent: a failed write (full disk, unwritable file, closed pipe) is
//! counted as lost, logged once per burst of failures, and writing resumes on the next event
//! once the destination accepts data again.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub mod bus;
pub use bus::{Bus, Event, Sink};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot open export file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
}

/// Where lines go.
enum Destination {
    Stdout(BufWriter<io::Stdout>),
    File(BufWriter<File>),
}

/// A JSON-lines sink with loss accounting.
pub struct JsonLinesSink {
    dest: Destination,
    name: String,
    written: u64,
    lost: u64,
    failing: bool,
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("name", &self.name)
            .finish()
    }
}

impl JsonLinesSink {
    pub fn stdout() -> Self {
        Self::new(
            Destination::Stdout(BufWriter::with_capacity(1 << 16, io::stdout())),
            "stdout",
        )
    }

    /// Appends to `path`, created with mode `perm` (Tetragon's default is 0600).
    pub fn file(path: &Path, perm: u32) -> Result<Self, ExportError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(perm)
            .open(path)
            .map_err(|source| ExportError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self::new(
            Destination::File(BufWriter::with_capacity(1 << 16, file)),
            &path.display().to_string(),
        ))
    }

    fn new(dest: Destination, name: &str) -> Self {
        Self {
            dest,
            name: name.to_string(),
            written: 0,
            lost: 0,
            failing: false,
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match &mut self.dest {
            Destination::Stdout(w) => w,
            Destination::File(w) => w,
        }
    }

    /// Writes one event as a JSON line.
    pub fn write<T: Serialize>(&mut self, event: &T) {
        let mut line = match serde_json::to_vec(event) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "cannot encode event, dropped");
                self.lost += 1;
                return;
            }
        };
        line.push(b'\n');
        let result = self.writer().write_all(&line);
        self.account(result);
    }

    /// Flushes buffered lines (called when the pipeline is idle and at shutdown).
    pub fn flush(&mut self) {
        let result = self.writer().flush();
        if let Err(e) = result {
            self.note_failure(&e);
        }
    }

    fn account(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => {
                self.written += 1;
                if self.failing {
                    self.failing = false;
                    tracing::warn!(sink = %self.name, lost = self.lost, "export writes resumed");
                }
            }
            Err(e) => {
                self.lost += 1;
                self.note_failure(&e);
            }
        }
    }

    fn note_failure(&mut self, e: &io::Error) {
        if !self.failing {
            self.failing = true;
            tracing::error!(sink = %self.name, error = %e, lost_so_far = self.lost,
                "export write failed; events are counted as lost until writes succeed again");
        }
        // A failed BufWriter keeps its buffer: drop it so that the next write starts clean.
        if let Destination::File(w) = &mut self.dest {
            let file = w.get_ref().try_clone();
            if let Ok(file) = file {
                let _ = std::mem::replace(w, BufWriter::with_capacity(1 << 16, file)).into_parts();
            }
        }
    }

    /// Lines written successfully.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Lines lost to write failures.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

impl Sink for JsonLinesSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn publish(&mut self, event: &Event) {
        self.write(event.as_ref());
    }

    fn flush(&mut self) {
        JsonLinesSink::flush(self);
    }

    fn lost(&self) -> u64 {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_device_counts_loss_and_keeps_going() {
        // /dev/full fails every write with ENOSPC.
        let mut sink = JsonLinesSink::file(Path::new("/dev/full"), 0o600).unwrap();
        for i in 0..100_000u32 {
            sink.write(&serde_json::json!({ "n": i, "pad": "x".repeat(64) }));
        }
        sink.flush();
        assert!(
            sink.lost() > 0,
            "writes to /dev/full must be counted as lost"
        );
        assert!(sink.written() + sink.lost() >= 100_000);
    }

    #[test]
    fn lines_are_one_json_object_each() {
        let dir = std::env::temp_dir().join(format!("vigil-export-{}", std::process::id()));
        let mut sink = JsonLinesSink::file(&dir, 0o600).unwrap();
        sink.write(&serde_json::json!({"a": 1}));
        sink.write(&serde_json::json!({"b": "x\ny"}));
        sink.flush();
        let text = std::fs::read_to_string(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":\"x\\ny\"}\n");
    }
}
