// SPDX-License-Identifier: GPL-2.0-only
/*
 * Syscall argument readers beyond integers and strings (kinds VIGIL_ARG_EXT_FIRST..LAST):
 * fd (the path of the descriptor through the task's file table), char_iovec, const_buf,
 * char_buf with returnCopy and with maxData, sockaddr. Part of vigil_engine.h, included at its end.
 *
 * They live in global (non-inlined) functions: the verifier checks each once on its own,
 * so hooks that use none of them pay nothing for them at load, and the engine's inlined
 * argument reader keeps its size.
 */

#ifndef VIGIL_ENGINE_ARGS_H
#define VIGIL_ENGINE_ARGS_H

#include "vigil_kobj.h"

#define IOV_MAX_WALK 1024 /* UIO_MAXIOV: the kernel refuses more iovecs */
#define ROW_MAX (VIGIL_ARG_STR_MAX - 1) /* bytes of a row an argument may fill */

struct iov_ctx {
	__u64 iov;   /* user address of the next struct iovec */
	__u64 count; /* iovecs the call passed */
	__u64 total; /* sum of their lengths: what the call asked for */
	__u32 slot;
	__u32 filled; /* bytes already in the row */
	__u32 error;
};

/* One iovec per iteration: its length counts, its bytes go to the row while there is room. */
static long iov_step(__u32 i, struct iov_ctx *c)
{
	__u32 zero = 0, n, room;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	struct iovec v;

	if (!s || i >= c->count)
		return 1;
	if (bpf_probe_read_user(&v, sizeof(v), (void *)(c->iov + i * sizeof(v)))) {
		c->error = 1;
		return 1;
	}
	c->total += (__u64)v.iov_len;
	if (c->filled >= ROW_MAX)
		return 0; /* keep counting: the event reports the full size */
	room = ROW_MAX - c->filled;
	n = v.iov_len < room ? (__u32)v.iov_len : room;
	if (n && bpf_probe_read_user(&s->st.strs[c->slot & 7][c->filled & ROW_MAX], n & ROW_MAX,
				     v.iov_base)) {
		c->error = 1;
		return 1;
	}
	c->filled += n;
	return 0;
}

/* Reads `len` bytes of user memory at `ptr` into the row of `slot`, at most a row's worth;
 * `want` (the size the call gave) goes to ints[] so a cut is reported, never silent. */
static __always_inline void buf_read(struct sys_scratch *s, __u32 slot, __u64 ptr, __u64 want)
{
	__u32 n = want < ROW_MAX ? (__u32)want : ROW_MAX;

	s->st.msg.ints[slot] = (__s64)want;
	if (n && bpf_probe_read_user(s->st.strs[slot], n & ROW_MAX, (void *)ptr)) {
		s->st.msg.str_error |= 1u << slot;
		return;
	}
	s->st.str_len_full[slot] = n;
	s->st.msg.str_len[slot] = n;
	if (want > n)
		s->st.msg.str_trunc |= 1u << slot;
}

struct data_ctx {
	__u64 ptr;
	__u64 id;
	__u32 total; /* bytes to send */
	__u32 tid;
	__u32 error;
	__u32 pad;
};

struct data_rec {
	struct vigil_data_msg m;
	__u8 bytes[VIGIL_DATA_CHUNK];
};

/* One chunk of a maxData buffer per iteration, straight from user memory into the ring. */
static long data_step(__u32 i, struct data_ctx *c)
{
	__u32 off = i * VIGIL_DATA_CHUNK, n;
	struct data_rec *r;

	if (off >= c->total)
		return 1;
	n = c->total - off;
	if (n > VIGIL_DATA_CHUNK)
		n = VIGIL_DATA_CHUNK;
	r = bpf_ringbuf_reserve(&vigil_events, sizeof(*r), 0);
	if (!r) {
		count(VIGIL_CNT_RB_LOST_POLICY);
		c->error = 1;
		return 1;
	}
	if (bpf_probe_read_user(r->bytes, n, (void *)(c->ptr + off))) {
		bpf_ringbuf_discard(r, 0);
		c->error = 1;
		return 1;
	}
	r->m.hdr.kind = VIGIL_MSG_DATA;
	r->m.hdr.pad[0] = r->m.hdr.pad[1] = r->m.hdr.pad[2] = 0;
	r->m.hdr.size = sizeof(r->m) + n;
	r->m.hdr.ktime = 0;
	r->m.id = c->id;
	r->m.tid = c->tid;
	r->m.off = off;
	r->m.len = n;
	r->m.pad = 0;
	bpf_ringbuf_submit(r, wakeup_flags());
	return 0;
}

/* maxData: the buffer goes ahead in chunks; the row keeps the id the event refers to. */
static __always_inline void data_read(struct sys_scratch *s, __u32 slot, __u64 ptr, __u64 want)
{
	struct data_ctx c = {
		.ptr = ptr,
		.id = bpf_ktime_get_ns(),
		.total = want < VIGIL_DATA_MAX ? (__u32)want : VIGIL_DATA_MAX,
		.tid = (__u32)bpf_get_current_pid_tgid(),
	};

	bpf_loop(VIGIL_DATA_MAX / VIGIL_DATA_CHUNK + 1, data_step, &c, 0);
	s->st.msg.ints[slot & 7] = (__s64)want;
	if (c.error) {
		s->st.msg.str_error |= 1u << slot;
		return;
	}
	__builtin_memcpy(s->st.strs[slot & 7], &c.id, sizeof(c.id));
	s->st.str_len_full[slot & 7] = sizeof(c.id);
	s->st.msg.str_len[slot & 7] = sizeof(c.id);
}

struct chain_ctx {
	__u64 addr;
	__u32 hook;
	__u32 slot;
	__u32 error;
};

/* One member step per iteration: load a pointer if the step says so, then add the offset. */
static long chain_step(__u32 i, struct chain_ctx *c)
{
	struct vigil_hook_cfg *h = bpf_map_lookup_elem(&vigil_sys_hooks, &c->hook);
	struct vigil_btf_chain *ch;
	__u32 slot = c->slot & 7, k = i & 15;

	/* Bounded registers the compiler must use as they are (see vigil_arg_ext). */
	asm volatile("" : "+r"(slot), "+r"(k));
	if (!h || k >= VIGIL_BTF_DEPTH || slot >= VIGIL_MAX_ARGS)
		return 1;
	ch = &h->chains[slot];
	if (k >= ch->nsteps)
		return 1;
	if ((ch->deref >> k) & 1) {
		if (!c->addr || bpf_probe_read_kernel(&c->addr, sizeof(c->addr), (void *)c->addr)) {
			c->error = 1;
			return 1;
		}
	}
	c->addr += ch->off[k];
	return 0;
}

/* BTF `resolve`: follows the member path from `base` (or the current task) to its leaf. */
static __always_inline void chain_read(struct sys_scratch *s, const struct vigil_hook_cfg *h,
				       __u32 hook, __u32 slot, __u64 base)
{
	const struct vigil_btf_chain *ch = &h->chains[slot];
	struct chain_ctx c = { .addr = base, .hook = hook, .slot = slot };
	__u64 v = 0;
	long n;

	if (ch->flags & VIGIL_CHAIN_TASK)
		c.addr = bpf_get_current_task();
	bpf_loop(VIGIL_BTF_DEPTH, chain_step, &c, 0);
	if (c.error || !c.addr)
		goto fail;
	switch (ch->leaf) {
	case VIGIL_LEAF_INT:
	case VIGIL_LEAF_PTR: {
		__u32 size = ch->size & 15;

		if (size > 8)
			size = 8;
		if (bpf_probe_read_kernel(&v, size, (void *)c.addr))
			goto fail;
		if ((ch->flags & VIGIL_CHAIN_SIGNED) && size < 8) {
			__u32 shift = (64 - 8 * size) & 63;

			v = (__u64)(((__s64)(v << shift)) >> shift);
		}
		s->st.msg.ints[slot] = (__s64)v;
		return;
	}
	case VIGIL_LEAF_CHAR_PTR:
		if (bpf_probe_read_kernel(&c.addr, sizeof(c.addr), (void *)c.addr))
			goto fail;
		/* fall through */
	case VIGIL_LEAF_CHAR_ARR:
		n = bpf_probe_read_kernel_str(s->st.strs[slot], VIGIL_ARG_STR_MAX, (void *)c.addr);
		if (n <= 0)
			goto fail;
		s->st.str_len_full[slot] = (n - 1) & ROW_MAX;
		s->st.msg.str_len[slot] = (n - 1) & ROW_MAX;
		if (n == VIGIL_ARG_STR_MAX)
			s->st.msg.str_trunc |= 1u << slot;
		return;
	}
fail:
	s->st.msg.str_error |= 1u << slot;
}

/* A user struct sockaddr (sockaddr_in, sockaddr_in6, or any other family: family only). */
static __always_inline long sa_copy(void *dst, __u32 n, __u64 src, int kernel)
{
	return kernel ? bpf_probe_read_kernel(dst, n, (void *)src)
		      : bpf_probe_read_user(dst, n, (void *)src);
}

static __always_inline void sockaddr_read(struct sys_scratch *s, __u32 slot, __u64 raw,
					  int kernel)
{
	struct vigil_sockaddr *sa = (void *)s->st.strs[slot & 7];
	__u8 b[24]; /* sockaddr_in6 up to its address: family, port, flowinfo, address */
	__u16 family;

	if (sa_copy(&family, sizeof(family), raw, kernel)) {
		s->st.msg.str_error |= 1u << slot;
		return;
	}
	__builtin_memset(sa, 0, sizeof(*sa));
	sa->family = family;
	/* sockaddr_in is 16 bytes: never read past what the caller may have given. */
	if (family == SA_AF_INET && !sa_copy(b, 8, raw, kernel)) {
		sa->port = (__u16)b[2] << 8 | b[3];
		__builtin_memcpy(sa->addr, &b[4], 4);
	} else if (family == SA_AF_INET6 && !sa_copy(b, 24, raw, kernel)) {
		sa->port = (__u16)b[2] << 8 | b[3];
		__builtin_memcpy(sa->addr, &b[8], 16);
	}
	s->st.msg.ints[slot & 7] = family;
	s->st.str_len_full[slot & 7] = sizeof(*sa);
	s->st.msg.str_len[slot & 7] = sizeof(*sa);
}

/*
 * Reads argument `slot` of hook `hook` (an EXT kind) from its raw value; `aux` is the raw
 * value of the argument its size_index names (char_iovec: the iovec count).
 */
__noinline int vigil_arg_ext(__u32 hook, __u32 slot, __u64 raw, __u64 aux)
{
	__u32 zero = 0, trunc = 0;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	struct vigil_hook_cfg *h = bpf_map_lookup_elem(&vigil_sys_hooks, &hook);
	long n;

	/* One bounded register for every use below (the verifier sees the mask, not the test). */
	slot &= 7;
	asm volatile("" : "+r"(slot));
	if (!s || !h || slot >= VIGIL_MAX_ARGS)
		return 0;
	s->st.msg.str_len[slot] = 0;
	s->st.str_len_full[slot] = 0;
	s->st.msg.ints[slot] = 0;
	s->file_ino[slot] = 0;
	s->file_dev[slot] = 0;
	switch (h->arg_kind[slot]) {
	case VIGIL_ARG_FD: {
		/* Resolved at entry: after close(2) the descriptor means nothing. */
		struct file *f = fd_file((__s32)raw);
		struct dentry *d;

		if (!f) {
			s->st.msg.str_error |= 1u << slot;
			return 0;
		}
		d = BPF_CORE_READ(f, f_path.dentry);
		s->st.msg.ints[slot] = kobj_mode(d);
		kobj_ident(d, &s->file_ino[slot], &s->file_dev[slot]);
		n = kobj_path(s->st.strs[slot], d, BPF_CORE_READ(f, f_path.mnt), &trunc);
		if (n < 0) {
			s->st.msg.str_error |= 1u << slot;
			return 0;
		}
		s->st.str_len_full[slot] = n & ROW_MAX;
		s->st.msg.str_len[slot] = n & ROW_MAX;
		if (trunc)
			s->st.msg.str_trunc |= 1u << slot;
		return 0;
	}
	case VIGIL_ARG_IOVEC: {
		struct iov_ctx c = { .iov = raw, .count = aux, .slot = slot };

		if (c.count > IOV_MAX_WALK)
			c.count = IOV_MAX_WALK;
		bpf_loop(IOV_MAX_WALK, iov_step, &c, 0);
		s->st.msg.ints[slot] = (__s64)c.total;
		if (c.error) {
			s->st.msg.str_error |= 1u << slot;
			return 0;
		}
		s->st.str_len_full[slot] = c.filled & ROW_MAX;
		s->st.msg.str_len[slot] = c.filled & ROW_MAX;
		if (c.total > c.filled)
			s->st.msg.str_trunc |= 1u << slot;
		return 0;
	}
	case VIGIL_ARG_CONST_BUF:
		buf_read(s, slot, raw, h->const_size[slot]);
		return 0;
	case VIGIL_ARG_BUF_RET:
		/* Read at the exit (vigil_arg_retcopy): the buffer is filled by the call. */
		s->st.msg.ints[slot] = (__s64)raw;
		return 0;
	case VIGIL_ARG_SOCKADDR:
		sockaddr_read(s, slot, raw, 0);
		return 0;
	case VIGIL_ARG_KSOCKADDR:
		sockaddr_read(s, slot, raw, 1);
		return 0;
	case VIGIL_ARG_BUF_DATA:
		data_read(s, slot, raw, aux);
		return 0;
	case VIGIL_ARG_BTF:
	case VIGIL_ARG_BTF_STR:
		chain_read(s, h, hook, slot, raw);
		return 0;
	}
	s->st.msg.str_error |= 1u << slot;
	return 0;
}

/* At the paired exit: the returnCopy buffers, `ret` bytes each (what the call produced). */
__noinline int vigil_arg_retcopy(__u32 hook, __s64 ret)
{
	__u32 zero = 0;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	struct vigil_hook_cfg *h = bpf_map_lookup_elem(&vigil_sys_hooks, &hook);

	if (!s || !h)
		return 0;
	for (int i = 0; i < VIGIL_MAX_ARGS; i++) {
		__u64 ptr;

		if (h->arg_kind[i] != VIGIL_ARG_BUF_RET)
			continue;
		ptr = (__u64)s->st.msg.ints[i];
		s->st.msg.str_len[i] = 0;
		s->st.str_len_full[i] = 0;
		s->st.msg.str_error &= ~(1u << i);
		s->st.msg.str_trunc &= ~(1u << i);
		buf_read(s, i, ptr, ret > 0 ? (__u64)ret : 0);
	}
	return 0;
}

#endif
