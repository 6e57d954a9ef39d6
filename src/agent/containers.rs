//! Container identity in the pipeline: the full cgroup path when the kernel's leaf name does
//! not name the container, and Tetragon's `in_init_tree`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vigil_api::runtime_hook::{Registration, RuntimeHooks};
use vigil_proto::tetragon;

use vigil_process::container::{
    container_id_in_path, container_id_in_proc_cgroup, docker_of_id, in_init_tree,
};
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
    /// The unified hierarchy's mount and an open directory on it: opened on first use;
    /// `Some(None)` once the open failed (a v1-only host), so it is not tried per cgroup.
    unified: Option<Option<(PathBuf, std::fs::File)>>,
    runtime: Option<Arc<RuntimeRegistry>>,
    /// Pod-scoped policies learn a container's cgroup from its execs too (a container
    /// started after its pod was listed, without a runtime hook).
    scopes: Option<vigil_k8s::SharedScopes>,
    /// `--enable-container-runtimes`: names and images from containerd and Docker.
    names: Option<vigil_runtimes::RuntimeNames>,
}

impl CgroupResolver {
    pub fn new(procfs: PathBuf, runtime: Option<Arc<RuntimeRegistry>>) -> Self {
        Self {
            procfs,
            known: HashMap::new(),
            unified: None,
            runtime,
            scopes: None,
            names: None,
        }
    }

    pub fn set_runtime_names(&mut self, names: vigil_runtimes::RuntimeNames) {
        self.names = Some(names);
    }

    /// Asks the runtimes about a new image's cgroup: waits (bounded) the first time the
    /// cgroup is seen, unless `wait` is false (the start-up scan: many cgroups at once).
    pub fn ask_runtimes(&self, info: &ProcessInfo, wait: bool) {
        if let Some(names) = &self.names {
            names.ask(info.cgroup_id, info.key.pid, &info.container_id, wait);
        }
    }

    /// `process.container` (vigil's extension): the container as its runtime names it.
    ///
    /// Not Tetragon's `pod.container`: outside Kubernetes there is no pod, and a `pod`
    /// with an invented (empty) namespace and name would read as one to every consumer
    /// that keys on it (namespace filters, pod labels).
    pub fn runtime_container(&self, info: &ProcessInfo) -> Option<tetragon::Container> {
        let found = self.names.as_ref()?.get(info.cgroup_id)?;
        Some(tetragon::Container {
            id: format!("{}://{}", found.runtime.scheme(), found.id),
            name: found.name.clone(),
            image: Some(tetragon::Image {
                id: found.image_id.clone(),
                name: found.image.clone(),
            }),
            pid: Some(vigil_proto::pbjson_types::UInt32Value { value: info.nspid }),
            ..Default::default()
        })
    }

    pub fn set_scopes(&mut self, scopes: vigil_k8s::SharedScopes) {
        self.scopes = Some(scopes);
    }

    /// Tells the scopes a container's cgroup (cheap when they know it already).
    fn note_cgroup(&self, container_id: &str, cgroup_id: u64) {
        let Some(scopes) = &self.scopes else {
            return;
        };
        let mut s = scopes.lock().unwrap_or_else(|e| e.into_inner());
        if !s.knows_cgroup(container_id, cgroup_id) {
            s.add_cgroup(container_id, cgroup_id);
        }
    }

    /// What the runtime hook said about cgroup `cgroup_id`, if it said anything.
    pub fn registered(&self, cgroup_id: u64) -> Option<Registration> {
        self.runtime.as_ref()?.get(cgroup_id)
    }

    /// The path of cgroup `cgroup_id` in the unified hierarchy (`/kubepods/...`), opened by
    /// its id: a cgroup's id is its kernfs node id, which is also its file handle
    /// (FILEID_KERNFS), so no process needs to be in it. None on hosts without a cgroup v2
    /// mount (the caller reads /proc/PID/cgroup instead).
    fn unified_path(&mut self, cgroup_id: u64) -> Option<String> {
        let (root, dir) = self
            .unified
            .get_or_insert_with(|| {
                let root = RuntimeRegistry::host_cgroup_root();
                let dir = std::fs::File::open(&root).ok()?;
                Some((root, dir))
            })
            .as_ref()?;
        cgroup_path_by_id(root, dir, cgroup_id)
    }

    /// The pod of a process whose container the runtime hook registered with pod identity.
    pub fn hook_pod(&self, info: &ProcessInfo) -> Option<tetragon::Pod> {
        let r = self.registered(info.cgroup_id)?;
        if r.pod_name.is_empty() {
            return None;
        }
        Some(tetragon::Pod {
            namespace: r.pod_namespace,
            name: r.pod_name,
            container: Some(tetragon::Container {
                id: r.container_id,
                name: r.container_name,
                pid: Some(vigil_proto::pbjson_types::UInt32Value { value: info.nspid }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// The container id of `pid`'s cgroup `cgroup_id` from its full path.
    pub fn container_id(&mut self, pid: u32, cgroup_id: u64) -> String {
        if cgroup_id == 0 {
            return String::new();
        }
        if let Some(id) = self.known.get(&cgroup_id) {
            return id.clone();
        }
        // By the cgroup's own id first: the process may be gone by the time its record is
        // read (short-lived processes are the common case).
        if let Some(id) = self
            .unified_path(cgroup_id)
            .and_then(|path| container_id_in_path(&path).map(str::to_string))
        {
            return self.remember(cgroup_id, id);
        }
        let path = self.procfs.join(pid.to_string()).join("cgroup");
        let Ok(text) = std::fs::read_to_string(path) else {
            // Gone already: do not remember a guess.
            return String::new();
        };
        let id = container_id_in_proc_cgroup(&text)
            .unwrap_or_default()
            .to_string();
        self.remember(cgroup_id, id)
    }

    fn remember(&mut self, cgroup_id: u64, id: String) -> String {
        if self.known.len() >= MAX_CGROUPS {
            self.known.clear();
        }
        self.known.insert(cgroup_id, id.clone());
        id
    }
}

/// The path, relative to `root` (a cgroup v2 mount, `dir` open on it), of the cgroup whose
/// id is `cgroup_id`: the directory is opened by file handle and its link read back.
fn cgroup_path_by_id(root: &Path, dir: &std::fs::File, cgroup_id: u64) -> Option<String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// `struct file_handle` with kernfs's 8-byte handle: the node id.
    #[repr(C)]
    struct KernfsHandle {
        handle_bytes: u32,
        handle_type: i32,
        id: u64,
    }
    const FILEID_KERNFS: i32 = 0xfe;
    let mut handle = KernfsHandle {
        handle_bytes: 8,
        handle_type: FILEID_KERNFS,
        id: cgroup_id,
    };
    // SAFETY: `handle` is a file_handle header followed by its 8 handle bytes, valid for the
    // call; a returned descriptor is owned by the OwnedFd below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            dir.as_raw_fd(),
            &mut handle as *mut KernfsHandle,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor the kernel just returned to us, closed once.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let rel = link.strip_prefix(root).ok()?;
    Some(format!("/{}", rel.to_str()?))
}

/// Containers registered by the runtime hook (`RuntimeHook` RPC), by cgroup id: filled by the
/// API thread before the runtime starts the container, read by the pipeline on each exec.
pub struct RuntimeRegistry {
    /// The cgroup v2 mount (`/sys/fs/cgroup`, or its `unified` directory on hybrid hosts).
    cgroup_root: PathBuf,
    by_cgroup: Mutex<HashMap<u64, Registration>>,
    /// Pod-scoped policies: a registered container's cgroup is theirs before it runs.
    scopes: std::sync::OnceLock<vigil_k8s::SharedScopes>,
}

impl RuntimeRegistry {
    pub fn new(cgroup_root: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            cgroup_root,
            by_cgroup: Mutex::new(HashMap::new()),
            scopes: std::sync::OnceLock::new(),
        })
    }

    pub fn set_scopes(&self, scopes: vigil_k8s::SharedScopes) {
        let _ = self.scopes.set(scopes);
    }

    /// The unified hierarchy of this host.
    pub fn host_cgroup_root() -> PathBuf {
        let unified = PathBuf::from("/sys/fs/cgroup/unified");
        if unified.join("cgroup.procs").exists() {
            unified
        } else {
            PathBuf::from("/sys/fs/cgroup")
        }
    }

    fn get(&self, cgroup_id: u64) -> Option<Registration> {
        if cgroup_id == 0 {
            return None;
        }
        let map = self.by_cgroup.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&cgroup_id).cloned()
    }
}

impl RuntimeHooks for RuntimeRegistry {
    /// The kernel's cgroup id is the inode of the cgroup's directory; runtimes create the
    /// cgroup before they run createRuntime/createContainer hooks.
    fn create_container(&self, mut reg: Registration) -> Result<(), String> {
        if reg.container_id.is_empty() {
            let path = reg.cgroup_dir.to_string_lossy();
            reg.container_id = vigil_process::container::container_id_in_path(&path)
                .ok_or_else(|| format!("no containerID and none in cgroup path {path}"))?
                .to_string();
        }
        let dir = self.cgroup_root.join(&reg.cgroup_dir);
        let cgroup_id = std::fs::metadata(&dir)
            .map_err(|e| format!("cgroup {}: {e}", dir.display()))?
            .ino();
        tracing::info!(
            container_id = reg.container_id,
            cgroup_id,
            cgroup = %dir.display(),
            pod = format!("{}/{}", reg.pod_namespace, reg.pod_name),
            "runtime hook: container registered"
        );
        let mut map = self.by_cgroup.lock().unwrap_or_else(|e| e.into_inner());
        // Ids are never reused while the kernel runs; dead cgroups only cost memory. At the
        // bound, the registrations of cgroups that are gone make room; live containers'
        // are never forgotten (clearing them all would strip running containers of their
        // identity): a new one is refused instead, and the hook says so.
        if map.len() >= MAX_CGROUPS {
            let root = &self.cgroup_root;
            map.retain(|id, r| {
                std::fs::metadata(root.join(&r.cgroup_dir)).is_ok_and(|m| m.ino() == *id)
            });
            if map.len() >= MAX_CGROUPS {
                return Err(format!(
                    "{MAX_CGROUPS} live containers registered already: not registered (its \
                     identity comes from its cgroup path)"
                ));
            }
        }
        if let Some(scopes) = self.scopes.get() {
            let mut s = scopes.lock().unwrap_or_else(|e| e.into_inner());
            s.add_cgroup(&reg.container_id, cgroup_id);
        }
        map.insert(cgroup_id, reg);
        Ok(())
    }
}

/// Completes a new image's container identity: the full-path id when the leaf had none, and
/// `in_init_tree` from its parent (with Tetragon's `inInitTree` flag).
pub fn complete(
    info: &mut ProcessInfo,
    parent: Option<&ProcessInfo>,
    resolver: Option<&mut CgroupResolver>,
) {
    let mut resolver = resolver;
    // The runtime's word first: it names the container whatever its cgroup is called.
    if let Some(reg) = resolver.as_ref().and_then(|r| r.registered(info.cgroup_id)) {
        info.container_id = reg.container_id;
        info.docker = docker_of_id(&info.container_id);
    } else if info.container_id.is_empty()
        && let Some(r) = resolver.as_deref_mut()
    {
        info.container_id = r.container_id(info.key.pid, info.cgroup_id);
        info.docker = docker_of_id(&info.container_id);
    }
    if let Some(r) = resolver {
        if !info.container_id.is_empty() {
            r.note_cgroup(&info.container_id, info.cgroup_id);
        }
        r.ask_runtimes(info, true);
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
    /// The images the event's `ancestors` describe, in the same order.
    pub ancestors: Vec<std::sync::Arc<ProcessInfo>>,
    deadline: std::time::Instant,
    /// Encoded size of the event: what waiting costs.
    size: usize,
}

impl Pending {
    pub fn new(
        event: vigil_proto::tetragon::get_events_response::Event,
        ktime: u64,
        process: Option<std::sync::Arc<ProcessInfo>>,
        parent: Option<std::sync::Arc<ProcessInfo>>,
        ancestors: Vec<std::sync::Arc<ProcessInfo>>,
    ) -> Self {
        Self {
            size: event.encoded_len(),
            event,
            ktime,
            process,
            parent,
            ancestors,
            deadline: std::time::Instant::now(),
        }
    }
}

/// Pods the gave-up set remembers at most (cleared when full).
const MAX_GAVE_UP: usize = 4096;

/// Events waiting for their pod hold at most this many bytes: past it the oldest go out
/// without waiting longer (no event is dropped; a burst only gets less pod enrichment).
const MAX_WAITING_BYTES: usize = 16 << 20;

/// `--enable-k8s-api`: puts `pod` on events of container processes. An event whose
/// container's pod is not known yet waits up to `wait`; the events behind it wait with it,
/// so that the output keeps the kernel's order (an exec before its exit). A container whose
/// wait ran out does not hold later events up until its pod appears.
pub struct PodIdentity {
    pods: vigil_k8s::SharedPods,
    wait: std::time::Duration,
    queue: std::collections::VecDeque<Pending>,
    /// Encoded bytes of `queue`.
    queued: usize,
    gave_up: std::collections::HashSet<String>,
}

impl PodIdentity {
    pub fn new(pods: vigil_k8s::SharedPods, wait: std::time::Duration) -> Self {
        Self {
            pods,
            wait,
            queue: Default::default(),
            queued: 0,
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
        let (process, parent, ancestors) = match &mut p.event {
            Event::ProcessExec(e) => (e.process.as_mut(), e.parent.as_mut(), &mut e.ancestors),
            Event::ProcessExit(e) => (e.process.as_mut(), e.parent.as_mut(), &mut e.ancestors),
            Event::ProcessKprobe(e) => (e.process.as_mut(), e.parent.as_mut(), &mut e.ancestors),
            Event::ProcessTracepoint(e) => {
                (e.process.as_mut(), e.parent.as_mut(), &mut e.ancestors)
            }
            Event::ProcessUprobe(e) => (e.process.as_mut(), e.parent.as_mut(), &mut e.ancestors),
            Event::ProcessLsm(e) => (e.process.as_mut(), e.parent.as_mut(), &mut e.ancestors),
            Event::ProcessUsdt(e) => (e.process.as_mut(), e.parent.as_mut(), &mut e.ancestors),
            _ => return true,
        };
        let mut complete = true;
        // The process, its parent and its ancestors: each gets its own container's pod.
        let heads = [(process, p.process.as_ref()), (parent, p.parent.as_ref())];
        let rest = ancestors
            .iter_mut()
            .zip(p.ancestors.iter())
            .map(|(proto, info)| (Some(proto), Some(info)));
        for (proto, info) in heads.into_iter().chain(rest) {
            let (Some(proto), Some(info)) = (proto, info) else {
                continue;
            };
            if info.container_id.is_empty() {
                continue;
            }
            match store.lookup(&info.container_id) {
                Some(c) => {
                    gave_up.remove(&info.container_id);
                    proto.pod = Some(c.for_process(&info.binary, &info.arguments, info.nspid));
                }
                // The runtime hook named the pod: the API's fuller view is not waited for.
                None if proto.pod.is_some() => {}
                None => complete &= gave_up.contains(&info.container_id),
            }
        }
        complete
    }

    /// Queues an event; returns the events ready to go, in order.
    pub fn admit(&mut self, mut p: Pending, now: std::time::Instant) -> Vec<Pending> {
        p.deadline = now + self.wait;
        self.queued += p.size;
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
            if !complete && !all && now < front.deadline && self.queued <= MAX_WAITING_BYTES {
                break;
            }
            let Some(p) = self.queue.pop_front() else {
                break;
            };
            self.queued -= p.size;
            if !complete {
                if self.gave_up.len() >= MAX_GAVE_UP {
                    self.gave_up.clear();
                }
                let heads = [p.process.as_ref(), p.parent.as_ref()]
                    .into_iter()
                    .flatten();
                for info in heads.chain(p.ancestors.iter()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroup made here, its id resolved back to its path with no process in it (root).
    #[test]
    fn a_cgroup_id_resolves_to_its_path_without_a_process() {
        let root = RuntimeRegistry::host_cgroup_root();
        let name = format!("vigil-unit-cgid-{}", std::process::id());
        let dir = root.join(&name);
        if std::fs::create_dir(&dir).is_err() {
            panic!("cannot make {}: this test runs as root", dir.display());
        }
        let id = std::fs::metadata(&dir).unwrap().ino();
        let open = std::fs::File::open(&root).unwrap();
        let got = cgroup_path_by_id(&root, &open, id);
        let missing = cgroup_path_by_id(&root, &open, u64::MAX - 1);
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(got.as_deref(), Some(format!("/{name}").as_str()));
        assert_eq!(missing, None);
    }

    fn reg(dir: &str) -> Registration {
        Registration {
            container_id: "c1".into(),
            cgroup_dir: PathBuf::from(dir),
            pod_name: "web".into(),
            pod_namespace: "shop".into(),
            ..Default::default()
        }
    }

    /// The parent and every ancestor get the pod of their own container, as the process
    /// does; a host ancestor gets none, and does not hold the event up.
    #[test]
    fn pods_on_process_parent_and_ancestors() {
        use vigil_proto::tetragon::{self, get_events_response::Event};
        let pod = |name: &str, id: &str| -> k8s_openapi::api::core::v1::Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}")},
                "status": {"containerStatuses": [{"name": "c",
                    "containerID": format!("containerd://{id}"), "image": "i", "imageID": "",
                    "ready": true, "restartCount": 0}]}
            }))
            .unwrap()
        };
        let store = vigil_k8s::PodStore::new(std::time::Duration::ZERO, false).shared();
        store.write().unwrap().apply(&pod("web", "c-web"));
        store.write().unwrap().apply(&pod("init", "c-init"));
        let info = |id: &str| {
            std::sync::Arc::new(ProcessInfo {
                container_id: id.into(),
                ..Default::default()
            })
        };
        let event = Event::ProcessExec(tetragon::ProcessExec {
            process: Some(Default::default()),
            parent: Some(Default::default()),
            ancestors: vec![Default::default(), Default::default()],
        });
        let pending = Pending::new(
            event,
            1,
            Some(info("c-web")),
            Some(info("c-web")),
            vec![info("c-init"), info("")],
        );
        let mut ids = PodIdentity::new(store, std::time::Duration::from_secs(60));
        let out = ids.admit(pending, std::time::Instant::now());
        assert_eq!(out.len(), 1, "nothing to wait for");
        let Event::ProcessExec(e) = &out[0].event else {
            panic!("not an exec");
        };
        let name = |p: &Option<tetragon::Process>| {
            p.as_ref()
                .and_then(|p| p.pod.as_ref())
                .map(|pod| pod.name.clone())
        };
        assert_eq!(name(&e.process).as_deref(), Some("web"));
        assert_eq!(name(&e.parent).as_deref(), Some("web"));
        assert_eq!(name(&Some(e.ancestors[0].clone())).as_deref(), Some("init"));
        assert_eq!(name(&Some(e.ancestors[1].clone())), None);
    }

    /// Events waiting for an unknown pod are bounded in bytes: a burst past the budget
    /// goes out (without a pod) instead of growing the queue; nothing is dropped.
    #[test]
    fn events_waiting_for_a_pod_are_bounded_in_bytes() {
        use vigil_proto::tetragon::{self, get_events_response::Event};
        let store = vigil_k8s::PodStore::new(std::time::Duration::ZERO, false).shared();
        let mut ids = PodIdentity::new(store, std::time::Duration::from_secs(3600));
        let big = "x".repeat(64 << 10);
        let now = std::time::Instant::now();
        let mut out = 0;
        let n = 2 * MAX_WAITING_BYTES / big.len();
        for i in 0..n {
            let event = Event::ProcessExec(tetragon::ProcessExec {
                process: Some(tetragon::Process {
                    arguments: big.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            });
            let info = std::sync::Arc::new(ProcessInfo {
                container_id: "unknown-container".into(),
                ..Default::default()
            });
            out += ids
                .admit(Pending::new(event, i as u64, Some(info), None, vec![]), now)
                .len();
            assert!(ids.queued <= MAX_WAITING_BYTES + big.len() + 1024);
        }
        assert!(out > 0, "the oldest went out early");
        assert_eq!(out + ids.queue.len(), n, "none lost");
    }

    /// A registration is keyed by the inode of the cgroup directory (the kernel's cgroup id).
    #[test]
    fn registry_keys_by_cgroup_inode() {
        let root = std::env::temp_dir().join(format!("vigil-registry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let ino = std::fs::metadata(root.join("a/b")).unwrap().ino();
        let registry = RuntimeRegistry::new(root.clone());
        registry.create_container(reg("a/b")).unwrap();
        let resolver = CgroupResolver::new(PathBuf::from("/nonexistent"), Some(registry.clone()));
        assert_eq!(resolver.registered(ino).unwrap().container_id, "c1");
        assert!(resolver.registered(ino + 1).is_none());
        assert!(resolver.registered(0).is_none());
        // The registered id wins over what the cgroup name said.
        let mut info = ProcessInfo {
            cgroup_id: ino,
            container_id: "f".repeat(64),
            ..Default::default()
        };
        let mut r = resolver;
        complete(&mut info, None, Some(&mut r));
        assert_eq!(
            (info.container_id.as_str(), info.docker.as_str()),
            ("c1", "c1")
        );
        let pod = r.hook_pod(&info).unwrap();
        assert_eq!((pod.namespace.as_str(), pod.name.as_str()), ("shop", "web"));
        let e = registry.create_container(reg("missing")).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        // Without a containerID (Tetragon's hook sends none) the id comes from the path.
        let id = "ab".repeat(32);
        std::fs::create_dir_all(root.join(format!("docker/{id}"))).unwrap();
        let mut anonymous = reg(&format!("docker/{id}"));
        anonymous.container_id.clear();
        registry.create_container(anonymous).unwrap();
        let ino = std::fs::metadata(root.join(format!("docker/{id}")))
            .unwrap()
            .ino();
        assert_eq!(r.registered(ino).unwrap().container_id, id);
        let mut nameless = reg("a");
        nameless.container_id.clear();
        let e = registry.create_container(nameless).unwrap_err();
        assert!(e.contains("no containerID"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
