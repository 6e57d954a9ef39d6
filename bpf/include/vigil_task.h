/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What a task's namespaces are, shared by the lifecycle sensor (exec events) and the policy
 * engine (matchNamespaces, matchPIDs isNamespacePID). Reads go through CO-RE probe reads so
 * that both typed (tp_btf) and untyped (bpf_get_current_task) task pointers work.
 */
#ifndef VIGIL_TASK_H
#define VIGIL_TASK_H

#include "vigil_abi.h"

/* The task's pid as its own pid namespace numbers it (what getpid() returns inside). */
static __always_inline __u32 task_nspid(struct task_struct *task, __u32 *pid_ns)
{
	struct pid *tp = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(tp, level);
	struct upid up = {};

	/* pid namespaces nest at most 32 deep (MAX_PID_NS_LEVEL). */
	bpf_core_read(&up, sizeof(up), &tp->numbers[level & 31]);
	if (pid_ns)
		*pid_ns = BPF_CORE_READ(up.ns, ns.inum);
	return up.nr;
}

/* The 10 namespace inodes of `task` (the inodes of the links in /proc/PID/ns); returns its nspid. */
static __always_inline __u32 task_namespaces(struct task_struct *task, struct vigil_namespaces *ns)
{
	struct nsproxy *nsp = BPF_CORE_READ(task, nsproxy);

	ns->uts = BPF_CORE_READ(nsp, uts_ns, ns.inum);
	ns->ipc = BPF_CORE_READ(nsp, ipc_ns, ns.inum);
	ns->mnt = BPF_CORE_READ(nsp, mnt_ns, ns.inum);
	ns->net = BPF_CORE_READ(nsp, net_ns, ns.inum);
	ns->cgroup = BPF_CORE_READ(nsp, cgroup_ns, ns.inum);
	ns->pid_for_children = BPF_CORE_READ(nsp, pid_ns_for_children, ns.inum);
	ns->time = 0;
	ns->time_for_children = 0;
	if (bpf_core_field_exists(nsp->time_ns)) {
		ns->time = BPF_CORE_READ(nsp, time_ns, ns.inum);
		ns->time_for_children = BPF_CORE_READ(nsp, time_ns_for_children, ns.inum);
	}
	ns->user = BPF_CORE_READ(task, cred, user_ns, ns.inum);
	return task_nspid(task, &ns->pid);
}

/* matchNamespaces: every entry holds for the current task. */
static __always_inline int namespaces_match(const struct vigil_selector_cfg *sel,
					    struct task_struct *task)
{
	struct vigil_namespaces ns = {};
	__u32 *inums = (__u32 *)&ns;

	task_namespaces(task, &ns);
	for (int i = 0; i < VIGIL_MAX_NS_FILTERS; i++) {
		const struct vigil_ns_filter *f = &sel->ns[i];
		__u32 v;
		int in = 0;

		if (i >= sel->nns)
			break;
		if (f->kind >= VIGIL_NS_KINDS)
			return 0; /* the loader writes no such kind */
		v = inums[f->kind];
		for (int j = 0; j < VIGIL_MAX_NS_VALUES; j++) {
			if (j >= f->nvalues)
				break;
			in |= f->values[j] == v;
		}
		if ((f->op == VIGIL_OP_IN) != in)
			return 0;
	}
	return 1;
}

#endif
