//! The TracingPolicy data model (`cilium.io/v1alpha1`), field for field as Tetragon's CRD.
//! Defaults are applied while decoding (e.g. `syscall: true`), so two policies that mean the
//! same thing compare equal.

use std::collections::BTreeMap;

use crate::types::{Action, ArgType, CapabilitySet, ListType, NamespaceKind, Operator};

/// The two policy kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Cluster-wide (or host-wide outside Kubernetes).
    TracingPolicy,
    /// Applies only to pods of its namespace; `spec.hostSelector` must be absent.
    TracingPolicyNamespaced,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::TracingPolicy => "TracingPolicy",
            Self::TracingPolicyNamespaced => "TracingPolicyNamespaced",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    pub name: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Spec {
    pub kprobes: Vec<KProbeSpec>,
    pub fentries: Vec<KProbeSpec>,
    pub tracepoints: Vec<TracepointSpec>,
    pub uprobes: Vec<UProbeSpec>,
    pub usdts: Vec<UsdtSpec>,
    pub lsmhooks: Vec<LsmHookSpec>,
    pub loader: bool,
    pub lists: Vec<ListSpec>,
    pub enforcers: Vec<EnforcerSpec>,
    pub options: Vec<OptionSpec>,
    pub selectors_macros: BTreeMap<String, Selector>,
    pub pod_selector: Option<LabelSelector>,
    pub container_selector: Option<LabelSelector>,
    pub host_selector: Option<LabelSelector>,
    pub node_selector: Option<LabelSelector>,
}

/// `ignore`: failures that skip the hook instead of failing the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ignore {
    pub call_not_found: bool,
    pub digest_verification_failure: bool,
}

/// A kprobe or fentry hook (same schema).
#[derive(Debug, Clone, PartialEq)]
pub struct KProbeSpec {
    pub call: String,
    /// CRD default `true` (the docs say false; the CRD wins, tetragon.md §11).
    pub syscall: bool,
    pub r#return: bool,
    pub args: Vec<ArgSpec>,
    pub data: Vec<ArgSpec>,
    pub return_arg: Option<ArgSpec>,
    pub return_arg_action: Option<Action>,
    pub selectors: Vec<Selector>,
    pub message: Option<String>,
    pub tags: Vec<String>,
    pub ignore: Ignore,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TracepointSpec {
    pub subsystem: String,
    pub event: String,
    pub raw: bool,
    pub args: Vec<ArgSpec>,
    pub selectors: Vec<Selector>,
    pub message: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UProbeSpec {
    pub path: String,
    pub btf_path: Option<String>,
    pub symbols: Vec<String>,
    pub offsets: Vec<u64>,
    pub addrs: Vec<u64>,
    pub ref_ctr_offsets: Vec<u64>,
    pub r#return: bool,
    pub return_arg: Option<ArgSpec>,
    pub args: Vec<ArgSpec>,
    pub data: Vec<ArgSpec>,
    pub selectors: Vec<Selector>,
    pub message: Option<String>,
    pub tags: Vec<String>,
    pub binary_digests: Vec<String>,
    pub ignore: Ignore,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsdtSpec {
    pub path: String,
    pub btf_path: Option<String>,
    pub provider: String,
    pub name: String,
    pub args: Vec<ArgSpec>,
    pub selectors: Vec<Selector>,
    pub message: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LsmHookSpec {
    pub hook: String,
    pub args: Vec<ArgSpec>,
    pub selectors: Vec<Selector>,
    pub message: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListSpec {
    pub name: String,
    pub list_type: Option<ListType>,
    pub values: Vec<String>,
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnforcerSpec {
    pub calls: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OptionSpec {
    pub name: String,
    pub value: String,
}

/// An argument to read (`args`, `data`, `returnArg`).
#[derive(Debug, Clone, PartialEq)]
pub struct ArgSpec {
    pub index: u32,
    pub arg_type: ArgType,
    pub label: Option<String>,
    /// 1-based index of the size argument (Tetragon's documented inconsistency).
    pub size_arg_index: Option<u32>,
    pub return_copy: bool,
    pub max_data: bool,
    pub resolve: Option<String>,
    pub btf_type: Option<String>,
    pub btf_type_module: Option<String>,
    pub source: Option<String>,
    pub size: Option<u32>,
}

/// One selector: filters AND'ed, selectors of a hook OR'ed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector {
    pub label: Option<String>,
    pub match_args: Vec<ArgSelector>,
    pub match_data: Vec<ArgSelector>,
    pub match_return_args: Vec<ArgSelector>,
    pub match_pids: Vec<PidSelector>,
    pub match_binaries: Vec<BinarySelector>,
    pub match_parent_binaries: Vec<BinarySelector>,
    pub match_namespaces: Vec<NamespaceSelector>,
    pub match_namespace_changes: Vec<NamespaceChangesSelector>,
    pub match_capabilities: Vec<CapabilitiesSelector>,
    pub match_capability_changes: Vec<CapabilitiesSelector>,
    pub match_workloads: Vec<WorkloadSelector>,
    pub match_actions: Vec<ActionSelector>,
    pub match_return_actions: Vec<ActionSelector>,
    pub macros: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArgSelector {
    pub index: Option<u32>,
    /// Positions in the hook's `args` list; takes precedence over `index`.
    pub args: Vec<u32>,
    pub operator: Operator,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PidSelector {
    pub operator: Operator,
    pub values: Vec<u32>,
    pub is_namespace_pid: bool,
    pub follow_forks: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BinarySelector {
    pub operator: Operator,
    pub values: Vec<String>,
    pub follow_children: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceSelector {
    pub namespace: NamespaceKind,
    pub operator: Operator,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceChangesSelector {
    pub operator: Operator,
    pub values: Vec<NamespaceKind>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CapabilitiesSelector {
    pub set: CapabilitySet,
    pub operator: Operator,
    pub is_namespace_capability: bool,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkloadSelector {
    pub host_selector: Option<LabelSelector>,
    pub pod_selector: Option<LabelSelector>,
    pub container_selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActionSelector {
    pub action: Action,
    pub arg_error: Option<i64>,
    pub arg_sig: Option<u32>,
    pub arg_url: Option<String>,
    pub arg_fqdn: Option<String>,
    pub arg_sock: Option<u32>,
    pub arg_fd: Option<u32>,
    pub arg_name: Option<u32>,
    pub rate_limit: Option<String>,
    pub rate_limit_scope: Option<String>,
    pub kernel_stack_trace: bool,
    pub user_stack_trace: bool,
    pub ima_hash: bool,
    pub arg_regs: Vec<String>,
    pub arg_new_symbol: Option<String>,
    pub arg_new_addr: Option<u64>,
    pub arg_new_offset: Option<u64>,
    pub arg_index: Option<u32>,
    pub arg_value: Option<i64>,
}

impl ActionSelector {
    pub fn new(action: Action) -> Self {
        Self {
            action,
            arg_error: None,
            arg_sig: None,
            arg_url: None,
            arg_fqdn: None,
            arg_sock: None,
            arg_fd: None,
            arg_name: None,
            rate_limit: None,
            rate_limit_scope: None,
            kernel_stack_trace: false,
            user_stack_trace: false,
            ima_hash: false,
            arg_regs: Vec::new(),
            arg_new_symbol: None,
            arg_new_addr: None,
            arg_new_offset: None,
            arg_index: None,
            arg_value: None,
        }
    }
}

/// A Kubernetes label selector.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelRequirement>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LabelRequirement {
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: String,
    pub values: Vec<String>,
}

/// Which kind of hook a selector belongs to (decides which actions and types are allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Kprobe,
    Fentry,
    Tracepoint,
    Uprobe,
    Usdt,
    Lsm,
}

impl HookKind {
    /// The spec field holding hooks of this kind.
    pub fn field(self) -> &'static str {
        match self {
            Self::Kprobe => "kprobes",
            Self::Fentry => "fentries",
            Self::Tracepoint => "tracepoints",
            Self::Uprobe => "uprobes",
            Self::Usdt => "usdts",
            Self::Lsm => "lsmhooks",
        }
    }
}
