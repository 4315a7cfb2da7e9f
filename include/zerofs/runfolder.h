/* SPDX-License-Identifier: MIT */
/**
 * @file runfolder.h
 * A folder of checkpoints, read from names alone: a Hugging Face Trainer
 * output_dir (checkpoint-100/, checkpoint-200/, ...), a DeepSpeed save
 * folder with several tags, or an XTuner (mmengine) work_dir with several
 * iter_N.pth/ folders. Which folders in it hold a checkpoint, and which
 * one a resume would load:
 *
 *  1. the tag DeepSpeed's `latest` file names (engine.py load_checkpoint);
 *  2. the folder mmengine's `last_checkpoint` file names (a path: its last
 *     component; CheckpointHook, find_latest_checkpoint);
 *  3. among folders named checkpoint-N, the highest N, whether or not it
 *     is complete (transformers trainer_utils.get_last_checkpoint): when
 *     that one holds no checkpoint, the pick fails, naming it and the next
 *     one, rather than serve an older step without saying so;
 *  4. the only folder that holds a checkpoint.
 * Otherwise there is no answer: the caller asks for --tag.
 *
 * Nothing here parses a checkpoint file; zf_ckpt_open() with the entry's
 * name as the tag opens one. The run folder is read once, at scan time.
 */
#ifndef ZEROFS_RUNFOLDER_H
#define ZEROFS_RUNFOLDER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "zerofs/error.h"

/* How the checkpoint of a folder was chosen. */
enum zf_pick {
	ZF_PICK_GIVEN,		 /* no choice made: the folder is the checkpoint, or --tag */
	ZF_PICK_LATEST,		 /* DeepSpeed's `latest` names it */
	ZF_PICK_LAST_CHECKPOINT, /* mmengine's `last_checkpoint` names it */
	ZF_PICK_NEWEST_STEP,	 /* checkpoint-N with the highest N (the Trainer's rule) */
	ZF_PICK_ONLY,		 /* the only folder holding a checkpoint */
};

/* One folder of the run that holds a checkpoint. */
struct zf_run_entry {
	const char *name;      /* its name in the run folder, as on disk */
	const char *served;    /* its folder under `mount --all`: the name, less
				* a final ".pth" (XTuner's iter_500.pth/ -> iter_500/)
				* unless another entry has that name */
	uint64_t step;	       /* the number the name ends with (checkpoint-N,
				* global_stepN, iter_N.pth), UINT64_MAX if none */
	struct timespec mtime; /* the folder's own modification time */
};

struct zf_runfolder;

/*
 * Reads the folder at path: its entries, in natural order of their served
 * names (checkpoint-9 before checkpoint-10). A folder holding none is no
 * error (zf_runfolder_count() is 0). ZF_ENOTFOUND when path does not
 * exist, ZF_EFORMAT when it is not a folder, ZF_EIO, ZF_ENOMEM.
 */
int zf_runfolder_scan(const char *path, struct zf_runfolder **out,
		      struct zf_error *err);

/* Frees what zf_runfolder_scan() made; NULL is a no-op. */
void zf_runfolder_free(struct zf_runfolder *r);

/* The path given to zf_runfolder_scan(). */
const char *zf_runfolder_path(const struct zf_runfolder *r);

size_t zf_runfolder_count(const struct zf_runfolder *r);

/* Entry i (i < count), or NULL. */
const struct zf_run_entry *zf_runfolder_entry(const struct zf_runfolder *r,
					      size_t i);

/* The index of the entry whose served name is `served`, or SIZE_MAX. */
size_t zf_runfolder_find(const struct zf_runfolder *r, const char *served);

/*
 * The entry a resume would load (rules 1 to 4 above) into *i, and how it
 * was chosen into *how. With `latest` the entry is the folder it names;
 * that folder may hold a save folder of its own, which the caller
 * follows. Errors say why there is no answer and what to do:
 * ZF_ENOTFOUND (nothing to pick, several and no rule, the newest
 * checkpoint-N incomplete), ZF_EFORMAT (a `latest` that names no folder
 * here), ZF_ENOMEM.
 */
int zf_runfolder_pick(const struct zf_runfolder *r, size_t *i,
		      enum zf_pick *how, struct zf_error *err);

/* "latest", "last_checkpoint", "newest-step", "only", "given". */
const char *zf_pick_str(enum zf_pick how);

#endif /* ZEROFS_RUNFOLDER_H */
