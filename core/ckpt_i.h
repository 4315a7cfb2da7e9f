/* SPDX-License-Identifier: MIT */
/*
 * Private to the checkpoint loader (ckpt*.c, layout*.c, view.c): the
 * checkpoint's own struct, and the state of one zf_ckpt_open() while it
 * runs. man/zerofs-checkpoint.5 describes the files these read.
 */
#ifndef ZEROFS_CKPT_I_H
#define ZEROFS_CKPT_I_H

#include <pthread.h>
#include <stdbool.h>

#include "place.h"
#include "strmap.h"
#include "zerofs/ckpt.h"
#include "zerofs/pickle.h"
#include "zerofs/container.h"
#include "zerofs/source.h"

/*
 * The checkpoint: it owns its files (sources) and everything else here.
 * Files are the model states files in rank order, then the optimizer
 * files in rank order; the layout's first_model and first_optim say where
 * each list starts. Nothing of the zip directories or pickles is kept:
 * the places and the layout's tables hold every offset serving needs.
 */
struct zf_ckpt {
	struct zf_ckpt_info info; /* strings point at the ones below */
	char *path, *tag, *tag_dir, *hf_dir, *ds_version;
	struct zf_source **files; /* info.n_files, owned */
	enum zf_container_kind *kinds; /* info.n_files: each file's format */
	struct zf_tensor *tensors; /* info.n_tensors; names owned */
	struct zf_place *places;   /* parallel to tensors */
	struct zf_rank_tables lay;
};

/* What ckpt_find.c learns from the folder names alone. */
struct zf_ckpt_files {
	char *tag;
	char *tag_dir;
	char *hf_dir;		/* may be NULL */
	enum zf_layout layout;
	enum zf_pick pick;	/* how tag was chosen (zf_ckpt_info) */
	size_t n_choices;
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

/* One rank file while the checkpoint loads. */
struct zf_loaded {
	uint32_t file;		 /* index in ck->files */
	struct zf_container *ct; /* its zip directory or legacy records, while needed */
	struct zf_pickle *pk;	 /* its own parse; NULL when it shares a template's */
	const struct zf_pickle *tree; /* pk, or the template's it shares */
	const struct zf_pv *root;
	bool has_digest;	 /* optimizer files: digest of the records */
	uint64_t digest[2];
	struct zf_error err;	 /* what went wrong, when loaded by a worker */
};

/* A tensor view resolved to absolute bytes in a file. */
struct zf_view {
	uint32_t file;	 /* index in ck->files */
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

/* A part of an fp32 partition as the optimizer file holds it. */
struct zf_seg {
	uint64_t offset; /* absolute byte offset of element 0 */
	uint64_t numel;
};

/* What one rank's optimizer file says about its fp32 master weights. */
struct zf_rank_optim {
	struct zf_seg *parts; /* ZeRO-1/2: its partition of each param group */
	size_t n;	      /* fp32 groups in the file */
	uint32_t segs;	      /* ZeRO-3: table id of its flat groups */
	uint64_t flat_numel;  /* ZeRO-3: elements of its flat space */
};

/* A trainable parameter in the order of the flat fp32 data. */
struct zf_flat_param {
	const char *name;
	uint64_t numel;
	uint32_t group;	/* param group (ZeRO-1/2), sub-group (ZeRO-3) */
	uint64_t start;	/* element where it starts in its group (ZeRO-1/2) */
	size_t tensor;	/* index into ck->tensors */
};

/*
 * The state of one zf_ckpt_open() while it runs. ckpt.c runs the phases;
 * ckpt_optim.c reads the optimizer files, ckpt_tensors.c the model states
 * and the tensor list, layout_zero*.c places the parameters. Pickle trees
 * live only as long as this.
 */
struct zf_loader {
	struct zf_ckpt *ck;
	struct zf_ckpt_files files;
	uint32_t ws, n_model;
	struct zf_loaded *model; /* n_model */
	struct zf_loaded *optim; /* ws */
	/* Rank 0's model states, parsed until the end. */
	const struct zf_pv *module, *buffer_names, *param_shapes;
	const struct zf_pv *frozen_shapes, *shared;
	struct zf_strmap names; /* tensor name -> index in ck->tensors */
	size_t cap_tensors;
	struct zf_flat_param *params;
	size_t n_params;
	uint32_t n_groups;
	size_t *group_first;	/* n_groups + 1: group g is params[first[g], first[g+1]) */
	size_t *param_of;	/* tensor index -> index in params, or SIZE_MAX */
	size_t *frozen;		/* ZeRO-3: frozen param i -> tensor index */
	struct zf_rank_optim *ropt; /* ws */
	double step0;		/* rank 0's optimizer step, when has_step0 */
	bool has_step0;
	char *optim_ds_version; /* rank 0 optimizer file's ds_version, or NULL */
	/* Files after the first of their kind are compared with these and
	 * share their tree when the pickle is the same (ckpt_ranks.c). */
	const struct zf_loaded *optim_tmpl, *model_tmpl;
	pthread_mutex_t lock;	/* ck->lay.tables and slice_err, while workers load ranks */
	/* The lowest rank whose param_slice_mappings are not its part:
	 * told after the layout's size checks, which explain more. */
	uint32_t slice_rank;	/* UINT32_MAX: none */
	struct zf_error slice_err;
};

static inline const char *zf_model_path(const struct zf_loader *L, uint32_t r)
{
	return L->files.model[r];
}

static inline const char *zf_optim_path(const struct zf_loader *L, uint32_t r)
{
	return L->files.optim[r];
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

/* Overflow-checked arithmetic: return true on overflow. */
static inline bool zf_mul_overflow(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_mul_overflow(a, b, r);
}

static inline bool zf_add_overflow(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_add_overflow(a, b, r);
}

/* ckpt_ranks.c: opens and parses the rank files (phases "load first
 * ranks" and "load other ranks" of zf_ckpt_open()), checks that no two
 * are one file or copies of one. */
int zf_load_first_ranks(struct zf_loader *L, struct zf_error *err);
void zf_note_slice_mappings(struct zf_loader *L, uint32_t r);
int zf_load_other_ranks(struct zf_loader *L, struct zf_error *err);
void zf_loader_unload(struct zf_loader *L);

/* ckpt_optim.c: stage, world size, optimizer step and the fp32 partitions
 * of rank r (its tree at L->optim[r].root), cross-checked with rank 0's;
 * rank 0 first, alone. zf_check_slice_mappings() checks a ZeRO-1/2 rank's
 * param_slice_mappings against the part of each group it must hold. */
int zf_load_optim_rank(struct zf_loader *L, uint32_t r, struct zf_error *err);
int zf_load_optim_finish(struct zf_loader *L, struct zf_error *err);
int zf_check_slice_mappings(struct zf_loader *L, uint32_t r,
			    struct zf_error *err);

/* ckpt_tensors.c: rank 0's model states, the tensor list, and rank r's
 * part of the ZeRO-3 frozen parameters. */
int zf_load_model_meta(struct zf_loader *L, struct zf_error *err);
int zf_size_tables(struct zf_loader *L, struct zf_error *err);
int zf_collect_params(struct zf_loader *L, struct zf_error *err);
int zf_collect_frozen(struct zf_loader *L, struct zf_error *err);
int zf_load_model_rank(struct zf_loader *L, uint32_t r, struct zf_error *err);
int zf_find_train_dtype(struct zf_loader *L);
int zf_collect_tensors(struct zf_loader *L, struct zf_error *err);
void zf_finish_dtypes(struct zf_loader *L);

/* layout_zero3.c, layout_zero12.c: the trainable parameters' places and
 * the tables they use; every size is checked to add up first. */
int zf_layout_zero3(struct zf_loader *L, struct zf_error *err);
int zf_layout_zero12(struct zf_loader *L, struct zf_error *err);

#endif /* ZEROFS_CKPT_I_H */
