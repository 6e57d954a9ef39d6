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

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096); /* replaced by the lifecycle ring (fd reuse) */
} vigil_events SEC(".maps");

#include "vigil_wakeup.h"


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024); /* replaced by the lifecycle table (fd reuse) */
	__type(key, __u32);
	__type(value, struct vigil_proc_entry);
} vigil_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_CNT_MAX); /* replaced by the lifecycle counters (fd reuse) */
	__type(key, __u32);
	__type(value, __u64);
} vigil_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIGIL_MAX_HOOKS);
	__type(key, __u32);
	__type(value, struct vigil_hook_cfg);
} vigil_sys_hooks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIGIL_MAX_HOOKS * VIGIL_MAX_SELECTORS);
	__type(key, __u32);
	__type(value, struct vigil_selector_cfg);
} vigil_sys_selectors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_MAX_HOOKS * VIGIL_HOOK_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} vigil_sys_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct vigil_str_key);
	__type(value, __u8);
} vigil_str_eq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__type(key, struct vigil_str_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} vigil_str_prefix SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__type(key, struct vigil_str_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} vigil_str_postfix SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct vigil_bin_key);
	__type(value, __u8);
} vigil_bin_set SEC(".maps");

/* Per-CPU working state of one invocation: arguments as read, lookup keys, the message. */
struct sys_scratch {
	struct vigil_syscall_msg msg;
	char strs[8][VIGIL_ARG_STR_MAX]; /* 8 rows: indices are masked with 7 */
	struct vigil_str_key key;
	__u32 str_len_full[8]; /* bytes read, NUL excluded */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sys_scratch);
} vigil_sys_scratch SEC(".maps");

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

/* ---- string operators ----------------------------------------------------------------- */

static __always_inline int str_equal(struct sys_scratch *s, __u32 slot, __u32 set_id)
{
	__u32 len = s->str_len_full[slot & 7] & 0x1ff;

	if (len > VIGIL_STR_MATCH)
		return 0; /* longer than any value a set can hold */
	__builtin_memset(&s->key, 0, sizeof(s->key));
	s->key.set_id = set_id;
	bpf_probe_read_kernel(s->key.data, len, s->strs[slot & 7]);
	return bpf_map_lookup_elem(&vigil_str_eq, &s->key) != NULL;
}

static __always_inline int str_prefix(struct sys_scratch *s, __u32 slot, __u32 set_id)
{
	__u32 len = s->str_len_full[slot & 7];

	if (len > VIGIL_STR_MATCH)
		len = VIGIL_STR_MATCH;
	s->key.prefixlen = 32 + 8 * len;
	s->key.set_id = set_id;
	bpf_probe_read_kernel(s->key.data, VIGIL_STR_MATCH, s->strs[slot & 7]);
	return bpf_map_lookup_elem(&vigil_str_prefix, &s->key) != NULL;
}

struct rev_ctx {
	struct sys_scratch *s;
	__u32 slot;
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
	s->key.data[i & (VIGIL_STR_MATCH - 1)] = s->strs[c->slot & 7][from & (VIGIL_ARG_STR_MAX - 1)];
	return 0;
}

static __always_inline int str_postfix(struct sys_scratch *s, __u32 slot, __u32 set_id)
{
	struct rev_ctx c = { .slot = slot };
	__u32 len = s->str_len_full[slot & 7];

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

/* ---- selectors ------------------------------------------------------------------------ */

/* String-valued argument kinds: user strings, and kernel objects read as a path. */
static __always_inline int engine_arg_is_str(__u8 kind)
{
	return kind == VIGIL_ARG_STRING ||
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

static __always_inline int filter_match(struct sys_scratch *s, const struct vigil_hook_cfg *h,
					const struct vigil_arg_filter *f)
{
	__u32 slot = f->slot & 7;

	if (slot >= VIGIL_MAX_ARGS)
		return 0;
	if (engine_arg_is_str(h->arg_kind[slot])) {
		if (s->msg.str_error & (1u << slot))
			return 0;
		switch (f->op) {
		case VIGIL_OP_EQ:
			return str_equal(s, slot, f->set_id);
		case VIGIL_OP_NEQ:
			return !str_equal(s, slot, f->set_id);
		case VIGIL_OP_PREFIX:
			return str_prefix(s, slot, f->set_id);
		case VIGIL_OP_NOT_PREFIX:
			return !str_prefix(s, slot, f->set_id);
		case VIGIL_OP_POSTFIX:
			return str_postfix(s, slot, f->set_id);
		case VIGIL_OP_NOT_POSTFIX:
			return !str_postfix(s, slot, f->set_id);
		}
		return 0;
	}
	return int_match(s->msg.ints[slot], f);
}

static __always_inline int selector_match(struct sys_scratch *s, const struct vigil_hook_cfg *h,
					  const struct vigil_selector_cfg *sel, __u32 tgid,
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
	for (int i = 0; i < VIGIL_MAX_ARG_FILTERS; i++) {
		if (i >= sel->nfilters)
			break;
		if (!filter_match(s, h, &sel->filters[i]))
			return 0;
	}
	return 1;
}

/* ---- the hook ------------------------------------------------------------------------- */

static __always_inline void read_args(struct sys_scratch *s, const struct vigil_hook_cfg *h,
				      const __u64 *regs)
{
	for (int i = 0; i < VIGIL_MAX_ARGS; i++) {
		__u64 raw;
		__u32 idx;
		long n;

		s->msg.str_len[i] = 0;
		s->str_len_full[i] = 0;
		s->msg.ints[i] = 0;
		if (i >= h->nargs)
			break;
		/* A compare, not `% NARGS`: 6.1/6.12 verifiers cannot bound a modulo. */
		idx = h->arg_index[i];
		if (idx >= VIGIL_ENGINE_NARGS)
			idx = 0;
		raw = regs[idx];
		switch (h->arg_kind[i]) {
		case VIGIL_ARG_INT:
			s->msg.ints[i] = (__s32)raw;
			break;
		case VIGIL_ARG_UINT32:
			s->msg.ints[i] = (__u32)raw;
			break;
		case VIGIL_ARG_INT64:
		case VIGIL_ARG_UINT64:
			s->msg.ints[i] = (__s64)raw;
			break;
		case VIGIL_ARG_STRING:
			n = bpf_probe_read_user_str(s->strs[i], VIGIL_ARG_STR_MAX, (void *)raw);
			if (n <= 0) {
				s->msg.str_error |= 1u << i;
				break;
			}
			s->str_len_full[i] = n - 1;
			s->msg.str_len[i] = n - 1;
			/* A full buffer may be a cut string: the kernel wrote 255 bytes and a NUL. */
			if (n == VIGIL_ARG_STR_MAX)
				s->msg.str_trunc |= 1u << i;
			break;
#ifdef VIGIL_KOBJ_H
		default: {
			/* Kernel objects of kernel-function/LSM hooks (vigil_kobj.h). */
			__u32 trunc = 0;

			n = kobj_read(s->strs[i], h->arg_kind[i], raw, &s->msg.ints[i], &trunc);
			if (n < 0) {
				s->msg.str_error |= 1u << i;
				break;
			}
			s->str_len_full[i] = n;
			s->msg.str_len[i] = n;
			if (trunc)
				s->msg.str_trunc |= 1u << i;
			break;
		}
#endif
		}
	}
}

static __always_inline void post(struct sys_scratch *s, __u32 hook)
{
	struct vigil_syscall_msg *m = &s->msg;
	__u32 total = sizeof(*m), off = sizeof(*m);
	struct bpf_dynptr rec;

	for (int i = 0; i < VIGIL_MAX_ARGS; i++)
		total += m->str_len[i] & (VIGIL_ARG_STR_MAX - 1);
	m->hdr.size = total;
	if (bpf_ringbuf_reserve_dynptr(&vigil_events, total, 0, &rec)) {
		bpf_ringbuf_discard_dynptr(&rec, 0);
		count(VIGIL_CNT_RB_LOST_POLICY);
		hook_count(hook, VIGIL_HOOK_DROPPED);
		return;
	}
	bpf_dynptr_write(&rec, 0, m, sizeof(*m), 0);
	for (int i = 0; i < VIGIL_MAX_ARGS; i++) {
		__u32 len = m->str_len[i] & (VIGIL_ARG_STR_MAX - 1);

		bpf_dynptr_write(&rec, off, s->strs[i], len, 0);
		off += len;
	}
	bpf_ringbuf_submit_dynptr(&rec, wakeup_flags());
	hook_count(hook, VIGIL_HOOK_POSTED);
}

/* What an fmod_ret/LSM program returns: the Override value when enforcing, else 0. */
static __always_inline int engine_verdict(const struct vigil_hook_cfg *h,
					  const struct vigil_selector_cfg *sel)
{
	if (!h->monitor && (sel->actions & VIGIL_ACT_OVERRIDE))
		return sel->override_rc;
	return 0;
}

/*
 * THE ENTRY: run hook `hook`'s selectors over `args` (VIGIL_ENGINE_NARGS raw values, in the
 * hook's native order: syscall arguments, tracepoint fields, uprobe registers) and act.
 * Callable from any program type; `ctx` is the program's context (kept for helpers that need
 * it, e.g. stack traces); `flags` is VIGIL_ENGINE_* bits. Returns 0, or the matched
 * selector's Override value (enforcing mode only) for fmod_ret/LSM programs to return.
 */
static __always_inline int engine_handle(void *ctx, __u32 hook, const __u64 *args, __u32 flags)
{
	__u32 compat = (flags & VIGIL_ENGINE_COMPAT) ? 1 : 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, zero = 0;
	struct vigil_hook_cfg *h = bpf_map_lookup_elem(&vigil_sys_hooks, &hook);
	struct vigil_proc_entry *proc;
	struct sys_scratch *s;
	int matched = -1;

	if (!h || !h->nselectors)
		return 0;
	s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	if (!s)
		return 0;
	s->msg.str_error = 0;
	s->msg.str_trunc = 0;
	s->msg.compat = compat;
	s->msg.pad = 0;
	read_args(s, h, args);
	proc = bpf_map_lookup_elem(&vigil_procs, &tgid);

	for (int i = 0; i < VIGIL_MAX_SELECTORS; i++) {
		__u32 idx = hook * VIGIL_MAX_SELECTORS + i;
		struct vigil_selector_cfg *sel;

		if (i >= h->nselectors)
			break;
		sel = bpf_map_lookup_elem(&vigil_sys_selectors, &idx);
		if (sel && selector_match(s, h, sel, tgid, proc)) {
			matched = i;
			break;
		}
	}
	if (matched < 0)
		return 0;
	hook_count(hook, VIGIL_HOOK_MATCHED);
	{
		__u32 idx = hook * VIGIL_MAX_SELECTORS + (matched & 7);
		struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &idx);
		struct vigil_syscall_msg *m = &s->msg;

		if (!sel)
			return 0;
		m->actions = sel->actions;
		m->signal = sel->signal;
		m->monitor = h->monitor;
		/* Enforcement first: it must not depend on the event finding room in the ring. */
		if (!h->monitor && (sel->actions & VIGIL_ACT_SIGKILL)) {
			bpf_send_signal(9);
			hook_count(hook, VIGIL_HOOK_ENFORCED);
		} else if (!h->monitor && (sel->actions & VIGIL_ACT_SIGNAL)) {
			bpf_send_signal(sel->signal);
			hook_count(hook, VIGIL_HOOK_ENFORCED);
		} else if (h->monitor && (sel->actions & (VIGIL_ACT_SIGKILL | VIGIL_ACT_SIGNAL))) {
			hook_count(hook, VIGIL_HOOK_MONITOR);
		}
		if (!h->monitor && (sel->actions & VIGIL_ACT_OVERRIDE))
			hook_count(hook, VIGIL_HOOK_ENFORCED);
		if (!(sel->actions & VIGIL_ACT_POST))
			return engine_verdict(h, sel);
		m->hdr.kind = VIGIL_MSG_SYSCALL;
		m->hdr.pad[0] = m->hdr.pad[1] = m->hdr.pad[2] = 0;
		m->hdr.ktime = bpf_ktime_get_boot_ns();
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
		post(s, hook);
		return engine_verdict(h, sel);
	}
}

#endif
