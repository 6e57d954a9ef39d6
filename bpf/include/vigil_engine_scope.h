/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Pod scope of a policy object: TracingPolicyNamespaced, spec.podSelector and
 * spec.containerSelector apply a policy to the containers of some pods only. User space
 * (src/agent/scope.rs) keeps the set of those containers' cgroup ids current as pods and
 * containers come and go; the engine asks scope_allows() first, so out-of-scope tasks cost
 * one array and one hash lookup and nothing else.
 *
 * The id is the task's cgroup v2 id (bpf_get_current_cgroup_id), the inode of its
 * directory in the unified hierarchy: what runc gives its containers on v2 and hybrid hosts.
 */
#ifndef VIGIL_ENGINE_SCOPE_H
#define VIGIL_ENGINE_SCOPE_H

/* The cgroup ids in scope (allocated as filled: most objects are not scoped). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_SCOPE_MAX_CGROUPS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u8);
} vigil_scope_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_SCOPE_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} vigil_scope_counters SEC(".maps");

static __always_inline int scope_allows(void)
{
	__u32 zero = 0, which;
	struct vigil_policy_conf *c = bpf_map_lookup_elem(&vigil_policy_conf, &zero);
	__u64 cgroup, *n;
	int in;

	if (!c || !c->scoped)
		return 1;
	cgroup = bpf_get_current_cgroup_id();
	in = bpf_map_lookup_elem(&vigil_scope_cgroups, &cgroup) != NULL;
	which = in ? VIGIL_SCOPE_IN : VIGIL_SCOPE_OUT;
	n = bpf_map_lookup_elem(&vigil_scope_counters, &which);
	if (n)
		*n += 1;
	return in;
}

#endif
