// SPDX-License-Identifier: GPL-2.0-only
/*
 * Operators on sockaddr arguments (Tetragon's Family, SAddr/NotSAddr, SPort/NotSPort,
 * SPortPriv/NotSPortPriv applied to the address a connect/bind/sendto names). The argument
 * is a struct vigil_sockaddr in its row (read by vigil_arg_ext). Part of vigil_engine.h,
 * included before the filter evaluation.
 */

#ifndef VIGIL_ENGINE_SOCKADDR_H
#define VIGIL_ENGINE_SOCKADDR_H

#define SA_AF_INET 2
#define SA_AF_INET6 10

/* Ports: up to 2 ranges (lo << 16 | hi), packed two per 64-bit word by the caller. */
static __always_inline int port_in(__u32 port, __u32 nvalues, __u64 packed)
{
	for (int i = 0; i < 2; i++) {
		__u32 v = i ? (__u32)packed : (__u32)(packed >> 32);

		if (i >= nvalues)
			break;
		if (port >= (v >> 16) && port <= (v & 0xffff))
			return 1;
	}
	return 0;
}

/* The address in CIDR set `set_id`: one LPM lookup, the family tag first. */
static __always_inline int addr_in(struct sys_scratch *s, const struct vigil_sockaddr *sa,
				   __u32 set_id)
{
	if (sa->family == SA_AF_INET6 && addr_v4_mapped(sa->addr)) {
		s->key.data[0] = VIGIL_SA_TAG_V4;
		__builtin_memcpy(&s->key.data[1], sa->addr + 12, 4);
		s->key.prefixlen = 32 + 8 + 32;
	} else if (sa->family == SA_AF_INET) {
		s->key.data[0] = VIGIL_SA_TAG_V4;
		__builtin_memcpy(&s->key.data[1], sa->addr, 4);
		s->key.prefixlen = 32 + 8 + 32;
	} else if (sa->family == SA_AF_INET6) {
		s->key.data[0] = VIGIL_SA_TAG_V6;
		__builtin_memcpy(&s->key.data[1], sa->addr, 16);
		s->key.prefixlen = 32 + 8 + 128;
	} else {
		return 0; /* no address to compare */
	}
	s->key.set_id = set_id;
	return bpf_map_lookup_elem(&vigil_str_prefix, &s->key) != NULL;
}

/*
 * 1: the filter (op, set_id, nvalues, values packed: two 32-bit values) holds for the
 * sockaddr in row `slot`. Port and address operators need an internet family; their negated
 * forms hold for any other family. A global function: checked once by the verifier on its
 * own (inlined in the filter callback it cost about +40% of the engine's verification).
 */
__noinline int vigil_sockaddr_op(__u32 slot, __u32 op, __u32 set_id, __u32 nvalues, __u64 packed)
{
	__u32 zero = 0;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	const struct vigil_sockaddr *sa;
	int inet;

	if (!s)
		return 0;
	sa = (const void *)s->st.strs[slot & 7];
	inet = sa->family == SA_AF_INET || sa->family == SA_AF_INET6;
	switch (op) {
	case VIGIL_OP_PORT:
		return inet && port_in(sa->port, nvalues, packed);
	case VIGIL_OP_NOT_PORT:
		return !(inet && port_in(sa->port, nvalues, packed));
	case VIGIL_OP_PORT_PRIV:
		return inet && sa->port < 1024;
	case VIGIL_OP_NOT_PORT_PRIV:
		return !(inet && sa->port < 1024);
	case VIGIL_OP_ADDR:
		return addr_in(s, sa, set_id);
	case VIGIL_OP_NOT_ADDR:
		return !addr_in(s, sa, set_id);
	}
	/* Family: the family is one of the (up to 2) values. */
	for (int i = 0; i < 2; i++) {
		__u32 v = i ? (__u32)packed : (__u32)(packed >> 32);

		if (i < nvalues && sa->family == v)
			return 1;
	}
	return 0;
}

#endif
