//! Loads kernel-function and LSM hooks (`bpf/kfuncs.bpf.c`): one object per hook, sharing
//! the lifecycle sensor's ring buffer, process table and loss counters like the syscall
//! runtime. The hook id is set in the object's `.rodata` (trampoline programs have no attach
//! cookie on 6.1), and only the program of the chosen mechanism is loaded.
//!
//! Mechanisms: fentry where the kernel allows it (cheaper), kprobe otherwise or when fentry
//! fails for this function (not in BTF, not traceable); fmod_ret for Override on `security_*`
//! functions; BPF LSM for `lsmhooks`. The mechanism actually attached is reported per hook.

use std::os::fd::AsFd;
use std::path::Path;

use libbpf_rs::{Link, Object, ObjectBuilder};

use crate::abi::*;
use crate::lifecycle::LoadError;
use crate::syscalls::{PolicyMode, SharedMaps, SyscallTables};

/// How a kernel-function hook is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KfuncAttach {
    Kprobe,
    /// kprobe + kretprobe (`return: true` without fexit): the entry keeps what it read, the
    /// return finishes the selectors with the return value.
    KprobeRet,
    /// kprobe.multi: one program attached to every such function of the policy, the hook id
    /// from the attach cookie (one object verified instead of one per function).
    KprobeMulti,
    /// fentry, falling back to kprobe if the function cannot take a trampoline.
    Fentry,
    /// fexit (`return: true`): arguments and return value, evaluated at return.
    Fexit,
    /// fmod_ret: the matched selector's Override value replaces the function's return.
    FmodRet,
    /// BPF LSM on hook `lsm/<name>`.
    Lsm,
    /// No kernel-function hooks here: cgroup sock_addr programs on the root cgroup v2
    /// enforce network policies instead (crate::cgroup_sock).
    CgroupSockAddr,
}

impl KfuncAttach {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kprobe => "kprobe",
            Self::KprobeMulti => "kprobe.multi",
            Self::KprobeRet => "kretprobe",
            Self::Fentry => "fentry",
            Self::Fexit => "fexit",
            Self::FmodRet => "fmod_ret",
            Self::Lsm => "lsm",
            Self::CgroupSockAddr => "cgroup_sock_addr",
        }
    }

    fn program(self) -> &'static str {
        match self {
            Self::Kprobe => "vigil_kprobe",
            Self::KprobeMulti => "vigil_kprobe_multi",
            Self::KprobeRet => "vigil_kretprobe",
            Self::Fentry => "vigil_fentry",
            Self::Fexit => "vigil_fexit",
            Self::FmodRet => "vigil_fmod_ret",
            Self::Lsm => "vigil_lsm",
            Self::CgroupSockAddr => "vigil_connect4",
        }
    }
}

/// One hooked kernel function or LSM hook.
#[derive(Debug, Clone)]
pub struct KfuncHook {
    pub id: u32,
    /// Kernel function (`security_file_open`) or LSM hook name (`file_open`).
    pub function: String,
    pub attach: KfuncAttach,
    pub config: vigil_hook_cfg,
    pub selectors: Vec<vigil_selector_cfg>,
}

struct Attached {
    links: Vec<Link>,
    object: Object,
    /// The hooks this object serves (several for kprobe.multi).
    hooks: Vec<u32>,
    mechanism: KfuncAttach,
}

/// The attached hooks of one policy; dropping it detaches them.
pub struct KfuncSensor {
    attached: Vec<Attached>,
}

impl std::fmt::Debug for KfuncSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KfuncSensor")
            .field("attached", &self.mechanisms())
            .finish()
    }
}

impl KfuncSensor {
    /// Loads and attaches every hook of `hooks`; the value sets come from `sets` (its
    /// `hooks` are the policy's syscall hooks, ignored here). All or nothing: the first
    /// failure drops what was attached.
    pub fn load(
        maps: &SharedMaps,
        hooks: &[KfuncHook],
        sets: &SyscallTables,
        btf: Option<&Path>,
    ) -> Result<Self, LoadError> {
        let mut attached = Vec::new();
        let multi: Vec<&KfuncHook> = hooks
            .iter()
            .filter(|h| h.attach == KfuncAttach::KprobeMulti)
            .collect();
        if !multi.is_empty() {
            attached.push(load_multi(maps, &multi, hooks, sets, btf)?);
        }
        for hook in hooks
            .iter()
            .filter(|h| h.attach != KfuncAttach::KprobeMulti)
        {
            let one = match hook.attach {
                KfuncAttach::Fentry => load_one(maps, hook, hooks, sets, btf, KfuncAttach::Fentry)
                    .or_else(|_| load_one(maps, hook, hooks, sets, btf, KfuncAttach::Kprobe)),
                KfuncAttach::CgroupSockAddr => {
                    let (links, object) = crate::cgroup_sock::load_one(maps, hook, btf)?;
                    fill(&object, hooks, sets)?;
                    Ok(Attached {
                        links,
                        object,
                        hooks: vec![hook.id],
                        mechanism: KfuncAttach::CgroupSockAddr,
                    })
                }
                other => load_one(maps, hook, hooks, sets, btf, other),
            }?;
            attached.push(one);
        }
        let sensor = Self { attached };
        if sets.monitor {
            sensor.set_mode(PolicyMode::Monitor)?;
        }
        Ok(sensor)
    }

    pub fn attached(&self) -> usize {
        self.attached.len()
    }

    /// Pins the links, still owned (see `pin::pin_links_live`).
    pub fn pin_live(&mut self, dir: &std::path::Path) -> Result<usize, crate::pin::PinError> {
        let mut n = 0;
        for a in &mut self.attached {
            let prefix = format!("kfunc-{}-{}", a.hooks[0], a.mechanism.name());
            n += crate::pin::pin_links_live(&mut a.links, dir, &prefix)?;
        }
        Ok(n)
    }

    /// Pinned links stay attached when this sensor is dropped.
    pub fn disconnect(&mut self) -> usize {
        self.attached
            .iter_mut()
            .map(|a| crate::pin::disconnect_links(&mut a.links))
            .sum()
    }

    /// The scope set of every hook object (one object per hook).
    pub fn scope_sets(&self) -> Result<Vec<crate::policy_object::ScopeSet>, LoadError> {
        self.attached
            .iter()
            .map(|a| crate::policy_object::ScopeSet::of(&a.object))
            .collect()
    }

    /// The binary and file sets of every hook object (SameFile refreshes).
    pub fn file_sets(&self) -> Result<Vec<crate::policy_object::FileSet>, LoadError> {
        self.attached
            .iter()
            .map(|a| crate::policy_object::FileSet::of(&a.object))
            .collect()
    }

    /// Scope counters of every hook object, summed: [in scope, out of scope].
    pub fn scope_counters(&self) -> [u64; VIGIL_SCOPE_COUNTERS as usize] {
        let mut out = [0; VIGIL_SCOPE_COUNTERS as usize];
        for a in &self.attached {
            for (o, v) in out
                .iter_mut()
                .zip(crate::policy_object::scope_counters(&a.object))
            {
                *o += v;
            }
        }
        out
    }

    /// (hook id, mechanism attached) per hook.
    pub fn mechanisms(&self) -> Vec<(u32, &'static str)> {
        self.attached
            .iter()
            .flat_map(|a| a.hooks.iter().map(|&h| (h, a.mechanism.name())))
            .collect()
    }

    /// Per-hook counters summed over CPUs, indexed by `enum vigil_hook_counter`.
    pub fn hook_counters(&self, hook: u32) -> [u64; VIGIL_HOOK_COUNTERS as usize] {
        self.sum(hook, |o| crate::policy_object::hook_counters(o, hook))
    }

    /// Per-selector counters of a hook summed over CPUs.
    pub fn selector_counters(
        &self,
        hook: u32,
        selector: u32,
    ) -> [u64; VIGIL_HOOK_COUNTERS as usize] {
        self.sum(hook, |o| {
            crate::policy_object::selector_counters(o, hook, selector)
        })
    }

    fn sum(
        &self,
        hook: u32,
        of: impl Fn(&Object) -> [u64; VIGIL_HOOK_COUNTERS as usize],
    ) -> [u64; VIGIL_HOOK_COUNTERS as usize] {
        let mut out = [0u64; VIGIL_HOOK_COUNTERS as usize];
        for a in self.attached.iter().filter(|a| a.hooks.contains(&hook)) {
            for (o, v) in out.iter_mut().zip(of(&a.object)) {
                *o += v;
            }
        }
        out
    }

    /// memlock of the maps the policy's objects own (not the shared lifecycle maps).
    pub fn kernel_memory_bytes(&self) -> u64 {
        self.attached
            .iter()
            .map(|a| crate::policy_object::kernel_memory_bytes(&a.object))
            .sum()
    }

    /// Switches every hook object of the policy between enforce and monitor.
    pub fn set_mode(&self, mode: PolicyMode) -> Result<(), LoadError> {
        for a in &self.attached {
            crate::policy_object::set_mode(&a.object, mode)?;
        }
        Ok(())
    }

    /// The policy's mode as the kernel sees it (all objects are switched together).
    pub fn mode(&self) -> PolicyMode {
        self.attached.first().map_or(PolicyMode::Enforce, |a| {
            crate::policy_object::mode(&a.object)
        })
    }
}

fn load_one(
    maps: &SharedMaps,
    hook: &KfuncHook,
    all: &[KfuncHook],
    sets: &SyscallTables,
    btf: Option<&Path>,
    how: KfuncAttach,
) -> Result<Attached, LoadError> {
    let mut builder = ObjectBuilder::default();
    if let Some(btf) = btf {
        builder.btf_custom_path(btf).map_err(LoadError::Open)?;
    }
    // Network arguments need the larger object (kfuncs_net.bpf.c); the others keep the
    // smaller one.
    let object = if needs_net(hook) {
        crate::KFUNCS_NET_OBJECT
    } else {
        crate::KFUNCS_OBJECT
    };
    let mut open = builder.open_memory(object).map_err(LoadError::Open)?;
    for mut map in open.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if let Some((n, handle)) = maps.by_name(&name) {
            map.reuse_fd(handle.as_fd())
                .map_err(|source| LoadError::Map { map: n, source })?;
        } else if name.ends_with(".rodata") {
            // The only .rodata variable is `vigil_hook_id`.
            let data = map
                .initial_value_mut()
                .ok_or(LoadError::Missing("kfuncs .rodata"))?;
            if data.len() < 4 {
                return Err(LoadError::Missing("vigil_hook_id in .rodata"));
            }
            data[..4].copy_from_slice(&hook.id.to_ne_bytes());
        }
    }
    let ima = ima_program(hook, how);
    for mut prog in open.progs_mut() {
        prog.set_autoattach(false);
        let keep = prog.name() == how.program()
            || (how == KfuncAttach::KprobeRet && prog.name() == KfuncAttach::Kprobe.program())
            || Some(prog.name().to_str().unwrap_or_default()) == ima;
        prog.set_autoload(keep);
        if !keep {
            continue;
        }
        match how {
            KfuncAttach::Kprobe
            | KfuncAttach::KprobeRet
            | KfuncAttach::KprobeMulti
            | KfuncAttach::CgroupSockAddr => {}
            // libbpf adds the `bpf_lsm_` prefix of LSM hooks itself.
            KfuncAttach::Fentry | KfuncAttach::Fexit | KfuncAttach::FmodRet | KfuncAttach::Lsm => {
                prog.set_attach_target(0, Some(hook.function.clone()))
                    .map_err(LoadError::Open)?
            }
        }
    }
    let object = open.load().map_err(LoadError::Load)?;
    fill(&object, all, sets)?;
    let attach_err = |how: KfuncAttach| {
        let function = hook.function.clone();
        move |source| LoadError::Attach {
            program: format!("{} on {function}", how.name()),
            source,
        }
    };
    let mut links = Vec::new();
    if let Some(ima) = ima {
        // Attached before the engine's program: the kernel runs a hook's programs newest
        // first, and the digest is computed only for what the engine posted.
        let prog = object
            .progs_mut()
            .find(|p| p.name() == ima)
            .ok_or(LoadError::Missing("kfuncs imaHash program"))?;
        links.push(prog.attach_lsm().map_err(|source| LoadError::Attach {
            program: format!("lsm.s (imaHash) on {}", hook.function),
            source,
        })?);
    }
    if how == KfuncAttach::KprobeRet {
        // The entry first: a return without its entry finds nothing pending.
        let entry = object
            .progs_mut()
            .find(|p| p.name() == KfuncAttach::Kprobe.program())
            .ok_or(LoadError::Missing("kfuncs kprobe program"))?;
        links.push(
            entry
                .attach_kprobe(false, &hook.function)
                .map_err(attach_err(how))?,
        );
    }
    let prog = object
        .progs_mut()
        .find(|p| p.name() == how.program())
        .ok_or(LoadError::Missing("kfuncs program"))?;
    let link = match how {
        KfuncAttach::Kprobe => prog.attach_kprobe(false, &hook.function),
        KfuncAttach::KprobeRet => prog.attach_kprobe(true, &hook.function),
        KfuncAttach::KprobeMulti => return Err(LoadError::Missing("load_multi")),
        KfuncAttach::Fentry | KfuncAttach::Fexit | KfuncAttach::FmodRet => prog.attach_trace(),
        KfuncAttach::Lsm => prog.attach_lsm(),
        KfuncAttach::CgroupSockAddr => return Err(LoadError::Missing("cgroup_sock::load_one")),
    }
    .map_err(attach_err(how))?;
    links.push(link);
    Ok(Attached {
        links,
        object,
        hooks: vec![hook.id],
        mechanism: how,
    })
}

/// The sleepable program that computes Post imaHash digests for `hook`, if a selector asks
/// for them: by the hook's first argument (a binprm or a file).
fn ima_program(hook: &KfuncHook, how: KfuncAttach) -> Option<&'static str> {
    let wanted = how == KfuncAttach::Lsm
        && hook
            .selectors
            .iter()
            .any(|s| s.flags & VIGIL_SEL_IMA_HASH != 0);
    wanted.then(|| {
        if hook.function.starts_with("bprm_") {
            "vigil_lsm_ima_bprm"
        } else {
            "vigil_lsm_ima_file"
        }
    })
}

/// One kprobe.multi object for `multi` (every kprobe.multi hook of the policy): the hook id of
/// each function is its attach cookie.
fn load_multi(
    maps: &SharedMaps,
    multi: &[&KfuncHook],
    all: &[KfuncHook],
    sets: &SyscallTables,
    btf: Option<&Path>,
) -> Result<Attached, LoadError> {
    let mut builder = ObjectBuilder::default();
    if let Some(btf) = btf {
        builder.btf_custom_path(btf).map_err(LoadError::Open)?;
    }
    let object = if multi.iter().any(|h| needs_net(h)) {
        crate::KFUNCS_NET_OBJECT
    } else {
        crate::KFUNCS_OBJECT
    };
    let mut open = builder.open_memory(object).map_err(LoadError::Open)?;
    for mut map in open.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if let Some((n, handle)) = maps.by_name(&name) {
            map.reuse_fd(handle.as_fd())
                .map_err(|source| LoadError::Map { map: n, source })?;
        }
    }
    let how = KfuncAttach::KprobeMulti;
    for mut prog in open.progs_mut() {
        prog.set_autoattach(false);
        prog.set_autoload(prog.name() == how.program());
    }
    let object = open.load().map_err(LoadError::Load)?;
    fill(&object, all, sets)?;
    let prog = object
        .progs_mut()
        .find(|p| p.name() == how.program())
        .ok_or(LoadError::Missing("kfuncs kprobe.multi program"))?;
    let link = prog
        .attach_kprobe_multi_with_opts(libbpf_rs::KprobeMultiOpts {
            symbols: multi.iter().map(|h| h.function.clone()).collect(),
            cookies: multi.iter().map(|h| u64::from(h.id)).collect(),
            retprobe: false,
            ..Default::default()
        })
        .map_err(|source| LoadError::Attach {
            program: format!(
                "kprobe.multi on {}",
                multi
                    .iter()
                    .map(|h| h.function.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            source,
        })?;
    Ok(Attached {
        links: vec![link],
        object,
        hooks: multi.iter().map(|h| h.id).collect(),
        mechanism: how,
    })
}

/// Whether `hook` reads network arguments (the larger object, kfuncs_net.bpf.c).
fn needs_net(hook: &KfuncHook) -> bool {
    hook.config.arg_kind[..(hook.config.nargs as usize).min(VIGIL_MAX_ARGS as usize)]
        .iter()
        .any(|&k| (VIGIL_ARG_SOCK..=VIGIL_ARG_SOCKINFO).contains(&u32::from(k)))
}

fn fill(object: &Object, hooks: &[KfuncHook], t: &SyscallTables) -> Result<(), LoadError> {
    for hook in hooks {
        crate::policy_object::put_hook(object, hook.id, &hook.config, &hook.selectors)?;
    }
    crate::policy_object::put_value_sets(object, &t.value_sets())?;
    crate::policy_object::set_identity(object, t.scoped, t.generation)
}
