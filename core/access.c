/* SPDX-License-Identifier: MIT */
/*
 * Access rules of sources and folders, and the served read bits they
 * allow (access.h).
 *
 * Workload: a checkpoint of up to a few thousand rank files, nearly
 * always in one folder: the way to a folder is walked once and cached
 * (last_dir), so adding 2,048 rank files costs a few thousand stat-like
 * calls, not tens of thousands.
 */
#include "zerofs/access.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "grow.h"

#define R_OWNER 0400
#define R_GROUP 0040
#define R_OTHER 0004

static int add_rule(struct zf_access_set *s, uid_t uid, gid_t gid, mode_t read,
		    struct zf_error *err)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].uid == uid && s->v[i].gid == gid && s->v[i].read == read)
			return ZF_OK;
	if (s->n == s->cap && zf_grow(&s->v, &s->cap, s->n + 1, 8))
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	s->v[s->n++] = (struct zf_access){ uid, gid, read };
	return ZF_OK;
}

/* A POSIX access ACL makes the group bits the ACL mask: drop them. */
static mode_t drop_acl_group(const char *path, mode_t read)
{
	if (getxattr(path, "system.posix_acl_access", NULL, 0) > 0)
		read &= ~(mode_t)R_GROUP;
	return read;
}

/* The rule of something at path with stat st: its read bits, or (search)
 * its x bits in the r places. */
static int add_stat(struct zf_access_set *s, const char *path,
		    const struct stat *st, bool search, struct zf_error *err)
{
	mode_t bits = search ? (st->st_mode & 0111) << 2 : st->st_mode & 0444;

	return add_rule(s, st->st_uid, st->st_gid, drop_acl_group(path, bits), err);
}

/* Search rules for the canonical folder dir and every folder above it. */
static int add_way(struct zf_access_set *s, const char *dir, struct zf_error *err)
{
	char *p;
	int rc = ZF_OK;

	if (s->last_dir && !strcmp(s->last_dir, dir))
		return ZF_OK;
	p = strdup(dir);
	if (!p)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	/* "/a/b", "/a", then "/" (the empty string). */
	for (;;) {
		const char *at = p[0] ? p : "/";
		struct stat st;
		char *slash;

		if (stat(at, &st) < 0) {
			rc = zf_fail_at(err, ZF_EIO, at, "cannot stat: %s", strerror(errno));
			break;
		}
		rc = add_stat(s, at, &st, true, err);
		if (rc || !p[0] || !strcmp(p, "/"))
			break;
		slash = strrchr(p, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
	if (!rc) {
		free(s->last_dir);
		s->last_dir = strdup(dir);
	}
	free(p);
	return rc;
}

/* The folder part of path (malloc'd): "/a/b" for "/a/b/c", "/" for "/c". */
static char *folder_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	return slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
}

int zf_access_add_source(struct zf_access_set *s, const struct zf_source *src,
			 struct zf_error *err)
{
	const struct zf_source_id *id = zf_source_id(src);
	const char *path = zf_source_path(src);
	char *dir = NULL, *real = NULL;
	struct stat st;
	int rc;

	rc = add_rule(s, id->uid, id->gid, drop_acl_group(path, id->mode & 0444), err);
	if (rc)
		return rc;
	/* The folder that really holds it: a rank file may be a link into
	 * another disk's folder, whose way counts instead. */
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		real = realpath(path, NULL);
		if (!real)
			return zf_fail_at(err, ZF_EIO, path, "cannot resolve: %s",
					  strerror(errno));
		dir = folder_of(real);
		free(real);
		real = NULL;
		if (!dir)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
		rc = add_way(s, dir, err);
		free(dir);
		return rc;
	}
	dir = folder_of(path);
	if (!dir)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	if (s->last_given && !strcmp(s->last_given, dir)) {
		free(dir);
		return ZF_OK;
	}
	real = realpath(dir, NULL);
	if (!real) {
		rc = zf_fail_at(err, ZF_EIO, dir, "cannot resolve: %s", strerror(errno));
		goto out;
	}
	rc = add_way(s, real, err);
	if (!rc) {
		free(s->last_given);
		s->last_given = dir;
		dir = NULL;
	}
out:
	free(dir);
	free(real);
	return rc;
}

int zf_access_add_folder(struct zf_access_set *s, const char *path,
			 struct zf_error *err)
{
	char *real = realpath(path, NULL);
	struct stat st;
	int rc;

	if (!real)
		return zf_fail_at(err, ZF_EIO, path, "cannot resolve: %s", strerror(errno));
	if (stat(real, &st) < 0) {
		rc = zf_fail_at(err, ZF_EIO, real, "cannot stat: %s", strerror(errno));
		goto out;
	}
	rc = add_stat(s, real, &st, false, err);
	if (!rc)
		rc = add_way(s, real, err);
out:
	free(real);
	return rc;
}

int zf_access_add_set(struct zf_access_set *s, const struct zf_access_set *from,
		      struct zf_error *err)
{
	for (size_t i = 0; i < from->n; i++) {
		int rc = add_rule(s, from->v[i].uid, from->v[i].gid, from->v[i].read, err);

		if (rc)
			return rc;
	}
	return ZF_OK;
}

void zf_access_release(struct zf_access_set *s)
{
	free(s->v);
	free(s->last_dir);
	free(s->last_given);
	memset(s, 0, sizeof(*s));
}

/* May a member of a served class, who may be in any of the rule's
 * classes in `could` (R_* bits), read under rule a? */
static bool all_of(const struct zf_access *a, mode_t could)
{
	return (a->read & could) == could;
}

mode_t zf_access_mode(const struct zf_access *a, size_t n, uid_t owner,
		      gid_t group, uid_t opener)
{
	mode_t out = 0444;

	for (size_t i = 0; i < n; i++) {
		const struct zf_access *r = &a[i];
		mode_t o = R_OTHER, g, u;

		/* owner */
		if (owner == r->uid)
			u = R_OWNER;
		else if (owner == opener || owner == 0)
			u = 0;
		else
			u = R_GROUP | R_OTHER;
		if (u && !all_of(r, u))
			out &= ~(mode_t)0400;
		/* group members other than the owner */
		g = r->uid != owner ? R_OWNER : 0;
		g |= group == r->gid ? R_GROUP : R_GROUP | R_OTHER;
		if (!all_of(r, g))
			out &= ~(mode_t)0040;
		/* others: not the owner, not in the group */
		if (r->uid != owner)
			o |= R_OWNER;
		if (r->gid != group)
			o |= R_GROUP;
		if (!all_of(r, o))
			out &= ~(mode_t)0004;
	}
	return out;
}
