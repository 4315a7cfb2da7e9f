/* SPDX-License-Identifier: MIT */
/*
 * zerofs umount: unmount a zerofs mount point, and nothing else. The
 * mount table says what is mounted at MOUNTPOINT; a folder with nothing
 * mounted on it, or a mount of another kind (a tmpfs, /proc), is refused
 * with its own exit code. As root the kernel is asked directly;
 * otherwise fusermount3, the setuid helper that lets a user unmount what
 * the user mounted. A mount whose serving process died (every access
 * fails with "Transport endpoint is not connected") is unmounted too.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "mountinfo.h"

static const char umount_usage[] =
	"usage: zerofs umount MOUNTPOINT [-l]\n\n"
	"Unmounts a zerofs mount point; the serving process then exits. Anything\n"
	"else mounted there (a tmpfs, another FUSE file system) is left alone.\n\n"
	"  -l, --lazy   detach now, finish when the last user is gone\n"
	"  -h, --help   show this help\n\n"
	"Exit status: 0 unmounted, 2 usage, 4 could not unmount (in use, no\n"
	"permission), 5 nothing is mounted there, 6 not a zerofs mount.\n\n"
	"examples:\n"
	"  zerofs umount /mnt/model\n";

static const struct option umount_opts[] = {
	{ "lazy", no_argument, NULL, 'l' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const struct cli_cmd umount_cmd = {
	"umount", umount_usage, "lh", umount_opts, 1, 1, "expected one mount point",
};

static int on_opt(void *ctx, int c, const char *arg)
{
	(void)arg;
	if (c == 'l')
		*(bool *)ctx = true;
	return CLI_GO_ON;
}

/*
 * Finds the zerofs mount at path into *m. Returns CLI_GO_ON, or the exit
 * code after saying why not (shared with zerofs status).
 */
int umount_find_zerofs(const char *path, struct mount_info *m);

int umount_find_zerofs(const char *path, struct mount_info *m)
{
	char abs[PATH_MAX];

	if (mount_abspath(path, abs)) {
		if (errno == ENOENT)
			cli_error("'%s': not mounted (no such folder)", path);
		else
			cli_error("'%s': %s", path, strerror(errno));
		return errno == ENOENT ? ZF_EXIT_NOT_MOUNTED : ZF_EXIT_SYSTEM;
	}
	if (mount_find(abs, m)) {
		if (errno != ENOENT) {
			cli_error("cannot read the mount table: %s", strerror(errno));
			return ZF_EXIT_SYSTEM;
		}
		cli_error("'%s': not mounted", path);
		return ZF_EXIT_NOT_MOUNTED;
	}
	if (!mount_is_zerofs(m)) {
		cli_error("'%s': not a zerofs mount: %s", path, m->fstype);
		return ZF_EXIT_NOT_ZEROFS;
	}
	return CLI_GO_ON;
}

int cmd_umount(int argc, char **argv)
{
	struct mount_info m;
	bool lazy = false;
	char *args[CLI_MAX_ARGS];
	int nargs, rc, status;
	pid_t pid;

	rc = cli_parse(&umount_cmd, argc, argv, on_opt, &lazy, args, &nargs, NULL);
	if (rc != CLI_GO_ON)
		return rc;
	rc = umount_find_zerofs(args[0], &m);
	if (rc != CLI_GO_ON)
		return rc;
	if (geteuid() == 0) {
		if (umount2(m.point, (lazy ? MNT_DETACH : 0) | UMOUNT_NOFOLLOW) == 0)
			return ZF_EXIT_OK;
		if (errno == EBUSY)
			cli_error("'%s': still in use (an open file, or a process's current folder); 'zerofs umount -l %s' detaches it now and finishes when the last user is gone",
				  args[0], args[0]);
		else
			cli_error("'%s': cannot unmount: %s", args[0], strerror(errno));
		return ZF_EXIT_SYSTEM;
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", lazy ? "-uz" : "-u", "--", m.point,
		       (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0) {
		cli_error("cannot run fusermount3: %s", strerror(errno));
		return ZF_EXIT_SYSTEM;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		cli_error("'%s': fusermount3 could not unmount it%s", args[0],
			  WIFEXITED(status) && WEXITSTATUS(status) == 127 ? " (fusermount3 not found)" : "");
		return ZF_EXIT_SYSTEM;
	}
	return ZF_EXIT_OK;
}
