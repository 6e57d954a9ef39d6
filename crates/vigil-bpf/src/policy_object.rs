//! What every policy object (syscall, hooks, kernel-function) has in common: the policy mode
//! in `vigil_policy_conf` and the per-hook / per-selector counters of the engine.

use std::os::fd::AsFd;

use libbpf_rs::{MapCore, MapFlags, Object};

use crate::abi::*;
use crate::lifecycle::LoadError;
use crate::syscalls::PolicyMode;

/// An ABI struct as the bytes of a map key or value.
pub(crate) fn bytes<T>(v: &T) -> &[u8] {
    // SAFETY: ABI structs are plain old data with explicit padding.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// Writes one entry of the object's map `name`.
pub(crate) fn put(
    object: &Object,
    name: &'static str,
    key: &[u8],
    value: &[u8],
) -> Result<(), LoadError> {
    object
        .maps()
        .find(|m| m.name() == name)
        .ok_or(LoadError::Missing(name))?
        .update(key, value, MapFlags::ANY)
        .map_err(|source| LoadError::Map { map: name, source })
}

/// A hook's configuration and selectors, as the engine reads them.
pub(crate) fn put_hook(
    object: &Object,
    id: u32,
    config: &vigil_hook_cfg,
    selectors: &[vigil_selector_cfg],
) -> Result<(), LoadError> {
    put(object, "vigil_sys_hooks", &id.to_ne_bytes(), bytes(config))?;
    for (i, sel) in selectors.iter().enumerate() {
        let idx = id * VIGIL_MAX_SELECTORS + i as u32;
        put(
            object,
            "vigil_sys_selectors",
            &idx.to_ne_bytes(),
            bytes(sel),
        )?;
    }
    Ok(())
}

/// The value sets selectors refer to by set id: strings (exact, prefix, reversed postfix)
/// and binaries (device + inode).
pub(crate) struct ValueSets<'a> {
    pub str_eq: &'a [vigil_str_key],
    pub str_prefix: &'a [vigil_str_key],
    pub str_postfix: &'a [vigil_str_key],
    pub binaries: &'a [vigil_bin_key],
}

pub(crate) fn put_value_sets(object: &Object, sets: &ValueSets<'_>) -> Result<(), LoadError> {
    for (name, keys) in [
        ("vigil_str_eq", sets.str_eq),
        ("vigil_str_prefix", sets.str_prefix),
        ("vigil_str_postfix", sets.str_postfix),
    ] {
        for k in keys {
            put(object, name, bytes(k), &[1])?;
        }
    }
    for k in sets.binaries {
        put(object, "vigil_bin_set", bytes(k), &[1])?;
    }
    Ok(())
}

/// The object's `vigil_policy_conf`, changed by `change` (a read-modify-write: the mode and
/// the scope flag are switched independently).
fn update_conf(
    object: &Object,
    change: impl FnOnce(&mut vigil_policy_conf),
) -> Result<(), LoadError> {
    const MAP: &str = "vigil_policy_conf";
    let map = object
        .maps()
        .find(|m| m.name() == MAP)
        .ok_or(LoadError::Missing(MAP))?;
    let mut conf = vigil_policy_conf::default();
    if let Some(v) = map
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(|source| LoadError::Map { map: MAP, source })?
        && v.len() == size_of::<vigil_policy_conf>()
    {
        // SAFETY: the value has the struct's size and the struct is plain old data.
        conf = unsafe { std::ptr::read_unaligned(v.as_ptr().cast()) };
    }
    change(&mut conf);
    map.update(&0u32.to_ne_bytes(), bytes(&conf), MapFlags::ANY)
        .map_err(|source| LoadError::Map { map: MAP, source })
}

/// Switches the object's policy between enforce and monitor: one map write, effective for
/// the next hook invocation.
pub(crate) fn set_mode(object: &Object, mode: PolicyMode) -> Result<(), LoadError> {
    update_conf(object, |c| {
        c.mode = match mode {
            PolicyMode::Enforce => VIGIL_MODE_ENFORCE,
            PolicyMode::Monitor => VIGIL_MODE_MONITOR,
        }
    })
}

/// Restricts the object to the cgroups of its scope set (set before attaching: a scoped
/// policy never runs unscoped) and gives it its load generation (posted in its records).
pub(crate) fn set_identity(
    object: &Object,
    scoped: bool,
    generation: u32,
) -> Result<(), LoadError> {
    update_conf(object, |c| {
        c.scoped = u32::from(scoped);
        c.generation = generation;
    })
}

/// An owned handle of the object's map `name` (it outlives the borrow of the object).
fn map_handle(object: &Object, name: &'static str) -> Result<libbpf_rs::MapHandle, LoadError> {
    let map = object
        .maps()
        .find(|m| m.name() == name)
        .ok_or(LoadError::Missing(name))?;
    libbpf_rs::MapHandle::try_from(&map).map_err(|source| LoadError::Map { map: name, source })
}

/// The cgroup ids a scoped object applies to, as an owned map handle (user space keeps it
/// current while the policy is loaded).
#[derive(Debug)]
pub struct ScopeSet(libbpf_rs::MapHandle);

impl ScopeSet {
    pub(crate) fn of(object: &Object) -> Result<Self, LoadError> {
        map_handle(object, "vigil_scope_cgroups").map(Self)
    }

    pub fn insert(&self, cgroup_id: u64) -> Result<(), String> {
        self.0
            .update(&cgroup_id.to_ne_bytes(), &[1], MapFlags::ANY)
            .map_err(|e| format!("adding cgroup {cgroup_id} to the policy scope: {e}"))
    }

    /// Removing an id that is not there is not an error.
    pub fn remove(&self, cgroup_id: u64) {
        let _ = self.0.delete(&cgroup_id.to_ne_bytes());
    }
}

/// An object's binary and file sets (device + inode), as an owned map handle: the agent
/// keeps the SameFile entries current while the policy is loaded.
#[derive(Debug)]
pub struct FileSet(libbpf_rs::MapHandle);

impl FileSet {
    pub(crate) fn of(object: &Object) -> Result<Self, LoadError> {
        map_handle(object, "vigil_bin_set").map(Self)
    }

    pub fn insert(&self, key: &vigil_bin_key) -> Result<(), String> {
        self.0
            .update(bytes(key), &[1], MapFlags::ANY)
            .map_err(|e| format!("adding inode {} to file set {}: {e}", key.ino, key.set_id))
    }

    /// Removing a key that is not there is not an error.
    pub fn remove(&self, key: &vigil_bin_key) {
        let _ = self.0.delete(bytes(key));
    }
}

/// The object's scope counters summed over CPUs: [in scope, out of scope].
pub(crate) fn scope_counters(object: &Object) -> [u64; VIGIL_SCOPE_COUNTERS as usize] {
    counters(object, "vigil_scope_counters", 0)
}

/// The object's current mode, as the kernel sees it.
pub(crate) fn mode(object: &Object) -> PolicyMode {
    let monitor = object
        .maps()
        .find(|m| m.name() == "vigil_policy_conf")
        .and_then(|m| m.lookup(&0u32.to_ne_bytes(), MapFlags::ANY).ok().flatten())
        .is_some_and(|v| v.first().copied() == Some(VIGIL_MODE_MONITOR as u8));
    if monitor {
        PolicyMode::Monitor
    } else {
        PolicyMode::Enforce
    }
}

/// Per-hook counters summed over CPUs, indexed by `enum vigil_hook_counter`.
pub(crate) fn hook_counters(object: &Object, hook: u32) -> [u64; VIGIL_HOOK_COUNTERS as usize] {
    counters(object, "vigil_sys_counters", hook * VIGIL_HOOK_COUNTERS)
}

/// Per-selector counters summed over CPUs, indexed by `enum vigil_hook_counter`.
pub(crate) fn selector_counters(
    object: &Object,
    hook: u32,
    selector: u32,
) -> [u64; VIGIL_HOOK_COUNTERS as usize] {
    let base = (hook * VIGIL_MAX_SELECTORS + selector) * VIGIL_HOOK_COUNTERS;
    counters(object, "vigil_sel_counters", base)
}

fn counters<const N: usize>(object: &Object, map: &str, base: u32) -> [u64; N] {
    let mut out = [0u64; N];
    if let Some(map) = object.maps().find(|m| m.name() == map) {
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = crate::lifecycle::sum_percpu(&map, base + i as u32);
        }
    }
    out
}

/// Kernel memory of a policy object: the memlock of its own maps as the kernel reports it
/// in fdinfo (what Tetragon's `kernel_memory_bytes` sums); the maps shared with the
/// lifecycle sensor ([`crate::syscalls::SharedMaps`]) are not counted.
pub(crate) fn kernel_memory_bytes(object: &Object) -> u64 {
    use crate::syscalls::SHARED_MAP_NAMES as SHARED;
    object
        .maps()
        .filter(|m| !SHARED.iter().any(|s| m.name() == *s))
        .filter_map(|m| {
            use std::os::fd::AsRawFd;
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", m.as_fd().as_raw_fd()))
                    .ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}
