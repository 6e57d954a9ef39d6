use super::*;
use std::path::Path;

const EMPTY: &str =
    "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: empty\nspec: {}\n";
const HOOKS: &str = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: tp\nspec:\n  tracepoints:\n  - subsystem: syscalls\n    event: sys_enter_openat\n";

fn mgr(dir: Option<PathBuf>) -> MemoryPolicyManager {
    let caps = Capabilities {
        check_files: false,
        ..Capabilities::FULL_NO_ERROR_INJECTION
    };
    MemoryPolicyManager::new(caps, Box::new(no_runtime), dir)
}

fn grpc(name: &str) -> PolicyId {
    PolicyId {
        domain: Domain::Grpc,
        namespace: String::new(),
        name: name.into(),
    }
}

#[test]
fn lifecycle_of_a_policy_without_hooks() {
    let m = mgr(None);
    let s = m.add(EMPTY, Domain::Grpc, None).unwrap();
    assert_eq!(s.state, PolicyState::Enabled);
    assert!(matches!(
        m.add(EMPTY, Domain::Grpc, None),
        Err(PolicyOpError::AlreadyExists(_))
    ));
    m.configure(&grpc("empty"), Some(false), None).unwrap();
    assert_eq!(m.list(None)[0].state, PolicyState::Disabled);
    assert!(m.list(Some(Domain::Static)).is_empty());
    m.delete(&grpc("empty")).unwrap();
    assert!(matches!(
        m.delete(&grpc("empty")),
        Err(PolicyOpError::NotFound(_))
    ));
}

#[test]
fn hooks_need_the_runtime_and_bad_yaml_is_invalid() {
    let m = mgr(None);
    let e = m.add(HOOKS, Domain::Grpc, None).unwrap_err();
    assert!(
        matches!(&e, PolicyOpError::FailedPrecondition(m) if m.contains("issue 4")),
        "{e:?}"
    );
    assert!(m.list(None).is_empty());
    let e = m
        .add(
            &EMPTY.replace("spec: {}", "spec:\n  kprobes: 3"),
            Domain::Grpc,
            None,
        )
        .unwrap_err();
    assert!(
        matches!(&e, PolicyOpError::InvalidArgument(m) if m.contains("spec.kprobes")),
        "{e:?}"
    );
}

#[test]
fn persisted_policies_come_back() {
    let dir = std::env::temp_dir().join(format!("vigil-api-persist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    mgr(Some(dir.clone()))
        .add(EMPTY, Domain::Grpc, None)
        .unwrap();
    let again = mgr(Some(dir.clone()));
    assert!(again.restore().is_empty());
    assert_eq!(again.list(None)[0].id.name, "empty");
    again.delete(&grpc("empty")).unwrap();
    assert!(mgr(Some(dir.clone())).restore().is_empty());
    assert!(mgr(Some(dir.clone())).list(None).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A runtime that "loads" any plan and records the modes it loaded and was set to.
struct Fake {
    log: std::sync::Arc<Mutex<Vec<String>>>,
}

impl Kept for Fake {
    fn hook_counters(&self) -> Vec<HookCounters> {
        vec![HookCounters {
            hook: "__x64_sys_openat".into(),
            matched: 10,
            posted: 6,
            enforced: 2,
            dropped: 1,
            monitor: 0,
        }]
    }
    fn kernel_memory_bytes(&self) -> u64 {
        4096
    }
    fn set_mode(&self, mode: PolicyMode) -> Result<(), String> {
        self.log.lock().unwrap().push(format!("set {mode:?}"));
        Ok(())
    }
}

fn fake(dir: Option<PathBuf>) -> (MemoryPolicyManager, std::sync::Arc<Mutex<Vec<String>>>) {
    let log = std::sync::Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let caps = Capabilities {
        check_files: false,
        ..Capabilities::FULL_NO_ERROR_INJECTION
    };
    let loader: Loader = Box::new(move |plan: &Plan| {
        l2.lock().unwrap().push(format!("load {:?}", plan.mode));
        Ok(Loaded {
            sensors: vec!["s".into()],
            keep: Some(Box::new(Fake { log: l2.clone() })),
        })
    });
    (MemoryPolicyManager::new(caps, loader, dir), log)
}

const KILL: &str = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: kill\nspec:\n  kprobes:\n  - call: sys_openat\n    syscall: true\n    selectors:\n    - matchActions:\n      - action: Sigkill\n";

#[test]
fn status_carries_counters_memory_hooks_and_modes() {
    let (m, log) = fake(None);
    m.add(KILL, Domain::Static, Some(PolicyMode::Monitor))
        .unwrap();
    let s = &m.list(None)[0];
    assert_eq!(s.id.domain, Domain::Static);
    assert_eq!(
        s.counters,
        ActionCounters {
            post: 6,
            signal: 2,
            monitor_signal: 0,
            nopost: 3
        }
    );
    assert_eq!(s.kernel_memory_bytes, 4096);
    assert_eq!(
        s.hooks,
        vec![HookReport {
            section: "kprobes".into(),
            index: 0,
            description: "sys_openat".into(),
            loaded: true
        }]
    );
    assert_eq!(s.mode, ReportedMode::Monitor);
    let id = PolicyId {
        domain: Domain::Static,
        namespace: String::new(),
        name: "kill".into(),
    };
    // Loaded in the mode asked for; set-mode goes to the loaded object; a disabled
    // policy reloads in its last mode and reports no memory.
    m.configure(&id, None, Some(PolicyMode::Enforce)).unwrap();
    m.configure(&id, Some(false), None).unwrap();
    assert_eq!(m.list(None)[0].kernel_memory_bytes, 0);
    assert!(m.list(None)[0].hooks.is_empty());
    m.configure(&id, None, Some(PolicyMode::Monitor)).unwrap();
    m.configure(&id, Some(true), None).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["load Monitor", "set Enforce", "load Monitor"]
    );
    assert_eq!(m.list(None)[0].mode, ReportedMode::Monitor);
}

#[test]
fn deleting_a_static_policy_keeps_the_persisted_grpc_one() {
    let dir = std::env::temp_dir().join(format!("vigil-api-static-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (m, _) = fake(Some(dir.clone()));
    m.add(KILL, Domain::Grpc, None).unwrap();
    m.add(KILL, Domain::Static, None).unwrap();
    m.delete(&PolicyId {
        domain: Domain::Static,
        namespace: String::new(),
        name: "kill".into(),
    })
    .unwrap();
    let (again, _) = fake(Some(dir.clone()));
    assert!(again.restore().is_empty());
    assert_eq!(again.list(None).len(), 1);
    // A disabled gRPC policy comes back disabled, an enabled one enabled.
    let id = PolicyId {
        domain: Domain::Grpc,
        namespace: String::new(),
        name: "kill".into(),
    };
    again.configure(&id, Some(false), None).unwrap();
    let (third, log) = fake(Some(dir.clone()));
    assert!(third.restore().is_empty());
    assert_eq!(third.list(None)[0].state, PolicyState::Disabled);
    assert_eq!(*log.lock().unwrap(), ["load Enforce"]);
    third.configure(&id, Some(true), None).unwrap();
    let (fourth, _) = fake(Some(dir.clone()));
    assert!(fourth.restore().is_empty());
    assert_eq!(fourth.list(None)[0].state, PolicyState::Enabled);
    fourth.delete(&id).unwrap();
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing left behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A loader whose kernel objects log their load and drop, and which refuses plans of
/// policies named "refused-*".
struct Logged(u64, std::sync::Arc<Mutex<Vec<String>>>);
impl Kept for Logged {
    fn hook_counters(&self) -> Vec<HookCounters> {
        Vec::new()
    }
    fn kernel_memory_bytes(&self) -> u64 {
        self.0
    }
    fn set_mode(&self, _: PolicyMode) -> Result<(), String> {
        Ok(())
    }
}
impl Drop for Logged {
    fn drop(&mut self) {
        self.1.lock().unwrap().push(format!("drop {}", self.0));
    }
}

#[test]
fn replace_loads_the_new_version_before_dropping_the_old_and_keeps_it_on_failure() {
    let log = std::sync::Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let n = std::sync::atomic::AtomicU64::new(0);
    let loader: Loader = Box::new(move |plan: &Plan| {
        if plan.hooks.len() > 1 {
            return Err("too many hooks for this test".into());
        }
        let id = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        l.lock().unwrap().push(format!("load {id}"));
        Ok(Loaded {
            sensors: Vec::new(),
            keep: Some(Box::new(Logged(id, l.clone()))),
        })
    });
    let caps = Capabilities {
        check_files: false,
        ..Capabilities::FULL_NO_ERROR_INJECTION
    };
    let m = MemoryPolicyManager::new(caps, loader, None);
    m.replace(HOOKS, "policy", Domain::K8s).unwrap();
    let changed = HOOKS.replace("sys_enter_openat", "sys_enter_openat2");
    m.replace(&changed, "policy", Domain::K8s).unwrap();
    assert_eq!(*log.lock().unwrap(), ["load 1", "load 2", "drop 1"]);
    let two = format!("{changed}  - subsystem: syscalls\n    event: sys_enter_close\n");
    let err = m.replace(&two, "policy", Domain::K8s).unwrap_err();
    assert!(err.to_string().contains("too many hooks"), "{err}");
    let list = m.list(Some(Domain::K8s));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].kernel_memory_bytes, 2, "the loaded version stays");
    assert!(
        list[0].hooks[0].description.contains("openat2"),
        "{:?}",
        list[0].hooks
    );
    m.delete(&list[0].id).unwrap();
    assert_eq!(log.lock().unwrap().last().unwrap(), "drop 2");
}

/// nodeSelector: a policy not for this node is listed as skipped, cannot be enabled, and
/// becomes a loaded policy when replaced (the node was relabelled); and back.
#[test]
fn a_skipped_policy_is_listed_and_replaced_both_ways() {
    let m = mgr(None);
    let k8s = PolicyId {
        domain: Domain::K8s,
        ..grpc("empty")
    };
    assert_eq!(
        m.skip(EMPTY, "e", Domain::K8s).unwrap().state,
        PolicyState::Skipped
    );
    assert_eq!(m.list(None)[0].state, PolicyState::Skipped);
    let e = m.configure(&k8s, Some(true), None).unwrap_err();
    assert!(e.to_string().contains("not for this node"), "{e}");
    m.replace(EMPTY, "e", Domain::K8s).unwrap();
    assert_eq!(m.list(None)[0].state, PolicyState::Enabled);
    m.skip(EMPTY, "e", Domain::K8s).unwrap();
    assert_eq!(m.list(None).len(), 1);
    assert_eq!(m.list(None)[0].state, PolicyState::Skipped);
    m.delete(&k8s).unwrap();
    assert!(m.list(None).is_empty());
}

fn namespaced(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicyNamespaced\nmetadata:\n  name: {name:?}\n  namespace: {ns:?}\nspec: {{}}\n"
    )
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn grpc_names_and_namespaces_must_be_kubernetes_names() {
    let root = scratch("names");
    let dir = root.join("persist");
    let m = mgr(Some(dir.clone()));
    for (yaml, field) in [
        (namespaced("../../tmp/x", "tp"), "metadata.namespace"),
        (namespaced("/abs", "tp"), "metadata.namespace"),
        (namespaced("ns", "../../escape"), "metadata.name"),
        (
            EMPTY.replace("name: empty", "name: \"../../escape\""),
            "metadata.name",
        ),
        (EMPTY.replace("name: empty", "name: Upper"), "metadata.name"),
    ] {
        let e = m.add(&yaml, Domain::Grpc, None).unwrap_err();
        assert!(
            matches!(&e, PolicyOpError::InvalidArgument(msg) if msg.starts_with(field)),
            "{yaml}: {e:?}"
        );
    }
    assert!(m.list(None).is_empty());
    // Nothing was written anywhere under the scratch root (the `..` targets).
    let mut found = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                found.push(e.path());
            }
        }
    }
    assert!(found.is_empty(), "{found:?}");
    assert!(!Path::new("/tmp/x.tp.yaml").exists());
    // Valid ones are persisted as `{namespace}.{name}.yaml`.
    m.add(&namespaced("team-a", "tp.v1"), Domain::Grpc, None)
        .unwrap();
    assert!(dir.join("team-a.tp.v1.yaml").is_file());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn persisted_files_are_0600_and_symlinks_are_never_followed() {
    use std::os::unix::fs::PermissionsExt;
    let root = scratch("perm");
    let dir = root.join("persist");
    std::fs::create_dir_all(&dir).unwrap();
    // A symlink planted at the policy's file name, pointing at a file outside.
    let victim = root.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("_.empty.yaml")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("_.empty.disabled")).unwrap();
    let m = mgr(Some(dir.clone()));
    m.add(EMPTY, Domain::Grpc, None).unwrap();
    let f = dir.join("_.empty.yaml");
    let meta = std::fs::symlink_metadata(&f).unwrap();
    assert!(meta.file_type().is_file(), "the symlink was replaced");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    // Enabling removes the marker only if it is a regular file: the symlink stays, the
    // victim too.
    m.configure(&grpc("empty"), Some(false), None).unwrap();
    let marker = std::fs::symlink_metadata(dir.join("_.empty.disabled")).unwrap();
    assert!(marker.file_type().is_file());
    assert_eq!(marker.permissions().mode() & 0o777, 0o600);
    std::fs::remove_file(dir.join("_.empty.disabled")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("_.empty.disabled")).unwrap();
    m.configure(&grpc("empty"), Some(true), None).unwrap();
    assert!(
        std::fs::symlink_metadata(dir.join("_.empty.disabled"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Delete: a symlink swapped in for the YAML is left, its target untouched.
    std::fs::remove_file(&f).unwrap();
    std::os::unix::fs::symlink(&victim, &f).unwrap();
    m.delete(&grpc("empty")).unwrap();
    assert!(
        std::fs::symlink_metadata(&f)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    // Restore skips symlinks.
    assert!(mgr(Some(dir)).restore().is_empty());
    let _ = std::fs::remove_dir_all(&root);
}
