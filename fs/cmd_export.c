/* SPDX-License-Identifier: MIT */
/*
 * zerofs export: write the model directory a mount would show into a real
 * folder, byte for byte (the work is zf_export(), export.h). Adds the
 * progress bar, and turns SIGINT/SIGTERM/SIGHUP into a clean stop: the
 * export removes its temporary files and exits 128 + the signal number.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "progress.h"
#include "serve_opts.h"
#include "zerofs/export.h"

static const char export_usage[] =
	"usage: zerofs export CKPT OUT [options]\n\n"
	"Writes the Hugging Face model directory of the DeepSpeed ZeRO checkpoint CKPT\n"
	"into the folder OUT (created if missing): the files 'zerofs mount' would show,\n"
	"byte for byte. Files appear under their names only once all are complete.\n\n" SERVE_HELP
	"  --threads N           worker threads (default 2)\n"
	"  --force               replace files already in OUT\n"
	"  --no-fsync            do not flush the files to disk before renaming them\n"
	"  -q, --quiet           no progress bar and no summary\n"
	"  -h, --help            show this help\n";

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

/* Returns a (single-threaded) stop request from SIGINT, SIGTERM, SIGHUP. */
static void catch_signals(struct sigaction *old)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < 3; i++)
		sigaction(sigs[i], &sa, &old[i]);
}

static void restore_signals(const struct sigaction *old)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };

	for (size_t i = 0; i < 3; i++)
		sigaction(sigs[i], &old[i], NULL);
}

int cmd_export(int argc, char **argv)
{
	static const struct option opts[] = {
		SERVE_LONG_OPTS,
		{ "threads", required_argument, NULL, 2000 },
		{ "force", no_argument, NULL, 2001 },
		{ "no-fsync", no_argument, NULL, 2002 },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct serve_opts so = { 0 };
	struct zf_export_options eo = { 0 };
	struct zf_error err = { 0 };
	struct zf_ckpt *ck = NULL;
	const struct zf_ckpt_info *ci;
	const struct zf_hfdir_info *di;
	struct zf_hfdir *dir = NULL;
	struct sigaction old[3];
	struct progress bar;
	bool quiet = false;
	char size[32], rate[32];
	const char *out;
	double secs;
	int c, rc;

	optind = 0;
	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case 2000:
			rc = cli_number("export", "threads", optarg, 1,
					ZF_EXPORT_MAX_THREADS, &eo.threads);
			if (rc)
				return rc;
			break;
		case 2001:
			eo.force = true;
			break;
		case 2002:
			eo.no_fsync = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			fputs(export_usage, stdout);
			return ZF_EXIT_OK;
		default:
			rc = serve_opt(&so, c, optarg, "export");
			if (rc)
				return rc;
		}
	}
	if (optind != argc - 2)
		return cli_usage("export", "expected a checkpoint folder and an output folder");
	out = argv[optind + 1];
	if (!out[0])
		return cli_usage("export", "the output folder name is empty");

	rc = serve_open(argv[optind], &so, &ck, &dir);
	if (rc)
		goto out;
	di = zf_hfdir_info(dir);
	ci = zf_ckpt_info(ck);
	if (!quiet && !di->config_source)
		fprintf(stderr,
			"zerofs: no config.json found%s%s; loaders need one: add --config DIR (e.g. the base model's folder)\n",
			ci->hf_dir ? " in " : "", ci->hf_dir ? ci->hf_dir : "");

	progress_init(&bar, "export", !quiet);
	eo.progress = progress_update;
	eo.progress_arg = &bar;
	eo.stop = &stop_signal;
	catch_signals(old);
	rc = zf_export(dir, out, &eo, &err);
	restore_signals(old);
	progress_end(&bar);
	if (stop_signal) {
		cli_error("interrupted; nothing exported to '%s' (temporary files removed)", out);
		rc = 128 + stop_signal;
		goto out;
	}
	if (rc) {
		rc = cli_report(&err);
		goto out;
	}
	secs = progress_elapsed(&bar);
	if (!quiet)
		fprintf(stderr, "zerofs: exported %zu file%s (%s, %zu shard%s, %s) to '%s' in %.1f s (%s/s)\n",
			di->n_files, di->n_files == 1 ? "" : "s",
			zf_dtype_torch_name(di->dtype), di->n_shards,
			di->n_shards == 1 ? "" : "s",
			cli_human_size(di->total_bytes, size, sizeof(size)), out, secs,
			cli_human_size(secs > 0 ? (unsigned long long)((double)di->total_bytes / secs) : 0,
				       rate, sizeof(rate)));
	rc = ZF_EXIT_OK;
out:
	zf_hfdir_free(dir);
	zf_ckpt_free(ck);
	return rc;
}
