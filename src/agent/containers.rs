//! Container identity in the pipeline: the full cgroup path when the kernel's leaf name does
//! not name the container, and Tetragon's `in_init_tree`.

use std::collections::HashMap;
use std::path::PathBuf;

use vigil_process::container::{container_id_in_proc_cgroup, docker_of_id, in_init_tree};
use vigil_process::model::ProcessInfo;

/// Cgroups remembered at most; cleared when full (a miss costs one /proc read).
const MAX_CGROUPS: usize = 8192;

/// Cgroup id -> container id ("" for host cgroups), learned from /proc/<pid>/cgroup the
/// first time a cgroup is seen. Cgroup ids are never reused while the kernel runs, so an
/// entry never goes stale; the lookup reads the process's current cgroup, which is the one
/// it executed in unless it moved in between (runtimes move a process before its exec).
pub struct CgroupResolver {
    procfs: PathBuf,
    known: HashMap<u64, String>,
}

impl CgroupResolver {
    pub fn new(procfs: PathBuf) -> Self {
        Self {
            procfs,
            known: HashMap::new(),
        }
    }

    /// The container id of `pid`'s cgroup `cgroup_id` from its full path.
    pub fn container_id(&mut self, pid: u32, cgroup_id: u64) -> String {
        if cgroup_id == 0 {
            return String::new();
        }
        if let Some(id) = self.known.get(&cgroup_id) {
            return id.clone();
        }
        let path = self.procfs.join(pid.to_string()).join("cgroup");
        let Ok(text) = std::fs::read_to_string(path) else {
            // Gone already: do not remember a guess.
            return String::new();
        };
        let id = container_id_in_proc_cgroup(&text)
            .unwrap_or_default()
            .to_string();
        if self.known.len() >= MAX_CGROUPS {
            self.known.clear();
        }
        self.known.insert(cgroup_id, id.clone());
        id
    }
}

/// Completes a new image's container identity: the full-path id when the leaf had none, and
/// `in_init_tree` from its parent (with Tetragon's `inInitTree` flag).
pub fn complete(
    info: &mut ProcessInfo,
    parent: Option<&ProcessInfo>,
    resolver: Option<&mut CgroupResolver>,
) {
    if info.container_id.is_empty()
        && let Some(r) = resolver
    {
        info.container_id = r.container_id(info.key.pid, info.cgroup_id);
        info.docker = docker_of_id(&info.container_id);
    }
    info.in_init_tree = in_init_tree(
        info.key.pid,
        info.nspid,
        parent.is_some_and(|p| p.in_init_tree),
    );
    if info.in_init_tree {
        info.flags.push("inInitTree");
    }
}
