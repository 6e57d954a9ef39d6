//! vigil's eBPF programs and their loader.
//!
//! The C programs under `bpf/` are compiled by `build.rs` with clang (CO-RE) and embedded in
//! the binary, so users need no compiler at run time. `bpf/include/vigil_abi.h` is the single
//! definition of every structure crossing the kernel boundary; [`abi`] is its bindgen view.
//!
//! Layers, each in its own module:
//! - [`preflight`]: checks that name what the machine lacks before anything is loaded,
//! - [`lifecycle`]: loads and attaches the process-lifecycle sensor,
//! - [`ringbuf`]: the reader thread that drains the kernel ring buffer,
//! - [`records`]: pure decoding of the raw messages into typed records.

pub mod abi;
pub mod cgroup_rate;
pub mod cgroup_sock;
pub mod hooks;
pub mod kfuncs;
pub mod lifecycle;
pub mod pin;
mod policy_object;
pub mod preflight;
pub mod records;
pub mod ringbuf;
pub mod syscalls;

pub use policy_object::{FileSet, ScopeSet};

/// The lifecycle object file, as compiled by build.rs.
pub(crate) static LIFECYCLE_OBJECT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/lifecycle.bpf.o"));

/// The syscall-hook policy runtime object.
pub(crate) static SYSCALLS_OBJECT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/syscalls.bpf.o"));

/// The tracepoint / raw tracepoint / uprobe / usdt policy runtime object.
pub(crate) static HOOKS_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hooks.bpf.o"));
/// The kernel-function / LSM hook object (one load per hook).
pub(crate) static KFUNCS_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kfuncs.bpf.o"));
/// The cgroup sock_addr fallback for network enforcement (one load per hook).
pub(crate) static SOCKADDR_CGROUP_OBJECT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sockaddr_cgroup.bpf.o"));
/// The same with the network-object readers (hooks with sock/socket/skb/sockaddr arguments).
pub(crate) static KFUNCS_NET_OBJECT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kfuncs_net.bpf.o"));
