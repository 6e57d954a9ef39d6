/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernel structures read as a summary (kinds VIGIL_ARG_KSTRUCT_FIRST..LAST): credentials, user
 * namespaces, capability sets, BPF programs/maps/load attributes, perf events, kernel modules
 * and I/O iterators. Each reader fills a fixed struct of vigil_abi.h in the argument's row;
 * the agent turns it into Tetragon's argument (process_credentials_arg, bpf_attr_arg, ...).
 *
 * Included by the kernel-function objects after vigil_engine.h (the only programs whose
 * arguments are kernel pointers). One global function: verified once, and its frame sits
 * beside the other readers', not under them.
 */
#ifndef VIGIL_KOBJ_STRUCT_H
#define VIGIL_KOBJ_STRUCT_H

/* Module-internal (kernel/module/internal.h): not in every vmlinux.h, always in the BTF. */
struct load_info___vigil {
	const char *name;
	struct module *mod;
	bool sig_ok;
} __attribute__((preserve_access_index));

/* `sig_ok` exists only with CONFIG_MODULE_SIG (not in this vmlinux.h; Debian has it). */
struct module___sig {
	bool sig_ok;
} __attribute__((preserve_access_index));

/* Before 6.4 the iovec pointer of an iov_iter was `iov`. */
struct iov_iter___old {
	const struct iovec *iov;
} __attribute__((preserve_access_index));

/* has_sig says whether the kernel records signature checks. */
static __always_inline void kstruct_module(struct vigil_module_info *m, struct module *mod)
{
	m->taints = BPF_CORE_READ(mod, taints);
	if (bpf_core_field_exists(((struct module___sig *)mod)->sig_ok)) {
		m->has_sig = 1;
		m->sig_ok = BPF_CORE_READ((struct module___sig *)mod, sig_ok);
	}
	bpf_probe_read_kernel_str(m->name, sizeof(m->name), &mod->name);
}

static __always_inline void kstruct_userns(struct vigil_userns_info *u, struct user_namespace *ns)
{
	u->level = BPF_CORE_READ(ns, level);
	u->uid = BPF_CORE_READ(ns, owner.val);
	u->gid = BPF_CORE_READ(ns, group.val);
	u->inum = BPF_CORE_READ(ns, ns.inum);
}

/* The first user bytes an iterator describes (user-backed iterators only); returns the
 * count the iterator holds, or -1 when it is not user memory. */
static __always_inline long kstruct_iov_iter(char *row, __u32 *filled, struct iov_iter *it)
{
	__u8 type = BPF_CORE_READ(it, iter_type);
	__u64 count = BPF_CORE_READ(it, count);
	void *base = 0;
	__u32 n;

	if (bpf_core_enum_value_exists(enum iter_type, ITER_UBUF) &&
	    type == bpf_core_enum_value(enum iter_type, ITER_UBUF)) {
		base = BPF_CORE_READ(it, ubuf);
	} else if (type == bpf_core_enum_value(enum iter_type, ITER_IOVEC)) {
		const struct iovec *iov;

		if (bpf_core_field_exists(it->__iov))
			iov = BPF_CORE_READ(it, __iov);
		else
			iov = BPF_CORE_READ((struct iov_iter___old *)it, iov);
		base = BPF_CORE_READ(iov, iov_base);
		count = BPF_CORE_READ(iov, iov_len);
	} else {
		return -1;
	}
	n = count < VIGIL_ARG_STR_MAX - 1 ? (__u32)count : VIGIL_ARG_STR_MAX - 1;
	n &= VIGIL_ARG_STR_MAX - 1;
	if (n && bpf_probe_read_user(row, n, base))
		return -1;
	*filled = n;
	return (long)count;
}

/* Reads argument `slot` of hook `hook` (a KSTRUCT kind) from kernel pointer `raw`. */
__noinline int vigil_arg_kstruct(__u32 hook, __u32 slot, __u64 raw)
{
	__u32 zero = 0, len = 0, filled = 0;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	struct vigil_hook_cfg *h = bpf_map_lookup_elem(&vigil_sys_hooks, &hook);
	char *row;

	slot &= 7;
	asm volatile("" : "+r"(slot));
	if (!s || !h || slot >= VIGIL_MAX_ARGS)
		return 0;
	row = s->st.strs[slot];
	s->st.msg.str_len[slot] = 0;
	s->st.str_len_full[slot] = 0;
	s->st.msg.ints[slot] = 0;
	if (!raw) {
		s->st.msg.str_error |= 1u << slot;
		return 0;
	}
	__builtin_memset(row, 0, 128);
	switch (h->arg_kind[slot]) {
	case VIGIL_ARG_CRED: {
		struct vigil_cred_info *info = (void *)row;
		struct vigil_creds *c = &info->creds;
		struct cred *cred = (struct cred *)raw;
		struct vigil_userns_info ns = {};

		c->uid = BPF_CORE_READ(cred, uid.val);
		c->gid = BPF_CORE_READ(cred, gid.val);
		c->suid = BPF_CORE_READ(cred, suid.val);
		c->sgid = BPF_CORE_READ(cred, sgid.val);
		c->euid = BPF_CORE_READ(cred, euid.val);
		c->egid = BPF_CORE_READ(cred, egid.val);
		c->fsuid = BPF_CORE_READ(cred, fsuid.val);
		c->fsgid = BPF_CORE_READ(cred, fsgid.val);
		c->securebits = BPF_CORE_READ(cred, securebits);
		/* kernel_cap_t is 8 bytes on every kernel (u32[2] before 6.3, u64 after). */
		bpf_core_read(&c->cap_permitted, 8, &cred->cap_permitted);
		bpf_core_read(&c->cap_effective, 8, &cred->cap_effective);
		bpf_core_read(&c->cap_inheritable, 8, &cred->cap_inheritable);
		kstruct_userns(&ns, BPF_CORE_READ(cred, user_ns));
		c->user_ns_level = ns.level;
		c->user_ns_owner = ns.uid;
		c->user_ns_group = ns.gid;
		info->user_ns_inum = ns.inum;
		s->st.msg.ints[slot] = c->euid;
		len = sizeof(*info);
		break;
	}
	case VIGIL_ARG_USER_NS:
		kstruct_userns((void *)row, (struct user_namespace *)raw);
		len = sizeof(struct vigil_userns_info);
		break;
	case VIGIL_ARG_CAP_SET: {
		__u64 caps = 0;

		if (bpf_probe_read_kernel(&caps, 8, (void *)raw)) {
			s->st.msg.str_error |= 1u << slot;
			return 0;
		}
		s->st.msg.ints[slot] = (__s64)caps;
		return 0;
	}
	case VIGIL_ARG_BPF_ATTR: {
		struct vigil_bpf_info *b = (void *)row;
		union bpf_attr *a = (union bpf_attr *)raw;

		b->type = BPF_CORE_READ(a, prog_type);
		b->insn_cnt = BPF_CORE_READ(a, insn_cnt);
		bpf_core_read(b->name, sizeof(b->name), &a->prog_name);
		len = sizeof(*b);
		break;
	}
	case VIGIL_ARG_BPF_PROG: {
		struct vigil_bpf_info *b = (void *)row;
		struct bpf_prog *p = (struct bpf_prog *)raw;

		b->type = BPF_CORE_READ(p, type);
		b->insn_cnt = BPF_CORE_READ(p, len);
		struct bpf_prog_aux *aux = BPF_CORE_READ(p, aux);

		if (aux)
			bpf_core_read(b->name, sizeof(b->name), &aux->name);
		len = sizeof(*b);
		break;
	}
	case VIGIL_ARG_BPF_MAP: {
		struct vigil_bpf_info *b = (void *)row;
		struct bpf_map *m = (struct bpf_map *)raw;

		b->type = BPF_CORE_READ(m, map_type);
		b->key_size = BPF_CORE_READ(m, key_size);
		b->value_size = BPF_CORE_READ(m, value_size);
		b->max_entries = BPF_CORE_READ(m, max_entries);
		bpf_core_read(b->name, sizeof(b->name), &m->name);
		len = sizeof(*b);
		break;
	}
	case VIGIL_ARG_PERF_EVENT: {
		struct vigil_perf_info *p = (void *)row;
		struct perf_event *e = (struct perf_event *)raw;
		__u64 func;

		p->type = BPF_CORE_READ(e, attr.type);
		p->config = BPF_CORE_READ(e, attr.config);
		p->probe_offset = BPF_CORE_READ(e, attr.probe_offset);
		/* For kprobe PMU events the function name is a user pointer (the perf_event_open
		 * caller's, still mapped while the event is allocated); other types leave it. */
		func = BPF_CORE_READ(e, attr.kprobe_func);
		if (func && bpf_probe_read_user_str(p->func, sizeof(p->func), (void *)func) < 0)
			p->func[0] = 0;
		len = sizeof(*p);
		break;
	}
	case VIGIL_ARG_MODULE:
		kstruct_module((void *)row, (struct module *)raw);
		len = sizeof(struct vigil_module_info);
		break;
	case VIGIL_ARG_LOAD_INFO: {
		struct vigil_module_info *m = (void *)row;
		struct load_info___vigil *info = (struct load_info___vigil *)raw;
		struct module *mod = BPF_CORE_READ(info, mod);

		if (mod)
			m->taints = BPF_CORE_READ(mod, taints);
		if (bpf_core_field_exists(info->sig_ok)) {
			m->has_sig = 1;
			m->sig_ok = BPF_CORE_READ(info, sig_ok);
		}
		/* The name from the module's .modinfo; the module copy may not have it yet. */
		bpf_probe_read_kernel_str(m->name, sizeof(m->name), BPF_CORE_READ(info, name));
		len = sizeof(*m);
		break;
	}
	case VIGIL_ARG_IOV_ITER: {
		long count = kstruct_iov_iter(row, &filled, (struct iov_iter *)raw);

		if (count < 0) {
			s->st.msg.str_error |= 1u << slot;
			return 0;
		}
		s->st.msg.ints[slot] = count;
		if ((__u64)count > filled)
			s->st.msg.str_trunc |= 1u << slot;
		len = filled;
		break;
	}
	default:
		s->st.msg.str_error |= 1u << slot;
		return 0;
	}
	len &= ROW_MAX;
	s->st.msg.str_len[slot] = len;
	s->st.str_len_full[slot] = len;
	return 0;
}

#endif
