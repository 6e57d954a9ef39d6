// SPDX-License-Identifier: GPL-2.0-only
/*
 * Policy runtime for `tracepoints` (raw or not), `uprobes` and `usdts`: three generic
 * programs, attached once per hook with the hook id as BPF cookie. Each turns its context
 * into the engine's raw arguments as the hook's `vigil_hook_prep` entry says (a field of
 * the tracepoint record, a raw tracepoint argument, a register, user memory at a register
 * plus a displacement, a constant), then hands over to the shared engine (vigil_engine.h):
 * same selectors, actions, counters and events as syscall hooks.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "vigil_engine.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIGIL_MAX_HOOKS);
	__type(key, __u32);
	__type(value, struct vigil_hook_prep);
} vigil_hook_prep SEC(".maps");

#define TS_COMPAT 0x0002
#define PT_REGS_BYTES 168 /* sizeof(struct pt_regs) on x86_64 */

/* Zero- or sign-extends the low `size` bytes of `v`. */
static __always_inline __u64 extend(__u64 v, __u32 size, __u32 sign)
{
	__u32 shift;

	if (size >= 8 || size == 0)
		return v;
	shift = 64 - 8 * size;
	if (sign)
		return (__u64)(((__s64)(v << shift)) >> shift);
	return (v << shift) >> shift;
}

static __always_inline __u64 read_kernel(const void *p, __u32 size)
{
	__u64 v = 0;

	if (size > 8)
		size = 8;
	bpf_probe_read_kernel(&v, size, p);
	return v;
}

static __always_inline __u64 read_user(const void *p, __u32 size)
{
	__u64 v = 0;

	if (size > 8)
		size = 8;
	bpf_probe_read_user(&v, size, p);
	return v;
}

/* A pointer as a plain number: the verifier forbids arithmetic other than + and - on
 * pointers, and these addresses are only ever handed to probe-read helpers. */
static __always_inline __u64 as_scalar(const void *p)
{
	const void *tmp = p;
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), &tmp);
	return v;
}

static __always_inline __u64 post_process(__u64 v, __u32 post)
{
	if (post == VIGIL_POST_SYSCALL64) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();

		if (BPF_CORE_READ(task, thread_info.status) & TS_COMPAT)
			v |= VIGIL_SYSCALL64_IA32;
	} else if (post == VIGIL_POST_BINPRM) {
		struct linux_binprm *bprm = (struct linux_binprm *)v;

		v = as_scalar(BPF_CORE_READ(bprm, filename));
	}
	return v;
}

/* What one invocation works on: the context as numbers, and the arguments it fills. A per-CPU
 * map value, not the stack: 6.1 allows 512 bytes for the engine's deepest call chain. */
struct prep_ctx {
	__u64 record; /* tracepoint record address, 0 if none */
	__u64 regs;   /* pt_regs address, 0 if none */
	__u64 raw[VIGIL_ENGINE_NARGS];
	__u64 args[VIGIL_ENGINE_NARGS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct prep_ctx);
} vigil_prep_scratch SEC(".maps");

/* bpf_loop's context (on the stack, as 6.1 requires). */
struct prep_loop {
	__u32 hook;
};

/* Places argument `i` (a bpf_loop callback: verified once, not once per argument). */
static long prep_one(__u32 i, struct prep_loop *l)
{
	__u32 zero = 0;
	struct prep_ctx *c = bpf_map_lookup_elem(&vigil_prep_scratch, &zero);
	struct vigil_hook_prep *p = bpf_map_lookup_elem(&vigil_hook_prep, &l->hook);
	const struct vigil_prep_arg *a;
	__u32 size, off;
	__u64 v = 0;

	/* One bounded register for the test and the access (6.1 does not link copies). */
	i &= 7;
	asm volatile("" : "+r"(i));
	if (!c || !p || i >= VIGIL_MAX_ARGS)
		return 1;
	a = &p->args[i];
	size = a->size & 0xf;
	off = a->off;
	switch (a->src) {
	case VIGIL_SRC_RECORD:
		if (c->record)
			v = extend(read_kernel((void *)(c->record + (off & 0xffff)), size), size,
				   a->sign);
		break;
	case VIGIL_SRC_RECORD_ADDR:
		if (c->record)
			v = c->record + (off & 0xffff);
		break;
	case VIGIL_SRC_DATA_LOC:
	case VIGIL_SRC_REL_LOC:
		if (c->record) {
			__u32 loc = (__u32)read_kernel((void *)(c->record + (off & 0xffff)), 4);

			v = c->record + (loc & 0xffff);
			if (a->src == VIGIL_SRC_REL_LOC)
				v += (off & 0xffff) + 4;
		}
		break;
	case VIGIL_SRC_RAW_ARG:
		if (off < VIGIL_ENGINE_NARGS) /* `%` bounds are lost on the verifier */
			v = extend(c->raw[off], size, a->sign);
		break;
	case VIGIL_SRC_REG:
	case VIGIL_SRC_REG_DEREF:
		if (!c->regs || off > PT_REGS_BYTES - 8)
			break;
		v = read_kernel((void *)(c->regs + off), 8);
		if (a->src == VIGIL_SRC_REG_DEREF)
			v = read_user((void *)(v + a->imm), size);
		v = extend(v, size, a->sign);
		break;
	case VIGIL_SRC_CONST:
		v = a->imm;
		break;
	}
	c->args[i] = post_process(v, a->post);
	return 0;
}

/* The per-CPU preparation state, cleared; NULL when the hook has no preparation entry. */
static __always_inline struct prep_ctx *prep_begin(__u32 hook)
{
	__u32 zero = 0;
	struct prep_ctx *c = bpf_map_lookup_elem(&vigil_prep_scratch, &zero);

	if (!c || !bpf_map_lookup_elem(&vigil_hook_prep, &hook))
		return NULL;
	__builtin_memset(c, 0, sizeof(*c));
	return c;
}

/* Fills `c->args` for hook `hook`, then runs the engine. */
static __always_inline int prepare_and_handle(void *ctx, __u32 hook, struct prep_ctx *c)
{
	struct prep_loop l = { .hook = hook };

	bpf_loop(VIGIL_MAX_ARGS, prep_one, &l, 0);
	return engine_handle(ctx, hook, c->args, 0);
}

SEC("tracepoint/vigil/generic")
int vigil_tp(void *ctx)
{
	__u32 hook = (__u32)bpf_get_attach_cookie(ctx);
	struct prep_ctx *c = prep_begin(hook);

	if (!c)
		return 0;
	c->record = as_scalar(ctx);
	return prepare_and_handle(ctx, hook, c);
}

SEC("raw_tp/vigil_generic")
int vigil_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 hook = (__u32)bpf_get_attach_cookie(ctx);
	struct prep_ctx *c = prep_begin(hook);

	if (!c)
		return 0;
	/* A copy, not context loads: the kernel refuses an attachment whose program reads
	 * past the tracepoint's own arguments, and this program serves every raw tracepoint. */
	bpf_probe_read_kernel(c->raw, sizeof(c->raw), ctx->args);
	return prepare_and_handle(ctx, hook, c);
}

SEC("uprobe")
int vigil_uprobe(struct pt_regs *ctx)
{
	__u32 hook = (__u32)bpf_get_attach_cookie(ctx);
	struct prep_ctx *c = prep_begin(hook);

	if (!c)
		return 0;
	c->regs = as_scalar(ctx);
	return prepare_and_handle(ctx, hook, c);
}

/* `return: true` uprobes: the entry kept what it read (engine_handle, exit pairing); the
 * return finishes the hook with the function's return value (rax). */
SEC("uretprobe")
int vigil_uretprobe(struct pt_regs *ctx)
{
	return engine_handle_exit(ctx, (__u32)bpf_get_attach_cookie(ctx), (__s64)PT_REGS_RC(ctx));
}
