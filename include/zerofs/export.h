/* SPDX-License-Identifier: MIT */
/**
 * @file export.h
 * Writes a virtual model directory to a real folder: the files a mount
 * would show, byte for byte, read through zf_vfile_read() (the engine FUSE
 * uses), so an export and a mount can never disagree.
 *
 * Each file is written under a temporary name in the output folder and
 * renamed into place only once every file is complete, so a failed or
 * interrupted export leaves no partial file under a real name (and removes
 * its temporary files). Memory use is a few fixed buffers per thread,
 * whatever the model's size. Nothing is ever written into the checkpoint.
 */
#ifndef ZEROFS_EXPORT_H
#define ZEROFS_EXPORT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "zerofs/error.h"
#include "zerofs/hfdir.h"

/* Default worker threads (reading, converting and writing). */
#define ZF_EXPORT_THREADS 2

/* Most worker threads accepted. */
#define ZF_EXPORT_MAX_THREADS 64

/*
 * Called with the bytes written so far and the total, from the thread that
 * called zf_export() only (so it need not be thread safe): about ten times
 * a second while writing, and once more with done == total on success.
 */
typedef void (*zf_progress_fn)(void *arg, uint64_t done, uint64_t total);

struct zf_export_options {
	unsigned threads;	 /* 0: ZF_EXPORT_THREADS */
	bool force;		 /* replace files already in the folder */
	bool no_fsync;		 /* skip fsync() of files and folder (faster,
				  * not crash safe) */
	zf_progress_fn progress; /* NULL: none */
	void *progress_arg;
	/* When non-NULL and set non-zero (e.g. by a signal handler), the
	 * export stops, cleans up and fails with "interrupted". */
	const volatile sig_atomic_t *stop;
};

/*
 * Writes every file of d into out_dir, creating out_dir (and its parents)
 * when missing. Output files get mode 0644.
 *
 * Refuses, before writing anything: an out_dir inside the checkpoint's tag
 * folder or equal to a folder the directory reads files from (ZF_EUSAGE);
 * an out_dir that is not a folder (ZF_EUSAGE); a file already in out_dir
 * that the export would write, unless o->force (ZF_EEXIST, naming the
 * file). "Would write" includes weight files of a different sharding
 * (model.safetensors, model.safetensors.index.json,
 * model-NNNNN-of-NNNNN.safetensors) that a loader would pick up instead of
 * or beside the new ones; with force they are removed once the new files
 * are in place. A folder in the way is refused even with force.
 *
 * Other failures: ZF_EIO (cannot create, write or rename; no space),
 * ZF_ENOMEM, or a read error of zf_vfile_read(). On failure no temporary
 * file is left and no file under a real name was replaced, except when a
 * rename fails halfway through the final renames (then err says so).
 */
int zf_export(const struct zf_hfdir *d, const char *out_dir,
	      const struct zf_export_options *o, struct zf_error *err);

#endif /* ZEROFS_EXPORT_H */
