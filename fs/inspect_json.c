/* SPDX-License-Identifier: MIT */
/*
 * zerofs inspect --json: one object for a program. Its fields only ever
 * grow (tests/lib/zfinspect.py and users' scripts read them); zerofs(1)
 * describes each.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "inspect.h"

/* The runs holding tensor i's bytes, in order (zf_ckpt_map()), as
 * [file, offset, length] triples. */
static cJSON *extents_json(const struct zf_ckpt *ck, size_t i)
{
	const struct zf_tensor *t = zf_ckpt_tensor(ck, i);
	uint64_t bytes = t->numel * zf_dtype_size(t->src_dtype), off = 0;
	cJSON *ex = cJSON_CreateArray();
	struct zf_run run;

	while (off < bytes && !zf_ckpt_map(ck, i, off, bytes - off, &run)) {
		cJSON *x = cJSON_CreateArray();

		cJSON_AddItemToArray(x, cJSON_CreateNumber(run.file));
		cJSON_AddItemToArray(x, cJSON_CreateNumber((double)run.offset));
		cJSON_AddItemToArray(x, cJSON_CreateNumber((double)run.len));
		cJSON_AddItemToArray(ex, x);
		off += run.len;
	}
	return ex;
}

static cJSON *tensor_json(const struct zf_ckpt *ck, size_t i, bool extents)
{
	const struct zf_tensor *t = zf_ckpt_tensor(ck, i);
	cJSON *o = cJSON_CreateObject(), *shape = cJSON_CreateArray();

	cJSON_AddStringToObject(o, "name", t->name);
	for (uint32_t k = 0; k < t->ndim; k++)
		cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[k]));
	cJSON_AddItemToObject(o, "shape", shape);
	cJSON_AddStringToObject(o, "dtype", zf_dtype_torch_name(t->src_dtype));
	cJSON_AddStringToObject(o, "model_dtype", zf_dtype_torch_name(t->model_dtype));
	cJSON_AddStringToObject(o, "kind", zf_kind_str(t->kind));
	cJSON_AddNumberToObject(o, "numel", (double)t->numel);
	if (t->kind == ZF_KIND_ALIAS)
		cJSON_AddStringToObject(o, "source", zf_ckpt_tensor(ck, t->alias_of)->name);
	else if (t->same_as != (size_t)-1)
		cJSON_AddStringToObject(o, "same_as", zf_ckpt_tensor(ck, t->same_as)->name);
	if (t->from_base)
		cJSON_AddBoolToObject(o, "from_base", true);
	if (extents && t->kind != ZF_KIND_ALIAS)
		cJSON_AddItemToObject(o, "extents", extents_json(ck, i));
	return o;
}

static cJSON *error_json(const struct zf_error *err)
{
	cJSON *e = cJSON_CreateObject();

	cJSON_AddStringToObject(e, "status", zf_status_str(err->status));
	cJSON_AddStringToObject(e, "where", err->where);
	cJSON_AddStringToObject(e, "message", err->msg);
	return e;
}

cJSON *inspect_error_json(const struct zf_error *err)
{
	return error_json(err);
}

cJSON *inspect_served_json(const struct inspect_served *s)
{
	cJSON *o = cJSON_CreateObject(), *files;
	const struct zf_hfdir_info *d;

	if (!s->dir) {
		cJSON_AddItemToObject(o, "error", error_json(&s->err));
		return o;
	}
	d = zf_hfdir_info(s->dir);
	cJSON_AddStringToObject(o, "dtype", zf_dtype_torch_name(d->dtype));
	cJSON_AddNumberToObject(o, "max_shard_size",
				(double)(s->opts.max_shard_size ? s->opts.max_shard_size
								: ZF_DEFAULT_SHARD_SIZE));
	cJSON_AddNumberToObject(o, "shards", (double)d->n_shards);
	cJSON_AddNumberToObject(o, "tensor_bytes", (double)d->tensor_bytes);
	cJSON_AddNumberToObject(o, "total_bytes", (double)d->total_bytes);
	files = cJSON_AddArrayToObject(o, "files");
	for (size_t i = 0; i < d->n_files; i++)
		cJSON_AddItemToArray(files, cJSON_CreateString(zf_hfdir_file(s->dir, i)->name));
	return o;
}

/* {path, checkpoints: [{name, served, step}], chosen}. */
static cJSON *run_json(const struct zf_runfolder *run, const struct zf_ckpt_info *ci)
{
	const struct zf_run_entry *chosen = inspect_chosen_entry(run, ci);
	cJSON *o = cJSON_CreateObject(), *list;

	cJSON_AddStringToObject(o, "path", zf_runfolder_path(run));
	list = cJSON_AddArrayToObject(o, "checkpoints");
	for (size_t i = 0; i < zf_runfolder_count(run); i++) {
		const struct zf_run_entry *e = zf_runfolder_entry(run, i);
		cJSON *x = cJSON_CreateObject();

		cJSON_AddStringToObject(x, "name", e->name);
		cJSON_AddStringToObject(x, "served", e->served);
		if (e->step != UINT64_MAX)
			cJSON_AddNumberToObject(x, "step", (double)e->step);
		cJSON_AddItemToArray(list, x);
	}
	if (chosen)
		cJSON_AddStringToObject(o, "chosen", chosen->name);
	else
		cJSON_AddNullToObject(o, "chosen");
	return o;
}

int inspect_print_json(const struct inspect_args *a, const struct zf_ckpt *ck,
		       const struct zf_runfolder *run, const struct inspect_served *asked,
		       const struct inspect_served *dflt)
{
	const struct zf_ckpt_info *ci = zf_ckpt_info(ck);
	cJSON *root = cJSON_CreateObject(), *files = cJSON_CreateArray();
	cJSON *tensors = cJSON_CreateArray(), *counts, *tok;
	size_t n[4] = { 0 };
	char *text;

	cJSON_AddStringToObject(root, "path", ci->path);
	cJSON_AddStringToObject(root, "layout", zf_layout_str(ci->layout));
	cJSON_AddStringToObject(root, "tag", ci->tag);
	cJSON_AddStringToObject(root, "chosen_by", zf_pick_str(ci->pick));
	if (run && zf_runfolder_count(run) > 1)
		cJSON_AddItemToObject(root, "run", run_json(run, ci));
	cJSON_AddStringToObject(root, "ds_version", ci->ds_version);
	cJSON_AddNumberToObject(root, "stage", ci->stage);
	cJSON_AddNumberToObject(root, "world_size", ci->world_size);
	cJSON_AddStringToObject(root, "optimizer", inspect_optimizer_str(ci));
	cJSON_AddStringToObject(root, "train_dtype", zf_dtype_torch_name(ci->train_dtype));
	if (ci->global_steps != UINT64_MAX)
		cJSON_AddNumberToObject(root, "global_steps", (double)ci->global_steps);
	cJSON_AddNumberToObject(root, "n_params", (double)ci->n_params);
	if (ci->base_dir)
		cJSON_AddStringToObject(root, "base", ci->base_dir);
	if (ci->incomplete) {
		cJSON *inc = cJSON_AddObjectToObject(root, "incomplete");

		cJSON_AddStringToObject(inc, "where", ci->incomplete_where);
		cJSON_AddStringToObject(inc, "message", ci->incomplete);
	}
	for (size_t i = 0; i < ci->n_tensors; i++)
		n[zf_ckpt_tensor(ck, i)->kind]++;
	counts = cJSON_AddObjectToObject(root, "tensor_counts");
	for (int k = 0; k < 4; k++)
		cJSON_AddNumberToObject(counts, zf_kind_str((enum zf_tensor_kind)k), (double)n[k]);
	cJSON_AddNumberToObject(root, "files_bytes", (double)ci->files_bytes);
	for (size_t i = 0; i < ci->n_files; i++) {
		const struct zf_source *s = zf_ckpt_file(ck, i);
		cJSON *f = cJSON_CreateObject();

		cJSON_AddStringToObject(f, "name", zf_source_name(s));
		cJSON_AddStringToObject(f, "path", zf_source_path(s));
		cJSON_AddNumberToObject(f, "size", (double)zf_source_size(s));
		cJSON_AddStringToObject(f, "format", inspect_file_format(ck, i));
		cJSON_AddItemToArray(files, f);
	}
	cJSON_AddItemToObject(root, "files", files);
	if (asked->dir) {
		const struct zf_hfdir_info *d = zf_hfdir_info(asked->dir);

		if (d->config_source)
			cJSON_AddStringToObject(root, "config_source", d->config_source);
		else
			cJSON_AddNullToObject(root, "config_source");
		tok = cJSON_AddArrayToObject(root, "tokenizer");
		for (size_t i = 0; i < d->n_files; i++) {
			const struct zf_vfile *f = zf_hfdir_file(asked->dir, i);

			if (f->kind == ZF_VF_PASSTHROUGH && inspect_is_tokenizer_file(f->name))
				cJSON_AddItemToArray(tok, cJSON_CreateString(f->name));
		}
	}
	cJSON_AddItemToObject(root, "served", inspect_served_json(asked));
	if (dflt)
		cJSON_AddItemToObject(root, "served_default", inspect_served_json(dflt));
	for (size_t i = 0; i < ci->n_tensors; i++)
		if (inspect_selected(a, zf_ckpt_tensor(ck, i)->name))
			cJSON_AddItemToArray(tensors, tensor_json(ck, i, a->extents));
	cJSON_AddItemToObject(root, "tensors", tensors);
	text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!text) {
		cli_error("out of memory");
		return ZF_EXIT_SYSTEM;
	}
	puts(text);
	free(text);
	return ZF_EXIT_OK;
}
