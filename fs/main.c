/* SPDX-License-Identifier: MIT */
/*
 * The zerofs program: a table of subcommands (git style), global --help
 * and --version, and the mount(8) helper forms:
 *
 *   mount.zerofs CKPT MNT -o OPTS        (a link named mount.zerofs or
 *                                        mount.fuse.zerofs, found by mount(8))
 *   zerofs CKPT MNT -o OPTS              (what mount.fuse3 runs for type
 *                                        fuse.zerofs or source zerofs#CKPT)
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define ZEROFS_VERSION "0.1.0"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
	{ "mount", cmd_mount, "serve a checkpoint as a Hugging Face model directory" },
	{ "umount", cmd_umount, "unmount a zerofs mount point" },
	{ "status", cmd_status, "list zerofs mounts: checkpoint, tag, dtype, log" },
	{ "inspect", cmd_inspect, "show what a checkpoint holds" },
	{ "export", cmd_export, "write the model directory to a folder" },
	{ "verify", cmd_verify, "check that a checkpoint is whole and sound" },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *to)
{
	fprintf(to, "usage: zerofs <command> [options] ...\n\n"
		    "Serves DeepSpeed ZeRO checkpoints as Hugging Face model directories.\n\n"
		    "commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(to, "  %-9s %s\n", commands[i].name, commands[i].help);
	fprintf(to, "\n'zerofs <command> --help' describes a command; see also zerofs(1).\n");
}

static const struct command *find(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (!strcmp(name, commands[i].name))
			return &commands[i];
	return NULL;
}

static int run(const struct command *c, int argc, char **argv)
{
	static char self[32];

	/* argv[0] names the command in messages: "zerofs mount: ..." */
	snprintf(self, sizeof(self), "zerofs %s", c->name);
	argv[0] = self;
	return c->fn(argc, argv);
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');
	const struct command *c;

	/* libzip converts every entry's DOS time with mktime(); with TZ unset
	 * glibc re-reads /etc/localtime for each call (135,826 stat calls to
	 * open a 64-rank checkpoint). An explicit TZ is read once. */
	setenv("TZ", ":/etc/localtime", 0);
	base = base ? base + 1 : argv[0];
	if (!strcmp(base, "mount.zerofs") || !strcmp(base, "mount.fuse.zerofs"))
		return cmd_mount_helper(argc, argv);
	if (argc < 2) {
		usage(stderr);
		return ZF_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return ZF_EXIT_OK;
	}
	if (!strcmp(argv[1], "help")) {
		if (argc < 3) {
			usage(stdout);
			return ZF_EXIT_OK;
		}
		c = find(argv[2]);
		if (!c) {
			cli_error("'%s' is not a zerofs command; see 'zerofs --help'", argv[2]);
			return ZF_EXIT_USAGE;
		}
		{
			char *av[] = { argv[2], (char *)"--help", NULL };

			return run(c, 2, av);
		}
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("zerofs %s\n", ZEROFS_VERSION);
		return ZF_EXIT_OK;
	}
	c = find(argv[1]);
	if (c)
		return run(c, argc - 1, argv + 1);
	/* mount.fuse3 runs "zerofs SOURCE MOUNTPOINT -o OPTIONS": a first
	 * word that is a folder, not a command. */
	if (argc >= 3 && argv[1][0] != '-' && is_dir(argv[1]))
		return cmd_mount_helper(argc, argv);
	cli_error("'%s' is not a zerofs command; see 'zerofs --help'", argv[1]);
	return ZF_EXIT_USAGE;
}
