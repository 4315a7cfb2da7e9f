/* SPDX-License-Identifier: MIT */
/*
 * zerofs verify: is a checkpoint sound? Opens it and builds its directory
 * (those are the first checks), runs zf_verify() (verify.h), and prints
 * one line per check and per digest, for people or, with --json, for
 * programs.
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
#include <getopt.h>
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
	"consistent, every tensor inside its file, no overlaps) and reads no data.\n\n"
	"  --digests             also read every served byte: an XXH3-128 digest per file\n"
	"                        and per tensor (in the served dtype), and NaN/Inf counts\n"
	"  --deep                --digests, plus the CRC-32 of every record of every file\n"
	"  --json                print one JSON object instead of lines of text\n"
	"  --threads N           reading threads (default 2)\n"
	"  -q, --quiet           no progress bar\n" SERVE_HELP
	"  -h, --help            show this help\n\n"
	"Exit status: 0 sound, 1 unsound, 2 usage, 3 cannot judge (no such checkpoint,\n"
	"or an unsupported kind), 4 system error.\n";

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
		printf("%-5s %-10s '%s': %s\n", ok ? "ok" : "FAIL", check, where, msg);
	else
		printf("%-5s %-10s %s\n", ok ? "ok" : "FAIL", check, msg);
}

/* The exit code for a checkpoint that fails to open or build. */
static int open_failed(struct out *o, const char *check, const struct zf_error *err)
{
	switch (err->status) {
	case ZF_EFORMAT:
	case ZF_ENOTFOUND:
	case ZF_ECHANGED:
		line(o, check, false, err->where, err->msg);
		return ZF_EXIT_UNSOUND;
	default:
		return cli_report(err);
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
			printf("file   %s  %s\n", hex, f->f->name);
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
			printf("tensor %s  %-8s %s\n", hex, zf_dtype_torch_name(t->vt->dtype),
			       t->vt->name);
		}
	}
}

/* Prints the verdict; returns the exit code. */
static int finish(struct out *o, bool interrupted)
{
	char *text;

	if (o->json) {
		cJSON_AddBoolToObject(o->root, "sound", !o->problems && !interrupted);
		cJSON_AddNumberToObject(o->root, "problems", (double)o->problems);
		if (interrupted)
			cJSON_AddBoolToObject(o->root, "interrupted", true);
		text = cJSON_Print(o->root);
		if (text)
			puts(text);
		free(text);
	} else if (!interrupted) {
		if (o->problems)
			printf("unsound: %zu problem%s\n", o->problems, o->problems == 1 ? "" : "s");
		else
			printf("sound\n");
	}
	fflush(stdout);
	if (interrupted)
		return 128 + stop_signal;
	return o->problems ? ZF_EXIT_UNSOUND : ZF_EXIT_OK;
}

int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		SERVE_LONG_OPTS,
		{ "deep", no_argument, NULL, 2000 },
		{ "digests", no_argument, NULL, 2001 },
		{ "json", no_argument, NULL, 2002 },
		{ "threads", required_argument, NULL, 2003 },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	struct serve_opts so = { 0 };
	struct zf_verify_options vo = { 0 };
	struct zf_verify_report *rep = NULL;
	struct zf_error err = { 0 };
	struct zf_ckpt *ck = NULL;
	const struct zf_ckpt_info *ci;
	struct zf_hfdir *dir = NULL;
	struct out o = { 0 };
	struct sigaction sa, old[3];
	struct progress bar;
	struct stat st;
	bool quiet = false;
	const char *path;
	char msg[512], size[32];
	int c, rc;

	optind = 0;
	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case 2000:
			vo.crc = vo.data = true;
			break;
		case 2001:
			vo.data = true;
			break;
		case 2002:
			o.json = true;
			break;
		case 2003:
			rc = cli_number("verify", "threads", optarg, 1,
					ZF_EXPORT_MAX_THREADS, &vo.threads);
			if (rc)
				return rc;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			fputs(verify_usage, stdout);
			return ZF_EXIT_OK;
		default:
			rc = serve_opt(&so, c, optarg, "verify");
			if (rc)
				return rc;
		}
	}
	if (optind != argc - 1)
		return cli_usage("verify", "expected one checkpoint folder");
	path = argv[optind];
	/* Nothing there: no checkpoint to call sound or unsound. */
	if (stat(path, &st) < 0) {
		cli_error("'%s': no such file or folder", path);
		return ZF_EXIT_INPUT;
	}

	if (o.json) {
		o.root = cJSON_CreateObject();
		cJSON_AddStringToObject(o.root, "checkpoint", path);
		cJSON_AddBoolToObject(o.root, "deep", vo.crc);
		cJSON_AddBoolToObject(o.root, "digests", vo.data);
		o.checks = cJSON_AddArrayToObject(o.root, "checks");
		if (!o.checks) {
			cli_error("out of memory");
			rc = ZF_EXIT_SYSTEM;
			goto out;
		}
	}
	if (zf_ckpt_open(path, &so.ckpt, &ck, &err)) {
		rc = open_failed(&o, "open", &err);
		if (rc == ZF_EXIT_UNSOUND)
			rc = finish(&o, false);
		goto out;
	}
	ci = zf_ckpt_info(ck);
	snprintf(msg, sizeof(msg), "tag %s, ZeRO-%d, %u rank%s, %zu files, %zu tensors",
		 ci->tag, ci->stage, ci->world_size, ci->world_size == 1 ? "" : "s",
		 ci->n_files, ci->n_tensors);
	line(&o, "open", true, path, msg);
	if (zf_hfdir_build(ck, &so.dir, &dir, &err)) {
		rc = open_failed(&o, "directory", &err);
		if (rc == ZF_EXIT_UNSOUND)
			rc = finish(&o, false);
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
			cJSON_AddStringToObject(o.root, "tag", ci->tag);
			cJSON_AddStringToObject(o.root, "dtype", zf_dtype_torch_name(di->dtype));
		}
	}

	progress_init(&bar, "verify", !quiet && (vo.data || vo.crc));
	vo.progress = progress_update;
	vo.progress_arg = &bar;
	vo.stop = &stop_signal;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < 3; i++)
		sigaction(sigs[i], &sa, &old[i]);
	rc = zf_verify(dir, &vo, &rep, &err);
	for (size_t i = 0; i < 3; i++)
		sigaction(sigs[i], &old[i], NULL);
	progress_end(&bar);
	if (rc) {
		rc = cli_report(&err);
		goto out;
	}
	for (size_t i = 0; i < rep->n_findings; i++) {
		const struct zf_verify_finding *f = &rep->findings[i];

		line(&o, f->check, f->ok, f->where, f->msg);
	}
	/* Problems counted but not listed are in the summary line already. */
	o.problems = rep->n_problems;
	print_digests(&o, rep);
	if (rep->interrupted)
		cli_error("interrupted before the checks were done; no verdict");
	rc = finish(&o, rep->interrupted);
out:
	cJSON_Delete(o.root);
	zf_verify_free(rep);
	zf_hfdir_free(dir);
	zf_ckpt_free(ck);
	return rc;
}
