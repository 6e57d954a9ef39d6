//! Network objects of kernel-function hooks (sock, socket, sockaddr) and their operators,
//! evaluated in the kernel. Tests named `kfunc_*` run in the kernel-matrix guests (Debian
//! 6.1 / 6.12: fentry, fmod_ret); elsewhere `kernel_caps::require` makes them not
//! applicable. Expected values are written here by hand.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::kernel_caps;
use crate::kfuncs::wait_or_log;

/// The guest's /init leaves `lo` down: bring it up (a no-op where it is up already).
pub fn loopback_up() {
    // SAFETY: plain ioctls on a fresh socket with a zeroed, NUL-terminated ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr), 0);
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr),
            0,
            "lo up: {}",
            std::io::Error::last_os_error()
        );
        libc::close(fd);
    }
}

/// A listener on every IPv4 address of the machine (127.0.0.1 and 127.0.0.2 reach it).
pub fn listener() -> (TcpListener, u16) {
    loopback_up();
    let l = TcpListener::bind("0.0.0.0:0").expect("listen");
    let port = l.local_addr().unwrap().port();
    (l, port)
}

pub fn connect(addr: &str, port: u16) -> std::io::Result<TcpStream> {
    let to: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    TcpStream::connect_timeout(&to, Duration::from_secs(10))
}

/// `tcp_connect` with a DAddr CIDR reports the connection to an address inside it and not
/// the one outside; the sock_arg says what Tetragon's would.
#[test]
fn kfunc_tcp_connect_daddr_cidr_reports_only_matching_connections() {
    if !kernel_caps::require("fentry") {
        return;
    }
    let _g = serial();
    let (_l, port) = listener();
    let dir = scratch_dir("kfunc-tcp-connect-files");
    let yaml = format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: connect-cidr
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
        values: ["127.0.0.2/31"]
      - index: 0
        operator: "DPort"
        values: ["{port}"]
"#
    );
    let policy = write_policy(&dir, "connect-cidr", &yaml);
    let agent = Agent::start("kfunc-tcp-connect", &["--tracing-policy", &policy]);
    connect("127.0.0.1", port).expect("127.0.0.1 connects");
    // An IPv4-mapped address from an AF_INET6 socket is the IPv4 address it carries.
    connect("[::ffff:127.0.0.1]", port).expect("::ffff:127.0.0.1 connects");
    connect("127.0.0.2", port).expect("127.0.0.2 connects");
    connect("[::ffff:127.0.0.3]", port).expect("::ffff:127.0.0.3 connects");
    let daddr = |e: &Value| {
        e["args"][0]["sock_arg"]["daddr"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let events = wait_or_log(
        &agent,
        "the 127.0.0.2 and ::ffff:127.0.0.3 connections",
        |ev| {
            let mine = of_policy(ev, "process_kprobe", "connect-cidr");
            mine.iter().any(|e| daddr(e) == "127.0.0.2")
                && mine.iter().any(|e| daddr(e) == "::ffff:127.0.0.3")
        },
    );
    // The 127.0.0.1 connects happened first: had they matched, they would be posted already.
    agent.stop();
    let mine = of_policy(&events, "process_kprobe", "connect-cidr");
    assert!(
        mine.iter()
            .all(|e| daddr(e) == "127.0.0.2" || daddr(e) == "::ffff:127.0.0.3"),
        "only 127.0.0.2 and 127.0.0.3 are inside 127.0.0.2/31: {mine:?}"
    );
    let mapped = mine
        .iter()
        .find(|e| daddr(e) == "::ffff:127.0.0.3")
        .unwrap();
    assert_eq!(mapped["args"][0]["sock_arg"]["family"], "AF_INET6");
    let hit = *mine.iter().find(|e| daddr(e) == "127.0.0.2").unwrap();
    let sock = &hit["args"][0]["sock_arg"];
    assert_eq!(hit["function_name"], "tcp_connect");
    assert_eq!(pid_of(hit), u64::from(std::process::id()));
    assert_eq!(sock["family"], "AF_INET");
    assert_eq!(sock["type"], "SOCK_STREAM");
    assert_eq!(sock["protocol"], "IPPROTO_TCP");
    assert_eq!(sock["dport"], u64::from(port));
    // The source is the kernel's choice for loopback (lo's primary address, 127.0.0.1).
    assert!(
        sock["saddr"].as_str().unwrap_or("").starts_with("127."),
        "{sock}"
    );
    assert_eq!(sock["state"], "TCP_SYN_SENT");
    assert!(sock["sport"].as_u64().unwrap_or(0) > 0, "{sock}");
}

/// Override on `security_socket_connect` (fmod_ret) refuses the connect to the denied
/// address with the policy's errno; another address connects; the event says Override.
#[test]
fn kfunc_security_socket_connect_override_denies_one_address() {
    if !kernel_caps::require("fmod_ret") {
        return;
    }
    let _g = serial();
    let (_l, port) = listener();
    let dir = scratch_dir("kfunc-connect-deny-files");
    let yaml = format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: connect-deny
spec:
  kprobes:
  - call: "security_socket_connect"
    syscall: false
    args:
    - index: 0
      type: "socket"
    - index: 1
      type: "sockaddr"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Protocol"
        values: ["IPPROTO_TCP"]
      - index: 1
        operator: "Family"
        values: ["AF_INET"]
      - index: 1
        operator: "SAddr"
        values: ["127.0.0.2"]
      - index: 1
        operator: "SPort"
        values: ["{port}"]
      matchActions:
      - action: Override
        argError: -13
"#
    );
    let policy = write_policy(&dir, "connect-deny", &yaml);
    let agent = Agent::start("kfunc-connect-deny", &["--tracing-policy", &policy]);
    let err = connect("127.0.0.2", port).expect_err("the connect to 127.0.0.2 is refused");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    connect("127.0.0.1", port).expect("127.0.0.1 still connects");
    let me = u64::from(std::process::id());
    let events = wait_or_log(&agent, "the Override event", |ev| {
        of_policy(ev, "process_kprobe", "connect-deny")
            .iter()
            .any(|e| pid_of(e) == me)
    });
    let (_, log) = agent.stop();
    let mine = of_policy(&events, "process_kprobe", "connect-deny");
    assert_eq!(mine.len(), 1, "only the denied connect matches: {mine:?}");
    let hit = mine[0];
    assert_eq!(hit["action"], "KPROBE_ACTION_OVERRIDE");
    assert_eq!(hit["function_name"], "security_socket_connect");
    let sa = &hit["args"][1]["sockaddr_arg"];
    assert_eq!(sa["family"], "AF_INET");
    assert_eq!(sa["addr"], "127.0.0.2");
    assert_eq!(sa["port"], u64::from(port));
    assert_eq!(hit["args"][0]["sock_arg"]["protocol"], "IPPROTO_TCP");
    assert!(
        log.lines()
            .any(|l| l.contains("kernel hook attached") && l.contains("fmod_ret")),
        "Override on a security_* function attaches by fmod_ret:\n{log}"
    );
}
