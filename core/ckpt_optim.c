/* SPDX-License-Identifier: MIT */
/*
 * Reads what a checkpoint's optimizer files say: the ZeRO stage (or the
 * BF16_Optimizer, which records none), the world size (partition_count),
 * the base optimizer's step (to tell two saves apart), and the fp32 master
 * partitions of every rank (fp32_flat_groups at stage 3,
 * single_partition_of_fp32_groups at stages 1 and 2), each resolved to
 * bytes in its file. Every rank must agree with rank 0, and a ZeRO-1/2
 * rank's param_slice_mappings must describe the part of each group that
 * rank holds (man/zerofs-checkpoint.5, CHECKS).
 */
#include "ckpt_i.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckd.h"

/* The stage an optimizer file declares; 0 when it has no zero_stage. */
static int read_stage(const struct zf_pv *osd, const char *path, int *stage,
		      struct zf_error *err)
{
	const struct zf_pv *zs = zf_pv_get(osd, "zero_stage");

	*stage = 0;
	if (!zs)
		return ZF_OK;
	if (zf_pv_is(zs, ZF_PV_INT)) {
		*stage = (int)zs->u.i;
	} else if (zf_pv_is(zs, ZF_PV_ENUM)) {
		const char *m = zs->u.enm.member;

		if (!m)
			*stage = (int)zs->u.enm.value;
		else if (!strcmp(m, "weights"))
			*stage = 3;
		else if (!strcmp(m, "gradients"))
			*stage = 2;
		else if (!strcmp(m, "optimizer_states"))
			*stage = 1;
		else if (!strcmp(m, "disabled"))
			*stage = 0;
		else
			return zf_fail_at(err, ZF_EFORMAT, path, "unknown ZeRO stage '%s'", m);
	} else {
		return zf_fail_at(err, ZF_EFORMAT, path, "zero_stage is of type %s, expected an int or ZeroStageEnum",
			   zf_pv_type_name(zs));
	}
	if (*stage < 1 || *stage > 3)
		return zf_fail_at(err, ZF_EUNSUPPORTED, path,
				  "ZeRO stage %d: zerofs reads stages 1, 2 and 3", *stage);
	return ZF_OK;
}

/*
 * The optimizer's step count as the base optimizer recorded it: the first
 * "step" in its per-param state (ZeRO-3: optimizer_state_dict.state;
 * ZeRO-1/2 and BF16_Optimizer: base_optimizer_state), an int, a float or
 * a 0-dim tensor. Every rank of one save has the same; files from two
 * saves usually do not, which is how they are told apart. *found is false
 * when there is no step (a checkpoint saved before the first step).
 */
static int optim_step(const struct zf_loaded *f, const struct zf_pv *osd,
		      double *step, bool *found, struct zf_error *err)
{
	const struct zf_pv *st = zf_pv_get(zf_pv_get(osd, "optimizer_state_dict"), "state");
	struct zf_source *src = zf_container_source(f->ct);
	const struct zf_pv *v = NULL;

	*found = false;
	if (!st)
		st = zf_pv_get(osd, "base_optimizer_state");
	if (zf_pv_is(st, ZF_PV_DICT) && zf_pv_get(st, "state"))
		st = zf_pv_get(st, "state");
	/* A dict of per-param states, or a list of them. */
	if (zf_pv_is(st, ZF_PV_DICT) && st->u.dict.n)
		v = zf_pv_get(st->u.dict.vals[0], "step");
	else if ((zf_pv_is(st, ZF_PV_LIST) || zf_pv_is(st, ZF_PV_TUPLE)) && st->u.seq.n)
		v = zf_pv_get(st->u.seq.items[0], "step");
	if (zf_pv_is(v, ZF_PV_INT)) {
		*step = (double)v->u.i;
	} else if (zf_pv_is(v, ZF_PV_FLOAT)) {
		*step = v->u.f;
	} else if (zf_pv_is(v, ZF_PV_TENSOR)) {
		struct zf_view view;
		unsigned char b[8];
		int rc = zf_view_resolve(f, v, "step", &view, err);

		if (rc)
			return rc;
		if (view.numel != 1)
			return ZF_OK;
		switch (view.dtype) {
		case ZF_DT_F32: {
			float x;

			if ((rc = zf_source_pread(src, b, 4, view.offset, err)))
				break;
			memcpy(&x, b, 4);
			*step = x;
			*found = true;
			break;
		}
		case ZF_DT_I64: {
			int64_t x;

			if ((rc = zf_source_pread(src, b, 8, view.offset, err)))
				break;
			memcpy(&x, b, 8);
			*step = (double)x;
			*found = true;
			break;
		}
		default:
			break;
		}
		if (rc)
			zf_error_where(err, zf_container_path(f->ct));
		return rc;
	} else {
		return ZF_OK;
	}
	*found = true;
	return ZF_OK;
}


/* The partition count: an int (stage 3) or one per group (stage 1/2). */
static int read_count(const struct zf_pv *osd, const char *path, int64_t *count,
		      struct zf_error *err)
{
	const struct zf_pv *pc = zf_pv_get(osd, "partition_count");

	*count = -1;
	if (zf_pv_is(pc, ZF_PV_INT)) {
		*count = pc->u.i;
	} else if (zf_pv_is(pc, ZF_PV_LIST) || zf_pv_is(pc, ZF_PV_TUPLE)) {
		for (size_t i = 0; i < pc->u.seq.n; i++) {
			const struct zf_pv *c = pc->u.seq.items[i];

			if (!zf_pv_is(c, ZF_PV_INT))
				return zf_fail_at(err, ZF_EFORMAT, path, "partition_count holds a non-int");
			if (c->u.i > *count)
				*count = c->u.i;
		}
	}
	if (*count < 0)
		return zf_fail_at(err, ZF_EFORMAT, path, "no usable 'partition_count'");
	return ZF_OK;
}

/*
 * Rank r's fp32 groups: at ZeRO-3 one table (interned: ranks share it
 * when their files have one layout) of (end element, offset) pairs over
 * the rank's flat space; at ZeRO-1/2 its partition of each group.
 */
static int read_groups(struct zf_loader *L, uint32_t r, const struct zf_pv *groups,
		       const char *gkey, struct zf_error *err)
{
	struct zf_rank_optim *ro = &L->ropt[r];
	const char *path = zf_optim_path(L, r);
	size_t n = groups->u.seq.n;
	uint64_t *pairs = NULL, end = 0;
	int rc = ZF_OK;

	ro->n = n;
	if (L->ck->info.stage == 3)
		pairs = malloc((n ? 2 * n : 1) * sizeof(*pairs));
	else
		ro->parts = calloc(n ? n : 1, sizeof(*ro->parts));
	if (!pairs && !ro->parts)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	for (size_t g = 0; g < n && !rc; g++) {
		struct zf_view v;
		char what[64];

		snprintf(what, sizeof(what), "%s[%zu]", gkey, g);
		rc = zf_view_resolve(&L->optim[r], groups->u.seq.items[g], what, &v, err);
		if (rc)
			break;
		if (v.dtype != ZF_DT_F32) {
			rc = zf_fail_at(err, ZF_EFORMAT, path, "%s is %s, expected float32",
					what, zf_dtype_torch_name(v.dtype));
			break;
		}
		if (pairs) {
			if (zf_ckd_add(&end, end, v.numel)) {
				rc = zf_fail_at(err, ZF_EFORMAT, path, "%s: sizes overflow", gkey);
				break;
			}
			pairs[2 * g] = end;
			pairs[2 * g + 1] = v.offset;
		} else {
			ro->parts[g] = (struct zf_seg){ v.offset, v.numel };
		}
	}
	if (!rc && pairs) {
		pthread_mutex_lock(&L->lock);
		rc = zf_tables_intern(&L->ck->lay.tables, pairs, 2 * n, &ro->segs, err);
		pthread_mutex_unlock(&L->lock);
		ro->flat_numel = end;
	}
	free(pairs);
	return rc;
}

/*
 * Rank r's optimizer file (its tree at L->optim[r].root): stage, world
 * size, step and fp32 partitions. Rank 0 runs first and alone and sets
 * what the others must agree with; the others may run at once.
 */
int zf_load_optim_rank(struct zf_loader *L, uint32_t r, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	const struct zf_loaded *f = &L->optim[r];
	const char *path = zf_optim_path(L, r);
	const struct zf_pv *osd = zf_pv_get(f->root, "optimizer_state_dict");
	const struct zf_pv *groups;
	const char *gkey;
	int64_t count;
	double step = 0;
	bool found;
	int stage, rc;

	if (r == 0) {
		const struct zf_pv *v = zf_pv_get(f->root, "ds_version");

		L->ropt = calloc(L->ws, sizeof(*L->ropt));
		if (!L->ropt)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
		if (zf_pv_is(v, ZF_PV_STR) && !(L->optim_ds_version = strdup(v->u.str.s)))
			return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	if (!zf_pv_is(osd, ZF_PV_DICT))
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "no 'optimizer_state_dict' dict: not a DeepSpeed optimizer states file");
	rc = read_stage(osd, path, &stage, err);
	if (rc)
		return rc;
	if (!stage) {
		if (!zf_pv_get(osd, "single_partition_of_fp32_groups"))
			return zf_fail_at(err, ZF_EFORMAT, path,
					  "no 'zero_stage' and no fp32 partitions: not a ZeRO or BF16_Optimizer checkpoint");
		stage = 1; /* BF16_Optimizer: ZeRO-1 layout */
		if (r == 0)
			ck->info.optimizer = ZF_OPT_BF16;
		else if (ck->info.optimizer != ZF_OPT_BF16)
			return zf_fail_at(err, ZF_EFORMAT, path,
					  "written by a different optimizer than rank 0's file");
	} else if (r > 0 && ck->info.optimizer == ZF_OPT_BF16) {
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "written by a different optimizer than rank 0's file");
	}
	if (r == 0)
		ck->info.stage = L->optim_stage = stage;
	else if (stage != L->optim_stage)
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "ZeRO stage %d, but rank 0's file says %d: files from different runs",
				  stage, L->optim_stage);

	rc = read_count(osd, path, &count, err);
	if (rc)
		return rc;
	if (count > L->ws) {
		char first[256];
		const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;

		zf_rank_file_name(base, L->ws, first, sizeof(first));
		return zf_fail_at(err, ZF_ENOTFOUND, L->files.tag_dir,
				  "saved by %lld ranks, but only %u rank files are here: missing '%s'%s",
				  (long long)count, L->ws, first, count > L->ws + 1 ? " and more" : "");
	}
	if ((uint64_t)count != L->ws)
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "saved by %lld ranks, but the folder holds %u rank files: files from different runs are mixed",
				  (long long)count, L->ws);

	/* Every rank of one save is at the same step; the step of the file
	 * is read from its own record, even when the pickle is shared. */
	rc = optim_step(f, osd, &step, &found, err);
	if (rc)
		return rc;
	if (r == 0) {
		L->step0 = step;
		L->has_step0 = found;
	} else if (found != L->has_step0 || (found && step != L->step0)) {
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "optimizer is at step %.0f, but rank 0's file is at step %.0f: files from different saves are mixed",
				  found ? step : 0.0, L->has_step0 ? L->step0 : 0.0);
	}

	gkey = stage == 3 ? "fp32_flat_groups" : "single_partition_of_fp32_groups";
	groups = zf_pv_get(osd, gkey);
	if (!zf_pv_is(groups, ZF_PV_LIST) && !zf_pv_is(groups, ZF_PV_TUPLE))
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "no '%s' list: the fp32 weights are missing", gkey);
	if (r > 0 && groups->u.seq.n != L->ropt[0].n)
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "%zu fp32 groups, but rank 0's file has %zu: files from different runs",
				  groups->u.seq.n, L->ropt[0].n);
	return read_groups(L, r, groups, gkey, err);
}

int zf_load_optim_finish(struct zf_loader *L, struct zf_error *err)
{
	int stage = L->ck->info.stage;

	if (stage == 3 && L->n_model != L->ws)
		return zf_fail_at(err, ZF_ENOTFOUND, L->files.tag_dir,
				  "ZeRO-3 optimizer states, but %u model states file(s) instead of one per rank (%u)",
				  L->n_model, L->ws);
	if (stage != 3 && L->n_model != 1)
		return zf_fail_at(err, ZF_EFORMAT, L->files.tag_dir,
				  "ZeRO-%d optimizer states, but per-rank model states files (a ZeRO-3 layout)",
				  stage);
	return ZF_OK;
}

/* --- param_slice_mappings --------------------------------------------- */

/* A fragment_address(numel, start) as DeepSpeed pickles the dataclass:
 * an object whose BUILD state is a dict of its two fields. */
static bool frag_address(const struct zf_pv *v, uint64_t *numel, uint64_t *start)
{
	const struct zf_pv *st = zf_pv_is(v, ZF_PV_OBJECT) ? v->u.obj.state : v;
	const struct zf_pv *n = zf_pv_get(st, "numel"), *s = zf_pv_get(st, "start");

	if (!zf_pv_is(n, ZF_PV_INT) || !zf_pv_is(s, ZF_PV_INT) || n->u.i < 0 || s->u.i < 0)
		return false;
	*numel = (uint64_t)n->u.i;
	*start = (uint64_t)s->u.i;
	return true;
}

/*
 * Whether mapping m (name -> fragment_address) is exactly what the rank
 * holding group elements [lo, hi) records: one entry per parameter of the
 * group overlapping the range, with the overlap's length and its start
 * within the range. DeepSpeed's _create_param_mapping() writes these.
 */
static bool mapping_matches(const struct zf_loader *L, uint32_t g,
			    const struct zf_pv *m, uint64_t lo, uint64_t hi)
{
	size_t lo_i = L->group_first[g], hi_i = L->group_first[g + 1], want = 0;

	/* The group's params lie back to back from element 0: find the
	 * first that ends past lo, count those that start before hi. */
	while (lo_i < hi_i) {
		size_t mid = lo_i + (hi_i - lo_i) / 2;
		const struct zf_flat_param *p = &L->params[mid];

		if (p->start + p->numel <= lo)
			lo_i = mid + 1;
		else
			hi_i = mid;
	}
	for (size_t i = lo_i; i < L->group_first[g + 1] && L->params[i].start < hi; i++)
		want += L->params[i].numel != 0;
	if (want != m->u.dict.n)
		return false;
	for (size_t k = 0; k < m->u.dict.n; k++) {
		const struct zf_pv *key = m->u.dict.keys[k];
		const struct zf_flat_param *p;
		uint64_t numel, start, a, b;
		size_t t;

		if (!zf_pv_is(key, ZF_PV_STR) ||
		    (t = zf_strmap_get(&L->names, key->u.str.s)) == ZF_STRMAP_NONE ||
		    L->param_of[t] == SIZE_MAX ||
		    !frag_address(m->u.dict.vals[k], &numel, &start))
			return false;
		p = &L->params[L->param_of[t]];
		a = p->start > lo ? p->start : lo;
		b = p->start + p->numel < hi ? p->start + p->numel : hi;
		if (p->group != g || a >= b || numel != b - a || start != a - lo)
			return false;
	}
	return true;
}

int zf_check_slice_mappings(struct zf_loader *L, uint32_t r, struct zf_error *err)
{
	const struct zf_pv *osd = zf_pv_get(L->optim[r].root, "optimizer_state_dict");
	const struct zf_pv *maps = zf_pv_get(osd, "param_slice_mappings");
	const char *path = zf_optim_path(L, r);

	/* Older DeepSpeed versions record none; ZeRO-3 records no part. */
	if (L->ck->info.stage == 3 || !maps || zf_pv_is(maps, ZF_PV_NONE))
		return ZF_OK;
	if ((!zf_pv_is(maps, ZF_PV_LIST) && !zf_pv_is(maps, ZF_PV_TUPLE)) ||
	    maps->u.seq.n != L->n_groups)
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "param_slice_mappings is not a list of %u dicts, one per param group",
				  L->n_groups);
	for (uint32_t g = 0; g < L->n_groups; g++) {
		const struct zf_pv *m = maps->u.seq.items[g];
		size_t first = L->group_first[g], end = L->group_first[g + 1];
		uint64_t need = end > first ? L->params[end - 1].start + L->params[end - 1].numel : 0;
		/* DeepSpeed pads the group to a multiple of 2 * world size and
		 * cuts it in equal parts (the last may be saved shorter, its
		 * padding dropped): rank r's part starts at r * part. */
		uint64_t part = (need + 2ull * L->ws - 1) / (2ull * L->ws) * 2, lo, hi;

		if (!zf_pv_is(m, ZF_PV_DICT))
			return zf_fail_at(err, ZF_EFORMAT, path,
					  "param_slice_mappings[%u] is not a dict", g);
		if (zf_ckd_mul(&lo, part, r) || zf_ckd_add(&hi, lo, part))
			return zf_fail_at(err, ZF_EFORMAT, path, "partition sizes overflow");
		if (mapping_matches(L, g, m, lo, hi))
			continue;
		for (uint32_t q = 0; q < L->ws; q++)
			if (q != r && mapping_matches(L, g, m, part * q, part * q + part))
				return zf_fail_at(err, ZF_EFORMAT, path,
						  "its param_slice_mappings describe rank %u's part of param group %u, not rank %u's: rank files swapped or renamed",
						  q, g, r);
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "its param_slice_mappings do not describe rank %u's part of param group %u (elements %llu to %llu)",
				  r, g, (unsigned long long)lo, (unsigned long long)hi);
	}
	return ZF_OK;
}
