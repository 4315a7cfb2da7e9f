/* SPDX-License-Identifier: MIT */
/*
 * The source interface of source.h: dispatch to the backend, and what
 * every backend shares (the identity record and how a change is told).
 */
#include "source_i.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int zf_source_init(struct zf_source *src, const struct zf_source_ops *ops,
		   const char *path, struct zf_error *err)
{
	const char *slash;

	src->ops = ops;
	src->path = strdup(path);
	if (!src->path)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	slash = strrchr(src->path, '/');
	src->name = slash ? slash + 1 : src->path;
	return ZF_OK;
}

void zf_source_id_from_stat(struct zf_source_id *id, const struct stat *st)
{
	id->dev = st->st_dev;
	id->ino = st->st_ino;
	id->size = (uint64_t)st->st_size;
	id->mtime = st->st_mtim;
	id->ctime = st->st_ctim;
	id->mode = st->st_mode;
	id->uid = st->st_uid;
	id->gid = st->st_gid;
}

static int same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

int zf_source_compare(const char *path, const struct zf_source_id *was,
		      const struct stat *now, struct zf_error *err)
{
	int rc = ZF_OK;

	if (now->st_dev != was->dev || now->st_ino != was->ino)
		rc = zf_fail(err, ZF_ECHANGED,
			     "changed: the path now names another file (inode %llu, was %llu)",
			     (unsigned long long)now->st_ino,
			     (unsigned long long)was->ino);
	else if ((uint64_t)now->st_size != was->size)
		rc = zf_fail(err, ZF_ECHANGED,
			     "changed: its size went from %llu to %llu bytes",
			     (unsigned long long)was->size,
			     (unsigned long long)now->st_size);
	else if (!same_time(&now->st_mtim, &was->mtime))
		rc = zf_fail(err, ZF_ECHANGED,
			     "changed: it was written to (modification time %lld.%09ld, was %lld.%09ld)",
			     (long long)now->st_mtim.tv_sec, now->st_mtim.tv_nsec,
			     (long long)was->mtime.tv_sec, was->mtime.tv_nsec);
	else if (!same_time(&now->st_ctim, &was->ctime))
		rc = zf_fail(err, ZF_ECHANGED,
			     "changed: its inode was changed (change time %lld.%09ld, was %lld.%09ld)",
			     (long long)now->st_ctim.tv_sec, now->st_ctim.tv_nsec,
			     (long long)was->ctime.tv_sec, was->ctime.tv_nsec);
	if (rc)
		zf_error_where(err, path);
	return rc;
}

void zf_source_close(struct zf_source *src)
{
	char *path;

	if (!src)
		return;
	path = src->path;
	src->ops->close(src);
	free(path);
}

int zf_source_pread(struct zf_source *src, void *buf, size_t len,
		    uint64_t off, struct zf_error *err)
{
	return src->ops->pread(src, buf, len, off, err);
}

int zf_source_check(struct zf_source *src, struct zf_error *err)
{
	return src->ops->check(src, err);
}

int zf_source_pin_fd(struct zf_source *src, int *fd, struct zf_error *err)
{
	*fd = -1;
	if (!src->ops->pin_fd) {
		zf_fail(err, ZF_EUNSUPPORTED, "no descriptor to copy from");
		zf_error_where(err, src->path);
		return ZF_EUNSUPPORTED;
	}
	return src->ops->pin_fd(src, fd, err);
}

void zf_source_unpin_fd(struct zf_source *src)
{
	if (src->ops->unpin_fd)
		src->ops->unpin_fd(src);
}

void zf_source_idle(struct zf_source *src)
{
	if (src->ops->idle)
		src->ops->idle(src);
}

const char *zf_source_path(const struct zf_source *src)
{
	return src->path;
}

const char *zf_source_name(const struct zf_source *src)
{
	return src->name;
}

const struct zf_source_id *zf_source_id(const struct zf_source *src)
{
	return &src->id;
}

uint64_t zf_source_size(const struct zf_source *src)
{
	return src->id.size;
}
