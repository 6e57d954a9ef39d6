//! Plan -> kernel tables for syscall hooks. A policy becomes tables completely or not at
//! all: the first construct this runtime cannot run yet is named in the error.

use vigil_bpf::abi::*;
use vigil_bpf::kfuncs::{KfuncAttach, KfuncHook};
use vigil_bpf::syscalls::{SyscallHook, SyscallTables};
use vigil_policy::compile::{ArgOrigin, EVERY_SYSCALL, Filter, HookPlan, Mechanism, Plan};
use vigil_policy::state::PolicyMode;
use vigil_policy::types::{Action, ArgType, Operator};

/// The tables of one policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyTables {
    pub tables: SyscallTables,
    /// SameFile paths, re-resolved by the agent while the policy is loaded.
    pub same_files: Vec<SameFileEntry>,
    pub hooks: Vec<HookInfo>,
    /// Tracepoint, uprobe and usdt hooks (their own eBPF object).
    pub others: vigil_bpf::hooks::HookTables,
    /// Kernel-function and LSM hooks (their value sets are in `tables`).
    pub kfuncs: Vec<KfuncHook>,
    /// The load generation (see [`Ids`]).
    pub generation: u32,
}

/// What a hook attaches to.
pub(crate) enum Target<'a> {
    Syscall(&'a str),
    Kfunc {
        function: &'a str,
        attach: KfuncAttach,
    },
}

impl Target<'_> {
    /// How a kernel-function hook attaches; None for a syscall tracepoint.
    fn attach(&self) -> Option<KfuncAttach> {
        match self {
            Target::Kfunc { attach, .. } => Some(*attach),
            Target::Syscall(_) => None,
        }
    }
}

/// A construct of the plan this runtime cannot run yet, with its YAML path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct Unsupported {
    pub path: String,
    pub reason: String,
}

fn unsupported(path: &str, reason: impl Into<String>) -> Unsupported {
    Unsupported {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Builds the tables of one compiled policy. `resolve_binary` maps a path to the kernel's
/// (inode, device) identity of the file, or None when it does not exist.
pub fn build(
    plan: &Plan,
    ids: &mut Ids,
    resolve_binary: &dyn Fn(&str) -> Option<(u64, u64)>,
) -> Result<PolicyTables, Unsupported> {
    build_in(plan, ids, resolve_binary, &crate::hooks::SystemEnv)
}

/// [`build`], asking `env` about tracepoint formats and target files. Every table of the
/// result carries a new load generation; on failure the hook ids taken are given back.
pub fn build_in(
    plan: &Plan,
    ids: &mut Ids,
    resolve_binary: &dyn Fn(&str) -> Option<(u64, u64)>,
    env: &dyn crate::hooks::HookEnv,
) -> Result<PolicyTables, Unsupported> {
    let generation = ids.begin_build();
    match build_tables(plan, ids, resolve_binary, env) {
        Ok(mut out) => {
            out.generation = generation;
            out.tables.generation = generation;
            out.others.generation = generation;
            for h in &mut out.hooks {
                h.generation = generation;
            }
            Ok(out)
        }
        Err(e) => {
            ids.abandon_build();
            Err(e)
        }
    }
}

fn build_tables(
    plan: &Plan,
    ids: &mut Ids,
    resolve_binary: &dyn Fn(&str) -> Option<(u64, u64)>,
    env: &dyn crate::hooks::HookEnv,
) -> Result<PolicyTables, Unsupported> {
    let mut out = PolicyTables::default();
    out.tables.monitor = plan.mode == PolicyMode::Monitor;
    out.others.monitor = out.tables.monitor;
    for hook in &plan.hooks {
        if matches!(
            hook.mechanism,
            Mechanism::Tracepoint | Mechanism::RawTracepoint | Mechanism::Uprobe | Mechanism::Usdt
        ) {
            crate::hooks::build(plan, hook, ids, resolve_binary, env, &mut out)?;
            continue;
        }
        if hook.targets.iter().any(|t| t == EVERY_SYSCALL) {
            crate::all_syscalls::build(plan, hook, ids, resolve_binary, env, &mut out)?;
            continue;
        }
        let kfunc = match hook.mechanism {
            Mechanism::SyscallTracepoint => None,
            Mechanism::Lsm => Some(KfuncAttach::Lsm),
            Mechanism::CgroupSockAddr => Some(KfuncAttach::CgroupSockAddr),
            // Override needs the function's return value: fmod_ret (compile() allowed it
            // only on security_* functions of kernels with fentry).
            Mechanism::Fentry | Mechanism::Kprobe | Mechanism::KprobeMulti if overrides(hook) => {
                Some(KfuncAttach::FmodRet)
            }
            Mechanism::Fentry if hook.on_return => Some(KfuncAttach::Fexit),
            Mechanism::Fentry => Some(KfuncAttach::Fentry),
            Mechanism::Kprobe | Mechanism::KprobeMulti if hook.on_return => {
                Some(KfuncAttach::KprobeRet)
            }
            Mechanism::KprobeMulti => Some(KfuncAttach::KprobeMulti),
            Mechanism::Kprobe => Some(KfuncAttach::Kprobe),
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
        let targets = match kfunc {
            Some(attach) if attach != KfuncAttach::CgroupSockAddr => {
                kernel_targets(hook, attach, env)?
            }
            _ => hook.targets.clone(),
        };
        for target in &targets {
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

/// Appends filter `f` to the selector; `what` names the filters for the limit's error.
fn push_filter(
    sel: &mut vigil_selector_cfg,
    f: vigil_arg_filter,
    path: &str,
    what: &str,
) -> Result<(), Unsupported> {
    if sel.nfilters >= VIGIL_MAX_ARG_FILTERS {
        return Err(unsupported(
            path,
            format!("more than {VIGIL_MAX_ARG_FILTERS} {what}"),
        ));
    }
    sel.filters[sel.nfilters as usize] = f;
    sel.nfilters += 1;
    Ok(())
}

fn overrides(hook: &HookPlan) -> bool {
    hook.selectors
        .iter()
        .flat_map(|s| &s.actions)
        .any(|a| a.action == Action::Override)
}

pub(crate) fn build_hook(
    plan: &Plan,
    hook: &HookPlan,
    target: &Target<'_>,
    ids: &mut Ids,
    resolve_binary: &dyn Fn(&str) -> Option<(u64, u64)>,
    out: &mut PolicyTables,
) -> Result<(), Unsupported> {
    let path = &hook.path;
    let attach = target.attach();
    let kernel = attach.is_some();
    let can_override = matches!(
        attach,
        Some(KfuncAttach::FmodRet | KfuncAttach::Lsm | KfuncAttach::CgroupSockAddr)
    );
    let cgroup = attach == Some(KfuncAttach::CgroupSockAddr);
    let fexit = attach == Some(KfuncAttach::Fexit);
    let kretprobe = attach == Some(KfuncAttach::KprobeRet);
    let override_return = returns::check(path, hook, attach)?;
    let syscall = match target {
        Target::Syscall(name) => *name,
        Target::Kfunc { .. } => "",
    };
    let Some(id) = ids.take_hook() else {
        return Err(unsupported(
            path,
            format!(
                "more than {VIGIL_MAX_HOOKS} hooks loaded at once (VIGIL_MAX_HOOKS): unload a policy first"
            ),
        ));
    };
    let mut config = vigil_hook_cfg::default();
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
        if let (Target::Kfunc { function, .. }, false) = (target, a.resolve.is_empty()) {
            let spath = format!("{path}.args[{slot}]");
            let (kind, report, chain) = kernel_resolve(&spath, function, a)?;
            config.arg_kind[slot] = kind;
            config.chains[slot] = chain;
            config.arg_index[slot] = a.index as u8;
            args.push((report, a.label.clone()));
            continue;
        }
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
        let kind = ext_reader(
            &format!("{path}.args[{slot}]"),
            a,
            kind,
            slot,
            kernel,
            &mut config,
        )?;
        config.arg_kind[slot] = kind;
        // The cgroup fallback hands the engine rows it built from its context.
        if cgroup && crate::sock::is_net_kind(kind) {
            config.arg_kind[slot] = VIGIL_ARG_SOCKINFO as u8;
        }
        config.arg_index[slot] = a.index as u8;
        let report = if u32::from(kind) == VIGIL_ARG_BUF_DATA {
            HookArg::Data
        } else {
            report
        };
        args.push((report, a.label.clone()));
    }
    config.nargs = readers.len() as u32;
    // `data` entries (source current_task) take the slots after the arguments.
    let data: Vec<_> = hook
        .arguments
        .iter()
        .filter(|a| a.origin == ArgOrigin::Data)
        .collect();
    let data_from = readers.len();
    if !data.is_empty() {
        if data_from + data.len() > VIGIL_MAX_ARGS as usize {
            return Err(unsupported(
                path,
                format!("more than {VIGIL_MAX_ARGS} args and data entries"),
            ));
        }
        if fexit {
            return Err(unsupported(
                &format!("{path}.data"),
                "data on a return probe of a kernel function is not supported yet",
            ));
        }
        for (j, d) in data.iter().enumerate() {
            let (kind, report, chain) = data_reader(&format!("{path}.data[{j}]"), d)?;
            config.arg_kind[data_from + j] = kind;
            config.chains[data_from + j] = chain;
            args.push((report, d.label.clone()));
        }
        config.nargs += data.len() as u32;
    }
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
    config.path_slot = 0xff;
    // Events on a socket TrackSock recorded name its owner (the first socket argument).
    config.sock_slot = (0..readers.len())
        .find(|&i| is_sock_kind(config.arg_kind[i]))
        .map_or(0xff, |i| i as u8);
    if let Some(action) = hook.return_arg_action {
        let slot = return_slot
            .filter(|&s| is_sock_kind(config.arg_kind[s]))
            .ok_or_else(|| {
                unsupported(
                    &format!("{path}.returnArgAction"),
                    "returnArgAction needs a returned sock on a return probe (returnArg type sock)",
                )
            })?;
        config.ret_sock_slot = slot as u8;
        config.flags |= match action {
            Action::TrackSock => VIGIL_HOOK_RET_TRACK_SOCK,
            _ => VIGIL_HOOK_RET_UNTRACK_SOCK,
        };
    }
    let mut return_arg = None;
    // Paired exits: syscall exits, uretprobes (hooks.rs), kretprobes.
    if hook.on_return && (!kernel || kretprobe) {
        config.flags |= VIGIL_HOOK_EXIT;
        let ret_type = hook
            .arguments
            .iter()
            .find(|a| a.origin == ArgOrigin::Return)
            .map_or(ArgType::Int32, |a| a.arg_type);
        // A returned descriptor is reported as the number (the path comes from the file table
        // of open-like calls, `resolved_path`).
        let ret_type = if ret_type == ArgType::Fd {
            ArgType::Int32
        } else {
            ret_type
        };
        let Some((kind, report)) =
            arg_kind(ret_type, false).filter(|(k, _)| u32::from(*k) != VIGIL_ARG_STRING)
        else {
            return Err(unsupported(
                &format!("{path}.returnArg"),
                format!("return type {ret_type} is not supported by this runtime yet"),
            ));
        };
        config.ret_kind = kind;
        return_arg = Some(report);
    }
    if override_return {
        let ret_type = hook
            .arguments
            .iter()
            .find(|a| a.origin == ArgOrigin::Return)
            .map_or(ArgType::Int32, |a| a.arg_type);
        return_arg = Some(
            arg_kind(ret_type, false)
                .filter(|(k, _)| u32::from(*k) <= VIGIL_ARG_UINT64)
                .ok_or_else(|| {
                    unsupported(
                        &format!("{path}.returnArg"),
                        format!("an overridden return value is an integer, not {ret_type}"),
                    )
                })?
                .1,
        );
    }
    if (0..readers.len()).any(|i| u32::from(config.arg_kind[i]) == VIGIL_ARG_BUF_RET) {
        config.flags |= VIGIL_HOOK_EXIT | VIGIL_HOOK_RET_COPY;
    }
    // Open-like calls: the path argument's filters also try the kernel-resolved path.
    if let Some(pos) = open_like_path_arg(syscall)
        && let Some(slot) = readers.iter().position(|a| a.index == pos)
        && u32::from(config.arg_kind[slot]) == VIGIL_ARG_STRING
        && hook.selectors.iter().any(|t| {
            t.filters.iter().any(|f| {
                matches!(f, Filter::Arg { origin: ArgOrigin::Argument, positions, .. }
                    if positions.iter().any(|&p| p == pos || p as usize == slot))
            })
        })
    {
        config.flags |= VIGIL_HOOK_EXIT | VIGIL_HOOK_FD_PATH;
        config.path_slot = slot as u8;
    }
    let slot_of = |pos: u32| -> Option<usize> {
        readers
            .iter()
            .position(|a| a.index == pos)
            .or_else(|| (pos < config.nargs).then_some(pos as usize))
    };

    let mut selectors = Vec::new();
    let mut user_actions = Vec::new();
    for (si, table) in hook.selectors.iter().enumerate() {
        let spath = format!("{path}.selectors[{si}]");
        let mut sel = vigil_selector_cfg::default();
        user_actions.push(user_actions::user_actions(
            &spath,
            &table.actions,
            &table.return_actions,
        )?);
        (sel.actions, sel.signal, sel.override_rc) = actions(
            &format!("{spath}.matchActions"),
            &table.actions,
            can_override,
        )?;
        (sel.rate_ns, sel.flags) = rate_limit(&format!("{spath}.matchActions"), &table.actions)?;
        if sel.actions & (VIGIL_ACT_TRACK_SOCK | VIGIL_ACT_UNTRACK_SOCK) != 0 {
            let arg = table.actions.iter().find_map(|a| a.arg_sock).unwrap_or(0);
            sel.sock_slot = slot_of(arg)
                .filter(|&s| is_sock_kind(config.arg_kind[s]))
                .ok_or_else(|| {
                    unsupported(
                        &format!("{spath}.matchActions"),
                        format!("TrackSock/UntrackSock: argSock {arg} is not a sock or socket argument of the hook"),
                    )
                })? as u32;
        }
        if user_actions::wants_user_stack(&table.actions) {
            sel.flags |= VIGIL_SEL_USER_STACK;
        }
        if user_actions::wants_kernel_stack(&table.actions) {
            sel.flags |= VIGIL_SEL_KERNEL_STACK;
        }
        if user_actions::wants_ima_hash(&table.actions) {
            sel.flags |= VIGIL_SEL_IMA_HASH;
        }
        if !table.return_actions.is_empty() {
            let rpath = format!("{spath}.matchReturnActions");
            let (bits, signal, _) = actions(&rpath, &table.return_actions, false)?;
            if !hook.on_return {
                return Err(unsupported(
                    &rpath,
                    "matchReturnActions needs `return: true` on the hook",
                ));
            }
            // Post comes from matchActions; return actions add enforcement.
            sel.ret_actions = bits & !VIGIL_ACT_POST;
            if sel.signal == 0 {
                sel.signal = signal;
            }
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
                        if matches!(
                            u32::from(config.arg_kind[slot]),
                            VIGIL_ARG_BUF
                                | VIGIL_ARG_BUF_DATA
                                | VIGIL_ARG_BUF_RET
                                | VIGIL_ARG_IOVEC
                                | VIGIL_ARG_CONST_BUF
                        ) {
                            return Err(unsupported(
                                &spath,
                                format!(
                                    "matchArgs on {} argument {pos} is not supported by this \
                                     runtime yet",
                                    readers.get(slot).map_or(ArgType::CharBuf, |a| a.arg_type)
                                ),
                            ));
                        }
                        let f = if *operator == Operator::SameFile {
                            same_file::same_file_filter(
                                &spath,
                                slot,
                                values,
                                config.arg_kind[slot],
                                ids,
                                resolve_binary,
                                out,
                            )?
                        } else {
                            arg_filter(
                                &spath,
                                slot,
                                *operator,
                                values,
                                config.arg_kind[slot],
                                ids,
                                out,
                            )?
                        };
                        push_filter(&mut sel, f, &spath, "matchArgs")?;
                        // Strings and the EXT readers are read at entry only for filters.
                        if is_string_kind(config.arg_kind[slot])
                            || u32::from(config.arg_kind[slot]) >= VIGIL_ARG_EXT_FIRST
                        {
                            config.filter_strs |= 1 << slot;
                        }
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
                    push_filter(&mut sel, f, &spath, "matchArgs")?;
                }
                Filter::Arg {
                    origin: ArgOrigin::Return,
                    operator,
                    values,
                    ..
                } => {
                    if !hook.on_return {
                        return Err(unsupported(
                            &spath,
                            "matchReturnArgs needs `return: true` on the hook",
                        ));
                    }
                    let mut f = arg_filter(
                        &spath,
                        0,
                        *operator,
                        values,
                        VIGIL_ARG_INT64 as u8,
                        ids,
                        out,
                    )?;
                    f.slot = VIGIL_SLOT_RET as u8;
                    push_filter(&mut sel, f, &spath, "matchArgs")?;
                }
                Filter::Arg {
                    origin: ArgOrigin::Data,
                    positions,
                    operator,
                    values,
                } => {
                    for &pos in positions {
                        let slot = data_from + pos as usize;
                        if pos as usize >= data.len() {
                            return Err(unsupported(
                                &spath,
                                format!("matchData index {pos} names no data entry of the hook"),
                            ));
                        }
                        let f = arg_filter(
                            &spath,
                            slot,
                            *operator,
                            values,
                            config.arg_kind[slot],
                            ids,
                            out,
                        )?;
                        push_filter(&mut sel, f, &spath, "matchArgs and matchData")?;
                        config.filter_strs |= 1 << slot;
                    }
                }
                Filter::Pids(p) => pids_filter(&spath, &mut sel, p)?,
                Filter::Namespaces(n) => {
                    namespaces_filter(&spath, &mut sel, n, &read_host_namespace)?
                }
                Filter::Binaries {
                    parent: false,
                    selector,
                } => {
                    sel.bin_op = in_or_not(&spath, selector.operator)?;
                    if selector.follow_children {
                        sel.flags |= VIGIL_SEL_FOLLOW_CHILDREN;
                    }
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
                Filter::Binaries {
                    parent: true,
                    selector,
                } => parent_binaries_filter(&spath, &mut sel, selector, ids, resolve_binary, out)?,
                Filter::Capabilities { changes, selector } => {
                    capabilities_filter(&spath, &mut sel, selector, *changes, &|| {
                        read_host_namespace(vigil_policy::types::NamespaceKind::User)
                    })?
                }
                Filter::NamespaceChanges(n) => namespace_changes_filter(&spath, &mut sel, n)?,
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
        event: if hook.loader {
            HookEvent::Loader
        } else {
            HookEvent::Kprobe
        },
        return_arg,
        selectors: config.nselectors as usize,
        return_slot,
        lsm: matches!(
            target,
            Target::Kfunc {
                attach: KfuncAttach::Lsm,
                ..
            }
        ),
        kernel_function: kernel,
        user_actions,
        data_from: (!data.is_empty()).then_some(data_from),
        cgroup_sock: cgroup,
        generation: 0,
    });
    Ok(())
}

mod hook_info;
mod ids;
mod returns;
pub use ids::Ids;
mod names;
pub use hook_info::*;
pub use names::{ia32_name, ia32_number, syscall_name};
mod kinds;
pub(crate) use kinds::is_string_kind;
use kinds::{arg_kind, is_sock_kind};
mod targets;
use targets::{kernel_resolve, kernel_targets};
mod same_file;
mod values;
pub use same_file::SameFileEntry;
use values::{actions, arg_filter, filter_name, in_or_not, rate_limit};
pub use values::{common_start, open_like_path_arg, parse_rate_limit};

mod process;
use process::{namespaces_filter, pids_filter};

mod caps;
mod user_actions;
pub use caps::capability_bit;
use caps::{capabilities_filter, namespace_changes_filter, parent_binaries_filter};
pub use user_actions::UserAction;

pub(crate) mod readers;
pub use process::{ns_proc_name, parse_ns_link, read_host_namespace};
pub use readers::family_name;
use readers::{data_reader, ext_reader, sockaddr_filter};

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "tables/caps_tests.rs"]
mod caps_tests;

#[cfg(test)]
#[path = "kfunc_tests.rs"]
mod kfunc_tests;
