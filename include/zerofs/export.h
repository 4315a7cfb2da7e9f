/* SPDX-License-Identifier: MIT */
/**
 * @file export.h
 * Writes a virtual model directory to a real folder: the files a mount
 * would show, byte for byte, read through zf_vfile_read() (the engine FUSE
 * uses), so an export and a mount can never disagree.
 *
 * Each file is written under a temporary name in the output folder and
 * renamed into place only once every file is complete, so a failed or
 * interrupted export leaves no partial file under a real name. Memory use
 * is a few fixed buffers per thread, whatever the model's size. Nothing
 * is ever written into the checkpoint.
 *
 * Resume: a file is complete when its data was flushed (fsync) and then
 * a proof was attached to it, the extended attribute user.zerofs.export:
 * "zerofs-export 1 DIGEST SIZE MTIME", DIGEST being zf_vfile_digest()
 * (what the bytes are made of, sources' identities included), SIZE and
 * MTIME the written file's. A later export keeps a file (under its real
 * name, or a temporary one left by an export that was killed or failed)
 * only when it is a regular file owned by the exporting user whose proof
 * is exactly the one it would attach now: same inputs, same bytes, not
 * touched since. Everything else is written again; a size alone proves
 * nothing.
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

/* What an export found and did besides writing (filled by zf_export()). */
struct zf_export_stats {
	size_t kept_files;	  /* complete from an earlier export: not written */
	uint64_t kept_bytes;
	size_t written_files;
	uint64_t written_bytes;
	size_t leftovers_removed; /* partial temporary files of dead exports */
	size_t leftovers_foreign; /* temporary-looking files not ours: left */
	size_t complete_left;	  /* on failure: complete temporary files kept
				   * for a later export to resume from */
	bool no_proof;		  /* OUT's file system keeps no extended
				   * attributes: a later export cannot resume */
};

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
	struct zf_export_stats *stats; /* NULL: not wanted */
};

/*
 * Writes every file of d into out_dir, creating out_dir (and its parents)
 * when missing. A file gets the read bits a mount would serve it with
 * for its owner and group (access.h: never wider than its sources), plus
 * write for its owner, less the umask.
 *
 * Refuses, before writing anything: an out_dir that is the checkpoint
 * folder, its tag folder, or inside either, or that is a folder served
 * files are read from (ZF_EUSAGE) -- folders compared by device and
 * inode, up to the root, so neither a bind mount nor a symbolic link gets
 * around it; an out_dir that is not a folder (ZF_EUSAGE); an out_dir
 * another export is writing into (ZF_EEXIST); a file already in out_dir
 * that the export would write and that is not already complete (see
 * Resume), unless o->force (ZF_EEXIST, naming the file). "Would write"
 * includes weight files of a different sharding (model.safetensors,
 * model.safetensors.index.json, model-NNNNN-of-NNNNN.safetensors) that a
 * loader would pick up instead of or beside the new ones; with force they
 * are removed once the new files are in place. A folder in the way is
 * refused even with force.
 *
 * Temporary files of earlier exports (".NAME.zerofs-tmp-PID") owned by
 * the user are adopted when complete and removed when not.
 *
 * Other failures: ZF_EIO (cannot create, write or rename; no space),
 * ZF_ENOMEM, or a read error of zf_vfile_read(). On failure no partial
 * temporary file is left and no file under a real name was replaced,
 * except when a rename fails halfway through the final renames (then err
 * says so); complete temporary files stay for a later export to resume
 * from (stats->complete_left).
 */
int zf_export(const struct zf_hfdir *d, const char *out_dir,
	      const struct zf_export_options *o, struct zf_error *err);

#endif /* ZEROFS_EXPORT_H */
