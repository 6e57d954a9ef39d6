//! Unit tests of the Plan -> tables step.

use super::*;
use vigil_policy::compile::Capabilities;

fn plan(yaml: &str) -> Plan {
    let policy = vigil_policy::parse_policy(yaml, "t.yaml").expect("valid policy");
    vigil_policy::compile(&policy, &Capabilities::TRACEPOINTS_ONLY)
}

const OPENAT: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: etc-reads
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 0
      type: "int"
    - index: 1
      type: "string"
    selectors:
    - matchArgs:
      - index: 1
        operator: "Prefix"
        values: ["/etc/", "/root/"]
      matchBinaries:
      - operator: "In"
        values: ["/usr/bin/cat"]
"#;

#[test]
fn openat_prefix_and_binary_become_tables() {
    let mut ids = Ids::default();
    let t = build(&plan(OPENAT), &mut ids, &|p| {
        (p == "/usr/bin/cat").then_some((42, 7))
    })
    .unwrap();
    assert_eq!(t.hooks.len(), 1);
    assert_eq!(t.hooks[0].function_name, "__x64_sys_openat");
    let hook = &t.tables.hooks[0];
    assert_eq!(hook.syscall, "openat");
    assert_eq!(hook.config.nargs, 2);
    assert_eq!(
        hook.config.arg_kind[..2],
        [VIGIL_ARG_INT as u8, VIGIL_ARG_STRING as u8]
    );
    assert_eq!(hook.config.arg_index[..2], [0, 1]);
    let sel = &hook.selectors[0];
    assert_eq!(sel.actions, VIGIL_ACT_POST);
    assert_eq!(sel.nfilters, 1);
    assert_eq!(sel.filters[0].slot, 1);
    assert_eq!(u32::from(sel.filters[0].op), VIGIL_OP_PREFIX);
    assert_eq!(sel.bin_op, VIGIL_OP_IN);
    assert_eq!(t.tables.str_prefix.len(), 2);
    let etc = &t.tables.str_prefix[0];
    assert_eq!(etc.prefixlen, 32 + 8 * 5);
    assert_eq!(&etc.data[..5], b"/etc/");
    assert_eq!(
        t.tables.binaries,
        vec![vigil_bin_key {
            set_id: sel.bin_set_id,
            pad: 0,
            ino: 42,
            dev: 7
        }]
    );
    assert_ne!(sel.bin_set_id, sel.filters[0].set_id);
}

#[test]
fn postfix_values_are_reversed_and_sigkill_posts() {
    let yaml = OPENAT.replace("\"Prefix\"", "\"Postfix\"").replace(
        "      matchBinaries:",
        "      matchActions:\n      - action: Sigkill\n      matchBinaries:",
    );
    let t = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap();
    assert_eq!(&t.tables.str_postfix[0].data[..5], b"/cte/");
    assert_eq!(
        t.tables.hooks[0].selectors[0].actions,
        VIGIL_ACT_POST | VIGIL_ACT_SIGKILL
    );
    assert!(
        t.tables.binaries.is_empty(),
        "a binary that does not exist matches nothing"
    );
}

#[test]
fn unsupported_constructs_are_named() {
    let yaml = OPENAT.replace("matchBinaries:", "matchNamespaces:\n      - namespace: Pid\n        operator: In\n        values: [\"host_ns\"]\n      matchParentBinaries:");
    let err = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap_err();
    assert!(
        err.reason.contains("matchNamespaces") || err.reason.contains("matchParentBinaries"),
        "{err}"
    );
    assert!(
        err.path.starts_with("spec.kprobes[0].selectors[0]"),
        "{err}"
    );
}

#[test]
fn ia32_numbers_come_from_the_uapi_header() {
    assert_eq!(ia32_number("openat"), Some(295));
    assert_eq!(ia32_number("execve"), Some(11));
    assert_eq!(ia32_number("no_such_call"), None);
    let t = build(&plan(OPENAT), &mut Ids::default(), &|_| None).unwrap();
    assert_eq!(t.tables.ia32, vec![(295, t.hooks[0].id)]);
}

#[test]
fn open_like_path_filters_pair_the_exit_and_resolve_the_fd() {
    let t = build(&plan(OPENAT), &mut Ids::default(), &|_| None).unwrap();
    let cfg = &t.tables.hooks[0].config;
    assert_eq!(cfg.flags, VIGIL_HOOK_EXIT | VIGIL_HOOK_FD_PATH);
    assert_eq!(cfg.path_slot, 1, "the string argument at index 1");
    assert_eq!(
        cfg.filter_strs,
        1 << 1,
        "entry reads the filtered string only"
    );
    assert!(t.tables.hooks[0].pairs_exit());
    // A filter on the dirfd argument only: nothing to resolve, entry-time selection.
    let dirfd_only = OPENAT.replace(
        r#"      - index: 1
        operator: "Prefix"
        values: ["/etc/", "/root/"]"#,
        r#"      - index: 0
        operator: "Equal"
        values: ["-100"]"#,
    );
    let t = build(&plan(&dirfd_only), &mut Ids::default(), &|_| None).unwrap();
    assert_eq!(t.tables.hooks[0].config.flags, 0);
    assert_eq!(t.tables.hooks[0].config.path_slot, 0xff);
    assert_eq!(open_like_path_arg("open"), Some(0));
    assert_eq!(open_like_path_arg("write"), None);
}

#[test]
fn match_return_args_filter_the_return_slot() {
    let yaml = OPENAT
            .replace(
                "    syscall: true\n",
                "    syscall: true\n    return: true\n    returnArg:\n      index: 0\n      type: \"int\"\n",
            )
            .replace(
                r#"    - matchArgs:
      - index: 1
        operator: "Prefix"
        values: ["/etc/", "/root/"]"#,
                r#"    - matchReturnArgs:
      - index: 0
        operator: "LessThan"
        values: ["0"]
      matchReturnActions:
      - action: Sigkill"#,
            );
    let t = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap();
    let hook = &t.tables.hooks[0];
    assert_eq!(hook.config.flags, VIGIL_HOOK_EXIT);
    assert_eq!(u32::from(hook.config.ret_kind), VIGIL_ARG_INT);
    assert_eq!(t.hooks[0].return_arg, Some(HookArg::Int));
    let sel = &hook.selectors[0];
    assert_eq!(sel.nfilters, 1);
    assert_eq!(u32::from(sel.filters[0].slot), VIGIL_SLOT_RET);
    assert_eq!(u32::from(sel.filters[0].op), VIGIL_OP_LT);
    assert_eq!(sel.filters[0].values[0], 0);
    assert_eq!(sel.ret_actions, VIGIL_ACT_SIGKILL);
    assert_eq!(sel.actions, VIGIL_ACT_POST);
}

#[test]
fn rate_limits_and_scopes() {
    assert_eq!(parse_rate_limit("1m"), Some(60_000_000_000));
    assert_eq!(parse_rate_limit("30s"), Some(30_000_000_000));
    assert_eq!(parse_rate_limit("5"), Some(5_000_000_000));
    assert_eq!(parse_rate_limit("250ms"), Some(250_000_000));
    assert_eq!(parse_rate_limit("2h"), Some(7_200_000_000_000));
    assert_eq!(parse_rate_limit("0s"), None, "no interval");
    assert_eq!(parse_rate_limit("1d"), None);
    assert_eq!(parse_rate_limit("m"), None);
    let yaml = OPENAT.replace(
        "      matchBinaries:",
        r#"      matchActions:
      - action: Post
        rateLimit: "10s"
        rateLimitScope: "process"
      matchBinaries:"#,
    );
    let t = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap();
    let sel = &t.tables.hooks[0].selectors[0];
    assert_eq!(sel.rate_ns, 10_000_000_000);
    assert_eq!(sel.flags, VIGIL_SEL_RATE_PROCESS);
}

#[test]
fn monitor_mode_comes_from_the_policy_option() {
    let t = build(&plan(OPENAT), &mut Ids::default(), &|_| None).unwrap();
    assert!(!t.tables.monitor);
    let yaml = OPENAT.replace(
        "spec:\n",
        "spec:\n  options:\n  - name: policy-mode\n    value: monitor\n",
    );
    let t = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap();
    assert!(t.tables.monitor);
}

#[test]
fn syscall_names() {
    assert_eq!(syscall_name("sys_openat"), "openat");
    assert_eq!(syscall_name("__x64_sys_write"), "write");
    assert_eq!(syscall_name("openat"), "openat");
}

#[test]
fn string_filters_carry_the_common_start_of_their_values() {
    let (packed, n) = common_start(&["/etc/".into(), "/root/".into()]);
    assert_eq!(n, 1, "only '/' is common");
    assert_eq!(packed, i64::from(b'/'));
    let (packed, n) = common_start(&["/nonexistent-vigil-bench/".into()]);
    assert_eq!(n, 8);
    assert_eq!(packed.to_le_bytes(), *b"/nonexis");
    assert_eq!(common_start(&[]), (0, 0));
    let t = build(&plan(OPENAT), &mut Ids::default(), &|_| None).unwrap();
    let f = &t.tables.hooks[0].selectors[0].filters[0];
    assert_eq!((f.nvalues, f.values[0]), (1, i64::from(b'/')));
}

#[test]
fn follow_forks_and_follow_children_become_selector_flags() {
    let yaml = OPENAT.replace(
        r#"        values: ["/usr/bin/cat"]"#,
        "        values: [\"/usr/bin/cat\"]\n        followChildren: true\n      matchPIDs:\n      - operator: In\n        values: [1]\n        followForks: true",
    );
    let t = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap();
    let sel = &t.tables.hooks[0].selectors[0];
    assert_eq!(
        sel.flags,
        VIGIL_SEL_FOLLOW_CHILDREN | VIGIL_SEL_FOLLOW_FORKS
    );
    assert_eq!((sel.pid_op, sel.npids, sel.pids[0]), (VIGIL_OP_IN, 1, 1));
}
