/* SPDX-License-Identifier: MIT */
/*
 * What the subcommands of the zerofs program share: their entry points,
 * one way to parse a command line, how errors are printed, how text from
 * a checkpoint is made safe to print, and how a status becomes an exit
 * code (the contract documented in man/zerofs.1, EXIT STATUS).
 */
#ifndef ZEROFS_CLI_H
#define ZEROFS_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "zerofs/error.h"

#define ZF_EXIT_OK 0
#define ZF_EXIT_UNSOUND 1 /* verify: the checkpoint is not sound */
#define ZF_EXIT_USAGE 2
#define ZF_EXIT_INPUT 3	  /* bad, unsupported or missing input */
#define ZF_EXIT_SYSTEM 4  /* I/O, memory, FUSE or mount failure */
#define ZF_EXIT_NOT_MOUNTED 5 /* umount, status: nothing is mounted there */
#define ZF_EXIT_NOT_ZEROFS 6  /* umount, status: a mount, but not zerofs' */

/* Descriptors kept out of the checkpoint files' cache: standard streams,
 * /dev/fuse, syslog, export's output files and folder. */
#define CLI_NOFILE_RESERVE 16

int cmd_inspect(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_status(int argc, char **argv);
/* mount(8)'s helper convention: mount.zerofs CKPT MNT [-sfnv] [-o OPTS]. */
int cmd_mount_helper(int argc, char **argv);

/*
 * A subcommand's command line. Every command parses the same way
 * (getopt_long, as GNU tools do): options and arguments in any order,
 * whatever POSIXLY_CORRECT says; "--" ends the options; -h and --help
 * print `usage` on stdout; an unknown option, a missing value or a wrong
 * number of arguments is a usage error (exit 2) naming the culprit.
 */
struct cli_cmd {
	const char *name;	 /* "mount": messages say "zerofs mount: ..." */
	const char *usage;	 /* the --help text, starting "usage: zerofs NAME" */
	const char *shortopts;	 /* getopt's short options ("fdo:h") */
	const struct option *longopts;
	int min_args, max_args;	 /* positional arguments; max -1: any number */
	const char *args_msg;	 /* said when their number is wrong */
};

/* cli_parse()'s "carry on" answer; any other value is an exit code. */
#define CLI_GO_ON (-1)

/* The most positional arguments a command line may have. */
#define CLI_MAX_ARGS 64

/*
 * Parses argv (argv[0] is the command's name) by cmd. Each option is
 * handed to on_opt(ctx, c, optarg), which returns CLI_GO_ON or an exit
 * code (after printing why). The positional arguments, in order, end up
 * in args[0..*nargs) (CLI_MAX_ARGS entries: pointers into argv).
 * When usage_msg is not NULL, usage errors are not printed: *usage_msg
 * (a static buffer) says what is wrong and 2 is returned, so the caller
 * can print them as JSON. Returns CLI_GO_ON, or the exit code: 0 after
 * --help, 2 after a usage error, on_opt's code.
 */
int cli_parse(const struct cli_cmd *cmd, int argc, char **argv,
	      int (*on_opt)(void *ctx, int c, const char *arg), void *ctx,
	      char **args, int *nargs, const char **usage_msg);

/* The exit code for a core status. */
int cli_exit_code(enum zf_status status);

/* Prints "zerofs: <where>: <msg>" to stderr; returns the exit code. */
int cli_report(const struct zf_error *err);

/* Prints "zerofs CMD: <msg>" (unless fmt is NULL) and a pointer to
 * --help; returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Parses arg, the value of option --opt, as a whole decimal number from
 * min to max into *out. Returns CLI_GO_ON, or 2 after a usage error. */
int cli_number(const char *cmd, const char *opt, const char *arg,
	       unsigned min, unsigned max, unsigned *out);

/* Prints "zerofs: <msg>" to stderr (for errors outside core), escaped. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "1.5 GB" style size into buf (decimal units, as du -h --si). */
const char *cli_human_size(unsigned long long bytes, char *buf, int size);

/* A count as people write parameter counts: "1.23 B", "350 M", "32.1 K",
 * three significant digits; below 1,000 the number itself. */
const char *cli_human_count(unsigned long long n, char *buf, int size);

/*
 * The one escaping function of the program: s with every character that
 * could act on a terminal written out as text. Control characters (C0,
 * DEL), bytes that are not UTF-8 become \xNN; C1 controls, line and
 * paragraph separators and bidirectional overrides become \uNNNN.
 * Everything else, including backslash, is kept, so text that core
 * already escaped (zf_printable) comes out unchanged.
 *
 * Every string that can come from a checkpoint (file contents, tensor
 * names, tags, paths, core's error messages that quote them) goes
 * through it before it is printed or logged.
 *
 * Returns one of a few per-thread buffers, valid until the 8th next
 * call in the same thread. Never NULL (on out of memory, a placeholder).
 */
const char *cli_esc(const char *s);

/* Writes fmt's result to f through cli_esc(), then a newline. */
void cli_fprintf_esc(FILE *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif /* ZEROFS_CLI_H */
