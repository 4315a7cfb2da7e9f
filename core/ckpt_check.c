/* SPDX-License-Identifier: MIT */
/*
 * Detects a checkpoint that changes under a live mount: a training job
 * saving again over the same tag, a copy still being written, a file
 * truncated or deleted. Serving bytes from a mix of old and new files
 * would hand a loader weights that never existed, so a change is an error.
 *
 * Each source's metadata (device, inode, size, mtime) is hashed into a
 * fingerprint at open; a check re-reads it from the open descriptor (in
 * place rewrites, truncation) and from the path (replacement by rename,
 * deletion) and compares fingerprints. No data is read.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "zerofs/ckpt.h"

uint64_t zf_source_fingerprint(dev_t dev, ino_t ino, uint64_t size,
			       const struct timespec *mtime)
{
	uint64_t v[5] = { (uint64_t)dev, (uint64_t)ino, size,
			  (uint64_t)mtime->tv_sec, (uint64_t)mtime->tv_nsec };

	return XXH3_64bits(v, sizeof(v));
}

static uint64_t fingerprint_of(const struct stat *st)
{
	return zf_source_fingerprint(st->st_dev, st->st_ino, (uint64_t)st->st_size,
				     &st->st_mtim);
}

int zf_ckpt_check_sources(const struct zf_ckpt *ck, struct zf_error *err)
{
	for (size_t i = 0; i < ck->n_sources; i++) {
		const struct zf_source *s = &ck->sources[i];
		struct stat st;

		if (fstat(s->fd, &st) < 0) {
			zf_fail(err, ZF_EIO, "cannot stat: %s", strerror(errno));
			zf_error_where(err, s->path);
			return ZF_EIO;
		}
		if (fingerprint_of(&st) != s->fingerprint) {
			zf_fail(err, ZF_ECHANGED,
				"changed since it was opened (size %llu -> %llu bytes%s): the checkpoint is being rewritten; remount once it is complete",
				(unsigned long long)s->size,
				(unsigned long long)st.st_size,
				(uint64_t)st.st_size == s->size ? ", modified in place" : "");
			zf_error_where(err, s->path);
			return ZF_ECHANGED;
		}
		if (stat(s->path, &st) < 0) {
			zf_fail(err, ZF_ECHANGED, "was removed since it was opened: %s",
				strerror(errno));
			zf_error_where(err, s->path);
			return ZF_ECHANGED;
		}
		if (fingerprint_of(&st) != s->fingerprint) {
			zf_fail(err, ZF_ECHANGED,
				"was replaced by another file since it was opened: the checkpoint is being rewritten; remount once it is complete");
			zf_error_where(err, s->path);
			return ZF_ECHANGED;
		}
	}
	return ZF_OK;
}
