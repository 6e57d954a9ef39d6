/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The maps and per-invocation state of the policy engine (vigil_engine.h). Included once per
 * object, by the engine header.
 */
#ifndef VIGIL_ENGINE_MAPS_H
#define VIGIL_ENGINE_MAPS_H

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096); /* replaced by the lifecycle ring (fd reuse) */
} vigil_events SEC(".maps");

#include "vigil_wakeup.h"


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024); /* replaced by the lifecycle table (fd reuse) */
	__type(key, __u32);
	__type(value, struct vigil_proc_entry);
} vigil_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_CNT_MAX); /* replaced by the lifecycle counters (fd reuse) */
	__type(key, __u32);
	__type(value, __u64);
} vigil_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIGIL_MAX_HOOKS);
	__type(key, __u32);
	__type(value, struct vigil_hook_cfg);
} vigil_sys_hooks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIGIL_MAX_HOOKS * VIGIL_MAX_SELECTORS);
	__type(key, __u32);
	__type(value, struct vigil_selector_cfg);
} vigil_sys_selectors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_MAX_HOOKS * VIGIL_HOOK_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} vigil_sys_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct vigil_str_key);
	__type(value, __u8);
} vigil_str_eq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__type(key, struct vigil_str_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} vigil_str_prefix SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__type(key, struct vigil_str_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} vigil_str_postfix SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct vigil_bin_key);
	__type(value, __u8);
} vigil_bin_set SEC(".maps");

/* Policy mode of this object (one object per policy): key 0. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_policy_conf);
} vigil_policy_conf SEC(".maps");

/* Per-selector counters: (hook * VIGIL_MAX_SELECTORS + selector) * VIGIL_HOOK_COUNTERS + c. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_MAX_HOOKS * VIGIL_MAX_SELECTORS * VIGIL_HOOK_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} vigil_sel_counters SEC(".maps");

/* Everything an invocation has read: what an entry hands to its exit. */
struct engine_state {
	struct vigil_syscall_msg msg;
	char strs[8][VIGIL_ARG_STR_MAX]; /* rows 0..4: arguments; VIGIL_ROW_PATH: resolved path */
	__u32 str_len_full[8];           /* bytes read, NUL excluded */
	__u32 candidates;                /* selectors that passed at entry (bit per selector) */
	__u32 deferred;                  /* ... whose path filters wait for the resolved path */
};

/* pending_open.hook of a slot with no call waiting (no hook has this id). */
#define VIGIL_PENDING_FREE 0xffffffffu

/* Per-CPU working state of one invocation: the state, lookup keys, path walk buffer. */
struct pending_open {
	__u32 hook;
	__u32 candidates;
	__u32 deferred;
	__u32 str_error; /* arguments entry could not read */
	__u32 compat;
	__u32 pad;
	__u64 args[6];
};

struct sys_scratch {
	struct engine_state st;
	struct vigil_str_key key;
	char pathbuf[2 * VIGIL_ARG_STR_MAX]; /* written backwards from VIGIL_ARG_STR_MAX */
	__u32 path_pos;                      /* start of the resolved path in pathbuf */
	__u32 path_state;                    /* 0 none, 1 complete, 2 cut */
	__u64 ustack[VIGIL_USTACK_MAX];      /* Post userStackTrace: bpf_get_stack's output */
	__u64 kstack[VIGIL_KSTACK_MAX];      /* Post kernelStackTrace: the same, kernel side */
	struct vigil_bin_key bin_key;        /* binary-set lookups (bin_listed) */
	/* Built here, not on the stack: 6.1 allows 512 bytes for the deepest call chain. */
	struct pending_open po;
	/* Per argument slot: inode number and device (s_dev) of the file a file-like argument
	 * names, for SameFile; 0 when the argument is not a file. */
	__u64 file_ino[8];
	__u64 file_dev[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sys_scratch);
} vigil_sys_scratch SEC(".maps");

/* Entries waiting for their exit, one per thread: only calls that passed every entry-time
 * filter of a paired hook are kept. Open-like hooks wait with `struct pending_open` only:
 * the arguments are read again at exit when the call matches (the selection itself used
 * what entry read, or the path the kernel opened), not a copy of the state.
 *
 * They are task storage, one slot per thread, allocated with the thread's own kernel
 * memory: no table with a count of entries that a workload could fill (4,096 threads
 * parked in open() of a FIFO filled the old hash map, and every other thread's exit-time
 * checks stopped). Programs without a current task (cgroup sock_addr, which never pair an
 * exit) keep small hash maps. */
#ifdef VIGIL_ENGINE_NO_TASK_STORAGE
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, struct engine_state);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} vigil_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, struct pending_open);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} vigil_pending_open SEC(".maps");

/* `src` kept for the calling thread's exit; 0, or -1 when it cannot be. */
static __always_inline int pending_keep(void *map, __u64 pid_tgid, const void *src, __u32 size)
{
	return bpf_map_update_elem(map, &pid_tgid, src, BPF_ANY) ? -1 : 0;
}

static __always_inline void *pending_find(void *map, __u64 pid_tgid)
{
	return bpf_map_lookup_elem(map, &pid_tgid);
}

static __always_inline void pending_drop(void *map, __u64 pid_tgid)
{
	bpf_map_delete_elem(map, &pid_tgid);
}

static __always_inline void pending_open_done(__u64 pid_tgid, struct pending_open *po)
{
	bpf_map_delete_elem(&vigil_pending_open, &pid_tgid);
}
#else
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct engine_state);
} vigil_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending_open);
} vigil_pending_open SEC(".maps");

static __always_inline int pending_keep(void *map, __u64 pid_tgid, const void *src, __u32 size)
{
	void *slot = bpf_task_storage_get(map, bpf_get_current_task_btf(), 0,
					  BPF_LOCAL_STORAGE_GET_F_CREATE);

	/* NULL: out of memory, or the storage busy on this CPU (a nested hook). */
	if (!slot)
		return -1;
	return bpf_probe_read_kernel(slot, size, src) ? -1 : 0;
}

static __always_inline void *pending_find(void *map, __u64 pid_tgid)
{
	return bpf_task_storage_get(map, bpf_get_current_task_btf(), 0, 0);
}

static __always_inline void pending_drop(void *map, __u64 pid_tgid)
{
	bpf_task_storage_delete(map, bpf_get_current_task_btf());
}

/* An open-like call's slot is small: it stays with its thread, marked free, so that the
 * next open reuses it instead of allocating (every open of the host passes here). */
static __always_inline void pending_open_done(__u64 pid_tgid, struct pending_open *po)
{
	po->hook = VIGIL_PENDING_FREE;
}
#endif

/* Post rateLimit: last post time (boot ns) by (hook, selector, scope id). */
struct rate_key {
	__u32 hook;
	__u32 selector;
	__u64 scope; /* tid, tgid or 0 (global) */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct rate_key);
	__type(value, __u64);
} vigil_rate SEC(".maps");

#endif
