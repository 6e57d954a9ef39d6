//! `--cgroup-rate`: the user-space view of the lifecycle programs' per-cgroup, per-CPU event
//! counts (`vigil_cgroup_rate`, bpf/include/vigil_cgroup_rate.h). The kernel starts
//! throttling a cgroup; the agent reads these counts to decide when it may stop, and clears
//! `throttled` to stop it.

use std::mem::size_of;

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::abi::vigil_rate_value;

/// `--cgroup-rate N,interval`: at most `events` exec and exit events per `interval_ns` per
/// cgroup on one CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupRate {
    pub events: u32,
    pub interval_ns: u64,
}

/// Cgroups the kernel tracks at most (Tetragon's size); the events of more pass unthrottled.
pub const TRACKED_CGROUPS: u32 = 32768;

/// The per-CPU counts of one cgroup.
pub type PerCpu = Vec<vigil_rate_value>;

/// Handle on the kernel's count table.
#[derive(Debug)]
pub struct CgroupRateMap {
    pub(crate) map: MapHandle,
}

fn decode(bytes: &[u8]) -> vigil_rate_value {
    let mut v = vigil_rate_value::default();
    if bytes.len() >= size_of::<vigil_rate_value>() {
        // SAFETY: the length is checked and vigil_rate_value is five u64s (any bits valid).
        v = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    }
    v
}

fn encode(v: &vigil_rate_value) -> Vec<u8> {
    [v.curr, v.prev, v.window, v.rate, v.throttled]
        .iter()
        .flat_map(|x| x.to_ne_bytes())
        .collect()
}

impl CgroupRateMap {
    /// The counts of cgroup `id` on every CPU; `None` when the kernel does not track it.
    pub fn get(&self, id: u64) -> Option<PerCpu> {
        match self.map.lookup_percpu(&id.to_ne_bytes(), MapFlags::ANY) {
            Ok(Some(cpus)) => Some(cpus.iter().map(|b| decode(b)).collect()),
            _ => None,
        }
    }

    /// Ends throttling of cgroup `id` on every CPU (the counts are written back as read:
    /// events counted meanwhile are lost to the estimate, which only delays a new throttle
    /// by those events).
    pub fn clear_throttled(&self, id: u64, mut cpus: PerCpu) -> Result<(), libbpf_rs::Error> {
        for v in &mut cpus {
            v.throttled = 0;
        }
        let values: Vec<Vec<u8>> = cpus.iter().map(encode).collect();
        self.map
            .update_percpu(&id.to_ne_bytes(), &values, MapFlags::EXIST)
    }

    /// Forgets the cgroups whose every CPU window started before `before_ns` (boot-clock
    /// ns), except those in `keep`; returns how many went.
    pub fn remove_idle(&self, before_ns: u64, keep: impl Fn(u64) -> bool) -> usize {
        let idle: Vec<u64> = self
            .map
            .keys()
            .filter_map(|k| {
                k.get(..8)
                    .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
            })
            .filter(|&id| !keep(id))
            .filter(|&id| {
                self.get(id)
                    .is_some_and(|cpus| cpus.iter().all(|v| v.window < before_ns))
            })
            .collect();
        idle.iter()
            .filter(|id| self.map.delete(&id.to_ne_bytes()).is_ok())
            .count()
    }
}
