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

static __always_inline int port_in(__u32 port, const struct vigil_arg_filter *f)
{
	for (int i = 0; i < VIGIL_MAX_INT_VALUES; i++) {
		__u64 v = (__u64)f->values[i];

		if (i >= f->nvalues)
			break;
		if (port >= ((v >> 16) & 0xffff) && port <= (v & 0xffff))
			return 1;
	}
	return 0;
}

/* The address in CIDR set `set_id`: one LPM lookup, the family tag first. */
static __always_inline int addr_in(struct sys_scratch *s, const struct vigil_sockaddr *sa,
				   __u32 set_id)
{
	if (sa->family == SA_AF_INET) {
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

/* 1: filter `f` holds for the sockaddr in row `slot`. Port and address operators need an
 * internet family; their negated forms hold for any other family. */
static __always_inline int sockaddr_op(struct sys_scratch *s, __u32 slot,
				       const struct vigil_arg_filter *f)
{
	const struct vigil_sockaddr *sa = (const void *)s->st.strs[slot & 7];
	int inet = sa->family == SA_AF_INET || sa->family == SA_AF_INET6;

	switch (f->op) {
	case VIGIL_OP_PORT:
		return inet && port_in(sa->port, f);
	case VIGIL_OP_NOT_PORT:
		return !(inet && port_in(sa->port, f));
	case VIGIL_OP_PORT_PRIV:
		return inet && sa->port < 1024;
	case VIGIL_OP_NOT_PORT_PRIV:
		return !(inet && sa->port < 1024);
	case VIGIL_OP_ADDR:
		return addr_in(s, sa, f->set_id);
	case VIGIL_OP_NOT_ADDR:
		return !addr_in(s, sa, f->set_id);
	}
	/* Family: integer compare on the family (ints[]). */
	return int_match(s->st.msg.ints[slot & 7], f);
}

#endif
