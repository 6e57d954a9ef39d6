//! The policy runtime of the agent: plans -> kernel tables -> loaded objects, shared by the
//! policies given at start (`--tracing-policy`, `--tracing-policy-dir`, domain `static`) and
//! those added over gRPC; both live in one policy manager (vigil-api). A policy loads
//! completely or not at all; one that fails is reported (log, with every reason) and the
//! agent starts without it.

use std::path::{Path, PathBuf};

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use vigil_api::policy::{HookCounters, Kept, Loaded, Loader, no_runtime};
use vigil_bpf::hooks::HookSensor;
use vigil_bpf::kfuncs::KfuncSensor;
use vigil_bpf::syscalls::{PolicyMode as KernelMode, SharedMaps, SyscallSensor};
use vigil_policy::Plan;
use vigil_policy::state::PolicyMode;
use vigil_runtime::HookInfo;
use vigil_runtime::tables::{Ids, build};

use super::same_file::SameFiles;

/// Hooks of every loaded policy by hook id, shared by the loaders (start-up and gRPC) and
/// the pipeline, which prints their events. A hook is registered before it is attached.
pub type HookRegistry = Arc<RwLock<Hooks>>;

/// Hooks that unloaded policies held, kept so that their events still in the ring are
/// reported as theirs: a few policies' worth, oldest forgotten first.
const RETIRED_HOOKS_KEPT: usize = 2 * vigil_bpf::abi::VIGIL_MAX_HOOKS as usize;

/// The hooks of loaded policies, and of recently unloaded ones, by (hook id, generation).
#[derive(Debug, Default)]
pub struct Hooks {
    live: HashMap<u32, HookInfo>,
    retired: VecDeque<HookInfo>,
}

impl Hooks {
    /// The hook that posted a record with this id and load generation.
    pub fn get(&self, id: u32, generation: u32) -> Option<&HookInfo> {
        match self.live.get(&id) {
            Some(h) if h.generation == generation => Some(h),
            _ => self
                .retired
                .iter()
                .rev()
                .find(|h| h.id == id && h.generation == generation),
        }
    }

    fn insert(&mut self, hook: HookInfo) {
        if let Some(old) = self.live.insert(hook.id, hook) {
            self.retire_one(old);
        }
    }

    /// The hooks of an unloaded policy leave the live set (their ids are free again).
    fn retire(&mut self, ids: &[u32], generation: u32) {
        for id in ids {
            if self
                .live
                .get(id)
                .is_some_and(|h| h.generation == generation)
                && let Some(h) = self.live.remove(id)
            {
                self.retire_one(h);
            }
        }
    }

    /// Hooks of a previous agent (its kept ring's records name them).
    pub fn adopt(&mut self, hooks: Vec<HookInfo>) {
        for h in hooks {
            self.retire_one(h);
        }
    }

    fn retire_one(&mut self, hook: HookInfo) {
        if self.retired.len() >= RETIRED_HOOKS_KEPT {
            self.retired.pop_front();
        }
        self.retired.push_back(hook);
    }

    /// Hooks of loaded policies.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.live.len()
    }
}

/// The hook ids of one load, given back (and its hooks retired) when it is dropped: after
/// the policy's objects are detached, or at once when the load fails.
struct HookLease {
    ids: Arc<Mutex<Ids>>,
    registry: HookRegistry,
    hooks: Vec<u32>,
    generation: u32,
}

impl Drop for HookLease {
    fn drop(&mut self) {
        self.registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retire(&self.hooks, self.generation);
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(self.hooks.iter().copied());
    }
}

/// Loads compiled policies into the kernel; shared by start-up loading and the gRPC API.
pub struct Runtime {
    maps: SharedMaps,
    ids: Arc<Mutex<Ids>>,
    registry: HookRegistry,
    btf: Option<PathBuf>,
    /// Pod-scoped policies' cgroup sets (`--enable-k8s-api`); without it they are refused.
    scopes: Option<vigil_k8s::SharedScopes>,
    /// `--keep-sensors-on-exit`: this agent instance's prefix of the pin directories under
    /// `pin::KEEP_DIR`; each policy's links are pinned there when it loads.
    keep: Option<String>,
}

/// A scoped object's kernel set as the scope bookkeeping writes it.
struct KernelScope(vigil_bpf::ScopeSet);

impl vigil_k8s::CgroupSet for KernelScope {
    fn insert(&self, cgroup_id: u64) -> Result<(), String> {
        self.0.insert(cgroup_id)
    }
    fn remove(&self, cgroup_id: u64) {
        self.0.remove(cgroup_id)
    }
}

/// Keeps a loaded policy in the scope bookkeeping; unloading the policy drops it.
struct ScopeGuard {
    scopes: vigil_k8s::SharedScopes,
    id: u64,
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let mut s = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        s.remove_policy(self.id);
    }
}

/// Why a pod-scoped policy cannot load without the Kubernetes API.
const SCOPE_NEEDS_K8S: &str = "TracingPolicyNamespaced, podSelector and containerSelector \
     select pods, which needs --enable-k8s-api (pods are known from the Kubernetes API)";

impl Runtime {
    pub fn new(maps: SharedMaps, registry: HookRegistry, btf: Option<PathBuf>) -> Self {
        Self {
            maps,
            // A base of its own per agent start (boot-clock ns and pid).
            ids: Arc::new(Mutex::new(Ids::with_generation_base(
                (vigil_process::clock::boot_ns() as u32) ^ std::process::id().rotate_left(16),
            ))),
            registry,
            btf,
            scopes: None,
            keep: None,
        }
    }

    /// Pins every policy's links at load under `pin::KEEP_DIR/<instance>-...`: enforcement
    /// outlives a crash of this agent, not only a clean exit.
    pub fn with_keep(mut self, instance: String) -> Self {
        self.keep = Some(instance);
        self
    }

    /// Pod-scoped policies load, their cgroup sets kept by `scopes`.
    pub fn with_scopes(mut self, scopes: vigil_k8s::SharedScopes) -> Self {
        self.scopes = Some(scopes);
        self
    }

    /// Hook ids held by loaded policies (given back on unload).
    pub fn hook_ids_in_use(&self) -> u32 {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hooks_in_use()
    }

    /// Builds the tables of `plan` and loads them: all or nothing.
    pub fn load(&self, plan: &Plan) -> Result<(Vec<HookInfo>, PolicySensors), String> {
        if plan.scope.is_some() && self.scopes.is_none() {
            return Err(SCOPE_NEEDS_K8S.into());
        }
        let mut tables = {
            let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
            build(plan, &mut ids, &binary_identity).map_err(|e| e.to_string())?
        };
        // From here on, any early return gives the ids back.
        let lease = HookLease {
            ids: Arc::clone(&self.ids),
            registry: Arc::clone(&self.registry),
            hooks: tables.hooks.iter().map(|h| h.id).collect(),
            generation: tables.generation,
        };
        // Set in the objects before they attach: a scoped policy never runs unscoped.
        tables.tables.scoped = plan.scope.is_some();
        tables.others.scoped = plan.scope.is_some();
        {
            let mut reg = self.registry.write().unwrap_or_else(|e| e.into_inner());
            for h in &tables.hooks {
                reg.insert(h.clone());
            }
        }
        // Syscall hooks and the other kinds live in two objects; each is loaded only when
        // the policy has hooks of its kind. Dropping a loaded one on failure detaches it.
        let syscalls = if tables.tables.hooks.is_empty() {
            None
        } else {
            Some(
                SyscallSensor::load_shared(&self.maps, &tables.tables, self.btf.as_deref())
                    .map_err(|e| e.to_string())?,
            )
        };
        let others = if tables.others.is_empty() {
            None
        } else {
            Some(
                HookSensor::load_shared(&self.maps, &tables.others, self.btf.as_deref())
                    .map_err(|e| e.to_string())?,
            )
        };
        let kfuncs = if tables.kfuncs.is_empty() {
            None
        } else {
            let k = KfuncSensor::load(
                &self.maps,
                &tables.kfuncs,
                &tables.tables,
                self.btf.as_deref(),
            )
            .map_err(|e| e.to_string())?;
            for (id, mechanism) in k.mechanisms() {
                let function = tables.hooks.iter().find(|h| h.id == id);
                tracing::info!(policy = %plan.name, hook = id,
                    function = function.map_or("", |h| h.function_name.as_str()),
                    mechanism, "kernel hook attached");
            }
            Some(k)
        };
        let mut sensors = PolicySensors {
            syscalls,
            others,
            kfuncs,
            same_files: None,
            scope: None,
            kept: None,
            kept_hooks: None,
            _lease: lease,
        };
        if let Some(instance) = &self.keep {
            let name: String = plan
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .take(64)
                .collect();
            let dir = std::path::Path::new(vigil_bpf::pin::KEEP_DIR)
                .join(format!("{instance}-g{}-{name}", tables.generation));
            // Recorded before pinning: a partial pin is removed with the policy.
            sensors.kept = Some(dir.clone());
            sensors.pin_live(&dir).map_err(|e| {
                format!("--keep-sensors-on-exit: cannot pin the policy's links: {e}")
            })?;
            // Its hooks, for the next agent to attribute what the kept ring holds.
            let file = std::path::Path::new(KEPT_HOOKS_DIR).join(format!(
                "{}.json",
                dir.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            sensors.kept_hooks = Some(file.clone());
            write_kept_hooks(&file, &tables.hooks).map_err(|e| {
                format!(
                    "--keep-sensors-on-exit: cannot write {}: {e}",
                    file.display()
                )
            })?;
        }
        if !tables.same_files.is_empty() {
            let sets = sensors.file_sets().map_err(|e| e.to_string())?;
            sensors.same_files = Some(SameFiles::watch(
                &plan.name,
                sets,
                std::mem::take(&mut tables.same_files),
            ));
        }
        if let (Some(scope), Some(scopes)) = (&plan.scope, &self.scopes) {
            let sets = sensors.scope_sets().map_err(|e| e.to_string())?;
            let id = scopes.lock().unwrap_or_else(|e| e.into_inner()).add_policy(
                &plan.name,
                scope.clone(),
                sets,
            );
            sensors.scope = Some(ScopeGuard {
                scopes: Arc::clone(scopes),
                id,
            });
        }
        Ok((tables.hooks, sensors))
    }
}

/// The eBPF objects of one loaded policy: dropping it detaches and frees everything.
pub struct PolicySensors {
    syscalls: Option<SyscallSensor>,
    others: Option<HookSensor>,
    kfuncs: Option<KfuncSensor>,
    /// SameFile paths kept current (dropping it stops the refresher).
    same_files: Option<Arc<SameFiles>>,
    /// After the objects: they detach before the scope bookkeeping forgets their sets.
    scope: Option<ScopeGuard>,
    /// Where the links are pinned while loaded (`--keep-sensors-on-exit`); unpinned when
    /// the policy is unloaded, kept at a clean exit.
    kept: Option<PathBuf>,
    /// The policy's hooks written down beside the pins (see [`KEPT_HOOKS_DIR`]).
    kept_hooks: Option<PathBuf>,
    /// Declared last: hook ids are given back only once nothing can post with them.
    _lease: HookLease,
}

impl std::fmt::Debug for PolicySensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySensors")
            .field("syscalls", &self.syscalls)
            .field("others", &self.others)
            .field("kfuncs", &self.kfuncs)
            .field("scoped", &self.scope.is_some())
            .finish()
    }
}

impl Drop for PolicySensors {
    /// An unloaded policy leaves nothing pinned: its links detach with it.
    fn drop(&mut self) {
        if let Some(file) = self.kept_hooks.take() {
            let _ = std::fs::remove_file(file);
        }
        if let Some(dir) = self.kept.take()
            && let Err(e) = vigil_bpf::pin::unpin_dir(&dir)
        {
            tracing::error!(error = %e, dir = %dir.display(),
                "cannot unpin an unloaded policy's links: they stay attached");
        }
    }
}

impl PolicySensors {
    /// Pins every link, still owned (`--keep-sensors-on-exit` at load).
    fn pin_live(&mut self, dir: &std::path::Path) -> Result<usize, vigil_bpf::pin::PinError> {
        let mut n = 0;
        if let Some(s) = &mut self.syscalls {
            n += s.pin_live(dir)?;
        }
        if let Some(o) = &mut self.others {
            n += o.pin_live(dir)?;
        }
        if let Some(k) = &mut self.kfuncs {
            n += k.pin_live(dir)?;
        }
        Ok(n)
    }

    /// A clean exit that keeps the links pinned at load: they outlive this agent.
    fn keep_pinned(&mut self) -> Option<usize> {
        self.kept.take()?;
        self.kept_hooks = None;
        let mut n = 0;
        if let Some(s) = &mut self.syscalls {
            n += s.disconnect();
        }
        if let Some(o) = &mut self.others {
            n += o.disconnect();
        }
        if let Some(k) = &mut self.kfuncs {
            n += k.disconnect();
        }
        Some(n)
    }

    /// The binary and file sets of every object of the policy.
    fn file_sets(&self) -> Result<Vec<vigil_bpf::FileSet>, vigil_bpf::lifecycle::LoadError> {
        let mut out = Vec::new();
        if let Some(s) = &self.syscalls {
            out.push(s.file_set()?);
        }
        if let Some(o) = &self.others {
            out.push(o.file_set()?);
        }
        if let Some(k) = &self.kfuncs {
            out.extend(k.file_sets()?);
        }
        Ok(out)
    }

    /// The cgroup scope sets of every object of the policy.
    fn scope_sets(
        &self,
    ) -> Result<Vec<Arc<dyn vigil_k8s::CgroupSet>>, vigil_bpf::lifecycle::LoadError> {
        let mut out: Vec<Arc<dyn vigil_k8s::CgroupSet>> = Vec::new();
        if let Some(s) = &self.syscalls {
            out.push(Arc::new(KernelScope(s.scope_set()?)));
        }
        if let Some(o) = &self.others {
            out.push(Arc::new(KernelScope(o.scope_set()?)));
        }
        if let Some(k) = &self.kfuncs {
            for set in k.scope_sets()? {
                out.push(Arc::new(KernelScope(set)));
            }
        }
        Ok(out)
    }

    /// Invocations of the policy's hooks by tasks in / out of its pod scope.
    pub fn scope_counters(&self) -> [u64; 2] {
        let mut out = [0u64; 2];
        let each = [
            self.syscalls.as_ref().map(SyscallSensor::scope_counters),
            self.others.as_ref().map(HookSensor::scope_counters),
            self.kfuncs.as_ref().map(KfuncSensor::scope_counters),
        ];
        for c in each.into_iter().flatten() {
            out[0] += c[0];
            out[1] += c[1];
        }
        out
    }

    pub fn attached(&self) -> usize {
        self.syscalls.as_ref().map_or(0, SyscallSensor::attached)
            + self.others.as_ref().map_or(0, HookSensor::attached)
            + self.kfuncs.as_ref().map_or(0, KfuncSensor::attached)
    }

    /// Per-hook counters (`enum vigil_hook_counter`), from whichever object runs the hook.
    pub fn hook_counters(&self, hook: u32) -> [u64; vigil_bpf::abi::VIGIL_HOOK_COUNTERS as usize] {
        let a = self
            .syscalls
            .as_ref()
            .map(|s| s.hook_counters(hook))
            .unwrap_or_default();
        let b = self
            .others
            .as_ref()
            .map(|s| s.hook_counters(hook))
            .unwrap_or_default();
        let c = self
            .kfuncs
            .as_ref()
            .map(|s| s.hook_counters(hook))
            .unwrap_or_default();
        std::array::from_fn(|i| a[i] + b[i] + c[i])
    }

    /// Per-selector counters of a hook, from whichever object runs it.
    pub fn selector_counters(
        &self,
        hook: u32,
        selector: u32,
    ) -> [u64; vigil_bpf::abi::VIGIL_HOOK_COUNTERS as usize] {
        let a = self
            .syscalls
            .as_ref()
            .map(|s| s.selector_counters(hook, selector))
            .unwrap_or_default();
        let b = self
            .others
            .as_ref()
            .map(|s| s.selector_counters(hook, selector))
            .unwrap_or_default();
        let c = self
            .kfuncs
            .as_ref()
            .map(|s| s.selector_counters(hook, selector))
            .unwrap_or_default();
        std::array::from_fn(|i| a[i] + b[i] + c[i])
    }

    /// The policy's mode in the kernel (both objects are always switched together).
    pub fn mode(&self) -> KernelMode {
        match (&self.syscalls, &self.others, &self.kfuncs) {
            (Some(s), _, _) => s.mode(),
            (None, Some(o), _) => o.mode(),
            (None, None, Some(k)) => k.mode(),
            (None, None, None) => KernelMode::Enforce,
        }
    }

    /// memlock of the policy's own maps in both objects.
    pub fn kernel_memory_bytes(&self) -> u64 {
        self.syscalls
            .as_ref()
            .map_or(0, SyscallSensor::kernel_memory_bytes)
            + self
                .others
                .as_ref()
                .map_or(0, HookSensor::kernel_memory_bytes)
            + self
                .kfuncs
                .as_ref()
                .map_or(0, KfuncSensor::kernel_memory_bytes)
    }

    /// Switches a loaded policy between enforce and monitor without reloading it: one write
    /// to each object's `vigil_policy_conf` map, effective for the next hook invocation.
    pub fn set_mode(&self, mode: PolicyMode) -> Result<(), String> {
        let kernel = match mode {
            PolicyMode::Enforce => KernelMode::Enforce,
            PolicyMode::Monitor => KernelMode::Monitor,
        };
        if let Some(s) = &self.syscalls {
            s.set_mode(kernel).map_err(|e| e.to_string())?;
        }
        if let Some(o) = &self.others {
            o.set_mode(kernel).map_err(|e| e.to_string())?;
        }
        if let Some(k) = &self.kfuncs {
            k.set_mode(kernel).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A policy that is loaded and attached: its hooks and kernel objects (dropping it
/// detaches everything).
pub struct RuntimePolicy {
    pub hooks: Vec<HookInfo>,
    pub sensor: PolicySensors,
}

impl Kept for RuntimePolicy {
    fn hook_counters(&self) -> Vec<HookCounters> {
        self.hooks
            .iter()
            .map(|h| {
                let c = self.sensor.hook_counters(h.id);
                HookCounters {
                    hook: h.hook_name(),
                    matched: c[0],
                    posted: c[1],
                    enforced: c[2],
                    dropped: c[3],
                    monitor: c[4],
                }
            })
            .collect()
    }

    fn kernel_memory_bytes(&self) -> u64 {
        self.sensor.kernel_memory_bytes()
    }

    /// THE call site of the runtime mode switch: ConfigureTracingPolicy / `set-mode` on a
    /// loaded policy flips its kernel mode in place (no reload).
    fn set_mode(&self, mode: PolicyMode) -> Result<(), String> {
        self.sensor.set_mode(mode)
    }

    fn keep_attached(&mut self) -> Result<usize, String> {
        // Pinned at load: only disconnected now, so that they outlive this agent.
        self.sensor
            .keep_pinned()
            .ok_or_else(|| "its links were not pinned at load".to_string())
    }

    /// The SIGUSR1 counter dump: per hook, with per-selector counters and the kernel mode.
    fn debug_lines(&self, policy: &str) -> Vec<serde_json::Value> {
        let mode = if self.sensor.mode() == KernelMode::Monitor {
            "monitor"
        } else {
            "enforce"
        };
        self.hooks
            .iter()
            .map(|h| {
                let c = self.sensor.hook_counters(h.id);
                let selectors: Vec<_> = (0..h.selectors as u32)
                    .map(|i| self.sensor.selector_counters(h.id, i))
                    .collect();
                serde_json::json!({
                    "policy": policy, "hook": h.hook_name(), "mode": mode,
                    "matched": c[0], "posted": c[1], "enforced": c[2], "dropped": c[3],
                    "monitor": c[4], "rate_limited": c[5], "pending_lost": c[6],
                    "selectors": selectors,
                    "scoped": self.sensor.scope.is_some(),
                    "scope_in_out": self.sensor.scope_counters(),
                })
            })
            .collect()
    }
}

/// Where an agent that keeps its sensors writes each kept policy's hooks (bpffs holds only
/// pins): a tmpfs, gone at reboot like the pins.
pub const KEPT_HOOKS_DIR: &str = "/run/vigil/kept-hooks";

fn write_kept_hooks(file: &Path, hooks: &[HookInfo]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_vec(hooks).map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(file)?;
    f.write_all(&text)
}

/// The hooks previous agent instances (not `own*`) kept, for their kept rings; each file at
/// most 16 MiB. Unreadable files are skipped (their records are reported lost).
pub fn kept_hooks_of_others(own: &str) -> (Vec<HookInfo>, Vec<PathBuf>) {
    let (mut hooks, mut files) = (Vec::new(), Vec::new());
    let Ok(dir) = std::fs::read_dir(KEPT_HOOKS_DIR) else {
        return (hooks, files);
    };
    for e in dir.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(own) || !name.ends_with(".json") {
            continue;
        }
        let read = e
            .metadata()
            .ok()
            .filter(|m| m.is_file() && m.len() <= 16 << 20)
            .and_then(|_| std::fs::read(&path).ok())
            .and_then(|b| serde_json::from_slice::<Vec<HookInfo>>(&b).ok());
        if let Some(h) = read {
            hooks.extend(h);
        }
        files.push(path);
    }
    (hooks, files)
}

/// The loader of the policy manager: a plan with hooks goes through the shared runtime.
pub fn loader(runtime: Arc<Runtime>) -> Loader {
    Box::new(move |plan: &Plan| -> Result<Loaded, String> {
        if plan.hooks.is_empty() {
            return no_runtime(plan);
        }
        let (hooks, sensor) = runtime.load(plan)?;
        tracing::debug!(policy = %plan.name, attached = sensor.attached(),
            hook_ids_in_use = runtime.hook_ids_in_use(), "policy attached");
        Ok(Loaded {
            sensors: hooks.iter().map(|h| h.sensor_name()).collect(),
            keep: Some(Box::new(RuntimePolicy { hooks, sensor })),
        })
    })
}

/// Policy files named by the flags: explicit files first, then the directory's `*.yaml`
/// and `*.yml` files in name order (a missing directory is not an error: it is optional).
pub fn policy_files(files: &[PathBuf], dir: Option<&Path>) -> Vec<PathBuf> {
    let mut out = files.to_vec();
    if let Some(dir) = dir
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        found.sort();
        out.extend(found);
    }
    out
}

/// The kernel identity of a binary for matchBinaries: (inode, device in the kernel's
/// encoding, major << 20 | minor).
pub fn binary_identity(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    Some((meta.ino(), (major << 20) | minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(id: u32, generation: u32, policy: &str) -> HookInfo {
        HookInfo {
            id,
            generation,
            policy_name: policy.into(),
            ..Default::default()
        }
    }

    /// A hook id reused by a new load: records of the old load (still in the ring) find the
    /// old hook, records of the new one the new hook; unknown generations find nothing.
    #[test]
    fn records_find_the_load_that_posted_them() {
        let mut h = Hooks::default();
        h.insert(hook(0, 1, "old"));
        h.retire(&[0], 1);
        assert_eq!(h.live(), 0);
        h.insert(hook(0, 2, "new"));
        assert_eq!(h.get(0, 1).unwrap().policy_name, "old");
        assert_eq!(h.get(0, 2).unwrap().policy_name, "new");
        assert!(h.get(0, 3).is_none());
        // Retiring with a stale generation leaves the live hook alone.
        h.retire(&[0], 1);
        assert_eq!(h.get(0, 2).unwrap().policy_name, "new");
        // The retired set is bounded.
        for g in 3..(3 + 2 * RETIRED_HOOKS_KEPT as u32) {
            h.insert(hook(1, g, "churn"));
            h.retire(&[1], g);
        }
        assert!(h.retired.len() <= RETIRED_HOOKS_KEPT);
    }
}
