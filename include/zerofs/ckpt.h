/* SPDX-License-Identifier: MIT */
/**
 * @file ckpt.h
 * A DeepSpeed ZeRO checkpoint, read into an immutable model of every
 * tensor it holds: name, dtype, shape, and exactly which bytes of which
 * files hold it.
 *
 * zf_ckpt_open() finds the tag folder, opens every rank's model and
 * optimizer file, parses their pickles with the safe reader, checks that
 * the ranks agree and that every size adds up, and computes each tensor's
 * extents. After it returns the model is read-only: any number of threads
 * may read it and pread() the extents without locks. Nothing is written.
 */
#ifndef ZEROFS_CKPT_H
#define ZEROFS_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "zerofs/dtype.h"
#include "zerofs/error.h"

#define ZF_MAX_DIMS 16

enum zf_tensor_kind {
	ZF_KIND_PARAM,	/* trainable parameter, from the fp32 master copy */
	ZF_KIND_FROZEN, /* requires_grad=False parameter */
	ZF_KIND_BUFFER, /* persistent buffer, from `module` */
	ZF_KIND_ALIAS,	/* tied parameter (shared_params): same data as another */
};

/* How the checkpoint folder was laid out. */
enum zf_layout {
	ZF_LAYOUT_DEEPSPEED, /* save dir with `latest` and tag folders */
	ZF_LAYOUT_TRAINER,   /* HF Trainer checkpoint-N/: `latest` + config files */
	ZF_LAYOUT_TAGDIR,    /* the tag folder itself (global_stepN/, iter_N.pth/) */
};

/* Which optimizer wrote the fp32 master weights. */
enum zf_optimizer {
	ZF_OPT_ZERO,	    /* DeepSpeedZeroOptimizer (stage 1/2) or Stage3 */
	ZF_OPT_BF16,	    /* BF16_Optimizer: no zero_stage key */
};

/* One source file the extents point into. */
struct zf_source {
	char *path;	       /* as opened (tag dir + name) */
	const char *name;      /* base name, points into path */
	int fd;		       /* read-only, O_CLOEXEC, owned by the ckpt */
	uint64_t size;	       /* bytes, at open */
	struct timespec mtime; /* at open */
	dev_t dev;
	ino_t ino;
	uint64_t fingerprint;  /* XXH3 of (dev, ino, size, mtime) at open */
};

/*
 * A run of bytes in one source file. The extents of a tensor, concatenated
 * in order, are its elements in row-major order, in the tensor's src_dtype.
 */
struct zf_extent {
	uint32_t source; /* index into zf_ckpt.sources */
	uint64_t offset; /* absolute byte offset in that file */
	uint64_t len;	 /* bytes, a multiple of the element size */
};

struct zf_tensor {
	char *name;			/* state_dict name as saved (prefix kept) */
	enum zf_tensor_kind kind;
	size_t alias_of;		/* ALIAS only: index of the source tensor */
	enum zf_dtype src_dtype;	/* dtype of the bytes in the extents */
	enum zf_dtype model_dtype;	/* dtype of this tensor in the model itself */
	uint32_t ndim;
	uint64_t shape[ZF_MAX_DIMS];
	uint64_t numel;
	struct zf_extent *extents;	/* NULL for ALIAS: use alias_of's */
	size_t n_extents;
};

struct zf_ckpt {
	char *path;	    /* what the user named */
	char *tag;	    /* e.g. "global_step3" */
	char *tag_dir;	    /* folder holding the .pt files */
	char *hf_dir;	    /* folder that may hold config/tokenizer files, or NULL */
	enum zf_layout layout;
	enum zf_optimizer optimizer;
	int stage;		/* ZeRO stage 1, 2 or 3 */
	uint32_t world_size;	/* data-parallel ranks */
	enum zf_dtype train_dtype; /* F32, BF16 or F16 */
	char *ds_version;	/* "0.14.0", or "" if absent */
	uint64_t global_steps;	/* -1 cast if absent */

	struct zf_source *sources;
	size_t n_sources;

	/* In the model's state_dict() order (the key order of `module`),
	 * aliases included where the model has them. */
	struct zf_tensor *tensors;
	size_t n_tensors;

	uint64_t n_params;	/* elements of params and frozen params, aliases not counted */
};

struct zf_ckpt_options {
	const char *tag; /* NULL: read `latest` (or the folder is the tag) */
};

/*
 * Opens the checkpoint at path: a DeepSpeed save folder (with `latest`), a
 * Trainer checkpoint-N/ folder, or a tag folder. On success *out owns all
 * open descriptors. Errors name the file and the problem: ZF_ENOTFOUND
 * (no tag, missing rank file), ZF_EFORMAT (bad or inconsistent data),
 * ZF_EUNSUPPORTED, ZF_EIO, ZF_ENOMEM.
 */
int zf_ckpt_open(const char *path, const struct zf_ckpt_options *opts,
		 struct zf_ckpt **out, struct zf_error *err);

/*
 * Checks that no source file changed since zf_ckpt_open(): each open
 * descriptor still has its size and mtime, and each path still names the
 * same file (a training job that rewrites the tag replaces or truncates
 * files). Cheap: two stat calls per file, no data read. ZF_ECHANGED names
 * the first file that changed and how; ZF_EIO when a stat fails.
 */
int zf_ckpt_check_sources(const struct zf_ckpt *ck, struct zf_error *err);

/* The metadata fingerprint of a file as zf_source.fingerprint records it. */
uint64_t zf_source_fingerprint(dev_t dev, ino_t ino, uint64_t size,
			       const struct timespec *mtime);

/* Closes every descriptor and frees the model; NULL is a no-op. */
void zf_ckpt_free(struct zf_ckpt *ck);

/* Index of the tensor named name, or (size_t)-1. */
size_t zf_ckpt_find(const struct zf_ckpt *ck, const char *name);

/* The extents holding t's data (following an alias to its source). */
const struct zf_tensor *zf_ckpt_data_of(const struct zf_ckpt *ck,
					const struct zf_tensor *t);

const char *zf_kind_str(enum zf_tensor_kind kind);
const char *zf_layout_str(enum zf_layout layout);

/*
 * Checks the CRC-32 of every stored zip record of source file `source`
 * (an index into ck->sources) with zf_ptfile_check_crc(): reads the whole
 * file. ZF_EFORMAT names the file and the first bad entry; ZF_EUSAGE when
 * source is out of range; ZF_EIO, ZF_ENOMEM. Safe to call from several
 * threads at once, for different or the same source.
 */
int zf_ckpt_check_crc(const struct zf_ckpt *ck, size_t source,
		      struct zf_error *err);

/*
 * Reads source file `source`'s zip directory a second time, with libzip,
 * and checks that both readers see the same entries (names, sizes,
 * methods, CRCs). zerofs serves from its own reader; this independent
 * opinion is verify's. ZF_EFORMAT names the first disagreement.
 */
int zf_ckpt_check_zip(const struct zf_ckpt *ck, size_t source,
		      struct zf_error *err);

#endif /* ZEROFS_CKPT_H */
