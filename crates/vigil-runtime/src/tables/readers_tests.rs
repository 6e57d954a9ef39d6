//! Unit tests of the fd, char_iovec, const_buf and returnCopy readers.

use crate::tables::{HookArg, Ids, build};
use vigil_bpf::abi::*;
use vigil_policy::compile::{Capabilities, Plan};

fn plan(yaml: &str) -> Plan {
    let policy = vigil_policy::parse_policy(yaml, "t.yaml").expect("valid policy");
    vigil_policy::compile(&policy, &Capabilities::TRACEPOINTS_ONLY)
}

fn policy(call: &str, args: &str, selectors: &str) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: t\nspec:\n  \
         kprobes:\n  - call: \"{call}\"\n    syscall: true\n    args:\n{args}{selectors}"
    )
}

#[test]
fn fd_is_read_as_a_path_and_filtered_with_string_sets() {
    let yaml = policy(
        "sys_write",
        "    - index: 0\n      type: \"fd\"\n",
        "    selectors:\n    - matchArgs:\n      - index: 0\n        operator: \"Prefix\"\n        \
         values: [\"/tmp/x\"]\n",
    );
    let t = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap();
    let cfg = &t.tables.hooks[0].config;
    assert_eq!(u32::from(cfg.arg_kind[0]), VIGIL_ARG_FD);
    // The path is what the filter reads: entry resolves it.
    assert_eq!(cfg.filter_strs, 1);
    assert_eq!(t.hooks[0].args[0].0, HookArg::File);
    let f = &t.tables.hooks[0].selectors[0].filters[0];
    assert_eq!(u32::from(f.op), VIGIL_OP_PREFIX);
    assert_eq!(t.tables.str_prefix.len(), 1);
    assert_eq!(&t.tables.str_prefix[0].data[..6], b"/tmp/x");
}

#[test]
fn char_iovec_takes_its_count_from_size_arg_index() {
    let yaml = policy(
        "sys_writev",
        "    - index: 1\n      type: \"char_iovec\"\n      sizeArgIndex: 3\n",
        "",
    );
    let t = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap();
    let cfg = &t.tables.hooks[0].config;
    assert_eq!(u32::from(cfg.arg_kind[0]), VIGIL_ARG_IOVEC);
    assert_eq!(cfg.size_index[0], 2);
    assert_eq!(t.hooks[0].args[0].0, HookArg::Bytes);
    let err = build(
        &plan(&yaml.replace("      sizeArgIndex: 3\n", "")),
        &mut Ids::default(),
        &|_| None,
    )
    .unwrap_err();
    assert!(
        err.reason.contains("char_iovec without sizeArgIndex"),
        "{err}"
    );
    assert_eq!(err.path, "spec.kprobes[0].args[0]");
}

#[test]
fn const_buf_size_comes_from_size_or_size_arg_index() {
    for (spec, want) in [("      size: 16\n", 16), ("      sizeArgIndex: 28\n", 28)] {
        let yaml = policy(
            "sys_bind",
            &format!("    - index: 1\n      type: \"const_buf\"\n{spec}"),
            "",
        );
        let t = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap();
        let cfg = &t.tables.hooks[0].config;
        assert_eq!(u32::from(cfg.arg_kind[0]), VIGIL_ARG_CONST_BUF, "{spec}");
        assert_eq!(cfg.const_size[0], want, "{spec}");
    }
    let none = policy(
        "sys_bind",
        "    - index: 1\n      type: \"const_buf\"\n",
        "",
    );
    let err = build(&plan(&none), &mut Ids::default(), &|_| None).unwrap_err();
    assert!(err.reason.contains("const_buf needs its size"), "{err}");
    let big = policy(
        "sys_bind",
        "    - index: 1\n      type: \"const_buf\"\n      size: 2000\n",
        "",
    );
    let err = build(&plan(&big), &mut Ids::default(), &|_| None).unwrap_err();
    assert!(err.reason.contains("at most 1023"), "{err}");
}

#[test]
fn return_copy_pairs_the_exit_and_reads_there() {
    let yaml = policy(
        "sys_read",
        "    - index: 0\n      type: \"fd\"\n    - index: 1\n      type: \"char_buf\"\n      \
         returnCopy: true\n",
        "",
    );
    let t = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap();
    let cfg = &t.tables.hooks[0].config;
    assert_eq!(u32::from(cfg.arg_kind[1]), VIGIL_ARG_BUF_RET);
    assert_ne!(cfg.flags & VIGIL_HOOK_EXIT, 0);
    assert_ne!(cfg.flags & VIGIL_HOOK_RET_COPY, 0);
    assert_eq!(t.hooks[0].args[1].0, HookArg::Bytes);
    // Without returnCopy the same hook completes at entry.
    let plain = yaml.replace("      returnCopy: true\n", "      sizeArgIndex: 3\n");
    let t = build(&plan(&plain), &mut Ids::default(), &|_| None).unwrap();
    assert_eq!(t.tables.hooks[0].config.flags & VIGIL_HOOK_RET_COPY, 0);
    assert_eq!(t.tables.hooks[0].config.flags & VIGIL_HOOK_EXIT, 0);
}

#[test]
fn buffers_cannot_be_filtered_yet_and_say_so() {
    let yaml = policy(
        "sys_writev",
        "    - index: 1\n      type: \"char_iovec\"\n      sizeArgIndex: 3\n",
        "    selectors:\n    - matchArgs:\n      - index: 1\n        operator: \"Prefix\"\n        \
         values: [\"GET \"]\n",
    );
    let err = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap_err();
    assert!(
        err.reason.contains("matchArgs on char_iovec argument 1"),
        "{err}"
    );
}

#[test]
fn max_data_sends_the_buffer_in_chunks() {
    let yaml = policy(
        "sys_write",
        "    - index: 1\n      type: \"char_buf\"\n      sizeArgIndex: 3\n      maxData: true\n",
        "",
    );
    let t = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap();
    let cfg = &t.tables.hooks[0].config;
    assert_eq!(u32::from(cfg.arg_kind[0]), VIGIL_ARG_BUF_DATA);
    assert_eq!(cfg.size_index[0], 2);
    assert_eq!(t.hooks[0].args[0].0, HookArg::Data);
}

#[test]
fn sockaddr_operators_become_family_port_and_cidr_tables() {
    let yaml = policy(
        "sys_connect",
        "    - index: 1\n      type: \"sockaddr\"\n",
        "    selectors:\n    - matchArgs:\n      - index: 1\n        operator: \"Family\"\n        \
         values: [\"AF_INET6\", \"2\"]\n      - index: 1\n        operator: \"SPort\"\n        \
         values: [\"80\", \"1000:2000\"]\n      - index: 1\n        operator: \"NotSAddr\"\n        \
         values: [\"10.1.0.0/16\", \"fd00::/8\"]\n      - index: 1\n        operator: \"SPortPriv\"\n",
    );
    let t = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap();
    let hook = &t.tables.hooks[0];
    assert_eq!(u32::from(hook.config.arg_kind[0]), VIGIL_ARG_SOCKADDR);
    assert_eq!(hook.config.filter_strs, 1, "read at entry for the filters");
    assert_eq!(t.hooks[0].args[0].0, HookArg::Sockaddr);
    let f = &hook.selectors[0].filters;
    assert_eq!(hook.selectors[0].nfilters, 4);
    assert_eq!((u32::from(f[0].op), f[0].nvalues), (VIGIL_OP_EQ, 2));
    assert_eq!(f[0].values[..2], [10, 2]);
    assert_eq!(u32::from(f[1].op), VIGIL_OP_PORT);
    assert_eq!(f[1].values[..2], [80 << 16 | 80, 1000 << 16 | 2000]);
    assert_eq!(u32::from(f[2].op), VIGIL_OP_NOT_ADDR);
    assert_eq!(u32::from(f[3].op), VIGIL_OP_PORT_PRIV);
    let keys: Vec<_> = t
        .tables
        .str_prefix
        .iter()
        .filter(|k| k.set_id == f[2].set_id)
        .map(|k| (k.prefixlen, k.data[..5].to_vec()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (32 + 8 + 16, vec![VIGIL_SA_TAG_V4 as u8, 10, 1, 0, 0]),
            (32 + 8 + 8, vec![VIGIL_SA_TAG_V6 as u8, 0xfd, 0, 0, 0]),
        ]
    );
}

#[test]
fn data_from_current_task_takes_the_slots_after_the_arguments() {
    let yaml = policy(
        "sys_write",
        "    - index: 0\n      type: \"fd\"\n    data:\n    - index: 0\n      type: \"int\"\n      \
         source: \"current_task\"\n      resolve: \"real_parent.tgid\"\n    - index: 1\n      \
         type: \"string\"\n      source: \"current_task\"\n      resolve: \"comm\"\n",
        "    selectors:\n    - matchData:\n      - index: 1\n        operator: \"Equal\"\n        \
         values: [\"bash\"]\n",
    );
    let t = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap();
    let cfg = &t.tables.hooks[0].config;
    assert_eq!(cfg.nargs, 3);
    assert_eq!(u32::from(cfg.arg_kind[1]), VIGIL_ARG_BTF);
    assert_eq!(u32::from(cfg.arg_kind[2]), VIGIL_ARG_BTF_STR);
    let ppid = &cfg.chains[1];
    assert_eq!(
        (ppid.nsteps, ppid.deref),
        (2, 0b10),
        "real_parent is loaded"
    );
    assert_ne!(u32::from(ppid.flags) & VIGIL_CHAIN_TASK, 0);
    assert_eq!(u32::from(ppid.leaf), VIGIL_LEAF_INT);
    assert_eq!(u32::from(cfg.chains[2].leaf), VIGIL_LEAF_CHAR_ARR);
    assert_eq!(t.hooks[0].data_from, Some(1));
    assert_eq!(t.hooks[0].args[2].0, HookArg::String);
    let f = &t.tables.hooks[0].selectors[0].filters[0];
    assert_eq!((f.slot, u32::from(f.op)), (2, VIGIL_OP_EQ));
    assert_eq!(cfg.filter_strs, 0b100);
    for (from, to, needle, at) in [
        (
            "resolve: \"comm\"",
            "resolve: \"nosuch\"",
            "has no member `nosuch`",
            1,
        ),
        (
            "source: \"current_task\"\n      resolve: \"comm\"",
            "source: \"pt_regs\"\n      resolve: \"comm\"",
            "data source pt_regs",
            1,
        ),
        (
            "type: \"int\"\n      source",
            "type: \"string\"\n      source",
            "ends on an integer",
            0,
        ),
    ] {
        let bad = yaml.replace(from, to);
        let err = build(&plan(&bad), &mut Ids::default(), &|_| None).unwrap_err();
        assert!(err.reason.contains(needle), "{to}: {err}");
        assert_eq!(err.path, format!("spec.kprobes[0].data[{at}]"), "{err}");
    }
}

#[test]
fn raw_tracepoint_resolve_follows_the_arguments_struct() {
    let yaml = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: t\nspec:\n  \
        tracepoints:\n  - subsystem: sched\n    event: sched_process_exec\n    raw: true\n    \
        args:\n    - index: 2\n      type: string\n      resolve: filename\n    - index: 0\n      \
        type: int\n      resolve: real_parent.tgid\n";
    let t = build(&plan(yaml), &mut Ids::default(), &|_| None).unwrap();
    let hook = &t.others.hooks[0];
    assert_eq!(u32::from(hook.config.arg_kind[0]), VIGIL_ARG_BTF_STR);
    assert_eq!(u32::from(hook.config.arg_kind[1]), VIGIL_ARG_BTF);
    let file = &hook.config.chains[0];
    // bprm points at the linux_binprm: its first member is read without a load.
    assert_eq!((file.nsteps, file.deref), (1, 0));
    assert_eq!(u32::from(file.leaf), VIGIL_LEAF_CHAR_PTR);
    assert_eq!(
        u32::from(file.flags) & VIGIL_CHAIN_TASK,
        0,
        "base: the argument"
    );
    assert_eq!(hook.config.chains[1].deref, 0b10);
    assert_eq!(hook.prep.args[1].size, 8, "the pointer, whole");
    assert_eq!(t.hooks[0].args[0].0, HookArg::String);
    let bad = yaml.replace("resolve: filename", "resolve: nosuch");
    let err = build(&plan(&bad), &mut Ids::default(), &|_| None).unwrap_err();
    assert!(
        err.reason.contains("linux_binprm` has no member `nosuch`"),
        "{err}"
    );
}

#[test]
fn sockaddr_ports_take_at_most_two_values() {
    let yaml = policy(
        "sys_connect",
        "    - index: 1\n      type: \"sockaddr\"\n",
        "    selectors:\n    - matchArgs:\n      - index: 1\n        operator: \"SPort\"\n        \
         values: [\"1\", \"2\", \"3\"]\n",
    );
    let err = build(&plan(&yaml), &mut Ids::default(), &|_| None).unwrap_err();
    assert!(err.reason.contains("more than 2 values for SPort"), "{err}");
}
