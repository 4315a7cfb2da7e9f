/* SPDX-License-Identifier: MIT */
/*
 * zerofs mount: serve a checkpoint as a Hugging Face model directory.
 *
 * Everything that can fail on bad input fails before mounting (opening
 * the checkpoint and building the directory), so a bad checkpoint never
 * yields a mount that answers with wrong bytes. Then: mount, raise the
 * mount's readahead window (the kernel's 128 KiB default turns mmap
 * readers into 4-64 KiB requests; bench/run.sh measures both), detach unless -f
 * (the parent returns once the mount exists), and serve with a
 * multithreaded loop until unmounted or signalled.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fuse_ops.h"
#include "serve_opts.h"
#include "zerofs/source.h"

#define READAHEAD_KB 1024

static const char mount_usage[] =
	"usage: zerofs mount CKPT MOUNTPOINT [options]\n\n"
	"Serves the DeepSpeed ZeRO checkpoint CKPT, read-only, as a Hugging Face model\n"
	"directory at MOUNTPOINT. Returns once the mount is ready.\n\n" SERVE_HELP
	"  -f, --foreground      stay in the foreground (log to stderr)\n"
	"  -o OPTIONS            FUSE mount options, comma separated (e.g. allow_other)\n"
	"  --threads N           serving threads (default 8)\n"
	"  --readahead KB        kernel readahead window of the mount (default 1024; 0 keeps\n"
	"                        the kernel's); needs root\n"
	"  -d, --debug           print every FUSE request (implies -f)\n"
	"  -h, --help            show this help\n";

/* The bdi "MAJ:MIN" of the mount at mnt, from /proc/self/mountinfo (a
 * stat() of the mount point would wait on ourselves: we are not serving
 * yet). */
static int mount_bdi(const char *mnt, char *bdi, size_t size)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];
	int found = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char dev[64], point[PATH_MAX];

		if (sscanf(line, "%*s %*s %63s %*s %4095s", dev, point) == 2 &&
		    !strcmp(point, mnt)) {
			snprintf(bdi, size, "%s", dev); /* the last match wins */
			found = 1;
		}
	}
	fclose(f);
	return found ? 0 : -1;
}

/* The file system type of the mount at mnt ("fuse.zerofs", ...) into
 * type, or -1 when mnt is not a mount point. */
static int mount_type(const char *mnt, char *type, size_t size)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];
	int found = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char point[PATH_MAX], *sep, fstype[256];

		if (sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 || strcmp(point, mnt))
			continue;
		/* Fields after " - " are: type, source, super options. */
		sep = strstr(line, " - ");
		if (sep && sscanf(sep + 3, "%255s", fstype) == 1) {
			snprintf(type, size, "%s", fstype);
			found = 0;
		}
	}
	fclose(f);
	return found;
}

static void set_readahead(const char *mnt, unsigned kb)
{
	char bdi[64], path[128], val[32];
	int fd, n;

	if (!kb)
		return;
	if (mount_bdi(mnt, bdi, sizeof(bdi))) {
		zf_log("cannot find the mount in /proc/self/mountinfo; readahead left as is");
		return;
	}
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", bdi);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	n = snprintf(val, sizeof(val), "%u", kb);
	if (fd < 0 || write(fd, val, (size_t)n) != n)
		zf_log("cannot raise readahead to %u KiB (%s: %s); as root: echo %u > %s",
		       kb, path, strerror(errno), kb, path);
	if (fd >= 0)
		close(fd);
}

static void describe(const char *ckpt_path, const char *mnt,
		     const struct zf_ckpt *ck, const struct zf_hfdir *dir)
{
	const struct zf_ckpt_info *ci = zf_ckpt_info(ck);
	const struct zf_hfdir_info *d = zf_hfdir_info(dir);
	char size[32];
	size_t served = 0;

	for (size_t i = 0; i < d->n_files; i++)
		served += zf_hfdir_file(dir, i)->n_tensors;
	fprintf(stderr,
		"zerofs: serving '%s' (tag %s, ZeRO-%d, %u rank%s) at '%s': %zu tensors as %s in %zu shard%s, %s\n",
		ckpt_path, ci->tag, ci->stage, ci->world_size,
		ci->world_size == 1 ? "" : "s", mnt, served,
		zf_dtype_torch_name(d->dtype), d->n_shards,
		d->n_shards == 1 ? "" : "s",
		cli_human_size(d->tensor_bytes, size, sizeof(size)));
	if (d->prefix[0])
		fprintf(stderr, "zerofs: removed the wrapper prefix '%s' from every tensor name\n",
			d->prefix);
	if (!d->config_source)
		fprintf(stderr,
			"zerofs: no config.json found%s%s; loaders need one: add --config DIR (e.g. the base model's folder)\n",
			ci->hf_dir ? " in " : "", ci->hf_dir ? ci->hf_dir : "");
}

int cmd_mount(int argc, char **argv)
{
	static const struct option opts[] = {
		SERVE_LONG_OPTS,
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "threads", required_argument, NULL, 2000 },
		{ "readahead", required_argument, NULL, 2001 },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct serve_opts so = { 0 };
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se = NULL;
	struct fuse_loop_config *cfg = NULL;
	struct zf_ckpt *ck = NULL;
	struct zf_hfdir *dir = NULL;
	struct zf_mount m = { 0 };
	char mnt[PATH_MAX], fsname[PATH_MAX + 16];
	bool foreground = false, debug = false;
	unsigned threads = 8, readahead = READAHEAD_KB;
	int c, rc;

	fuse_opt_add_arg(&args, "zerofs");
	optind = 0;
	while ((c = getopt_long(argc, argv, "fdo:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			foreground = true;
			break;
		case 'd':
			debug = foreground = true;
			break;
		case 'o':
			fuse_opt_add_arg(&args, "-o");
			fuse_opt_add_arg(&args, optarg);
			break;
		case 2000:
			rc = cli_number("mount", "threads", optarg, 1, 256, &threads);
			if (rc)
				goto out;
			break;
		case 2001:
			rc = cli_number("mount", "readahead", optarg, 0, 1048576, &readahead);
			if (rc)
				goto out;
			break;
		case 'h':
			fputs(mount_usage, stdout);
			rc = ZF_EXIT_OK;
			goto out;
		default:
			rc = serve_opt(&so, c, optarg, "mount");
			if (rc)
				goto out;
		}
	}
	if (optind != argc - 2) {
		rc = cli_usage("mount", "expected a checkpoint folder and a mount point");
		goto out;
	}
	{
		struct zf_source_stats st;

		/* A serving thread reads one file at a time: with fewer
		 * descriptors than threads, reads would fail under load. */
		zf_source_stats(&st);
		if (st.max_open < threads) {
			cli_error("the open-file limit (ulimit -n) leaves %zu descriptor%s for the checkpoint's files, fewer than the %u serving threads need: raise the limit or pass --threads %zu",
				  st.max_open, st.max_open == 1 ? "" : "s", threads, st.max_open);
			rc = ZF_EXIT_SYSTEM;
			goto out;
		}
	}
	if (!realpath(argv[optind + 1], mnt)) {
		cli_error("'%s': cannot use as a mount point: %s", argv[optind + 1], strerror(errno));
		rc = ZF_EXIT_USAGE;
		goto out;
	}
	{
		char type[256];

		/* Mounting again on a zerofs mount would stack a second one
		 * that hides the first; say so instead. */
		if (!mount_type(mnt, type, sizeof(type)) && !strcmp(type, "fuse.zerofs")) {
			cli_error("'%s': already a zerofs mount; 'zerofs umount %s' first", mnt, mnt);
			rc = ZF_EXIT_USAGE;
			goto out;
		}
	}
	rc = serve_open(argv[optind], &so, &ck, &dir);
	if (rc)
		goto out;

	snprintf(fsname, sizeof(fsname), "fsname=zerofs:%s", zf_ckpt_info(ck)->tag);
	fuse_opt_add_arg(&args, "-o");
	fuse_opt_add_arg(&args, "ro,default_permissions,subtype=zerofs");
	fuse_opt_add_arg(&args, "-o");
	fuse_opt_add_arg(&args, fsname);
	if (debug)
		fuse_opt_add_arg(&args, "-d");
	m.dir = dir;
	m.readahead_kb = readahead;
	m.uid = getuid();
	m.gid = getgid();
	se = fuse_session_new(&args, &zf_fuse_ops, sizeof(zf_fuse_ops), &m);
	if (!se) {
		cli_error("cannot start a FUSE session (bad -o option?)");
		rc = ZF_EXIT_SYSTEM;
		goto out;
	}
	if (fuse_session_mount(se, mnt)) {
		cli_error("'%s': cannot mount (is FUSE available, /dev/fuse readable, and the folder not already a mount?)",
			  mnt);
		rc = ZF_EXIT_SYSTEM;
		goto out;
	}
	describe(argv[optind], mnt, ck, dir);
	set_readahead(mnt, readahead);
	if (fuse_set_signal_handlers(se)) {
		cli_error("cannot install signal handlers");
		rc = ZF_EXIT_SYSTEM;
		goto unmount;
	}
	fflush(stderr);
	if (!foreground)
		zf_log_to_syslog();
	if (fuse_daemonize(foreground)) {
		rc = ZF_EXIT_SYSTEM;
		goto signals;
	}
	cfg = fuse_loop_cfg_create();
	if (!cfg) {
		rc = ZF_EXIT_SYSTEM;
		goto signals;
	}
	fuse_loop_cfg_set_max_threads(cfg, threads);
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	rc = fuse_session_loop_mt(se, cfg) ? ZF_EXIT_SYSTEM : ZF_EXIT_OK;
	if (m.read_errors)
		zf_log("%lu read(s) failed while mounted", m.read_errors);
	fuse_loop_cfg_destroy(cfg);
signals:
	fuse_remove_signal_handlers(se);
unmount:
	fuse_session_unmount(se);
out:
	if (se)
		fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	zf_hfdir_free(dir);
	zf_ckpt_free(ck);
	return rc;
}
