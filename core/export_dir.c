/* SPDX-License-Identifier: MIT */
/*
 * Export's output folder: the guard that keeps it out of the checkpoint,
 * the names of temporary files, and the proofs of complete files
 * (export_i.h).
 *
 * The guard compares folders by device and inode, never by path: a bind
 * mount of the checkpoint, or a symbolic link to it, names the same
 * folder under another path. It walks from the output folder up through
 * "..", which follows the real tree (and a bind mount's own parent), so
 * "inside" is decided on what the kernel will write into.
 */
#include "export_i.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "grow.h"

/* A folder out_dir may not be (equal) or not be nor lie in (inside). */
struct fence {
	dev_t dev;
	ino_t ino;
	bool inside;
	const char *what; /* "the checkpoint folder" ... */
	char *path;	  /* for the message */
};

struct fences {
	struct fence *v;
	size_t n, cap;
};

static void fences_release(struct fences *fs)
{
	for (size_t i = 0; i < fs->n; i++)
		free(fs->v[i].path);
	free(fs->v);
}

/* Adds the folder at path (following links); a folder that cannot be
 * examined cannot be written into through this path either: skipped. */
static int add_fence(struct fences *fs, const char *path, bool inside,
		     const char *what, struct zf_error *err)
{
	struct stat st;

	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return ZF_OK;
	for (size_t i = 0; i < fs->n; i++)
		if (fs->v[i].dev == st.st_dev && fs->v[i].ino == st.st_ino &&
		    (fs->v[i].inside || !inside))
			return ZF_OK;
	if (fs->n == fs->cap && zf_grow(&fs->v, &fs->cap, fs->n + 1, 8))
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	fs->v[fs->n] = (struct fence){ st.st_dev, st.st_ino, inside, what, strdup(path) };
	if (!fs->v[fs->n].path)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	fs->n++;
	return ZF_OK;
}

/* The folder really holding the file at path (a link resolved; stat()
 * of the folder part follows links to folders by itself). */
static int add_parent_fence(struct fences *fs, const char *path, struct zf_error *err)
{
	const char *what = "a folder served files are read from";
	char *dir, *slash;
	struct stat st;
	int rc;

	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
		dir = realpath(path, NULL);
	else
		dir = strdup(path);
	if (!dir)
		return errno == ENOMEM ? zf_fail(err, ZF_ENOMEM, "out of memory") : ZF_OK;
	slash = strrchr(dir, '/');
	if (slash)
		slash[slash == dir ? 1 : 0] = '\0';
	rc = add_fence(fs, slash ? dir : ".", false, what, err);
	free(dir);
	return rc;
}

static int collect(const struct zf_hfdir *d, struct fences *fs, struct zf_error *err)
{
	const struct zf_hfdir_info *di = zf_hfdir_info(d);
	const struct zf_ckpt_info *ci = zf_ckpt_info(di->ck);
	int rc;

	rc = add_fence(fs, ci->path, true, "the checkpoint folder", err);
	if (!rc)
		rc = add_fence(fs, ci->tag_dir, true, "the checkpoint's tag folder", err);
	if (!rc && ci->hf_dir)
		rc = add_fence(fs, ci->hf_dir, false, "a folder served files are read from", err);
	if (!rc && di->config_source)
		rc = add_fence(fs, di->config_source, false,
			       "a folder served files are read from", err);
	for (size_t i = 0; !rc && i < di->n_files; i++)
		if (zf_hfdir_file(d, i)->src)
			rc = add_parent_fence(fs, zf_source_path(zf_hfdir_file(d, i)->src), err);
	for (size_t i = 0; !rc && i < ci->n_files; i++)
		rc = add_parent_fence(fs, zf_source_path(zf_ckpt_file(di->ck, i)), err);
	return rc;
}

/*
 * The absolute, symlink-free form of path even when its tail does not
 * exist yet: realpath() of the deepest existing ancestor, then the rest
 * of the components applied as mkdir -p will (they cannot be symlinks,
 * they do not exist). Returns a malloc'd string or NULL with err set.
 */
static char *canonical_out(const char *path, struct zf_error *err)
{
	char *head = strdup(path), *res = NULL, *out = NULL;
	const char *rest;
	size_t cut = strlen(path), cap;

	if (!head) {
		zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		head[cut] = '\0';
		res = realpath(cut ? head : ".", NULL);
		if (res)
			break;
		if (errno != ENOENT || !cut) {
			zf_fail(err, errno == ENOTDIR ? ZF_EUSAGE : ZF_EIO,
				"cannot use as a folder: %s", strerror(errno));
			zf_error_where(err, path);
			goto out;
		}
		/* Drop the last component (an absolute path stops at "/"). */
		while (cut && head[cut - 1] == '/')
			cut--;
		while (cut && head[cut - 1] != '/')
			cut--;
	}
	rest = path + cut;
	cap = strlen(res) + strlen(rest) + 2;
	out = malloc(cap);
	if (!out) {
		zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	snprintf(out, cap, "%s", res);
	while (*rest) {
		size_t n = strcspn(rest, "/");

		if (n == 2 && !strncmp(rest, "..", 2)) {
			char *slash = strrchr(out, '/');

			if (slash && slash != out)
				*slash = '\0';
			else
				snprintf(out, cap, "/");
		} else if (n && !(n == 1 && rest[0] == '.')) {
			size_t used = strlen(out);

			snprintf(out + used, cap - used, "%s%.*s",
				 used > 1 ? "/" : "", (int)n, rest);
		}
		rest += n;
		rest += strspn(rest, "/");
	}
out:
	free(head);
	free(res);
	return out;
}

/* Opens (O_PATH) the deepest existing folder of canonical path p; *whole
 * tells whether that is p itself. */
static int open_deepest(char *p, bool *whole)
{
	size_t n = strlen(p);

	*whole = true;
	for (;;) {
		int fd = open(n ? p : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);

		if (fd >= 0 || errno != ENOENT || n <= 1)
			return fd;
		*whole = false;
		while (n > 1 && p[n - 1] != '/')
			n--;
		if (n > 1)
			n--;
		p[n] = '\0';
	}
}

/* Walks from fd up to the root; level 0 is out_dir itself when whole. */
static int walk(int fd, bool whole, const struct fences *fs, const char *out_dir,
		struct zf_error *err)
{
	int cur = dup(fd), rc = ZF_OK;

	for (int level = 0; cur >= 0; level++) {
		struct stat st, up;
		int parent;

		if (fstat(cur, &st) < 0)
			break;
		for (size_t i = 0; i < fs->n; i++) {
			const struct fence *f = &fs->v[i];
			bool self = level == 0 && whole;

			if (f->dev != st.st_dev || f->ino != st.st_ino || (!f->inside && !self))
				continue;
			if (self)
				rc = zf_fail_at(err, ZF_EUSAGE, out_dir,
						"is %s ('%s'); export never writes into a checkpoint or over its sources",
						f->what, f->path);
			else
				rc = zf_fail_at(err, ZF_EUSAGE, out_dir,
						"lies inside %s ('%s'); export never writes into a checkpoint",
						f->what, f->path);
			goto out;
		}
		parent = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (parent < 0 || fstat(parent, &up) < 0) {
			if (parent >= 0)
				close(parent);
			break;
		}
		if (up.st_dev == st.st_dev && up.st_ino == st.st_ino) {
			close(parent);
			break; /* the root */
		}
		close(cur);
		cur = parent;
	}
out:
	if (cur >= 0)
		close(cur);
	return rc;
}

int zf_export_check_out(const struct zf_hfdir *d, const char *out_dir, int dirfd,
			struct zf_error *err)
{
	struct fences fs = { 0 };
	char *canon = NULL;
	bool whole = true;
	int fd = dirfd, rc;

	rc = collect(d, &fs, err);
	if (rc)
		goto out;
	if (dirfd < 0) {
		canon = canonical_out(out_dir, err);
		if (!canon) {
			rc = err ? err->status : ZF_ENOMEM;
			goto out;
		}
		fd = open_deepest(canon, &whole);
		if (fd < 0) {
			rc = zf_fail_at(err, ZF_EIO, canon, "cannot open the folder: %s",
					strerror(errno));
			goto out;
		}
	}
	rc = walk(fd, whole, &fs, out_dir, err);
out:
	if (dirfd < 0 && fd >= 0)
		close(fd);
	free(canon);
	fences_release(&fs);
	return rc;
}

bool zf_export_tmp_parse(const char *ent, char **name, long *pid)
{
	const char *tag = NULL, *p, *q;
	char *end;
	long v;

	*name = NULL;
	if (ent[0] != '.')
		return false;
	/* The last occurrence: a file's own name may hold the tag. */
	for (p = ent; (q = strstr(p, ZF_EXPORT_TMP_TAG)); p = q + 1)
		tag = q;
	if (!tag || tag == ent + 1)
		return false;
	p = tag + strlen(ZF_EXPORT_TMP_TAG);
	if (*p < '1' || *p > '9')
		return false;
	errno = 0;
	v = strtol(p, &end, 10);
	if (errno || v <= 0)
		return false;
	if (*end == '-') {
		const char *k = end + 1;

		if (*k < '0' || *k > '9')
			return false;
		while (*k >= '0' && *k <= '9')
			k++;
		end = (char *)k;
	}
	if (*end)
		return false;
	*name = strndup(ent + 1, (size_t)(tag - ent - 1));
	*pid = v;
	return *name != NULL;
}

void zf_export_proof(char *buf, size_t size, const unsigned char dig[16],
		     const struct stat *st)
{
	char hex[33];

	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", dig[i]);
	snprintf(buf, size, "zerofs-export 1 %s %llu %lld.%09ld", hex,
		 (unsigned long long)st->st_size, (long long)st->st_mtim.tv_sec,
		 (long)st->st_mtim.tv_nsec);
}

int zf_export_seal(int fd, const unsigned char dig[16])
{
	char proof[ZF_EXPORT_PROOF_MAX];
	struct stat st;

	if (fstat(fd, &st) < 0)
		return errno;
	zf_export_proof(proof, sizeof(proof), dig, &st);
	if (fsetxattr(fd, ZF_EXPORT_XATTR, proof, strlen(proof), 0) < 0)
		return errno;
	return 0;
}

bool zf_export_is_complete(int dirfd, const char *name,
			   const unsigned char dig[16], uint64_t size)
{
	char want[ZF_EXPORT_PROOF_MAX], got[ZF_EXPORT_PROOF_MAX];
	struct stat st;
	ssize_t n;
	int fd;
	bool ok = false;

	/* Nothing but a regular file is even opened (a device's open may
	 * act); the open then must find that same file. */
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		return false;
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
	    (uint64_t)st.st_size == size) {
		zf_export_proof(want, sizeof(want), dig, &st);
		n = fgetxattr(fd, ZF_EXPORT_XATTR, got, sizeof(got) - 1);
		ok = n == (ssize_t)strlen(want) && !memcmp(got, want, (size_t)n);
	}
	close(fd);
	return ok;
}
