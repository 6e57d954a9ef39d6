//! What the sink hands the writer: events grouped on the pipeline thread, each group their
//! JSON lines back to back and what the writer indexes of each event. The event itself is
//! not kept: freeing it on the writer thread (another allocator heap) cost more than all
//! the writer's own work.

use std::sync::Arc;

use vigil_proto::tetragon::{GetEventsResponse, Process, get_events_response::Event as Payload};

use crate::keys;
use crate::query::ProcessRow;

/// Events per compressed batch, and their JSON bytes, at most: the sink's groups are cut at
/// the same bounds, so a full group is one batch as it is.
pub(crate) const BATCH_EVENTS: usize = 512;
pub(crate) const BATCH_BYTES: usize = 256 << 10;

/// A process row, inserted into a slice the first time the slice sees the process: the row
/// the queries read back (its exit time is set by the process's exit event, not here).
pub(crate) type Row = ProcessRow;

impl ProcessRow {
    fn of(p: &Process) -> Self {
        Self {
            exec_id: p.exec_id.clone(),
            parent_exec_id: p.parent_exec_id.clone(),
            pid: p.pid.map(|v| v.value),
            binary: p.binary.clone(),
            arguments: p.arguments.clone(),
            pod: keys::pod(p).map(|(ns, n)| (ns.to_string(), n.to_string())),
            start_ns: keys::timestamp_ns(p.start_time.as_ref()),
            exit_ns: None,
        }
    }

    /// Heap and inline bytes, for the queue's charge and the cache's bound.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.exec_id.len()
            + self.parent_exec_id.len()
            + self.binary.len()
            + self.arguments.len()
            + self.pod.as_ref().map_or(0, |(a, b)| a.len() + b.len())
    }

    /// The row still describes `p`: a process gains its pod once the pod is known, the rest
    /// of a row never changes for an exec id.
    fn describes(&self, p: &Process) -> bool {
        self.exec_id == p.exec_id
            && self.pid == p.pid.map(|v| v.value)
            && self.pod.as_ref().map(|(a, b)| (a.as_str(), b.as_str())) == keys::pod(p)
    }
}

/// What the writer indexes of one event.
pub(crate) struct Meta {
    pub time_ns: i64,
    pub process: Option<Arc<Row>>,
    pub parent: Option<Arc<Row>>,
    /// The policy and its action (policy events only).
    pub policy: Option<(Arc<str>, &'static str)>,
    pub exit: bool,
}

/// Events for the writer, in publishing order.
#[derive(Default)]
pub(crate) struct Group {
    /// The events' JSON lines, each ended by `\n`.
    pub json: Vec<u8>,
    pub metas: Vec<Meta>,
    /// What the queue charged for the group.
    pub charge: u64,
}

/// Rows cached by exec id slot: the same processes come back event after event, and an
/// event then costs the writer two reference counts instead of a dozen strings.
const SLOTS: usize = 256;
/// A larger row (long arguments) is made for each event, not kept: the cache holds at most
/// `SLOTS` times this.
const MAX_CACHED_ROW: usize = 8 << 10;

/// Makes each event's `Meta`, reusing rows and policy names.
pub(crate) struct Indexer {
    rows: Vec<Option<Arc<Row>>>,
    policy: Option<Arc<str>>,
}

impl Default for Indexer {
    fn default() -> Self {
        Self {
            rows: (0..SLOTS).map(|_| None).collect(),
            policy: None,
        }
    }
}

/// FNV-1a of the exec id: a collision only costs a new row.
fn slot_of(exec_id: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in exec_id.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize & (SLOTS - 1)
}

impl Indexer {
    /// The event's `Meta`, and the bytes of rows made for it that no cache holds (charged
    /// to the queue with the event).
    pub fn meta(&mut self, ev: &GetEventsResponse, time_ns: i64) -> (Meta, usize) {
        let parts = vigil_export::event::parts(ev);
        let mut fresh = 0;
        let mut row = |p: Option<&Process>| {
            let p = p.filter(|p| !p.exec_id.is_empty())?;
            let (row, bytes) = self.row(p);
            fresh += bytes;
            Some(row)
        };
        let process = row(parts.process);
        let parent = row(parts.parent);
        let policy = (!parts.policy_name.is_empty()).then(|| {
            let name = match &self.policy {
                Some(last) if **last == *parts.policy_name => Arc::clone(last),
                _ => {
                    let name: Arc<str> = parts.policy_name.into();
                    self.policy = Some(Arc::clone(&name));
                    name
                }
            };
            (name, keys::action(ev))
        });
        let exit = matches!(ev.event, Some(Payload::ProcessExit(_))) && process.is_some();
        let meta = Meta {
            time_ns,
            process,
            parent,
            policy,
            exit,
        };
        (meta, fresh)
    }

    fn row(&mut self, p: &Process) -> (Arc<Row>, usize) {
        let slot = &mut self.rows[slot_of(&p.exec_id)];
        if let Some(row) = slot.as_ref().filter(|r| r.describes(p)) {
            return (Arc::clone(row), 0);
        }
        let row = Arc::new(Row::of(p));
        let bytes = row.bytes();
        if bytes <= MAX_CACHED_ROW {
            *slot = Some(Arc::clone(&row));
            (row, 0)
        } else {
            (row, bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::tetragon::{Pod, ProcessKprobe};

    fn kprobe(exec_id: &str, pod: Option<&str>, policy: &str) -> GetEventsResponse {
        let process = Process {
            exec_id: exec_id.into(),
            parent_exec_id: "parent".into(),
            binary: "/bin/cat".into(),
            pod: pod.map(|name| Pod {
                namespace: "ns".into(),
                name: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        GetEventsResponse {
            event: Some(Payload::ProcessKprobe(ProcessKprobe {
                process: Some(process),
                policy_name: policy.into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn rows_are_shared_while_the_process_is_unchanged_and_remade_when_its_pod_appears() {
        let mut ix = Indexer::default();
        let (a, _) = ix.meta(&kprobe("p1", None, "pol"), 1);
        let (b, _) = ix.meta(&kprobe("p1", None, "pol"), 2);
        let (ra, rb) = (a.process.unwrap(), b.process.unwrap());
        assert!(Arc::ptr_eq(&ra, &rb));
        assert!(Arc::ptr_eq(&a.policy.unwrap().0, &b.policy.unwrap().0));
        let (c, _) = ix.meta(&kprobe("p1", Some("web"), "pol"), 3);
        let rc = c.process.unwrap();
        assert!(!Arc::ptr_eq(&ra, &rc));
        assert_eq!(rc.pod, Some(("ns".into(), "web".into())));
        // No parent in the event: no parent row.
        assert!(c.parent.is_none());
    }

    #[test]
    fn a_row_too_large_to_cache_is_charged_to_its_event() {
        let mut ix = Indexer::default();
        let mut ev = kprobe("p2", None, "");
        if let Some(Payload::ProcessKprobe(k)) = &mut ev.event {
            k.process.as_mut().unwrap().arguments = "x".repeat(MAX_CACHED_ROW);
        }
        let (meta, fresh) = ix.meta(&ev, 1);
        assert!(fresh > MAX_CACHED_ROW);
        assert!(meta.policy.is_none());
        let (_, again) = ix.meta(&ev, 2);
        assert_eq!(again, fresh);
    }
}
