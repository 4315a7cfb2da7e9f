/* SPDX-License-Identifier: MIT */
/*
 * zerofs verify: is a checkpoint sound? Opens it and builds its directory
 * (those are the first checks), runs zf_verify() (verify.h), and prints
 * one line per check and per digest, for people or, with --json, for
 * programs.
 *
 * It always says what it did not check: plain verify reads no data
 * ("records not read: use --deep"), --digests reads every served byte
 * but not the CRCs. File digests print as xxhsum -H2 does ("HEX  NAME"),
 * so `xxhsum -c` checks a copy against them. With --json every outcome,
 * errors included, is one JSON object on stdout.
 *
 * Exit status (the contract of man/zerofs.1):
 *   0  sound;
 *   1  unsound: a problem was found in what is there, including a
 *      checkpoint that does not open because a file is missing, malformed
 *      or inconsistent, a bad CRC, unreadable data, NaN or Inf values;
 *   2  usage (bad option, CKPT not a folder);
 *   3  cannot judge: CKPT does not exist, or it is a kind of checkpoint
 *      zerofs does not read (unsupported);
 *   4  system error (cannot open a file, out of memory);
 *   128 + N  stopped by signal N before finishing.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "progress.h"
#include "serve_opts.h"
#include "zerofs/verify.h"

static const char verify_usage[] =
	"usage: zerofs verify CKPT [options]\n\n"
	"Checks that the DeepSpeed ZeRO checkpoint CKPT is whole and sound. Without\n"
	"options it checks the metadata only (every rank file present, one save, sizes\n"
	"consistent, every tensor inside its file, no overlaps) and reads no data: the\n"
	"report says so, and what would read it.\n\n"
	"  --digests             also read every served byte: an XXH3-128 digest per file\n"
	"                        (as 'xxhsum -H2' prints it, so 'xxhsum -c' checks a\n"
	"                        copy) and per tensor (in the served dtype), NaN/Inf counts\n"
	"  --deep                --digests, plus the CRC-32 of every record of every file\n"
	"  --json                print one JSON object instead of lines of text (errors too)\n"
	"  --threads N           reading threads, with --digests or --deep (default 2)\n"
	"  -q, --quiet           no progress bar\n" SERVE_HELP
	"  -h, --help            show this help\n\n"
	"Exit status: 0 sound, 1 unsound, 2 usage, 3 cannot judge (no such checkpoint,\n"
	"or an unsupported kind), 4 system error.\n\n"
	"examples:\n"
	"  zerofs verify out/checkpoint-1000\n"
	"  zerofs verify out/checkpoint-1000 --deep --dtype bf16 > model.xxh\n";

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

/* What is printed, gathered as it goes (text is printed at the end too,
 * so both outputs come from one place). */
struct out {
	bool json;
	cJSON *root, *checks;
	size_t problems;
	size_t no_crc;	/* files in torch's legacy format, which has no CRCs */
};

static void line(struct out *o, const char *check, bool ok, const char *where,
		 const char *msg)
{
	if (!ok)
		o->problems++;
	if (o->json) {
		cJSON *c = cJSON_CreateObject();

		cJSON_AddStringToObject(c, "check", check);
		cJSON_AddBoolToObject(c, "ok", ok);
		cJSON_AddStringToObject(c, "where", where ? where : "");
		cJSON_AddStringToObject(c, "message", msg);
		cJSON_AddItemToArray(o->checks, c);
		return;
	}
	if (where && where[0])
		printf("%-5s %-10s '%s': %s\n", ok ? "ok" : "FAIL", check, cli_esc(where),
		       cli_esc(msg));
	else
		printf("%-5s %-10s %s\n", ok ? "ok" : "FAIL", check, cli_esc(msg));
}

/* A check that was not run, and what would run it. */
static void skipped(struct out *o, const char *check, const char *msg)
{
	if (o->json) {
		cJSON *c = cJSON_CreateObject();

		cJSON_AddStringToObject(c, "check", check);
		cJSON_AddStringToObject(c, "message", msg);
		cJSON_AddItemToArray(cJSON_GetObjectItem(o->root, "not_checked"), c);
		return;
	}
	printf("%-5s %-10s %s\n", "skip", check, msg);
}

/*
 * An outcome that is not a verdict (no such checkpoint, a usage error, a
 * system error): with --json one object {"checkpoint", "error": {status,
 * where, message}, "exit"} on stdout, else the usual message on stderr.
 * Returns rc.
 */
static int failed(struct out *o, const char *path, const char *status,
		  const char *where, const char *msg, int rc)
{
	cJSON *root, *e;
	char *text;

	if (!o->json) {
		if (rc == ZF_EXIT_USAGE)
			return cli_usage("verify", "%s", msg);
		if (where && where[0])
			cli_error("'%s': %s", where, msg);
		else
			cli_error("%s", msg);
		return rc;
	}
	root = cJSON_CreateObject();
	if (path)
		cJSON_AddStringToObject(root, "checkpoint", path);
	e = cJSON_AddObjectToObject(root, "error");
	cJSON_AddStringToObject(e, "status", status);
	cJSON_AddStringToObject(e, "where", where ? where : "");
	cJSON_AddStringToObject(e, "message", msg);
	cJSON_AddNumberToObject(root, "exit", rc);
	text = cJSON_Print(root);
	if (text)
		puts(text);
	free(text);
	cJSON_Delete(root);
	return rc;
}

/* The exit code for a checkpoint that fails to open or build. */
static int open_failed(struct out *o, const char *path, const char *check,
		       const struct zf_error *err)
{
	switch (err->status) {
	case ZF_EFORMAT:
	case ZF_ENOTFOUND:
	case ZF_ECHANGED:
		line(o, check, false, err->where, err->msg);
		return ZF_EXIT_UNSOUND;
	default:
		return failed(o, path, zf_status_str(err->status), err->where,
			      err->msg[0] ? err->msg : zf_status_str(err->status),
			      cli_exit_code(err->status));
	}
}

static void print_digests(struct out *o, const struct zf_verify_report *r)
{
	cJSON *files = NULL, *tensors = NULL;
	char hex[33];

	if (o->json) {
		files = cJSON_AddArrayToObject(o->root, "files");
		tensors = cJSON_AddArrayToObject(o->root, "tensors");
	}
	for (size_t i = 0; i < r->n_files; i++) {
		const struct zf_verify_file *f = &r->files[i];

		if (!f->read)
			continue;
		zf_digest_hex(&f->digest, hex);
		if (o->json) {
			cJSON *x = cJSON_CreateObject();

			cJSON_AddStringToObject(x, "name", f->f->name);
			cJSON_AddNumberToObject(x, "size", (double)f->f->size);
			cJSON_AddStringToObject(x, "xxh3_128", hex);
			cJSON_AddItemToArray(files, x);
		} else {
			/* xxhsum -H2's line: `xxhsum -c` reads these and
			 * skips the other lines of the report. */
			printf("%s  %s\n", hex, cli_esc(f->f->name));
		}
	}
	for (size_t i = 0; i < r->n_tensors; i++) {
		const struct zf_verify_tensor *t = &r->tensors[i];

		if (!t->read)
			continue;
		zf_digest_hex(&t->digest, hex);
		if (o->json) {
			cJSON *x = cJSON_CreateObject(), *shape = cJSON_CreateArray();

			cJSON_AddStringToObject(x, "name", t->vt->name);
			cJSON_AddStringToObject(x, "file", t->file->name);
			cJSON_AddStringToObject(x, "dtype", zf_dtype_torch_name(t->vt->dtype));
			for (uint32_t k = 0; k < t->vt->src->ndim; k++)
				cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->vt->src->shape[k]));
			cJSON_AddItemToObject(x, "shape", shape);
			cJSON_AddStringToObject(x, "xxh3_128", hex);
			cJSON_AddNumberToObject(x, "nan", (double)t->n_nan);
			cJSON_AddNumberToObject(x, "inf", (double)t->n_inf);
			cJSON_AddItemToArray(tensors, x);
		} else {
			printf("tensor %s %-8s %s\n", hex, zf_dtype_torch_name(t->vt->dtype),
			       cli_esc(t->vt->name));
		}
	}
}

/* What was not read or could not be checked, said with the verdict: a
 * sound metadata check says nothing about the bytes, and a deep one
 * nothing about the CRCs a legacy file does not have. */
static const char *scope(const struct out *o, const struct zf_verify_options *vo,
			 char *buf, size_t size)
{
	if (!vo->data)
		return " (metadata only: no data was read; records not read: use --deep)";
	if (!vo->crc)
		return " (records' CRC-32 not checked: use --deep)";
	if (o->no_crc) {
		snprintf(buf, size, " (%zu file%s in torch's legacy format: no CRC-32 to check)",
			 o->no_crc, o->no_crc == 1 ? "" : "s");
		return buf;
	}
	return "";
}

/*
 * Prints the verdict; returns the exit code. A problem found in what is
 * there makes it unsound (1) even when the checkpoint is not the whole
 * model; otherwise a partial checkpoint cannot be judged (3).
 */
static int finish(struct out *o, const struct zf_verify_options *vo, bool interrupted,
		  const char *cannot_judge)
{
	bool judge = !o->problems && cannot_judge;
	char *text, buf[128];

	if (o->json) {
		if (judge)
			cJSON_AddNullToObject(o->root, "sound");
		else
			cJSON_AddBoolToObject(o->root, "sound", !o->problems && !interrupted);
		cJSON_AddNumberToObject(o->root, "problems", (double)o->problems);
		if (cannot_judge)
			cJSON_AddStringToObject(o->root, "cannot_judge", cannot_judge);
		if (interrupted)
			cJSON_AddBoolToObject(o->root, "interrupted", true);
		text = cJSON_Print(o->root);
		if (text)
			puts(text);
		free(text);
	} else if (!interrupted) {
		if (o->problems)
			printf("unsound: %zu problem%s%s\n", o->problems,
			       o->problems == 1 ? "" : "s", scope(o, vo, buf, sizeof(buf)));
		else if (judge)
			printf("cannot judge: %s\n", cli_esc(cannot_judge));
		else
			printf("sound%s\n", scope(o, vo, buf, sizeof(buf)));
	}
	fflush(stdout);
	if (interrupted)
		return 128 + stop_signal;
	if (o->problems)
		return ZF_EXIT_UNSOUND;
	return judge ? ZF_EXIT_INPUT : ZF_EXIT_OK;
}

/* The checks a run leaves out, as "skip" lines (or not_checked). */
static void say_skipped(struct out *o, const struct zf_verify_options *vo)
{
	if (!vo->data)
		skipped(o, "data", "tensor data not read: use --digests (digests, NaN/Inf) or --deep");
	if (!vo->crc)
		skipped(o, "crc", "records not read: use --deep (the CRC-32 of every record)");
}

struct verify_args {
	struct serve_opts so;
	struct zf_verify_options vo;
	bool quiet, threads;
};

static int on_opt(void *ctx, int c, const char *arg)
{
	struct verify_args *a = ctx;

	switch (c) {
	case 2000:
		a->vo.crc = a->vo.data = true;
		return CLI_GO_ON;
	case 2001:
		a->vo.data = true;
		return CLI_GO_ON;
	case 2002:
		return CLI_GO_ON; /* --json: seen before parsing */
	case 2003:
		a->threads = true;
		return cli_number("verify", "threads", arg, 1, ZF_EXPORT_MAX_THREADS,
				  &a->vo.threads);
	case 'q':
		a->quiet = true;
		return CLI_GO_ON;
	}
	return serve_opt(&a->so, c, arg, "verify");
}

static const struct option verify_opts[] = {
	SERVE_LONG_OPTS,
	{ "deep", no_argument, NULL, 2000 },
	{ "digests", no_argument, NULL, 2001 },
	{ "json", no_argument, NULL, 2002 },
	{ "threads", required_argument, NULL, 2003 },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const struct cli_cmd verify_cmd = {
	"verify", verify_usage, "qh", verify_opts, 1, 1, "expected one checkpoint folder",
};

/* --json anywhere before "--": usage errors are then JSON too. */
static bool wants_json(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--json"))
			return true;
	return false;
}

int cmd_verify(int argc, char **argv)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	struct verify_args a = { 0 };
	struct zf_verify_report *rep = NULL;
	struct zf_error err = { 0 };
	struct zf_ckpt *ck = NULL;
	const struct zf_ckpt_info *ci;
	struct zf_hfdir *dir = NULL;
	struct out o = { 0 };
	struct sigaction sa, old[3];
	struct progress bar;
	struct stat st;
	const char *path, *usage_msg;
	char msg[512], size[32], *args[CLI_MAX_ARGS];
	int nargs, rc;

	o.json = wants_json(argc, argv);
	rc = cli_parse(&verify_cmd, argc, argv, on_opt, &a, args, &nargs,
		       o.json ? &usage_msg : NULL);
	if (rc == ZF_EXIT_USAGE && o.json && usage_msg[0])
		return failed(&o, NULL, "usage", "", usage_msg, rc);
	if (rc != CLI_GO_ON)
		return rc;
	if (a.threads && !a.vo.data)
		return failed(&o, NULL, "usage", "",
			      "--threads: plain verify reads no data; add --digests or --deep",
			      ZF_EXIT_USAGE);
	path = args[0];
	/* Nothing there: no checkpoint to call sound or unsound. */
	if (stat(path, &st) < 0)
		return failed(&o, path, zf_status_str(ZF_ENOTFOUND), path,
			      "no such file or folder", ZF_EXIT_INPUT);

	if (o.json) {
		o.root = cJSON_CreateObject();
		cJSON_AddStringToObject(o.root, "checkpoint", path);
		cJSON_AddBoolToObject(o.root, "deep", a.vo.crc);
		cJSON_AddBoolToObject(o.root, "digests", a.vo.data);
		o.checks = cJSON_AddArrayToObject(o.root, "checks");
		if (!o.checks || !cJSON_AddArrayToObject(o.root, "not_checked")) {
			cli_error("out of memory");
			rc = ZF_EXIT_SYSTEM;
			goto out;
		}
	}
	if (zf_ckpt_open(path, &a.so.ckpt, &ck, &err)) {
		rc = open_failed(&o, path, "open", &err);
		if (rc == ZF_EXIT_UNSOUND) {
			say_skipped(&o, &a.vo);
			rc = finish(&o, &a.vo, false, NULL);
		}
		goto out;
	}
	ci = zf_ckpt_info(ck);
	for (size_t i = 0; i < ci->n_files; i++)
		o.no_crc += zf_ckpt_file_kind(ck, i) == ZF_CONTAINER_LEGACY;
	if (o.json && o.no_crc)
		cJSON_AddNumberToObject(o.root, "files_without_crc", (double)o.no_crc);
	snprintf(msg, sizeof(msg), "tag %s, ZeRO-%d, %u rank%s, %zu files, %zu tensors",
		 ci->tag, ci->stage, ci->world_size, ci->world_size == 1 ? "" : "s",
		 ci->n_files, ci->n_tensors);
	line(&o, "open", true, path, msg);
	/* A partial checkpoint is checked as far as it goes; the verdict
	 * then says it cannot judge the whole. */
	a.so.dir.allow_incomplete = true;
	if (zf_hfdir_build(ck, &a.so.dir, &dir, &err)) {
		rc = open_failed(&o, path, "directory", &err);
		if (rc == ZF_EXIT_UNSOUND) {
			say_skipped(&o, &a.vo);
			rc = finish(&o, &a.vo, false, NULL);
		}
		goto out;
	}
	{
		const struct zf_hfdir_info *di = zf_hfdir_info(dir);
		size_t served = 0;

		for (size_t i = 0; i < di->n_files; i++)
			served += zf_hfdir_file(dir, i)->n_tensors;
		snprintf(msg, sizeof(msg), "%zu file%s, %zu tensors as %s in %zu shard%s, %s",
			 di->n_files, di->n_files == 1 ? "" : "s", served,
			 zf_dtype_torch_name(di->dtype), di->n_shards,
			 di->n_shards == 1 ? "" : "s",
			 cli_human_size(di->total_bytes, size, sizeof(size)));
		line(&o, "directory", true, "", msg);
		if (o.json) {
			cJSON *lo = cJSON_AddArrayToObject(o.root, "left_out");

			cJSON_AddStringToObject(o.root, "tag", ci->tag);
			cJSON_AddStringToObject(o.root, "dtype", zf_dtype_torch_name(di->dtype));
			for (size_t i = 0; lo && i < di->n_left_out; i++) {
				cJSON *e = cJSON_CreateObject();

				cJSON_AddStringToObject(e, "path", di->left_out[i].path);
				cJSON_AddStringToObject(e, "why", di->left_out[i].why);
				cJSON_AddItemToArray(lo, e);
			}
		}
		/* What the mount would leave out, verify names too. */
		serve_warn_left_out(dir);
	}

	progress_init(&bar, "verify", !a.quiet && (a.vo.data || a.vo.crc));
	a.vo.progress = progress_update;
	a.vo.progress_arg = &bar;
	a.vo.stop = &stop_signal;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < 3; i++)
		sigaction(sigs[i], &sa, &old[i]);
	rc = zf_verify(dir, &a.vo, &rep, &err);
	for (size_t i = 0; i < 3; i++)
		sigaction(sigs[i], &old[i], NULL);
	progress_end(&bar);
	if (rc) {
		rc = failed(&o, path, zf_status_str(err.status), err.where,
			    err.msg[0] ? err.msg : zf_status_str(err.status),
			    cli_exit_code(err.status));
		goto out;
	}
	for (size_t i = 0; i < rep->n_findings; i++) {
		const struct zf_verify_finding *f = &rep->findings[i];

		line(&o, f->check, f->ok, f->where, f->msg);
	}
	/* Problems counted but not listed are in the summary line already. */
	o.problems = rep->n_problems;
	say_skipped(&o, &a.vo);
	if (rep->cannot_judge)
		skipped(&o, "whole", "not the whole model: the checks cover what the checkpoint holds");
	print_digests(&o, rep);
	if (rep->interrupted)
		cli_error("interrupted before the checks were done; no verdict");
	rc = finish(&o, &a.vo, rep->interrupted, rep->cannot_judge);
out:
	cJSON_Delete(o.root);
	zf_verify_free(rep);
	zf_hfdir_free(dir);
	zf_ckpt_free(ck);
	return rc;
}
