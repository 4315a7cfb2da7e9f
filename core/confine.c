/* SPDX-License-Identifier: MIT */
/* Opening metadata files without following links out of their folder;
 * see confine.h. */
#include "confine.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

static char *dirname_dup(const char *p)
{
	const char *slash = strrchr(p, '/');

	if (!slash)
		return strdup(".");
	return slash == p ? strdup("/") : strndup(p, (size_t)(slash - p));
}

int zf_confine_init(struct zf_confine *c, const char *dir, const char *what,
		    struct zf_error *err)
{
	char *parent = NULL, *repo = NULL, *blobs = NULL;
	const char *base;
	int rc = ZF_OK;

	memset(c, 0, sizeof(*c));
	c->what = what;
	c->dir = strdup(dir);
	c->roots[0] = realpath(dir, NULL);
	if (!c->dir || !c->roots[0]) {
		int e = errno;

		zf_confine_release(c);
		if (e == ENOMEM)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
		return zf_fail_at(err, e == ENOENT ? ZF_ENOTFOUND : ZF_EIO, dir,
				  "cannot open the folder: %s", strerror(e));
	}
	c->n_roots = 1;
	/* A hub cache snapshot: models--org--name/snapshots/REV/ holds links
	 * to ../../blobs/HASH. */
	parent = dirname_dup(c->roots[0]);
	if (!parent) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	base = strrchr(parent, '/');
	if (base && !strcmp(base + 1, "snapshots")) {
		repo = dirname_dup(parent);
		if (repo && asprintf(&blobs, "%s/blobs", repo) < 0)
			blobs = NULL;
		if (!repo || !blobs) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		c->roots[1] = realpath(blobs, NULL);
		if (c->roots[1])
			c->n_roots = 2;
	}
out:
	free(parent);
	free(repo);
	free(blobs);
	if (rc)
		zf_confine_release(c);
	return rc;
}

void zf_confine_release(struct zf_confine *c)
{
	free(c->dir);
	for (size_t i = 0; i < 2; i++)
		free(c->roots[i]);
	memset(c, 0, sizeof(*c));
}

static const char *kind_of(mode_t m)
{
	if (S_ISDIR(m))
		return "a folder";
	if (S_ISFIFO(m))
		return "a FIFO";
	if (S_ISSOCK(m))
		return "a socket";
	if (S_ISCHR(m))
		return "a character device";
	if (S_ISBLK(m))
		return "a block device";
	if (S_ISLNK(m))
		return "a symbolic link";
	return "something else";
}

/* *why = the sentence; returns ZF_OK (not served) or ZF_ENOMEM. */
__attribute__((format(printf, 3, 4)))
static int left_out(char **why, struct zf_error *err, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(why, fmt, ap);
	va_end(ap);
	if (n < 0) {
		*why = NULL;
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	return ZF_OK;
}

/* The root that canonical path p lies strictly inside, or NULL. */
static const char *root_of(const struct zf_confine *c, const char *p)
{
	for (size_t i = 0; i < c->n_roots; i++) {
		const char *r = c->roots[i];
		size_t n = strlen(r);

		if (n == 1 && r[0] == '/')
			return p[0] == '/' && p[1] ? r : NULL;
		if (!strncmp(p, r, n) && p[n] == '/' && p[n + 1])
			return r;
	}
	return NULL;
}

/*
 * Opens the folder holding canonical path p, walking from root one
 * component at a time without following links. *last points at p's last
 * component. -1 (errno set) when a component is not a folder any more.
 */
static int open_parent(const char *root, const char *p, const char **last)
{
	char comp[NAME_MAX + 1];
	const char *at = p + strlen(root);
	int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);

	while (fd >= 0) {
		const char *slash;
		size_t n;
		int next;

		at += strspn(at, "/");
		slash = strchr(at, '/');
		if (!slash) {
			*last = at;
			return fd;
		}
		n = (size_t)(slash - at);
		if (n > NAME_MAX) {
			close(fd);
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(comp, at, n);
		comp[n] = '\0';
		next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		fd = next;
		at = slash;
	}
	return -1;
}

int zf_confine_open(const struct zf_confine *c, const char *name,
		    struct zf_source **out, char **why, struct zf_error *err)
{
	char *path = NULL, *real = NULL, target[PATH_MAX];
	const char *root, *last;
	struct stat lst, st;
	bool link = false;
	int dfd = -1, rc = ZF_OK;

	*out = NULL;
	*why = NULL;
	target[0] = '\0';
	path = zf_absolute_path(c->dir, name);
	if (!path)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	if (lstat(path, &lst) < 0) {
		rc = left_out(why, err, "changed while it was being opened (%s)",
			      strerror(errno));
		goto out;
	}
	if (S_ISLNK(lst.st_mode)) {
		ssize_t n = readlink(path, target, sizeof(target) - 1);

		link = true;
		target[n < 0 ? 0 : n] = '\0';
	} else if (!S_ISREG(lst.st_mode)) {
		rc = left_out(why, err, "%s, not a regular file", kind_of(lst.st_mode));
		goto out;
	}
	real = realpath(path, NULL);
	if (!real) {
		int e = errno;

		if (link && e == ENOENT)
			rc = left_out(why, err, "a broken symbolic link (to '%s')", target);
		else if (link && e == ELOOP)
			rc = left_out(why, err, "a symbolic link loop (to '%s')", target);
		else if (e == ENOMEM)
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		else
			rc = zf_fail_at(err, ZF_EIO, path, "cannot resolve: %s", strerror(e));
		goto out;
	}
	root = root_of(c, real);
	if (!root) {
		if (link)
			rc = left_out(why, err, "a symbolic link to '%s', outside %s",
				      target, c->what);
		else
			rc = left_out(why, err, "changed while it was being opened (moved)");
		goto out;
	}
	dfd = open_parent(root, real, &last);
	if (dfd < 0 || fstatat(dfd, last, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		rc = left_out(why, err, "changed while it was being opened (a folder on its way moved)");
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		if (S_ISLNK(st.st_mode))
			rc = left_out(why, err, "changed while it was being opened (now a link)");
		else
			rc = left_out(why, err, "a symbolic link to %s, not a regular file",
				      kind_of(st.st_mode));
		goto out;
	}
	/* The source opens the canonical path (and opens it again by that
	 * path when its descriptor was evicted, checking it is the same
	 * file each time); it must be the file just examined. */
	rc = zf_source_open(real, out, err);
	if (rc)
		goto out;
	if (zf_source_id(*out)->dev != st.st_dev || zf_source_id(*out)->ino != st.st_ino) {
		zf_source_close(*out);
		*out = NULL;
		rc = left_out(why, err, "changed while it was being opened (replaced)");
	}
out:
	if (dfd >= 0)
		close(dfd);
	free(real);
	free(path);
	return rc;
}
