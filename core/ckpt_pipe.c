/* SPDX-License-Identifier: MIT */
/*
 * A one-stage DeepSpeed PipelineModule: its model states record module =
 * None, and each layer's state_dict() (cloned, in the training dtype:
 * trainable params' 16-bit copies, frozen params and buffers) is in its
 * own layer_NN-model_states.pt, keys without the layer's prefix. The fp32
 * masters of the trainable params are in the optimizer files as for
 * ZeRO-1, named by param_shapes.
 *
 * Names, as PipelineModule.state_dict() gives them: a layer built from a
 * LayerSpec or an nn.Module is registered under its index, so key k of
 * layer_NN is "NN.k" (the index without zero padding); a TiedLayerSpec
 * writes the tied module's state under its index, and the model names it
 * "tied_modules.KEY.k" (one tensor, however many layers share it). A file
 * is a tied module's when param_shapes names its keys under
 * tied_modules.KEY, a layer's when param_shapes or buffer_names name them
 * under its index; a file neither names (a frozen layer's) takes its
 * index. Order: tied_modules first (PipelineModule registers them before
 * the layers), then the layers by index, each in its file's order.
 *
 * zf_refuse_parallel() refuses what a folder of copied files hides by
 * name: the model states of one pipeline stage or tensor-parallel rank of
 * a bigger grid, or of an MoE model without its expert files.
 */
#include "ckpt_i.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "strmap.h"

static bool in_map(const struct zf_strmap *m, const char *name)
{
	return zf_strmap_get(m, name) != ZF_STRMAP_NONE;
}

/* Keeps s (malloc'd) until the loader ends; NULL when out of memory. */
static char *own(struct zf_loader *L, char *s)
{
	if (!s)
		return NULL;
	if (L->n_owned == L->cap_owned &&
	    zf_grow(&L->owned, &L->cap_owned, L->n_owned + 1, 16)) {
		free(s);
		return NULL;
	}
	L->owned[L->n_owned++] = s;
	return s;
}

static char *join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 1;
	char *s = malloc(n);

	if (s)
		snprintf(s, n, "%s%s", a, b);
	return s;
}

/* The names param_shapes and buffer_names give, in one map. */
static int known_names(const struct zf_loader *L, struct zf_strmap *m,
		       struct zf_error *err)
{
	const struct zf_pv *ps = L->param_shapes, *bn = L->buffer_names;
	size_t n = zf_pv_count_items(bn);

	for (size_t g = 0; zf_pv_is(ps, ZF_PV_LIST) && g < ps->u.seq.n; g++)
		n += zf_pv_count_items(ps->u.seq.items[g]);
	if (zf_pv_is(ps, ZF_PV_DICT))
		n += ps->u.dict.n;
	if (zf_strmap_init(m, n))
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	for (size_t g = 0; ps && g < (zf_pv_is(ps, ZF_PV_DICT) ? 1 : ps->u.seq.n); g++) {
		const struct zf_pv *d = zf_pv_is(ps, ZF_PV_DICT) ? ps : ps->u.seq.items[g];

		for (size_t i = 0; zf_pv_is(d, ZF_PV_DICT) && i < d->u.dict.n; i++)
			if (zf_pv_is(d->u.dict.keys[i], ZF_PV_STR))
				zf_strmap_put(m, d->u.dict.keys[i]->u.str.s, 1);
	}
	for (size_t i = 0; (zf_pv_is(bn, ZF_PV_LIST) || zf_pv_is(bn, ZF_PV_TUPLE)) && i < bn->u.seq.n; i++)
		if (zf_pv_is(bn->u.seq.items[i], ZF_PV_STR))
			zf_strmap_put(m, bn->u.seq.items[i]->u.str.s, 1);
	return ZF_OK;
}

/* The prefix of layer file f's keys: "NN." or "tied_modules.KEY.". */
static char *layer_prefix(const struct zf_loader *L, const struct zf_strmap *known,
			  const struct zf_pv *sd, uint32_t idx)
{
	const struct zf_pv *ps = L->param_shapes;
	char num[16], *best = NULL, *p;
	size_t best_n = 0;

	snprintf(num, sizeof(num), "%u.", idx);
	for (size_t i = 0; i < sd->u.dict.n; i++) {
		char *name = join(num, sd->u.dict.keys[i]->u.str.s);
		bool hit = name && in_map(known, name);

		free(name);
		if (hit)
			return strdup(num);
	}
	/* A tied module: the KEY under which param_shapes names most of its
	 * keys. */
	for (size_t g = 0; ps && g < (zf_pv_is(ps, ZF_PV_DICT) ? 1 : ps->u.seq.n); g++) {
		const struct zf_pv *d = zf_pv_is(ps, ZF_PV_DICT) ? ps : ps->u.seq.items[g];

		for (size_t i = 0; zf_pv_is(d, ZF_PV_DICT) && i < d->u.dict.n; i++) {
			const char *n = zf_pv_is(d->u.dict.keys[i], ZF_PV_STR) ? d->u.dict.keys[i]->u.str.s : "";
			const char *dot;
			size_t hits = 0;

			if (strncmp(n, "tied_modules.", 13) || !(dot = strchr(n + 13, '.')))
				continue;
			p = malloc((size_t)(dot - n) + 2);
			if (!p)
				break;
			snprintf(p, (size_t)(dot - n) + 2, "%.*s", (int)(dot - n) + 1, n);
			for (size_t k = 0; k < sd->u.dict.n; k++) {
				char *name = join(p, sd->u.dict.keys[k]->u.str.s);

				hits += name && in_map(known, name);
				free(name);
			}
			if (hits > best_n) {
				free(best);
				best = p;
				best_n = hits;
			} else {
				free(p);
			}
		}
	}
	return best ? best : strdup(num);
}

int zf_pipe_modents(struct zf_loader *L, struct zf_error *err)
{
	struct zf_strmap known = { 0 }, seen = { 0 };
	size_t total = 0, k = 0;
	struct zf_modent *v = NULL;
	char **prefix = NULL;
	int rc;

	for (uint32_t i = 0; i < L->files.n_layers; i++) {
		const struct zf_pv *sd = L->layer[i].root;

		for (size_t j = 0; j < sd->u.dict.n; j++) {
			const struct zf_pv *key = sd->u.dict.keys[j];

			if (!zf_pv_is(key, ZF_PV_STR))
				return zf_fail_at(err, ZF_EFORMAT, L->files.layers[i],
						  "the layer's state dict has a non-string key");
			if (memchr(key->u.str.s, '\0', key->u.str.len))
				return zf_fail_at(err, ZF_EFORMAT, L->files.layers[i],
						  "a tensor name of the layer's state dict contains a NUL byte: it cannot be served under a Hugging Face name");
		}
		total += sd->u.dict.n;
	}
	rc = known_names(L, &known, err);
	if (rc)
		return rc;
	v = calloc(total ? total : 1, sizeof(*v));
	prefix = calloc(L->files.n_layers, sizeof(*prefix));
	if (!v || !prefix || zf_strmap_init(&seen, total)) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < L->files.n_layers; i++) {
		prefix[i] = layer_prefix(L, &known, L->layer[i].root, L->files.layer_idx[i]);
		if (!prefix[i]) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
	}
	/* Tied modules first, then the layers, each file in its order; a
	 * tied module written by several layers is one. */
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < L->files.n_layers; i++) {
			const struct zf_pv *sd = L->layer[i].root;

			if ((pass == 0) != !strncmp(prefix[i], "tied_modules.", 13))
				continue;
			for (size_t j = 0; j < sd->u.dict.n; j++) {
				char *name = own(L, join(prefix[i], sd->u.dict.keys[j]->u.str.s));

				if (!name) {
					rc = zf_fail(err, ZF_ENOMEM, "out of memory");
					goto out;
				}
				if (zf_strmap_put(&seen, name, k))
					continue;
				v[k++] = (struct zf_modent){ name, strlen(name), sd->u.dict.vals[j],
							     &L->layer[i] };
			}
		}
	}
	L->modents = v;
	L->n_modents = k;
	v = NULL;
out:
	free(v);
	for (uint32_t i = 0; prefix && i < L->files.n_layers; i++)
		free(prefix[i]);
	free(prefix);
	zf_strmap_release(&known);
	zf_strmap_release(&seen);
	return rc;
}

/* A layer index "NN." names at its start; false when it names none. */
static bool layer_of(const char *name, uint32_t *idx)
{
	uint32_t n = 0;
	const char *p = name;

	while (*p >= '0' && *p <= '9' && p - name < 9)
		n = n * 10 + (uint32_t)(*p++ - '0');
	if (p == name || *p != '.')
		return false;
	*idx = n;
	return true;
}

int zf_pipe_check_layers(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;

	if (!L->files.n_layers)
		return ZF_OK;
	/* A name of a layer whose file is not here: that layer's frozen
	 * params and buffers would be missing without a trace. */
	for (size_t i = 0; i < ck->info.n_tensors; i++) {
		uint32_t idx, j;

		if (!layer_of(ck->tensors[i].name, &idx))
			continue;
		for (j = 0; j < L->files.n_layers && L->files.layer_idx[j] != idx; j++)
			;
		if (j == L->files.n_layers)
			return zf_fail_at(err, ZF_ENOTFOUND, L->files.tag_dir,
					  "PipelineModule checkpoint without the file of layer %u ('layer_%02u-model_states.pt'), which '%s' belongs to",
					  idx, idx, ck->tensors[i].name);
	}
	return ZF_OK;
}

int zf_refuse_parallel(struct zf_loader *L, struct zf_error *err)
{
	const struct zf_pv *root = L->model[0].root;
	const struct zf_pv *mp = zf_pv_get(root, "mp_world_size");
	const struct zf_pv *dims = zf_pv_get(root, "checkpoint_parallel_dimensions");
	const struct zf_pv *pp = zf_pv_get(dims, "pp_degree"), *tp = zf_pv_get(dims, "tp_degree");
	const struct zf_pv *mod = zf_pv_get(root, "module");
	const char *path = zf_model_path(L, 0);

	/* An MoE model's gates and experts are named ...deepspeed_moe...;
	 * its expert files would have been named and refused already. */
	for (size_t i = 0; zf_pv_is(mod, ZF_PV_DICT) && i < mod->u.dict.n; i++)
		if (zf_pv_is(mod->u.dict.keys[i], ZF_PV_STR) &&
		    strstr(mod->u.dict.keys[i]->u.str.s, "deepspeed_moe"))
			return zf_fail_at(err, ZF_EUNSUPPORTED, path,
					  "mixture-of-experts model ('%s'), without its expert files here; zerofs does not serve mixture-of-experts (MoE) checkpoints",
					  mod->u.dict.keys[i]->u.str.s);
	if (zf_pv_get(root, "num_experts") && !zf_pv_get(root, "param_shapes"))
		return zf_fail_at(err, ZF_EUNSUPPORTED, path,
				  "a mixture-of-experts expert file (num_experts, no param_shapes); zerofs does not serve mixture-of-experts (MoE) checkpoints");
	/* DeepSpeed >= 0.19.5 says the grid; before, mp_world_size is
	 * stages x tensor-parallel degree, and a stage has no module. */
	if (zf_pv_is(pp, ZF_PV_INT) && pp->u.i > 1)
		return zf_fail_at(err, ZF_EUNSUPPORTED, path,
				  "pipeline-parallel checkpoint with %lld stages (checkpoint_parallel_dimensions) and only the files of stage 0 here; zerofs does not serve multi-stage pipelines",
				  (long long)pp->u.i);
	if (zf_pv_is(tp, ZF_PV_INT) && tp->u.i > 1)
		return zf_fail_at(err, ZF_EUNSUPPORTED, path,
				  "tensor-parallel checkpoint of degree %lld (checkpoint_parallel_dimensions) with only the files of rank 0 here; zerofs does not serve tensor-parallel checkpoints",
				  (long long)tp->u.i);
	if (zf_pv_is(mp, ZF_PV_INT) && mp->u.i > 1)
		return zf_fail_at(err, ZF_EUNSUPPORTED, path,
				  zf_pv_is(mod, ZF_PV_NONE) || !mod
					  ? "pipeline-parallel checkpoint (mp_world_size %lld) with only the files of stage 0 here; zerofs does not serve multi-stage pipelines"
					  : "tensor-parallel checkpoint (mp_world_size %lld) with only the files of rank 0 here; zerofs does not serve tensor-parallel checkpoints",
				  (long long)mp->u.i);
	return ZF_OK;
}
