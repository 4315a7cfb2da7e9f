/* SPDX-License-Identifier: MIT */
/*
 * zerofs mount, and mount.zerofs (mount(8)'s helper): serve a checkpoint
 * as a Hugging Face model directory.
 *
 * Everything that can fail on bad input fails before mounting (opening
 * the checkpoint and building the directory), so a bad checkpoint never
 * yields a mount that answers with wrong bytes. Then: mount (type
 * fuse.zerofs, source the checkpoint's absolute path, so df, findmnt and
 * mount(8) tell mounts apart), raise the mount's readahead window (the
 * kernel's 128 KiB default turns mmap readers into 4-64 KiB requests;
 * bench/run.sh measures both), detach unless -f (the parent returns once
 * the mount exists), and serve with a multithreaded loop until unmounted
 * or signalled.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cli.h"
#include "fuse_ops.h"
#include "log.h"
#include "mount_opts.h"
#include "mountinfo.h"
#include "zerofs/source.h"

#define ZEROFS_VERSION_XATTR "0.1.0"

static const char mount_usage[] =
	"usage: zerofs mount CKPT MOUNTPOINT [options]\n\n"
	"Serves the DeepSpeed ZeRO checkpoint CKPT, read-only, as a Hugging Face model\n"
	"directory at MOUNTPOINT (a folder). Returns once the mount is ready. CKPT may be\n"
	"a run folder (a Trainer output_dir, ...): the checkpoint a resume would load is\n"
	"served, and named.\n\n" SERVE_HELP
	"  -a, --all             a folder per checkpoint of the run folder CKPT, each\n"
	"                        opened on first use (checkpoint-100/, iter_500/, ...)\n"
	"  -o OPTIONS            comma separated: FUSE options (allow_other, ...),\n"
	"                        uid=N, gid=N, umask=M (as sshfs), and any option above\n"
	"                        as key=value (dtype=bf16, max_shard_size=2GB, log=FILE,\n"
	"                        all)\n"
	"  -f, --foreground      stay in the foreground (log to stderr)\n"
	"  --log FILE            log here (default: stderr with -f; else syslog, or\n"
	"                        ~/.local/state/zerofs/zerofs.log where none listens)\n"
	"  --threads N           serving threads (default 8)\n"
	"  --readahead KB        kernel readahead window of the mount (default 1024; 0 keeps\n"
	"                        the kernel's); needs root\n"
	"  -d, --debug           print every FUSE request (implies -f)\n"
	"  -h, --help            show this help\n\n"
	"examples:\n"
	"  zerofs mount out/checkpoint-1000 /mnt/model --dtype bf16\n"
	"  zerofs mount out/checkpoint-1000 /mnt/model -o allow_other,umask=027,dtype=bf16\n"
	"  zerofs mount out /mnt/model --all --dtype bf16\n";

static const char helper_usage[] =
	"usage: mount.zerofs CKPT MOUNTPOINT [-sfnv] [-o OPTIONS]\n\n"
	"mount(8)'s helper for file systems of type zerofs or fuse.zerofs (fstab,\n"
	"systemd mount units): 'zerofs mount CKPT MOUNTPOINT -o OPTIONS' in the\n"
	"background, see 'zerofs mount --help' for OPTIONS. -f checks everything but\n"
	"mounts nothing; -s, -n and -v are accepted and ignored.\n";

/* The bdi "MAJ:MIN" of the mount at mnt, from the mount table (a stat()
 * of the mount point would wait on ourselves: we are not serving yet). */
static void set_readahead(const char *mnt, unsigned kb)
{
	struct mount_info *mi;
	char path[128], val[32];
	int fd, n;

	if (!kb)
		return;
	mi = malloc(sizeof(*mi));
	if (!mi || mount_find(mnt, mi)) {
		zf_log("cannot find the mount in /proc/self/mountinfo; readahead left as is");
		free(mi);
		return;
	}
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", mi->dev);
	free(mi);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	n = snprintf(val, sizeof(val), "%u", kb);
	if (fd < 0 || write(fd, val, (size_t)n) != n)
		zf_log("cannot raise readahead to %u KiB (%s: %s); as root: echo %u > %s",
		       kb, path, strerror(errno), kb, path);
	if (fd >= 0)
		close(fd);
}

/* A line to stderr, and to the log when it is elsewhere. */
static void say(bool fake, const char *line)
{
	cli_error("%s", line);
	if (strcmp(log_place(), "stderr") && !fake)
		zf_log("%s", line);
}

/* Says what is served where: one checkpoint. */
static void describe(const char *ckpt, const char *mnt, const struct zf_ckpt *ck,
		     const struct zf_hfdir *dir, bool fake)
{
	const struct zf_ckpt_info *ci = zf_ckpt_info(ck);
	const struct zf_hfdir_info *d = zf_hfdir_info(dir);
	char size[32], line[8192];
	size_t served = 0;

	for (size_t i = 0; i < d->n_files; i++)
		served += zf_hfdir_file(dir, i)->n_tensors;
	snprintf(line, sizeof(line),
		 "%s '%s' (tag %s, ZeRO-%d, %u rank%s) at '%s': %zu tensors as %s in %zu shard%s, %s",
		 fake ? "would serve" : "serving", ckpt, ci->tag, ci->stage, ci->world_size,
		 ci->world_size == 1 ? "" : "s", mnt, served, zf_dtype_torch_name(d->dtype),
		 d->n_shards, d->n_shards == 1 ? "" : "s",
		 cli_human_size(d->tensor_bytes, size, sizeof(size)));
	say(fake, line);
	if (ci->n_choices > 1) {
		snprintf(line, sizeof(line),
			 "chose %s of the %zu checkpoints there: %s; --tag NAME serves another, --all all of them",
			 ci->tag, ci->n_choices, serve_pick_words(ci->pick));
		say(fake, line);
	}
	if (d->prefix[0])
		cli_error("removed the wrapper prefix '%s' from every tensor name", d->prefix);
	if (!d->config_source)
		cli_error("no config.json found%s%s; loaders need one: add --config DIR (e.g. the base model's folder)",
			  ci->hf_dir ? " in " : "", ci->hf_dir ? ci->hf_dir : "");
	if (!fake)
		cli_error("logging to %s", log_where());
}

/* Says what is served where: the checkpoints of a run folder. */
static void describe_all(const char *run_path, const char *mnt, const struct tree *t,
			 const struct serve_opts *so, bool fake)
{
	const struct zf_runfolder *run = t->run;
	size_t n = zf_runfolder_count(run);
	char line[8192], size[32];

	snprintf(line, sizeof(line),
		 "%s the %zu checkpoint%s of '%s' at '%s', a folder each (%s%s%s), each opened on first use, as %s in shards of at most %s",
		 fake ? "would serve" : "serving", n, n == 1 ? "" : "s", run_path, mnt,
		 zf_runfolder_entry(run, 0)->served, n > 1 ? " to " : "",
		 n > 1 ? zf_runfolder_entry(run, n - 1)->served : "",
		 so->dir.dtype == ZF_DT_INVALID ? "each one's training dtype"
						: zf_dtype_torch_name(so->dir.dtype),
		 cli_human_size(so->dir.max_shard_size ? so->dir.max_shard_size
						       : ZF_DEFAULT_SHARD_SIZE,
				size, sizeof(size)));
	say(fake, line);
	if (t->newest != SIZE_MAX) {
		snprintf(line, sizeof(line), "the newest is %s: %s",
			 zf_runfolder_entry(run, t->newest)->served, serve_pick_words(t->newest_how));
		say(fake, line);
	}
	if (!fake)
		cli_error("logging to %s", log_where());
}

/*
 * The session's reads of /dev/fuse. A read that dequeues a request just
 * as the kernel shuts the connection down (the end of an unmount, lazy or
 * not, with requests still queued: the RELEASEs of the last descriptors
 * closed) fails with ECONNABORTED, not ENODEV (fs/fuse/dev.c,
 * fuse_dev_do_read: "Must not put request on fpq->io queue after having
 * been shut down"). libfuse 3.14 takes only ENODEV for the end of the
 * mount (lib/fuse_lowlevel.c, fuse_session_receive_buf_int); anything else
 * stops the loop with an error, and the daemon would exit 4 after a clean
 * unmount. Both mean the connection is gone: say ENODEV for both, so that
 * the loop ends as it does for every other unmount. Every other error
 * still ends the loop with that error.
 */
static ssize_t dev_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);

	(void)userdata;
	if (n < 0 && errno == ECONNABORTED)
		errno = ENODEV;
	return n;
}

static ssize_t dev_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	return writev(fd, iov, count);
}

static const struct fuse_custom_io dev_io = {
	.read = dev_read,
	.writev = dev_writev,
};

/* "fsname=PATH" with libfuse's -o escapes (a comma in a path). */
static char *fsname_opt(const char *name)
{
	size_t n = 0;
	char *s = malloc(strlen("fsname=") + 2 * strlen(name) + 1);

	if (!s)
		return NULL;
	memcpy(s, "fsname=", 7);
	n = 7;
	for (; *name; name++) {
		if (*name == ',' || *name == '\\')
			s[n++] = '\\';
		s[n++] = *name;
	}
	s[n] = '\0';
	return s;
}

/* Where the mount goes: an existing folder that is not a zerofs mount
 * already. Returns CLI_GO_ON or the exit code. */
static int check_mount_point(const char *given, char abs[PATH_MAX])
{
	struct mount_info *mi;
	struct stat st;
	int rc = CLI_GO_ON;

	if (mount_abspath(given, abs) || stat(abs, &st)) {
		if (errno == ENOTCONN)
			cli_error("'%s': a mount whose serving process is gone; 'zerofs umount %s' first",
				  given, given);
		else
			cli_error("'%s': cannot use as a mount point: %s", given, strerror(errno));
		return ZF_EXIT_USAGE;
	}
	if (!S_ISDIR(st.st_mode)) {
		cli_error("'%s': not a folder; a mount point must be a folder", given);
		return ZF_EXIT_USAGE;
	}
	mi = malloc(sizeof(*mi));
	if (!mi)
		return ZF_EXIT_SYSTEM;
	/* Mounting again on a zerofs mount would stack a second one that
	 * hides the first; say so instead. */
	if (!mount_find(abs, mi) && mount_is_zerofs(mi)) {
		cli_error("'%s': already a zerofs mount; 'zerofs umount %s' first", abs, abs);
		rc = ZF_EXIT_USAGE;
	}
	free(mi);
	return rc;
}

/*
 * What the mount serves into t: the checkpoint (opened and checked now,
 * so that a bad one fails before anything is mounted), or with --all the
 * checkpoints of a run folder (listed now, opened on first use). Returns
 * 0 or the exit code.
 */
static int open_tree(struct mount_req *r, const char *ckpt_abs, struct tree *t)
{
	static char config_abs[PATH_MAX];
	struct zf_error err = { 0 };
	struct zf_runfolder *run;
	struct zf_ckpt *ck;
	struct zf_hfdir *dir;
	int rc;

	if (!r->all) {
		rc = serve_open(r->ckpt, &r->so, &ck, &dir);
		if (rc)
			return rc;
		if (tree_init_one(t, ck, dir)) {
			zf_hfdir_free(dir);
			zf_ckpt_free(ck);
			cli_error("out of memory");
			return ZF_EXIT_SYSTEM;
		}
		return 0;
	}
	/* Checkpoints open after the daemon has left the working folder:
	 * every path they need is made absolute now. */
	if (r->so.dir.config_dir) {
		if (!realpath(r->so.dir.config_dir, config_abs)) {
			cli_error("'%s': --config: %s", r->so.dir.config_dir, strerror(errno));
			return ZF_EXIT_INPUT;
		}
		r->so.dir.config_dir = config_abs;
	}
	if (zf_runfolder_scan(ckpt_abs, &run, &err))
		return cli_report(&err);
	if (!zf_runfolder_count(run)) {
		zf_runfolder_free(run);
		cli_error("'%s': no folder in it holds a checkpoint; --all serves the checkpoints of a run folder (a Trainer output_dir, a DeepSpeed save folder, an XTuner work_dir)",
			  r->ckpt);
		return ZF_EXIT_INPUT;
	}
	if (tree_init_all(t, run, &r->so)) {
		zf_runfolder_free(run);
		cli_error("out of memory");
		return ZF_EXIT_SYSTEM;
	}
	return 0;
}

/* Says what is served where (once mounted, or for mount.zerofs -f). */
static void describe_tree(const struct mount_req *r, const char *ckpt_abs, const char *mnt,
			  const struct tree *t)
{
	const struct zf_hfdir *dir = t->all ? NULL : tree_open_dir(t, 0);

	if (dir)
		describe(ckpt_abs, mnt, zf_hfdir_info(dir)->ck, dir, r->fake);
	else
		describe_all(ckpt_abs, mnt, t, &r->so, r->fake);
}

static int do_mount(struct mount_req *r)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se = NULL;
	struct fuse_loop_config *cfg = NULL;
	struct tree tree = { 0 };
	struct zf_mount m = { 0 };
	struct zf_xattr xattrs[8];
	char mnt[PATH_MAX], ckpt_abs[PATH_MAX], pid[24], logerr[4200], count[24], chosen[160];
	char *fsname = NULL;
	size_t nx = 0;
	int rc, loop_rc;

	if (r->all && r->so.ckpt.tag)
		return cli_usage("mount", "--all serves every checkpoint: --tag does not apply");
	rc = check_mount_point(r->mnt, mnt);
	if (rc != CLI_GO_ON)
		return rc;
	if (log_setup(r->log, r->foreground || r->fake, logerr, sizeof(logerr))) {
		cli_error("%s", logerr);
		return ZF_EXIT_USAGE;
	}
	{
		struct zf_source_stats st;

		/* A serving thread reads one file at a time: with fewer
		 * descriptors than threads, reads would fail under load. */
		zf_source_stats(&st);
		if (st.max_open < r->threads) {
			cli_error("the open-file limit (ulimit -n) leaves %zu descriptor%s for the checkpoint's files, fewer than the %u serving threads need: raise the limit or pass --threads %zu",
				  st.max_open, st.max_open == 1 ? "" : "s", r->threads, st.max_open);
			return ZF_EXIT_SYSTEM;
		}
	}
	if (!realpath(r->ckpt, ckpt_abs))
		snprintf(ckpt_abs, sizeof(ckpt_abs), "%s", r->ckpt);
	rc = open_tree(r, ckpt_abs, &tree);
	if (rc)
		goto out;
	if (r->fake) {
		describe_tree(r, ckpt_abs, mnt, &tree);
		goto out;
	}

	fsname = fsname_opt(r->fsname ? r->fsname : ckpt_abs);
	if (!fsname || fuse_opt_add_arg(&args, "zerofs") || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, "ro,nosuid,nodev,default_permissions,subtype=zerofs") ||
	    fuse_opt_add_arg(&args, "-o") || fuse_opt_add_arg(&args, fsname) ||
	    (r->fuse_opts && (fuse_opt_add_arg(&args, "-o") ||
			      fuse_opt_add_arg(&args, r->fuse_opts))) ||
	    (r->debug && fuse_opt_add_arg(&args, "-d"))) {
		cli_error("out of memory");
		rc = ZF_EXIT_SYSTEM;
		goto out;
	}
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	xattrs[nx++] = (struct zf_xattr){ "user.zerofs.checkpoint", ckpt_abs };
	if (tree.all) {
		snprintf(count, sizeof(count), "%zu", tree.n_slots);
		xattrs[nx++] = (struct zf_xattr){ "user.zerofs.checkpoints", count };
		if (tree.newest != SIZE_MAX)
			xattrs[nx++] = (struct zf_xattr){ "user.zerofs.newest",
							  tree_slot_name(&tree, tree.newest) };
		xattrs[nx++] = (struct zf_xattr){ "user.zerofs.dtype",
						  r->so.dir.dtype == ZF_DT_INVALID
							  ? "auto"
							  : zf_dtype_torch_name(r->so.dir.dtype) };
	} else {
		const struct zf_hfdir *d0 = tree_open_dir(&tree, 0);
		const struct zf_ckpt_info *ci = zf_ckpt_info(zf_hfdir_info(d0)->ck);

		xattrs[nx++] = (struct zf_xattr){ "user.zerofs.tag", ci->tag };
		if (ci->n_choices > 1) {
			snprintf(chosen, sizeof(chosen), "%s, of %zu", serve_pick_words(ci->pick),
				 ci->n_choices);
			xattrs[nx++] = (struct zf_xattr){ "user.zerofs.chosen", chosen };
		}
		xattrs[nx++] = (struct zf_xattr){ "user.zerofs.dtype",
						  zf_dtype_torch_name(zf_hfdir_info(d0)->dtype) };
	}
	xattrs[nx++] = (struct zf_xattr){ "user.zerofs.log", log_place() };
	xattrs[nx++] = (struct zf_xattr){ "user.zerofs.pid", pid };
	xattrs[nx++] = (struct zf_xattr){ "user.zerofs.version", ZEROFS_VERSION_XATTR };
	m.xattrs = xattrs;
	m.n_xattrs = nx;
	m.tree = &tree;
	m.readahead_kb = r->readahead_kb;
	m.uid = r->set_uid ? r->uid : getuid();
	m.gid = r->set_gid ? r->gid : getgid();
	m.umask = r->umask;
	se = fuse_session_new(&args, &zf_fuse_ops, sizeof(zf_fuse_ops), &m);
	if (!se) {
		cli_error("cannot start a FUSE session (an -o option libfuse does not know?)");
		rc = ZF_EXIT_USAGE;
		goto out;
	}
	/* Before the mount exists: a signal from then on finds the session
	 * exited, so the loop ends at once and unmounts, rather than killing
	 * the process and leaving a dead mount behind. */
	if (fuse_set_signal_handlers(se)) {
		cli_error("cannot install signal handlers");
		rc = ZF_EXIT_SYSTEM;
		goto out;
	}
	if (fuse_session_mount(se, mnt)) {
		cli_error("'%s': cannot mount (is FUSE available: /dev/fuse, fusermount3? for -o allow_other as a user, user_allow_other in /etc/fuse.conf)",
			  mnt);
		rc = ZF_EXIT_SYSTEM;
		goto signals;
	}
	if (fuse_session_custom_io(se, &dev_io, fuse_session_fd(se))) {
		cli_error("cannot set up the FUSE session's reads");
		rc = ZF_EXIT_SYSTEM;
		goto unmount;
	}
	describe_tree(r, ckpt_abs, mnt, &tree);
	set_readahead(mnt, r->readahead_kb);
	fflush(stderr);
	if (fuse_daemonize(r->foreground)) {
		rc = ZF_EXIT_SYSTEM;
		goto unmount;
	}
	/* The serving process is the daemon, not the one that started. */
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	cfg = fuse_loop_cfg_create();
	if (!cfg) {
		rc = ZF_EXIT_SYSTEM;
		goto unmount;
	}
	fuse_loop_cfg_set_max_threads(cfg, r->threads);
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	loop_rc = fuse_session_loop_mt(se, cfg);
	/* libfuse returns a negative errno, or the number of the signal
	 * (SIGTERM, SIGINT, SIGHUP) that asked for an orderly stop: that is
	 * an unmount like any other. */
	if (loop_rc < 0) {
		zf_log("serving at '%s' stopped on an error: %s", mnt, strerror(-loop_rc));
		rc = ZF_EXIT_SYSTEM;
	} else {
		if (loop_rc > 0)
			zf_log("stopped by %s: unmounting '%s'", strsignal(loop_rc), mnt);
		rc = ZF_EXIT_OK;
	}
	if (m.read_errors)
		zf_log("%lu request(s) failed while mounted at '%s'", m.read_errors, mnt);
	if (strcmp(log_place(), "stderr"))
		zf_log("stopped serving '%s' at '%s'", ckpt_abs, mnt);
	fuse_loop_cfg_destroy(cfg);
unmount:
	fuse_session_unmount(se);
signals:
	fuse_remove_signal_handlers(se);
out:
	if (se)
		fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	free(fsname);
	tree_free(&tree);
	return rc;
}

struct parse_ctx {
	struct mount_req *r;
	const char *cmd;
};

static int on_mount_opt(void *ctx, int c, const char *arg)
{
	struct mount_req *r = ((struct parse_ctx *)ctx)->r;

	switch (c) {
	case 'f':
		r->foreground = true;
		return CLI_GO_ON;
	case 'd':
		r->debug = r->foreground = true;
		return CLI_GO_ON;
	case 'a':
		r->all = true;
		return CLI_GO_ON;
	case 'o':
		return mount_req_options(r, "mount", arg);
	case 2000:
		return cli_number("mount", "threads", arg, 1, 256, &r->threads);
	case 2001:
		return cli_number("mount", "readahead", arg, 0, 1048576, &r->readahead_kb);
	case 2002:
		r->log = arg;
		return CLI_GO_ON;
	}
	return serve_opt(&r->so, c, arg, "mount");
}

static const struct option mount_opts[] = {
	SERVE_LONG_OPTS,
	{ "foreground", no_argument, NULL, 'f' },
	{ "debug", no_argument, NULL, 'd' },
	{ "threads", required_argument, NULL, 2000 },
	{ "readahead", required_argument, NULL, 2001 },
	{ "log", required_argument, NULL, 2002 },
	{ "all", no_argument, NULL, 'a' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const struct cli_cmd mount_cmd = {
	"mount", mount_usage, "fdao:h", mount_opts, 2, 2,
	"expected a checkpoint folder and a mount point",
};

/* Parses a mount command line (zerofs mount's or mount.zerofs's) and
 * mounts. */
static int parse_and_mount(const struct cli_cmd *cmd,
			   int (*on_opt)(void *ctx, int c, const char *arg),
			   int argc, char **argv)
{
	struct mount_req r;
	struct parse_ctx ctx = { &r, "mount" };
	char *args[CLI_MAX_ARGS];
	int nargs, rc;

	mount_req_init(&r);
	rc = cli_parse(cmd, argc, argv, on_opt, &ctx, args, &nargs, NULL);
	if (rc == CLI_GO_ON) {
		r.ckpt = args[0];
		r.mnt = args[1];
		rc = do_mount(&r);
	}
	mount_req_release(&r);
	return rc;
}

int cmd_mount(int argc, char **argv)
{
	return parse_and_mount(&mount_cmd, on_mount_opt, argc, argv);
}

static int on_helper_opt(void *ctx, int c, const char *arg)
{
	struct mount_req *r = ((struct parse_ctx *)ctx)->r;

	switch (c) {
	case 'f':
		r->fake = true;
		break;
	case 'o':
		return mount_req_options(r, "mount", arg);
	case 't':
		if (strcmp(arg, "zerofs") && strcmp(arg, ZEROFS_FSTYPE))
			return cli_usage("mount", "-t %s: mount.zerofs mounts type zerofs or fuse.zerofs",
					 arg);
		break;
	case 'N':
		return cli_usage("mount", "-N (another mount namespace) is not supported");
	}
	/* -s (sloppy), -n (no mtab), -v (verbose): nothing to do. */
	return CLI_GO_ON;
}

static const struct option helper_opts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const struct cli_cmd helper_cmd = {
	"mount", helper_usage, "sfnvo:t:N:h", helper_opts, 2, 2,
	"expected a checkpoint folder and a mount point (mount.zerofs CKPT MOUNTPOINT -o OPTIONS)",
};

int cmd_mount_helper(int argc, char **argv)
{
	return parse_and_mount(&helper_cmd, on_helper_opt, argc, argv);
}
