/* SPDX-License-Identifier: MIT */
/*
 * Loads the rank files of a checkpoint: opens each as a source, reads its
 * container (a zip or torch's legacy format, container.h) and pickle,
 * binds the tree to the file's records, hands it to ckpt_optim.c or
 * ckpt_tensors.c, and checks that no two rank paths are one file and no
 * two optimizer files are copies of one.
 *
 * Workload: 2 to 2,048 files. The first optimizer file and the first one
 * or two model states files are parsed in full (their trees stay until
 * the checkpoint is laid out). The rest run on a few worker threads, and
 * most zips among them are never parsed: ranks after the first write the
 * same pickle (ZeRO-3 optimizer files of every rank, model states files
 * of ranks >= 1), so a file whose data.pkl has the template's size and
 * CRC-32 shares the template's tree, bound to its own records. A ZeRO-3
 * model states zip of rank >= 2 holds nothing that is served unless the
 * model has frozen parameters; then it is only proven to carry rank 1's
 * pickle and a whole zip end (zf_container_same_head()): four small
 * reads instead of its central directory and pickle. Legacy files record
 * no CRC and name their storages by address, which differs from rank to
 * rank: each is parsed.
 * man/zerofs-checkpoint.5 (CHECKS) says what is checked where.
 */
#include "ckpt_i.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"
#include "workers.h"

#define MAX_LOAD_THREADS 8

/*
 * Opens rank file f (path as found) as ck->files[f->file], named by the
 * real path of its folder and its own name: absolute (a daemon changes
 * its directory to /), and a rank file that is a link keeps its name in
 * messages. Rank files are in the tag folder, whose real path the loader
 * resolved once.
 */
static int open_source(struct zf_loader *L, struct zf_loaded *f,
		       const char *path, struct zf_error *err)
{
	size_t n = strlen(L->files.tag_dir);
	const char *slash = strrchr(path, '/');
	char *abs;
	int rc;

	if (L->real_tag_dir && !strncmp(path, L->files.tag_dir, n) && slash == path + n) {
		abs = zf_absolute_path(L->real_tag_dir, slash + 1);
	} else {
		char *dir = slash ? strndup(path, (size_t)(slash - path + 1)) : NULL;
		char *real = dir ? realpath(dir, NULL) : NULL;

		abs = real ? zf_absolute_path(real, slash + 1) : zf_absolute_path(path, NULL);
		free(dir);
		free(real);
	}
	rc = zf_source_open(abs, &L->ck->files[f->file], err);
	free(abs);
	return rc;
}

/* Reads f's container: a zip's directory, or a legacy file's small
 * pickles and key list (the main pickle stays on disk until parsed). */
static int open_container(struct zf_loader *L, struct zf_loaded *f,
			  struct zf_error *err)
{
	int rc = zf_container_open(L->ck->files[f->file], &f->ct, err);

	if (!rc)
		L->ck->kinds[f->file] = zf_container_kind(f->ct);
	return rc;
}

/* Parses f's main pickle; its top level must be a dict. */
static int parse(struct zf_loaded *f, struct zf_error *err)
{
	const char *path = zf_container_path(f->ct);
	int rc = zf_container_parse(f->ct, &f->pk, err);

	if (rc)
		return rc;
	f->tree = f->pk;
	f->root = zf_pickle_root(f->pk);
	if (!zf_pv_is(f->root, ZF_PV_DICT))
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "the pickle holds a value of type %s, not a dict",
				  zf_pv_type_name(f->root));
	return ZF_OK;
}

/* Whether f's main pickle is byte for byte tmpl's, as far as the format
 * tells without reading it (a zip: size and CRC-32). */
static bool same_pickle(const struct zf_loaded *f, const struct zf_loaded *tmpl)
{
	uint64_t a[2], b[2];

	return tmpl && tmpl->tree && tmpl->ct && zf_container_pickle_id(f->ct, a) &&
	       zf_container_pickle_id(tmpl->ct, b) && a[0] == b[0] && a[1] == b[1];
}

/*
 * Gives f the template's tree when its main pickle is the template's (its
 * storage keys then name f's own records), else parses it; then checks
 * the tree against f's records (a legacy file's are found so).
 */
static int parse_or_share(struct zf_loaded *f, const struct zf_loaded *tmpl,
			  struct zf_error *err)
{
	int rc = ZF_OK;

	if (same_pickle(f, tmpl)) {
		f->tree = tmpl->tree;
		f->root = tmpl->root;
	} else {
		rc = parse(f, err);
	}
	if (!rc)
		rc = zf_container_bind(f->ct, f->tree, err);
	return rc;
}

/* Frees what f holds of its parse and container. */
static void unload(struct zf_loaded *f)
{
	zf_pickle_free(f->pk);
	f->pk = NULL;
	f->tree = NULL;
	f->root = NULL;
	zf_container_close(f->ct);
	f->ct = NULL;
}

/* A digest of an optimizer file's records (zf_container_digest()): two
 * ranks' files never have the same; a copy of one under another rank's
 * name does. */
static int digest_records(struct zf_loaded *f, struct zf_error *err)
{
	int rc = zf_container_digest(f->ct, f->digest, err);

	if (!rc)
		f->has_digest = true;
	return rc;
}

/* --- running items on workers ----------------------------------------- */

typedef int (*item_fn)(struct zf_loader *L, size_t k, struct zf_error *err);

struct runner {
	struct zf_loader *L;
	item_fn fn;
	size_t n;
	size_t next;	/* atomic: the next item to take */
	int stop;	/* atomic: out of memory, give up */
	pthread_mutex_t lock;
	size_t failed;	/* the lowest failing item, n when none */
	struct zf_error err;
};

static void *runner_main(void *arg)
{
	struct runner *w = arg;

	for (;;) {
		size_t k = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED);
		struct zf_error e = { 0 };

		if (k >= w->n || __atomic_load_n(&w->stop, __ATOMIC_RELAXED))
			break;
		if (!w->fn(w->L, k, &e))
			continue;
		pthread_mutex_lock(&w->lock);
		if (k < w->failed) {
			w->failed = k;
			w->err = e;
		}
		pthread_mutex_unlock(&w->lock);
		if (e.status == ZF_ENOMEM)
			__atomic_store_n(&w->stop, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/*
 * Runs fn on items [0, n) on up to MAX_LOAD_THREADS threads. Every item
 * runs (a failure does not stop the others, so that the checks across
 * files see every file), unless memory runs out. *failed is the lowest
 * failing item (n when none) and err its error.
 */
static void run_items(struct zf_loader *L, size_t n, item_fn fn,
		      size_t *failed, struct zf_error *err)
{
	struct runner w = { .L = L, .fn = fn, .n = n, .failed = n };
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned threads = cpus < 1 ? 1 : cpus > MAX_LOAD_THREADS ? MAX_LOAD_THREADS : (unsigned)cpus;

	pthread_mutex_init(&w.lock, NULL);
	if (threads > n)
		threads = (unsigned)n;
	if (threads <= 1 || !zf_run_workers(threads, runner_main, &w, NULL, NULL, 0))
		runner_main(&w);
	pthread_mutex_destroy(&w.lock);
	*failed = w.failed;
	if (w.failed < n && err && err->status == ZF_OK)
		*err = w.err;
}

/* --- the first ranks -------------------------------------------------- */

/* The first phase's rank files: rank 0's optimizer file (none at
 * ZeRO-0), rank 0's model states file and, with per-rank model states
 * (ZeRO-3), rank 1's; then a one-stage pipeline's layer files. */
static size_t n_first_ranks(const struct zf_loader *L)
{
	return L->ws ? (L->n_model > 1 ? 3 : 2) : 1;
}

static struct zf_loaded *first_item(struct zf_loader *L, size_t k,
				    const char **path)
{
	if (k >= n_first_ranks(L)) {
		k -= n_first_ranks(L);
		*path = L->files.layers[k];
		return &L->layer[k];
	}
	if (!L->ws) { /* ZeRO-0: no optimizer files */
		*path = zf_model_path(L, (uint32_t)k);
		return &L->model[k];
	}
	if (k == 0) {
		*path = zf_optim_path(L, 0);
		return &L->optim[0];
	}
	*path = zf_model_path(L, (uint32_t)(k - 1));
	return &L->model[k - 1];
}

static int open_first(struct zf_loader *L, size_t k, struct zf_error *err)
{
	const char *path;
	struct zf_loaded *f = first_item(L, k, &path);
	int rc;

	rc = open_source(L, f, path, err);
	if (!rc)
		rc = open_container(L, f, err);
	return rc;
}

static int parse_first(struct zf_loader *L, size_t k, struct zf_error *err)
{
	const char *path;
	struct zf_loaded *f = first_item(L, k, &path);
	int rc = f->tree ? ZF_OK : parse(f, err);

	if (!rc)
		rc = zf_container_bind(f->ct, f->tree, err);
	if (!rc && f == &L->optim[0])
		rc = digest_records(f, err);
	return rc;
}

int zf_load_first_ranks(struct zf_loader *L, struct zf_error *err)
{
	size_t n = n_first_ranks(L) + L->files.n_layers, failed;
	int rc;

	run_items(L, n, open_first, &failed, err);
	if (failed < n)
		return err ? err->status : ZF_EFORMAT;
	/* Rank 1's model states are often rank 0's pickle exactly (no tied
	 * params to record): then one parse serves both. */
	if (n_first_ranks(L) == 3 && same_pickle(&L->model[1], &L->model[0])) {
		struct zf_loaded *m0 = &L->model[0];

		rc = parse(m0, err);
		if (rc)
			return rc;
		L->model[1].tree = m0->tree;
		L->model[1].root = m0->root;
	}
	run_items(L, n, parse_first, &failed, err);
	if (failed < n)
		return err ? err->status : ZF_EFORMAT;
	/* Rank 0 first: every other rank is checked against it. Without
	 * optimizer files, the model states say what there is. */
	if (!L->ws) {
		rc = zf_zero0_begin(L, err);
	} else {
		rc = zf_load_optim_rank(L, 0, err);
		if (!rc)
			rc = zf_load_optim_finish(L, err);
	}
	if (!rc)
		rc = zf_load_model_meta(L, err);
	L->optim_tmpl = &L->optim[0];
	L->model_tmpl = L->n_model > 1 ? &L->model[1] : NULL;
	return rc;
}

/* --- the other ranks -------------------------------------------------- */

static int load_optim(struct zf_loader *L, uint32_t r, struct zf_error *err)
{
	struct zf_loaded *f = &L->optim[r];
	int rc;

	rc = open_source(L, f, zf_optim_path(L, r), err);
	if (!rc)
		rc = open_container(L, f, err);
	if (!rc)
		rc = parse_or_share(f, L->optim_tmpl, err);
	if (!rc)
		rc = digest_records(f, err);
	if (!rc)
		rc = zf_load_optim_rank(L, r, err);
	if (!rc)
		zf_note_slice_mappings(L, r);
	unload(f);
	return rc;
}

static int load_model(struct zf_loader *L, uint32_t r, struct zf_error *err)
{
	struct zf_loaded *f = &L->model[r];
	int rc;

	if (r == 1) /* the template: opened and parsed with rank 0 */
		return zf_load_model_rank(L, 1, err);
	rc = open_source(L, f, zf_model_path(L, r), err);
	if (rc)
		return rc;
	if (!L->frozen) {
		bool same;

		rc = zf_container_same_head(L->model_tmpl->ct, L->ck->files[f->file],
					    &same, err);
		if (same)
			L->ck->kinds[f->file] = zf_container_kind(L->model_tmpl->ct);
		if (rc || same)
			return rc;
	}
	rc = open_container(L, f, err);
	if (!rc)
		rc = parse_or_share(f, L->model_tmpl, err);
	if (!rc)
		rc = zf_load_model_rank(L, r, err);
	unload(f);
	return rc;
}

/* Items: optimizer files of ranks 1.., then model states files of ranks
 * 1.. (ZeRO-3), then rank 0's own checks that needed the tensor list. */
static int load_other(struct zf_loader *L, size_t k, struct zf_error *err)
{
	if (k < L->ws - 1)
		return load_optim(L, (uint32_t)(k + 1), err);
	k -= L->ws - 1;
	if (k < (size_t)L->n_model - 1)
		return load_model(L, (uint32_t)(k + 1), err);
	(void)err;
	zf_note_slice_mappings(L, 0);
	return ZF_OK;
}

void zf_note_slice_mappings(struct zf_loader *L, uint32_t r)
{
	struct zf_error e = { 0 };

	if (!zf_check_slice_mappings(L, r, &e))
		return;
	pthread_mutex_lock(&L->lock);
	if (r < L->slice_rank) {
		L->slice_rank = r;
		L->slice_err = e;
	}
	pthread_mutex_unlock(&L->lock);
}

struct file_id {
	dev_t dev;
	ino_t ino;
	uint32_t file;
};

static int cmp_file_id(const void *a, const void *b)
{
	const struct file_id *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->file < y->file ? -1 : x->file > y->file;
}

/* Two rank paths naming one file (a symbolic or hard link) would serve
 * one rank's bytes as another's. */
static int check_distinct_files(struct zf_loader *L, struct zf_error *err)
{
	struct zf_ckpt *ck = L->ck;
	size_t n = 0, total = (size_t)L->n_model + L->ws;
	struct file_id *v = malloc((total ? total : 1) * sizeof(*v));
	uint32_t a = UINT32_MAX, b = UINT32_MAX;

	if (!v)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	for (size_t i = 0; i < total; i++) {
		const struct zf_source_id *id;

		if (!ck->files[i])
			continue;
		id = zf_source_id(ck->files[i]);
		v[n++] = (struct file_id){ id->dev, id->ino, (uint32_t)i };
	}
	qsort(v, n, sizeof(*v), cmp_file_id);
	/* Of all pairs, name the one whose second file comes first: sorted
	 * by file within one identity, a group's first two are its pair. */
	for (size_t i = 1, first = 0; i < n; i++) {
		if (v[i].dev != v[first].dev || v[i].ino != v[first].ino) {
			first = i;
			continue;
		}
		if (i == first + 1 && (b == UINT32_MAX || v[i].file < b)) {
			a = v[first].file;
			b = v[i].file;
		}
	}
	free(v);
	if (b == UINT32_MAX)
		return ZF_OK;
	return zf_fail_at(err, ZF_EFORMAT, zf_source_path(ck->files[b]),
			  "is the same file as '%s' (a link to it): every rank needs its own file",
			  zf_source_path(ck->files[a]));
}

struct digest_id {
	uint64_t d[2];
	uint32_t rank;
};

static int cmp_digest(const void *a, const void *b)
{
	const struct digest_id *x = a, *y = b;

	for (int i = 0; i < 2; i++)
		if (x->d[i] != y->d[i])
			return x->d[i] < y->d[i] ? -1 : 1;
	return x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* Two optimizer files with the same records: one rank's file copied
 * under another rank's name. */
static int check_distinct_records(struct zf_loader *L, struct zf_error *err)
{
	struct digest_id *v = malloc((L->ws ? L->ws : 1) * sizeof(*v));
	uint32_t a = UINT32_MAX, b = UINT32_MAX;
	size_t n = 0;

	if (!v)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	for (uint32_t r = 0; r < L->ws; r++)
		if (L->optim[r].has_digest)
			v[n++] = (struct digest_id){ { L->optim[r].digest[0],
						       L->optim[r].digest[1] }, r };
	qsort(v, n, sizeof(*v), cmp_digest);
	for (size_t i = 1, first = 0; i < n; i++) {
		if (memcmp(v[i].d, v[first].d, sizeof(v[i].d))) {
			first = i;
			continue;
		}
		if (i == first + 1 && (b == UINT32_MAX || v[i].rank < b)) {
			a = v[first].rank;
			b = v[i].rank;
		}
	}
	free(v);
	if (b == UINT32_MAX)
		return ZF_OK;
	return zf_fail_at(err, ZF_EFORMAT, zf_optim_path(L, b),
			  "holds the same records as '%s' (%s): a copy of one rank's optimizer file under another rank's name",
			  zf_optim_path(L, a),
			  L->ck->kinds[L->optim[b].file] == ZF_CONTAINER_LEGACY ?
				  "keys, sizes and the bytes at each record's ends" :
				  "names, sizes and CRC-32s");
}

int zf_load_other_ranks(struct zf_loader *L, struct zf_error *err)
{
	size_t n = (size_t)(L->ws - 1) + (L->n_model - 1) + 1, failed;
	struct zf_error e = { 0 };
	int rc;

	if (!L->ws) /* ZeRO-0: the one model states file, loaded already */
		return ZF_OK;

	run_items(L, n, load_other, &failed, &e);
	/* A link or a copy explains whatever else went wrong with it. */
	rc = check_distinct_files(L, err);
	if (!rc)
		rc = check_distinct_records(L, err);
	if (!rc && failed < n) {
		if (err && err->status == ZF_OK)
			*err = e;
		rc = e.status ? (int)e.status : ZF_EFORMAT;
	}
	return rc;
}

void zf_loader_unload(struct zf_loader *L)
{
	for (uint32_t i = 0; L->model && i < L->n_model; i++)
		unload(&L->model[i]);
	for (uint32_t i = 0; L->optim && i < L->ws; i++)
		unload(&L->optim[i]);
	for (uint32_t i = 0; L->layer && i < L->files.n_layers; i++)
		unload(&L->layer[i]);
}
