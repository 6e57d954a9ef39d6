//! Which network policies the cgroup socket fallback runs (expected outcomes by hand).

use crate::compile::{Capabilities, Mechanism, compile};

fn plan(yaml: &str) -> crate::Plan {
    let policy = crate::parse_policy(yaml, "t.yaml").expect("valid policy");
    compile(&policy, &Capabilities::TRACEPOINTS_ONLY)
}

fn connect(args: &str, match_args: &str, actions: &str) -> String {
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: t
spec:
  kprobes:
  - call: "security_socket_connect"
    syscall: false
    args:
{args}
    selectors:
    - matchArgs:
{match_args}
      matchActions:
{actions}
"#
    )
}

const ARGS: &str =
    "    - index: 0\n      type: \"socket\"\n    - index: 1\n      type: \"sockaddr\"";
const DENY_ADDR: &str =
    "      - index: 1\n        operator: \"SAddr\"\n        values: [\"127.0.0.2\"]";
const OVERRIDE: &str = "      - action: Override\n        argError: -1";

#[test]
fn an_enforcing_connect_policy_runs_on_cgroup_hooks() {
    let p = plan(&connect(ARGS, DENY_ADDR, OVERRIDE));
    assert!(p.is_loadable(), "{:?}", p.refusals);
    assert_eq!(p.hooks[0].mechanism, Mechanism::CgroupSockAddr);
    assert_eq!(p.hooks[0].mechanism.name(), "cgroup_sock_addr");
}

fn refusal(p: &crate::Plan) -> String {
    assert!(!p.is_loadable(), "refused");
    assert!(p.hooks.is_empty(), "nothing of it stays");
    p.refusals[0].reason.clone()
}

#[test]
fn observation_only_is_refused_with_the_usual_reason_first() {
    let r = refusal(&plan(&connect(ARGS, DENY_ADDR, "      - action: Post")));
    assert!(
        r.starts_with("kernel functions/LSM hooks need kprobes, fentry or BPF LSM, none available"),
        "{r}"
    );
    assert!(r.contains("no selector enforces"), "{r}");
}

#[test]
fn filters_the_socket_context_cannot_decide_are_refused() {
    // The sockaddr's destination is known; the socket's own source port is not yet.
    let sport = "      - index: 0\n        operator: \"SPort\"\n        values: [\"80\"]";
    let r = refusal(&plan(&connect(ARGS, sport, OVERRIDE)));
    assert!(r.contains("operator SPort on argument 0"), "{r}");
    let placeholder =
        "      - index: 1\n        operator: \"SAddr\"\n        values: [\"${PODCIDR}\"]";
    let r = refusal(&plan(&connect(ARGS, placeholder, OVERRIDE)));
    assert!(r.contains("not a literal address"), "{r}");
    let ns = format!(
        "{DENY_ADDR}\n      matchNamespaces:\n      - namespace: Net\n        operator: In\n        values: [\"host_ns\"]"
    );
    let r = refusal(&plan(&connect(ARGS, &ns, OVERRIDE)));
    assert!(r.contains("matchNamespaces cannot be evaluated"), "{r}");
}

#[test]
fn other_kernel_functions_keep_the_plain_refusal() {
    let yaml = connect(ARGS, DENY_ADDR, OVERRIDE)
        .replace("security_socket_connect", "security_socket_sendmsg");
    let r = refusal(&plan(&yaml));
    assert_eq!(
        r,
        "kernel functions/LSM hooks need kprobes, fentry or BPF LSM, none available"
    );
}
