//! Plan -> kernel tables for syscall hooks. A policy becomes tables completely or not at
//! all: the first construct this runtime cannot run yet is named in the error.

use vigil_bpf::abi::*;
use vigil_bpf::kfuncs::{KfuncAttach, KfuncHook};
use vigil_bpf::syscalls::{SyscallHook, SyscallTables};
use vigil_policy::compile::{ArgOrigin, Filter, HookPlan, Mechanism, Plan};
use vigil_policy::model::ActionSelector;
use vigil_policy::state::PolicyMode;
use vigil_policy::types::{Action, ArgType, Operator};

include!(concat!(env!("OUT_DIR"), "/ia32.rs"));

/// The ia32 number of a syscall, for 32-bit (`int 0x80`) calls.
pub fn ia32_number(name: &str) -> Option<u32> {
    IA32_SYSCALLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| *nr)
}

/// How an argument is reported in events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookArg {
    Int,
    Uint32,
    Int64,
    Uint64,
    SizeT,
    String,
    /// Kernel objects (kernel-function and LSM hooks): the path, and the inode mode.
    File,
    Path,
    LinuxBinprm,
}

/// What the pipeline needs to know about a hook id.
#[derive(Debug, Clone)]
pub struct HookInfo {
    pub id: u32,
    pub policy_name: String,
    /// Tetragon's `function_name`: `__x64_sys_<name>`.
    pub function_name: String,
    pub args: Vec<(HookArg, Option<String>)>,
    pub message: Option<String>,
    pub tags: Vec<String>,
    /// An `lsmhooks` hook: its events are `process_lsm`.
    pub lsm: bool,
    /// Return probes: the slot of `args` holding the return value (`return` in events).
    pub return_slot: Option<usize>,
}

/// The tables of one policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyTables {
    pub tables: SyscallTables,
    pub hooks: Vec<HookInfo>,
    /// Kernel-function and LSM hooks (their value sets are in `tables`).
    pub kfuncs: Vec<KfuncHook>,
}

/// What a hook attaches to.
enum Target<'a> {
    Syscall(&'a str),
    Kfunc {
        function: &'a str,
        attach: KfuncAttach,
    },
}

/// A construct of the plan this runtime cannot run yet, with its YAML path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct Unsupported {
    pub path: String,
    pub reason: String,
}

/// Allocates hook and value-set ids across policies.
#[derive(Debug, Default)]
pub struct Ids {
    pub next_hook: u32,
    pub next_set: u32,
}

fn unsupported(path: &str, reason: impl Into<String>) -> Unsupported {
    Unsupported {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// The syscall name of a `call:` value: `sys_openat`, `__x64_sys_openat`, `openat`.
pub fn syscall_name(call: &str) -> &str {
    for prefix in [
        "__x64_sys_",
        "__ia32_sys_",
        "__arm64_sys_",
        "__se_sys_",
        "sys_",
    ] {
        if let Some(rest) = call.strip_prefix(prefix) {
            return rest;
        }
    }
    call
}

fn arg_kind(t: ArgType, kernel: bool) -> Option<(u8, HookArg)> {
    if kernel {
        // Arguments of kernel functions are kernel pointers.
        match t {
            ArgType::File => return Some((VIGIL_ARG_FILE as u8, HookArg::File)),
            ArgType::Path => return Some((VIGIL_ARG_PATH as u8, HookArg::Path)),
            ArgType::Dentry => return Some((VIGIL_ARG_DENTRY as u8, HookArg::Path)),
            ArgType::LinuxBinprm => return Some((VIGIL_ARG_BINPRM as u8, HookArg::LinuxBinprm)),
            ArgType::String => return Some((VIGIL_ARG_KSTRING as u8, HookArg::String)),
            ArgType::Filename => return Some((VIGIL_ARG_FILENAME as u8, HookArg::String)),
            _ => {}
        }
    }
    Some(match t {
        ArgType::Int8 | ArgType::Int16 | ArgType::Int32 | ArgType::Fd => {
            (VIGIL_ARG_INT as u8, HookArg::Int)
        }
        ArgType::Uint8 | ArgType::Uint16 | ArgType::Uint32 => {
            (VIGIL_ARG_UINT32 as u8, HookArg::Uint32)
        }
        ArgType::Int64 => (VIGIL_ARG_INT64 as u8, HookArg::Int64),
        ArgType::Uint64 => (VIGIL_ARG_UINT64 as u8, HookArg::Uint64),
        ArgType::SizeT => (VIGIL_ARG_UINT64 as u8, HookArg::SizeT),
        ArgType::String | ArgType::Filename => (VIGIL_ARG_STRING as u8, HookArg::String),
        _ => return None,
    })
}

fn string_key(set_id: u32, value: &[u8], lpm: bool) -> Option<vigil_str_key> {
    if value.len() > VIGIL_STR_MATCH as usize {
        return None;
    }
    let mut key = vigil_str_key {
        prefixlen: 0,
        set_id,
        data: [0; VIGIL_STR_MATCH as usize],
    };
    key.data[..value.len()].copy_from_slice(value);
    if lpm {
        key.prefixlen = 32 + 8 * value.len() as u32;
    }
    Some(key)
}

fn parse_int(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|u| u as i64);
    }
    v.parse::<i64>()
        .ok()
        .or_else(|| v.parse::<u64>().ok().map(|u| u as i64))
}

/// A selector's action bits, signal and Override value. `can_override`: the hook is an
/// fmod_ret or LSM program, whose return value the kernel uses.
fn actions(
    path: &str,
    list: &[ActionSelector],
    can_override: bool,
) -> Result<(u32, u32, i32), Unsupported> {
    if list.is_empty() {
        return Ok((VIGIL_ACT_POST, 0, 0));
    }
    let (mut bits, mut post, mut signal, mut rc) = (0, true, 0, 0);
    for a in list {
        match a.action {
            Action::Post => {}
            Action::Override if can_override => {
                bits |= VIGIL_ACT_OVERRIDE;
                // Tetragon's default argError is -1 (-EPERM).
                let v = a.arg_error.unwrap_or(-1);
                rc = i32::try_from(v).map_err(|_| {
                    unsupported(path, format!("argError {v} does not fit a kernel int"))
                })?;
            }
            Action::NoPost => post = false,
            Action::Sigkill => bits |= VIGIL_ACT_SIGKILL,
            Action::Signal => {
                bits |= VIGIL_ACT_SIGNAL;
                signal = a.arg_sig.unwrap_or(9);
            }
            other => {
                return Err(unsupported(
                    path,
                    format!(
                        "action {other} is not supported by the syscall-tracepoint runtime yet"
                    ),
                ));
            }
        }
        if a.rate_limit.is_some() {
            return Err(unsupported(
                path,
                "rateLimit is not supported by this runtime yet",
            ));
        }
    }
    if post {
        bits |= VIGIL_ACT_POST;
    }
    Ok((bits, signal, rc))
}

/// Builds the tables of one compiled policy. `resolve_binary` maps a path to the kernel's
/// (inode, device) identity of the file, or None when it does not exist.
pub fn build(
    plan: &Plan,
    ids: &mut Ids,
    resolve_binary: &dyn Fn(&str) -> Option<(u64, u64)>,
) -> Result<PolicyTables, Unsupported> {
    let mut out = PolicyTables::default();
    for hook in &plan.hooks {
        let kfunc = match hook.mechanism {
            Mechanism::SyscallTracepoint => None,
            Mechanism::Lsm => Some(KfuncAttach::Lsm),
            // Override needs the function's return value: fmod_ret (compile() allowed it
            // only on security_* functions of kernels with fentry).
            Mechanism::Fentry | Mechanism::Kprobe | Mechanism::KprobeMulti if overrides(hook) => {
                Some(KfuncAttach::FmodRet)
            }
            Mechanism::Fentry if hook.on_return => Some(KfuncAttach::Fexit),
            Mechanism::Fentry => Some(KfuncAttach::Fentry),
            // kprobe.multi is not used yet: one kprobe per function.
            Mechanism::Kprobe | Mechanism::KprobeMulti => Some(KfuncAttach::Kprobe),
            other => {
                return Err(unsupported(
                    &hook.path,
                    format!(
                        "{} hooks are not supported by this runtime yet (syscall, kernel-function and LSM hooks are)",
                        other.name()
                    ),
                ));
            }
        };
        for target in &hook.targets {
            let target = match kfunc {
                None => Target::Syscall(syscall_name(target)),
                Some(attach) => Target::Kfunc {
                    function: target,
                    attach,
                },
            };
            build_hook(plan, hook, &target, ids, resolve_binary, &mut out)?;
        }
    }
    Ok(out)
}

fn overrides(hook: &HookPlan) -> bool {
    hook.selectors
        .iter()
        .flat_map(|s| &s.actions)
        .any(|a| a.action == Action::Override)
}

fn build_hook(
    plan: &Plan,
    hook: &HookPlan,
    target: &Target<'_>,
    ids: &mut Ids,
    resolve_binary: &dyn Fn(&str) -> Option<(u64, u64)>,
    out: &mut PolicyTables,
) -> Result<(), Unsupported> {
    let path = &hook.path;
    let kernel = matches!(target, Target::Kfunc { .. });
    let can_override = matches!(
        target,
        Target::Kfunc {
            attach: KfuncAttach::FmodRet | KfuncAttach::Lsm,
            ..
        }
    );
    let fexit = matches!(
        target,
        Target::Kfunc {
            attach: KfuncAttach::Fexit,
            ..
        }
    );
    if hook.on_return && !fexit {
        return Err(unsupported(
            path,
            if kernel {
                "return probes on kernel functions run only through fexit: one function per hook on a kernel with fentry (kretprobes are not implemented yet)"
            } else {
                "return probes are not supported by this runtime yet"
            },
        ));
    }
    let id = ids.next_hook;
    if id >= VIGIL_MAX_HOOKS {
        return Err(unsupported(
            path,
            format!("more than {VIGIL_MAX_HOOKS} hooks (VIGIL_MAX_HOOKS)"),
        ));
    }
    let mut config = vigil_hook_cfg {
        monitor: u32::from(plan.mode == PolicyMode::Monitor),
        ..Default::default()
    };
    let mut args = Vec::new();
    let readers: Vec<_> = hook
        .arguments
        .iter()
        .filter(|a| a.origin == ArgOrigin::Argument)
        .collect();
    if readers.len() > VIGIL_MAX_ARGS as usize {
        return Err(unsupported(
            path,
            format!("more than {VIGIL_MAX_ARGS} arguments"),
        ));
    }
    for (slot, a) in readers.iter().enumerate() {
        let Some((kind, report)) = arg_kind(a.arg_type, kernel) else {
            return Err(unsupported(
                &format!("{path}.args[{slot}]"),
                format!(
                    "argument type {} is not supported by the {} runtime yet",
                    a.arg_type,
                    if kernel {
                        "kernel-function"
                    } else {
                        "syscall-tracepoint"
                    }
                ),
            ));
        };
        if a.index > 5 {
            return Err(unsupported(
                &format!("{path}.args[{slot}]"),
                "a hook has at most 6 arguments",
            ));
        }
        if fexit && a.index == 5 {
            // vigil_fexit passes the return value in slot 5.
            return Err(unsupported(
                &format!("{path}.args[{slot}]"),
                "a return probe reads at most 5 arguments (the 6th slot carries the return value)",
            ));
        }
        config.arg_kind[slot] = kind;
        config.arg_index[slot] = a.index as u8;
        args.push((report, a.label.clone()));
    }
    config.nargs = readers.len() as u32;
    let mut return_slot = None;
    if fexit
        && let Some(r) = hook
            .arguments
            .iter()
            .find(|a| a.origin == ArgOrigin::Return)
    {
        let slot = readers.len();
        let Some((kind, report)) =
            arg_kind(r.arg_type, kernel).filter(|_| slot < VIGIL_MAX_ARGS as usize)
        else {
            return Err(unsupported(
                &format!("{path}.returnArg"),
                format!(
                    "return type {} is not supported by this runtime yet (or more than {} readers)",
                    r.arg_type, VIGIL_MAX_ARGS
                ),
            ));
        };
        config.arg_kind[slot] = kind;
        config.arg_index[slot] = 5;
        config.nargs += 1;
        args.push((report, r.label.clone()));
        return_slot = Some(slot);
    }
    let slot_of = |pos: u32| -> Option<usize> {
        readers
            .iter()
            .position(|a| a.index == pos)
            .or_else(|| (pos < config.nargs).then_some(pos as usize))
    };

    let mut selectors = Vec::new();
    for (si, table) in hook.selectors.iter().enumerate() {
        let spath = format!("{path}.selectors[{si}]");
        let mut sel = vigil_selector_cfg::default();
        (sel.actions, sel.signal, sel.override_rc) = actions(
            &format!("{spath}.matchActions"),
            &table.actions,
            can_override,
        )?;
        if !table.return_actions.is_empty() {
            return Err(unsupported(
                &spath,
                "matchReturnActions is not supported by this runtime yet",
            ));
        }
        for filter in &table.filters {
            match filter {
                Filter::Arg {
                    origin: ArgOrigin::Argument,
                    positions,
                    operator,
                    values,
                } => {
                    for &pos in positions {
                        let slot = slot_of(pos).ok_or_else(|| {
                            unsupported(
                                &spath,
                                format!("matchArgs index {pos} names no argument of the hook"),
                            )
                        })?;
                        let f = arg_filter(
                            &spath,
                            slot,
                            *operator,
                            values,
                            config.arg_kind[slot],
                            ids,
                            out,
                        )?;
                        if sel.nfilters >= VIGIL_MAX_ARG_FILTERS {
                            return Err(unsupported(
                                &spath,
                                format!("more than {VIGIL_MAX_ARG_FILTERS} matchArgs"),
                            ));
                        }
                        sel.filters[sel.nfilters as usize] = f;
                        sel.nfilters += 1;
                    }
                }
                Filter::Arg {
                    origin: ArgOrigin::Return,
                    operator,
                    values,
                    ..
                } if return_slot.is_some() => {
                    let slot = return_slot.unwrap_or_default();
                    let f = arg_filter(
                        &spath,
                        slot,
                        *operator,
                        values,
                        config.arg_kind[slot],
                        ids,
                        out,
                    )?;
                    if sel.nfilters >= VIGIL_MAX_ARG_FILTERS {
                        return Err(unsupported(
                            &spath,
                            format!("more than {VIGIL_MAX_ARG_FILTERS} matchArgs"),
                        ));
                    }
                    sel.filters[sel.nfilters as usize] = f;
                    sel.nfilters += 1;
                }
                Filter::Pids(p) => {
                    if p.follow_forks || p.is_namespace_pid {
                        return Err(unsupported(
                            &spath,
                            "matchPIDs followForks/isNamespacePID are not supported by this runtime yet",
                        ));
                    }
                    if p.values.len() > VIGIL_MAX_PIDS as usize {
                        return Err(unsupported(
                            &spath,
                            format!("more than {VIGIL_MAX_PIDS} matchPIDs values"),
                        ));
                    }
                    sel.pid_op = in_or_not(&spath, p.operator)?;
                    sel.npids = p.values.len() as u32;
                    sel.pids[..p.values.len()].copy_from_slice(&p.values);
                }
                Filter::Binaries {
                    parent: false,
                    selector,
                } if !selector.follow_children => {
                    sel.bin_op = in_or_not(&spath, selector.operator)?;
                    sel.bin_set_id = ids.next_set;
                    ids.next_set += 1;
                    for v in &selector.values {
                        if let Some((ino, dev)) = resolve_binary(v) {
                            out.tables.binaries.push(vigil_bin_key {
                                set_id: sel.bin_set_id,
                                pad: 0,
                                ino,
                                dev,
                            });
                        }
                    }
                }
                other => {
                    return Err(unsupported(
                        &spath,
                        format!(
                            "selector {} is not supported by this runtime yet",
                            filter_name(other)
                        ),
                    ));
                }
            }
        }
        selectors.push(sel);
    }
    if selectors.is_empty() {
        // No selectors: every call is posted (Tetragon's default).
        selectors.push(vigil_selector_cfg {
            actions: VIGIL_ACT_POST,
            ..Default::default()
        });
    }
    config.nselectors = selectors.len() as u32;
    let function_name = match target {
        Target::Syscall(syscall) => {
            out.tables.hooks.push(SyscallHook {
                id,
                syscall: syscall.to_string(),
                config,
                selectors,
            });
            // A syscall without an ia32 number (64-bit only) has no 32-bit entry to watch.
            if let Some(nr) = ia32_number(syscall) {
                out.tables.ia32.push((nr, id));
            }
            format!("__x64_sys_{syscall}")
        }
        Target::Kfunc { function, attach } => {
            out.kfuncs.push(KfuncHook {
                id,
                function: function.to_string(),
                attach: *attach,
                config,
                selectors,
            });
            function.to_string()
        }
    };
    out.hooks.push(HookInfo {
        id,
        policy_name: plan.name.clone(),
        function_name,
        args,
        message: hook.message.clone(),
        tags: hook.tags.clone(),
        return_slot,
        lsm: matches!(
            target,
            Target::Kfunc {
                attach: KfuncAttach::Lsm,
                ..
            }
        ),
    });
    ids.next_hook += 1;
    Ok(())
}

fn filter_name(f: &Filter) -> &'static str {
    match f {
        Filter::Arg {
            origin: ArgOrigin::Return,
            ..
        } => "matchReturnArgs",
        Filter::Arg {
            origin: ArgOrigin::Data,
            ..
        } => "matchData",
        Filter::Arg { .. } => "matchArgs",
        Filter::Pids(_) => "matchPIDs",
        Filter::Binaries { parent: true, .. } => "matchParentBinaries",
        Filter::Binaries { .. } => "matchBinaries followChildren",
        Filter::Namespaces(_) => "matchNamespaces",
        Filter::NamespaceChanges(_) => "matchNamespaceChanges",
        Filter::Capabilities { changes: true, .. } => "matchCapabilityChanges",
        Filter::Capabilities { .. } => "matchCapabilities",
        Filter::Workloads(_) => "workload selectors",
    }
}

fn in_or_not(path: &str, op: Operator) -> Result<u32, Unsupported> {
    match op {
        Operator::In => Ok(VIGIL_OP_IN),
        Operator::NotIn => Ok(VIGIL_OP_NOT_IN),
        other => Err(unsupported(
            path,
            format!("operator {other} is not supported here"),
        )),
    }
}

fn arg_filter(
    path: &str,
    slot: usize,
    op: Operator,
    values: &[String],
    kind: u8,
    ids: &mut Ids,
    out: &mut PolicyTables,
) -> Result<vigil_arg_filter, Unsupported> {
    let mut f = vigil_arg_filter {
        slot: slot as u8,
        ..Default::default()
    };
    let kind = u32::from(kind);
    if kind == VIGIL_ARG_STRING || (VIGIL_ARG_KOBJ_FIRST..=VIGIL_ARG_KOBJ_LAST).contains(&kind) {
        f.op = match op {
            Operator::Equal => VIGIL_OP_EQ,
            Operator::NotEqual => VIGIL_OP_NEQ,
            Operator::Prefix => VIGIL_OP_PREFIX,
            Operator::NotPrefix => VIGIL_OP_NOT_PREFIX,
            Operator::Postfix => VIGIL_OP_POSTFIX,
            Operator::NotPostfix => VIGIL_OP_NOT_POSTFIX,
            other => {
                return Err(unsupported(
                    path,
                    format!("operator {other} on strings is not supported by this runtime yet"),
                ));
            }
        } as u8;
        f.set_id = ids.next_set;
        ids.next_set += 1;
        for v in values {
            let bytes = v.as_bytes();
            let key = match u32::from(f.op) {
                VIGIL_OP_EQ | VIGIL_OP_NEQ => string_key(f.set_id, bytes, false).map(|k| (0, k)),
                VIGIL_OP_PREFIX | VIGIL_OP_NOT_PREFIX => {
                    string_key(f.set_id, bytes, true).map(|k| (1, k))
                }
                _ => {
                    let reversed: Vec<u8> = bytes.iter().rev().copied().collect();
                    string_key(f.set_id, &reversed, true).map(|k| (2, k))
                }
            };
            let Some((table, key)) = key else {
                return Err(unsupported(
                    path,
                    format!("value {v:?} is longer than {VIGIL_STR_MATCH} bytes (VIGIL_STR_MATCH)"),
                ));
            };
            match table {
                0 => out.tables.str_eq.push(key),
                1 => out.tables.str_prefix.push(key),
                _ => out.tables.str_postfix.push(key),
            }
        }
        return Ok(f);
    }
    f.op = match op {
        Operator::Equal => VIGIL_OP_EQ,
        Operator::NotEqual => VIGIL_OP_NEQ,
        Operator::GreaterThan => VIGIL_OP_GT,
        Operator::LessThan => VIGIL_OP_LT,
        Operator::Mask => VIGIL_OP_MASK,
        other => {
            return Err(unsupported(
                path,
                format!("operator {other} on integers is not supported by this runtime yet"),
            ));
        }
    } as u8;
    if values.len() > VIGIL_MAX_INT_VALUES as usize {
        return Err(unsupported(
            path,
            format!("more than {VIGIL_MAX_INT_VALUES} integer values"),
        ));
    }
    for (i, v) in values.iter().enumerate() {
        f.values[i] =
            parse_int(v).ok_or_else(|| unsupported(path, format!("{v:?} is not an integer")))?;
    }
    f.nvalues = values.len() as u8;
    Ok(f)
}

#[cfg(test)]
#[path = "kfunc_tests.rs"]
mod kfunc_tests;

#[cfg(test)]
mod tests {
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
    fn syscall_names() {
        assert_eq!(syscall_name("sys_openat"), "openat");
        assert_eq!(syscall_name("__x64_sys_write"), "write");
        assert_eq!(syscall_name("openat"), "openat");
    }
}
