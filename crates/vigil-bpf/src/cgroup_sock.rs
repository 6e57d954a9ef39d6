//! The cgroup sock_addr fallback (`bpf/sockaddr_cgroup.bpf.c`): network enforcement
//! policies on `security_socket_connect` / `tcp_connect` / `security_socket_bind` where the
//! kernel has no kprobes, fentry or BPF LSM. One object per hook, sharing the lifecycle
//! sensor's maps like the other policy objects; its two programs (IPv4 and IPv6) are
//! attached to the root cgroup v2 through BPF links, so dropping the object detaches them.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use libbpf_rs::{Link, Object, ObjectBuilder};

use crate::kfuncs::KfuncHook;
use crate::lifecycle::LoadError;
use crate::syscalls::SharedMaps;

/// What the fallback needs to know of the hooked function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// Program name prefix: `vigil_connect` or `vigil_bind` (+ `4`/`6`).
    pub programs: &'static str,
    /// Argument 0 is a connected sock whose peer is the destination (tcp_connect).
    pub sock_peer: bool,
    /// Only sockets of this protocol reach the function (tcp_connect: IPPROTO_TCP).
    pub only_protocol: u32,
}

/// The operation behind a kernel function the fallback implements, or None.
pub fn operation(function: &str) -> Option<Operation> {
    Some(match function {
        "security_socket_connect" => Operation {
            programs: "vigil_connect",
            sock_peer: false,
            only_protocol: 0,
        },
        "tcp_connect" => Operation {
            programs: "vigil_connect",
            sock_peer: true,
            only_protocol: 6,
        },
        "security_socket_bind" => Operation {
            programs: "vigil_bind",
            sock_peer: false,
            only_protocol: 0,
        },
        _ => return None,
    })
}

/// The cgroup v2 hierarchy's root: `/sys/fs/cgroup` on unified systems,
/// `/sys/fs/cgroup/unified` on hybrid ones (from /proc/self/mounts).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(dir))
    })
}

/// Loads the fallback object of `hook` and attaches its programs to the root cgroup v2.
/// Returns the links (detached when dropped) and the object (counters, mode).
pub(crate) fn load_one(
    maps: &SharedMaps,
    hook: &KfuncHook,
    btf: Option<&Path>,
) -> Result<(Vec<Link>, Object), LoadError> {
    let op = operation(&hook.function).ok_or(LoadError::Missing(
        "a cgroup socket operation for this kernel function",
    ))?;
    let root = cgroup2_root().ok_or(LoadError::Missing("a cgroup v2 mount"))?;
    let mut builder = ObjectBuilder::default();
    if let Some(btf) = btf {
        builder.btf_custom_path(btf).map_err(LoadError::Open)?;
    }
    let mut open = builder
        .open_memory(crate::SOCKADDR_CGROUP_OBJECT)
        .map_err(LoadError::Open)?;
    for mut map in open.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if let Some((n, handle)) = maps.by_name(&name) {
            map.reuse_fd(handle.as_fd())
                .map_err(|source| LoadError::Map { map: n, source })?;
        } else if name.ends_with(".rodata") {
            // The only .rodata object is `struct cg_conf vigil_cg_conf`.
            let data = map
                .initial_value_mut()
                .ok_or(LoadError::Missing("sockaddr_cgroup .rodata"))?;
            if data.len() < 12 {
                return Err(LoadError::Missing("vigil_cg_conf in .rodata"));
            }
            data[..4].copy_from_slice(&hook.id.to_ne_bytes());
            data[4..8].copy_from_slice(&u32::from(op.sock_peer).to_ne_bytes());
            data[8..12].copy_from_slice(&op.only_protocol.to_ne_bytes());
        }
    }
    let wanted = [format!("{}4", op.programs), format!("{}6", op.programs)];
    for mut prog in open.progs_mut() {
        prog.set_autoattach(false);
        let keep = wanted.iter().any(|w| prog.name() == w.as_str());
        prog.set_autoload(keep);
    }
    let object = open.load().map_err(LoadError::Load)?;
    let dir = std::fs::File::open(&root).map_err(|e| LoadError::Attach {
        program: format!("cgroup {}", root.display()),
        source: libbpf_rs::Error::from(e),
    })?;
    let mut links = Vec::new();
    for prog in object.progs_mut() {
        if !wanted.iter().any(|w| prog.name() == w.as_str()) {
            continue;
        }
        use std::os::fd::AsRawFd;
        let link = prog
            .attach_cgroup(dir.as_raw_fd())
            .map_err(|source| LoadError::Attach {
                program: format!(
                    "{} on cgroup {} for {}",
                    prog.name().to_string_lossy(),
                    root.display(),
                    hook.function
                ),
                source,
            })?;
        links.push(link);
    }
    Ok((links, object))
}
