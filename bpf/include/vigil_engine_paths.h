// SPDX-License-Identifier: GPL-2.0-only
/*
 * Kernel-resolved paths: an fd of the current task -> struct file -> path string, walked
 * to the task's root across mounts. Part of vigil_engine.h.
 */

#ifndef VIGIL_ENGINE_PATHS_H
#define VIGIL_ENGINE_PATHS_H

/* ---- kernel-resolved paths (struct file -> path string) -------------------------------- */

struct fdpath_ctx {
	__u64 dentry;      /* struct dentry * */
	__u64 mnt;         /* struct mount * */
	__u64 root_dentry; /* the task's root: the walk stops there, as d_path does */
	__u64 root_mnt;    /* struct vfsmount * */
	__u32 pos;         /* start of the string in pathbuf (written backwards) */
	__u32 trunc;
};

static long fdpath_step(__u32 i, struct fdpath_ctx *c)
{
	__u32 zero = 0;
	struct sys_scratch *s = bpf_map_lookup_elem(&vigil_sys_scratch, &zero);
	struct dentry *d = (struct dentry *)c->dentry;
	struct mount *m = (struct mount *)c->mnt;
	struct dentry *parent, *mnt_root;
	struct mount *mnt_parent;
	struct qstr name;
	__u32 len;

	if (!s || !d || !m)
		return 1;
	if (c->dentry == c->root_dentry && (__u64)&m->mnt == c->root_mnt)
		return 1;
	mnt_root = BPF_CORE_READ(m, mnt.mnt_root);
	if (d == mnt_root) {
		mnt_parent = BPF_CORE_READ(m, mnt_parent);
		if (mnt_parent == m)
			return 1; /* top of the mount tree */
		c->dentry = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
		c->mnt = (__u64)mnt_parent;
		return 0;
	}
	parent = BPF_CORE_READ(d, d_parent);
	if (bpf_core_read(&name, sizeof(name), &d->d_name))
		return 1;
	len = name.len;
	/* Room for '/' + name, keeping pos >= 1 so that the string fits a row with its NUL. */
	if (len + 2 > c->pos) {
		c->trunc = 1;
		return 1;
	}
	c->pos -= len;
	bpf_probe_read_kernel(&s->pathbuf[c->pos & (VIGIL_ARG_STR_MAX - 1)],
			      len & (VIGIL_ARG_STR_MAX - 1), name.name);
	c->pos -= 1;
	s->pathbuf[c->pos & (VIGIL_ARG_STR_MAX - 1)] = '/';
	if (d == parent)
		return 1; /* disconnected dentry (pipe, memfd): its name is all there is */
	c->dentry = (__u64)parent;
	return 0;
}

/* Walks `file`'s path into pathbuf (s->path_pos, s->path_state). */
static __always_inline void resolve_file(struct sys_scratch *s, struct file *file)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdpath_ctx c = { .pos = VIGIL_ARG_STR_MAX };
	struct vfsmount *vfsmnt;

	s->path_state = 0;
	if (!file)
		return;
	c.dentry = (__u64)BPF_CORE_READ(file, f_path.dentry);
	vfsmnt = BPF_CORE_READ(file, f_path.mnt);
	c.mnt = (__u64)container_of(vfsmnt, struct mount, mnt);
	c.root_dentry = (__u64)BPF_CORE_READ(task, fs, root.dentry);
	c.root_mnt = (__u64)BPF_CORE_READ(task, fs, root.mnt);
	bpf_loop(VIGIL_PATH_DEPTH_MAX, fdpath_step, &c, 0);
	if (c.pos == VIGIL_ARG_STR_MAX) {
		c.pos -= 1;
		s->pathbuf[c.pos & (VIGIL_ARG_STR_MAX - 1)] = '/';
	}
	s->path_pos = c.pos;
	s->path_state = c.trunc ? 2 : 1;
}

/* Copies the resolved path into row VIGIL_ROW_PATH and marks the message. */
static __always_inline void place_path(struct sys_scratch *s)
{
	__u32 pos = s->path_pos & (VIGIL_ARG_STR_MAX - 1);
	__u32 len = (VIGIL_ARG_STR_MAX - pos) & (VIGIL_ARG_STR_MAX - 1);

	if (!s->path_state)
		return;
	bpf_probe_read_kernel(s->st.strs[VIGIL_ROW_PATH], len, &s->pathbuf[pos]);
	s->st.strs[VIGIL_ROW_PATH][len & (VIGIL_ARG_STR_MAX - 1)] = 0;
	s->st.str_len_full[VIGIL_ROW_PATH] = len;
	s->st.msg.path_len = len;
	s->st.msg.flags |= VIGIL_SYSMSG_PATH;
	if (s->path_state == 2)
		s->st.msg.flags |= VIGIL_SYSMSG_PATH_TRUNC;
}

/* The file behind descriptor `fd` of the current task, or NULL. */
static __always_inline struct file *fd_file(__s64 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *file = NULL;
	__u32 max;

	if (fd < 0 || !fdt)
		return NULL;
	max = BPF_CORE_READ(fdt, max_fds);
	if ((__u64)fd >= max)
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}


#endif
