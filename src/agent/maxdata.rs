//! maxData buffers: the kernel sends a `char_buf` read with maxData as chunks ahead of the
//! event (VIGIL_MSG_DATA, bpf/include/vigil_engine_args.h); the event's argument names the
//! buffer by id. Chunks wait here, per thread, until their event takes them.

use std::collections::HashMap;

use vigil_bpf::records::DataRecord;

/// Threads with a buffer waiting. A buffer whose event never comes (not posted: rate limit,
/// a paired exit that did not match, ring full) is replaced by the thread's next one; past
/// this many threads, or [`MAX_WAITING_BYTES`] in all, every waiting buffer is dropped
/// (counted: `events_lost`, `LOSS_STAGE_DATA`).
const MAX_WAITING: usize = 4096;

/// Bytes of buffers waiting, at most (4,096 threads' maxData buffers would be ~1.3 GB).
const MAX_WAITING_BYTES: usize = 16 << 20;

#[derive(Debug, Default)]
pub struct Chunks {
    by_tid: HashMap<u32, (u64, Vec<u8>)>,
    /// Bytes held in `by_tid`.
    bytes: usize,
    /// Buffers dropped without their event (replaced, or cleared over the budget).
    dropped: u64,
}

impl Chunks {
    pub fn add(&mut self, d: &DataRecord) {
        let over_count = self.by_tid.len() >= MAX_WAITING && !self.by_tid.contains_key(&d.tid);
        if over_count || self.bytes + d.bytes.len() > MAX_WAITING_BYTES {
            self.dropped += self.by_tid.len() as u64;
            self.by_tid.clear();
            self.bytes = 0;
        }
        let entry = self.by_tid.entry(d.tid).or_insert((d.id, Vec::new()));
        if entry.0 != d.id {
            self.dropped += 1;
            self.bytes -= entry.1.len();
            *entry = (d.id, Vec::new());
        }
        // Chunks of one buffer arrive in order (one thread, ring order); a gap means a lost
        // chunk: the bytes after it are not reported rather than misplaced.
        if entry.1.len() == d.off as usize {
            entry.1.extend_from_slice(&d.bytes);
            self.bytes += d.bytes.len();
        }
    }

    /// Buffers dropped since start without their event.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The bytes of buffer `id` of thread `tid` (the argument's row: the id, native order).
    pub fn take(&mut self, tid: u32, row: &[u8]) -> Vec<u8> {
        let Ok(id) = <[u8; 8]>::try_from(row).map(u64::from_ne_bytes) else {
            return Vec::new();
        };
        match self.by_tid.get(&tid) {
            Some((want, _)) if *want == id => {
                let bytes = self.by_tid.remove(&tid).unwrap_or_default().1;
                self.bytes -= bytes.len();
                bytes
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(tid: u32, id: u64, off: u32, bytes: &[u8]) -> DataRecord {
        DataRecord {
            tid,
            id,
            off,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn chunks_join_per_thread_and_a_newer_buffer_replaces_an_orphan() {
        let mut c = Chunks::default();
        c.add(&chunk(1, 7, 0, b"orphan"));
        c.add(&chunk(1, 9, 0, b"hello "));
        c.add(&chunk(2, 5, 0, b"other"));
        c.add(&chunk(1, 9, 6, b"world"));
        assert_eq!(c.take(1, &7u64.to_ne_bytes()), b"");
        assert_eq!(c.take(1, &9u64.to_ne_bytes()), b"hello world");
        assert_eq!(c.take(1, &9u64.to_ne_bytes()), b"", "taken once");
        assert_eq!(c.take(2, &5u64.to_ne_bytes()), b"other");
    }

    #[test]
    fn a_gap_stops_the_buffer_there() {
        let mut c = Chunks::default();
        c.add(&chunk(1, 3, 0, b"abc"));
        c.add(&chunk(1, 3, 10, b"lost before me"));
        assert_eq!(c.take(1, &3u64.to_ne_bytes()), b"abc");
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    /// Buffers are bounded in bytes, not only in threads: waiting buffers past the byte
    /// budget are dropped and counted; what is taken is no longer held.
    #[test]
    fn waiting_buffers_are_bounded_in_bytes_and_drops_are_counted() {
        let mut c = Chunks::default();
        let chunk = vec![7u8; 4096];
        let per_thread = 64;
        let threads = MAX_WAITING_BYTES / (per_thread * chunk.len()) + 2;
        for tid in 0..threads as u32 {
            for i in 0..per_thread as u32 {
                c.add(&DataRecord {
                    tid,
                    id: 1,
                    off: i * chunk.len() as u32,
                    bytes: chunk.clone(),
                });
            }
        }
        assert!(c.bytes <= MAX_WAITING_BYTES, "{} bytes held", c.bytes);
        assert!(c.dropped() > 0, "the drop is counted");
        let last = threads as u32 - 1;
        let got = c.take(last, &1u64.to_ne_bytes());
        assert_eq!(got.len(), per_thread * chunk.len());
        assert!(c.bytes < MAX_WAITING_BYTES);
        // An orphan replaced by the thread's next buffer counts as dropped too.
        let mut c = Chunks::default();
        for id in [1, 2] {
            c.add(&DataRecord {
                tid: 5,
                id,
                off: 0,
                bytes: vec![1; 10],
            });
        }
        assert_eq!((c.dropped(), c.bytes), (1, 10));
    }
}
