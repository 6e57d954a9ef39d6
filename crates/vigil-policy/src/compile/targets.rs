//! What a hook targets: `call: list:NAME` expanded (syscalls, generated lists), and the hook
//! `spec.loader` adds.

use super::*;

const FTRACE_PATTERN_OPEN: &str = "<functions matching ";

/// The pattern of a generated_ftrace list target: the runtime expands it against the
/// kernel's traceable functions (`available_filter_functions`).
pub fn ftrace_pattern(target: &str) -> Option<&str> {
    target.strip_prefix(FTRACE_PATTERN_OPEN)?.strip_suffix('>')
}

/// `spec.loader`: executable file mappings (`process_loader`, Tetragon's loader sensor),
/// from `security_mmap_file(file, prot, flags)` with PROT_EXEC in `prot`.
pub(super) fn loader_hook(caps: &dyn KernelCapabilities) -> HookPlan {
    let reader = |index, arg_type| ArgReader {
        origin: ArgOrigin::Argument,
        index,
        arg_type,
        label: None,
        size_arg: None,
        read_at_return: false,
        max_bytes: 0,
        resolve: Vec::new(),
        btf_type: None,
        source: None,
    };
    const PROT_EXEC: &str = "4";
    HookPlan {
        path: "spec.loader".into(),
        targets: vec!["security_mmap_file".into()],
        mechanism: if caps.fentry() {
            Mechanism::Fentry
        } else {
            Mechanism::Kprobe
        },
        on_return: false,
        arguments: vec![reader(0, ArgType::File), reader(1, ArgType::Uint64)],
        selectors: vec![SelectorTable {
            label: None,
            filters: vec![Filter::Arg {
                origin: ArgOrigin::Argument,
                positions: vec![1],
                operator: Operator::Mask,
                values: vec![PROT_EXEC.into()],
            }],
            actions: Vec::new(),
            return_actions: Vec::new(),
        }],
        message: None,
        tags: Vec::new(),
        optional: false,
        uprobe: UprobeExtras::default(),
        return_arg_action: None,
        loader: true,
    }
}

/// Targets of a kprobe hook, whether they are syscalls, and a refusal for lists that cannot
/// be expanded on this kernel.
pub(super) fn expand_call(
    spec: &Spec,
    k: &KProbeSpec,
    caps: &dyn KernelCapabilities,
) -> (Vec<String>, bool, Option<&'static str>) {
    let Some(name) = k.call.strip_prefix("list:") else {
        return (vec![k.call.clone()], k.syscall, None);
    };
    let Some(list) = spec.lists.iter().find(|l| l.name == name) else {
        return (Vec::new(), k.syscall, Some("the list is not defined"));
    };
    match list.list_type {
        Some(ListType::Syscalls) => (
            list.values
                .iter()
                .map(|v| syscall_name(v).to_string())
                .collect(),
            true,
            None,
        ),
        Some(ListType::GeneratedSyscalls) => (vec![EVERY_SYSCALL.into()], true, None),
        Some(ListType::GeneratedFtrace) if !caps.ftrace_function_list() => (
            Vec::new(),
            false,
            Some("the ftrace function list cannot be read on this kernel"),
        ),
        Some(ListType::GeneratedFtrace) => (
            vec![format!(
                "{FTRACE_PATTERN_OPEN}{}>",
                list.pattern.as_deref().unwrap_or("")
            )],
            false,
            None,
        ),
        None => (list.values.clone(), k.syscall, None),
    }
}
