//! What the agent needs to know about a loaded hook to turn its kernel records into events:
//! how each argument is reported, and the hook's identity (policy, function, event kind).

use super::UserAction;

/// How an argument is reported in events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HookArg {
    Int,
    Uint32,
    Int64,
    Uint64,
    SizeT,
    String,
    /// Tetragon's syscall64: `syscall_id` {id, abi}.
    SyscallId,
    /// `linux_binprm_arg` {path}.
    LinuxBinprm,
    /// Kernel objects (kernel-function and LSM hooks): the path, and the inode mode.
    File,
    Path,
    /// `char_buf`: `bytes_arg`, or `truncated_bytes_arg` with the size asked for when the
    /// engine's buffer cut it.
    Bytes,
    /// `sockaddr_arg` {family, addr, port} from a `vigil_sockaddr`.
    Sockaddr,
    /// `char_buf` with maxData: `bytes_arg` / `truncated_bytes_arg` from the data chunks
    /// that went ahead of the event (the argument's row holds their id).
    Data,
    /// Network objects (crate::sock): `sock_arg`, `skb_arg`, `sockaddr_arg`.
    Sock,
    Skb,
    /// A kernel `struct sockaddr` (kernel-function hooks, the cgroup fallback).
    NetSockaddr,
    /// Kernel structures summarised by the kernel (vigil_kobj_struct.h) into a
    /// `vigil_*_info` row: `process_credentials_arg`, `user_ns_arg`, `bpf_attr_arg`,
    /// `bpf_prog_arg`, `bpf_map_arg`, `perf_event_arg`, `module_arg`.
    Cred,
    UserNs,
    BpfAttr,
    BpfProg,
    BpfMap,
    PerfEvent,
    Module,
    /// A capability set (the 64-bit mask in the integer): `kernel_cap_t_arg`,
    /// `cap_inheritable_arg`, `cap_permitted_arg` or `cap_effective_arg`.
    CapSet(CapSetKind),
    /// `net_dev_arg` {name}.
    NetDevice,
    /// An integer reported as `capability_arg` {value, name}.
    Capability,
    /// An integer reported as `bpf_cmd_arg` (the BpfCmd enum).
    BpfCmd,
    /// `nop`: occupies its index, read and reported nowhere.
    Nop,
}

/// Which of Tetragon's capability-set arguments a `CapSet` is reported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CapSetKind {
    KernelCapT,
    Inheritable,
    Permitted,
    Effective,
}

/// Which event a hook produces, with what identifies the hook in it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum HookEvent {
    /// `process_kprobe` (syscall hooks): `function_name` in [`HookInfo`].
    #[default]
    Kprobe,
    Tracepoint {
        subsys: String,
        event: String,
    },
    Uprobe {
        path: String,
        symbol: String,
        offset: u64,
        ref_ctr_offset: u64,
    },
    Usdt {
        path: String,
        provider: String,
        name: String,
    },
    /// `process_loader` (`spec.loader`): argument 0 is the mapped file.
    Loader,
    /// `process_kprobe` of a hook on every system call (raw_syscalls): `function_name`
    /// comes from the syscall id the kernel put in argument slot `id_slot`.
    EverySyscall {
        id_slot: usize,
    },
}

/// What the pipeline needs to know about a hook id.
/// Serialisable: an agent that keeps its sensors writes its hooks down, so that the next
/// agent can attribute what the kept ring holds.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct HookInfo {
    pub id: u32,
    pub policy_name: String,
    /// Tetragon's `function_name`: `__x64_sys_<name>`.
    pub function_name: String,
    pub args: Vec<(HookArg, Option<String>)>,
    pub message: Option<String>,
    pub tags: Vec<String>,
    pub event: HookEvent,
    /// How the return value is reported (`return` in events), when the hook pairs its exit.
    pub return_arg: Option<HookArg>,
    /// Number of selectors in the kernel (per-selector counters).
    pub selectors: usize,
    /// An `lsmhooks` hook: its events are `process_lsm`.
    pub lsm: bool,
    /// Return probes: the slot of `args` holding the return value (`return` in events).
    pub return_slot: Option<usize>,
    /// A kernel-function or LSM hook (not a system call).
    pub kernel_function: bool,
    /// GetUrl / DnsLookup actions of each selector (by selector index).
    pub user_actions: Vec<Vec<UserAction>>,
    /// `args` from this position on are the hook's `data` entries (`data` in events).
    pub data_from: Option<usize>,
    /// Run by the cgroup socket fallback (vigil_policy::netfallback) instead of the kernel
    /// function: it denies in the kernel, but Sigkill/Signal are sent by the agent on the
    /// event (the program type has no bpf_send_signal).
    pub cgroup_sock: bool,
    /// The load generation of its policy: records carry it (`vigil_syscall_msg.generation`).
    pub generation: u32,
}

impl HookInfo {
    /// What is hooked, as people name it: `__x64_sys_openat`, `sched/sched_process_exec`,
    /// `/bin/bash:readline`, `python:audit`.
    pub fn hook_name(&self) -> String {
        match &self.event {
            HookEvent::Kprobe | HookEvent::Loader => self.function_name.clone(),
            HookEvent::Tracepoint { subsys, event } => format!("{subsys}/{event}"),
            HookEvent::Uprobe {
                path,
                symbol,
                offset,
                ..
            } if symbol.is_empty() => format!("{path}:{offset:#x}"),
            HookEvent::Uprobe { path, symbol, .. } => format!("{path}:{symbol}"),
            HookEvent::Usdt { provider, name, .. } => format!("{provider}:{name}"),
            HookEvent::EverySyscall { .. } => "raw_syscalls/sys_enter".to_string(),
        }
    }

    /// The sensor name reported by ListTracingPolicies (Tetragon's `generic_*` names).
    pub fn sensor_name(&self) -> String {
        let kind = match self.event {
            HookEvent::Kprobe if self.lsm => "generic_lsm",
            HookEvent::Kprobe if self.cgroup_sock => "cgroup_sock_addr",
            HookEvent::Kprobe if self.kernel_function => "generic_kprobe",
            HookEvent::Kprobe | HookEvent::EverySyscall { .. } => "generic_syscall",
            HookEvent::Tracepoint { .. } => "generic_tracepoint",
            HookEvent::Uprobe { .. } => "generic_uprobe",
            HookEvent::Usdt { .. } => "generic_usdt",
            HookEvent::Loader => "loader",
        };
        format!("{kind}:{}", self.hook_name())
    }
}
