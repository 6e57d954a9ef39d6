// SPDX-License-Identifier: GPL-2.0-only
/*
 * Syscall hooks (`kprobes` with `syscall: true`) on kernels without kprobes: one generic
 * program attached to each hooked `syscalls:sys_enter_<name>` tracepoint, told which hook it
 * serves by the attach cookie; the engine (vigil_engine.h) does the rest.
 *
 * Selection runs at syscall entry, or completes at the paired `sys_exit_<name>` for hooks
 * that need the return value or the kernel-resolved path. Either way a Sigkill is delivered
 * when the task returns to user space, after the syscall ran.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "vigil_engine.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * The six syscall arguments, copied once. Not by direct context loads: the kernel refuses to
 * attach a program whose context reads go past the tracepoint's record (EACCES), and
 * sys_enter_<name> records hold only that syscall's arguments.
 */
static __always_inline void sys_args(struct trace_event_raw_sys_enter *ctx, __u64 *args)
{
	bpf_probe_read_kernel(args, VIGIL_ENGINE_NARGS * sizeof(args[0]), &ctx->args[0]);
}

/* 64-bit calls: one attachment per hooked syscall, the cookie says which hook. */
SEC("tracepoint/syscalls/sys_enter_generic")
int vigil_sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 args[VIGIL_ENGINE_NARGS];

	sys_args(ctx, args);
	return engine_handle(ctx, (__u32)bpf_get_attach_cookie(ctx), args, 0);
}

/* The paired exit (hooks with VIGIL_HOOK_EXIT): same cookie as the entry. */
SEC("tracepoint/syscalls/sys_exit_generic")
int vigil_sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	return engine_handle_exit(ctx, (__u32)bpf_get_attach_cookie(ctx), ctx->ret);
}

/* ia32 syscall number -> hook id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_MAX_HOOKS);
	__type(key, __u32);
	__type(value, __u32);
} vigil_ia32_hooks SEC(".maps");

#define TS_COMPAT 0x0002

/*
 * 32-bit calls (int 0x80 from any process) do not fire the per-syscall tracepoints; they do
 * fire the sys_enter/sys_exit raw tracepoints, with the ia32 number. Attached only when a
 * policy hooks a syscall, these run for every system call on the host: BTF-typed raw
 * tracepoints (called straight from the tracepoint, no perf record built) that leave after
 * one load and a branch. Arguments are the registers the ia32 entry takes them from,
 * truncated to 32 bits as the kernel's __ia32_sys_* wrappers do (a 64-bit process's int 0x80
 * can leave garbage in the upper halves: the kernel ignores it, and so must the policy).
 */
SEC("tp_btf/sys_enter")
int BPF_PROG(vigil_sys_enter_ia32, struct pt_regs *regs, long id)
{
	__u32 nr, *hook;

	if (!(bpf_get_current_task_btf()->thread_info.status & TS_COMPAT))
		return 0;
	nr = (__u32)id;
	hook = bpf_map_lookup_elem(&vigil_ia32_hooks, &nr);
	if (!hook || (*hook & VIGIL_IA32_AT_EXIT))
		return 0;
	{
		__u64 args[VIGIL_ENGINE_NARGS] = {
			(__u32)regs->bx, (__u32)regs->cx, (__u32)regs->dx,
			(__u32)regs->si, (__u32)regs->di, (__u32)regs->bp,
		};

		return engine_handle(ctx, *hook, args, VIGIL_ENGINE_COMPAT);
	}
}

/*
 * The exit of 32-bit calls, attached only when an ia32-reachable hook pairs its exit. For a
 * VIGIL_IA32_AT_EXIT hook it runs the entry phase first, from the argument registers, which
 * the call leaves as they were (only ax takes the return value).
 */
SEC("tp_btf/sys_exit")
int BPF_PROG(vigil_sys_exit_ia32, struct pt_regs *regs, long ret)
{
	__u32 nr, *hook, id;

	if (!(bpf_get_current_task_btf()->thread_info.status & TS_COMPAT))
		return 0;
	nr = (__u32)regs->orig_ax;
	hook = bpf_map_lookup_elem(&vigil_ia32_hooks, &nr);
	if (!hook)
		return 0;
	id = *hook & ~VIGIL_IA32_AT_EXIT;
	if (*hook & VIGIL_IA32_AT_EXIT) {
		__u64 args[VIGIL_ENGINE_NARGS] = {
			(__u32)regs->bx, (__u32)regs->cx, (__u32)regs->dx,
			(__u32)regs->si, (__u32)regs->di, (__u32)regs->bp,
		};

		engine_handle(ctx, id, args, VIGIL_ENGINE_COMPAT);
	}
	return engine_handle_exit(ctx, id, ret);
}
