/* SPDX-License-Identifier: MIT */
/*
 * Checkpoints of runs without ZeRO (stage 0), whose one file is
 * mp_rank_00_model_states.pt: no optimizer files, param_shapes None.
 *
 * What its `optimizer` holds:
 *   - fp32 runs: the torch optimizer's state_dict; `module` is the weights;
 *   - fp16 (every release) and bf16 (DeepSpeed >= 0.17.6; before, bf16 at
 *     stage 0 ran the BF16_Optimizer, whose files ckpt_optim.c reads) with
 *     a client optimizer: FP16_UnfusedOptimizer's state, whose fp32_groups
 *     is one full-shaped fp32 master per param of each param group, in
 *     group order, without names;
 *   - the same with DeepSpeed's fused optimizers: FP16_Optimizer's,
 *     fp32_groups_flat, one flat fp32 tensor per group (no padding) whose
 *     16-bit twin the module's params are views of.
 * Names are matched as the optimizer built its groups: each group's params
 * are a subsequence of the module's params in order (true of
 * model.parameters() and of the HF Trainer's decay / no-decay groups).
 * Unfused: each master in turn takes the next param of the module with its
 * shape whose value it rounds to (the step copies master to module with
 * round-to-nearest-even), checked on the first and last elements. Fused:
 * each flat group takes the 16-bit storage of exactly its size whose views
 * tile it. A master that fits nothing is an error; module params no master
 * takes are frozen.
 */
#include "ckpt_i.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zerofs/text.h"
#include "zerofs/convert.h"

/* Elements compared at each end of a master and its module param. */
#define SAMPLE 128

int zf_config_stage(const struct zf_pv *root)
{
	const struct zf_pv *zo = zf_pv_get(zf_pv_get(root, "ds_config"), "zero_optimization");
	const struct zf_pv *s = zf_pv_get(zo, "stage");

	if (zf_pv_is(s, ZF_PV_INT))
		return s->u.i < 0 ? 0 : s->u.i > 3 ? 3 : (int)s->u.i;
	if (zf_pv_is(zo, ZF_PV_BOOL)) /* early configs: "zero_optimization": true */
		return zo->u.b;
	return 0;
}

static bool config_enabled(const struct zf_pv *root, const char *key)
{
	const struct zf_pv *e = zf_pv_get(zf_pv_get(zf_pv_get(root, "ds_config"), key), "enabled");

	return zf_pv_is(e, ZF_PV_BOOL) && e->u.b;
}

int zf_zero0_begin(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const struct zf_pv *root = L->model[0].root;
	const struct zf_pv *opt = zf_pv_get(root, "optimizer");
	const struct zf_pv *dp = zf_pv_get(root, "dp_world_size");
	const char *path = zf_model_path(L, 0);
	int stage = zf_config_stage(root);

	/* A ZeRO run whose optimizer files are gone, not a ZeRO-0 one. */
	if (stage >= 1)
		return zf_fail_at(err, ZF_ENOTFOUND, L->files.tag_dir,
				  "no '*_optim_states.pt' files beside the model states: the fp32 weights live there; was the checkpoint saved without optimizer state, or only partly copied?");
	ck->info.stage = 0;
	ck->info.world_size = zf_pv_is(dp, ZF_PV_INT) && dp->u.i > 0 && dp->u.i < UINT32_MAX
				      ? (uint32_t)dp->u.i : 1;
	if (zf_pv_is(zf_pv_get(opt, "fp32_groups"), ZF_PV_LIST)) {
		ck->info.optimizer = ZF_OPT_FP16_UNFUSED;
		L->z0_masters = zf_pv_get(opt, "fp32_groups");
	} else if (zf_pv_is(zf_pv_get(opt, "fp32_groups_flat"), ZF_PV_LIST)) {
		ck->info.optimizer = ZF_OPT_FP16;
		L->z0_masters = zf_pv_get(opt, "fp32_groups_flat");
	} else if (config_enabled(root, "bf16") || config_enabled(root, "bfloat16") ||
		   config_enabled(root, "fp16")) {
		return zf_fail_at(err, ZF_ENOTFOUND, path,
				  "a ZeRO-0 %s run whose fp32 master weights are not here ('optimizer' holds no fp32_groups): was it saved without optimizer state?",
				  config_enabled(root, "fp16") ? "fp16" : "bf16");
	} else {
		ck->info.optimizer = ZF_OPT_NONE;
	}
	return ZF_OK;
}

/* A module param a master may be matched to. */
struct cand {
	size_t tensor;			 /* index in ck->tensors */
	const struct zf_pv_tensor *view; /* its view in `module` */
	bool taken;
};

static int cmp_storage(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->view->storage != y->view->storage)
		return (uintptr_t)x->view->storage < (uintptr_t)y->view->storage ? -1 : 1;
	return x->view->offset < y->view->offset ? -1 : x->view->offset > y->view->offset;
}

/* Whether the fp32 master at byte offset m of file f, rounded to tensor
 * t's dtype, is t's value at its first and last elements. */
static int rounds_to(struct zf_loader *L, uint32_t f, uint64_t m, size_t t,
		     bool *yes, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const struct zf_tensor *mt = &ck->tensors[t];
	unsigned char a[SAMPLE * 4], b[SAMPLE * 4], c[SAMPLE * 4];
	uint64_t n = mt->numel, es = zf_dtype_size(mt->src_dtype);
	int rc;

	*yes = true;
	for (int end = 0; end < 2 && n; end++) {
		uint64_t k = n < SAMPLE ? n : SAMPLE, first = end ? n - k : 0;

		rc = zf_source_pread(ck->files[f], a, (size_t)(k * 4), m + first * 4, err);
		if (!rc)
			rc = zf_ckpt_read(ck, t, first * es, (size_t)(k * es), b, err);
		if (rc)
			return rc;
		if (mt->src_dtype == ZF_DT_F32)
			memcpy(c, a, (size_t)(k * 4));
		else
			zf_convert(mt->src_dtype, c, ZF_DT_F32, a, (size_t)k);
		if (memcmp(b, c, (size_t)(k * es))) {
			*yes = false;
			return ZF_OK;
		}
	}
	return ZF_OK;
}

static void take(struct zf_loader *L, struct cand *c, uint32_t file, uint64_t offset)
{
	struct zf_tensor *t = &L->ck->tensors[c->tensor];
	struct zf_place *pl = &L->ck->places[c->tensor];

	c->taken = true;
	t->kind = ZF_KIND_PARAM;
	t->src_dtype = ZF_DT_F32;
	pl->kind = ZF_PLACE_WHOLE;
	pl->u.whole.file = file;
	pl->u.whole.offset = offset;
}

/* FP16_UnfusedOptimizer: a full-shaped master per param. */
static int match_unfused(struct zf_loader *L, struct cand *c, size_t nc,
			 struct zf_error *err)
{
	const struct zf_pv *groups = L->z0_masters;
	const char *path = zf_model_path(L, 0);

	for (size_t g = 0; g < groups->u.seq.n; g++) {
		const struct zf_pv *grp = groups->u.seq.items[g];
		size_t from = 0;

		if (!zf_pv_is(grp, ZF_PV_LIST) && !zf_pv_is(grp, ZF_PV_TUPLE))
			return zf_fail_at(err, ZF_EFORMAT, path,
					  "optimizer.fp32_groups[%zu] is not a list of tensors", g);
		for (size_t i = 0; i < grp->u.seq.n; i++) {
			struct zf_view v;
			char what[96], shape[160];
			size_t k;
			int rc;

			snprintf(what, sizeof(what), "optimizer.fp32_groups[%zu][%zu]", g, i);
			rc = zf_view_resolve(&L->model[0], grp->u.seq.items[i], what, &v, err);
			if (rc)
				return rc;
			if (v.dtype != ZF_DT_F32)
				return zf_fail_at(err, ZF_EFORMAT, path, "%s is %s, expected float32",
						  what, zf_dtype_torch_name(v.dtype));
			for (k = from; k < nc; k++) {
				const struct zf_tensor *t = &L->ck->tensors[c[k].tensor];
				bool yes;

				if (c[k].taken || t->ndim != v.ndim ||
				    memcmp(t->shape, v.shape, v.ndim * sizeof(v.shape[0])))
					continue;
				rc = rounds_to(L, v.file, v.offset, c[k].tensor, &yes, err);
				if (rc)
					return rc;
				if (yes)
					break;
			}
			if (k == nc) {
				zf_shape_text(v.shape, v.ndim, shape, sizeof(shape));
				return zf_fail_at(err, ZF_EFORMAT, path,
						  "ZeRO-0 checkpoint whose fp32 master weights (optimizer.fp32_groups) cannot be matched to parameter names: group %zu param %zu (shape %s) fits no parameter of the model in order",
						  g, i, shape);
			}
			take(L, &c[k], v.file, v.offset);
			from = k + 1;
		}
	}
	return ZF_OK;
}

/* FP16_Optimizer: one flat master per group; the module's params of the
 * group are views that tile a 16-bit storage of the same size. */
static int match_fused(struct zf_loader *L, struct cand *c, size_t nc,
		       struct zf_error *err)
{
	const struct zf_pv *flats = L->z0_masters;
	const char *path = zf_model_path(L, 0);

	qsort(c, nc, sizeof(*c), cmp_storage);
	for (size_t g = 0; g < flats->u.seq.n; g++) {
		struct zf_view v;
		char what[64];
		size_t s, e = 0;
		bool found = false;
		int rc;

		snprintf(what, sizeof(what), "optimizer.fp32_groups_flat[%zu]", g);
		rc = zf_view_resolve(&L->model[0], flats->u.seq.items[g], what, &v, err);
		if (rc)
			return rc;
		if (v.dtype != ZF_DT_F32)
			return zf_fail_at(err, ZF_EFORMAT, path, "%s is %s, expected float32", what,
					  zf_dtype_torch_name(v.dtype));
		for (s = 0; s < nc && !found; s = e) {
			uint64_t at = 0;
			bool tiles = true, yes = false;

			for (e = s; e < nc && c[e].view->storage == c[s].view->storage; e++) {
				const struct zf_tensor *t = &L->ck->tensors[c[e].tensor];

				tiles = tiles && !c[e].taken && (uint64_t)c[e].view->offset == at;
				at += t->numel;
			}
			if (!tiles || at != v.numel ||
			    (uint64_t)c[s].view->storage->u.storage.numel != v.numel)
				continue;
			rc = rounds_to(L, v.file, v.offset, c[s].tensor, &yes, err);
			if (rc)
				return rc;
			if (!yes)
				continue;
			for (size_t k = s; k < e; k++)
				take(L, &c[k], v.file, v.offset + (uint64_t)c[k].view->offset * 4);
			found = true;
		}
		if (!found)
			return zf_fail_at(err, ZF_EFORMAT, path,
					  "ZeRO-0 checkpoint whose fp32 master weights (%s, %llu elements) cannot be matched to parameter names: no 16-bit storage of the module's params has that size",
					  what, (unsigned long long)v.numel);
	}
	return ZF_OK;
}

int zf_zero0_match(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	struct cand *c;
	size_t nc = 0;
	int rc;

	c = calloc(L->n_modents ? L->n_modents : 1, sizeof(*c));
	if (!c)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	/* Candidates: the state_dict's params (frozen so far: no table
	 * named them), first names only, in the model's order. */
	for (size_t i = 0; i < L->n_modents; i++) {
		size_t j = zf_strmap_get(&L->names, L->modents[i].name);
		struct zf_tensor *t;

		if (j == ZF_STRMAP_NONE || L->twin_of[i] != SIZE_MAX)
			continue;
		t = &ck->tensors[j];
		if (t->kind != ZF_KIND_FROZEN || t->same_as != (size_t)-1 || t->from_base)
			continue;
		if (ck->info.optimizer == ZF_OPT_NONE) {
			t->kind = ZF_KIND_PARAM; /* fp32: the module is the weights */
			continue;
		}
		if (zf_dtype_is_float(t->src_dtype) && zf_pv_is(L->modents[i].val, ZF_PV_TENSOR))
			c[nc++] = (struct cand){ j, &L->modents[i].val->u.tensor, false };
	}
	if (ck->info.optimizer == ZF_OPT_FP16_UNFUSED)
		rc = match_unfused(L, c, nc, err);
	else if (ck->info.optimizer == ZF_OPT_FP16)
		rc = match_fused(L, c, nc, err);
	else
		rc = ZF_OK;
	free(c);
	return rc;
}
