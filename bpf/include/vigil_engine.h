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

/* The positive form of a string operator on one row: Equal, Prefix or Postfix. */
static __always_inline int str_op(struct sys_scratch *s, __u32 row, __u32 op, __u32 set_id)
{
	switch (op) {
	case VIGIL_OP_EQ:
	case VIGIL_OP_NEQ:
		return str_equal(s, row, set_id);
	case VIGIL_OP_PREFIX:
	case VIGIL_OP_NOT_PREFIX:
		return str_prefix(s, row, set_id);
	case VIGIL_OP_POSTFIX:
	case VIGIL_OP_NOT_POSTFIX:
		return str_postfix(s, row, set_id);
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

/* Resolves `file` to a path in row VIGIL_ROW_PATH. Returns 1 when a complete path is there. */
static __always_inline int resolve_file(struct sys_scratch *s, struct file *file)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdpath_ctx c = { .pos = VIGIL_ARG_STR_MAX };
	struct vfsmount *vfsmnt;
	__u32 len;

	if (!file)
		return 0;
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
	len = (VIGIL_ARG_STR_MAX - c.pos) & (VIGIL_ARG_STR_MAX - 1);
	bpf_probe_read_kernel(s->st.strs[VIGIL_ROW_PATH], len,
			      &s->pathbuf[c.pos & (VIGIL_ARG_STR_MAX - 1)]);
	s->st.strs[VIGIL_ROW_PATH][len & (VIGIL_ARG_STR_MAX - 1)] = 0;
	s->st.str_len_full[VIGIL_ROW_PATH] = len;
	s->st.msg.path_len = len;
	s->st.msg.flags |= VIGIL_SYSMSG_PATH;
	if (c.trunc) {
		s->st.msg.flags |= VIGIL_SYSMSG_PATH_TRUNC;
		return 0;
	}
	return 1;
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

/* 1: the filter holds; 0: it does not. `enforcing`: the selector has an enforcement action,
 * so an unreadable argument fails closed (holds) rather than letting the call through. */
static __always_inline int filter_match(struct sys_scratch *s, const struct vigil_hook_cfg *h,
					const struct vigil_arg_filter *f, __u32 phase,
					int enforcing)
{
	__u32 slot = f->slot & 7;
	int hit;

	if (slot == VIGIL_SLOT_RET)
		return phase == PHASE_ENTRY || int_match(s->st.msg.ret, f);
	if (slot >= VIGIL_MAX_ARGS)
		return 0;
	if (h->arg_kind[slot] != VIGIL_ARG_STRING && h->arg_kind[slot] != VIGIL_ARG_KSTRING)
		return int_match(s->st.msg.ints[slot], f);
	if ((h->flags & VIGIL_HOOK_FD_PATH) && slot == h->path_slot) {
		/* Decided at exit against the user string and the kernel-resolved path. */
		if (phase == PHASE_ENTRY)
			return 1;
		hit = 0;
		if (!(s->st.msg.str_error & (1u << slot)))
			hit = str_op(s, slot, f->op, f->set_id);
		if (!hit && (s->st.msg.flags & VIGIL_SYSMSG_PATH) &&
		    !(s->st.msg.flags & VIGIL_SYSMSG_PATH_TRUNC))
			hit = str_op(s, VIGIL_ROW_PATH, f->op, f->set_id);
		else if (!hit && (s->st.msg.str_error & (1u << slot)))
			goto unreadable;
		return negated(f->op) ? !hit : hit;
	}
	if (s->st.msg.str_error & (1u << slot))
		goto unreadable;
	hit = str_op(s, slot, f->op, f->set_id);
	return negated(f->op) ? !hit : hit;
unreadable:
	if (enforcing) {
		s->st.msg.flags |= VIGIL_SYSMSG_FAIL_CLOSED;
		return 1;
	}
	return 0;
}

/* Process-level filters (PIDs, binaries): evaluated at entry only. */
static __always_inline int process_match(const struct vigil_selector_cfg *sel, __u32 tgid,
					 struct vigil_proc_entry *proc)
{
	if (sel->pid_op) {
		int in = 0;

		for (int i = 0; i < VIGIL_MAX_PIDS; i++) {
			if (i >= sel->npids)
				break;
			in |= sel->pids[i] == tgid;
		}
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
	if (!filter_match(s, h, &sel->filters[i], c->phase, enforcing)) {
		c->result = 0;
		return 1;
	}
	return 0;
}

static __always_inline int args_match(__u32 hook, __u32 sel_idx, const struct vigil_selector_cfg *sel,
				      __u32 phase)
{
	struct filters_ctx c = { .hook = hook, .sel_idx = sel_idx, .phase = phase, .result = 1 };

	if (!sel->nfilters)
		return 1;
	bpf_loop(VIGIL_MAX_ARG_FILTERS, filter_step, &c, 0);
	return c.result;
}

/* ---- arguments ------------------------------------------------------------------------ */

static __always_inline void read_args(struct sys_scratch *s, const struct vigil_hook_cfg *h,
				      const __u64 *regs)
{
	for (int i = 0; i < VIGIL_MAX_ARGS; i++) {
		__u32 ai;
		__u64 raw;
		long n;

		s->st.msg.str_len[i] = 0;
		s->st.str_len_full[i] = 0;
		s->st.msg.ints[i] = 0;
		if (i >= h->nargs)
			break;
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
static __always_inline void act(struct sys_scratch *s, __u32 hook, __u32 matched,
				const struct vigil_selector_cfg *sel, __u32 actions,
				__u64 pid_tgid, struct vigil_proc_entry *proc)
{
	struct vigil_syscall_msg *m = &s->st.msg;
	__u32 tgid = pid_tgid >> 32;
	int monitor = monitor_mode();

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
	if (!(actions & VIGIL_ACT_POST))
		return;
	m->hdr.ktime = bpf_ktime_get_boot_ns();
	if (rate_limited(sel, hook, matched, pid_tgid, m->hdr.ktime)) {
		sel_count(hook, matched, VIGIL_HOOK_RATE_LIMITED);
		return;
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
}

/*
 * THE ENTRY: run hook `hook`'s selectors over `args` (VIGIL_ENGINE_NARGS raw values, in the
 * hook's native order: syscall arguments, tracepoint fields, uprobe registers) and act.
 * Callable from any program type; `ctx` is the program's context (kept for helpers that need
 * it, e.g. stack traces); `flags` is VIGIL_ENGINE_* bits. Always returns 0.
 *
 * Hooks with VIGIL_HOOK_EXIT keep what they read for their exit (engine_handle_exit): the
 * selectors that passed the entry-time filters are finished there.
 */
static __always_inline int engine_handle(void *ctx, __u32 hook, const __u64 *args, __u32 flags)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, zero = 0, candidates = 0;
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
	s->st.msg.str_error = 0;
	s->st.msg.str_trunc = 0;
	s->st.msg.compat = (flags & VIGIL_ENGINE_COMPAT) ? 1 : 0;
	s->st.msg.pad = 0;
	s->st.msg.flags = 0;
	s->st.msg.ret = 0;
	s->st.msg.ret_actions = 0;
	s->st.msg.path_len = 0;
	s->st.msg.actions = 0;
	read_args(s, h, args);

	for (int i = 0; i < VIGIL_MAX_SELECTORS; i++) {
		__u32 idx = hook * VIGIL_MAX_SELECTORS + i;
		struct vigil_selector_cfg *sel;

		if (i >= h->nselectors)
			break;
		sel = bpf_map_lookup_elem(&vigil_sys_selectors, &idx);
		if (!sel || !process_match(sel, tgid, proc) || !args_match(hook, idx, sel, PHASE_ENTRY))
			continue;
		if (h->flags & VIGIL_HOOK_EXIT) {
			candidates |= 1u << i;
			continue;
		}
		matched = i;
		break;
	}
	if (h->flags & VIGIL_HOOK_EXIT) {
		if (!candidates)
			return 0;
		s->st.candidates = candidates;
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
		s->st.msg.actions = sel->actions;
		act(s, hook, matched, sel, sel->actions, pid_tgid, proc);
	}
	return 0;
}

/*
 * The paired exit of a VIGIL_HOOK_EXIT hook: `ret` is the return value. Resolves the returned
 * fd's path when the hook asks for it, finishes the selectors that passed at entry (return
 * filters, path filters), runs matchActions and matchReturnActions, posts one event with
 * arguments and return value.
 */
static __always_inline int engine_handle_exit(void *ctx, __u32 hook, __s64 ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, zero = 0;
	struct vigil_hook_cfg *h = bpf_map_lookup_elem(&vigil_sys_hooks, &hook);
	struct vigil_proc_entry *proc;
	struct engine_state *p;
	struct sys_scratch *s;
	int matched = -1;

	p = bpf_map_lookup_elem(&vigil_pending, &pid_tgid);
	if (!p)
		return 0;
	s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	if (!h || !s || p->msg.hook_id != hook) {
		bpf_map_delete_elem(&vigil_pending, &pid_tgid);
		return 0;
	}
	bpf_probe_read_kernel(&s->st, sizeof(s->st), p);
	bpf_map_delete_elem(&vigil_pending, &pid_tgid);
	s->st.msg.ret = ret;
	s->st.msg.flags |= VIGIL_SYSMSG_RETURN;
	if ((h->flags & VIGIL_HOOK_FD_PATH) && ret >= 0)
		resolve_file(s, fd_file(ret));

	for (int i = 0; i < VIGIL_MAX_SELECTORS; i++) {
		__u32 idx = hook * VIGIL_MAX_SELECTORS + i;
		struct vigil_selector_cfg *sel;

		if (i >= h->nselectors)
			break;
		if (!(s->st.candidates & (1u << i)))
			continue;
		sel = bpf_map_lookup_elem(&vigil_sys_selectors, &idx);
		if (sel && args_match(hook, idx, sel, PHASE_EXIT)) {
			matched = i;
			break;
		}
	}
	if (matched < 0)
		return 0;
	proc = bpf_map_lookup_elem(&vigil_procs, &tgid);
	{
		__u32 idx = hook * VIGIL_MAX_SELECTORS + (matched & 7);
		struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &idx);

		if (!sel)
			return 0;
		s->st.msg.actions = sel->actions;
		s->st.msg.ret_actions = sel->ret_actions;
		act(s, hook, matched, sel, sel->actions | sel->ret_actions, pid_tgid, proc);
	}
	return 0;
}

#endif
