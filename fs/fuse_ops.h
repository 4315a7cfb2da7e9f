/* SPDX-License-Identifier: MIT */
/*
 * The FUSE low-level operations over a struct zf_hfdir: a flat read-only
 * directory whose files never change while mounted. This is the only
 * place a core status becomes an errno.
 */
#ifndef ZEROFS_FUSE_OPS_H
#define ZEROFS_FUSE_OPS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "zerofs/hfdir.h"

/* What the operations need; passed as the session's userdata. */
struct zf_mount {
	const struct zf_hfdir *dir;
	uid_t uid;
	gid_t gid;
	unsigned long read_errors; /* reads answered with an error */
	int stale;		   /* a file changed: opens and reads fail */
	unsigned readahead_kb;	   /* asked for in INIT; 0 keeps the kernel's */
};

extern const struct fuse_lowlevel_ops zf_fuse_ops;

/* Logs a line: to stderr in the foreground, to syslog when detached. */
void zf_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void zf_log_to_syslog(void);

#endif /* ZEROFS_FUSE_OPS_H */
