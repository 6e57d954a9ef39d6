/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * When to wake the ring-buffer reader. A wake-up is an irq_work, a self-interrupt: in a VM
 * an exit to the hypervisor, several microseconds charged to the program that submits (it
 * was most of the exit program's cost at 1,000 execs/s). The reader polls every few
 * milliseconds anyway (POLL_INTERVAL in ringbuf.rs), so a trickle of events waits for that
 * poll, and only a burst that fills a good part of the ring wakes it at once.
 *
 * Include after the object's `vigil_events` ring buffer map is declared.
 */
#ifndef VIGIL_WAKEUP_H
#define VIGIL_WAKEUP_H

#define VIGIL_WAKEUP_BYTES (64 * 1024)

static __always_inline __u64 wakeup_flags(void)
{
	if (bpf_ringbuf_query(&vigil_events, BPF_RB_AVAIL_DATA) > VIGIL_WAKEUP_BYTES)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

#endif
