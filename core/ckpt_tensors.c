/* SPDX-License-Identifier: MIT */
/*
 * Reads rank 0's model states (names, shapes, buffers, frozen and tied
 * parameters) and builds the tensor list in the model's state_dict()
 * order: trainable params get their shapes here and their extents from
 * layout_zero*.c; frozen params get theirs from their fragments (or, at
 * stage 1, where DeepSpeed records none, from `module`); buffers from
 * `module`; tied aliases point at their source.
 */
#include "ckpt_i.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"
#include "text.h"

/* Reads a torch.Size (tuple of ints) into a shape. */
static int read_shape(const struct zf_pv *v, const char *name, const char *path,
		      struct zf_tensor *t, struct zf_error *err)
{
	uint64_t numel = 1;

	if (!zf_pv_is(v, ZF_PV_TUPLE) && !zf_pv_is(v, ZF_PV_LIST))
		return zf_fail_at(err, ZF_EFORMAT, path, "the shape of '%s' is not a tuple of ints", name);
	if (v->u.seq.n > ZF_MAX_DIMS) {
		zf_fail(err, ZF_EUNSUPPORTED, "'%s' has %zu dimensions (at most %d)",
			name, v->u.seq.n, ZF_MAX_DIMS);
		zf_error_where(err, path);
		return ZF_EUNSUPPORTED;
	}
	for (size_t i = 0; i < v->u.seq.n; i++) {
		const struct zf_pv *d = v->u.seq.items[i];

		if (!zf_pv_is(d, ZF_PV_INT) || d->u.i < 0)
			return zf_fail_at(err, ZF_EFORMAT, path, "the shape of '%s' has a dimension that is not a non-negative int", name);
		t->shape[i] = (uint64_t)d->u.i;
		if (zf_mul_overflow(numel, t->shape[i], &numel) ||
		    numel > ((uint64_t)1 << 61))
			return zf_fail_at(err, ZF_EFORMAT, path, "the shape of '%s' is absurd: its element count overflows", name);
	}
	t->ndim = (uint32_t)v->u.seq.n;
	t->numel = numel;
	return ZF_OK;
}

/* Adds a tensor named name (borrowed from a pickle: copied) and returns
 * its index, or the index it already has. */
static int add_tensor(struct zf_loader *L, const char *name, size_t *idx,
		      bool *is_new, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	size_t i = zf_strmap_get(&L->names, name);
	struct zf_tensor *t;

	if (!zf_utf8_valid(name, strlen(name))) {
		char shown[256];

		zf_fail(err, ZF_EFORMAT,
			"tensor name '%s' is not valid UTF-8: it cannot be served under a Hugging Face name",
			zf_printable(name, shown, sizeof(shown)));
		zf_error_where(err, L->files.model[0]);
		return ZF_EFORMAT;
	}
	*is_new = i == ZF_STRMAP_NONE;
	if (!*is_new) {
		*idx = i;
		return ZF_OK;
	}
	if (ck->n_tensors == L->cap_tensors)
		return zf_fail(err, ZF_EFORMAT, "more tensor names than expected");
	t = &ck->tensors[ck->n_tensors];
	memset(t, 0, sizeof(*t));
	t->name = strdup(name);
	if (!t->name)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	t->kind = ZF_KIND_PARAM;
	t->alias_of = (size_t)-1;
	if (zf_strmap_put(&L->names, t->name, ck->n_tensors))
		return zf_fail(err, ZF_ENOMEM, "name table full");
	*idx = ck->n_tensors++;
	return ZF_OK;
}

/* Reads rank 0's model states: names, shapes, metadata. */
int zf_load_model_meta(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const struct zf_pv *root = L->model[0].root, *v;
	const char *path = zf_model_path(L, 0);

	L->module = zf_pv_get(root, "module");
	if (L->module && !zf_pv_is(L->module, ZF_PV_DICT) && !zf_pv_is(L->module, ZF_PV_NONE))
		return zf_fail_at(err, ZF_EFORMAT, path, "'module' is of type %s, expected a state dict", zf_pv_type_name(L->module));
	if (zf_pv_is(L->module, ZF_PV_NONE))
		L->module = NULL;
	L->buffer_names = zf_pv_get(root, "buffer_names");
	if (L->buffer_names && !zf_pv_is(L->buffer_names, ZF_PV_LIST) &&
	    !zf_pv_is(L->buffer_names, ZF_PV_TUPLE) && !zf_pv_is(L->buffer_names, ZF_PV_NONE))
		return zf_fail_at(err, ZF_EFORMAT, path, "'buffer_names' is not a list");
	L->param_shapes = zf_pv_get(root, "param_shapes");
	if (!zf_pv_is(L->param_shapes, ZF_PV_LIST) && !zf_pv_is(L->param_shapes, ZF_PV_DICT))
		return zf_fail_at(err, ZF_EFORMAT, path, "no 'param_shapes': not a DeepSpeed ZeRO model states file");
	L->frozen_shapes = zf_pv_get(root, "frozen_param_shapes");
	if (L->frozen_shapes && !zf_pv_is(L->frozen_shapes, ZF_PV_DICT))
		L->frozen_shapes = NULL; /* None at stage 1 */
	L->shared = zf_pv_get(root, "shared_params");
	if (L->shared && !zf_pv_is(L->shared, ZF_PV_DICT))
		L->shared = NULL;

	v = zf_pv_get(root, "ds_version");
	ck->ds_version = strdup(zf_pv_is(v, ZF_PV_STR) ? v->u.str.s :
				L->optim_ds_version ? L->optim_ds_version : "");
	if (!ck->ds_version)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	v = zf_pv_get(root, "global_steps");
	ck->global_steps = zf_pv_is(v, ZF_PV_INT) ? (uint64_t)v->u.i : (uint64_t)-1;

	if (ck->stage == 3 && L->frozen_shapes && L->frozen_shapes->u.dict.n) {
		L->frags = calloc(L->frozen_shapes->u.dict.n * (size_t)L->files.world_size,
				  sizeof(*L->frags));
		if (!L->frags)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	return zf_load_model_rank(L, 0, err);
}

/*
 * Rank r's model states (its pickle is parsed; it is freed right after):
 * the same save as rank 0, and at ZeRO-3 its fragments of every frozen
 * param, kept as byte ranges so the pickle need not stay in memory.
 * Every rank's frozen_param_fragments lists names in frozen_param_shapes
 * order, so each lookup tries that position first: with thousands of
 * frozen params (LoRA) and many ranks a plain scan would be quadratic.
 */
int zf_load_model_rank(struct zf_loader *L, uint32_t r, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const struct zf_pv *rr = L->model[r].root;
	const struct zf_pv *frags;

	if (r > 0) {
		const struct zf_pv *gs = zf_pv_get(rr, "global_steps");
		const struct zf_pv *ps = zf_pv_get(rr, "param_shapes");

		if (zf_pv_is(gs, ZF_PV_INT) && gs->u.i != (int64_t)ck->global_steps) {
			zf_fail(err, ZF_EFORMAT,
				"saved at step %lld, but rank 0's file at step %lld: files from different saves are mixed",
				(long long)gs->u.i, (long long)ck->global_steps);
			zf_error_where(err, zf_model_path(L, r));
			return ZF_EFORMAT;
		}
		if (zf_pv_count_items(ps) != zf_pv_count_items(L->param_shapes))
			return zf_fail_at(err, ZF_EFORMAT, zf_model_path(L, r),
					   "param_shapes differs from rank 0's: files from different runs are mixed");
	}
	if (!L->frags)
		return ZF_OK;
	frags = zf_pv_get(rr, "frozen_param_fragments");
	for (size_t i = 0; i < L->frozen_shapes->u.dict.n; i++) {
		const struct zf_pv *k = L->frozen_shapes->u.dict.keys[i];
		const struct zf_pv *fr;
		struct zf_frag *out = &L->frags[i * L->files.world_size + r];
		struct zf_view v;
		int rc;

		if (!zf_pv_is(k, ZF_PV_STR))
			return zf_fail_at(err, ZF_EFORMAT, zf_model_path(L, 0),
					   "frozen_param_shapes has a non-string name");
		fr = zf_pv_is(frags, ZF_PV_DICT) && i < frags->u.dict.n &&
				     zf_pv_is(frags->u.dict.keys[i], ZF_PV_STR) &&
				     !strcmp(frags->u.dict.keys[i]->u.str.s, k->u.str.s)
			     ? frags->u.dict.vals[i]
			     : zf_pv_get(frags, k->u.str.s);
		if (!fr)
			continue; /* named when (if) the rank's part is needed */
		rc = zf_view_resolve(&L->model[r], fr, k->u.str.s, &v, err);
		if (rc)
			return rc;
		out->present = true;
		out->source = v.source;
		out->dtype = v.dtype;
		out->offset = v.offset;
		out->numel = v.numel;
	}
	return ZF_OK;
}

static enum zf_dtype module_dtype(const struct zf_loader *L, const char *name)
{
	const struct zf_pv *t = L->module ? zf_pv_get(L->module, name) : NULL;

	if (zf_pv_is(t, ZF_PV_TENSOR) && zf_pv_is(t->u.tensor.storage, ZF_PV_STORAGE))
		return t->u.tensor.storage->u.storage.dtype;
	return ZF_DT_INVALID;
}

static bool in_list(const struct zf_pv *list, const char *name)
{
	if (!list || (!zf_pv_is(list, ZF_PV_LIST) && !zf_pv_is(list, ZF_PV_TUPLE)))
		return false;
	for (size_t i = 0; i < list->u.seq.n; i++) {
		const struct zf_pv *s = list->u.seq.items[i];

		if (zf_pv_is(s, ZF_PV_STR) && !strcmp(s->u.str.s, name))
			return true;
	}
	return false;
}

/* Lists the trainable params in flat order and gives them their shapes. */
int zf_collect_params(struct zf_loader *L, struct zf_error *err)
{
	const struct zf_pv *ps = L->param_shapes;
	const char *path = zf_model_path(L, 0);
	size_t n_groups = zf_pv_is(ps, ZF_PV_DICT) ? 1 : ps->u.seq.n;
	size_t total = 0;

	for (size_t g = 0; g < n_groups; g++) {
		const struct zf_pv *d = zf_pv_is(ps, ZF_PV_DICT) ? ps : ps->u.seq.items[g];

		if (!zf_pv_is(d, ZF_PV_DICT))
			return zf_fail_at(err, ZF_EFORMAT, path, "param_shapes holds a non-dict");
		total += d->u.dict.n;
	}
	L->params = calloc(total ? total : 1, sizeof(*L->params));
	if (!L->params)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	L->n_groups = (uint32_t)n_groups;
	for (size_t g = 0; g < n_groups; g++) {
		const struct zf_pv *d = zf_pv_is(ps, ZF_PV_DICT) ? ps : ps->u.seq.items[g];

		for (size_t i = 0; i < d->u.dict.n; i++) {
			const struct zf_pv *k = d->u.dict.keys[i];
			struct zf_flat_param *p = &L->params[L->n_params];
			struct zf_tensor *t;
			size_t idx;
			bool is_new;
			int rc;

			if (!zf_pv_is(k, ZF_PV_STR))
				return zf_fail_at(err, ZF_EFORMAT, path, "param_shapes has a non-string name");
			rc = add_tensor(L, k->u.str.s, &idx, &is_new, err);
			if (rc)
				return rc;
			if (!is_new)
				return zf_fail_at(err, ZF_EFORMAT, path, "parameter '%s' appears twice in param_shapes", k->u.str.s);
			t = &L->ck->tensors[idx];
			rc = read_shape(d->u.dict.vals[i], t->name, path, t, err);
			if (rc)
				return rc;
			t->kind = ZF_KIND_PARAM;
			t->src_dtype = ZF_DT_F32;
			p->name = t->name;
			p->numel = t->numel;
			p->group = (uint32_t)g;
			p->tensor = idx;
			L->n_params++;
		}
	}
	return ZF_OK;
}

/* Gives a tensor the extents of a whole view (buffers, stage 1/2 frozen). */
static int from_view(struct zf_loader *L, const struct zf_loaded *f,
		     const struct zf_pv *pv, struct zf_tensor *t, bool set_shape,
		     struct zf_error *err)
{
	struct zf_view v;
	int rc = zf_view_resolve(f, pv, t->name, &v, err);

	if (rc)
		return rc;
	if (set_shape) {
		t->ndim = v.ndim;
		memcpy(t->shape, v.shape, sizeof(v.shape));
		t->numel = v.numel;
	} else if (v.numel != t->numel) {
		zf_fail(err, ZF_EFORMAT, "'%s' holds %llu elements, but its shape needs %llu",
			t->name, (unsigned long long)v.numel, (unsigned long long)t->numel);
		zf_error_where(err, zf_ptfile_path(f->pf));
		return ZF_EFORMAT;
	}
	t->src_dtype = v.dtype;
	(void)L;
	return zf_tensor_add_extent(t, v.source, v.offset,
				    v.numel * zf_dtype_size(v.dtype), err);
}

/*
 * Dict lookup that first tries position hint: every rank's
 * frozen_param_fragments lists names in frozen_param_shapes order, so with
 * thousands of frozen params (LoRA) and many ranks a plain scan would be
 * quadratic.
 */
static const struct zf_pv *get_hinted(const struct zf_pv *d, const char *key,
				      size_t hint)
{
	if (zf_pv_is(d, ZF_PV_DICT) && hint < d->u.dict.n &&
	    zf_pv_is(d->u.dict.keys[hint], ZF_PV_STR) &&
	    !strcmp(d->u.dict.keys[hint]->u.str.s, key))
		return d->u.dict.vals[hint];
	return zf_pv_get(d, key);
}

/* ZeRO-3 frozen param i: rank r's fragment holds elements [r*p, (r+1)*p). */
static int frozen_zero3(struct zf_loader *L, struct zf_tensor *t, size_t i,
			struct zf_error *err)
{
	uint32_t ws = L->files.world_size;
	uint64_t n = t->numel, p = n / ws + (n % ws != 0);

	for (uint32_t r = 0; r < ws; r++) {
		const struct zf_frag *fr = &L->frags[i * ws + r];
		uint64_t start = (uint64_t)r * p, cnt;
		int rc;

		if (start >= n)
			break;
		cnt = n - start < p ? n - start : p;
		if (!fr->present)
			return zf_fail_at(err, ZF_EFORMAT, zf_model_path(L, r),
					   "no fragment of frozen parameter '%s'", t->name);
		if (fr->numel < cnt) {
			zf_fail(err, ZF_EFORMAT,
				"fragment of frozen parameter '%s' holds %llu elements, expected %llu (ceil(%llu/%u))",
				t->name, (unsigned long long)fr->numel,
				(unsigned long long)p, (unsigned long long)n, ws);
			zf_error_where(err, zf_model_path(L, r));
			return ZF_EFORMAT;
		}
		if (r == 0)
			t->src_dtype = fr->dtype;
		else if (fr->dtype != t->src_dtype)
			return zf_fail_at(err, ZF_EFORMAT, zf_model_path(L, r),
					   "fragments of '%s' differ in dtype across ranks", t->name);
		rc = zf_tensor_add_extent(t, fr->source, fr->offset,
					  cnt * zf_dtype_size(fr->dtype), err);
		if (rc)
			return rc;
	}
	return ZF_OK;
}

/*
 * Tensors were numbered as found: params, frozen params, then the rest of
 * `module`. Reorders them into the model's state_dict() order, the key
 * order of `module`; anything `module` lacks follows in zero_to_fp32's
 * order (frozen, params, aliases).
 */
static int put_in_model_order(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	size_t n = ck->n_tensors, k = 0;
	size_t *new_of = malloc((n ? n : 1) * sizeof(*new_of));
	struct zf_tensor *sorted = calloc(n ? n : 1, sizeof(*sorted));
	const struct zf_pv *mod = L->module;
	static const enum zf_tensor_kind rest[] = { ZF_KIND_BUFFER, ZF_KIND_FROZEN,
						    ZF_KIND_PARAM, ZF_KIND_ALIAS };

	if (!new_of || !sorted) {
		free(new_of);
		free(sorted);
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++)
		new_of[i] = ZF_STRMAP_NONE;
	for (size_t i = 0; mod && i < mod->u.dict.n; i++) {
		size_t j = zf_strmap_get(&L->names, mod->u.dict.keys[i]->u.str.s);

		if (j != ZF_STRMAP_NONE && new_of[j] == ZF_STRMAP_NONE)
			new_of[j] = k++;
	}
	for (size_t r = 0; r < sizeof(rest) / sizeof(rest[0]); r++)
		for (size_t i = 0; i < n; i++)
			if (new_of[i] == ZF_STRMAP_NONE && ck->tensors[i].kind == rest[r])
				new_of[i] = k++;
	for (size_t i = 0; i < n; i++) {
		sorted[new_of[i]] = ck->tensors[i];
		if (sorted[new_of[i]].kind == ZF_KIND_ALIAS)
			sorted[new_of[i]].alias_of = new_of[ck->tensors[i].alias_of];
	}
	free(ck->tensors);
	ck->tensors = sorted;
	free(new_of);
	/* The name map and L->params index the old order: retire them. */
	zf_strmap_release(&L->names);
	return ZF_OK;
}

/*
 * Lists every tensor in state_dict order and gives frozen params and
 * buffers their data. Trainable params got their shapes in
 * collect_params(); their extents come from the layout step.
 */
int zf_collect_tensors(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const char *path = zf_model_path(L, 0);
	const struct zf_pv *mod = L->module;
	const struct zf_pv *frags0 = zf_pv_get(L->model[0].root, "frozen_param_fragments");
	size_t n_mod = mod ? mod->u.dict.n : 0;
	int rc;

	/* Frozen params named by frozen_param_shapes (stage 2/3). */
	if (L->frozen_shapes) {
		for (size_t i = 0; i < L->frozen_shapes->u.dict.n; i++) {
			const struct zf_pv *k = L->frozen_shapes->u.dict.keys[i];
			struct zf_tensor *t;
			size_t idx;
			bool is_new;

			if (!zf_pv_is(k, ZF_PV_STR))
				return zf_fail_at(err, ZF_EFORMAT, path, "frozen_param_shapes has a non-string name");
			rc = add_tensor(L, k->u.str.s, &idx, &is_new, err);
			if (rc)
				return rc;
			if (!is_new)
				return zf_fail_at(err, ZF_EFORMAT, path, "'%s' is both trainable and frozen", k->u.str.s);
			t = &ck->tensors[idx];
			rc = read_shape(L->frozen_shapes->u.dict.vals[i], t->name, path, t, err);
			if (rc)
				return rc;
			t->kind = ZF_KIND_FROZEN;
			if (ck->stage == 3)
				rc = frozen_zero3(L, t, i, err);
			else
				rc = from_view(L, &L->model[0], get_hinted(frags0, t->name, i), t, false, err);
			if (rc)
				return rc;
		}
	}

	/* Everything in `module`, in its order: buffers, stage-1 frozen
	 * params, tied aliases. Params seen above keep their index. */
	for (size_t i = 0; i < n_mod; i++) {
		const struct zf_pv *k = mod->u.dict.keys[i];
		const struct zf_pv *alias_src;
		struct zf_tensor *t;
		size_t idx;
		bool is_new;

		if (!zf_pv_is(k, ZF_PV_STR))
			return zf_fail_at(err, ZF_EFORMAT, path, "'module' has a non-string key");
		alias_src = zf_pv_get(L->shared, k->u.str.s);
		rc = add_tensor(L, k->u.str.s, &idx, &is_new, err);
		if (rc)
			return rc;
		t = &ck->tensors[idx];
		if (zf_pv_is(alias_src, ZF_PV_STR)) {
			if (!is_new)
				continue; /* listed as a param: DeepSpeed keeps the first name */
			t->kind = ZF_KIND_ALIAS;
			continue;
		}
		if (!is_new)
			continue;
		if (in_list(L->buffer_names, t->name)) {
			t->kind = ZF_KIND_BUFFER;
			rc = from_view(L, &L->model[0], mod->u.dict.vals[i], t, true, err);
		} else if (ck->stage != 3) {
			/* Stage 1 records no frozen params: `module` holds the
			 * only copy (in the training dtype). */
			t->kind = ZF_KIND_FROZEN;
			rc = from_view(L, &L->model[0], mod->u.dict.vals[i], t, true, err);
		} else {
			return zf_fail_at(err, ZF_EFORMAT, path,
				   "'%s' is in the model, but the checkpoint holds no data for it (not in param_shapes, frozen_param_shapes or buffer_names)",
				   t->name);
		}
		if (rc)
			return rc;
	}

	/* Buffers named but absent from `module` cannot be served. */
	if (zf_pv_is(L->buffer_names, ZF_PV_LIST) || zf_pv_is(L->buffer_names, ZF_PV_TUPLE)) {
		for (size_t i = 0; i < L->buffer_names->u.seq.n; i++) {
			const struct zf_pv *s = L->buffer_names->u.seq.items[i];

			if (zf_pv_is(s, ZF_PV_STR) && zf_strmap_get(&L->names, s->u.str.s) == ZF_STRMAP_NONE)
				return zf_fail_at(err, ZF_EFORMAT, path, "buffer '%s' is listed in buffer_names but missing from 'module'", s->u.str.s);
		}
	}

	/* Tied aliases not in `module` still exist in the model. */
	if (L->shared) {
		for (size_t i = 0; i < L->shared->u.dict.n; i++) {
			const struct zf_pv *k = L->shared->u.dict.keys[i];
			size_t idx;
			bool is_new;

			if (!zf_pv_is(k, ZF_PV_STR) || !zf_pv_is(L->shared->u.dict.vals[i], ZF_PV_STR))
				return zf_fail_at(err, ZF_EFORMAT, path, "shared_params holds a non-string");
			rc = add_tensor(L, k->u.str.s, &idx, &is_new, err);
			if (rc)
				return rc;
			if (is_new)
				ck->tensors[idx].kind = ZF_KIND_ALIAS;
		}
	}

	/* Resolve aliases to their sources (one level; chains are followed). */
	for (size_t i = 0; i < ck->n_tensors; i++) {
		struct zf_tensor *t = &ck->tensors[i];
		const char *src = t->name;
		size_t j = i, hops = 0;

		if (t->kind != ZF_KIND_ALIAS)
			continue;
		while (j != ZF_STRMAP_NONE && ck->tensors[j].kind == ZF_KIND_ALIAS && hops++ < 64) {
			const struct zf_pv *s = zf_pv_get(L->shared, src);

			src = s->u.str.s;
			j = zf_strmap_get(&L->names, src);
		}
		if (j == ZF_STRMAP_NONE || ck->tensors[j].kind == ZF_KIND_ALIAS)
			return zf_fail_at(err, ZF_EFORMAT, path, "tied parameter '%s' points at a parameter the checkpoint does not hold", t->name);
		t->alias_of = j;
	}
	return put_in_model_order(L, err);
}

int zf_find_train_dtype(struct zf_loader *L)
{
	struct zf_ckpt *ck = L->ck;
	const struct zf_pv *cfg = zf_pv_get(L->model[0].root, "ds_config");

	for (size_t i = 0; i < L->n_params; i++) {
		enum zf_dtype dt = module_dtype(L, L->params[i].name);

		if (zf_dtype_is_float(dt)) {
			ck->train_dtype = dt;
			return ZF_OK;
		}
	}
	ck->train_dtype = ZF_DT_F32;
	if (zf_pv_is(cfg, ZF_PV_DICT)) {
		const struct zf_pv *b = zf_pv_get(zf_pv_get(cfg, "bf16"), "enabled");
		const struct zf_pv *h = zf_pv_get(zf_pv_get(cfg, "fp16"), "enabled");

		if (zf_pv_is(b, ZF_PV_BOOL) && b->u.b)
			ck->train_dtype = ZF_DT_BF16;
		else if (zf_pv_is(h, ZF_PV_BOOL) && h->u.b)
			ck->train_dtype = ZF_DT_F16;
	}
	return ZF_OK;
}

void zf_finish_dtypes(struct zf_loader *L)
{
	struct zf_ckpt *ck = L->ck;

	for (size_t i = 0; i < ck->n_tensors; i++) {
		struct zf_tensor *t = &ck->tensors[i];
		enum zf_dtype dt = module_dtype(L, t->name);

		if (t->kind == ZF_KIND_ALIAS) {
			const struct zf_tensor *s = &ck->tensors[t->alias_of];

			t->ndim = s->ndim;
			memcpy(t->shape, s->shape, sizeof(t->shape));
			t->numel = s->numel;
			t->src_dtype = s->src_dtype;
			t->model_dtype = s->model_dtype ? s->model_dtype : s->src_dtype;
			continue;
		}
		if (t->kind == ZF_KIND_PARAM)
			t->model_dtype = dt ? dt : ck->train_dtype;
		else
			t->model_dtype = dt ? dt : t->src_dtype;
	}
	for (size_t i = 0; i < ck->n_tensors; i++) {
		struct zf_tensor *t = &ck->tensors[i];

		if (t->kind == ZF_KIND_ALIAS)
			t->model_dtype = ck->tensors[t->alias_of].model_dtype;
		if (t->kind == ZF_KIND_PARAM || t->kind == ZF_KIND_FROZEN)
			ck->n_params += t->numel;
	}
}
