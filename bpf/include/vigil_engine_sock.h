// SPDX-License-Identifier: GPL-2.0-only
/*
 * Network operators of the engine (SAddr/DAddr/SPort/DPort, the Priv forms, Protocol/Family/State and
 * their Not* forms) on rows holding a struct vigil_sock_info (vigil_kobj_net.h). Part of
 * vigil_engine.h: included there, after the string operators; only programs that read
 * kernel objects (vigil_kobj.h included first) have such rows.
 */
#ifndef VIGIL_ENGINE_SOCK_H
#define VIGIL_ENGINE_SOCK_H

#if defined(VIGIL_KOBJ_H) && defined(VIGIL_KOBJ_NET)
#define VIGIL_ENGINE_SOCK_OPS

/* CIDR sets share the prefix trie with strings: key data = [4 or 6] + address bytes,
 * prefixlen = 32 (set id) + 8 (family byte) + the CIDR's bits. */
static __always_inline int sock_addr_in(struct sys_scratch *s, const __u8 *addr, __u16 family,
					__u32 set_id)
{
	/* The lookup compares at most prefixlen bits: the key's later bytes need no clearing. */
	if (family == KOBJ_AF_INET) {
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

#endif /* VIGIL_KOBJ_H && VIGIL_KOBJ_NET */
#endif
