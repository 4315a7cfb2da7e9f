/* SPDX-License-Identifier: MIT */
/*
 * passthrough: the baseline FUSE file system of the zerofs benchmarks.
 *
 *   passthrough SRC MOUNTPOINT [THREADS [READAHEAD_KB]]
 *
 * Serves the folder SRC read-only at MOUNTPOINT, in the foreground, with
 * the same session settings as zerofs (fs/fuse_ops.c, fs/cmd_mount.c) so
 * that the difference to zerofs is only zerofs's own work:
 * FUSE_USE_VERSION 314 low-level API, the multithreaded loop (8 threads,
 * no clone_fd), splice and automatic invalidation off, async reads,
 * long attribute/entry timeouts, FOPEN_KEEP_CACHE on every open, reads
 * answered with fuse_reply_buf() from a per-thread buffer filled by
 * pread(), and the mount's readahead raised to 1024 KiB through
 * /sys/class/bdi before the session starts, and asked for again in the
 * FUSE_INIT reply (conn->max_readahead): the kernel sets the bdi's
 * readahead to min(current, max_readahead of the INIT reply), so without
 * the second step the 128 KiB the kernel offered in INIT wins again. Inodes are kept for the life of the mount (forget is
 * ignored: the benchmark folders hold a few dozen entries).
 */
#define FUSE_USE_VERSION 314
#define _GNU_SOURCE
#include <fuse_lowlevel.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TIMEOUT 86400.0

static int src_fd; /* the source folder */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static char **paths; /* inode i -> path relative to src ("." for 1) */
static size_t n_paths, cap_paths;

static const char *path_of(fuse_ino_t ino)
{
	const char *p = NULL;

	pthread_mutex_lock(&table_lock);
	if (ino >= 1 && ino <= n_paths)
		p = paths[ino - 1];
	pthread_mutex_unlock(&table_lock);
	return p;
}

/* The inode of path, added to the table on first sight. */
static fuse_ino_t ino_of(const char *path)
{
	fuse_ino_t ino = 0;

	pthread_mutex_lock(&table_lock);
	for (size_t i = 0; i < n_paths; i++) {
		if (!strcmp(paths[i], path)) {
			ino = i + 1;
			goto out;
		}
	}
	if (n_paths == cap_paths) {
		size_t cap = cap_paths ? 2 * cap_paths : 64;
		char **np = realloc(paths, cap * sizeof(*np));

		if (!np)
			goto out;
		paths = np;
		cap_paths = cap;
	}
	paths[n_paths] = strdup(path);
	if (paths[n_paths])
		ino = ++n_paths;
out:
	pthread_mutex_unlock(&table_lock);
	return ino;
}

static int stat_of(const char *path, fuse_ino_t ino, struct stat *st)
{
	if (fstatat(src_fd, path, st, AT_SYMLINK_NOFOLLOW))
		return errno;
	st->st_ino = ino;
	return 0;
}

static unsigned readahead_kb = 1024;

static void pt_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->max_readahead = readahead_kb * 1024;
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
			FUSE_CAP_SPLICE_MOVE | FUSE_CAP_AUTO_INVAL_DATA);
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
}

static void pt_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	const char *dir = path_of(parent);
	char path[PATH_MAX];
	struct fuse_entry_param e;
	int rc;

	if (!dir) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.attr_timeout = TIMEOUT;
	e.entry_timeout = TIMEOUT;
	e.ino = ino_of(path);
	if (!e.ino) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = stat_of(path, e.ino, &e.attr);
	if (rc) {
		fuse_reply_err(req, rc);
		return;
	}
	e.generation = 1;
	fuse_reply_entry(req, &e);
}

static void pt_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	const char *path = path_of(ino);
	struct stat st;
	int rc;

	(void)fi;
	if (!path) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	rc = stat_of(path, ino, &st);
	if (rc)
		fuse_reply_err(req, rc);
	else
		fuse_reply_attr(req, &st, TIMEOUT);
}

static void pt_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	const char *path = path_of(ino);
	char *buf;
	size_t used = 0;
	off_t k = 0;
	DIR *d;
	struct dirent *de;
	int fd;

	(void)fi;
	if (!path) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fd = openat(src_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = fd < 0 ? NULL : fdopendir(fd);
	buf = malloc(size);
	if (!d || !buf) {
		fuse_reply_err(req, d ? ENOMEM : errno);
		if (d)
			closedir(d);
		else if (fd >= 0)
			close(fd);
		free(buf);
		return;
	}
	/* Entry k carries offset k + 1, in the order readdir(3) gives. */
	while ((de = readdir(d))) {
		struct stat st = { 0 };
		size_t need;

		if (k++ < off)
			continue;
		st.st_ino = de->d_ino;
		st.st_mode = (mode_t)DTTOIF(de->d_type);
		need = fuse_add_direntry(req, buf + used, size - used, de->d_name, &st, k);
		if (need > size - used)
			break;
		used += need;
	}
	closedir(d);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void pt_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	const char *path = path_of(ino);
	int fd;

	if (!path) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fd = openat(src_fd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	fi->fh = (uint64_t)fd;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void pt_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	close((int)fi->fh);
	fuse_reply_err(req, 0);
}

static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;

struct reply_buf {
	size_t cap;
	char data[];
};

static void make_key(void)
{
	pthread_key_create(&buf_key, free);
}

static char *thread_buf(size_t size)
{
	struct reply_buf *b;

	pthread_once(&buf_once, make_key);
	b = pthread_getspecific(buf_key);
	if (!b || b->cap < size) {
		size_t cap = size < (1u << 20) ? (1u << 20) : size;
		struct reply_buf *nb = malloc(sizeof(*nb) + cap);

		if (!nb)
			return NULL;
		nb->cap = cap;
		free(b);
		pthread_setspecific(buf_key, nb);
		b = nb;
	}
	return b->data;
}

static void pt_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	char *buf = thread_buf(size);
	size_t got = 0;

	(void)ino;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Full reads only, short just at end of file. */
	while (got < size) {
		ssize_t k = pread((int)fi->fh, buf + got, size - got, off + (off_t)got);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			fuse_reply_err(req, errno);
			return;
		}
		if (!k)
			break;
		got += (size_t)k;
	}
	fuse_reply_buf(req, buf, got);
}

static void pt_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;

	(void)ino;
	if (fstatvfs(src_fd, &st))
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &st);
}

static const struct fuse_lowlevel_ops pt_ops = {
	.init = pt_init,
	.lookup = pt_lookup,
	.getattr = pt_getattr,
	.readdir = pt_readdir,
	.open = pt_open,
	.release = pt_release,
	.read = pt_read,
	.statfs = pt_statfs,
};

/* Like zerofs: the bdi of the mount from mountinfo, then read_ahead_kb. */
static void set_readahead(const char *mnt, unsigned kb)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192], bdi[64] = "", path[128];

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char dev[64], point[PATH_MAX];

		if (sscanf(line, "%*s %*s %63s %*s %4095s", dev, point) == 2 && !strcmp(point, mnt))
			snprintf(bdi, sizeof(bdi), "%s", dev);
	}
	fclose(f);
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", bdi);
	f = bdi[0] ? fopen(path, "we") : NULL;
	if (!f || fprintf(f, "%u", kb) < 0 || fclose(f))
		fprintf(stderr, "passthrough: cannot set %s\n", path);
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *cfg;
	struct fuse_session *se;
	char mnt[PATH_MAX];
	unsigned threads = argc > 3 ? (unsigned)atoi(argv[3]) : 8;
	int rc;

	if (argc > 4)
		readahead_kb = (unsigned)atoi(argv[4]);
	if (argc < 3 || !realpath(argv[2], mnt)) {
		fprintf(stderr, "usage: passthrough SRC MOUNTPOINT [THREADS [READAHEAD_KB]]\n");
		return 2;
	}
	src_fd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (src_fd < 0 || !ino_of(".")) {
		perror(argv[1]);
		return 1;
	}
	fuse_opt_add_arg(&args, "passthrough");
	fuse_opt_add_arg(&args, "-o");
	fuse_opt_add_arg(&args, "ro,default_permissions,fsname=ptbench,subtype=ptbench");
	se = fuse_session_new(&args, &pt_ops, sizeof(pt_ops), NULL);
	if (!se || fuse_session_mount(se, mnt)) {
		fprintf(stderr, "passthrough: cannot mount %s\n", mnt);
		return 1;
	}
	set_readahead(mnt, readahead_kb);
	fuse_set_signal_handlers(se);
	cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_max_threads(cfg, threads);
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	fuse_remove_signal_handlers(se);
	fuse_session_unmount(se);
	fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	return rc ? 1 : 0;
}
