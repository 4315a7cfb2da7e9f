/* SPDX-License-Identifier: MIT */
/**
 * @file source.h
 * A file zerofs serves bytes from: a rank file of a checkpoint, a base
 * model's safetensors file, or a metadata file passed through as it is.
 *
 * A source is four things: open, read at an offset, identity, size. What
 * "the same file" means is fixed when it is opened (device, inode, size,
 * modification and change times), and every read checks it again after
 * the bytes are in: a file rewritten in place, truncated, replaced or
 * touched while it is served makes the read fail with ZF_ECHANGED rather
 * than hand out bytes of two saves.
 *
 * Holding a source does not hold a descriptor. Local files share one
 * process-wide cache of open descriptors, bounded by the open-file limit
 * (zf_source_set_max_open()): a checkpoint of 2,048 rank files is served
 * with a few hundred descriptors, opening a file again when it is needed.
 * A file opened again must still be the same file, or the read fails.
 *
 * Thread safety: any number of threads may read any sources at once.
 * Opening and closing a source are not concurrent with reads of it.
 */
#ifndef ZEROFS_SOURCE_H
#define ZEROFS_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "zerofs/error.h"

struct zf_source;

/* What a source was when it was opened. Two sources with the same dev
 * and ino are the same file, whatever their paths. */
struct zf_source_id {
	dev_t dev;
	ino_t ino;
	uint64_t size;		/* bytes */
	struct timespec mtime;
	struct timespec ctime;
	mode_t mode;		/* type and permission bits */
	uid_t uid;
	gid_t gid;
};

/*
 * Opens the regular file at path for reading. path is kept as given
 * (relative paths stay relative to the current directory at the time of
 * later re-opens, so callers pass absolute ones when that can change).
 * Errors name path: ZF_ENOTFOUND, ZF_EIO, ZF_EFORMAT (not a regular
 * file: a FIFO, folder or device never blocks the open), ZF_ENOMEM.
 * On success *out owns a source, free it with zf_source_close().
 */
int zf_source_open(const char *path, struct zf_source **out,
		   struct zf_error *err);

/* Forgets the source and closes its descriptor if one is open. NULL is a
 * no-op. No read of src may be running. */
void zf_source_close(struct zf_source *src);

/*
 * Reads exactly len bytes at off into buf, then checks that the file is
 * still the one opened. ZF_EIO when the file ends first or a read fails,
 * ZF_ECHANGED when it changed (the message says how). The error names
 * the source's path. Never returns a short read.
 */
int zf_source_pread(struct zf_source *src, void *buf, size_t len,
		    uint64_t off, struct zf_error *err);

/* Checks, without reading, that the file is still the one opened:
 * ZF_ECHANGED (how), ZF_EIO (cannot stat or re-open), ZF_OK. */
int zf_source_check(struct zf_source *src, struct zf_error *err);

/*
 * Lends a descriptor of the file for in-kernel copies (copy_file_range):
 * *fd stays open until zf_source_unpin_fd(src). A thread holds at most one
 * pinned descriptor at a time. The caller checks the source after using
 * it. ZF_EIO / ZF_ECHANGED when it cannot be re-opened as the same file.
 */
int zf_source_pin_fd(struct zf_source *src, int *fd, struct zf_error *err);
void zf_source_unpin_fd(struct zf_source *src);

/*
 * Lets go of src's descriptor if it holds one that no read is using: the
 * next read opens the file again (and proves it is the same file). For
 * files a program is done with for now: a checkpoint's files after open,
 * most of which a mount never reads again.
 */
void zf_source_idle(struct zf_source *src);

/* The path given to zf_source_open(), and its last component. Borrowed
 * for the life of src. */
const char *zf_source_path(const struct zf_source *src);
const char *zf_source_name(const struct zf_source *src);

/* Identity and size recorded at open. */
const struct zf_source_id *zf_source_id(const struct zf_source *src);
uint64_t zf_source_size(const struct zf_source *src);

/*
 * The descriptor cache shared by every local source of the process.
 *
 * zf_source_raise_nofile() raises the soft open-file limit to the hard
 * one (where allowed) and sizes the cache from what it got: everything
 * but `reserve` descriptors, which stay for the rest of the program
 * (FUSE's device, logs, metadata files being read, output files). Returns
 * the cache's capacity. zf_source_set_max_open() sets the capacity
 * directly (at least 1); lowering it closes idle descriptors.
 */
size_t zf_source_raise_nofile(size_t reserve);
void zf_source_set_max_open(size_t n);

struct zf_source_stats {
	size_t max_open;    /* the cache's capacity */
	size_t open_now;    /* descriptors held now */
	size_t open_peak;   /* most held at once */
	uint64_t opens;     /* open(2) calls, first opens included */
	uint64_t reopens;   /* opens of a file whose descriptor was evicted */
};

void zf_source_stats(struct zf_source_stats *out);

#endif /* ZEROFS_SOURCE_H */
