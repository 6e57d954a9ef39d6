//! Loads the syscall-hook policy runtime (`bpf/syscalls.bpf.c`) and fills its tables.
//!
//! The object shares the lifecycle sensor's ring buffer, process table and loss counters
//! (map fd reuse): policy events are ordered with exec and exit events and find the
//! process identity the lifecycle programs maintain.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use libbpf_rs::{Link, MapHandle, Object, ObjectBuilder, TracepointCategory, TracepointOpts};

use crate::abi::*;
use crate::lifecycle::{LifecycleSensor, LoadError};

/// One hooked syscall: its tracepoint name (`openat` for `syscalls:sys_enter_openat`), its
/// argument readers and its selectors.
#[derive(Debug, Clone)]
pub struct SyscallHook {
    pub id: u32,
    pub syscall: String,
    pub config: vigil_hook_cfg,
    pub selectors: Vec<vigil_selector_cfg>,
}

/// Everything the kernel side needs, as plain ABI values (built by the policy runtime).
#[derive(Debug, Clone, Default)]
pub struct SyscallTables {
    pub hooks: Vec<SyscallHook>,
    pub str_eq: Vec<vigil_str_key>,
    pub str_prefix: Vec<vigil_str_key>,
    pub str_postfix: Vec<vigil_str_key>,
    pub binaries: Vec<vigil_bin_key>,
    /// (ia32 syscall number, hook id): 32-bit calls reach hooks through raw_syscalls.
    pub ia32: Vec<(u32, u32)>,
    /// The policy starts in monitor mode (enforcement actions counted, not executed).
    pub monitor: bool,
    /// Pod-scoped: only tasks in the cgroups of the object's scope set run the selectors.
    pub scoped: bool,
    /// The load generation, posted in every record (`vigil_policy_conf.generation`).
    pub generation: u32,
}

/// A policy's mode in the kernel: enforce, or monitor (report what would be enforced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    Enforce,
    Monitor,
}

impl SyscallTables {
    pub(crate) fn value_sets(&self) -> crate::policy_object::ValueSets<'_> {
        crate::policy_object::ValueSets {
            str_eq: &self.str_eq,
            str_prefix: &self.str_prefix,
            str_postfix: &self.str_postfix,
            binaries: &self.binaries,
        }
    }
}

impl SyscallHook {
    /// The hook completes at the paired `sys_exit_<name>` tracepoint.
    pub fn pairs_exit(&self) -> bool {
        self.config.flags & VIGIL_HOOK_EXIT != 0
    }

    /// A 32-bit call of this hook can be judged whole at its exit (`VIGIL_IA32_AT_EXIT`):
    /// an open-like call, whose arguments are plain values and user strings that the call
    /// reads and does not change, and whose exit the hook needs anyway.
    pub fn ia32_at_exit(&self) -> bool {
        let c = &self.config;
        let plain = |kind: u8| {
            matches!(
                u32::from(kind),
                VIGIL_ARG_INT
                    | VIGIL_ARG_UINT32
                    | VIGIL_ARG_INT64
                    | VIGIL_ARG_UINT64
                    | VIGIL_ARG_STRING
            )
        };
        self.pairs_exit()
            && c.flags & VIGIL_HOOK_FD_PATH != 0
            && c.flags & VIGIL_HOOK_RET_COPY == 0
            && !self.syscall.starts_with("exec")
            && c.arg_kind.iter().take(c.nargs as usize).all(|k| plain(*k))
    }
}

pub struct SyscallSensor {
    links: Vec<Link>,
    object: Object,
}

impl std::fmt::Debug for SyscallSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyscallSensor")
            .field("links", &self.links.len())
            .finish()
    }
}

use crate::policy_object::bytes;

/// The tracefs directory where syscall tracepoints are listed, mounting tracefs if needed
/// (libbpf resolves tracepoint ids there).
pub fn ensure_tracefs() -> Result<PathBuf, LoadError> {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(dir).join("events").is_dir() {
            return Ok(PathBuf::from(dir));
        }
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid C strings; mount(2) has no memory preconditions.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(LoadError::Tracefs(std::io::Error::last_os_error()));
    }
    Ok(PathBuf::from("/sys/kernel/tracing"))
}

/// The lifecycle maps a policy object shares (ring buffer, process table, loss counters):
/// owned fds, so that policies can be loaded from any thread while the agent runs.
#[derive(Debug)]
pub struct SharedMaps {
    events: MapHandle,
    procs: MapHandle,
    counters: MapHandle,
    /// TrackSock's socket -> process map, one for every policy object (made here, not by
    /// the lifecycle object, which has no use for it).
    socktrack: MapHandle,
}

/// Names, in the policy objects, of the maps shared with the lifecycle sensor.
pub(crate) const SHARED_MAP_NAMES: [&str; 3] = ["vigil_events", "vigil_procs", "vigil_counters"];
const SOCKTRACK: &str = "vigil_socktrack";

impl SharedMaps {
    /// The shared map a policy object's map `name` must reuse, if it is one.
    pub fn by_name(&self, name: &str) -> Option<(&'static str, &MapHandle)> {
        let [events, procs, counters] = SHARED_MAP_NAMES;
        [
            (events, &self.events),
            (procs, &self.procs),
            (counters, &self.counters),
        ]
        .into_iter()
        .chain([(SOCKTRACK, &self.socktrack)])
        .find(|(n, _)| *n == name)
    }

    pub fn of(lifecycle: &LifecycleSensor) -> Result<Self, LoadError> {
        Ok(Self {
            events: lifecycle.events()?,
            procs: lifecycle.process_table_handle()?,
            counters: lifecycle.counters_handle()?,
            socktrack: MapHandle::create(
                libbpf_rs::MapType::LruHash,
                Some(SOCKTRACK),
                8,
                std::mem::size_of::<crate::abi::vigil_proc_key>() as u32,
                crate::abi::VIGIL_SOCKTRACK_MAX,
                &libbpf_sys::bpf_map_create_opts {
                    sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
                    ..Default::default()
                },
            )
            .map_err(|source| LoadError::Map {
                map: SOCKTRACK,
                source,
            })?,
        })
    }
}

impl SyscallSensor {
    /// Pins the links, still owned (see `pin::pin_links_live`).
    pub fn pin_live(&mut self, dir: &std::path::Path) -> Result<usize, crate::pin::PinError> {
        crate::pin::pin_links_live(&mut self.links, dir, "syscall")
    }

    /// Pinned links stay attached when this sensor is dropped.
    pub fn disconnect(&mut self) -> usize {
        crate::pin::disconnect_links(&mut self.links)
    }

    pub fn load(
        lifecycle: &LifecycleSensor,
        tables: &SyscallTables,
        btf: Option<&Path>,
    ) -> Result<Self, LoadError> {
        Self::load_shared(&SharedMaps::of(lifecycle)?, tables, btf)
    }

    pub fn load_shared(
        maps: &SharedMaps,
        tables: &SyscallTables,
        btf: Option<&Path>,
    ) -> Result<Self, LoadError> {
        let tracefs = ensure_tracefs()?;
        for hook in &tables.hooks {
            let dir = tracefs.join(format!("events/syscalls/sys_enter_{}", hook.syscall));
            let exit = tracefs.join(format!("events/syscalls/sys_exit_{}", hook.syscall));
            if !dir.is_dir() || (hook.pairs_exit() && !exit.is_dir()) {
                return Err(LoadError::NoSyscallTracepoint(hook.syscall.clone()));
            }
        }
        let mut builder = ObjectBuilder::default();
        if let Some(btf) = btf {
            builder.btf_custom_path(btf).map_err(LoadError::Open)?;
        }
        let mut open = builder
            .open_memory(crate::SYSCALLS_OBJECT)
            .map_err(LoadError::Open)?;
        let shared = [
            ("vigil_events", &maps.events),
            ("vigil_procs", &maps.procs),
            ("vigil_counters", &maps.counters),
        ];
        for mut map in open.maps_mut() {
            let name = map.name().to_string_lossy().into_owned();
            if let Some((n, handle)) = shared.iter().find(|(n, _)| *n == name) {
                map.reuse_fd(handle.as_fd())
                    .map_err(|source| LoadError::Map { map: n, source })?;
            }
        }
        for mut prog in open.progs_mut() {
            prog.set_autoattach(false);
        }
        let object = open.load().map_err(LoadError::Load)?;
        let sensor = Self::fill(object, tables)?;
        Ok(sensor)
    }

    fn fill(object: Object, t: &SyscallTables) -> Result<Self, LoadError> {
        let put = |name: &'static str, key: &[u8], value: &[u8]| {
            crate::policy_object::put(&object, name, key, value)
        };
        for hook in &t.hooks {
            crate::policy_object::put_hook(&object, hook.id, &hook.config, &hook.selectors)?;
        }
        crate::policy_object::put_value_sets(&object, &t.value_sets())?;
        let ia32_hook = |id: u32| t.hooks.iter().find(|h| h.id == id);
        for (nr, id) in &t.ia32 {
            let value = if ia32_hook(*id).is_some_and(SyscallHook::ia32_at_exit) {
                id | VIGIL_IA32_AT_EXIT
            } else {
                *id
            };
            put("vigil_ia32_hooks", &nr.to_ne_bytes(), &value.to_ne_bytes())?;
        }
        let conf = vigil_policy_conf {
            mode: if t.monitor {
                VIGIL_MODE_MONITOR
            } else {
                VIGIL_MODE_ENFORCE
            },
            generation: t.generation,
            scoped: u32::from(t.scoped),
            pad2: 0,
        };
        put("vigil_policy_conf", &0u32.to_ne_bytes(), bytes(&conf))?;
        let mut links = Vec::new();
        let ia32_exit = t
            .ia32
            .iter()
            .any(|(_, id)| ia32_hook(*id).is_some_and(SyscallHook::pairs_exit));
        let ia32_enter = t
            .ia32
            .iter()
            .any(|(_, id)| !ia32_hook(*id).is_some_and(SyscallHook::ia32_at_exit));
        for (program, event, wanted) in [
            ("vigil_sys_enter_ia32", "sys_enter", ia32_enter),
            ("vigil_sys_exit_ia32", "sys_exit", ia32_exit),
        ] {
            if !wanted {
                continue;
            }
            let prog = object
                .progs_mut()
                .find(|p| p.name() == program)
                .ok_or(LoadError::Missing(program))?;
            // tp_btf programs: attached to the raw tracepoint their section names.
            let link = prog.attach().map_err(|source| LoadError::Attach {
                program: format!("{program} on the {event} raw tracepoint"),
                source,
            })?;
            links.push(link);
        }
        for (program, phase) in [("vigil_sys_enter", "enter"), ("vigil_sys_exit", "exit")] {
            let prog = object
                .progs_mut()
                .find(|p| p.name() == program)
                .ok_or(LoadError::Missing(program))?;
            for hook in &t.hooks {
                if phase == "exit" && !hook.pairs_exit() {
                    continue;
                }
                let opts = TracepointOpts {
                    cookie: u64::from(hook.id),
                    ..Default::default()
                };
                let link = prog
                    .attach_tracepoint_with_opts(
                        TracepointCategory::Custom("syscalls".into()),
                        format!("sys_{phase}_{}", hook.syscall),
                        opts,
                    )
                    .map_err(|source| LoadError::Attach {
                        program: format!("{program} on syscalls:sys_{phase}_{}", hook.syscall),
                        source,
                    })?;
                links.push(link);
            }
        }
        Ok(Self { links, object })
    }

    /// Switches the policy between enforce and monitor: one map write, effective for the
    /// next hook invocation.
    pub fn set_mode(&self, mode: PolicyMode) -> Result<(), LoadError> {
        crate::policy_object::set_mode(&self.object, mode)
    }

    /// The policy's current mode, as the kernel sees it.
    pub fn mode(&self) -> PolicyMode {
        crate::policy_object::mode(&self.object)
    }

    /// Per-selector counters summed over CPUs, indexed by `enum vigil_hook_counter`.
    pub fn selector_counters(
        &self,
        hook: u32,
        selector: u32,
    ) -> [u64; VIGIL_HOOK_COUNTERS as usize] {
        crate::policy_object::selector_counters(&self.object, hook, selector)
    }

    pub fn attached(&self) -> usize {
        self.links.len()
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

    /// Kernel memory of this policy object (see [`crate::policy_object::kernel_memory_bytes`]).
    pub fn kernel_memory_bytes(&self) -> u64 {
        crate::policy_object::kernel_memory_bytes(&self.object)
    }

    /// Per-hook counters summed over CPUs, indexed by `enum vigil_hook_counter`.
    pub fn hook_counters(&self, hook: u32) -> [u64; VIGIL_HOOK_COUNTERS as usize] {
        crate::policy_object::hook_counters(&self.object, hook)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(syscall: &str, flags: u32, kinds: &[u32]) -> SyscallHook {
        let mut config = vigil_hook_cfg {
            nargs: kinds.len() as u32,
            flags,
            ..Default::default()
        };
        for (slot, kind) in config.arg_kind.iter_mut().zip(kinds) {
            *slot = *kind as u8;
        }
        SyscallHook {
            id: 1,
            syscall: syscall.into(),
            config,
            selectors: Vec::new(),
        }
    }

    #[test]
    fn only_open_like_hooks_of_plain_arguments_are_judged_at_the_ia32_exit() {
        let open = VIGIL_HOOK_EXIT | VIGIL_HOOK_FD_PATH;
        let path = [VIGIL_ARG_INT, VIGIL_ARG_STRING, VIGIL_ARG_INT];
        assert!(hook("openat", open, &path).ia32_at_exit());
        // Entry-only hooks keep the entry program; so do calls whose memory or file table
        // the call itself changes (exec replaces the image; an fd argument may be closed).
        assert!(!hook("openat", 0, &path).ia32_at_exit());
        assert!(!hook("unlinkat", VIGIL_HOOK_EXIT, &path).ia32_at_exit());
        assert!(!hook("execve", open, &[VIGIL_ARG_STRING]).ia32_at_exit());
        assert!(!hook("openat", open, &[VIGIL_ARG_FD, VIGIL_ARG_STRING]).ia32_at_exit());
        assert!(!hook("openat", open, &[VIGIL_ARG_BUF]).ia32_at_exit());
        assert!(!hook("openat", open | VIGIL_HOOK_RET_COPY, &path).ia32_at_exit());
    }
}
