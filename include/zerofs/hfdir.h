/* SPDX-License-Identifier: MIT */
/**
 * @file hfdir.h
 * The virtual Hugging Face model directory built from a checkpoint: its
 * files, their exact sizes, and the generated safetensors headers.
 *
 * Built once (at mount, export or verify), then read-only: any number of
 * threads may call zf_vfile_read() on it without locks. Holds no tensor
 * bytes; those are read from the checkpoint's files on demand. The
 * directory borrows the checkpoint and owns its metadata files.
 */
#ifndef ZEROFS_HFDIR_H
#define ZEROFS_HFDIR_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "zerofs/access.h"
#include "zerofs/ckpt.h"
#include "zerofs/dtype.h"
#include "zerofs/error.h"
#include "zerofs/source.h"

/* transformers' save_pretrained default (v4.35 to v4.57): 5 GB, decimal. */
#define ZF_DEFAULT_SHARD_SIZE 5000000000ull

enum zf_vfile_kind {
	ZF_VF_SAFETENSORS, /* generated header + tensor bytes from the checkpoint */
	ZF_VF_MEMORY,	   /* generated text: index, rewritten config.json */
	ZF_VF_PASSTHROUGH, /* a file copied through as it is (tokenizer, ...) */
};

/* One tensor inside a virtual safetensors file. */
struct zf_vtensor {
	const char *name;	     /* the served (Hugging Face) name */
	size_t tensor;		     /* the checkpoint tensor holding the data
				      * (aliases followed): zf_ckpt_tensor() */
	const struct zf_tensor *src; /* that tensor, borrowed from the checkpoint */
	enum zf_dtype dtype;	     /* served dtype */
	uint64_t offset;	     /* first byte, counted from the file start */
	uint64_t nbytes;
};

/* A file of the directory: a read-only descriptor owned by the directory. */
struct zf_vfile {
	const char *name;
	enum zf_vfile_kind kind;
	uint64_t size;		/* bytes, exact */
	struct timespec mtime;
	uint64_t ino;		/* stable: 2 + index in the directory */

	/* ZF_VF_SAFETENSORS: the header is bytes [0, header_len); the
	 * tensors follow in file order (ascending offset). */
	size_t header_len;
	const struct zf_vtensor *tensors;
	size_t n_tensors;

	/* ZF_VF_PASSTHROUGH: the file it copies; ZF_VF_MEMORY: the file it
	 * was made from (config.json), checked on every read, or NULL (the
	 * index). Owned by the directory. NULL for shards. */
	struct zf_source *src;

	/* Who may read it (access.h): the rules of every source its bytes
	 * come from; zf_access_mode() turns them into served read bits.
	 * Borrowed from the directory. */
	const struct zf_access *access;
	size_t n_access;
};

/* An allowlisted file of the metadata folder that is not served. */
struct zf_left_out {
	const char *path; /* as found in the folder */
	const char *why;  /* "a symbolic link to '/etc/shadow', outside the
			   * checkpoint folder"; untrusted text (a link's) */
};

struct zf_hfdir_options {
	enum zf_dtype dtype;	  /* ZF_DT_INVALID: the training dtype ("auto") */
	uint64_t max_shard_size;  /* 0: ZF_DEFAULT_SHARD_SIZE */
	const char *strip_prefix; /* NULL: strip "llm." when every name has it; "": none */
	const char *config_dir;	  /* NULL: the checkpoint's own folder */
	/* Build even when the checkpoint is not the whole model
	 * (zf_ckpt_info()->incomplete): verify checks what is there. By
	 * default such a checkpoint is refused with ZF_EUNSUPPORTED, saying
	 * what is missing. */
	bool allow_incomplete;
};

struct zf_hfdir;

/* What the directory is. Owned by it. */
struct zf_hfdir_info {
	const struct zf_ckpt *ck; /* borrowed: outlives the directory */
	enum zf_dtype dtype;	  /* served floating dtype */
	const char *prefix;	  /* the prefix stripped, "" for none */
	size_t n_files;		  /* sorted by name: zf_hfdir_file() */
	uint64_t total_bytes;	  /* of all files */
	uint64_t tensor_bytes;	  /* index metadata.total_size */
	size_t n_shards;
	struct timespec mtime;	  /* newest checkpoint file */
	const char *config_source; /* where config.json came from, or NULL */
	/* Who may list and search the directory (access.h): the checkpoint
	 * folder and its tag folder, and every folder above them. */
	const struct zf_access *dir_access;
	size_t n_dir_access;
	/* Metadata files not served, sorted by path: for warnings. */
	const struct zf_left_out *left_out;
	size_t n_left_out;
};

/*
 * Builds the directory of ck, which it borrows: ck must outlive it.
 * Errors: ZF_EUSAGE (bad option: a prefix not on every name, an
 * unsupported dtype), ZF_EFORMAT (two tensors with one served name, an
 * unreadable config.json), ZF_ENOMEM, ZF_EIO. *out must be freed with
 * zf_hfdir_free() before ck.
 */
int zf_hfdir_build(const struct zf_ckpt *ck,
		   const struct zf_hfdir_options *opts, struct zf_hfdir **out,
		   struct zf_error *err);

/* Frees the directory and closes its passthrough files; NULL is a no-op. */
void zf_hfdir_free(struct zf_hfdir *d);

const struct zf_hfdir_info *zf_hfdir_info(const struct zf_hfdir *d);

/* File i (i < n_files, in name order; its ino is 2 + i), or NULL. */
const struct zf_vfile *zf_hfdir_file(const struct zf_hfdir *d, size_t i);

/* The file named name, or NULL. */
const struct zf_vfile *zf_hfdir_lookup(const struct zf_hfdir *d,
				       const char *name);

/*
 * Reads up to len bytes at off into dst and returns how many: len, fewer
 * only at end of file (0 at or past it), or -1 with err set: ZF_ECHANGED
 * when a file it reads from changed since it was opened (err names the
 * file and says how), ZF_EIO when a read fails. Every source read is
 * checked (source.h), so the bytes returned are all of the files as
 * opened. Never returns a short count before end of file and never
 * zero-fills. f must be one of d's files.
 */
int64_t zf_vfile_read(const struct zf_hfdir *d, const struct zf_vfile *f,
		      void *dst, size_t len, uint64_t off,
		      struct zf_error *err);

/*
 * Bumped whenever zerofs would serve other bytes for the same checkpoint
 * and options (a header, conversion or config rewrite rule changed): it
 * is part of zf_vfile_digest(), so files an older zerofs exported are
 * written again rather than kept.
 */
#define ZF_OUTPUT_VERSION 1

/*
 * A 16-byte digest naming the exact bytes f serves, computed without
 * reading them: the output rules, f's name, size and layout, and the
 * identities (device, inode, size, times) of the files its bytes come
 * from, or a text file's own bytes. Equal digests mean equal bytes as
 * long as those files are unchanged, which every read checks. Used by
 * export to keep files a killed export already wrote. ZF_ENOMEM.
 */
int zf_vfile_digest(const struct zf_hfdir *d, const struct zf_vfile *f,
		    unsigned char out[16], struct zf_error *err);

/*
 * Describes the bytes of f from off on (at most len of them): either a run
 * that is a verbatim copy of a source file's bytes (*src set, borrowed
 * from d or its checkpoint, at *src_off), which a caller may copy
 * in-kernel (zf_source_pin_fd() + copy_file_range(), then
 * zf_source_check()), or a run that must be read with zf_vfile_read()
 * (*src NULL: generated header or text, or a converted tensor). *n is
 * the run's length: > 0 when off < f->size, 0 at or past the end.
 */
void zf_vfile_segment(const struct zf_hfdir *d, const struct zf_vfile *f,
		      uint64_t off, uint64_t len, struct zf_source **src,
		      uint64_t *src_off, uint64_t *n);

#endif /* ZEROFS_HFDIR_H */
