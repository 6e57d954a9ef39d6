// SPDX-License-Identifier: GPL-2.0-only
/*
 * Kernel-function and LSM hooks (`kprobes` with `syscall: false`, `lsmhooks`) on kernels that
 * have kprobes, fentry/fexit or BPF LSM (not this project's host kernel: see KERNEL.md).
 *
 * One object is loaded per hook (crates/vigil-bpf/src/kfuncs.rs): the loader sets the hook id
 * in .rodata (fentry/fmod_ret/LSM have no attach cookie on 6.1), the attach target of the
 * one program it keeps, and turns the others' autoload off. The engine (vigil_engine.h) does
 * the rest; kernel-object arguments are read by vigil_kobj.h.
 *
 * Enforcement: fmod_ret (on security_* functions) and LSM programs return the matched
 * selector's Override value, which the kernel returns instead of running the function /
 * as the hook's verdict. kprobe and fentry programs can only report and signal.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "vigil_kobj.h"
#define VIGIL_KSTRUCT
#define VIGIL_ENGINE_IMA
#include "vigil_engine.h"
#include "vigil_kobj_struct.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader before load. */
const volatile __u32 vigil_hook_id = 0;

/* Trampoline programs: arguments through bpf_get_func_arg (fails past the function's own). */
static __always_inline void tramp_args(void *ctx, __u64 *args)
{
	for (int i = 0; i < VIGIL_ENGINE_NARGS; i++) {
		args[i] = 0;
		bpf_get_func_arg(ctx, i, &args[i]);
	}
}

/* kprobe programs: the arguments from the registers of the calling convention. */
static __always_inline void kprobe_args(struct pt_regs *ctx, __u64 *args)
{
	args[0] = PT_REGS_PARM1_CORE(ctx);
	args[1] = PT_REGS_PARM2_CORE(ctx);
	args[2] = PT_REGS_PARM3_CORE(ctx);
	args[3] = PT_REGS_PARM4_CORE(ctx);
	args[4] = PT_REGS_PARM5_CORE(ctx);
	args[5] = PT_REGS_PARM6_CORE(ctx);
}

SEC("kprobe/vigil_kprobe")
int vigil_kprobe(struct pt_regs *ctx)
{
	__u64 args[VIGIL_ENGINE_NARGS];

	kprobe_args(ctx, args);
	engine_handle(ctx, vigil_hook_id, args, 0);
	return 0;
}

/*
 * `return: true` where fexit is not used (several functions, or no fentry): the kprobe above
 * keeps what the entry read (engine exit pairing, like syscall exits), this finishes the hook
 * with the return value.
 */
SEC("kretprobe/vigil_kretprobe")
int vigil_kretprobe(struct pt_regs *ctx)
{
	return engine_handle_exit(ctx, vigil_hook_id, (__s64)PT_REGS_RC(ctx));
}

/* Every kprobe.multi function of a policy: the attach cookie is the hook id. */
SEC("kprobe.multi")
int vigil_kprobe_multi(struct pt_regs *ctx)
{
	__u64 args[VIGIL_ENGINE_NARGS];

	kprobe_args(ctx, args);
	engine_handle(ctx, (__u32)bpf_get_attach_cookie(ctx), args, 0);
	return 0;
}

/* Attach targets are set by the loader; the section names only give the program type. */
SEC("fentry/security_file_open")
int vigil_fentry(void *ctx)
{
	__u64 args[VIGIL_ENGINE_NARGS];

	tramp_args(ctx, args);
	engine_handle(ctx, vigil_hook_id, args, 0);
	return 0;
}

/*
 * `return: true`: fexit sees the arguments and the return value. The loader puts the
 * return value reader on argument slot 5 (refusing hooks that read a 6th argument), so the
 * engine evaluates matchArgs and matchReturnArgs together, at return.
 */
SEC("fexit/security_file_open")
int vigil_fexit(void *ctx)
{
	__u64 args[VIGIL_ENGINE_NARGS], ret = 0;

	tramp_args(ctx, args);
	bpf_get_func_ret(ctx, &ret);
	args[VIGIL_ENGINE_NARGS - 1] = ret;
	engine_handle(ctx, vigil_hook_id, args, 0);
	return 0;
}

SEC("fmod_ret/security_file_open")
int vigil_fmod_ret(void *ctx)
{
	__u64 args[VIGIL_ENGINE_NARGS];

	tramp_args(ctx, args);
	return engine_handle(ctx, vigil_hook_id, args, 0);
}

/* `long`: the verifier checks the 64-bit R0, so the verdict must be sign-extended. */
SEC("lsm/file_open")
long vigil_lsm(void *ctx)
{
	__u64 args[VIGIL_ENGINE_NARGS];
	long rc;

	tramp_args(ctx, args);
	rc = engine_handle(ctx, vigil_hook_id, args, 0);
	/* LSM verdicts are 0 or -errno (the verifier insists); anything else denies (-EPERM). */
	if (rc > 0 || rc < -4095)
		return -1;
	return rc;
}

/*
 * Post imaHash: the digest of the hook's file, when the engine's program (which ran just
 * before on this hook) matched a selector that asks for it (vigil_engine_ima.h). Sleepable,
 * so only on the hooks where the kernel lets BPF LSM programs sleep; one program per
 * argument shape, the loader keeps the one the hook has. Never a verdict: always 0.
 */
static __always_inline void ima_post(struct file *file)
{
	struct vigil_ima_slot *slot;

	slot = bpf_task_storage_get(&vigil_ima, bpf_get_current_task_btf(), 0, 0);
	if (!slot || slot->hook != vigil_hook_id + 1)
		return;
	slot->hook = 0;
	if (file)
		slot->msg.d.algo = bpf_ima_file_hash(file, slot->msg.d.digest,
						     sizeof(slot->msg.d.digest));
	else
		slot->msg.d.algo = -2; /* -ENOENT: no file (an anonymous mapping) */
	slot->msg.hdr.kind = VIGIL_MSG_IMA;
	slot->msg.hdr.pad[0] = slot->msg.hdr.pad[1] = slot->msg.hdr.pad[2] = 0;
	slot->msg.hdr.size = sizeof(slot->msg);
	slot->msg.hdr.ktime = bpf_ktime_get_boot_ns();
	/* Lost with a full ring: user space then emits the event without a digest, and the
	 * policy-event loss counter says so. */
	if (bpf_ringbuf_output(&vigil_events, &slot->msg, sizeof(slot->msg), wakeup_flags()))
		count(VIGIL_CNT_RB_LOST_POLICY);
}

/* Hooks whose first argument is the file: file_open, file_ioctl, file_lock, mmap_file, ... */
SEC("lsm.s/file_open")
int BPF_PROG(vigil_lsm_ima_file, struct file *file)
{
	ima_post(file);
	return 0;
}

/* Hooks whose first argument is the binprm: the file about to be executed. */
SEC("lsm.s/bprm_check_security")
int BPF_PROG(vigil_lsm_ima_bprm, struct linux_binprm *bprm)
{
	ima_post(bprm->file);
	return 0;
}
