/* SPDX-License-Identifier: MIT */
/*
 * Reading files the plain way: short reads are looped, EINTR retried, and
 * an early end of file is an error (a torch record that ends before its
 * size says is truncated, never zero-filled). Checkpoint and metadata
 * files are read through sources (source.h), which use zf_pread_full();
 * the small files that name a tag (latest) are read whole here.
 */
#ifndef ZEROFS_IO_H
#define ZEROFS_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "zerofs/error.h"

/*
 * Checks a descriptor just opened from path (fd < 0: the open failed, with
 * errno still set): ZF_ENOTFOUND when path does not exist, ZF_EIO for
 * other open or fstat failures, ZF_EFORMAT for anything but a regular
 * file; the error names path, and fd is closed on failure. *st (may be
 * NULL) gets the file's stat.
 */
int zf_check_opened(int fd, const char *path, struct stat *st,
		    struct zf_error *err);

/* Opens path O_RDONLY|O_CLOEXEC into *fd and fstat()s it into *st (st may
 * be NULL). ZF_ENOTFOUND when it does not exist, ZF_EIO otherwise; the
 * error names path. Refuses anything but a regular file (ZF_EFORMAT). */
int zf_open_ro(const char *path, int *fd, struct stat *st,
	       struct zf_error *err);

/* Reads exactly len bytes at off. ZF_EIO on a read error or when the file
 * ends first ("file ends at byte N, expected M"). Does not name the file:
 * the caller knows it. */
int zf_pread_full(int fd, void *buf, size_t len, uint64_t off,
		  struct zf_error *err);

/* Reads a small whole file (at most max bytes) into a malloc'd,
 * NUL-terminated buffer; *len gets its size. */
int zf_read_small_file(const char *path, size_t max, char **out, size_t *len,
		       struct zf_error *err);

/*
 * dir/name (name may be NULL: dir alone), made absolute by prefixing the
 * working directory when dir is relative: a mount daemon changes its
 * directory to /, and sources open their files again by path. Symbolic
 * links are left as named. A malloc'd string, or NULL when out of memory.
 */
char *zf_absolute_path(const char *dir, const char *name);

#endif /* ZEROFS_IO_H */
