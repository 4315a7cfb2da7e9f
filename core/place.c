/* SPDX-License-Identifier: MIT */
/*
 * Tensor places (place.h): the table store and the mapping from a
 * tensor's bytes to runs of files.
 *
 * Workload: zf_place_map() runs once per run of every read (a 1 MiB FUSE
 * read of a ZeRO-3 parameter touches up to world size runs), so it is a
 * few divisions and a binary search over one rank's flat groups or one
 * group's ranks. Interning runs at open, once per rank and table kind.
 */
#include "place.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "ckd.h"
#include "grow.h"

static uint64_t min3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t m = a < b ? a : b;

	return m < c ? m : c;
}

static int grow_slots(struct zf_tables *t)
{
	size_t n = t->mask ? 2 * (t->mask + 1) : 64;
	uint32_t *slots = malloc(n * sizeof(*slots));

	if (!slots)
		return -1;
	memset(slots, 0xff, n * sizeof(*slots));
	for (uint32_t i = 0; i < t->n; i++) {
		size_t k = t->refs[i].hash & (n - 1);

		while (slots[k] != UINT32_MAX)
			k = (k + 1) & (n - 1);
		slots[k] = i;
	}
	free(t->slots);
	t->slots = slots;
	t->mask = n - 1;
	return 0;
}

int zf_tables_intern(struct zf_tables *t, const uint64_t *v, size_t n,
		     uint32_t *id, struct zf_error *err)
{
	uint64_t hash = XXH3_64bits(v, n * sizeof(*v));
	size_t k, need;

	/* Keep the index at most half full. */
	if ((size_t)t->n * 2 >= (t->mask ? t->mask + 1 : 0) && grow_slots(t))
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	for (k = hash & t->mask; t->slots[k] != UINT32_MAX; k = (k + 1) & t->mask) {
		const struct zf_table_ref *r = &t->refs[t->slots[k]];

		if (r->hash == hash && r->n == n &&
		    !memcmp(t->data + r->off, v, n * sizeof(*v))) {
			*id = t->slots[k];
			return ZF_OK;
		}
	}
	if (t->n == UINT32_MAX - 1)
		return zf_fail(err, ZF_ENOMEM, "too many distinct tables");
	if (t->n == t->cap_refs && zf_grow(&t->refs, &t->cap_refs, (size_t)t->n + 1, 16))
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	if (zf_ckd_add(&need, t->len, n) || zf_grow(&t->data, &t->cap, need, 256))
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	if (n)
		memcpy(t->data + t->len, v, n * sizeof(*v));
	t->refs[t->n] = (struct zf_table_ref){ t->len, n, hash };
	t->len += n;
	t->slots[k] = t->n;
	*id = t->n++;
	return ZF_OK;
}

const uint64_t *zf_tables_get(const struct zf_tables *t, uint32_t id,
			      size_t *n)
{
	*n = t->refs[id].n;
	return t->data + t->refs[id].off;
}

void zf_tables_release(struct zf_tables *t)
{
	free(t->data);
	free(t->refs);
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

void zf_rank_tables_release(struct zf_rank_tables *lay)
{
	free(lay->zero3_segs);
	free(lay->zero12_cuts);
	free(lay->frags);
	zf_tables_release(&lay->tables);
	memset(lay, 0, sizeof(*lay));
}

int zf_place_strided(struct zf_rank_tables *lay, uint32_t file, uint64_t offset,
		     uint32_t ndim, const uint64_t *sizes,
		     const uint64_t *strides, struct zf_place *pl,
		     struct zf_error *err)
{
	uint64_t v[1 + 2 * ZF_MAX_DIMS], n[ZF_MAX_DIMS], s[ZF_MAX_DIMS];
	uint32_t nd = 0;
	uint64_t numel = 1;

	for (uint32_t i = 0; i < ndim; i++)
		numel *= sizes[i];
	/* Outer to inner: drop size-1 dimensions; merge a dimension into the
	 * one inside it when it steps over exactly that one's extent. */
	for (uint32_t i = 0; numel && i < ndim; i++) {
		if (sizes[i] == 1)
			continue;
		n[nd] = sizes[i];
		s[nd] = strides[i];
		while (nd > 0 && s[nd - 1] == s[nd] * n[nd]) {
			n[nd - 1] *= n[nd];
			s[nd - 1] = s[nd];
			nd--;
		}
		nd++;
	}
	if (!numel || nd == 0 || (nd == 1 && s[0] == 1)) {
		pl->kind = ZF_PLACE_WHOLE;
		pl->u.whole.file = file;
		pl->u.whole.offset = offset;
		return ZF_OK;
	}
	v[0] = nd;
	memcpy(v + 1, n, nd * sizeof(*n));
	memcpy(v + 1 + nd, s, nd * sizeof(*s));
	pl->kind = ZF_PLACE_STRIDED;
	pl->u.strided.file = file;
	pl->u.strided.offset = offset;
	return zf_tables_intern(&lay->tables, v, 1 + 2 * (size_t)nd, &pl->u.strided.dims, err);
}

void zf_place_dims(const struct zf_rank_tables *lay, const struct zf_place *pl,
		   uint32_t *nd, const uint64_t **sizes, const uint64_t **strides)
{
	size_t n;
	const uint64_t *v = zf_tables_get(&lay->tables, pl->u.strided.dims, &n);

	*nd = (uint32_t)v[0];
	*sizes = v + 1;
	*strides = v + 1 + v[0];
}

uint64_t zf_place_span(const struct zf_rank_tables *lay,
		       const struct zf_place *pl, uint64_t esize, uint64_t numel)
{
	const uint64_t *n, *s;
	uint64_t last = 0;
	uint32_t nd;

	if (pl->kind != ZF_PLACE_STRIDED)
		return numel * esize;
	zf_place_dims(lay, pl, &nd, &n, &s);
	for (uint32_t i = 0; i < nd; i++)
		last += (n[i] - 1) * s[i]; /* proven not to overflow at open */
	return (last + 1) * esize;
}

/* The first of n (end, offset) pairs whose end is past element e. */
static size_t find_pair(const uint64_t *v, size_t n, uint64_t e)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[2 * mid] <= e)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Rank r's part of a parameter split as ZeRO-3 splits it: p = ceil(n/ws)
 * elements from every rank (the last ones may hold fewer, or none). */
struct slice {
	uint32_t rank;
	uint64_t in;	/* byte offset inside the rank's part */
	uint64_t bytes; /* of the rank's part */
};

static struct slice zero3_slice(uint64_t numel, uint32_t ws, uint64_t es,
				uint64_t off)
{
	uint64_t p = numel / ws + (numel % ws != 0);
	uint64_t r = off / es / p;
	struct slice s = { (uint32_t)r, off - r * p * es,
			   (numel - r * p < p ? numel - r * p : p) * es };

	return s;
}

void zf_place_map(const struct zf_rank_tables *lay, const struct zf_place *pl,
		  const struct zf_tensor *t, uint64_t off, uint64_t len,
		  struct zf_run *run)
{
	const uint64_t *v;
	size_t n, i;

	switch (pl->kind) {
	case ZF_PLACE_WHOLE: {
		uint64_t bytes = t->numel * zf_dtype_size(t->src_dtype);

		run->file = pl->u.whole.file;
		run->offset = pl->u.whole.offset + off;
		run->len = len < bytes - off ? len : bytes - off;
		return;
	}
	case ZF_PLACE_ZERO3: {
		struct slice s = zero3_slice(t->numel, lay->world_size, 4, off);
		uint64_t at = pl->u.zero3.flat * 4 + s.in; /* byte in the flat space */
		uint64_t seg_start;

		v = zf_tables_get(&lay->tables, lay->zero3_segs[s.rank], &n);
		i = find_pair(v, n / 2, at / 4);
		seg_start = i ? v[2 * (i - 1)] : 0;
		run->file = lay->first_optim + s.rank;
		run->offset = v[2 * i + 1] + (at - seg_start * 4);
		run->len = min3(len, s.bytes - s.in, v[2 * i] * 4 - at);
		return;
	}
	case ZF_PLACE_ZERO12: {
		uint64_t at = pl->u.zero12.start * 4 + off; /* byte in the group */
		uint64_t bytes = t->numel * 4, part_start;

		v = zf_tables_get(&lay->tables, lay->zero12_cuts[pl->u.zero12.group], &n);
		i = find_pair(v, n / 2, at / 4);
		part_start = i ? v[2 * (i - 1)] : 0;
		run->file = lay->first_optim + (uint32_t)i;
		run->offset = v[2 * i + 1] + (at - part_start * 4);
		run->len = min3(len, bytes - off, v[2 * i] * 4 - at);
		return;
	}
	case ZF_PLACE_FRAG3: {
		uint64_t es = zf_dtype_size(t->src_dtype);
		struct slice s = zero3_slice(t->numel, lay->world_size, es, off);

		v = zf_tables_get(&lay->tables, lay->frags[s.rank], &n);
		run->file = lay->first_model + s.rank;
		run->offset = v[pl->u.frag3.index] + s.in;
		run->len = len < s.bytes - s.in ? len : s.bytes - s.in;
		return;
	}
	case ZF_PLACE_BASE: {
		uint64_t bytes = t->numel * zf_dtype_size(t->src_dtype);

		run->file = pl->u.base.file;
		run->offset = pl->u.base.offset + off;
		run->len = len < bytes - off ? len : bytes - off;
		return;
	}
	case ZF_PLACE_STRIDED: {
		/* The element holding byte off, by its index in each
		 * dimension; a run is the rest of its row when the innermost
		 * dimension is contiguous, else the rest of the element. */
		uint64_t es = zf_dtype_size(t->src_dtype), e = off / es, pos = 0, left;
		const uint64_t *sz, *st;
		uint32_t nd;

		zf_place_dims(lay, pl, &nd, &sz, &st);
		left = st[nd - 1] == 1 ? sz[nd - 1] - e % sz[nd - 1] : 1;
		for (uint32_t d = nd; d-- > 0;) {
			pos += e % sz[d] * st[d];
			e /= sz[d];
		}
		run->file = pl->u.strided.file;
		run->offset = pl->u.strided.offset + pos * es + off % es;
		run->len = left * es - off % es;
		if (run->len > len)
			run->len = len;
		return;
	}
	case ZF_PLACE_NONE:
		break;
	}
	run->file = 0;
	run->offset = 0;
	run->len = 0;
}
