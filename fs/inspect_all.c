/* SPDX-License-Identifier: MIT */
/*
 * zerofs inspect --all: every checkpoint of a run folder, one line each
 * (or one JSON object each): step, stage, ranks, dtype, parameters, size
 * and what a mount would serve, or why it cannot be opened. Each is
 * opened in turn, metadata only, and closed before the next.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "inspect.h"

struct row {
	const struct zf_run_entry *e;
	struct zf_ckpt *ck;
	struct inspect_served s;
	struct zf_error err; /* when ck is NULL */
};

static void open_row(const struct inspect_args *a, const char *path, struct row *r)
{
	struct zf_ckpt_options o = a->so.ckpt;

	o.tag = r->e->name;
	memset(&r->err, 0, sizeof(r->err));
	r->s.dir = NULL;
	r->ck = NULL;
	if (zf_ckpt_open(path, &o, &r->ck, &r->err))
		return;
	inspect_served(r->ck, &a->so.dir, &r->s);
}

static void close_row(struct row *r)
{
	inspect_served_release(&r->s);
	zf_ckpt_free(r->ck);
	r->ck = NULL;
}

static void text_row(const struct row *r, int w, bool newest)
{
	const struct zf_ckpt_info *ci;
	char step[24] = "-", num[32], size[32], served[ZF_ERROR_MSG_MAX + 32];

	if (r->e->step != UINT64_MAX)
		snprintf(step, sizeof(step), "%" PRIu64, r->e->step);
	printf("%-*s %c %8s  ", w, cli_esc(r->e->name), newest ? '*' : ' ', step);
	if (!r->ck) {
		char msg[ZF_ERROR_WHERE_MAX + ZF_ERROR_MSG_MAX + 8];

		printf("cannot be opened: %s\n", cli_esc(zf_error_format(&r->err, msg, sizeof(msg))));
		return;
	}
	ci = zf_ckpt_info(r->ck);
	if (r->s.dir) {
		const struct zf_hfdir_info *d = zf_hfdir_info(r->s.dir);
		char b[32];

		snprintf(served, sizeof(served), "%s in %zu shard%s",
			 cli_human_size(d->tensor_bytes, b, sizeof(b)), d->n_shards,
			 d->n_shards == 1 ? "" : "s");
	} else {
		snprintf(served, sizeof(served), "a mount fails: %s", r->s.err.msg);
	}
	printf("%4d  %5u  %-9s  %8s  %9s  %s\n", ci->stage, ci->world_size,
	       zf_dtype_torch_name(ci->train_dtype), cli_human_count(ci->n_params, num, sizeof(num)),
	       cli_human_size(ci->files_bytes, size, sizeof(size)), cli_esc(served));
}

static cJSON *json_row(const struct row *r, bool newest)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "name", r->e->name);
	cJSON_AddStringToObject(o, "served_as", r->e->served);
	if (r->e->step != UINT64_MAX)
		cJSON_AddNumberToObject(o, "step", (double)r->e->step);
	cJSON_AddBoolToObject(o, "newest", newest);
	if (!r->ck) {
		cJSON_AddItemToObject(o, "error", inspect_error_json(&r->err));
	} else {
		const struct zf_ckpt_info *ci = zf_ckpt_info(r->ck);

		cJSON_AddStringToObject(o, "tag", ci->tag);
		cJSON_AddStringToObject(o, "layout", zf_layout_str(ci->layout));
		cJSON_AddNumberToObject(o, "stage", ci->stage);
		cJSON_AddNumberToObject(o, "world_size", ci->world_size);
		cJSON_AddStringToObject(o, "train_dtype", zf_dtype_torch_name(ci->train_dtype));
		if (ci->global_steps != UINT64_MAX)
			cJSON_AddNumberToObject(o, "global_steps", (double)ci->global_steps);
		cJSON_AddNumberToObject(o, "n_params", (double)ci->n_params);
		cJSON_AddNumberToObject(o, "files_bytes", (double)ci->files_bytes);
		cJSON_AddItemToObject(o, "served", inspect_served_json(&r->s));
	}
	return o;
}

int inspect_all(const struct inspect_args *a)
{
	struct zf_error err = { 0 };
	struct zf_runfolder *run;
	cJSON *root = NULL, *list = NULL;
	size_t n, newest = SIZE_MAX;
	enum zf_pick how = ZF_PICK_GIVEN;
	int w = 10, rc = ZF_EXIT_OK;

	if (zf_runfolder_scan(a->path, &run, &err))
		return cli_report(&err);
	n = zf_runfolder_count(run);
	if (!n) {
		zf_runfolder_free(run);
		cli_error("'%s': no folder in it holds a checkpoint; --all lists the checkpoints of a run folder (a Trainer output_dir, a DeepSpeed save folder, an XTuner work_dir)",
			  a->path);
		return ZF_EXIT_INPUT;
	}
	if (zf_runfolder_pick(run, &newest, &how, NULL))
		newest = SIZE_MAX;
	for (size_t i = 0; i < n; i++)
		if ((int)strlen(cli_esc(zf_runfolder_entry(run, i)->name)) > w)
			w = (int)strlen(cli_esc(zf_runfolder_entry(run, i)->name));
	if (a->json) {
		root = cJSON_CreateObject();
		cJSON_AddStringToObject(root, "path", a->path);
		if (newest != SIZE_MAX) {
			cJSON_AddStringToObject(root, "newest", zf_runfolder_entry(run, newest)->name);
			cJSON_AddStringToObject(root, "chosen_by", zf_pick_str(how));
		} else {
			cJSON_AddNullToObject(root, "newest");
		}
		list = cJSON_AddArrayToObject(root, "checkpoints");
	} else {
		printf("run          %s: %zu checkpoint%s\n", cli_esc(a->path), n, n == 1 ? "" : "s");
		if (newest != SIZE_MAX)
			printf("newest       %s (*), %s\n", cli_esc(zf_runfolder_entry(run, newest)->name),
			       serve_pick_words(how));
		printf("\n%-*s   %8s  %4s  %5s  %-9s  %8s  %9s  %s\n", w, "CHECKPOINT", "STEP", "ZERO",
		       "RANKS", "DTYPE", "PARAMS", "FILES", "SERVED");
	}
	for (size_t i = 0; i < n; i++) {
		struct row r = { .e = zf_runfolder_entry(run, i) };

		open_row(a, a->path, &r);
		if (!r.ck || !r.s.dir)
			rc = ZF_EXIT_INPUT;
		if (a->json)
			cJSON_AddItemToArray(list, json_row(&r, i == newest));
		else
			text_row(&r, w, i == newest);
		close_row(&r);
		fflush(stdout);
	}
	if (a->json) {
		char *text = cJSON_PrintUnformatted(root);

		cJSON_Delete(root);
		if (!text) {
			cli_error("out of memory");
			rc = ZF_EXIT_SYSTEM;
		} else {
			puts(text);
			free(text);
		}
	}
	zf_runfolder_free(run);
	return rc;
}
