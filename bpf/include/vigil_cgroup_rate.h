/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * --cgroup-rate N,interval (Tetragon's semantics): the lifecycle programs count exec and exit
 * events per cgroup and per CPU; once a cgroup reaches N events within a sliding interval on
 * a CPU, that CPU throttles it: its events are withheld until the agent, having seen the
 * cgroup under the rate for 5 s, clears `throttled` (src/agent/cgroup_rate.rs).
 *
 * The rate is an estimate over two aligned windows: the current window's count plus the part
 * of the previous window's count that the sliding interval still covers.
 *
 * Callers test vigil_cfg.rate_interval_ns first: it is read-only data, so with the flag off
 * the verifier removes the call and the cost is that one test.
 *
 * Include after vigil_events, vigil_cfg and vigil_wakeup.h.
 */
#ifndef VIGIL_CGROUP_RATE_H
#define VIGIL_CGROUP_RATE_H

#define VIGIL_RATE_CGROUPS 32768 /* the loader's size when the flag is on (Tetragon's) */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1); /* VIGIL_RATE_CGROUPS when --cgroup-rate is set */
	/* Memory for the cgroups that run something, not for the table's capacity times the
	 * number of CPUs. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct vigil_rate_value);
} vigil_cgroup_rate SEC(".maps");

/* The cgroup whose name exec messages carry (read_cgroup in lifecycle.bpf.c): the unified
 * hierarchy's, or on hybrid hosts the memory controller's when the unified one is the root. */
static __always_inline struct cgroup *rate_cgroup(struct task_struct *task)
{
	struct cgroup *cg = BPF_CORE_READ(task, cgroups, dfl_cgrp);

	if (BPF_CORE_READ(cg, level) == 0 &&
	    bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id)) {
		int sid = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
		struct cgroup_subsys_state *css;

		bpf_core_read(&css, sizeof(css), &task->cgroups->subsys[sid & 15]);
		if (css)
			cg = BPF_CORE_READ(css, cgroup);
	}
	return cg;
}

/*
 * Counts one event of `task`'s cgroup at `now`; true when the event is to be withheld.
 * The event that crosses the rate is the first withheld, and it sends the THROTTLE message.
 */
static __always_inline bool vigil_rate_throttled(struct task_struct *task, __u64 now)
{
	__u64 interval = vigil_cfg.rate_interval_ns;
	__u64 limit = vigil_cfg.rate_events;
	struct cgroup *cg = rate_cgroup(task);
	__u64 id = BPF_CORE_READ(cg, kn, id);
	struct vigil_rate_value *v = bpf_map_lookup_elem(&vigil_cgroup_rate, &id);
	struct vigil_throttle_msg *m;
	__u64 elapsed, prev;
	long n;

	if (!v) {
		struct vigil_rate_value fresh = {
			.curr = 1,
			.window = now / interval * interval,
		};

		/* A full table tracks no more cgroups: their events pass. */
		bpf_map_update_elem(&vigil_cgroup_rate, &id, &fresh, BPF_NOEXIST);
		return false;
	}
	/* Another CPU's insert leaves this CPU's slot zeroed: a window far in the past. */
	elapsed = now - v->window;
	if (elapsed > interval) {
		if (elapsed > 2 * interval) {
			v->prev = 0;
			v->window = now / interval * interval;
		} else {
			v->prev = v->curr;
			v->window += interval;
		}
		v->curr = 0;
	}
	v->curr++;
	elapsed = now - v->window;
	if (elapsed > interval)
		elapsed = interval;
	/* Capped so that the product stays far from overflow (the agent bounds both). */
	prev = v->prev < limit ? v->prev : limit;
	v->rate = (interval - elapsed) * prev / interval + v->curr;
	if (v->throttled || v->rate < limit)
		return v->throttled != 0;

	/* Throttled only once the agent is told: it is the one that ends throttling. */
	m = bpf_ringbuf_reserve(&vigil_events, sizeof(*m), 0);
	if (!m)
		return false;
	m->hdr.kind = VIGIL_MSG_THROTTLE;
	m->hdr.pad[0] = m->hdr.pad[1] = m->hdr.pad[2] = 0;
	m->hdr.size = sizeof(*m);
	m->hdr.ktime = now;
	m->cgroup_id = id;
	m->pad = 0;
	n = bpf_probe_read_kernel_str(m->cgroup, sizeof(m->cgroup), BPF_CORE_READ(cg, kn, name));
	m->cgroup_len = n > 1 ? (__u32)(n - 1) : 0;
	bpf_ringbuf_submit(m, wakeup_flags());
	v->throttled = now;
	return true;
}

#endif
