/* SPDX-License-Identifier: MIT */
/*
 * zerofs inspect's parts: the command and its text (cmd_inspect.c), its
 * JSON (inspect_json.c), and the table of a run folder's checkpoints
 * (inspect_all.c).
 */
#ifndef ZEROFS_INSPECT_H
#define ZEROFS_INSPECT_H

#include <stdbool.h>

#include "serve_opts.h"
#include "zerofs/ckpt.h"
#include "zerofs/hfdir.h"
#include "zerofs/runfolder.h"

struct inspect_args {
	struct serve_opts so;
	const char *path;
	const char *const *patterns; /* tensor name patterns, n_patterns of them */
	int n_patterns;
	bool json, extents, files, all;
	const char *dtype_arg, *shard_arg; /* --dtype, --max-shard-size as given */
};

/* What a mount with some options would serve: the directory, or why it
 * cannot be built. */
struct inspect_served {
	struct zf_hfdir_options opts;
	struct zf_hfdir *dir; /* NULL: err says why */
	struct zf_error err;
};

/* Builds s from ck with o; returns the core status (s->err set). */
int inspect_served(const struct zf_ckpt *ck, const struct zf_hfdir_options *o,
		   struct inspect_served *s);
void inspect_served_release(struct inspect_served *s);

/* True when the tensor named name is to be shown (the patterns). */
bool inspect_selected(const struct inspect_args *a, const char *name);

/* The tokenizer files among dir's (hfconfig.c's names). */
bool inspect_is_tokenizer_file(const char *name);

const char *inspect_optimizer_str(const struct zf_ckpt_info *ci);

/* File i's format: "zip", "legacy" (torch's older serialization) or, for
 * a --base model's file, "safetensors". */
const char *inspect_file_format(const struct zf_ckpt *ck, size_t i);
const char *inspect_layout_words(enum zf_layout layout);

/* The run folder entry ci->tag was read from (its first component), or
 * NULL. */
const struct zf_run_entry *inspect_chosen_entry(const struct zf_runfolder *run,
						const struct zf_ckpt_info *ci);

/* The JSON object of one checkpoint on stdout; dflt is what a mount with
 * default dtype and shard size would serve, when other ones were asked
 * for (else NULL). Returns the exit code. */
int inspect_print_json(const struct inspect_args *a, const struct zf_ckpt *ck,
		       const struct zf_runfolder *run, const struct inspect_served *asked,
		       const struct inspect_served *dflt);

struct cJSON;

/* {dtype, max_shard_size, shards, tensor_bytes, total_bytes, files}, or
 * {error: {status, where, message}} (inspect_error_json()). */
struct cJSON *inspect_served_json(const struct inspect_served *s);
struct cJSON *inspect_error_json(const struct zf_error *err);

/* --all: one line (or JSON object) per checkpoint of a run folder. */
int inspect_all(const struct inspect_args *a);

#endif /* ZEROFS_INSPECT_H */
