/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Network objects of kernel-function and LSM hooks (sock, socket, skb, sockaddr), read by
 * CO-RE into a struct vigil_sock_info (vigil_abi.h), the row the engine's network operators
 * (vigil_engine_sock.h) filter and user space reports as Tetragon's sock_arg, skb_arg or
 * sockaddr_arg. Part of vigil_kobj.h.
 */
#ifndef VIGIL_KOBJ_NET_H
#define VIGIL_KOBJ_NET_H

#include <bpf/bpf_endian.h>

#define KOBJ_AF_INET 2
#define KOBJ_AF_INET6 10
#define KOBJ_ETH_P_IP 0x0800
#define KOBJ_ETH_P_IPV6 0x86DD
#define KOBJ_IPPROTO_TCP 6
#define KOBJ_IPPROTO_UDP 17

static __always_inline void kobj_net_sock(struct vigil_sock_info *o, struct sock *sk)
{
	o->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	o->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	o->type = BPF_CORE_READ(sk, sk_type);
	o->protocol = BPF_CORE_READ(sk, sk_protocol);
	o->mark = BPF_CORE_READ(sk, sk_mark);
	o->priority = BPF_CORE_READ(sk, sk_priority);
	/* skc_num is the bound port in host order, skc_dport the peer's in network order. */
	o->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	o->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	o->cookie = (__u64)sk;
	if (o->family == KOBJ_AF_INET) {
		bpf_core_read(o->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(o->daddr, 4, &sk->__sk_common.skc_daddr);
	} else if (o->family == KOBJ_AF_INET6) {
		bpf_core_read(o->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(o->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* The IP header at skb->network_header, and the ports of a TCP/UDP header when the
 * transport header is set (it is not yet on some output paths: ports stay 0). */
static __always_inline void kobj_net_skb(struct vigil_sock_info *o, struct sk_buff *skb)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 th = BPF_CORE_READ(skb, transport_header);
	__u8 ver = 0;
	__u16 ports[2] = {};

	o->hash = BPF_CORE_READ(skb, hash);
	o->len = BPF_CORE_READ(skb, len);
	o->priority = BPF_CORE_READ(skb, priority);
	o->mark = BPF_CORE_READ(skb, mark);
	if (bpf_probe_read_kernel(&ver, 1, head + nh))
		return;
	ver >>= 4;
	if (ver == 4) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return;
		o->family = KOBJ_AF_INET;
		o->protocol = ip.protocol;
		__builtin_memcpy(o->saddr, &ip.saddr, 4);
		__builtin_memcpy(o->daddr, &ip.daddr, 4);
	} else if (ver == 6) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return;
		o->family = KOBJ_AF_INET6;
		o->protocol = ip6.nexthdr;
		__builtin_memcpy(o->saddr, &ip6.saddr, 16);
		__builtin_memcpy(o->daddr, &ip6.daddr, 16);
	} else {
		return;
	}
	if (th == (__u16)~0U || th == nh)
		return;
	if (o->protocol != KOBJ_IPPROTO_TCP && o->protocol != KOBJ_IPPROTO_UDP)
		return;
	if (bpf_probe_read_kernel(ports, sizeof(ports), head + th))
		return;
	o->sport = bpf_ntohs(ports[0]);
	o->dport = bpf_ntohs(ports[1]);
}

/* A kernel copy of a socket address (security_socket_connect/bind get one): family,
 * address and port, reported as sockaddr_arg and filtered by SAddr/SPort/Family. */
static __always_inline void kobj_net_sockaddr(struct vigil_sock_info *o, struct sockaddr *sa)
{
	struct sockaddr_in *in = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;

	o->family = BPF_CORE_READ(sa, sa_family);
	if (o->family == KOBJ_AF_INET) {
		o->sport = bpf_ntohs(BPF_CORE_READ(in, sin_port));
		bpf_core_read(o->saddr, 4, &in->sin_addr);
	} else if (o->family == KOBJ_AF_INET6) {
		o->sport = bpf_ntohs(BPF_CORE_READ(in6, sin6_port));
		bpf_core_read(o->saddr, 16, &in6->sin6_addr);
	}
}

/* Fills `o` (zeroed here) from kernel object `raw` of network kind `kind`; 0 or -1. */
static __always_inline long kobj_net_read(struct vigil_sock_info *o, __u8 kind, __u64 raw)
{
	__builtin_memset(o, 0, sizeof(*o));
	switch (kind) {
	case VIGIL_ARG_SOCKET:
		raw = (__u64)BPF_CORE_READ((struct socket *)raw, sk);
		if (!raw)
			return -1;
		/* fall through */
	case VIGIL_ARG_SOCK:
		kobj_net_sock(o, (struct sock *)raw);
		return 0;
	case VIGIL_ARG_SKB:
		kobj_net_skb(o, (struct sk_buff *)raw);
		return 0;
	case VIGIL_ARG_SOCKADDR:
		kobj_net_sockaddr(o, (struct sockaddr *)raw);
		return 0;
	case VIGIL_ARG_SOCKINFO:
		return bpf_probe_read_kernel(o, sizeof(*o), (void *)raw) ? -1 : 0;
	}
	return -1;
}

#endif
