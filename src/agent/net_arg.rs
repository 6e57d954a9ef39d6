//! Network objects of kernel-function hooks in events.

use vigil_proto::tetragon;
use vigil_runtime::HookArg;

/// A network object's row (`vigil_sock_info`, bpf/include/vigil_kobj_net.h) as Tetragon's
/// sock_arg, skb_arg or sockaddr_arg.
pub(super) fn net_arg(kind: HookArg, bytes: &[u8]) -> tetragon::kprobe_argument::Arg {
    use tetragon::kprobe_argument::Arg;
    use vigil_runtime::sock::{FAMILIES, PROTOCOLS, STATES, TYPES, addr_text, decode, name_of};
    let Some(n) = decode(bytes) else {
        return Arg::ErrorArg(tetragon::KprobeError {
            message: "cannot read the argument from memory".into(),
        });
    };
    let family = name_of(FAMILIES, u32::from(n.family));
    match kind {
        HookArg::Skb => Arg::SkbArg(tetragon::KprobeSkb {
            hash: n.hash,
            len: n.len,
            priority: n.priority,
            mark: n.mark,
            saddr: addr_text(n.family, &n.saddr),
            daddr: addr_text(n.family, &n.daddr),
            sport: u32::from(n.sport),
            dport: u32::from(n.dport),
            proto: u32::from(n.protocol),
            protocol: name_of(PROTOCOLS, u32::from(n.protocol)),
            family,
            ..Default::default()
        }),
        HookArg::NetSockaddr => Arg::SockaddrArg(tetragon::KprobeSockaddr {
            addr: addr_text(n.family, &n.saddr),
            port: u32::from(n.sport),
            family,
        }),
        _ => Arg::SockArg(tetragon::KprobeSock {
            family,
            r#type: name_of(TYPES, u32::from(n.type_)),
            protocol: name_of(PROTOCOLS, u32::from(n.protocol)),
            mark: n.mark,
            priority: n.priority,
            saddr: addr_text(n.family, &n.saddr),
            daddr: addr_text(n.family, &n.daddr),
            sport: u32::from(n.sport),
            dport: u32::from(n.dport),
            cookie: n.cookie,
            state: name_of(STATES, u32::from(n.state)),
        }),
    }
}

/// The cgroup socket fallback denied the operation in the kernel; its program type has no
/// bpf_send_signal, so a Sigkill/Signal selector's signal is sent here, on the event (after
/// the denied call returned, not before as with a kernel-function hook).
pub(super) fn signal_from_user(tgid: u32, actions: u32, signal: u32) {
    use vigil_bpf::abi::{VIGIL_ACT_SIGKILL, VIGIL_ACT_SIGNAL};
    let sig = if actions & VIGIL_ACT_SIGKILL != 0 {
        libc::SIGKILL
    } else if actions & VIGIL_ACT_SIGNAL != 0 {
        signal as i32
    } else {
        return;
    };
    // SAFETY: kill(2) on a process id; no memory is shared.
    if unsafe { libc::kill(tgid as i32, sig) } != 0 {
        tracing::warn!(pid = tgid, signal = sig, error = %std::io::Error::last_os_error(),
            "cannot signal the process the network fallback denied");
    }
}
