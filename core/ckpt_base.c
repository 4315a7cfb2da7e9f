/* SPDX-License-Identifier: MIT */
/*
 * Never partial in silence: whether the checkpoint holds the whole model,
 * and, given a --base folder, the model completed from it.
 *
 * DeepSpeed's save_checkpoint(exclude_frozen_parameters=True) (what the HF
 * Trainer does for every PEFT model, and mmengine/XTuner and Accelerate on
 * request) deletes the frozen params from `module`, and at ZeRO-2/3 writes
 * frozen_param_shapes = None instead of a dict. What says a checkpoint is
 * partial, certainly:
 *   - stage 2/3 and frozen_param_shapes None;
 *   - a tie (shared_params, or a second name) to a name it does not hold
 *     (the tied `lm_head.weight` of a frozen embedding stays, its source
 *     goes);
 * and, where DeepSpeed's files cannot tell (stage 0/1 record no frozen
 * params at all): a PEFT run's folder (adapter_config.json beside the tag
 * folder) whose state_dict holds no frozen param. Nothing else is guessed.
 * The names of excluded params are not recorded: only those tied to are
 * known.
 *
 * With --base, every tensor of the base folder the checkpoint lacks is
 * served from it (lazily, converted like the rest), and the checkpoint
 * wins for the names it holds; a shape that differs from the
 * checkpoint's, or a frozen tensor whose copy under a tied name differs
 * from the base's, says the base is not the model the run started from.
 * Base names are matched as they are, or after the checkpoint's wrapper
 * prefix (PEFT's "base_model.model.", XTuner's "llm."), with PEFT's
 * ".base_layer." for a module that has LoRA weights.
 */
#include "ckpt_i.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"
#include "zerofs/text.h"
#include "zerofs/convert.h"

/* Elements compared between a base tensor and the checkpoint's copy. */
#define SANITY_ELEMS 1024

static const char *const wrappers[] = { "llm.base_model.model.", "base_model.model.", "llm." };

/* The wrapper prefix every (non-alias) tensor name of the checkpoint has. */
static const char *wrapper_prefix(const struct zf_ckpt *ck)
{
	for (size_t w = 0; w < sizeof(wrappers) / sizeof(wrappers[0]); w++) {
		size_t n = strlen(wrappers[w]), with = 0, all = 0;

		for (size_t i = 0; i < ck->info.n_tensors; i++) {
			if (ck->tensors[i].kind == ZF_KIND_ALIAS)
				continue;
			all++;
			with += !strncmp(ck->tensors[i].name, wrappers[w], n);
		}
		if (all && with == all)
			return wrappers[w];
	}
	return "";
}

/* Whether the checkpoint holds LoRA weights of module `mod` (len bytes). */
static bool has_lora(const struct zf_ckpt *ck, const char *mod, size_t len)
{
	for (size_t i = 0; i < ck->info.n_tensors; i++) {
		const char *n = ck->tensors[i].name;

		if (!strncmp(n, mod, len) && !strncmp(n + len, ".lora_A.", 8))
			return true;
	}
	return false;
}

/* The checkpoint's name for base tensor name b (malloc'd). */
static char *ckpt_name(const struct zf_ckpt *ck, const char *prefix, const char *b)
{
	size_t pl = strlen(prefix), bl = strlen(b);
	const char *dot = strrchr(b, '.');
	char *n;

	if (!pl || !strncmp(b, prefix, pl))
		return strdup(b);
	n = malloc(pl + bl + sizeof(".base_layer"));
	if (!n)
		return NULL;
	if (dot && dot > b && strstr(prefix, "base_model.model.") &&
	    !((size_t)(dot - b) >= 11 && !strncmp(dot - 11, ".base_layer", 11))) {
		snprintf(n, pl + bl + sizeof(".base_layer"), "%s%.*s", prefix, (int)(dot - b), b);
		if (has_lora(ck, n, strlen(n))) {
			snprintf(n, pl + bl + sizeof(".base_layer"), "%s%.*s.base_layer%s", prefix,
				 (int)(dot - b), b, dot);
			return n;
		}
	}
	snprintf(n, pl + bl + 1, "%s%s", prefix, b);
	return n;
}

static bool same_shape(uint32_t na, const uint64_t *a, uint32_t nb, const uint64_t *b)
{
	return na == nb && !memcmp(a, b, na * sizeof(*a));
}

/* Adds the base tensors the checkpoint lacks; checks the shapes of those
 * it holds. */
static int add_base(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const struct zf_base *b = L->base;
	const char *prefix = wrapper_prefix(ck);
	int rc = ZF_OK;

	for (size_t k = 0; k < b->n && !rc; k++) {
		const struct zf_base_tensor *bt = &b->tensors[k];
		char *name = ckpt_name(ck, prefix, bt->name);
		struct zf_tensor *t;
		size_t idx;
		bool is_new;

		if (!name)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
		idx = zf_strmap_get(&L->names, name);
		if (idx != ZF_STRMAP_NONE) {
			char x[256], y[256];

			t = &ck->tensors[idx];
			/* The checkpoint wins; an alias is its source's. */
			if (t->kind != ZF_KIND_ALIAS &&
			    !same_shape(t->ndim, t->shape, bt->ndim, bt->shape)) {
				zf_shape_text(bt->shape, bt->ndim, x, sizeof(x));
				zf_shape_text(t->shape, t->ndim, y, sizeof(y));
				rc = zf_fail_at(err, ZF_EFORMAT, zf_source_path(ck->files[L->first_base + bt->file]),
						"--base: '%s' has shape %s here, but the checkpoint's '%s' has shape %s: not the model this run started from",
						bt->name, x, name, y);
			}
			free(name);
			continue;
		}
		rc = zf_add_tensor(L, name, strlen(name), &idx, &is_new, err);
		free(name);
		if (rc)
			break;
		t = &ck->tensors[idx];
		t->kind = ZF_KIND_FROZEN;
		t->from_base = true;
		t->src_dtype = bt->dtype;
		t->ndim = bt->ndim;
		memcpy(t->shape, bt->shape, sizeof(t->shape));
		t->numel = bt->numel;
		ck->places[idx].kind = ZF_PLACE_BASE;
		ck->places[idx].u.base.file = L->first_base + bt->file;
		ck->places[idx].u.base.offset = bt->offset;
	}
	return rc;
}

/*
 * A tie the checkpoint kept real data for (at ZeRO-1/2 the tied
 * `lm_head.weight` of an excluded frozen embedding stays in `module`),
 * whose source now comes from the base: the shapes must agree, and the
 * first elements of the base's, in the checkpoint's dtype, must be the
 * checkpoint's.
 */
static int check_tied_copy(struct zf_loader *L, const struct zf_modent *m,
			   const struct zf_tensor *src, const struct zf_place *pl,
			   struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	unsigned char a[SANITY_ELEMS * 8], b[SANITY_ELEMS * 8], c[SANITY_ELEMS * 8];
	struct zf_error e = { 0 };
	struct zf_view v;
	uint64_t k;
	size_t ea, eb;
	char x[256], y[256];
	int rc;

	if (zf_view_resolve_any(m->f, m->val, m->name, &v, &e) || !v.numel)
		return ZF_OK; /* a placeholder (ZeRO-3): no copy to compare */
	if (!same_shape(v.ndim, v.shape, src->ndim, src->shape)) {
		zf_shape_text(src->shape, src->ndim, x, sizeof(x));
		zf_shape_text(v.shape, v.ndim, y, sizeof(y));
		return zf_fail_at(err, ZF_EFORMAT, L->base->dir,
				  "--base: '%s' has shape %s here, but the checkpoint's copy of it under the tied name '%s' has shape %s: not the model this run started from",
				  src->name, x, m->name, y);
	}
	if (v.strided || !zf_dtype_is_float(v.dtype) || !zf_dtype_is_float(src->src_dtype) ||
	    (v.dtype != src->src_dtype && !zf_convert_supported(v.dtype, src->src_dtype)))
		return ZF_OK;
	k = v.numel < SANITY_ELEMS ? v.numel : SANITY_ELEMS;
	ea = zf_dtype_size(v.dtype);
	eb = zf_dtype_size(src->src_dtype);
	rc = zf_source_pread(ck->files[v.file], a, (size_t)(k * ea), v.offset, err);
	if (!rc)
		rc = zf_source_pread(ck->files[pl->u.base.file], b, (size_t)(k * eb),
				     pl->u.base.offset, err);
	if (rc)
		return rc;
	if (v.dtype == src->src_dtype)
		memcpy(c, b, (size_t)(k * ea));
	else
		zf_convert(v.dtype, c, src->src_dtype, b, (size_t)k);
	if (memcmp(a, c, (size_t)(k * ea)))
		return zf_fail_at(err, ZF_EFORMAT, L->base->dir,
				  "--base: not the model this run started from: its '%s' differs from the checkpoint's copy under the tied name '%s'",
				  src->name, m->name);
	return ZF_OK;
}

static int check_tied_copies(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;

	for (size_t i = 0; i < L->n_modents; i++) {
		size_t j = zf_strmap_get(&L->names, L->modents[i].name);
		const struct zf_tensor *t;
		int rc;

		if (j == ZF_STRMAP_NONE)
			continue;
		t = &ck->tensors[j];
		if (t->kind != ZF_KIND_ALIAS || t->alias_of == SIZE_MAX ||
		    !ck->tensors[t->alias_of].from_base)
			continue;
		rc = check_tied_copy(L, &L->modents[i], &ck->tensors[t->alias_of],
				     &ck->places[t->alias_of], err);
		if (rc)
			return rc;
	}
	return ZF_OK;
}

/* "2 known: 'a', 'b'" (at most three names), or nothing known. */
static void known_names(const struct zf_loader *L, char *buf, size_t size)
{
	size_t used;

	if (!L->n_missing) {
		snprintf(buf, size, "their names are not recorded");
		return;
	}
	used = (size_t)snprintf(buf, size, "%zu known: ", L->n_missing);
	for (size_t i = 0; i < L->n_missing && i < 3 && used < size; i++) {
		char shown[160];

		used += (size_t)snprintf(buf + used, size - used, "%s'%s'", i ? ", " : "",
					 zf_printable(L->missing[i], shown, sizeof(shown)));
	}
	if (L->n_missing > 3 && used < size)
		snprintf(buf + used, size - used, ", ...");
}

static bool newer_than_0_10_0(const char *v)
{
	unsigned a = 0, b = 0, c = 0;

	if (sscanf(v, "%u.%u.%u", &a, &b, &c) < 2)
		return true; /* unknown: assume a current release */
	return a > 0 || b > 10 || (b == 10 && c >= 1);
}

/*
 * A PEFT run whose state_dict holds no frozen param: the HF Trainer saved
 * it with exclude_frozen_parameters=True (DeepSpeed >= 0.10.1 has it) at a
 * stage that records no frozen params.
 */
static bool peft_excluded(const struct zf_loader *L)
{
	const struct zf_ckpt *ck = L->ck;
	char *path;
	struct stat st;
	bool adapter;

	if (ck->info.stage > 1 || !ck->hf_dir || !newer_than_0_10_0(ck->ds_version))
		return false;
	path = zf_absolute_path(ck->hf_dir, "adapter_config.json");
	adapter = path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
	free(path);
	if (!adapter)
		return false;
	for (size_t i = 0; i < ck->info.n_tensors; i++)
		if (ck->tensors[i].kind == ZF_KIND_FROZEN)
			return false;
	return true;
}

/* Says what is missing and why, in ck->incomplete (about rank 0's model
 * states file). */
static int say_incomplete(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	char msg[1024], known[512];
	bool peft = !L->frozen_excluded && !L->n_missing && peft_excluded(L);

	if (!L->frozen_excluded && !L->n_missing && !peft)
		return ZF_OK;
	known_names(L, known, sizeof(known));
	if (L->frozen_excluded)
		snprintf(msg, sizeof(msg),
			 "saved with exclude_frozen_parameters=True: the frozen parameters are not in the checkpoint (ZeRO-%d's frozen_param_shapes is None; %s); give the base model with --base DIR to serve the whole model",
			 ck->info.stage, known);
	else if (L->n_missing)
		snprintf(msg, sizeof(msg),
			 "saved with exclude_frozen_parameters=True: the frozen parameters are not in the checkpoint (%s, tied to by names it holds); give the base model with --base DIR to serve the whole model",
			 known);
	else
		snprintf(msg, sizeof(msg),
			 "a PEFT run (adapter_config.json beside it), which the HF Trainer saves with exclude_frozen_parameters=True: the frozen base model weights are not in the checkpoint; give the base model with --base DIR to serve the whole model");
	ck->incomplete = strdup(msg);
	ck->incomplete_where = strdup(zf_model_path(L, 0));
	if (!ck->incomplete || !ck->incomplete_where)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	return ZF_OK;
}

int zf_complete_model(struct zf_loader *L, struct zf_error *err)
{
	int rc;

	if (!L->base)
		return say_incomplete(L, err);
	rc = add_base(L, err);
	if (!rc)
		rc = zf_resolve_ties(L, err);
	if (!rc && L->n_missing) {
		char shown[256];

		return zf_fail_at(err, ZF_ENOTFOUND, L->base->dir,
				  "--base: '%s' was excluded from the checkpoint (a name it holds is tied to it), and this folder does not hold it either",
				  zf_printable(L->missing[0], shown, sizeof(shown)));
	}
	if (!rc)
		rc = check_tied_copies(L, err);
	return rc;
}
