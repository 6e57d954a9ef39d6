//! [`ProcessInfo`] to Tetragon's protobuf messages (which serialise to Tetragon's JSON).

use std::collections::HashMap;

use vigil_process::clock::BootClock;
use vigil_process::model::{BinaryLocation, ProcessInfo};
use vigil_proto::pbjson_types::{Int32Value, UInt32Value};
use vigil_proto::tetragon;
use vigil_proto::wkt::Timestamp;

/// Which optional parts of `Process` to fill, from the agent flags.
#[derive(Debug, Clone, Default)]
pub struct EncodeOptions {
    pub process_cred: bool,
    pub process_ns: bool,
    pub environment: bool,
    /// `--expose-stack-addresses`: stack frames keep their address.
    pub expose_stack_addresses: bool,
    /// uid -> name, when `--username-metadata unix`.
    pub usernames: Option<HashMap<u32, String>>,
    /// Namespace inums of pid 1, to tell host namespaces from others.
    pub host_ns: vigil_process::model::NamespaceIds,
}

pub fn timestamp(clock: &BootClock, ktime: u64) -> Timestamp {
    let (s, n) = clock.to_unix(ktime);
    Timestamp::new(s, n)
}

fn u32v(v: u32) -> Option<UInt32Value> {
    Some(v.into())
}

/// Capability bit set to the list of `CapabilitiesType` values (enum value = bit number).
fn cap_list(bits: u64) -> Vec<i32> {
    (0..64).filter(|b| bits & (1u64 << b) != 0).collect()
}

fn capabilities(c: &vigil_process::model::Credentials) -> tetragon::Capabilities {
    tetragon::Capabilities {
        permitted: cap_list(c.cap_permitted),
        effective: cap_list(c.cap_effective),
        inheritable: cap_list(c.cap_inheritable),
    }
}

fn namespace(inum: u32, host: u32) -> Option<tetragon::Namespace> {
    Some(tetragon::Namespace {
        inum,
        is_host: inum != 0 && inum == host,
    })
}

/// Tetragon's `UserNamespace`.
pub fn user_namespace(
    level: u32,
    uid: u32,
    gid: u32,
    inum: u32,
    host: u32,
) -> tetragon::UserNamespace {
    tetragon::UserNamespace {
        level: Some(Int32Value::from(level as i32)),
        uid: u32v(uid),
        gid: u32v(gid),
        ns: namespace(inum, host),
    }
}

/// Tetragon's `ProcessCredentials`; `user_ns` is the user namespace's inode number, `host`
/// the host's.
pub fn credentials(
    c: &vigil_process::model::Credentials,
    user_ns: u32,
    host: u32,
) -> tetragon::ProcessCredentials {
    tetragon::ProcessCredentials {
        uid: u32v(c.uid),
        gid: u32v(c.gid),
        euid: u32v(c.euid),
        egid: u32v(c.egid),
        suid: u32v(c.suid),
        sgid: u32v(c.sgid),
        fsuid: u32v(c.fsuid),
        fsgid: u32v(c.fsgid),
        securebits: (0..8)
            .filter(|b| c.securebits & (1 << b) != 0)
            .map(|b| 1 << b)
            .collect(),
        caps: Some(capabilities(c)),
        user_ns: Some(user_namespace(
            c.user_ns_level,
            c.user_ns_owner,
            c.user_ns_group,
            user_ns,
            host,
        )),
    }
}

pub fn process(
    info: &ProcessInfo,
    clock: &BootClock,
    opts: &EncodeOptions,
    exec: bool,
) -> tetragon::Process {
    let c = &info.creds;
    let mut p = tetragon::Process {
        exec_id: info.exec_id.clone(),
        pid: u32v(info.key.pid),
        uid: u32v(c.euid),
        cwd: info.cwd.clone(),
        binary: info.binary.clone(),
        arguments: info.arguments.clone(),
        flags: info.flags_string(),
        start_time: Some(timestamp(clock, info.key.ktime)),
        auid: u32v(info.auid),
        docker: info.docker.clone(),
        parent_exec_id: info.parent_exec_id.clone(),
        tid: u32v(info.tid),
        argv: info.argv.clone(),
        in_init_tree: Some(info.in_init_tree.into()),
        ..Default::default()
    };
    if let Some(file) = &info.file {
        p.binary_location = match file.location {
            BinaryLocation::Ordinary => tetragon::BinaryLocation::Unspecified,
            BinaryLocation::Memfd => tetragon::BinaryLocation::Memfd,
            BinaryLocation::DevShm => tetragon::BinaryLocation::DevShm,
            BinaryLocation::Unlinked => tetragon::BinaryLocation::Unlinked,
        } as i32;
    }
    if opts.process_cred {
        p.cap = Some(capabilities(c));
        p.process_credentials = Some(credentials(c, info.namespaces.user, opts.host_ns.user));
        if exec {
            p.binary_properties = binary_properties(info);
        }
    }
    if opts.process_ns {
        let (n, h) = (&info.namespaces, &opts.host_ns);
        p.ns = Some(tetragon::Namespaces {
            uts: namespace(n.uts, h.uts),
            ipc: namespace(n.ipc, h.ipc),
            mnt: namespace(n.mnt, h.mnt),
            pid: namespace(n.pid, h.pid),
            pid_for_children: namespace(n.pid_for_children, h.pid_for_children),
            net: namespace(n.net, h.net),
            time: namespace(n.time, h.time),
            time_for_children: namespace(n.time_for_children, h.time_for_children),
            cgroup: namespace(n.cgroup, h.cgroup),
            user: namespace(n.user, h.user),
        });
    }
    if let Some(names) = &opts.usernames {
        // Only host processes: a uid inside a user namespace names someone else.
        if info.namespaces.user == opts.host_ns.user
            && let Some(name) = names.get(&c.euid)
        {
            p.user = Some(tetragon::UserRecord { name: name.clone() });
        }
    }
    if opts.environment && exec {
        p.environment_variables = info
            .environment
            .iter()
            .map(|(k, v)| tetragon::EnvVar {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
    }
    p
}

fn binary_properties(info: &ProcessInfo) -> Option<tetragon::BinaryProperties> {
    let file = info.file.as_ref()?;
    let pr = file.privileges;
    let mut props = tetragon::BinaryProperties::default();
    if pr.setuid {
        props.setuid = u32v(file.uid);
        props
            .privileges_changed
            .push(tetragon::ProcessPrivilegesChanged::PrivilegesRaisedExecFileSetuid as i32);
    }
    if pr.setgid {
        props.setgid = u32v(file.gid);
        props
            .privileges_changed
            .push(tetragon::ProcessPrivilegesChanged::PrivilegesRaisedExecFileSetgid as i32);
    }
    if pr.file_cap {
        props
            .privileges_changed
            .push(tetragon::ProcessPrivilegesChanged::PrivilegesRaisedExecFileCap as i32);
    }
    if file.links == 0 {
        props.file = Some(tetragon::FileProperties {
            inode: Some(tetragon::InodeProperties {
                number: file.inode,
                links: u32v(file.links),
            }),
            path: info.binary.clone(),
        });
    }
    (pr.any() || props.file.is_some()).then_some(props)
}

/// Signal names for `process_exit.signal`.
pub fn signal_name(sig: u32) -> String {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match NAMES.get(sig as usize) {
        Some(n) => (*n).to_string(),
        None => format!("SIGRT{}", sig),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(0), "");
    }

    #[test]
    fn capability_bits_are_enum_values() {
        assert_eq!(cap_list(0b101), vec![0, 2]);
        assert_eq!(cap_list(1 << 21), vec![21]);
    }
}
