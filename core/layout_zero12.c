/* SPDX-License-Identifier: MIT */
/*
 * Places each trainable parameter of a ZeRO-1/2 (or BF16_Optimizer)
 * checkpoint in its param group's fp32 data.
 *
 * Param group g's fp32 data is single_partition_of_fp32_groups[g] of rank
 * 0, 1, ... concatenated (each tensor's own size counts: the last rank's
 * may be shorter, its padding not saved, or longer). The group's params,
 * in param_shapes[g] order, lie back to back from element 0: a param is
 * placed by (group, start), and each group has one table of where each
 * rank's part ends and where it is in its file. DeepSpeed pads a group to
 * a multiple of 2 * world_size before cutting it; the padding may or may
 * not be saved, so the check is the one zero_to_fp32 makes: both counts
 * round up to the same multiple of 2 * world_size. man/zerofs-checkpoint.5
 * (PLACEMENT) has the maths.
 */
#include "ckpt_i.h"

#include <stdlib.h>

#include "ckd.h"

static uint64_t align_up(uint64_t x, uint64_t to)
{
	return (x + to - 1) / to * to;
}

int zf_layout_zero12(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	uint32_t ws = L->ws, n_groups = L->n_groups;
	uint64_t *pairs;
	int rc = ZF_OK;

	if (n_groups != L->ropt[0].n)
		return zf_fail_at(err, ZF_EFORMAT, zf_model_path(L, 0),
				  "param_shapes has %u groups, but the optimizer files have %zu fp32 partitions per rank",
				  n_groups, L->ropt[0].n);
	ck->lay.zero12_cuts = calloc(n_groups ? n_groups : 1, sizeof(*ck->lay.zero12_cuts));
	pairs = malloc(2 * (size_t)ws * sizeof(*pairs));
	if (!ck->lay.zero12_cuts || !pairs) {
		free(pairs);
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	ck->lay.n_groups = n_groups;
	for (uint32_t g = 0; g < n_groups && !rc; g++) {
		size_t first = L->group_first[g], end = L->group_first[g + 1];
		uint64_t have = 0, need = 0;

		for (uint32_t r = 0; r < ws; r++) {
			const struct zf_seg *part = &L->ropt[r].parts[g];

			if (zf_ckd_add(&have, have, part->numel)) {
				rc = zf_fail(err, ZF_EFORMAT, "partition sizes overflow");
				goto out;
			}
			pairs[2 * r] = have;
			pairs[2 * r + 1] = part->offset;
		}
		if (end > first)
			need = L->params[end - 1].start + L->params[end - 1].numel;
		if (need > have || align_up(need, 2ull * ws) != align_up(have, 2ull * ws)) {
			rc = zf_fail_at(err, ZF_EFORMAT, zf_optim_path(L, 0),
					"param group %u: the ranks' fp32 partitions hold %llu elements, but param_shapes[%u] needs %llu: model and optimizer files do not match",
					g, (unsigned long long)have, g, (unsigned long long)need);
			break;
		}
		rc = zf_tables_intern(&ck->lay.tables, pairs, 2 * (size_t)ws,
				      &ck->lay.zero12_cuts[g], err);
		for (size_t i = first; i < end && !rc; i++) {
			struct zf_place *pl = &ck->places[L->params[i].tensor];

			pl->kind = ZF_PLACE_ZERO12;
			pl->u.zero12.group = g;
			pl->u.zero12.start = L->params[i].start;
		}
	}
out:
	free(pairs);
	return rc;
}
