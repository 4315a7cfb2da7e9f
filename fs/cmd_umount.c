/* SPDX-License-Identifier: MIT */
/*
 * zerofs umount: unmount a zerofs mount point. As root the kernel is
 * asked directly; otherwise fusermount3, the setuid helper that lets a
 * user unmount what the user mounted.
 */
#include <errno.h>
#include <stdbool.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

static const char umount_usage[] =
	"usage: zerofs umount MOUNTPOINT [-l]\n\n"
	"Unmounts a zerofs mount point; the serving process then exits.\n\n"
	"  -l, --lazy   detach now, finish when the last user is gone\n"
	"  -h, --help   show this help\n";

int cmd_umount(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "lazy", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool lazy = false;
	const char *mnt;
	pid_t pid;
	int c, status;

	optind = 0;
	while ((c = getopt_long(argc, argv, "lh", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			lazy = true;
			break;
		case 'h':
			fputs(umount_usage, stdout);
			return ZF_EXIT_OK;
		default:
			return cli_usage("umount", NULL);
		}
	}
	if (optind != argc - 1)
		return cli_usage("umount", "expected one mount point");
	mnt = argv[optind];
	if (geteuid() == 0) {
		if (umount2(mnt, lazy ? MNT_DETACH : 0) == 0)
			return ZF_EXIT_OK;
		cli_error("'%s': cannot unmount: %s%s", mnt, strerror(errno),
			  errno == EBUSY ? " (still in use; -l detaches it lazily)" : "");
		return ZF_EXIT_SYSTEM;
	}
	pid = fork();
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", lazy ? "-uz" : "-u", "--", mnt,
		       (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0) {
		cli_error("cannot run fusermount3: %s", strerror(errno));
		return ZF_EXIT_SYSTEM;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		cli_error("'%s': fusermount3 could not unmount it", mnt);
		return ZF_EXIT_SYSTEM;
	}
	return ZF_EXIT_OK;
}
