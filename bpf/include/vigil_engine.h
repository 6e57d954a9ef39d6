/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The in-kernel policy engine, independent of the hook kind. A program of any type (syscall
 * tracepoint, tracepoint, uprobe, ...) includes this header once and calls
 *
 *     engine_handle(ctx, hook_id, args, flags);
 *
 * with the hook id (usually the attach cookie) and VIGIL_ENGINE_NARGS raw 64-bit arguments.
 * Everything a policy says lives in the maps below, filled by the loader: argument readers
 * (vigil_sys_hooks), selectors (vigil_sys_selectors), string value sets (exact: hash; prefix
 * and postfix: LPM tries), binary sets (device + inode). No code is generated per policy.
 *
 * The process table, the event ring and the loss counters are the lifecycle sensor's, shared
 * by the loader (map fd reuse), so policy events are ordered with exec and exit events.
 */
#ifndef VIGIL_ENGINE_H
#define VIGIL_ENGINE_H

#include "vigil_abi.h"

/* Raw arguments an entry receives. */
#define VIGIL_ENGINE_NARGS 6

/* engine_handle flags. */
#define VIGIL_ENGINE_COMPAT (1u << 0) /* a 32-bit (ia32) system call */

#include "vigil_engine_maps.h"
#include "vigil_task.h"

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&vigil_counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline void hook_count(__u32 hook, __u32 which)
{
	__u32 idx = hook * VIGIL_HOOK_COUNTERS + which;
	__u64 *v = bpf_map_lookup_elem(&vigil_sys_counters, &idx);

	if (v)
		*v += 1;
}

/* Counts for the hook and for its selector. */
static __always_inline void sel_count(__u32 hook, __u32 sel, __u32 which)
{
	__u32 idx = ((hook * VIGIL_MAX_SELECTORS) + sel) * VIGIL_HOOK_COUNTERS + which;
	__u64 *v = bpf_map_lookup_elem(&vigil_sel_counters, &idx);

	if (v)
		*v += 1;
	hook_count(hook, which);
}

static __always_inline int monitor_mode(void)
{
	__u32 zero = 0;
	struct vigil_policy_conf *c = bpf_map_lookup_elem(&vigil_policy_conf, &zero);

	return c && c->mode == VIGIL_MODE_MONITOR;
}

/* ---- string operators ----------------------------------------------------------------- */

static __always_inline int str_equal(struct sys_scratch *s, __u32 row, __u32 set_id)
{
	__u32 len = s->st.str_len_full[row & 7] & 0x1ff;

	if (len > VIGIL_STR_MATCH)
		return 0; /* longer than any value a set can hold */
	__builtin_memset(&s->key, 0, sizeof(s->key));
	s->key.set_id = set_id;
	bpf_probe_read_kernel(s->key.data, len, s->st.strs[row & 7]);
	return bpf_map_lookup_elem(&vigil_str_eq, &s->key) != NULL;
}

static __always_inline int str_prefix(struct sys_scratch *s, __u32 row, __u32 set_id)
{
	__u32 len = s->st.str_len_full[row & 7];

	if (len > VIGIL_STR_MATCH)
		len = VIGIL_STR_MATCH;
	s->key.prefixlen = 32 + 8 * len;
	s->key.set_id = set_id;
	bpf_probe_read_kernel(s->key.data, VIGIL_STR_MATCH, s->st.strs[row & 7]);
	return bpf_map_lookup_elem(&vigil_str_prefix, &s->key) != NULL;
}

struct rev_ctx {
	__u32 row;
	__u32 len;
};

static long rev_step(__u32 i, struct rev_ctx *c)
{
	__u32 zero = 0;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	__u32 from;

	if (!s || i >= c->len)
		return 1;
	from = c->len - 1 - i;
	s->key.data[i & (VIGIL_STR_MATCH - 1)] =
		s->st.strs[c->row & 7][from & (VIGIL_ARG_STR_MAX - 1)];
	return 0;
}

static __always_inline int str_postfix(struct sys_scratch *s, __u32 row, __u32 set_id)
{
	struct rev_ctx c = { .row = row };
	__u32 len = s->st.str_len_full[row & 7];

	/* Postfix compares the last bytes: reversed into the key, then a prefix lookup. */
	if (len > VIGIL_ARG_STR_MAX)
		len = VIGIL_ARG_STR_MAX;
	c.len = len;
	__builtin_memset(&s->key, 0, sizeof(s->key));
	bpf_loop(VIGIL_STR_MATCH, rev_step, &c, 0);
	if (len > VIGIL_STR_MATCH)
		len = VIGIL_STR_MATCH;
	s->key.prefixlen = 32 + 8 * len;
	s->key.set_id = set_id;
	return bpf_map_lookup_elem(&vigil_str_postfix, &s->key) != NULL;
}

/*
 * The positive form of a string operator on one row: Equal, Prefix or Postfix. Equal and
 * Prefix first compare the bytes every value of the set starts with (up to 8, packed by the
 * loader in values[0], count in nvalues): most strings leave there, before any map lookup.
 */
static __always_inline int str_op(struct sys_scratch *s, __u32 row,
				  const struct vigil_arg_filter *f)
{
	__u32 n = f->nvalues;

	if (n && f->op != VIGIL_OP_POSTFIX && f->op != VIGIL_OP_NOT_POSTFIX) {
		__u64 first = *(__u64 *)s->st.strs[row & 7];
		__u64 mask = n >= 8 ? ~0ULL : ((1ULL << (8 * n)) - 1);

		if (s->st.str_len_full[row & 7] < n || ((first ^ (__u64)f->values[0]) & mask))
			return 0;
	}
	switch (f->op) {
	case VIGIL_OP_EQ:
	case VIGIL_OP_NEQ:
		return str_equal(s, row, f->set_id);
	case VIGIL_OP_PREFIX:
	case VIGIL_OP_NOT_PREFIX:
		return str_prefix(s, row, f->set_id);
	case VIGIL_OP_POSTFIX:
	case VIGIL_OP_NOT_POSTFIX:
		return str_postfix(s, row, f->set_id);
	}
	return 0;
}

/* ---- kernel-resolved paths (struct file -> path string) -------------------------------- */

struct fdpath_ctx {
	__u64 dentry;      /* struct dentry * */
	__u64 mnt;         /* struct mount * */
	__u64 root_dentry; /* the task's root: the walk stops there, as d_path does */
	__u64 root_mnt;    /* struct vfsmount * */
	__u32 pos;         /* start of the string in pathbuf (written backwards) */
	__u32 trunc;
};

static long fdpath_step(__u32 i, struct fdpath_ctx *c)
{
	__u32 zero = 0;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	struct dentry *d = (struct dentry *)c->dentry;
	struct mount *m = (struct mount *)c->mnt;
	struct dentry *parent, *mnt_root;
	struct mount *mnt_parent;
	struct qstr name;
	__u32 len;

	if (!s || !d || !m)
		return 1;
	if (c->dentry == c->root_dentry && (__u64)&m->mnt == c->root_mnt)
		return 1;
	mnt_root = BPF_CORE_READ(m, mnt.mnt_root);
	if (d == mnt_root) {
		mnt_parent = BPF_CORE_READ(m, mnt_parent);
		if (mnt_parent == m)
			return 1; /* top of the mount tree */
		c->dentry = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
		c->mnt = (__u64)mnt_parent;
		return 0;
	}
	parent = BPF_CORE_READ(d, d_parent);
	if (bpf_core_read(&name, sizeof(name), &d->d_name))
		return 1;
	len = name.len;
	/* Room for '/' + name, keeping pos >= 1 so that the string fits a row with its NUL. */
	if (len + 2 > c->pos) {
		c->trunc = 1;
		return 1;
	}
	c->pos -= len;
	bpf_probe_read_kernel(&s->pathbuf[c->pos & (VIGIL_ARG_STR_MAX - 1)],
			      len & (VIGIL_ARG_STR_MAX - 1), name.name);
	c->pos -= 1;
	s->pathbuf[c->pos & (VIGIL_ARG_STR_MAX - 1)] = '/';
	if (d == parent)
		return 1; /* disconnected dentry (pipe, memfd): its name is all there is */
	c->dentry = (__u64)parent;
	return 0;
}

/* Walks `file`'s path into pathbuf (s->path_pos, s->path_state). */
static __always_inline void resolve_file(struct sys_scratch *s, struct file *file)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdpath_ctx c = { .pos = VIGIL_ARG_STR_MAX };
	struct vfsmount *vfsmnt;

	s->path_state = 0;
	if (!file)
		return;
	c.dentry = (__u64)BPF_CORE_READ(file, f_path.dentry);
	vfsmnt = BPF_CORE_READ(file, f_path.mnt);
	c.mnt = (__u64)container_of(vfsmnt, struct mount, mnt);
	c.root_dentry = (__u64)BPF_CORE_READ(task, fs, root.dentry);
	c.root_mnt = (__u64)BPF_CORE_READ(task, fs, root.mnt);
	bpf_loop(VIGIL_PATH_DEPTH_MAX, fdpath_step, &c, 0);
	if (c.pos == VIGIL_ARG_STR_MAX) {
		c.pos -= 1;
		s->pathbuf[c.pos & (VIGIL_ARG_STR_MAX - 1)] = '/';
	}
	s->path_pos = c.pos;
	s->path_state = c.trunc ? 2 : 1;
}

/* Copies the resolved path into row VIGIL_ROW_PATH and marks the message. */
static __always_inline void place_path(struct sys_scratch *s)
{
	__u32 pos = s->path_pos & (VIGIL_ARG_STR_MAX - 1);
	__u32 len = (VIGIL_ARG_STR_MAX - pos) & (VIGIL_ARG_STR_MAX - 1);

	if (!s->path_state)
		return;
	bpf_probe_read_kernel(s->st.strs[VIGIL_ROW_PATH], len, &s->pathbuf[pos]);
	s->st.strs[VIGIL_ROW_PATH][len & (VIGIL_ARG_STR_MAX - 1)] = 0;
	s->st.str_len_full[VIGIL_ROW_PATH] = len;
	s->st.msg.path_len = len;
	s->st.msg.flags |= VIGIL_SYSMSG_PATH;
	if (s->path_state == 2)
		s->st.msg.flags |= VIGIL_SYSMSG_PATH_TRUNC;
}

/* The file behind descriptor `fd` of the current task, or NULL. */
static __always_inline struct file *fd_file(__s64 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *file = NULL;
	__u32 max;

	if (fd < 0 || !fdt)
		return NULL;
	max = BPF_CORE_READ(fdt, max_fds);
	if ((__u64)fd >= max)
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

/* ---- selectors ------------------------------------------------------------------------ */

/* Phases of evaluation: at entry, filters that need the exit (return value, resolved path)
 * are left for later; at exit, process filters already passed at entry. */
#define PHASE_ENTRY 0
#define PHASE_EXIT 1

/* String-valued argument kinds: user and kernel strings, and kernel objects read as a path
 * (vigil_kobj.h). */
static __always_inline int engine_arg_is_str(__u8 kind)
{
	return kind == VIGIL_ARG_STRING || kind == VIGIL_ARG_KSTRING ||
	       (kind >= VIGIL_ARG_KOBJ_FIRST && kind <= VIGIL_ARG_KOBJ_LAST);
}

static __always_inline int int_match(__s64 v, const struct vigil_arg_filter *f)
{
	int any = 0;

	for (int i = 0; i < VIGIL_MAX_INT_VALUES; i++) {
		__s64 want = f->values[i];

		if (i >= f->nvalues)
			break;
		switch (f->op) {
		case VIGIL_OP_EQ:
		case VIGIL_OP_NEQ:
			any |= v == want;
			break;
		case VIGIL_OP_GT:
			any |= v > want;
			break;
		case VIGIL_OP_LT:
			any |= v < want;
			break;
		case VIGIL_OP_MASK:
			any |= (v & want) != 0;
			break;
		}
	}
	return f->op == VIGIL_OP_NEQ ? !any : any;
}

static __always_inline int negated(__u32 op)
{
	return op == VIGIL_OP_NEQ || op == VIGIL_OP_NOT_PREFIX || op == VIGIL_OP_NOT_POSTFIX;
}

/*
 * 1: the filter holds; 0: it does not. `enforcing`: the selector has an enforcement action,
 * so an unreadable argument fails closed (holds) rather than letting the call through.
 *
 * Entry evaluates every filter but two kinds: return-value filters (exit), and the path
 * filters of open-like hooks when the user string does not decide them: a positive operator
 * that missed, or a negated one that did not hit, waits for the path the kernel opened
 * (`*deferred` is set). Exit evaluates only those two kinds; `deferred` says whether this
 * selector's path filters are still open.
 */
static __always_inline int filter_match(struct sys_scratch *s, const struct vigil_hook_cfg *h,
					const struct vigil_arg_filter *f, __u32 phase,
					int enforcing, __u32 *deferred, __u32 str_error)
{
	__u32 slot = f->slot & 7;
	int hit;

	if (slot == VIGIL_SLOT_RET)
		return phase == PHASE_ENTRY || int_match(s->st.msg.ret, f);
	if (slot >= VIGIL_MAX_ARGS)
		return 0;
	if ((h->flags & VIGIL_HOOK_FD_PATH) && slot == h->path_slot) {
		if (phase == PHASE_ENTRY) {
			if (!(str_error & (1u << slot))) {
				hit = str_op(s, slot, f);
				if (hit)
					return !negated(f->op);
			}
			*deferred = 1;
			return 1;
		}
		if (!*deferred)
			return 1; /* decided by the user string at entry */
		if (s->path_state == 1) {
			hit = str_op(s, VIGIL_ROW_PATH, f);
			return negated(f->op) ? !hit : hit;
		}
		/* No usable resolved path. A failed open touched nothing: the user string (which
		 * missed, or could not be read) decides. An open that succeeded on a path too deep
		 * to resolve, with an unreadable user string, fails closed. */
		if ((str_error & (1u << slot)) && s->st.msg.ret >= 0)
			goto unreadable;
		return negated(f->op);
	}
	if (phase == PHASE_EXIT)
		return 1; /* evaluated at entry */
	if (!engine_arg_is_str(h->arg_kind[slot]))
		return int_match(s->st.msg.ints[slot], f);
	if (str_error & (1u << slot))
		goto unreadable;
	hit = str_op(s, slot, f);
	return negated(f->op) ? !hit : hit;
unreadable:
	if (enforcing) {
		s->st.msg.flags |= VIGIL_SYSMSG_FAIL_CLOSED;
		return 1;
	}
	return 0;
}

#define VIGIL_ANCESTORS_MAX 32 /* generations walked by followForks / followChildren */

struct anc_ctx {
	__u32 sel_idx;
	__u32 pid;   /* the ancestor to look at next */
	__u64 ktime; /* its start time, against pid reuse (0: unknown) */
	__u32 bins;  /* look for a binary of the selector's set */
	__u32 found;
};

static __always_inline int pid_listed(const struct vigil_selector_cfg *sel, __u32 pid)
{
	int in = 0;

	for (int i = 0; i < VIGIL_MAX_PIDS; i++) {
		if (i >= sel->npids)
			break;
		in |= sel->pids[i] == pid;
	}
	return in;
}

/* One generation up the kernel process table (parent keys kept by the lifecycle sensor). */
static long anc_step(__u32 i, struct anc_ctx *c)
{
	struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &c->sel_idx);
	struct vigil_proc_entry *e;

	if (!sel || !c->pid)
		return 1;
	e = bpf_map_lookup_elem(&vigil_procs, &c->pid);
	if (!e || (c->ktime && e->key.ktime != c->ktime))
		return 1; /* gone, or the pid now names another process */
	if (c->bins) {
		struct vigil_bin_key bk = {
			.set_id = sel->bin_set_id,
			.ino = e->bin_ino,
			.dev = e->bin_dev,
		};

		if (bpf_map_lookup_elem(&vigil_bin_set, &bk)) {
			c->found = 1;
			return 1;
		}
	} else if (pid_listed(sel, c->pid)) {
		c->found = 1;
		return 1;
	}
	c->pid = e->parent.pid;
	c->ktime = e->parent.ktime;
	return 0;
}

/* Whether an ancestor of `proc` is listed (bins: in the binary set; else in matchPIDs). */
static __always_inline int ancestor_listed(__u32 sel_idx, struct vigil_proc_entry *proc, __u32 bins)
{
	struct anc_ctx c = { .sel_idx = sel_idx, .bins = bins };

	if (!proc)
		return 0;
	c.pid = proc->parent.pid;
	c.ktime = proc->parent.ktime;
	bpf_loop(VIGIL_ANCESTORS_MAX, anc_step, &c, 0);
	return c.found;
}

struct nsanc_ctx {
	__u32 sel_idx;
	__u32 found;
	struct task_struct *task; /* the task whose parent is looked at next */
};

/* One generation up the kernel's task tree, comparing pid-namespace pids (isNamespacePID:
 * the process table keeps host pids only). Stops below the idle task (host pid 0). */
static long nsanc_step(__u32 i, struct nsanc_ctx *c)
{
	struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &c->sel_idx);
	struct task_struct *task = c->task, *parent;

	if (!sel || !task)
		return 1;
	parent = BPF_CORE_READ(task, real_parent, group_leader);
	if (!parent || BPF_CORE_READ(parent, tgid) == 0)
		return 1;
	if (pid_listed(sel, task_nspid(parent, NULL))) {
		c->found = 1;
		return 1;
	}
	c->task = parent;
	return 0;
}

struct ns_ctx {
	__u32 sel_idx;
	__u32 result;
};

/* One matchNamespaces entry per bpf_loop iteration (verified once, like filter_step): only
 * the namespace the entry names is read. */
static long ns_step(__u32 i, struct ns_ctx *c)
{
	struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &c->sel_idx);
	const struct vigil_ns_filter *f;
	__u32 v;
	int in = 0;

	if (!sel || i >= sel->nns) {
		if (!sel)
			c->result = 0;
		return 1;
	}
	asm volatile("" : "+r"(i));
	if (i >= VIGIL_MAX_NS_FILTERS)
		return 1;
	f = &sel->ns[i];
	v = task_namespace((void *)bpf_get_current_task(), f->kind);
	for (int j = 0; j < VIGIL_MAX_NS_VALUES; j++) {
		if (j >= f->nvalues)
			break;
		in |= f->values[j] == v;
	}
	if ((f->op == VIGIL_OP_IN) != in) {
		c->result = 0;
		return 1;
	}
	return 0;
}

/* Whether a parent, grandparent, ... of `task` has a listed pid-namespace pid. */
static __always_inline int ns_ancestor_listed(__u32 sel_idx, struct task_struct *task)
{
	struct nsanc_ctx c = { .sel_idx = sel_idx, .task = task };

	bpf_loop(VIGIL_ANCESTORS_MAX, nsanc_step, &c, 0);
	return c.found;
}

/* matchNamespaces: every entry holds for the current task. */
static __always_inline int namespaces_match(__u32 sel_idx)
{
	struct ns_ctx c = { .sel_idx = sel_idx, .result = 1 };

	bpf_loop(VIGIL_MAX_NS_FILTERS, ns_step, &c, 0);
	return c.result;
}

/*
 * matchPIDs isNamespacePID and matchNamespaces of selector `sel_idx` for the current task.
 * A global function: the verifier checks it once on its own instead of in every context that
 * reaches it, so policies that do not use these selectors do not pay for them at load.
 */
__noinline int vigil_ns_select(__u32 sel_idx)
{
	struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &sel_idx);
	struct task_struct *task;
	int in;

	if (!sel)
		return 0;
	if ((sel->flags & VIGIL_SEL_NS_PID) && sel->pid_op) {
		task = BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), group_leader);
		in = pid_listed(sel, task_nspid(task, NULL));
		if (!in && (sel->flags & VIGIL_SEL_FOLLOW_FORKS))
			in = ns_ancestor_listed(sel_idx, task);
		if ((sel->pid_op == VIGIL_OP_IN) != in)
			return 0;
	}
	return !sel->nns || namespaces_match(sel_idx);
}

/* Process-level filters (PIDs, binaries): evaluated at entry only. followForks and
 * followChildren extend them to descendants: the process or one of its ancestors. */
static __always_inline int process_match(const struct vigil_selector_cfg *sel, __u32 sel_idx,
					 __u32 tgid, struct vigil_proc_entry *proc)
{
	if (((sel->flags & VIGIL_SEL_NS_PID) && sel->pid_op) || sel->nns) {
		if (!vigil_ns_select(sel_idx))
			return 0;
	} else if (sel->pid_op) {
		int in = pid_listed(sel, tgid);

		if (!in && (sel->flags & VIGIL_SEL_FOLLOW_FORKS))
			in = ancestor_listed(sel_idx, proc, 0);
		if ((sel->pid_op == VIGIL_OP_IN) != in)
			return 0;
	}
	if (sel->bin_op) {
		struct vigil_bin_key bk = { .set_id = sel->bin_set_id };
		int in;

		if (proc) {
			bk.ino = proc->bin_ino;
			bk.dev = proc->bin_dev;
		}
		in = proc && bpf_map_lookup_elem(&vigil_bin_set, &bk) != NULL;
		if (!in && (sel->flags & VIGIL_SEL_FOLLOW_CHILDREN))
			in = ancestor_listed(sel_idx, proc, 1);
		if ((sel->bin_op == VIGIL_OP_IN) != in)
			return 0;
	}
	return 1;
}

struct filters_ctx {
	__u32 hook;
	__u32 sel_idx; /* index in vigil_sys_selectors */
	__u32 phase;
	__u32 result;
	__u32 deferred;  /* entry: set when a path filter waits; exit: whether it waited */
	__u32 str_error; /* arguments that could not be read */
};

/*
 * One filter per bpf_loop iteration: the verifier checks the callback once instead of every
 * (selector, filter) combination unrolled, which keeps the program within its limits on
 * every kernel. Map values are looked up again here (callbacks get only the context).
 */
static long filter_step(__u32 i, struct filters_ctx *c)
{
	__u32 zero = 0;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	struct vigil_hook_cfg *h = bpf_map_lookup_elem(&vigil_sys_hooks, &c->hook);
	struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &c->sel_idx);
	int enforcing;

	if (!s || !h || !sel) {
		c->result = 0;
		return 1;
	}
	if (i >= sel->nfilters)
		return 1;
	/* Keep the compiler from merging this bound into the one above: the verifier needs it. */
	asm volatile("" : "+r"(i));
	if (i >= VIGIL_MAX_ARG_FILTERS)
		return 1;
	enforcing = (sel->actions | sel->ret_actions) & (VIGIL_ACT_SIGKILL | VIGIL_ACT_SIGNAL);
	if (!filter_match(s, h, &sel->filters[i], c->phase, enforcing, &c->deferred,
			  c->str_error)) {
		c->result = 0;
		return 1;
	}
	return 0;
}

/* `deferred`: in at exit (this selector waited for the path), out at entry. */
static __always_inline int args_match(__u32 hook, __u32 sel_idx, const struct vigil_selector_cfg *sel,
				      __u32 phase, __u32 *deferred, __u32 str_error)
{
	struct filters_ctx c = {
		.hook = hook,
		.sel_idx = sel_idx,
		.phase = phase,
		.result = 1,
		.deferred = *deferred,
		.str_error = str_error,
	};

	if (!sel->nfilters)
		return 1;
	bpf_loop(VIGIL_MAX_ARG_FILTERS, filter_step, &c, 0);
	*deferred = c.deferred;
	return c.result;
}

/* ---- arguments ------------------------------------------------------------------------ */

/* Reads the hook's arguments; strings only for the slots in `strs` (a string costs a user
 * memory copy: entry reads those the filters need, the rest only when a selector matched). */
static __always_inline void read_args(struct sys_scratch *s, const struct vigil_hook_cfg *h,
				      const __u64 *regs, __u32 strs)
{
	for (int i = 0; i < VIGIL_MAX_ARGS; i++) {
		__u32 ai;
		__u64 raw;
		long n;

		if (i >= h->nargs)
			break;
		if ((engine_arg_is_str(h->arg_kind[i]) || h->arg_kind[i] == VIGIL_ARG_BUF) &&
		    !((strs >> i) & 1))
			continue;
		s->st.msg.str_len[i] = 0;
		s->st.str_len_full[i] = 0;
		s->st.msg.ints[i] = 0;
		ai = h->arg_index[i] & 7;
		if (ai >= VIGIL_ENGINE_NARGS)
			ai = VIGIL_ENGINE_NARGS - 1; /* the loader refuses such indices */
		raw = regs[ai];
		switch (h->arg_kind[i]) {
		case VIGIL_ARG_INT:
			s->st.msg.ints[i] = (__s32)raw;
			break;
		case VIGIL_ARG_UINT32:
			s->st.msg.ints[i] = (__u32)raw;
			break;
		case VIGIL_ARG_INT64:
		case VIGIL_ARG_UINT64:
			s->st.msg.ints[i] = (__s64)raw;
			break;
		case VIGIL_ARG_BUF: {
			__u32 si = h->size_index[i] & 7;
			__u64 want;
			__u32 n;

			if (si >= VIGIL_ENGINE_NARGS)
				si = VIGIL_ENGINE_NARGS - 1; /* the loader refuses such indices */
			want = regs[si];
			/* The count asked for: the event says how much was cut (never silently). */
			s->st.msg.ints[i] = (__s64)want;
			n = want < VIGIL_ARG_STR_MAX - 1 ? (__u32)want : VIGIL_ARG_STR_MAX - 1;
			n &= VIGIL_ARG_STR_MAX - 1;
			if (n && bpf_probe_read_user(s->st.strs[i], n, (void *)raw)) {
				s->st.msg.str_error |= 1u << i;
				break;
			}
			s->st.str_len_full[i] = n;
			s->st.msg.str_len[i] = n;
			if (want > n)
				s->st.msg.str_trunc |= 1u << i;
			break;
		}
		case VIGIL_ARG_STRING:
		case VIGIL_ARG_KSTRING:
			/* Strings of tracepoint records and raw tracepoints live in the kernel. */
			if (h->arg_kind[i] == VIGIL_ARG_KSTRING)
				n = bpf_probe_read_kernel_str(s->st.strs[i], VIGIL_ARG_STR_MAX,
							      (void *)raw);
			else
				n = bpf_probe_read_user_str(s->st.strs[i], VIGIL_ARG_STR_MAX,
							    (void *)raw);
			if (n <= 0) {
				s->st.msg.str_error |= 1u << i;
				break;
			}
			s->st.str_len_full[i] = n - 1;
			s->st.msg.str_len[i] = n - 1;
			/* A full buffer may be a cut string: the kernel wrote 255 bytes and a NUL. */
			if (n == VIGIL_ARG_STR_MAX)
				s->st.msg.str_trunc |= 1u << i;
			break;
#ifdef VIGIL_KOBJ_H
		default: {
			/* Kernel objects of kernel-function/LSM hooks (vigil_kobj.h). */
			__u32 trunc = 0;

			n = kobj_read(s->st.strs[i], h->arg_kind[i], raw, &s->st.msg.ints[i], &trunc);
			if (n < 0) {
				s->st.msg.str_error |= 1u << i;
				break;
			}
			s->st.str_len_full[i] = n;
			s->st.msg.str_len[i] = n;
			if (trunc)
				s->st.msg.str_trunc |= 1u << i;
			break;
		}
#endif
		}
	}
}

/* ---- actions and posting -------------------------------------------------------------- */

static __always_inline void post(struct sys_scratch *s, __u32 hook, __u32 selector)
{
	struct vigil_syscall_msg *m = &s->st.msg;
	__u32 total = sizeof(*m), off = sizeof(*m), plen = 0;
	struct bpf_dynptr rec;

	for (int i = 0; i < VIGIL_MAX_ARGS; i++)
		total += m->str_len[i] & (VIGIL_ARG_STR_MAX - 1);
	if (m->flags & VIGIL_SYSMSG_PATH)
		plen = m->path_len & (VIGIL_ARG_STR_MAX - 1);
	m->path_len = plen;
	total += plen;
	m->hdr.size = total;
	if (bpf_ringbuf_reserve_dynptr(&vigil_events, total, 0, &rec)) {
		bpf_ringbuf_discard_dynptr(&rec, 0);
		count(VIGIL_CNT_RB_LOST_POLICY);
		sel_count(hook, selector, VIGIL_HOOK_DROPPED);
		return;
	}
	bpf_dynptr_write(&rec, 0, m, sizeof(*m), 0);
	for (int i = 0; i < VIGIL_MAX_ARGS; i++) {
		__u32 len = m->str_len[i] & (VIGIL_ARG_STR_MAX - 1);

		bpf_dynptr_write(&rec, off, s->st.strs[i], len, 0);
		off += len;
	}
	bpf_dynptr_write(&rec, off, s->st.strs[VIGIL_ROW_PATH], plen, 0);
	bpf_ringbuf_submit_dynptr(&rec, wakeup_flags());
	sel_count(hook, selector, VIGIL_HOOK_POSTED);
}

/* Post rateLimit: 1 when this post must be skipped (another one within the interval). */
static __always_inline int rate_limited(const struct vigil_selector_cfg *sel, __u32 hook,
					__u32 selector, __u64 pid_tgid, __u64 now)
{
	struct rate_key k = { .hook = hook, .selector = selector };
	__u64 *last;

	if (!sel->rate_ns)
		return 0;
	if (sel->flags & VIGIL_SEL_RATE_GLOBAL)
		k.scope = 0;
	else if (sel->flags & VIGIL_SEL_RATE_PROCESS)
		k.scope = pid_tgid >> 32;
	else
		k.scope = pid_tgid;
	last = bpf_map_lookup_elem(&vigil_rate, &k);
	if (last && now - *last < sel->rate_ns)
		return 1;
	bpf_map_update_elem(&vigil_rate, &k, &now, BPF_ANY);
	return 0;
}

/* Runs selector `matched`'s actions (enforcement first: it must not depend on ring space),
 * then posts. `actions` are the bits that apply in this phase. */
static __always_inline int act(struct sys_scratch *s, __u32 hook, __u32 matched,
				const struct vigil_selector_cfg *sel, __u32 actions,
				__u64 pid_tgid, struct vigil_proc_entry *proc)
{
	struct vigil_syscall_msg *m = &s->st.msg;
	__u32 tgid = pid_tgid >> 32;
	int monitor = monitor_mode();
	int verdict = 0;

	sel_count(hook, matched, VIGIL_HOOK_MATCHED);
	m->monitor = monitor;
	m->signal = sel->signal;
	if (actions & (VIGIL_ACT_SIGKILL | VIGIL_ACT_SIGNAL)) {
		if (monitor) {
			sel_count(hook, matched, VIGIL_HOOK_MONITOR);
		} else {
			bpf_send_signal((actions & VIGIL_ACT_SIGKILL) ? 9 : sel->signal);
			sel_count(hook, matched, VIGIL_HOOK_ENFORCED);
		}
	}
	/* Override: what an fmod_ret/LSM program returns instead of running the function. */
	if (actions & VIGIL_ACT_OVERRIDE) {
		if (monitor) {
			sel_count(hook, matched, VIGIL_HOOK_MONITOR);
		} else {
			verdict = sel->override_rc;
			sel_count(hook, matched, VIGIL_HOOK_ENFORCED);
		}
	}
	if (!(actions & VIGIL_ACT_POST))
		return verdict;
	m->hdr.ktime = bpf_ktime_get_boot_ns();
	if (rate_limited(sel, hook, matched, pid_tgid, m->hdr.ktime)) {
		sel_count(hook, matched, VIGIL_HOOK_RATE_LIMITED);
		return verdict;
	}
	m->hdr.kind = VIGIL_MSG_SYSCALL;
	m->hdr.pad[0] = m->hdr.pad[1] = m->hdr.pad[2] = 0;
	if (proc) {
		m->process = proc->key;
	} else {
		m->process.pid = tgid;
		m->process.pad = 0;
		m->process.ktime = 0;
	}
	m->tid = (__u32)pid_tgid;
	m->hook_id = hook;
	m->selector = matched;
	post(s, hook, matched);
	return verdict;
}

struct sels_ctx {
	__u32 hook;
	__u32 tgid;
	__u32 phase;
	__u32 pairs_exit; /* entry: collect candidates for the exit instead of stopping */
	__u32 candidates; /* entry: out; exit: in */
	__u32 deferred;   /* entry: out; exit: in */
	__u32 str_error;
	__s32 matched;
};

/*
 * One selector per bpf_loop iteration (the verifier checks the callback once, not five
 * unrolled copies). Entry: process filters, then argument filters; exit: the filters left
 * open by entry, for the selectors entry kept.
 */
static long sel_step(__u32 i, struct sels_ctx *c)
{
	__u32 idx = c->hook * VIGIL_MAX_SELECTORS + i;
	struct vigil_selector_cfg *sel;
	struct vigil_proc_entry *proc;
	__u32 deferred = 0;

	if (i >= VIGIL_MAX_SELECTORS)
		return 1;
	sel = bpf_map_lookup_elem(&vigil_sys_selectors, &idx);
	if (!sel)
		return 0;
	if (c->phase == PHASE_EXIT) {
		if (!((c->candidates >> i) & 1))
			return 0;
		deferred = (c->deferred >> i) & 1;
		if (args_match(c->hook, idx, sel, PHASE_EXIT, &deferred, c->str_error)) {
			c->matched = i;
			return 1;
		}
		return 0;
	}
	proc = bpf_map_lookup_elem(&vigil_procs, &c->tgid);
	if (!process_match(sel, idx, c->tgid, proc) ||
	    !args_match(c->hook, idx, sel, PHASE_ENTRY, &deferred, c->str_error))
		return 0;
	if (c->pairs_exit) {
		c->candidates |= 1u << i;
		if (deferred)
			c->deferred |= 1u << i;
		return 0;
	}
	c->matched = i;
	return 1;
}

static __always_inline void reset_msg(struct sys_scratch *s, __u32 compat)
{
	s->st.msg.str_error = 0;
	s->st.msg.str_trunc = 0;
	s->st.msg.compat = compat;
	s->st.msg.pad = 0;
	s->st.msg.flags = 0;
	s->st.msg.ret = 0;
	s->st.msg.ret_actions = 0;
	s->st.msg.path_len = 0;
	s->st.msg.actions = 0;
	for (int i = 0; i < VIGIL_MAX_ARGS; i++) {
		s->st.msg.str_len[i] = 0;
		s->st.str_len_full[i] = 0;
	}
}

/*
 * THE ENTRY: run hook `hook`'s selectors over `args` (VIGIL_ENGINE_NARGS raw values, in the
 * hook's native order: syscall arguments, tracepoint fields, uprobe registers) and act.
 * Callable from any program type; `ctx` is the program's context (kept for helpers that need
 * it, e.g. stack traces); `flags` is VIGIL_ENGINE_* bits. Always returns 0.
 *
 * Hooks with VIGIL_HOOK_EXIT keep what their exit (engine_handle_exit) needs: the selectors
 * that passed the entry-time filters are finished there.
 */
static __always_inline int engine_handle(void *ctx, __u32 hook, const __u64 *args, __u32 flags)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, zero = 0, candidates = 0, deferred_mask = 0;
	struct vigil_hook_cfg *h = bpf_map_lookup_elem(&vigil_sys_hooks, &hook);
	struct vigil_proc_entry *proc;
	struct sys_scratch *s;
	int matched = -1;

	if (!h || !h->nselectors)
		return 0;
	s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	if (!s)
		return 0;
	proc = bpf_map_lookup_elem(&vigil_procs, &tgid);
	reset_msg(s, (flags & VIGIL_ENGINE_COMPAT) ? 1 : 0);
	read_args(s, h, args, h->filter_strs);

	{
		struct sels_ctx c = {
			.hook = hook,
			.tgid = tgid,
			.phase = PHASE_ENTRY,
			.pairs_exit = (h->flags & VIGIL_HOOK_EXIT) ? 1 : 0,
			.str_error = s->st.msg.str_error,
			.matched = -1,
		};

		bpf_loop(h->nselectors, sel_step, &c, 0);
		candidates = c.candidates;
		deferred_mask = c.deferred;
		matched = c.matched;
	}
	if (h->flags & VIGIL_HOOK_EXIT) {
		if (!candidates)
			return 0;
		if (h->flags & VIGIL_HOOK_FD_PATH) {
			struct pending_open po = {
				.hook = hook,
				.candidates = candidates,
				.deferred = deferred_mask,
				.str_error = s->st.msg.str_error,
				.compat = s->st.msg.compat,
			};

			__builtin_memcpy(po.args, args, sizeof(po.args));
			if (bpf_map_update_elem(&vigil_pending_open, &pid_tgid, &po, BPF_ANY))
				hook_count(hook, VIGIL_HOOK_PENDING_LOST);
			return 0;
		}
		/* The exit of other calls may find their memory gone (execve): read it all now. */
		read_args(s, h, args, ~(__u32)h->filter_strs);
		s->st.candidates = candidates;
		s->st.deferred = deferred_mask;
		s->st.msg.hook_id = hook;
		if (bpf_map_update_elem(&vigil_pending, &pid_tgid, &s->st, BPF_ANY))
			hook_count(hook, VIGIL_HOOK_PENDING_LOST);
		return 0;
	}
	if (matched < 0)
		return 0;
	{
		__u32 idx = hook * VIGIL_MAX_SELECTORS + (matched & 7);
		struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &idx);

		if (!sel)
			return 0;
		read_args(s, h, args, ~(__u32)h->filter_strs);
		s->st.msg.actions = sel->actions;
		/* fmod_ret/LSM programs return this: the Override value when enforcing, else 0. */
		return act(s, hook, matched, sel, sel->actions, pid_tgid, proc);
	}
}

/*
 * The paired exit of a VIGIL_HOOK_EXIT hook: `ret` is the return value. Resolves the returned
 * fd's path when the hook asks for it, finishes the selectors that passed at entry (return
 * filters, path filters left open), then runs matchActions and matchReturnActions and posts
 * one event with the arguments and the return value.
 */
static __always_inline int engine_handle_exit(void *ctx, __u32 hook, __s64 ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, zero = 0, candidates, deferred_mask, str_error;
	struct vigil_hook_cfg *h = bpf_map_lookup_elem(&vigil_sys_hooks, &hook);
	struct vigil_proc_entry *proc;
	struct pending_open *po = NULL;
	struct engine_state *p = NULL;
	struct sys_scratch *s;
	int matched = -1;

	if (!h)
		return 0;
	if (h->flags & VIGIL_HOOK_FD_PATH) {
		po = bpf_map_lookup_elem(&vigil_pending_open, &pid_tgid);
		if (!po)
			return 0;
		if (po->hook != hook) {
			bpf_map_delete_elem(&vigil_pending_open, &pid_tgid);
			return 0;
		}
		candidates = po->candidates;
		deferred_mask = po->deferred;
		str_error = po->str_error;
	} else {
		p = bpf_map_lookup_elem(&vigil_pending, &pid_tgid);
		if (!p)
			return 0;
		if (p->msg.hook_id != hook) {
			bpf_map_delete_elem(&vigil_pending, &pid_tgid);
			return 0;
		}
		candidates = p->candidates;
		deferred_mask = p->deferred;
		str_error = p->msg.str_error;
	}
	s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	if (!s)
		goto done;
	s->st.msg.ret = ret;
	s->st.msg.flags = 0;
	s->path_state = 0;
	if ((h->flags & VIGIL_HOOK_FD_PATH) && ret >= 0) {
		resolve_file(s, fd_file(ret));
		place_path(s);
	}

	{
		struct sels_ctx c = {
			.hook = hook,
			.tgid = tgid,
			.phase = PHASE_EXIT,
			.candidates = candidates,
			.deferred = deferred_mask,
			.str_error = str_error,
			.matched = -1,
		};

		bpf_loop(h->nselectors, sel_step, &c, 0);
		matched = c.matched;
	}
	if (matched < 0)
		goto done;
	/* A match: now (only now) bring back the arguments. */
	if (po) {
		__u64 args[VIGIL_ENGINE_NARGS];
		__u32 fail_closed = s->st.msg.flags & VIGIL_SYSMSG_FAIL_CLOSED;

		__builtin_memcpy(args, po->args, sizeof(args));
		reset_msg(s, po->compat);
		read_args(s, h, args, ~0u);
		s->st.msg.flags |= fail_closed;
	} else if (p) {
		__u32 fail_closed = s->st.msg.flags & VIGIL_SYSMSG_FAIL_CLOSED;

		bpf_probe_read_kernel(&s->st, sizeof(s->st), p);
		s->st.msg.flags |= fail_closed;
	}
	s->st.msg.ret = ret;
	s->st.msg.flags |= VIGIL_SYSMSG_RETURN;
	place_path(s);
	proc = bpf_map_lookup_elem(&vigil_procs, &tgid);
	{
		__u32 idx = hook * VIGIL_MAX_SELECTORS + (matched & 7);
		struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &idx);

		if (sel) {
			s->st.msg.actions = sel->actions;
			s->st.msg.ret_actions = sel->ret_actions;
			act(s, hook, matched, sel, sel->actions | sel->ret_actions, pid_tgid, proc);
		}
	}
done:
	if (po)
		bpf_map_delete_elem(&vigil_pending_open, &pid_tgid);
	else
		bpf_map_delete_elem(&vigil_pending, &pid_tgid);
	return 0;
}

#endif
