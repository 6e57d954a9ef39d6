//! `vigil tracingpolicy backtest`: what a policy would have done to the calls the flight
//! recorder holds. The policy is compiled for this kernel exactly as the agent would, its
//! selector tables checked by the runtime's table builder (a policy the agent would refuse is
//! refused here), then run over the recorded calls of each hook by the evaluator of
//! `vigil_policy::backtest`. What the history cannot answer is named, per selector.

mod events;
mod report;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::Value;
use vigil_history::{EventFilter, History};
use vigil_policy::backtest::{Host, Outcome, evaluate};
use vigil_policy::compile::{HookPlan, Plan, compile};
use vigil_policy::types::NamespaceKind;

use report::{HookReport, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The TracingPolicy to evaluate.
    pub policy: PathBuf,
    /// The agent's --history-dir.
    #[arg(long, default_value = crate::history_cmd::DEFAULT_DIR)]
    pub history_dir: PathBuf,
    /// Events from this time: a duration ago (30s, 10m, 24h) or RFC 3339.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Events until this time (same forms as --since); default: now.
    #[arg(long)]
    pub until: Option<String>,
    /// A policy that was loaded while recording (repeatable): its argument readers say which
    /// parameter each recorded argument is. The evaluated policy's own events need none.
    #[arg(long = "recorded-with")]
    pub recorded_with: Vec<PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
}

pub fn run(args: &BacktestArgs) -> ExitCode {
    match backtest(args) {
        Ok(report) => {
            let text = match args.output {
                Output::Json => format!("{:#}\n", report.to_json()),
                Output::Text => report.to_text(),
            };
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vigil tracingpolicy backtest: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses and compiles a policy for this kernel; refuses what the agent would refuse.
fn plan_of(path: &Path) -> Result<Plan> {
    let source =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let policy = vigil_policy::parse_policy(&source, &path.display().to_string())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan = compile(&policy, &crate::policy_cmd::detect_capabilities());
    if let Some(r) = plan.refusals.first() {
        bail!(
            "{}: the policy would not load on this kernel: {}: {}",
            path.display(),
            r.path,
            r.reason
        );
    }
    let resolve = |p: &str| file_identity(Path::new(p));
    vigil_runtime::build(&plan, &mut vigil_runtime::tables::Ids::default(), &resolve).map_err(
        |e| anyhow::anyhow!("{}: the agent would refuse the policy: {e}", path.display()),
    )?;
    Ok(plan)
}

fn file_identity(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| (m.ino(), m.dev()))
}

/// How long after the range a loss report of the recorder is looked for.
const LOSS_REPORT_WAIT_NS: i64 = 60_000_000_000;

/// This machine: binaries compare by inode and device, as the kernel's matchBinaries.
struct ThisHost;

impl Host for ThisHost {
    fn same_binary(&self, policy_value: &str, recorded: &str) -> Option<bool> {
        if policy_value == recorded {
            return Some(true);
        }
        let want = file_identity(Path::new(policy_value));
        let have = file_identity(Path::new(recorded))?;
        // A listed file that does not exist was left out of the kernel's set.
        Some(want == Some(have))
    }

    fn host_namespace(&self, kind: NamespaceKind) -> Option<u64> {
        let link = std::fs::read_link(format!(
            "/proc/1/ns/{}",
            vigil_runtime::tables::ns_proc_name(kind)
        ))
        .ok()?;
        vigil_runtime::tables::parse_ns_link(&link.to_string_lossy()).map(u64::from)
    }

    fn syscall_number(&self, name: &str) -> Option<i64> {
        vigil_runtime::hooks::x64_number(name).map(i64::from)
    }
}

fn backtest(args: &BacktestArgs) -> Result<Report> {
    let plan = plan_of(&args.policy)?;
    let mut recorders: HashMap<String, Plan> = HashMap::new();
    for path in &args.recorded_with {
        let p = plan_of(path)?;
        recorders.insert(p.name.clone(), p);
    }
    recorders.insert(plan.name.clone(), plan.clone());
    let now = SystemTime::now();
    // Only `since` goes to the query: loss reports published after `until` may count losses
    // of the range (below).
    let filter = EventFilter {
        since_ns: Some(crate::history_cmd::parse_time("since", &args.since, now)?),
        ..EventFilter::default()
    };
    let until_ns = args
        .until
        .as_deref()
        .map(|u| crate::history_cmd::parse_time("until", u, now))
        .transpose()?;
    let history = History::open(&args.history_dir)?;
    for s in &history.skipped {
        eprintln!("vigil tracingpolicy backtest: warning: skipped {s}");
    }
    let mut report = Report::new(&plan, &args.history_dir, &args.since);
    // Per hook, per recording policy: the evaluation of its events, made as they stream by
    // (memory bounded by the report, not by the history). One recording is reported per
    // hook, so a call two policies recorded is counted once.
    let mut by_hook: Vec<BTreeMap<String, HookReport>> = vec![BTreeMap::new(); plan.hooks.len()];
    let mut parse_errors = 0u64;
    let mut recorder_lost = 0u64;
    history.each_event(&filter, |stored| {
        let time = vigil_history::keys::event_time_ns(&stored.event).unwrap_or(i64::MIN);
        let after = until_ns.is_some_and(|u| time > u);
        if until_ns.is_some_and(|u| time > u.saturating_add(LOSS_REPORT_WAIT_NS)) {
            return false;
        }
        let Ok(event) = serde_json::from_str::<Value>(&stored.line) else {
            parse_errors += u64::from(!after);
            return true;
        };
        // A loss report counts the recorder's losses since the previous one: the first
        // report after the range may still count calls of the range.
        if let Some(n) = events::recorder_loss(&event) {
            recorder_lost += n;
            return !after;
        }
        if after {
            return true;
        }
        let Some(f) = events::fired(&event) else {
            return true;
        };
        for (i, hook) in plan.hooks.iter().enumerate() {
            if !events::is_call_of(hook, &f) {
                continue;
            }
            let r = by_hook[i]
                .entry(f.policy.to_string())
                .or_insert_with(|| HookReport::new(hook));
            let recorder = recorders.get(f.policy).and_then(|p| recorder_hook(p, hook));
            let call = events::call_of(&f, recorder);
            r.add(&call, evaluate(hook, &call, &ThisHost));
        }
        true
    })?;
    report.unparsed = parse_errors;
    report.recorder_lost = recorder_lost;
    for (hook, recorded) in plan.hooks.iter().zip(by_hook) {
        report
            .hooks
            .push(hook_report(hook, &plan.name, recorded, &recorders));
    }
    Ok(report)
}

/// The recording used for a hook: the evaluated policy itself if it recorded the hook,
/// else a given recorder that posted every call, else any given one, else the busiest.
fn pick_recorder(
    hook: &HookPlan,
    own: &str,
    recorded: &BTreeMap<String, HookReport>,
    recorders: &HashMap<String, Plan>,
) -> Option<String> {
    let complete = |name: &str| {
        recorders
            .get(name)
            .and_then(|p| recorder_hook(p, hook))
            .is_some_and(posts_every_call)
    };
    let names = || recorded.keys().map(String::as_str);
    names()
        .find(|n| *n == own)
        .or_else(|| names().find(|n| complete(n)))
        .or_else(|| names().find(|n| recorders.contains_key(*n)))
        .or_else(|| {
            recorded
                .iter()
                .max_by_key(|(_, r)| r.calls())
                .map(|(n, _)| n.as_str())
        })
        .map(str::to_string)
}

/// The recording policy's hook with the same targets.
fn recorder_hook<'a>(recorder: &'a Plan, hook: &HookPlan) -> Option<&'a HookPlan> {
    recorder
        .hooks
        .iter()
        .find(|h| h.mechanism == hook.mechanism && h.targets == hook.targets)
        .or_else(|| {
            recorder
                .hooks
                .iter()
                .find(|h| h.targets.iter().any(|t| hook.targets.contains(t)))
        })
}

/// Whether a hook posts every call: no selector, or a first selector without filters that
/// posts (a rate limit or NoPost leaves calls out).
fn posts_every_call(hook: &HookPlan) -> bool {
    match hook.selectors.first() {
        None => true,
        Some(t) => {
            t.filters.is_empty()
                && t.actions.iter().all(|a| {
                    a.rate_limit.is_none() && a.action != vigil_policy::types::Action::NoPost
                })
        }
    }
}

fn hook_report(
    hook: &HookPlan,
    own: &str,
    mut recorded: BTreeMap<String, HookReport>,
    recorders: &HashMap<String, Plan>,
) -> HookReport {
    let recorded_by: Vec<(String, u64)> = recorded
        .iter()
        .map(|(n, r)| (n.clone(), r.calls()))
        .collect();
    let picked = pick_recorder(hook, own, &recorded, recorders);
    let Some(mut r) = picked.as_ref().and_then(|name| recorded.remove(name)) else {
        let mut r = HookReport::new(hook);
        r.coverage = Some(
            "no call of this hook was recorded in the time range: nothing can be judged \
             (record with a policy that hooks it, e.g. this one in monitor mode)"
                .into(),
        );
        return r;
    };
    let name = picked.unwrap_or_default();
    let recorder = recorders.get(&name).and_then(|p| recorder_hook(p, hook));
    r.coverage = Some(match recorder {
        None => format!(
            "recorded by policy {name}, whose file was not given (--recorded-with): which calls \
             it left out, and which parameter each recorded argument is, are unknown"
        ),
        Some(_) if name == own => format!(
            "recorded by this policy ({name}): the calls it posted; calls its selectors did not \
             post were not recorded"
        ),
        Some(h) if posts_every_call(h) => {
            format!("recorded by policy {name}, which posts every call of the hook")
        }
        Some(_) => format!(
            "recorded by policy {name}, whose selectors filter: only the calls it posted were \
             recorded"
        ),
    });
    r.used = Some(name);
    r.recorded_by = recorded_by;
    r
}

impl From<Outcome> for report::Tally {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Taken(i) => report::Tally::Taken(i),
            Outcome::Untouched => report::Tally::Untouched,
            Outcome::CannotJudge { at, reason } => report::Tally::CannotJudge(at, reason),
        }
    }
}
