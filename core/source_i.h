/* SPDX-License-Identifier: MIT */
/*
 * Private to the source implementations (source.c and its backends): the
 * layout every source starts with, and the operations a backend provides.
 * A new storage backend is a new file with its own zf_source_ops; the
 * layout maths and the read engine only ever call source.h.
 */
#ifndef ZEROFS_SOURCE_I_H
#define ZEROFS_SOURCE_I_H

#include <sys/stat.h>

#include "zerofs/source.h"

struct zf_source_ops {
	/* Reads exactly len bytes at off and checks identity afterwards. */
	int (*pread)(struct zf_source *src, void *buf, size_t len,
		     uint64_t off, struct zf_error *err);
	/* Checks identity without reading. */
	int (*check)(struct zf_source *src, struct zf_error *err);
	/* A descriptor for in-kernel copies, or ZF_EUNSUPPORTED. */
	int (*pin_fd)(struct zf_source *src, int *fd, struct zf_error *err);
	void (*unpin_fd)(struct zf_source *src);
	/* Closes an unused descriptor, if any (may be NULL). */
	void (*idle)(struct zf_source *src);
	/* Frees the backend's part; the common part is freed by the caller. */
	void (*close)(struct zf_source *src);
};

/* The common head of every source; backends embed it first. */
struct zf_source {
	const struct zf_source_ops *ops;
	char *path;		/* owned */
	const char *name;	/* points into path */
	struct zf_source_id id;
};

/* Fills the common part (copies path); ZF_ENOMEM. */
int zf_source_init(struct zf_source *src, const struct zf_source_ops *ops,
		   const char *path, struct zf_error *err);

/*
 * Compares what a file is now with what it was (now from fstat or stat)
 * and, when they differ, records ZF_ECHANGED in err with how ("was
 * replaced by another file", "changed size from 10 to 12 bytes", ...),
 * naming path. Returns ZF_OK when they are the same.
 */
int zf_source_compare(const char *path, const struct zf_source_id *was,
		      const struct stat *now, struct zf_error *err);

/* The identity of a stat result. */
void zf_source_id_from_stat(struct zf_source_id *id, const struct stat *st);

#endif /* ZEROFS_SOURCE_I_H */
