//! What vigil knows about one process image, independent of any wire format.

use crate::exec_id::ProcessKey;

/// Credentials at exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub suid: u32,
    pub sgid: u32,
    pub fsuid: u32,
    pub fsgid: u32,
    pub securebits: u32,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_inheritable: u64,
    pub user_ns_level: u32,
    pub user_ns_owner: u32,
    pub user_ns_group: u32,
}

/// Namespace inode numbers (0: unknown or absent on this kernel).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceIds {
    pub uts: u32,
    pub ipc: u32,
    pub mnt: u32,
    pub pid: u32,
    pub pid_for_children: u32,
    pub net: u32,
    pub time: u32,
    pub time_for_children: u32,
    pub cgroup: u32,
    pub user: u32,
}

/// Privilege raises at exec (Tetragon's `ProcessPrivilegesChanged`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrivilegeChanges {
    pub setuid: bool,
    pub setgid: bool,
    pub file_cap: bool,
}

impl PrivilegeChanges {
    pub fn any(&self) -> bool {
        self.setuid || self.setgid || self.file_cap
    }
}

/// Where the executed file lives, when that is itself a signal (vigil extension).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BinaryLocation {
    #[default]
    Ordinary,
    Memfd,
    DevShm,
    Unlinked,
}

/// The executed file, as seen at exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecFile {
    pub inode: u64,
    pub links: u32,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub privileges: PrivilegeChanges,
    pub location: BinaryLocation,
}

/// One process image: created by an exec, a fork (before any exec) or the start-up scan.
#[derive(Debug, Clone, Default)]
pub struct ProcessInfo {
    pub key: ProcessKey,
    pub exec_id: String,
    pub parent_key: Option<ProcessKey>,
    pub parent_exec_id: String,
    pub tid: u32,
    pub nspid: u32,
    pub auid: u32,
    pub binary: String,
    /// Lossless argv, argv[0] included.
    pub argv: Vec<Vec<u8>>,
    /// Tetragon's `arguments` string (argv[1..], lossy).
    pub arguments: String,
    pub cwd: String,
    /// Tetragon's space-separated flags (`execve`, `procFS`, `clone`, `truncArgs`...).
    pub flags: Vec<&'static str>,
    pub creds: Credentials,
    pub namespaces: NamespaceIds,
    pub file: Option<ExecFile>,
    pub cgroup_name: String,
    pub cgroup_id: u64,
    pub docker: String,
    /// The full container id from the cgroup path (empty on the host); `docker` is its prefix.
    pub container_id: String,
    /// Tetragon's `in_init_tree`: the container's PID 1 or a descendant of it (not a process
    /// entered from outside with `runc exec`/`kubectl exec`/`nsenter`).
    pub in_init_tree: bool,
    pub environment: Vec<(String, String)>,
}

impl ProcessInfo {
    pub fn flags_string(&self) -> String {
        self.flags.join(" ")
    }
}
