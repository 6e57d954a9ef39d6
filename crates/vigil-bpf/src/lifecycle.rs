//! Loads and attaches the process-lifecycle sensor (`bpf/lifecycle.bpf.c`).
//!
//! Dropping [`LifecycleSensor`] detaches every program and frees every map: nothing is pinned,
//! so an agent that stops leaves nothing behind in the kernel.

use std::mem::size_of;
use std::path::PathBuf;

use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder};

use crate::abi::{VIGIL_ARGS_REGION, VIGIL_CNT_MAX, vigil_config, vigil_proc_entry};

/// Load-time options of the lifecycle sensor.
#[derive(Debug, Clone)]
pub struct LifecycleOptions {
    /// Total ring buffer size in bytes (rounded up to a power of two, at least one page).
    pub ring_buffer_bytes: u32,
    /// Entries of the kernel process table.
    pub process_table_entries: u32,
    /// Bytes of argv copied per exec (capped at `VIGIL_ARGS_REGION - 1`).
    pub args_limit: u32,
    /// Bytes of environment copied per exec; 0 disables environment capture.
    pub env_limit: u32,
    /// BTF to relocate against instead of the running kernel's (`--btf`).
    pub btf: Option<PathBuf>,
    /// `--cgroup-rate`; `None`: off (the programs' one test of it skips the counting).
    pub cgroup_rate: Option<crate::cgroup_rate::CgroupRate>,
    /// Wake the reader for each exec record (exec hashing needs the file before it changes);
    /// otherwise records wait for the reader's poll unless a burst builds up.
    pub wake_on_exec: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot open the embedded lifecycle eBPF object: {0}")]
    Open(libbpf_rs::Error),
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        source: libbpf_rs::Error,
    },
    #[error("the embedded object has no map or program named {0}")]
    Missing(&'static str),
    #[error(".rodata of the lifecycle object is {found} bytes, expected {expected}")]
    Rodata { found: usize, expected: usize },
    // libbpf writes the verifier log to stderr itself, before this error is logged.
    #[error("the kernel refused the eBPF programs: {0} (the verifier log is printed above)")]
    Load(libbpf_rs::Error),
    #[error("cannot attach {program}: {source}")]
    Attach {
        program: String,
        source: libbpf_rs::Error,
    },
    #[error("tracefs is not mounted and cannot be mounted at /sys/kernel/tracing: {0}")]
    Tracefs(std::io::Error),
    #[error("syscall {0:?} has no syscalls:sys_enter_{0} tracepoint on this kernel")]
    NoSyscallTracepoint(String),
}

/// A loaded and attached lifecycle sensor.
pub struct LifecycleSensor {
    // Field order matters: links detach before the object is closed.
    links: Vec<Link>,
    object: Object,
}

impl std::fmt::Debug for LifecycleSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifecycleSensor")
            .field("links", &self.links.len())
            .finish()
    }
}

/// Rounds a requested ring size to what the kernel accepts: a power-of-two number of pages.
pub fn ring_size(requested: u32) -> u32 {
    requested.max(4096).next_power_of_two()
}

impl LifecycleSensor {
    /// Opens, configures, loads and attaches the lifecycle programs.
    pub fn load(opts: &LifecycleOptions) -> Result<Self, LoadError> {
        let mut builder = ObjectBuilder::default();
        if let Some(btf) = &opts.btf {
            builder.btf_custom_path(btf).map_err(LoadError::Open)?;
        }
        let mut open = builder
            .open_memory(crate::LIFECYCLE_OBJECT)
            .map_err(LoadError::Open)?;
        let cpus = libbpf_rs::num_possible_cpus().map_err(LoadError::Open)? as u32;
        let config = vigil_config {
            args_limit: opts.args_limit.min(VIGIL_ARGS_REGION - 1),
            env_limit: opts.env_limit,
            rate_events: opts.cgroup_rate.map_or(0, |r| r.events),
            wake_on_exec: u32::from(opts.wake_on_exec),
            rate_interval_ns: opts.cgroup_rate.map_or(0, |r| r.interval_ns),
        };
        for mut map in open.maps_mut() {
            let name = map.name().to_string_lossy().into_owned();
            let set = |r: libbpf_rs::Result<()>, map: &'static str| {
                r.map_err(|source| LoadError::Map { map, source })
            };
            match name.as_str() {
                "vigil_events" => set(
                    map.set_max_entries(ring_size(opts.ring_buffer_bytes)),
                    "vigil_events",
                )?,
                "vigil_procs" => set(
                    map.set_max_entries(opts.process_table_entries.max(1024)),
                    "vigil_procs",
                )?,
                "vigil_scratch" => set(map.set_max_entries(cpus), "vigil_scratch")?,
                "vigil_cgroup_rate" if opts.cgroup_rate.is_some() => set(
                    map.set_max_entries(crate::cgroup_rate::TRACKED_CGROUPS),
                    "vigil_cgroup_rate",
                )?,
                n if n.ends_with(".rodata") => {
                    let data = map
                        .initial_value_mut()
                        .ok_or(LoadError::Missing(".rodata"))?;
                    if data.len() != size_of::<vigil_config>() {
                        return Err(LoadError::Rodata {
                            found: data.len(),
                            expected: size_of::<vigil_config>(),
                        });
                    }
                    // SAFETY: vigil_config is plain old data with explicit padding.
                    let bytes = unsafe {
                        std::slice::from_raw_parts(
                            (&config as *const vigil_config).cast::<u8>(),
                            size_of::<vigil_config>(),
                        )
                    };
                    data.copy_from_slice(bytes);
                }
                _ => {}
            }
        }
        let object = open.load().map_err(LoadError::Load)?;
        let mut links = Vec::new();
        for prog in object.progs_mut() {
            let program = prog.name().to_string_lossy().into_owned();
            let link = prog
                .attach()
                .map_err(|source| LoadError::Attach { program, source })?;
            links.push(link);
        }
        Ok(Self { links, object })
    }

    fn map_handle(&self, name: &'static str) -> Result<MapHandle, LoadError> {
        let map = self
            .object
            .maps()
            .find(|m| m.name() == name)
            .ok_or(LoadError::Missing(name))?;
        MapHandle::try_from(&map).map_err(|source| LoadError::Map { map: name, source })
    }

    /// `--keep-sensors-on-exit`: pins the lifecycle programs' links (the kernel process table
    /// stays current while no agent runs) and the ring (`dir/ring`: the next agent reads
    /// what it holds), still owned by this sensor.
    pub fn pin_live(&mut self, dir: &std::path::Path) -> Result<usize, crate::pin::PinError> {
        let n = crate::pin::pin_links_live(&mut self.links, dir, "lifecycle")?;
        let path = dir.join("ring");
        let mut ring = self
            .object
            .maps_mut()
            .find(|m| m.name() == "vigil_events")
            .ok_or_else(|| crate::pin::PinError::Dir {
                path: path.clone(),
                source: std::io::Error::other("no vigil_events map"),
            })?;
        ring.pin(&path)
            .map_err(|source| crate::pin::PinError::Pin { path, source })?;
        Ok(n)
    }

    /// Pinned links stay attached when this sensor is dropped (a clean exit that keeps them).
    pub fn disconnect(&mut self) -> usize {
        crate::pin::disconnect_links(&mut self.links)
    }

    /// An owned handle on the event ring buffer, for the reader thread.
    pub fn events(&self) -> Result<MapHandle, LoadError> {
        self.map_handle("vigil_events")
    }

    /// Kernel-side counters (ring buffer losses, table overflow...).
    pub fn counters(&self) -> Result<KernelCounters, LoadError> {
        Ok(KernelCounters {
            map: self.map_handle("vigil_counters")?,
        })
    }

    /// `--cgroup-rate`'s count table, for ending throttles.
    pub fn cgroup_rate(&self) -> Result<crate::cgroup_rate::CgroupRateMap, LoadError> {
        Ok(crate::cgroup_rate::CgroupRateMap {
            map: self.map_handle("vigil_cgroup_rate")?,
        })
    }

    pub(crate) fn process_table_handle(&self) -> Result<MapHandle, LoadError> {
        self.map_handle("vigil_procs")
    }

    pub(crate) fn counters_handle(&self) -> Result<MapHandle, LoadError> {
        self.map_handle("vigil_counters")
    }

    /// Writer for the kernel process table, used by the start-up /proc scan.
    pub fn process_table(&self) -> Result<ProcessTable, LoadError> {
        Ok(ProcessTable {
            map: self.map_handle("vigil_procs")?,
        })
    }

    /// Number of attached programs.
    pub fn attached(&self) -> usize {
        self.links.len()
    }

    /// Kernel ids of the loaded programs (for `kernel.bpf_stats_enabled` accounting).
    pub fn program_ids(&self) -> Vec<(String, u32)> {
        self.object
            .progs()
            .filter_map(|p| {
                let id = libbpf_rs::Program::id_from_fd(p.as_fd()).ok()?;
                Some((p.name().to_string_lossy().into_owned(), id))
            })
            .collect()
    }
}

use std::os::fd::AsFd;

/// Sums of the per-CPU counters of `vigil_counters`, indexed by `enum vigil_counter`.
#[derive(Debug)]
pub struct KernelCounters {
    map: MapHandle,
}

impl KernelCounters {
    /// Reads every counter, summed over CPUs.
    pub fn read(&self) -> [u64; VIGIL_CNT_MAX as usize] {
        let mut out = [0u64; VIGIL_CNT_MAX as usize];
        for (idx, slot) in out.iter_mut().enumerate() {
            *slot = sum_percpu(&self.map, idx as u32);
        }
        out
    }
}

/// Inserts processes found at start-up into the kernel process table.
#[derive(Debug)]
pub struct ProcessTable {
    map: MapHandle,
}

impl ProcessTable {
    /// Inserts `entry` for `tgid` unless the kernel already tracks a newer image of it.
    pub fn insert_if_absent(&self, tgid: u32, entry: &vigil_proc_entry) -> bool {
        // SAFETY: vigil_proc_entry is plain old data with explicit padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (entry as *const vigil_proc_entry).cast::<u8>(),
                size_of::<vigil_proc_entry>(),
            )
        };
        self.map
            .update(&tgid.to_ne_bytes(), bytes, MapFlags::NO_EXIST)
            .is_ok()
    }
}

/// Sum over CPUs of one u64 slot of a per-CPU array (0 when unreadable).
pub(crate) fn sum_percpu(map: &dyn MapCore, index: u32) -> u64 {
    match map.lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(per_cpu)) => per_cpu
            .iter()
            .filter_map(|v| {
                v.get(..8)
                    .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
            })
            .sum(),
        _ => 0,
    }
}
