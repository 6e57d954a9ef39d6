//! Post imaHash: LSM events wait here for their digest. The kernel posts the event first and
//! the digest after it, from a program that may sleep while IMA reads the file
//! (bpf/include/vigil_engine_ima.h); other records can come in between. An event waits at
//! most [`MAX_WAIT`], and the waiting events hold at most [`BUDGET_BYTES`]: past either it
//! goes out without a digest (an empty `ima_hash`, as Tetragon's when IMA fails), counted
//! and logged, never held back for good.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use vigil_bpf::abi::vigil_syscall_msg;
use vigil_bpf::records::{ImaDigest, ImaRecord, SyscallRecord};

/// Longest wait for a digest: IMA reads the whole file (a large binary under load).
pub const MAX_WAIT: Duration = Duration::from_secs(2);
/// Bytes of the events waiting at once (their records' sizes).
pub const BUDGET_BYTES: usize = 4 << 20;
/// How often the pipeline looks again while events wait.
pub const POLL: Duration = Duration::from_millis(10);
/// What an event that got no digest carries (-ETIMEDOUT).
const NO_DIGEST: ImaDigest = ImaDigest::Failed { error: -110 };

#[derive(Default)]
pub struct ImaWait {
    waiting: VecDeque<(Instant, usize, Box<SyscallRecord>)>,
    bytes: usize,
    /// Events that went out without their digest (wait or budget exceeded).
    pub without_digest: u64,
    /// Digests whose event was no longer waiting.
    pub orphan_digests: u64,
}

fn record_bytes(rec: &SyscallRecord) -> usize {
    size_of::<vigil_syscall_msg>()
        + rec.strings.iter().map(Vec::len).sum::<usize>()
        + rec.path.as_ref().map_or(0, Vec::len)
        + 8 * (rec.user_stack.len() + rec.kernel_stack.len())
}

impl ImaWait {
    pub fn waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Parks `rec` until its digest comes; returns the events that must go out now to keep
    /// the budget (oldest first, without digest).
    #[expect(
        clippy::vec_box,
        reason = "records arrive boxed from decode: no copy out"
    )]
    pub fn admit(&mut self, rec: Box<SyscallRecord>, now: Instant) -> Vec<Box<SyscallRecord>> {
        let bytes = record_bytes(&rec);
        self.bytes += bytes;
        self.waiting.push_back((now, bytes, rec));
        let mut out = Vec::new();
        while self.bytes > BUDGET_BYTES {
            match self.pop_without_digest() {
                Some(r) => out.push(r),
                None => break,
            }
        }
        out
    }

    /// The waiting event this digest belongs to, with the digest on it.
    pub fn complete(&mut self, ima: ImaRecord) -> Option<Box<SyscallRecord>> {
        let at = self.waiting.iter().position(|(_, _, r)| {
            r.msg.tid == ima.tid
                && r.msg.hook_id == ima.hook_id
                && r.msg.hdr.ktime == ima.event_ktime
        });
        let Some(at) = at else {
            self.orphan_digests += 1;
            return None;
        };
        let (_, bytes, mut rec) = self.waiting.remove(at)?;
        self.bytes -= bytes;
        rec.ima = Some(ima.digest);
        Some(rec)
    }

    /// Events whose wait is over (all of them when `all`), without digest.
    #[expect(
        clippy::vec_box,
        reason = "records arrive boxed from decode: no copy out"
    )]
    pub fn release(&mut self, now: Instant, all: bool) -> Vec<Box<SyscallRecord>> {
        let mut out = Vec::new();
        while let Some((since, _, _)) = self.waiting.front() {
            if !all && now.duration_since(*since) < MAX_WAIT {
                break;
            }
            out.extend(self.pop_without_digest());
        }
        out
    }

    fn pop_without_digest(&mut self) -> Option<Box<SyscallRecord>> {
        let (_, bytes, mut rec) = self.waiting.pop_front()?;
        self.bytes -= bytes;
        rec.ima = Some(NO_DIGEST);
        self.without_digest += 1;
        if self.without_digest.is_power_of_two() {
            tracing::warn!(
                total = self.without_digest,
                "imaHash: an LSM event went out without its file digest (none came within {} s, or too many events waited)",
                MAX_WAIT.as_secs()
            );
        }
        Some(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(tid: u32, ktime: u64, string_bytes: usize) -> Box<SyscallRecord> {
        let mut msg = vigil_syscall_msg::default();
        (msg.tid, msg.hook_id, msg.hdr.ktime) = (tid, 1, ktime);
        Box::new(SyscallRecord {
            msg,
            strings: vec![vec![b'x'; string_bytes]],
            path: None,
            user_stack: Vec::new(),
            kernel_stack: Vec::new(),
            ima: None,
        })
    }

    fn digest(tid: u32, ktime: u64) -> ImaRecord {
        ImaRecord {
            event_ktime: ktime,
            tid,
            hook_id: 1,
            digest: ImaDigest::Digest {
                algo: "sha256",
                digest: vec![1; 32],
            },
        }
    }

    #[test]
    fn a_digest_joins_its_own_event_whatever_came_between() {
        let now = Instant::now();
        let mut w = ImaWait::default();
        assert!(w.admit(event(5, 100, 10), now).is_empty());
        assert!(w.admit(event(6, 101, 10), now).is_empty());
        let second = w.complete(digest(6, 101)).expect("tid 6's event");
        assert_eq!(second.msg.tid, 6);
        assert!(matches!(second.ima, Some(ImaDigest::Digest { .. })));
        assert!(
            w.complete(digest(5, 999)).is_none(),
            "another event of tid 5"
        );
        assert_eq!(w.orphan_digests, 1);
        assert!(w.waiting());
        assert!(w.complete(digest(5, 100)).is_some());
        assert!(!w.waiting());
    }

    #[test]
    fn no_event_waits_past_the_time_or_the_byte_budget() {
        let now = Instant::now();
        let mut w = ImaWait::default();
        w.admit(event(1, 1, 10), now);
        assert!(w.release(now + MAX_WAIT / 2, false).is_empty());
        let late = w.release(now + MAX_WAIT, false);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].ima, Some(NO_DIGEST));
        // Events of just under 1 MiB each: the fifth pushes the oldest out.
        let mut out = Vec::new();
        for i in 0..5 {
            out.extend(w.admit(event(2, i, (1 << 20) - 1024), now));
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].msg.hdr.ktime, 0, "the oldest goes first");
        assert!(w.bytes <= BUDGET_BYTES);
        assert_eq!(w.release(now, true).len(), 4, "all at shutdown");
        assert_eq!(w.without_digest, 6);
    }
}
