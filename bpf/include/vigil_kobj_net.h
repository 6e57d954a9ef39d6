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
/* Where in the argument's row (VIGIL_ARG_STR_MAX bytes) packet headers are copied: past the
 * struct vigil_sock_info, room for an IPv6 header. */
#define KOBJ_NET_HDR_OFF 128

/* Fields are read straight into the map value `o` (bpf_core_read to its address): no stack
 * temporaries, since the engine's call chain leaves little of the 512 bytes 6.1 allows all
 * frames together. */
static __always_inline void kobj_net_sock(struct vigil_sock_info *o, struct sock *sk)
{
	bpf_core_read(&o->family, sizeof(o->family), &sk->__sk_common.skc_family);
	bpf_core_read(&o->state, sizeof(o->state), &sk->__sk_common.skc_state);
	bpf_core_read(&o->type, sizeof(o->type), &sk->sk_type);
	bpf_core_read(&o->protocol, sizeof(o->protocol), &sk->sk_protocol);
	bpf_core_read(&o->mark, sizeof(o->mark), &sk->sk_mark);
	bpf_core_read(&o->priority, sizeof(o->priority), &sk->sk_priority);
	/* skc_num is the bound port in host order, skc_dport the peer's in network order. */
	bpf_core_read(&o->sport, sizeof(o->sport), &sk->__sk_common.skc_num);
	bpf_core_read(&o->dport, sizeof(o->dport), &sk->__sk_common.skc_dport);
	o->dport = bpf_ntohs(o->dport);
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
/* Headers are copied into `hdr` (map memory, not the stack: the engine's call chain leaves
 * little of the 512 bytes 6.1 allows all frames together). */
static __always_inline void kobj_net_skb(struct vigil_sock_info *o, __u8 *hdr,
					 struct sk_buff *skb)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 th = BPF_CORE_READ(skb, transport_header);
	__u8 ver = 0;
	__u16 *ports = (__u16 *)hdr;

	o->hash = BPF_CORE_READ(skb, hash);
	o->len = BPF_CORE_READ(skb, len);
	o->priority = BPF_CORE_READ(skb, priority);
	o->mark = BPF_CORE_READ(skb, mark);
	if (bpf_probe_read_kernel(&ver, 1, head + nh))
		return;
	ver >>= 4;
	if (ver == 4) {
		struct iphdr *ip = (struct iphdr *)hdr;

		if (bpf_probe_read_kernel(hdr, sizeof(*ip), head + nh))
			return;
		o->family = KOBJ_AF_INET;
		o->protocol = ip->protocol;
		bpf_probe_read_kernel(o->saddr, 4, &ip->saddr);
		bpf_probe_read_kernel(o->daddr, 4, &ip->daddr);
	} else if (ver == 6) {
		struct ipv6hdr *ip6 = (struct ipv6hdr *)hdr;

		if (bpf_probe_read_kernel(hdr, sizeof(*ip6), head + nh))
			return;
		o->family = KOBJ_AF_INET6;
		o->protocol = ip6->nexthdr;
		bpf_probe_read_kernel(o->saddr, 16, &ip6->saddr);
		bpf_probe_read_kernel(o->daddr, 16, &ip6->daddr);
	} else {
		return;
	}
	if (th == (__u16)~0U || th == nh)
		return;
	if (o->protocol != KOBJ_IPPROTO_TCP && o->protocol != KOBJ_IPPROTO_UDP)
		return;
	if (bpf_probe_read_kernel(hdr, 4, head + th))
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

	bpf_core_read(&o->family, sizeof(o->family), &sa->sa_family);
	if (o->family == KOBJ_AF_INET) {
		bpf_core_read(&o->sport, sizeof(o->sport), &in->sin_port);
		bpf_core_read(o->saddr, 4, &in->sin_addr);
	} else if (o->family == KOBJ_AF_INET6) {
		bpf_core_read(&o->sport, sizeof(o->sport), &in6->sin6_port);
		bpf_core_read(o->saddr, 16, &in6->sin6_addr);
	}
	o->sport = bpf_ntohs(o->sport);
}

/* Fills `o` (zeroed here) from kernel object `raw` of network kind `kind`; 0 or -1. */
static __always_inline long kobj_net_read(struct vigil_sock_info *o, __u8 *hdr, __u8 kind,
					  __u64 raw)
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
		kobj_net_skb(o, hdr, (struct sk_buff *)raw);
		return 0;
	case VIGIL_ARG_NET_SOCKADDR:
		kobj_net_sockaddr(o, (struct sockaddr *)raw);
		return 0;
	case VIGIL_ARG_SOCKINFO:
		return bpf_probe_read_kernel(o, sizeof(*o), (void *)raw) ? -1 : 0;
	}
	return -1;
}

#endif
