//! The backtest's report: per hook, which recording was used and what it covers; per
//! selector, the calls it would have taken (posted, killed, overridden) by process, and the
//! calls it could not judge, by reason.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use serde_json::{Value, json};
use vigil_policy::backtest::{Effects, RecordedCall};
use vigil_policy::compile::{HookPlan, Plan};
use vigil_policy::state::PolicyMode;

pub enum Tally {
    Taken(usize),
    Untouched,
    CannotJudge(usize, String),
}

/// A process, as the report groups calls: (binary, pid, exec_id).
type ProcessKey = (String, u32, String);

/// Processes listed per selector; the calls of further ones are counted together.
const MAX_PROCESSES: usize = 10_000;

#[derive(Debug, Default, Clone)]
pub struct SelectorReport {
    pub label: Option<String>,
    pub effects: Effects,
    pub taken: BTreeMap<ProcessKey, u64>,
    /// Calls taken from processes past [`MAX_PROCESSES`].
    pub taken_elsewhere: u64,
    pub cannot_judge: BTreeMap<String, u64>,
}

impl SelectorReport {
    fn taken_count(&self) -> u64 {
        self.taken.values().sum::<u64>() + self.taken_elsewhere
    }
}

#[derive(Debug, Clone)]
pub struct HookReport {
    pub path: String,
    pub targets: Vec<String>,
    /// Policies whose events of this hook the history holds, with their counts.
    pub recorded_by: Vec<(String, u64)>,
    /// The recording used.
    pub used: Option<String>,
    pub coverage: Option<String>,
    pub selectors: Vec<SelectorReport>,
    pub untouched: u64,
}

impl HookReport {
    pub fn new(hook: &HookPlan) -> Self {
        let selectors = if hook.selectors.is_empty() {
            vec![SelectorReport {
                effects: Effects::of(&[]),
                ..SelectorReport::default()
            }]
        } else {
            hook.selectors
                .iter()
                .map(|t| SelectorReport {
                    label: t.label.clone(),
                    effects: Effects::of(&t.actions),
                    ..SelectorReport::default()
                })
                .collect()
        };
        HookReport {
            path: hook.path.clone(),
            targets: hook.targets.clone(),
            recorded_by: Vec::new(),
            used: None,
            coverage: None,
            selectors,
            untouched: 0,
        }
    }

    /// Every call counted, judged or not.
    pub fn calls(&self) -> u64 {
        self.untouched
            + self
                .selectors
                .iter()
                .map(|s| s.taken_count() + s.cannot_judge.values().sum::<u64>())
                .sum::<u64>()
    }

    pub fn add(&mut self, call: &RecordedCall, outcome: impl Into<Tally>) {
        let key = || {
            (
                call.process.binary.clone(),
                call.process.pid,
                call.process.exec_id.clone(),
            )
        };
        match outcome.into() {
            Tally::Taken(i) => {
                if let Some(s) = self.selectors.get_mut(i) {
                    let key = key();
                    if s.taken.len() < MAX_PROCESSES || s.taken.contains_key(&key) {
                        *s.taken.entry(key).or_default() += 1;
                    } else {
                        s.taken_elsewhere += 1;
                    }
                }
            }
            Tally::Untouched => self.untouched += 1,
            Tally::CannotJudge(i, reason) => {
                if let Some(s) = self.selectors.get_mut(i) {
                    *s.cannot_judge.entry(reason).or_default() += 1;
                }
            }
        }
    }
}

#[derive(Debug)]
pub struct Report {
    pub policy: String,
    pub mode: PolicyMode,
    pub history_dir: String,
    pub since: String,
    pub hooks: Vec<HookReport>,
    /// Recorded lines that were not JSON.
    pub unparsed: u64,
    /// Events the recorder reported lost (`events_lost`, LOSS_STAGE_SINK) that may be of the
    /// range: calls among them are not in the history.
    pub recorder_lost: u64,
}

fn effect_names(e: &Effects, monitor: bool) -> Vec<String> {
    let mut out = Vec::new();
    if e.post {
        out.push("post".to_string());
    }
    let note = if monitor {
        " (monitor mode: not done)"
    } else {
        ""
    };
    if e.sigkill {
        out.push(format!("sigkill{note}"));
    }
    if let Some(s) = e.signal {
        out.push(format!("signal {s}{note}"));
    }
    if let Some(rc) = e.override_return {
        out.push(format!("override {rc}{note}"));
    }
    out
}

impl Report {
    pub fn new(plan: &Plan, history_dir: &Path, since: &str) -> Self {
        Report {
            policy: plan.name.clone(),
            mode: plan.mode,
            history_dir: history_dir.display().to_string(),
            since: since.to_string(),
            hooks: Vec::new(),
            unparsed: 0,
            recorder_lost: 0,
        }
    }

    fn monitor(&self) -> bool {
        self.mode == PolicyMode::Monitor
    }

    pub fn to_json(&self) -> Value {
        let hooks: Vec<Value> = self
            .hooks
            .iter()
            .map(|h| {
                let selectors: Vec<Value> = h
                    .selectors
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        json!({
                            "index": i,
                            "label": s.label,
                            "actions": effect_names(&s.effects, self.monitor()),
                            "matched": s.taken_count(),
                            "posted": if s.effects.post { s.taken_count() } else { 0 },
                            "killed": if s.effects.sigkill && !self.monitor() { s.taken_count() } else { 0 },
                            "overridden": if s.effects.override_return.is_some() && !self.monitor() { s.taken_count() } else { 0 },
                            "processes": s.taken.iter().map(|((binary, pid, exec_id), n)| json!({
                                "binary": binary, "pid": pid, "exec_id": exec_id, "count": n,
                            })).collect::<Vec<_>>(),
                            "other_processes": s.taken_elsewhere,
                            "cannot_judge": s.cannot_judge.values().sum::<u64>(),
                            "cannot_judge_reasons": s.cannot_judge.iter().map(|(r, n)| json!({
                                "reason": r, "count": n,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({
                    "path": h.path,
                    "targets": h.targets,
                    "recorded": h.recorded_by.iter().map(|(p, n)| json!({"policy": p, "events": n})).collect::<Vec<_>>(),
                    "used": h.used,
                    "judged": h.used.is_some(),
                    "coverage": h.coverage,
                    "selectors": selectors,
                    "untouched": h.untouched,
                })
            })
            .collect();
        json!({
            "policy": self.policy,
            "mode": match self.mode { PolicyMode::Enforce => "enforce", PolicyMode::Monitor => "monitor" },
            "history_dir": self.history_dir,
            "since": self.since,
            "unparsed_events": self.unparsed,
            "recorder_lost_events": self.recorder_lost,
            "hooks": hooks,
        })
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mode = if self.monitor() { "monitor" } else { "enforce" };
        let _ = writeln!(
            out,
            "policy {} ({mode}) against {} since {}",
            self.policy, self.history_dir, self.since
        );
        if self.recorder_lost > 0 {
            let _ = writeln!(
                out,
                "CANNOT JUDGE the calls among {} events the recorder reported lost (queue full \
                 or disk error, events_lost LOSS_STAGE_SINK) in or right after this range",
                self.recorder_lost
            );
        }
        for h in &self.hooks {
            let _ = writeln!(out, "\n{} ({})", h.path, h.targets.join(", "));
            if let Some(c) = &h.coverage {
                let _ = writeln!(out, "  {c}");
            }
            if h.used.is_none() {
                let _ = writeln!(out, "  CANNOT JUDGE any selector of this hook");
                continue;
            }
            for (i, s) in h.selectors.iter().enumerate() {
                let label = s
                    .label
                    .as_deref()
                    .map(|l| format!(" {l}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  selector {i}{label} [{}]: {} calls",
                    effect_names(&s.effects, self.monitor()).join(", "),
                    s.taken_count()
                );
                for ((binary, pid, exec_id), n) in &s.taken {
                    let _ = writeln!(out, "    {n:>6}  {binary} pid {pid} exec_id {exec_id}");
                }
                if s.taken_elsewhere > 0 {
                    let _ = writeln!(out, "    {:>6}  (more processes)", s.taken_elsewhere);
                }
                for (reason, n) in &s.cannot_judge {
                    let _ = writeln!(out, "    CANNOT JUDGE {n} calls: {reason}");
                }
            }
            let _ = writeln!(out, "  no selector: {} calls", h.untouched);
        }
        if self.unparsed > 0 {
            let _ = writeln!(out, "\n{} recorded lines were not JSON", self.unparsed);
        }
        out
    }
}
