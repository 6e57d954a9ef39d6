//! Argument types to the engine's reader kinds and to how events report them.

use super::HookArg;
use super::hook_info::CapSetKind;
use vigil_bpf::abi::*;
use vigil_policy::types::ArgType;

pub(super) fn arg_kind(t: ArgType, kernel: bool) -> Option<(u8, HookArg)> {
    if kernel {
        // Arguments of kernel functions are kernel pointers.
        match t {
            ArgType::File => return Some((VIGIL_ARG_FILE as u8, HookArg::File)),
            ArgType::Path => return Some((VIGIL_ARG_PATH as u8, HookArg::Path)),
            ArgType::Dentry => return Some((VIGIL_ARG_DENTRY as u8, HookArg::Path)),
            ArgType::LinuxBinprm => return Some((VIGIL_ARG_BINPRM as u8, HookArg::LinuxBinprm)),
            ArgType::String => return Some((VIGIL_ARG_KSTRING as u8, HookArg::String)),
            ArgType::Filename => return Some((VIGIL_ARG_FILENAME as u8, HookArg::String)),
            ArgType::Sock => return Some((VIGIL_ARG_SOCK as u8, HookArg::Sock)),
            ArgType::Socket => return Some((VIGIL_ARG_SOCKET as u8, HookArg::Sock)),
            ArgType::Skb => return Some((VIGIL_ARG_SKB as u8, HookArg::Skb)),
            ArgType::Sockaddr => return Some((VIGIL_ARG_NET_SOCKADDR as u8, HookArg::NetSockaddr)),
            ArgType::Kiocb => return Some((VIGIL_ARG_KIOCB as u8, HookArg::File)),
            ArgType::NetDevice => return Some((VIGIL_ARG_NET_DEVICE as u8, HookArg::NetDevice)),
            ArgType::IovIter => return Some((VIGIL_ARG_IOV_ITER as u8, HookArg::Bytes)),
            _ => {}
        }
        if let Some(found) = kstruct_kind(t) {
            return Some(found);
        }
    }
    Some(match t {
        ArgType::Int8 | ArgType::Int16 | ArgType::Int32 => (VIGIL_ARG_INT as u8, HookArg::Int),
        ArgType::Uint8 | ArgType::Uint16 | ArgType::Uint32 => {
            (VIGIL_ARG_UINT32 as u8, HookArg::Uint32)
        }
        ArgType::Int64 => (VIGIL_ARG_INT64 as u8, HookArg::Int64),
        ArgType::Uint64 => (VIGIL_ARG_UINT64 as u8, HookArg::Uint64),
        ArgType::SizeT => (VIGIL_ARG_UINT64 as u8, HookArg::SizeT),
        ArgType::String | ArgType::Filename => (VIGIL_ARG_STRING as u8, HookArg::String),
        ArgType::CharBuf => (VIGIL_ARG_BUF as u8, HookArg::Bytes),
        // The descriptor's path, read through the task's file table (Tetragon's file_arg).
        ArgType::Fd => (VIGIL_ARG_FD as u8, HookArg::File),
        ArgType::CharIovec => (VIGIL_ARG_IOVEC as u8, HookArg::Bytes),
        ArgType::ConstBuf => (VIGIL_ARG_CONST_BUF as u8, HookArg::Bytes),
        ArgType::Sockaddr => (VIGIL_ARG_SOCKADDR as u8, HookArg::Sockaddr),
        ArgType::Capability => (VIGIL_ARG_INT as u8, HookArg::Capability),
        ArgType::BpfCmd => (VIGIL_ARG_INT as u8, HookArg::BpfCmd),
        ArgType::Nop => (VIGIL_ARG_NONE as u8, HookArg::Nop),
        _ => return None,
    })
}

/// Rows holding a socket TrackSock can name (struct sock / struct socket arguments).
pub(super) fn is_sock_kind(kind: u8) -> bool {
    matches!(u32::from(kind), VIGIL_ARG_SOCK | VIGIL_ARG_SOCKET)
}

/// Kernel structures read into a summary row (kernel-function hooks only).
fn kstruct_kind(t: ArgType) -> Option<(u8, HookArg)> {
    let (kind, report) = match t {
        ArgType::Cred => (VIGIL_ARG_CRED, HookArg::Cred),
        ArgType::UserNamespace => (VIGIL_ARG_USER_NS, HookArg::UserNs),
        ArgType::BpfAttr => (VIGIL_ARG_BPF_ATTR, HookArg::BpfAttr),
        ArgType::BpfProg => (VIGIL_ARG_BPF_PROG, HookArg::BpfProg),
        ArgType::BpfMap => (VIGIL_ARG_BPF_MAP, HookArg::BpfMap),
        ArgType::PerfEvent => (VIGIL_ARG_PERF_EVENT, HookArg::PerfEvent),
        ArgType::Module => (VIGIL_ARG_MODULE, HookArg::Module),
        ArgType::LoadInfo => (VIGIL_ARG_LOAD_INFO, HookArg::Module),
        ArgType::KernelCapT => (VIGIL_ARG_CAP_SET, HookArg::CapSet(CapSetKind::KernelCapT)),
        ArgType::CapInheritable => (VIGIL_ARG_CAP_SET, HookArg::CapSet(CapSetKind::Inheritable)),
        ArgType::CapPermitted => (VIGIL_ARG_CAP_SET, HookArg::CapSet(CapSetKind::Permitted)),
        ArgType::CapEffective => (VIGIL_ARG_CAP_SET, HookArg::CapSet(CapSetKind::Effective)),
        _ => return None,
    };
    Some((kind as u8, report))
}

/// Argument kinds the kernel reads as a string (user and kernel strings, and kernel objects
/// read as their path): entry reads them only for the filters that need them.
pub(crate) fn is_string_kind(kind: u8) -> bool {
    let kind = u32::from(kind);
    kind == VIGIL_ARG_STRING
        || kind == VIGIL_ARG_KSTRING
        || kind == VIGIL_ARG_FD
        || kind == VIGIL_ARG_BTF_STR
        || (VIGIL_ARG_KOBJ_FIRST..=VIGIL_ARG_KOBJ_LAST).contains(&kind)
}
