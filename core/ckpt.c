/* SPDX-License-Identifier: MIT */
/*
 * Opens a DeepSpeed ZeRO checkpoint into struct zf_ckpt (ckpt.h), and
 * answers what a reader asks of it: its tensors, where their bytes are,
 * the bytes themselves.
 *
 * zf_ckpt_open() runs in named phases:
 *   find files        the tag folder and its rank files, by name
 *                     (ckpt_find.c), and a --base folder's safetensors
 *                     headers (base.c);
 *   load first ranks  rank 0's optimizer and model states files, and
 *                     rank 1's model states (the template of the others),
 *                     a one-stage pipeline's layer files, parsed
 *                     (ckpt_ranks.c, ckpt_optim.c, ckpt_tensors.c,
 *                     ckpt_pipe.c; without ZeRO, ckpt_zero0.c);
 *   size tables       the tensor table, the trainable params in flat
 *                     order, the frozen params;
 *   load other ranks  every other rank file, on worker threads, checked
 *                     against rank 0, and the checks across files (no two
 *                     are one file, no two optimizer files are copies);
 *   lay out           each tensor's place (layout_zero3.c,
 *                     layout_zero12.c, ckpt_tensors.c; ZeRO-0 masters
 *                     matched to names, ckpt_zero0.c), the ties and
 *                     second names (ckpt_alias.c), whether the model is
 *                     whole or what --base adds (ckpt_base.c), in
 *                     state_dict order, once the sizes add up; then
 *                     whether each ZeRO-1/2 rank holds its own part of
 *                     each group;
 *   adopt             the checkpoint keeps its sources, tensors, places
 *                     and layout tables; every pickle tree and zip
 *                     directory is freed.
 * man/zerofs-checkpoint.5 records what these files hold and what is
 * checked; every failure names the file.
 *
 * Workload: runs once per mount, inspect, export or verify. A 1,024-rank
 * checkpoint has 2,048 files; the cost is a few small reads per file and
 * the parses of three pickles.
 */
#include "ckpt_i.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "grow.h"

/* --- phases ----------------------------------------------------------- */

static int find_files(struct zf_loader *L, const char *path,
		      const struct zf_ckpt_options *opts, struct zf_error *err)
{
	struct zf_ckpt *ck = calloc(1, sizeof(*ck));
	size_t n;
	int rc;

	if (!ck)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	L->ck = ck;
	ck->path = strdup(path);
	if (!ck->path)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	rc = zf_ckpt_locate(path, opts ? opts->tag : NULL, &L->files, err);
	if (rc)
		return rc;
	L->ws = L->files.world_size;
	L->n_model = L->files.n_model;
	L->real_tag_dir = realpath(L->files.tag_dir, NULL);
	if (opts && opts->base_dir) {
		rc = zf_base_open(opts->base_dir, &L->base, err);
		if (rc)
			return rc;
		ck->base_dir = strdup(L->base->dir);
		if (!ck->base_dir)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	n = (size_t)L->n_model + L->ws;
	L->first_layer = (uint32_t)n;
	n += L->files.n_layers;
	L->first_base = (uint32_t)n;
	if (L->base)
		n += L->base->n_files;
	ck->tag = strdup(L->files.tag);
	ck->tag_dir = strdup(L->files.tag_dir);
	ck->hf_dir = L->files.hf_dir ? strdup(L->files.hf_dir) : NULL;
	ck->files = calloc(n, sizeof(*ck->files));
	ck->kinds = calloc(n, sizeof(*ck->kinds));
	L->model = calloc(L->n_model, sizeof(*L->model));
	L->optim = calloc(L->ws ? L->ws : 1, sizeof(*L->optim));
	L->layer = calloc(L->files.n_layers ? L->files.n_layers : 1, sizeof(*L->layer));
	if (!ck->tag || !ck->tag_dir || (L->files.hf_dir && !ck->hf_dir) || !ck->files ||
	    !ck->kinds || !L->model || !L->optim || !L->layer)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	ck->info.layout = L->files.layout;
	ck->info.pick = L->files.pick;
	ck->info.n_choices = L->files.n_choices;
	ck->info.world_size = L->ws;
	ck->info.n_files = n;
	ck->lay.world_size = L->ws;
	ck->lay.first_model = 0;
	ck->lay.first_optim = L->n_model;
	for (uint32_t r = 0; r < L->n_model; r++)
		L->model[r].file = r;
	for (uint32_t r = 0; r < L->ws; r++)
		L->optim[r].file = L->n_model + r;
	for (uint32_t i = 0; i < L->files.n_layers; i++)
		L->layer[i].file = L->first_layer + i;
	/* The checkpoint owns the --base files from here on. */
	if (L->base) {
		for (size_t i = 0; i < L->base->n_files; i++) {
			ck->files[L->first_base + i] = L->base->files[i];
			L->base->files[i] = NULL;
		}
		ck->info.n_base_files = L->base->n_files;
	}
	return ZF_OK;
}

static int size_tables(struct zf_loader *L, struct zf_error *err)
{
	int rc = zf_size_tables(L, err);

	if (!rc)
		rc = zf_collect_params(L, err);
	if (!rc)
		rc = zf_collect_frozen(L, err);
	return rc;
}

static int lay_out(struct zf_loader *L, struct zf_error *err)
{
	int rc = ZF_OK;

	if (L->ws)
		rc = L->ck->info.stage == 3 ? zf_layout_zero3(L, err) : zf_layout_zero12(L, err);
	if (!rc)
		rc = zf_collect_tensors(L, err);
	if (!rc)
		rc = zf_pipe_check_layers(L, err);
	if (!rc && !L->ws)
		rc = zf_zero0_match(L, err);
	if (!rc)
		rc = zf_resolve_ties(L, err);
	if (!rc)
		rc = zf_complete_model(L, err);
	if (!rc)
		rc = zf_find_train_dtype(L);
	if (!rc)
		zf_finish_dtypes(L);
	if (!rc)
		rc = zf_order_tensors(L, err);
	return rc;
}

static void adopt(struct zf_loader *L, struct zf_ckpt **out)
{
	struct zf_ckpt *ck = L->ck;
	struct zf_ckpt_info *in = &ck->info;

	in->path = ck->path;
	in->tag = ck->tag;
	in->tag_dir = ck->tag_dir;
	in->hf_dir = ck->hf_dir;
	in->ds_version = ck->ds_version;
	in->base_dir = ck->base_dir;
	in->incomplete = ck->incomplete;
	in->incomplete_where = ck->incomplete_where;
	for (size_t i = 0; i < in->n_files; i++) {
		const struct zf_source_id *id = zf_source_id(ck->files[i]);

		/* No descriptor outlives the open: a mount opens again the
		 * files it reads, through the bounded cache, and never the
		 * ones it does not (most model states files). */
		zf_source_idle(ck->files[i]);

		in->files_bytes += id->size;
		if (id->mtime.tv_sec > in->mtime.tv_sec ||
		    (id->mtime.tv_sec == in->mtime.tv_sec && id->mtime.tv_nsec > in->mtime.tv_nsec))
			in->mtime = id->mtime;
	}
	*out = ck;
	L->ck = NULL;
}

static void loader_release(struct zf_loader *L)
{
	zf_loader_unload(L);
	if (L->ropt)
		for (uint32_t r = 0; r < L->ws; r++)
			free(L->ropt[r].parts);
	free(L->ropt);
	free(L->model);
	free(L->optim);
	free(L->layer);
	free(L->optim_ds_version);
	free(L->params);
	free(L->group_first);
	free(L->param_of);
	free(L->mod_dtype);
	free(L->frozen);
	free(L->modents);
	free(L->twin_of);
	for (size_t i = 0; i < L->n_owned; i++)
		free(L->owned[i]);
	free(L->owned);
	free(L->missing);
	zf_base_free(L->base);
	zf_strmap_release(&L->names);
	zf_ckpt_files_release(&L->files);
	free(L->real_tag_dir);
	zf_ckpt_free(L->ck);
	pthread_mutex_destroy(&L->lock);
}

int zf_ckpt_open(const char *path, const struct zf_ckpt_options *opts,
		 struct zf_ckpt **out, struct zf_error *err)
{
	struct zf_loader L;
	int rc;

	memset(&L, 0, sizeof(L));
	pthread_mutex_init(&L.lock, NULL);
	L.slice_rank = UINT32_MAX;
	*out = NULL;
	rc = find_files(&L, path, opts, err);
	if (!rc)
		rc = zf_load_first_ranks(&L, err);
	if (!rc)
		rc = size_tables(&L, err);
	if (!rc)
		rc = zf_load_other_ranks(&L, err);
	if (!rc)
		rc = lay_out(&L, err);
	/* Sizes add up, yet a rank holds another's part: swapped files. */
	if (!rc && L.slice_rank != UINT32_MAX) {
		if (err && err->status == ZF_OK)
			*err = L.slice_err;
		rc = L.slice_err.status;
	}
	if (!rc)
		adopt(&L, out);
	loader_release(&L);
	zf_arena_trim(); /* parsing is over: a mount daemon keeps none of it */
	return rc;
}

void zf_ckpt_free(struct zf_ckpt *ck)
{
	if (!ck)
		return;
	for (size_t i = 0; ck->files && i < ck->info.n_files; i++)
		zf_source_close(ck->files[i]);
	free(ck->files);
	free(ck->kinds);
	for (size_t i = 0; ck->tensors && i < ck->info.n_tensors; i++)
		free((char *)ck->tensors[i].name);
	free(ck->tensors);
	free(ck->places);
	zf_rank_tables_release(&ck->lay);
	free(ck->path);
	free(ck->tag);
	free(ck->tag_dir);
	free(ck->hf_dir);
	free(ck->ds_version);
	free(ck->base_dir);
	free(ck->incomplete);
	free(ck->incomplete_where);
	free(ck);
}

/* --- what a reader asks ----------------------------------------------- */

const struct zf_ckpt_info *zf_ckpt_info(const struct zf_ckpt *ck)
{
	return &ck->info;
}

const struct zf_tensor *zf_ckpt_tensor(const struct zf_ckpt *ck, size_t i)
{
	return i < ck->info.n_tensors ? &ck->tensors[i] : NULL;
}

struct zf_source *zf_ckpt_file(const struct zf_ckpt *ck, size_t i)
{
	return i < ck->info.n_files ? ck->files[i] : NULL;
}

enum zf_container_kind zf_ckpt_file_kind(const struct zf_ckpt *ck, size_t i)
{
	return i < ck->info.n_files ? ck->kinds[i] : 0;
}

size_t zf_ckpt_find(const struct zf_ckpt *ck, const char *name)
{
	for (size_t i = 0; i < ck->info.n_tensors; i++)
		if (!strcmp(ck->tensors[i].name, name))
			return i;
	return (size_t)-1;
}

int zf_ckpt_map(const struct zf_ckpt *ck, size_t i, uint64_t off,
		uint64_t len, struct zf_run *run)
{
	const struct zf_tensor *t;

	if (i >= ck->info.n_tensors)
		return ZF_EUSAGE;
	if (ck->tensors[i].kind == ZF_KIND_ALIAS)
		i = ck->tensors[i].alias_of;
	t = &ck->tensors[i];
	if (!len || off >= t->numel * zf_dtype_size(t->src_dtype))
		return ZF_EUSAGE;
	zf_place_map(&ck->lay, &ck->places[i], t, off, len, run);
	return run->len ? ZF_OK : ZF_EUSAGE;
}

int zf_ckpt_read(const struct zf_ckpt *ck, size_t i, uint64_t off,
		 size_t len, void *buf, struct zf_error *err)
{
	unsigned char *out = buf;

	if (i < ck->info.n_tensors && ck->tensors[i].kind == ZF_KIND_ALIAS)
		i = ck->tensors[i].alias_of;
	if (i < ck->info.n_tensors && ck->places[i].kind == ZF_PLACE_STRIDED) {
		const struct zf_tensor *t = &ck->tensors[i];

		if (!len || off > t->numel * zf_dtype_size(t->src_dtype) ||
		    len > t->numel * zf_dtype_size(t->src_dtype) - off)
			return zf_fail(err, ZF_EUSAGE, "bytes %llu..%llu are not in tensor %zu",
				       (unsigned long long)off,
				       (unsigned long long)(off + len), i);
		return zf_strided_read(ck, i, off, len, buf, err);
	}
	while (len) {
		struct zf_run run;
		int rc;

		if (zf_ckpt_map(ck, i, off, len, &run))
			return zf_fail(err, ZF_EUSAGE, "bytes %llu..%llu are not in tensor %zu",
				       (unsigned long long)off,
				       (unsigned long long)(off + len), i);
		rc = zf_source_pread(ck->files[run.file], out, (size_t)run.len,
				     run.offset, err);
		if (rc)
			return rc;
		out += run.len;
		off += run.len;
		len -= (size_t)run.len;
	}
	return ZF_OK;
}

/* Appends r to *v (growing it); false when out of memory. */
static bool push_range(struct zf_ckpt_range **v, size_t *n, size_t *cap,
		       struct zf_ckpt_range r)
{
	if (*n == *cap && zf_grow(v, cap, *n + 1, 64))
		return false;
	(*v)[(*n)++] = r;
	return true;
}

/* Pushes the ranges of one (end element, offset) pair table of rank r's
 * file (ZeRO-3 flat groups) or of group g's ranks (ZeRO-1/2). */
static bool push_pairs(const struct zf_ckpt *ck, uint32_t id, bool by_rank,
		       uint32_t fixed, struct zf_ckpt_range **v, size_t *n,
		       size_t *cap)
{
	size_t k;
	const uint64_t *t = zf_tables_get(&ck->lay.tables, id, &k);

	for (size_t i = 0, prev = 0; i < k / 2; prev = t[2 * i], i++) {
		uint32_t rank = by_rank ? fixed : (uint32_t)i;
		uint32_t group = by_rank ? (uint32_t)i : fixed;

		if (t[2 * i] > prev &&
		    !push_range(v, n, cap, (struct zf_ckpt_range){
				    ck->lay.first_optim + rank, t[2 * i + 1],
				    (t[2 * i] - prev) * 4, SIZE_MAX, group, rank }))
			return false;
	}
	return true;
}

int zf_ckpt_ranges(const struct zf_ckpt *ck, struct zf_ckpt_range **out,
		   size_t *n_out, struct zf_error *err)
{
	const struct zf_rank_tables *lay = &ck->lay;
	struct zf_ckpt_range *v = NULL;
	size_t n = 0, cap = 0;
	bool ok = true;

	for (uint32_t r = 0; ok && lay->zero3_segs && r < lay->world_size; r++)
		ok = push_pairs(ck, lay->zero3_segs[r], true, r, &v, &n, &cap);
	for (uint32_t g = 0; ok && lay->zero12_cuts && g < lay->n_groups; g++)
		ok = push_pairs(ck, lay->zero12_cuts[g], false, g, &v, &n, &cap);
	for (size_t i = 0; ok && i < ck->info.n_tensors; i++) {
		const struct zf_tensor *t = &ck->tensors[i];
		const struct zf_place *pl = &ck->places[i];
		uint64_t es = zf_dtype_size(t->src_dtype), bytes = t->numel * es;

		if (pl->kind == ZF_PLACE_WHOLE && bytes)
			ok = push_range(&v, &n, &cap, (struct zf_ckpt_range){
						pl->u.whole.file, pl->u.whole.offset, bytes, i, 0, 0 });
		if (pl->kind == ZF_PLACE_BASE && bytes)
			ok = push_range(&v, &n, &cap, (struct zf_ckpt_range){
						pl->u.base.file, pl->u.base.offset, bytes, i, 0, 0 });
		/* A strided view: the bytes its elements span. */
		if (pl->kind == ZF_PLACE_STRIDED)
			ok = push_range(&v, &n, &cap, (struct zf_ckpt_range){
						pl->u.strided.file, pl->u.strided.offset,
						zf_place_span(lay, pl, es, t->numel), i, 0, 0 });
		if (pl->kind != ZF_PLACE_FRAG3)
			continue;
		for (uint32_t r = 0; ok && r < lay->world_size; r++) {
			struct zf_run run;
			uint64_t p = t->numel / lay->world_size + (t->numel % lay->world_size != 0);

			if ((uint64_t)r * p >= t->numel)
				break;
			zf_place_map(lay, pl, t, (uint64_t)r * p * es, bytes, &run);
			ok = push_range(&v, &n, &cap, (struct zf_ckpt_range){
						run.file, run.offset, run.len, i, 0, r });
		}
	}
	if (!ok) {
		free(v);
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	*out = v;
	*n_out = n;
	return ZF_OK;
}

bool zf_ckpt_gathers(const struct zf_ckpt *ck, size_t i)
{
	if (i < ck->info.n_tensors && ck->tensors[i].kind == ZF_KIND_ALIAS)
		i = ck->tensors[i].alias_of;
	return i < ck->info.n_tensors && ck->places[i].kind == ZF_PLACE_STRIDED;
}

int zf_ckpt_check_files(const struct zf_ckpt *ck, struct zf_error *err)
{
	for (size_t i = 0; i < ck->info.n_files; i++) {
		int rc = zf_source_check(ck->files[i], err);

		if (rc)
			return rc;
	}
	return ZF_OK;
}

const char *zf_kind_str(enum zf_tensor_kind kind)
{
	switch (kind) {
	case ZF_KIND_PARAM:
		return "param";
	case ZF_KIND_FROZEN:
		return "frozen";
	case ZF_KIND_BUFFER:
		return "buffer";
	case ZF_KIND_ALIAS:
		return "alias";
	}
	return "?";
}

const char *zf_layout_str(enum zf_layout layout)
{
	switch (layout) {
	case ZF_LAYOUT_DEEPSPEED:
		return "deepspeed";
	case ZF_LAYOUT_TRAINER:
		return "hf-trainer";
	case ZF_LAYOUT_TAGDIR:
		return "tag-folder";
	case ZF_LAYOUT_XTUNER:
		return "xtuner";
	}
	return "?";
}

/* File `file`'s container, read again (nothing of it is kept after
 * open), and for a legacy file its records walked again with a fresh
 * parse of its pickle. NULL (err set) on failure. */
static struct zf_container *reopen(const struct zf_ckpt *ck, size_t file,
				   struct zf_error *err)
{
	struct zf_container *c;
	struct zf_pickle *pk = NULL;
	int rc;

	if (file >= ck->info.n_files) {
		zf_fail(err, ZF_EUSAGE, "no file %zu (the checkpoint has %zu)",
			file, ck->info.n_files);
		return NULL;
	}
	if (zf_container_open(ck->files[file], &c, err))
		return NULL;
	if (zf_container_kind(c) != ZF_CONTAINER_LEGACY)
		return c;
	rc = zf_container_parse(c, &pk, err);
	if (!rc)
		rc = zf_container_bind(c, pk, err);
	zf_pickle_free(pk);
	if (rc) {
		zf_container_close(c);
		return NULL;
	}
	return c;
}

int zf_ckpt_check_crc(const struct zf_ckpt *ck, size_t file,
		      struct zf_error *err)
{
	struct zf_container *c = reopen(ck, file, err);
	int rc;

	if (!c)
		return err ? err->status : ZF_EFORMAT;
	rc = zf_container_check_records(c, err);
	zf_container_close(c);
	return rc;
}

int zf_ckpt_check_zip(const struct zf_ckpt *ck, size_t file,
		      struct zf_error *err)
{
	struct zf_container *c = reopen(ck, file, err);
	int rc;

	if (!c)
		return err ? err->status : ZF_EFORMAT;
	rc = zf_container_cross_check(c, err);
	zf_container_close(c);
	return rc;
}
