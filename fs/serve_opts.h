/* SPDX-License-Identifier: MIT */
/*
 * The options that shape the served model directory, shared by mount,
 * export and verify: --tag, --dtype, --max-shard-size, --strip-prefix,
 * --config. Each command adds its own and hands unknown ones here.
 */
#ifndef ZEROFS_SERVE_OPTS_H
#define ZEROFS_SERVE_OPTS_H

#include <getopt.h>

#include "zerofs/ckpt.h"
#include "zerofs/hfdir.h"

struct serve_opts {
	struct zf_ckpt_options ckpt;
	struct zf_hfdir_options dir;
};

/* getopt_long entries for the shared options (values >= 1000). */
#define SERVE_LONG_OPTS                                              \
	{ "tag", required_argument, NULL, 1000 },                    \
	{ "dtype", required_argument, NULL, 1001 },                  \
	{ "max-shard-size", required_argument, NULL, 1002 },         \
	{ "strip-prefix", required_argument, NULL, 1003 },           \
	{ "config", required_argument, NULL, 1004 },                 \
	{ "base", required_argument, NULL, 1005 }

#define SERVE_HELP                                                                      \
	"  --tag TAG             read this tag folder instead of the one 'latest' names\n" \
	"  --dtype D             auto (the training dtype, default), fp32, bf16 or fp16\n"  \
	"  --max-shard-size S    largest shard, as save_pretrained reads it: 5GB (default),\n" \
	"                        2GiB, 500MB, bytes; a lowercase b counts bits (5Gb)\n"    \
	"  --strip-prefix P      remove P from every tensor name ('' keeps names; XTuner's\n" \
	"                        'llm.' is removed without asking)\n"                        \
	"  --config DIR          take config.json and tokenizer files from DIR\n"              \
	"  --base DIR            complete a partial checkpoint (frozen weights left out)\n" \
	"                        with the tensors it lacks from DIR, the base model's\n"    \
	"                        Hugging Face folder (safetensors; a hub snapshot works)\n"

/* Handles option c (with optarg). Returns CLI_GO_ON when handled, or 2
 * after printing a usage error for cmd (a bad value, or an unknown
 * option). */
int serve_opt(struct serve_opts *o, int c, const char *arg, const char *cmd);

/* Opens the checkpoint and builds its directory; prints the error and
 * returns the exit code on failure (0 on success). */
int serve_open(const char *path, const struct serve_opts *o,
	       struct zf_ckpt **ck, struct zf_hfdir **dir);

/* Warns on stderr about each metadata file the directory leaves out (a
 * link out of the checkpoint, a FIFO, ...), naming it and why. */
void serve_warn_left_out(const struct zf_hfdir *dir);

/* How the served checkpoint was chosen in the folder given, for people:
 * "the highest checkpoint-N (as the Trainer resumes)". */
const char *serve_pick_words(enum zf_pick how);

#endif /* ZEROFS_SERVE_OPTS_H */
