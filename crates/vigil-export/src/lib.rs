//! Event export. The JSON sink writes one JSON object per line, as Tetragon's export does,
//! to stdout or to a rotating file (`rotate`), after the allow/deny lists (`filter`), the
//! rate limit (`ratelimit`) and the field filters (`fields`). Redaction (`redact`) applies
//! on the bus, before any sink sees an event.
//!
//! A sink never stops the agent: a failed write (full disk, unwritable file, closed pipe) is
//! counted as lost, logged once per burst of failures, and writing resumes on the next event
//! once the destination accepts data again.
//!
//! Every line carries `vigil_seq` (1, 2, 3... on this sink, after its filters and rate
//! limit) and `vigil_instance` (`seq`); lines lost to a failed write are explained by an
//! `events_lost` line (stage `LOSS_STAGE_STREAM`) before the next line, and rate-limit
//! drops by one of stage `LOSS_STAGE_RATE_LIMIT`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use vigil_proto::tetragon::{GetEventsResponse, LossStage, RateLimitInfo, get_events_response};

use dest::{Destination, StdoutLines};

pub mod bus;
pub mod byte_queue;
pub mod cel;
mod dest;
pub mod event;
mod event_line;
pub mod fields;
pub mod filter;
mod labels;
pub mod otlp;
pub mod ratelimit;
pub mod redact;
pub mod rotate;
pub mod seq;
mod splice;

pub use bus::{Bus, Event, Sink};
pub use byte_queue::ByteQueue;
pub use event_line::EventLine;
pub use fields::FieldFilters;
pub use filter::{AllowDeny, FilterError, FilterList};
pub use ratelimit::RateLimiter;
pub use redact::Redactor;
pub use rotate::{LogFile, Rotation};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot open export file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
}

/// What the JSON export does besides writing (all optional).
#[derive(Debug, Default)]
pub struct ExportConfig {
    pub filters: AllowDeny,
    pub fields: FieldFilters,
    /// Events per minute; None: unlimited.
    pub rate_limit: Option<u64>,
    /// `node_name` of the `rate_limit_info` events.
    pub node_name: String,
}

/// Export counters, shared with the metrics (`tetragon_events_exported_total`, ...).
#[derive(Debug, Default)]
pub struct ExportCounters {
    pub exported: AtomicU64,
    pub exported_bytes: AtomicU64,
    /// Unix time (s) of the last exported event.
    pub last_exported: AtomicU64,
    pub ratelimit_dropped: AtomicU64,
    pub write_lost: AtomicU64,
}

/// Room kept before a line for the loss reports that may precede it (each is ~200 bytes).
const REPORTS_ROOM: usize = 1024;
/// The JSON-lines sink with loss accounting.
pub struct JsonLinesSink {
    dest: Destination,
    name: String,
    cfg: ExportConfig,
    limiter: Option<RateLimiter>,
    counters: Arc<ExportCounters>,
    written: u64,
    lost: u64,
    failing: bool,
    /// Reused for every line: one allocation per sink, not per event.
    line: Vec<u8>,
    /// The line of an event exported directly (`export`), made on first use: on the bus, the
    /// bus's is shared.
    own_line: Option<Box<EventLine>>,
    /// The last `vigil_seq` given.
    seq: u64,
    /// Numbered lines lost since the last line known written: the sequence numbers a
    /// consumer misses before the next line it gets. Reset only once a line got out, so a
    /// report that is itself lost is covered by the next one.
    skipped: u64,
    /// A loss report is due before the next line.
    report_due: bool,
    skipped_total: u64,
    /// Rate-limit drops since the last report.
    rate_dropped: u64,
    rate_dropped_total: u64,
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
        Self::new(Destination::Stdout(StdoutLines::new()), "stdout")
    }

    /// Appends to `path` (created with `rotation.perm`), rotating as configured.
    pub fn rotating(path: &Path, rotation: Rotation) -> Result<Self, ExportError> {
        let file = LogFile::open(path, rotation).map_err(|source| ExportError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::new(
            Destination::File(file),
            &path.display().to_string(),
        ))
    }

    /// Appends to `path`, created with mode `perm`, with Tetragon's default rotation.
    pub fn file(path: &Path, perm: u32) -> Result<Self, ExportError> {
        Self::rotating(
            path,
            Rotation {
                perm,
                ..Rotation::default()
            },
        )
    }

    fn new(dest: Destination, name: &str) -> Self {
        Self {
            dest,
            name: name.to_string(),
            cfg: ExportConfig::default(),
            limiter: None,
            counters: Arc::default(),
            written: 0,
            lost: 0,
            failing: false,
            line: Vec::with_capacity(4096),
            own_line: None,
            seq: 0,
            skipped: 0,
            report_due: false,
            skipped_total: 0,
            rate_dropped: 0,
            rate_dropped_total: 0,
        }
    }

    /// Sets filters and rate limit.
    pub fn with_config(mut self, cfg: ExportConfig) -> Self {
        self.limiter = cfg.rate_limit.map(|n| RateLimiter::new(n, Instant::now()));
        self.cfg = cfg;
        self
    }

    pub fn counters(&self) -> Arc<ExportCounters> {
        Arc::clone(&self.counters)
    }

    /// Writes one value as a JSON line (no filters).
    pub fn write<T: Serialize>(&mut self, event: &T) {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        match serde_json::to_writer(&mut line, event) {
            Ok(()) => self.write_line(&mut line),
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "cannot encode event, dropped");
                self.add_lost(1);
            }
        }
        self.line = line;
    }

    /// Numbers and queues one line, after the loss reports it owes. Room for all of them is
    /// made first, so no flush (and no failure) falls between a report and its line.
    fn write_line(&mut self, line: &mut Vec<u8>) {
        let room = line.len() + REPORTS_ROOM;
        let prepared = self.dest.prepare(room);
        self.settle(prepared);
        if std::mem::take(&mut self.report_due) {
            let ev = seq::loss_report(
                LossStage::Stream,
                self.skipped,
                self.skipped_total,
                &self.cfg.node_name,
            );
            self.push_event(&ev);
        }
        if self.rate_dropped > 0 {
            let n = std::mem::take(&mut self.rate_dropped);
            let ev = seq::loss_report(
                LossStage::RateLimit,
                n,
                self.rate_dropped_total,
                &self.cfg.node_name,
            );
            self.push_event(&ev);
        }
        self.push(line);
    }

    fn push_event(&mut self, ev: &GetEventsResponse) {
        match serde_json::to_vec(ev) {
            Ok(mut line) => self.push(&mut line),
            Err(e) => tracing::error!(sink = %self.name, error = %e, "cannot encode loss report"),
        }
    }

    fn push(&mut self, line: &mut Vec<u8>) {
        self.seq += 1;
        seq::stamp(line, self.seq, seq::instance());
        line.push(b'\n');
        let len = line.len() as u64;
        self.dest.push(line);
        self.written += 1;
        self.counters.exported.fetch_add(1, Ordering::Relaxed);
        self.counters
            .exported_bytes
            .fetch_add(len, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.counters
            .last_exported
            .store(now.as_secs(), Ordering::Relaxed);
    }

    /// Exports one event: filters, rate limit, field filters, then the line. The event is
    /// borrowed mutably only to render its processes apart (`splice`): it is left as it was.
    pub fn export(&mut self, ev: &mut GetEventsResponse) {
        let mut own = self.own_line.take().unwrap_or_default();
        own.next_event();
        self.export_with(ev, &mut own);
        self.own_line = Some(own);
    }

    /// `export`, with the line the bus renders once for all its sinks.
    pub fn export_with(&mut self, ev: &mut GetEventsResponse, shared: &mut EventLine) {
        if !self.cfg.filters.passes(ev) {
            return;
        }
        if let Some(l) = &mut self.limiter
            && !l.allow(Instant::now())
        {
            self.counters
                .ratelimit_dropped
                .fetch_add(1, Ordering::Relaxed);
            self.rate_dropped += 1;
            self.rate_dropped_total += 1;
            return;
        }
        if self.cfg.fields.is_empty() {
            let mut line = std::mem::take(&mut self.line);
            match shared.get(ev) {
                Ok(rendered) => {
                    line.clear();
                    line.extend_from_slice(rendered);
                    self.write_line(&mut line);
                }
                Err(e) => {
                    tracing::error!(sink = %self.name, error = %e, "cannot encode event, dropped");
                    self.add_lost(1);
                }
            }
            self.line = line;
            return;
        }
        match serde_json::to_value(&*ev) {
            Ok(mut v) => {
                self.cfg.fields.apply(ev, &mut v);
                self.write(&v);
            }
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "cannot encode event, dropped");
                self.add_lost(1);
            }
        }
    }

    fn report_rate_limit(&mut self, force: bool) {
        let dropped = self
            .limiter
            .as_mut()
            .and_then(|l| l.report(Instant::now(), force));
        if let Some(n) = dropped {
            tracing::warn!(sink = %self.name, dropped = n, "export rate limit dropped events");
            // Tetragon's report covers the drops since the last line: no events_lost for them.
            self.rate_dropped = 0;
            let ev = GetEventsResponse {
                event: Some(get_events_response::Event::RateLimitInfo(RateLimitInfo {
                    number_of_dropped_process_events: n,
                })),
                node_name: self.cfg.node_name.clone(),
                time: Some(SystemTime::now().into()),
                ..Default::default()
            };
            self.write(&ev);
        }
    }

    /// Flushes buffered lines; reports rate-limit drops and rotates by interval.
    pub fn flush(&mut self) {
        self.report_rate_limit(false);
        let result = self.dest.flush().and_then(|n| match &mut self.dest {
            Destination::File(f) => f.tick(Instant::now()).map(|()| n),
            Destination::Stdout(_) => Ok(n),
        });
        self.settle(result);
    }

    /// Accounts a write of the buffered lines.
    fn settle(&mut self, result: Result<u64, rotate::FlushError>) {
        match result {
            // Resumed only when lines really reached the destination.
            Ok(n) if n > 0 => {
                // The report (if any) is out: the gap is explained.
                self.skipped = 0;
                if self.failing {
                    self.failing = false;
                    tracing::warn!(sink = %self.name, lost = self.lost, "export writes resumed");
                }
            }
            Ok(_) => {}
            Err(e) => self.fail(&e),
        }
    }

    fn add_lost(&mut self, n: u64) {
        self.lost += n;
        self.counters.write_lost.fetch_add(n, Ordering::Relaxed);
    }

    fn fail(&mut self, e: &rotate::FlushError) {
        self.add_lost(e.lines.max(1));
        // Those lines had their numbers: the next line explains the hole.
        if e.delivered > 0 {
            self.skipped = 0;
        }
        self.skipped += e.lines;
        self.skipped_total += e.lines;
        self.report_due = true;
        self.written = self.written.saturating_sub(e.lines);
        self.counters.exported.fetch_sub(
            e.lines.min(self.counters.exported.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        if !self.failing {
            self.failing = true;
            tracing::error!(sink = %self.name, error = %e.error, lost_so_far = self.lost,
                "export write failed; events are counted as lost until writes succeed again");
        }
    }

    /// The last `vigil_seq` given on this sink.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Lines written (or queued) successfully.
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

    /// The line is rendered before the event is shared (see `splice`).
    fn publish_first(&mut self, event: &mut GetEventsResponse, line: &mut EventLine) {
        self.export_with(event, line);
    }

    fn publish(&mut self, _event: &Event) {}

    fn flush(&mut self) {
        JsonLinesSink::flush(self);
    }

    fn close(&mut self) {
        self.report_rate_limit(true);
        JsonLinesSink::flush(self);
        // Lines lost by the last flush: say so, if the destination takes it now.
        if self.report_due {
            let ev = seq::loss_report(
                LossStage::Stream,
                self.skipped,
                self.skipped_total,
                &self.cfg.node_name,
            );
            self.report_due = false;
            self.write(&ev);
            JsonLinesSink::flush(self);
        }
        if let Destination::File(f) = &mut self.dest {
            f.wait_housekeeping();
        }
    }

    fn lost(&self) -> u64 {
        self.lost
    }
}

#[cfg(test)]
#[path = "sink_tests.rs"]
mod tests;
