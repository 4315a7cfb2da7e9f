/* SPDX-License-Identifier: MIT */
/*
 * The FUSE low-level operations over the mount's tree (tree.h): a
 * read-only tree whose files never change while mounted. This is the only
 * place a core status becomes an errno.
 */
#ifndef ZEROFS_FUSE_OPS_H
#define ZEROFS_FUSE_OPS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "tree.h"
#include "zerofs/hfdir.h"

/* An extended attribute of the mount's root: what is served, readable
 * without opening a file (getfattr -d -m zerofs MNT; zerofs status). */
struct zf_xattr {
	const char *name; /* "user.zerofs.tag" */
	const char *value;
};

/* What the operations need; passed as the session's userdata. */
struct zf_mount {
	struct tree *tree;
	uid_t uid;
	gid_t gid;
	mode_t umask;		   /* taken off every served mode (-o umask=) */
	const struct zf_xattr *xattrs;
	size_t n_xattrs;
	unsigned long read_errors; /* requests answered with an error */
	unsigned readahead_kb;	   /* asked for in INIT; 0 keeps the kernel's */
};

extern const struct fuse_lowlevel_ops zf_fuse_ops;

/*
 * The permission bits a served file (f) or a folder (f NULL: the root
 * when slot is SIZE_MAX, or checkpoint slot's folder under --all) shows: the read bits its sources
 * allow for the served owner and group (zf_access_mode(), access.h; for a
 * folder, the same bits as search bits), less the mount's umask. Never
 * write bits. The one place modes are decided.
 */
mode_t zf_served_mode(const struct zf_mount *m, const struct zf_vfile *f, size_t slot);

#endif /* ZEROFS_FUSE_OPS_H */
