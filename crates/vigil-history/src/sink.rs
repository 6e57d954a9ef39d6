//! The recorder's sink on the event bus: it appends each event's JSON line (the one the bus
//! renders once for every sink) and what the writer indexes of it (`record`) to a group, and
//! queues full groups, and whatever is pending when the pipeline goes idle, in a queue
//! bounded in bytes; the writer thread (`writer`) compresses and commits them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use vigil_export::{ByteQueue, Event, EventLine, Sink};
use vigil_proto::tetragon::GetEventsResponse;

use crate::record::{BATCH_BYTES, BATCH_EVENTS, Group, Indexer, Meta};
use crate::slices::{Budget, MIN_BUDGET};
use crate::{HistoryError, keys};

/// The recorder's settings, checked by the agent.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    pub dir: PathBuf,
    pub budget: Budget,
    /// Bytes of events (their JSON lines and index entries) waiting for the writer, at most.
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
    /// Events dropped because their write failed (full disk, corrupt or unwritable file, or
    /// an event that could not be encoded).
    pub lost_write_failed: AtomicU64,
    /// Bytes waiting for the writer now, and at most so far.
    pub queue_bytes: AtomicU64,
    pub queue_peak_bytes: AtomicU64,
    /// Slices removed by retention.
    pub slices_dropped: AtomicU64,
}

impl HistoryCounters {
    pub fn lost(&self) -> u64 {
        self.lost_queue_full.load(Ordering::Relaxed)
            + self.lost_write_failed.load(Ordering::Relaxed)
    }
}

/// The queue holds enough for the writer to stop lingering.
fn past_linger_mark(charged: u64, capacity: u64) -> bool {
    charged >= capacity / 4
}

/// What a queued group is charged: its lines and metas as allocated, the rows no cache holds
/// (`fresh_rows`), and the queue's bookkeeping.
fn charge(group: &Group, fresh_rows: usize) -> u64 {
    (group.json.capacity() + group.metas.capacity() * std::mem::size_of::<Meta>() + fresh_rows)
        as u64
        + 64
}

pub(crate) struct Queue {
    /// Charged `charge` per group until the writer is done with it.
    pub items: ByteQueue<Group>,
    pub closing: bool,
}

pub(crate) struct Shared {
    queue: Mutex<Queue>,
    pub ready: Condvar,
    pub counters: Arc<HistoryCounters>,
    /// Tests hold the writer still to fill the queue.
    #[cfg(test)]
    pub hold_writer: Arc<std::sync::atomic::AtomicBool>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer waits up to `most` for batches to fill: until the queue holds a quarter of
    /// its bytes, or it closes.
    pub fn linger(&self, most: std::time::Duration) {
        let q = self.lock();
        let _ = self
            .ready
            .wait_timeout_while(q, most, |q| {
                !q.closing && !past_linger_mark(q.items.charged(), q.items.capacity())
            })
            .unwrap_or_else(|e| e.into_inner());
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
    indexer: Indexer,
    /// Events not queued yet.
    pending: Group,
    /// A group's lines are cut before they pass this: a full batch, or a quarter of the
    /// queue when it is smaller (a group is charged at most twice its lines).
    group_bytes: usize,
    /// Bytes of rows in `pending` that the indexer's cache does not hold.
    pending_rows: usize,
    /// An event could not be encoded, and was logged: the next failures are only counted.
    encode_failing: bool,
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
            #[cfg(test)]
            hold_writer: Default::default(),
        });
        let name = format!("history {}", cfg.dir.display());
        let group_bytes =
            usize::try_from(cfg.queue_bytes / 4).map_or(BATCH_BYTES, |q| q.min(BATCH_BYTES));
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
            indexer: Indexer::default(),
            pending: Group::default(),
            pending_rows: 0,
            group_bytes,
            encode_failing: false,
        })
    }

    /// Hands the pending group to the writer, or counts its events lost when the queue is
    /// full.
    fn queue_pending(&mut self) {
        if self.pending.metas.is_empty() {
            return;
        }
        let mut group = std::mem::take(&mut self.pending);
        let size = charge(&group, std::mem::take(&mut self.pending_rows));
        group.charge = size;
        let events = group.metas.len() as u64;
        let mut q = self.shared.lock();
        let was_past = past_linger_mark(q.items.charged(), q.items.capacity());
        match q.items.push(group, size) {
            Ok(len) => {
                let bytes = q.items.charged();
                let crossed = !was_past && past_linger_mark(bytes, q.items.capacity());
                drop(q);
                let c = &self.shared.counters;
                c.queue_bytes.store(bytes, Ordering::Relaxed);
                c.queue_peak_bytes.fetch_max(bytes, Ordering::Relaxed);
                // The writer waits on an empty queue, or lingers on a small one: one wake-up
                // per batch, not per group.
                if len == 1 || crossed {
                    self.shared.ready.notify_one();
                }
            }
            Err(dropped) => {
                let queue_bytes = q.items.capacity();
                drop(q);
                let c = &self.shared.counters;
                c.lost_queue_full.fetch_add(events, Ordering::Relaxed);
                if dropped.first_in_burst {
                    tracing::error!(sink = %self.name, queue_bytes, lost_so_far = c.lost(),
                        "history writer behind (queue full); events are dropped and counted as lost until it catches up");
                }
            }
        }
    }

    /// Holds the writer still until the flag returned is cleared (tests fill the queue).
    #[cfg(test)]
    pub(crate) fn hold_writer(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.shared.hold_writer.store(true, Ordering::Relaxed);
        Arc::clone(&self.shared.hold_writer)
    }

    pub fn counters(&self) -> Arc<HistoryCounters> {
        Arc::clone(&self.shared.counters)
    }
}

impl Sink for HistorySink {
    fn name(&self) -> &str {
        &self.name
    }

    /// Takes the event's line and index entries; the event itself is not kept.
    fn publish_first(&mut self, event: &mut GetEventsResponse, line: &mut EventLine) {
        match line.get(event) {
            Ok(rendered) => {
                if self.pending.json.len() + rendered.len() >= self.group_bytes {
                    self.queue_pending();
                }
                self.pending.json.extend_from_slice(rendered);
                self.pending.json.push(b'\n');
                self.encode_failing = false;
            }
            Err(e) => {
                let c = &self.shared.counters;
                c.lost_write_failed.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut self.encode_failing, true) {
                    tracing::error!(sink = %self.name, error = %e, lost_so_far = c.lost(),
                        "history: cannot encode an event; such events are counted as lost");
                }
                return;
            }
        }
        let time_ns = keys::event_time_ns(event).unwrap_or_else(crate::writer::now_ns);
        let (meta, fresh) = self.indexer.meta(event, time_ns);
        self.pending.metas.push(meta);
        self.pending_rows += fresh;
        if self.pending.metas.len() >= BATCH_EVENTS {
            self.queue_pending();
        }
    }

    fn publish(&mut self, _event: &Event) {}

    /// The pipeline is idle: what is pending goes to the writer.
    fn flush(&mut self) {
        self.queue_pending();
    }

    fn close(&mut self) {
        self.queue_pending();
        self.shared.lock().closing = true;
        self.shared.ready.notify_one();
        if let Some(t) = self.writer.take()
            && t.join().is_err()
        {
            tracing::error!(sink = %self.name, "history writer thread panicked");
        }
        // Whatever the writer could not take (it panicked) is lost, and counted.
        let left: u64 = (self.shared.lock().items.take(usize::MAX).iter())
            .map(|g| g.metas.len() as u64)
            .sum();
        let c = &self.shared.counters;
        c.lost_write_failed.fetch_add(left, Ordering::Relaxed);
        tracing::info!(sink = %self.name, recorded = c.recorded.load(Ordering::Relaxed),
            lost = c.lost(), queue_peak_bytes = c.queue_peak_bytes.load(Ordering::Relaxed),
            "history recorder closed");
    }

    fn lost(&self) -> u64 {
        self.shared.counters.lost()
    }
}
