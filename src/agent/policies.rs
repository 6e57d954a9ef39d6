//! The policy runtime of the agent: plans -> kernel tables -> loaded objects, shared by the
//! policies given at start (`--tracing-policy`, `--tracing-policy-dir`, domain `static`) and
//! those added over gRPC; both live in one policy manager (vigil-api). A policy loads
//! completely or not at all; one that fails is reported (log, with every reason) and the
//! agent starts without it.

use std::path::{Path, PathBuf};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use vigil_api::policy::{HookCounters, Kept, Loaded, Loader, no_runtime};
use vigil_bpf::syscalls::{SharedMaps, SyscallSensor};
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
    pub fn load(&self, plan: &Plan) -> Result<(Vec<HookInfo>, SyscallSensor), String> {
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
        let sensor = SyscallSensor::load_shared(&self.maps, &tables.tables, self.btf.as_deref())
            .map_err(|e| e.to_string())?;
        Ok((tables.hooks, sensor))
    }
}

/// A policy that is loaded and attached: its hooks and kernel objects (dropping it
/// detaches everything).
pub struct RuntimePolicy {
    pub hooks: Vec<HookInfo>,
    pub sensor: SyscallSensor,
}

impl Kept for RuntimePolicy {
    fn hook_counters(&self) -> Vec<HookCounters> {
        self.hooks
            .iter()
            .map(|h| {
                let c = self.sensor.hook_counters(h.id);
                HookCounters {
                    hook: h.function_name.clone(),
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

    /// THE call site of the runtime mode switch: the per-policy enforce/monitor switch of
    /// loaded programs (branch `engine`) plugs in here. Until then the mode is recorded
    /// (and reported by ListTracingPolicies) and applies whenever the policy is loaded
    /// again (enable), while the programs already attached keep the mode they loaded in.
    fn set_mode(&self, mode: PolicyMode) -> Result<(), String> {
        tracing::info!(
            mode = ?mode,
            "policy mode recorded; attached programs keep their mode until reloaded"
        );
        Ok(())
    }
}

/// The loader of the policy manager: a plan with hooks goes through the shared runtime.
pub fn loader(runtime: Arc<Runtime>) -> Loader {
    Box::new(move |plan: &Plan| -> Result<Loaded, String> {
        if plan.hooks.is_empty() {
            return no_runtime(plan);
        }
        let (hooks, sensor) = runtime.load(plan)?;
        Ok(Loaded {
            sensors: hooks
                .iter()
                .map(|h| format!("generic_syscall:{}", h.function_name))
                .collect(),
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
