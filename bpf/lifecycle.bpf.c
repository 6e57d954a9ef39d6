// SPDX-License-Identifier: GPL-2.0-only
/*
 * Process lifecycle sensor: exec, fork (new thread groups only) and exit (thread-group
 * death only), through BTF tracepoints so that it runs on kernels without kprobes.
 *
 * The kernel process table `vigil_procs` (tgid -> current image) gives every message the
 * identity of the image it belongs to and of its parent, so user space never has to guess
 * from pids, and it makes the exit report unique per thread group: only the thread that
 * deletes the entry reports.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "vigil_abi.h"
#include "vigil_task.h"

char LICENSE[] SEC("license") = "GPL";

#define S_ISUID 04000
#define S_ISGID 02000
#define S_IXGRP 00010

#define PATH_BUF 8192 /* >= VIGIL_PATH_REGION + a component; a power of two for masking */
#define ARGS_MASK (VIGIL_ARGS_REGION - 1)
#define ENV_MASK (VIGIL_ENV_REGION - 1)

const volatile struct vigil_config vigil_cfg = {
	.args_limit = 65536,
	.env_limit = 0,
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024); /* resized by the loader (--rb-size) */
} vigil_events SEC(".maps");

#include "vigil_wakeup.h"
#include "vigil_cgroup_rate.h"


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768); /* resized by the loader (--execve-map-entries) */
	__type(key, __u32);
	__type(value, struct vigil_proc_entry);
} vigil_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} vigil_counters SEC(".maps");

/* Exec scratch space, one slot per CPU: too large for a per-CPU map (32 KiB limit). */
struct exec_scratch {
	struct vigil_exec_msg msg;
	char path[PATH_BUF];
	char cwd[PATH_BUF];
	char cgroup[VIGIL_CGROUP_NAME_MAX];
	char args[VIGIL_ARGS_REGION];
	char env[VIGIL_ENV_REGION];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* set to the number of possible CPUs by the loader */
	__type(key, __u32);
	__type(value, struct exec_scratch);
} vigil_scratch SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&vigil_counters, &idx);

	if (v)
		*v += 1;
}

/* ---- path walk ------------------------------------------------------------------------ */

struct walk_ctx {
	__u64 dentry;      /* struct dentry * */
	__u64 mnt;         /* struct mount * */
	__u64 root_dentry; /* the task's root: the walk stops there, as d_path does */
	__u64 root_mnt;    /* struct vfsmount * */
	__u32 off;
	__u32 flags;
	__u32 cwd;         /* 0: write into scratch->path, 1: into scratch->cwd */
	__u32 pad;
};

/* Appends one component (leaf first) as [u8 len][bytes]. Returns 1 to stop the walk. */
static __always_inline long emit_name(struct walk_ctx *c, struct dentry *d, __u32 trunc_flag)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct exec_scratch *s = bpf_map_lookup_elem(&vigil_scratch, &cpu);
	struct qstr name;
	__u32 len, off = c->off;
	char *buf;

	if (!s)
		return 1;
	buf = c->cwd ? s->cwd : s->path;
	if (bpf_core_read(&name, sizeof(name), &d->d_name))
		return 1;
	len = name.len;
	if (len > VIGIL_NAME_MAX)
		len = VIGIL_NAME_MAX;
	if (off + 1 + len > VIGIL_PATH_REGION) {
		c->flags |= trunc_flag;
		return 1;
	}
	off &= VIGIL_PATH_REGION - 1;
	buf[off] = (char)len;
	bpf_probe_read_kernel(&buf[off + 1], len & VIGIL_NAME_MAX, name.name);
	c->off = off + 1 + len;
	return 0;
}

static long walk_step_path(__u32 idx, struct walk_ctx *c);
static long walk_step_cwd(__u32 idx, struct walk_ctx *c);

static __always_inline long walk_step(struct walk_ctx *c, __u32 trunc_flag)
{
	struct dentry *d = (struct dentry *)c->dentry;
	struct mount *m = (struct mount *)c->mnt;
	struct dentry *parent, *mnt_root;
	struct mount *mnt_parent;

	if (!d || !m)
		return 1;
	if (c->dentry == c->root_dentry && (__u64)&m->mnt == c->root_mnt)
		return 1;
	mnt_root = BPF_CORE_READ(m, mnt.mnt_root);
	parent = BPF_CORE_READ(d, d_parent);
	if (d == mnt_root) {
		mnt_parent = BPF_CORE_READ(m, mnt_parent);
		if (mnt_parent == m) {
			/* Top of the mount tree without meeting the task's root. */
			c->flags |= VIGIL_EXEC_PATH_DETACHED;
			return 1;
		}
		c->dentry = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
		c->mnt = (__u64)mnt_parent;
		return 0;
	}
	if (d == parent) {
		/* A disconnected dentry (memfd, pipe...): its name is all there is. */
		emit_name(c, d, trunc_flag);
		c->flags |= VIGIL_EXEC_PATH_DETACHED;
		return 1;
	}
	if (emit_name(c, d, trunc_flag))
		return 1;
	c->dentry = (__u64)parent;
	return 0;
}

static long walk_step_path(__u32 idx, struct walk_ctx *c)
{
	return walk_step(c, VIGIL_EXEC_TRUNC_PATH);
}

static long walk_step_cwd(__u32 idx, struct walk_ctx *c)
{
	return walk_step(c, VIGIL_EXEC_TRUNC_CWD);
}

/* Walks `path` up to the task's root; returns the encoded length and ORs flags in. */
static __always_inline __u32 walk_path(struct task_struct *task, const struct path *path, __u32 cwd,
				       __u32 *flags)
{
	struct walk_ctx c = {};
	struct vfsmount *vfsmnt;
	long n;

	c.dentry = (__u64)BPF_CORE_READ(path, dentry);
	vfsmnt = BPF_CORE_READ(path, mnt);
	c.mnt = (__u64)container_of(vfsmnt, struct mount, mnt);
	c.root_dentry = (__u64)BPF_CORE_READ(task, fs, root.dentry);
	c.root_mnt = (__u64)BPF_CORE_READ(task, fs, root.mnt);
	c.cwd = cwd;
	if (cwd)
		n = bpf_loop(VIGIL_PATH_DEPTH_MAX, walk_step_cwd, &c, 0);
	else
		n = bpf_loop(VIGIL_PATH_DEPTH_MAX, walk_step_path, &c, 0);
	if (n >= VIGIL_PATH_DEPTH_MAX)
		c.flags |= cwd ? VIGIL_EXEC_TRUNC_CWD : VIGIL_EXEC_TRUNC_PATH;
	*flags |= c.flags;
	return c.off;
}

/* ---- exec ----------------------------------------------------------------------------- */

/*
 * The readers below take BTF pointers from the tracepoint's arguments and dereference them
 * directly: in tp_btf programs these are checked loads, far cheaper than one
 * bpf_probe_read_kernel() call per field.
 */
static __always_inline void read_creds(struct task_struct *task, struct vigil_creds *cr)
{
	const struct cred *cred = task->cred;
	struct user_namespace *uns = cred->user_ns;

	cr->uid = cred->uid.val;
	cr->gid = cred->gid.val;
	cr->suid = cred->suid.val;
	cr->sgid = cred->sgid.val;
	cr->euid = cred->euid.val;
	cr->egid = cred->egid.val;
	cr->fsuid = cred->fsuid.val;
	cr->fsgid = cred->fsgid.val;
	cr->securebits = cred->securebits;
	/* kernel_cap_t is u32[2] before 6.3 and a u64 after: 8 bytes either way. */
	bpf_core_read(&cr->cap_permitted, 8, &cred->cap_permitted);
	bpf_core_read(&cr->cap_effective, 8, &cred->cap_effective);
	bpf_core_read(&cr->cap_inheritable, 8, &cred->cap_inheritable);
	cr->user_ns_level = uns->level;
	cr->user_ns_owner = uns->owner.val;
	cr->user_ns_group = uns->group.val;
}

static __always_inline void read_namespaces(struct task_struct *task, struct vigil_exec_msg *m)
{
	m->nspid = task_namespaces(task, &m->ns);
}

static __always_inline __u32 read_cgroup(struct task_struct *task, char *buf, __u64 *id)
{
	struct cgroup *cg = BPF_CORE_READ(task, cgroups, dfl_cgrp);
	const char *name;
	long n;

	*id = BPF_CORE_READ(cg, kn, id);
	/* On hybrid hosts a container may live only in the v1 hierarchies. */
	if (BPF_CORE_READ(cg, level) == 0 &&
	    bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id)) {
		int sid = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
		struct cgroup_subsys_state *css;

		bpf_core_read(&css, sizeof(css), &task->cgroups->subsys[sid & 15]);
		if (css)
			cg = BPF_CORE_READ(css, cgroup);
	}
	name = BPF_CORE_READ(cg, kn, name);
	n = bpf_probe_read_kernel_str(buf, VIGIL_CGROUP_NAME_MAX, name);
	return n > 1 ? (__u32)(n - 1) : 0;
}

static __always_inline __u32 read_user_block(void *dst, __u64 start, __u64 end, __u32 limit,
					     __u32 mask, __u32 trunc, __u32 err, __u32 *size,
					     __u32 *flags)
{
	__u64 len = end > start ? end - start : 0;

	*size = len;
	if (len > limit) {
		len = limit;
		*flags |= trunc;
	}
	len &= mask;
	if (len && bpf_probe_read_user(dst, len, (void *)start)) {
		*flags |= err;
		return 0;
	}
	return len;
}

static __always_inline void detect_privileges(struct linux_binprm *bprm, struct vigil_exec_msg *m)
{
	struct vigil_creds *cr = &m->creds;
	__u32 mode = m->file_mode;

	if ((mode & S_ISUID) && cr->euid == m->file_uid && cr->euid != cr->uid)
		m->privs |= VIGIL_PRIV_SETUID;
	if ((mode & S_ISGID) && (mode & S_IXGRP) && cr->egid == m->file_gid && cr->egid != cr->gid)
		m->privs |= VIGIL_PRIV_SETGID;
	/* secureexec without a set-id change, for an unprivileged caller: file capabilities. */
	if (!m->privs && cr->uid != 0 && cr->cap_permitted &&
	    BPF_CORE_READ_BITFIELD_PROBED(bprm, secureexec))
		m->privs |= VIGIL_PRIV_FILE_CAP;
}

/* struct inode's ctime before 6.11 (6.6-6.10: __i_ctime; older: i_ctime). */
struct inode___ctime_v66 {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));
struct inode___ctime_old {
	struct timespec64 i_ctime;
} __attribute__((preserve_access_index));

static __always_inline __u64 inode_ctime_ns(struct inode *inode)
{
	struct inode___ctime_v66 *v66 = (void *)inode;
	struct inode___ctime_old *old = (void *)inode;

	/* Since 6.13 the top bit of i_ctime_nsec flags a queried ctime (multigrain
	 * timestamps); nanoseconds need 30 bits. */
	if (bpf_core_field_exists(inode->i_ctime_sec))
		return BPF_CORE_READ(inode, i_ctime_sec) * 1000000000ULL +
		       (BPF_CORE_READ(inode, i_ctime_nsec) & 0x3fffffff);
	if (bpf_core_field_exists(v66->__i_ctime))
		return BPF_CORE_READ(v66, __i_ctime.tv_sec) * 1000000000ULL +
		       BPF_CORE_READ(v66, __i_ctime.tv_nsec);
	return BPF_CORE_READ(old, i_ctime.tv_sec) * 1000000000ULL +
	       BPF_CORE_READ(old, i_ctime.tv_nsec);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(vigil_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct exec_scratch *s = bpf_map_lookup_elem(&vigil_scratch, &cpu);
	struct vigil_proc_entry entry = {};
	struct vigil_proc_entry *cur;
	struct vigil_exec_msg *m;
	struct mm_struct *mm;
	struct bpf_dynptr rec;
	struct inode *inode;
	struct file *file;
	struct dentry *leaf;
	__u32 tgid, ppid, path_len, cwd_len = 0, cg_len, args_len = 0, env_len = 0, total, off;
	__u64 now = bpf_ktime_get_boot_ns();

	if (!s)
		return 0;
	m = &s->msg;
	__builtin_memset(m, 0, sizeof(*m));
	tgid = task->tgid;
	ppid = task->real_parent->tgid;
	m->hdr.kind = VIGIL_MSG_EXEC;
	m->hdr.ktime = now;
	m->process.pid = tgid;
	m->process.ktime = now;
	m->tid = task->pid;
	m->ppid = ppid;

	cur = bpf_map_lookup_elem(&vigil_procs, &tgid);
	if (cur) {
		m->replaced = cur->key;
		if (cur->flags & VIGIL_ENTRY_CLONE) {
			m->parent = cur->parent;
			m->flags |= VIGIL_EXEC_AFTER_CLONE;
			entry.pbin_ino = cur->pbin_ino;
			entry.pbin_dev = cur->pbin_dev;
		} else {
			/* exec replacing an exec: the previous image is the parent, as Tetragon. */
			m->parent = cur->key;
			entry.pbin_ino = cur->bin_ino;
			entry.pbin_dev = cur->bin_dev;
		}
	} else {
		struct vigil_proc_entry *pe = bpf_map_lookup_elem(&vigil_procs, &ppid);

		if (pe) {
			m->parent = pe->key;
			entry.pbin_ino = pe->bin_ino;
			entry.pbin_dev = pe->bin_dev;
		} else {
			m->parent.pid = ppid;
			m->flags |= VIGIL_EXEC_NO_PARENT;
		}
	}

	if (bpf_core_field_exists(task->loginuid))
		m->auid = task->loginuid.val;
	else
		m->auid = (__u32)-1;
	read_creds(task, &m->creds);
	read_namespaces(task, m);

	file = bprm->file;
	inode = file->f_inode;
	m->file_mode = inode->i_mode;
	m->file_uid = inode->i_uid.val;
	m->file_gid = inode->i_gid.val;
	m->file_ino = inode->i_ino;
	m->file_nlink = inode->__i_nlink;
	m->file_dev = inode->i_sb->s_dev;
	m->file_size = inode->i_size;
	m->file_ctime_ns = inode_ctime_ns(inode);
	leaf = file->f_path.dentry;
	if (!leaf->d_hash.pprev && (leaf->d_parent != leaf || m->file_nlink == 0))
		m->flags |= VIGIL_EXEC_PATH_DELETED;
	detect_privileges(bprm, m);

	entry.key = m->process;
	entry.parent = m->parent;
	entry.flags = VIGIL_ENTRY_EXEC | VIGIL_ENTRY_BASELINE;
	/* What matchCapabilityChanges / matchNamespaceChanges compare against. */
	entry.exec_caps[VIGIL_CAPSET_PERMITTED] = m->creds.cap_permitted;
	entry.exec_caps[VIGIL_CAPSET_EFFECTIVE] = m->creds.cap_effective;
	entry.exec_caps[VIGIL_CAPSET_INHERITABLE] = m->creds.cap_inheritable;
	entry.exec_ns = m->ns;
	entry.bin_ino = m->file_ino;
	entry.bin_dev = inode->i_sb->s_dev;
	if (bpf_map_update_elem(&vigil_procs, &tgid, &entry, BPF_ANY))
		count(VIGIL_CNT_PROC_MAP_FULL);

	path_len = walk_path(task, &file->f_path, 0, &m->flags);
	cg_len = read_cgroup(task, s->cgroup, &m->cgroup_id);
	/* Throttled: what later events of the process need (binary, cgroup), nothing more. */
	if (vigil_cfg.rate_interval_ns && vigil_rate_throttled(task, now)) {
		m->flags |= VIGIL_EXEC_THROTTLED;
		goto send;
	}
	cwd_len = walk_path(task, &task->fs->pwd, 1, &m->flags);

	mm = task->mm;
	args_len = read_user_block(s->args, mm->arg_start, mm->arg_end,
				   vigil_cfg.args_limit, ARGS_MASK, VIGIL_EXEC_TRUNC_ARGS,
				   VIGIL_EXEC_ERR_ARGS, &m->args_size, &m->flags);
	if (vigil_cfg.env_limit)
		env_len = read_user_block(s->env, mm->env_start, mm->env_end, vigil_cfg.env_limit,
					  ENV_MASK,
					  VIGIL_EXEC_TRUNC_ENV, VIGIL_EXEC_ERR_ENV, &m->env_size,
					  &m->flags);
send:

	path_len &= PATH_BUF - 1;
	cwd_len &= PATH_BUF - 1;
	cg_len &= VIGIL_CGROUP_NAME_MAX - 1;
	args_len &= ARGS_MASK;
	env_len &= ENV_MASK;
	m->path_len = path_len;
	m->cwd_len = cwd_len;
	m->cgroup_len = cg_len;
	m->args_len = args_len;
	m->env_len = env_len;
	total = sizeof(*m) + path_len + cwd_len + cg_len + args_len + env_len;
	m->hdr.size = total;

	if (bpf_ringbuf_reserve_dynptr(&vigil_events, total, 0, &rec)) {
		bpf_ringbuf_discard_dynptr(&rec, 0);
		count(VIGIL_CNT_RB_LOST_EXEC);
		return 0;
	}
	off = sizeof(*m);
	bpf_dynptr_write(&rec, 0, m, sizeof(*m), 0);
	bpf_dynptr_write(&rec, off, s->path, path_len, 0);
	off += path_len;
	bpf_dynptr_write(&rec, off, s->cwd, cwd_len, 0);
	off += cwd_len;
	bpf_dynptr_write(&rec, off, s->cgroup, cg_len, 0);
	off += cg_len;
	bpf_dynptr_write(&rec, off, s->args, args_len, 0);
	off += args_len;
	bpf_dynptr_write(&rec, off, s->env, env_len, 0);
	bpf_ringbuf_submit_dynptr(&rec, vigil_cfg.wake_on_exec ? BPF_RB_FORCE_WAKEUP : wakeup_flags());
	return 0;
}

/* ---- fork ----------------------------------------------------------------------------- */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(vigil_fork, struct task_struct *parent, struct task_struct *child)
{
	struct vigil_proc_entry entry = {};
	struct vigil_proc_entry *pe;
	struct vigil_clone_msg *m;
	__u32 tgid = BPF_CORE_READ(child, tgid);
	__u32 ptgid;

	if (tgid != BPF_CORE_READ(child, pid))
		return 0; /* a new thread, not a new process */
	ptgid = BPF_CORE_READ(parent, tgid);
	entry.key.pid = tgid;
	entry.key.ktime = BPF_CORE_READ(child, start_boottime);
	pe = bpf_map_lookup_elem(&vigil_procs, &ptgid);
	if (pe) {
		entry.parent = pe->key;
		/* Until it executes something, the child runs its parent's binary. */
		entry.bin_ino = pe->bin_ino;
		entry.bin_dev = pe->bin_dev;
		entry.pbin_ino = pe->bin_ino;
		entry.pbin_dev = pe->bin_dev;
		/* ... and keeps its parent's exec-time baseline (Tetragon copies the entry). */
		entry.flags = pe->flags & VIGIL_ENTRY_BASELINE;
		__builtin_memcpy(entry.exec_caps, pe->exec_caps, sizeof(entry.exec_caps));
		entry.exec_ns = pe->exec_ns;
	} else
		entry.parent.pid = ptgid;
	entry.flags |= VIGIL_ENTRY_CLONE;
	if (bpf_map_update_elem(&vigil_procs, &tgid, &entry, BPF_ANY))
		count(VIGIL_CNT_PROC_MAP_FULL);

	m = bpf_ringbuf_reserve(&vigil_events, sizeof(*m), 0);
	if (!m) {
		count(VIGIL_CNT_RB_LOST_CLONE);
		return 0;
	}
	m->hdr.kind = VIGIL_MSG_CLONE;
	m->hdr.pad[0] = m->hdr.pad[1] = m->hdr.pad[2] = 0;
	m->hdr.size = sizeof(*m);
	m->hdr.ktime = bpf_ktime_get_boot_ns();
	m->process = entry.key;
	m->parent = entry.parent;
	m->tid = tgid;
	m->ppid = ptgid;
	m->nspid = 0;
	m->flags = pe ? 0 : VIGIL_EXEC_NO_PARENT;
	bpf_ringbuf_submit(m, wakeup_flags());
	return 0;
}

/* ---- exit ----------------------------------------------------------------------------- */

/* Thread groups already reported, keyed by their signal_struct (shared by all threads). */
struct exit_key {
	__u64 signal;
	__u64 leader_start;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct exit_key);
	__type(value, __u8);
} vigil_exited SEC(".maps");

#define SIGNAL_GROUP_EXIT 0x00000004

SEC("tp_btf/sched_process_exit")
int BPF_PROG(vigil_exit, struct task_struct *task)
{
	struct signal_struct *sig = BPF_CORE_READ(task, signal);
	struct exit_key ek = {};
	struct vigil_proc_entry *e;
	struct vigil_exit_msg *m;
	struct vigil_proc_key key = {};
	__u32 flags = 0, code;
	__u8 one = 1;
	__u32 tgid;

	/* signal->live is decremented before this tracepoint: 0 means the group is dead. */
	if (BPF_CORE_READ(sig, live.counter) != 0)
		return 0;
	/*
	 * A thread that decremented earlier can reach this tracepoint after the last one and
	 * also see 0: the first to get here reports, once, for the whole group.
	 */
	/* A thread is released after this tracepoint, so a group that ever had other threads
	 * still counts them here; a single-threaded group cannot race and skips the map. */
	if (BPF_CORE_READ(sig, nr_threads) > 1) {
		ek.signal = (__u64)sig;
		ek.leader_start = BPF_CORE_READ(task, group_leader, start_time);
		if (bpf_map_update_elem(&vigil_exited, &ek, &one, BPF_NOEXIST))
			return 0;
	}
	tgid = BPF_CORE_READ(task, tgid);
	e = bpf_map_lookup_elem(&vigil_procs, &tgid);
	if (e) {
		key = e->key;
		bpf_map_delete_elem(&vigil_procs, &tgid);
	} else {
		key.pid = tgid;
		flags |= VIGIL_EXIT_NO_ENTRY;
		count(VIGIL_CNT_EXIT_NO_ENTRY);
	}
	if (vigil_cfg.rate_interval_ns && vigil_rate_throttled(task, bpf_ktime_get_boot_ns()))
		flags |= VIGIL_EXIT_THROTTLED;
	/* Whichever thread reports, the group's status is the one exit_group() recorded. */
	if (BPF_CORE_READ(sig, flags) & SIGNAL_GROUP_EXIT)
		code = BPF_CORE_READ(sig, group_exit_code);
	else
		code = BPF_CORE_READ(task, exit_code);
	m = bpf_ringbuf_reserve(&vigil_events, sizeof(*m), 0);
	if (!m) {
		count(VIGIL_CNT_RB_LOST_EXIT);
		return 0;
	}
	m->hdr.kind = VIGIL_MSG_EXIT;
	m->hdr.pad[0] = m->hdr.pad[1] = m->hdr.pad[2] = 0;
	m->hdr.size = sizeof(*m);
	m->hdr.ktime = bpf_ktime_get_boot_ns();
	m->process = key;
	m->tid = BPF_CORE_READ(task, pid);
	m->exit_code = code;
	m->flags = flags;
	m->pad = 0;
	bpf_ringbuf_submit(m, wakeup_flags());
	return 0;
}
