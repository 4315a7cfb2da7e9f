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

#include "base.h"
#include "place.h"
#include "strmap.h"
#include "zerofs/ckpt.h"
#include "zerofs/pickle.h"
#include "zerofs/container.h"
#include "zerofs/source.h"

/*
 * The checkpoint: it owns its files (sources) and everything else here.
 * Files are the model states files in rank order, then the optimizer
 * files in rank order, a one-stage pipeline's layer files, and a --base
 * folder's safetensors files (the last info.n_base_files); the layout's
 * first_model and first_optim say where the first lists start. Nothing of the zip directories or pickles is kept:
 * the places and the layout's tables hold every offset serving needs.
 */
struct zf_ckpt {
	struct zf_ckpt_info info; /* strings point at the ones below */
	char *path, *tag, *tag_dir, *hf_dir, *ds_version;
	char *base_dir, *incomplete, *incomplete_where;
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
	char **layers;		/* a one-stage pipeline's layer files, layer order */
	uint32_t *layer_idx;	/* their layer indexes */
	uint32_t n_layers;
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
	bool strided;	 /* not row-major: stride[] says where elements are */
	uint64_t stride[ZF_MAX_DIMS]; /* in elements */
};

/*
 * Resolves a ZF_PV_TENSOR of file f into a contiguous byte range, checking
 * the storage record exists, is stored, and holds the view. `what` names
 * the tensor in messages. A view that is not row-major is ZF_EUNSUPPORTED
 * here (fp32 masters and fragments are always contiguous); buffers and
 * frozen params take zf_view_resolve_any(), which accepts any strides
 * whose every element lies inside the storage (v->strided says so).
 */
int zf_view_resolve(const struct zf_loaded *f, const struct zf_pv *t,
		    const char *what, struct zf_view *v, struct zf_error *err);
int zf_view_resolve_any(const struct zf_loaded *f, const struct zf_pv *t,
			const char *what, struct zf_view *v, struct zf_error *err);

/* The place of a resolved view: whole bytes, or a strided place whose
 * dimensions are interned in lay's tables. ZF_ENOMEM. */
int zf_place_view(struct zf_rank_tables *lay, const struct zf_view *v,
		  struct zf_place *pl, struct zf_error *err);

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
 * One entry of the model's state_dict as the checkpoint holds it: a key of
 * `module` in rank 0's model states, or, for a one-stage PipelineModule,
 * a key of a layer file under the name the model gives it (ckpt_pipe.c).
 */
struct zf_modent {
	const char *name;	   /* borrowed from a pickle or from L->owned */
	size_t len;		   /* of name: a pickle string may hold a NUL */
	const struct zf_pv *val;   /* the tensor, or a ZeRO-3 placeholder */
	const struct zf_loaded *f; /* the file it is in */
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
	char *real_tag_dir;	/* realpath of files.tag_dir, or NULL */
	uint32_t ws, n_model;
	struct zf_loaded *model; /* n_model */
	struct zf_loaded *optim; /* ws */
	struct zf_loaded *layer; /* files.n_layers: pipeline layer files */
	uint32_t first_layer;	 /* index in ck->files of the first of them */
	/* Rank 0's model states, parsed until the end. */
	const struct zf_pv *module, *buffer_names, *param_shapes;
	const struct zf_pv *frozen_shapes, *shared;
	bool frozen_excluded;	/* frozen_param_shapes is None at stage 2/3 */
	struct zf_base *base;	/* the --base folder, or NULL */
	uint32_t first_base;	/* index in ck->files of its first file */
	struct zf_modent *modents; /* the model's state_dict, in its order */
	size_t n_modents;
	size_t *twin_of;	/* per modent: the first earlier one with the same
				 * storage view, or SIZE_MAX (ckpt_alias.c) */
	char **owned;		/* names made up here (pipelines), freed at the end */
	size_t n_owned, cap_owned;
	const char **missing;	/* names tied to that the checkpoint lacks */
	size_t n_missing, cap_missing;
	enum zf_dtype *mod_dtype; /* tensor index -> its dtype in the model, or 0 */
	struct zf_strmap names; /* tensor name -> index in ck->tensors */
	size_t cap_tensors;
	struct zf_flat_param *params;
	size_t n_params;
	uint32_t n_groups;
	size_t *group_first;	/* n_groups + 1: group g is params[first[g], first[g+1]) */
	size_t *param_of;	/* tensor index -> index in params, or SIZE_MAX */
	size_t *frozen;		/* ZeRO-3: frozen param i -> tensor index */
	struct zf_rank_optim *ropt; /* ws */
	int optim_stage;	/* rank 0's optimizer file's layout: 1 to 3 */
	const struct zf_pv *z0_masters; /* ZeRO-0: optimizer.fp32_groups[_flat] */
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
int zf_add_tensor(struct zf_loader *L, const char *name, size_t len, size_t *idx,
		  bool *is_new, struct zf_error *err);
int zf_size_tables(struct zf_loader *L, struct zf_error *err);
int zf_collect_params(struct zf_loader *L, struct zf_error *err);
int zf_collect_frozen(struct zf_loader *L, struct zf_error *err);
int zf_load_model_rank(struct zf_loader *L, uint32_t r, struct zf_error *err);
int zf_find_train_dtype(struct zf_loader *L);
int zf_collect_tensors(struct zf_loader *L, struct zf_error *err);
void zf_finish_dtypes(struct zf_loader *L);
int zf_order_tensors(struct zf_loader *L, struct zf_error *err);

/* ckpt_strided.c: bytes [off, off + len) of tensor i, whose place is
 * ZF_PLACE_STRIDED, gathered into buf (zf_ckpt_read() for such tensors). */
int zf_strided_read(const struct zf_ckpt *ck, size_t i, uint64_t off,
		    size_t len, void *buf, struct zf_error *err);

/* ckpt_alias.c: which entries of the state_dict are second names of an
 * earlier one's data (L->twin_of), and the tensors every tie points at:
 * DeepSpeed's shared_params first, then second names found by storage.
 * A tie to a name the checkpoint does not hold is listed in L->missing
 * and its tensor dropped (an incomplete checkpoint says so). */
int zf_find_twins(struct zf_loader *L, struct zf_error *err);
int zf_resolve_ties(struct zf_loader *L, struct zf_error *err);

/* ckpt_pipe.c: the state_dict of a one-stage PipelineModule (module is
 * None) from its layer files, under the model's names, in its order. */
int zf_pipe_modents(struct zf_loader *L, struct zf_error *err);
/* Every tensor named after a layer has that layer's file here. */
int zf_pipe_check_layers(struct zf_loader *L, struct zf_error *err);
/* Refuses rank 0's model states of a pipeline stage, a tensor-parallel
 * rank or an MoE model whose other files are not here (ZF_EUNSUPPORTED). */
int zf_refuse_parallel(struct zf_loader *L, struct zf_error *err);

/* ckpt_zero0.c: checkpoints without ZeRO (stage 0) whose only file is
 * mp_rank_00_model_states.pt: zf_zero0_begin() reads what it holds in
 * place of the optimizer files (phase "load first ranks"), and
 * zf_zero0_match() gives the trainable params their fp32 masters once
 * the state_dict is listed. zf_config_stage() is ds_config's stage. */
int zf_zero0_begin(struct zf_loader *L, struct zf_error *err);
int zf_zero0_match(struct zf_loader *L, struct zf_error *err);
int zf_config_stage(const struct zf_pv *root);

/* ckpt_base.c: whether the checkpoint holds the whole model (else
 * ck->incomplete says what is missing and why), and, with a --base
 * folder, the tensors the checkpoint lacks taken from it. */
int zf_complete_model(struct zf_loader *L, struct zf_error *err);

/* layout_zero3.c, layout_zero12.c: the trainable parameters' places and
 * the tables they use; every size is checked to add up first. */
int zf_layout_zero3(struct zf_loader *L, struct zf_error *err);
int zf_layout_zero12(struct zf_loader *L, struct zf_error *err);

#endif /* ZEROFS_CKPT_I_H */
