/* SPDX-License-Identifier: MIT */
/**
 * @file hfdir.h
 * The virtual Hugging Face model directory built from a checkpoint: its
 * files, their exact sizes, and the generated safetensors headers.
 *
 * Built once (at mount, export or verify), then read-only: any number of
 * threads may call zf_vfile_read() on it without locks. Holds no tensor
 * bytes; those are read from the checkpoint's files on demand.
 */
#ifndef ZEROFS_HFDIR_H
#define ZEROFS_HFDIR_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "zerofs/ckpt.h"
#include "zerofs/dtype.h"
#include "zerofs/error.h"

/* transformers' save_pretrained default (v4.35 to v4.57): 5 GB, decimal. */
#define ZF_DEFAULT_SHARD_SIZE 5000000000ull

enum zf_vfile_kind {
	ZF_VF_SAFETENSORS, /* generated header + tensor bytes from the sources */
	ZF_VF_MEMORY,	   /* generated text: index, rewritten config.json */
	ZF_VF_PASSTHROUGH, /* a file copied through as it is (tokenizer, ...) */
};

/* One tensor inside a virtual safetensors file. */
struct zf_vtensor {
	char *name;		     /* the served (Hugging Face) name */
	const struct zf_tensor *src; /* where the data is (aliases followed) */
	enum zf_dtype dtype;	     /* served dtype */
	uint64_t offset;	     /* first byte, counted from the file start */
	uint64_t nbytes;
};

struct zf_vfile {
	char *name;
	enum zf_vfile_kind kind;
	uint64_t size;		/* bytes, exact */
	struct timespec mtime;
	uint64_t ino;		/* stable: 2 + index in zf_hfdir.files */

	/* ZF_VF_SAFETENSORS */
	unsigned char *header;	/* 8-byte length + JSON + padding */
	size_t header_len;
	struct zf_vtensor *tensors; /* in file order (ascending offset) */
	size_t n_tensors;

	/* ZF_VF_MEMORY */
	char *data;

	/* ZF_VF_PASSTHROUGH */
	char *path;
	int fd; /* read-only, owned */
};

struct zf_hfdir_options {
	enum zf_dtype dtype;	  /* ZF_DT_INVALID: the training dtype ("auto") */
	uint64_t max_shard_size;  /* 0: ZF_DEFAULT_SHARD_SIZE */
	const char *strip_prefix; /* NULL: strip "llm." when every name has it; "": none */
	const char *config_dir;	  /* NULL: the checkpoint's own folder */
};

struct zf_hfdir {
	const struct zf_ckpt *ck; /* borrowed: must outlive the hfdir */
	enum zf_dtype dtype;	  /* served floating dtype */
	char *prefix;		  /* the prefix stripped, "" for none */
	struct zf_vfile *files;	  /* sorted by name */
	size_t n_files;
	uint64_t total_bytes;	  /* of all files */
	uint64_t tensor_bytes;	  /* index metadata.total_size */
	size_t n_shards;
	struct timespec mtime;	  /* newest source file */
	char *config_source;	  /* where config.json came from, or NULL */
};

/*
 * Builds the directory for ck. Errors: ZF_EUSAGE (bad option: a prefix
 * not on every name, an unsupported dtype), ZF_EFORMAT (two tensors with
 * one served name, an unreadable config.json), ZF_ENOMEM, ZF_EIO.
 * *out must be freed with zf_hfdir_free() before ck.
 */
int zf_hfdir_build(const struct zf_ckpt *ck,
		   const struct zf_hfdir_options *opts, struct zf_hfdir **out,
		   struct zf_error *err);

void zf_hfdir_free(struct zf_hfdir *d);

/* The file named name, or NULL. */
const struct zf_vfile *zf_hfdir_lookup(const struct zf_hfdir *d,
				       const char *name);

/*
 * Reads up to len bytes at off into dst and returns how many: len, fewer
 * only at end of file (0 at or past it), or -1 with err set (ZF_EIO when a
 * source read fails, ZF_ECHANGED when a source file changed size). Never
 * returns a short count before end of file and never zero-fills.
 */
int64_t zf_vfile_read(const struct zf_hfdir *d, const struct zf_vfile *f,
		      void *dst, size_t len, uint64_t off,
		      struct zf_error *err);

/*
 * Describes the bytes of f from off on (at most len of them): either a run
 * that is a verbatim copy of a source file's bytes (*fd >= 0, a descriptor
 * owned by d or its checkpoint, at *src_off), which a caller may copy
 * in-kernel with copy_file_range(), or a run that must be read with
 * zf_vfile_read() (*fd == -1: generated header or text, or a converted
 * tensor). *n is the run's length: > 0 when off < f->size, 0 at or past
 * the end.
 */
void zf_vfile_segment(const struct zf_hfdir *d, const struct zf_vfile *f,
		      uint64_t off, uint64_t len, int *fd, uint64_t *src_off,
		      uint64_t *n);

#endif /* ZEROFS_HFDIR_H */
