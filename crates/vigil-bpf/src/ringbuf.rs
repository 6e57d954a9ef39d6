//! The reader thread: drains the kernel ring buffer and hands raw messages to the pipeline.
//!
//! The hand-off channel is bounded and the reader blocks when it is full: back-pressure
//! moves to the kernel ring buffer, where every drop is counted (`vigil_counters`). Nothing
//! is dropped silently in user space.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;
use std::time::Duration;

use libbpf_rs::{MapHandle, RingBufferBuilder};

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

/// Spawns the reader. It stops when `stop` is set (after draining what is already in the
/// ring) or when the receiving side is gone.
pub fn spawn_reader(
    events: MapHandle,
    out: SyncSender<Vec<u8>>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, ReaderError> {
    // Build inside the thread: the ring buffer is tied to this thread's lifetime.
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), ReaderError>>(1);
    let handle = std::thread::Builder::new()
        .name("vigil-ringbuf".into())
        .spawn(move || {
            let disconnected = Arc::new(AtomicBool::new(false));
            let gone = disconnected.clone();
            let mut builder = RingBufferBuilder::new();
            if let Err(e) = builder.add(&events, move |data: &[u8]| {
                if out.send(data.to_vec()).is_err() {
                    gone.store(true, Ordering::Relaxed);
                    return -1;
                }
                0
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
            while !stop.load(Ordering::Relaxed) && !disconnected.load(Ordering::Relaxed) {
                // The kernel side wakes us only for bursts (BPF_RB_NO_WAKEUP otherwise):
                // poll with a short timeout and drain whatever arrived meanwhile.
                let _ = ring.poll(POLL_INTERVAL);
                let _ = ring.consume();
            }
            let _ = ring.consume();
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
