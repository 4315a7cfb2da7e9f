/* SPDX-License-Identifier: MIT */
/*
 * Places each trainable parameter of a ZeRO-3 checkpoint in the ranks'
 * fp32 flat groups.
 *
 * Each rank's flat space is its fp32_flat_groups concatenated in list
 * order (sub-group boundaries may fall anywhere, even inside a param).
 * Walking param_shapes in order with one running offset, a param of n
 * elements takes p = ceil(n / ws) elements from every rank at that offset:
 * rank r holds elements [r*p, min((r+1)*p, n)) of the param, and the
 * tail of the last holding rank's slice is padding that is never served.
 * So one offset places a param on every rank, and each rank's flat groups
 * are one table (ckpt_optim.c interned it; ranks usually share one). Every
 * rank's flat space must hold exactly the sum of the p's. This mirrors
 * zero3_partitioned_param_info() in DeepSpeed's zero_to_fp32.py; keep them
 * in step. man/zerofs-checkpoint.5 (PLACEMENT) has the maths.
 */
#include "ckpt_i.h"

#include <stdlib.h>

#include "ckd.h"

int zf_layout_zero3(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	uint32_t ws = L->ws;
	uint64_t need = 0;

	for (size_t i = 0; i < L->n_params; i++) {
		const struct zf_flat_param *fp = &L->params[i];
		struct zf_place *pl = &ck->places[fp->tensor];
		uint64_t p = fp->numel / ws + (fp->numel % ws != 0);

		pl->kind = ZF_PLACE_ZERO3;
		pl->u.zero3.flat = need;
		if (zf_ckd_add(&need, need, p))
			return zf_fail(err, ZF_EFORMAT, "parameter sizes overflow");
	}
	/* The sizes must add up on every rank before anything is served. */
	for (uint32_t r = 0; r < ws; r++)
		if (L->ropt[r].flat_numel != need)
			return zf_fail_at(err, ZF_EFORMAT, zf_optim_path(L, r),
					  "fp32 flat groups hold %llu elements, but the %zu parameters in param_shapes need %llu (sum of ceil(numel/%u)): model and optimizer files do not match",
					  (unsigned long long)L->ropt[r].flat_numel, L->n_params,
					  (unsigned long long)need, ws);
	ck->lay.zero3_segs = malloc(ws * sizeof(*ck->lay.zero3_segs));
	if (!ck->lay.zero3_segs)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	for (uint32_t r = 0; r < ws; r++)
		ck->lay.zero3_segs[r] = L->ropt[r].segs;
	return ZF_OK;
}
