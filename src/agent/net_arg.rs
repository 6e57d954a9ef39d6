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
/// the denied call returned, not before as with a kernel-function hook). The process is
/// pinned by a pidfd and checked to have started before the event (`event_ktime`, boot
/// clock): its pid may have been reused by then, and a bystander must never get the signal.
pub(super) fn signal_from_user(tgid: u32, event_ktime: u64, actions: u32, signal: u32) {
    use vigil_bpf::abi::{VIGIL_ACT_SIGKILL, VIGIL_ACT_SIGNAL};
    let sig = if actions & VIGIL_ACT_SIGKILL != 0 {
        libc::SIGKILL
    } else if actions & VIGIL_ACT_SIGNAL != 0 {
        signal as i32
    } else {
        return;
    };
    if let Err(e) = signal_if_same(tgid, event_ktime, sig) {
        tracing::warn!(pid = tgid, signal = sig, error = %e,
            "cannot signal the process the network fallback denied");
    }
}

fn signal_if_same(tgid: u32, event_ktime: u64, sig: i32) -> std::io::Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: pidfd_open(2) takes a pid and flags; the fd it returns is ours to own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tgid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd from pidfd_open.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // With the pidfd held the pid cannot change hands: check the process it names now.
    let stat = std::fs::read_to_string(format!("/proc/{tgid}/stat"))?;
    let started = vigil_process::procfs::parse_stat(&stat)
        .map(|s| s.start_ticks)
        .ok_or_else(|| std::io::Error::other("unreadable /proc stat"))?;
    if !started_before(started, clock_ticks(), event_ktime) {
        return Err(std::io::Error::other(
            "the pid now names a process started after the event (pid reused): not signalled",
        ));
    }
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal(2) on our pidfd with no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory effects.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    }
}

/// Whether a process whose /proc start time is `start_ticks` (rounded down to a tick) existed
/// at `event_ktime` (boot-clock ns).
fn started_before(start_ticks: u64, hz: u64, event_ktime: u64) -> bool {
    let start_ns = u128::from(start_ticks) * 1_000_000_000 / u128::from(hz.max(1));
    start_ns <= u128::from(event_ktime)
}

#[cfg(test)]
mod signal_tests {
    use super::*;

    fn boot_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime into a local timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    #[test]
    fn start_time_against_event_time() {
        assert!(started_before(100, 100, 1_000_000_000));
        assert!(!started_before(101, 100, 1_000_000_000));
        // No overflow at the extremes (a zero clock rate counts as 1 Hz).
        assert!(!started_before(u64::MAX, 0, u64::MAX));
    }

    /// An event from before a process existed (its pid was reused since) never signals it;
    /// an event from its own lifetime does.
    #[test]
    fn a_reused_pid_is_not_killed() {
        let before = boot_ns();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        signal_from_user(pid, before, vigil_bpf::abi::VIGIL_ACT_SIGKILL, 0);
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            child.try_wait().unwrap().is_none(),
            "a bystander was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        signal_from_user(pid, boot_ns(), vigil_bpf::abi::VIGIL_ACT_SIGKILL, 0);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
