/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one source of truth for every structure that crosses the kernel/user boundary.
 * The BPF programs include it after vmlinux.h; the Rust side gets the same layout through
 * bindgen (crates/vigil-bpf/build.rs). Only fixed-width types, explicit padding: the layout
 * must not depend on the compiler.
 */
#ifndef VIGIL_ABI_H
#define VIGIL_ABI_H

/* Sizes of the variable sections of an exec message. Regions are powers of two so that the
 * BPF side can bound offsets with a mask. */
#define VIGIL_PATH_REGION 4096      /* encoded path (components, leaf first) */
#define VIGIL_NAME_MAX 255          /* one path component */
#define VIGIL_PATH_DEPTH_MAX 128    /* components walked before giving up (truncation) */
#define VIGIL_CGROUP_NAME_MAX 256
#define VIGIL_ARGS_REGION (256 * 1024) /* upper bound of --max-args-size */
#define VIGIL_ENV_REGION (32 * 1024)

enum vigil_msg_kind {
	VIGIL_MSG_EXEC = 1,
	VIGIL_MSG_CLONE = 2,
	VIGIL_MSG_EXIT = 3,
};

/* Indices of the per-CPU counter array `vigil_counters`. */
enum vigil_counter {
	VIGIL_CNT_RB_LOST_EXEC = 0,  /* ring buffer full: exec message dropped */
	VIGIL_CNT_RB_LOST_CLONE = 1,
	VIGIL_CNT_RB_LOST_EXIT = 2,
	VIGIL_CNT_PROC_MAP_FULL = 3, /* kernel process table full: entry not stored */
	VIGIL_CNT_EXIT_NO_ENTRY = 4, /* exit of a thread group the table did not know */
	VIGIL_CNT_MAX = 8,
};

/* Flags of an exec message (vigil_exec_msg.flags). */
#define VIGIL_EXEC_TRUNC_PATH (1u << 0)
#define VIGIL_EXEC_TRUNC_ARGS (1u << 1)
#define VIGIL_EXEC_TRUNC_CWD (1u << 2)
#define VIGIL_EXEC_ERR_PATH (1u << 3)
#define VIGIL_EXEC_ERR_ARGS (1u << 4)
#define VIGIL_EXEC_ERR_CWD (1u << 5)
#define VIGIL_EXEC_AFTER_CLONE (1u << 6)  /* the pid's previous image came from fork */
#define VIGIL_EXEC_PATH_DELETED (1u << 7) /* executed file is unlinked (d_unhashed) */
#define VIGIL_EXEC_PATH_DETACHED (1u << 8) /* walk ended outside the task's root */
#define VIGIL_EXEC_TRUNC_ENV (1u << 9)
#define VIGIL_EXEC_ERR_ENV (1u << 10)
#define VIGIL_EXEC_NO_PARENT (1u << 11) /* parent not in the kernel process table */

/* Privilege changes at exec (vigil_exec_msg.privs), Tetragon's ProcessPrivilegesChanged. */
#define VIGIL_PRIV_SETUID (1u << 0)
#define VIGIL_PRIV_SETGID (1u << 1)
#define VIGIL_PRIV_FILE_CAP (1u << 2)

/* Kind of a kernel process-table entry. */
#define VIGIL_ENTRY_EXEC (1u << 0)
#define VIGIL_ENTRY_CLONE (1u << 1)
#define VIGIL_ENTRY_PROCFS (1u << 2)

/* Flags of an exit message. */
#define VIGIL_EXIT_NO_ENTRY (1u << 0)

/* Identity of one process image: exec_id = base64("<node>:<ktime>:<pid>"). */
struct vigil_proc_key {
	__u32 pid;
	__u32 pad;
	__u64 ktime;
};

struct vigil_msg_header {
	__u8 kind;
	__u8 pad[3];
	__u32 size; /* whole message, header included */
	__u64 ktime; /* CLOCK_BOOTTIME ns when the kernel produced it */
};

struct vigil_creds {
	__u32 uid, gid, suid, sgid, euid, egid, fsuid, fsgid;
	__u32 securebits;
	__u32 user_ns_level;
	__u32 user_ns_owner;
	__u32 user_ns_group;
	__u64 cap_permitted;
	__u64 cap_effective;
	__u64 cap_inheritable;
};

struct vigil_namespaces {
	__u32 uts, ipc, mnt, pid, pid_for_children, net, time, time_for_children, cgroup, user;
};

/*
 * Exec message. Fixed part, then the sections in this order, each `*_len` bytes:
 * path (encoded: repeated [u8 len][bytes], leaf first), cwd (same encoding),
 * cgroup name (raw), argv (NUL-separated, as in the process's memory), environment.
 */
struct vigil_exec_msg {
	struct vigil_msg_header hdr;
	struct vigil_proc_key process;
	struct vigil_proc_key parent;
	struct vigil_proc_key replaced; /* the pid's previous image, ktime 0 if none */
	__u32 tid;
	__u32 ppid;     /* real parent's tgid */
	__u32 nspid;    /* pid in the task's own pid namespace */
	__u32 auid;
	__u32 flags;    /* VIGIL_EXEC_* */
	__u32 privs;    /* VIGIL_PRIV_* */
	struct vigil_creds creds;
	struct vigil_namespaces ns;
	__u64 cgroup_id;
	__u64 file_ino;
	__u32 file_nlink;
	__u32 file_uid;
	__u32 file_gid;
	__u16 file_mode;
	__u16 pad0;
	__u32 args_size; /* arg_end - arg_start: the size before truncation */
	__u32 env_size;
	__u16 path_len;
	__u16 cwd_len;
	__u16 cgroup_len;
	__u16 pad1;
	__u32 args_len;
	__u32 env_len;
};

struct vigil_clone_msg {
	struct vigil_msg_header hdr;
	struct vigil_proc_key process; /* child: ktime = its start time */
	struct vigil_proc_key parent;
	__u32 tid;
	__u32 ppid;
	__u32 nspid;
	__u32 flags;
};

struct vigil_exit_msg {
	struct vigil_msg_header hdr;
	struct vigil_proc_key process;
	__u32 tid;        /* the last thread of the group */
	__u32 exit_code;  /* task->exit_code: status << 8 | signal */
	__u32 flags;      /* VIGIL_EXIT_* */
	__u32 pad;
};

/* Value of the kernel process table `vigil_procs`, keyed by tgid. */
struct vigil_proc_entry {
	struct vigil_proc_key key;
	struct vigil_proc_key parent;
	__u32 flags; /* VIGIL_ENTRY_* */
	__u32 pad;
};

/* Load-time configuration, the only object in .rodata. */
struct vigil_config {
	__u32 args_limit; /* bytes of argv copied, <= VIGIL_ARGS_REGION - 1 */
	__u32 env_limit;  /* 0 disables environment capture */
};

#endif
