/* SPDX-License-Identifier: MIT */
/**
 * @file ckpt.h
 * A DeepSpeed ZeRO checkpoint, read into an immutable model of every
 * tensor it holds: name, dtype, shape, and where its bytes are.
 *
 * zf_ckpt_open() finds the tag folder, opens every rank's model and
 * optimizer file, parses their pickles with the safe reader, checks that
 * the ranks agree, belong to one save and are distinct files, and lays
 * out every tensor. man/zerofs-checkpoint.5 describes the files and the
 * placement maths.
 *
 * The checkpoint owns its files (struct zf_source, source.h): holding a
 * file does not hold a descriptor. After zf_ckpt_open() returns, the
 * checkpoint is read-only: any number of threads may call any function
 * below at once. Nothing is ever written.
 */
#ifndef ZEROFS_CKPT_H
#define ZEROFS_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "zerofs/container.h"
#include "zerofs/dtype.h"
#include "zerofs/error.h"
#include "zerofs/runfolder.h"
#include "zerofs/source.h"

#define ZF_MAX_DIMS 16

enum zf_tensor_kind {
	ZF_KIND_PARAM,	/* trainable parameter, from the fp32 master copy */
	ZF_KIND_FROZEN, /* requires_grad=False parameter */
	ZF_KIND_BUFFER, /* persistent buffer, from `module` */
	ZF_KIND_ALIAS,	/* tied parameter (shared_params): same data as another */
};

/* How the checkpoint folder was laid out, and so who wrote it. */
enum zf_layout {
	ZF_LAYOUT_DEEPSPEED, /* save dir with `latest` and tag folders */
	ZF_LAYOUT_TRAINER,   /* HF Trainer checkpoint-N/ (`latest` + config
			      * files), or a run folder of them */
	ZF_LAYOUT_TAGDIR,    /* the tag folder itself (global_stepN/) */
	ZF_LAYOUT_XTUNER,    /* XTuner (mmengine): an iter_N.pth/ or epoch_N.pth/
			      * tag folder, or a work_dir of them */
};

/* Which optimizer wrote the fp32 master weights. */
enum zf_optimizer {
	ZF_OPT_ZERO,	    /* DeepSpeedZeroOptimizer (stage 1/2) or Stage3 */
	ZF_OPT_BF16,	    /* BF16_Optimizer: no zero_stage key */
	ZF_OPT_FP16,	    /* ZeRO-0 FP16_Optimizer (fused): fp32_groups_flat in
			     * the model states (bf16 too, DeepSpeed >= 0.17.6) */
	ZF_OPT_FP16_UNFUSED, /* ZeRO-0 FP16_UnfusedOptimizer: fp32_groups */
	ZF_OPT_NONE,	    /* ZeRO-0 fp32: the model states hold the weights */
};

struct zf_ckpt;

/* What the checkpoint is. Owned by it; strings live as long as it does. */
struct zf_ckpt_info {
	const char *path;	   /* what the user named */
	const char *tag;	   /* e.g. "global_step3" */
	const char *tag_dir;	   /* folder holding the .pt files */
	const char *hf_dir;	   /* folder that may hold config/tokenizer files, or NULL */
	const char *ds_version;	   /* "0.14.0", or "" if absent */
	enum zf_layout layout;
	enum zf_pick pick;	   /* how the tag was chosen in path (runfolder.h);
				    * for a run folder, how its checkpoint-N was */
	size_t n_choices;	   /* folders holding a checkpoint it was chosen
				    * among; 0 when not counted (`latest` named it) */
	enum zf_optimizer optimizer;
	int stage;		   /* ZeRO stage 0 to 3, as the run was configured */
	uint32_t world_size;	   /* data-parallel ranks */
	enum zf_dtype train_dtype; /* F32, BF16 or F16 */
	uint64_t global_steps;	   /* UINT64_MAX if absent */
	uint64_t n_params;	   /* elements of params and frozen params, aliases not counted */
	size_t n_files;		   /* model states files (rank order), then optimizer
				    * files, pipeline layer files, --base files */
	size_t n_base_files;	   /* the last n_base_files files: --base safetensors */
	const char *base_dir;	   /* the --base folder read, or NULL */
	/* Not the whole model: why, and what is missing (a message for
	 * people, about incomplete_where), or NULL when whole. The checkpoint
	 * opens, so that it can be inspected and verified; a directory is
	 * built from it only on request (zf_hfdir_options.allow_incomplete). */
	const char *incomplete;
	const char *incomplete_where;
	uint64_t files_bytes;	   /* of all files */
	struct timespec mtime;	   /* the newest file's modification time */
	size_t n_tensors;
};

/*
 * One tensor: a plain descriptor. Where its bytes are is the checkpoint's
 * business: see zf_ckpt_map() and zf_ckpt_read().
 */
struct zf_tensor {
	const char *name;		/* state_dict name as saved (prefix kept) */
	enum zf_tensor_kind kind;
	size_t alias_of;		/* ALIAS only: index of the tensor holding the data */
	/* Not an alias, yet the same data as tensor same_as under a second
	 * name (a module registered under two attribute names, a tie
	 * DeepSpeed did not record): served on its own, with the bytes of
	 * same_as (the fp32 master of a trainable one). (size_t)-1 when
	 * the tensor is the only name of its data. */
	size_t same_as;
	bool from_base;			/* its bytes come from a --base file */
	enum zf_dtype src_dtype;	/* dtype of the stored bytes */
	enum zf_dtype model_dtype;	/* dtype of this tensor in the model itself */
	uint32_t ndim;
	uint64_t shape[ZF_MAX_DIMS];
	uint64_t numel;
};

struct zf_ckpt_options {
	const char *tag; /* NULL: read `latest` (or the folder is the tag) */
	/* A Hugging Face model folder (local, or a hub cache snapshot or
	 * repo folder) whose safetensors complete the model: every tensor
	 * the checkpoint lacks is taken from it; NULL: none. */
	const char *base_dir;
};

/*
 * Opens the checkpoint at path: a DeepSpeed save folder (with `latest`), a
 * Trainer checkpoint-N/ folder, or a tag folder. On success *out owns
 * every file. Errors name the file and the problem: ZF_ENOTFOUND (no tag,
 * missing rank file), ZF_EFORMAT (bad or inconsistent data, files from
 * two saves, two ranks that are one file or copies of one),
 * ZF_EUNSUPPORTED, ZF_EIO, ZF_ECHANGED, ZF_ENOMEM.
 */
int zf_ckpt_open(const char *path, const struct zf_ckpt_options *opts,
		 struct zf_ckpt **out, struct zf_error *err);

/* Closes every file and frees the model; NULL is a no-op. Nothing
 * borrowing from ck (a struct zf_hfdir) may be in use. */
void zf_ckpt_free(struct zf_ckpt *ck);

const struct zf_ckpt_info *zf_ckpt_info(const struct zf_ckpt *ck);

/* Tensor i (i < n_tensors), in the model's state_dict() order. */
const struct zf_tensor *zf_ckpt_tensor(const struct zf_ckpt *ck, size_t i);

/* File i (i < n_files), borrowed for the life of ck. */
struct zf_source *zf_ckpt_file(const struct zf_ckpt *ck, size_t i);

/* Index of the tensor named name, or (size_t)-1. */
size_t zf_ckpt_find(const struct zf_ckpt *ck, const char *name);

/* A run of bytes in one file. */
struct zf_run {
	uint32_t file;	 /* index for zf_ckpt_file() */
	uint64_t offset; /* absolute byte offset in that file */
	uint64_t len;	 /* bytes */
};

/*
 * Where byte off of tensor i's stored data is (src_dtype, row-major;
 * an alias maps to the tensor it ties to): the longest run of contiguous
 * bytes starting there, cut at len. Callers walk a range by adding run.len
 * to off. ZF_EUSAGE when i is out of range, len is 0 or off is not inside
 * the tensor's numel * element size bytes.
 */
int zf_ckpt_map(const struct zf_ckpt *ck, size_t i, uint64_t off,
		uint64_t len, struct zf_run *run);

/*
 * Reads bytes [off, off + len) of tensor i's stored data into buf through
 * the files' sources, which check after every read that the file is still
 * the one opened: ZF_ECHANGED (naming the file and how it changed) or
 * ZF_EIO, never a mix of two saves. ZF_EUSAGE for a range outside the
 * tensor.
 */
int zf_ckpt_read(const struct zf_ckpt *ck, size_t i, uint64_t off,
		 size_t len, void *buf, struct zf_error *err);

/*
 * True when tensor i's bytes are not one run per file but gathered from
 * many short ones (a view with strides, e.g. a transposed frozen matrix):
 * read it with zf_ckpt_read(), which gathers efficiently, rather than
 * copying the runs of zf_ckpt_map() one by one.
 */
bool zf_ckpt_gathers(const struct zf_ckpt *ck, size_t i);

/*
 * The byte ranges of the files that tensor data is read from: each whole
 * tensor (buffers, stage 1/2 frozen params, tensors of a --base file), the
 * bytes a strided view's elements span, each rank's fragment of a
 * ZeRO-3 frozen param, and each rank's fp32 flat group (ZeRO-3) or
 * partition (ZeRO-1/2), inside which the trainable params lie apart by
 * construction. If two ranges overlap, some byte would be served as two
 * things: verify's overlap check.
 */
struct zf_ckpt_range {
	uint32_t file;	 /* index for zf_ckpt_file() */
	uint64_t offset; /* absolute byte offset */
	uint64_t len;	 /* bytes */
	size_t tensor;	 /* the tensor, or SIZE_MAX for an fp32 group */
	uint32_t group;	 /* SIZE_MAX tensor: the fp32 group's index, */
	uint32_t rank;	 /* and the rank holding it */
};

/* All ranges, in no particular order: *out is malloc'd (free it), *n is
 * their number. ZF_ENOMEM. */
int zf_ckpt_ranges(const struct zf_ckpt *ck, struct zf_ckpt_range **out,
		   size_t *n, struct zf_error *err);

/* Checks that no file changed since zf_ckpt_open() (zf_source_check() of
 * each, stopping at the first change): ZF_ECHANGED, ZF_EIO, ZF_OK. */
int zf_ckpt_check_files(const struct zf_ckpt *ck, struct zf_error *err);

const char *zf_kind_str(enum zf_tensor_kind kind);
const char *zf_layout_str(enum zf_layout layout);

/*
 * The format of file i: ZF_CONTAINER_ZIP or ZF_CONTAINER_LEGACY (torch's
 * legacy serialization, which stores no CRCs); 0 for a --base model's
 * safetensors file (no torch.save file) and when i is out of range.
 */
enum zf_container_kind zf_ckpt_file_kind(const struct zf_ckpt *ck, size_t i);

/*
 * Reads every record of file `file` again (zf_container_check_records()):
 * for a zip, its directory again and every stored record through libzip,
 * checking its CRC-32; for a legacy file, its pickles and records walked
 * again and every byte read (there is no CRC to check). ZF_EFORMAT names
 * the file and the first bad entry; ZF_EUSAGE when file is out of range;
 * ZF_EIO, ZF_ECHANGED, ZF_ENOMEM. Safe to call from several threads at
 * once.
 */
int zf_ckpt_check_crc(const struct zf_ckpt *ck, size_t file,
		      struct zf_error *err);

/*
 * Reads file `file`'s structure again: a zip's directory with zerofs's
 * reader and with libzip, which must see the same entries (names, sizes,
 * methods, CRCs); zerofs serves from its own reader, and this independent
 * opinion is verify's. A legacy file has no directory for a second
 * reader: its pickles are parsed and its records walked again.
 * ZF_EFORMAT names the first disagreement.
 */
int zf_ckpt_check_zip(const struct zf_ckpt *ck, size_t file,
		      struct zf_error *err);

#endif /* ZEROFS_CKPT_H */
