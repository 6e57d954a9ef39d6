//! Kernel records and scanned processes to [`ProcessInfo`].

use vigil_bpf::abi::*;
use vigil_bpf::records::{ExecRecord, decode_path};
use vigil_process::container::docker_of_id;
use vigil_process::exec_id::{ExecIds, ProcessKey};
use vigil_process::model::{
    BinaryLocation, Credentials, ExecFile, NamespaceIds, PrivilegeChanges, ProcessInfo,
};
use vigil_process::procfs::ScannedProcess;
use vigil_process::text::{split_nul, tetragon_arguments, valid_utf8};

pub fn key(k: &vigil_proc_key) -> ProcessKey {
    ProcessKey::new(k.pid, k.ktime)
}

pub(crate) fn creds(c: &vigil_creds) -> Credentials {
    Credentials {
        uid: c.uid,
        gid: c.gid,
        euid: c.euid,
        egid: c.egid,
        suid: c.suid,
        sgid: c.sgid,
        fsuid: c.fsuid,
        fsgid: c.fsgid,
        securebits: c.securebits,
        cap_permitted: c.cap_permitted,
        cap_effective: c.cap_effective,
        cap_inheritable: c.cap_inheritable,
        user_ns_level: c.user_ns_level,
        user_ns_owner: c.user_ns_owner,
        user_ns_group: c.user_ns_group,
    }
}

fn namespaces(n: &vigil_namespaces) -> NamespaceIds {
    NamespaceIds {
        uts: n.uts,
        ipc: n.ipc,
        mnt: n.mnt,
        pid: n.pid,
        pid_for_children: n.pid_for_children,
        net: n.net,
        time: n.time,
        time_for_children: n.time_for_children,
        cgroup: n.cgroup,
        user: n.user,
    }
}

/// Flags shared by exec and scan: Tetragon's cwd flag.
fn cwd_flags(cwd: &str, flags: &mut Vec<&'static str>) {
    if cwd == "/" {
        flags.push("rootcwd");
    }
}

pub fn exec_info(ids: &ExecIds, rec: &ExecRecord, parent_exec_id: String) -> ProcessInfo {
    let m = &rec.msg;
    let f = m.flags;
    let deleted = f & VIGIL_EXEC_PATH_DELETED != 0;
    let mut binary = valid_utf8(&decode_path(&rec.path));
    if deleted {
        // As d_path and /proc/<pid>/exe show an unlinked file.
        binary.push_str(" (deleted)");
    }
    // A throttled exec carries no cwd (decoding nothing would read as "/").
    let cwd = if f & VIGIL_EXEC_THROTTLED != 0 {
        String::new()
    } else {
        valid_utf8(&decode_path(&rec.cwd))
    };
    let argv = split_nul(&rec.args);
    let mut flags = vec!["execve"];
    cwd_flags(&cwd, &mut flags);
    for (bit, name) in [
        (VIGIL_EXEC_AFTER_CLONE, "clone"),
        (VIGIL_EXEC_TRUNC_PATH, "truncFilename"),
        (VIGIL_EXEC_TRUNC_ARGS, "truncArgs"),
        (VIGIL_EXEC_ERR_PATH, "errorFilename"),
        (VIGIL_EXEC_ERR_ARGS, "errorArgs"),
        (VIGIL_EXEC_ERR_CWD, "errorCWD"),
        (VIGIL_EXEC_TRUNC_CWD, "truncCWD"),
        (VIGIL_EXEC_ERR_ENV, "errorEnvs"),
    ] {
        if f & bit != 0 {
            flags.push(name);
        }
    }
    let is_memfd = binary.starts_with("/memfd:") && f & VIGIL_EXEC_PATH_DETACHED != 0;
    let location = if is_memfd {
        BinaryLocation::Memfd
    } else if binary.starts_with("/dev/shm/") {
        BinaryLocation::DevShm
    } else if deleted || m.file_nlink == 0 {
        BinaryLocation::Unlinked
    } else {
        BinaryLocation::Ordinary
    };
    let cgroup_name = valid_utf8(&rec.cgroup);
    let environment = split_nul(&rec.env)
        .iter()
        .map(|kv| {
            let kv = valid_utf8(kv);
            match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            }
        })
        .collect();
    let process = key(&m.process);
    ProcessInfo {
        key: process,
        exec_id: ids.exec_id(process),
        parent_key: Some(key(&m.parent)),
        parent_exec_id,
        tid: m.tid,
        nspid: m.nspid,
        auid: m.auid,
        arguments: tetragon_arguments(&argv),
        argv,
        binary,
        cwd,
        flags,
        creds: creds(&m.creds),
        namespaces: namespaces(&m.ns),
        file: Some(ExecFile {
            inode: m.file_ino,
            links: m.file_nlink,
            uid: m.file_uid,
            gid: m.file_gid,
            mode: u32::from(m.file_mode),
            privileges: PrivilegeChanges {
                setuid: m.privs & VIGIL_PRIV_SETUID != 0,
                setgid: m.privs & VIGIL_PRIV_SETGID != 0,
                file_cap: m.privs & VIGIL_PRIV_FILE_CAP != 0,
            },
            location,
        }),
        // A leaf name is anyone's choice: the pipeline takes the id from the full path, where
        // a runtime's layout puts it (vigil_process::container).
        container_id: String::new(),
        docker: String::new(),
        in_init_tree: false,
        cgroup_name,
        cgroup_id: m.cgroup_id,
        environment,
    }
}

/// A process created by fork that has not executed anything: it runs its parent's image.
pub fn clone_info(
    ids: &ExecIds,
    msg: &vigil_clone_msg,
    parent: Option<&ProcessInfo>,
) -> ProcessInfo {
    let process = key(&msg.process);
    let mut info = parent.cloned().unwrap_or_default();
    info.key = process;
    info.exec_id = ids.exec_id(process);
    info.parent_key = Some(parent.map_or(key(&msg.parent), |p| p.key));
    info.parent_exec_id =
        parent.map_or_else(|| ids.exec_id(key(&msg.parent)), |p| p.exec_id.clone());
    info.tid = msg.tid;
    info.flags = vec!["clone"];
    if parent.is_none() {
        info.flags.push("unknown");
    }
    // Inherited from the parent, as Tetragon marks a clone of an init-tree process.
    if info.in_init_tree {
        info.flags.push("inInitTree");
    }
    if let Some(file) = &mut info.file {
        file.privileges = PrivilegeChanges::default();
    }
    info
}

/// A process seen by the start-up scan.
pub fn scanned_info(ids: &ExecIds, p: &ScannedProcess, parent: Option<ProcessKey>) -> ProcessInfo {
    let process = ProcessKey::new(p.pid, p.start_ktime);
    let mut flags = vec!["procFS"];
    cwd_flags(&p.cwd, &mut flags);
    ProcessInfo {
        key: process,
        exec_id: ids.exec_id(process),
        parent_key: parent,
        parent_exec_id: parent.map(|k| ids.exec_id(k)).unwrap_or_default(),
        tid: p.pid,
        nspid: p.nspid,
        auid: p.auid,
        binary: p.binary.clone(),
        arguments: tetragon_arguments(&p.argv),
        argv: p.argv.clone(),
        cwd: p.cwd.clone(),
        flags,
        creds: p.creds.clone(),
        namespaces: p.namespaces.clone(),
        file: None,
        docker: docker_of_id(&p.container_id),
        container_id: p.container_id.clone(),
        in_init_tree: false,
        cgroup_name: p.cgroup_leaf.clone(),
        cgroup_id: 0,
        environment: Vec::new(),
    }
}

/// The process of a policy event as the kernel saw it: the thread that acted, and, when the
/// selector looked at capabilities or namespaces, what the task had when it matched in place
/// of what the process had at exec (so that `process.cap` / `process.ns` show the change a
/// matchCapabilityChanges or matchNamespaceChanges selector caught). One copy at most.
pub fn with_task_state(
    info: std::sync::Arc<ProcessInfo>,
    m: &vigil_syscall_msg,
) -> std::sync::Arc<ProcessInfo> {
    let flags = u32::from(m.flags);
    let task_state = flags & VIGIL_SYSMSG_TASK_STATE != 0;
    // The thread that acted (a worker thread, an io_uring io-wq worker), not the one the
    // image was recorded from; a tracked socket's owner keeps its own.
    let other_thread = m.tid != 0 && info.tid != m.tid && flags & VIGIL_SYSMSG_SOCK_OWNER == 0;
    if !task_state && !other_thread {
        return info;
    }
    let mut p = (*info).clone();
    if task_state {
        p.creds.cap_permitted = m.task_caps[VIGIL_CAPSET_PERMITTED as usize];
        p.creds.cap_effective = m.task_caps[VIGIL_CAPSET_EFFECTIVE as usize];
        p.creds.cap_inheritable = m.task_caps[VIGIL_CAPSET_INHERITABLE as usize];
        p.namespaces = namespaces(&m.task_ns);
    }
    if other_thread {
        p.tid = m.tid;
    }
    std::sync::Arc::new(p)
}

/// Post userStackTrace: the addresses the kernel captured, symbolised now through the
/// process's maps (empty when the process has exited already, as in Tetragon). Addresses are
/// shown with `--expose-stack-addresses` only: they defeat ASLR.
pub fn user_stack_trace(
    rec: &vigil_bpf::records::SyscallRecord,
    expose: bool,
) -> Vec<vigil_proto::tetragon::StackTraceEntry> {
    if rec.user_stack.is_empty() {
        return Vec::new();
    }
    vigil_runtime::symbolize::symbolize("/proc", rec.msg.process.pid, &rec.user_stack)
        .into_iter()
        .map(|f| vigil_proto::tetragon::StackTraceEntry {
            address: if expose { f.address } else { 0 },
            offset: f.offset,
            symbol: f.symbol,
            module: f.module,
        })
        .collect()
}

/// Post kernelStackTrace: kernel return addresses as symbol + offset (kallsyms); the
/// addresses themselves only with `--expose-stack-addresses` (they reveal the kernel's KASLR
/// offset).
pub fn kernel_stack_trace(
    rec: &vigil_bpf::records::SyscallRecord,
    expose: bool,
) -> Vec<vigil_proto::tetragon::StackTraceEntry> {
    if rec.kernel_stack.is_empty() {
        return Vec::new();
    }
    vigil_runtime::ksyms::symbolize(&rec.kernel_stack)
        .into_iter()
        .map(|f| vigil_proto::tetragon::StackTraceEntry {
            address: if expose { f.address } else { 0 },
            offset: f.offset,
            symbol: f.symbol,
            module: f.module,
        })
        .collect()
}

/// The kernel's layout of a scanned process's namespaces.
pub fn kernel_namespaces(n: &NamespaceIds) -> vigil_namespaces {
    vigil_namespaces {
        uts: n.uts,
        ipc: n.ipc,
        mnt: n.mnt,
        pid: n.pid,
        pid_for_children: n.pid_for_children,
        net: n.net,
        time: n.time,
        time_for_children: n.time_for_children,
        cgroup: n.cgroup,
        user: n.user,
    }
}
