/* SPDX-License-Identifier: MIT */
/* /proc/self/mountinfo, read (mountinfo.h). */
#include "mountinfo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool mount_is_zerofs(const struct mount_info *m)
{
	return !strcmp(m->fstype, ZEROFS_FSTYPE);
}

/*
 * Copies the next space-separated field of *s into out (size bytes),
 * undoing the kernel's octal escapes (\040 space, \011 tab, \012
 * newline, \134 backslash). False when there is no field left.
 */
static bool field(char **s, char *out, size_t size)
{
	char *p = *s;
	size_t n = 0;

	while (*p == ' ')
		p++;
	if (!*p || *p == '\n')
		return false;
	for (; *p && *p != ' ' && *p != '\n'; p++) {
		char c = *p;

		if (c == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			c = (char)((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
			p += 3;
		}
		if (n + 1 < size)
			out[n++] = c;
	}
	out[n] = '\0';
	*s = p;
	return true;
}

/* Parses one line: "ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] -
 * TYPE SOURCE SUPER". */
static bool parse(char *line, struct mount_info *m)
{
	char skip[PATH_MAX], *p = line;

	if (!field(&p, skip, sizeof(skip)) || !field(&p, skip, sizeof(skip)) ||
	    !field(&p, m->dev, sizeof(m->dev)) || !field(&p, skip, sizeof(skip)) ||
	    !field(&p, m->point, sizeof(m->point)) || !field(&p, m->opts, sizeof(m->opts)))
		return false;
	do {
		if (!field(&p, skip, sizeof(skip)))
			return false;
	} while (strcmp(skip, "-"));
	return field(&p, m->fstype, sizeof(m->fstype)) &&
	       field(&p, m->source, sizeof(m->source));
}

int mount_each(int (*fn)(const struct mount_info *m, void *arg), void *arg)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	struct mount_info *m;
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;

	if (!f)
		return -1;
	m = malloc(sizeof(*m));
	if (!m) {
		fclose(f);
		return -1;
	}
	while (!rc && getline(&line, &cap, f) > 0)
		if (parse(line, m))
			rc = fn(m, arg);
	free(line);
	free(m);
	fclose(f);
	return rc;
}

struct find {
	const char *path;
	struct mount_info *out;
	bool found;
};

static int find_one(const struct mount_info *m, void *arg)
{
	struct find *f = arg;

	/* Later lines are mounted on top: the last match is what is seen. */
	if (!strcmp(m->point, f->path)) {
		*f->out = *m;
		f->found = true;
	}
	return 0;
}

int mount_find(const char *path, struct mount_info *out)
{
	struct find f = { path, out, false };

	if (mount_each(find_one, &f) < 0)
		return -1;
	if (!f.found) {
		errno = ENOENT;
		return -1;
	}
	return 0;
}

int mount_abspath(const char *path, char out[PATH_MAX])
{
	char dir[PATH_MAX], resolved[PATH_MAX];
	const char *name;
	size_t len = strlen(path);

	if (!len || len >= PATH_MAX) {
		errno = len ? ENAMETOOLONG : ENOENT;
		return -1;
	}
	memcpy(dir, path, len + 1);
	while (len > 1 && dir[len - 1] == '/')
		dir[--len] = '\0';
	if (realpath(dir, out))
		return 0;
	if (errno != ENOTCONN && errno != EIO)
		return -1;
	/* A dead FUSE mount: resolve the folder it is in. */
	name = strrchr(dir, '/');
	if (!name) {
		name = dir;
		snprintf(resolved, sizeof(resolved), ".");
	} else {
		snprintf(resolved, sizeof(resolved), "%.*s", name == dir ? 1 : (int)(name - dir), dir);
		name++;
	}
	if (!strcmp(name, ".") || !strcmp(name, "..") || !realpath(resolved, dir)) {
		errno = ENOTCONN;
		return -1;
	}
	if ((size_t)snprintf(out, PATH_MAX, "%s/%s", strcmp(dir, "/") ? dir : "", name) >= PATH_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}
