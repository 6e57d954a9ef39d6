//! What every policy object (syscall, hooks, kernel-function) has in common: the policy mode
//! in `vigil_policy_conf` and the per-hook / per-selector counters of the engine.

use libbpf_rs::{MapCore, MapFlags, Object};

use crate::abi::*;
use crate::lifecycle::LoadError;
use crate::syscalls::PolicyMode;

/// Switches the object's policy between enforce and monitor: one map write, effective for
/// the next hook invocation.
pub(crate) fn set_mode(object: &Object, mode: PolicyMode) -> Result<(), LoadError> {
    let conf = vigil_policy_conf {
        mode: match mode {
            PolicyMode::Enforce => VIGIL_MODE_ENFORCE,
            PolicyMode::Monitor => VIGIL_MODE_MONITOR,
        },
        pad: 0,
    };
    let map = object
        .maps()
        .find(|m| m.name() == "vigil_policy_conf")
        .ok_or(LoadError::Missing("vigil_policy_conf"))?;
    // SAFETY: ABI structs are plain old data with explicit padding.
    let value = unsafe {
        std::slice::from_raw_parts(
            (&raw const conf).cast::<u8>(),
            size_of::<vigil_policy_conf>(),
        )
    };
    map.update(&0u32.to_ne_bytes(), value, MapFlags::ANY)
        .map_err(|source| LoadError::Map {
            map: "vigil_policy_conf",
            source,
        })
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

fn counters(object: &Object, map: &str, base: u32) -> [u64; VIGIL_HOOK_COUNTERS as usize] {
    let mut out = [0u64; VIGIL_HOOK_COUNTERS as usize];
    if let Some(map) = object.maps().find(|m| m.name() == map) {
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = crate::lifecycle::sum_percpu(&map, base + i as u32);
        }
    }
    out
}
