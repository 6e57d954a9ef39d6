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
	VIGIL_MSG_SYSCALL = 4,
	VIGIL_MSG_DATA = 5, /* a chunk of a maxData char_buf (struct vigil_data_msg) */
	VIGIL_MSG_THROTTLE = 6, /* --cgroup-rate: a cgroup went over the rate on one CPU */
	VIGIL_MSG_IMA = 7, /* Post imaHash: the digest of an LSM event posted just before */
};

/* Indices of the per-CPU counter array `vigil_counters`. */
enum vigil_counter {
	VIGIL_CNT_RB_LOST_EXEC = 0,  /* ring buffer full: exec message dropped */
	VIGIL_CNT_RB_LOST_CLONE = 1,
	VIGIL_CNT_RB_LOST_EXIT = 2,
	VIGIL_CNT_PROC_MAP_FULL = 3, /* kernel process table full: entry not stored */
	VIGIL_CNT_EXIT_NO_ENTRY = 4, /* exit of a thread group the table did not know */
	VIGIL_CNT_RB_LOST_POLICY = 5, /* policy event dropped (ring full); actions still ran */
	VIGIL_CNT_PENDING_LOST = 6,   /* a hook's entry state not kept for its exit (table full):
				       * the exit-time checks of that call did not run */
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
/* --cgroup-rate throttled this exec: identity only (no cwd, argv, environment), for the
 * process cache; no process_exec is emitted. */
#define VIGIL_EXEC_THROTTLED (1u << 12)

/* Privilege changes at exec (vigil_exec_msg.privs), Tetragon's ProcessPrivilegesChanged. */
#define VIGIL_PRIV_SETUID (1u << 0)
#define VIGIL_PRIV_SETGID (1u << 1)
#define VIGIL_PRIV_FILE_CAP (1u << 2)

/* Kind of a kernel process-table entry. */
#define VIGIL_ENTRY_EXEC (1u << 0)
#define VIGIL_ENTRY_CLONE (1u << 1)
#define VIGIL_ENTRY_PROCFS (1u << 2)
#define VIGIL_ENTRY_BASELINE (1u << 3) /* exec_caps and exec_ns are set */

/* Flags of an exit message. */
#define VIGIL_EXIT_NO_ENTRY (1u << 0)
#define VIGIL_EXIT_THROTTLED (1u << 1) /* --cgroup-rate: ends the cached image, not emitted */

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
	/* The executed file as it was at exec (--enable-process-exec-sha256: the hash cache key,
	 * and how user space knows the file it opens later is still that content). `file_dev`
	 * is the kernel's encoding, as bin_dev. */
	__u32 file_dev;
	__u32 pad2;
	__u64 file_size;
	__u64 file_ctime_ns;
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

/* --cgroup-rate (bpf/include/vigil_cgroup_rate.h): the first event over the rate of one
 * cgroup on one CPU. */
struct vigil_throttle_msg {
	struct vigil_msg_header hdr;
	__u64 cgroup_id;
	__u32 cgroup_len;
	__u32 pad;
	char cgroup[VIGIL_CGROUP_NAME_MAX]; /* the cgroup's name, as on exec messages */
};

/* Per-CPU value of `vigil_cgroup_rate`, keyed by cgroup id: exec and exit events counted
 * in windows of the configured interval. Times are CLOCK_BOOTTIME ns. */
struct vigil_rate_value {
	__u64 curr;      /* events in the current window */
	__u64 prev;      /* events in the previous window */
	__u64 window;    /* start of the current window */
	__u64 rate;      /* the sliding-window estimate at the last event */
	__u64 throttled; /* when this CPU started throttling the cgroup; 0: not throttled */
};

/* Value of the kernel process table `vigil_procs`, keyed by tgid. */
struct vigil_proc_entry {
	struct vigil_proc_key key;
	struct vigil_proc_key parent;
	__u32 flags; /* VIGIL_ENTRY_* */
	__u32 pad;
	/* Identity of the executed file, for matchBinaries (0 for scanned processes until the
	 * scan fills it). `dev` is the kernel's encoding: major << 20 | minor. */
	__u64 bin_ino;
	__u64 bin_dev;
	/* Identity of the parent's executed file (matchParentBinaries): the parent image's
	 * binary when this entry was made (fork, or exec), 0 when unknown. */
	__u64 pbin_ino;
	__u64 pbin_dev;
	/* Capabilities and namespaces recorded at the last exec (matchCapabilityChanges,
	 * matchNamespaceChanges; valid with VIGIL_ENTRY_BASELINE). A selector that matched a
	 * change moves them to the current values, so that one change is reported once. */
	__u64 exec_caps[3]; /* VIGIL_CAPSET_* order: permitted, effective, inheritable */
	struct vigil_namespaces exec_ns;
	__u32 pad2;
};

/* ---- policy runtime: syscall hooks ----------------------------------------------------- */

#define VIGIL_MAX_HOOKS 256
#define VIGIL_MAX_SELECTORS 5   /* per hook, as Tetragon */
#define VIGIL_MAX_ARG_FILTERS 6 /* matchArgs entries per selector */
#define VIGIL_MAX_ARGS 5
#define VIGIL_MAX_INT_VALUES 4  /* integer values per matchArgs entry */
#define VIGIL_MAX_PIDS 8
#define VIGIL_STR_MATCH 128     /* bytes of a string argument compared by selectors */
#define VIGIL_ARG_STR_MAX 256   /* bytes of a string argument reported */

enum vigil_arg_kind {
	VIGIL_ARG_NONE = 0,
	VIGIL_ARG_INT = 1,    /* 32-bit signed */
	VIGIL_ARG_UINT32 = 2,
	VIGIL_ARG_INT64 = 3,
	VIGIL_ARG_UINT64 = 4, /* also size_t */
	VIGIL_ARG_STRING = 5, /* NUL-terminated user string */
	VIGIL_ARG_KSTRING = 6, /* NUL-terminated kernel string (tracepoint records, raw tp) */
	VIGIL_ARG_BUF = 7,    /* char_buf: user bytes, count from argument size_index; the msg
			       * carries up to VIGIL_ARG_STR_MAX - 1 of them and, in ints[], the
			       * count asked for (more: the bytes were cut) */
	/* Kernel objects of kernel-function and LSM hooks (bpf/include/vigil_kobj.h): read as a
	 * string (the path, resolved in the kernel) plus an integer (the inode mode). */
	VIGIL_ARG_KOBJ_FIRST = 16,
	VIGIL_ARG_FILE = 16,    /* struct file * -> f_path */
	VIGIL_ARG_PATH = 17,    /* struct path * */
	VIGIL_ARG_DENTRY = 18,  /* struct dentry * (path inside its file system) */
	VIGIL_ARG_BINPRM = 19,  /* struct linux_binprm * -> file */
	/* 20: kernel strings are VIGIL_ARG_KSTRING above */
	VIGIL_ARG_FILENAME = 21, /* struct filename * -> name */
	VIGIL_ARG_NET_DEVICE = 22, /* struct net_device * -> name */
	VIGIL_ARG_KIOCB = 23,      /* struct kiocb * -> ki_filp, read as a file */
	/* Network objects: read into a struct vigil_sock_info in the string row (length
	 * sizeof(struct vigil_sock_info)), filtered by the VIGIL_OP_SOCK_* operators. */
	VIGIL_ARG_SOCK = 24,     /* struct sock * -> sock_arg */
	VIGIL_ARG_SOCKET = 25,   /* struct socket * -> ->sk -> sock_arg */
	VIGIL_ARG_SKB = 26,      /* struct sk_buff * -> skb_arg (IP and TCP/UDP headers) */
	VIGIL_ARG_NET_SOCKADDR = 27, /* struct sockaddr * (kernel copy) -> sockaddr_arg */
	/* The cgroup fallback (bpf/sockaddr_cgroup.bpf.c): raw is a vigil_sock_info already
	 * filled from the bpf_sock_addr context; reported as sockaddr_arg. */
	VIGIL_ARG_SOCKINFO = 28,
	VIGIL_ARG_KOBJ_LAST = 28,
	/* More syscall argument readers (bpf/include/vigil_engine_args.h), one global function. */
	VIGIL_ARG_EXT_FIRST = 32,
	VIGIL_ARG_FD = 32,        /* fd -> path through the task's file table, at entry; ints[]:
				   * the inode mode */
	VIGIL_ARG_IOVEC = 33,     /* char_iovec: iovec array, count from argument size_index;
				   * bytes concatenated; ints[]: the total of the iov_len */
	VIGIL_ARG_CONST_BUF = 34, /* const_buf: `const_size` bytes of user memory */
	VIGIL_ARG_BUF_RET = 35,   /* char_buf returnCopy: read at the paired exit, count = the
				   * return value (ints[] holds the pointer until then) */
	VIGIL_ARG_SOCKADDR = 36,  /* user struct sockaddr -> struct vigil_sockaddr in the row;
				   * ints[]: the family */
	VIGIL_ARG_KSOCKADDR = 37, /* the same from kernel memory (kernel-function hooks) */
	VIGIL_ARG_BUF_DATA = 38,  /* char_buf with maxData: up to VIGIL_DATA_MAX bytes sent ahead
				   * as VIGIL_MSG_DATA chunks; the row holds their __u64 id, ints[]
				   * the count asked for */
	VIGIL_ARG_BTF = 39,       /* a member path followed from a base pointer (BTF `resolve`;
				   * data with source current_task): vigil_hook_cfg.chains[slot] */
	VIGIL_ARG_BTF_STR = 40,   /* the same, ending on a string (char * or char array) */
	VIGIL_ARG_EXT_LAST = 47,
	/* Kernel structures summarised into a struct in the row (bpf/include/vigil_kobj_struct.h,
	 * kernel-function hooks only); the agent decodes them into Tetragon's argument types. */
	VIGIL_ARG_KSTRUCT_FIRST = 48,
	VIGIL_ARG_CRED = 48,         /* struct cred * -> vigil_cred_info */
	VIGIL_ARG_USER_NS = 49,      /* struct user_namespace * -> vigil_userns_info */
	VIGIL_ARG_CAP_SET = 50,      /* kernel_cap_t * -> ints[]: the 64-bit mask */
	VIGIL_ARG_BPF_ATTR = 51,     /* union bpf_attr * (BPF_PROG_LOAD) -> vigil_bpf_info */
	VIGIL_ARG_BPF_PROG = 52,     /* struct bpf_prog * -> vigil_bpf_info */
	VIGIL_ARG_BPF_MAP = 53,      /* struct bpf_map * -> vigil_bpf_info */
	VIGIL_ARG_PERF_EVENT = 54,   /* struct perf_event * -> vigil_perf_info */
	VIGIL_ARG_MODULE = 55,       /* struct module * -> vigil_module_info */
	VIGIL_ARG_LOAD_INFO = 56,    /* struct load_info * -> vigil_module_info */
	VIGIL_ARG_IOV_ITER = 57,     /* struct iov_iter * -> its first user bytes; ints[]: count */
	VIGIL_ARG_KSTRUCT_LAST = 63,
};

struct vigil_userns_info {
	__u32 level;
	__u32 uid; /* owner */
	__u32 gid; /* group */
	__u32 inum;
};

/* A `cred` argument: the credentials as exec records them, and the user namespace's inode. */
struct vigil_cred_info {
	struct vigil_creds creds;
	__u32 user_ns_inum;
	__u32 pad;
};

/* bpf_attr and bpf_prog: type = program type, insn_cnt; bpf_map: type = map type and sizes. */
struct vigil_bpf_info {
	__u32 type;
	__u32 insn_cnt;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 pad;
	char name[16];
};

#define VIGIL_PERF_FUNC_MAX 64
struct vigil_perf_info {
	__u32 type;
	__u32 pad;
	__u64 config;
	__u64 probe_offset;
	char func[VIGIL_PERF_FUNC_MAX]; /* kprobe_func (kprobe PMU events), NUL-terminated */
};

#define VIGIL_MODULE_NAME_MAX 64
struct vigil_module_info {
	__u64 taints;
	__u8 sig_ok;   /* valid when has_sig */
	__u8 has_sig;  /* the kernel records signature checks (CONFIG_MODULE_SIG) */
	__u8 pad[6];
	char name[VIGIL_MODULE_NAME_MAX];
};

/*
 * A network object as the engine filters and reports it (Tetragon's sock_arg, skb_arg,
 * sockaddr_arg). Addresses are in network byte order, 4 bytes used for AF_INET; ports in
 * host order. sockaddr_arg uses family, saddr and sport (the address it names).
 */
struct vigil_sock_info {
	__u16 family;
	__u16 type;
	__u16 protocol;
	__u8 state;
	__u8 pad;
	__u16 sport;
	__u16 dport;
	__u32 mark;
	__u32 priority;
	__u32 hash; /* skb */
	__u32 len;  /* skb */
	__u64 cookie; /* the struct sock address, as Tetragon's sock_arg */
	__u8 saddr[16];
	__u8 daddr[16];
};

enum vigil_op {
	VIGIL_OP_NONE = 0,
	VIGIL_OP_EQ = 1,
	VIGIL_OP_NEQ = 2,
	VIGIL_OP_PREFIX = 3,
	VIGIL_OP_NOT_PREFIX = 4,
	VIGIL_OP_POSTFIX = 5,
	VIGIL_OP_NOT_POSTFIX = 6,
	VIGIL_OP_GT = 7,
	VIGIL_OP_LT = 8,
	VIGIL_OP_MASK = 9,
	VIGIL_OP_IN = 10,
	VIGIL_OP_NOT_IN = 11,
	/* vigil's SameFile: the argument's file (device + inode) is in binary set `set_id`,
	 * which the agent resolves from the policy's paths and keeps current. */
	VIGIL_OP_SAME_FILE = 12,
	/* sockaddr arguments (bpf/include/vigil_engine_sockaddr.h). Family is VIGIL_OP_EQ. */
	VIGIL_OP_PORT = 32,          /* values: lo << 16 | hi, inclusive */
	VIGIL_OP_NOT_PORT = 33,
	VIGIL_OP_PORT_PRIV = 34,     /* port < 1024 */
	VIGIL_OP_NOT_PORT_PRIV = 35,
	VIGIL_OP_ADDR = 36,          /* CIDR set `set_id` in vigil_str_prefix (see vigil_sockaddr) */
	VIGIL_OP_NOT_ADDR = 37,
	/* Network operators on vigil_sock_info rows. Addresses: CIDRs in the LPM set `set_id`
	 * of vigil_str_prefix, key data = [4 or 6] + address bytes. Ports: values[] hold
	 * ranges lo | hi << 32. Protocol/Family/State: values[] any of. */
	VIGIL_OP_SOCK_FIRST = 48,
	VIGIL_OP_SADDR = 48,
	VIGIL_OP_DADDR = 49,
	VIGIL_OP_NOT_SADDR = 50,
	VIGIL_OP_NOT_DADDR = 51,
	VIGIL_OP_SPORT = 52,
	VIGIL_OP_DPORT = 53,
	VIGIL_OP_NOT_SPORT = 54,
	VIGIL_OP_NOT_DPORT = 55,
	VIGIL_OP_SPORT_PRIV = 56,
	VIGIL_OP_DPORT_PRIV = 57,
	VIGIL_OP_NOT_SPORT_PRIV = 58,
	VIGIL_OP_NOT_DPORT_PRIV = 59,
	VIGIL_OP_PROTOCOL = 60,
	VIGIL_OP_FAMILY = 61,
	VIGIL_OP_STATE = 62,
	VIGIL_OP_SOCK_LAST = 62,
};

/* Action bits of a selector. */
#define VIGIL_ACT_POST (1u << 0)
#define VIGIL_ACT_SIGKILL (1u << 1)
#define VIGIL_ACT_SIGNAL (1u << 2)
#define VIGIL_ACT_OVERRIDE (1u << 3) /* fmod_ret / LSM: the hooked function returns `override_rc` */
#define VIGIL_SOCKTRACK_MAX 32768 /* sockets TrackSock remembers (LRU) */
#define VIGIL_ACT_TRACK_SOCK (1u << 4)   /* the socket of slot `sock_slot` belongs to this process */
#define VIGIL_ACT_UNTRACK_SOCK (1u << 5) /* ... no longer (vigil_socktrack) */

/* A BTF member path (`resolve`) as offsets: for step i, load a pointer from the address
 * first when bit i of `deref` is set, then add off[i]; then read the leaf there. */
#define VIGIL_BTF_DEPTH 10 /* Tetragon's MAX_BTF_ARG_DEPTH */
#define VIGIL_LEAF_INT 1      /* `size` bytes, sign-extended when flags say so */
#define VIGIL_LEAF_CHAR_PTR 2 /* a char *: the kernel string it points to */
#define VIGIL_LEAF_CHAR_ARR 3 /* a char array: the string stored there */
#define VIGIL_LEAF_PTR 4      /* a pointer's value */
#define VIGIL_CHAIN_SIGNED (1u << 0)
#define VIGIL_CHAIN_TASK (1u << 1) /* base: the current task (data source current_task) */
struct vigil_btf_chain {
	__u8 nsteps;
	__u8 leaf;
	__u8 size;
	__u8 flags;
	__u16 deref;
	__u16 pad;
	__u32 off[16]; /* VIGIL_BTF_DEPTH used: 16 so that an index masked with 15 stays inside */
};

struct vigil_hook_cfg {
	__u32 nargs;
	__u32 nselectors;
	__u32 monitor; /* unused by the engine: the mode lives in vigil_policy_conf (switchable) */
	__u32 pad;
	__u8 arg_kind[VIGIL_MAX_ARGS];
	__u8 arg_index[VIGIL_MAX_ARGS]; /* syscall argument number of each reported arg */
	__u8 size_index[VIGIL_MAX_ARGS]; /* VIGIL_ARG_BUF: syscall argument holding the count */
	__u8 ret_sock_slot; /* returnArgAction TrackSock/UntrackSock: the slot of the returned sock */
	/* Exit pairing (engine): selection completes at the paired exit when flags say so. */
	__u32 flags;    /* VIGIL_HOOK_* */
	__u8 path_slot; /* slot whose string filters also try the kernel-resolved path; 0xff none */
	__u8 ret_kind;  /* enum vigil_arg_kind of the return value (VIGIL_ARG_NONE: not reported) */
	__u8 filter_strs; /* string slots some filter reads (bit per slot): read at entry */
	__u8 sock_slot;   /* a sock/socket slot: events of a tracked socket name its process; 0xff none */
	__u16 const_size[VIGIL_MAX_ARGS]; /* VIGIL_ARG_CONST_BUF: bytes of each argument */
	__u16 pad4;
	struct vigil_btf_chain chains[VIGIL_MAX_ARGS]; /* VIGIL_ARG_BTF */
};

struct vigil_arg_filter {
	__u8 slot;    /* position in the hook's args list */
	__u8 op;      /* enum vigil_op */
	__u8 nvalues; /* integer values used; strings: bytes of values[0] all values start with */
	__u8 pad;
	__u32 set_id; /* string value set (maps vigil_str_*) */
	__s64 values[VIGIL_MAX_INT_VALUES];
};

/* matchNamespaces entry: the task's namespace `kind` (index in struct vigil_namespaces:
 * uts, ipc, mnt, pid, pid_for_children, net, time, time_for_children, cgroup, user) is, or is
 * not (op), one of the inode numbers in values ("host_ns" is resolved by the loader). */
#define VIGIL_MAX_NS_FILTERS 10 /* matchNamespaces entries per selector, as Tetragon */
#define VIGIL_MAX_NS_VALUES 4   /* values per entry, as Tetragon */
#define VIGIL_NS_KINDS 10
struct vigil_ns_filter {
	__u8 kind;
	__u8 op;      /* VIGIL_OP_IN, VIGIL_OP_NOT_IN */
	__u8 nvalues;
	__u8 pad;
	__u32 values[VIGIL_MAX_NS_VALUES];
};

/* matchCapabilities / matchCapabilityChanges entry. Sets are numbered as Tetragon's. */
#define VIGIL_CAPSET_PERMITTED 0
#define VIGIL_CAPSET_EFFECTIVE 1
#define VIGIL_CAPSET_INHERITABLE 2
#define VIGIL_MAX_CAP_FILTERS 4
struct vigil_cap_filter {
	__u8 set;     /* VIGIL_CAPSET_* */
	__u8 op;      /* VIGIL_OP_IN, VIGIL_OP_NOT_IN */
	__u8 changes; /* 1: matchCapabilityChanges (against the caps recorded at exec) */
	__u8 pad;
	__u32 user_ns; /* isNamespaceCapability: the host's user namespace inode (the entry
			* holds only for tasks outside it); 0: any task */
	__u64 mask;    /* capability bits listed */
};

struct vigil_selector_cfg {
	__u32 nfilters;
	__u32 actions; /* VIGIL_ACT_* */
	__u32 signal;
	__u32 bin_op;  /* VIGIL_OP_NONE, VIGIL_OP_IN, VIGIL_OP_NOT_IN */
	__u32 bin_set_id;
	__u32 pid_op;  /* VIGIL_OP_NONE, VIGIL_OP_IN, VIGIL_OP_NOT_IN */
	__u32 npids;
	__s32 override_rc; /* VIGIL_ACT_OVERRIDE: the value returned instead (e.g. -EPERM) */
	__u32 pids[VIGIL_MAX_PIDS];
	struct vigil_arg_filter filters[VIGIL_MAX_ARG_FILTERS];
	__u32 ret_actions; /* matchReturnActions: VIGIL_ACT_* run at the paired exit */
	__u32 flags;       /* VIGIL_SEL_* */
	__u64 rate_ns;     /* Post rateLimit: at most one event per interval and scope; 0 none */
	/* matchNamespaces: every entry must hold (AND), as Tetragon. */
	__u32 nns;
	__u32 pad_ns;
	struct vigil_ns_filter ns[VIGIL_MAX_NS_FILTERS];
	/* matchParentBinaries (vigil_engine_caps.h): the parent's binary is, or is not, in set
	 * pbin_set_id; with VIGIL_SEL_PARENT_FOLLOW, any older ancestor's counts too. */
	__u32 pbin_op; /* VIGIL_OP_NONE, VIGIL_OP_IN, VIGIL_OP_NOT_IN */
	__u32 pbin_set_id;
	/* matchCapabilities and matchCapabilityChanges entries: every entry holds (AND). */
	__u32 ncaps;
	/* matchNamespaceChanges: bit per namespace kind (struct vigil_namespaces order); In: one
	 * of them changed since exec; NotIn: one of the others did. */
	__u32 nschg_op; /* VIGIL_OP_NONE, VIGIL_OP_IN, VIGIL_OP_NOT_IN */
	__u32 nschg_mask;
	__u32 sock_slot; /* TrackSock / UntrackSock (argSock): the slot of the socket */
	struct vigil_cap_filter caps[VIGIL_MAX_CAP_FILTERS];
};

/* A sockaddr argument as the engine keeps it in its row. Address sets are LPM keys of
 * vigil_str_prefix: data = [4 or 6][address bytes], prefixlen = 32 + 8 + CIDR bits. */
struct vigil_sockaddr {
	__u16 family;
	__u16 port; /* host order */
	__u8 addr[16]; /* IPv4: first 4 bytes */
};
#define VIGIL_SA_TAG_V4 4
#define VIGIL_SA_TAG_V6 6

/* maxData: Tetragon reads up to 327360 bytes; they travel in chunks ahead of the event,
 * each a ring record of sizeof(struct vigil_data_msg) + VIGIL_DATA_CHUNK bytes whose
 * hdr.size says how many are used. (tid, id) ties them to the event's argument. */
#define VIGIL_DATA_MAX 327360
#define VIGIL_DATA_CHUNK 4096
struct vigil_data_msg {
	struct vigil_msg_header hdr;
	__u64 id;
	__u32 tid;
	__u32 off; /* of this chunk in the buffer */
	__u32 len;
	__u32 pad;
};

/* Key of the exact-string and LPM (prefix, reversed postfix) value sets. */
struct vigil_str_key {
	__u32 prefixlen; /* LPM only: 32 + 8 * bytes; 0 in the exact-match map */
	__u32 set_id;
	__u8 data[VIGIL_STR_MATCH];
};

struct vigil_bin_key {
	__u32 set_id;
	__u32 pad;
	__u64 ino;
	__u64 dev;
};

/* Per-hook counters (per-CPU array indexed by hook id * VIGIL_HOOK_COUNTERS + counter). */
enum vigil_hook_counter {
	VIGIL_HOOK_MATCHED = 0,
	VIGIL_HOOK_POSTED = 1,
	VIGIL_HOOK_ENFORCED = 2,
	VIGIL_HOOK_DROPPED = 3,
	VIGIL_HOOK_MONITOR = 4, /* would have enforced (monitor mode) */
	VIGIL_HOOK_RATE_LIMITED = 5, /* not posted: rateLimit */
	VIGIL_HOOK_PENDING_LOST = 6, /* entry could not be kept for its exit (table full) */
	VIGIL_HOOK_COUNTERS = 8,
};

/* A syscall hook matched. Fixed part, then the string arguments in order, each
 * `str_len[i]` bytes (no NUL). */
struct vigil_syscall_msg {
	struct vigil_msg_header hdr;
	struct vigil_proc_key process;
	__u32 tid;
	__u32 hook_id;
	__u32 selector;
	__u32 actions; /* what was done: VIGIL_ACT_*; in monitor mode what would have been */
	__u32 monitor;
	__u32 signal;
	__s64 ints[VIGIL_MAX_ARGS];
	__u16 str_len[VIGIL_MAX_ARGS];
	__u16 str_trunc; /* bit i: string argument i was cut at VIGIL_ARG_STR_MAX */
	__u32 str_error; /* bit i: string argument i could not be read */
	__u32 compat;    /* 1: a 32-bit (ia32, int 0x80) system call */
	__u32 kstack_len; /* Post kernelStackTrace: bytes of kernel stack after the user stack */
	__s64 ret;           /* return value (flags & VIGIL_SYSMSG_RETURN) */
	__u32 ret_actions;   /* matchReturnActions that ran (or would have, in monitor mode) */
	__u16 path_len;      /* kernel-resolved path, after the string arguments */
	__u16 flags;         /* VIGIL_SYSMSG_* */
	/* With VIGIL_SYSMSG_TASK_STATE: the task's capabilities (VIGIL_CAPSET_* order) and
	 * namespaces when the selector matched (capability and namespace selectors). */
	__u64 task_caps[3];
	struct vigil_namespaces task_ns;
	/* Post userStackTrace: bytes of user stack (u64 return addresses, innermost first)
	 * after the kernel-resolved path. */
	__u32 ustack_len;
	__u32 generation; /* vigil_policy_conf.generation of the posting object */
};

/* ---- policy engine: exit pairing, policy mode, selector counters -------------------- */

/* vigil_hook_cfg.flags */
#define VIGIL_HOOK_EXIT (1u << 0)    /* selection completes at the paired syscall exit */
#define VIGIL_HOOK_FD_PATH (1u << 1) /* at exit, resolve the returned fd's path (open-like) */
#define VIGIL_HOOK_RET_COPY (1u << 16) /* some argument is read at the exit (returnCopy) */
#define VIGIL_HOOK_RET_TRACK_SOCK (1u << 2)   /* returnArgAction: TrackSock */
#define VIGIL_HOOK_RET_UNTRACK_SOCK (1u << 3) /* returnArgAction: UntrackSock */

/* vigil_ia32_hooks value bit: the hook's entry phase runs in the ia32 exit program too, from
 * the registers the call left (open-like hooks, whose arguments are values and user strings
 * the call does not change). The ia32 entry program skips such hooks, and is not attached
 * when no hook needs it: each raw-syscalls program costs every system call of the host. */
#define VIGIL_IA32_AT_EXIT (1u << 31)

/* vigil_selector_cfg.flags */
#define VIGIL_SEL_RATE_PROCESS (1u << 0) /* rateLimitScope process (default thread) */
#define VIGIL_SEL_RATE_GLOBAL (1u << 1)  /* rateLimitScope global */
#define VIGIL_SEL_FOLLOW_FORKS (1u << 2) /* matchPIDs followForks: ancestors count */
#define VIGIL_SEL_FOLLOW_CHILDREN (1u << 3) /* matchBinaries followChildren */
#define VIGIL_SEL_NS_PID (1u << 4) /* matchPIDs isNamespacePID: pids as the task's pid namespace numbers them */
#define VIGIL_SEL_PARENT_FOLLOW (1u << 5) /* matchParentBinaries followChildren */
#define VIGIL_SEL_TASK_STATE (1u << 6) /* caps/namespaces selectors: the event carries the task's */
#define VIGIL_SEL_USER_STACK (1u << 7) /* Post userStackTrace: the event carries the user stack */
#define VIGIL_USTACK_MAX 32 /* user stack frames an event carries */
#define VIGIL_SEL_KERNEL_STACK (1u << 8) /* Post kernelStackTrace: the event carries the kernel stack */
#define VIGIL_KSTACK_MAX 32 /* kernel stack frames an event carries */
#define VIGIL_SEL_IMA_HASH (1u << 9) /* Post imaHash: the event carries the file's IMA digest */

/* A filter slot naming the return value (matchReturnArgs). */
#define VIGIL_SLOT_RET 7
/* Scratch row that holds the kernel-resolved path (rows 0..4 are arguments). */
#define VIGIL_ROW_PATH 5

/* vigil_syscall_msg.flags */
#define VIGIL_SYSMSG_RETURN (1u << 0)     /* `ret` is set: the event comes from the exit */
#define VIGIL_SYSMSG_PATH (1u << 1)       /* a kernel-resolved path follows the strings */
#define VIGIL_SYSMSG_PATH_TRUNC (1u << 2) /* ... cut: deeper than the buffer */
#define VIGIL_SYSMSG_FAIL_CLOSED (1u << 3) /* matched because an argument was unreadable */
#define VIGIL_SYSMSG_TASK_STATE (1u << 4) /* task_caps and task_ns are set */
#define VIGIL_SYSMSG_SOCK_OWNER (1u << 5) /* `process` is the tracked owner of the socket */
#define VIGIL_SYSMSG_IMA (1u << 6) /* a VIGIL_MSG_IMA record for this event follows */

/* Post imaHash (LSM hooks on kernels with IMA): what bpf_ima_file_hash gave for the hook's
 * file. `algo` is the kernel's enum hash_algo (4: sha256), whose digest length user space
 * knows, or -errno when IMA could not hash the file. */
#define VIGIL_IMA_DIGEST_MAX 64 /* SHA-512, the longest digest IMA computes */
struct vigil_ima_digest {
	__s32 algo;
	__u32 pad;
	__u8 digest[VIGIL_IMA_DIGEST_MAX];
};

/* The digest of the event of thread `tid` on hook `hook_id` posted at `event_ktime` (its
 * hdr.ktime), which carries VIGIL_SYSMSG_IMA: hashing may sleep, so a sleepable program
 * that runs after the engine's computes it and posts this record after the event. */
struct vigil_ima_msg {
	struct vigil_msg_header hdr;
	__u64 event_ktime;
	__u32 tid;
	__u32 hook_id;
	struct vigil_ima_digest d;
};

/* Policy mode, one per policy object (`vigil_policy_conf`, key 0): one map write switches. */
enum vigil_policy_mode {
	VIGIL_MODE_ENFORCE = 0,
	VIGIL_MODE_MONITOR = 1,
};

struct vigil_policy_conf {
	__u32 mode; /* enum vigil_policy_mode */
	/* The load this object belongs to (user space counts loads from 1): posted in every
	 * record so that an event still in the ring when its hook id was given back and reused
	 * is told apart from the new user's. */
	__u32 generation;
	/* Pod/namespace scope (vigil_engine_scope.h): when set, only tasks whose cgroup id is in
	 * the object's vigil_scope_cgroups set reach the selectors. */
	__u32 scoped;
	__u32 pad2;
};

/* Cgroup ids one scoped policy object holds at most (vigil_scope_cgroups). */
#define VIGIL_SCOPE_MAX_CGROUPS 8192

/* vigil_scope_counters (per-CPU array): invocations of a scoped object's hooks. */
enum vigil_scope_counter {
	VIGIL_SCOPE_IN = 0,  /* the task's cgroup is in the set: selectors evaluated */
	VIGIL_SCOPE_OUT = 1, /* not in the set: nothing done */
	VIGIL_SCOPE_COUNTERS = 2,
};

/* ---- policy runtime: tracepoint, raw tracepoint, uprobe and usdt hooks ------------------ */
/*
 * These hooks (bpf/hooks.bpf.c) first turn their context into the engine's raw arguments,
 * one per reported argument, as `vigil_hook_prep` (map vigil_hook_prep, by hook id) says;
 * the engine then reads, filters and posts them as it does for syscalls.
 */
enum vigil_prep_src {
	VIGIL_SRC_NONE = 0,
	VIGIL_SRC_RECORD = 1,      /* `size` bytes at offset `off` of the tracepoint record */
	VIGIL_SRC_RECORD_ADDR = 2, /* the address of record offset `off` (a char array) */
	VIGIL_SRC_DATA_LOC = 3,    /* data_loc u32 at `off`: string at record + (loc & 0xffff) */
	VIGIL_SRC_REL_LOC = 4,     /* rel_loc u32 at `off`: string at record + off + 4 + (loc & 0xffff) */
	VIGIL_SRC_RAW_ARG = 5,     /* raw tracepoint argument number `off` */
	VIGIL_SRC_REG = 6,         /* register at byte `off` of struct pt_regs (uprobe, usdt) */
	VIGIL_SRC_REG_DEREF = 7,   /* `size` bytes of user memory at register `off` + `imm` (usdt) */
	VIGIL_SRC_CONST = 8,       /* the constant `imm` (usdt) */
};

enum vigil_prep_post {
	VIGIL_POST_NONE = 0,
	VIGIL_POST_SYSCALL64 = 1, /* Tetragon's syscall64: bit 31 set for a 32-bit (ia32) call */
	VIGIL_POST_BINPRM = 2,    /* a struct linux_binprm *: becomes bprm->filename (kernel) */
};

#define VIGIL_SYSCALL64_IA32 (1ull << 31)

struct vigil_prep_arg {
	__u8 src;  /* enum vigil_prep_src */
	__u8 size; /* bytes read (1, 2, 4, 8); the value is zero- or sign-extended from them */
	__u8 sign; /* sign-extend from `size` bytes */
	__u8 post; /* enum vigil_prep_post */
	__u32 off;
	__s64 imm;
};

struct vigil_hook_prep {
	struct vigil_prep_arg args[VIGIL_MAX_ARGS];
};

/* Load-time configuration, the only object in .rodata. */
struct vigil_config {
	__u32 args_limit; /* bytes of argv copied, <= VIGIL_ARGS_REGION - 1 */
	__u32 env_limit;  /* 0 disables environment capture */
	__u32 rate_events; /* --cgroup-rate: events per interval per cgroup and CPU */
	/* Wake the reader for every exec record: exec hashing (--enable-process-exec-sha256)
	 * must reach a short-lived process's file before it can be replaced. */
	__u32 wake_on_exec;
	__u64 rate_interval_ns; /* 0: --cgroup-rate off */
};

#endif
