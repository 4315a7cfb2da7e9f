/* SPDX-License-Identifier: MIT */
/*
 * Private to core/: a Hugging Face model folder given with --base (the
 * model a LoRA or other partial run started from), read as the list of
 * tensors its safetensors files hold. Only the headers are read; every
 * tensor's bytes stay in its file, read lazily through a source.
 */
#ifndef ZEROFS_BASE_H
#define ZEROFS_BASE_H

#include <stddef.h>
#include <stdint.h>

#include "zerofs/ckpt.h"
#include "zerofs/error.h"
#include "zerofs/source.h"

struct zf_base_tensor {
	char *name;
	enum zf_dtype dtype;
	uint32_t ndim;
	uint64_t shape[ZF_MAX_DIMS];
	uint64_t numel;
	uint32_t file;	 /* index in files[] */
	uint64_t offset; /* absolute byte offset of its data in that file */
};

struct zf_base {
	char *dir;		   /* the folder read (a hub repo: its snapshot) */
	struct zf_source **files;  /* owned until adopted (set to NULL) */
	size_t n_files;
	struct zf_base_tensor *tensors; /* in the files' order */
	size_t n;
};

/*
 * Reads the safetensors headers of folder dir: model.safetensors.index.json
 * and the shards it names, or model.safetensors, or the one *.safetensors
 * file there. A hub cache repo folder (models--org--name/ with refs/main)
 * is read at the snapshot refs/main names; snapshot files may be links
 * into ../../blobs. Every header is checked as safetensors' own reader
 * checks it (8-byte length within the file and at most 100 MB, a JSON
 * object of valid UTF-8, known dtypes, shapes and data_offsets that agree
 * and lie inside the file, no name twice). Errors name the file:
 * ZF_ENOTFOUND (no weights there), ZF_EFORMAT, ZF_EUNSUPPORTED (a dtype
 * zerofs does not serve), ZF_EIO, ZF_ENOMEM.
 */
int zf_base_open(const char *dir, struct zf_base **out, struct zf_error *err);

/* Frees b and closes the files it still owns; NULL is a no-op. */
void zf_base_free(struct zf_base *b);

#endif /* ZEROFS_BASE_H */
