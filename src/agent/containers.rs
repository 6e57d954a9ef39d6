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

/// An event on its way out, with the images its `process` and `parent` describe.
pub struct Pending {
    pub event: vigil_proto::tetragon::get_events_response::Event,
    pub ktime: u64,
    pub process: Option<std::sync::Arc<ProcessInfo>>,
    pub parent: Option<std::sync::Arc<ProcessInfo>>,
    deadline: std::time::Instant,
}

impl Pending {
    pub fn new(
        event: vigil_proto::tetragon::get_events_response::Event,
        ktime: u64,
        process: Option<std::sync::Arc<ProcessInfo>>,
        parent: Option<std::sync::Arc<ProcessInfo>>,
    ) -> Self {
        Self {
            event,
            ktime,
            process,
            parent,
            deadline: std::time::Instant::now(),
        }
    }
}

/// Pods the gave-up set remembers at most (cleared when full).
const MAX_GAVE_UP: usize = 4096;

/// `--enable-k8s-api`: puts `pod` on events of container processes. An event whose
/// container's pod is not known yet waits up to `wait`; the events behind it wait with it,
/// so that the output keeps the kernel's order (an exec before its exit). A container whose
/// wait ran out does not hold later events up until its pod appears.
pub struct PodIdentity {
    pods: vigil_k8s::SharedPods,
    wait: std::time::Duration,
    queue: std::collections::VecDeque<Pending>,
    gave_up: std::collections::HashSet<String>,
}

impl PodIdentity {
    pub fn new(pods: vigil_k8s::SharedPods, wait: std::time::Duration) -> Self {
        Self {
            pods,
            wait,
            queue: Default::default(),
            gave_up: Default::default(),
        }
    }

    /// Fills the pods it can; true when nothing is left to wait for.
    fn fill(
        store: &vigil_k8s::PodStore,
        gave_up: &mut std::collections::HashSet<String>,
        p: &mut Pending,
    ) -> bool {
        use vigil_proto::tetragon::get_events_response::Event;
        let (process, parent) = match &mut p.event {
            Event::ProcessExec(e) => (e.process.as_mut(), e.parent.as_mut()),
            Event::ProcessExit(e) => (e.process.as_mut(), e.parent.as_mut()),
            Event::ProcessKprobe(e) => (e.process.as_mut(), e.parent.as_mut()),
            _ => (None, None),
        };
        let mut complete = true;
        for (proto, info) in [(process, &p.process), (parent, &p.parent)] {
            let (Some(proto), Some(info)) = (proto, info) else {
                continue;
            };
            if info.container_id.is_empty() || proto.pod.is_some() {
                continue;
            }
            match store.lookup(&info.container_id) {
                Some(c) => {
                    gave_up.remove(&info.container_id);
                    proto.pod = Some(c.for_process(&info.binary, &info.arguments, info.nspid));
                }
                None => complete &= gave_up.contains(&info.container_id),
            }
        }
        complete
    }

    /// Queues an event; returns the events ready to go, in order.
    pub fn admit(&mut self, mut p: Pending, now: std::time::Instant) -> Vec<Pending> {
        p.deadline = now + self.wait;
        self.queue.push_back(p);
        self.release(now, false)
    }

    /// The events at the head whose pods are known or whose wait ran out (all with `all`).
    pub fn release(&mut self, now: std::time::Instant, all: bool) -> Vec<Pending> {
        let mut out = Vec::new();
        if self.queue.is_empty() {
            return out;
        }
        let store = self.pods.read().unwrap_or_else(|e| e.into_inner());
        while let Some(front) = self.queue.front_mut() {
            let complete = Self::fill(&store, &mut self.gave_up, front);
            if !complete && !all && now < front.deadline {
                break;
            }
            let p = self.queue.pop_front().unwrap();
            if !complete {
                if self.gave_up.len() >= MAX_GAVE_UP {
                    self.gave_up.clear();
                }
                for info in [&p.process, &p.parent].into_iter().flatten() {
                    if !info.container_id.is_empty() && store.lookup(&info.container_id).is_none() {
                        tracing::debug!(container = %info.container_id, "no pod known for container");
                        self.gave_up.insert(info.container_id.clone());
                    }
                }
            }
            out.push(p);
        }
        out
    }
}
