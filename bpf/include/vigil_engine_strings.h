// SPDX-License-Identifier: GPL-2.0-only
/*
 * String operators of the engine (Equal by hash, Prefix by LPM trie, Postfix by a reversed
 * LPM trie). Part of vigil_engine.h: included there, after the maps and counters.
 */

#ifndef VIGIL_ENGINE_STRINGS_H
#define VIGIL_ENGINE_STRINGS_H

/* ---- string operators ----------------------------------------------------------------- */

static __always_inline int str_equal(struct sys_scratch *s, __u32 row, __u32 set_id)
{
	__u32 len = s->st.str_len_full[row & 7] & 0x1ff;

	if (len > VIGIL_STR_MATCH)
		return 0; /* longer than any value a set can hold */
	__builtin_memset(&s->key, 0, sizeof(s->key));
	s->key.set_id = set_id;
	bpf_probe_read_kernel(s->key.data, len, s->st.strs[row & 7]);
	return bpf_map_lookup_elem(&vigil_str_eq, &s->key) != NULL;
}

static __always_inline int str_prefix(struct sys_scratch *s, __u32 row, __u32 set_id)
{
	__u32 len = s->st.str_len_full[row & 7];

	if (len > VIGIL_STR_MATCH)
		len = VIGIL_STR_MATCH;
	s->key.prefixlen = 32 + 8 * len;
	s->key.set_id = set_id;
	bpf_probe_read_kernel(s->key.data, VIGIL_STR_MATCH, s->st.strs[row & 7]);
	return bpf_map_lookup_elem(&vigil_str_prefix, &s->key) != NULL;
}

struct rev_ctx {
	__u32 row;
	__u32 len;
};

static long rev_step(__u32 i, struct rev_ctx *c)
{
	__u32 zero = 0;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	__u32 from;

	if (!s || i >= c->len)
		return 1;
	from = c->len - 1 - i;
	s->key.data[i & (VIGIL_STR_MATCH - 1)] =
		s->st.strs[c->row & 7][from & (VIGIL_ARG_STR_MAX - 1)];
	return 0;
}

static __always_inline int str_postfix(struct sys_scratch *s, __u32 row, __u32 set_id)
{
	struct rev_ctx c = { .row = row };
	__u32 len = s->st.str_len_full[row & 7];

	/* Postfix compares the last bytes: reversed into the key, then a prefix lookup. */
	if (len > VIGIL_ARG_STR_MAX)
		len = VIGIL_ARG_STR_MAX;
	c.len = len;
	__builtin_memset(&s->key, 0, sizeof(s->key));
	bpf_loop(VIGIL_STR_MATCH, rev_step, &c, 0);
	if (len > VIGIL_STR_MATCH)
		len = VIGIL_STR_MATCH;
	s->key.prefixlen = 32 + 8 * len;
	s->key.set_id = set_id;
	return bpf_map_lookup_elem(&vigil_str_postfix, &s->key) != NULL;
}

/*
 * The positive form of a string operator on one row: Equal, Prefix or Postfix. Equal and
 * Prefix first compare the bytes every value of the set starts with (up to 8, packed by the
 * loader in values[0], count in nvalues): most strings leave there, before any map lookup.
 */
static __always_inline int str_op(struct sys_scratch *s, __u32 row,
				  const struct vigil_arg_filter *f)
{
	__u32 n = f->nvalues;

	if (n && f->op != VIGIL_OP_POSTFIX && f->op != VIGIL_OP_NOT_POSTFIX) {
		__u64 first = *(__u64 *)s->st.strs[row & 7];
		__u64 mask = n >= 8 ? ~0ULL : ((1ULL << (8 * n)) - 1);

		if (s->st.str_len_full[row & 7] < n || ((first ^ (__u64)f->values[0]) & mask))
			return 0;
	}
	switch (f->op) {
	case VIGIL_OP_EQ:
	case VIGIL_OP_NEQ:
		return str_equal(s, row, f->set_id);
	case VIGIL_OP_PREFIX:
	case VIGIL_OP_NOT_PREFIX:
		return str_prefix(s, row, f->set_id);
	case VIGIL_OP_POSTFIX:
	case VIGIL_OP_NOT_POSTFIX:
		return str_postfix(s, row, f->set_id);
	}
	return 0;
}


#endif
