//! Policy operations behind the gRPC API.
//!
//! [`PolicyManager`] is the interface of add, delete, configure (enable/disable/mode) and
//! list. [`MemoryPolicyManager`] validates policies exactly as `vigil tracingpolicy validate`
//! does, compiles them for this kernel and hands the plan to a [`Loader`] (the agent's policy
//! runtime). It holds every policy of the agent: those given at start (domain `static`) and
//! those added over gRPC, with their real state, kernel counters and memory. Nothing is ever
//! reported as loaded that is not.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use vigil_policy::compile::{Capabilities, KernelCapabilities, Plan};
use vigil_policy::state::{Domain, PolicyId, PolicyMode, PolicyState, ReportedMode, reported_mode};
use vigil_policy::{TracingPolicy, compile, parse_policy};

use kernel_checks::{KernelChecks, KernelSource};
use persist::PersistDir;

/// Why an operation failed; each kind maps to one gRPC code.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyOpError {
    /// Bad YAML or a policy that fails validation (the message lists every error).
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The policy is valid but this agent/kernel cannot run it; the message names why.
    #[error("{0}")]
    FailedPrecondition(String),
}

/// In-kernel counters of one hook (summed over CPUs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookCounters {
    /// Tetragon's `function_name` of the hook.
    pub hook: String,
    pub matched: u64,
    pub posted: u64,
    pub enforced: u64,
    /// Matched and meant to be posted, but the ring buffer was full.
    pub dropped: u64,
    /// Would have enforced (monitor mode).
    pub monitor: u64,
}

/// A policy's action counters in Tetragon's terms (`TracingPolicyActionCounters`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionCounters {
    pub post: u64,
    /// Signals sent (Sigkill, Signal).
    pub signal: u64,
    pub monitor_signal: u64,
    /// Matched events a NoPost selector did not post.
    pub nopost: u64,
}

impl ActionCounters {
    pub fn of(hooks: &[HookCounters]) -> Self {
        let mut c = Self::default();
        for h in hooks {
            c.post += h.posted;
            c.signal += h.enforced;
            c.monitor_signal += h.monitor;
            c.nopost += h.matched.saturating_sub(h.posted + h.dropped);
        }
        c
    }
}

/// Load status of one hook (Tetragon's `HookStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReport {
    /// Spec section: `kprobes`, `tracepoints`, ...
    pub section: String,
    pub index: u32,
    pub description: String,
    pub loaded: bool,
}

/// The hooks of a plan: a plan loads completely or not at all, so every hook of a loaded
/// policy is loaded.
pub fn hook_reports(plan: &Plan) -> Vec<HookReport> {
    plan.hooks
        .iter()
        .map(|h| {
            // `spec.kprobes[0]` -> ("kprobes", 0)
            let (section, index) = h
                .path
                .strip_prefix("spec.")
                .and_then(|p| p.strip_suffix(']'))
                .and_then(|p| p.split_once('['))
                .map_or((h.path.clone(), 0), |(s, i)| {
                    (s.to_string(), i.parse().unwrap_or(0))
                });
            HookReport {
                section,
                index,
                // The network fallback says so: it is not the kernel function itself.
                description: match h.mechanism {
                    vigil_policy::compile::Mechanism::CgroupSockAddr => {
                        format!("{} (via {})", h.targets.join(","), h.mechanism.name())
                    }
                    _ => h.targets.join(","),
                },
                loaded: true,
            }
        })
        .collect()
}

/// What `ListTracingPolicies` reports for one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyStatus {
    /// Agent-wide sequence number (Tetragon's `id`).
    pub seq: u64,
    pub id: PolicyId,
    pub state: PolicyState,
    pub mode: ReportedMode,
    /// Sensors (groups of loaded programs) of the policy.
    pub sensors: Vec<String>,
    pub kernel_memory_bytes: u64,
    pub info: String,
    pub counters: ActionCounters,
    pub hooks: Vec<HookReport>,
}

pub trait PolicyManager: Send + Sync {
    /// Validates, compiles and loads a policy. `mode` overrides the policy's own.
    fn add(
        &self,
        yaml: &str,
        domain: Domain,
        mode: Option<PolicyMode>,
    ) -> Result<PolicyStatus, PolicyOpError>;
    fn delete(&self, id: &PolicyId) -> Result<(), PolicyOpError>;
    /// Enables/disables and/or changes the mode (not atomic, as Tetragon's).
    fn configure(
        &self,
        id: &PolicyId,
        enable: Option<bool>,
        mode: Option<PolicyMode>,
    ) -> Result<(), PolicyOpError>;
    /// All policies, or those of one domain.
    fn list(&self, domain: Option<Domain>) -> Vec<PolicyStatus>;
    /// Domains this agent serves.
    fn domains(&self) -> Vec<Domain> {
        vec![Domain::Grpc, Domain::Static]
    }
}

pub fn domain_name(d: Domain) -> &'static str {
    match d {
        Domain::Static => "static",
        Domain::Grpc => "grpc",
        Domain::K8s => "k8s",
    }
}

pub fn parse_domain(s: &str) -> Option<Domain> {
    match s {
        "static" => Some(Domain::Static),
        "grpc" => Some(Domain::Grpc),
        "k8s" => Some(Domain::K8s),
        _ => None,
    }
}

/// What the runtime does with a plan: load it (returning sensor names) or refuse.
pub type Loader = Box<dyn Fn(&Plan) -> Result<Loaded, String> + Send + Sync>;

/// The kernel objects of a loaded policy, kept while the policy is enabled (dropping them
/// detaches everything), and what the status reads from them.
pub trait Kept: Send + Sync {
    /// Per-hook counters from the kernel.
    fn hook_counters(&self) -> Vec<HookCounters>;
    /// memlock bytes of the policy's own maps (not those shared with other policies).
    fn kernel_memory_bytes(&self) -> u64;
    /// Switches the loaded programs between enforce and monitor.
    fn set_mode(&self, mode: PolicyMode) -> Result<(), String>;
    /// Kernel counters in detail, one JSON object per hook (SIGUSR1 dump).
    fn debug_lines(&self, _policy: &str) -> Vec<serde_json::Value> {
        Vec::new()
    }
    /// `--keep-sensors-on-exit`, at a clean exit: the links pinned at load are let go of
    /// without detaching, so they outlive the agent; returns how many.
    fn keep_attached(&mut self) -> Result<usize, String> {
        Ok(0)
    }
}

/// What the runtime loaded for a policy: sensor names for the status, and the kernel
/// objects.
pub struct Loaded {
    pub sensors: Vec<String>,
    pub keep: Option<Box<dyn Kept>>,
}

/// The loader of an agent without a policy runtime.
pub fn no_runtime(plan: &Plan) -> Result<Loaded, String> {
    if plan.hooks.is_empty() && !plan.loader && plan.enforcer_syscalls.is_empty() {
        Ok(Loaded {
            sensors: Vec::new(),
            keep: None,
        })
    } else {
        Err("policy runtime not available: hooks are not loaded yet (issue 4)".into())
    }
}

struct Entry {
    seq: u64,
    policy: TracingPolicy,
    yaml: String,
    enabled: bool,
    mode: PolicyMode,
    sensors: Vec<String>,
    hooks: Vec<HookReport>,
    keep: Option<Box<dyn Kept>>,
    /// Not for this node (nodeSelector): listed, never loaded.
    skipped: bool,
}

impl Entry {
    /// A policy whose programs `loaded` runs, enabled, in `plan`'s mode.
    fn running(seq: u64, policy: TracingPolicy, yaml: &str, plan: &Plan, loaded: Loaded) -> Self {
        Self {
            seq,
            policy,
            yaml: yaml.to_string(),
            enabled: true,
            mode: plan.mode,
            sensors: loaded.sensors,
            hooks: hook_reports(plan),
            keep: loaded.keep,
            skipped: false,
        }
    }

    /// A policy listed but not for this node: nothing loaded.
    fn skipped(seq: u64, policy: TracingPolicy, yaml: &str) -> Self {
        Self {
            seq,
            mode: PolicyMode::initial(&policy.spec),
            policy,
            yaml: yaml.to_string(),
            enabled: false,
            sensors: Vec::new(),
            hooks: Vec::new(),
            keep: None,
            skipped: true,
        }
    }
}

pub struct MemoryPolicyManager {
    caps: Capabilities,
    loader: Loader,
    persist: Option<PersistDir>,
    /// `validate`'s kernel checks; without them only the schema and the plan are checked.
    kernel: Option<KernelChecks>,
    inner: Mutex<(u64, BTreeMap<PolicyId, Entry>)>,
}

impl std::fmt::Debug for MemoryPolicyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPolicyManager")
            .finish_non_exhaustive()
    }
}

impl MemoryPolicyManager {
    pub fn new(caps: Capabilities, loader: Loader, persist_dir: Option<PathBuf>) -> Self {
        Self {
            caps,
            loader,
            persist: persist_dir.map(PersistDir::new),
            kernel: None,
            inner: Mutex::new((0, BTreeMap::new())),
        }
    }

    /// Every policy passes `vigil tracingpolicy validate`'s kernel checks before it loads.
    pub fn with_kernel_checks(mut self, source: KernelSource) -> Self {
        self.kernel = Some(KernelChecks::new(source));
        self
    }

    /// Frees what the kernel checks keep once policies stop arriving (housekeeping);
    /// returns whether anything was freed.
    pub fn release_idle(&self) -> bool {
        self.kernel.as_ref().is_some_and(KernelChecks::release_idle)
    }

    /// Whether this kernel can run `policy` as `plan`: the policy's own faults against this
    /// kernel first (as `validate` names them), then any mechanism the kernel lacks, all on
    /// one line.
    fn check_runnable(
        &self,
        id: &PolicyId,
        policy: &TracingPolicy,
        plan: &Plan,
    ) -> Result<(), PolicyOpError> {
        let faults = self
            .kernel
            .as_ref()
            .map(|k| k.faults(policy))
            .unwrap_or_default();
        let loadable = self.check_loadable(id, plan);
        if faults.is_empty() {
            return loadable;
        }
        let mut message = faults.join("; ");
        if let Err(mechanism) = loadable {
            message.push_str("; ");
            message.push_str(&mechanism.to_string());
        }
        Err(PolicyOpError::InvalidArgument(message))
    }

    /// Marks a persisted gRPC policy disabled (or not): it comes back in that state.
    fn persist_enabled(&self, id: &PolicyId, enabled: bool) {
        if id.domain == Domain::Grpc
            && let Some(p) = &self.persist
        {
            p.set_enabled(id, enabled);
        }
    }

    /// Re-adds the policies persisted by an earlier run; returns one line per failure.
    pub fn restore(&self) -> Vec<String> {
        let Some(p) = &self.persist else {
            return Vec::new();
        };
        let mut errors = Vec::new();
        for (f, disabled) in p.entries() {
            let r = PersistDir::read(&f)
                .map_err(|e| e.to_string())
                .and_then(|y| self.add(&y, Domain::Grpc, None).map_err(|e| e.to_string()))
                .and_then(|s| {
                    if disabled {
                        self.configure(&s.id, Some(false), None)
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                });
            if let Err(e) = r {
                errors.push(format!("{}: {e}", f.display()));
            }
        }
        errors
    }

    /// Detaches every policy (agent shutdown; the gRPC server may still hold the manager).
    /// `--keep-sensors-on-exit`, at a clean exit: every loaded policy's links (pinned at
    /// load) outlive the agent. Returns how many links stay attached, and the failures.
    pub fn keep_all_attached(&self) -> (usize, Vec<String>) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (mut pinned, mut failed) = (0, Vec::new());
        for (id, e) in guard.1.iter_mut() {
            let Some(keep) = e.keep.as_mut() else {
                continue;
            };
            match keep.keep_attached() {
                Ok(n) => pinned += n,
                Err(err) => failed.push(format!("{}: {err}", id.name)),
            }
        }
        (pinned, failed)
    }

    pub fn unload_all(&self) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.1.clear();
    }

    /// Detailed kernel counters of every loaded policy (SIGUSR1 dump).
    pub fn debug_lines(&self) -> Vec<(PolicyId, Vec<serde_json::Value>)> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .1
            .iter()
            .filter_map(|(id, e)| Some((id.clone(), e.keep.as_ref()?.debug_lines(&id.name))))
            .collect()
    }

    /// In-kernel counters of every loaded policy (SIGUSR1 dump).
    pub fn hook_counters(&self) -> Vec<(PolicyId, Vec<HookCounters>)> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .1
            .iter()
            .filter_map(|(id, e)| Some((id.clone(), e.keep.as_ref()?.hook_counters())))
            .collect()
    }

    /// Loads the policy files given at start (domain `static`); logs each failure with its
    /// file and every reason, and carries on with the others. Returns how many loaded.
    pub fn load_static(&self, files: &[PathBuf]) -> usize {
        let mut n = 0;
        for file in files {
            let result = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|yaml| {
                    self.add_from(&yaml, &file.display().to_string(), Domain::Static, None)
                        .map_err(|e| e.to_string())
                });
            match result {
                Ok(s) => {
                    n += 1;
                    tracing::info!(policy = %s.id.name, file = %file.display(),
                        hooks = s.hooks.len(), "tracing policy loaded");
                }
                Err(reason) => {
                    // One log line per policy, however many errors it has.
                    let reason = reason.replace('\n', "; ");
                    tracing::error!(file = %file.display(), "tracing policy not loaded: {reason}");
                }
            }
        }
        n
    }

    /// A plan this kernel cannot run is refused with every reason.
    fn check_loadable(&self, id: &PolicyId, plan: &Plan) -> Result<(), PolicyOpError> {
        if plan.is_loadable() {
            return Ok(());
        }
        let reasons: Vec<String> = plan
            .refusals
            .iter()
            .map(|r| format!("{}: {}", r.path, r.reason))
            .collect();
        Err(PolicyOpError::FailedPrecondition(format!(
            "{} cannot run on this kernel ({}): {}",
            describe(id),
            self.caps.describe(),
            reasons.join("; ")
        )))
    }

    /// [`PolicyManager::add`] with the name errors give as the document's (file, object).
    pub fn add_from(
        &self,
        yaml: &str,
        source: &str,
        domain: Domain,
        mode: Option<PolicyMode>,
    ) -> Result<PolicyStatus, PolicyOpError> {
        let policy = parse(yaml, source)?;
        let id = policy.id(domain);
        if domain == Domain::Grpc {
            // gRPC names become file names (persistence) and come from any client.
            check_id(&id, "metadata.name", "metadata.namespace")?;
        }
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if guard.1.contains_key(&id) {
            return Err(PolicyOpError::AlreadyExists(format!(
                "{} already exists",
                describe(&id)
            )));
        }
        let mut plan = compile(&policy, &self.caps);
        // A mode given with the request wins over the YAML's; the programs load in it.
        plan.mode = mode.unwrap_or(plan.mode);
        self.check_runnable(&id, &policy, &plan)?;
        let loaded = (self.loader)(&plan).map_err(|why| {
            PolicyOpError::FailedPrecondition(format!("{}: {why}", describe(&id)))
        })?;
        guard.0 += 1;
        let entry = Entry::running(guard.0, policy, yaml, &plan, loaded);
        if domain == Domain::Grpc
            && let Some(p) = &self.persist
        {
            p.save(&id, &entry.yaml);
        }
        let status = Self::status(&id, &entry);
        guard.1.insert(id, entry);
        Ok(status)
    }

    /// Replaces a loaded policy of the same name and domain by a new version without a gap:
    /// the new one is loaded while the old one still runs, then the old one is dropped
    /// (detached). If the new one fails, the old one stays as it was. The new version
    /// starts enabled, in its own mode.
    pub fn replace(
        &self,
        yaml: &str,
        source: &str,
        domain: Domain,
    ) -> Result<PolicyStatus, PolicyOpError> {
        let policy = parse(yaml, source)?;
        let id = policy.id(domain);
        if !self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .contains_key(&id)
        {
            return self.add_from(yaml, source, domain, None);
        }
        let plan = compile(&policy, &self.caps);
        self.check_runnable(&id, &policy, &plan)?;
        let loaded = (self.loader)(&plan).map_err(|why| {
            PolicyOpError::FailedPrecondition(format!("{}: {why}", describe(&id)))
        })?;
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 += 1;
        let entry = Entry::running(guard.0, policy, yaml, &plan, loaded);
        let status = Self::status(&id, &entry);
        // The old entry (and its kernel objects) is dropped here, after the new one runs.
        guard.1.insert(id, entry);
        Ok(status)
    }

    /// Lists a valid policy that is not for this node (its nodeSelector does not select the
    /// node) without loading it; a loaded version of it is unloaded.
    pub fn skip(
        &self,
        yaml: &str,
        source: &str,
        domain: Domain,
    ) -> Result<PolicyStatus, PolicyOpError> {
        let policy = parse(yaml, source)?;
        let id = policy.id(domain);
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 += 1;
        let entry = Entry::skipped(guard.0, policy, yaml);
        let status = Self::status(&id, &entry);
        guard.1.insert(id, entry);
        Ok(status)
    }

    fn status(id: &PolicyId, e: &Entry) -> PolicyStatus {
        let counters = e
            .keep
            .as_ref()
            .map(|k| ActionCounters::of(&k.hook_counters()))
            .unwrap_or_default();
        PolicyStatus {
            seq: e.seq,
            id: id.clone(),
            state: if e.skipped {
                PolicyState::Skipped
            } else if e.enabled {
                PolicyState::Enabled
            } else {
                PolicyState::Disabled
            },
            mode: reported_mode(&e.policy.spec, e.mode),
            sensors: e.sensors.clone(),
            kernel_memory_bytes: e.keep.as_ref().map_or(0, |k| k.kernel_memory_bytes()),
            info: String::new(),
            counters,
            hooks: if e.enabled {
                e.hooks.clone()
            } else {
                Vec::new()
            },
        }
    }
}

/// Parses a policy; the message lists every error.
fn parse(yaml: &str, source: &str) -> Result<TracingPolicy, PolicyOpError> {
    parse_policy(yaml, source).map_err(|errs| {
        PolicyOpError::InvalidArgument(
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

/// Checks a policy id's name and namespace as Kubernetes would; the fields are named as
/// the caller knows them (`metadata.name` in a YAML, `name` in a request).
pub fn check_id(id: &PolicyId, name_field: &str, ns_field: &str) -> Result<(), PolicyOpError> {
    persist::check_name(name_field, &id.name)
        .and_then(|()| persist::check_namespace(ns_field, &id.namespace))
        .map_err(PolicyOpError::InvalidArgument)
}

fn describe(id: &PolicyId) -> String {
    if id.namespace.is_empty() {
        format!("policy {:?} (domain {})", id.name, domain_name(id.domain))
    } else {
        format!(
            "policy {}/{} (domain {})",
            id.namespace,
            id.name,
            domain_name(id.domain)
        )
    }
}

impl PolicyManager for MemoryPolicyManager {
    fn add(
        &self,
        yaml: &str,
        domain: Domain,
        mode: Option<PolicyMode>,
    ) -> Result<PolicyStatus, PolicyOpError> {
        self.add_from(yaml, "policy", domain, mode)
    }

    fn delete(&self, id: &PolicyId) -> Result<(), PolicyOpError> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if guard.1.remove(id).is_none() {
            return Err(PolicyOpError::NotFound(format!(
                "{} not found",
                describe(id)
            )));
        }
        // Only gRPC policies are persisted: a static policy of the same name has no file.
        if id.domain == Domain::Grpc
            && let Some(p) = &self.persist
        {
            p.remove(id);
        }
        Ok(())
    }

    fn configure(
        &self,
        id: &PolicyId,
        enable: Option<bool>,
        mode: Option<PolicyMode>,
    ) -> Result<(), PolicyOpError> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = guard.1.get_mut(id) else {
            return Err(PolicyOpError::NotFound(format!(
                "{} not found",
                describe(id)
            )));
        };
        if let Some(en) = enable {
            if e.skipped {
                return Err(PolicyOpError::FailedPrecondition(format!(
                    "{} is not for this node (nodeSelector)",
                    describe(id)
                )));
            }
            if en == e.enabled {
                return Err(PolicyOpError::FailedPrecondition(format!(
                    "{} is already {}",
                    describe(id),
                    if en { "enabled" } else { "disabled" }
                )));
            }
            if en {
                // Enabling loads the policy again: it was detached when disabled.
                // ... in the mode it had, which may differ from the YAML's.
                let mut plan = compile(&e.policy, &self.caps);
                plan.mode = e.mode;
                let Loaded { sensors, keep } = (self.loader)(&plan).map_err(|why| {
                    PolicyOpError::FailedPrecondition(format!("{}: {why}", describe(id)))
                })?;
                e.sensors = sensors;
                e.keep = keep;
            } else {
                e.keep = None;
            }
            e.enabled = en;
            self.persist_enabled(id, en);
        }
        if let Some(m) = mode {
            // The one place a mode change reaches the loaded programs.
            if let Some(k) = &e.keep {
                k.set_mode(m).map_err(|why| {
                    PolicyOpError::FailedPrecondition(format!("{}: {why}", describe(id)))
                })?;
            }
            e.mode = m;
        }
        Ok(())
    }

    fn list(&self, domain: Option<Domain>) -> Vec<PolicyStatus> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<PolicyStatus> = guard
            .1
            .iter()
            .filter(|(id, _)| domain.is_none_or(|d| id.domain == d))
            .map(|(id, e)| Self::status(id, e))
            .collect();
        out.sort_by_key(|s| s.seq);
        out
    }
}

pub mod kernel_checks;
pub mod persist;
#[cfg(test)]
mod tests;
