/* SPDX-License-Identifier: MIT */
/*
 * Maps each trainable parameter of a ZeRO-3 checkpoint to the byte ranges
 * that hold it in the ranks' fp32 flat groups.
 *
 * Each rank's flat space is its fp32_flat_groups concatenated in list
 * order (sub-group boundaries may fall anywhere, even inside a param).
 * Walking param_shapes in order with one running offset, a param of n
 * elements takes p = ceil(n / ws) elements from every rank at that offset:
 * rank r contributes elements [r*p, min((r+1)*p, n)) of the param, and the
 * tail of the last contributing rank's slice is padding that is never
 * served. Every rank's flat space must hold exactly the sum of the p's.
 * This mirrors zero3_partitioned_param_info() in DeepSpeed's
 * zero_to_fp32.py (FORMAT.md §6); keep them in step.
 */
#include "ckpt_i.h"

#include <stdlib.h>
#include <string.h>

/* Where a rank's walk through its segments stands. */
struct cursor {
	size_t seg;	   /* current segment */
	uint64_t seg_base; /* flat element index where seg starts */
};

/* Emits the extents for flat elements [pos, pos+count) of one rank. */
static int take(struct zf_tensor *t, const struct zf_rank_groups *rg,
		struct cursor *c, uint64_t pos, uint64_t count,
		struct zf_error *err)
{
	while (count) {
		const struct zf_view *s;
		uint64_t in_seg, n;
		int rc;

		while (c->seg < rg->n && pos >= c->seg_base + rg->v[c->seg].numel) {
			c->seg_base += rg->v[c->seg].numel;
			c->seg++;
		}
		if (c->seg >= rg->n)
			return zf_fail(err, ZF_EFORMAT, "flat group overrun");
		s = &rg->v[c->seg];
		in_seg = pos - c->seg_base;
		n = s->numel - in_seg;
		if (n > count)
			n = count;
		rc = zf_tensor_add_extent(t, s->source, s->offset + in_seg * 4,
					  n * 4, err);
		if (rc)
			return rc;
		pos += n;
		count -= n;
	}
	return ZF_OK;
}

int zf_layout_zero3(struct zf_ckpt *ck, const struct zf_rank_groups *ranks,
		    const struct zf_flat_param *params, size_t n_params,
		    struct zf_error *err)
{
	uint32_t ws = ck->world_size;
	uint64_t need = 0;
	struct cursor *cur;
	int rc = ZF_OK;

	/* The sizes must add up before anything is mapped. */
	for (size_t i = 0; i < n_params; i++) {
		uint64_t p = params[i].numel / ws + (params[i].numel % ws != 0);

		if (zf_add_overflow(need, p, &need))
			return zf_fail(err, ZF_EFORMAT, "parameter sizes overflow");
	}
	for (uint32_t r = 0; r < ws; r++) {
		uint64_t have = 0;

		for (size_t g = 0; g < ranks[r].n; g++) {
			if (ranks[r].v[g].dtype != ZF_DT_F32) {
				zf_fail(err, ZF_EFORMAT,
					"fp32_flat_groups[%zu] is %s, expected float32",
					g, zf_dtype_torch_name(ranks[r].v[g].dtype));
				zf_error_where(err, ranks[r].path);
				return ZF_EFORMAT;
			}
			have += ranks[r].v[g].numel;
		}
		if (have != need) {
			zf_fail(err, ZF_EFORMAT,
				"fp32 flat groups hold %llu elements, but the %zu parameters in param_shapes need %llu (sum of ceil(numel/%u)): model and optimizer files do not match",
				(unsigned long long)have, n_params,
				(unsigned long long)need, ws);
			zf_error_where(err, ranks[r].path);
			return ZF_EFORMAT;
		}
	}

	cur = calloc(ws, sizeof(*cur));
	if (!cur)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	uint64_t off = 0;

	for (size_t i = 0; i < n_params && !rc; i++) {
		struct zf_tensor *t = &ck->tensors[params[i].tensor];
		uint64_t n = params[i].numel, p = n / ws + (n % ws != 0);

		for (uint32_t r = 0; r < ws && !rc; r++) {
			uint64_t start = (uint64_t)r * p, cnt;

			if (start >= n)
				break;
			cnt = n - start < p ? n - start : p;
			rc = take(t, &ranks[r], &cur[r], off, cnt, err);
			if (rc)
				zf_error_where(err, ranks[r].path);
		}
		off += p;
	}
	free(cur);
	return rc;
}
