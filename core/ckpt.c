/* SPDX-License-Identifier: MIT */
/*
 * Loads a DeepSpeed ZeRO checkpoint into struct zf_ckpt (see ckpt.h).
 *
 * The work, in order: find the files (ckpt_find.c); open each .pt and
 * parse its pickle (ptfile.c, pickle.c); read what DeepSpeed recorded
 * (stage, world size, param_shapes, frozen params, tied params, buffers)
 * and check every rank agrees; list the tensors in the model's state_dict
 * order (the key order of `module`); then give each tensor its extents:
 * trainable params from the fp32 master partitions (layout_zero3.c,
 * layout_zero12.c), frozen params from their fragments (or, at stage 1,
 * where DeepSpeed records none, from `module`), buffers from `module`.
 * FORMAT.md records what these files hold; every fact used here is checked
 * rather than assumed, and every failure names the file.
 *
 * Workload: runs once per mount. A 64-rank checkpoint of a model with
 * thousands of tensors means ~130 files and ~10 MB of pickle; the cost is
 * dominated by parsing, so lookups use hash maps, never nested scans.
 */
#include "ckpt_i.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/stat.h>

#include "arena.h"
#include "io.h"
#include "strmap.h"

#define MAX_LOAD_THREADS 8

static pthread_mutex_t rank_lock = PTHREAD_MUTEX_INITIALIZER;

/* Opens a .pt file and records it as a source (its pickle not parsed). */
static int open_file(struct zf_loader *L, const char *path, struct zf_loaded *f,
		     struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	struct zf_source *s = &ck->sources[ck->n_sources];
	struct stat st;
	int rc;

	rc = zf_ptfile_open_flags(path, ZF_PTFILE_LAZY_PICKLE, &f->pf, err);
	if (rc)
		return rc;
	if (fstat(zf_ptfile_fd(f->pf), &st) < 0) {
		zf_fail(err, ZF_EIO, "cannot stat");
		zf_error_where(err, path);
		return ZF_EIO;
	}
	/* Absolute, so that checks still find it after a daemon's chdir. */
	s->path = realpath(path, NULL);
	if (!s->path)
		s->path = strdup(path);
	if (!s->path)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	s->name = strrchr(s->path, '/') ? strrchr(s->path, '/') + 1 : s->path;
	s->fd = zf_ptfile_fd(f->pf);
	s->size = (uint64_t)st.st_size;
	s->mtime = st.st_mtim;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->fingerprint = zf_source_fingerprint(s->dev, s->ino, s->size, &s->mtime);
	f->source = (uint32_t)ck->n_sources++;
	return ZF_OK;
}

/* Parses f's pickle; its top level must be a dict. */
static int parse(struct zf_loaded *f, struct zf_error *err)
{
	const char *path = zf_ptfile_path(f->pf);
	const unsigned char *pkl;
	size_t len;
	int rc;

	rc = zf_ptfile_load_pickle(f->pf, err);
	if (rc)
		return rc;
	pkl = zf_ptfile_pickle(f->pf, &len);
	rc = zf_pickle_load(pkl, len, NULL, &f->pk, err);
	/* Parsed values copy what they keep: the bytes can go. */
	zf_ptfile_drop_pickle(f->pf);
	if (rc) {
		zf_error_where(err, path);
		return rc;
	}
	f->root = zf_pickle_root(f->pk);
	if (!zf_pv_is(f->root, ZF_PV_DICT)) {
		zf_fail(err, ZF_EFORMAT, "the pickle holds a value of type %s, not a dict",
			zf_pv_type_name(f->root));
		zf_error_where(err, path);
		return ZF_EFORMAT;
	}
	return ZF_OK;
}

/* Frees f's parsed pickle and its bytes: only the descriptor stays. */
static void unparse(struct zf_loaded *f)
{
	zf_pickle_free(f->pk);
	f->pk = NULL;
	f->root = NULL;
	zf_ptfile_drop_pickle(f->pf);
}

/* Whether f's data.pkl holds exactly rank 1's bytes, compared piecewise
 * straight from the file (no buffer the size of the pickle). */
static bool same_as_template(const struct zf_loader *L, const struct zf_loaded *f)
{
	unsigned char buf[64 << 10];
	struct zf_record rec;
	uint64_t done = 0;

	zf_ptfile_pickle_record(f->pf, &rec);
	if (rec.size != L->tmpl_len)
		return false;
	while (done < rec.size) {
		size_t n = rec.size - done < sizeof(buf) ? (size_t)(rec.size - done) : sizeof(buf);

		if (zf_pread_full(zf_ptfile_fd(f->pf), buf, n, rec.offset + done, NULL) ||
		    memcmp(buf, L->tmpl_bytes + done, n))
			return false;
		done += n;
	}
	return true;
}

/*
 * Parses rank r's optimizer (optim) or model states file, reads what is
 * needed from it, and frees the parsed pickle at once: a 64-rank
 * checkpoint holds ~1 MB of pickle per file, ~9x that once parsed, and
 * only a few facts of each rank are kept. Rank 0's model states stay
 * parsed (zf_load_model_meta), so r is >= 1 for them.
 */
static int load_rank(struct zf_loader *L, bool optim, uint32_t r,
		     struct zf_error *err)
{
	struct zf_loaded *f = optim ? &L->optim[r] : &L->model[r];
	int rc;

	/*
	 * Ranks after the first write byte-identical model states pickles
	 * (the same names, shapes and storage keys; only the data records
	 * differ), so identical bytes reuse rank 1's tree: same bytes, same
	 * tree. Views still resolve against this rank's own file.
	 */
	if (!optim && r > 1 && L->tmpl_bytes && same_as_template(L, f)) {
		f->root = L->model[1].root;
		rc = zf_load_model_rank(L, r, err);
		f->root = NULL;
		return rc;
	}
	rc = parse(f, err);
	if (!rc)
		rc = optim ? zf_load_optim_rank(L, r, err) : zf_load_model_rank(L, r, err);
	unparse(f);
	return rc;
}

/* Ranks [first, end) shared by a few threads: parsing is the cost of
 * opening a checkpoint with many ranks, and the ranks are independent. */
struct rank_work {
	struct zf_loader *L;
	bool optim;
	uint32_t next; /* atomic: the next rank to take */
	uint32_t end;
	int stop;      /* atomic: a rank failed */
	uint32_t failed_rank;
	struct zf_error err;
};

static void *rank_worker(void *arg)
{
	struct rank_work *w = arg;
	struct zf_error err = { 0 };
	uint32_t failed = UINT32_MAX;

	for (;;) {
		uint32_t r = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED);

		if (r >= w->end || __atomic_load_n(&w->stop, __ATOMIC_RELAXED))
			break;
		if (load_rank(w->L, w->optim, r, &err)) {
			failed = r;
			__atomic_store_n(&w->stop, 1, __ATOMIC_RELAXED);
			break;
		}
	}
	if (failed == UINT32_MAX)
		return NULL;
	/* Report the lowest failing rank, whichever thread found it. */
	pthread_mutex_lock(&rank_lock);
	if (failed < w->failed_rank) {
		w->failed_rank = failed;
		w->err = err;
	}
	pthread_mutex_unlock(&rank_lock);
	return NULL;
}

static int load_ranks(struct zf_loader *L, bool optim, uint32_t first,
		      uint32_t end, struct zf_error *err)
{
	struct rank_work w = { .L = L, .optim = optim, .next = first, .end = end,
			       .failed_rank = UINT32_MAX };
	pthread_t tid[MAX_LOAD_THREADS];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = cpus < 1 ? 1 : cpus > MAX_LOAD_THREADS ? MAX_LOAD_THREADS : (size_t)cpus;
	size_t started = 0;

	if (end <= first)
		return ZF_OK;
	if (n > end - first)
		n = end - first;
	/* The calling thread works too; helpers that fail to start are
	 * simply not there. */
	while (started + 1 < n && !pthread_create(&tid[started], NULL, rank_worker, &w))
		started++;
	rank_worker(&w);
	for (size_t i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	if (w.failed_rank == UINT32_MAX)
		return ZF_OK;
	if (err && err->status == ZF_OK)
		*err = w.err;
	return w.err.status ? w.err.status : ZF_EFORMAT;
}

static void loader_release(struct zf_loader *L)
{
	for (uint32_t i = 0; L->model && i < L->files.n_model; i++) {
		zf_pickle_free(L->model[i].pk);
	}
	for (uint32_t i = 0; L->optim && i < L->files.world_size; i++) {
		zf_pickle_free(L->optim[i].pk);
	}
	if (L->ranks)
		for (uint32_t r = 0; r < L->files.world_size; r++)
			free(L->ranks[r].v);
	free(L->optim_ds_version);
	free(L->frags);
	free(L->tmpl_bytes);
	free(L->ranks);
	free(L->params);
	zf_strmap_release(&L->names);
}

/* Opened ptfiles are kept with the ckpt: they own the descriptors. */
struct zf_ckpt_private {
	struct zf_ptfile **pfs;
	size_t n;
};

int zf_ckpt_open(const char *path, const struct zf_ckpt_options *opts,
		 struct zf_ckpt **out, struct zf_error *err)
{
	struct zf_loader L;
	struct zf_ckpt *ck;
	size_t n_files, max_names = 0;
	int rc;

	memset(&L, 0, sizeof(L));
	*out = NULL;
	ck = calloc(1, sizeof(*ck) + sizeof(struct zf_ckpt_private));
	if (!ck)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	L.ck = ck;
	ck->path = strdup(path);
	rc = zf_ckpt_locate(path, opts ? opts->tag : NULL, &L.files, err);
	if (rc)
		goto out;
	ck->tag = strdup(L.files.tag);
	ck->tag_dir = strdup(L.files.tag_dir);
	ck->hf_dir = L.files.hf_dir ? strdup(L.files.hf_dir) : NULL;
	ck->layout = L.files.layout;
	ck->world_size = L.files.world_size;
	n_files = (size_t)L.files.n_model + L.files.world_size;
	ck->sources = calloc(n_files, sizeof(*ck->sources));
	L.model = calloc(L.files.n_model, sizeof(*L.model));
	L.optim = calloc(L.files.world_size, sizeof(*L.optim));
	if (!ck->path || !ck->tag || !ck->tag_dir || !ck->sources || !L.model || !L.optim) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_files; i++)
		ck->sources[i].fd = -1;
	for (uint32_t i = 0; i < L.files.n_model; i++)
		if ((rc = open_file(&L, L.files.model[i], &L.model[i], err)))
			goto out;
	for (uint32_t i = 0; i < L.files.world_size; i++)
		if ((rc = open_file(&L, L.files.optim[i], &L.optim[i], err)))
			goto out;

	/* Rank 0 first: the other ranks are checked against it. */
	rc = load_rank(&L, true, 0, err);
	if (!rc)
		rc = parse(&L.model[0], err);
	if (!rc)
		rc = zf_load_model_meta(&L, err);
	if (!rc)
		rc = load_ranks(&L, true, 1, L.files.world_size, err);
	if (!rc)
		rc = zf_load_optim_finish(&L, err);
	/* Rank 1's model states stay parsed while the others are compared
	 * with them (see load_rank). */
	if (!rc && L.files.n_model > 1) {
		size_t len;

		rc = zf_ptfile_load_pickle(L.model[1].pf, err);
		if (!rc) {
			const unsigned char *pkl = zf_ptfile_pickle(L.model[1].pf, &len);

			L.tmpl_bytes = malloc(len ? len : 1);
			if (!L.tmpl_bytes)
				rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			else
				memcpy(L.tmpl_bytes, pkl, len);
			L.tmpl_len = len;
		}
		if (!rc)
			rc = parse(&L.model[1], err);
		if (!rc)
			rc = zf_load_model_rank(&L, 1, err);
	}
	if (!rc)
		rc = load_ranks(&L, false, 2, L.files.n_model, err);
	if (L.files.n_model > 1)
		unparse(&L.model[1]);
	if (rc)
		goto out;

	/* Every name comes from one of these; size the tables once. */
	max_names = zf_pv_count_items(L.module) + zf_pv_count_items(L.frozen_shapes) +
		    zf_pv_count_items(L.shared);
	{
		const struct zf_pv *ps = L.param_shapes;

		if (zf_pv_is(ps, ZF_PV_DICT))
			max_names += ps->u.dict.n;
		else
			for (size_t g = 0; g < ps->u.seq.n; g++)
				max_names += zf_pv_count_items(ps->u.seq.items[g]);
	}
	ck->tensors = calloc(max_names ? max_names : 1, sizeof(*ck->tensors));
	if (!ck->tensors || zf_strmap_init(&L.names, max_names)) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	L.cap_tensors = max_names;

	rc = zf_collect_params(&L, err);
	if (!rc)
		rc = zf_find_train_dtype(&L);
	if (!rc && ck->stage == 3)
		rc = zf_layout_zero3(ck, L.ranks, L.params, L.n_params, err);
	else if (!rc) {
		if (L.n_groups != L.ranks[0].n) {
			zf_fail(err, ZF_EFORMAT,
				"param_shapes has %u groups, but the optimizer files have %zu fp32 partitions per rank",
				L.n_groups, L.ranks[0].n);
			zf_error_where(err, zf_model_path(&L, 0));
			rc = ZF_EFORMAT;
		} else {
			rc = zf_layout_zero12(ck, L.ranks, L.params, L.n_params, L.n_groups, err);
		}
	}
	if (!rc)
		rc = zf_collect_tensors(&L, err);
	if (rc)
		goto out;
	zf_finish_dtypes(&L);

	/* Keep the ptfiles (they own the descriptors); drop the pickles. */
	{
		struct zf_ckpt_private *priv = (struct zf_ckpt_private *)(ck + 1);

		priv->pfs = calloc(n_files, sizeof(*priv->pfs));
		if (!priv->pfs) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		for (uint32_t i = 0; i < L.files.n_model; i++) {
			zf_ptfile_drop_pickle(L.model[i].pf);
			priv->pfs[priv->n++] = L.model[i].pf;
			L.model[i].pf = NULL;
		}
		for (uint32_t i = 0; i < L.files.world_size; i++) {
			priv->pfs[priv->n++] = L.optim[i].pf;
			L.optim[i].pf = NULL;
		}
	}
out:
	loader_release(&L);
	zf_arena_trim(); /* parsing is over: a mount daemon keeps none of it */
	for (uint32_t i = 0; L.model && i < L.files.n_model; i++)
		zf_ptfile_close(L.model[i].pf);
	for (uint32_t i = 0; L.optim && i < L.files.world_size; i++)
		zf_ptfile_close(L.optim[i].pf);
	if (rc) {
		/* Descriptors belonged to the ptfiles just closed. */
		for (size_t i = 0; i < ck->n_sources; i++)
			ck->sources[i].fd = -1;
		zf_ckpt_free(ck);
	} else {
		*out = ck;
	}
	free(L.model);
	free(L.optim);
	zf_ckpt_files_release(&L.files);
	return rc;
}

void zf_ckpt_free(struct zf_ckpt *ck)
{
	struct zf_ckpt_private *priv;

	if (!ck)
		return;
	priv = (struct zf_ckpt_private *)(ck + 1);
	for (size_t i = 0; i < priv->n; i++)
		zf_ptfile_close(priv->pfs[i]);
	free(priv->pfs);
	for (size_t i = 0; i < ck->n_tensors; i++) {
		free(ck->tensors[i].name);
		free(ck->tensors[i].extents);
	}
	free(ck->tensors);
	for (size_t i = 0; i < ck->n_sources; i++)
		free(ck->sources[i].path);
	free(ck->sources);
	free(ck->path);
	free(ck->tag);
	free(ck->tag_dir);
	free(ck->hf_dir);
	free(ck->ds_version);
	free(ck);
}

size_t zf_ckpt_find(const struct zf_ckpt *ck, const char *name)
{
	for (size_t i = 0; i < ck->n_tensors; i++)
		if (!strcmp(ck->tensors[i].name, name))
			return i;
	return (size_t)-1;
}

const struct zf_tensor *zf_ckpt_data_of(const struct zf_ckpt *ck,
					const struct zf_tensor *t)
{
	return t->kind == ZF_KIND_ALIAS ? &ck->tensors[t->alias_of] : t;
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
	}
	return "?";
}

/* The open zip of source file `source`, or NULL (err set). */
static const struct zf_ptfile *ptfile_of(const struct zf_ckpt *ck, size_t source,
					 struct zf_error *err)
{
	const struct zf_ckpt_private *priv = (const struct zf_ckpt_private *)(ck + 1);

	if (source >= ck->n_sources) {
		zf_fail(err, ZF_EUSAGE, "no source file %zu (the checkpoint has %zu)",
			source, ck->n_sources);
		return NULL;
	}
	/* The ptfiles were kept in source order; match by descriptor rather
	 * than trust that. */
	for (size_t i = 0; i < priv->n; i++) {
		size_t k = (source + i) % priv->n;

		if (zf_ptfile_fd(priv->pfs[k]) == ck->sources[source].fd)
			return priv->pfs[k];
	}
	zf_fail(err, ZF_EUSAGE, "source file %zu has no open zip", source);
	zf_error_where(err, ck->sources[source].path);
	return NULL;
}

int zf_ckpt_check_crc(const struct zf_ckpt *ck, size_t source,
		      struct zf_error *err)
{
	const struct zf_ptfile *pf = ptfile_of(ck, source, err);

	if (!pf)
		return ZF_EUSAGE;
	return zf_ptfile_check_crc(pf, err);
}

int zf_ckpt_check_zip(const struct zf_ckpt *ck, size_t source,
		      struct zf_error *err)
{
	const struct zf_ptfile *pf = ptfile_of(ck, source, err);

	if (!pf)
		return ZF_EUSAGE;
	return zf_ptfile_cross_check(pf, err);
}
