/* SPDX-License-Identifier: MIT */
/*
 * The mount table as the kernel tells it (/proc/self/mountinfo), for
 * mount (is MNT already a zerofs mount?), umount (is it one at all?) and
 * status (which are there?).
 */
#ifndef ZEROFS_MOUNTINFO_H
#define ZEROFS_MOUNTINFO_H

#include <limits.h>
#include <stdbool.h>

struct mount_info {
	char point[PATH_MAX];	/* where, unescaped ("\040" -> ' ') */
	char source[PATH_MAX];	/* the fsname: zerofs' is the checkpoint's path */
	char fstype[256];	/* "fuse.zerofs", "tmpfs", ... */
	char dev[32];		/* "MAJ:MIN", the bdi name of a FUSE mount */
	char opts[1024];	/* per-mount options ("ro,nosuid,...") */
};

#define ZEROFS_FSTYPE "fuse.zerofs"

/* True for a zerofs mount. */
bool mount_is_zerofs(const struct mount_info *m);

/*
 * The topmost mount whose mount point is path (absolute, as
 * mount_abspath() makes it) into *out. Returns 0, or -1 when nothing is
 * mounted there or the table cannot be read (errno says which: ENOENT
 * for nothing mounted).
 */
int mount_find(const char *path, struct mount_info *out);

/*
 * Calls fn for every mount (topmost last), stopping when it returns
 * non-zero; returns that value, 0, or -1 when the table cannot be read.
 */
int mount_each(int (*fn)(const struct mount_info *m, void *arg), void *arg);

/*
 * path made absolute without asking the file system at path itself
 * (a FUSE mount whose process died answers every stat with ENOTCONN):
 * its folder is resolved, its last name appended. Returns 0, or -1 with
 * errno set.
 */
int mount_abspath(const char *path, char out[PATH_MAX]);

#endif /* ZEROFS_MOUNTINFO_H */
