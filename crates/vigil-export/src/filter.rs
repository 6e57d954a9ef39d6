//! Allow and deny lists: Tetragon's `Filter` JSON, one filter per line. Lines are ORed,
//! the fields inside one filter are ANDed, an empty filter matches everything; an event is
//! exported when it matches the allow list (or there is none) and no deny filter.

use std::collections::HashSet;
use std::sync::Mutex;

use regex::Regex;
use vigil_proto::tetragon::{CapFilterSet, EventType, Filter, GetEventsResponse, Process};

use crate::cel::CelFilter;
use crate::event::{Parts, event_type, parts};

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("{flag}: line {line}: not a Tetragon filter: {reason}")]
    Json {
        flag: String,
        line: usize,
        reason: String,
    },
    #[error("{flag}: line {line}: {field}: bad RE2 expression {expr:?}: {reason}")]
    Regex {
        flag: String,
        line: usize,
        field: &'static str,
        expr: String,
        reason: String,
    },
    #[error(
        "{flag}: line {line}: cel_expression[{index}] {expression:?}: column {column}: {reason}"
    )]
    Cel {
        flag: String,
        line: usize,
        index: usize,
        expression: String,
        column: usize,
        reason: String,
    },
    #[error("{flag}: line {line}: {field}: {reason}")]
    Unsupported {
        flag: String,
        line: usize,
        field: &'static str,
        reason: String,
    },
}

/// Parses newline-separated JSON objects of type `T` (blank lines skipped).
pub(crate) fn parse_lines<T: serde::de::DeserializeOwned>(
    flag: &str,
    text: &str,
) -> Result<Vec<(usize, T)>, FilterError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map(|v| (i + 1, v))
                .map_err(|e| FilterError::Json {
                    flag: flag.to_string(),
                    line: i + 1,
                    reason: e.to_string(),
                })
        })
        .collect()
}

/// One filter line, compiled.
#[derive(Debug)]
struct Compiled {
    binary: Vec<Regex>,
    namespace: Option<HashSet<String>>,
    health_check: Option<bool>,
    pid: Option<HashSet<u32>>,
    pid_set: Option<Mutex<HashSet<u32>>>,
    event_set: Option<HashSet<i32>>,
    pod: Vec<Regex>,
    arguments: Vec<Regex>,
    labels: Option<Vec<crate::labels::Requirement>>,
    policy_names: Option<HashSet<String>>,
    capabilities: Option<vigil_proto::tetragon::CapFilter>,
    parent_binary: Vec<Regex>,
    parent_arguments: Vec<Regex>,
    container_id: Vec<Regex>,
    in_init_tree: Option<bool>,
    ancestor_binary: Vec<Regex>,
    container_name: Vec<Regex>,
    namespace_re: Vec<Regex>,
    /// Checked last: the dearest field.
    cel: Option<CelFilter>,
}

/// The last line of a regex error (the explanation; the rest draws the pattern).
pub(crate) fn one_line(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string()
}

fn set<T: Eq + std::hash::Hash + Clone>(v: &[T]) -> Option<HashSet<T>> {
    (!v.is_empty()).then(|| v.iter().cloned().collect())
}

fn any_re(res: &[Regex], s: Option<&str>) -> bool {
    res.is_empty() || s.is_some_and(|s| res.iter().any(|r| r.is_match(s)))
}

fn namespace_of(p: &Process) -> &str {
    p.pod.as_ref().map_or("", |p| p.namespace.as_str())
}

fn caps_match(set: Option<&CapFilterSet>, have: &[i32]) -> bool {
    let Some(s) = set else { return true };
    let have: HashSet<i32> = have.iter().copied().collect();
    (s.any.is_empty() || s.any.iter().any(|c| have.contains(c)))
        && s.all.iter().all(|c| have.contains(c))
        && (s.exactly.is_empty() || s.exactly.iter().copied().collect::<HashSet<_>>() == have)
        && !s.none.iter().any(|c| have.contains(c))
}

impl Compiled {
    fn new(flag: &str, line: usize, f: &Filter) -> Result<Self, FilterError> {
        let re = |field: &'static str, exprs: &[String]| -> Result<Vec<Regex>, FilterError> {
            exprs
                .iter()
                .map(|e| {
                    Regex::new(e).map_err(|err| FilterError::Regex {
                        flag: flag.to_string(),
                        line,
                        field,
                        expr: e.clone(),
                        reason: one_line(&err),
                    })
                })
                .collect()
        };
        let cel = if f.cel_expression.is_empty() {
            None
        } else {
            let compiled =
                CelFilter::compile(&f.cel_expression).map_err(|(index, e)| FilterError::Cel {
                    flag: flag.to_string(),
                    line,
                    index,
                    expression: f.cel_expression[index].clone(),
                    column: e.column,
                    reason: e.reason,
                })?;
            Some(compiled)
        };
        let labels = if f.labels.is_empty() {
            None
        } else {
            let mut reqs = Vec::new();
            for sel in &f.labels {
                reqs.extend(crate::labels::parse(sel).map_err(|reason| {
                    FilterError::Unsupported {
                        flag: flag.to_string(),
                        line,
                        field: "labels",
                        reason,
                    }
                })?);
            }
            Some(reqs)
        };
        Ok(Self {
            binary: re("binary_regex", &f.binary_regex)?,
            namespace: set(&f.namespace),
            health_check: f.health_check.map(|b| b.value),
            pid: set(&f.pid),
            pid_set: set(&f.pid_set).map(Mutex::new),
            event_set: set(&f.event_set),
            pod: re("pod_regex", &f.pod_regex)?,
            arguments: re("arguments_regex", &f.arguments_regex)?,
            labels,
            policy_names: set(&f.policy_names),
            capabilities: f.capabilities.clone(),
            parent_binary: re("parent_binary_regex", &f.parent_binary_regex)?,
            parent_arguments: re("parent_arguments_regex", &f.parent_arguments_regex)?,
            container_id: re("container_id", &f.container_id)?,
            in_init_tree: f.in_init_tree.map(|b| b.value),
            ancestor_binary: re("ancestor_binary_regex", &f.ancestor_binary_regex)?,
            container_name: re("container_name_regex", &f.container_name_regex)?,
            namespace_re: re("namespace_regex", &f.namespace_regex)?,
            cel,
        })
    }

    fn matches(&self, ev: &GetEventsResponse) -> bool {
        let Parts {
            process,
            parent,
            ancestors,
            policy_name,
        } = parts(ev);
        let pod = process.and_then(|p| p.pod.as_ref());
        fn bin(p: Option<&Process>) -> Option<&str> {
            p.map(|p| p.binary.as_str())
        }
        fn args(p: Option<&Process>) -> Option<&str> {
            p.map(|p| p.arguments.as_str())
        }
        if let Some(types) = &self.event_set
            && !types.contains(&(event_type(ev) as i32))
        {
            return false;
        }
        if !any_re(&self.binary, bin(process))
            || !any_re(&self.arguments, args(process))
            || !any_re(&self.parent_binary, bin(parent))
            || !any_re(&self.parent_arguments, args(parent))
            || !any_re(&self.container_id, process.map(|p| p.docker.as_str()))
            || !any_re(&self.pod, pod.map(|p| p.name.as_str()))
            || !any_re(
                &self.container_name,
                pod.and_then(|p| p.container.as_ref())
                    .map(|c| c.name.as_str()),
            )
            || !any_re(&self.namespace_re, process.map(namespace_of))
        {
            return false;
        }
        if !self.ancestor_binary.is_empty()
            && !ancestors
                .iter()
                .any(|a| self.ancestor_binary.iter().any(|r| r.is_match(&a.binary)))
        {
            return false;
        }
        if let Some(ns) = &self.namespace
            && !process.is_some_and(|p| ns.contains(namespace_of(p)))
        {
            return false;
        }
        let pid_of = |p: &Process| p.pid.map_or(0, |v| v.value);
        if let Some(pids) = &self.pid
            && !process.is_some_and(|p| pids.contains(&pid_of(p)))
        {
            return false;
        }
        if let Some(pids) = &self.pid_set {
            // The pid and its descendants: known through parents and ancestors, and
            // remembered from the execs of children seen so far.
            let mut pids = pids.lock().unwrap_or_else(|e| e.into_inner());
            let hit = process.is_some_and(|p| pids.contains(&pid_of(p)))
                || parent.is_some_and(|p| pids.contains(&pid_of(p)))
                || ancestors.iter().any(|a| pids.contains(&pid_of(a)));
            if !hit {
                return false;
            }
            if event_type(ev) == EventType::ProcessExec
                && let Some(p) = process
            {
                pids.insert(pid_of(p));
            }
        }
        if let Some(want) = self.health_check {
            let probe = pod
                .and_then(|p| p.container.as_ref())
                .is_some_and(|c| c.maybe_exec_probe);
            if process.is_none() || probe != want {
                return false;
            }
        }
        if let Some(want) = self.in_init_tree
            && process.is_none_or(|p| p.in_init_tree.is_some_and(|v| v.value) != want)
        {
            return false;
        }
        if let Some(names) = &self.policy_names
            && !names.contains(policy_name)
        {
            return false;
        }
        if let Some(reqs) = &self.labels {
            // Host events never match a label selector.
            let Some(pod) = pod else { return false };
            if !reqs.iter().all(|r| r.matches(&pod.pod_labels)) {
                return false;
            }
        }
        if let Some(c) = &self.capabilities {
            let Some(cap) = process.and_then(|p| p.cap.as_ref()) else {
                return false;
            };
            if !caps_match(c.permitted.as_ref(), &cap.permitted)
                || !caps_match(c.effective.as_ref(), &cap.effective)
                || !caps_match(c.inheritable.as_ref(), &cap.inheritable)
            {
                return false;
            }
        }
        if let Some(cel) = &self.cel
            && !cel.matches(ev)
        {
            return false;
        }
        true
    }
}

/// A list of filters (ORed).
#[derive(Debug, Default)]
pub struct FilterList {
    filters: Vec<Compiled>,
}

impl FilterList {
    /// Parses `text` (one JSON `Filter` per line) given to `flag` (for error messages).
    pub fn parse(flag: &str, text: &str) -> Result<Self, FilterError> {
        let filters = parse_lines::<Filter>(flag, text)?
            .iter()
            .map(|(line, f)| Compiled::new(flag, *line, f))
            .collect::<Result<_, _>>()?;
        Ok(Self { filters })
    }

    pub fn from_filters(flag: &str, filters: &[Filter]) -> Result<Self, FilterError> {
        let filters = filters
            .iter()
            .enumerate()
            .map(|(i, f)| Compiled::new(flag, i + 1, f))
            .collect::<Result<_, _>>()?;
        Ok(Self { filters })
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// True when any filter matches.
    pub fn any(&self, ev: &GetEventsResponse) -> bool {
        self.filters.iter().any(|f| f.matches(ev))
    }
}

/// Allow and deny lists together: deny wins; no allow list allows everything.
#[derive(Debug, Default)]
pub struct AllowDeny {
    pub allow: FilterList,
    pub deny: FilterList,
}

impl AllowDeny {
    pub fn passes(&self, ev: &GetEventsResponse) -> bool {
        (self.allow.is_empty() || self.allow.any(ev)) && !self.deny.any(ev)
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
