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
 * tag folder dir. A folder whose only rank file is
 * mp_rank_00_model_states.pt gets world_size 0 (no optimizer files: a
 * ZeRO-0 checkpoint, or a ZeRO one that lost them; the loader tells). ZF_EUNSUPPORTED names a mixture-of-experts, pipeline or
 * tensor-parallel checkpoint; ZF_ENOTFOUND a missing rank file; ZF_EFORMAT
 * two files for one rank.
 */
int zf_ckpt_scan_tag_dir(const char *dir, struct zf_ckpt_files *out,
			 struct zf_error *err);

/* What ckpt_find.c shares with runfolder.c. */

/* True when folder dir holds a checkpoint one level down: rank files, or
 * a `latest` file (a save folder of its own). */
bool zf_ckpt_holds(const char *dir);

/*
 * The tag the `latest` file of save folder dir holds, stripped as
 * DeepSpeed strips it, into *tag (owned); *latest_path (owned) is the
 * file. ZF_ENOTFOUND without a message when there is no `latest`;
 * ZF_EFORMAT naming the file when its text is no folder name here (never
 * showing the text).
 */
int zf_ckpt_read_latest(const char *dir, char **tag, char **latest_path,
			struct zf_error *err);

/* The name of the folder in dir that mmengine's `last_checkpoint` names
 * (owned), when it holds a checkpoint; NULL otherwise. */
char *zf_ckpt_last_checkpoint(const char *dir);

/* s for a message: printable ASCII kept, anything else by its code
 * (\u{feff}, \x1b), cut with "..." to fit buf. Returns buf. */
const char *zf_ckpt_excerpt(const char *s, char *buf, size_t size);

#endif /* ZEROFS_CKPT_SCAN_I_H */
