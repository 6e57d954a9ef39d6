use super::*;
use vigil_policy::model::LabelRequirement;

fn w(namespace: &str, labels: &[(&str, &str)], name: &str, image: &str) -> Workload {
    Workload {
        namespace: namespace.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        container_name: name.into(),
        image: image.into(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        match_expressions: Vec::new(),
    }
}

fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![LabelRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }],
    }
}

fn ns(namespace: &str) -> PolicyScope {
    PolicyScope {
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

fn pods(sel: LabelSelector) -> PolicyScope {
    PolicyScope {
        pod_selector: Some(sel),
        ..Default::default()
    }
}

#[test]
fn image_repo_drops_tag_and_digest_but_not_a_registry_port() {
    assert_eq!(image_repo("nginx"), "nginx");
    assert_eq!(image_repo("nginx:1.27"), "nginx");
    assert_eq!(
        image_repo("docker.io/library/nginx:1.27@sha256:abcd"),
        "docker.io/library/nginx"
    );
    assert_eq!(
        image_repo("localhost:5000/team/app"),
        "localhost:5000/team/app"
    );
    assert_eq!(
        image_repo("localhost:5000/team/app:v2"),
        "localhost:5000/team/app"
    );
}

#[test]
fn namespace_scope_selects_only_its_namespace() {
    let a = w("a", &[], "c", "i");
    let b = w("b", &[], "c", "i");
    assert!(selects(&ns("a"), &a));
    assert!(!selects(&ns("a"), &b));
    // No namespace, no selectors: every pod (the policy is still pods-only).
    assert!(selects(&PolicyScope::default(), &b));
}

#[test]
fn pod_selector_labels_and_expressions() {
    let web = w("shop", &[("app", "web"), ("tier", "front")], "c", "i");
    let db = w("shop", &[("app", "db")], "c", "i");
    assert!(selects(&pods(labels(&[("app", "web")])), &web));
    assert!(!selects(&pods(labels(&[("app", "web")])), &db));
    assert!(!selects(
        &pods(labels(&[("app", "web"), ("tier", "back")])),
        &web
    ));
    assert!(selects(&pods(labels(&[])), &db), "{{}} selects every pod");
    assert!(selects(&pods(expr("app", "In", &["db", "cache"])), &db));
    assert!(!selects(&pods(expr("app", "In", &["db", "cache"])), &web));
    assert!(selects(&pods(expr("app", "NotIn", &["db"])), &web));
    assert!(!selects(&pods(expr("app", "NotIn", &["db"])), &db));
    // NotIn and DoesNotExist hold when the key is absent; Exists and In do not.
    assert!(selects(&pods(expr("tier", "NotIn", &["front"])), &db));
    assert!(selects(&pods(expr("tier", "DoesNotExist", &[])), &db));
    assert!(!selects(&pods(expr("tier", "DoesNotExist", &[])), &web));
    assert!(selects(&pods(expr("tier", "Exists", &[])), &web));
    assert!(!selects(&pods(expr("tier", "Exists", &[])), &db));
    assert!(!selects(&pods(expr("tier", "Bogus", &[])), &web));
}

#[test]
fn pod_selector_sees_the_namespace_label() {
    let sel = pods(labels(&[(NAMESPACE_LABEL, "shop")]));
    assert!(selects(&sel, &w("shop", &[], "c", "i")));
    assert!(!selects(&sel, &w("other", &[], "c", "i")));
}

#[test]
fn namespace_and_selectors_all_have_to_hold() {
    let scope = PolicyScope {
        namespace: Some("a".into()),
        pod_selector: Some(labels(&[("app", "web")])),
        container_selector: Some(labels(&[("name", "main")])),
    };
    assert!(selects(&scope, &w("a", &[("app", "web")], "main", "i")));
    assert!(!selects(&scope, &w("b", &[("app", "web")], "main", "i")));
    assert!(!selects(&scope, &w("a", &[("app", "db")], "main", "i")));
    assert!(!selects(&scope, &w("a", &[("app", "web")], "sidecar", "i")));
}

#[test]
fn container_selector_name_and_repo() {
    let scope = PolicyScope {
        container_selector: Some(labels(&[("repo", "docker.io/library/nginx")])),
        ..Default::default()
    };
    assert!(selects(
        &scope,
        &w("a", &[], "x", "docker.io/library/nginx:1.27")
    ));
    assert!(!selects(
        &scope,
        &w("a", &[], "x", "docker.io/library/redis:7")
    ));
    let by_name = PolicyScope {
        container_selector: Some(expr("name", "In", &["main", "init"])),
        ..Default::default()
    };
    assert!(selects(&by_name, &w("a", &[], "init", "i")));
    assert!(!selects(&by_name, &w("a", &[], "sidecar", "i")));
}

/// A kernel set that records what it holds.
#[derive(Default)]
struct FakeSet(Mutex<BTreeSet<u64>>);

impl CgroupSet for FakeSet {
    fn insert(&self, id: u64) -> Result<(), String> {
        self.0.lock().unwrap().insert(id);
        Ok(())
    }
    fn remove(&self, id: u64) {
        self.0.lock().unwrap().remove(&id);
    }
}

impl FakeSet {
    fn ids(&self) -> Vec<u64> {
        self.0.lock().unwrap().iter().copied().collect()
    }
}

fn set() -> (Arc<FakeSet>, Vec<Arc<dyn CgroupSet>>) {
    let s = Arc::new(FakeSet::default());
    let dynamic: Arc<dyn CgroupSet> = s.clone();
    (s, vec![dynamic])
}

#[test]
fn a_policy_gets_the_cgroups_of_known_pods_and_of_pods_that_come_later() {
    let mut s = Scopes::default();
    s.set_pod("pa", vec![("ca".into(), w("a", &[], "c", "i"))]);
    s.set_pod("pb", vec![("cb".into(), w("b", &[], "c", "i"))]);
    s.add_cgroup("ca", 10);
    s.add_cgroup("cb", 20);
    let (kernel, sets) = set();
    let id = s.add_policy("p", ns("a"), sets);
    assert_eq!(kernel.ids(), vec![10]);
    // A second container of the namespace: its cgroup is learned after its pod.
    s.set_pod("pa2", vec![("ca2".into(), w("a", &[], "c", "i"))]);
    assert_eq!(kernel.ids(), vec![10]);
    s.add_cgroup("ca2", 11);
    assert_eq!(kernel.ids(), vec![10, 11]);
    // A cgroup whose pod is not known yet joins no policy until the pod arrives.
    s.add_cgroup("ca3", 12);
    assert_eq!(kernel.ids(), vec![10, 11]);
    s.set_pod("pa3", vec![("ca3".into(), w("a", &[], "c", "i"))]);
    assert_eq!(kernel.ids(), vec![10, 11, 12]);
    assert_eq!(
        s.applied(id).unwrap().iter().copied().collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    s.delete_pod("pa");
    assert_eq!(kernel.ids(), vec![11, 12]);
    s.remove_policy(id);
    assert!(s.applied(id).is_none());
}

#[test]
fn relabelled_pods_leave_and_join_a_pod_selector_policy() {
    let mut s = Scopes::default();
    let (kernel, sets) = set();
    s.add_policy("web", pods(labels(&[("app", "web")])), sets);
    s.set_pod(
        "p1",
        vec![("c1".into(), w("a", &[("app", "web")], "c", "i"))],
    );
    s.add_cgroup("c1", 5);
    assert_eq!(kernel.ids(), vec![5]);
    s.set_pod(
        "p1",
        vec![("c1".into(), w("a", &[("app", "db")], "c", "i"))],
    );
    assert_eq!(kernel.ids(), Vec::<u64>::new());
    s.set_pod(
        "p1",
        vec![("c1".into(), w("a", &[("app", "web")], "c", "i"))],
    );
    assert_eq!(kernel.ids(), vec![5], "the cgroup is still known");
    // The pod's container restarted under a new id: the old one's cgroup leaves.
    s.set_pod(
        "p1",
        vec![("c2".into(), w("a", &[("app", "web")], "c", "i"))],
    );
    assert_eq!(kernel.ids(), Vec::<u64>::new());
    assert_eq!(s.without_cgroups(["c2"]), vec!["c2".to_string()]);
    s.add_cgroup("c2", 6);
    assert!(s.knows_cgroup("c2", 6));
    assert_eq!(kernel.ids(), vec![6]);
}

#[test]
fn a_relist_deletes_the_pods_it_lacks() {
    let mut s = Scopes::default();
    let (kernel, sets) = set();
    s.add_policy("all", PolicyScope::default(), sets);
    s.set_pod("p1", vec![("c1".into(), w("a", &[], "c", "i"))]);
    s.set_pod("p2", vec![("c2".into(), w("a", &[], "c", "i"))]);
    s.add_cgroup("c1", 1);
    s.add_cgroup("c2", 2);
    assert_eq!(kernel.ids(), vec![1, 2]);
    s.begin_list();
    s.set_pod("p2", vec![("c2".into(), w("a", &[], "c", "i"))]);
    s.end_list();
    assert_eq!(kernel.ids(), vec![2]);
}

#[test]
fn two_policies_keep_their_own_sets() {
    let mut s = Scopes::default();
    let (ka, a) = set();
    let (kb, b) = set();
    s.add_policy("same-name", ns("a"), a);
    s.add_policy("same-name", ns("b"), b);
    s.set_pod("pa", vec![("ca".into(), w("a", &[], "c", "i"))]);
    s.set_pod("pb", vec![("cb".into(), w("b", &[], "c", "i"))]);
    s.add_cgroup("ca", 1);
    s.add_cgroup("cb", 2);
    assert_eq!((ka.ids(), kb.ids()), (vec![1], vec![2]));
}

#[test]
fn cgroups_are_found_by_container_id_in_any_layout() {
    use std::os::unix::fs::MetadataExt;
    let root = std::env::temp_dir().join(format!("vigil-scope-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let id_a = "a".repeat(64);
    let id_b = "b".repeat(64);
    let a = root.join(format!("kubepods/besteffort/poduid/{id_a}"));
    let b = root.join(format!(
        "kubepods.slice/x.slice/cri-containerd-{id_b}.scope"
    ));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::create_dir_all(root.join("system.slice/other.service")).unwrap();
    let mut found = find_cgroups(&root, &[id_a.clone(), id_b.clone(), "c".repeat(64)]);
    found.sort();
    let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(found, vec![(id_a, ino(&a)), (id_b, ino(&b))]);
    std::fs::remove_dir_all(&root).unwrap();
}
