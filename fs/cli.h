/* SPDX-License-Identifier: MIT */
/*
 * What the subcommands of the zerofs program share: their entry points,
 * how errors are printed, and how a status becomes an exit code (the
 * contract documented in man/zerofs.1, EXIT STATUS).
 */
#ifndef ZEROFS_CLI_H
#define ZEROFS_CLI_H

#include "zerofs/error.h"

#define ZF_EXIT_OK 0
#define ZF_EXIT_UNSOUND 1 /* verify: the checkpoint is not sound */
#define ZF_EXIT_USAGE 2
#define ZF_EXIT_INPUT 3	  /* bad, unsupported or missing input */
#define ZF_EXIT_SYSTEM 4  /* I/O, memory, FUSE or mount failure */

/* Descriptors kept out of the checkpoint files' cache: standard streams,
 * /dev/fuse, syslog, export's output files and folder. */
#define CLI_NOFILE_RESERVE 16

int cmd_inspect(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_verify(int argc, char **argv);

/* The exit code for a core status. */
int cli_exit_code(enum zf_status status);

/* Prints "zerofs: <where>: <msg>" to stderr; returns the exit code. */
int cli_report(const struct zf_error *err);

/* Prints "zerofs CMD: <msg>" (unless fmt is NULL: getopt has already
 * said what is wrong) and a pointer to --help; returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Parses arg, the value of option --opt, as a whole decimal number from
 * min to max into *out. Returns 0, or 2 after a usage error. */
int cli_number(const char *cmd, const char *opt, const char *arg,
	       unsigned min, unsigned max, unsigned *out);

/* Prints "zerofs: <msg>" to stderr (for errors outside core). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "1.5 GB" style size into buf (decimal units, as du -h --si). */
const char *cli_human_size(unsigned long long bytes, char *buf, int size);

#endif /* ZEROFS_CLI_H */
