/* SPDX-License-Identifier: MIT */
/*
 * FUSE low-level operations for zerofs over the mount's tree (tree.h):
 * the root (inode 1), and below it either one checkpoint's files, or
 * (--all) one folder per checkpoint holding its files.
 *
 * The content is immutable while mounted, so attributes and entries get
 * long timeouts and every open keeps the kernel page cache
 * (FOPEN_KEEP_CACHE): a second read of a file never reaches us. A file
 * that changes under the mount makes its checkpoint fail (tree.h,
 * tree_set_failed()). Reads are answered with fuse_reply_buf() from a
 * per-thread buffer filled by the core read engine; libfuse's fd-buffer
 * paths allocate per request or splice, both slower here (PERF-NOTES.md
 * §2.3). A read is never answered short except at end of file: the
 * kernel would shrink the file's size.
 *
 * Every operation that needs a checkpoint's directory holds it from
 * tree_acquire() to tree_release() (an open file, from open to release),
 * so that an idle checkpoint can be closed under --all; one that cannot
 * be opened answers EIO, logged with the reason.
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

mode_t zf_served_mode(const struct zf_mount *m, const struct zf_vfile *f, size_t slot)
{
	const struct zf_access *v;
	size_t n;
	mode_t r;

	/* Never more than the sources allow (access.h); a folder may be
	 * searched by whoever may list it. */
	if (f)
		return zf_access_mode(f->access, f->n_access, m->uid, m->gid,
				      geteuid()) & ~m->umask;
	if (tree_folder_access(m->tree, slot, &v, &n))
		r = zf_access_mode(v, n, m->uid, m->gid, geteuid());
	else
		r = 0400; /* not known: the owner only */
	return (r | r >> 2) & ~m->umask;
}

static void dir_attr(const struct zf_mount *m, fuse_ino_t ino, size_t slot,
		     struct timespec mtime, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = m->uid;
	st->st_gid = m->gid;
	st->st_blksize = 1 << 20;
	st->st_mode = S_IFDIR | zf_served_mode(m, NULL, slot);
	st->st_nlink = 2;
	st->st_size = 4096;
	st->st_blocks = 8;
	st->st_mtim = mtime;
	st->st_atim = mtime;
	st->st_ctim = mtime;
}

static void file_attr(const struct zf_mount *m, fuse_ino_t ino, const struct zf_vfile *f,
		      struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = m->uid;
	st->st_gid = m->gid;
	st->st_blksize = 1 << 20;
	st->st_mode = S_IFREG | zf_served_mode(m, f, SIZE_MAX);
	st->st_nlink = 1;
	st->st_size = (off_t)f->size;
	/* du counts 512-byte blocks: report the bytes really served. */
	st->st_blocks = (blkcnt_t)((f->size + 511) / 512);
	st->st_mtim = f->mtime;
	st->st_atim = f->mtime;
	st->st_ctim = f->mtime;
}

/* Counts a failed request and logs it (at most LOG_BURST a second). */
static void refused(struct zf_mount *m, const char *what, const char *name, const char *why)
{
	__atomic_add_fetch(&m->read_errors, 1, __ATOMIC_RELAXED);
	zf_log_eio("%s of '%s' failed with EIO: %s", what, name, why);
}

/* The directory of slot (pinned: tree_release() after use), or NULL
 * after answering the request with EIO. */
static const struct zf_hfdir *acquire(fuse_req_t req, size_t slot, const char *what)
{
	struct zf_mount *m = mount_of(req);
	const struct zf_hfdir *dir;
	const char *why;

	if (!tree_acquire(m->tree, slot, &dir, &why))
		return dir;
	refused(m, what, tree_slot_name(m->tree, slot), why);
	fuse_reply_err(req, EIO);
	return NULL;
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
	struct tree *t = m->tree;
	struct fuse_entry_param e;
	const struct zf_hfdir *dir;
	const struct zf_vfile *f;
	size_t slot = 0, file;
	enum tree_node kind = tree_node_of(t, parent, &slot, &file);

	memset(&e, 0, sizeof(e));
	e.attr_timeout = TIMEOUT;
	e.entry_timeout = TIMEOUT;
	if (kind == TREE_ROOT && t->all) {
		/* A checkpoint's folder: answered without opening it. */
		slot = tree_find_folder(t, name);
		if (slot != SIZE_MAX) {
			e.ino = tree_folder_ino(t, slot);
			e.generation = 1;
			dir_attr(m, e.ino, slot, tree_slot_mtime(t, slot), &e.attr);
		}
		/* else a cached negative entry: the tree never changes. */
		fuse_reply_entry(req, &e);
		return;
	}
	if (kind != TREE_ROOT && kind != TREE_FOLDER) {
		fuse_reply_err(req, kind == TREE_NONE ? ENOENT : ENOTDIR);
		return;
	}
	dir = acquire(req, slot, "lookup");
	if (!dir)
		return;
	f = zf_hfdir_lookup(dir, name);
	if (f) {
		e.ino = tree_file_ino(t, slot, f->ino - 2);
		e.generation = 1;
		file_attr(m, e.ino, f, &e.attr);
	}
	fuse_reply_entry(req, &e);
	tree_release(t, slot);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct zf_mount *m = mount_of(req);
	struct tree *t = m->tree;
	const struct zf_hfdir *dir;
	const struct zf_vfile *f;
	size_t slot = 0, file = 0;
	struct stat st;

	(void)fi;
	switch (tree_node_of(t, ino, &slot, &file)) {
	case TREE_ROOT:
		dir_attr(m, ino, SIZE_MAX, t->mtime, &st);
		break;
	case TREE_FOLDER:
		dir_attr(m, ino, slot, tree_slot_mtime(t, slot), &st);
		break;
	case TREE_FILE:
		dir = acquire(req, slot, "stat");
		if (!dir)
			return;
		f = zf_hfdir_file(dir, file);
		if (f)
			file_attr(m, ino, f, &st);
		tree_release(t, slot);
		if (f)
			break;
		/* fall through */
	default:
		fuse_reply_err(req, ENOENT);
		return;
	}
	fuse_reply_attr(req, &st, TIMEOUT);
}

/* Entry k of a listing (0 ".", 1 "..", then names(k - 2)) carries offset
 * k + 1; returns the bytes used in buf. */
static size_t fill_dir(fuse_req_t req, char *buf, size_t size, off_t off, size_t n,
		       fuse_ino_t self, fuse_ino_t parent,
		       void (*entry)(void *ctx, size_t i, const char **name, struct stat *st),
		       void *ctx)
{
	size_t used = 0;

	for (size_t k = (size_t)off; k < n + 2; k++) {
		struct stat st = { 0 };
		const char *name;
		size_t need;

		if (k < 2) {
			name = k ? ".." : ".";
			st.st_ino = k ? parent : self;
			st.st_mode = S_IFDIR;
		} else {
			entry(ctx, k - 2, &name, &st);
		}
		need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)k + 1);
		if (need > size - used)
			break;
		used += need;
	}
	return used;
}

struct files_ctx {
	const struct tree *t;
	const struct zf_hfdir *dir;
	size_t slot;
};

static void file_entry(void *ctx, size_t i, const char **name, struct stat *st)
{
	const struct files_ctx *c = ctx;

	*name = zf_hfdir_file(c->dir, i)->name;
	st->st_ino = tree_file_ino(c->t, c->slot, i);
	st->st_mode = S_IFREG;
}

static void folder_entry(void *ctx, size_t i, const char **name, struct stat *st)
{
	const struct tree *t = ctx;

	*name = tree_slot_name(t, i);
	st->st_ino = tree_folder_ino(t, i);
	st->st_mode = S_IFDIR;
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct zf_mount *m = mount_of(req);
	struct tree *t = m->tree;
	enum tree_node kind;
	size_t slot = 0, file, used;
	char *buf;

	(void)fi;
	kind = tree_node_of(t, ino, &slot, &file);
	if (kind != TREE_ROOT && kind != TREE_FOLDER) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (kind == TREE_ROOT && t->all) {
		used = fill_dir(req, buf, size, off, t->n_slots, ino, FUSE_ROOT_ID, folder_entry, t);
	} else {
		struct files_ctx c = { t, acquire(req, slot, "listing"), slot };

		if (!c.dir) {
			free(buf);
			return;
		}
		used = fill_dir(req, buf, size, off, zf_hfdir_info(c.dir)->n_files, ino,
				FUSE_ROOT_ID, file_entry, &c);
		tree_release(t, slot);
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

/*
 * Bytes from one save or an error. Every read of a checkpoint file checks
 * that it is still the file opened (source.h); the first read that finds
 * a change makes the checkpoint fail (tree_set_failed(): logged once,
 * naming the file and how it changed): from then on every open and every
 * read of it fails with EIO, each refused open logged with the file and
 * the same reason. An open checks that latch only: the reads check the
 * files, which an open of a shard of a 1,024-rank checkpoint would
 * otherwise stat 2,048 times.
 */
static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct zf_mount *m = mount_of(req);
	struct tree *t = m->tree;
	const struct zf_hfdir *dir;
	const struct zf_vfile *f;
	size_t slot = 0, file = 0;
	const char *why;

	switch (tree_node_of(t, ino, &slot, &file)) {
	case TREE_FILE:
		break;
	case TREE_NONE:
		fuse_reply_err(req, ENOENT);
		return;
	default:
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	dir = acquire(req, slot, "open");
	if (!dir)
		return;
	f = zf_hfdir_file(dir, file);
	if (!f) {
		tree_release(t, slot);
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (tree_failed(t, slot, &why)) {
		refused(m, "open", f->name, why);
		tree_release(t, slot);
		fuse_reply_err(req, EIO);
		return;
	}
	/* The use is kept until release: the checkpoint stays open. */
	fi->keep_cache = 1;
	if (fuse_reply_open(req, fi))
		tree_release(t, slot);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct zf_mount *m = mount_of(req);
	size_t slot = 0, file;

	(void)fi;
	if (tree_node_of(m->tree, ino, &slot, &file) == TREE_FILE)
		tree_release(m->tree, slot);
	fuse_reply_err(req, 0);
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
	struct tree *t = m->tree;
	struct zf_error err = { 0 };
	const struct zf_hfdir *dir;
	const struct zf_vfile *f;
	size_t slot = 0, file = 0;
	const char *why;
	unsigned char *buf;
	int64_t n;

	(void)fi;
	if (tree_node_of(t, ino, &slot, &file) != TREE_FILE) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (tree_failed(t, slot, &why)) {
		__atomic_add_fetch(&m->read_errors, 1, __ATOMIC_RELAXED);
		fuse_reply_err(req, EIO);
		return;
	}
	/* The file is open: its open holds the directory. */
	dir = tree_open_dir(t, slot);
	f = dir ? zf_hfdir_file(dir, file) : NULL;
	buf = f ? reply_buf(size) : NULL;
	if (!buf) {
		fuse_reply_err(req, f ? ENOMEM : EBADF);
		return;
	}
	n = zf_vfile_read(dir, f, buf, size, (uint64_t)off, &err);
	if (n < 0) {
		char msg[ZF_ERROR_WHERE_MAX + ZF_ERROR_MSG_MAX + 8];

		__atomic_add_fetch(&m->read_errors, 1, __ATOMIC_RELAXED);
		if (err.status == ZF_ECHANGED)
			tree_set_failed(t, slot, &err);
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
	uint64_t bytes, files;
	struct statvfs st;

	(void)ino;
	/* With --all: what the checkpoints opened so far serve. */
	tree_totals(m->tree, &bytes, &files);
	memset(&st, 0, sizeof(st));
	st.f_bsize = 4096;
	st.f_frsize = 4096;
	st.f_blocks = (bytes + 4095) / 4096;
	st.f_files = files + 1;
	st.f_namemax = 255;
	st.f_flag = ST_RDONLY;
	fuse_reply_statfs(req, &st);
}

/*
 * Extended attributes say what is served, without reading a file: the
 * root's (struct zf_xattr, set at mount; with --all also which folders
 * failed and why), and with --all each checkpoint folder's: its
 * checkpoint, state, tag and served dtype once opened, and its error.
 * Files have none.
 */
#define MAX_XATTRS 16

struct xattrs {
	struct zf_xattr v[MAX_XATTRS];
	size_t n;
	char state[32], tag[256], dtype[16], path[4096];
	char failures[8192];
};

static void add(struct xattrs *x, const char *name, const char *value)
{
	if (x->n < MAX_XATTRS && value && value[0])
		x->v[x->n++] = (struct zf_xattr){ name, value };
}

/* The attributes of inode ino into x; false when it has none. */
static bool xattrs_of(struct zf_mount *m, fuse_ino_t ino, struct xattrs *x)
{
	struct tree *t = m->tree;
	size_t slot = 0, file;
	const char *why;

	x->n = 0;
	switch (tree_node_of(t, ino, &slot, &file)) {
	case TREE_ROOT:
		for (size_t i = 0; i < m->n_xattrs; i++)
			add(x, m->xattrs[i].name, m->xattrs[i].value);
		if (t->all) {
			tree_failures(t, x->failures, sizeof(x->failures));
			add(x, "user.zerofs.failed", x->failures);
		}
		return true;
	case TREE_FOLDER:
		snprintf(x->path, sizeof(x->path), "%s/%s", zf_runfolder_path(t->run),
			 zf_runfolder_entry(t->run, slot)->name);
		tree_slot_state(t, slot, x->state, sizeof(x->state), x->tag, sizeof(x->tag),
				x->dtype, sizeof(x->dtype));
		add(x, "user.zerofs.checkpoint", x->path);
		add(x, "user.zerofs.state", x->state);
		add(x, "user.zerofs.tag", x->tag);
		add(x, "user.zerofs.dtype", x->dtype);
		if (tree_failed(t, slot, &why))
			add(x, "user.zerofs.error", why);
		return true;
	default:
		return false;
	}
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct xattrs *x = malloc(sizeof(*x));
	char buf[1024];
	size_t used = 0;

	if (!x) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (xattrs_of(mount_of(req), ino, x))
		for (size_t i = 0; i < x->n; i++) {
			size_t n = strlen(x->v[i].name) + 1;

			if (used + n > sizeof(buf))
				break;
			memcpy(buf + used, x->v[i].name, n);
			used += n;
		}
	free(x);
	if (!size)
		fuse_reply_xattr(req, used);
	else if (size < used)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, used);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct xattrs *x = malloc(sizeof(*x));

	if (!x) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (xattrs_of(mount_of(req), ino, x))
		for (size_t i = 0; i < x->n; i++) {
			size_t n;

			if (strcmp(name, x->v[i].name))
				continue;
			n = strlen(x->v[i].value);
			if (!size)
				fuse_reply_xattr(req, n);
			else if (size < n)
				fuse_reply_err(req, ERANGE);
			else
				fuse_reply_buf(req, x->v[i].value, n);
			free(x);
			return;
		}
	free(x);
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
	.release = op_release,
	.read = op_read,
	.statfs = op_statfs,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.access = op_access,
};
