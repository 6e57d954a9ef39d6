//! The pod scope a compiled plan carries (TracingPolicyNamespaced, podSelector,
//! containerSelector), which the runtime turns into an in-kernel cgroup filter.

use vigil_policy::compile::{Capabilities, PolicyScope, compile};
use vigil_policy::parse_policy;

const HOOK: &str =
    "  kprobes:\n  - call: sys_execve\n    args:\n    - index: 0\n      type: string\n";

fn plan(kind: &str, namespace: Option<&str>, extra: &str) -> vigil_policy::Plan {
    let ns = namespace.map_or(String::new(), |n| format!("  namespace: {n}\n"));
    let yaml = format!(
        "apiVersion: cilium.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: t\n{ns}spec:\n{extra}{HOOK}"
    );
    let policy = parse_policy(&yaml, "t.yaml").unwrap();
    compile(&policy, &Capabilities::TRACEPOINTS_ONLY)
}

#[test]
fn a_plain_policy_is_not_scoped() {
    assert_eq!(plan("TracingPolicy", None, "").scope, None);
}

#[test]
fn a_namespaced_policy_is_scoped_to_its_namespace() {
    let p = plan("TracingPolicyNamespaced", Some("shop"), "");
    assert_eq!(
        p.scope,
        Some(PolicyScope {
            namespace: Some("shop".into()),
            ..Default::default()
        })
    );
    assert!(p.is_loadable(), "{:?}", p.refusals);
}

#[test]
fn selectors_make_a_cluster_policy_pods_only() {
    let p = plan(
        "TracingPolicy",
        Some("ignored"),
        "  podSelector:\n    matchLabels:\n      app: web\n  containerSelector:\n    matchExpressions:\n    - key: name\n      operator: In\n      values: [main]\n",
    );
    let scope = p.scope.expect("scoped");
    // A cluster policy's metadata.namespace does not restrict it.
    assert_eq!(scope.namespace, None);
    let pods = scope.pod_selector.expect("podSelector");
    assert_eq!(
        pods.match_labels.get("app").map(String::as_str),
        Some("web")
    );
    let containers = scope.container_selector.expect("containerSelector");
    assert_eq!(containers.match_expressions[0].key, "name");
}

#[test]
fn host_selector_with_a_pod_scope_is_refused_by_name() {
    let p = plan(
        "TracingPolicy",
        None,
        "  podSelector:\n    matchLabels:\n      app: web\n  hostSelector: {}\n",
    );
    assert_eq!(p.refusals.len(), 1, "{:?}", p.refusals);
    assert_eq!(p.refusals[0].path, "spec.hostSelector");
    assert!(p.refusals[0].reason.contains("pod cgroups only"));
}
