//! Selector parts about the calling process (matchPIDs, matchNamespaces) and `char_buf`
//! argument sizes: Plan values -> kernel table fields.

use vigil_bpf::abi::*;
use vigil_policy::types::NamespaceKind;

use super::{Unsupported, in_or_not, unsupported};

/// The syscall argument that holds a `char_buf`'s byte count (`sizeArgIndex`, 1-based in
/// the YAML, as Tetragon). The engine reads up to VIGIL_ARG_STR_MAX - 1 bytes of it.
pub(crate) fn char_buf_size(
    path: &str,
    a: &vigil_policy::compile::ArgReader,
) -> Result<u8, Unsupported> {
    match a.size_arg {
        Some(i) if i <= 5 && i != a.index => Ok(i as u8),
        Some(i) => Err(unsupported(
            path,
            format!(
                "sizeArgIndex {} names no other system call argument (1 to 6)",
                i + 1
            ),
        )),
        None => Err(unsupported(
            path,
            format!(
                "{} without sizeArgIndex is not supported by this runtime yet (the engine \
                 needs the argument that holds the count)",
                a.arg_type
            ),
        )),
    }
}

/// Adds one matchPIDs entry to a selector. Entries of a selector all hold (AND), as in
/// Tetragon; the kernel keeps one pid set, so a second entry is accepted when it means a
/// union of NotIn sets (`NotIn a` and `NotIn b` = `NotIn a, b`) with the same options.
pub(crate) fn pids_filter(
    path: &str,
    sel: &mut vigil_selector_cfg,
    p: &vigil_policy::model::PidSelector,
) -> Result<(), Unsupported> {
    let op = in_or_not(path, p.operator)?;
    let mut flags = 0;
    if p.follow_forks {
        flags |= VIGIL_SEL_FOLLOW_FORKS;
    }
    if p.is_namespace_pid {
        flags |= VIGIL_SEL_NS_PID;
    }
    let mask = VIGIL_SEL_FOLLOW_FORKS | VIGIL_SEL_NS_PID;
    let mut pids: Vec<u32> = Vec::new();
    if sel.pid_op != VIGIL_OP_NONE {
        if sel.pid_op != VIGIL_OP_NOT_IN || op != VIGIL_OP_NOT_IN || sel.flags & mask != flags {
            return Err(unsupported(
                path,
                "several matchPIDs entries in one selector are supported only as NotIn \
                 entries with the same followForks and isNamespacePID",
            ));
        }
        pids.extend_from_slice(&sel.pids[..sel.npids as usize]);
    }
    for v in &p.values {
        if !pids.contains(v) {
            pids.push(*v);
        }
    }
    if pids.len() > VIGIL_MAX_PIDS as usize {
        return Err(unsupported(
            path,
            format!("more than {VIGIL_MAX_PIDS} matchPIDs values"),
        ));
    }
    sel.flags |= flags;
    sel.pid_op = op;
    sel.npids = pids.len() as u32;
    sel.pids[..pids.len()].copy_from_slice(&pids);
    Ok(())
}

/// The inode number of the host's namespace `kind`: pid 1's (`/proc/1/ns/<name>`), as
/// Tetragon resolves `host_ns`. Without ptrace access to pid 1 (no CAP_SYS_PTRACE over it)
/// the agent's own namespace is used: the agent runs in the host's namespaces.
pub fn read_host_namespace(kind: NamespaceKind) -> Result<u32, String> {
    let name = ns_proc_name(kind);
    let path = format!("/proc/1/ns/{name}");
    let link = match std::fs::read_link(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let own = format!("/proc/self/ns/{name}");
            std::fs::read_link(&own)
                .map_err(|e2| format!("cannot read {path} ({e}) nor {own} ({e2})"))?
        }
        other => other.map_err(|e| format!("cannot read {path}: {e}"))?,
    };
    let text = link.to_string_lossy();
    parse_ns_link(&text).ok_or_else(|| format!("{path} -> {text}: not a namespace link"))
}

/// The inode number of a namespace link's target, `pid:[4026531836]`.
pub fn parse_ns_link(text: &str) -> Option<u32> {
    text.split_once(":[")
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
}

/// The file name of a namespace in /proc/<pid>/ns.
pub fn ns_proc_name(kind: NamespaceKind) -> &'static str {
    match kind {
        NamespaceKind::Uts => "uts",
        NamespaceKind::Ipc => "ipc",
        NamespaceKind::Mnt => "mnt",
        NamespaceKind::Pid => "pid",
        NamespaceKind::PidForChildren => "pid_for_children",
        NamespaceKind::Net => "net",
        NamespaceKind::Time => "time",
        NamespaceKind::TimeForChildren => "time_for_children",
        NamespaceKind::Cgroup => "cgroup",
        NamespaceKind::User => "user",
    }
}

/// Adds one matchNamespaces entry: values are inode numbers or `host_ns` (pid 1's
/// namespace of that kind, resolved now by `host`).
pub(crate) fn namespaces_filter(
    path: &str,
    sel: &mut vigil_selector_cfg,
    n: &vigil_policy::model::NamespaceSelector,
    host: &dyn Fn(NamespaceKind) -> Result<u32, String>,
) -> Result<(), Unsupported> {
    let npath = format!("{path}.matchNamespaces");
    if sel.nns >= VIGIL_MAX_NS_FILTERS {
        return Err(unsupported(
            &npath,
            format!("more than {VIGIL_MAX_NS_FILTERS} matchNamespaces entries"),
        ));
    }
    if n.values.len() > VIGIL_MAX_NS_VALUES as usize {
        return Err(unsupported(
            &npath,
            format!("more than {VIGIL_MAX_NS_VALUES} values in a matchNamespaces entry"),
        ));
    }
    let kind = NamespaceKind::ALL
        .iter()
        .position(|k| *k == n.namespace)
        .expect("every kind is listed");
    let mut f = vigil_ns_filter {
        kind: kind as u8,
        op: in_or_not(&npath, n.operator)? as u8,
        nvalues: n.values.len() as u8,
        ..Default::default()
    };
    for (i, v) in n.values.iter().enumerate() {
        f.values[i] = if v.trim() == "host_ns" {
            host(n.namespace).map_err(|e| unsupported(&npath, format!("host_ns: {e}")))?
        } else {
            v.trim().parse().map_err(|_| {
                unsupported(
                    &npath,
                    format!("{v:?} is neither host_ns nor a namespace inode number"),
                )
            })?
        };
    }
    sel.ns[sel.nns as usize] = f;
    sel.nns += 1;
    Ok(())
}
