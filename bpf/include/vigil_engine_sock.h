// SPDX-License-Identifier: GPL-2.0-only
/*
 * Network operators of the engine (SAddr/DAddr/SPort/DPort, the Priv forms, Protocol/Family/State and
 * their Not* forms) on rows holding a struct vigil_sock_info (vigil_kobj_net.h). Part of
 * vigil_engine.h: included there, after the string operators; only programs that read
 * kernel objects (vigil_kobj.h included first) have such rows.
 */
#ifndef VIGIL_ENGINE_SOCK_H
#define VIGIL_ENGINE_SOCK_H

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address it carries: an AF_INET6
 * socket reaches a.b.c.d with it, so every address operator compares it as IPv4. */
static __always_inline int addr_v4_mapped(const __u8 *a)
{
	__u64 lo;

	__builtin_memcpy(&lo, a, 8);
	return lo == 0 && a[8] == 0 && a[9] == 0 && a[10] == 0xff && a[11] == 0xff;
}

#if defined(VIGIL_KOBJ_H) && defined(VIGIL_KOBJ_NET)
#define VIGIL_ENGINE_SOCK_OPS

/* CIDR sets share the prefix trie with strings: key data = [4 or 6] + address bytes,
 * prefixlen = 32 (set id) + 8 (family byte) + the CIDR's bits. */
static __always_inline int sock_addr_in(struct sys_scratch *s, const __u8 *addr, __u16 family,
					__u32 set_id)
{
	/* The lookup compares at most prefixlen bits: the key's later bytes need no clearing. */
	if (family == KOBJ_AF_INET6 && addr_v4_mapped(addr)) {
		s->key.data[0] = 4;
		__builtin_memcpy(&s->key.data[1], addr + 12, 4);
		s->key.prefixlen = 32 + 8 + 32;
	} else if (family == KOBJ_AF_INET) {
		s->key.data[0] = 4;
		__builtin_memcpy(&s->key.data[1], addr, 4);
		s->key.prefixlen = 32 + 8 + 32;
	} else if (family == KOBJ_AF_INET6) {
		s->key.data[0] = 6;
		__builtin_memcpy(&s->key.data[1], addr, 16);
		s->key.prefixlen = 32 + 8 + 128;
	} else {
		return 0; /* not an IP socket: no address is in a CIDR */
	}
	s->key.set_id = set_id;
	return bpf_map_lookup_elem(&vigil_str_prefix, &s->key) != NULL;
}

/* Port ranges: values[i] = lo | hi << 32 (a single port has lo == hi). */
static __always_inline int sock_port_in(__u16 port, const struct vigil_arg_filter *f)
{
	for (int i = 0; i < VIGIL_MAX_INT_VALUES; i++) {
		__u64 v = f->values[i];

		if (i >= f->nvalues)
			break;
		if (port >= (__u32)v && port <= (__u32)(v >> 32))
			return 1;
	}
	return 0;
}

static __always_inline int sock_any_of(__u32 x, const struct vigil_arg_filter *f)
{
	for (int i = 0; i < VIGIL_MAX_INT_VALUES; i++) {
		if (i >= f->nvalues)
			break;
		if ((__s64)x == f->values[i])
			return 1;
	}
	return 0;
}

/* 1: network filter `f` holds for the row of `slot`. */
static __always_inline int sock_match(struct sys_scratch *s, __u32 slot,
				      const struct vigil_arg_filter *f)
{
	const struct vigil_sock_info *n = (const void *)s->st.strs[slot & 7];

	switch (f->op) {
	case VIGIL_OP_SADDR:
		return sock_addr_in(s, n->saddr, n->family, f->set_id);
	case VIGIL_OP_NOT_SADDR:
		return !sock_addr_in(s, n->saddr, n->family, f->set_id);
	case VIGIL_OP_DADDR:
		return sock_addr_in(s, n->daddr, n->family, f->set_id);
	case VIGIL_OP_NOT_DADDR:
		return !sock_addr_in(s, n->daddr, n->family, f->set_id);
	case VIGIL_OP_SPORT:
		return sock_port_in(n->sport, f);
	case VIGIL_OP_NOT_SPORT:
		return !sock_port_in(n->sport, f);
	case VIGIL_OP_DPORT:
		return sock_port_in(n->dport, f);
	case VIGIL_OP_NOT_DPORT:
		return !sock_port_in(n->dport, f);
	case VIGIL_OP_SPORT_PRIV:
		return n->sport < 1024;
	case VIGIL_OP_NOT_SPORT_PRIV:
		return n->sport >= 1024;
	case VIGIL_OP_DPORT_PRIV:
		return n->dport < 1024;
	case VIGIL_OP_NOT_DPORT_PRIV:
		return n->dport >= 1024;
	case VIGIL_OP_PROTOCOL:
		return sock_any_of(n->protocol, f);
	case VIGIL_OP_FAMILY:
		return sock_any_of(n->family, f);
	case VIGIL_OP_STATE:
		return sock_any_of(n->state, f);
	}
	return 0;
}

/*
 * Filter `fidx` of selector `sel_idx` on its network row. A global function, checked once by
 * the verifier on its own: inlined in the filter callback, next to the other operators, it
 * multiplied the callback's states past the verifier's 1M-instruction budget.
 */
__noinline int vigil_sock_match(__u32 sel_idx, __u32 fidx)
{
	__u32 zero = 0;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	struct vigil_selector_cfg *sel = bpf_map_lookup_elem(&vigil_sys_selectors, &sel_idx);

	/* One bounded register for the test and the access (6.1 does not link copies). */
	fidx &= 7;
	asm volatile("" : "+r"(fidx));
	if (!s || !sel || fidx >= VIGIL_MAX_ARG_FILTERS)
		return 0;
	return sock_match(s, sel->filters[fidx].slot & 7, &sel->filters[fidx]);
}

/* TrackSock: socket (struct sock address) -> the process that owns it, so that events on
 * it in another task's context (softirq receive, timers) name the owner. Shared by every
 * policy object (created by the agent, crate vigil-bpf SharedMaps). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VIGIL_SOCKTRACK_MAX);
	__type(key, __u64);
	__type(value, struct vigil_proc_key);
} vigil_socktrack SEC(".maps");

/* The struct sock address of network row `slot` (0: not a socket row). */
static __always_inline __u64 sock_of_slot(struct sys_scratch *s, __u32 slot)
{
	struct vigil_sock_info *o = (struct vigil_sock_info *)s->st.strs[slot & 7];

	if ((slot & 7) >= VIGIL_MAX_ARGS || s->st.msg.str_len[slot & 7] < sizeof(*o))
		return 0;
	return o->cookie;
}

/* TrackSock / UntrackSock of a matched selector, and returnArgAction. */
static __always_inline void sock_track(struct sys_scratch *s, const struct vigil_hook_cfg *h,
				       const struct vigil_selector_cfg *sel, __u32 actions,
				       struct vigil_proc_entry *proc)
{
	__u64 sk;

	if (actions & (VIGIL_ACT_TRACK_SOCK | VIGIL_ACT_UNTRACK_SOCK)) {
		sk = sock_of_slot(s, sel->sock_slot);
		if (sk && (actions & VIGIL_ACT_TRACK_SOCK) && proc)
			bpf_map_update_elem(&vigil_socktrack, &sk, &proc->key, BPF_ANY);
		else if (sk && (actions & VIGIL_ACT_UNTRACK_SOCK))
			bpf_map_delete_elem(&vigil_socktrack, &sk);
	}
	if (h->flags & (VIGIL_HOOK_RET_TRACK_SOCK | VIGIL_HOOK_RET_UNTRACK_SOCK)) {
		sk = sock_of_slot(s, h->ret_sock_slot);
		if (sk && (h->flags & VIGIL_HOOK_RET_TRACK_SOCK) && proc)
			bpf_map_update_elem(&vigil_socktrack, &sk, &proc->key, BPF_ANY);
		else if (sk && (h->flags & VIGIL_HOOK_RET_UNTRACK_SOCK))
			bpf_map_delete_elem(&vigil_socktrack, &sk);
	}
}

/* The owner of the hook's socket if it is tracked (into *key), else 0. */
static __always_inline int sock_owner(struct sys_scratch *s, const struct vigil_hook_cfg *h,
				      struct vigil_proc_key *key)
{
	struct vigil_proc_key *owner;
	__u64 sk;

	if (h->sock_slot >= VIGIL_MAX_ARGS)
		return 0;
	sk = sock_of_slot(s, h->sock_slot);
	owner = sk ? bpf_map_lookup_elem(&vigil_socktrack, &sk) : 0;
	if (!owner)
		return 0;
	*key = *owner;
	return 1;
}

#endif /* VIGIL_KOBJ_H && VIGIL_KOBJ_NET */
#endif
