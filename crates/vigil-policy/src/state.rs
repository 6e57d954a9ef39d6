//! Policy identity, mode and state, as Tetragon reports them (tetragon.md §2.1, §2.12).

use crate::model::Spec;
use crate::types::Action;

/// Where a policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    /// `--tracing-policy` / `--tracing-policy-dir` files.
    Static,
    /// Added through the gRPC API.
    Grpc,
    /// A Kubernetes custom resource.
    K8s,
}

/// A policy is identified by (domain, namespace, name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId {
    pub domain: Domain,
    /// Empty for cluster-wide policies.
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    Enforce,
    /// Enforcement actions are elided and counted as `monitor_*`.
    Monitor,
}

impl PolicyMode {
    /// The mode a policy starts in: the `policy-mode` option, else enforce. A mode given at
    /// load time or at runtime overrides this (in that order of priority).
    pub fn initial(spec: &Spec) -> Self {
        match spec
            .options
            .iter()
            .rev()
            .find(|o| o.name == "policy-mode")
            .map(|o| o.value.as_str())
        {
            Some("monitor") => Self::Monitor,
            _ => Self::Enforce,
        }
    }
}

/// What the API reports as a policy's mode: `MonitorOnly` when it has no enforcement action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedMode {
    Enforce,
    Monitor,
    MonitorOnly,
}

pub fn reported_mode(spec: &Spec, mode: PolicyMode) -> ReportedMode {
    let enforces = crate::validate::hooks(spec, &crate::source::SourceMap::default())
        .iter()
        .flat_map(|h| h.selectors.iter())
        .flat_map(|s| s.match_actions.iter().chain(&s.match_return_actions))
        .any(|a| a.action.is_enforcement())
        || spec
            .kprobes
            .iter()
            .any(|k| matches!(k.return_arg_action, Some(Action::Sigkill)))
        || !spec.enforcers.is_empty();
    match (enforces, mode) {
        (false, _) => ReportedMode::MonitorOnly,
        (true, PolicyMode::Enforce) => ReportedMode::Enforce,
        (true, PolicyMode::Monitor) => ReportedMode::Monitor,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyState {
    Unknown,
    Loading,
    Enabled,
    /// Some hooks were skipped, only those marked `ignore` (callNotFound, digest failure).
    PartiallyEnabled,
    Disabled,
    /// Refused before or while loading; the reason is kept.
    LoadError(String),
    Error(String),
    Unloading,
    /// Not for this node (nodeSelector).
    Skipped,
}

/// Per-hook outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookState {
    Unspecified,
    Loaded,
    DigestRejected,
    CallNotFound,
    PartialCallNotFound,
}
