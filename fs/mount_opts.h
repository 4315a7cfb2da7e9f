/* SPDX-License-Identifier: MIT */
/*
 * What `zerofs mount` and the mount(8) helper (mount.zerofs) are asked
 * to do, and the -o OPTIONS list both take. One -o list says everything
 * an fstab line or a systemd unit can say:
 *
 *   zerofs' own:    tag=, dtype=, max_shard_size=, strip_prefix=, config=,
 *                   threads=, readahead=, log=, all
 *   as sshfs:       uid=, gid=, umask= (taken off the served modes)
 *   mount(8)'s:     defaults, auto, noauto, user, users, nouser, owner,
 *                   group, nofail, _netdev, rw, ro, dev, suid, x-*,
 *                   comment=*: bookkeeping, dropped (zerofs mounts are
 *                   always ro, nosuid, nodev)
 *   FUSE's:         everything else (allow_other, auto_unmount, fsname=,
 *                   max_read=, ...), handed to libfuse, which refuses
 *                   what it does not know
 */
#ifndef ZEROFS_MOUNT_OPTS_H
#define ZEROFS_MOUNT_OPTS_H

#include <stdbool.h>
#include <sys/types.h>

#include "serve_opts.h"

struct mount_req {
	const char *ckpt, *mnt;	/* as given */
	struct serve_opts so;
	bool foreground, debug;
	bool all;		/* --all, -o all: one folder per checkpoint */
	bool fake;		/* mount(8)'s -f: check everything, mount nothing */
	unsigned threads, readahead_kb;
	const char *log;	/* --log FILE, -o log=FILE */
	bool set_uid, set_gid;
	uid_t uid;
	gid_t gid;
	mode_t umask;
	char *fsname;		/* -o fsname=: instead of the checkpoint's path */
	char *fuse_opts;	/* what goes to libfuse, comma separated, escaped */
	char *owned[16];	/* copies of -o values the fields above point to */
	int n_owned;
};

/* Defaults: 8 threads, 1 MiB readahead. */
void mount_req_init(struct mount_req *r);
void mount_req_release(struct mount_req *r);

/*
 * Takes one -o list (comma separated; "\," is a comma inside a value,
 * as libfuse reads it). Returns CLI_GO_ON, or 2 after a usage error
 * naming the option (messages say "zerofs CMD: ...").
 */
int mount_req_options(struct mount_req *r, const char *cmd, const char *list);

#endif /* ZEROFS_MOUNT_OPTS_H */
