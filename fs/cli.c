/* SPDX-License-Identifier: MIT */
/*
 * The command-line conventions every subcommand shares (cli.h): one
 * parser, error messages, exit codes.
 */
#include "cli.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A usage error's text, for cli_parse()'s json_errors callers. */
static char usage_buf[512];

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

	/* Core quotes names from the checkpoint as they are. */
	fprintf(stderr, "zerofs: %s\n", cli_esc(zf_error_format(err, buf, sizeof(buf))));
	return cli_exit_code(err->status);
}

static void vusage(const char *cmd, const char *fmt, va_list ap)
{
	char msg[sizeof(usage_buf)];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(stderr, "zerofs %s: %s\n", cmd, cli_esc(msg));
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vusage(cmd, fmt, ap);
		va_end(ap);
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
	return CLI_GO_ON;
}

void cli_error(const char *fmt, ...)
{
	char msg[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "zerofs: %s\n", cli_esc(msg));
}

void cli_fprintf_esc(FILE *f, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(f, "%s\n", cli_esc(msg));
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

const char *cli_human_count(unsigned long long n, char *buf, int size)
{
	static const char *units[] = { "", "K", "M", "B", "T" };
	double v = (double)n;
	int u = 0;

	while (v >= 999.5 && u < 4) {
		v /= 1000.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, (size_t)size, "%llu", n);
	else
		snprintf(buf, (size_t)size, "%.3g %s", v, units[u]);
	return buf;
}

/* The long option whose name starts arg ("--json=1" -> json's entry). */
static const struct option *long_opt(const struct option *opts, const char *arg)
{
	size_t n = strcspn(arg + 2, "=");

	for (; opts && opts->name; opts++)
		if (strlen(opts->name) == n && !strncmp(opts->name, arg + 2, n))
			return opts;
	return NULL;
}

/* Says what getopt found wrong (it prints nothing: opterr is 0). */
static void bad_option(const struct cli_cmd *cmd, int c, char **argv)
{
	const char *arg = argv[optind - 1];
	bool is_long = arg && !strncmp(arg, "--", 2);

	if (c == ':') {
		if (is_long)
			snprintf(usage_buf, sizeof(usage_buf), "option '%.*s' needs a value",
				 (int)strcspn(arg, "="), arg);
		else
			snprintf(usage_buf, sizeof(usage_buf), "option '-%c' needs a value", optopt);
	} else if (is_long) {
		const struct option *o = long_opt(cmd->longopts, arg);

		if (o && o->has_arg == no_argument && strchr(arg, '='))
			snprintf(usage_buf, sizeof(usage_buf), "option '--%s' takes no value", o->name);
		else
			snprintf(usage_buf, sizeof(usage_buf), "unknown option '%.*s'",
				 (int)strcspn(arg, "="), arg);
	} else {
		snprintf(usage_buf, sizeof(usage_buf), "unknown option '-%c'", optopt);
	}
}

int cli_parse(const struct cli_cmd *cmd, int argc, char **argv,
	      int (*on_opt)(void *ctx, int c, const char *arg), void *ctx,
	      char **args, int *nargs, const char **usage_msg)
{
	char shortopts[64];
	int c, rc;

	/* "-": arguments come back in order as option 1, so options may
	 * follow them even under POSIXLY_CORRECT; ":": a missing value is
	 * told apart from an unknown option. */
	snprintf(shortopts, sizeof(shortopts), "-:%s", cmd->shortopts);
	*nargs = 0;
	usage_buf[0] = '\0';
	if (usage_msg)
		*usage_msg = usage_buf;
	if (argc < 1)
		return cli_usage(cmd->name, NULL);
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, cmd->longopts, NULL)) != -1) {
		if (c == 1) {
			if (*nargs == CLI_MAX_ARGS)
				goto too_many;
			args[(*nargs)++] = optarg;
			continue;
		}
		if (c == '?' || c == ':') {
			bad_option(cmd, c, argv);
			goto usage;
		}
		if (c == 'h') {
			fputs(cmd->usage, stdout);
			return ZF_EXIT_OK;
		}
		rc = on_opt(ctx, c, optarg);
		if (rc != CLI_GO_ON)
			return rc;
	}
	/* What follows "--" is all arguments. */
	while (optind < argc) {
		if (*nargs == CLI_MAX_ARGS)
			goto too_many;
		args[(*nargs)++] = argv[optind++];
	}
	if (*nargs < cmd->min_args || (cmd->max_args >= 0 && *nargs > cmd->max_args)) {
		snprintf(usage_buf, sizeof(usage_buf), "%s", cmd->args_msg);
		goto usage;
	}
	return CLI_GO_ON;
too_many:
	snprintf(usage_buf, sizeof(usage_buf), "more than %d arguments", CLI_MAX_ARGS);
usage:
	if (usage_msg)
		return ZF_EXIT_USAGE;
	return cli_usage(cmd->name, "%s", usage_buf);
}
