//! Kernel-function and LSM hooks become tables (pure; expected values written by hand).

use super::*;
use vigil_policy::compile::Capabilities;

fn plan(yaml: &str) -> Plan {
    let policy = vigil_policy::parse_policy(yaml, "t.yaml").expect("valid policy");
    let plan = vigil_policy::compile(&policy, &Capabilities::FULL_NO_ERROR_INJECTION);
    assert!(plan.is_loadable(), "{:?}", plan.refusals);
    plan
}

fn build_ok(plan: &Plan) -> PolicyTables {
    build(plan, &mut Ids::default(), &|_| None).expect("builds")
}

const FILE_OPEN: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: file-open
spec:
  kprobes:
  - call: "security_file_open"
    syscall: false
    args:
    - index: 0
      type: "file"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Prefix"
        values: ["/etc/"]
"#;

#[test]
fn one_kernel_function_is_an_fentry_hook_with_a_file_reader() {
    let t = build_ok(&plan(FILE_OPEN));
    assert!(t.tables.hooks.is_empty(), "no syscall hook");
    assert_eq!(t.kfuncs.len(), 1);
    let k = &t.kfuncs[0];
    assert_eq!(k.function, "security_file_open");
    assert_eq!(k.attach, KfuncAttach::Fentry);
    assert_eq!(k.config.nargs, 1);
    assert_eq!(u32::from(k.config.arg_kind[0]), VIGIL_ARG_FILE);
    assert_eq!(k.selectors[0].filters[0].op, VIGIL_OP_PREFIX as u8);
    assert_eq!(t.tables.str_prefix.len(), 1);
    assert_eq!(&t.tables.str_prefix[0].data[..5], b"/etc/");
    assert_eq!(t.tables.str_prefix[0].prefixlen, 32 + 8 * 5);
    assert_eq!(t.hooks[0].function_name, "security_file_open");
    assert_eq!(t.hooks[0].args[0].0, HookArg::File);
    assert!(!t.hooks[0].lsm);
}

#[test]
fn override_on_a_security_function_is_fmod_ret_with_its_error() {
    let yaml = FILE_OPEN.replace(
        "        values: [\"/etc/\"]\n",
        "        values: [\"/etc/\"]\n      matchActions:\n      - action: Override\n        argError: -13\n",
    );
    let t = build_ok(&plan(&yaml));
    let k = &t.kfuncs[0];
    assert_eq!(k.attach, KfuncAttach::FmodRet);
    assert_eq!(k.selectors[0].actions, VIGIL_ACT_OVERRIDE | VIGIL_ACT_POST);
    assert_eq!(k.selectors[0].override_rc, -13);
}

#[test]
fn lsm_hook_reports_process_lsm_and_can_override() {
    let yaml = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: lsm
spec:
  lsmhooks:
  - hook: "bprm_check_security"
    args:
    - index: 0
      type: "linux_binprm"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Postfix"
        values: ["/bad"]
      matchActions:
      - action: Override
"#;
    let t = build_ok(&plan(yaml));
    let k = &t.kfuncs[0];
    assert_eq!(k.attach, KfuncAttach::Lsm);
    assert_eq!(u32::from(k.config.arg_kind[0]), VIGIL_ARG_BINPRM);
    assert_eq!(
        k.selectors[0].override_rc, -1,
        "Tetragon's default argError"
    );
    assert!(t.hooks[0].lsm);
    assert_eq!(t.hooks[0].function_name, "bprm_check_security");
    assert_eq!(&t.tables.str_postfix[0].data[..4], b"dab/", "reversed");
}

#[test]
fn kernel_object_types_are_refused_on_syscall_hooks() {
    let yaml = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: sys-file
spec:
  kprobes:
  - call: "sys_close"
    syscall: true
    args:
    - index: 0
      type: "file"
"#;
    let policy = vigil_policy::parse_policy(yaml, "t.yaml").expect("valid policy");
    let plan = vigil_policy::compile(&policy, &Capabilities::TRACEPOINTS_ONLY);
    let err = build(&plan, &mut Ids::default(), &|_| None).expect_err("refused");
    assert_eq!(err.path, "spec.kprobes[0].args[0]");
    assert!(err.reason.contains("argument type file"), "{}", err.reason);
}

const TCP_CONNECT: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: tcp-connect
spec:
  kprobes:
  - call: "tcp_connect"
    syscall: false
    args:
    - index: 0
      type: "sock"
    selectors:
    - matchArgs:
      - index: 0
        operator: "DAddr"
        values: ["127.0.0.0/8", "10.0.0.1"]
      - index: 0
        operator: "NotDPort"
        values: ["22"]
"#;

#[test]
fn sock_filters_become_network_operators_with_cidr_sets() {
    let t = build_ok(&plan(TCP_CONNECT));
    let k = &t.kfuncs[0];
    assert_eq!(u32::from(k.config.arg_kind[0]), VIGIL_ARG_SOCK);
    assert_eq!(
        k.config.filter_strs, 1,
        "the sock is read at entry for its filters"
    );
    let sel = &k.selectors[0];
    assert_eq!(sel.nfilters, 2);
    assert_eq!(u32::from(sel.filters[0].op), VIGIL_OP_DADDR);
    assert_eq!(u32::from(sel.filters[1].op), VIGIL_OP_NOT_DPORT);
    assert_eq!(sel.filters[1].values[0], 22 | (22 << 32));
    let set = sel.filters[0].set_id;
    let mine: Vec<_> = t
        .tables
        .str_prefix
        .iter()
        .filter(|k| k.set_id == set)
        .collect();
    assert_eq!(mine.len(), 2);
    assert_eq!(&mine[0].data[..5], &[4, 127, 0, 0, 0]);
    assert_eq!(mine[0].prefixlen, 32 + 8 + 8);
    assert_eq!(mine[1].prefixlen, 32 + 8 + 32);
    assert_eq!(t.hooks[0].args[0].0, HookArg::Sock);
}

#[test]
fn kernel_structures_have_their_readers_and_reports() {
    let yaml = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: structs
spec:
  kprobes:
  - call: "commit_creds"
    syscall: false
    args:
    - index: 0
      type: "cred"
  - call: "security_bpf_prog_load"
    syscall: false
    args:
    - index: 0
      type: "bpf_prog"
    - index: 1
      type: "nop"
    - index: 2
      type: "bpf_attr"
  - call: "cap_capable"
    syscall: false
    args:
    - index: 1
      type: "user_namespace"
    - index: 2
      type: "capability"
  - call: "dev_hard_start_xmit"
    syscall: false
    args:
    - index: 1
      type: "net_device"
    selectors:
    - matchArgs:
      - index: 1
        operator: "Equal"
        values: ["lo"]
"#;
    let t = build_ok(&plan(yaml));
    let kinds = |h: usize| {
        let c = &t.kfuncs[h].config;
        c.arg_kind[..c.nargs as usize]
            .iter()
            .map(|&k| u32::from(k))
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(0), vec![VIGIL_ARG_CRED]);
    assert_eq!(
        kinds(1),
        vec![VIGIL_ARG_BPF_PROG, VIGIL_ARG_NONE, VIGIL_ARG_BPF_ATTR]
    );
    assert_eq!(kinds(2), vec![VIGIL_ARG_USER_NS, VIGIL_ARG_INT]);
    assert_eq!(kinds(3), vec![VIGIL_ARG_NET_DEVICE]);
    assert_eq!(t.hooks[0].args[0].0, HookArg::Cred);
    assert_eq!(t.hooks[1].args[1].0, HookArg::Nop);
    assert_eq!(t.hooks[2].args[1].0, HookArg::Capability);
    // The device name is a string: the selector compares it in the kernel.
    assert_eq!(t.kfuncs[3].selectors[0].filters[0].op, VIGIL_OP_EQ as u8);
}

/// A kernel with a few functions, for target expansion.
struct Kernel;

impl crate::hooks::HookEnv for Kernel {
    fn tracepoint_format(&self, _: &str, _: &str) -> Result<String, String> {
        Err("none".into())
    }
    fn read_file(&self, path: &str) -> Result<Vec<u8>, String> {
        Err(format!("{path}: none"))
    }
    fn kernel_function(&self, name: &str) -> bool {
        ["ksys_read", "ksys_write", "security_file_open"].contains(&name)
    }
    fn ftrace_functions(&self) -> Result<Vec<String>, String> {
        Ok(
            ["ksys_read", "ksys_write", "do_ksys_x", "security_file_open"]
                .map(String::from)
                .to_vec(),
        )
    }
}

#[test]
fn generated_ftrace_lists_expand_and_absent_functions_are_named() {
    let yaml = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: ksys
spec:
  lists:
  - name: "ksys"
    type: "generated_ftrace"
    pattern: "^ksys_*"
  kprobes:
  - call: "list:ksys"
"#;
    let t = build_in(&plan(yaml), &mut Ids::default(), &|_| None, &Kernel).expect("builds");
    let mut functions: Vec<_> = t.kfuncs.iter().map(|k| k.function.as_str()).collect();
    functions.sort();
    assert_eq!(functions, vec!["ksys_read", "ksys_write"]);
    // Several functions share one kprobe.multi program (the hook id is the attach cookie),
    // unless the policy says disable-kprobe-multi.
    assert!(
        t.kfuncs
            .iter()
            .all(|k| k.attach == KfuncAttach::KprobeMulti)
    );
    let single = yaml.replace(
        "spec:\n",
        "spec:\n  options:\n  - name: disable-kprobe-multi\n    value: \"true\"\n",
    );
    let t = build_in(&plan(&single), &mut Ids::default(), &|_| None, &Kernel).expect("builds");
    assert!(t.kfuncs.iter().all(|k| k.attach == KfuncAttach::Kprobe));

    let absent = FILE_OPEN.replace("security_file_open", "dev_queue_xmit");
    let err = build_in(&plan(&absent), &mut Ids::default(), &|_| None, &Kernel)
        .expect_err("an absent function is refused");
    assert!(
        err.reason
            .contains("dev_queue_xmit not found in this kernel"),
        "{err:?}"
    );
}

#[test]
fn return_probe_with_override_reports_the_override_value_through_fmod_ret() {
    let yaml = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: copy-up
spec:
  kprobes:
  - call: "security_inode_copy_up_xattr"
    syscall: false
    return: true
    args:
    - index: 0
      type: "string"
    returnArg:
      index: 0
      type: "int"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Equal"
        values: ["security.capability\0"]
      matchActions:
      - action: Override
        argError: 1
"#;
    let t = build_ok(&plan(yaml));
    assert_eq!(t.kfuncs[0].attach, KfuncAttach::FmodRet);
    assert_eq!(t.hooks[0].return_arg, Some(HookArg::Int));
    // A selector without Override would need the real return value: refused by name.
    let post_only = yaml.replace(
        "      matchActions:\n      - action: Override\n        argError: 1\n",
        "    - matchArgs:\n      - index: 0\n        operator: \"Equal\"\n        values: [\"x\"]\n      matchActions:\n      - action: Override\n        argError: 1\n",
    );
    let err = build(&plan(&post_only), &mut Ids::default(), &|_| None).expect_err("refused");
    assert!(
        err.reason.contains("every selector needs Override"),
        "{err:?}"
    );
}

#[test]
fn spec_loader_is_a_security_mmap_file_hook_on_executable_mappings() {
    let yaml = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: loader
spec:
  loader: true
"#;
    let t = build_ok(&plan(yaml));
    assert_eq!(t.kfuncs.len(), 1);
    let k = &t.kfuncs[0];
    assert_eq!(k.function, "security_mmap_file");
    assert_eq!(u32::from(k.config.arg_kind[0]), VIGIL_ARG_FILE);
    let f = &k.selectors[0].filters[0];
    assert_eq!((f.op, f.slot, f.values[0]), (VIGIL_OP_MASK as u8, 1, 4));
    assert_eq!(t.hooks[0].event, HookEvent::Loader);
}

#[test]
fn return_probes_on_several_functions_pair_a_kprobe_with_a_kretprobe() {
    let yaml = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: returns
spec:
  lists:
  - name: "ops"
    values: ["security_file_open", "security_file_truncate"]
  kprobes:
  - call: "list:ops"
    syscall: false
    return: true
    args:
    - index: 0
      type: "file"
    returnArg:
      index: 0
      type: "int"
"#;
    let t = build_ok(&plan(yaml));
    assert_eq!(t.kfuncs.len(), 2);
    for k in &t.kfuncs {
        assert_eq!(k.attach, KfuncAttach::KprobeRet);
        assert_ne!(
            k.config.flags & VIGIL_HOOK_EXIT,
            0,
            "selection completes at return"
        );
        assert_eq!(u32::from(k.config.ret_kind), VIGIL_ARG_INT);
    }
    assert_eq!(t.hooks[0].return_arg, Some(HookArg::Int));
}
