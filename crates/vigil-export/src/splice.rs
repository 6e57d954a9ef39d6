//! The JSON of an event's `process` and `parent`, rendered once and reused.
//!
//! Most of an event line is its two processes (binary, arguments, exec ids, start time,
//! argv), and the same processes come back event after event: a process opening files, a
//! shell starting children. Escaping and formatting them again for every line was the
//! largest part of the export's cost per event, so the sink keeps the rendered JSON of the
//! processes it wrote last and reuses it while the process is equal, field for field, to
//! the one rendered (a later pod or a redaction is a different process: rendered anew).
//! The line is the same, byte for byte, as serde_json of the whole event: `process` and
//! `parent` are the first two fields of every event payload (tetragon.proto), so the line is
//! the payload's opening, the two processes, then the rest as pbjson writes it.

use vigil_proto::tetragon::{GetEventsResponse, Process, get_events_response::Event};

/// Slots of the cache, indexed by a hash of the exec id (a power of two).
const SLOTS: usize = 256;
/// A process whose JSON is longer is rendered every time, not kept.
const MAX_KEPT_JSON: usize = 8 << 10;
/// The bytes all kept processes may hold (their JSON and, estimated, their message).
const BUDGET_BYTES: usize = 2 << 20;

struct Slot {
    process: Process,
    json: Box<[u8]>,
    bytes: usize,
}

/// Rendered processes, bounded in bytes.
pub struct ProcessJson {
    slots: Vec<Option<Slot>>,
    bytes: usize,
    pub hits: u64,
    pub misses: u64,
    /// Reused for the event without its processes.
    rest: Vec<u8>,
}

impl Default for ProcessJson {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| None).collect(),
            bytes: 0,
            hits: 0,
            misses: 0,
            rest: Vec::with_capacity(4096),
        }
    }
}

/// FNV-1a: the exec id is short and not chosen to collide with another's slot for gain
/// (a collision only costs a rendering).
fn slot_of(exec_id: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in exec_id.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize & (SLOTS - 1)
}

/// The payload's `process` and `parent` (`None` for events that have none).
fn processes_of(
    ev: &mut GetEventsResponse,
) -> Option<(&mut Option<Process>, Option<&mut Option<Process>>)> {
    Some(match ev.event.as_mut()? {
        Event::ProcessExec(x) => (&mut x.process, Some(&mut x.parent)),
        Event::ProcessExit(x) => (&mut x.process, Some(&mut x.parent)),
        Event::ProcessKprobe(x) => (&mut x.process, Some(&mut x.parent)),
        Event::ProcessTracepoint(x) => (&mut x.process, Some(&mut x.parent)),
        Event::ProcessUprobe(x) => (&mut x.process, Some(&mut x.parent)),
        Event::ProcessLsm(x) => (&mut x.process, Some(&mut x.parent)),
        Event::ProcessUsdt(x) => (&mut x.process, Some(&mut x.parent)),
        Event::ProcessLoader(x) => (&mut x.process, None),
        _ => return None,
    })
}

impl ProcessJson {
    /// Appends the JSON of `p` to `out`, from the cache when `p` was rendered last in its slot.
    fn render(&mut self, p: &Process, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let i = slot_of(&p.exec_id);
        if let Some(s) = &self.slots[i]
            && s.process == *p
        {
            self.hits += 1;
            out.extend_from_slice(&s.json);
            return Ok(());
        }
        self.misses += 1;
        let start = out.len();
        serde_json::to_writer(&mut *out, p)?;
        let json = &out[start..];
        let old = self.slots[i].as_ref().map_or(0, |s| s.bytes);
        // The message's own size is about its JSON's (the same strings, less quoting).
        let bytes = json.len() * 2 + std::mem::size_of::<Slot>();
        if json.len() <= MAX_KEPT_JSON && self.bytes - old + bytes <= BUDGET_BYTES {
            self.bytes = self.bytes - old + bytes;
            self.slots[i] = Some(Slot {
                process: p.clone(),
                json: json.into(),
                bytes,
            });
        }
        Ok(())
    }

    /// Writes `ev` as one JSON object into `out` (cleared first), equal to
    /// `serde_json::to_writer(out, ev)`. `ev` is left as it was.
    pub fn write_event(
        &mut self,
        ev: &mut GetEventsResponse,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<()> {
        out.clear();
        let key = crate::event::payload_key(ev);
        let taken = processes_of(ev)
            .map(|(process, parent)| (process.take(), parent.and_then(Option::take)));
        let (Some(key), Some((process, parent))) = (key, taken) else {
            return serde_json::to_writer(out, ev);
        };
        let mut rest = std::mem::take(&mut self.rest);
        rest.clear();
        let written = serde_json::to_writer(&mut rest, &*ev);
        // Put back before anything can fail: the event is shared with the other sinks.
        if let Some((p, q)) = processes_of(ev) {
            *p = process;
            if let Some(q) = q {
                *q = parent;
            }
        }
        let result = written.and_then(|()| self.splice(ev, key, &rest, out));
        self.rest = rest;
        result
    }

    /// `rest` is the event without its processes: `{"<key>":{` then the payload's other
    /// fields. The processes go right after that opening.
    fn splice(
        &mut self,
        ev: &mut GetEventsResponse,
        key: &str,
        rest: &[u8],
        out: &mut Vec<u8>,
    ) -> serde_json::Result<()> {
        let open_len = key.len() + 5;
        let opening_ok = rest.len() > open_len
            && rest.starts_with(b"{\"")
            && &rest[2..2 + key.len()] == key.as_bytes()
            && &rest[2 + key.len()..open_len] == b"\":{";
        let Some((process, parent)) = processes_of(ev) else {
            return serde_json::to_writer(out, ev);
        };
        if !opening_ok {
            // Not the layout this relies on: the plain rendering.
            return serde_json::to_writer(out, &*ev);
        }
        let (process, parent) = (process.as_ref(), parent.and_then(|q| q.as_ref()));
        out.extend_from_slice(&rest[..open_len]);
        let mut first = true;
        for (name, p) in [("process", process), ("parent", parent)] {
            let Some(p) = p else { continue };
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(b"\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            self.render(p, out)?;
        }
        if !first && rest[open_len] != b'}' {
            out.push(b',');
        }
        out.extend_from_slice(&rest[open_len..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::tetragon::{
        KprobeArgument, Pod, ProcessExec, ProcessExit, ProcessKprobe, ProcessLoader,
        kprobe_argument,
    };

    fn process(n: u32, args: &str) -> Process {
        Process {
            exec_id: format!("exec-{n}"),
            pid: Some(vigil_proto::pbjson_types::UInt32Value { value: n }),
            binary: "/usr/bin/cat".into(),
            arguments: args.into(),
            cwd: "/tmp/\"quoted\"\n\u{1b}[2J".into(),
            flags: "execve clone".into(),
            argv: vec![b"cat".to_vec(), vec![0xff, 0]],
            ..Default::default()
        }
    }

    fn events() -> Vec<GetEventsResponse> {
        let kprobe =
            |p: Option<Process>, q: Option<Process>, args: Vec<KprobeArgument>| GetEventsResponse {
                event: Some(Event::ProcessKprobe(ProcessKprobe {
                    process: p,
                    parent: q,
                    function_name: "__x64_sys_openat".into(),
                    args,
                    policy_name: "p".into(),
                    ..Default::default()
                })),
                node_name: "node".into(),
                time: Some(std::time::SystemTime::UNIX_EPOCH.into()),
                ..Default::default()
            };
        let arg = KprobeArgument {
            arg: Some(kprobe_argument::Arg::StringArg("/etc/\u{7f}passwd".into())),
            label: "path".into(),
        };
        let mut podded = process(1, "a");
        podded.pod = Some(Pod {
            namespace: "ns".into(),
            name: "pod".into(),
            ..Default::default()
        });
        vec![
            kprobe(
                Some(process(1, "a")),
                Some(process(2, "b")),
                vec![arg.clone()],
            ),
            kprobe(
                Some(process(1, "a")),
                Some(process(2, "b")),
                vec![arg.clone()],
            ),
            // The same exec id, now with a pod: rendered anew.
            kprobe(Some(podded), Some(process(2, "b")), vec![]),
            kprobe(Some(process(1, "a")), None, vec![]),
            kprobe(None, Some(process(2, "b")), vec![arg]),
            kprobe(None, None, vec![]),
            GetEventsResponse {
                event: Some(Event::ProcessExec(ProcessExec {
                    process: Some(process(3, "c")),
                    parent: Some(process(1, "a")),
                    ancestors: vec![process(2, "b")],
                })),
                ..Default::default()
            },
            GetEventsResponse {
                event: Some(Event::ProcessExec(ProcessExec {
                    process: Some(process(3, "c")),
                    ..Default::default()
                })),
                ..Default::default()
            },
            GetEventsResponse {
                event: Some(Event::ProcessExit(ProcessExit {
                    process: Some(process(3, "c")),
                    parent: Some(process(1, "a")),
                    signal: "SIGKILL".into(),
                    ..Default::default()
                })),
                node_name: "n".into(),
                ..Default::default()
            },
            GetEventsResponse {
                event: Some(Event::ProcessLoader(ProcessLoader {
                    process: Some(process(4, "d")),
                    path: "/lib/x.so".into(),
                    ..Default::default()
                })),
                ..Default::default()
            },
            GetEventsResponse {
                event: Some(Event::ProcessExec(ProcessExec::default())),
                ..Default::default()
            },
            GetEventsResponse::default(),
        ]
    }

    #[test]
    fn spliced_lines_equal_the_plain_rendering_and_leave_the_event_alone() {
        let mut cache = ProcessJson::default();
        let mut out = Vec::new();
        for round in 0..2 {
            for (i, mut ev) in events().into_iter().enumerate() {
                let before = ev.clone();
                cache.write_event(&mut ev, &mut out).unwrap();
                let plain = serde_json::to_vec(&before).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&plain),
                    "round {round}, event {i}"
                );
                assert_eq!(ev, before, "event {i} changed");
            }
        }
        assert!(
            cache.hits > 0 && cache.misses > 0,
            "{} {}",
            cache.hits,
            cache.misses
        );
    }

    #[test]
    fn the_cache_stays_within_its_byte_budget() {
        let mut cache = ProcessJson::default();
        let mut out = Vec::new();
        for n in 0..5_000 {
            let mut ev = GetEventsResponse {
                event: Some(Event::ProcessExit(ProcessExit {
                    process: Some(process(n, &"x".repeat((n as usize * 37) % 9_000))),
                    ..Default::default()
                })),
                ..Default::default()
            };
            cache.write_event(&mut ev, &mut out).unwrap();
            assert!(cache.bytes <= BUDGET_BYTES, "{} bytes kept", cache.bytes);
        }
        let counted: usize = cache.slots.iter().flatten().map(|s| s.bytes).sum();
        assert_eq!(counted, cache.bytes);
    }
}
