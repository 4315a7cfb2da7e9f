/* SPDX-License-Identifier: MIT */
/*
 * Maps each trainable parameter of a ZeRO-1/2 (or BF16_Optimizer)
 * checkpoint to the byte ranges that hold it.
 *
 * Param group g's fp32 data is single_partition_of_fp32_groups[g] of rank
 * 0, 1, ... concatenated (each tensor's own size counts: the last rank's
 * storage may be longer). The group's params, in param_shapes[g] order,
 * lie back to back from element 0. DeepSpeed pads a group to a multiple of
 * 2 * world_size before cutting it; the padding may or may not be saved,
 * so the check is the one zero_to_fp32 makes: both counts round up to the
 * same multiple of 2 * world_size (FORMAT.md §6).
 */
#include "ckpt_i.h"

#include <stdlib.h>
#include <string.h>

static uint64_t align_up(uint64_t x, uint64_t to)
{
	return (x + to - 1) / to * to;
}

int zf_layout_zero12(struct zf_ckpt *ck, const struct zf_rank_groups *ranks,
		     const struct zf_flat_param *params, size_t n_params,
		     uint32_t n_groups, struct zf_error *err)
{
	uint32_t ws = ck->world_size;
	size_t i = 0;
	int rc;

	for (uint32_t g = 0; g < n_groups; g++) {
		uint64_t have = 0, need = 0, pos = 0;
		uint32_t r = 0;
		uint64_t r_base = 0; /* group element where rank r's part starts */
		size_t first = i;

		for (uint32_t q = 0; q < ws; q++) {
			const struct zf_view *v = &ranks[q].v[g];

			if (v->dtype != ZF_DT_F32) {
				zf_fail(err, ZF_EFORMAT,
					"single_partition_of_fp32_groups[%u] is %s, expected float32",
					g, zf_dtype_torch_name(v->dtype));
				zf_error_where(err, ranks[q].path);
				return ZF_EFORMAT;
			}
			have += v->numel;
		}
		for (size_t j = first; j < n_params && params[j].group == g; j++)
			need += params[j].numel;
		if (need > have || align_up(need, 2ull * ws) != align_up(have, 2ull * ws)) {
			zf_fail(err, ZF_EFORMAT,
				"param group %u: the ranks' fp32 partitions hold %llu elements, but param_shapes[%u] needs %llu: model and optimizer files do not match",
				g, (unsigned long long)have, g,
				(unsigned long long)need);
			zf_error_where(err, ranks[0].path);
			return ZF_EFORMAT;
		}
		for (; i < n_params && params[i].group == g; i++) {
			struct zf_tensor *t = &ck->tensors[params[i].tensor];
			uint64_t left = params[i].numel;

			while (left) {
				const struct zf_view *v;
				uint64_t in, n;

				while (r < ws && pos >= r_base + ranks[r].v[g].numel) {
					r_base += ranks[r].v[g].numel;
					r++;
				}
				if (r >= ws)
					return zf_fail(err, ZF_EFORMAT,
						       "param group %u overruns its partitions", g);
				v = &ranks[r].v[g];
				in = pos - r_base;
				n = v->numel - in < left ? v->numel - in : left;
				rc = zf_tensor_add_extent(t, v->source,
							  v->offset + in * 4, n * 4, err);
				if (rc)
					return rc;
				pos += n;
				left -= n;
			}
		}
	}
	if (i != n_params)
		return zf_fail(err, ZF_EFORMAT,
			       "parameter %zu names group %u, beyond the %u groups",
			       i, params[i].group, n_groups);
	return ZF_OK;
}
