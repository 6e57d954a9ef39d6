//! The reader thread: drains the kernel ring buffer and hands raw messages to the pipeline.
//!
//! The hand-off channel is bounded and the reader blocks when it is full: back-pressure
//! moves to the kernel ring buffer, where every drop is counted (`vigil_counters`). Nothing
//! is dropped silently in user space.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;
use std::time::Duration;

use libbpf_rs::{MapHandle, RingBufferBuilder};

/// Records per hand-over to the pipeline, at most.
pub const BATCH: usize = 256;
/// Bytes per hand-over, at most (a record may take it past this once): the channel's bound
/// in batches is then a bound in bytes too, whatever the records' sizes.
pub const BATCH_BYTES: usize = 1 << 20;

/// Records handed over at once: their bytes back to back (one allocation per batch, not
/// one per record), and where each ends.
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Batch {
    pub fn push(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        self.ends.push(self.bytes.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// No more records fit.
    pub fn full(&self) -> bool {
        self.ends.len() >= BATCH || self.bytes.len() >= BATCH_BYTES
    }

    /// The records, in ring order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter())
            .map(|(a, &b)| &self.bytes[a..b])
    }
}

/// Longest time a message waits in the ring before the reader sees it (when no burst
/// wakes it earlier).
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("cannot set up the ring buffer reader: {0}")]
    Setup(libbpf_rs::Error),
    #[error("cannot start the ring buffer reader thread: {0}")]
    Spawn(std::io::Error),
}

/// What a previous agent's kept ring (pinned at `path`, `--keep-sensors-on-exit`) holds:
/// the records its programs wrote while no agent read them, in ring order, at most
/// `max_bytes` of them (the rest stays in the ring, and goes with it). The ring is a map
/// a privileged process could have replaced: records are decoded like any others.
pub fn drain_pinned(path: &std::path::Path, max_bytes: usize) -> Result<Vec<Vec<u8>>, ReaderError> {
    let map = MapHandle::from_pinned_path(path).map_err(ReaderError::Setup)?;
    let out: Rc<RefCell<(Vec<Vec<u8>>, usize)>> = Rc::default();
    let sink = Rc::clone(&out);
    let mut builder = RingBufferBuilder::new();
    builder
        .add(&map, move |data: &[u8]| {
            let mut o = sink.borrow_mut();
            if o.1 + data.len() > max_bytes {
                return -1;
            }
            o.1 += data.len();
            o.0.push(data.to_vec());
            0
        })
        .map_err(ReaderError::Setup)?;
    let ring = builder.build().map_err(ReaderError::Setup)?;
    // A callback's -1 (the budget) ends consume() with an error: what was taken stays.
    let _ = ring.consume();
    drop(ring);
    Ok(std::mem::take(&mut out.borrow_mut().0))
}

/// Spawns the reader. It stops when `stop` is set (after draining what is already in the
/// ring) or when the receiving side is gone.
pub fn spawn_reader(
    events: MapHandle,
    out: SyncSender<Batch>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, ReaderError> {
    spawn_reader_counted(events, out, stop, Arc::default())
}

/// [`spawn_reader`] that also counts in `offered` the batches it hands over (counted before
/// the send, so a batch the reader is blocked on counts): the agent's liveness check
/// compares it with the batches the pipeline handled to know whether records are waiting.
pub fn spawn_reader_counted(
    events: MapHandle,
    out: SyncSender<Batch>,
    stop: Arc<AtomicBool>,
    offered: Arc<AtomicU64>,
) -> Result<JoinHandle<()>, ReaderError> {
    // Build inside the thread: the ring buffer is tied to this thread's lifetime.
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), ReaderError>>(1);
    let handle = std::thread::Builder::new()
        .name("vigil-ringbuf".into())
        .spawn(move || {
            // Records are handed over in batches: one channel operation (and at most one
            // wake-up of the pipeline) per batch instead of per record.
            let batch: Rc<RefCell<Batch>> = Rc::default();
            let sink = Rc::clone(&batch);
            let mut builder = RingBufferBuilder::new();
            if let Err(e) = builder.add(&events, move |data: &[u8]| {
                let mut b = sink.borrow_mut();
                b.push(data);
                // A full batch stops this consume() (the record is kept: libbpf commits
                // it before returning the error); the loop below hands it over.
                if b.full() { -1 } else { 0 }
            }) {
                let _ = ready_tx.send(Err(ReaderError::Setup(e)));
                return;
            }
            let ring = match builder.build() {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(ReaderError::Setup(e)));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let hand_over = || -> bool {
                let records = std::mem::take(&mut *batch.borrow_mut());
                if records.is_empty() {
                    return true;
                }
                offered.fetch_add(1, Ordering::Relaxed);
                out.send(records).is_ok()
            };
            loop {
                let stopping = stop.load(Ordering::Relaxed);
                if !stopping {
                    // The kernel side wakes us only for bursts (BPF_RB_NO_WAKEUP otherwise):
                    // poll with a short timeout and drain whatever arrived meanwhile.
                    let _ = ring.poll(POLL_INTERVAL);
                }
                loop {
                    let full = ring.consume_raw() < 0;
                    if !hand_over() {
                        return; // the pipeline is gone
                    }
                    if !full {
                        break;
                    }
                }
                if stopping {
                    return;
                }
            }
        })
        .map_err(ReaderError::Spawn)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ReaderError::Spawn(std::io::Error::other(
            "reader thread died",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_back_its_records_in_order() {
        let mut b = Batch::default();
        assert!(b.is_empty() && b.iter().next().is_none());
        for r in [&b"exec"[..], b"", b"exit-record"] {
            b.push(r);
        }
        let got: Vec<&[u8]> = b.iter().collect();
        assert_eq!(got, [&b"exec"[..], b"", b"exit-record"]);
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn a_batch_is_full_by_count_or_by_bytes() {
        let mut by_count = Batch::default();
        for _ in 0..BATCH - 1 {
            by_count.push(b"x");
        }
        assert!(!by_count.full());
        by_count.push(b"x");
        assert!(by_count.full());
        let mut by_bytes = Batch::default();
        by_bytes.push(&vec![0u8; BATCH_BYTES - 1]);
        assert!(!by_bytes.full());
        by_bytes.push(b"y");
        assert!(by_bytes.full());
    }
}
