//! Loads the tracepoint / raw tracepoint / uprobe / usdt hook programs (`bpf/hooks.bpf.c`)
//! and fills their tables. Like the syscall object, one instance per policy, sharing the
//! lifecycle ring buffer, process table and loss counters (map fd reuse); each attachment's
//! cookie is its hook id.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use libbpf_rs::{
    Link, Object, ObjectBuilder, RawTracepointOpts, TracepointCategory, TracepointOpts, UprobeOpts,
};

use crate::abi::*;
use crate::lifecycle::LoadError;
use crate::syscalls::{PolicyMode, SharedMaps, ensure_tracefs};

/// Where a hook attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    /// `tracepoint/<subsystem>/<event>`.
    Tracepoint { subsystem: String, event: String },
    /// `raw_tp/<event>` (the BTF-less raw tracepoint: raw 64-bit arguments).
    RawTracepoint { event: String },
    /// A uprobe at a file offset (USDT probes too, with their semaphore as reference counter).
    /// `retprobe`: a uretprobe at the same place finishes the hook with the return value.
    Uprobe {
        path: PathBuf,
        offset: u64,
        ref_ctr_offset: u64,
        retprobe: bool,
    },
}

impl Attach {
    pub fn describe(&self) -> String {
        match self {
            Self::Tracepoint { subsystem, event } => format!("tracepoint {subsystem}/{event}"),
            Self::RawTracepoint { event } => format!("raw tracepoint {event}"),
            Self::Uprobe { path, offset, .. } => {
                format!("uprobe {}+{offset:#x}", path.display())
            }
        }
    }
}

/// One hook: where it attaches, how its context becomes arguments, the engine's tables.
#[derive(Debug, Clone)]
pub struct PreparedHook {
    pub id: u32,
    pub attach: Attach,
    pub prep: vigil_hook_prep,
    pub config: vigil_hook_cfg,
    pub selectors: Vec<vigil_selector_cfg>,
}

/// Everything the kernel side of one policy's non-syscall hooks needs.
#[derive(Debug, Clone, Default)]
pub struct HookTables {
    pub hooks: Vec<PreparedHook>,
    pub str_eq: Vec<vigil_str_key>,
    pub str_prefix: Vec<vigil_str_key>,
    pub str_postfix: Vec<vigil_str_key>,
    pub binaries: Vec<vigil_bin_key>,
    /// The policy starts in monitor mode (enforcement actions counted, not executed).
    pub monitor: bool,
    /// Pod-scoped: only tasks in the cgroups of the object's scope set run the selectors.
    pub scoped: bool,
    /// The load generation, posted in every record (`vigil_policy_conf.generation`).
    pub generation: u32,
}

impl HookTables {
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }
}

pub struct HookSensor {
    links: Vec<Link>,
    object: Object,
}

impl std::fmt::Debug for HookSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookSensor")
            .field("links", &self.links.len())
            .finish()
    }
}

fn uses(tables: &HookTables, pred: impl Fn(&Attach) -> bool) -> bool {
    tables.hooks.iter().any(|h| pred(&h.attach))
}

use crate::policy_object::bytes;

impl HookSensor {
    /// Pins the links, still owned (see `pin::pin_links_live`).
    pub fn pin_live(&mut self, dir: &std::path::Path) -> Result<usize, crate::pin::PinError> {
        crate::pin::pin_links_live(&mut self.links, dir, "hook")
    }

    /// Pinned links stay attached when this sensor is dropped.
    pub fn disconnect(&mut self) -> usize {
        crate::pin::disconnect_links(&mut self.links)
    }

    pub fn load_shared(
        maps: &SharedMaps,
        tables: &HookTables,
        btf: Option<&Path>,
    ) -> Result<Self, LoadError> {
        if tables
            .hooks
            .iter()
            .any(|h| matches!(h.attach, Attach::Tracepoint { .. }))
        {
            // libbpf finds tracepoint ids in tracefs.
            ensure_tracefs()?;
        }
        let mut builder = ObjectBuilder::default();
        if let Some(btf) = btf {
            builder.btf_custom_path(btf).map_err(LoadError::Open)?;
        }
        let mut open = builder
            .open_memory(crate::HOOKS_OBJECT)
            .map_err(LoadError::Open)?;
        for mut map in open.maps_mut() {
            let name = map.name().to_string_lossy().into_owned();
            if let Some((n, handle)) = maps.by_name(&name) {
                map.reuse_fd(handle.as_fd())
                    .map_err(|source| LoadError::Map { map: n, source })?;
            }
        }
        // Only the programs of kinds this policy uses are loaded: each costs a verification,
        // and the raw tracepoint one needs raw_tp cookies (Linux 6.10+), which older kernels
        // refuse even when no raw tracepoint is hooked.
        let needed = |name: &str| {
            uses(tables, |a| match a {
                Attach::Tracepoint { .. } => name == "vigil_tp",
                Attach::RawTracepoint { .. } => name == "vigil_raw_tp",
                Attach::Uprobe { retprobe, .. } => {
                    name == "vigil_uprobe" || (*retprobe && name == "vigil_uretprobe")
                }
            })
        };
        for mut prog in open.progs_mut() {
            prog.set_autoattach(false);
            let name = prog.name().to_string_lossy().into_owned();
            prog.set_autoload(needed(&name));
        }
        let object = open.load().map_err(LoadError::Load)?;
        let mut sensor = Self {
            links: Vec::new(),
            object,
        };
        sensor.fill(tables)?;
        sensor.attach(tables)?;
        Ok(sensor)
    }

    fn fill(&self, t: &HookTables) -> Result<(), LoadError> {
        let put = |name: &'static str, key: &[u8], value: &[u8]| {
            crate::policy_object::put(&self.object, name, key, value)
        };
        for hook in &t.hooks {
            let id = hook.id.to_ne_bytes();
            put("vigil_hook_prep", &id, bytes(&hook.prep))?;
            crate::policy_object::put_hook(&self.object, hook.id, &hook.config, &hook.selectors)?;
        }
        crate::policy_object::put_value_sets(
            &self.object,
            &crate::policy_object::ValueSets {
                str_eq: &t.str_eq,
                str_prefix: &t.str_prefix,
                str_postfix: &t.str_postfix,
                binaries: &t.binaries,
            },
        )?;
        self.set_mode(if t.monitor {
            PolicyMode::Monitor
        } else {
            PolicyMode::Enforce
        })?;
        crate::policy_object::set_identity(&self.object, t.scoped, t.generation)
    }

    /// The object's cgroup scope set (see `vigil_engine_scope.h`).
    pub fn scope_set(&self) -> Result<crate::policy_object::ScopeSet, LoadError> {
        crate::policy_object::ScopeSet::of(&self.object)
    }

    /// The object's binary and file sets (SameFile refreshes).
    pub fn file_set(&self) -> Result<crate::policy_object::FileSet, LoadError> {
        crate::policy_object::FileSet::of(&self.object)
    }

    /// Scope counters summed over CPUs: [in scope, out of scope].
    pub fn scope_counters(&self) -> [u64; VIGIL_SCOPE_COUNTERS as usize] {
        crate::policy_object::scope_counters(&self.object)
    }

    /// Switches the policy between enforce and monitor (the engine's `vigil_policy_conf`).
    pub fn set_mode(&self, mode: PolicyMode) -> Result<(), LoadError> {
        crate::policy_object::set_mode(&self.object, mode)
    }

    /// The policy's current mode, as the kernel sees it.
    pub fn mode(&self) -> PolicyMode {
        crate::policy_object::mode(&self.object)
    }

    /// Counters of one selector of a hook, summed over CPUs.
    pub fn selector_counters(
        &self,
        hook: u32,
        selector: u32,
    ) -> [u64; VIGIL_HOOK_COUNTERS as usize] {
        crate::policy_object::selector_counters(&self.object, hook, selector)
    }

    fn attach(&mut self, t: &HookTables) -> Result<(), LoadError> {
        let object = &mut self.object;
        let prog = |name: &'static str| {
            object
                .progs_mut()
                .find(|p| p.name() == name)
                .ok_or(LoadError::Missing(name))
        };
        let mut links = Vec::new();
        for hook in &t.hooks {
            let cookie = u64::from(hook.id);
            let failed = |source| LoadError::Attach {
                program: hook.attach.describe(),
                source,
            };
            let link = match &hook.attach {
                Attach::Tracepoint { subsystem, event } => prog("vigil_tp")?
                    .attach_tracepoint_with_opts(
                        TracepointCategory::Custom(subsystem.clone()),
                        event,
                        TracepointOpts {
                            cookie,
                            ..Default::default()
                        },
                    )
                    .map_err(failed)?,
                Attach::RawTracepoint { event } => prog("vigil_raw_tp")?
                    .attach_raw_tracepoint_with_opts(
                        event,
                        RawTracepointOpts {
                            cookie,
                            ..Default::default()
                        },
                    )
                    .map_err(failed)?,
                Attach::Uprobe {
                    path,
                    offset,
                    ref_ctr_offset,
                    retprobe,
                } => {
                    let probe = |program: &'static str, ret: bool| {
                        prog(program)?
                            .attach_uprobe_with_opts(
                                -1,
                                path,
                                *offset as usize,
                                UprobeOpts {
                                    ref_ctr_offset: *ref_ctr_offset as usize,
                                    cookie,
                                    retprobe: ret,
                                    ..Default::default()
                                },
                            )
                            .map_err(failed)
                    };
                    if *retprobe {
                        // The return half first: an entry without its exit would leave
                        // pending state behind.
                        links.push(probe("vigil_uretprobe", true)?);
                    }
                    probe("vigil_uprobe", false)?
                }
            };
            links.push(link);
        }
        self.links = links;
        Ok(())
    }

    pub fn attached(&self) -> usize {
        self.links.len()
    }

    /// Kernel memory of this policy object (its own maps' memlock).
    pub fn kernel_memory_bytes(&self) -> u64 {
        crate::policy_object::kernel_memory_bytes(&self.object)
    }

    /// Per-hook counters summed over CPUs, indexed by `enum vigil_hook_counter`.
    pub fn hook_counters(&self, hook: u32) -> [u64; VIGIL_HOOK_COUNTERS as usize] {
        crate::policy_object::hook_counters(&self.object, hook)
    }
}
