//! `vigil history`: queries over the flight recorder's slices (`--history-dir` of the
//! agent), read-only, while the agent writes or after it stopped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use vigil_api::compact::{Colors, escape, render};
use vigil_history::{EventFilter, History, ProcessRow, StoredEvent, keys};

/// The agent's recommended --history-dir (docs/guides/flight-recorder.md).
pub const DEFAULT_DIR: &str = "/var/lib/vigil/history";

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// A process's tree (ancestors, siblings, descendants) with every event of each.
    Tree(TreeArgs),
    /// Recorded events, filtered by time, binary, pod, policy, action, type.
    Events(EventsArgs),
    /// The web explorer's URL with its token (the agent's --web-address), from the token
    /// file in the history directory.
    WebUrl(WebUrlArgs),
}

#[derive(Debug, Args)]
pub struct WebUrlArgs {
    /// The agent's --history-dir.
    #[arg(long, default_value = DEFAULT_DIR)]
    pub history_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One compact line per event (as `getevents -o compact`).
    Text,
    /// The recorded JSON lines, verbatim.
    Json,
    /// Processes as a tree, each with its events below it.
    Tree,
}

#[derive(Debug, Args)]
pub struct Common {
    /// The agent's --history-dir.
    #[arg(long, default_value = DEFAULT_DIR)]
    pub history_dir: PathBuf,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct TreeArgs {
    /// The process's exec id.
    #[arg(long, required_unless_present = "pid", conflicts_with = "pid")]
    pub exec_id: Option<String>,
    /// The newest recorded process with this pid.
    #[arg(long)]
    pub pid: Option<u32>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// From this time: a duration ago (30s, 10m, 1h) or RFC 3339 (2026-12-07T20:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Until this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// The event's process binary (full path).
    #[arg(long)]
    pub binary: Option<String>,
    /// The event's pod, namespace/name.
    #[arg(long)]
    pub pod: Option<String>,
    /// The policy that produced the event.
    #[arg(long)]
    pub policy: Option<String>,
    /// The policy's action: post, sigkill, override... (or KPROBE_ACTION_*).
    #[arg(long)]
    pub action: Option<String>,
    /// The event type: exec, exit, kprobe... (or PROCESS_*).
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// At most this many events (the oldest first).
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(cmd: HistoryCommand) -> ExitCode {
    match query(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil history: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn open(common: &Common) -> Result<History> {
    let h = History::open(&common.history_dir)?;
    for s in &h.skipped {
        eprintln!("vigil history: warning: skipped {s}");
    }
    Ok(h)
}

fn query(cmd: HistoryCommand) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cmd {
        HistoryCommand::WebUrl(a) => {
            writeln!(out, "{}", vigil_web::read_url(&a.history_dir)?)?;
        }
        HistoryCommand::Tree(a) => {
            let h = open(&a.common)?;
            let exec_id = match (&a.exec_id, a.pid) {
                (Some(id), _) => id.clone(),
                (None, Some(pid)) => {
                    h.newest_with_pid(pid)?
                        .ok_or(vigil_history::HistoryError::UnknownPid(pid))?
                        .exec_id
                }
                (None, None) => bail!("give --exec-id or --pid"),
            };
            let tree = h.tree(&exec_id)?;
            match a.common.output {
                Format::Json => write_json(&mut out, &tree.events)?,
                Format::Text => write_text(&mut out, &tree.events)?,
                Format::Tree => write_tree(&mut out, &tree.processes, &tree.events, &tree.root)?,
            }
        }
        HistoryCommand::Events(a) => {
            let h = open(&a.common)?;
            let filter = filter_of(&a, SystemTime::now())?;
            let limit = a.limit.unwrap_or(usize::MAX);
            if a.common.output == Format::Tree {
                let mut events = Vec::new();
                h.each_event(&filter, |e| {
                    events.push(e);
                    events.len() < limit
                })?;
                let mut processes = BTreeMap::new();
                for id in events.iter().filter_map(|e| keys::process(&e.event)) {
                    if !processes.contains_key(&id.exec_id)
                        && let Some(p) = h.process(&id.exec_id)?
                    {
                        processes.insert(p.exec_id.clone(), p);
                    }
                }
                write_tree(&mut out, &processes, &events, "")?;
            } else {
                let (mut n, mut result) = (0, Ok(()));
                h.each_event(&filter, |e| {
                    n += 1;
                    result = match a.common.output {
                        Format::Json => writeln!(out, "{}", e.line),
                        _ => writeln!(out, "{}", compact(&e)),
                    };
                    result.is_ok() && n < limit
                })?;
                result?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// A time given as a duration ago or RFC 3339, in ns since the epoch.
pub(crate) fn parse_time(flag: &str, value: &str, now: SystemTime) -> Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return t
            .timestamp_nanos_opt()
            .with_context(|| format!("--{flag}: {value:?} is out of range"));
    }
    let ago = crate::agent::options::parse_duration(flag, value).with_context(|| {
        format!("--{flag}: {value:?} is neither a duration ago (30s, 10m, 1h) nor RFC 3339")
    })?;
    let at = now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as i64)
}

fn filter_of(a: &EventsArgs, now: SystemTime) -> Result<EventFilter> {
    let pod = match &a.pod {
        None => None,
        Some(p) => match p.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Some((ns.to_string(), name.to_string()))
            }
            _ => bail!("--pod {p:?}: expected namespace/name"),
        },
    };
    let f = EventFilter {
        since_ns: a
            .since
            .as_deref()
            .map(|s| parse_time("since", s, now))
            .transpose()?,
        until_ns: a
            .until
            .as_deref()
            .map(|s| parse_time("until", s, now))
            .transpose()?,
        binary: a.binary.clone(),
        pod,
        policy: a.policy.clone(),
        action: a.action.as_deref().map(keys::normalise_action),
        event_type: a.event_type.as_deref().map(keys::normalise_type),
        exec_ids: None,
    };
    if let (Some(s), Some(u)) = (f.since_ns, f.until_ns)
        && s > u
    {
        bail!("--since is after --until: nothing can match");
    }
    Ok(f)
}

fn write_json(out: &mut impl Write, events: &[StoredEvent]) -> Result<()> {
    for e in events {
        writeln!(out, "{}", e.line)?;
    }
    Ok(())
}

fn compact(e: &StoredEvent) -> String {
    render(&e.event, Colors::new(false), true)
        .unwrap_or_else(|| format!("{} {}", keys::type_name(&e.event), escape(&e.line)))
}

fn write_text(out: &mut impl Write, events: &[StoredEvent]) -> Result<()> {
    for e in events {
        writeln!(out, "{}", compact(e))?;
    }
    Ok(())
}

fn describe(p: &ProcessRow, root: &str) -> String {
    let mut s = format!(
        "{}{}",
        if p.exec_id == root { "* " } else { "" },
        escape(&p.binary)
    );
    if !p.arguments.is_empty() {
        s.push(' ');
        s.push_str(&escape(&p.arguments));
    }
    if let Some(pid) = p.pid {
        s.push_str(&format!(" pid={pid}"));
    }
    if let Some((ns, name)) = &p.pod {
        s.push_str(&format!(" pod={}/{}", escape(ns), escape(name)));
    }
    s.push_str(&format!(" exec_id={}", escape(&p.exec_id)));
    if p.exit_ns.is_some() {
        s.push_str(" (exited)");
    }
    s
}

/// Processes indented under their parents (among those given), each followed by its events.
fn write_tree(
    out: &mut impl Write,
    processes: &BTreeMap<String, ProcessRow>,
    events: &[StoredEvent],
    root: &str,
) -> Result<()> {
    let mut by_process: HashMap<&str, Vec<&StoredEvent>> = HashMap::new();
    for e in events {
        let id = keys::process(&e.event).map_or("", |p| p.exec_id.as_str());
        by_process.entry(id).or_default().push(e);
    }
    let mut children: HashMap<&str, Vec<&ProcessRow>> = HashMap::new();
    let mut tops = Vec::new();
    for p in processes.values() {
        if processes.contains_key(&p.parent_exec_id) && p.parent_exec_id != p.exec_id {
            children
                .entry(p.parent_exec_id.as_str())
                .or_default()
                .push(p);
        } else {
            tops.push(p);
        }
    }
    let order = |v: &mut Vec<&ProcessRow>| v.sort_by_key(|p| (p.start_ns, p.exec_id.clone()));
    order(&mut tops);
    for v in children.values_mut() {
        order(v);
    }
    let mut stack: Vec<(&ProcessRow, usize)> = tops.into_iter().rev().map(|p| (p, 0)).collect();
    let mut printed = HashSet::new();
    while let Some((p, depth)) = stack.pop() {
        if !printed.insert(p.exec_id.as_str()) {
            continue;
        }
        let pad = "  ".repeat(depth);
        writeln!(out, "{pad}{}", describe(p, root))?;
        for e in by_process.get(p.exec_id.as_str()).into_iter().flatten() {
            writeln!(out, "{pad}  - {}", compact(e))?;
        }
        for c in children.get(p.exec_id.as_str()).into_iter().flatten().rev() {
            stack.push((c, depth + 1));
        }
    }
    // Events whose process has no row (events_lost, ...) last.
    for (id, evs) in &by_process {
        if !processes.contains_key(*id) {
            for e in evs {
                writeln!(out, "- {}", compact(e))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(since: Option<&str>, pod: Option<&str>) -> EventsArgs {
        EventsArgs {
            since: since.map(Into::into),
            until: None,
            binary: None,
            pod: pod.map(Into::into),
            policy: None,
            action: Some("sigkill".into()),
            event_type: Some("exec".into()),
            limit: None,
            common: Common {
                history_dir: DEFAULT_DIR.into(),
                output: Format::Text,
            },
        }
    }

    #[test]
    fn times_are_durations_ago_or_rfc3339() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let f = filter_of(&args(Some("1h"), Some("ns/web")), now).unwrap();
        assert_eq!(f.since_ns, Some(6_400 * 1_000_000_000));
        assert_eq!(f.pod, Some(("ns".into(), "web".into())));
        assert_eq!(f.action.as_deref(), Some("KPROBE_ACTION_SIGKILL"));
        assert_eq!(f.event_type.as_deref(), Some("PROCESS_EXEC"));
        let f = filter_of(&args(Some("1970-01-01T00:00:01Z"), None), now).unwrap();
        assert_eq!(f.since_ns, Some(1_000_000_000));
    }

    #[test]
    fn bad_values_name_the_flag() {
        let now = SystemTime::now();
        let e = filter_of(&args(Some("yesterday"), None), now).unwrap_err();
        assert!(format!("{e:#}").contains("--since"), "{e:#}");
        let e = filter_of(&args(None, Some("web")), now).unwrap_err();
        assert!(format!("{e:#}").contains("namespace/name"), "{e:#}");
    }
}
