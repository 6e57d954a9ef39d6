// SPDX-License-Identifier: GPL-2.0-only
/*
 * Selectors on the calling process: matchPIDs (followForks, isNamespacePID), matchBinaries
 * (followChildren), matchNamespaces. Part of vigil_engine.h.
 */

#ifndef VIGIL_ENGINE_PROCESS_H
#define VIGIL_ENGINE_PROCESS_H

#define VIGIL_ANCESTORS_MAX 32 /* generations walked by followForks / followChildren */

struct anc_ctx {
	__u32 sel_idx;
	__u32 pid;   /* the ancestor to look at next */
	__u64 ktime; /* its start time, against pid reuse (0: unknown) */
	__u32 bins;  /* look for a binary of the selector's set (1: matchBinaries, 2: parent's) */
	__u32 found;
};

/* Whether (ino, dev) is in binary set `set_id`. The key lives in the per-CPU scratch: on the
 * stack it would push the deepest call chains (program -> selector callback -> global
 * function -> ancestor callback) past the 512 bytes the 6.1 verifier allows. */
static __always_inline int bin_listed(__u32 set_id, __u64 ino, __u64 dev)
{
	__u32 zero = 0;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);

	if (!s)
		return 0;
	s->bin_key.set_id = set_id;
	s->bin_key.pad = 0;
	s->bin_key.ino = ino;
	s->bin_key.dev = dev;
	return bpf_map_lookup_elem(&vigil_bin_set, &s->bin_key) != NULL;
}

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
		if (bin_listed(c->bins == 2 ? sel->pbin_set_id : sel->bin_set_id, e->bin_ino,
			       e->bin_dev)) {
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

#include "vigil_engine_caps.h"

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
		int in = proc && bin_listed(sel->bin_set_id, proc->bin_ino, proc->bin_dev);

		if (!in && (sel->flags & VIGIL_SEL_FOLLOW_CHILDREN))
			in = ancestor_listed(sel_idx, proc, 1);
		if ((sel->bin_op == VIGIL_OP_IN) != in)
			return 0;
	}
	/* matchParentBinaries, capabilities, namespace changes (vigil_engine_caps.h). */
	if (sel->pbin_op && !vigil_pbin_select(sel_idx))
		return 0;
	if ((sel->ncaps || sel->nschg_op) && !vigil_caps_select(sel_idx))
		return 0;
	return 1;
}

/*
 * Global (verified once, on its own): newer verifiers check a bpf_loop callback again for
 * every caller state, so selector evaluation inlined in the per-selector callback multiplied
 * the engine's states past the 1M-instruction budget (6.12+).
 */
__noinline int vigil_sel_process(__u32 sel_idx, __u32 tgid)
{
	struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &sel_idx);
	struct vigil_proc_entry *proc = bpf_map_lookup_elem(&vigil_procs, &tgid);

	return sel && process_match(sel, sel_idx, tgid, proc);
}


#endif
