/* SPDX-License-Identifier: MIT */
/*
 * Reads what a checkpoint's optimizer files say: the ZeRO stage (or the
 * BF16_Optimizer, which records none), the world size (partition_count),
 * the base optimizer's step (to tell two saves apart), and the fp32 master
 * partitions of every rank (fp32_flat_groups at stage 3,
 * single_partition_of_fp32_groups at stages 1 and 2), each resolved to
 * bytes in its file. Every rank must agree with rank 0.
 */
#include "ckpt_i.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

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
	if (*stage < 1 || *stage > 3) {
		zf_fail(err, ZF_EUNSUPPORTED,
			"ZeRO stage %d: zerofs reads stages 1, 2 and 3", *stage);
		zf_error_where(err, path);
		return ZF_EUNSUPPORTED;
	}
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

			if ((rc = zf_pread_full(zf_ptfile_fd(f->pf), b, 4, view.offset, err)))
				break;
			memcpy(&x, b, 4);
			*step = x;
			*found = true;
			break;
		}
		case ZF_DT_I64: {
			int64_t x;

			if ((rc = zf_pread_full(zf_ptfile_fd(f->pf), b, 8, view.offset, err)))
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
			zf_error_where(err, zf_ptfile_path(f->pf));
		return rc;
	} else {
		return ZF_OK;
	}
	*found = true;
	return ZF_OK;
}

/* Reads the optimizer files: stage, world size, fp32 partitions. */
int zf_load_optim_rank(struct zf_loader *L, uint32_t r, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	uint32_t ws = L->files.world_size;
	int rc;

	if (r == 0) {
		const struct zf_pv *v = zf_pv_get(L->optim[0].root, "ds_version");

		L->ranks = calloc(ws, sizeof(*L->ranks));
		if (!L->ranks)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
		if (zf_pv_is(v, ZF_PV_STR) && !(L->optim_ds_version = strdup(v->u.str.s)))
			return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	{
		const struct zf_loaded *f = &L->optim[r];
		const char *path = L->files.optim[r];
		const struct zf_pv *osd = zf_pv_get(f->root, "optimizer_state_dict");
		const struct zf_pv *pc, *groups;
		const char *gkey;
		int stage;

		if (!zf_pv_is(osd, ZF_PV_DICT))
			return zf_fail_at(err, ZF_EFORMAT, path, "no 'optimizer_state_dict' dict: not a DeepSpeed optimizer states file");
		rc = read_stage(osd, path, &stage, err);
		if (rc)
			return rc;
		if (!stage) {
			if (!zf_pv_get(osd, "single_partition_of_fp32_groups"))
				return zf_fail_at(err, ZF_EFORMAT, path, "no 'zero_stage' and no fp32 partitions: not a ZeRO or BF16_Optimizer checkpoint");
			stage = 1; /* BF16_Optimizer: ZeRO-1 layout */
			if (r == 0)
				ck->optimizer = ZF_OPT_BF16;
			else if (ck->optimizer != ZF_OPT_BF16)
				return zf_fail_at(err, ZF_EFORMAT, path, "written by a different optimizer than rank 0's file");
		} else if (r > 0 && ck->optimizer == ZF_OPT_BF16) {
			return zf_fail_at(err, ZF_EFORMAT, path, "written by a different optimizer than rank 0's file");
		}
		if (r == 0)
			ck->stage = stage;
		else if (stage != ck->stage) {
			zf_fail(err, ZF_EFORMAT, "ZeRO stage %d, but rank 0's file says %d: files from different runs",
				stage, ck->stage);
			zf_error_where(err, path);
			return ZF_EFORMAT;
		}

		pc = zf_pv_get(osd, "partition_count");
		int64_t count = -1;

		if (zf_pv_is(pc, ZF_PV_INT)) {
			count = pc->u.i;
		} else if (zf_pv_is(pc, ZF_PV_LIST) || zf_pv_is(pc, ZF_PV_TUPLE)) {
			for (size_t i = 0; i < pc->u.seq.n; i++) {
				const struct zf_pv *c = pc->u.seq.items[i];

				if (!zf_pv_is(c, ZF_PV_INT))
					return zf_fail_at(err, ZF_EFORMAT, path, "partition_count holds a non-int");
				if (c->u.i > count)
					count = c->u.i;
			}
		}
		if (count < 0)
			return zf_fail_at(err, ZF_EFORMAT, path, "no usable 'partition_count'");
		if (count > ws) {
			char first[256];

			zf_rank_file_name(strrchr(path, '/') ? strrchr(path, '/') + 1 : path,
					  ws, first, sizeof(first));
			zf_fail(err, ZF_ENOTFOUND,
				"saved by %lld ranks, but only %u rank files are here: missing '%s'%s",
				(long long)count, ws, first, count > ws + 1 ? " and more" : "");
			zf_error_where(err, L->files.tag_dir);
			return ZF_ENOTFOUND;
		}
		if ((uint64_t)count != ws) {
			zf_fail(err, ZF_EFORMAT,
				"saved by %lld ranks, but the folder holds %u rank files: files from different runs are mixed",
				(long long)count, ws);
			zf_error_where(err, path);
			return ZF_EFORMAT;
		}

		{
			double step = 0;
			bool found;

			rc = optim_step(f, osd, &step, &found, err);
			if (rc)
				return rc;
			if (r == 0) {
				L->step0 = step;
				L->has_step0 = found;
			} else if (found != L->has_step0 || (found && step != L->step0)) {
				zf_fail(err, ZF_EFORMAT,
					"optimizer is at step %.0f, but rank 0's file is at step %.0f: files from different saves are mixed",
					found ? step : 0.0, L->has_step0 ? L->step0 : 0.0);
				zf_error_where(err, path);
				return ZF_EFORMAT;
			}
		}
		gkey = stage == 3 ? "fp32_flat_groups" : "single_partition_of_fp32_groups";
		groups = zf_pv_get(osd, gkey);
		if (!zf_pv_is(groups, ZF_PV_LIST) && !zf_pv_is(groups, ZF_PV_TUPLE))
			return zf_fail_at(err, ZF_EFORMAT, path, "no '%s' list: the fp32 weights are missing", gkey);
		if (r > 0 && groups->u.seq.n != L->ranks[0].n) {
			zf_fail(err, ZF_EFORMAT, "%zu fp32 groups, but rank 0's file has %zu: files from different runs",
				groups->u.seq.n, L->ranks[0].n);
			zf_error_where(err, path);
			return ZF_EFORMAT;
		}
		L->ranks[r].path = path;
		L->ranks[r].n = groups->u.seq.n;
		L->ranks[r].v = calloc(groups->u.seq.n ? groups->u.seq.n : 1, sizeof(struct zf_view));
		if (!L->ranks[r].v)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
		for (size_t g = 0; g < groups->u.seq.n; g++) {
			char what[64];

			snprintf(what, sizeof(what), "%s[%zu]", gkey, g);
			rc = zf_view_resolve(f, groups->u.seq.items[g], what,
					     &L->ranks[r].v[g], err);
			if (rc)
				return rc;
		}
	}
	return ZF_OK;
}

int zf_load_optim_finish(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	uint32_t ws = L->files.world_size;

	if (ck->stage == 3 && L->files.n_model != ws) {
		zf_fail(err, ZF_ENOTFOUND,
			"ZeRO-3 optimizer states, but %u model states file(s) instead of one per rank (%u)",
			L->files.n_model, ws);
		zf_error_where(err, L->files.tag_dir);
		return ZF_ENOTFOUND;
	}
	if (ck->stage != 3 && L->files.n_model != 1) {
		zf_fail(err, ZF_EFORMAT,
			"ZeRO-%d optimizer states, but per-rank model states files (a ZeRO-3 layout)",
			ck->stage);
		zf_error_where(err, L->files.tag_dir);
		return ZF_EFORMAT;
	}
	return ZF_OK;
}
