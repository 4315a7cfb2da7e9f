/* SPDX-License-Identifier: MIT */
/* Options shared by the commands that serve a model directory. */
#include "serve_opts.h"

#include <string.h>

#include "cli.h"
#include "zerofs/safetensors.h"

int serve_opt(struct serve_opts *o, int c, const char *arg, const char *cmd)
{
	struct zf_error err = { 0 };

	switch (c) {
	case 1000:
		o->ckpt.tag = arg;
		return CLI_GO_ON;
	case 1001:
		if (!strcmp(arg, "auto")) {
			o->dir.dtype = ZF_DT_INVALID;
			return CLI_GO_ON;
		}
		o->dir.dtype = zf_dtype_parse(arg);
		if (o->dir.dtype == ZF_DT_INVALID)
			return cli_usage(cmd, "--dtype '%s': choose auto, fp32, bf16 or fp16", arg);
		return CLI_GO_ON;
	case 1002:
		if (zf_parse_size(arg, &o->dir.max_shard_size, &err))
			return cli_usage(cmd, "--max-shard-size: %s", err.msg);
		return CLI_GO_ON;
	case 1003:
		o->dir.strip_prefix = arg;
		return CLI_GO_ON;
	case 1004:
		o->dir.config_dir = arg;
		return CLI_GO_ON;
	case 1005:
		o->ckpt.base_dir = arg;
		return CLI_GO_ON;
	}
	return cli_usage(cmd, NULL);
}

int serve_open(const char *path, const struct serve_opts *o,
	       struct zf_ckpt **ck, struct zf_hfdir **dir)
{
	struct zf_error err = { 0 };

	*dir = NULL;
	if (zf_ckpt_open(path, &o->ckpt, ck, &err))
		return cli_report(&err);
	if (zf_hfdir_build(*ck, &o->dir, dir, &err)) {
		zf_ckpt_free(*ck);
		*ck = NULL;
		return cli_report(&err);
	}
	serve_warn_left_out(*dir);
	return 0;
}

void serve_warn_left_out(const struct zf_hfdir *dir)
{
	const struct zf_hfdir_info *di = zf_hfdir_info(dir);

	/* Never left out without a word (zerofs(1), SECURITY). */
	for (size_t i = 0; i < di->n_left_out; i++)
		cli_error("warning: '%s' left out: %s", di->left_out[i].path,
			  di->left_out[i].why);
}

const char *serve_pick_words(enum zf_pick how)
{
	switch (how) {
	case ZF_PICK_LATEST:
		return "named by 'latest' (as DeepSpeed loads)";
	case ZF_PICK_LAST_CHECKPOINT:
		return "named by 'last_checkpoint' (as mmengine resumes)";
	case ZF_PICK_NEWEST_STEP:
		return "the highest checkpoint-N (as the Trainer resumes)";
	case ZF_PICK_ONLY:
		return "the only one";
	case ZF_PICK_GIVEN:
		return "named with --tag";
	}
	return "?";
}
