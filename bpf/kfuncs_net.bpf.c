// SPDX-License-Identifier: GPL-2.0-only
/*
 * kfuncs.bpf.c with the network-object readers and operators (vigil_kobj_net.h,
 * vigil_engine_sock.h). A separate object, chosen by the loader for hooks with sock, socket,
 * skb or sockaddr arguments: the others keep the smaller program (verification time, which
 * an emulated guest feels, and the engine's combined stack).
 */
#define VIGIL_KOBJ_NET
#include "kfuncs.bpf.c"
