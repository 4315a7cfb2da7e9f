/* SPDX-License-Identifier: MIT */
/*
 * Strided places (views with strides: transposed, sliced, expanded,
 * permuted) against the definition: element i of a view of sizes n[] and
 * strides s[] is storage element offset + sum(idx_d * s_d), idx the
 * row-major index of i. Random views of 1 to 5 dimensions over random
 * files (strides permuted, padded, some 0, some dimensions of size 1, big
 * enough that some boxes are read window by window and others segment by
 * segment) are placed with zf_place_strided() straight into a struct
 * zf_ckpt; then zf_ckpt_read() (the gather), whole and in ranges starting
 * and ending inside elements, and the runs of zf_ckpt_map() are compared
 * with the obvious computation, one element at a time. Views that are
 * row-major after dropping size-1 dimensions and merging must become
 * whole places.
 *
 * ZF_SEED=N replays a run; the seed is printed.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ckpt_i.h"
#include "rng.h"
#include "tap.h"

static char dir[] = "/tmp/zf-test-strided.XXXXXX";

struct view {
	uint32_t nd;
	uint64_t n[5], s[5], offset; /* elements */
	uint64_t es;
};

/* A random view: sizes, a random order of the dimensions' strides with
 * padding between them, sometimes a stride of 0 or a size of 1. */
static void random_view(struct view *v, uint64_t max_numel, uint64_t max_dim)
{
	uint32_t order[5];
	uint64_t step = 1, numel = 1;
	static const uint64_t sizes[] = { 1, 2, 4, 8 };

	v->es = sizes[below(4)];
	v->nd = 1 + (uint32_t)below(5);
	for (uint32_t d = 0; d < v->nd; d++) {
		v->n[d] = below(6) == 0 ? 1 : 1 + below(max_dim);
		numel *= v->n[d];
		order[d] = d;
	}
	while (numel > max_numel) {
		for (uint32_t d = 0; d < v->nd; d++)
			if (v->n[d] > 1) {
				numel /= v->n[d];
				v->n[d] = (v->n[d] + 1) / 2;
				numel *= v->n[d];
			}
	}
	for (uint32_t d = v->nd; d-- > 1;) {
		uint32_t k = (uint32_t)below(d + 1), t = order[d];

		order[d] = order[k];
		order[k] = t;
	}
	/* Innermost in storage first: each stride steps over the dimensions
	 * stored inside it, with gaps now and then. */
	for (uint32_t k = 0; k < v->nd; k++) {
		uint32_t d = order[v->nd - 1 - k];

		v->s[d] = below(10) == 0 ? 0 : step;
		step = step * v->n[d] + (below(3) == 0 ? below(5) : 0);
	}
	v->offset = below(7);
}

static uint64_t view_numel(const struct view *v)
{
	uint64_t n = 1;

	for (uint32_t d = 0; d < v->nd; d++)
		n *= v->n[d];
	return n;
}

static uint64_t view_span(const struct view *v)
{
	uint64_t last = 0;

	for (uint32_t d = 0; d < v->nd; d++)
		last += (v->n[d] - 1) * v->s[d];
	return v->offset + last + 1;
}

/* Storage element of view element i, by the definition. */
static uint64_t element_at(const struct view *v, uint64_t i)
{
	uint64_t pos = v->offset;

	for (uint32_t d = v->nd; d-- > 0;) {
		pos += i % v->n[d] * v->s[d];
		i /= v->n[d];
	}
	return pos;
}

static const enum zf_dtype by_size[9] = {
	[1] = ZF_DT_U8, [2] = ZF_DT_BF16, [4] = ZF_DT_F32, [8] = ZF_DT_I64,
};

/* A checkpoint of one file holding n_views views, each at its own spot. */
static void run_case(size_t n_views, uint64_t max_numel, uint64_t max_dim, const char *what)
{
	struct view *v = calloc(n_views, sizeof(*v));
	uint64_t *base = calloc(n_views, sizeof(*base)), size = 64;
	struct zf_ckpt *ck = calloc(1, sizeof(*ck));
	struct zf_error err = { 0 };
	unsigned char *bytes;
	char path[300];
	size_t bad_whole = 0, bad_range = 0, bad_runs = 0, bad_kind = 0, ranges = 0, strided = 0;
	int fd;

	for (size_t i = 0; i < n_views; i++) {
		random_view(&v[i], max_numel, max_dim);
		base[i] = size;
		size += view_span(&v[i]) * v[i].es + below(100);
	}
	bytes = malloc(size);
	for (uint64_t i = 0; i < size; i++)
		bytes[i] = (unsigned char)rnd();
	snprintf(path, sizeof(path), "%s/file", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, bytes, size) != (ssize_t)size)
		abort();
	close(fd);

	ck->files = calloc(1, sizeof(*ck->files));
	ck->info.n_files = 1;
	if (zf_source_open(path, &ck->files[0], &err))
		abort();
	ck->tensors = calloc(n_views, sizeof(*ck->tensors));
	ck->places = calloc(n_views, sizeof(*ck->places));
	for (size_t i = 0; i < n_views; i++) {
		struct zf_tensor *t = &ck->tensors[i];
		uint64_t sizes[5], strides[5];
		char name[32];
		bool row_major = true;
		uint64_t expect = 1;

		snprintf(name, sizeof(name), "v%zu", i);
		t->name = strdup(name);
		t->kind = ZF_KIND_BUFFER;
		t->alias_of = t->same_as = (size_t)-1;
		t->src_dtype = t->model_dtype = by_size[v[i].es];
		t->ndim = v[i].nd;
		t->numel = view_numel(&v[i]);
		for (uint32_t d = 0; d < v[i].nd; d++) {
			t->shape[d] = sizes[d] = v[i].n[d];
			strides[d] = v[i].s[d];
		}
		for (uint32_t d = v[i].nd; d-- > 0;) {
			row_major &= v[i].n[d] == 1 || v[i].s[d] == expect;
			expect *= v[i].n[d];
		}
		if (zf_place_strided(&ck->lay, 0, base[i] + v[i].offset * v[i].es, v[i].nd, sizes,
				     strides, &ck->places[i], &err))
			abort();
		strided += ck->places[i].kind == ZF_PLACE_STRIDED;
		bad_kind += (ck->places[i].kind == ZF_PLACE_WHOLE) != row_major;
		ck->info.n_tensors++;
	}

	for (size_t i = 0; i < n_views; i++) {
		const struct view *w = &v[i];
		uint64_t nb = view_numel(w) * w->es, off = 0;
		unsigned char *want = malloc(nb + 1), *got = malloc(nb + 1);

		for (uint64_t e = 0; e < view_numel(w); e++)
			memcpy(want + e * w->es, bytes + base[i] + element_at(w, e) * w->es, w->es);
		memset(&err, 0, sizeof(err));
		if (nb && (zf_ckpt_read(ck, i, 0, (size_t)nb, got, &err) || memcmp(got, want, nb))) {
			if (bad_whole++ < 3)
				printf("# %s: view %zu (%u dims) differs: %s\n", what, i, w->nd, err.msg);
		}
		while (off < nb) {
			struct zf_run run;

			if (zf_ckpt_map(ck, i, off, nb - off, &run) || !run.len ||
			    run.offset + run.len > size ||
			    memcmp(bytes + run.offset, want + off, run.len)) {
				bad_runs++;
				break;
			}
			off += run.len;
		}
		for (int k = 0; k < 12 && nb; k++, ranges++) {
			uint64_t a = below(nb), b = a + 1 + below(nb - a);

			memset(&err, 0, sizeof(err));
			if (zf_ckpt_read(ck, i, a, (size_t)(b - a), got, &err) ||
			    memcmp(got, want + a, b - a))
				bad_range++;
		}
		free(want);
		free(got);
	}
	tap_ok(!bad_kind, "%s: row-major views become whole places, the rest strided (%zu of %zu)",
	       what, strided, n_views);
	tap_ok(!bad_whole, "%s: every view gathered whole equals the definition", what);
	tap_ok(!bad_runs, "%s: zf_ckpt_map's runs tile every view with its elements", what);
	tap_ok(!bad_range, "%s: %zu random byte ranges equal the definition", what, ranges);
	zf_ckpt_free(ck);
	free(bytes);
	free(v);
	free(base);
}

int main(void)
{
	char cmd[300];

	rng_seed();
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	run_case(200, 64, 9, "small views");
	run_case(60, 4096, 40, "views of up to 4096 elements");
	run_case(8, 1 << 20, 1000, "views of up to 2^20 elements (windows and segments)");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		return 1;
	return tap_done();
}
