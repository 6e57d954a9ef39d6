/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Post imaHash on LSM hooks. bpf_ima_file_hash may sleep (IMA reads the whole file), which
 * the engine's program cannot (it uses LPM-trie maps, which sleepable programs may not on
 * 6.1). So the work is split: the engine selects as always and, when the matched selector
 * asks for imaHash, posts the event flagged VIGIL_SYSMSG_IMA and leaves a request in the
 * task's slot; a sleepable program attached to the same hook runs next (kfuncs.bpf.c,
 * vigil_lsm_ima_*), hashes the hook's file only then, and posts a VIGIL_MSG_IMA record that
 * user space joins to the event. Files nobody asked about are never read.
 */
#ifndef VIGIL_ENGINE_IMA_H
#define VIGIL_ENGINE_IMA_H

struct vigil_ima_slot {
	__u32 hook; /* hook id + 1 of the pending request; 0: none */
	__u32 pad;
	struct vigil_ima_msg msg; /* built here: too large for the sleepable program's stack */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct vigil_ima_slot);
} vigil_ima SEC(".maps");

/* Asks the sleepable program that runs next on this hook for the digest of the event `m`
 * (its hdr.ktime set). 0 when the request cannot be kept (no memory for the slot): the
 * event then goes without a digest rather than waiting for one. */
static __always_inline int engine_ima_want(__u32 hook, const struct vigil_syscall_msg *m)
{
	struct vigil_ima_slot *slot;

	slot = bpf_task_storage_get(&vigil_ima, bpf_get_current_task_btf(), 0,
				    BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!slot)
		return 0;
	slot->hook = hook + 1;
	slot->msg.event_ktime = m->hdr.ktime;
	slot->msg.tid = m->tid;
	slot->msg.hook_id = hook;
	return 1;
}

#endif
