// SPDX-License-Identifier: GPL-2.0-only
/*
 * Pre-emptive network deny on kernels without kprobes, fentry or BPF LSM (vigil's own
 * extension; ARCHITECTURE.md): a policy on security_socket_connect / tcp_connect /
 * security_socket_bind whose selectors enforce runs here, in cgroup sock_addr programs
 * attached to the root cgroup v2, which see every connect()/bind() before it happens.
 *
 * One object per hook (crates/vigil-bpf/src/cgroup_sock.rs): the loader sets the hook id
 * and what the hooked function's arguments become, and loads the two programs of the
 * operation (v4 and v6). The context is turned into the engine's arguments: argument 0 the
 * socket (family, type, protocol; the peer too for tcp_connect), argument 1 the address
 * (sockaddr_arg: family, address, port), argument 2 its length; the engine (vigil_engine.h)
 * filters, counts and posts as for any hook.
 *
 * Verdict: a matching enforcing selector (Override, Sigkill, Signal) denies: the program
 * returns 0 and sets the Override errno (bpf_set_retval), -EPERM otherwise. These program
 * types have no bpf_send_signal: Sigkill/Signal are sent by the agent on the event.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#define VIGIL_ENGINE_NO_SIGNAL
#define VIGIL_ENGINE_NO_TASK_STORAGE
#define VIGIL_ENGINE_NO_STACK
#define VIGIL_KOBJ_NET
#include "vigil_kobj.h"
#include "vigil_engine.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader before load (one struct: its offset in .rodata is known, 0). */
struct cg_conf {
	__u32 hook_id;
	/* 1: argument 0 is a connected sock (tcp_connect): the destination is its peer. */
	__u32 sock_peer;
	/* Non-zero: only sockets of this protocol are the hooked function's (tcp_connect). */
	__u32 only_protocol;
	__u32 pad;
};
const volatile struct cg_conf vigil_cg_conf = {};

struct cg_args {
	struct vigil_sock_info sock; /* argument 0 */
	struct vigil_sock_info addr; /* argument 1 */
	__u64 raw[2];                /* their addresses, read back as plain numbers */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cg_args);
} vigil_cg_args SEC(".maps");

#define CG_EPERM 1

static __always_inline int cg_decide(struct bpf_sock_addr *ctx, int v6)
{
	__u32 zero = 0, family = ctx->user_family;
	struct cg_args *a = bpf_map_lookup_elem(&vigil_cg_args, &zero);
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	__u64 args[VIGIL_ENGINE_NARGS] = {};
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	long rc;

	if (!a || !s)
		return 1;
	if (vigil_cg_conf.only_protocol && ctx->protocol != vigil_cg_conf.only_protocol)
		return 1;
	__builtin_memset(a, 0, sizeof(*a));
	a->sock.family = family;
	a->sock.type = ctx->type;
	a->sock.protocol = ctx->protocol;
	a->addr.family = family;
	a->addr.sport = port;
	if (v6) {
		__u32 w[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
			       ctx->user_ip6[3] };
		__builtin_memcpy(a->addr.saddr, w, 16);
	} else {
		__u32 w = ctx->user_ip4;
		__builtin_memcpy(a->addr.saddr, &w, 4);
	}
	if (vigil_cg_conf.sock_peer) {
		__builtin_memcpy(a->sock.daddr, a->addr.saddr, 16);
		a->sock.dport = port;
		a->sock.state = 2; /* TCP_SYN_SENT: what tcp_connect sees */
	}
	/* The engine gets the rows' addresses as numbers (it reads them with
	 * bpf_probe_read_kernel, as kernel objects): a pointer in args[] would be tracked by the
	 * verifier through every unrolled argument read and selector, whose states then never
	 * prune (the program exceeded the 1M-instruction budget). Through a map value they are
	 * scalars. */
	a->raw[0] = (__u64)&a->sock;
	a->raw[1] = (__u64)&a->addr;
	args[0] = *(volatile __u64 *)&a->raw[0];
	args[1] = *(volatile __u64 *)&a->raw[1];
	args[2] = v6 ? 28 : 16; /* sizeof(struct sockaddr_in6 / sockaddr_in) */
	s->st.msg.actions = 0;
	rc = engine_handle(ctx, vigil_cg_conf.hook_id, args, 0);
	if (monitor_mode())
		return 1;
	if (!(s->st.msg.actions & (VIGIL_ACT_OVERRIDE | VIGIL_ACT_SIGKILL | VIGIL_ACT_SIGNAL)))
		return 1;
	/* Denied: the errno the Override names (a negative errno), else EPERM. */
	if (rc < 0 && rc >= -4095)
		bpf_set_retval(rc);
	else
		bpf_set_retval(-CG_EPERM);
	return 0;
}

SEC("cgroup/connect4")
int vigil_connect4(struct bpf_sock_addr *ctx)
{
	return cg_decide(ctx, 0);
}

SEC("cgroup/connect6")
int vigil_connect6(struct bpf_sock_addr *ctx)
{
	return cg_decide(ctx, 1);
}

SEC("cgroup/bind4")
int vigil_bind4(struct bpf_sock_addr *ctx)
{
	return cg_decide(ctx, 0);
}

SEC("cgroup/bind6")
int vigil_bind6(struct bpf_sock_addr *ctx)
{
	return cg_decide(ctx, 1);
}
