//! Unit tests of matchParentBinaries, matchCapabilities, matchCapabilityChanges and
//! matchNamespaceChanges -> kernel selector fields. Expected bit numbers are capability(7)'s.

use super::*;
use vigil_policy::compile::Capabilities;

fn plan(yaml: &str) -> Plan {
    let policy = vigil_policy::parse_policy(yaml, "t.yaml").expect("valid policy");
    vigil_policy::compile(&policy, &Capabilities::TRACEPOINTS_ONLY)
}

fn policy(selector: &str) -> String {
    format!(
        r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: caps
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 0
      type: "int"
    selectors:
    - {selector}
"#
    )
}

fn first_selector(yaml: &str) -> Result<(vigil_selector_cfg, PolicyTables), Unsupported> {
    let t = build(&plan(yaml), &mut Ids::default(), &|p| {
        (p == "/usr/bin/bash").then_some((11, 3))
    })?;
    Ok((t.tables.hooks[0].selectors[0], t))
}

#[test]
fn parent_binaries_get_their_own_set_and_follow_flag() {
    let yaml = policy(
        "matchParentBinaries:\n      - operator: In\n        values: [\"/usr/bin/bash\", \"/nonexistent\"]\n        followChildren: true",
    );
    let (sel, t) = first_selector(&yaml).unwrap();
    assert_eq!(sel.pbin_op, VIGIL_OP_IN);
    assert_eq!(sel.bin_op, VIGIL_OP_NONE, "matchBinaries is untouched");
    assert_ne!(sel.flags & VIGIL_SEL_PARENT_FOLLOW, 0);
    // The missing path names no file: only bash is in the set.
    assert_eq!(
        t.tables.binaries,
        vec![vigil_bin_key {
            set_id: sel.pbin_set_id,
            pad: 0,
            ino: 11,
            dev: 3
        }]
    );
    let yaml = policy(
        "matchParentBinaries:\n      - operator: NotIn\n        values: [\"/usr/bin/bash\"]",
    );
    let (sel, _) = first_selector(&yaml).unwrap();
    assert_eq!(sel.pbin_op, VIGIL_OP_NOT_IN);
    assert_eq!(sel.flags & VIGIL_SEL_PARENT_FOLLOW, 0);
}

#[test]
fn capability_names_become_bits_of_the_named_set() {
    let yaml = policy(
        "matchCapabilities:\n      - type: Permitted\n        operator: NotIn\n        values: [\"CAP_NET_RAW\", \"cap_sys_admin\"]",
    );
    let (sel, _) = first_selector(&yaml).unwrap();
    assert_eq!(sel.ncaps, 1);
    let f = sel.caps[0];
    assert_eq!(u32::from(f.set), VIGIL_CAPSET_PERMITTED);
    assert_eq!(u32::from(f.op), VIGIL_OP_NOT_IN);
    assert_eq!(f.changes, 0);
    assert_eq!(f.user_ns, 0);
    // CAP_NET_RAW is 13, CAP_SYS_ADMIN 21.
    assert_eq!(f.mask, (1 << 13) | (1 << 21));
    assert_ne!(
        sel.flags & VIGIL_SEL_TASK_STATE,
        0,
        "events carry the task's caps"
    );
}

#[test]
fn effective_is_the_default_set_and_changes_are_marked() {
    let yaml =
        policy("matchCapabilityChanges:\n      - operator: In\n        values: [\"CAP_CHOWN\"]");
    let (sel, _) = first_selector(&yaml).unwrap();
    assert_eq!(sel.ncaps, 1);
    assert_eq!(u32::from(sel.caps[0].set), VIGIL_CAPSET_EFFECTIVE);
    assert_eq!(sel.caps[0].changes, 1);
    assert_eq!(sel.caps[0].mask, 1);
}

#[test]
fn namespace_capability_compares_with_the_host_user_namespace() {
    let yaml = policy(
        "matchCapabilities:\n      - operator: In\n        isNamespaceCapability: true\n        values: [\"CAP_SYS_ADMIN\"]",
    );
    let (sel, _) = first_selector(&yaml).unwrap();
    let host = read_host_namespace(vigil_policy::types::NamespaceKind::User).unwrap();
    assert_eq!(sel.caps[0].user_ns, host);
    assert_ne!(host, 0);
}

#[test]
fn namespace_changes_become_a_mask_in_kernel_order() {
    let yaml =
        policy("matchNamespaceChanges:\n      - operator: In\n        values: [\"Mnt\", \"User\"]");
    let (sel, _) = first_selector(&yaml).unwrap();
    assert_eq!(sel.nschg_op, VIGIL_OP_IN);
    // struct vigil_namespaces: uts 0, ipc 1, mnt 2, ..., user 9.
    assert_eq!(sel.nschg_mask, (1 << 2) | (1 << 9));
}

#[test]
fn too_many_capability_entries_are_refused_by_name() {
    let entry = "\n      - operator: In\n        values: [\"CAP_CHOWN\"]";
    let yaml = policy(&format!("matchCapabilities:{}", entry.repeat(5)));
    let err = first_selector(&yaml).unwrap_err();
    assert_eq!(err.path, "spec.kprobes[0].selectors[0].matchCapabilities");
    assert!(err.reason.contains("more than 4"), "{err}");
}

#[test]
fn capability_bits_follow_the_kernel_numbering() {
    assert_eq!(capability_bit("CAP_CHOWN"), Some(0));
    assert_eq!(capability_bit("CAP_SETUID"), Some(7));
    assert_eq!(capability_bit("CAP_CHECKPOINT_RESTORE"), Some(40));
    assert_eq!(capability_bit("CAP_NOPE"), None);
}

#[test]
fn post_stack_options_become_flags() {
    let yaml = policy("matchActions:\n      - action: Post\n        userStackTrace: true");
    let (sel, _) = first_selector(&yaml).unwrap();
    assert_ne!(sel.flags & VIGIL_SEL_USER_STACK, 0);
    assert_eq!(sel.actions, VIGIL_ACT_POST);
    let yaml = policy("matchActions:\n      - action: Post\n        kernelStackTrace: true");
    let (sel, _) = first_selector(&yaml).unwrap();
    assert_ne!(sel.flags & VIGIL_SEL_KERNEL_STACK, 0);
    assert_eq!(sel.flags & VIGIL_SEL_USER_STACK, 0);
}

#[test]
fn user_actions_are_kept_per_selector_and_need_the_event() {
    let yaml = policy(
        "matchActions:\n      - action: GetUrl\n        argUrl: \"http://127.0.0.1:1/x\"\n      - action: DnsLookup\n        argFqdn: \"a.test\"",
    );
    let (sel, t) = first_selector(&yaml).unwrap();
    assert_eq!(
        sel.actions, VIGIL_ACT_POST,
        "the kernel posts; the agent acts"
    );
    assert_eq!(
        t.hooks[0].user_actions,
        vec![vec![
            UserAction::GetUrl("http://127.0.0.1:1/x".into()),
            UserAction::DnsLookup("a.test".into())
        ]]
    );
    let yaml = policy(
        "matchActions:\n      - action: DnsLookup\n        argFqdn: \"a.test\"\n      - action: NoPost",
    );
    let err = first_selector(&yaml).unwrap_err();
    assert!(err.reason.contains("NoPost"), "{err}");
    let yaml = policy("matchActions:\n      - action: GetUrl\n        argUrl: \"https://a.test/\"");
    let err = first_selector(&yaml).unwrap_err();
    assert!(err.reason.contains("https://"), "{err}");
}
