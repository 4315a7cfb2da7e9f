/* SPDX-License-Identifier: MIT */
/*
 * One Parameter, one value: the names under which the model holds the
 * same data, and the tensor each of them is served from.
 *
 * DeepSpeed records ties in shared_params (name -> source), but not all
 * of them: its walk visits each module once, so a module registered under
 * two attribute names (`self.proj_b = self.proj_a`, T5's shared
 * embedding) leaves its second name only in `module`; and up to 0.10.0
 * it saved shared_params = {} at ZeRO-1/2 (it keyed ties on ds_id).
 * torch.save keeps what tells them apart: every name of one tensor is a
 * view of the same storage at the same offset with the same size and
 * stride (at ZeRO-1/2 a view into the 16-bit flat group buffer, at ZeRO-3
 * a 0-element placeholder whose storage is the Parameter's own). A name
 * whose view equals an earlier one's is a second name of that data
 * ("twin"): it is served with its first name's bytes (the fp32 master of
 * a trainable parameter) and reported with its kind. Views that merely
 * overlap (another offset or shape) are distinct tensors.
 *
 * A second name of the input embedding called `lm_head.weight` is the tie
 * every Hugging Face causal LM declares (and DeepSpeed >= 0.10.1 records):
 * it becomes an alias, left out of the served files as save_pretrained
 * leaves it out.
 */
#include "ckpt_i.h"

#include <stdlib.h>
#include <string.h>

#include "grow.h"

struct view_key {
	const struct zf_pv_tensor *t;
	size_t at; /* index in L->modents */
};

static int cmp_view(const void *a, const void *b)
{
	const struct zf_pv_tensor *x = ((const struct view_key *)a)->t;
	const struct zf_pv_tensor *y = ((const struct view_key *)b)->t;
	size_t i = ((const struct view_key *)a)->at, j = ((const struct view_key *)b)->at;

	/* The parser makes one node per storage key of a file: the same
	 * node is the same storage. */
	if (x->storage != y->storage)
		return (uintptr_t)x->storage < (uintptr_t)y->storage ? -1 : 1;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->ndim != y->ndim)
		return x->ndim < y->ndim ? -1 : 1;
	for (uint32_t d = 0; d < x->ndim; d++) {
		if (x->size[d] != y->size[d])
			return x->size[d] < y->size[d] ? -1 : 1;
		if (x->stride[d] != y->stride[d])
			return x->stride[d] < y->stride[d] ? -1 : 1;
	}
	return i < j ? -1 : i > j;
}

static uint64_t view_numel(const struct zf_pv_tensor *t)
{
	uint64_t n = 1;

	for (uint32_t d = 0; d < t->ndim; d++)
		n *= (uint64_t)t->size[d]; /* overflow: caught when resolved */
	return n;
}

int zf_find_twins(struct zf_loader *L, struct zf_error *err)
{
	struct view_key *v = malloc((L->n_modents ? L->n_modents : 1) * sizeof(*v));
	size_t n = 0;

	L->twin_of = malloc((L->n_modents ? L->n_modents : 1) * sizeof(*L->twin_of));
	if (!v || !L->twin_of) {
		free(v);
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < L->n_modents; i++) {
		const struct zf_pv *val = L->modents[i].val;
		const struct zf_pv_tensor *t;

		L->twin_of[i] = SIZE_MAX;
		if (!zf_pv_is(val, ZF_PV_TENSOR) || !zf_pv_is(val->u.tensor.storage, ZF_PV_STORAGE))
			continue;
		t = &val->u.tensor;
		/* An empty view of a non-empty storage (a 0-element param
		 * in a flat buffer) says nothing about identity; a ZeRO-3
		 * placeholder's empty storage is the Parameter's own. */
		if (!view_numel(t) && t->storage->u.storage.numel)
			continue;
		v[n++] = (struct view_key){ t, i };
	}
	qsort(v, n, sizeof(*v), cmp_view);
	for (size_t i = 1, first = 0; i < n; i++) {
		struct view_key a = v[first], b = v[i];

		a.at = b.at = 0;
		if (cmp_view(&a, &b)) {
			first = i;
			continue;
		}
		L->twin_of[v[i].at] = v[first].at;
	}
	free(v);
	return ZF_OK;
}

static bool ends_with(const char *s, const char *tail)
{
	size_t a = strlen(s), b = strlen(tail);

	return a >= b && !strcmp(s + a - b, tail) && (a == b || s[a - b - 1] == '.');
}

/* Follows DeepSpeed's shared_params from alias i to the tensor holding
 * the data; SIZE_MAX when the chain ends at a name the checkpoint lacks,
 * whose name is then *missing. */
static size_t follow(struct zf_loader *L, size_t i, const char **missing)
{
	struct zf_ckpt *ck = L->ck;
	const char *src = ck->tensors[i].name;
	size_t j = i, hops = 0;

	while (j != ZF_STRMAP_NONE && ck->tensors[j].kind == ZF_KIND_ALIAS && hops++ < 64) {
		const struct zf_pv *s = zf_pv_get(L->shared, src);

		if (!zf_pv_is(s, ZF_PV_STR)) {
			/* Not a DeepSpeed alias: one already resolved here. */
			if (ck->tensors[j].alias_of == SIZE_MAX || ck->tensors[j].alias_of == (size_t)-1)
				break;
			j = ck->tensors[j].alias_of;
			continue;
		}
		src = s->u.str.s;
		j = zf_strmap_get(&L->names, src);
	}
	*missing = src;
	if (j == ZF_STRMAP_NONE || ck->tensors[j].kind == ZF_KIND_ALIAS)
		return SIZE_MAX;
	return j;
}

/* Records name as tied to but absent (once). */
static int note_missing(struct zf_loader *L, const char *name, struct zf_error *err)
{
	for (size_t i = 0; i < L->n_missing; i++)
		if (!strcmp(L->missing[i], name))
			return ZF_OK;
	if (L->n_missing == L->cap_missing &&
	    zf_grow(&L->missing, &L->cap_missing, L->n_missing + 1, 8))
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	L->missing[L->n_missing++] = name;
	return ZF_OK;
}

int zf_resolve_ties(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	int rc;

	L->n_missing = 0;
	/* DeepSpeed's ties first: a second name may be a twin of one. */
	for (size_t i = 0; i < ck->info.n_tensors; i++) {
		struct zf_tensor *t = &ck->tensors[i];
		const char *missing;

		if (t->kind != ZF_KIND_ALIAS || t->same_as != (size_t)-1)
			continue;
		t->alias_of = follow(L, i, &missing);
		ck->places[i].kind = ZF_PLACE_NONE;
		if (t->alias_of == SIZE_MAX && (rc = note_missing(L, missing, err)))
			return rc;
	}
	for (size_t i = 0; i < ck->info.n_tensors; i++) {
		struct zf_tensor *t = &ck->tensors[i];
		const struct zf_tensor *r;
		size_t root = t->same_as;

		if (root == (size_t)-1)
			continue;
		/* Its first name may itself be a tie: serve from what that
		 * one is served from. */
		if (ck->tensors[root].kind == ZF_KIND_ALIAS)
			root = ck->tensors[root].alias_of;
		if (root == SIZE_MAX) {
			t->kind = ZF_KIND_ALIAS;
			t->alias_of = SIZE_MAX; /* the first name's data is missing too */
			t->same_as = (size_t)-1;
			continue;
		}
		r = &ck->tensors[root];
		if (ends_with(t->name, "lm_head.weight") && ends_with(r->name, "embed_tokens.weight")) {
			t->kind = ZF_KIND_ALIAS;
			t->alias_of = root;
			t->same_as = (size_t)-1;
			ck->places[i].kind = ZF_PLACE_NONE;
			continue;
		}
		t->same_as = root;
		t->kind = r->kind;
		t->src_dtype = r->src_dtype;
		t->ndim = r->ndim;
		memcpy(t->shape, r->shape, sizeof(t->shape));
		t->numel = r->numel;
		ck->places[i] = ck->places[root];
	}
	return ZF_OK;
}
