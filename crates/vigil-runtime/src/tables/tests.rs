//! Unit tests of the Plan -> tables step.

use super::*;
use vigil_policy::compile::Capabilities;
use vigil_policy::types::{NamespaceKind, Operator};

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
    let yaml = OPENAT
        .replace("matchBinaries:", "matchParentBinaries:")
        .replace("operator: \"In\"", "operator: \"Prefix\"");
    let err = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap_err();
    assert!(err.reason.contains("operator Prefix"), "{err}");
    assert_eq!(
        err.path, "spec.kprobes[0].selectors[0].matchParentBinaries",
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

const CLOCK: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: clock
spec:
  kprobes:
  - call: "sys_clock_settime"
    syscall: true
    args:
    - index: 0
      type: int
    selectors:
    - matchPIDs:
      - operator: NotIn
        followForks: true
        isNamespacePID: true
        values: [1]
      - operator: NotIn
        followForks: true
        isNamespacePID: true
        values: [0, 1]
"#;

#[test]
fn namespace_pid_entries_of_a_selector_merge_into_one_not_in_set() {
    let t = build(&plan(CLOCK), &mut Ids::default(), &|_| None).unwrap();
    let sel = &t.tables.hooks[0].selectors[0];
    assert_eq!(sel.pid_op, VIGIL_OP_NOT_IN);
    assert_eq!(&sel.pids[..sel.npids as usize], &[1, 0]);
    assert_eq!(
        sel.flags & (VIGIL_SEL_NS_PID | VIGIL_SEL_FOLLOW_FORKS),
        VIGIL_SEL_NS_PID | VIGIL_SEL_FOLLOW_FORKS
    );
}

#[test]
fn pid_entries_that_do_not_form_a_union_are_refused_by_name() {
    let mixed = CLOCK.replacen("operator: NotIn", "operator: In", 1);
    let err = build(&plan(&mixed), &mut Ids::default(), &|_| None).unwrap_err();
    assert!(err.reason.contains("matchPIDs"), "{err}");
    let host_pid = CLOCK.replacen("isNamespacePID: true", "isNamespacePID: false", 1);
    let err = build(&plan(&host_pid), &mut Ids::default(), &|_| None).unwrap_err();
    assert!(err.reason.contains("isNamespacePID"), "{err}");
}

fn ns_selector(
    kind: NamespaceKind,
    op: Operator,
    values: &[&str],
) -> vigil_policy::model::NamespaceSelector {
    vigil_policy::model::NamespaceSelector {
        namespace: kind,
        operator: op,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

#[test]
fn host_ns_is_resolved_per_kind_and_numbers_are_kept() {
    let host = |k: NamespaceKind| Ok(4_000_000_000 + k as u32);
    let mut sel = vigil_selector_cfg::default();
    let n = ns_selector(
        NamespaceKind::Net,
        Operator::NotIn,
        &["host_ns", "4026531999"],
    );
    namespaces_filter("p", &mut sel, &n, &host).unwrap();
    let n = ns_selector(NamespaceKind::User, Operator::In, &["host_ns"]);
    namespaces_filter("p", &mut sel, &n, &host).unwrap();
    assert_eq!(sel.nns, 2);
    // Kinds index struct vigil_namespaces: uts ipc mnt pid pid_for_children net ... user.
    assert_eq!((sel.ns[0].kind, sel.ns[1].kind), (5, 9));
    assert_eq!(u32::from(sel.ns[0].op), VIGIL_OP_NOT_IN);
    assert_eq!(u32::from(sel.ns[1].op), VIGIL_OP_IN);
    assert_eq!(&sel.ns[0].values[..2], &[4_000_000_005, 4_026_531_999]);
    assert_eq!(sel.ns[1].values[0], 4_000_000_009);
}

#[test]
fn bad_namespace_values_are_named() {
    let host = |_| Err("no /proc".to_string());
    let mut sel = vigil_selector_cfg::default();
    let n = ns_selector(NamespaceKind::Pid, Operator::In, &["hostns"]);
    let err = namespaces_filter("s", &mut sel, &n, &host).unwrap_err();
    assert!(err.reason.contains("\"hostns\""), "{err}");
    assert_eq!(err.path, "s.matchNamespaces");
    let n = ns_selector(NamespaceKind::Pid, Operator::In, &["host_ns"]);
    let err = namespaces_filter("s", &mut sel, &n, &host).unwrap_err();
    assert!(err.reason.contains("no /proc"), "{err}");
    let n = ns_selector(NamespaceKind::Pid, Operator::Equal, &["1"]);
    assert!(namespaces_filter("s", &mut sel, &n, &|_| Ok(1)).is_err());
    assert_eq!(sel.nns, 0);
}

#[test]
fn namespace_links_parse_to_their_inode() {
    assert_eq!(parse_ns_link("pid:[4026531836]"), Some(4_026_531_836));
    assert_eq!(parse_ns_link("pid:4026531836"), None);
    assert_eq!(parse_ns_link("net:[x]"), None);
}

#[test]
fn host_namespace_is_the_inode_of_the_hosts_link() {
    use std::os::unix::fs::MetadataExt;
    for kind in [NamespaceKind::Pid, NamespaceKind::Mnt, NamespaceKind::Net] {
        let name = ns_proc_name(kind);
        // stat follows the link to the nsfs inode: independent of the link text parsed.
        let meta = std::fs::metadata(format!("/proc/1/ns/{name}"))
            .or_else(|_| std::fs::metadata(format!("/proc/self/ns/{name}")))
            .unwrap();
        assert_eq!(
            u64::from(read_host_namespace(kind).unwrap()),
            meta.ino(),
            "{name}"
        );
    }
}

const WRITE: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: write
spec:
  kprobes:
  - call: "sys_write"
    syscall: true
    args:
    - index: 0
      type: "int"
    - index: 1
      type: "char_buf"
      sizeArgIndex: 3
    - index: 2
      type: "size_t"
"#;

#[test]
fn char_buf_reads_its_count_from_the_size_argument() {
    let t = build(&plan(WRITE), &mut Ids::default(), &|_| None).unwrap();
    let cfg = &t.tables.hooks[0].config;
    assert_eq!(u32::from(cfg.arg_kind[1]), VIGIL_ARG_BUF);
    assert_eq!(cfg.arg_index[1], 1);
    // sizeArgIndex 3 is 1-based: the count is system call argument 2.
    assert_eq!(cfg.size_index[1], 2);
    assert_eq!(t.hooks[0].args[1].0, HookArg::Bytes);
}

#[test]
fn char_buf_without_a_usable_size_is_refused_by_name() {
    for (from, to, needle) in [
        ("      sizeArgIndex: 3\n", "", "sizeArgIndex"),
        ("sizeArgIndex: 3", "sizeArgIndex: 2", "sizeArgIndex 2"),
    ] {
        let yaml = WRITE.replace(from, to);
        let err = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap_err();
        assert!(err.reason.contains(needle), "{from:?}: {err}");
        assert_eq!(err.path, "spec.kprobes[0].args[1]", "{err}");
    }
}

const WRITE_SAME_FILE: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: protected-writes
spec:
  kprobes:
  - call: "sys_write"
    syscall: true
    args:
    - index: 0
      type: "fd"
    selectors:
    - matchArgs:
      - index: 0
        operator: "SameFile"
        values: ["/srv/protected", "/srv/missing"]
"#;

#[test]
fn same_file_puts_the_files_identities_in_a_set_of_its_own() {
    let mut ids = Ids::default();
    let t = build(&plan(WRITE_SAME_FILE), &mut ids, &|p| {
        (p == "/srv/protected").then_some((1234, 0x800001))
    })
    .unwrap();
    let f = &t.tables.hooks[0].selectors[0].filters[0];
    assert_eq!(u32::from(f.op), VIGIL_OP_SAME_FILE);
    assert_eq!(f.slot, 0);
    assert_eq!(
        t.tables.binaries,
        vec![vigil_bin_key {
            set_id: f.set_id,
            pad: 0,
            ino: 1234,
            dev: 0x800001
        }]
    );
    // Both paths are kept for the refresher, the missing one unresolved.
    let kept: Vec<_> = t
        .same_files
        .iter()
        .map(|e| (e.set_id, e.path.as_str(), e.identity))
        .collect();
    assert_eq!(
        kept,
        vec![
            (f.set_id, "/srv/protected", Some((1234, 0x800001))),
            (f.set_id, "/srv/missing", None)
        ]
    );
    // The fd is read at entry for the filter.
    assert_eq!(t.tables.hooks[0].config.filter_strs & 1, 1);
}

#[test]
fn same_file_on_a_string_is_refused_by_name() {
    let yaml = WRITE_SAME_FILE
        .replace("sys_write", "sys_openat")
        .replace("type: \"fd\"", "type: \"string\"");
    let err = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap_err();
    assert!(
        err.reason.contains("SameFile needs a file-like argument"),
        "{err}"
    );
    assert!(err.path.contains("selectors[0]"), "{err}");
}

/// Policy churn: ids released on unload are taken again, so loads never run out; a failed
/// build gives back what it took; every load has its own generation.
#[test]
fn hook_ids_are_given_back_and_generations_differ() {
    let mut ids = Ids::default();
    let p = plan(OPENAT);
    let mut generations = std::collections::HashSet::new();
    for _ in 0..(3 * VIGIL_MAX_HOOKS) {
        let t = build(&p, &mut ids, &|_| None).unwrap();
        assert_eq!(t.hooks[0].id, 0, "the lowest free id");
        assert_eq!(t.tables.generation, t.generation);
        assert_eq!(t.hooks[0].generation, t.generation);
        assert!(generations.insert(t.generation), "generation reused");
        ids.release(t.hooks.iter().map(|h| h.id));
    }
    assert_eq!(ids.hooks_in_use(), 0);
    // Held ids are not handed out twice; the limit is reached only by live hooks.
    let held: Vec<_> = (0..VIGIL_MAX_HOOKS)
        .map(|_| build(&p, &mut ids, &|_| None).unwrap().hooks[0].id)
        .collect();
    assert_eq!(
        held.iter().collect::<std::collections::HashSet<_>>().len(),
        VIGIL_MAX_HOOKS as usize
    );
    let err = build(&p, &mut ids, &|_| None).unwrap_err();
    assert!(err.reason.contains("VIGIL_MAX_HOOKS"), "{err}");
    ids.release([7]);
    assert_eq!(build(&p, &mut ids, &|_| None).unwrap().hooks[0].id, 7);
}
