// SPDX-License-Identifier: GPL-2.0-only
/*
 * Selectors on the calling process's lineage and privileges: matchParentBinaries
 * (followChildren), matchCapabilities (isNamespaceCapability), matchCapabilityChanges and
 * matchNamespaceChanges; and the task's capabilities and namespaces carried by the events of
 * those selectors. Part of vigil_engine.h, after vigil_engine_process.h.
 *
 * Everything here runs in global functions: the verifier checks them once on their own, so
 * policies without these selectors do not pay for them at load.
 */

#ifndef VIGIL_ENGINE_CAPS_H
#define VIGIL_ENGINE_CAPS_H

/* One capability set of the current task's credentials. kernel_cap_t is u32[2] before 6.3
 * and a u64 after: 8 bytes either way. */
static __always_inline __u64 task_capset(const struct cred *cred, __u32 set)
{
	__u64 v = 0;

	if (set == VIGIL_CAPSET_PERMITTED)
		bpf_core_read(&v, 8, &cred->cap_permitted);
	else if (set == VIGIL_CAPSET_EFFECTIVE)
		bpf_core_read(&v, 8, &cred->cap_effective);
	else
		bpf_core_read(&v, 8, &cred->cap_inheritable);
	return v;
}

/* Namespace inodes as an array (struct vigil_namespaces is ten u32, in kind order). */
static __always_inline __u32 ns_at(const struct vigil_namespaces *ns, __u32 kind)
{
	const __u32 *a = (const __u32 *)ns;

	return kind < VIGIL_NS_KINDS ? a[kind] : 0;
}

/*
 * matchCapabilityChanges, as Tetragon: In holds when a listed capability of the set differs
 * from what the process had at exec; NotIn when only unlisted ones differ.
 */
static __always_inline int cap_change_holds(const struct vigil_cap_filter *f, __u64 then, __u64 now)
{
	if ((then & f->mask) != (now & f->mask))
		return f->op == VIGIL_OP_IN;
	if (then != now)
		return f->op == VIGIL_OP_NOT_IN;
	return 0;
}

/*
 * matchNamespaceChanges, as Tetragon: In holds when one of the listed namespaces differs from
 * the one recorded at exec; NotIn when one of the unlisted ones does. A namespace the exec
 * could not record (0) is not compared.
 */
static __always_inline int ns_change_holds(__u32 op, __u32 mask, const struct vigil_namespaces *then,
					   const struct vigil_namespaces *now)
{
	__u32 want = op == VIGIL_OP_IN ? mask : ~mask;

	for (int k = 0; k < VIGIL_NS_KINDS; k++) {
		__u32 old = ns_at(then, k);

		if (!((want >> k) & 1) || !old)
			continue;
		if (old != ns_at(now, k))
			return 1;
	}
	return 0;
}

/* Whether the current process's parent (or, followChildren, an older ancestor) runs a binary
 * of the selector's matchParentBinaries set. */
static __always_inline int parent_binary_listed(const struct vigil_selector_cfg *sel, __u32 sel_idx,
						struct vigil_proc_entry *proc)
{
	if (!proc)
		return 0;
	/* The entry keeps the parent's binary: it holds after the parent has exited. */
	if (proc->pbin_ino && bin_listed(sel->pbin_set_id, proc->pbin_ino, proc->pbin_dev))
		return 1;
	return (sel->flags & VIGIL_SEL_PARENT_FOLLOW) && ancestor_listed(sel_idx, proc, 2);
}

/* matchParentBinaries of selector `sel_idx` for the current process: 1 when it holds. A global
 * function of its own: with the ancestor walk below it, it is the deepest call chain. */
__noinline int vigil_pbin_select(__u32 sel_idx)
{
	struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &sel_idx);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct vigil_proc_entry *proc = bpf_map_lookup_elem(&vigil_procs, &tgid);

	if (!sel)
		return 0;
	return (sel->pbin_op == VIGIL_OP_IN) == parent_binary_listed(sel, sel_idx, proc);
}

/*
 * matchCapabilities, matchCapabilityChanges and matchNamespaceChanges of selector `sel_idx`
 * for the current task: 1 when all hold. Small stack: the 6.1 verifier caps the combined
 * stack of a call chain at 512 bytes, so the current namespaces go to the per-CPU scratch.
 */
__noinline int vigil_caps_select(__u32 sel_idx)
{
	struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &sel_idx);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, zero = 0;
	struct vigil_proc_entry *proc = bpf_map_lookup_elem(&vigil_procs, &tgid);
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	const struct cred *cred;
	__u32 user_ns;

	if (!sel || !s)
		return 0;
	cred = BPF_CORE_READ(task, cred);
	user_ns = BPF_CORE_READ(cred, user_ns, ns.inum);
	for (int i = 0; i < VIGIL_MAX_CAP_FILTERS; i++) {
		const struct vigil_cap_filter *f = &sel->caps[i];
		__u64 now, then;

		if (i >= sel->ncaps)
			break;
		/* isNamespaceCapability: only tasks outside the host's user namespace. */
		if (f->user_ns && f->user_ns == user_ns)
			return 0;
		now = task_capset(cred, f->set);
		if (!f->changes) {
			if (((now & f->mask) != 0) != (f->op == VIGIL_OP_IN))
				return 0;
			continue;
		}
		/* A process whose exec the table did not record has no baseline. The empty asm
		 * keeps clang from computing field addresses before the null check. */
		if (!proc)
			return 0;
		asm volatile("" : "+r"(proc));
		if (!(proc->flags & VIGIL_ENTRY_BASELINE))
			return 0;
		then = f->set == VIGIL_CAPSET_PERMITTED ? proc->exec_caps[0] :
		       f->set == VIGIL_CAPSET_EFFECTIVE ? proc->exec_caps[1] :
							  proc->exec_caps[2];
		if (!cap_change_holds(f, then, now))
			return 0;
	}
	if (sel->nschg_op) {
		if (!proc)
			return 0;
		asm volatile("" : "+r"(proc));
		if (!(proc->flags & VIGIL_ENTRY_BASELINE))
			return 0;
		/* The message's namespace slot is free until a selector matches (then
		 * vigil_task_state fills it again). */
		task_namespaces(task, &s->st.msg.task_ns);
		if (!ns_change_holds(sel->nschg_op, sel->nschg_mask, &proc->exec_ns,
				     &s->st.msg.task_ns))
			return 0;
	}
	return 1;
}

/*
 * A selector with capability or namespace filters matched: its event carries the task's
 * capabilities and namespaces now (what the filters saw), and a change it reported becomes
 * the process's new baseline, so that the same change is reported once (as Tetragon).
 */
__noinline int vigil_task_state(__u32 sel_idx)
{
	struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &sel_idx);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, zero = 0;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	struct vigil_syscall_msg *m;
	struct vigil_proc_entry *proc;
	const struct cred *cred;
	int changes = 0;

	if (!sel || !s)
		return 0;
	m = &s->st.msg;
	cred = BPF_CORE_READ(task, cred);
	m->task_caps[VIGIL_CAPSET_PERMITTED] = task_capset(cred, VIGIL_CAPSET_PERMITTED);
	m->task_caps[VIGIL_CAPSET_EFFECTIVE] = task_capset(cred, VIGIL_CAPSET_EFFECTIVE);
	m->task_caps[VIGIL_CAPSET_INHERITABLE] = task_capset(cred, VIGIL_CAPSET_INHERITABLE);
	task_namespaces(task, &m->task_ns);
	m->flags |= VIGIL_SYSMSG_TASK_STATE;
	for (int i = 0; i < VIGIL_MAX_CAP_FILTERS; i++) {
		if (i >= sel->ncaps)
			break;
		changes |= sel->caps[i].changes;
	}
	if (!changes && !sel->nschg_op)
		return 0;
	proc = bpf_map_lookup_elem(&vigil_procs, &tgid);
	if (!proc || !(proc->flags & VIGIL_ENTRY_BASELINE))
		return 0;
	if (changes)
		__builtin_memcpy(proc->exec_caps, m->task_caps, sizeof(proc->exec_caps));
	if (sel->nschg_op)
		proc->exec_ns = m->task_ns;
	return 0;
}

#endif
