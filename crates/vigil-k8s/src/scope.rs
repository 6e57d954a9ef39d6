//! Pod-scoped policies (TracingPolicyNamespaced, `podSelector`, `containerSelector`): which
//! containers a policy applies to ([`selects`], pure) and the bookkeeping that keeps each
//! scoped policy's kernel set of cgroup ids current as pods, containers and policies come
//! and go ([`Scopes`], pure but for the [`CgroupSet`]s it writes to).
//!
//! Containers are known by id from two sides: the pod watch says which pod (namespace,
//! labels, container name, image) a container id belongs to; the cgroup file system, the
//! runtime hook and exec events say which cgroup ids a container id has. A scoped policy's
//! set holds the cgroup ids of the containers its scope selects, and nothing else.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use vigil_policy::compile::PolicyScope;
use vigil_policy::model::LabelSelector;

/// Containers remembered at most.
const MAX_CONTAINERS: usize = 65536;

/// The label Tetragon adds to a pod's labels for podSelector: the pod's namespace.
pub const NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";

/// What a scope is matched against: one container of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Workload {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub container_name: String,
    /// The container's image reference as the pod status gives it.
    pub image: String,
}

/// The repository of an image reference: without its digest and its tag (a `:` after the
/// last `/`; one before it is a registry port). Tetragon's containerSelector key `repo`.
pub fn image_repo(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rfind('/').map_or(0, |i| i + 1);
    match image[last..].find(':') {
        Some(i) => &image[..last + i],
        None => image,
    }
}

/// Whether `labels` satisfy a Kubernetes label selector (matchLabels and matchExpressions;
/// an empty selector matches everything). `NotIn` and `DoesNotExist` hold for absent keys.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && sel.match_expressions.iter().all(|r| {
            let value = labels.get(&r.key);
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| r.values.contains(v)),
                "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                // Validation refuses other operators; select nothing rather than everything.
                _ => false,
            }
        })
}

/// Whether a policy of scope `scope` applies to container `w`.
pub fn selects(scope: &PolicyScope, w: &Workload) -> bool {
    if scope
        .namespace
        .as_ref()
        .is_some_and(|ns| *ns != w.namespace)
    {
        return false;
    }
    if let Some(sel) = &scope.pod_selector {
        let mut labels = w.labels.clone();
        labels
            .entry(NAMESPACE_LABEL.to_string())
            .or_insert_with(|| w.namespace.clone());
        if !selector_matches(sel, &labels) {
            return false;
        }
    }
    if let Some(sel) = &scope.container_selector {
        let fields = BTreeMap::from([
            ("name".to_string(), w.container_name.clone()),
            ("repo".to_string(), image_repo(&w.image).to_string()),
        ]);
        if !selector_matches(sel, &fields) {
            return false;
        }
    }
    true
}

/// The kernel set of one scoped policy object (a BPF hash map of cgroup ids).
pub trait CgroupSet: Send + Sync {
    fn insert(&self, cgroup_id: u64) -> Result<(), String>;
    fn remove(&self, cgroup_id: u64);
}

struct ScopedPolicy {
    name: String,
    scope: PolicyScope,
    sets: Vec<Arc<dyn CgroupSet>>,
    /// The cgroup ids written to `sets`.
    applied: BTreeSet<u64>,
}

#[derive(Default)]
struct Container {
    /// From the pod watch; `None` until its pod is known (or after it is gone).
    workload: Option<Workload>,
    cgroups: BTreeSet<u64>,
}

/// Scoped policies, containers and their cgroups. Shared by the pod watch, the runtime
/// hook, the event pipeline (which all report containers) and the policy loader.
#[derive(Default)]
pub struct Scopes {
    policies: BTreeMap<u64, ScopedPolicy>,
    next: u64,
    containers: HashMap<String, Container>,
    /// Pod key -> its container ids, as last listed.
    pods: HashMap<String, Vec<String>>,
    listing: Option<HashSet<String>>,
}

pub type SharedScopes = Arc<Mutex<Scopes>>;

impl Scopes {
    pub fn shared() -> SharedScopes {
        Arc::new(Mutex::new(Self::default()))
    }

    /// A scoped policy was loaded: its sets get the cgroups of every container it selects.
    /// Returns the handle to remove it with.
    pub fn add_policy(
        &mut self,
        name: &str,
        scope: PolicyScope,
        sets: Vec<Arc<dyn CgroupSet>>,
    ) -> u64 {
        self.next += 1;
        let id = self.next;
        self.policies.insert(
            id,
            ScopedPolicy {
                name: name.to_string(),
                scope,
                sets,
                applied: BTreeSet::new(),
            },
        );
        let ids: Vec<String> = self.containers.keys().cloned().collect();
        for c in ids {
            self.refresh(&c);
        }
        id
    }

    /// The policy was unloaded (its kernel objects go with it).
    pub fn remove_policy(&mut self, id: u64) {
        self.policies.remove(&id);
    }

    /// The cgroup ids in a policy's set.
    pub fn applied(&self, id: u64) -> Option<&BTreeSet<u64>> {
        self.policies.get(&id).map(|p| &p.applied)
    }

    /// Container ids whose cgroups are not known yet.
    pub fn without_cgroups<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        ids.into_iter()
            .filter(|id| {
                self.containers
                    .get(*id)
                    .is_none_or(|c| c.cgroups.is_empty())
            })
            .map(str::to_string)
            .collect()
    }

    /// Whether cgroup `cgroup_id` is known to be container `container_id`'s.
    pub fn knows_cgroup(&self, container_id: &str, cgroup_id: u64) -> bool {
        self.containers
            .get(container_id)
            .is_some_and(|c| c.cgroups.contains(&cgroup_id))
    }

    /// A cgroup of a container (from the cgroup file system, the runtime hook or an exec).
    pub fn add_cgroup(&mut self, container_id: &str, cgroup_id: u64) {
        if container_id.is_empty() || cgroup_id == 0 {
            return;
        }
        // Containers of no known pod are remembered for a pod that may come; bounded, as
        // containers outside Kubernetes never get one.
        if !self.containers.contains_key(container_id) && self.containers.len() >= MAX_CONTAINERS {
            return;
        }
        let c = self.containers.entry(container_id.to_string()).or_default();
        if c.cgroups.insert(cgroup_id) {
            self.refresh(container_id);
        }
    }

    /// A pod added or modified: its containers now are exactly `containers`.
    pub fn set_pod(&mut self, pod_key: &str, containers: Vec<(String, Workload)>) {
        if let Some(seen) = &mut self.listing {
            seen.insert(pod_key.to_string());
        }
        let ids: Vec<String> = containers.iter().map(|(id, _)| id.clone()).collect();
        let old = self.pods.insert(pod_key.to_string(), ids.clone());
        for gone in old.into_iter().flatten().filter(|o| !ids.contains(o)) {
            self.forget_container(&gone);
        }
        for (id, w) in containers {
            self.containers.entry(id.clone()).or_default().workload = Some(w);
            self.refresh(&id);
        }
    }

    /// A pod deleted: its containers leave every policy.
    pub fn delete_pod(&mut self, pod_key: &str) {
        for id in self.pods.remove(pod_key).unwrap_or_default() {
            self.forget_container(&id);
        }
    }

    /// A (re-)list of the pods starts.
    pub fn begin_list(&mut self) {
        self.listing = Some(HashSet::new());
    }

    /// The list is complete: pods it did not contain are deleted.
    pub fn end_list(&mut self) {
        let Some(seen) = self.listing.take() else {
            return;
        };
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            self.delete_pod(&k);
        }
    }

    fn forget_container(&mut self, id: &str) {
        if let Some(c) = self.containers.get_mut(id) {
            c.workload = None;
        }
        self.refresh(id);
        self.containers.remove(id);
    }

    /// Brings every policy's set in line with what it says about container `id`.
    fn refresh(&mut self, id: &str) {
        let Some(c) = self.containers.get(id) else {
            return;
        };
        for p in self.policies.values_mut() {
            let wanted = c.workload.as_ref().is_some_and(|w| selects(&p.scope, w));
            for &cg in &c.cgroups {
                if wanted && !p.applied.contains(&cg) {
                    let mut ok = true;
                    for s in &p.sets {
                        if let Err(e) = s.insert(cg) {
                            tracing::error!(
                                policy = p.name,
                                container = id,
                                error = e,
                                "policy scope not updated"
                            );
                            ok = false;
                        }
                    }
                    if ok {
                        p.applied.insert(cg);
                    }
                } else if !wanted && p.applied.remove(&cg) {
                    for s in &p.sets {
                        s.remove(cg);
                    }
                }
            }
        }
    }
}

/// The containers of `pod` that have an id, as scopes see them.
pub fn pod_workloads(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<(String, Workload)> {
    crate::pod::containers(pod, false)
        .into_iter()
        .map(|(id, c)| {
            let container = c.pod.container.as_ref();
            let w = Workload {
                namespace: c.pod.namespace.clone(),
                labels: c.pod.pod_labels.clone().into_iter().collect(),
                container_name: container.map(|c| c.name.clone()).unwrap_or_default(),
                image: container
                    .and_then(|c| c.image.as_ref())
                    .map(|i| i.name.clone())
                    .unwrap_or_default(),
            };
            (id, w)
        })
        .collect()
}

/// Cgroup directories below `root` named after one of `ids` (runtimes name a container's
/// cgroup after its id: `<id>`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, ...), as
/// (container id, cgroup id = the directory's inode). Depth-limited: kubelet layouts are at
/// most a few levels deep.
pub fn find_cgroups(root: &std::path::Path, ids: &[String]) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    const MAX_DEPTH: usize = 8;
    let mut out = Vec::new();
    if ids.is_empty() {
        return out;
    }
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = ids.iter().find(|id| name.contains(id.as_str()))
                && let Ok(meta) = e.metadata()
            {
                out.push((id.clone(), meta.ino()));
            }
            if depth + 1 < MAX_DEPTH {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "scope_tests.rs"]
mod tests;
