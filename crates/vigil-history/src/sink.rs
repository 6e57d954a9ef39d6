//! The recorder's sink on the event bus: it only queues the shared event, in a queue bounded
//! in bytes (the events' protobuf size); the writer thread (`writer`) does the rest.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use prost::Message;
use vigil_export::{ByteQueue, Event, ProcessJson, Sink};
use vigil_proto::tetragon::GetEventsResponse;

use crate::HistoryError;
use crate::slices::{Budget, MIN_BUDGET};

/// The recorder's settings, checked by the agent.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    pub dir: PathBuf,
    pub budget: Budget,
    /// Bytes of events (protobuf size) waiting for the writer, at most.
    pub queue_bytes: u64,
    /// `node` of each slice (for readers that merge nodes).
    pub node: String,
}

/// The recorder's counters (metrics, logs, tests).
#[derive(Debug, Default)]
pub struct HistoryCounters {
    /// Events committed to a slice.
    pub recorded: AtomicU64,
    /// Events dropped because the writer was behind (queue full).
    pub lost_queue_full: AtomicU64,
    /// Events dropped because their write failed (full disk, corrupt or unwritable file).
    pub lost_write_failed: AtomicU64,
    /// Bytes waiting for the writer now.
    pub queue_bytes: AtomicU64,
    /// Slices removed by retention.
    pub slices_dropped: AtomicU64,
}

impl HistoryCounters {
    pub fn lost(&self) -> u64 {
        self.lost_queue_full.load(Ordering::Relaxed)
            + self.lost_write_failed.load(Ordering::Relaxed)
    }
}

/// One event for the writer: the shared event, and its JSON line, rendered on the pipeline
/// thread the way the file sink renders it (the processes' JSON reused while they are
/// unchanged: `ProcessJson`), which costs a fraction of rendering it whole on the writer.
pub(crate) struct Recorded {
    pub event: Event,
    /// `None` when rendering failed: the writer renders (and reports) it again.
    pub json: Option<Box<[u8]>>,
    /// What the queue charged for it.
    pub charge: u64,
}

/// What one queued event is charged: the event (shared with the other sinks; about as large
/// as its JSON) and its line, plus the queue's own bookkeeping.
pub(crate) fn charge(event: &Event, json: Option<&[u8]>) -> u64 {
    match json {
        Some(line) => 2 * line.len() as u64 + 64,
        None => event.encoded_len() as u64 + 64,
    }
}

pub(crate) struct Queue {
    /// Charged [`charge`] per event until the writer is done with it.
    pub items: ByteQueue<Recorded>,
    pub closing: bool,
}

pub(crate) struct Shared {
    queue: Mutex<Queue>,
    pub ready: Condvar,
    pub counters: Arc<HistoryCounters>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer is done with events charged `bytes`.
    pub fn release(&self, bytes: u64) {
        let mut q = self.lock();
        q.items.release(bytes);
        self.counters
            .queue_bytes
            .store(q.items.charged(), Ordering::Relaxed);
    }
}

/// The flight recorder on the bus.
pub struct HistorySink {
    name: String,
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
    processes: ProcessJson,
    line: Vec<u8>,
    /// The line of the event between `publish_first` and `publish`.
    rendered: Option<Box<[u8]>>,
}

impl std::fmt::Debug for HistorySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistorySink")
            .field("name", &self.name)
            .finish()
    }
}

impl HistorySink {
    /// Checks the directory, recovers and ages the slices already there, and starts the
    /// writer thread. Every error here is a start-up error naming the directory.
    pub fn start(cfg: HistoryConfig) -> Result<Self, HistoryError> {
        if cfg.budget.max_bytes < MIN_BUDGET {
            return Err(HistoryError::BudgetTooSmall(cfg.budget.max_bytes));
        }
        crate::prepare_dir(&cfg.dir)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                items: ByteQueue::new(cfg.queue_bytes),
                closing: false,
            }),
            ready: Condvar::new(),
            counters: Arc::default(),
        });
        let name = format!("history {}", cfg.dir.display());
        let writer = crate::writer::Writer::open(cfg, Arc::clone(&shared.counters))?;
        let thread_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("vigil-history".into())
            .spawn(move || writer.run(&thread_shared))
            .map_err(HistoryError::Thread)?;
        Ok(Self {
            name,
            shared,
            writer: Some(handle),
            processes: ProcessJson::default(),
            line: Vec::with_capacity(4096),
            rendered: None,
        })
    }

    pub fn counters(&self) -> Arc<HistoryCounters> {
        Arc::clone(&self.shared.counters)
    }
}

impl Sink for HistorySink {
    fn name(&self) -> &str {
        &self.name
    }

    /// Renders the line while the event can still be borrowed mutably (see `Recorded`).
    fn publish_first(&mut self, event: &mut GetEventsResponse) {
        self.rendered = match self.processes.write_event(event, &mut self.line) {
            Ok(()) => Some(self.line.as_slice().into()),
            Err(_) => None,
        };
    }

    fn publish(&mut self, event: &Event) {
        let json = self.rendered.take();
        let size = charge(event, json.as_deref());
        let recorded = Recorded {
            event: Arc::clone(event),
            json,
            charge: size,
        };
        let mut q = self.shared.lock();
        match q.items.push(recorded, size) {
            Ok(len) => {
                let bytes = q.items.charged();
                drop(q);
                self.shared
                    .counters
                    .queue_bytes
                    .store(bytes, Ordering::Relaxed);
                // The writer sleeps only on an empty queue: one wake-up per batch, not per
                // event.
                if len == 1 {
                    self.shared.ready.notify_one();
                }
            }
            Err(dropped) => {
                let queue_bytes = q.items.capacity();
                drop(q);
                let c = &self.shared.counters;
                c.lost_queue_full.fetch_add(1, Ordering::Relaxed);
                if dropped.first_in_burst {
                    tracing::error!(sink = %self.name, queue_bytes, lost_so_far = c.lost(),
                        "history writer behind (queue full); events are dropped and counted as lost until it catches up");
                }
            }
        }
    }

    fn close(&mut self) {
        self.shared.lock().closing = true;
        self.shared.ready.notify_one();
        if let Some(t) = self.writer.take()
            && t.join().is_err()
        {
            tracing::error!(sink = %self.name, "history writer thread panicked");
        }
        // Whatever the writer could not take (it panicked) is lost, and counted.
        let left = self.shared.lock().items.clear() as u64;
        let c = &self.shared.counters;
        c.lost_write_failed.fetch_add(left, Ordering::Relaxed);
        tracing::info!(sink = %self.name, recorded = c.recorded.load(Ordering::Relaxed),
            lost = c.lost(), "history recorder closed");
    }

    fn lost(&self) -> u64 {
        self.shared.counters.lost()
    }
}
