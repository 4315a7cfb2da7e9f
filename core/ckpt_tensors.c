/* SPDX-License-Identifier: MIT */
/*
 * Reads rank 0's model states (names, shapes, buffers, frozen and tied
 * parameters) and builds the tensor list in the model's state_dict()
 * order: trainable params get their shapes here and their places from
 * layout_zero*.c; frozen params get theirs from their fragments (one per
 * rank at ZeRO-3; at stage 1, where DeepSpeed records none, from
 * `module`); buffers from `module`; tied aliases point at their source.
 */
#include "ckpt_i.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckd.h"
#include "strmap.h"
#include "zerofs/text.h"

/* Reads a torch.Size (tuple of ints) into a shape. */
static int read_shape(const struct zf_pv *v, const char *name, const char *path,
		      struct zf_tensor *t, struct zf_error *err)
{
	uint64_t numel = 1;

	if (!zf_pv_is(v, ZF_PV_TUPLE) && !zf_pv_is(v, ZF_PV_LIST))
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "the shape of '%s' is not a tuple of ints", name);
	if (v->u.seq.n > ZF_MAX_DIMS)
		return zf_fail_at(err, ZF_EUNSUPPORTED, path,
				  "'%s' has %zu dimensions (at most %d)",
				  name, v->u.seq.n, ZF_MAX_DIMS);
	for (size_t i = 0; i < v->u.seq.n; i++) {
		const struct zf_pv *d = v->u.seq.items[i];

		if (!zf_pv_is(d, ZF_PV_INT) || d->u.i < 0)
			return zf_fail_at(err, ZF_EFORMAT, path,
					  "the shape of '%s' has a dimension that is not a non-negative int",
					  name);
		t->shape[i] = (uint64_t)d->u.i;
		if (zf_ckd_mul(&numel, numel, t->shape[i]) ||
		    numel > ((uint64_t)1 << 61))
			return zf_fail_at(err, ZF_EFORMAT, path,
					  "the shape of '%s' is absurd: its element count overflows",
					  name);
	}
	t->ndim = (uint32_t)v->u.seq.n;
	t->numel = numel;
	return ZF_OK;
}

/* Adds a tensor named name (len bytes, borrowed from a pickle string or
 * made up: copied) and returns its index, or the index it already has. */
int zf_add_tensor(struct zf_loader *L, const char *name, size_t len, size_t *idx,
		  bool *is_new, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	size_t i;
	struct zf_tensor *t;
	char *copy;

	/* Pickle strings carry a length; C strings end at the first NUL.
	 * A name cut there could collide with another tensor's, or be
	 * served under a name the checkpoint does not hold. */
	if (memchr(name, '\0', len)) {
		char shown[256];

		return zf_fail_at(err, ZF_EFORMAT, zf_model_path(L, 0),
				  "tensor name '%s' contains a NUL byte: it cannot be served under a Hugging Face name",
				  zf_printable_n(name, len, shown, sizeof(shown)));
	}
	i = zf_strmap_get(&L->names, name);
	*is_new = i == ZF_STRMAP_NONE;
	if (!*is_new) {
		*idx = i;
		return ZF_OK;
	}
	if (!zf_utf8_valid(name, strlen(name))) {
		char shown[256];

		return zf_fail_at(err, ZF_EFORMAT, zf_model_path(L, 0),
				  "tensor name '%s' is not valid UTF-8: it cannot be served under a Hugging Face name",
				  zf_printable(name, shown, sizeof(shown)));
	}
	if (ck->info.n_tensors == L->cap_tensors)
		return zf_fail(err, ZF_EFORMAT, "more tensor names than expected");
	t = &ck->tensors[ck->info.n_tensors];
	memset(t, 0, sizeof(*t));
	memset(&ck->places[ck->info.n_tensors], 0, sizeof(ck->places[0]));
	copy = strdup(name);
	if (!copy)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	t->name = copy;
	t->kind = ZF_KIND_PARAM;
	t->alias_of = (size_t)-1;
	t->same_as = (size_t)-1;
	if (zf_strmap_put(&L->names, t->name, ck->info.n_tensors))
		return zf_fail(err, ZF_ENOMEM, "name table full");
	*idx = ck->info.n_tensors++;
	return ZF_OK;
}

/* Reads rank 0's model states: what it records about the model. */
int zf_load_model_meta(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const struct zf_pv *root = L->model[0].root, *v;
	const char *path = zf_model_path(L, 0);
	int rc = zf_refuse_parallel(L, err);

	if (rc)
		return rc;
	L->module = zf_pv_get(root, "module");
	if (L->module && !zf_pv_is(L->module, ZF_PV_DICT) && !zf_pv_is(L->module, ZF_PV_NONE))
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "'module' is of type %s, expected a state dict",
				  zf_pv_type_name(L->module));
	if (zf_pv_is(L->module, ZF_PV_NONE))
		L->module = NULL;
	if (L->module) {
		size_t n = L->module->u.dict.n;

		L->modents = calloc(n ? n : 1, sizeof(*L->modents));
		if (!L->modents)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
		for (size_t i = 0; i < n; i++) {
			const struct zf_pv *k = L->module->u.dict.keys[i];

			if (!zf_pv_is(k, ZF_PV_STR))
				return zf_fail_at(err, ZF_EFORMAT, path,
						  "'module' has a non-string key");
			L->modents[i] = (struct zf_modent){ k->u.str.s, k->u.str.len,
							    L->module->u.dict.vals[i], &L->model[0] };
		}
		L->n_modents = n;
	}
	L->buffer_names = zf_pv_get(root, "buffer_names");
	if (L->buffer_names && !zf_pv_is(L->buffer_names, ZF_PV_LIST) &&
	    !zf_pv_is(L->buffer_names, ZF_PV_TUPLE) && !zf_pv_is(L->buffer_names, ZF_PV_NONE))
		return zf_fail_at(err, ZF_EFORMAT, path, "'buffer_names' is not a list");
	L->param_shapes = zf_pv_get(root, "param_shapes");
	/* ZeRO-0 records none: the optimizer's masters name the params. */
	if (!L->ws && zf_pv_is(L->param_shapes, ZF_PV_NONE))
		L->param_shapes = NULL;
	else if (!zf_pv_is(L->param_shapes, ZF_PV_LIST) && !zf_pv_is(L->param_shapes, ZF_PV_DICT))
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "no 'param_shapes': not a DeepSpeed ZeRO model states file");
	if (L->module && L->files.n_layers) {
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "holds the model ('module'), yet pipeline layer files ('%s', ...) are beside it: files of different runs?",
				  L->files.layers[0] + (strrchr(L->files.layers[0], '/') ? strrchr(L->files.layers[0], '/') - L->files.layers[0] + 1 : 0));
	} else if (!L->module && L->files.n_layers) {
		rc = zf_pipe_modents(L, err);
		if (rc)
			return rc;
	} else if (!L->ws && !L->module) {
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "no 'module' state dict: the weights of a run without ZeRO live there");
	} else if (!L->module) {
		/* A pipeline's: its frozen params and buffers are only in the
		 * layer files, and serving without them would be partial. */
		return zf_fail_at(err, ZF_ENOTFOUND, path,
				  "'module' is None, as a PipelineModule saves it, but no layer files ('layer_00-model_states.pt', ...) are beside it: its frozen params and buffers are there");
	}
	/* The BF16_Optimizer writes no stage: the run's config says it. */
	if (ck->info.optimizer == ZF_OPT_BF16)
		ck->info.stage = zf_config_stage(root);
	L->frozen_shapes = zf_pv_get(root, "frozen_param_shapes");
	/* None at stage 0/1 always; at stage 2/3 only when the frozen
	 * params were left out (save_checkpoint(exclude_frozen_parameters=
	 * True)). Absent before DeepSpeed 0.9.1: nothing is known then. */
	L->frozen_excluded = zf_pv_is(L->frozen_shapes, ZF_PV_NONE) && ck->info.stage >= 2;
	if (L->frozen_shapes && !zf_pv_is(L->frozen_shapes, ZF_PV_DICT))
		L->frozen_shapes = NULL;
	L->shared = zf_pv_get(root, "shared_params");
	if (L->shared && !zf_pv_is(L->shared, ZF_PV_DICT))
		L->shared = NULL;

	v = zf_pv_get(root, "ds_version");
	ck->ds_version = strdup(zf_pv_is(v, ZF_PV_STR) ? v->u.str.s :
				L->optim_ds_version ? L->optim_ds_version : "");
	if (!ck->ds_version)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	v = zf_pv_get(root, "global_steps");
	ck->info.global_steps = zf_pv_is(v, ZF_PV_INT) ? (uint64_t)v->u.i : UINT64_MAX;
	return ZF_OK;
}

/* Every tensor name comes from module, param_shapes, frozen_param_shapes
 * or shared_params: sizes the tensor table and the name map once. */
int zf_size_tables(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const struct zf_pv *ps = L->param_shapes;
	size_t max = L->n_modents + zf_pv_count_items(L->frozen_shapes) +
		     zf_pv_count_items(L->shared);

	if (L->base)
		max += L->base->n;
	if (zf_pv_is(ps, ZF_PV_DICT))
		max += ps->u.dict.n;
	else
		for (size_t g = 0; ps && g < ps->u.seq.n; g++)
			max += zf_pv_count_items(ps->u.seq.items[g]);
	ck->tensors = calloc(max ? max : 1, sizeof(*ck->tensors));
	ck->places = calloc(max ? max : 1, sizeof(*ck->places));
	L->param_of = malloc((max ? max : 1) * sizeof(*L->param_of));
	L->mod_dtype = calloc(max ? max : 1, sizeof(*L->mod_dtype));
	if (!ck->tensors || !ck->places || !L->param_of || !L->mod_dtype ||
	    zf_strmap_init(&L->names, max))
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	for (size_t i = 0; i < max; i++)
		L->param_of[i] = SIZE_MAX;
	L->cap_tensors = max;
	return ZF_OK;
}

/*
 * The same save as rank 0 (rank r >= 1), and at ZeRO-3 rank r's fragment
 * of every frozen param: interned as one table of offsets (ranks >= 1
 * usually share one). Every rank's frozen_param_fragments lists names in
 * frozen_param_shapes order, so each lookup tries that position first:
 * with thousands of frozen params (LoRA) and many ranks a plain scan
 * would be quadratic. Runs on several threads at once (r >= 1).
 */
int zf_load_model_rank(struct zf_loader *L, uint32_t r, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const struct zf_pv *rr = L->model[r].root;
	const char *path = zf_model_path(L, r);
	const struct zf_pv *frags;
	uint32_t ws = L->ws, nf;
	uint64_t *offs;
	int rc = ZF_OK;

	if (r > 0) {
		const struct zf_pv *gs = zf_pv_get(rr, "global_steps");
		const struct zf_pv *ps = zf_pv_get(rr, "param_shapes");

		if (zf_pv_is(gs, ZF_PV_INT) && (uint64_t)gs->u.i != ck->info.global_steps)
			return zf_fail_at(err, ZF_EFORMAT, path,
					  "saved at step %lld, but rank 0's file at step %lld: files from different saves are mixed",
					  (long long)gs->u.i, (long long)ck->info.global_steps);
		if (zf_pv_count_items(ps) != zf_pv_count_items(L->param_shapes))
			return zf_fail_at(err, ZF_EFORMAT, path,
					  "param_shapes differs from rank 0's: files from different runs are mixed");
	}
	if (!L->frozen)
		return ZF_OK;
	nf = ck->lay.n_frozen;
	offs = malloc((nf ? nf : 1) * sizeof(*offs));
	if (!offs)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	frags = zf_pv_get(rr, "frozen_param_fragments");
	for (uint32_t i = 0; i < nf && !rc; i++) {
		const struct zf_pv *k = L->frozen_shapes->u.dict.keys[i];
		struct zf_tensor *t = &ck->tensors[L->frozen[i]];
		uint64_t n = t->numel, p = n / ws + (n % ws != 0), start = (uint64_t)r * p;
		uint64_t cnt = start < n ? (n - start < p ? n - start : p) : 0;
		const struct zf_pv *fr;
		struct zf_view v;

		offs[i] = UINT64_MAX;
		fr = zf_pv_is(frags, ZF_PV_DICT) && i < frags->u.dict.n &&
				     zf_pv_is(frags->u.dict.keys[i], ZF_PV_STR) &&
				     !strcmp(frags->u.dict.keys[i]->u.str.s, k->u.str.s)
			     ? frags->u.dict.vals[i]
			     : zf_pv_get(frags, k->u.str.s);
		if (!fr) {
			if (cnt)
				rc = zf_fail_at(err, ZF_EFORMAT, path,
						"no fragment of frozen parameter '%s'", t->name);
			continue;
		}
		rc = zf_view_resolve(&L->model[r], fr, k->u.str.s, &v, err);
		if (rc)
			break;
		if (r == 0)
			t->src_dtype = v.dtype; /* the others must agree */
		if (!cnt)
			continue;
		if (v.numel < cnt)
			rc = zf_fail_at(err, ZF_EFORMAT, path,
					"fragment of frozen parameter '%s' holds %llu elements, expected %llu (ceil(%llu/%u))",
					t->name, (unsigned long long)v.numel,
					(unsigned long long)p, (unsigned long long)n, ws);
		else if (v.dtype != t->src_dtype)
			rc = zf_fail_at(err, ZF_EFORMAT, path,
					"fragments of '%s' differ in dtype across ranks", t->name);
		else
			offs[i] = v.offset;
	}
	if (!rc) {
		pthread_mutex_lock(&L->lock);
		rc = zf_tables_intern(&ck->lay.tables, offs, nf, &ck->lay.frags[r], err);
		pthread_mutex_unlock(&L->lock);
	}
	free(offs);
	return rc;
}

/* The dtype of a value of the state_dict (a tensor, or a placeholder). */
static enum zf_dtype value_dtype(const struct zf_pv *t)
{
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

		if (zf_pv_is(s, ZF_PV_STR) && s->u.str.len == strlen(name) &&
		    !strcmp(s->u.str.s, name))
			return true;
	}
	return false;
}

/* Lists the trainable params in flat order and gives them their shapes
 * and their start in their group. */
int zf_collect_params(struct zf_loader *L, struct zf_error *err)
{
	const struct zf_pv *ps = L->param_shapes;
	const char *path = zf_model_path(L, 0);
	size_t n_groups = !ps ? 0 : zf_pv_is(ps, ZF_PV_DICT) ? 1 : ps->u.seq.n;
	size_t total = 0;

	for (size_t g = 0; g < n_groups; g++) {
		const struct zf_pv *d = zf_pv_is(ps, ZF_PV_DICT) ? ps : ps->u.seq.items[g];

		if (!zf_pv_is(d, ZF_PV_DICT))
			return zf_fail_at(err, ZF_EFORMAT, path, "param_shapes holds a non-dict");
		total += d->u.dict.n;
	}
	if (n_groups >= UINT32_MAX)
		return zf_fail_at(err, ZF_EFORMAT, path, "param_shapes has %zu groups", n_groups);
	L->params = calloc(total ? total : 1, sizeof(*L->params));
	L->group_first = calloc(n_groups + 1, sizeof(*L->group_first));
	if (!L->params || !L->group_first)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	L->n_groups = (uint32_t)n_groups;
	for (size_t g = 0; g < n_groups; g++) {
		const struct zf_pv *d = zf_pv_is(ps, ZF_PV_DICT) ? ps : ps->u.seq.items[g];
		uint64_t start = 0;

		L->group_first[g] = L->n_params;
		for (size_t i = 0; i < d->u.dict.n; i++) {
			const struct zf_pv *k = d->u.dict.keys[i];
			struct zf_flat_param *p = &L->params[L->n_params];
			struct zf_tensor *t;
			size_t idx;
			bool is_new;
			int rc;

			if (!zf_pv_is(k, ZF_PV_STR))
				return zf_fail_at(err, ZF_EFORMAT, path,
						  "param_shapes has a non-string name");
			rc = zf_add_tensor(L, k->u.str.s, k->u.str.len, &idx, &is_new, err);
			if (rc)
				return rc;
			if (!is_new)
				return zf_fail_at(err, ZF_EFORMAT, path,
						  "parameter '%s' appears twice in param_shapes",
						  k->u.str.s);
			t = &L->ck->tensors[idx];
			rc = read_shape(d->u.dict.vals[i], t->name, path, t, err);
			if (rc)
				return rc;
			t->kind = ZF_KIND_PARAM;
			t->src_dtype = ZF_DT_F32;
			p->name = t->name;
			p->numel = t->numel;
			p->group = (uint32_t)g;
			p->start = start;
			p->tensor = idx;
			L->param_of[idx] = L->n_params++;
			/* numel < 2^61 each (read_shape), at most 2^20 entries
			 * per zip: the sum cannot wrap. */
			start += t->numel;
		}
	}
	L->group_first[n_groups] = L->n_params;
	return ZF_OK;
}

/* Gives a tensor the place of a view (buffers, stage 1/2 frozen): whole
 * bytes, or a strided place when the model held it with strides. */
static int from_view(struct zf_loader *L, const struct zf_loaded *f,
		     const struct zf_pv *pv, size_t idx, bool set_shape,
		     struct zf_error *err)
{
	struct zf_tensor *t = &L->ck->tensors[idx];
	struct zf_place *pl = &L->ck->places[idx];
	struct zf_view v;
	int rc = zf_view_resolve_any(f, pv, t->name, &v, err);

	if (rc)
		return rc;
	if (set_shape) {
		t->ndim = v.ndim;
		memcpy(t->shape, v.shape, sizeof(v.shape));
		t->numel = v.numel;
	} else if (v.numel != t->numel) {
		return zf_fail_at(err, ZF_EFORMAT, zf_model_path(L, 0),
				  "'%s' holds %llu elements, but its shape needs %llu",
				  t->name, (unsigned long long)v.numel,
				  (unsigned long long)t->numel);
	}
	t->src_dtype = v.dtype;
	return zf_place_view(&L->ck->lay, &v, pl, err);
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

/*
 * The frozen params named by frozen_param_shapes (stages 2 and 3). At
 * stage 2 each is whole in rank 0's frozen_param_fragments; at stage 3
 * each rank holds a fragment: rank 0's are read here, the others' by
 * zf_load_model_rank() as their files load.
 */
int zf_collect_frozen(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const char *path = zf_model_path(L, 0);
	const struct zf_pv *fs = L->frozen_shapes;
	const struct zf_pv *frags0 = zf_pv_get(L->model[0].root, "frozen_param_fragments");
	size_t n = fs ? fs->u.dict.n : 0;
	bool zero3 = ck->info.stage == 3 && n;
	int rc;

	if (zero3) {
		if (n >= UINT32_MAX)
			return zf_fail_at(err, ZF_EFORMAT, path, "%zu frozen params", n);
		L->frozen = calloc(n, sizeof(*L->frozen));
		ck->lay.frags = calloc(L->ws, sizeof(*ck->lay.frags));
		if (!L->frozen || !ck->lay.frags)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
		ck->lay.n_frozen = (uint32_t)n;
	}
	for (size_t i = 0; i < n; i++) {
		const struct zf_pv *k = fs->u.dict.keys[i];
		struct zf_tensor *t;
		size_t idx;
		bool is_new;

		if (!zf_pv_is(k, ZF_PV_STR))
			return zf_fail_at(err, ZF_EFORMAT, path,
					  "frozen_param_shapes has a non-string name");
		rc = zf_add_tensor(L, k->u.str.s, k->u.str.len, &idx, &is_new, err);
		if (rc)
			return rc;
		if (!is_new)
			return zf_fail_at(err, ZF_EFORMAT, path,
					  "'%s' is both trainable and frozen", k->u.str.s);
		t = &ck->tensors[idx];
		rc = read_shape(fs->u.dict.vals[i], t->name, path, t, err);
		if (rc)
			return rc;
		t->kind = ZF_KIND_FROZEN;
		if (zero3) {
			L->frozen[i] = idx;
			ck->places[idx].kind = ZF_PLACE_FRAG3;
			ck->places[idx].u.frag3.index = (uint32_t)i;
		} else {
			rc = from_view(L, &L->model[0], get_hinted(frags0, t->name, i), idx, false,
				       err);
			if (rc)
				return rc;
		}
	}
	return zero3 ? zf_load_model_rank(L, 0, err) : ZF_OK;
}

/*
 * Tensors were numbered as found: params, frozen params, then the rest of
 * the state_dict. Reorders them into the model's state_dict() order, the
 * order of L->modents; anything the state_dict lacks follows in
 * zero_to_fp32's order (buffers, frozen, params, aliases), and tensors
 * taken from a --base folder come last. Ties to a name the checkpoint
 * does not hold (alias_of SIZE_MAX) are dropped: L->missing names them.
 */
static int put_in_model_order(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	size_t n = ck->info.n_tensors, k = 0;
	size_t *new_of = malloc((n ? n : 1) * sizeof(*new_of));
	struct zf_tensor *sorted = calloc(n ? n : 1, sizeof(*sorted));
	struct zf_place *places = calloc(n ? n : 1, sizeof(*places));
	static const enum zf_tensor_kind rest[] = { ZF_KIND_BUFFER, ZF_KIND_FROZEN,
						    ZF_KIND_PARAM, ZF_KIND_ALIAS };

	if (!new_of || !sorted || !places) {
		free(new_of);
		free(sorted);
		free(places);
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		const struct zf_tensor *t = &ck->tensors[i];

		new_of[i] = ZF_STRMAP_NONE;
		if (t->kind == ZF_KIND_ALIAS && t->alias_of == SIZE_MAX)
			new_of[i] = SIZE_MAX - 1; /* dropped (the name map still uses its name) */
	}
	for (size_t i = 0; i < L->n_modents; i++) {
		size_t j = zf_strmap_get(&L->names, L->modents[i].name);

		if (j != ZF_STRMAP_NONE && new_of[j] == ZF_STRMAP_NONE && !ck->tensors[j].from_base)
			new_of[j] = k++;
	}
	for (size_t r = 0; r <= sizeof(rest) / sizeof(rest[0]); r++)
		for (size_t i = 0; i < n; i++)
			if (new_of[i] == ZF_STRMAP_NONE &&
			    (r == sizeof(rest) / sizeof(rest[0]) ? ck->tensors[i].from_base
			     : !ck->tensors[i].from_base && ck->tensors[i].kind == rest[r]))
				new_of[i] = k++;
	for (size_t i = 0; i < n; i++) {
		struct zf_tensor *t;

		if (new_of[i] == SIZE_MAX - 1)
			continue;
		t = &sorted[new_of[i]];
		*t = ck->tensors[i];
		places[new_of[i]] = ck->places[i];
		if (t->kind == ZF_KIND_ALIAS)
			t->alias_of = new_of[t->alias_of];
		if (t->same_as != (size_t)-1)
			t->same_as = new_of[t->same_as];
	}
	/* The name map and the params' tensor indexes are of the old
	 * order: the map goes; the params are not used after this. */
	zf_strmap_release(&L->names);
	for (size_t i = 0; i < n; i++)
		if (new_of[i] == SIZE_MAX - 1)
			free((char *)ck->tensors[i].name);
	free(ck->tensors);
	free(ck->places);
	ck->tensors = sorted;
	ck->places = places;
	ck->info.n_tensors = k;
	free(new_of);
	return ZF_OK;
}

/*
 * Lists every other tensor of the state_dict in its order and gives
 * buffers (and frozen params only the state_dict holds) their data.
 * Trainable params got their places from the layout, frozen params from
 * zf_collect_frozen(); a second name of an earlier entry's data is marked
 * (same_as) and gets its place with the ties (zf_resolve_ties()).
 */
int zf_collect_tensors(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const char *path = zf_model_path(L, 0);
	int rc = zf_find_twins(L, err);

	if (rc)
		return rc;
	for (size_t i = 0; i < L->n_modents; i++) {
		const struct zf_modent *m = &L->modents[i];
		const struct zf_pv *alias_src = zf_pv_get(L->shared, m->name);
		struct zf_tensor *t;
		size_t idx;
		bool is_new;

		rc = zf_add_tensor(L, m->name, m->len, &idx, &is_new, err);
		if (rc)
			return rc;
		t = &ck->tensors[idx];
		/* The model's own dtype of each tensor: its first entry (a
		 * ZeRO-3 placeholder keeps the param's dtype). */
		if (!L->mod_dtype[idx])
			L->mod_dtype[idx] = value_dtype(m->val);
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
			rc = from_view(L, m->f, m->val, idx, true, err);
		} else if (L->twin_of[i] != SIZE_MAX) {
			/* Its kind and place are its first name's. */
			t->same_as = zf_strmap_get(&L->names, L->modents[L->twin_of[i]].name);
		} else if (ck->info.stage != 3) {
			/* Stage 0/1 record no frozen params: the state_dict
			 * holds the only copy (in the training dtype). */
			t->kind = ZF_KIND_FROZEN;
			rc = from_view(L, m->f, m->val, idx, true, err);
		} else {
			return zf_fail_at(err, ZF_EFORMAT, path,
					  "'%s' is in the model, but the checkpoint holds no data for it (not in param_shapes, frozen_param_shapes or buffer_names)",
					  t->name);
		}
		if (rc)
			return rc;
	}

	/* Buffers named but absent from the state_dict cannot be served. */
	if (zf_pv_is(L->buffer_names, ZF_PV_LIST) || zf_pv_is(L->buffer_names, ZF_PV_TUPLE)) {
		for (size_t i = 0; i < L->buffer_names->u.seq.n; i++) {
			const struct zf_pv *b = L->buffer_names->u.seq.items[i];

			if (zf_pv_is(b, ZF_PV_STR) &&
			    zf_strmap_get(&L->names, b->u.str.s) == ZF_STRMAP_NONE)
				return zf_fail_at(err, ZF_EFORMAT, path,
						  L->module ? "buffer '%s' is listed in buffer_names but missing from 'module'"
							    : "buffer '%s' is listed in buffer_names but in none of the layer files",
						  b->u.str.s);
		}
	}

	/* Tied aliases not in the state_dict still exist in the model. */
	if (L->shared) {
		for (size_t i = 0; i < L->shared->u.dict.n; i++) {
			const struct zf_pv *k = L->shared->u.dict.keys[i];
			size_t idx;
			bool is_new;

			if (!zf_pv_is(k, ZF_PV_STR) || !zf_pv_is(L->shared->u.dict.vals[i], ZF_PV_STR))
				return zf_fail_at(err, ZF_EFORMAT, path, "shared_params holds a non-string");
			/* A NUL would cut the name into another tensor's. */
			if (memchr(L->shared->u.dict.vals[i]->u.str.s, '\0',
				   L->shared->u.dict.vals[i]->u.str.len))
				return zf_fail_at(err, ZF_EFORMAT, path,
						  "tied parameter '%s' points at a name with a NUL byte",
						  k->u.str.s);
			rc = zf_add_tensor(L, k->u.str.s, k->u.str.len, &idx, &is_new, err);
			if (rc)
				return rc;
			if (is_new)
				ck->tensors[idx].kind = ZF_KIND_ALIAS;
		}
	}
	return ZF_OK;
}

int zf_order_tensors(struct zf_loader *L, struct zf_error *err)
{
	return put_in_model_order(L, err);
}

int zf_find_train_dtype(struct zf_loader *L)
{
	struct zf_ckpt *ck = L->ck;
	const struct zf_pv *cfg = zf_pv_get(L->model[0].root, "ds_config");

	for (size_t i = 0; i < ck->info.n_tensors; i++) {
		enum zf_dtype dt = L->mod_dtype[i];

		if (ck->tensors[i].kind == ZF_KIND_PARAM && ck->tensors[i].same_as == (size_t)-1 &&
		    zf_dtype_is_float(dt)) {
			ck->info.train_dtype = dt;
			return ZF_OK;
		}
	}
	ck->info.train_dtype = ZF_DT_F32;
	if (zf_pv_is(cfg, ZF_PV_DICT)) {
		const struct zf_pv *b = zf_pv_get(zf_pv_get(cfg, "bf16"), "enabled");
		const struct zf_pv *h = zf_pv_get(zf_pv_get(cfg, "fp16"), "enabled");

		if (zf_pv_is(b, ZF_PV_BOOL) && b->u.b)
			ck->info.train_dtype = ZF_DT_BF16;
		else if (zf_pv_is(h, ZF_PV_BOOL) && h->u.b)
			ck->info.train_dtype = ZF_DT_F16;
	}
	return ZF_OK;
}

void zf_finish_dtypes(struct zf_loader *L)
{
	struct zf_ckpt *ck = L->ck;

	for (size_t i = 0; i < ck->info.n_tensors; i++) {
		struct zf_tensor *t = &ck->tensors[i];
		enum zf_dtype dt = L->mod_dtype[i];

		if (t->kind == ZF_KIND_ALIAS)
			continue;
		/* A trainable param (and a frozen one a --base folder gave)
		 * is held in the training dtype unless the model said. */
		if (t->kind == ZF_KIND_PARAM || (t->from_base && zf_dtype_is_float(t->src_dtype)))
			t->model_dtype = dt ? dt : ck->info.train_dtype;
		else
			t->model_dtype = dt ? dt : t->src_dtype;
	}
	for (size_t i = 0; i < ck->info.n_tensors; i++) {
		struct zf_tensor *t = &ck->tensors[i];

		if (t->kind == ZF_KIND_ALIAS) {
			const struct zf_tensor *s;

			if (t->alias_of == SIZE_MAX)
				continue;
			s = &ck->tensors[t->alias_of];
			t->ndim = s->ndim;
			memcpy(t->shape, s->shape, sizeof(t->shape));
			t->numel = s->numel;
			t->src_dtype = s->src_dtype;
			t->model_dtype = s->model_dtype;
			continue;
		}
		if ((t->kind == ZF_KIND_PARAM || t->kind == ZF_KIND_FROZEN) &&
		    t->same_as == (size_t)-1)
			ck->info.n_params += t->numel;
	}
}
