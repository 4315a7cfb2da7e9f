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

static const char *optimizer_str(const struct zf_ckpt *ck)
{
	if (ck->optimizer == ZF_OPT_BF16)
		return "BF16_Optimizer";
	return ck->stage == 3 ? "DeepSpeedZeroOptimizer_Stage3" : "DeepSpeedZeroOptimizer";
}

static void print_text(const struct zf_ckpt *ck)
{
	size_t counts[4] = { 0 };
	uint64_t files_bytes = 0, fp32 = 0, native = 0;
	char a[32], b[32];
	size_t w = 4;

	for (size_t i = 0; i < ck->n_sources; i++)
		files_bytes += ck->sources[i].size;
	for (size_t i = 0; i < ck->n_tensors; i++) {
		const struct zf_tensor *t = &ck->tensors[i];

		counts[t->kind]++;
		if (strlen(cli_esc(t->name)) > w)
			w = strlen(cli_esc(t->name));
		if (t->kind == ZF_KIND_ALIAS)
			continue;
		fp32 += t->numel * (zf_dtype_is_float(t->model_dtype) ? 4 : zf_dtype_size(t->model_dtype));
		native += t->numel * zf_dtype_size(t->model_dtype);
	}
	printf("checkpoint   %s (%s)\n", cli_esc(ck->path), zf_layout_str(ck->layout));
	printf("tag          %s\n", cli_esc(ck->tag));
	printf("deepspeed    %s\n", ck->ds_version[0] ? cli_esc(ck->ds_version) : "unknown");
	printf("zero stage   %d\n", ck->stage);
	printf("world size   %u\n", ck->world_size);
	printf("optimizer    %s\n", optimizer_str(ck));
	printf("train dtype  %s\n", zf_dtype_torch_name(ck->train_dtype));
	if (ck->global_steps != (uint64_t)-1)
		printf("step         %" PRIu64 "\n", ck->global_steps);
	printf("files        %zu, %s\n", ck->n_sources,
	       cli_human_size(files_bytes, a, sizeof(a)));
	for (size_t i = 0; i < ck->n_sources; i++)
		printf("  %-52s %14" PRIu64 "\n", cli_esc(ck->sources[i].name), ck->sources[i].size);
	printf("tensors      %zu (%zu params, %zu frozen, %zu buffers, %zu tied)\n",
	       ck->n_tensors, counts[ZF_KIND_PARAM], counts[ZF_KIND_FROZEN],
	       counts[ZF_KIND_BUFFER], counts[ZF_KIND_ALIAS]);
	printf("parameters   %" PRIu64 "\n", ck->n_params);
	printf("weights      %s as float32, %s in the model's dtypes\n",
	       cli_human_size(fp32, a, sizeof(a)), cli_human_size(native, b, sizeof(b)));
	printf("\n%-*s  %-6s  %-9s  %-16s %s\n", (int)w, "NAME", "KIND", "STORED", "SHAPE", "MODEL DTYPE");
	for (size_t i = 0; i < ck->n_tensors; i++) {
		const struct zf_tensor *t = &ck->tensors[i];
		char shape[256];

		shape_str(t, shape, sizeof(shape));
		printf("%-*s  %-6s  %-9s  %-16s %s", (int)w, cli_esc(t->name), zf_kind_str(t->kind),
		       zf_dtype_torch_name(t->src_dtype), shape,
		       zf_dtype_torch_name(t->model_dtype));
		if (t->kind == ZF_KIND_ALIAS)
			printf("  (tied to %s)", cli_esc(ck->tensors[t->alias_of].name));
		printf("\n");
	}
}

static cJSON *tensor_json(const struct zf_ckpt *ck, const struct zf_tensor *t,
			  bool extents)
{
	cJSON *o = cJSON_CreateObject(), *shape = cJSON_CreateArray();

	cJSON_AddStringToObject(o, "name", t->name);
	for (uint32_t i = 0; i < t->ndim; i++)
		cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[i]));
	cJSON_AddItemToObject(o, "shape", shape);
	cJSON_AddStringToObject(o, "dtype", zf_dtype_torch_name(t->src_dtype));
	cJSON_AddStringToObject(o, "model_dtype", zf_dtype_torch_name(t->model_dtype));
	cJSON_AddStringToObject(o, "kind", zf_kind_str(t->kind));
	cJSON_AddNumberToObject(o, "numel", (double)t->numel);
	if (t->kind == ZF_KIND_ALIAS)
		cJSON_AddStringToObject(o, "source", ck->tensors[t->alias_of].name);
	if (extents && t->kind != ZF_KIND_ALIAS) {
		cJSON *ex = cJSON_CreateArray();

		for (size_t i = 0; i < t->n_extents; i++) {
			const struct zf_extent *e = &t->extents[i];
			cJSON *x = cJSON_CreateArray();

			cJSON_AddItemToArray(x, cJSON_CreateNumber(e->source));
			cJSON_AddItemToArray(x, cJSON_CreateNumber((double)e->offset));
			cJSON_AddItemToArray(x, cJSON_CreateNumber((double)e->len));
			cJSON_AddItemToArray(ex, x);
		}
		cJSON_AddItemToObject(o, "extents", ex);
	}
	return o;
}

static int print_json(const struct zf_ckpt *ck, bool extents)
{
	cJSON *root = cJSON_CreateObject(), *files = cJSON_CreateArray();
	cJSON *tensors = cJSON_CreateArray();
	char *text;

	cJSON_AddStringToObject(root, "path", ck->path);
	cJSON_AddStringToObject(root, "layout", zf_layout_str(ck->layout));
	cJSON_AddStringToObject(root, "tag", ck->tag);
	cJSON_AddStringToObject(root, "ds_version", ck->ds_version);
	cJSON_AddNumberToObject(root, "stage", ck->stage);
	cJSON_AddNumberToObject(root, "world_size", ck->world_size);
	cJSON_AddStringToObject(root, "optimizer", optimizer_str(ck));
	cJSON_AddStringToObject(root, "train_dtype", zf_dtype_torch_name(ck->train_dtype));
	if (ck->global_steps != (uint64_t)-1)
		cJSON_AddNumberToObject(root, "global_steps", (double)ck->global_steps);
	cJSON_AddNumberToObject(root, "n_params", (double)ck->n_params);
	for (size_t i = 0; i < ck->n_sources; i++) {
		cJSON *f = cJSON_CreateObject();

		cJSON_AddStringToObject(f, "name", ck->sources[i].name);
		cJSON_AddStringToObject(f, "path", ck->sources[i].path);
		cJSON_AddNumberToObject(f, "size", (double)ck->sources[i].size);
		cJSON_AddItemToArray(files, f);
	}
	cJSON_AddItemToObject(root, "files", files);
	for (size_t i = 0; i < ck->n_tensors; i++)
		cJSON_AddItemToArray(tensors, tensor_json(ck, &ck->tensors[i], extents));
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
