/* SPDX-License-Identifier: MIT */
/*
 * zerofs inspect: what a checkpoint holds, for a person (a summary and a
 * table of tensors in state_dict order) or for a program (--json). Reads
 * metadata only, so it answers at once on a checkpoint of any size.
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "zerofs/ckpt.h"

static const char inspect_usage[] =
	"usage: zerofs inspect CKPT [--tag TAG] [--json [--extents]]\n\n"
	"Shows what a DeepSpeed ZeRO checkpoint holds, reading metadata only.\n\n"
	"  -t, --tag TAG   read this tag folder instead of the one 'latest' names\n"
	"  -j, --json      print one JSON object (described in zerofs(1))\n"
	"  -e, --extents   with --json: add each tensor's byte ranges in the source files\n"
	"  -h, --help      show this help\n\n"
	"examples:\n"
	"  zerofs inspect out/checkpoint-1000\n"
	"  zerofs inspect out/checkpoint-1000 --json --extents\n";

static void shape_str(const struct zf_tensor *t, char *buf, size_t size)
{
	size_t used = 0;

	used += (size_t)snprintf(buf, size, "[");
	for (uint32_t i = 0; i < t->ndim && used < size; i++)
		used += (size_t)snprintf(buf + used, size - used, "%s%" PRIu64,
					 i ? ", " : "", t->shape[i]);
	if (used < size)
		snprintf(buf + used, size - used, "]");
}

static const char *optimizer_str(const struct zf_ckpt_info *ci)
{
	if (ci->optimizer == ZF_OPT_BF16)
		return "BF16_Optimizer";
	return ci->stage == 3 ? "DeepSpeedZeroOptimizer_Stage3" : "DeepSpeedZeroOptimizer";
}

static void print_text(const struct zf_ckpt *ck)
{
	const struct zf_ckpt_info *ci = zf_ckpt_info(ck);
	size_t counts[4] = { 0 };
	uint64_t fp32 = 0, native = 0;
	char a[32], b[32];
	size_t w = 4;

	for (size_t i = 0; i < ci->n_tensors; i++) {
		const struct zf_tensor *t = zf_ckpt_tensor(ck, i);

		counts[t->kind]++;
		if (strlen(cli_esc(t->name)) > w)
			w = strlen(cli_esc(t->name));
		if (t->kind == ZF_KIND_ALIAS)
			continue;
		fp32 += t->numel * (zf_dtype_is_float(t->model_dtype) ? 4 : zf_dtype_size(t->model_dtype));
		native += t->numel * zf_dtype_size(t->model_dtype);
	}
	printf("checkpoint   %s (%s)\n", cli_esc(ci->path), zf_layout_str(ci->layout));
	printf("tag          %s\n", cli_esc(ci->tag));
	printf("deepspeed    %s\n", ci->ds_version[0] ? cli_esc(ci->ds_version) : "unknown");
	printf("zero stage   %d\n", ci->stage);
	printf("world size   %u\n", ci->world_size);
	printf("optimizer    %s\n", optimizer_str(ci));
	printf("train dtype  %s\n", zf_dtype_torch_name(ci->train_dtype));
	if (ci->global_steps != UINT64_MAX)
		printf("step         %" PRIu64 "\n", ci->global_steps);
	printf("files        %zu, %s\n", ci->n_files,
	       cli_human_size(ci->files_bytes, a, sizeof(a)));
	for (size_t i = 0; i < ci->n_files; i++) {
		const struct zf_source *s = zf_ckpt_file(ck, i);

		printf("  %-52s %14" PRIu64 "  %s\n", cli_esc(zf_source_name(s)), zf_source_size(s),
		       zf_container_kind_name(zf_ckpt_file_kind(ck, i)));
	}
	printf("tensors      %zu (%zu params, %zu frozen, %zu buffers, %zu tied)\n",
	       ci->n_tensors, counts[ZF_KIND_PARAM], counts[ZF_KIND_FROZEN],
	       counts[ZF_KIND_BUFFER], counts[ZF_KIND_ALIAS]);
	printf("parameters   %" PRIu64 "\n", ci->n_params);
	printf("weights      %s as float32, %s in the model's dtypes\n",
	       cli_human_size(fp32, a, sizeof(a)), cli_human_size(native, b, sizeof(b)));
	printf("\n%-*s  %-6s  %-9s  %-16s %s\n", (int)w, "NAME", "KIND", "STORED", "SHAPE", "MODEL DTYPE");
	for (size_t i = 0; i < ci->n_tensors; i++) {
		const struct zf_tensor *t = zf_ckpt_tensor(ck, i);
		char shape[256];

		shape_str(t, shape, sizeof(shape));
		printf("%-*s  %-6s  %-9s  %-16s %s", (int)w, cli_esc(t->name), zf_kind_str(t->kind),
		       zf_dtype_torch_name(t->src_dtype), shape,
		       zf_dtype_torch_name(t->model_dtype));
		if (t->kind == ZF_KIND_ALIAS)
			printf("  (tied to %s)", cli_esc(zf_ckpt_tensor(ck, t->alias_of)->name));
		printf("\n");
	}
}

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
	if (extents && t->kind != ZF_KIND_ALIAS)
		cJSON_AddItemToObject(o, "extents", extents_json(ck, i));
	return o;
}

static int print_json(const struct zf_ckpt *ck, bool extents)
{
	const struct zf_ckpt_info *ci = zf_ckpt_info(ck);
	cJSON *root = cJSON_CreateObject(), *files = cJSON_CreateArray();
	cJSON *tensors = cJSON_CreateArray();
	char *text;

	cJSON_AddStringToObject(root, "path", ci->path);
	cJSON_AddStringToObject(root, "layout", zf_layout_str(ci->layout));
	cJSON_AddStringToObject(root, "tag", ci->tag);
	cJSON_AddStringToObject(root, "ds_version", ci->ds_version);
	cJSON_AddNumberToObject(root, "stage", ci->stage);
	cJSON_AddNumberToObject(root, "world_size", ci->world_size);
	cJSON_AddStringToObject(root, "optimizer", optimizer_str(ci));
	cJSON_AddStringToObject(root, "train_dtype", zf_dtype_torch_name(ci->train_dtype));
	if (ci->global_steps != UINT64_MAX)
		cJSON_AddNumberToObject(root, "global_steps", (double)ci->global_steps);
	cJSON_AddNumberToObject(root, "n_params", (double)ci->n_params);
	for (size_t i = 0; i < ci->n_files; i++) {
		const struct zf_source *s = zf_ckpt_file(ck, i);
		cJSON *f = cJSON_CreateObject();

		cJSON_AddStringToObject(f, "name", zf_source_name(s));
		cJSON_AddStringToObject(f, "path", zf_source_path(s));
		cJSON_AddNumberToObject(f, "size", (double)zf_source_size(s));
		cJSON_AddStringToObject(f, "format",
					zf_container_kind_name(zf_ckpt_file_kind(ck, i)));
		cJSON_AddItemToArray(files, f);
	}
	cJSON_AddItemToObject(root, "files", files);
	for (size_t i = 0; i < ci->n_tensors; i++)
		cJSON_AddItemToArray(tensors, tensor_json(ck, i, extents));
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

struct inspect_args {
	struct zf_ckpt_options o;
	bool json, extents;
};

static int on_opt(void *ctx, int c, const char *arg)
{
	struct inspect_args *a = ctx;

	switch (c) {
	case 't':
		a->o.tag = arg;
		break;
	case 'j':
		a->json = true;
		break;
	case 'e':
		a->extents = true;
		break;
	}
	return CLI_GO_ON;
}

static const struct option inspect_opts[] = {
	{ "tag", required_argument, NULL, 't' },
	{ "json", no_argument, NULL, 'j' },
	{ "extents", no_argument, NULL, 'e' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const struct cli_cmd inspect_cmd = {
	"inspect", inspect_usage, "t:jeh", inspect_opts, 1, 1, "expected one checkpoint folder",
};

int cmd_inspect(int argc, char **argv)
{
	struct inspect_args a = { 0 };
	struct zf_error err = { 0 };
	struct zf_ckpt *ck;
	char *args[CLI_MAX_ARGS];
	int nargs, rc;

	rc = cli_parse(&inspect_cmd, argc, argv, on_opt, &a, args, &nargs, NULL);
	if (rc != CLI_GO_ON)
		return rc;
	if (a.extents && !a.json)
		return cli_usage("inspect", "--extents adds to --json's output: give both");
	if (zf_ckpt_open(args[0], &a.o, &ck, &err))
		return cli_report(&err);
	rc = a.json ? print_json(ck, a.extents) : (print_text(ck), ZF_EXIT_OK);
	zf_ckpt_free(ck);
	return rc;
}
