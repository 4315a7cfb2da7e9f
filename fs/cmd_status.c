/* SPDX-License-Identifier: MIT */
/*
 * zerofs status: which zerofs mounts are there, and what each serves.
 * The mount table gives the mount point and the checkpoint (the fsname);
 * the serving process answers the rest through its root's extended
 * attributes (user.zerofs.*: tag, dtype, log, pid), so nothing is read
 * from the served files. A mount whose process died is listed as such.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "cli.h"
#include "mountinfo.h"

static const char status_usage[] =
	"usage: zerofs status [MOUNTPOINT...] [--json]\n\n"
	"Lists zerofs mounts (or the ones named): mount point, checkpoint, tag (and how\n"
	"it was chosen in a run folder), served dtype, serving process and where it logs;\n"
	"for a mount --all, how many checkpoints, the newest, and those that cannot be\n"
	"opened, with why. Reads no served file.\n\n"
	"  -j, --json   print one JSON array of objects\n"
	"  -h, --help   show this help\n\n"
	"Exit status: 0 listed, 2 usage, 4 a named mount's process does not answer,\n"
	"5 nothing is mounted at a named folder, 6 a named folder is not a zerofs mount.\n\n"
	"examples:\n"
	"  zerofs status\n"
	"  zerofs status /mnt/model --json\n";

/* The root's user.zerofs.* attributes shown; a mount has those that
 * apply (tag and chosen for one checkpoint, checkpoints, newest and
 * failed with --all). */
static const char *const fields[] = {
	"tag", "chosen", "checkpoints", "newest", "dtype", "pid", "log", "failed",
};
#define N_FIELDS (sizeof(fields) / sizeof(fields[0]))

struct status {
	bool json;
	cJSON *list;
	int shown;
	int rc;
};

/* The root's user.zerofs.NAME into buf, or NULL (errno set). */
static const char *attr(const char *mnt, const char *name, char *buf, size_t size)
{
	char key[64];
	ssize_t n;

	snprintf(key, sizeof(key), "user.zerofs.%s", name);
	n = getxattr(mnt, key, buf, size - 1);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return buf;
}

static void show(struct status *s, const struct mount_info *m)
{
	char vals[N_FIELDS][8192];
	const char *v[N_FIELDS], *why = NULL;
	int err = 0;

	for (size_t i = 0; i < N_FIELDS; i++) {
		v[i] = attr(m->point, fields[i], vals[i], sizeof(vals[i]));
		if (!v[i] && !err && errno != ENODATA)
			err = errno;
	}
	if (err == ENOTCONN)
		why = "not responding: its serving process is gone (zerofs umount it)";
	else if (err == EACCES || err == EPERM)
		why = "not readable by this user (mounted without -o allow_other)";
	else if (err)
		why = strerror(err);
	s->shown++;
	if (s->json) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "mountpoint", m->point);
		cJSON_AddStringToObject(o, "checkpoint", m->source);
		for (size_t i = 0; i < N_FIELDS; i++)
			if (v[i])
				cJSON_AddStringToObject(o, fields[i], v[i]);
		cJSON_AddBoolToObject(o, "responding", err != ENOTCONN);
		if (why)
			cJSON_AddStringToObject(o, "problem", why);
		cJSON_AddItemToArray(s->list, o);
		return;
	}
	printf("%s%s\n", s->shown > 1 ? "\n" : "", cli_esc(m->point));
	printf("  %-11s  %s\n", "checkpoint", cli_esc(m->source));
	for (size_t i = 0; i < N_FIELDS; i++) {
		char *line, *next;

		if (!v[i])
			continue;
		/* "failed" holds a line per failed checkpoint. */
		for (line = vals[i]; line; line = next) {
			next = strchr(line, '\n');
			if (next)
				*next++ = '\0';
			printf("  %-11s  %s\n", line == vals[i] ? fields[i] : "", cli_esc(line));
		}
	}
	if (why)
		printf("  %-11s  %s\n", "problem", why);
}

static int each(const struct mount_info *m, void *arg)
{
	if (mount_is_zerofs(m))
		show(arg, m);
	return 0;
}

static int on_opt(void *ctx, int c, const char *arg)
{
	(void)arg;
	if (c == 'j')
		((struct status *)ctx)->json = true;
	return CLI_GO_ON;
}

static const struct option status_opts[] = {
	{ "json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const struct cli_cmd status_cmd = {
	"status", status_usage, "jh", status_opts, 0, -1, "",
};

/* Shared with zerofs umount (cmd_umount.c). */
int umount_find_zerofs(const char *path, struct mount_info *m);

int cmd_status(int argc, char **argv)
{
	struct status s = { 0 };
	struct mount_info *m;
	char *args[CLI_MAX_ARGS];
	int nargs, rc;

	rc = cli_parse(&status_cmd, argc, argv, on_opt, &s, args, &nargs, NULL);
	if (rc != CLI_GO_ON)
		return rc;
	m = malloc(sizeof(*m));
	if (!m)
		return ZF_EXIT_SYSTEM;
	if (s.json)
		s.list = cJSON_CreateArray();
	for (int i = 0; i < nargs; i++) {
		int shown = s.shown;

		rc = umount_find_zerofs(args[i], m);
		if (rc != CLI_GO_ON) {
			s.rc = s.rc ? s.rc : rc;
			continue;
		}
		show(&s, m);
		if (s.shown > shown && !s.rc) {
			char buf[8];

			if (!attr(m->point, "pid", buf, sizeof(buf)) && errno == ENOTCONN)
				s.rc = ZF_EXIT_SYSTEM;
		}
	}
	if (!nargs && mount_each(each, &s) < 0) {
		cli_error("cannot read the mount table: %s", strerror(errno));
		s.rc = ZF_EXIT_SYSTEM;
	}
	free(m);
	if (s.json) {
		char *text = cJSON_Print(s.list);

		if (text)
			puts(text);
		free(text);
		cJSON_Delete(s.list);
	} else if (!nargs && !s.shown) {
		fprintf(stderr, "zerofs: no zerofs mounts\n");
	}
	return s.rc;
}
