/* SPDX-License-Identifier: MIT */
/* Private to hfdir*.c: building the directory's metadata files. */
#ifndef ZEROFS_HFDIR_I_H
#define ZEROFS_HFDIR_I_H

#include "zerofs/hfdir.h"

/* A growing list of virtual files while the directory is built. */
struct zf_vfiles {
	struct zf_vfile *v;
	size_t n, cap;
};

/* Appends a zeroed file named name (copied); returns it or NULL. */
struct zf_vfile *zf_vfiles_add(struct zf_vfiles *l, const char *name);

/*
 * Adds config.json (torch_dtype / dtype rewritten to dtype), and the
 * tokenizer, generation and processor files found in dir, to l. Training
 * state (optimizer, rng, trainer state, DeepSpeed files) and weights are
 * never taken. *config_found tells whether a config.json was added.
 */
int zf_hf_add_metadata(struct zf_vfiles *l, const char *dir,
		       enum zf_dtype dtype, bool *config_found,
		       struct zf_error *err);

#endif /* ZEROFS_HFDIR_I_H */
