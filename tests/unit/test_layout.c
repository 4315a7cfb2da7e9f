/* SPDX-License-Identifier: MIT */
/*
 * The layout maths and the read engine against a naive reference, the
 * SQLite way: synthetic checkpoints are built straight into struct
 * zf_ckpt (no pickle, no zip, no Python): random rank files holding fp32
 * flat groups (ZeRO-3, cut at random points, even inside params) or
 * group partitions (ZeRO-1/2, padded to 2 x world size, the last one
 * saved short or whole), ZeRO-3 frozen fragments, and whole buffers of
 * every dtype, odd sizes, empty and 0-dim tensors. The layout code places
 * them (zf_layout_zero3/zero12); then every byte zf_ckpt_read() and
 * zf_vfile_read() return, whole and in ranges starting and ending inside
 * elements, is compared with the obvious computation: each rank's flat
 * space or each group's data assembled in memory from the files, indexed
 * by the definition (rank r holds elements [r*p, r*p + p) of a ZeRO-3
 * param, p = ceil(n/ws); a ZeRO-1/2 param is elements [start, start + n)
 * of its group), converted one element at a time.
 *
 * ZF_SEED=N replays a run; the seed is printed.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ckpt_i.h"
#include "rng.h"
#include "tap.h"
#include "zerofs/convert.h"
#include "zerofs/hfdir.h"

static char dir[] = "/tmp/zf-test-layout.XXXXXX";
static int n_files_made;

/* A file of size bytes of random content; its path (malloc'd). */
static char *make_file(uint64_t size, unsigned char **copy)
{
	char *path = malloc(300);
	unsigned char *b = malloc(size ? size : 1);
	int fd;

	snprintf(path, 300, "%s/f%05d", dir, n_files_made++);
	for (uint64_t i = 0; i < size; i++)
		b[i] = (unsigned char)rnd();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, b, size) != (ssize_t)size)
		abort();
	close(fd);
	*copy = b;
	return path;
}

/* One synthetic checkpoint and everything needed to check it. */
struct model {
	struct zf_ckpt *ck;
	uint32_t ws, n_files;
	unsigned char **bytes;	/* each file's content */
	/* The reference: each tensor's stored bytes, built the obvious way. */
	unsigned char **want;
	size_t n_tensors;
};

static void add_tensor(struct zf_ckpt *ck, const char *name, enum zf_tensor_kind kind,
		       enum zf_dtype dt, uint32_t ndim, const uint64_t *shape)
{
	struct zf_tensor *t = &ck->tensors[ck->info.n_tensors++];

	memset(t, 0, sizeof(*t));
	t->name = strdup(name);
	t->kind = kind;
	t->alias_of = (size_t)-1;
	t->src_dtype = dt;
	t->model_dtype = dt;
	t->ndim = ndim;
	t->numel = 1;
	for (uint32_t i = 0; i < ndim; i++) {
		t->shape[i] = shape[i];
		t->numel *= shape[i];
	}
}

/* A random shape: odd sizes, empty and 0-dim among them. */
static uint32_t random_shape(uint64_t *shape, uint64_t max)
{
	switch (below(8)) {
	case 0:
		return 0; /* 0-dim: one element */
	case 1:
		shape[0] = 0;
		shape[1] = 1 + below(5);
		return 2;
	case 2:
		shape[0] = 1;
		return 1;
	default:
		shape[0] = 1 + below(max);
		if (below(2))
			return 1;
		shape[1] = 1 + below(7);
		return 2;
	}
}

/*
 * Builds a checkpoint of stage 3 (ZeRO-3) or 2 (ZeRO-1/2) with ws ranks
 * and about n_params trainable params, n_frozen frozen ones (ZeRO-3) and
 * n_buffers buffers. same_layout: ranks >= 1 put their data at the same
 * offsets (so their tables are one), else every rank differs.
 */
static struct model build(int stage, uint32_t ws, size_t n_params, size_t n_frozen,
			  size_t n_buffers, bool same_layout)
{
	static const enum zf_dtype buf_dt[] = { ZF_DT_F32, ZF_DT_BF16, ZF_DT_F16, ZF_DT_I64,
						ZF_DT_I32, ZF_DT_U8, ZF_DT_BOOL, ZF_DT_F64 };
	struct model m = { 0 };
	struct zf_loader L;
	struct zf_ckpt *ck = calloc(1, sizeof(*ck));
	struct zf_error err = { 0 };
	uint32_t n_model = stage == 3 ? ws : 1, n_groups = stage == 3 ? 1 : 1 + (uint32_t)below(3);
	size_t cap = n_params + n_frozen + n_buffers;
	uint64_t *flat_len;	 /* ZeRO-3: sum of p */
	uint64_t **rank_flat;	 /* ZeRO-3: each rank's flat space, fp32 bits */
	uint64_t *group_need;	 /* ZeRO-1/2 */
	unsigned char **group_data; /* ZeRO-1/2: each group's data, fp32 bytes */
	uint64_t **part_off, **part_len; /* ZeRO-1/2: [rank][group] */

	memset(&L, 0, sizeof(L));
	pthread_mutex_init(&L.lock, NULL);
	L.ck = ck;
	L.ws = ws;
	L.n_model = n_model;
	m.ck = ck;
	m.ws = ws;
	m.n_files = n_model + ws;
	m.bytes = calloc(m.n_files, sizeof(*m.bytes));
	ck->files = calloc(m.n_files, sizeof(*ck->files));
	ck->tensors = calloc(cap + 1, sizeof(*ck->tensors));
	ck->places = calloc(cap + 1, sizeof(*ck->places));
	ck->info.n_files = m.n_files;
	ck->info.world_size = ws;
	ck->info.stage = stage;
	ck->info.train_dtype = ZF_DT_F32;
	ck->info.ds_version = "";
	ck->lay.world_size = ws;
	ck->lay.first_model = 0;
	ck->lay.first_optim = n_model;
	L.files.optim = calloc(ws, sizeof(char *));
	L.files.model = calloc(n_model, sizeof(char *));
	L.ropt = calloc(ws, sizeof(*L.ropt));
	L.params = calloc(n_params + 1, sizeof(*L.params));
	L.group_first = calloc(n_groups + 1, sizeof(*L.group_first));
	L.n_groups = n_groups;

	/* Trainable params, in groups (ZeRO-1/2) or one flat order. */
	flat_len = calloc(1, sizeof(*flat_len));
	group_need = calloc(n_groups, sizeof(*group_need));
	for (size_t i = 0; i < n_params; i++) {
		uint64_t shape[2];
		uint32_t ndim = random_shape(shape, 300);
		char name[64];
		uint32_t g = (uint32_t)(i * n_groups / (n_params ? n_params : 1));
		struct zf_flat_param *p = &L.params[L.n_params];

		snprintf(name, sizeof(name), "p%zu", i);
		add_tensor(ck, name, ZF_KIND_PARAM, ZF_DT_F32, ndim, shape);
		p->name = ck->tensors[ck->info.n_tensors - 1].name;
		p->numel = ck->tensors[ck->info.n_tensors - 1].numel;
		p->group = stage == 3 ? 0 : g;
		p->tensor = ck->info.n_tensors - 1;
		if (stage != 3) {
			p->start = group_need[g];
			group_need[g] += p->numel;
		}
		*flat_len += p->numel / ws + (p->numel % ws != 0);
		L.n_params++;
	}
	for (uint32_t g = 0, i = 0; g <= n_groups; g++) {
		while (i < L.n_params && L.params[i].group < g)
			i++;
		L.group_first[g] = g == n_groups ? L.n_params : i;
	}

	/* Optimizer files. ZeRO-3: the rank's flat space cut into random
	 * segments placed at random (64-aligned) offsets. ZeRO-1/2: each
	 * group's padded data cut in ws equal parts. */
	rank_flat = calloc(ws, sizeof(*rank_flat));
	part_off = calloc(ws, sizeof(*part_off));
	part_len = calloc(ws, sizeof(*part_len));
	uint64_t layout_state = 0;

	for (uint32_t r = 0; r < ws; r++) {
		uint64_t n_segs, *seg_len, *seg_off, size, left = *flat_len;
		unsigned char *b;

		/* Ranks >= 1 of one layout make the same random choices of
		 * layout (their data still differ). */
		if (same_layout && r >= 2)
			rng_state = layout_state;
		else if (r == 1)
			layout_state = rng_state;
		n_segs = stage == 3 ? 1 + below(4) : n_groups;
		seg_len = calloc(n_segs, sizeof(*seg_len));
		seg_off = calloc(n_segs, sizeof(*seg_off));
		size = 64 + below(200);
		for (uint64_t s = 0; s < n_segs; s++) {
			if (stage == 3) {
				seg_len[s] = s == n_segs - 1 ? left : below(left + 1);
				left -= seg_len[s];
			} else {
				uint64_t padded = (group_need[s] + 2ull * ws - 1) / (2ull * ws) * 2ull * ws;
				uint64_t part = padded / ws, pad = padded - group_need[s];

				seg_len[s] = part;
				/* The last rank: its padding dropped (DeepSpeed's
				 * state_dict) or kept (BF16_Optimizer). */
				if (r == ws - 1 && below(2) && pad <= part)
					seg_len[s] = part - pad;
			}
			size = (size + 63) / 64 * 64;
			seg_off[s] = size;
			size += seg_len[s] * 4 + below(100);
		}
		rng_state ^= 0x9e3779b97f4a7c15ull * (r + 1);
		if (!rng_state)
			rng_state = 1;
		L.files.optim[r] = make_file(size + 64, &b);
		m.bytes[n_model + r] = b;
		if (zf_source_open(L.files.optim[r], &ck->files[n_model + r], &err))
			abort();
		if (stage == 3) {
			uint64_t *pairs = calloc(2 * n_segs, sizeof(*pairs)), end = 0, k = 0;

			rank_flat[r] = calloc(*flat_len + 1, sizeof(uint64_t));
			for (uint64_t s = 0; s < n_segs; s++) {
				for (uint64_t e = 0; e < seg_len[s]; e++) {
					uint32_t v;

					memcpy(&v, b + seg_off[s] + 4 * e, 4);
					rank_flat[r][k++] = v;
				}
				end += seg_len[s];
				pairs[2 * s] = end;
				pairs[2 * s + 1] = seg_off[s];
			}
			if (zf_tables_intern(&ck->lay.tables, pairs, 2 * n_segs, &L.ropt[r].segs, &err))
				abort();
			L.ropt[r].flat_numel = end;
			L.ropt[r].n = n_segs;
			free(pairs);
		} else {
			L.ropt[r].parts = calloc(n_groups, sizeof(*L.ropt[r].parts));
			L.ropt[r].n = n_groups;
			part_off[r] = calloc(n_groups, sizeof(uint64_t));
			part_len[r] = calloc(n_groups, sizeof(uint64_t));
			for (uint32_t g = 0; g < n_groups; g++) {
				L.ropt[r].parts[g] = (struct zf_seg){ seg_off[g], seg_len[g] };
				part_off[r][g] = seg_off[g];
				part_len[r][g] = seg_len[g];
			}
		}
		free(seg_len);
		free(seg_off);
	}
	group_data = calloc(n_groups, sizeof(*group_data));
	for (uint32_t g = 0; stage != 3 && g < n_groups; g++) {
		uint64_t total = 0, at = 0;

		for (uint32_t r = 0; r < ws; r++)
			total += part_len[r][g];
		group_data[g] = malloc(4 * total + 1);
		for (uint32_t r = 0; r < ws; r++) {
			memcpy(group_data[g] + at, m.bytes[n_model + r] + part_off[r][g],
			       4 * part_len[r][g]);
			at += 4 * part_len[r][g];
		}
	}

	/* Model states files: rank 0's holds the buffers; at ZeRO-3 every
	 * rank's holds its fragment of each frozen param. */
	{
		uint64_t *frag_at = calloc(n_frozen * ws + 1, sizeof(*frag_at));
		uint64_t *buf_at = calloc(n_buffers + 1, sizeof(*buf_at));
		size_t first_frozen = ck->info.n_tensors;

		if (stage != 3)
			n_frozen = 0;
		for (size_t i = 0; i < n_frozen; i++) {
			uint64_t shape[2];
			uint32_t ndim = random_shape(shape, 200);
			char name[64];
			enum zf_dtype dt = below(2) ? ZF_DT_BF16 : ZF_DT_F32;

			snprintf(name, sizeof(name), "frozen%zu", i);
			add_tensor(ck, name, ZF_KIND_FROZEN, dt, ndim, shape);
			ck->places[ck->info.n_tensors - 1].kind = ZF_PLACE_FRAG3;
			ck->places[ck->info.n_tensors - 1].u.frag3.index = (uint32_t)i;
		}
		for (size_t i = 0; i < n_buffers; i++) {
			uint64_t shape[2];
			uint32_t ndim = random_shape(shape, 100);
			char name[64];

			snprintf(name, sizeof(name), "buffer%zu", i);
			add_tensor(ck, name, ZF_KIND_BUFFER, buf_dt[below(8)], ndim, shape);
		}
		ck->lay.n_frozen = (uint32_t)n_frozen;
		if (n_frozen)
			ck->lay.frags = calloc(ws, sizeof(*ck->lay.frags));
		layout_state = 0;
		for (uint32_t r = 0; r < n_model; r++) {
			uint64_t size, *offs = calloc(n_frozen + 1, sizeof(*offs));
			unsigned char *b;

			if (same_layout && r >= 2)
				rng_state = layout_state;
			else if (r == 1)
				layout_state = rng_state;
			size = 64 + below(100);

			for (size_t i = 0; i < n_frozen; i++) {
				const struct zf_tensor *t = &ck->tensors[first_frozen + i];
				uint64_t p = t->numel / ws + (t->numel % ws != 0);

				size = (size + 63) / 64 * 64;
				frag_at[i * ws + r] = (uint64_t)r * p < t->numel ? size : UINT64_MAX;
				offs[i] = frag_at[i * ws + r];
				/* a fragment holds p elements, padding included */
				size += p * zf_dtype_size(t->src_dtype) + below(64);
			}
			if (r == 0)
				for (size_t i = 0; i < n_buffers; i++) {
					const struct zf_tensor *t = &ck->tensors[first_frozen + n_frozen + i];

					size = (size + 63) / 64 * 64;
					buf_at[i] = size;
					size += t->numel * zf_dtype_size(t->src_dtype) + below(64);
				}
			rng_state ^= 0x7f4a7c159e3779b9ull * (r + 1);
			if (!rng_state)
				rng_state = 1;
			L.files.model[r] = make_file(size + 8, &b);
			m.bytes[r] = b;
			if (zf_source_open(L.files.model[r], &ck->files[r], &err))
				abort();
			if (n_frozen &&
			    zf_tables_intern(&ck->lay.tables, offs, n_frozen, &ck->lay.frags[r], &err))
				abort();
			free(offs);
		}
		for (size_t i = 0; i < n_buffers; i++) {
			struct zf_place *pl = &ck->places[first_frozen + n_frozen + i];

			pl->kind = ZF_PLACE_WHOLE;
			pl->u.whole.file = 0;
			pl->u.whole.offset = buf_at[i];
		}

		/* The layout code places the trainable params. */
		if (stage == 3 ? zf_layout_zero3(&L, &err) : zf_layout_zero12(&L, &err)) {
			printf("# layout failed: %s\n", err.msg);
			abort();
		}

		/* The reference, by the definitions. */
		m.n_tensors = ck->info.n_tensors;
		m.want = calloc(m.n_tensors + 1, sizeof(*m.want));
		for (size_t i = 0; i < m.n_tensors; i++) {
			const struct zf_tensor *t = &ck->tensors[i];
			uint64_t es = zf_dtype_size(t->src_dtype);
			unsigned char *w = malloc(t->numel * es + 1);

			m.want[i] = w;
			if (t->kind == ZF_KIND_PARAM) {
				size_t pi = 0;
				uint64_t flat = 0;

				while (L.params[pi].tensor != i)
					pi++;
				for (size_t k = 0; k < pi; k++)
					flat += L.params[k].numel / ws + (L.params[k].numel % ws != 0);
				for (uint64_t e = 0; e < t->numel; e++) {
					uint32_t v;

					if (stage == 3) {
						uint64_t p = t->numel / ws + (t->numel % ws != 0);
						uint64_t r = e / p;

						v = (uint32_t)rank_flat[r][flat + e - r * p];
					} else {
						memcpy(&v, group_data[L.params[pi].group] +
								   4 * (L.params[pi].start + e), 4);
					}
					memcpy(w + 4 * e, &v, 4);
				}
			} else if (t->kind == ZF_KIND_FROZEN) {
				uint64_t p = t->numel / ws + (t->numel % ws != 0);
				size_t fi = i - first_frozen;

				for (uint64_t e = 0; e < t->numel; e++) {
					uint64_t r = e / p;

					memcpy(w + e * es, m.bytes[r] + frag_at[fi * ws + r] + (e - r * p) * es, es);
				}
			} else {
				memcpy(w, m.bytes[0] + buf_at[i - first_frozen - n_frozen], t->numel * es);
			}
		}
		free(frag_at);
		free(buf_at);
	}

	for (uint32_t r = 0; r < ws; r++) {
		free(rank_flat[r]);
		free(part_off[r]);
		free(part_len[r]);
		free(L.ropt[r].parts);
		free(L.files.optim[r]);
	}
	for (uint32_t r = 0; r < n_model; r++)
		free(L.files.model[r]);
	for (uint32_t g = 0; g < n_groups; g++)
		free(group_data[g]);
	free(group_data);
	free(rank_flat);
	free(part_off);
	free(part_len);
	free(flat_len);
	free(group_need);
	free(L.files.optim);
	free(L.files.model);
	free(L.ropt);
	free(L.params);
	free(L.group_first);
	pthread_mutex_destroy(&L.lock);
	ck->info.ds_version = "";
	/* Real folders: the directory reads who may list them (access.h). */
	ck->info.tag = "synthetic";
	ck->info.path = ck->info.tag_dir = dir;
	return m;
}

static void model_free(struct model *m)
{
	for (uint32_t i = 0; i < m->n_files; i++)
		free(m->bytes[i]);
	for (size_t i = 0; i < m->n_tensors; i++)
		free(m->want[i]);
	free(m->bytes);
	free(m->want);
	zf_ckpt_free(m->ck);
}

/* Every tensor's stored bytes, whole and in random ranges; the runs of
 * zf_ckpt_map() tile each tensor and lie inside their files. */
static void check_stored(const struct model *m, const char *what)
{
	const struct zf_ckpt *ck = m->ck;
	size_t bad_whole = 0, bad_range = 0, bad_runs = 0, ranges = 0;

	for (size_t i = 0; i < m->n_tensors; i++) {
		const struct zf_tensor *t = zf_ckpt_tensor(ck, i);
		uint64_t nb = t->numel * zf_dtype_size(t->src_dtype), off = 0;
		unsigned char *got = malloc(nb + 1);
		struct zf_error err = { 0 };

		if (zf_ckpt_read(ck, i, 0, (size_t)nb, got, &err) || memcmp(got, m->want[i], nb)) {
			if (bad_whole++ < 3)
				printf("# %s: tensor %s (%llu bytes) differs: %s\n", what, t->name,
				       (unsigned long long)nb, err.msg);
		}
		while (off < nb) {
			struct zf_run run;

			if (zf_ckpt_map(ck, i, off, nb - off, &run) || !run.len ||
			    run.offset + run.len > zf_source_size(zf_ckpt_file(ck, run.file)) ||
			    memcmp(m->bytes[run.file] + run.offset, m->want[i] + off, run.len)) {
				bad_runs++;
				break;
			}
			off += run.len;
		}
		for (int k = 0; k < 8 && nb; k++, ranges++) {
			uint64_t a = below(nb), b = a + 1 + below(nb - a);

			memset(&err, 0, sizeof(err));
			if (zf_ckpt_read(ck, i, a, (size_t)(b - a), got, &err) ||
			    memcmp(got, m->want[i] + a, b - a))
				bad_range++;
		}
		free(got);
	}
	tap_ok(!bad_whole, "%s: every tensor's stored bytes equal the reference (%zu tensors)",
	       what, m->n_tensors);
	tap_ok(!bad_runs, "%s: zf_ckpt_map's runs tile every tensor, inside their files", what);
	tap_ok(!bad_range, "%s: %zu random byte ranges equal the reference", what, ranges);
}

/* The served file the obvious way: header as served, then each tensor's
 * reference bytes converted one element at a time. */
static unsigned char *reference_file(const struct model *m, const struct zf_hfdir *d,
				     const struct zf_vfile *f)
{
	unsigned char *img = calloc(f->size + 1, 1);
	struct zf_error err = { 0 };

	if (zf_vfile_read(d, f, img, f->header_len, 0, &err) != (int64_t)f->header_len)
		abort();
	for (size_t k = 0; k < f->n_tensors; k++) {
		const struct zf_vtensor *vt = &f->tensors[k];
		const struct zf_tensor *t = vt->src;
		size_t se = zf_dtype_size(t->src_dtype), oe = zf_dtype_size(vt->dtype);

		for (uint64_t e = 0; e < t->numel; e++) {
			if (vt->dtype == t->src_dtype)
				memcpy(img + vt->offset + e * oe, m->want[vt->tensor] + e * se, se);
			else
				zf_convert(vt->dtype, img + vt->offset + e * oe, t->src_dtype,
					   m->want[vt->tensor] + e * se, 1);
		}
	}
	return img;
}

static void check_served(const struct model *m, enum zf_dtype dt, uint64_t shard,
			 const char *what)
{
	struct zf_hfdir_options o = { .dtype = dt, .max_shard_size = shard };
	struct zf_hfdir *d = NULL;
	struct zf_error err = { 0 };
	size_t bad = 0, reads = 0;
	int rc = zf_hfdir_build(m->ck, &o, &d, &err);

	tap_ok(!rc, "%s as %s: the directory builds (%s)", what, zf_dtype_torch_name(dt), err.msg);
	if (rc)
		return;
	for (size_t i = 0; i < zf_hfdir_info(d)->n_files; i++) {
		const struct zf_vfile *f = zf_hfdir_file(d, i);
		unsigned char *img, *buf;
		uint64_t off = 0;

		if (f->kind != ZF_VF_SAFETENSORS)
			continue;
		img = reference_file(m, d, f);
		buf = malloc(f->size + 64);
		/* In pieces of odd sizes, then at random places. */
		while (off < f->size) {
			size_t want = 1 + (size_t)below(9000);
			int64_t n;

			memset(&err, 0, sizeof(err));
			n = zf_vfile_read(d, f, buf, want, off, &err);
			if (n <= 0 || memcmp(buf, img + off, (size_t)n)) {
				if (bad++ < 3)
					printf("# %s: %s at %llu: %lld (%s)\n", what, f->name,
					       (unsigned long long)off, (long long)n, err.msg);
				break;
			}
			off += (uint64_t)n;
			reads++;
		}
		for (int k = 0; k < 200; k++, reads++) {
			uint64_t a = below(f->size), len = 1 + below(f->size - a + 10);
			int64_t n;

			memset(&err, 0, sizeof(err));
			n = zf_vfile_read(d, f, buf, (size_t)len, a, &err);
			if (n != (int64_t)(len < f->size - a ? len : f->size - a) ||
			    memcmp(buf, img + a, (size_t)n))
				bad++;
		}
		free(buf);
		free(img);
	}
	tap_ok(!bad, "%s as %s: %zu reads of the served files, every byte as the reference",
	       what, zf_dtype_torch_name(dt), reads);
	zf_hfdir_free(d);
}

static void run_case(int stage, uint32_t ws, size_t params, size_t frozen, size_t buffers,
		     bool same)
{
	char what[128];
	struct model m = build(stage, ws, params, frozen, buffers, same);
	const struct zf_rank_tables *lay = &m.ck->lay;

	snprintf(what, sizeof(what), "ZeRO-%d ws %u, %zu params, %zu frozen, %zu buffers%s",
		 stage == 3 ? 3 : 2, ws, params, frozen, buffers,
		 same ? "" : ", every rank laid out differently");
	check_stored(&m, what);
	if (stage == 3 && same && ws > 2) {
		bool shared = true;

		for (uint32_t r = 2; r < ws; r++)
			shared &= lay->zero3_segs[r] == lay->zero3_segs[1];
		/* Fragment tables differ only where a rank starts holding
		 * none of a frozen param: at most once per param. */
		tap_ok(shared && lay->tables.n <= 2 + 2 + lay->n_frozen,
		       "%s: ranks with one layout share their tables (%u distinct for %u ranks)",
		       what, lay->tables.n, ws);
	}
	check_served(&m, ZF_DT_F32, 0, what);
	check_served(&m, ZF_DT_BF16, 0, what);
	check_served(&m, ZF_DT_F16, 1 + below(4000), what);
	model_free(&m);
}

int main(void)
{
	char cmd[300];

	rng_seed();
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	run_case(3, 1, 20, 3, 4, true);
	run_case(3, 2, 40, 4, 6, true);
	run_case(3, 7, 60, 5, 6, true);
	run_case(3, 64, 30, 6, 3, true);
	run_case(3, 5, 50, 4, 4, false);
	run_case(3, 13, 25, 2, 2, false);
	run_case(2, 1, 30, 0, 5, true);
	run_case(2, 2, 40, 0, 6, true);
	run_case(2, 3, 50, 0, 4, false);
	run_case(2, 16, 60, 0, 3, false);
	run_case(2, 64, 20, 0, 2, true);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		return 1;
	return tap_done();
}
