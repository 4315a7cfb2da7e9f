/* SPDX-License-Identifier: MIT */
/*
 * Private to ckpt_find.c and ckpt_scan.c: what the folder finder needs of
 * the tag folder scanner.
 */
#ifndef ZEROFS_CKPT_SCAN_I_H
#define ZEROFS_CKPT_SCAN_I_H

#include <stdbool.h>

#include "ckpt_i.h"

/* a + "/" + b, trailing slashes of a dropped; NULL when out of memory. */
char *zf_ckpt_path_join(const char *a, const char *b);

/* True when dir holds a file named like a DeepSpeed rank file of any kind
 * (including those zf_ckpt_scan_tag_dir() refuses). */
bool zf_ckpt_has_rank_files(const char *dir);

/*
 * Fills out's world_size, n_model, optim[] and model[] from the names in
 * tag folder dir. ZF_EUNSUPPORTED names a mixture-of-experts, pipeline or
 * tensor-parallel checkpoint; ZF_ENOTFOUND a missing rank file; ZF_EFORMAT
 * two files for one rank.
 */
int zf_ckpt_scan_tag_dir(const char *dir, struct zf_ckpt_files *out,
			 struct zf_error *err);

#endif /* ZEROFS_CKPT_SCAN_I_H */
