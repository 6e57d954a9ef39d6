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

/* The inode of one namespace (kind: index in struct vigil_namespaces) of `task`. */
static __always_inline __u32 task_namespace(struct task_struct *task, __u32 kind)
{
	struct nsproxy *nsp = BPF_CORE_READ(task, nsproxy);
	__u32 pid_ns = 0;

	switch (kind) {
	case 0:
		return BPF_CORE_READ(nsp, uts_ns, ns.inum);
	case 1:
		return BPF_CORE_READ(nsp, ipc_ns, ns.inum);
	case 2:
		return BPF_CORE_READ(nsp, mnt_ns, ns.inum);
	case 3:
		task_nspid(task, &pid_ns);
		return pid_ns;
	case 4:
		return BPF_CORE_READ(nsp, pid_ns_for_children, ns.inum);
	case 5:
		return BPF_CORE_READ(nsp, net_ns, ns.inum);
	case 6:
		return bpf_core_field_exists(nsp->time_ns) ? BPF_CORE_READ(nsp, time_ns, ns.inum) : 0;
	case 7:
		return bpf_core_field_exists(nsp->time_ns_for_children) ?
			       BPF_CORE_READ(nsp, time_ns_for_children, ns.inum) :
			       0;
	case 8:
		return BPF_CORE_READ(nsp, cgroup_ns, ns.inum);
	default:
		return BPF_CORE_READ(task, cred, user_ns, ns.inum);
	}
}

#endif
