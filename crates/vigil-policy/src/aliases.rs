//! Syscall aliases a policy leaves open: families of system calls that reach the same kernel
//! operation, so that a policy hooking `openat` alone is passed by a process that calls
//! `openat2` (or `open`, `creat`, ...) instead. `vigil tracingpolicy validate` and `explain`
//! print one warning per partly hooked family; a warning never changes the exit status.
//!
//! Syscall hooks also miss io_uring: a request such as IORING_OP_OPENAT runs the kernel
//! operation without the syscall, so where a family has io_uring opcodes the warning names
//! them too. Only kernel-function and LSM hooks (e.g. `security_file_open`) see both.
//!
//! Names are x86_64 syscall names; with a kernel to ask (`validate` without `--no-kernel`),
//! members that kernel lacks (e.g. `fchmodat2` before 6.6, `open` on arm64) are left out.

use std::fmt;

use crate::TracingPolicy;
use crate::kernel::{Answer, KernelInfo, syscall_name};
use crate::types::ListType;
use crate::yaml::Pos;

/// System calls that perform the same kernel operation.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Short name for the warning, e.g. `open`.
    pub name: &'static str,
    pub members: &'static [&'static str],
    /// io_uring opcodes that perform the operation without any of the members.
    pub io_uring: &'static [&'static str],
    /// A hook that sees the whole family (and io_uring), where the kernel has it.
    pub covered_by: &'static str,
}

const fn family(
    name: &'static str,
    members: &'static [&'static str],
    io_uring: &'static [&'static str],
    covered_by: &'static str,
) -> Family {
    Family {
        name,
        members,
        io_uring,
        covered_by,
    }
}

/// The well-known families. Families are disjoint: a syscall belongs to one at most, so one
/// hooked call yields one warning.
pub const FAMILIES: &[Family] = &[
    // All of them end in do_sys_openat2 -> path lookup -> security_file_open: open and creat
    // are openat(AT_FDCWD, ..) (creat adds O_CREAT|O_TRUNC), openat2 takes its flags in a
    // struct, open_by_handle_at opens by file handle instead of by path.
    family(
        "open",
        &["open", "openat", "openat2", "creat", "open_by_handle_at"],
        &["IORING_OP_OPENAT", "IORING_OP_OPENAT2"],
        "kernel function security_file_open",
    ),
    // Both run do_execveat_common; execveat also executes an fd (AT_EMPTY_PATH, e.g. a
    // memfd), so it is the usual way around an execve-only policy.
    family(
        "exec",
        &["execve", "execveat"],
        &[],
        "tracepoint sched:sched_process_exec",
    ),
    // A destination is set by connect, or per datagram by sendto/sendmsg/sendmmsg with an
    // address on an unconnected (UDP) socket: a connect-only policy misses UDP peers.
    family(
        "connect",
        &["connect", "sendto", "sendmsg", "sendmmsg"],
        &[
            "IORING_OP_CONNECT",
            "IORING_OP_SEND",
            "IORING_OP_SENDMSG",
            "IORING_OP_SEND_ZC",
            "IORING_OP_SENDMSG_ZC",
        ],
        "kernel function security_socket_connect / security_socket_sendmsg",
    ),
    // accept is accept4 with flags 0 (both __sys_accept4).
    family(
        "accept",
        &["accept", "accept4"],
        &["IORING_OP_ACCEPT"],
        "kernel function security_socket_accept",
    ),
    // One receive path (sock_recvmsg) behind three entry points.
    family(
        "recv",
        &["recvfrom", "recvmsg", "recvmmsg"],
        &["IORING_OP_RECV", "IORING_OP_RECVMSG"],
        "kernel function security_socket_recvmsg",
    ),
    // rmdir is unlinkat(AT_REMOVEDIR); unlink is unlinkat(AT_FDCWD, .., 0).
    family(
        "unlink",
        &["unlink", "unlinkat", "rmdir"],
        &["IORING_OP_UNLINKAT"],
        "kernel functions security_path_unlink / security_path_rmdir",
    ),
    // All do_renameat2; renameat2 adds RENAME_EXCHANGE/NOREPLACE.
    family(
        "rename",
        &["rename", "renameat", "renameat2"],
        &["IORING_OP_RENAMEAT"],
        "kernel function security_path_rename",
    ),
    family(
        "mkdir",
        &["mkdir", "mkdirat"],
        &["IORING_OP_MKDIRAT"],
        "kernel function security_path_mkdir",
    ),
    // mknod also creates FIFOs, sockets and device nodes.
    family(
        "mknod",
        &["mknod", "mknodat"],
        &[],
        "kernel function security_path_mknod",
    ),
    family(
        "link",
        &["link", "linkat"],
        &["IORING_OP_LINKAT"],
        "kernel function security_path_link",
    ),
    family(
        "symlink",
        &["symlink", "symlinkat"],
        &["IORING_OP_SYMLINKAT"],
        "kernel function security_path_symlink",
    ),
    // By path, by fd, relative to a directory fd, and with flags (fchmodat2, Linux 6.6):
    // all chmod_common.
    family(
        "chmod",
        &["chmod", "fchmod", "fchmodat", "fchmodat2"],
        &[],
        "kernel function security_path_chmod",
    ),
    // chown_common behind four entry points (lchown: do not follow the last symlink).
    family(
        "chown",
        &["chown", "fchown", "lchown", "fchownat"],
        &[],
        "kernel function security_path_chown",
    ),
    // The new mount API attaches a mount with move_mount, after fsmount (a new
    // superblock) or open_tree(OPEN_TREE_CLONE) (a bind mount): mount(2) never runs.
    family(
        "mount",
        &["mount", "fsmount", "move_mount", "open_tree"],
        &[],
        "kernel functions security_sb_mount / security_move_mount",
    ),
    // Each changes the real/effective/saved (or filesystem) uid: __sys_setuid is one way.
    family(
        "setuid",
        &["setuid", "setreuid", "setresuid", "setfsuid"],
        &[],
        "kernel function commit_creds",
    ),
    family(
        "setgid",
        &["setgid", "setregid", "setresgid", "setfsgid"],
        &[],
        "kernel function commit_creds",
    ),
    // Every way to send a signal to another task: to a process, a thread, a pidfd, or with
    // a siginfo (rt_sigqueueinfo, rt_tgsigqueueinfo).
    family(
        "kill",
        &[
            "kill",
            "tkill",
            "tgkill",
            "pidfd_send_signal",
            "rt_sigqueueinfo",
            "rt_tgsigqueueinfo",
        ],
        &[],
        "kernel function security_task_kill",
    ),
    // Reading or writing another process's memory: PTRACE_PEEK/POKE or process_vm_*,
    // under the same PTRACE_MODE_ATTACH check.
    family(
        "ptrace",
        &["ptrace", "process_vm_readv", "process_vm_writev"],
        &[],
        "kernel function security_ptrace_access_check",
    ),
    family(
        "truncate",
        &["truncate", "ftruncate"],
        &["IORING_OP_FTRUNCATE"],
        "kernel function security_path_truncate",
    ),
    // vfs_write / vfs_writev / vfs_iter_write, at the file position or at an offset.
    family(
        "write",
        &["write", "pwrite64", "writev", "pwritev", "pwritev2"],
        &[
            "IORING_OP_WRITE",
            "IORING_OP_WRITEV",
            "IORING_OP_WRITE_FIXED",
        ],
        "kernel function vfs_write / security_file_permission",
    ),
    family(
        "read",
        &["read", "pread64", "readv", "preadv", "preadv2"],
        &["IORING_OP_READ", "IORING_OP_READV", "IORING_OP_READ_FIXED"],
        "kernel function vfs_read / security_file_permission",
    ),
    // Executable memory comes from mmap(PROT_EXEC) or later from mprotect/pkey_mprotect
    // (W^X policies must watch all three).
    family(
        "mprotect",
        &["mmap", "mprotect", "pkey_mprotect"],
        &[],
        "kernel functions security_mmap_file / security_file_mprotect",
    ),
    // New processes: fork and vfork are clone with fixed flags; clone3 takes a struct
    // (seccomp filters on clone's flags do not see it).
    family(
        "clone",
        &["fork", "vfork", "clone", "clone3"],
        &[],
        "tracepoint sched:sched_process_fork",
    ),
    // A module from memory or from an fd: both load_module.
    family(
        "module",
        &["init_module", "finit_module"],
        &[],
        "kernel function security_kernel_load_data / security_kernel_read_file",
    ),
    // File timestamps (e.g. to hide a change): all do_utimes.
    family(
        "utimes",
        &["utime", "utimes", "utimensat", "futimesat"],
        &[],
        "kernel function security_inode_setattr",
    ),
    family(
        "setxattr",
        &["setxattr", "lsetxattr", "fsetxattr", "setxattrat"],
        &["IORING_OP_SETXATTR", "IORING_OP_FSETXATTR"],
        "kernel function security_inode_setxattr",
    ),
    family(
        "removexattr",
        &[
            "removexattr",
            "lremovexattr",
            "fremovexattr",
            "removexattrat",
        ],
        &[],
        "kernel function security_inode_removexattr",
    ),
];

/// One partly hooked family of one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasWarning {
    pub file: String,
    pub pos: Pos,
    /// The YAML path of the first hook that hooks the family, e.g. `spec.kprobes[0].call`.
    pub path: String,
    pub family: &'static str,
    pub hooked: Vec<&'static str>,
    pub missing: Vec<&'static str>,
    pub io_uring: &'static [&'static str],
    pub covered_by: &'static str,
}

impl fmt::Display for AliasWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: warning: hooks {} but not {}: each is another way to the same {} \
             operation",
            self.file,
            self.pos,
            self.path,
            self.hooked.join(", "),
            self.missing.join(", "),
            self.family,
        )?;
        if !self.io_uring.is_empty() {
            write!(
                f,
                "; io_uring ({}) performs it without any system call, so syscall hooks \
                 never see it (`vigil agent --io-uring`)",
                self.io_uring.join(", ")
            )?;
        }
        write!(f, "; a hook on {} sees them all", self.covered_by)
    }
}

/// The system calls one `kprobes` entry hooks, or `None` for every system call
/// (`generated_syscalls`). Entries that are not syscall hooks hook none.
fn hooked_syscalls<'a>(
    policy: &'a TracingPolicy,
    call: &'a str,
    syscall: bool,
) -> Option<Vec<&'a str>> {
    let Some(name) = call.strip_prefix("list:") else {
        return Some(if syscall {
            vec![syscall_name(call)]
        } else {
            Vec::new()
        });
    };
    let Some(list) = policy.spec.lists.iter().find(|l| l.name == name) else {
        return Some(Vec::new());
    };
    match list.list_type {
        Some(ListType::Syscalls) => Some(list.values.iter().map(|v| syscall_name(v)).collect()),
        Some(ListType::GeneratedSyscalls) => None,
        Some(ListType::GeneratedFtrace) => Some(Vec::new()),
        None if syscall => Some(list.values.iter().map(|v| syscall_name(v)).collect()),
        None => Some(Vec::new()),
    }
}

/// One warning per family the policy's syscall hooks (`spec.kprobes`, `syscall: true`,
/// directly or through `list:`) cover in part, ordered by the first hook that names the
/// family. With `kernel`, members that kernel does not have are not asked for.
pub fn warnings(policy: &TracingPolicy, kernel: Option<&dyn KernelInfo>) -> Vec<AliasWarning> {
    // Per family: the first hook index naming it and the members hooked anywhere.
    let mut seen: Vec<Option<(usize, Vec<&'static str>)>> = vec![None; FAMILIES.len()];
    for (i, k) in policy.spec.kprobes.iter().enumerate() {
        let Some(calls) = hooked_syscalls(policy, &k.call, k.syscall) else {
            // Every system call is hooked: no family is open.
            return Vec::new();
        };
        for call in calls {
            for (f, fam) in FAMILIES.iter().enumerate() {
                if let Some(member) = fam.members.iter().find(|m| **m == call) {
                    let entry = seen[f].get_or_insert((i, Vec::new()));
                    if !entry.1.contains(member) {
                        entry.1.push(member);
                    }
                }
            }
        }
    }
    let exists = |name: &str| kernel.is_none_or(|k| k.syscall(name) != Answer::No);
    let mut out: Vec<(usize, usize, AliasWarning)> = Vec::new();
    for (f, entry) in seen.into_iter().enumerate() {
        let Some((hook, hooked)) = entry else {
            continue;
        };
        let fam = &FAMILIES[f];
        let missing: Vec<&'static str> = fam
            .members
            .iter()
            .copied()
            .filter(|m| !hooked.contains(m) && exists(m))
            .collect();
        if missing.is_empty() {
            continue;
        }
        // Family order, not the policy's, so the text reads the same for any ordering.
        let hooked: Vec<&'static str> = fam
            .members
            .iter()
            .copied()
            .filter(|m| hooked.contains(m))
            .collect();
        let path = format!("{}.call", policy.source.hook_path("kprobes", hook));
        out.push((
            hook,
            f,
            AliasWarning {
                file: policy.source.file().to_string(),
                pos: policy.source.value_pos(&path),
                path,
                family: fam.name,
                hooked,
                missing,
                io_uring: fam.io_uring,
                covered_by: fam.covered_by,
            },
        ));
    }
    out.sort_by_key(|(hook, f, _)| (*hook, *f));
    out.into_iter().map(|(_, _, w)| w).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{Param, TracepointField};
    use crate::parse_policy;

    fn policy(kprobes: &str) -> TracingPolicy {
        let yaml = format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: t\nspec:\n{kprobes}"
        );
        parse_policy(&yaml, "t.yaml").expect("the test policy parses")
    }

    fn texts(p: &TracingPolicy) -> Vec<String> {
        warnings(p, None).iter().map(ToString::to_string).collect()
    }

    const OPENAT_ONLY: &str = r#"  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: "string"
    selectors:
    - matchArgs:
      - index: 1
        operator: "Prefix"
        values: ["/etc/shadow"]
      matchActions:
      - action: Sigkill
"#;

    #[test]
    fn openat_alone_names_the_other_open_calls_and_io_uring() {
        let w = texts(&policy(OPENAT_ONLY));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("t.yaml:7:11: spec.kprobes[0].call: warning: hooks openat but not open, openat2, creat, open_by_handle_at:"),
            "{w:?}"
        );
        assert!(
            w[0].contains("IORING_OP_OPENAT, IORING_OP_OPENAT2")
                && w[0].contains("security_file_open"),
            "{w:?}"
        );
    }

    #[test]
    fn the_whole_family_through_a_list_and_direct_calls_warns_nothing() {
        let p = policy(
            r#"  lists:
  - name: "opens"
    type: "syscalls"
    values: ["sys_openat", "sys_openat2", "__x64_sys_open"]
  kprobes:
  - call: "list:opens"
  - call: "sys_creat"
  - call: "open_by_handle_at"
"#,
        );
        assert_eq!(texts(&p), Vec::<String>::new());
    }

    #[test]
    fn execve_alone_names_execveat_without_io_uring() {
        let w = texts(&policy("  kprobes:\n  - call: \"sys_execve\"\n"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("spec.kprobes[0].call: warning: hooks execve but not execveat:"),
            "{w:?}"
        );
        assert!(
            !w[0].contains("io_uring"),
            "exec has no io_uring opcode: {w:?}"
        );
    }

    #[test]
    fn one_warning_per_family_at_the_first_hook_that_names_it() {
        let p = policy(
            r#"  kprobes:
  - call: "sys_write"
  - call: "sys_openat"
  - call: "sys_kill"
  - call: "sys_open"
  - call: "fd_install"
    syscall: false
"#,
        );
        let w = warnings(&p, None);
        let got: Vec<(&str, &str, Vec<&str>)> = w
            .iter()
            .map(|w| (w.path.as_str(), w.family, w.hooked.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("spec.kprobes[0].call", "write", vec!["write"]),
                ("spec.kprobes[1].call", "open", vec!["open", "openat"]),
                ("spec.kprobes[2].call", "kill", vec!["kill"]),
            ]
        );
        assert_eq!(w[1].missing, ["openat2", "creat", "open_by_handle_at"]);
    }

    #[test]
    fn every_syscall_and_non_syscall_hooks_warn_nothing() {
        let every = policy(
            r#"  lists:
  - name: "all"
    type: "generated_syscalls"
  kprobes:
  - call: "sys_openat"
  - call: "list:all"
"#,
        );
        assert!(texts(&every).is_empty());
        let kfunc = policy("  kprobes:\n  - call: \"openat\"\n    syscall: false\n");
        assert!(texts(&kfunc).is_empty());
    }

    /// A kernel that has only some of the calls (e.g. arm64: no open, no creat).
    struct Only(&'static [&'static str]);

    impl KernelInfo for Only {
        fn function(&self, _: &str) -> Answer<Vec<Param>> {
            Answer::No
        }
        fn syscall(&self, name: &str) -> Answer<()> {
            if self.0.contains(&name) {
                Answer::Yes(())
            } else {
                Answer::No
            }
        }
        fn tracepoint(&self, _: &str, _: &str) -> Answer<Vec<TracepointField>> {
            Answer::No
        }
        fn describe(&self) -> String {
            "test".into()
        }
    }

    #[test]
    fn calls_the_kernel_lacks_are_not_asked_for() {
        let p = policy(OPENAT_ONLY);
        let arm = Only(&["openat", "openat2", "open_by_handle_at"]);
        let w = warnings(&p, Some(&arm));
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].missing, ["openat2", "open_by_handle_at"]);
        let old = Only(&["openat"]);
        assert!(warnings(&p, Some(&old)).is_empty());
    }

    #[test]
    fn families_are_disjoint() {
        let mut all: Vec<&str> = FAMILIES
            .iter()
            .flat_map(|f| f.members.iter().copied())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a syscall in two families would warn twice");
        assert!(FAMILIES.iter().all(|f| f.members.len() >= 2));
    }
}
