//! Pure: the pods of this node by container id, as list and watch events describe them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::pod::{ContainerIdentity, containers};

/// The store shared by the watch (writer) and the event pipeline (reader).
pub type SharedPods = Arc<RwLock<PodStore>>;

/// Pods by container id. A deleted pod's containers stay known for `keep_deleted`, so that
/// the last events of its processes (exits, which come after the deletion) still carry it.
#[derive(Debug)]
pub struct PodStore {
    by_container: HashMap<String, Arc<ContainerIdentity>>,
    /// Pod key (uid, or namespace/name) -> its container ids.
    by_pod: HashMap<String, Vec<String>>,
    deleted: VecDeque<(Instant, String)>,
    keep_deleted: Duration,
    annotations: bool,
    /// Pods seen since the current (re-)list began; `None` outside a list.
    listing: Option<HashSet<String>>,
    /// Whether a first list completed: before it, unknown containers may still be coming.
    pub synced: bool,
}

/// The pod's identity in the stores: its uid, or namespace/name without one.
pub fn pod_key(pod: &Pod) -> String {
    let m = &pod.metadata;
    match m.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => format!(
            "{}/{}",
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or("")
        ),
    }
}

impl PodStore {
    pub fn new(keep_deleted: Duration, annotations: bool) -> Self {
        Self {
            by_container: HashMap::new(),
            by_pod: HashMap::new(),
            deleted: VecDeque::new(),
            keep_deleted,
            annotations,
            listing: None,
            synced: false,
        }
    }

    pub fn shared(self) -> SharedPods {
        Arc::new(RwLock::new(self))
    }

    pub fn lookup(&self, container_id: &str) -> Option<Arc<ContainerIdentity>> {
        self.by_container.get(container_id).cloned()
    }

    pub fn pods(&self) -> usize {
        self.by_pod.len()
    }

    fn forget(&mut self, key: &str) {
        for id in self.by_pod.remove(key).unwrap_or_default() {
            self.by_container.remove(&id);
        }
    }

    /// An added or modified pod: its containers now are exactly the ones it lists.
    pub fn apply(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        if let Some(seen) = &mut self.listing {
            seen.insert(key.clone());
        }
        self.forget(&key);
        let found = containers(pod, self.annotations);
        let ids = found.iter().map(|(id, _)| id.clone()).collect();
        for (id, identity) in found {
            self.by_container.insert(id, identity);
        }
        self.by_pod.insert(key, ids);
    }

    /// A deleted pod: remembered until `now + keep_deleted`.
    pub fn delete(&mut self, pod: &Pod, now: Instant) {
        self.deleted
            .push_back((now + self.keep_deleted, pod_key(pod)));
    }

    /// A (re-)list starts (first start, or after the watch expired with 410 Gone).
    pub fn begin_list(&mut self) {
        self.listing = Some(HashSet::new());
    }

    /// The list is complete: pods it did not contain were deleted while we were not
    /// watching.
    pub fn end_list(&mut self, now: Instant) {
        let Some(seen) = self.listing.take() else {
            return;
        };
        let gone: Vec<String> = self
            .by_pod
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.deleted.push_back((now + self.keep_deleted, key));
        }
        self.synced = true;
    }

    /// Forgets deleted pods whose time is up.
    pub fn expire(&mut self, now: Instant) {
        while let Some((when, _)) = self.deleted.front() {
            if *when > now {
                break;
            }
            let (_, key) = self.deleted.pop_front().unwrap();
            self.forget(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, name: &str, id: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": uid},
            "status": {"containerStatuses": [{"name": "c", "containerID": format!("containerd://{id}"),
                "image": "i", "imageID": "", "ready": true, "restartCount": 0}]}
        }))
        .unwrap()
    }

    #[test]
    fn apply_modify_delete_expire() {
        let t0 = Instant::now();
        let mut s = PodStore::new(Duration::from_secs(60), false);
        s.apply(&pod("u1", "a", "id1"));
        assert_eq!(s.lookup("id1").unwrap().pod.name, "a");
        // A restart: the pod now lists a new container id; the old one is gone.
        s.apply(&pod("u1", "a", "id2"));
        assert!(s.lookup("id1").is_none());
        assert!(s.lookup("id2").is_some());
        s.delete(&pod("u1", "a", "id2"), t0);
        s.expire(t0 + Duration::from_secs(59));
        assert!(
            s.lookup("id2").is_some(),
            "remembered a while after deletion"
        );
        s.expire(t0 + Duration::from_secs(60));
        assert!(s.lookup("id2").is_none());
        assert_eq!(s.pods(), 0);
    }

    #[test]
    fn relist_deletes_pods_missing_from_it() {
        let t0 = Instant::now();
        let mut s = PodStore::new(Duration::ZERO, false);
        assert!(!s.synced);
        s.begin_list();
        s.apply(&pod("u1", "a", "id1"));
        s.apply(&pod("u2", "b", "id2"));
        s.end_list(t0);
        assert!(s.synced);
        // The watch expired (410 Gone); the re-list no longer has b.
        s.begin_list();
        s.apply(&pod("u1", "a", "id1"));
        s.end_list(t0);
        s.expire(t0);
        assert!(s.lookup("id1").is_some());
        assert!(s.lookup("id2").is_none());
    }
}
