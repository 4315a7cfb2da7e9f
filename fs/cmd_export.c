/* SPDX-License-Identifier: MIT */
/*
 * zerofs export: write the model directory a mount would show into a real
 * folder, byte for byte (the work is zf_export(), export.h). Adds the
 * progress bar, says what an earlier export left (files kept, leftovers
 * removed), and turns SIGINT/SIGTERM/SIGHUP into a clean stop: the export
 * removes its partial temporary files, keeps the complete ones for a
 * later run to resume from, and exits 128 + the signal number.
 */
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
	"byte for byte. Files appear under their names only once all are complete.\n"
	"Run again after an interruption, it keeps the files already complete.\n\n" SERVE_HELP
	"  --threads N           worker threads (default 2)\n"
	"  --force               replace files already in OUT\n"
	"  --no-fsync            do not flush the files to disk before renaming them\n"
	"  -q, --quiet           no progress bar and no summary\n"
	"  -h, --help            show this help\n\n"
	"examples:\n"
	"  zerofs export out/checkpoint-1000 /srv/model-fp16 --dtype fp16 --max-shard-size 2GiB\n";

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

struct export_args {
	struct serve_opts so;
	struct zf_export_options eo;
	bool quiet;
};

static int on_opt(void *ctx, int c, const char *arg)
{
	struct export_args *a = ctx;

	switch (c) {
	case 2000:
		return cli_number("export", "threads", arg, 1, ZF_EXPORT_MAX_THREADS,
				  &a->eo.threads);
	case 2001:
		a->eo.force = true;
		return CLI_GO_ON;
	case 2002:
		a->eo.no_fsync = true;
		return CLI_GO_ON;
	case 'q':
		a->quiet = true;
		return CLI_GO_ON;
	}
	return serve_opt(&a->so, c, arg, "export");
}

static const struct option export_opts[] = {
	SERVE_LONG_OPTS,
	{ "threads", required_argument, NULL, 2000 },
	{ "force", no_argument, NULL, 2001 },
	{ "no-fsync", no_argument, NULL, 2002 },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const struct cli_cmd export_cmd = {
	"export", export_usage, "qh", export_opts, 2, 2,
	"expected a checkpoint folder and an output folder",
};

int cmd_export(int argc, char **argv)
{
	struct export_args a = { 0 };
	struct zf_error err = { 0 };
	struct zf_export_stats st = { 0 };
	struct zf_ckpt *ck = NULL;
	const struct zf_ckpt_info *ci;
	const struct zf_hfdir_info *di;
	struct zf_hfdir *dir = NULL;
	struct sigaction old[3];
	struct progress bar;
	char size[32], rate[32], *args[CLI_MAX_ARGS];
	const char *out;
	double secs;
	int nargs, rc;

	rc = cli_parse(&export_cmd, argc, argv, on_opt, &a, args, &nargs, NULL);
	if (rc != CLI_GO_ON)
		return rc;
	out = args[1];
	if (!out[0])
		return cli_usage("export", "the output folder name is empty");

	rc = serve_open(args[0], &a.so, &ck, &dir);
	if (rc)
		goto out;
	di = zf_hfdir_info(dir);
	ci = zf_ckpt_info(ck);
	if (!a.quiet && !di->config_source)
		cli_error("no config.json found%s%s; loaders need one: add --config DIR (e.g. the base model's folder)",
			  ci->hf_dir ? " in " : "", ci->hf_dir ? ci->hf_dir : "");

	progress_init(&bar, "export", !a.quiet);
	a.eo.progress = progress_update;
	a.eo.progress_arg = &bar;
	a.eo.stop = &stop_signal;
	a.eo.stats = &st;
	catch_signals(old);
	rc = zf_export(dir, out, &a.eo, &err);
	restore_signals(old);
	progress_end(&bar);
	if (st.leftovers_removed && !a.quiet)
		cli_error("removed %zu partial temporary file%s left in '%s' by an export that did not finish",
			  st.leftovers_removed, st.leftovers_removed == 1 ? "" : "s", out);
	if (st.leftovers_foreign)
		cli_error("warning: %zu temporary file%s in '%s' belong%s to another user or a running export; left alone",
			  st.leftovers_foreign, st.leftovers_foreign == 1 ? "" : "s", out,
			  st.leftovers_foreign == 1 ? "s" : "");
	if (stop_signal || rc) {
		if (stop_signal)
			cli_error("interrupted; nothing exported to '%s'", out);
		else
			rc = cli_report(&err);
		if (st.complete_left)
			cli_error("%zu complete file%s kept under temporary names: run the same export again to resume",
				  st.complete_left, st.complete_left == 1 ? "" : "s");
		if (stop_signal)
			rc = 128 + stop_signal;
		goto out;
	}
	if (st.no_proof && !a.eo.no_fsync && !a.quiet)
		cli_error("warning: the file system of '%s' keeps no extended attributes: an interrupted export into it cannot resume", out);
	secs = progress_elapsed(&bar);
	if (st.kept_files && !a.quiet)
		cli_error("kept %zu file%s (%s) already complete from an earlier export",
			  st.kept_files, st.kept_files == 1 ? "" : "s",
			  cli_human_size(st.kept_bytes, size, sizeof(size)));
	if (!a.quiet && !st.written_files)
		cli_error("nothing to write: %s %zu file%s in '%s' %s complete and match",
			  di->n_files == 1 ? "the" : "all", di->n_files,
			  di->n_files == 1 ? "" : "s", out, di->n_files == 1 ? "is" : "are");
	else if (!a.quiet)
		cli_error("exported %zu file%s (%s, %zu shard%s, %s) to '%s' in %.1f s (%s/s)",
			di->n_files, di->n_files == 1 ? "" : "s",
			zf_dtype_torch_name(di->dtype), di->n_shards,
			di->n_shards == 1 ? "" : "s",
			cli_human_size(di->total_bytes, size, sizeof(size)), out, secs,
			cli_human_size(secs > 0 ? (unsigned long long)((double)st.written_bytes / secs) : 0,
				       rate, sizeof(rate)));
	rc = ZF_EXIT_OK;
out:
	zf_hfdir_free(dir);
	zf_ckpt_free(ck);
	return rc;
}
