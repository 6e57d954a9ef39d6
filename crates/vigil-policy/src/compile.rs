//! Policy -> kernel-independent load plan: for every hook, the attach mechanism chosen for
//! the given kernel capabilities, the argument readers, the selector tables and the actions;
//! or a refusal naming the reason. The runtime loads a plan; it never re-reads YAML.

use crate::TracingPolicy;
use crate::kernel::syscall_name;
use crate::model::*;
use crate::state::PolicyMode;
use crate::types::{Action, ArgType, ListType, Operator};

mod targets;
pub use targets::ftrace_pattern;
use targets::{expand_call, loader_hook};

/// What the target kernel can do (measured by the runtime; see `KERNEL.md`).
pub trait KernelCapabilities {
    fn kprobes(&self) -> bool;
    fn kprobe_multi(&self) -> bool;
    fn fentry(&self) -> bool;
    fn bpf_lsm(&self) -> bool;
    /// IMA is active (securityfs shows it): Post `imaHash` can get file digests.
    fn ima(&self) -> bool;
    /// `bpf_override_return` on syscalls and error-injectable functions.
    fn error_injection(&self) -> bool;
    /// `available_filter_functions` is readable (for generated_ftrace lists).
    fn ftrace_function_list(&self) -> bool;
    /// raw_tp programs can read an attach cookie (Linux 6.10): vigil's raw tracepoint hooks
    /// learn their hook id from it.
    fn raw_tp_cookie(&self) -> bool;
    fn file_exists(&self, path: &str) -> bool;
    fn describe(&self) -> String;
}

/// A plain set of capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub kprobes: bool,
    pub kprobe_multi: bool,
    pub fentry: bool,
    pub bpf_lsm: bool,
    pub ima: bool,
    pub error_injection: bool,
    pub ftrace_function_list: bool,
    pub raw_tp_cookie: bool,
    /// Whether `file_exists` looks at this machine's file system (else every file exists).
    pub check_files: bool,
}

impl Capabilities {
    /// This project's development host (KERNEL.md, measured 2026-11-28): tracepoints,
    /// raw_tp and uprobes only.
    pub const TRACEPOINTS_ONLY: Capabilities = Capabilities {
        kprobes: false,
        kprobe_multi: false,
        fentry: false,
        bpf_lsm: false,
        ima: false,
        error_injection: false,
        ftrace_function_list: false,
        raw_tp_cookie: true,
        check_files: true,
    };

    /// A distribution kernel such as Debian 6.12: everything but error injection.
    pub const FULL_NO_ERROR_INJECTION: Capabilities = Capabilities {
        kprobes: true,
        kprobe_multi: true,
        fentry: true,
        bpf_lsm: true,
        ima: true,
        error_injection: false,
        ftrace_function_list: true,
        raw_tp_cookie: true,
        check_files: false,
    };
}

impl KernelCapabilities for Capabilities {
    fn kprobes(&self) -> bool {
        self.kprobes
    }
    fn kprobe_multi(&self) -> bool {
        self.kprobe_multi
    }
    fn fentry(&self) -> bool {
        self.fentry
    }
    fn bpf_lsm(&self) -> bool {
        self.bpf_lsm
    }
    fn ima(&self) -> bool {
        self.ima
    }
    fn error_injection(&self) -> bool {
        self.error_injection
    }
    fn ftrace_function_list(&self) -> bool {
        self.ftrace_function_list
    }
    fn raw_tp_cookie(&self) -> bool {
        self.raw_tp_cookie
    }
    fn file_exists(&self, path: &str) -> bool {
        !self.check_files || std::path::Path::new(path).exists()
    }
    fn describe(&self) -> String {
        let mut have = vec!["tracepoint", "raw_tp", "uprobe"];
        for (name, on) in [
            ("kprobe", self.kprobes),
            ("kprobe.multi", self.kprobe_multi),
            ("fentry", self.fentry),
            ("lsm", self.bpf_lsm),
            ("error-injection", self.error_injection),
        ] {
            if on {
                have.push(name);
            }
        }
        have.join(", ")
    }
}

/// The target of a hook on a `generated_syscalls` list: every system call.
pub const EVERY_SYSCALL: &str = "<every system call>";

/// How a hook is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Tracepoint,
    RawTracepoint,
    /// `syscalls:sys_enter_X` / `sys_exit_X` for 64-bit calls, plus `raw_syscalls` filtered
    /// by ia32 number, since `int 0x80` calls do not fire the per-syscall tracepoints.
    SyscallTracepoint,
    Kprobe,
    KprobeMulti,
    Fentry,
    Lsm,
    Uprobe,
    Usdt,
    /// vigil's network fallback (crate::netfallback): cgroup sock_addr programs on the root
    /// cgroup v2 where kernel-function hooks are unavailable.
    CgroupSockAddr,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Self::Tracepoint => "tracepoint",
            Self::RawTracepoint => "raw_tp",
            Self::SyscallTracepoint => "syscall tracepoints (64-bit) + raw_syscalls (ia32)",
            Self::Kprobe => "kprobe",
            Self::KprobeMulti => "kprobe.multi",
            Self::Fentry => "fentry",
            Self::Lsm => "lsm",
            Self::Uprobe => "uprobe",
            Self::Usdt => "usdt",
            Self::CgroupSockAddr => "cgroup_sock_addr",
        }
    }
}

/// Where an argument reader takes its value from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgOrigin {
    Argument,
    Data,
    Return,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArgReader {
    pub origin: ArgOrigin,
    pub index: u32,
    pub arg_type: ArgType,
    pub label: Option<String>,
    /// 0-based index of the size argument (converted from the 1-based YAML field).
    pub size_arg: Option<u32>,
    pub read_at_return: bool,
    pub max_bytes: usize,
    pub resolve: Vec<String>,
    pub btf_type: Option<String>,
    /// `data` entries: where the value comes from (`current_task`, `pt_regs`).
    pub source: Option<String>,
}

/// One filter row of a selector table.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Arg {
        origin: ArgOrigin,
        positions: Vec<u32>,
        operator: Operator,
        values: Vec<String>,
    },
    Pids(PidSelector),
    Binaries {
        parent: bool,
        selector: BinarySelector,
    },
    Namespaces(NamespaceSelector),
    NamespaceChanges(NamespaceChangesSelector),
    Capabilities {
        changes: bool,
        selector: CapabilitiesSelector,
    },
    Workloads(WorkloadSelector),
}

/// A selector with macros spliced in.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectorTable {
    pub label: Option<String>,
    pub filters: Vec<Filter>,
    /// Empty means the default: Post.
    pub actions: Vec<ActionSelector>,
    pub return_actions: Vec<ActionSelector>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HookPlan {
    /// YAML path of the hook (`spec.kprobes[0]`).
    pub path: String,
    /// What is hooked: function, `subsystem/event`, `binary:symbol`...
    pub targets: Vec<String>,
    pub mechanism: Mechanism,
    pub on_return: bool,
    pub arguments: Vec<ArgReader>,
    pub selectors: Vec<SelectorTable>,
    pub message: Option<String>,
    pub tags: Vec<String>,
    /// Skip instead of failing when the target is missing (`ignore`).
    pub optional: bool,
    /// Uprobe-only attach details (empty for other hooks).
    pub uprobe: UprobeExtras,
    /// `returnArgAction` (TrackSock / UntrackSock on the returned socket).
    pub return_arg_action: Option<Action>,
    /// The hook `spec.loader` adds: its events are `process_loader`.
    pub loader: bool,
}

/// What a uprobe hook needs besides its targets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UprobeExtras {
    /// `binaryDigests`: sha256 (hex) values the target file must match, checked before attach.
    pub binary_digests: Vec<String>,
    /// `refCtrOffsets`, paired with `offsets` by position.
    pub ref_ctr_offsets: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub path: String,
    pub reason: String,
}

/// The compiled policy. It loads only when `refusals` is empty: a policy is never half
/// loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub mode: PolicyMode,
    pub hooks: Vec<HookPlan>,
    pub refusals: Vec<Refusal>,
    pub enforcer_syscalls: Vec<String>,
    pub loader: bool,
    /// The pods the policy applies to; `None`: every process (no filtering).
    pub scope: Option<PolicyScope>,
}

/// Which pods' containers a policy applies to (Tetragon's policy filter): a
/// TracingPolicyNamespaced's namespace, `spec.podSelector`, `spec.containerSelector`. Any of
/// them makes the policy pods-only; an absent selector selects everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyScope {
    pub namespace: Option<String>,
    pub pod_selector: Option<LabelSelector>,
    pub container_selector: Option<LabelSelector>,
}

impl PolicyScope {
    /// The scope of `policy`, or `None` when it applies to every process.
    pub fn of(policy: &TracingPolicy) -> Option<PolicyScope> {
        let spec = &policy.spec;
        let namespaced = policy.kind == crate::PolicyKind::TracingPolicyNamespaced;
        if !namespaced && spec.pod_selector.is_none() && spec.container_selector.is_none() {
            return None;
        }
        Some(PolicyScope {
            namespace: if namespaced {
                policy.metadata.namespace.clone().filter(|n| !n.is_empty())
            } else {
                None
            },
            pod_selector: spec.pod_selector.clone(),
            container_selector: spec.container_selector.clone(),
        })
    }
}

impl Plan {
    pub fn is_loadable(&self) -> bool {
        self.refusals.is_empty()
    }
}

const NO_FUNCTION_PROBES: &str =
    "kernel functions/LSM hooks need kprobes, fentry or BPF LSM, none available";

/// Compiles a checked policy for a kernel with the given capabilities.
pub fn compile(policy: &TracingPolicy, caps: &dyn KernelCapabilities) -> Plan {
    let spec = &policy.spec;
    let mut plan = Plan {
        name: policy.metadata.name.clone(),
        mode: PolicyMode::initial(spec),
        hooks: Vec::new(),
        refusals: Vec::new(),
        enforcer_syscalls: Vec::new(),
        loader: spec.loader,
        scope: PolicyScope::of(policy),
    };
    let refuse = |plan: &mut Plan, path: String, reason: &str| {
        plan.refusals.push(Refusal {
            path,
            reason: reason.to_string(),
        })
    };
    let disable_multi = spec
        .options
        .iter()
        .any(|o| o.name == "disable-kprobe-multi" && o.value.eq_ignore_ascii_case("true"));

    for (field, hooks) in [("kprobes", &spec.kprobes), ("fentries", &spec.fentries)] {
        for (i, k) in hooks.iter().enumerate() {
            let path = policy.source.hook_path(field, i);
            let (targets, syscall, list_refusal) = expand_call(spec, k, caps);
            if let Some(reason) = list_refusal {
                refuse(&mut plan, path, reason);
                continue;
            }
            let overrides = k
                .selectors
                .iter()
                .flat_map(|s| &s.match_actions)
                .any(|a| a.action == Action::Override);
            // A generated_ftrace pattern stands for many functions.
            let several = targets.len() > 1 || targets.iter().any(|t| ftrace_pattern(t).is_some());
            let mechanism = if field == "fentries" {
                caps.fentry().then_some(Mechanism::Fentry)
            } else if syscall {
                // Syscall tracepoints exist on every kernel, read the arguments directly
                // (a kprobe on __x64_sys_X sees a pt_regs pointer) and the runtime runs
                // them; used even where kprobes exist.
                Some(Mechanism::SyscallTracepoint)
            } else if !syscall && !several && caps.fentry() {
                // One kernel function: fentry is cheaper than a kprobe (a trampoline call
                // instead of an int3/ftrace detour); the loader falls back to a kprobe
                // when the function takes no trampoline.
                Some(Mechanism::Fentry)
            } else if caps.kprobes() {
                Some(if several && caps.kprobe_multi() && !disable_multi {
                    Mechanism::KprobeMulti
                } else {
                    Mechanism::Kprobe
                })
            } else if caps.fentry() {
                Some(Mechanism::Fentry)
            } else if !caps.bpf_lsm() && crate::netfallback::covers(&targets) {
                Some(Mechanism::CgroupSockAddr)
            } else {
                None
            };
            let Some(mechanism) = mechanism else {
                refuse(&mut plan, path, NO_FUNCTION_PROBES);
                continue;
            };
            // `override-method: override-return` asks for bpf_override_return by name.
            let override_return = spec
                .options
                .iter()
                .any(|o| o.name == "override-method" && o.value == "override-return");
            if overrides && override_return && !caps.error_injection() {
                refuse(
                    &mut plan,
                    path,
                    "override-method override-return needs bpf_override_return (error injection), \
                     absent on this kernel; fmod-ret (the default here) works on security_* functions",
                );
                continue;
            }
            if overrides && !caps.error_injection() && mechanism != Mechanism::CgroupSockAddr {
                let security = targets.iter().all(|t| t.starts_with("security_"));
                if syscall || !(security && (caps.fentry() || caps.bpf_lsm())) {
                    let reason = if syscall {
                        "Override on a syscall needs bpf_override_return or fmod_ret on syscalls (error injection), absent"
                    } else {
                        "Override needs bpf_override_return (error injection) or fmod_ret on security_* functions, absent"
                    };
                    refuse(&mut plan, path, reason);
                    continue;
                }
            }
            let mut arguments = readers(&k.args, ArgOrigin::Argument);
            arguments.extend(readers(&k.data, ArgOrigin::Data));
            arguments.extend(
                k.return_arg
                    .iter()
                    .flat_map(|r| readers(std::slice::from_ref(r), ArgOrigin::Return)),
            );
            plan.hooks.push(HookPlan {
                path,
                targets,
                mechanism,
                on_return: k.r#return,
                arguments,
                selectors: tables(spec, &k.selectors),
                message: k.message.clone(),
                tags: k.tags.clone(),
                optional: k.ignore.call_not_found,
                uprobe: UprobeExtras::default(),
                return_arg_action: k.return_arg_action,
                loader: false,
            });
            if mechanism == Mechanism::CgroupSockAddr
                && let Some(hook) = plan.hooks.pop()
            {
                match crate::netfallback::check(&hook) {
                    Ok(()) => plan.hooks.push(hook),
                    Err(why) => refuse(
                        &mut plan,
                        hook.path,
                        &format!(
                            "{NO_FUNCTION_PROBES}; the cgroup socket fallback does not apply: {why}"
                        ),
                    ),
                }
            }
        }
    }
    for (i, t) in spec.tracepoints.iter().enumerate() {
        if t.raw && !caps.raw_tp_cookie() {
            refuse(
                &mut plan,
                policy.source.hook_path("tracepoints", i),
                "raw tracepoint hooks need attach cookies on raw_tp programs (Linux 6.10), \
                 this kernel lacks them",
            );
            continue;
        }
        plan.hooks.push(HookPlan {
            path: policy.source.hook_path("tracepoints", i),
            targets: vec![format!("{}/{}", t.subsystem, t.event)],
            mechanism: if t.raw {
                Mechanism::RawTracepoint
            } else {
                Mechanism::Tracepoint
            },
            on_return: false,
            arguments: readers(&t.args, ArgOrigin::Argument),
            selectors: tables(spec, &t.selectors),
            message: t.message.clone(),
            tags: t.tags.clone(),
            optional: false,
            uprobe: UprobeExtras::default(),
            return_arg_action: None,
            loader: false,
        });
    }
    for (i, u) in spec.uprobes.iter().enumerate() {
        let path = policy.source.hook_path("uprobes", i);
        if !caps.file_exists(&u.path) {
            refuse(
                &mut plan,
                path,
                &format!("target file {} does not exist here", u.path),
            );
            continue;
        }
        let mut targets: Vec<String> = u
            .symbols
            .iter()
            .map(|s| format!("{}:{s}", u.path))
            .collect();
        targets.extend(u.offsets.iter().map(|o| format!("{}:+{o:#x}", u.path)));
        targets.extend(u.addrs.iter().map(|a| format!("{}:@{a:#x}", u.path)));
        let mut arguments = readers(&u.args, ArgOrigin::Argument);
        arguments.extend(readers(&u.data, ArgOrigin::Data));
        plan.hooks.push(HookPlan {
            path,
            targets,
            mechanism: Mechanism::Uprobe,
            on_return: u.r#return,
            arguments,
            selectors: tables(spec, &u.selectors),
            message: u.message.clone(),
            tags: u.tags.clone(),
            optional: u.ignore.digest_verification_failure,
            uprobe: UprobeExtras {
                binary_digests: u.binary_digests.clone(),
                ref_ctr_offsets: u.ref_ctr_offsets.clone(),
            },
            return_arg_action: None,
            loader: false,
        });
    }
    for (i, u) in spec.usdts.iter().enumerate() {
        let path = policy.source.hook_path("usdts", i);
        if !caps.file_exists(&u.path) {
            refuse(
                &mut plan,
                path,
                &format!("target file {} does not exist here", u.path),
            );
            continue;
        }
        plan.hooks.push(HookPlan {
            path,
            targets: vec![format!("{}:{}:{}", u.path, u.provider, u.name)],
            mechanism: Mechanism::Usdt,
            on_return: false,
            arguments: readers(&u.args, ArgOrigin::Argument),
            selectors: tables(spec, &u.selectors),
            message: u.message.clone(),
            tags: u.tags.clone(),
            optional: false,
            uprobe: UprobeExtras::default(),
            return_arg_action: None,
            loader: false,
        });
    }
    for (i, l) in spec.lsmhooks.iter().enumerate() {
        let path = policy.source.hook_path("lsmhooks", i);
        let ima_hash = l
            .selectors
            .iter()
            .flat_map(|s| &s.match_actions)
            .any(|a| a.ima_hash);
        if ima_hash && !caps.bpf_lsm() {
            let reason = crate::kernel::ima_hash_absent(NO_FUNCTION_PROBES);
            refuse(&mut plan, path, &reason);
            continue;
        }
        if ima_hash && !caps.ima() {
            let reason = crate::kernel::ima_hash_absent(
                "IMA is not active (no /sys/kernel/security/ima): the kernel was built or booted without it",
            );
            refuse(&mut plan, path, &reason);
            continue;
        }
        if !caps.bpf_lsm() {
            refuse(&mut plan, path, NO_FUNCTION_PROBES);
            continue;
        }
        plan.hooks.push(HookPlan {
            path,
            targets: vec![l.hook.clone()],
            mechanism: Mechanism::Lsm,
            on_return: false,
            arguments: readers(&l.args, ArgOrigin::Argument),
            selectors: tables(spec, &l.selectors),
            message: l.message.clone(),
            tags: l.tags.clone(),
            optional: false,
            uprobe: UprobeExtras::default(),
            return_arg_action: None,
            loader: false,
        });
    }
    for (i, e) in spec.enforcers.iter().enumerate() {
        for call in &e.calls {
            match call
                .strip_prefix("list:")
                .and_then(|n| spec.lists.iter().find(|l| l.name == n))
            {
                Some(list) => plan.enforcer_syscalls.extend(list.values.iter().cloned()),
                None => plan.enforcer_syscalls.push(call.clone()),
            }
        }
        let overrides = spec
            .tracepoints
            .iter()
            .flat_map(|t| &t.selectors)
            .chain(spec.kprobes.iter().flat_map(|k| &k.selectors))
            .flat_map(|s| &s.match_actions)
            .any(|a| a.action == Action::NotifyEnforcer && a.arg_error.is_some());
        if overrides && !caps.error_injection() {
            refuse(
                &mut plan,
                format!("spec.enforcers[{i}]"),
                "the enforcer's error override needs error injection, absent",
            );
        }
    }
    if spec.loader && !caps.kprobes() && !caps.fentry() {
        refuse(&mut plan, "spec.loader".into(), NO_FUNCTION_PROBES);
    } else if spec.loader {
        plan.hooks.push(loader_hook(caps));
    }
    // `hostSelector: {}` next to a pod scope means "these pods and the host": the kernel
    // scope holds pod cgroups only, so refuse rather than silently drop the host.
    if plan.scope.is_some() && spec.host_selector.is_some() {
        refuse(
            &mut plan,
            "spec.hostSelector".into(),
            "hostSelector together with podSelector/containerSelector (pods and host) is not \
             supported: the kernel scope holds pod cgroups only",
        );
    }
    plan
}

fn readers(args: &[ArgSpec], origin: ArgOrigin) -> Vec<ArgReader> {
    args.iter()
        .map(|a| ArgReader {
            origin,
            index: a.index,
            arg_type: a.arg_type,
            label: a.label.clone(),
            size_arg: a.size_arg_index.and_then(|i| i.checked_sub(1)),
            read_at_return: a.return_copy,
            max_bytes: match a.arg_type {
                ArgType::CharBuf if a.max_data => crate::limits::CHAR_BUF_MAX_DATA_BYTES.max,
                ArgType::CharBuf => crate::limits::CHAR_BUF_DEFAULT_BYTES.max,
                // Fixed size: `size`, else Tetragon's reading of sizeArgIndex as the count.
                ArgType::ConstBuf => a.size.or(a.size_arg_index).unwrap_or(0) as usize,
                _ => crate::limits::MAX_STRING_BYTES.max,
            },
            resolve: a
                .resolve
                .iter()
                .flat_map(|r| r.split('.'))
                .map(str::to_string)
                .collect(),
            btf_type: a.btf_type.clone(),
            source: a.source.clone(),
        })
        .collect()
}

/// `InMap`/`NotInMap` values naming a list (`list:NAME`) become the list's values; the
/// runtime then sees plain values (syscall names stay names: it numbers them).
fn expand_lists(spec: &Spec, op: Operator, values: &[String]) -> Vec<String> {
    if !matches!(op, Operator::InMap | Operator::NotInMap) {
        return values.to_vec();
    }
    values
        .iter()
        .flat_map(|v| {
            match v
                .strip_prefix("list:")
                .and_then(|n| spec.lists.iter().find(|l| l.name == n))
            {
                Some(list) => list.values.clone(),
                None => vec![v.clone()],
            }
        })
        .collect()
}

/// A `CelExpr` filter as the engine comparisons it stands for (validation refused the
/// others). `None` leaves the filter as written, for the runtime to refuse by name: a
/// filter is never dropped.
fn lower_cel_expr(origin: ArgOrigin, f: &ArgSelector) -> Option<Vec<Filter>> {
    if f.operator != Operator::CelExpr || f.values.len() != 1 {
        return None;
    }
    let comparisons = crate::celexpr::lower(&f.values[0], f.args.len()).ok()?;
    Some(
        comparisons
            .into_iter()
            .map(|c| Filter::Arg {
                origin,
                positions: vec![f.args[c.arg]],
                operator: c.operator,
                values: vec![c.value],
            })
            .collect(),
    )
}

fn tables(spec: &Spec, selectors: &[Selector]) -> Vec<SelectorTable> {
    selectors
        .iter()
        .map(|s| {
            let parts: Vec<&Selector> = std::iter::once(s)
                .chain(s.macros.iter().filter_map(|m| spec.selectors_macros.get(m)))
                .collect();
            let mut table = SelectorTable {
                label: s.label.clone(),
                filters: Vec::new(),
                actions: Vec::new(),
                return_actions: Vec::new(),
            };
            for p in parts {
                let arg = |origin, f: &ArgSelector| -> Vec<Filter> {
                    if let Some(lowered) = lower_cel_expr(origin, f) {
                        return lowered;
                    }
                    vec![Filter::Arg {
                        origin,
                        positions: if f.args.is_empty() {
                            f.index.into_iter().collect()
                        } else {
                            f.args.clone()
                        },
                        operator: f.operator,
                        values: expand_lists(spec, f.operator, &f.values),
                    }]
                };
                table.filters.extend(
                    p.match_args
                        .iter()
                        .flat_map(|f| arg(ArgOrigin::Argument, f)),
                );
                table
                    .filters
                    .extend(p.match_data.iter().flat_map(|f| arg(ArgOrigin::Data, f)));
                table.filters.extend(
                    p.match_return_args
                        .iter()
                        .flat_map(|f| arg(ArgOrigin::Return, f)),
                );
                table
                    .filters
                    .extend(p.match_pids.iter().cloned().map(Filter::Pids));
                table
                    .filters
                    .extend(
                        p.match_binaries
                            .iter()
                            .cloned()
                            .map(|selector| Filter::Binaries {
                                parent: false,
                                selector,
                            }),
                    );
                table
                    .filters
                    .extend(p.match_parent_binaries.iter().cloned().map(|selector| {
                        Filter::Binaries {
                            parent: true,
                            selector,
                        }
                    }));
                table
                    .filters
                    .extend(p.match_namespaces.iter().cloned().map(Filter::Namespaces));
                table.filters.extend(
                    p.match_namespace_changes
                        .iter()
                        .cloned()
                        .map(Filter::NamespaceChanges),
                );
                table
                    .filters
                    .extend(p.match_capabilities.iter().cloned().map(|selector| {
                        Filter::Capabilities {
                            changes: false,
                            selector,
                        }
                    }));
                table
                    .filters
                    .extend(p.match_capability_changes.iter().cloned().map(|selector| {
                        Filter::Capabilities {
                            changes: true,
                            selector,
                        }
                    }));
                table
                    .filters
                    .extend(p.match_workloads.iter().cloned().map(Filter::Workloads));
                table.actions.extend(p.match_actions.iter().cloned());
                table
                    .return_actions
                    .extend(p.match_return_actions.iter().cloned());
            }
            table
        })
        .collect()
}
