//! maxData buffers: the kernel sends a `char_buf` read with maxData as chunks ahead of the
//! event (VIGIL_MSG_DATA, bpf/include/vigil_engine_args.h); the event's argument names the
//! buffer by id. Chunks wait here, per thread, until their event takes them.

use std::collections::HashMap;

use vigil_bpf::records::DataRecord;

/// Threads with a buffer waiting. A buffer whose event never comes (not posted: rate limit,
/// a paired exit that did not match, ring full) is replaced by the thread's next one; past
/// this many threads every waiting buffer is dropped.
const MAX_WAITING: usize = 4096;

#[derive(Debug, Default)]
pub struct Chunks {
    by_tid: HashMap<u32, (u64, Vec<u8>)>,
    /// Buffers dropped without their event (replaced, or cleared over the budget).
    dropped: u64,
}

impl Chunks {
    pub fn add(&mut self, d: &DataRecord) {
        if self.by_tid.len() >= MAX_WAITING && !self.by_tid.contains_key(&d.tid) {
            self.dropped += self.by_tid.len() as u64;
            self.by_tid.clear();
        }
        let entry = self.by_tid.entry(d.tid).or_insert((d.id, Vec::new()));
        if entry.0 != d.id {
            self.dropped += 1;
            *entry = (d.id, Vec::new());
        }
        // Chunks of one buffer arrive in order (one thread, ring order); a gap means a lost
        // chunk: the bytes after it are not reported rather than misplaced.
        if entry.1.len() == d.off as usize {
            entry.1.extend_from_slice(&d.bytes);
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
            Some((want, _)) if *want == id => self.by_tid.remove(&tid).unwrap_or_default().1,
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
