/* SPDX-License-Identifier: MIT */
/*
 * The zerofs program: a table of subcommands (git style), global --help
 * and --version, and the shared error printing and exit codes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "zerofs/source.h"

#define ZEROFS_VERSION "0.1.0"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
	{ "mount", cmd_mount, "serve a checkpoint as a Hugging Face model directory" },
	{ "umount", cmd_umount, "unmount a zerofs mount point" },
	{ "inspect", cmd_inspect, "show what a checkpoint holds" },
	{ "export", cmd_export, "write the model directory to a folder" },
	{ "verify", cmd_verify, "check that a checkpoint is whole and sound" },
};

static void usage(FILE *to)
{
	fprintf(to, "usage: zerofs <command> [options] ...\n\n"
		    "Serves DeepSpeed ZeRO checkpoints as Hugging Face model directories.\n\n"
		    "commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(to, "  %-9s %s\n", commands[i].name, commands[i].help);
	fprintf(to, "\n'zerofs <command> --help' describes a command; see also zerofs(1).\n");
}

int cli_exit_code(enum zf_status status)
{
	switch (status) {
	case ZF_OK:
		return ZF_EXIT_OK;
	case ZF_EUSAGE:
	case ZF_EEXIST:
		return ZF_EXIT_USAGE;
	case ZF_EFORMAT:
	case ZF_EUNSUPPORTED:
	case ZF_ENOTFOUND:
	case ZF_ECHANGED:
		return ZF_EXIT_INPUT;
	case ZF_EIO:
	case ZF_ENOMEM:
		return ZF_EXIT_SYSTEM;
	}
	return ZF_EXIT_SYSTEM;
}

int cli_report(const struct zf_error *err)
{
	char buf[ZF_ERROR_WHERE_MAX + ZF_ERROR_MSG_MAX + 8];

	fprintf(stderr, "zerofs: %s\n", zf_error_format(err, buf, sizeof(buf)));
	return cli_exit_code(err->status);
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	if (fmt) {
		fprintf(stderr, "zerofs %s: ", cmd);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	fprintf(stderr, "try 'zerofs %s --help'\n", cmd);
	return ZF_EXIT_USAGE;
}

int cli_number(const char *cmd, const char *opt, const char *arg,
	       unsigned min, unsigned max, unsigned *out)
{
	unsigned long v = 0;
	const char *p = arg;

	/* Digits only: strtoul would take "-1", " 7" and "". */
	for (; *p >= '0' && *p <= '9' && v <= max; p++)
		v = v * 10 + (unsigned long)(*p - '0');
	if (p == arg || *p || v < min || v > max)
		return cli_usage(cmd, "--%s '%s': a number from %u to %u", opt, arg, min, max);
	*out = (unsigned)v;
	return 0;
}

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "zerofs: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

const char *cli_human_size(unsigned long long bytes, char *buf, int size)
{
	static const char *units[] = { "B", "kB", "MB", "GB", "TB", "PB" };
	double v = (double)bytes;
	int u = 0;

	while (v >= 1000.0 && u < 5) {
		v /= 1000.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, (size_t)size, "%llu B", bytes);
	else
		snprintf(buf, (size_t)size, "%.1f %s", v, units[u]);
	return buf;
}

int main(int argc, char **argv)
{
	/* libzip converts every entry's DOS time with mktime(); with TZ unset
	 * glibc re-reads /etc/localtime for each call (135,826 stat calls to
	 * open a 64-rank checkpoint). An explicit TZ is read once. */
	setenv("TZ", ":/etc/localtime", 0);
	/* Checkpoint files are opened on demand through one bounded cache of
	 * descriptors (source.h): a 1,024-rank checkpoint has 2,048 files and
	 * most shells start with a soft limit of 1,024. Take what the hard
	 * limit allows; the reserve is for everything else. */
	zf_source_raise_nofile(CLI_NOFILE_RESERVE);
	if (argc < 2) {
		usage(stderr);
		return ZF_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return ZF_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("zerofs %s\n", ZEROFS_VERSION);
		return ZF_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		static char self[32];

		if (strcmp(argv[1], commands[i].name))
			continue;
		/* getopt names argv[0] in its messages: "zerofs mount: ..." */
		snprintf(self, sizeof(self), "zerofs %s", commands[i].name);
		argv[1] = self;
		return commands[i].fn(argc - 1, argv + 1);
	}
	cli_error("'%s' is not a zerofs command; see 'zerofs --help'", argv[1]);
	return ZF_EXIT_USAGE;
}
