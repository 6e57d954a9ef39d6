//! Kernel checks against this machine's kernel, and compiled outcomes against the oracle in
//! `compat/expected-outcomes.md`.

use std::path::Path;

use vigil_policy::cli;
use vigil_policy::compile::{Capabilities, Mechanism, compile};
use vigil_policy::kernel::{KernelInfo, SystemKernel, check_policy};
use vigil_policy::parse_policy;

const COMPAT: &str = "/work/shared/compat/tetragon-policies";

fn policy(body: &str) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: t\nspec:\n{body}"
    )
}

fn kernel_errors(body: &str) -> Option<Vec<String>> {
    let kernel = SystemKernel::running();
    // Without this kernel's BTF the checks cannot run; say so rather than pass silently.
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("no /sys/kernel/btf/vmlinux: kernel checks skipped");
        return None;
    }
    let parsed = parse_policy(&policy(body), "t.yaml").unwrap();
    Some(
        check_policy(&parsed, &kernel)
            .errors
            .iter()
            .map(ToString::to_string)
            .collect(),
    )
}

#[test]
fn refuses_a_call_that_does_not_exist() {
    let Some(errors) =
        kernel_errors("  kprobes:\n  - call: no_such_function_xyz\n    syscall: false\n")
    else {
        return;
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("spec.kprobes[0].call") && errors[0].contains("does not exist"),
        "{errors:?}"
    );
}

#[test]
fn refuses_syscall_true_on_a_kernel_function() {
    let Some(errors) = kernel_errors("  kprobes:\n  - call: fd_install\n") else {
        return;
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("not a system call") && errors[0].contains("syscall: false"),
        "{errors:?}"
    );
}

#[test]
fn refuses_an_index_past_the_parameters() {
    let Some(errors) = kernel_errors(
        "  kprobes:\n  - call: fd_install\n    syscall: false\n    args:\n    - index: 4\n      type: int\n",
    ) else {
        return;
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("args[0].index") && errors[0].contains("has 2 parameters"),
        "{errors:?}"
    );
}

#[test]
fn refuses_string_on_a_non_pointer() {
    let Some(errors) = kernel_errors(
        "  kprobes:\n  - call: fd_install\n    syscall: false\n    args:\n    - index: 0\n      type: string\n",
    ) else {
        return;
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("args[0].type") && errors[0].contains("pointer"),
        "{errors:?}"
    );
}

#[test]
fn accepts_real_calls() {
    let Some(errors) = kernel_errors(
        "  kprobes:\n  - call: fd_install\n    syscall: false\n    args:\n    - index: 0\n      type: int\n    - index: 1\n      type: file\n  - call: sys_linkat\n",
    ) else {
        return;
    };
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn validate_command_reports_ok_and_failures() {
    let kernel = SystemKernel::running();
    let good = format!("{COMPAT}/tracingpolicy/write.yaml");
    let out = cli::validate(
        std::slice::from_ref(&good),
        Some(&kernel as &dyn KernelInfo),
    );
    assert_eq!(out.status, 0, "{}", out.text);
    assert!(out.text.contains(&format!("{good}: OK")), "{}", out.text);
    let bad = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/policy-corpus/malformed/two-errors.yaml"
    )
    .to_string();
    let out = cli::validate(&[good, bad], None);
    assert_eq!(out.status, 1);
    assert!(
        out.text.contains("[unknown-operator]") && out.text.contains("[unknown-action]"),
        "{}",
        out.text
    );
}

/// Outcome on this machine's kernel (tracepoints, raw_tp, uprobes only), per the oracle.
#[test]
fn compat_outcomes_on_this_kernel() {
    let caps = Capabilities::TRACEPOINTS_ONLY;
    let loads = [
        "hardlink-observe",
        "symlink-observe",
        "openat_write",
        "write",
        "sys_clock_settime",
        "sys_mount",
        "sys_pivot_root",
        "sys_ptrace",
        "sys_setuid",
        "process-credentials/process.credentials.changes.at.syscalls",
        "raw_syscalls",
        "rawtp",
        "list-syscalls",
        "list-syscalls-generated",
        "list-syscalls-tracepoint",
        "uprobe-pid",
    ];
    let refusals = [
        ("uprobe-binaries", "does not exist"),
        ("uprobe-host", "does not exist"),
        ("usdt", "does not exist"),
        ("usdt-set", "does not exist"),
        ("hardlink-override", "error injection"),
        ("symlink-override", "error injection"),
        ("killer", "error injection"),
        ("list-generated-ftrace", "ftrace function list"),
        ("lsm_file_open", "need kprobes, fentry or BPF LSM"),
        ("loader", "need kprobes, fentry or BPF LSM"),
        ("tcp-connect", "need kprobes, fentry or BPF LSM"),
    ];
    let plan_of = |name: &str| {
        let path = format!("{COMPAT}/tracingpolicy/{name}.yaml");
        let source = std::fs::read_to_string(&path).unwrap();
        compile(&parse_policy(&source, &path).unwrap(), &caps)
    };
    for name in loads {
        let plan = plan_of(name);
        assert!(plan.is_loadable(), "{name}: {:?}", plan.refusals);
    }
    for (name, reason) in refusals {
        let plan = plan_of(name);
        assert!(
            plan.refusals.iter().any(|r| r.reason.contains(reason)),
            "{name}: {:?}",
            plan.refusals
        );
    }
    let plan = plan_of("hardlink-observe");
    assert_eq!(plan.hooks[0].mechanism, Mechanism::SyscallTracepoint);
    assert_eq!(
        plan_of("rawtp").hooks[0].mechanism,
        Mechanism::RawTracepoint
    );
}

#[test]
fn full_kernels_load_function_probes_but_not_syscall_overrides() {
    let caps = Capabilities::FULL_NO_ERROR_INJECTION;
    for name in [
        "tcp-connect",
        "lsm_file_open",
        "loader",
        "override-security",
    ] {
        let path = format!("{COMPAT}/tracingpolicy/{name}.yaml");
        let plan = compile(
            &parse_policy(&std::fs::read_to_string(&path).unwrap(), &path).unwrap(),
            &caps,
        );
        assert!(plan.is_loadable(), "{name}: {:?}", plan.refusals);
    }
    let path = format!("{COMPAT}/tracingpolicy/hardlink-override.yaml");
    let plan = compile(
        &parse_policy(&std::fs::read_to_string(&path).unwrap(), &path).unwrap(),
        &caps,
    );
    assert!(!plan.is_loadable());
    // override-method: fmod-ret is what these kernels do; override-return is refused by name.
    let path = format!("{COMPAT}/tracingpolicy/override-security.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    for (method, loadable) in [("fmod-ret", true), ("override-return", false)] {
        let yaml = text.replacen(
            "spec:\n",
            &format!("spec:\n  options:\n  - name: override-method\n    value: {method}\n"),
            1,
        );
        let plan = compile(&parse_policy(&yaml, &path).unwrap(), &caps);
        assert_eq!(
            plan.is_loadable(),
            loadable,
            "{method}: {:?}",
            plan.refusals
        );
        if !loadable {
            assert!(
                plan.refusals[0].reason.contains("bpf_override_return"),
                "{:?}",
                plan.refusals
            );
        }
    }
}

#[test]
fn explain_names_mechanism_and_refusal() {
    let caps = Capabilities::TRACEPOINTS_ONLY;
    let out = cli::explain(
        &format!("{COMPAT}/tracingpolicy/hardlink-observe.yaml"),
        None,
        &caps,
    );
    assert_eq!(out.status, 0, "{}", out.text);
    assert!(
        out.text
            .contains("syscall tracepoints (64-bit) + raw_syscalls (ia32)"),
        "{}",
        out.text
    );
    let out = cli::explain(
        &format!("{COMPAT}/tracingpolicy/tcp-connect.yaml"),
        None,
        &caps,
    );
    assert_eq!(out.status, 1);
    assert!(
        out.text
            .contains("cannot attach: kernel functions/LSM hooks need kprobes"),
        "{}",
        out.text
    );
}

const IMA_POLICY: &str = "  lsmhooks:\n  - hook: file_open\n    args:\n    - index: 0\n      type: file\n    selectors:\n    - matchActions:\n      - action: Post\n        imaHash: true\n";

#[test]
fn ima_hash_is_refused_by_name_where_the_kernel_or_the_hook_cannot_hash() {
    let parsed = parse_policy(&policy(IMA_POLICY), "t.yaml").unwrap();
    let plan = compile(&parsed, &Capabilities::TRACEPOINTS_ONLY);
    assert_eq!(plan.refusals.len(), 1, "{:?}", plan.refusals);
    assert_eq!(
        plan.refusals[0].reason,
        "imaHash: needs LSM BPF hooks and IMA, absent on this kernel: kernel functions/LSM \
         hooks need kprobes, fentry or BPF LSM, none available"
    );
    // BPF LSM without IMA: refused, naming IMA.
    let no_ima = Capabilities {
        ima: false,
        ..Capabilities::FULL_NO_ERROR_INJECTION
    };
    let plan = compile(&parsed, &no_ima);
    assert_eq!(plan.refusals.len(), 1, "{:?}", plan.refusals);
    assert!(
        plan.refusals[0].reason.contains("IMA is not active"),
        "{}",
        plan.refusals[0].reason
    );
    // BPF LSM and IMA: the hook loads, with the hash.
    let plan = compile(&parsed, &Capabilities::FULL_NO_ERROR_INJECTION);
    assert!(plan.is_loadable(), "{:?}", plan.refusals);
    // A hook where BPF programs may not sleep cannot hash: refused by the parser, naming
    // the hooks that can (so neither the compiler nor `validate` ever see it).
    let err = parse_policy(
        &policy(&IMA_POLICY.replace("file_open", "file_permission")),
        "t.yaml",
    )
    .unwrap_err();
    assert!(
        format!("{err:?}").contains("imaHash works only on the LSM hooks bprm_check_security"),
        "{err:?}"
    );
    // `validate` on this kernel: the gap is listed where the kernel lacks BPF LSM or IMA.
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return;
    }
    let kernel = SystemKernel::running();
    let report = check_policy(&parsed, &kernel);
    let listed = report
        .skipped
        .iter()
        .filter(|s| {
            s.starts_with("spec.lsmhooks[0].selectors[0].matchActions[0].imaHash: imaHash: ")
        })
        .count();
    let expected = usize::from(kernel.lsm_ima().is_err());
    assert_eq!(listed, expected, "{:?}", report.skipped);
}
