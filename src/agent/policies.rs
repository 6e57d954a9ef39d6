//! Loading TracingPolicies at start (`--tracing-policy`, `--tracing-policy-dir`): parse,
//! compile for this kernel, build kernel tables, load. A policy loads completely or not at
//! all; one that fails is reported (log, with every reason) and the agent starts without it.

use std::path::{Path, PathBuf};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use vigil_bpf::hooks::HookSensor;
use vigil_bpf::kfuncs::KfuncSensor;
use vigil_bpf::syscalls::{PolicyMode as KernelMode, SharedMaps, SyscallSensor};
use vigil_policy::Plan;
use vigil_policy::state::PolicyMode;
use vigil_runtime::HookInfo;
use vigil_runtime::tables::{Ids, build};

/// Hooks of every loaded policy by hook id, shared by the loaders (start-up and gRPC) and
/// the pipeline, which prints their events. A hook is registered before it is attached.
pub type HookRegistry = Arc<RwLock<HashMap<u32, HookInfo>>>;

/// Loads compiled policies into the kernel; shared by start-up loading and the gRPC API.
pub struct Runtime {
    maps: SharedMaps,
    ids: Mutex<Ids>,
    registry: HookRegistry,
    btf: Option<PathBuf>,
}

impl Runtime {
    pub fn new(maps: SharedMaps, registry: HookRegistry, btf: Option<PathBuf>) -> Self {
        Self {
            maps,
            ids: Mutex::new(Ids::default()),
            registry,
            btf,
        }
    }

    /// Builds the tables of `plan` and loads them: all or nothing.
    pub fn load(&self, plan: &Plan) -> Result<(Vec<HookInfo>, PolicySensors), String> {
        let tables = {
            let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
            build(plan, &mut ids, &binary_identity).map_err(|e| e.to_string())?
        };
        {
            let mut reg = self.registry.write().unwrap_or_else(|e| e.into_inner());
            for h in &tables.hooks {
                reg.insert(h.id, h.clone());
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
        Ok((
            tables.hooks,
            PolicySensors {
                syscalls,
                others,
                kfuncs,
            },
        ))
    }
}

/// The eBPF objects of one loaded policy: dropping it detaches and frees everything.
#[derive(Debug)]
pub struct PolicySensors {
    syscalls: Option<SyscallSensor>,
    others: Option<HookSensor>,
    kfuncs: Option<KfuncSensor>,
}

impl PolicySensors {
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

    /// Switches a loaded policy between enforce and monitor without reloading it: one write
    /// to each object's `vigil_policy_conf` map, effective for the next hook invocation.
    #[allow(dead_code)] // called by the API's set-mode once it is wired (crates/vigil-api)
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

/// A policy that is loaded and attached.
pub struct LoadedPolicy {
    pub name: String,
    pub file: PathBuf,
    pub hooks: Vec<HookInfo>,
    pub sensor: PolicySensors,
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

/// Loads every policy it can; returns them and logs each failure.
pub fn load_all(files: &[PathBuf], runtime: &Runtime) -> Vec<LoadedPolicy> {
    let mut loaded = Vec::new();
    for file in files {
        match load_one(file, runtime) {
            Ok(p) => {
                tracing::info!(policy = %p.name, file = %p.file.display(), hooks = p.hooks.len(),
                    attached = p.sensor.attached(), "tracing policy loaded");
                loaded.push(p);
            }
            Err(reason) => {
                tracing::error!(file = %file.display(), "tracing policy not loaded: {reason}");
            }
        }
    }
    loaded
}

fn load_one(file: &Path, runtime: &Runtime) -> Result<LoadedPolicy, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read: {e}"))?;
    let policy = vigil_policy::parse_policy(&text, &file.display().to_string())
        .map_err(|errors| errors.to_string())?;
    // The same view of the kernel as `explain` and the gRPC policy manager.
    let plan = vigil_policy::compile(&policy, &crate::policy_cmd::detect_capabilities());
    if !plan.is_loadable() {
        let reasons: Vec<String> = plan
            .refusals
            .iter()
            .map(|r| format!("{}: {}", r.path, r.reason))
            .collect();
        return Err(reasons.join("; "));
    }
    let (hooks, sensor) = runtime.load(&plan)?;
    Ok(LoadedPolicy {
        name: plan.name,
        file: file.to_path_buf(),
        hooks,
        sensor,
    })
}
