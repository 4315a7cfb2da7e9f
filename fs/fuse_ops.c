/* SPDX-License-Identifier: MIT */
/*
 * FUSE low-level operations for zerofs: one root directory (inode 1)
 * holding the files of the virtual model directory (inode 2 + index).
 *
 * The content is immutable while mounted, so attributes and entries get
 * long timeouts and every open keeps the kernel page cache
 * (FOPEN_KEEP_CACHE): a second read of a file never reaches us. A file
 * that changes under the mount makes it stale (see set_stale()). Reads are
 * answered with fuse_reply_buf() from a per-thread buffer filled by the
 * core read engine; libfuse's fd-buffer paths allocate per request or
 * splice, both slower here (PERF-NOTES.md §2.3). A read is never answered
 * short except at end of file: the kernel would shrink the file's size.
 */
#include "fuse_ops.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* The content never changes while mounted. */
#define TIMEOUT 86400.0

static struct zf_mount *mount_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static const struct zf_vfile *file_of(const struct zf_mount *m, fuse_ino_t ino)
{
	return ino < 2 ? NULL : zf_hfdir_file(m->dir, ino - 2);
}

mode_t zf_served_mode(const struct zf_mount *m, const struct zf_vfile *f)
{
	const struct zf_hfdir_info *di = zf_hfdir_info(m->dir);
	mode_t r;

	/* Never more than the sources allow (access.h); the folder may be
	 * searched by whoever may list it. */
	if (f)
		return zf_access_mode(f->access, f->n_access, m->uid, m->gid,
				      geteuid()) & ~m->umask;
	r = zf_access_mode(di->dir_access, di->n_dir_access, m->uid, m->gid, geteuid());
	return (r | r >> 2) & ~m->umask;
}

static void fill_attr(const struct zf_mount *m, fuse_ino_t ino, struct stat *st)
{
	const struct zf_vfile *f = file_of(m, ino);

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = m->uid;
	st->st_gid = m->gid;
	st->st_blksize = 1 << 20;
	if (!f) {
		st->st_mode = S_IFDIR | zf_served_mode(m, NULL);
		st->st_nlink = 2;
		st->st_size = 4096;
		st->st_blocks = 8;
		st->st_mtim = zf_hfdir_info(m->dir)->mtime;
	} else {
		st->st_mode = S_IFREG | zf_served_mode(m, f);
		st->st_nlink = 1;
		st->st_size = (off_t)f->size;
		/* du counts 512-byte blocks: report the bytes really served. */
		st->st_blocks = (blkcnt_t)((f->size + 511) / 512);
		st->st_mtim = f->mtime;
	}
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct zf_mount *m = userdata;

	/* The kernel sets the mount's readahead to the smaller of its bdi
	 * window and this reply: ask for the window cmd_mount.c wrote. */
	if (m->readahead_kb)
		conn->max_readahead = m->readahead_kb * 1024;
	/* Splice was slower than copying here, and SPLICE_MOVE steals the
	 * source files' page cache; content never changes, so no automatic
	 * invalidation either. */
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
			FUSE_CAP_SPLICE_MOVE | FUSE_CAP_AUTO_INVAL_DATA);
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct zf_mount *m = mount_of(req);
	struct fuse_entry_param e;
	const struct zf_vfile *f;

	memset(&e, 0, sizeof(e));
	e.attr_timeout = TIMEOUT;
	e.entry_timeout = TIMEOUT;
	if (parent != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	f = zf_hfdir_lookup(m->dir, name);
	if (!f) {
		/* A cached negative entry: the directory never changes. */
		fuse_reply_entry(req, &e);
		return;
	}
	e.ino = f->ino;
	e.generation = 1;
	fill_attr(m, f->ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct zf_mount *m = mount_of(req);
	struct stat st;

	(void)fi;
	if (ino != FUSE_ROOT_ID && !file_of(m, ino)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(m, ino, &st);
	fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct zf_mount *m = mount_of(req);
	char *buf;
	size_t used = 0;

	(void)fi;
	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Entry k (0 ".", 1 "..", 2.. files) carries offset k + 1. */
	for (size_t k = (size_t)off; k < zf_hfdir_info(m->dir)->n_files + 2; k++) {
		struct stat st = { 0 };
		const char *name;
		size_t need;

		if (k < 2) {
			name = k ? ".." : ".";
			st.st_ino = FUSE_ROOT_ID;
			st.st_mode = S_IFDIR;
		} else {
			name = zf_hfdir_file(m->dir, k - 2)->name;
			st.st_ino = zf_hfdir_file(m->dir, k - 2)->ino;
			st.st_mode = S_IFREG;
		}
		need = fuse_add_direntry(req, buf + used, size - used, name, &st,
					 (off_t)k + 1);
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

/*
 * Bytes from one save or an error. Every read of a checkpoint file checks
 * that it is still the file mounted (source.h); the first read that finds
 * a change latches the mount stale: from then on every open and every
 * read fails with EIO, and the change is logged once, naming the file
 * and how it changed; each refused open or read after it is logged with
 * the file and the same reason. An open checks the latch only: the reads
 * check the files, which an open of a shard of a 1,024-rank checkpoint
 * would otherwise stat 2,048 times.
 */
static pthread_mutex_t stale_lock = PTHREAD_MUTEX_INITIALIZER;

static bool is_stale(const struct zf_mount *m)
{
	return __atomic_load_n(&m->stale, __ATOMIC_ACQUIRE);
}

static void set_stale(struct zf_mount *m, const struct zf_error *err)
{
	char msg[ZF_ERROR_WHERE_MAX + ZF_ERROR_MSG_MAX + 8];

	zf_error_format(err, msg, sizeof(msg));
	pthread_mutex_lock(&stale_lock);
	if (!m->stale) {
		snprintf(m->stale_why, sizeof(m->stale_why), "%s", msg);
		__atomic_store_n(&m->stale, 1, __ATOMIC_RELEASE);
		zf_log("%s; the checkpoint changed since it was mounted: every open and read now fails with EIO (remount once it is complete)",
		       msg);
	}
	pthread_mutex_unlock(&stale_lock);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct zf_mount *m = mount_of(req);

	if (!file_of(m, ino)) {
		fuse_reply_err(req, ino == FUSE_ROOT_ID ? EISDIR : ENOENT);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (is_stale(m)) {
		__atomic_add_fetch(&m->read_errors, 1, __ATOMIC_RELAXED);
		zf_log_eio("open of '%s' failed with EIO: %s", file_of(m, ino)->name,
			   m->stale_why);
		fuse_reply_err(req, EIO);
		return;
	}
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;

struct read_buf {
	size_t cap;
	unsigned char data[];
};

static void buf_key_init(void)
{
	pthread_key_create(&buf_key, free);
}

/* This thread's reply buffer, grown to at least size. */
static unsigned char *reply_buf(size_t size)
{
	struct read_buf *b;

	pthread_once(&buf_once, buf_key_init);
	b = pthread_getspecific(buf_key);
	if (!b || b->cap < size) {
		size_t cap = size < (1u << 20) ? (1u << 20) : size;
		struct read_buf *nb = malloc(sizeof(*nb) + cap);

		if (!nb)
			return NULL;
		nb->cap = cap;
		free(b);
		pthread_setspecific(buf_key, nb);
		b = nb;
	}
	return b->data;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct zf_mount *m = mount_of(req);
	const struct zf_vfile *f = file_of(m, ino);
	struct zf_error err = { 0 };
	unsigned char *buf;
	int64_t n;

	(void)fi;
	if (!f) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (is_stale(m)) {
		__atomic_add_fetch(&m->read_errors, 1, __ATOMIC_RELAXED);
		fuse_reply_err(req, EIO);
		return;
	}
	buf = reply_buf(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = zf_vfile_read(m->dir, f, buf, size, (uint64_t)off, &err);
	if (n < 0) {
		char msg[ZF_ERROR_WHERE_MAX + ZF_ERROR_MSG_MAX + 8];

		__atomic_add_fetch(&m->read_errors, 1, __ATOMIC_RELAXED);
		if (err.status == ZF_ECHANGED)
			set_stale(m, &err);
		else
			zf_log_eio("read of '%s' at %lld (%zu bytes) failed with %s: %s", f->name,
				   (long long)off, size, err.status == ZF_ENOMEM ? "ENOMEM" : "EIO",
				   zf_error_format(&err, msg, sizeof(msg)));
		fuse_reply_err(req, err.status == ZF_ENOMEM ? ENOMEM : EIO);
		return;
	}
	fuse_reply_buf(req, (const char *)buf, (size_t)n);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct zf_mount *m = mount_of(req);
	struct statvfs st;

	(void)ino;
	memset(&st, 0, sizeof(st));
	st.f_bsize = 4096;
	st.f_frsize = 4096;
	st.f_blocks = (zf_hfdir_info(m->dir)->total_bytes + 4095) / 4096;
	st.f_files = zf_hfdir_info(m->dir)->n_files + 1;
	st.f_namemax = 255;
	st.f_flag = ST_RDONLY;
	fuse_reply_statfs(req, &st);
}

/* The root's attributes say what is served (fuse_ops.h, struct zf_xattr);
 * files have none. */
static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct zf_mount *m = mount_of(req);
	char buf[1024];
	size_t used = 0;

	if (ino == FUSE_ROOT_ID)
		for (size_t i = 0; i < m->n_xattrs; i++) {
			size_t n = strlen(m->xattrs[i].name) + 1;

			if (used + n > sizeof(buf))
				break;
			memcpy(buf + used, m->xattrs[i].name, n);
			used += n;
		}
	if (!size)
		fuse_reply_xattr(req, used);
	else if (size < used)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, used);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct zf_mount *m = mount_of(req);

	for (size_t i = 0; ino == FUSE_ROOT_ID && i < m->n_xattrs; i++) {
		size_t n;

		if (strcmp(name, m->xattrs[i].name))
			continue;
		n = strlen(m->xattrs[i].value);
		if (!size)
			fuse_reply_xattr(req, n);
		else if (size < n)
			fuse_reply_err(req, ERANGE);
		else
			fuse_reply_buf(req, m->xattrs[i].value, n);
		return;
	}
	fuse_reply_err(req, ENODATA);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	(void)ino;
	fuse_reply_err(req, (mask & W_OK) ? EROFS : 0);
}

const struct fuse_lowlevel_ops zf_fuse_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.readdir = op_readdir,
	.open = op_open,
	.read = op_read,
	.statfs = op_statfs,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.access = op_access,
};
