/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Posting a matched event: the record (message, argument rows, resolved path, stacks)
 * written into the ring buffer in one reservation, and Post's rateLimit. Part of
 * vigil_engine.h: included there, before the actions that post.
 */
#ifndef VIGIL_ENGINE_POST_H
#define VIGIL_ENGINE_POST_H

static __always_inline void post(struct sys_scratch *s, __u32 hook, __u32 selector)
{
	struct vigil_syscall_msg *m = &s->st.msg;
	__u32 total = sizeof(*m), off = sizeof(*m), plen = 0, slen = m->ustack_len;
	__u32 klen = m->kstack_len;
	struct bpf_dynptr rec;

	for (int i = 0; i < VIGIL_MAX_ARGS; i++)
		total += m->str_len[i] & (VIGIL_ARG_STR_MAX - 1);
	if (m->flags & VIGIL_SYSMSG_PATH)
		plen = m->path_len & (VIGIL_ARG_STR_MAX - 1);
	m->path_len = plen;
	total += plen;
	if (slen > sizeof(s->ustack))
		slen = 0;
	m->ustack_len = slen;
	total += slen;
	if (klen > sizeof(s->kstack))
		klen = 0;
	m->kstack_len = klen;
	total += klen;
	m->hdr.size = total;
	{
		__u32 zero = 0;
		struct vigil_policy_conf *c = bpf_map_lookup_elem(&vigil_policy_conf, &zero);

		m->generation = c ? c->generation : 0;
	}
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
	off += plen;
	if (slen)
		bpf_dynptr_write(&rec, off, s->ustack, slen, 0);
	off += slen;
	if (klen)
		bpf_dynptr_write(&rec, off, s->kstack, klen, 0);
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

#endif
