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

#include "vigil_engine_strings.h"
#include "vigil_engine_paths.h"
#include "vigil_engine_scope.h"
#include "vigil_engine_sock.h"

/* ---- selectors ------------------------------------------------------------------------ */

/* Phases of evaluation: at entry, filters that need the exit (return value, resolved path)
 * are left for later; at exit, process filters already passed at entry. */
#define PHASE_ENTRY 0
#define PHASE_EXIT 1

/* String-valued argument kinds: user and kernel strings, and kernel objects read as a path
 * (vigil_kobj.h). */
static __always_inline int engine_arg_is_str(__u8 kind)
{
	return kind == VIGIL_ARG_STRING || kind == VIGIL_ARG_KSTRING || kind == VIGIL_ARG_FD ||
	       kind == VIGIL_ARG_BTF_STR ||
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

#include "vigil_engine_sockaddr.h"
#include "vigil_engine_process.h"

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
					int enforcing, __u32 *deferred, __u32 str_error,
					__u32 sel_idx, __u32 fidx)
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
	if (h->arg_kind[slot] == VIGIL_ARG_SOCKADDR || h->arg_kind[slot] == VIGIL_ARG_KSOCKADDR) {
		if (str_error & (1u << slot))
			goto unreadable;
		return vigil_sockaddr_op(slot, f->op, f->set_id, f->nvalues,
					 (__u64)f->values[0] << 32 | (__u32)f->values[1]);
	}
#ifdef VIGIL_ENGINE_SOCK_OPS
	if (f->op >= VIGIL_OP_SOCK_FIRST) {
		if (str_error & (1u << slot))
			goto unreadable;
		return vigil_sock_match(sel_idx, fidx);
	}
#endif
	if (f->op == VIGIL_OP_SAME_FILE) {
		if (str_error & (1u << slot))
			goto unreadable;
		return s->file_ino[slot] &&
		       bin_listed(f->set_id, s->file_ino[slot], s->file_dev[slot]);
	}
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
			  c->str_error, c->sel_idx, i)) {
		c->result = 0;
		return 1;
	}
	return 0;
}

#define SEL_ARGS_MATCH 1u
#define SEL_ARGS_DEFERRED 2u

/*
 * Selector `sel_idx`'s argument filters: SEL_ARGS_MATCH when they hold, SEL_ARGS_DEFERRED
 * when a path filter waits for the exit. `deferred`: whether it waited (exit phase). Global,
 * like vigil_sel_process (verified once, whatever the caller's state).
 */
__noinline int vigil_sel_args(__u32 hook, __u32 sel_idx, __u32 phase, __u32 deferred,
			      __u32 str_error)
{
	struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &sel_idx);
	struct filters_ctx c = {
		.hook = hook,
		.sel_idx = sel_idx,
		.phase = phase,
		.result = 1,
		.deferred = deferred & 1,
		.str_error = str_error,
	};

	if (!sel)
		return 0;
	if (sel->nfilters)
		bpf_loop(VIGIL_MAX_ARG_FILTERS, filter_step, &c, 0);
	return (c.result ? SEL_ARGS_MATCH : 0) | (c.deferred ? SEL_ARGS_DEFERRED : 0);
}

/* ---- arguments ------------------------------------------------------------------------ */

/* Readers of kinds VIGIL_ARG_EXT_FIRST..LAST (vigil_engine_args.h, global functions). */
int vigil_arg_ext(__u32 hook, __u32 slot, __u64 raw, __u64 aux);
int vigil_arg_retcopy(__u32 hook, __s64 ret);
#ifdef VIGIL_KSTRUCT
/* Kinds VIGIL_ARG_KSTRUCT_FIRST..LAST (vigil_kobj_struct.h, kernel-function objects). */
int vigil_arg_kstruct(__u32 hook, __u32 slot, __u64 raw);
#endif

/*
 * Reads argument `i` of hook `hook` (integers, strings, char_buf, kernel objects; the other
 * kinds are vigil_arg_ext's) from its raw value; `aux` is the raw value of the argument its
 * size_index names (char_buf: the size). Global:
 * verified once, on its own, instead of once per argument slot in every program.
 */
__noinline int vigil_read_arg(__u32 hook, __u32 i, __u64 raw, __u64 aux)
{
	__u32 zero = 0;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	struct vigil_hook_cfg *h = bpf_map_lookup_elem(&vigil_sys_hooks, &hook);
	long n;

	/* One bounded register for every use below (6.1 does not link copies). */
	i &= 7;
	asm volatile("" : "+r"(i));
	if (!s || !h || i >= VIGIL_MAX_ARGS)
		return 0;
	s->st.msg.str_len[i] = 0;
	s->st.str_len_full[i] = 0;
	s->st.msg.ints[i] = 0;
	s->file_ino[i] = 0;
	s->file_dev[i] = 0;
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
		__u64 want = aux;
		__u32 n;

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

		n = kobj_read(s->st.strs[i], h->arg_kind[i], raw, &s->st.msg.ints[i], &trunc,
			      &s->file_ino[i], &s->file_dev[i]);
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
	return 0;
}

/* Reads the hook's arguments; strings only for the slots in `strs` (a string costs a user
 * memory copy: entry reads those the filters need, the rest only when a selector matched). */
static __always_inline void read_args(struct sys_scratch *s, const struct vigil_hook_cfg *h,
				      const __u64 *regs, __u32 strs, __u32 hook)
{
	for (int i = 0; i < VIGIL_MAX_ARGS; i++) {
		__u32 ai, si;

		if (i >= h->nargs)
			break;
		if ((engine_arg_is_str(h->arg_kind[i]) || h->arg_kind[i] == VIGIL_ARG_BUF ||
		     h->arg_kind[i] >= VIGIL_ARG_EXT_FIRST) &&
		    !((strs >> i) & 1))
			continue;
		/* The loader refuses indices past the raw arguments. */
		ai = h->arg_index[i] & 7;
		if (ai >= VIGIL_ENGINE_NARGS)
			ai = VIGIL_ENGINE_NARGS - 1;
		si = h->size_index[i] & 7;
		if (si >= VIGIL_ENGINE_NARGS)
			si = VIGIL_ENGINE_NARGS - 1;
		/* Called from here, not from vigil_read_arg: each is a frame on 6.1's 512-byte
		 * combined stack, and the readers' deepest callbacks come after them. */
		if (h->arg_kind[i] >= VIGIL_ARG_EXT_FIRST && h->arg_kind[i] <= VIGIL_ARG_EXT_LAST)
			vigil_arg_ext(hook, i, regs[ai], regs[si]);
#ifdef VIGIL_KSTRUCT
		else if (h->arg_kind[i] >= VIGIL_ARG_KSTRUCT_FIRST &&
			 h->arg_kind[i] <= VIGIL_ARG_KSTRUCT_LAST)
			vigil_arg_kstruct(hook, i, regs[ai]);
#endif
		else
			vigil_read_arg(hook, i, regs[ai], regs[si]);
	}
}

/* ---- actions and posting -------------------------------------------------------------- */

#include "vigil_engine_post.h"
#ifdef VIGIL_ENGINE_IMA
#include "vigil_engine_ima.h"
#endif

/* Runs selector `matched`'s actions (enforcement first: it must not depend on ring space),
 * then posts. `actions` are the bits that apply in this phase. */
static __always_inline int act(void *ctx, struct sys_scratch *s, __u32 hook, __u32 matched,
				const struct vigil_selector_cfg *sel, __u32 actions,
				__u64 pid_tgid, struct vigil_proc_entry *proc)
{
	struct vigil_syscall_msg *m = &s->st.msg;
#ifdef VIGIL_ENGINE_SOCK_OPS
	struct vigil_hook_cfg *h = bpf_map_lookup_elem(&vigil_sys_hooks, &hook);
#endif
	__u32 tgid = pid_tgid >> 32;
	int monitor = monitor_mode();
	int verdict = 0;

	sel_count(hook, matched, VIGIL_HOOK_MATCHED);
#ifdef VIGIL_ENGINE_SOCK_OPS
	/* Bookkeeping, not enforcement: in monitor mode too. */
	if (h)
		sock_track(s, h, sel, actions, proc);
#endif
	if (sel->flags & VIGIL_SEL_TASK_STATE)
		vigil_task_state(hook * VIGIL_MAX_SELECTORS + (matched & 7));
	m->monitor = monitor;
	m->signal = sel->signal;
	if (actions & (VIGIL_ACT_SIGKILL | VIGIL_ACT_SIGNAL)) {
		if (monitor) {
			sel_count(hook, matched, VIGIL_HOOK_MONITOR);
		} else {
#ifndef VIGIL_ENGINE_NO_SIGNAL
			/* Programs without the helper (cgroup hooks) leave it to user space. */
			bpf_send_signal((actions & VIGIL_ACT_SIGKILL) ? 9 : sel->signal);
#endif
			sel_count(hook, matched, VIGIL_HOOK_ENFORCED);
		}
	}
	/* Override: what an fmod_ret/LSM program returns instead of running the function. */
	if (actions & VIGIL_ACT_OVERRIDE) {
		if (monitor) {
			sel_count(hook, matched, VIGIL_HOOK_MONITOR);
		} else {
			verdict = sel->override_rc;
			/* The function is skipped: what it returns is this (reported as `return`
			 * by hooks with `return: true`). */
			m->ret = verdict;
			m->flags |= VIGIL_SYSMSG_RETURN;
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
	m->ustack_len = 0;
	m->kstack_len = 0;
#ifndef VIGIL_ENGINE_NO_STACK
	/* Programs without the helper (cgroup hooks) never capture (the compiler refuses). */
	if (sel->flags & VIGIL_SEL_USER_STACK) {
		/* Return addresses of the user stack (frame pointers), symbolised by the agent. */
		long n = bpf_get_stack(ctx, s->ustack, sizeof(s->ustack), BPF_F_USER_STACK);

		if (n > 0)
			m->ustack_len = n;
	}
	if (sel->flags & VIGIL_SEL_KERNEL_STACK) {
		long n = bpf_get_stack(ctx, s->kstack, sizeof(s->kstack), 0);

		if (n > 0)
			m->kstack_len = n;
	}
#endif
	m->hdr.kind = VIGIL_MSG_SYSCALL;
	m->hdr.pad[0] = m->hdr.pad[1] = m->hdr.pad[2] = 0;
#ifdef VIGIL_ENGINE_SOCK_OPS
	if (h && sock_owner(s, h, &m->process)) {
		m->flags |= VIGIL_SYSMSG_SOCK_OWNER;
	} else
#endif
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
	m->flags &= ~VIGIL_SYSMSG_IMA;
#ifdef VIGIL_ENGINE_IMA
	/* After tid and ktime are set: the digest record names the event by them. */
	if ((sel->flags & VIGIL_SEL_IMA_HASH) && engine_ima_want(hook, m))
		m->flags |= VIGIL_SYSMSG_IMA;
#endif
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
	__u32 deferred = 0;
	int r;

	if (i >= VIGIL_MAX_SELECTORS)
		return 1;
	if (c->phase == PHASE_EXIT) {
		if (!((c->candidates >> i) & 1))
			return 0;
		deferred = (c->deferred >> i) & 1;
		if (vigil_sel_args(c->hook, idx, PHASE_EXIT, deferred, c->str_error) &
		    SEL_ARGS_MATCH) {
			c->matched = i;
			return 1;
		}
		return 0;
	}
	if (!vigil_sel_process(idx, c->tgid))
		return 0;
	r = vigil_sel_args(c->hook, idx, PHASE_ENTRY, 0, c->str_error);
	if (!(r & SEL_ARGS_MATCH))
		return 0;
	deferred = (r & SEL_ARGS_DEFERRED) ? 1 : 0;
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
	s->st.msg.kstack_len = 0;
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
	/* Before any selector work: a pod-scoped policy ignores tasks outside its cgroups. */
	if (!scope_allows())
		return 0;
	s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	if (!s)
		return 0;
	proc = bpf_map_lookup_elem(&vigil_procs, &tgid);
	reset_msg(s, (flags & VIGIL_ENGINE_COMPAT) ? 1 : 0);
	read_args(s, h, args, h->filter_strs, hook);

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
			struct pending_open *po = &s->po;

			po->hook = hook;
			po->candidates = candidates;
			po->deferred = deferred_mask;
			po->str_error = s->st.msg.str_error;
			po->compat = s->st.msg.compat;
			po->pad = 0;
			for (int i = 0; i < VIGIL_ENGINE_NARGS; i++)
				po->args[i] = args[i];
			if (pending_keep(&vigil_pending_open, pid_tgid, po, sizeof(*po))) {
				hook_count(hook, VIGIL_HOOK_PENDING_LOST);
				count(VIGIL_CNT_PENDING_LOST);
			}
			return 0;
		}
		/* The exit of other calls may find their memory gone (execve): read it all now. */
		read_args(s, h, args, ~(__u32)h->filter_strs, hook);
		s->st.candidates = candidates;
		s->st.deferred = deferred_mask;
		s->st.msg.hook_id = hook;
		if (pending_keep(&vigil_pending, pid_tgid, &s->st, sizeof(s->st))) {
			hook_count(hook, VIGIL_HOOK_PENDING_LOST);
			count(VIGIL_CNT_PENDING_LOST);
		}
		return 0;
	}
	if (matched < 0)
		return 0;
	{
		__u32 idx = hook * VIGIL_MAX_SELECTORS + (matched & 7);
		struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &idx);

		if (!sel)
			return 0;
		read_args(s, h, args, ~(__u32)h->filter_strs, hook);
		s->st.msg.actions = sel->actions;
		/* fmod_ret/LSM programs return this: the Override value when enforcing, else 0. */
		return act(ctx, s, hook, matched, sel, sel->actions, pid_tgid, proc);
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
		po = pending_find(&vigil_pending_open, pid_tgid);
		if (!po)
			return 0;
		if (po->hook != hook) {
			pending_open_done(pid_tgid, po);
			return 0;
		}
		candidates = po->candidates;
		deferred_mask = po->deferred;
		str_error = po->str_error;
	} else {
		p = pending_find(&vigil_pending, pid_tgid);
		if (!p)
			return 0;
		if (p->msg.hook_id != hook) {
			pending_drop(&vigil_pending, pid_tgid);
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
		read_args(s, h, args, ~0u, hook);
		s->st.msg.flags |= fail_closed;
	} else if (p) {
		__u32 fail_closed = s->st.msg.flags & VIGIL_SYSMSG_FAIL_CLOSED;

		bpf_probe_read_kernel(&s->st, sizeof(s->st), p);
		s->st.msg.flags |= fail_closed;
	}
	s->st.msg.ret = ret;
	s->st.msg.flags |= VIGIL_SYSMSG_RETURN;
	if (h->flags & VIGIL_HOOK_RET_COPY)
		vigil_arg_retcopy(hook, ret);
	place_path(s);
	proc = bpf_map_lookup_elem(&vigil_procs, &tgid);
	{
		__u32 idx = hook * VIGIL_MAX_SELECTORS + (matched & 7);
		struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &idx);

		if (sel) {
			s->st.msg.actions = sel->actions;
			s->st.msg.ret_actions = sel->ret_actions;
			act(ctx, s, hook, matched, sel, sel->actions | sel->ret_actions, pid_tgid, proc);
		}
	}
done:
	if (po)
		pending_open_done(pid_tgid, po);
	else
		pending_drop(&vigil_pending, pid_tgid);
	return 0;
}

#include "vigil_engine_args.h"

#endif
