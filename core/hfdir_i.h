/* SPDX-License-Identifier: MIT */
/*
 * Private to the virtual directory (hfdir.c, hfconfig.c, reader.c): the
 * directory's own struct, and what each file holds that its public
 * descriptor does not show.
 */
#ifndef ZEROFS_HFDIR_I_H
#define ZEROFS_HFDIR_I_H

#include <stdbool.h>

#include "zerofs/hfdir.h"

/* What the read engine needs of a file besides its descriptor. */
struct zf_vfile_data {
	unsigned char *header; /* SAFETENSORS: 8-byte length + JSON + padding */
	char *data;	       /* MEMORY: size bytes (and a NUL) */
	struct zf_access_set access; /* the file's own rules (access.h), when
				      * not shared: passthrough and config */
};

/* A file while the directory is built: its descriptor and its data. */
struct zf_vfile_entry {
	struct zf_vfile f;
	struct zf_vfile_data data;
};

/*
 * The directory. It borrows the checkpoint (info.ck) and owns everything
 * else: names, tensors, headers, texts and passthrough sources.
 * data[i] belongs to files[i].
 */
struct zf_hfdir {
	struct zf_hfdir_info info; /* strings point at the ones below */
	char *prefix, *config_source;
	struct zf_vfile *files;	   /* info.n_files, sorted by name */
	struct zf_vfile_data *data;
	struct zf_access_set ck_access;	 /* every checkpoint file: shards, index */
	struct zf_access_set dir_access; /* the mount's folder */
	struct zf_left_out *left_out;	 /* info.n_left_out, strings owned */
};

/* Files of the metadata folder left out, while the directory is built. */
struct zf_left_outs {
	struct zf_left_out *v;
	size_t n, cap;
};

/* Appends (path copied, why taken: freed on failure). 0, or -1 when out
 * of memory. */
int zf_left_outs_add(struct zf_left_outs *lo, const char *path, char *why);

/* A growing list of files while the directory is built. */
struct zf_vfiles {
	struct zf_vfile_entry *v;
	size_t n, cap;
};

/* Appends a zeroed file named name (copied); returns it or NULL. */
struct zf_vfile_entry *zf_vfiles_add(struct zf_vfiles *l, const char *name);

/*
 * Adds config.json (torch_dtype / dtype rewritten to dtype), and the
 * tokenizer, generation and processor files found in dir, to l. Training
 * state (optimizer, rng, trainer state, DeepSpeed files) and weights are
 * never taken. Allowlisted names that are not served (links out of dir,
 * FIFOs, folders, broken links, oversized files) are added to lo with the
 * reason. chosen: dir is the user's --config folder (for messages).
 * *config_found tells whether a config.json was added.
 */
int zf_hf_add_metadata(struct zf_vfiles *l, struct zf_left_outs *lo,
		       const char *dir, bool chosen, enum zf_dtype dtype,
		       bool *config_found, struct zf_error *err);

/* Computes every file's access rules and the folder's (access.h):
 * shards and the index are made of every checkpoint file, a passthrough
 * file and config.json of their source. ZF_ENOMEM, ZF_EIO. */
int zf_hfdir_set_access(struct zf_hfdir *d, struct zf_error *err);

#endif /* ZEROFS_HFDIR_I_H */
