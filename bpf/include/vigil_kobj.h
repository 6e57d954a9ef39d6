/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Argument readers for kernel objects (kernel-function and LSM hooks): file, path, dentry,
 * linux_binprm resolve to a path string, kernel strings and struct filename to their text.
 * Include BEFORE vigil_engine.h: the engine's argument reader calls kobj_read() for every
 * kind >= VIGIL_ARG_KOBJ_FIRST when this header is present.
 *
 * Paths are resolved in the kernel by the same dentry walk as the lifecycle sensor
 * (bpf/lifecycle.bpf.c: leaf to root, crossing mounts, stopping at the task's root, bpf_loop
 * bounded by VIGIL_PATH_DEPTH_MAX), but written root-first into a buffer from its end so the
 * result is the printable path. Truncation is explicit: a path longer than
 * VIGIL_ARG_STR_MAX - 1 bytes keeps its leaf end and sets the argument's truncation bit.
 */
#ifndef VIGIL_KOBJ_H
#define VIGIL_KOBJ_H

#include "vigil_abi.h"

#define KOBJ_BUF 512 /* path assembled from the end; power of two for masking */

struct kobj_scratch {
	char buf[KOBJ_BUF + VIGIL_NAME_MAX + 1]; /* slack: a masked offset + a name stays inside */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kobj_scratch);
} vigil_kobj_scratch SEC(".maps");

#ifdef VIGIL_KOBJ_NET /* kfuncs_net.bpf.c, sockaddr_cgroup.bpf.c */
#include "vigil_kobj_net.h"
#endif

struct kobj_walk {
	__u64 dentry;      /* struct dentry * */
	__u64 mnt;         /* struct mount *, 0 for a bare dentry (no mount crossing) */
	__u64 root_dentry; /* the task's root: the walk stops there, as d_path does */
	__u64 root_mnt;    /* struct vfsmount * */
	__u32 pos;         /* start of the path in buf (written backwards from KOBJ_BUF) */
	__u32 trunc;
};

/* Prepends "/<name>". Returns 1 to stop the walk (no room: truncated). */
static __always_inline long kobj_prepend(struct kobj_walk *c, struct dentry *d)
{
	__u32 zero = 0;
	struct kobj_scratch *s = bpf_map_lookup_elem(&vigil_kobj_scratch, &zero);
	struct qstr name;
	__u32 len, pos = c->pos;

	if (!s)
		return 1;
	if (bpf_core_read(&name, sizeof(name), &d->d_name))
		return 1;
	len = name.len;
	if (len > VIGIL_NAME_MAX)
		len = VIGIL_NAME_MAX;
	if (pos < len + 1) {
		c->trunc = 1;
		return 1;
	}
	pos -= len;
	bpf_probe_read_kernel(&s->buf[pos & (KOBJ_BUF - 1)], len & VIGIL_NAME_MAX, name.name);
	pos -= 1;
	s->buf[pos & (KOBJ_BUF - 1)] = '/';
	c->pos = pos;
	return 0;
}

static long kobj_walk_step(__u32 idx, struct kobj_walk *c)
{
	struct dentry *d = (struct dentry *)c->dentry;
	struct mount *m = (struct mount *)c->mnt;
	struct dentry *parent, *mnt_root;
	struct mount *mnt_parent;

	if (!d)
		return 1;
	parent = BPF_CORE_READ(d, d_parent);
	if (m) {
		if (c->dentry == c->root_dentry && (__u64)&m->mnt == c->root_mnt)
			return 1;
		mnt_root = BPF_CORE_READ(m, mnt.mnt_root);
		if (d == mnt_root) {
			mnt_parent = BPF_CORE_READ(m, mnt_parent);
			if (mnt_parent == m)
				return 1; /* top of the mount tree without meeting the task's root */
			c->dentry = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
			c->mnt = (__u64)mnt_parent;
			return 0;
		}
	}
	if (d == parent) {
		/* The file system's root (bare dentry) or a disconnected dentry (pipe, memfd):
		 * a root's name is "/", anything else is all there is. */
		if (!m)
			return 1;
		kobj_prepend(c, d);
		return 1;
	}
	if (kobj_prepend(c, d))
		return 1;
	c->dentry = (__u64)parent;
	return 0;
}

/* Resolves (dentry, vfsmount) into dst (VIGIL_ARG_STR_MAX bytes); returns the length. */
static __always_inline long kobj_path(char *dst, struct dentry *dentry, struct vfsmount *vfsmnt,
				      __u32 *trunc)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct kobj_walk c = {};
	struct kobj_scratch *s;
	__u32 zero = 0, n;
	long steps;

	s = bpf_map_lookup_elem(&vigil_kobj_scratch, &zero);
	if (!s || !dentry)
		return -1;
	c.dentry = (__u64)dentry;
	if (vfsmnt)
		c.mnt = (__u64)container_of(vfsmnt, struct mount, mnt);
	c.root_dentry = (__u64)BPF_CORE_READ(task, fs, root.dentry);
	c.root_mnt = (__u64)BPF_CORE_READ(task, fs, root.mnt);
	c.pos = KOBJ_BUF;
	steps = bpf_loop(VIGIL_PATH_DEPTH_MAX, kobj_walk_step, &c, 0);
	if (steps >= VIGIL_PATH_DEPTH_MAX)
		c.trunc = 1;
	if (c.pos >= KOBJ_BUF) {
		/* Nothing above the leaf: the root itself. */
		dst[0] = '/';
		dst[1] = 0;
		return 1;
	}
	n = KOBJ_BUF - c.pos;
	if (n > VIGIL_ARG_STR_MAX - 1) {
		/* Keep the leaf end: it names the object; the cut is reported, never silent. */
		c.pos = KOBJ_BUF - (VIGIL_ARG_STR_MAX - 1);
		n = VIGIL_ARG_STR_MAX - 1;
		c.trunc = 1;
	}
	bpf_probe_read_kernel(dst, n & (VIGIL_ARG_STR_MAX - 1), &s->buf[c.pos & (KOBJ_BUF - 1)]);
	dst[n & (VIGIL_ARG_STR_MAX - 1)] = 0;
	*trunc |= c.trunc;
	return n;
}

static __always_inline __s64 kobj_mode(struct dentry *d)
{
	return d ? BPF_CORE_READ(d, d_inode, i_mode) : 0;
}

/* The file's identity (inode number, device as the kernel encodes it) for SameFile:
 * the same whichever link or mount the file was reached by. */
static __always_inline void kobj_ident(struct dentry *d, __u64 *ino, __u64 *dev)
{
	struct inode *inode = d ? BPF_CORE_READ(d, d_inode) : 0;

	*ino = inode ? BPF_CORE_READ(inode, i_ino) : 0;
	*dev = inode ? BPF_CORE_READ(inode, i_sb, s_dev) : 0;
}

/*
 * Reads kernel object `raw` of kind `kind` into dst (a VIGIL_ARG_STR_MAX row); the inode
 * mode (file, path, dentry, binprm) goes to *ival, for the event's permission string, and
 * its identity to ident[0] (inode) and ident[1] (device). Returns the string length or -1.
 */
static __always_inline long kobj_read(char *dst, __u8 kind, __u64 raw, __s64 *ival, __u32 *trunc,
				      __u64 *ino, __u64 *dev)
{
	struct dentry *d = 0;
	struct vfsmount *mnt = 0;
	long n;

	*ival = 0;
	if (!raw)
		return -1;
#ifdef VIGIL_KOBJ_NET
	if (kind >= VIGIL_ARG_SOCK && kind <= VIGIL_ARG_SOCKINFO) {
		/* Built in place in the row (no stack, no copy: the engine's frames are near the
		 * 512 bytes 6.1 allows all together); packet headers go to the row's far half. */
		if (kobj_net_read((struct vigil_sock_info *)dst, (__u8 *)dst + KOBJ_NET_HDR_OFF,
				  kind, raw))
			return -1;
		return sizeof(struct vigil_sock_info);
	}
#endif
	switch (kind) {
	case VIGIL_ARG_FILE:
		d = BPF_CORE_READ((struct file *)raw, f_path.dentry);
		mnt = BPF_CORE_READ((struct file *)raw, f_path.mnt);
		break;
	case VIGIL_ARG_PATH:
		d = BPF_CORE_READ((struct path *)raw, dentry);
		mnt = BPF_CORE_READ((struct path *)raw, mnt);
		break;
	case VIGIL_ARG_DENTRY:
		d = (struct dentry *)raw;
		break;
	case VIGIL_ARG_BINPRM:
		d = BPF_CORE_READ((struct linux_binprm *)raw, file, f_path.dentry);
		mnt = BPF_CORE_READ((struct linux_binprm *)raw, file, f_path.mnt);
		break;
	case VIGIL_ARG_KIOCB:
		raw = (__u64)BPF_CORE_READ((struct kiocb *)raw, ki_filp);
		if (!raw)
			return -1;
		d = BPF_CORE_READ((struct file *)raw, f_path.dentry);
		mnt = BPF_CORE_READ((struct file *)raw, f_path.mnt);
		break;
	case VIGIL_ARG_NET_DEVICE:
	case VIGIL_ARG_FILENAME:
	case VIGIL_ARG_KSTRING:
		if (kind == VIGIL_ARG_FILENAME)
			raw = (__u64)BPF_CORE_READ((struct filename *)raw, name);
		else if (kind == VIGIL_ARG_NET_DEVICE)
			/* The name array is inside the device: read it in place. */
			raw = (__u64)&((struct net_device *)raw)->name;
		n = bpf_probe_read_kernel_str(dst, VIGIL_ARG_STR_MAX, (void *)raw);
		if (n <= 0)
			return -1;
		if (n == VIGIL_ARG_STR_MAX)
			*trunc = 1;
		return n - 1;
	default:
		return -1;
	}
	*ival = kobj_mode(d);
	kobj_ident(d, ino, dev);
	return kobj_path(dst, d, mnt, trunc);
}

#endif
