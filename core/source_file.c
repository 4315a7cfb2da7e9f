/* SPDX-License-Identifier: MIT */
/*
 * Local files as sources, with one process-wide cache of open
 * descriptors.
 *
 * Why a cache: a ZeRO checkpoint has two files per rank, and 1,024 ranks
 * are common; most systems start programs with a soft limit of 1,024
 * descriptors. So a source holds a descriptor only while it sits in the
 * cache; the least recently used idle one is closed when the cache is
 * full, and the file is opened again (and proven to be the same file) the
 * next time it is read. A descriptor in use by a read is pinned and never
 * closed under it.
 *
 * Workload: FUSE reads of 128 KiB to 1 MiB from a handful of threads,
 * each touching one to (world size + 1) files; the lock is held for a few
 * pointer moves per read, never across a system call that can block on
 * the disk, except close(2) of an evicted descriptor.
 */
#include "source_i.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

struct file_source {
	struct zf_source base;
	/* Under cache.lock: */
	int fd;				/* -1 when not open */
	unsigned pins;			/* reads using fd now */
	struct file_source *newer;	/* LRU list of open, idle or not */
	struct file_source *older;
};

/* Until a program sizes it, the cache keeps well inside the usual 1,024. */
#define DEFAULT_MAX_OPEN 512

static struct {
	pthread_mutex_t lock;
	struct file_source *newest, *oldest; /* open descriptors */
	size_t open_now, open_peak, max_open;
	uint64_t opens, reopens;
} cache = { .lock = PTHREAD_MUTEX_INITIALIZER, .max_open = DEFAULT_MAX_OPEN };

/* Under lock: list operations. */
static void unlink_lru(struct file_source *fs)
{
	if (fs->newer)
		fs->newer->older = fs->older;
	else
		cache.newest = fs->older;
	if (fs->older)
		fs->older->newer = fs->newer;
	else
		cache.oldest = fs->newer;
	fs->newer = fs->older = NULL;
}

static void push_newest(struct file_source *fs)
{
	fs->older = cache.newest;
	fs->newer = NULL;
	if (cache.newest)
		cache.newest->newer = fs;
	else
		cache.oldest = fs;
	cache.newest = fs;
}

/* Under lock: closes idle descriptors, oldest first, until at most
 * `keep` are open. Pinned ones stay: a full cache of pinned descriptors
 * (more concurrent reads than capacity) runs over until they are done. */
static void evict_to(size_t keep)
{
	struct file_source *fs = cache.oldest;

	while (cache.open_now > keep && fs) {
		struct file_source *next = fs->newer;

		if (!fs->pins) {
			unlink_lru(fs);
			close(fs->fd);
			fs->fd = -1;
			cache.open_now--;
		}
		fs = next;
	}
}

/* Under lock: records fd as fs's open descriptor. */
static void adopt(struct file_source *fs, int fd)
{
	/* Room first, so the new one is never the victim. */
	evict_to(cache.max_open - 1);
	fs->fd = fd;
	push_newest(fs);
	cache.open_now++;
	if (cache.open_now > cache.open_peak)
		cache.open_peak = cache.open_now;
}

/* Opens path read-only, making room in the cache once if the process is
 * out of descriptors. */
static int open_ro(const char *path)
{
	for (int tries = 0;; tries++) {
		/* O_NONBLOCK: a FIFO must not block the open; it is refused
		 * after fstat. Regular files ignore the flag. */
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

		if (fd >= 0 || (errno != EMFILE && errno != ENFILE) || tries == 2)
			return fd;
		pthread_mutex_lock(&cache.lock);
		evict_to(cache.open_now > 8 ? cache.open_now / 2 : 0);
		pthread_mutex_unlock(&cache.lock);
	}
}

/* A descriptor of fs, pinned: open already, or opened again and proven
 * to be the file first opened. */
static int get_fd(struct file_source *fs, int *out, struct zf_error *err)
{
	struct stat st;
	int fd, rc;

	pthread_mutex_lock(&cache.lock);
	if (fs->fd >= 0) {
		fs->pins++;
		unlink_lru(fs);
		push_newest(fs);
		*out = fs->fd;
		pthread_mutex_unlock(&cache.lock);
		return ZF_OK;
	}
	pthread_mutex_unlock(&cache.lock);

	fd = open_ro(fs->base.path);
	if (fd < 0) {
		int e = errno;

		zf_fail(err, e == ENOENT ? ZF_ECHANGED : ZF_EIO,
			e == ENOENT ? "changed: the file is gone" : "cannot open again: %s",
			strerror(e));
		zf_error_where(err, fs->base.path);
		return err ? err->status : ZF_EIO;
	}
	if (fstat(fd, &st) < 0) {
		close(fd);
		zf_fail(err, ZF_EIO, "cannot stat: %s", strerror(errno));
		zf_error_where(err, fs->base.path);
		return ZF_EIO;
	}
	rc = zf_source_compare(fs->base.path, &fs->base.id, &st, err);
	if (rc) {
		close(fd);
		return rc;
	}
	pthread_mutex_lock(&cache.lock);
	cache.opens++;
	cache.reopens++;
	if (fs->fd >= 0) {
		/* Another thread opened it meanwhile: use theirs. */
		close(fd);
	} else {
		adopt(fs, fd);
	}
	fs->pins++;
	*out = fs->fd;
	pthread_mutex_unlock(&cache.lock);
	return ZF_OK;
}

static void put_fd(struct file_source *fs)
{
	pthread_mutex_lock(&cache.lock);
	fs->pins--;
	if (!fs->pins && cache.open_now > cache.max_open)
		evict_to(cache.max_open);
	pthread_mutex_unlock(&cache.lock);
}

/* fstat of an open descriptor compared with the identity at open. */
static int check_fd(struct file_source *fs, int fd, struct zf_error *err)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		zf_fail(err, ZF_EIO, "cannot stat: %s", strerror(errno));
		zf_error_where(err, fs->base.path);
		return ZF_EIO;
	}
	return zf_source_compare(fs->base.path, &fs->base.id, &st, err);
}

/* An error record holding no error, as `= { 0 }` leaves it, cheaply. */
static void empty_error(struct zf_error *e)
{
	e->status = ZF_OK;
	e->where[0] = '\0';
	e->msg[0] = '\0';
	e->src_file = NULL;
	e->src_line = 0;
}

/* Keeps a record from a local one, unless err already holds an error. */
static void adopt_error(struct zf_error *err, const struct zf_error *e)
{
	if (err && err->status == ZF_OK)
		*err = *e;
}

static int file_pread(struct zf_source *src, void *buf, size_t len,
		      uint64_t off, struct zf_error *err)
{
	struct file_source *fs = (struct file_source *)src;
	struct zf_error read_err, check_err;
	int fd, rc, changed;

	/* Empty, not zeroed: two 2 KiB records cleared on every read were a
	 * tenth of the instructions of opening a 1,024-rank checkpoint. */
	empty_error(&read_err);
	empty_error(&check_err);
	rc = get_fd(fs, &fd, err);
	if (rc)
		return rc;
	rc = zf_pread_full(fd, buf, len, off, &read_err);
	/* After the bytes are in: a write that began before this check has
	 * already moved the modification time. A change also explains a
	 * failed read (a file that shrank), so it is the one told. */
#ifndef ZF_BENCH_NO_READ_CHECK
	changed = check_fd(fs, fd, &check_err);
#else
	/* bench/run.sh builds a copy without the check, to measure what it
	 * costs; no real build defines this. */
	changed = 0;
	(void)check_err;
#endif
	put_fd(fs);
	if (changed) {
		adopt_error(err, &check_err);
		return changed;
	}
	if (rc) {
		zf_error_where(&read_err, src->path);
		adopt_error(err, &read_err);
	}
	return rc;
}

/* The path must still name the file (a rename over it is a change), and
 * the file must be as it was. */
static int file_check(struct zf_source *src, struct zf_error *err)
{
	struct file_source *fs = (struct file_source *)src;
	struct stat st;
	int fd, rc;

	if (stat(src->path, &st) < 0) {
		int e = errno;

		zf_fail(err, e == ENOENT ? ZF_ECHANGED : ZF_EIO,
			e == ENOENT ? "changed: the file is gone" : "cannot stat: %s",
			strerror(e));
		zf_error_where(err, src->path);
		return err ? err->status : ZF_EIO;
	}
	rc = zf_source_compare(src->path, &src->id, &st, err);
	if (rc)
		return rc;
	rc = get_fd(fs, &fd, err);
	if (rc)
		return rc;
	rc = check_fd(fs, fd, err);
	put_fd(fs);
	return rc;
}

static int file_pin_fd(struct zf_source *src, int *fd, struct zf_error *err)
{
	return get_fd((struct file_source *)src, fd, err);
}

static void file_unpin_fd(struct zf_source *src)
{
	put_fd((struct file_source *)src);
}

static void file_idle(struct zf_source *src)
{
	struct file_source *fs = (struct file_source *)src;

	pthread_mutex_lock(&cache.lock);
	if (fs->fd >= 0 && !fs->pins) {
		unlink_lru(fs);
		close(fs->fd);
		fs->fd = -1;
		cache.open_now--;
	}
	pthread_mutex_unlock(&cache.lock);
}

static void file_close(struct zf_source *src)
{
	struct file_source *fs = (struct file_source *)src;

	pthread_mutex_lock(&cache.lock);
	if (fs->fd >= 0) {
		unlink_lru(fs);
		close(fs->fd);
		cache.open_now--;
	}
	pthread_mutex_unlock(&cache.lock);
	free(fs);
}

static const struct zf_source_ops file_ops = {
	.pread = file_pread,
	.check = file_check,
	.pin_fd = file_pin_fd,
	.unpin_fd = file_unpin_fd,
	.idle = file_idle,
	.close = file_close,
};

int zf_source_open(const char *path, struct zf_source **out,
		   struct zf_error *err)
{
	struct file_source *fs;
	struct stat st;
	int fd, rc;

	*out = NULL;
	fd = open_ro(path);
	rc = zf_check_opened(fd, path, &st, err);
	if (rc)
		return rc;
	/* O_NONBLOCK stays: it means nothing for a regular file's reads
	 * (descriptors opened again keep it too). */
	fs = calloc(1, sizeof(*fs));
	if (!fs) {
		close(fd);
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	rc = zf_source_init(&fs->base, &file_ops, path, err);
	if (rc) {
		close(fd);
		free(fs);
		return rc;
	}
	zf_source_id_from_stat(&fs->base.id, &st);
	fs->fd = -1;
	pthread_mutex_lock(&cache.lock);
	cache.opens++;
	adopt(fs, fd);
	pthread_mutex_unlock(&cache.lock);
	*out = &fs->base;
	return ZF_OK;
}

void zf_source_set_max_open(size_t n)
{
	pthread_mutex_lock(&cache.lock);
	cache.max_open = n ? n : 1;
	evict_to(cache.max_open);
	pthread_mutex_unlock(&cache.lock);
}

size_t zf_source_raise_nofile(size_t reserve)
{
	struct rlimit rl;
	size_t soft;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			struct rlimit want = rl;

			want.rlim_cur = rl.rlim_max;
			/* An unlimited hard limit cannot be the soft one. */
			if (want.rlim_cur == RLIM_INFINITY || want.rlim_cur > (1u << 20))
				want.rlim_cur = 1u << 20;
			if (want.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &want) == 0)
				rl = want;
		}
		soft = rl.rlim_cur == RLIM_INFINITY ? (size_t)1 << 20 : (size_t)rl.rlim_cur;
	} else {
		soft = 1024;
	}
	/* Far past what any checkpoint needs: no point holding more. */
	if (soft > 65536)
		soft = 65536;
	zf_source_set_max_open(soft > reserve ? soft - reserve : 1);
	return soft > reserve ? soft - reserve : 1;
}

void zf_source_stats(struct zf_source_stats *out)
{
	pthread_mutex_lock(&cache.lock);
	out->max_open = cache.max_open;
	out->open_now = cache.open_now;
	out->open_peak = cache.open_peak;
	out->opens = cache.opens;
	out->reopens = cache.reopens;
	pthread_mutex_unlock(&cache.lock);
}
