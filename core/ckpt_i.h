/* SPDX-License-Identifier: MIT */
/*
 * Private to the checkpoint loader (ckpt*.c, layout*.c): where the rank
 * files are, and the parsed state of each while zf_ckpt_open() runs.
 */
#ifndef ZEROFS_CKPT_I_H
#define ZEROFS_CKPT_I_H

#include "zerofs/ckpt.h"
#include "zerofs/pickle.h"
#include "zerofs/ptfile.h"

/* What ckpt_find.c learns from the folder names alone. */
struct zf_ckpt_files {
	char *tag;
	char *tag_dir;
	char *hf_dir;		/* may be NULL */
	enum zf_layout layout;
	uint32_t world_size;	/* number of optimizer files */
	char **optim;		/* world_size paths, rank order */
	char **model;		/* n_model paths: 1 (stage 1/2) or world_size */
	uint32_t n_model;
};

int zf_ckpt_locate(const char *path, const char *tag,
		   struct zf_ckpt_files *files, struct zf_error *err);
void zf_ckpt_files_release(struct zf_ckpt_files *files);

/* The file name rank `rank` would have, after the pattern of another
 * rank's file name `example`. */
void zf_rank_file_name(const char *example, uint32_t rank, char *buf,
		       size_t size);

/* One opened and parsed .pt file. */
struct zf_loaded {
	struct zf_ptfile *pf;
	struct zf_pickle *pk;
	const struct zf_pv *root;
	uint32_t source; /* index in zf_ckpt.sources */
};

/* A tensor view resolved to absolute bytes in a file. */
struct zf_view {
	uint32_t source;
	enum zf_dtype dtype;
	uint64_t offset; /* absolute byte offset of element 0 */
	uint64_t numel;
	uint32_t ndim;
	uint64_t shape[ZF_MAX_DIMS];
};

/*
 * Resolves a ZF_PV_TENSOR of file f into a contiguous byte range, checking
 * the storage record exists, is stored, and holds the view. `what` names
 * the tensor in messages.
 */
int zf_view_resolve(const struct zf_loaded *f, const struct zf_pv *t,
		    const char *what, struct zf_view *v, struct zf_error *err);

/* Appends an extent to a tensor, merging with the previous one when
 * contiguous. */
int zf_tensor_add_extent(struct zf_tensor *t, uint32_t source,
			 uint64_t offset, uint64_t len, struct zf_error *err);

/* Overflow-checked arithmetic: return true on overflow. */
static inline bool zf_mul_overflow(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_mul_overflow(a, b, r);
}

static inline bool zf_add_overflow(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_add_overflow(a, b, r);
}


#include "strmap.h"

/* Where rank r's fragment of a ZeRO-3 frozen param is. */
struct zf_frag {
	bool present;
	uint32_t source;
	enum zf_dtype dtype;
	uint64_t offset; /* absolute byte offset */
	uint64_t numel;
};

/*
 * The state of one zf_ckpt_open() while it runs (ckpt.c orchestrates;
 * ckpt_optim.c reads the optimizer files, ckpt_tensors.c the model states
 * and the tensor list). Pickle trees live only as long as this.
 */
struct zf_loader {
	struct zf_ckpt *ck;
	struct zf_ckpt_files files;
	struct zf_loaded *model; /* files.n_model */
	struct zf_loaded *optim; /* files.world_size */
	const struct zf_pv *module, *buffer_names, *param_shapes;
	const struct zf_pv *frozen_shapes, *shared;
	struct zf_strmap names; /* tensor name -> index in ck->tensors */
	size_t cap_tensors;
	struct zf_flat_param *params;
	size_t n_params;
	uint32_t n_groups;
	struct zf_rank_groups *ranks;
	double step0;	/* rank 0's optimizer step, when has_step0 */
	bool has_step0;
	char *optim_ds_version; /* rank 0 optimizer file's ds_version, or NULL */
	struct zf_frag *frags;	/* ZeRO-3 frozen fragments: [frozen i][rank r] */
	unsigned char *tmpl_bytes; /* rank 1's model states pickle (see load_rank) */
	size_t tmpl_len;
};

static inline const char *zf_model_path(const struct zf_loader *L, uint32_t i)
{
	return L->files.model[i];
}

/* Items in a dict, list or tuple; 0 for anything else. */
static inline size_t zf_pv_count_items(const struct zf_pv *v)
{
	if (zf_pv_is(v, ZF_PV_DICT))
		return v->u.dict.n;
	if (zf_pv_is(v, ZF_PV_LIST) || zf_pv_is(v, ZF_PV_TUPLE))
		return v->u.seq.n;
	return 0;
}


/* ckpt_optim.c: stage, world size, optimizer step and the fp32 partitions
 * of rank r (its pickle parsed), cross-checked with rank 0; then the checks
 * across all ranks. */
int zf_load_optim_rank(struct zf_loader *L, uint32_t r, struct zf_error *err);
int zf_load_optim_finish(struct zf_loader *L, struct zf_error *err);

/* ckpt_tensors.c: rank 0's model states and the tensor list. */
int zf_load_model_meta(struct zf_loader *L, struct zf_error *err);
int zf_load_model_rank(struct zf_loader *L, uint32_t r, struct zf_error *err);
int zf_collect_params(struct zf_loader *L, struct zf_error *err);
int zf_find_train_dtype(struct zf_loader *L);
int zf_collect_tensors(struct zf_loader *L, struct zf_error *err);
void zf_finish_dtypes(struct zf_loader *L);

/* The fp32 flat partitions one rank holds, in list order. */
struct zf_rank_groups {
	struct zf_view *v;
	size_t n;
	const char *path; /* the optimizer file, for messages */
};

/* A trainable parameter in the order of the flat fp32 data. */
struct zf_flat_param {
	const char *name;
	uint64_t numel;
	uint32_t group;	/* param group (ZeRO-1/2) */
	size_t tensor;	/* index into zf_ckpt.tensors */
};

/* ZeRO-3: each param takes ceil(n/ws) elements from every rank's flat
 * space (its sub-groups concatenated). Fills the params' extents. */
int zf_layout_zero3(struct zf_ckpt *ck, const struct zf_rank_groups *ranks,
		    const struct zf_flat_param *params, size_t n_params,
		    struct zf_error *err);

/* ZeRO-1/2 and BF16_Optimizer: group g is the ranks' partitions of group g
 * concatenated; its params lie back to back from 0. */
int zf_layout_zero12(struct zf_ckpt *ck, const struct zf_rank_groups *ranks,
		     const struct zf_flat_param *params, size_t n_params,
		     uint32_t n_groups, struct zf_error *err);

#endif /* ZEROFS_CKPT_I_H */
