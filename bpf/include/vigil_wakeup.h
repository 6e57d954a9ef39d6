/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * When to wake the ring-buffer reader. Waking it costs an interrupt (an IPI: expensive in a
 * VM) per message; wake it at most once per millisecond, or at once when a burst builds up.
 * The reader also polls every few milliseconds, so nothing waits long.
 *
 * Include after the object's `vigil_events` ring buffer map is declared.
 */
#ifndef VIGIL_WAKEUP_H
#define VIGIL_WAKEUP_H

#define VIGIL_WAKEUP_BYTES (64 * 1024)
#define VIGIL_WAKEUP_NS 1000000ULL

__u64 vigil_last_wakeup = 0;

static __always_inline __u64 wakeup_flags(void)
{
	__u64 now = bpf_ktime_get_ns();

	if (now - vigil_last_wakeup > VIGIL_WAKEUP_NS ||
	    bpf_ringbuf_query(&vigil_events, BPF_RB_AVAIL_DATA) > VIGIL_WAKEUP_BYTES) {
		vigil_last_wakeup = now; /* racy across CPUs: at worst an extra wake-up */
		return BPF_RB_FORCE_WAKEUP;
	}
	return BPF_RB_NO_WAKEUP;
}

#endif
