/* SPDX-License-Identifier: MIT */
/*
 * zerofs inspect: what a checkpoint holds, for a person or for a program
 * (--json). A summary first (what, where, how it was trained, how big,
 * whether config and tokenizer are there, what a mount would serve), then
 * the tensors in state_dict order, optionally only those a pattern
 * names; the checkpoint's files only when asked (--files). A run folder
 * shows the checkpoint a resume would load and lists the others; --all
 * gives one line per checkpoint instead. Reads metadata only, so it
 * answers at once on a checkpoint of any size.
 */
#include <cjson/cJSON.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "inspect.h"
#include "serve_opts.h"
#include "zerofs/ckpt.h"
#include "zerofs/hfdir.h"
#include "zerofs/runfolder.h"

static const char inspect_usage[] =
	"usage: zerofs inspect CKPT [PATTERN...] [options]\n\n"
	"Shows what a DeepSpeed ZeRO checkpoint holds, reading metadata only: a summary\n"
	"(where, how it was trained, parameters, sizes, config and tokenizer, what a mount\n"
	"would serve), then its tensors in state_dict order. For a folder of checkpoints\n"
	"(a Trainer output_dir, ...) it shows the one a resume would load and lists the rest.\n\n"
	"  PATTERN               show only these tensors: a name, a module prefix\n"
	"                        (model.layers.0) or a shell pattern ('*.bias')\n"
	"  --files               list the checkpoint's files and their sizes\n"
	"  -a, --all             one line per checkpoint of a run folder\n"
	"  -j, --json            print one JSON object (described in zerofs(1))\n"
	"  -e, --extents         with --json: add each tensor's byte ranges in the files\n"
	"  -t, --tag TAG         read this tag folder instead of the one 'latest' names\n"
	"  --dtype, --max-shard-size, --strip-prefix, --config: as for mount; the summary\n"
	"                        says what a mount with them would serve\n"
	"  --base DIR            as for mount: complete a partial checkpoint with the\n"
	"                        tensors it lacks from DIR, the base model's folder\n"
	"  -h, --help            show this help\n\n"
	"examples:\n"
	"  zerofs inspect out/checkpoint-1000\n"
	"  zerofs inspect out/checkpoint-1000 'model.layers.0.*' --dtype bf16 --max-shard-size 2GB\n"
	"  zerofs inspect out/checkpoint-1000 --json --extents\n"
	"  zerofs inspect out --all\n";

/* --- what a mount would serve --------------------------------------- */

bool inspect_is_tokenizer_file(const char *name)
{
	static const char *const pats[] = {
		"tokenizer*", "special_tokens_map.json", "added_tokens.json",
		"spiece.model", "sentencepiece.bpe.model", "vocab.json", "vocab.txt",
		"merges.txt", "*.tiktoken",
	};

	for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++)
		if (!fnmatch(pats[i], name, 0))
			return true;
	return false;
}

int inspect_served(const struct zf_ckpt *ck, const struct zf_hfdir_options *o,
		   struct inspect_served *s)
{
	memset(s, 0, sizeof(*s));
	s->opts = *o;
	if (zf_hfdir_build(ck, o, &s->dir, &s->err))
		return s->err.status;
	return ZF_OK;
}

void inspect_served_release(struct inspect_served *s)
{
	zf_hfdir_free(s->dir);
	s->dir = NULL;
}

/* "2.5 GB in 1 shard of at most 5.0 GB" into buf. */
static const char *served_str(const struct inspect_served *s, char *buf, size_t size)
{
	const struct zf_hfdir_info *d = zf_hfdir_info(s->dir);
	char a[32], b[32];

	snprintf(buf, size, "%s: %s in %zu shard%s of at most %s", zf_dtype_torch_name(d->dtype),
		 cli_human_size(d->tensor_bytes, a, sizeof(a)), d->n_shards,
		 d->n_shards == 1 ? "" : "s",
		 cli_human_size(s->opts.max_shard_size ? s->opts.max_shard_size
						       : ZF_DEFAULT_SHARD_SIZE,
				b, sizeof(b)));
	return buf;
}

/* --- selecting tensors ------------------------------------------------ */

/*
 * A name matches a pattern with wildcards as a shell pattern over the
 * whole name (fnmatch: '*' also crosses dots); one without, as the name
 * itself or a module prefix of it (model.layers.0 matches
 * model.layers.0.mlp.up_proj.weight, not model.layers.01...).
 */
static bool pattern_matches(const char *pat, const char *name)
{
	size_t n;

	if (strpbrk(pat, "*?["))
		return !fnmatch(pat, name, 0);
	n = strlen(pat);
	return !strncmp(pat, name, n) && (name[n] == '\0' || name[n] == '.');
}

bool inspect_selected(const struct inspect_args *a, const char *name)
{
	if (!a->n_patterns)
		return true;
	for (int i = 0; i < a->n_patterns; i++)
		if (pattern_matches(a->patterns[i], name))
			return true;
	return false;
}

/* Each pattern that matches no tensor, on stderr; 3 when there is one
 * (as unzip and tar fail on a member they do not have), else 0. */
static int unmatched(const struct inspect_args *a, const struct zf_ckpt *ck)
{
	const struct zf_ckpt_info *ci = zf_ckpt_info(ck);
	int rc = ZF_EXIT_OK;

	for (int p = 0; p < a->n_patterns; p++) {
		bool hit = false;

		for (size_t i = 0; i < ci->n_tensors && !hit; i++)
			hit = pattern_matches(a->patterns[p], zf_ckpt_tensor(ck, i)->name);
		if (!hit) {
			cli_error("'%s' matches no tensor name", a->patterns[p]);
			rc = ZF_EXIT_INPUT;
		}
	}
	return rc;
}

/* --- text ---------------------------------------------------------------- */

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

const char *inspect_file_format(const struct zf_ckpt *ck, size_t i)
{
	enum zf_container_kind kind = zf_ckpt_file_kind(ck, i);

	return kind ? zf_container_kind_name(kind) : "safetensors";
}

const char *inspect_optimizer_str(const struct zf_ckpt_info *ci)
{
	switch (ci->optimizer) {
	case ZF_OPT_BF16:
		return "BF16_Optimizer";
	case ZF_OPT_FP16:
		return "FP16_Optimizer";
	case ZF_OPT_FP16_UNFUSED:
		return "FP16_UnfusedOptimizer";
	case ZF_OPT_NONE:
		return "none (fp32 without ZeRO: the model states hold the weights)";
	case ZF_OPT_ZERO:
		break;
	}
	return ci->stage == 3 ? "DeepSpeedZeroOptimizer_Stage3" : "DeepSpeedZeroOptimizer";
}

const char *inspect_layout_words(enum zf_layout layout)
{
	switch (layout) {
	case ZF_LAYOUT_DEEPSPEED:
		return "a DeepSpeed save folder";
	case ZF_LAYOUT_TRAINER:
		return "a Hugging Face Trainer checkpoint";
	case ZF_LAYOUT_TAGDIR:
		return "a DeepSpeed tag folder";
	case ZF_LAYOUT_XTUNER:
		return "an XTuner (mmengine) checkpoint";
	}
	return "?";
}

const struct zf_run_entry *inspect_chosen_entry(const struct zf_runfolder *run,
						const struct zf_ckpt_info *ci)
{
	size_t n = strcspn(ci->tag, "/");

	for (size_t i = 0; run && i < zf_runfolder_count(run); i++) {
		const struct zf_run_entry *e = zf_runfolder_entry(run, i);

		if (strlen(e->name) == n && !strncmp(e->name, ci->tag, n))
			return e;
	}
	return NULL;
}

/* "checkpoint-100, checkpoint-200, checkpoint-300, ..., checkpoint-900". */
static void run_names(const struct zf_runfolder *run, char *buf, size_t size)
{
	size_t n = zf_runfolder_count(run), used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && used < size; i++) {
		if (n > 6 && i == 3) {
			used += (size_t)snprintf(buf + used, size - used, ", ..., %s",
						 zf_runfolder_entry(run, n - 1)->name);
			break;
		}
		used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
					 zf_runfolder_entry(run, i)->name);
	}
}

static void counts_of(const struct zf_ckpt *ck, size_t counts[4])
{
	const struct zf_ckpt_info *ci = zf_ckpt_info(ck);

	memset(counts, 0, 4 * sizeof(counts[0]));
	for (size_t i = 0; i < ci->n_tensors; i++)
		counts[zf_ckpt_tensor(ck, i)->kind]++;
}

/* "3 buffers" style, joined: "289 params, 2 buffers, 1 tied". */
static void kinds_str(const size_t counts[4], char *buf, size_t size)
{
	static const char *const words[4][2] = {
		{ "param", "params" }, { "frozen", "frozen" },
		{ "buffer", "buffers" }, { "tied", "tied" },
	};
	size_t used = 0;

	buf[0] = '\0';
	for (int k = 0; k < 4; k++)
		if (counts[k] && used < size)
			used += (size_t)snprintf(buf + used, size - used, "%s%zu %s",
						 used ? ", " : "", counts[k],
						 words[k][counts[k] != 1]);
}

static void print_tokenizer(const struct zf_hfdir *dir)
{
	const struct zf_hfdir_info *d = zf_hfdir_info(dir);
	size_t shown = 0;

	for (size_t i = 0; i < d->n_files; i++) {
		const struct zf_vfile *f = zf_hfdir_file(dir, i);

		if (f->kind != ZF_VF_PASSTHROUGH || !inspect_is_tokenizer_file(f->name))
			continue;
		printf("%s%s", shown ? ", " : "tokenizer    yes: ", cli_esc(f->name));
		shown++;
	}
	if (!shown)
		printf("tokenizer    no: add --config DIR (the base model's folder) to serve one");
	printf("\n");
}

static void print_summary(const struct inspect_args *a, const struct zf_ckpt *ck,
			  const struct zf_runfolder *run, const struct inspect_served *asked,
			  const struct inspect_served *dflt)
{
	const struct zf_ckpt_info *ci = zf_ckpt_info(ck);
	size_t counts[4];
	char buf[1024], num[32], size[32];

	counts_of(ck, counts);
	printf("checkpoint   %s (%s: %s)\n", cli_esc(ci->path), zf_layout_str(ci->layout),
	       inspect_layout_words(ci->layout));
	if (run && zf_runfolder_count(run) > 1) {
		const struct zf_run_entry *e = inspect_chosen_entry(run, ci);

		run_names(run, buf, sizeof(buf));
		printf("run          %zu checkpoints: %s\n", zf_runfolder_count(run), cli_esc(buf));
		printf("chosen       %s, %s; --tag NAME for another\n",
		       cli_esc(e ? e->name : ci->tag), serve_pick_words(ci->pick));
	}
	printf("tag          %s\n", cli_esc(ci->tag));
	printf("zero stage   %d (%s)\n", ci->stage, inspect_optimizer_str(ci));
	printf("ranks        %u\n", ci->world_size);
	printf("train dtype  %s\n", zf_dtype_torch_name(ci->train_dtype));
	if (ci->global_steps != UINT64_MAX)
		printf("step         %" PRIu64 "\n", ci->global_steps);
	printf("deepspeed    %s\n", ci->ds_version[0] ? cli_esc(ci->ds_version) : "unknown");
	kinds_str(counts, buf, sizeof(buf));
	printf("parameters   %s in %zu tensors (%s)\n",
	       cli_human_count(ci->n_params, num, sizeof(num)), ci->n_tensors, buf);
	printf("files        %zu, %s%s\n", ci->n_files,
	       cli_human_size(ci->files_bytes, size, sizeof(size)),
	       a->files ? "" : " (--files lists them)");
	if (a->files)
		for (size_t i = 0; i < ci->n_files; i++) {
			const struct zf_source *s = zf_ckpt_file(ck, i);

			printf("  %-52s %14" PRIu64 "  %s\n", cli_esc(zf_source_name(s)),
			       zf_source_size(s),
			       inspect_file_format(ck, i));
		}
	if (ci->base_dir) {
		size_t from = 0;

		for (size_t i = 0; i < ci->n_tensors; i++)
			from += zf_ckpt_tensor(ck, i)->from_base;
		printf("base         %s (%zu tensors from it)\n", cli_esc(ci->base_dir), from);
	}
	if (ci->incomplete)
		printf("partial      %s\n", cli_esc(ci->incomplete));
	if (!asked->dir && ci->incomplete && asked->err.status == ZF_EUNSUPPORTED &&
	    !strcmp(asked->err.msg, ci->incomplete)) {
		printf("served       a mount fails: the checkpoint is partial (above)\n");
		return;
	}
	if (!asked->dir) {
		printf("served       a mount fails: %s\n",
		       cli_esc(zf_error_format(&asked->err, buf, sizeof(buf))));
		return;
	}
	if (zf_hfdir_info(asked->dir)->config_source)
		printf("config.json  yes\n");
	else
		printf("config.json  no: loaders need one; add --config DIR (the base model's folder)\n");
	print_tokenizer(asked->dir);
	if (!dflt) {
		printf("served       %s\n", served_str(asked, buf, sizeof(buf)));
		return;
	}
	printf("served       %s (", served_str(asked, buf, sizeof(buf)));
	if (a->dtype_arg)
		printf("--dtype %s%s", cli_esc(a->dtype_arg), a->shard_arg ? " " : "");
	if (a->shard_arg)
		printf("--max-shard-size %s", cli_esc(a->shard_arg));
	printf(")\n");
	if (dflt->dir)
		printf("by default   %s\n", served_str(dflt, buf, sizeof(buf)));
}

static void print_table(const struct inspect_args *a, const struct zf_ckpt *ck)
{
	const struct zf_ckpt_info *ci = zf_ckpt_info(ck);
	size_t w = 4, shown = 0;

	for (size_t i = 0; i < ci->n_tensors; i++) {
		const char *name = zf_ckpt_tensor(ck, i)->name;

		if (!inspect_selected(a, name))
			continue;
		shown++;
		if (strlen(cli_esc(name)) > w)
			w = strlen(cli_esc(name));
	}
	if (!shown)
		return;
	printf("\n%-*s  %-6s  %-9s  %-16s %s\n", (int)w, "NAME", "KIND", "STORED", "SHAPE",
	       "MODEL DTYPE");
	for (size_t i = 0; i < ci->n_tensors; i++) {
		const struct zf_tensor *t = zf_ckpt_tensor(ck, i);
		char shape[256];

		if (!inspect_selected(a, t->name))
			continue;
		shape_str(t, shape, sizeof(shape));
		printf("%-*s  %-6s  %-9s  %-16s %s", (int)w, cli_esc(t->name), zf_kind_str(t->kind),
		       zf_dtype_torch_name(t->src_dtype), shape,
		       zf_dtype_torch_name(t->model_dtype));
		if (t->kind == ZF_KIND_ALIAS)
			printf("  (tied to %s)", cli_esc(zf_ckpt_tensor(ck, t->alias_of)->name));
		else if (t->same_as != (size_t)-1)
			printf("  (same data as %s)", cli_esc(zf_ckpt_tensor(ck, t->same_as)->name));
		else if (t->from_base)
			printf("  (from --base)");
		printf("\n");
	}
}

/* --- the command --------------------------------------------------------- */

static int on_opt(void *ctx, int c, const char *arg)
{
	struct inspect_args *a = ctx;

	switch (c) {
	case 't':
		return serve_opt(&a->so, 1000, arg, "inspect");
	case 'j':
		a->json = true;
		return CLI_GO_ON;
	case 'e':
		a->extents = true;
		return CLI_GO_ON;
	case 'a':
		a->all = true;
		return CLI_GO_ON;
	case 2000:
		a->files = true;
		return CLI_GO_ON;
	case 1001:
		a->dtype_arg = arg;
		break;
	case 1002:
		a->shard_arg = arg;
		break;
	}
	return serve_opt(&a->so, c, arg, "inspect");
}

static const struct option inspect_opts[] = {
	SERVE_LONG_OPTS,
	{ "json", no_argument, NULL, 'j' },
	{ "extents", no_argument, NULL, 'e' },
	{ "all", no_argument, NULL, 'a' },
	{ "files", no_argument, NULL, 2000 },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const struct cli_cmd inspect_cmd = {
	"inspect", inspect_usage, "t:jeah", inspect_opts, 1, -1,
	"expected a checkpoint folder (then tensor name patterns)",
};

/* Options that do not apply are errors; returns CLI_GO_ON or 2. */
static int check_args(const struct inspect_args *a)
{
	if (a->extents && !a->json)
		return cli_usage("inspect", "--extents adds to --json's output: give both");
	if (a->files && a->json)
		return cli_usage("inspect", "--files: --json always lists the files");
	if (a->all && a->so.ckpt.tag)
		return cli_usage("inspect", "--all shows every checkpoint: --tag does not apply");
	if (a->all && (a->n_patterns || a->files || a->extents))
		return cli_usage("inspect",
				 "--all shows one line per checkpoint: tensor patterns, --files and --extents do not apply");
	return CLI_GO_ON;
}

static int inspect_one(struct inspect_args *a)
{
	struct zf_error err = { 0 };
	struct inspect_served asked, dflt;
	struct zf_runfolder *run = NULL;
	bool sized = a->dtype_arg || a->shard_arg;
	struct zf_ckpt *ck;
	int rc;

	if (zf_ckpt_open(a->path, &a->so.ckpt, &ck, &err))
		return cli_report(&err);
	/* The folder's other checkpoints, when it is a run folder. */
	if (zf_ckpt_info(ck)->pick != ZF_PICK_GIVEN || a->so.ckpt.tag)
		zf_runfolder_scan(a->path, &run, NULL);
	inspect_served(ck, &a->so.dir, &asked);
	if (sized) {
		/* Also at the defaults, for comparison. */
		struct zf_hfdir_options o = a->so.dir;

		o.dtype = ZF_DT_INVALID;
		o.max_shard_size = 0;
		inspect_served(ck, &o, &dflt);
	}
	if (a->json) {
		rc = inspect_print_json(a, ck, run, &asked, sized ? &dflt : NULL);
	} else {
		print_summary(a, ck, run, &asked, sized ? &dflt : NULL);
		print_table(a, ck);
		rc = ZF_EXIT_OK;
	}
	if (!rc)
		rc = unmatched(a, ck);
	if (!rc && !asked.dir)
		rc = cli_exit_code(asked.err.status);
	if (sized)
		inspect_served_release(&dflt);
	inspect_served_release(&asked);
	zf_runfolder_free(run);
	zf_ckpt_free(ck);
	return rc;
}

int cmd_inspect(int argc, char **argv)
{
	struct inspect_args a = { 0 };
	char *args[CLI_MAX_ARGS];
	int nargs, rc;

	rc = cli_parse(&inspect_cmd, argc, argv, on_opt, &a, args, &nargs, NULL);
	if (rc != CLI_GO_ON)
		return rc;
	a.path = args[0];
	a.patterns = (const char *const *)args + 1;
	a.n_patterns = nargs - 1;
	rc = check_args(&a);
	if (rc != CLI_GO_ON)
		return rc;
	return a.all ? inspect_all(&a) : inspect_one(&a);
}
