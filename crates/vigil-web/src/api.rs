//! The JSON behind the page, read from the history (blocking: SQLite and zstd; the server
//! runs these on its blocking pool). Every answer is bounded in rows and bytes and says
//! when it was cut.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use serde_json::{Value, json};
use vigil_history::{EventFilter, History, HistoryError, ProcessRow, keys};
use vigil_proto::tetragon::get_events_response::Event;

/// Processes in one view at most (the newest starts first).
pub const MAX_PROCESSES: usize = 2_000;
/// Ancestors looked up beyond the window's processes (for a search's tree context).
const MAX_ANCESTOR_LOOKUPS: usize = 500;
/// Events of the window read to count per process and find enforcement.
pub const MAX_SCANNED_EVENTS: usize = 50_000;
/// Bytes of event JSON read for one view.
const MAX_SCANNED_BYTES: usize = 32 << 20;
/// Enforcement events listed in one view.
pub const MAX_ENFORCEMENTS: usize = 500;
/// Events in a process's details.
pub const MAX_PROCESS_EVENTS: usize = 500;
/// Bytes of JSON in one answer, about (strings are counted, structure estimated).
pub const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Characters of a process's arguments in the view (the details have them whole).
const VIEW_ARGUMENTS: usize = 512;

/// The actions by which a policy acted on the process rather than only reporting.
pub const ENFORCEMENT_ACTIONS: [&str; 4] = [
    "KPROBE_ACTION_SIGKILL",
    "KPROBE_ACTION_OVERRIDE",
    "KPROBE_ACTION_SIGNAL",
    "KPROBE_ACTION_NOTIFYENFORCER",
];

/// What the page asks for: a window (ms since the epoch; None: the history's own bound) and
/// a search text (binary, arguments, pod or policy; case-insensitive substring).
#[derive(Debug, Clone, Default)]
pub struct ViewQuery {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub search: String,
}

fn ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

fn ns(ms: i64) -> i64 {
    ms.saturating_mul(1_000_000)
}

fn cut(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

fn process_json(p: &ProcessRow, arguments_chars: usize) -> Value {
    json!({
        "exec_id": p.exec_id,
        "parent_exec_id": p.parent_exec_id,
        "pid": p.pid,
        "binary": p.binary,
        "arguments": cut(&p.arguments, arguments_chars),
        "pod": p.pod.as_ref().map(|(ns, name)| format!("{ns}/{name}")),
        "start_ms": p.start_ns.map(ms),
        "exit_ms": p.exit_ns.map(ms),
    })
}

/// What the window's events say about one process.
#[derive(Default)]
struct Seen {
    events: u64,
    enforcements: u64,
    policies: BTreeSet<String>,
    exit_signal: Option<String>,
}

/// The function or hook a policy event is about, for the enforcement list.
fn hook_of(ev: &Event) -> &str {
    match ev {
        Event::ProcessKprobe(k) => &k.function_name,
        Event::ProcessTracepoint(t) => &t.event,
        Event::ProcessUprobe(u) => &u.symbol,
        Event::ProcessLsm(l) => &l.function_name,
        _ => "",
    }
}

/// `/api/view`: the processes alive in the window as a forest (parent ids), what their
/// events were, and every enforcement in the window.
pub fn view(dir: &Path, q: &ViewQuery) -> Result<Value, HistoryError> {
    let history = match History::open(dir) {
        Ok(h) => h,
        Err(HistoryError::Empty(_)) => {
            return Ok(json!({"empty": true, "processes": [], "enforcements": []}));
        }
        Err(e) => return Err(e),
    };
    let Some((first, last)) = history.time_range()? else {
        return Ok(json!({"empty": true, "processes": [], "enforcements": []}));
    };
    let since = q.since_ms.map_or(first, ns);
    let until = q.until_ms.map_or(last, ns).max(since);
    let (alive, more_processes) = history.processes_alive(since, until, MAX_PROCESSES)?;

    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut enforcements = Vec::new();
    let (mut scanned, mut scanned_bytes) = (0usize, 0usize);
    let window = EventFilter {
        since_ns: Some(since),
        until_ns: Some(until),
        ..Default::default()
    };
    history.each_event(&window, |e| {
        scanned += 1;
        scanned_bytes += e.line.len();
        if let Some(p) = keys::process(&e.event) {
            let s = seen.entry(p.exec_id.clone()).or_default();
            s.events += 1;
            let policy = keys::policy(&e.event);
            if !policy.is_empty() {
                s.policies.insert(policy.to_string());
            }
            let action = keys::action(&e.event);
            if ENFORCEMENT_ACTIONS.contains(&action) {
                s.enforcements += 1;
                if enforcements.len() < MAX_ENFORCEMENTS {
                    enforcements.push(json!({
                        "time_ms": keys::event_time_ns(&e.event).map(ms),
                        "exec_id": p.exec_id,
                        "pid": p.pid,
                        "binary": p.binary,
                        "policy": policy,
                        "action": action,
                        "hook": e.event.event.as_ref().map_or("", hook_of),
                    }));
                }
            }
            if let Some(Event::ProcessExit(x)) = &e.event.event
                && !x.signal.is_empty()
            {
                s.exit_signal = Some(x.signal.clone());
            }
        }
        scanned < MAX_SCANNED_EVENTS && scanned_bytes < MAX_SCANNED_BYTES
    })?;
    let events_cut = scanned >= MAX_SCANNED_EVENTS || scanned_bytes >= MAX_SCANNED_BYTES;

    let needle = q.search.trim().to_lowercase();
    let matches = |p: &ProcessRow| {
        needle.is_empty()
            || p.binary.to_lowercase().contains(&needle)
            || p.arguments.to_lowercase().contains(&needle)
            || p.pod
                .as_ref()
                .is_some_and(|(ns, name)| format!("{ns}/{name}").to_lowercase().contains(&needle))
            || seen.get(&p.exec_id).is_some_and(|s| {
                s.policies
                    .iter()
                    .any(|x| x.to_lowercase().contains(&needle))
            })
    };
    let by_id: HashMap<&str, &ProcessRow> = alive.iter().map(|p| (p.exec_id.as_str(), p)).collect();
    let mut shown: Vec<ProcessRow> = Vec::new();
    let mut included: HashSet<String> = HashSet::new();
    let mut matched: HashSet<String> = HashSet::new();
    let mut lookups = 0;
    for p in alive.iter().filter(|p| matches(p)) {
        matched.insert(p.exec_id.clone());
        if !included.insert(p.exec_id.clone()) {
            continue;
        }
        shown.push(p.clone());
        if needle.is_empty() {
            continue;
        }
        // A match is shown with its ancestors, so that the tree says where it ran.
        let mut parent = p.parent_exec_id.clone();
        while !parent.is_empty() && !included.contains(&parent) {
            let row = match by_id.get(parent.as_str()) {
                Some(r) => Some((*r).clone()),
                None if lookups < MAX_ANCESTOR_LOOKUPS => {
                    lookups += 1;
                    history.process(&parent)?
                }
                None => None,
            };
            let Some(row) = row else { break };
            included.insert(row.exec_id.clone());
            parent = row.parent_exec_id.clone();
            shown.push(row);
        }
    }

    let mut bytes = 0usize;
    let mut answer_cut = false;
    let mut processes = Vec::with_capacity(shown.len());
    for p in &shown {
        let mut v = process_json(p, VIEW_ARGUMENTS);
        let s = seen.get(&p.exec_id);
        v["events"] = json!(s.map_or(0, |s| s.events));
        v["enforcements"] = json!(s.map_or(0, |s| s.enforcements));
        v["policies"] = json!(
            s.map(|s| s.policies.iter().collect::<Vec<_>>())
                .unwrap_or_default()
        );
        v["exit_signal"] = json!(s.and_then(|s| s.exit_signal.as_deref()));
        v["match"] = json!(!needle.is_empty() && matched.contains(&p.exec_id));
        bytes += 256 + p.binary.len() + p.arguments.len().min(VIEW_ARGUMENTS * 4);
        if bytes > MAX_ANSWER_BYTES {
            answer_cut = true;
            break;
        }
        processes.push(v);
    }
    Ok(json!({
        "empty": false,
        "first_ms": ms(first),
        "last_ms": ms(last),
        "since_ms": ms(since),
        "until_ms": ms(until),
        "search": q.search,
        "processes": processes,
        "enforcements": enforcements,
        "scanned_events": scanned,
        "truncated": more_processes || events_cut || answer_cut || enforcements.len() >= MAX_ENFORCEMENTS,
        "skipped_slices": history.skipped,
    }))
}

/// `/api/process`: one process, whole, and its events (the recorded JSON, parsed).
pub fn process(dir: &Path, exec_id: &str) -> Result<Option<Value>, HistoryError> {
    let history = History::open(dir)?;
    let Some(row) = history.process(exec_id)? else {
        return Ok(None);
    };
    let mut events = Vec::new();
    let mut bytes = 0usize;
    let mut cut_short = false;
    let filter = EventFilter {
        exec_ids: Some(HashSet::from([exec_id.to_string()])),
        ..Default::default()
    };
    history.each_event(&filter, |e| {
        if events.len() >= MAX_PROCESS_EVENTS || bytes + e.line.len() > MAX_ANSWER_BYTES {
            cut_short = true;
            return false;
        }
        bytes += e.line.len();
        events.push(serde_json::from_str::<Value>(&e.line).unwrap_or(Value::Null));
        true
    })?;
    let children = history.children(exec_id)?;
    Ok(Some(json!({
        "process": process_json(&row, usize::MAX),
        "children": children.len(),
        "events": events,
        "truncated": cut_short,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("ééé", 2), "éé…");
    }

    #[test]
    fn an_empty_history_is_an_empty_view_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let v = view(dir.path(), &ViewQuery::default()).unwrap();
        assert_eq!(v["empty"], true);
        assert!(process(dir.path(), "x").is_err());
    }
}
