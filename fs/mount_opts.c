/* SPDX-License-Identifier: MIT */
/* The -o list of zerofs mount and mount.zerofs (mount_opts.h). */
#include "mount_opts.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define READAHEAD_KB 1024

void mount_req_init(struct mount_req *r)
{
	memset(r, 0, sizeof(*r));
	r->threads = 8;
	r->readahead_kb = READAHEAD_KB;
}

void mount_req_release(struct mount_req *r)
{
	for (int i = 0; i < r->n_owned; i++)
		free(r->owned[i]);
	free(r->fsname);
	free(r->fuse_opts);
	r->n_owned = 0;
	r->fsname = r->fuse_opts = NULL;
}

/* Keeps a copy of s alive as long as r; NULL when out of room. */
static const char *keep(struct mount_req *r, const char *s)
{
	char *c;

	if (r->n_owned == (int)(sizeof(r->owned) / sizeof(r->owned[0])))
		return NULL;
	c = strdup(s);
	if (c)
		r->owned[r->n_owned++] = c;
	return c;
}

/* Appends opt to r->fuse_opts, escaping commas and backslashes. */
static int add_fuse_opt(struct mount_req *r, const char *opt)
{
	size_t old = r->fuse_opts ? strlen(r->fuse_opts) : 0, n = 0;
	char *s = realloc(r->fuse_opts, old + 2 * strlen(opt) + 2);

	if (!s)
		return -1;
	r->fuse_opts = s;
	if (old)
		s[old + n++] = ',';
	for (; *opt; opt++) {
		if (*opt == ',' || *opt == '\\')
			s[old + n++] = '\\';
		s[old + n++] = *opt;
	}
	s[old + n] = '\0';
	return 0;
}

static bool is_one_of(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(s, *list))
			return true;
	return false;
}

/* A user or group id: a number, or a name in the password database. */
static bool parse_id(const char *s, bool group, unsigned *out)
{
	char *end;
	unsigned long v;

	if (s[0] >= '0' && s[0] <= '9') {
		errno = 0;
		v = strtoul(s, &end, 10);
		if (errno || *end || v >= (unsigned)-1)
			return false;
		*out = (unsigned)v;
		return true;
	}
	if (group) {
		struct group *g = getgrnam(s);

		if (g)
			*out = g->gr_gid;
		return g != NULL;
	} else {
		struct passwd *p = getpwnam(s);

		if (p)
			*out = p->pw_uid;
		return p != NULL;
	}
}

/* Takes key=value (or a bare word, value NULL); returns CLI_GO_ON or 2. */
static int one_option(struct mount_req *r, const char *cmd, const char *key, const char *value)
{
	static const char *const dropped[] = {
		"defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group",
		"nofail", "_netdev", "rw", "ro", "dev", "suid", "nodev", "nosuid", NULL,
	};
	static const char *const valued[] = {
		"tag", "dtype", "max_shard_size", "max-shard-size", "strip_prefix",
		"config", "base", "threads", "readahead", "log", "uid", "gid", "umask", "fsname",
		NULL,
	};
	const char *kept = NULL;
	unsigned v;
	char *end;

	if (value && (!strcmp(key, "tag") || !strcmp(key, "strip_prefix") ||
		      !strcmp(key, "config") || !strcmp(key, "base") || !strcmp(key, "log"))) {
		kept = keep(r, value);
		if (!kept)
			return cli_usage(cmd, "-o %s=: too many options with values", key);
	}
	if (!strcmp(key, "all")) {
		if (value)
			return cli_usage(cmd, "-o all takes no value");
		r->all = true;
		return CLI_GO_ON;
	}
	if (!value) {
		if (!key[0] || is_one_of(key, dropped) || !strncmp(key, "x-", 2))
			return CLI_GO_ON;
		if (is_one_of(key, valued))
			return cli_usage(cmd, "-o %s needs a value: %s=...", key, key);
		return add_fuse_opt(r, key) ? cli_usage(cmd, "out of memory") : CLI_GO_ON;
	}
	if (!strncmp(key, "x-", 2) || !strcmp(key, "comment"))
		return CLI_GO_ON;
	if (!strcmp(key, "tag"))
		return serve_opt(&r->so, 1000, kept, cmd);
	if (!strcmp(key, "dtype"))
		return serve_opt(&r->so, 1001, value, cmd);
	if (!strcmp(key, "max_shard_size") || !strcmp(key, "max-shard-size"))
		return serve_opt(&r->so, 1002, value, cmd);
	if (!strcmp(key, "strip_prefix"))
		return serve_opt(&r->so, 1003, kept, cmd);
	if (!strcmp(key, "config"))
		return serve_opt(&r->so, 1004, kept, cmd);
	if (!strcmp(key, "base"))
		return serve_opt(&r->so, 1005, kept, cmd);
	if (!strcmp(key, "threads"))
		return cli_number(cmd, "threads", value, 1, 256, &r->threads);
	if (!strcmp(key, "readahead"))
		return cli_number(cmd, "readahead", value, 0, 1048576, &r->readahead_kb);
	if (!strcmp(key, "log")) {
		r->log = kept;
		return CLI_GO_ON;
	}
	if (!strcmp(key, "uid") || !strcmp(key, "gid")) {
		bool g = key[0] == 'g';

		if (!parse_id(value, g, &v))
			return cli_usage(cmd, "-o %s=%s: not a %s id or name", key, value,
					 g ? "group" : "user");
		if (g) {
			r->gid = v;
			r->set_gid = true;
		} else {
			r->uid = v;
			r->set_uid = true;
		}
		return CLI_GO_ON;
	}
	if (!strcmp(key, "umask")) {
		unsigned long m = strtoul(value, &end, 8);

		if (!value[0] || *end || m > 0777)
			return cli_usage(cmd, "-o umask=%s: an octal mask from 0 to 0777, e.g. 027", value);
		r->umask = (mode_t)m;
		return CLI_GO_ON;
	}
	if (!strcmp(key, "fsname")) {
		free(r->fsname);
		r->fsname = strdup(value);
		return r->fsname ? CLI_GO_ON : cli_usage(cmd, "out of memory");
	}
	if (!strcmp(key, "subtype"))
		return cli_usage(cmd, "-o subtype=%s: zerofs mounts are always of type fuse.zerofs", value);
	{
		char opt[4096];

		if ((size_t)snprintf(opt, sizeof(opt), "%s=%s", key, value) >= sizeof(opt))
			return cli_usage(cmd, "-o %s: value too long", key);
		return add_fuse_opt(r, opt) ? cli_usage(cmd, "out of memory") : CLI_GO_ON;
	}
}

int mount_req_options(struct mount_req *r, const char *cmd, const char *list)
{
	size_t len = strlen(list);
	char *buf = malloc(len + 1), *opt;
	int rc = CLI_GO_ON;

	if (!buf)
		return cli_usage(cmd, "out of memory");
	/* Split on unescaped commas, undoing "\," and "\\" as we go. */
	opt = buf;
	for (size_t i = 0, n = 0;; i++) {
		char c = list[i];

		if (c == '\\' && list[i + 1]) {
			buf[n++] = list[++i];
			continue;
		}
		if (c != ',' && c != '\0') {
			buf[n++] = c;
			continue;
		}
		buf[n++] = '\0';
		{
			char *eq = strchr(opt, '=');

			if (eq)
				*eq = '\0';
			rc = one_option(r, cmd, opt, eq ? eq + 1 : NULL);
		}
		if (rc != CLI_GO_ON || c == '\0')
			break;
		opt = buf + n;
	}
	free(buf);
	return rc;
}
