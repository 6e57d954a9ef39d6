//! Backtest: a compiled hook's selector tables ([`HookPlan::selectors`], the tables the
//! runtime writes to the kernel) run in user space over recorded calls, with the kernel
//! engine's semantics (bpf/include/vigil_engine*.h): selectors in order, the first whose
//! filters all hold decides; string filters compare at most [`STR_MATCH`] bytes.
//!
//! Every filter answers hold, fail, or "cannot judge" with the reason (a value the record
//! lacks, state the history does not keep). A call a selector cannot judge is never counted
//! as a match nor as a miss, and the selectors after it cannot judge it either: the first
//! one might have taken it.

use std::collections::BTreeMap;

use crate::compile::{ArgOrigin, ArgReader, Filter, HookPlan, SelectorTable};
use crate::model::{ActionSelector, BinarySelector, PidSelector};
use crate::types::{Action, NamespaceKind, Operator, TypeClass};

#[cfg(test)]
mod tests;

/// Bytes of a string argument the engine's selectors compare (VIGIL_STR_MATCH).
pub const STR_MATCH: usize = 128;
/// Bytes of a string argument an event reports, NUL included (VIGIL_ARG_STR_MAX): a recorded
/// string this long or longer may have been cut.
pub const STR_REPORTED: usize = 256;

/// One argument value as an event recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedValue {
    Int(i64),
    /// `exact`: the text is the bytes the kernel read (no cut, no UTF-8 repair).
    Text {
        text: String,
        exact: bool,
    },
    /// The kernel could not read it (`error_arg`).
    Unreadable,
    /// A value of a kind the backtest does not compare (sockets, credentials...).
    Other(String),
}

/// What the recorded event says of the process that made the call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedProcess {
    pub binary: String,
    pub pid: u32,
    pub exec_id: String,
    pub parent_binary: Option<String>,
    /// Namespace inodes by kind, when the agent recorded them (`--enable-process-ns`).
    pub namespaces: Option<BTreeMap<NamespaceKind, u64>>,
}

/// One recorded call of a hook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedCall {
    pub process: RecordedProcess,
    /// Argument values by the hook parameter they were read from (`args[].index`), `None`
    /// when the recorder's layout is unknown.
    pub args: Option<BTreeMap<u32, RecordedValue>>,
    pub return_value: Option<i64>,
}

/// Facts of the host the backtest runs on that some filters need.
pub trait Host {
    /// Whether a recorded binary path is the file a policy value names (the kernel compares
    /// inode and device): `None` when it cannot tell (a file that no longer exists).
    fn same_binary(&self, policy_value: &str, recorded: &str) -> Option<bool>;
    /// The host's namespace inode of a kind (`host_ns` values).
    fn host_namespace(&self, kind: NamespaceKind) -> Option<u64>;
    /// The x86_64 number of a system call (`InMap` values that name one, as the runtime
    /// rewrites them).
    fn syscall_number(&self, name: &str) -> Option<i64>;
}

/// What a selector does to a call it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Effects {
    pub post: bool,
    pub sigkill: bool,
    /// Another signal (`Signal` with argSig other than 9).
    pub signal: Option<u32>,
    pub override_return: Option<i64>,
}

impl Effects {
    /// The effects of a selector's `matchActions` (empty: Post), as the runtime sets them.
    pub fn of(actions: &[ActionSelector]) -> Effects {
        let mut e = Effects {
            post: true,
            ..Effects::default()
        };
        for a in actions {
            match a.action {
                Action::NoPost => e.post = false,
                Action::Sigkill => e.sigkill = true,
                Action::Signal => match a.arg_sig.unwrap_or(9) {
                    9 => e.sigkill = true,
                    other => e.signal = Some(other),
                },
                Action::Override => e.override_return = Some(a.arg_error.unwrap_or(-1)),
                _ => {}
            }
        }
        e
    }

    fn enforcing(self) -> bool {
        self.sigkill || self.signal.is_some()
    }
}

/// The verdict of one selector (or filter) on one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Holds,
    Fails,
    CannotJudge(String),
}

/// Which selector took a call, or why no answer can be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Selector index (in the hook's tables) that took the call.
    Taken(usize),
    /// No selector took it.
    Untouched,
    /// Selector `at` could not judge it; `reason` says what the record lacks.
    CannotJudge { at: usize, reason: String },
}

/// Runs the hook's selector tables over one call.
pub fn evaluate(hook: &HookPlan, call: &RecordedCall, host: &dyn Host) -> Outcome {
    if hook.selectors.is_empty() {
        // No selectors: every call is posted (the runtime adds one empty selector).
        return Outcome::Taken(0);
    }
    for (i, table) in hook.selectors.iter().enumerate() {
        match selector(hook, table, call, host) {
            Verdict::Holds => return Outcome::Taken(i),
            Verdict::Fails => {}
            Verdict::CannotJudge(reason) => return Outcome::CannotJudge { at: i, reason },
        }
    }
    Outcome::Untouched
}

/// The AND of a selector's filters: one that fails decides, even next to ones that cannot
/// be judged.
pub fn selector(
    hook: &HookPlan,
    table: &SelectorTable,
    call: &RecordedCall,
    host: &dyn Host,
) -> Verdict {
    let enforcing = Effects::of(&table.actions).enforcing();
    let mut unknown = None;
    for f in &table.filters {
        match filter(hook, f, call, host, enforcing) {
            Verdict::Fails => return Verdict::Fails,
            Verdict::CannotJudge(why) => {
                unknown.get_or_insert(why);
            }
            Verdict::Holds => {}
        }
    }
    unknown.map_or(Verdict::Holds, Verdict::CannotJudge)
}

fn judge(holds: bool) -> Verdict {
    if holds {
        Verdict::Holds
    } else {
        Verdict::Fails
    }
}

fn cannot(why: impl Into<String>) -> Verdict {
    Verdict::CannotJudge(why.into())
}

/// The reader a `matchArgs` position names, as the runtime resolves it: a reader with that
/// parameter index, else the reader in that position.
pub fn reader_of(hook: &HookPlan, pos: u32) -> Option<&ArgReader> {
    let readers: Vec<&ArgReader> = hook
        .arguments
        .iter()
        .filter(|a| a.origin == ArgOrigin::Argument)
        .collect();
    readers
        .iter()
        .find(|a| a.index == pos)
        .or_else(|| readers.get(pos as usize))
        .copied()
}

fn filter(
    hook: &HookPlan,
    f: &Filter,
    call: &RecordedCall,
    host: &dyn Host,
    enforcing: bool,
) -> Verdict {
    match f {
        Filter::Arg {
            origin: ArgOrigin::Argument,
            positions,
            operator,
            values,
        } => {
            let mut result = Verdict::Holds;
            for &pos in positions {
                let Some(reader) = reader_of(hook, pos) else {
                    return cannot(format!("matchArgs index {pos} names no argument"));
                };
                let Some(args) = &call.args else {
                    return cannot(
                        "the recorded events' argument layout is unknown (recorded by another \
                         policy: give it with --recorded-with)",
                    );
                };
                let Some(value) = args.get(&reader.index) else {
                    return cannot(format!(
                        "argument {} was not captured by the recording policy",
                        reader.index
                    ));
                };
                match arg(reader, *operator, values, value, enforcing, host) {
                    Verdict::Holds => {}
                    other => result = other,
                }
                if result == Verdict::Fails {
                    return result;
                }
            }
            result
        }
        Filter::Arg {
            origin: ArgOrigin::Return,
            operator,
            values,
            ..
        } => match call.return_value {
            Some(v) => int_filter(*operator, values, v),
            None => cannot("the return value was not recorded"),
        },
        Filter::Arg {
            origin: ArgOrigin::Data,
            ..
        } => cannot("matchData: data values are not evaluated by the backtest"),
        Filter::Pids(p) => pids(p, call.process.pid),
        Filter::Binaries {
            parent: false,
            selector,
        } => binaries(selector, Some(&call.process.binary), host, "matchBinaries"),
        Filter::Binaries {
            parent: true,
            selector,
        } => binaries(
            selector,
            call.process.parent_binary.as_deref(),
            host,
            "matchParentBinaries",
        ),
        Filter::Namespaces(n) => {
            let Some(ns) = &call.process.namespaces else {
                return cannot(
                    "matchNamespaces: namespaces were not recorded (agent without \
                     --enable-process-ns)",
                );
            };
            let Some(&have) = ns.get(&n.namespace) else {
                return cannot(format!(
                    "matchNamespaces: the {} namespace was not recorded",
                    n.namespace
                ));
            };
            let mut listed = false;
            for v in &n.values {
                let want = if v == "host_ns" {
                    host.host_namespace(n.namespace)
                } else {
                    v.parse::<u64>().ok()
                };
                let Some(want) = want else {
                    return cannot(format!("matchNamespaces: value {v:?} cannot be resolved"));
                };
                listed |= want == have;
            }
            match n.operator {
                Operator::In => judge(listed),
                Operator::NotIn => judge(!listed),
                other => cannot(format!("matchNamespaces operator {other}")),
            }
        }
        Filter::NamespaceChanges(_) => cannot(
            "matchNamespaceChanges depends on each process's namespaces at exec, state the \
             history does not keep",
        ),
        Filter::Capabilities { changes: true, .. } => cannot(
            "matchCapabilityChanges depends on each process's capabilities at exec, state the \
             history does not keep",
        ),
        Filter::Capabilities { changes: false, .. } => cannot(
            "matchCapabilities: the capabilities in effect at the call are not in the recorded \
             events (process.cap, if any, is the one at exec)",
        ),
        Filter::Workloads(_) => cannot("matchWorkloads: pod and container labels are not recorded"),
    }
}

fn pids(p: &PidSelector, pid: u32) -> Verdict {
    if p.is_namespace_pid {
        return cannot("matchPIDs isNamespacePID: namespace pids are not recorded");
    }
    let listed = p.values.contains(&pid);
    match (p.operator, p.follow_forks) {
        (Operator::In, _) if listed => Verdict::Holds,
        (Operator::In, false) => Verdict::Fails,
        (Operator::NotIn, false) => judge(!listed),
        (Operator::NotIn, true) if listed => Verdict::Fails,
        (Operator::In | Operator::NotIn, _) => cannot(
            "matchPIDs followForks: whether an ancestor had a listed pid is state the history \
             does not keep",
        ),
        (op, _) => cannot(format!("matchPIDs operator {op}")),
    }
}

fn binaries(s: &BinarySelector, binary: Option<&str>, host: &dyn Host, what: &str) -> Verdict {
    let Some(binary) = binary.filter(|b| !b.is_empty()) else {
        return cannot(format!("{what}: the binary was not recorded"));
    };
    let mut listed = Some(false);
    for v in &s.values {
        match host.same_binary(v, binary) {
            Some(true) => {
                listed = Some(true);
                break;
            }
            Some(false) => {}
            None => listed = None,
        }
    }
    let Some(listed) = listed else {
        return cannot(format!(
            "{what}: whether {binary} is one of the listed files cannot be told (a file no \
             longer exists)"
        ));
    };
    match (s.operator, s.follow_children) {
        (Operator::In, _) if listed => Verdict::Holds,
        (Operator::In, false) => Verdict::Fails,
        (Operator::NotIn, false) => judge(!listed),
        (Operator::NotIn, true) if listed => Verdict::Fails,
        (Operator::In | Operator::NotIn, true) => cannot(format!(
            "{what} followChildren: whether an ancestor ran a listed binary is state the \
             history does not keep"
        )),
        (op, _) => cannot(format!("{what} operator {op}")),
    }
}

fn arg(
    reader: &ArgReader,
    op: Operator,
    values: &[String],
    value: &RecordedValue,
    enforcing: bool,
    host: &dyn Host,
) -> Verdict {
    match (reader.arg_type.class(), value) {
        // An unreadable argument: an enforcing selector fails closed (the engine's rule).
        (_, RecordedValue::Unreadable) => judge(enforcing),
        (TypeClass::Integer | TypeClass::SyscallId, RecordedValue::Int(v))
            if matches!(op, Operator::InMap | Operator::NotInMap) =>
        {
            // The runtime's rewrite: syscall names become their numbers, InMap Equal.
            let mut numbers = Vec::with_capacity(values.len());
            for name in values {
                match parse_int(name).or_else(|| host.syscall_number(name)) {
                    Some(n) => numbers.push(n.to_string()),
                    None => return cannot(format!("{op} value {name:?} names no system call")),
                }
            }
            int_filter(op, &numbers, *v)
        }
        (TypeClass::Integer | TypeClass::SyscallId, RecordedValue::Int(v)) => {
            int_filter(op, values, *v)
        }
        (TypeClass::Text | TypeClass::FilePath, RecordedValue::Text { text, exact }) => {
            string_filter(op, values, text.as_bytes(), *exact)
        }
        (_, RecordedValue::Other(kind)) => cannot(format!(
            "argument {} ({kind}): the backtest does not compare this kind",
            reader.index
        )),
        (class, v) => cannot(format!(
            "argument {}: recorded as {v:?}, the policy reads it as {class:?}",
            reader.index
        )),
    }
}

/// Tetragon's integer spellings: decimal or 0x hex, signed or unsigned 64-bit.
pub fn parse_int(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|u| u as i64);
    }
    v.parse::<i64>()
        .ok()
        .or_else(|| v.parse::<u64>().ok().map(|u| u as i64))
}

/// The engine's `int_match`: any listed value holds; NotEqual holds when none equals.
pub fn int_filter(op: Operator, values: &[String], v: i64) -> Verdict {
    let mut wants = Vec::with_capacity(values.len());
    for s in values {
        match parse_int(s) {
            Some(w) => wants.push(w),
            None => return cannot(format!("value {s:?} is not an integer")),
        }
    }
    let any = |f: &dyn Fn(i64) -> bool| wants.iter().any(|&w| f(w));
    match op {
        Operator::Equal | Operator::InMap => judge(any(&|w| v == w)),
        Operator::NotEqual | Operator::NotInMap => judge(!any(&|w| v == w)),
        Operator::GreaterThan => judge(any(&|w| v > w)),
        Operator::LessThan => judge(any(&|w| v < w)),
        Operator::Mask => judge(any(&|w| v & w != 0)),
        other => cannot(format!("operator {other} on integers is not evaluated")),
    }
}

/// The engine's string operators (vigil_engine_strings.h): Equal holds only on strings of
/// at most [`STR_MATCH`] bytes; Prefix compares the first [`STR_MATCH`] bytes; Postfix the
/// last ones. `exact`: whether `s` is what the kernel read (else only answers that do not
/// depend on the missing bytes are given).
pub fn string_filter(op: Operator, values: &[String], s: &[u8], exact: bool) -> Verdict {
    let head = &s[..s.len().min(STR_MATCH)];
    let hit = match op {
        Operator::Equal | Operator::NotEqual => {
            if !exact && s.len() <= STR_MATCH {
                return cannot(
                    "the recorded string is not the exact bytes read (cut or not UTF-8)",
                );
            }
            s.len() <= STR_MATCH
                && values
                    .iter()
                    .any(|v| v.len() <= STR_MATCH && v.as_bytes() == s)
        }
        Operator::Prefix | Operator::NotPrefix => {
            let hit = values
                .iter()
                .any(|v| v.len() <= STR_MATCH && head.starts_with(v.as_bytes()));
            if !exact && !hit {
                return cannot(
                    "the recorded string is not the exact bytes read (cut or not UTF-8)",
                );
            }
            hit
        }
        Operator::Postfix | Operator::NotPostfix => {
            if !exact {
                return cannot(
                    "Postfix on a string that was cut or not UTF-8: its end is not recorded",
                );
            }
            let tail = &s[s.len() - s.len().min(STR_MATCH)..];
            values
                .iter()
                .any(|v| v.len() <= STR_MATCH && tail.ends_with(v.as_bytes()))
        }
        other => return cannot(format!("operator {other} on strings is not evaluated")),
    };
    let negated = matches!(
        op,
        Operator::NotEqual | Operator::NotPrefix | Operator::NotPostfix
    );
    judge(hit != negated)
}
