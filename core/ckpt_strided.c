/* SPDX-License-Identifier: MIT */
/*
 * Reads the bytes of a strided tensor (a transposed, sliced or expanded
 * view DeepSpeed saved as the model held it) in row-major order, from the
 * storage its strides reach into.
 *
 * A byte range of the tensor is cut into at most 2 x dims boxes (a run of
 * slices of one dimension, every dimension inside it whole). Each box is
 * walked in the storage's order rather than the tensor's: the dimension
 * with stride 1, if any, gives contiguous segments, and the others are
 * stepped outermost-largest-stride first, so the file is read forwards.
 * Where the box's storage span is dense (at most 4x the bytes wanted, or
 * one window), the span is read a window (1 MiB) at a time and the
 * segments copied out of it; a sparse box (a few rows of a big transposed
 * matrix: its columns are far apart) reads each segment on its own.
 *
 * Workload: frozen params and buffers that are not contiguous are rare and
 * mostly small (views of a few kilobytes); a big transposed matrix costs
 * one read per storage row of the range asked for.
 */
#include "ckpt_i.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW ((size_t)1 << 20)

static pthread_key_t window_key;
static pthread_once_t window_once = PTHREAD_ONCE_INIT;

static void window_key_init(void)
{
	pthread_key_create(&window_key, free);
}

/* This thread's window buffer, allocated on first use, freed at exit. */
static unsigned char *window_buf(void)
{
	unsigned char *p;

	pthread_once(&window_once, window_key_init);
	p = pthread_getspecific(window_key);
	if (!p) {
		p = malloc(WINDOW);
		if (p && pthread_setspecific(window_key, p)) {
			free(p);
			p = NULL;
		}
	}
	return p;
}

struct gather {
	struct zf_source *src;
	uint64_t base;		  /* byte offset of storage element 0 of the view */
	uint64_t es;		  /* element size */
	uint32_t nd;
	const uint64_t *n, *s;	  /* coalesced sizes and strides */
	uint64_t lg[ZF_MAX_DIMS]; /* row-major element strides of the tensor */
	unsigned char *win;
	uint64_t w0, w1;	  /* file bytes the window holds (w0 == w1: none) */
	uint64_t span_end;	  /* file byte after the current box's span */
	bool dense;		  /* read the box window by window */
	struct zf_error *err;
};

/* Copies cnt elements that lie back to back in the storage from element
 * pos on into out, element k at out + k * ostep bytes. */
static int seg_copy(struct gather *g, uint64_t pos, uint64_t cnt,
		    unsigned char *out, uint64_t ostep)
{
	uint64_t es = g->es;

	while (cnt) {
		uint64_t p0 = g->base + pos * es, k;
		const unsigned char *from;

		if (g->w0 <= p0 && p0 + es <= g->w1) {
			k = (g->w1 - p0) / es;
			from = g->win + (p0 - g->w0);
		} else if (ostep == es && (!g->dense || cnt * es >= WINDOW)) {
			/* Straight into place: the run is all the tensor's. */
			size_t want = (size_t)(cnt * es < WINDOW * 16 ? cnt * es : WINDOW * 16);
			int rc = zf_source_pread(g->src, out, want, p0, g->err);

			if (rc)
				return rc;
			k = want / es;
			out += want;
			pos += k;
			cnt -= k;
			continue;
		} else {
			uint64_t end = g->dense ? g->span_end : p0 + cnt * es;
			int rc;

			if (end - p0 > WINDOW)
				end = p0 + WINDOW / es * es;
			rc = zf_source_pread(g->src, g->win, (size_t)(end - p0), p0, g->err);
			if (rc)
				return rc;
			g->w0 = p0;
			g->w1 = end;
			continue;
		}
		if (k > cnt)
			k = cnt;
		if (ostep == es) {
			memcpy(out, from, (size_t)(k * es));
			out += k * es;
		} else {
			for (uint64_t t = 0; t < k; t++, out += ostep, from += es)
				memcpy(out, from, (size_t)es);
		}
		pos += k;
		cnt -= k;
	}
	return ZF_OK;
}

/* Copies the box of dimensions k.. (dimension k cut to c slices) whose
 * first element is at storage element pos into out (row-major). */
static int copy_box(struct gather *g, uint32_t k, uint64_t c, uint64_t pos,
		    unsigned char *out)
{
	uint64_t m[ZF_MAX_DIMS], idx[ZF_MAX_DIMS], last = 0, want = g->es;
	uint32_t order[ZF_MAX_DIMS], no = 0, q = UINT32_MAX;
	uint64_t seg = 1, ostep = g->es;

	for (uint32_t j = k; j < g->nd; j++) {
		m[j] = j == k ? c : g->n[j];
		last += (m[j] - 1) * g->s[j];
		want *= m[j];
		if (g->s[j] == 1 && m[j] > 1)
			q = j; /* the innermost dimension that is contiguous */
	}
	g->span_end = g->base + (pos + last + 1) * g->es;
	g->dense = (last + 1) * g->es <= WINDOW || (last + 1) * g->es <= 4 * want;
	if (q != UINT32_MAX) {
		seg = m[q];
		ostep = g->lg[q] * g->es;
	}
	/* The other dimensions, largest stride outermost. */
	for (uint32_t j = k; j < g->nd; j++) {
		uint32_t at = no++;

		if (j == q) {
			no--;
			continue;
		}
		while (at > 0 && g->s[order[at - 1]] < g->s[j]) {
			order[at] = order[at - 1];
			at--;
		}
		order[at] = j;
	}
	memset(idx, 0, sizeof(idx));
	for (;;) {
		uint64_t p = pos, o = 0;
		int rc;
		uint32_t t;

		for (uint32_t j = 0; j < no; j++) {
			p += idx[order[j]] * g->s[order[j]];
			o += idx[order[j]] * g->lg[order[j]];
		}
		rc = seg_copy(g, p, seg, out + o * g->es, ostep);
		if (rc)
			return rc;
		/* Next index, the innermost of `order` fastest. */
		for (t = no; t-- > 0;) {
			if (++idx[order[t]] < m[order[t]])
				break;
			idx[order[t]] = 0;
		}
		if (t == UINT32_MAX)
			return ZF_OK;
	}
}

/* Elements [e, stop) of the tensor into out, box by box. */
static int gather_elems(struct gather *g, uint64_t e, uint64_t stop,
			unsigned char *out)
{
	while (e < stop) {
		uint64_t idx[ZF_MAX_DIMS], r = e, pos = 0, c;
		uint32_t k;
		int rc;

		for (uint32_t d = g->nd; d-- > 0;) {
			idx[d] = r % g->n[d];
			r /= g->n[d];
			pos += idx[d] * g->s[d];
		}
		/* The outermost dimension k whose slices start at e and of
		 * which at least one fits: e is a multiple of lg[k]. */
		for (k = 0; k < g->nd - 1; k++)
			if (e % g->lg[k] == 0 && e + g->lg[k] <= stop)
				break;
		c = (stop - e) / g->lg[k];
		if (c > g->n[k] - idx[k])
			c = g->n[k] - idx[k];
		rc = copy_box(g, k, c, pos, out);
		if (rc)
			return rc;
		out += c * g->lg[k] * g->es;
		e += c * g->lg[k];
	}
	return ZF_OK;
}

int zf_strided_read(const struct zf_ckpt *ck, size_t i, uint64_t off,
		    size_t len, void *buf, struct zf_error *err)
{
	const struct zf_tensor *t = &ck->tensors[i];
	const struct zf_place *pl = &ck->places[i];
	struct gather g = { 0 };
	unsigned char *out = buf, one[16];
	uint64_t first, stop;
	int rc;

	g.src = ck->files[pl->u.strided.file];
	g.base = pl->u.strided.offset;
	g.es = zf_dtype_size(t->src_dtype);
	g.err = err;
	g.win = window_buf();
	if (!g.win)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	zf_place_dims(&ck->lay, pl, &g.nd, &g.n, &g.s);
	g.lg[g.nd - 1] = 1;
	for (uint32_t d = g.nd - 1; d-- > 0;)
		g.lg[d] = g.lg[d + 1] * g.n[d + 1];

	/* An element cut by the start or the end of the range is read
	 * whole aside. */
	first = (off + g.es - 1) / g.es;
	stop = (off + len) / g.es;
	if (off % g.es) {
		uint64_t e = off / g.es, lo = off % g.es;
		uint64_t hi = off + len < (e + 1) * g.es ? off + len - e * g.es : g.es;

		rc = gather_elems(&g, e, e + 1, one);
		if (rc)
			return rc;
		memcpy(out, one + lo, (size_t)(hi - lo));
		out += hi - lo;
		if (first > stop)
			return ZF_OK;
	}
	if (stop > first) {
		rc = gather_elems(&g, first, stop, out);
		if (rc)
			return rc;
		out += (stop - first) * g.es;
	}
	if ((off + len) % g.es && stop >= first) {
		rc = gather_elems(&g, stop, stop + 1, one);
		if (rc)
			return rc;
		memcpy(out, one, (size_t)((off + len) % g.es));
	}
	return ZF_OK;
}
