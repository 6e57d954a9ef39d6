//! Tetragon's event filters (`message Filter`, tetragon.md §3.4): allow and deny lists.
//!
//! Lists follow Tetragon: filters in a list are OR'ed, the fields inside one filter are
//! AND'ed; an event passes when the allow list is empty or one of its filters matches, and
//! no filter of the deny list matches. Regular expressions are unanchored searches, as Go's
//! `regexp.MatchString` (RE2 syntax; the `regex` crate has the same semantics);
//! `cel_expression` is evaluated by [`vigil_export::cel`], shared with the JSON export.
//!
//! This module does not depend on the gRPC server: the JSON export's `--export-allowlist` /
//! `--export-denylist` can reuse [`FilterList`] as is.

use std::collections::HashSet;

use regex::Regex;
use vigil_export::cel::CelFilter;
use vigil_proto::tetragon::get_events_response::Event;
use vigil_proto::tetragon::{EventType, Filter, GetEventsResponse, Process};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("filter field {field}: invalid regular expression {pattern:?}: {reason}")]
    Regex {
        field: &'static str,
        pattern: String,
        reason: String,
    },
    #[error("filter field {field} is not supported by vigil: {why}")]
    Unsupported {
        field: &'static str,
        why: &'static str,
    },
    #[error("filter field cel_expression[{index}] {expression:?}: column {column}: {reason}")]
    Cel {
        index: usize,
        expression: String,
        column: usize,
        reason: String,
    },
    #[error("filter field event_set: unknown event type {0}")]
    EventType(i32),
}

/// The event type of a response, as `Filter.event_set` names it.
pub fn event_type(ev: &GetEventsResponse) -> EventType {
    match &ev.event {
        Some(Event::ProcessExec(_)) => EventType::ProcessExec,
        Some(Event::ProcessExit(_)) => EventType::ProcessExit,
        Some(Event::ProcessKprobe(_)) => EventType::ProcessKprobe,
        Some(Event::ProcessTracepoint(_)) => EventType::ProcessTracepoint,
        Some(Event::ProcessLoader(_)) => EventType::ProcessLoader,
        Some(Event::ProcessUprobe(_)) => EventType::ProcessUprobe,
        Some(Event::ProcessThrottle(_)) => EventType::ProcessThrottle,
        Some(Event::ProcessLsm(_)) => EventType::ProcessLsm,
        Some(Event::ProcessUsdt(_)) => EventType::ProcessUsdt,
        Some(Event::Test(_)) => EventType::Test,
        Some(Event::RateLimitInfo(_)) => EventType::RateLimitInfo,
        Some(Event::EventsLost(_)) => EventType::EventsLost,
        None => EventType::Undef,
    }
}

/// The process an event is about, if any.
pub fn process(ev: &GetEventsResponse) -> Option<&Process> {
    match ev.event.as_ref()? {
        Event::ProcessExec(e) => e.process.as_ref(),
        Event::ProcessExit(e) => e.process.as_ref(),
        Event::ProcessKprobe(e) => e.process.as_ref(),
        Event::ProcessTracepoint(e) => e.process.as_ref(),
        Event::ProcessLoader(e) => e.process.as_ref(),
        Event::ProcessUprobe(e) => e.process.as_ref(),
        Event::ProcessLsm(e) => e.process.as_ref(),
        Event::ProcessUsdt(e) => e.process.as_ref(),
        _ => None,
    }
}

/// The parent of the event's process, if the event carries it.
pub fn parent(ev: &GetEventsResponse) -> Option<&Process> {
    match ev.event.as_ref()? {
        Event::ProcessExec(e) => e.parent.as_ref(),
        Event::ProcessExit(e) => e.parent.as_ref(),
        Event::ProcessKprobe(e) => e.parent.as_ref(),
        Event::ProcessTracepoint(e) => e.parent.as_ref(),
        Event::ProcessLoader(e) => e.parent.as_ref(),
        Event::ProcessUprobe(e) => e.parent.as_ref(),
        Event::ProcessLsm(e) => e.parent.as_ref(),
        Event::ProcessUsdt(e) => e.parent.as_ref(),
        _ => None,
    }
}

fn ancestors(ev: &GetEventsResponse) -> &[Process] {
    match ev.event.as_ref() {
        Some(Event::ProcessExec(e)) => &e.ancestors,
        Some(Event::ProcessExit(e)) => &e.ancestors,
        Some(Event::ProcessKprobe(e)) => &e.ancestors,
        Some(Event::ProcessTracepoint(e)) => &e.ancestors,
        Some(Event::ProcessLoader(e)) => &e.ancestors,
        Some(Event::ProcessUprobe(e)) => &e.ancestors,
        Some(Event::ProcessLsm(e)) => &e.ancestors,
        Some(Event::ProcessUsdt(e)) => &e.ancestors,
        _ => &[],
    }
}

fn policy_name(ev: &GetEventsResponse) -> Option<&str> {
    match ev.event.as_ref()? {
        Event::ProcessKprobe(e) => Some(&e.policy_name),
        Event::ProcessTracepoint(e) => Some(&e.policy_name),
        Event::ProcessUprobe(e) => Some(&e.policy_name),
        Event::ProcessLsm(e) => Some(&e.policy_name),
        Event::ProcessUsdt(e) => Some(&e.policy_name),
        _ => None,
    }
}

fn pid_of(p: &Process) -> Option<u32> {
    p.pid.as_ref().map(|v| v.value)
}

fn regexes(field: &'static str, patterns: &[String]) -> Result<Vec<Regex>, FilterError> {
    patterns
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|e| FilterError::Regex {
                field,
                pattern: p.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

fn any_match(res: &[Regex], text: &str) -> bool {
    res.iter().any(|r| r.is_match(text))
}

/// One compiled `Filter`: every present field must match.
#[derive(Debug, Default)]
pub struct CompiledFilter {
    event_set: Vec<EventType>,
    binary: Vec<Regex>,
    arguments: Vec<Regex>,
    parent_binary: Vec<Regex>,
    parent_arguments: Vec<Regex>,
    ancestor_binary: Vec<Regex>,
    namespace: Option<Vec<String>>,
    namespace_regex: Vec<Regex>,
    pod_regex: Vec<Regex>,
    container_id: Vec<Regex>,
    container_name: Vec<Regex>,
    pid: Vec<u32>,
    /// `pid_set`: the given pids and every descendant seen since the filter started.
    pid_set: Option<HashSet<u32>>,
    health_check: Option<bool>,
    in_init_tree: Option<bool>,
    policy_names: Vec<String>,
    cel: Option<CelFilter>,
}

impl CompiledFilter {
    pub fn new(f: &Filter) -> Result<Self, FilterError> {
        if !f.labels.is_empty() {
            return Err(FilterError::Unsupported {
                field: "labels",
                why: "pod labels need Kubernetes support, not implemented yet",
            });
        }
        let cel = if f.cel_expression.is_empty() {
            None
        } else {
            Some(
                CelFilter::compile(&f.cel_expression).map_err(|(index, e)| FilterError::Cel {
                    index,
                    expression: f.cel_expression[index].clone(),
                    column: e.column,
                    reason: e.reason,
                })?,
            )
        };
        if f.capabilities.is_some() {
            return Err(FilterError::Unsupported {
                field: "capabilities",
                why: "capability filters are not implemented yet",
            });
        }
        let event_set = f
            .event_set
            .iter()
            .map(|&n| EventType::try_from(n).map_err(|_| FilterError::EventType(n)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            event_set,
            binary: regexes("binary_regex", &f.binary_regex)?,
            arguments: regexes("arguments_regex", &f.arguments_regex)?,
            parent_binary: regexes("parent_binary_regex", &f.parent_binary_regex)?,
            parent_arguments: regexes("parent_arguments_regex", &f.parent_arguments_regex)?,
            ancestor_binary: regexes("ancestor_binary_regex", &f.ancestor_binary_regex)?,
            namespace: (!f.namespace.is_empty()).then(|| f.namespace.clone()),
            namespace_regex: regexes("namespace_regex", &f.namespace_regex)?,
            pod_regex: regexes("pod_regex", &f.pod_regex)?,
            container_id: regexes("container_id", &f.container_id)?,
            container_name: regexes("container_name_regex", &f.container_name_regex)?,
            pid: f.pid.clone(),
            pid_set: (!f.pid_set.is_empty()).then(|| f.pid_set.iter().copied().collect()),
            health_check: f.health_check.as_ref().map(|b| b.value),
            in_init_tree: f.in_init_tree.as_ref().map(|b| b.value),
            policy_names: f.policy_names.clone(),
            cel,
        })
    }

    /// Whether `ev` matches. `&mut` because `pid_set` learns descendants from exec events.
    pub fn matches(&mut self, ev: &GetEventsResponse) -> bool {
        if !self.event_set.is_empty() && !self.event_set.contains(&event_type(ev)) {
            return false;
        }
        let proc_ = process(ev);
        let par = parent(ev);
        let need_process = !self.binary.is_empty()
            || !self.arguments.is_empty()
            || !self.pid.is_empty()
            || self.pid_set.is_some()
            || self.in_init_tree.is_some()
            || !self.pod_regex.is_empty()
            || !self.namespace_regex.is_empty()
            || !self.container_id.is_empty()
            || !self.container_name.is_empty();
        if need_process && proc_.is_none() {
            return false;
        }
        if let Some(p) = proc_ {
            if !self.binary.is_empty() && !any_match(&self.binary, &p.binary) {
                return false;
            }
            if !self.arguments.is_empty() && !any_match(&self.arguments, &p.arguments) {
                return false;
            }
            if !self.pid.is_empty() && !pid_of(p).is_some_and(|pid| self.pid.contains(&pid)) {
                return false;
            }
            if let Some(want) = self.in_init_tree
                && p.in_init_tree.as_ref().is_some_and(|b| b.value) != want
            {
                return false;
            }
            let pod = p.pod.as_ref();
            if !self.pod_regex.is_empty()
                && !pod.is_some_and(|x| any_match(&self.pod_regex, &x.name))
            {
                return false;
            }
            if !self.namespace_regex.is_empty()
                && !pod.is_some_and(|x| any_match(&self.namespace_regex, &x.namespace))
            {
                return false;
            }
            if !self.container_id.is_empty() && !any_match(&self.container_id, &p.docker) {
                return false;
            }
            if !self.container_name.is_empty()
                && !pod
                    .and_then(|x| x.container.as_ref())
                    .is_some_and(|c| any_match(&self.container_name, &c.name))
            {
                return false;
            }
        }
        if let Some(set) = &mut self.pid_set {
            let Some(pid) = proc_.and_then(pid_of) else {
                return false;
            };
            let parent_in = par.and_then(pid_of).is_some_and(|pp| set.contains(&pp));
            if !set.contains(&pid) {
                if !parent_in {
                    return false;
                }
                // A descendant: remember it, so its own children match too.
                if matches!(ev.event, Some(Event::ProcessExec(_))) {
                    set.insert(pid);
                }
            }
        }
        if let Some(ns) = &self.namespace {
            let actual = proc_
                .and_then(|p| p.pod.as_ref())
                .map_or("", |pod| pod.namespace.as_str());
            if !ns.iter().any(|n| n == actual) {
                return false;
            }
        }
        if let Some(want) = self.health_check {
            // A health check is an exec of the pod's liveness/readiness probe; without
            // Kubernetes no event is one.
            if want {
                return false;
            }
        }
        if !self.parent_binary.is_empty()
            && !par.is_some_and(|p| any_match(&self.parent_binary, &p.binary))
        {
            return false;
        }
        if !self.parent_arguments.is_empty()
            && !par.is_some_and(|p| any_match(&self.parent_arguments, &p.arguments))
        {
            return false;
        }
        if !self.ancestor_binary.is_empty()
            && !ancestors(ev)
                .iter()
                .any(|a| any_match(&self.ancestor_binary, &a.binary))
        {
            return false;
        }
        if !self.policy_names.is_empty()
            && !policy_name(ev).is_some_and(|n| self.policy_names.iter().any(|p| p == n))
        {
            return false;
        }
        if let Some(cel) = &self.cel
            && !cel.matches(ev)
        {
            return false;
        }
        true
    }
}

/// Allow and deny lists together.
#[derive(Debug, Default)]
pub struct FilterList {
    allow: Vec<CompiledFilter>,
    deny: Vec<CompiledFilter>,
}

impl FilterList {
    pub fn new(allow: &[Filter], deny: &[Filter]) -> Result<Self, FilterError> {
        Ok(Self {
            allow: allow
                .iter()
                .map(CompiledFilter::new)
                .collect::<Result<_, _>>()?,
            deny: deny
                .iter()
                .map(CompiledFilter::new)
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether the event passes: allowed (or no allow list) and not denied.
    pub fn passes(&mut self, ev: &GetEventsResponse) -> bool {
        // Every filter sees every event, so pid_set filters learn all descendants.
        let mut allowed = self.allow.is_empty();
        for f in &mut self.allow {
            allowed |= f.matches(ev);
        }
        let mut denied = false;
        for f in &mut self.deny {
            denied |= f.matches(ev);
        }
        allowed && !denied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::pbjson_types::BoolValue;
    use vigil_proto::tetragon::{Pod, ProcessExec, ProcessExit};

    pub fn exec(pid: u32, ppid: u32, binary: &str, args: &str) -> GetEventsResponse {
        GetEventsResponse {
            event: Some(Event::ProcessExec(ProcessExec {
                process: Some(Process {
                    pid: Some(pid.into()),
                    binary: binary.into(),
                    arguments: args.into(),
                    ..Default::default()
                }),
                parent: Some(Process {
                    pid: Some(ppid.into()),
                    binary: "/bin/sh".into(),
                    ..Default::default()
                }),
                ancestors: vec![],
            })),
            ..Default::default()
        }
    }

    fn exit(pid: u32) -> GetEventsResponse {
        GetEventsResponse {
            event: Some(Event::ProcessExit(ProcessExit {
                process: Some(Process {
                    pid: Some(pid.into()),
                    binary: "/usr/bin/true".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[allow(clippy::needless_pass_by_value)]
    fn list(allow: Vec<Filter>, deny: Vec<Filter>) -> FilterList {
        FilterList::new(&allow, &deny).unwrap()
    }

    #[test]
    fn allow_or_deny_and() {
        let mut l = list(
            vec![
                Filter {
                    binary_regex: vec!["true$".into()],
                    ..Default::default()
                },
                Filter {
                    pid: vec![7],
                    ..Default::default()
                },
            ],
            vec![Filter {
                event_set: vec![EventType::ProcessExit as i32],
                ..Default::default()
            }],
        );
        assert!(l.passes(&exec(1, 0, "/usr/bin/true", "")));
        assert!(l.passes(&exec(7, 0, "/usr/bin/cat", "")));
        assert!(!l.passes(&exec(8, 0, "/usr/bin/cat", "")));
        assert!(!l.passes(&exit(1)));
        // Fields inside one filter are AND'ed.
        let mut l = list(
            vec![Filter {
                binary_regex: vec!["true".into()],
                pid: vec![2],
                ..Default::default()
            }],
            vec![],
        );
        assert!(!l.passes(&exec(1, 0, "/usr/bin/true", "")));
        assert!(l.passes(&exec(2, 0, "/usr/bin/true", "")));
    }

    #[test]
    fn namespace_empty_means_host() {
        let mut l = list(
            vec![Filter {
                namespace: vec![String::new()],
                ..Default::default()
            }],
            vec![],
        );
        assert!(l.passes(&exec(1, 0, "/a", "")));
        let mut pod = exec(1, 0, "/a", "");
        if let Some(Event::ProcessExec(e)) = &mut pod.event {
            e.process.as_mut().unwrap().pod = Some(Pod {
                namespace: "kube-system".into(),
                ..Default::default()
            });
        }
        assert!(!l.passes(&pod));
    }

    #[test]
    fn pid_set_follows_descendants() {
        let mut l = list(
            vec![Filter {
                pid_set: vec![100],
                ..Default::default()
            }],
            vec![],
        );
        assert!(l.passes(&exec(100, 1, "/bin/sh", "")));
        assert!(l.passes(&exec(101, 100, "/bin/ls", "")));
        assert!(l.passes(&exec(102, 101, "/bin/ls", "")));
        assert!(!l.passes(&exec(200, 1, "/bin/ls", "")));
    }

    #[test]
    fn health_check_and_arguments() {
        let mut l = list(
            vec![],
            vec![Filter {
                health_check: Some(BoolValue { value: true }),
                ..Default::default()
            }],
        );
        assert!(l.passes(&exec(1, 0, "/a", "")));
        let mut l = list(
            vec![Filter {
                arguments_regex: vec!["^-c ".into()],
                parent_binary_regex: vec!["sh$".into()],
                ..Default::default()
            }],
            vec![],
        );
        assert!(l.passes(&exec(1, 0, "/a", "-c x")));
        assert!(!l.passes(&exec(1, 0, "/a", "x")));
    }

    #[test]
    fn bad_and_unsupported_fields_are_named() {
        let e = FilterList::new(
            &[Filter {
                binary_regex: vec!["(".into()],
                ..Default::default()
            }],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("binary_regex"), "{e}");
        let e = FilterList::new(
            &[Filter {
                cel_expression: vec!["process_exec.process.binary ==".into()],
                ..Default::default()
            }],
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "filter field cel_expression[0] \"process_exec.process.binary ==\": column 31:"
            ),
            "{e}"
        );
    }
}
