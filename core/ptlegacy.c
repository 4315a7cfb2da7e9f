/* SPDX-License-Identifier: MIT */
/*
 * The reader of torch's legacy serialization (include/zerofs/ptlegacy.h):
 * five pickles, then one record per storage, nothing that says where
 * anything is. Reading it safely means finding each pickle's end by
 * scanning its opcodes in windows of the file (a main pickle can be many
 * MB; the tensor data after it, many GB, is never read here), and walking
 * the records with sizes that are checked against the file's size before
 * anything trusts them.
 *
 * Workload: one open per rank file, ~10 small reads for the pickles and
 * one 64 KiB window per run of consecutive record headers at bind (a file
 * of 20,000 small storages is read in a few dozen preads, a file of a
 * few huge flat groups in one per record).
 */
#include "zerofs/ptlegacy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckd.h"
#include "cursor.h"

/* Windows the pickle scan reads; a text line (a GLOBAL's module) must fit
 * in the largest. */
#define SCAN_WINDOW ((size_t)64 << 10)
#define SCAN_WINDOW_MAX ((size_t)16 << 20)
/* Window of record headers read at once by bind. */
#define HEADER_WINDOW ((size_t)64 << 10)

/* torch's MAGIC_NUMBER, 0x1950a86a20f9469cfc6c, as protocol 2 pickles it:
 * PROTO 2, LONG1 of 10 little-endian bytes, STOP. */
static const unsigned char magic_pickle[] = {
	0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
	0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
};
#define MAGIC_DECIMAL "119547037146038801333356"
#define LEGACY_PROTOCOL_VERSION 1001

struct rec {
	const char *key;
	uint64_t offset;
	uint64_t size;
	int64_t numel;
};

struct zf_ptlegacy {
	struct zf_source *src; /* borrowed */
	uint64_t size;	       /* of the file, at open */
	uint64_t pkl_off, pkl_len;
	uint64_t data_off;     /* the first record's header */
	char **keys;	       /* in file order; strings in key_block */
	char *key_block;
	size_t nkeys;
	struct rec *recs;      /* in file order, after bind */
	struct rec **by_key;   /* the same, sorted by key */
	bool bound;
};

/* ---- errors ----------------------------------------------------------- */

__attribute__((format(printf, 4, 5)))
static int fail(const struct zf_ptlegacy *lf, struct zf_error *err,
		int status, const char *fmt, ...)
{
	char msg[ZF_ERROR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	zf_fail(err, status, "%s", msg);
	zf_error_where(err, zf_source_path(lf->src));
	return status;
}

/* Puts what before a message recorded by a lower layer (the pickle
 * reader, a read of the source), so that it says which part failed. */
static int context(const struct zf_ptlegacy *lf, struct zf_error *err,
		   int status, const char *what)
{
	/* Room for both, so that only the copy back truncates. */
	char msg[ZF_ERROR_MSG_MAX + 256];

	if (err && err->status != ZF_OK) {
		snprintf(msg, sizeof(msg), "%.200s: %s", what, err->msg);
		memcpy(err->msg, msg, sizeof(err->msg) - 1);
		err->msg[sizeof(err->msg) - 1] = '\0';
	}
	zf_error_where(err, zf_source_path(lf->src));
	return status;
}

/* ---- pickles ----------------------------------------------------------- */

/*
 * Finds the end of the pickle that starts at byte start by scanning it in
 * windows: *end gets the offset just past its STOP. It may span at most
 * max bytes.
 */
static int find_end(struct zf_ptlegacy *lf, uint64_t start, uint64_t max,
		    const char *what, uint64_t *end, struct zf_error *err)
{
	struct zf_pickle_scan s = { 0 };
	uint64_t limit = lf->size - start;
	size_t win = SCAN_WINDOW;
	unsigned char *buf = malloc(win);
	char ctx[128];
	int rc = ZF_OK;

	snprintf(ctx, sizeof(ctx), "%s (at byte %llu)", what,
		 (unsigned long long)start);
	if (!buf)
		return fail(lf, err, ZF_ENOMEM, "out of memory");
	while (!s.done) {
		uint64_t base = s.pos;
		size_t n = limit - base < win ? (size_t)(limit - base) : win;

		if (base > max) {
			rc = fail(lf, err, ZF_EFORMAT,
				  "%s is longer than the %llu bytes zerofs reads",
				  ctx, (unsigned long long)max);
			break;
		}
		rc = zf_source_pread(lf->src, buf, n, start + base, err);
		if (!rc)
			rc = zf_pickle_scan(&s, buf, n, base, limit, err);
		if (rc) {
			context(lf, err, rc, ctx);
			break;
		}
		if (s.done || s.pos != base)
			continue;
		/* A text line longer than the window: a larger one. */
		if (win >= SCAN_WINDOW_MAX) {
			rc = fail(lf, err, ZF_EFORMAT,
				  "%s has an opcode argument longer than %zu bytes",
				  ctx, SCAN_WINDOW_MAX);
			break;
		}
		win *= 2;
		free(buf);
		buf = malloc(win);
		if (!buf)
			return fail(lf, err, ZF_ENOMEM, "out of memory");
	}
	free(buf);
	if (!rc && s.pos > max)
		rc = fail(lf, err, ZF_EFORMAT,
			  "%s is %llu bytes long, more than the %llu zerofs reads",
			  ctx, (unsigned long long)s.pos, (unsigned long long)max);
	if (!rc)
		*end = start + s.pos;
	return rc;
}

/* Reads and parses the pickle at start (of at most max bytes); *end gets
 * the offset just past it. */
static int load_at(struct zf_ptlegacy *lf, uint64_t start, uint64_t max,
		   const char *what, struct zf_pickle **pk, uint64_t *end,
		   struct zf_error *err)
{
	unsigned char *buf;
	size_t len;
	int rc;

	rc = find_end(lf, start, max, what, end, err);
	if (rc)
		return rc;
	len = (size_t)(*end - start);
	buf = malloc(len);
	if (!buf)
		return fail(lf, err, ZF_ENOMEM, "out of memory");
	rc = zf_source_pread(lf->src, buf, len, start, err);
	if (!rc)
		rc = zf_pickle_load(buf, len, NULL, pk, err);
	free(buf);
	if (rc) {
		char ctx[128];

		snprintf(ctx, sizeof(ctx), "%s (at byte %llu)", what,
			 (unsigned long long)start);
		return context(lf, err, rc, ctx);
	}
	return ZF_OK;
}

/* Whether v is torch's magic number: a LONG1/LONG4 int (bytes) or the
 * digits of a text LONG (protocols 0 and 1). */
static bool is_magic(const struct zf_pv *v)
{
	const struct zf_pv *a;

	if (!zf_pv_is(v, ZF_PV_OBJECT) || strcmp(v->u.obj.name, "int") ||
	    !zf_pv_is(v->u.obj.args, ZF_PV_TUPLE) || v->u.obj.args->u.seq.n != 1)
		return false;
	a = v->u.obj.args->u.seq.items[0];
	if (zf_pv_is(a, ZF_PV_BYTES))
		return a->u.str.len == 10 &&
		       !memcmp(a->u.str.s, magic_pickle + 4, 10);
	return zf_pv_is(a, ZF_PV_STR) && !strcmp(a->u.str.s, MAGIC_DECIMAL);
}

bool zf_ptlegacy_sniff(const void *head, size_t len)
{
	return len >= sizeof(magic_pickle) &&
	       !memcmp(head, magic_pickle, sizeof(magic_pickle));
}

/* The three small pickles: magic, version, sys_info. *end gets the
 * offset after them. */
static int read_header(struct zf_ptlegacy *lf, uint64_t *end,
		       struct zf_error *err)
{
	static const char *const what[] = {
		"magic number pickle", "protocol version pickle",
		"sys_info pickle",
	};
	unsigned char head[512];
	uint64_t at = 0;
	size_t n = lf->size < sizeof(head) ? (size_t)lf->size : sizeof(head);
	struct zf_cursor c = zf_cursor_make(head, n);
	const unsigned char *zip = zf_cursor_span_at(&c, 0, 4);
	const unsigned char *tar = zf_cursor_span_at(&c, 257, 5);
	int rc;

	rc = zf_source_pread(lf->src, head, n, 0, err);
	if (rc)
		return context(lf, err, rc, "reading the first bytes");
	if (zip && !memcmp(zip, "PK\x03\x04", 4))
		return fail(lf, err, ZF_EFORMAT,
			    "a zip archive (torch's default format), not torch's legacy format");
	if (tar && !memcmp(tar, "ustar", 5))
		return fail(lf, err, ZF_EUNSUPPORTED,
			    "a tar archive: torch's format of before 0.4 (2018), which zerofs does not read");
	if (zf_cursor_u8_at(&c, 0) != 0x80)
		return fail(lf, err, ZF_EFORMAT,
			    "not a torch.save file: it starts with neither a pickle nor a zip");
	for (size_t i = 0; i < 3; i++) {
		struct zf_pickle *pk = NULL;
		const struct zf_pv *v;

		rc = load_at(lf, at, ZF_PTLEGACY_MAX_HEADER, what[i], &pk, &at,
			     err);
		if (rc)
			return rc;
		v = zf_pickle_root(pk);
		if (i == 0 && !is_magic(v))
			rc = fail(lf, err, ZF_EFORMAT,
				  "not a torch.save file: its first pickle holds a value of type %s, not torch's magic number",
				  zf_pv_type_name(v));
		if (i == 1 && !(zf_pv_is(v, ZF_PV_INT) &&
				v->u.i == LEGACY_PROTOCOL_VERSION))
			rc = zf_pv_is(v, ZF_PV_INT) ?
				fail(lf, err, ZF_EFORMAT,
				     "protocol version %lld, torch writes and reads only %d",
				     (long long)v->u.i, LEGACY_PROTOCOL_VERSION) :
				fail(lf, err, ZF_EFORMAT,
				     "the protocol version pickle holds a value of type %s, not the int %d",
				     zf_pv_type_name(v), LEGACY_PROTOCOL_VERSION);
		/* sys_info: torch ignores it, and so may we (records are
		 * little-endian whatever it says: torch writes them so). */
		zf_pickle_free(pk);
		if (rc)
			return rc;
	}
	*end = at;
	return ZF_OK;
}

/* A key names a record: not empty, no NUL, no '/', as the pickle reader
 * also requires of the keys the main pickle uses. */
static bool plain_key(const struct zf_pv *k)
{
	return zf_pv_is(k, ZF_PV_STR) && k->u.str.len &&
	       strlen(k->u.str.s) == k->u.str.len &&
	       !memchr(k->u.str.s, '/', k->u.str.len);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Pickle 5: the list of storage keys, copied into lf. */
static int read_keys(struct zf_ptlegacy *lf, uint64_t start, uint64_t *end,
		     struct zf_error *err)
{
	struct zf_pickle *pk = NULL;
	const struct zf_pv *list;
	char **sorted = NULL;
	size_t bytes = 0;
	char *at;
	int rc;

	rc = load_at(lf, start, ZF_PTLEGACY_MAX_KEYS_PICKLE,
		     "storage key list pickle", &pk, end, err);
	if (rc)
		return rc;
	list = zf_pickle_root(pk);
	if (!zf_pv_is(list, ZF_PV_LIST)) {
		rc = fail(lf, err, ZF_EFORMAT,
			  "the storage key list pickle (at byte %llu) holds a value of type %s, not a list",
			  (unsigned long long)start, zf_pv_type_name(list));
		goto out;
	}
	if (list->u.seq.n > ZF_PTLEGACY_MAX_RECORDS) {
		rc = fail(lf, err, ZF_EFORMAT,
			  "the storage key list names %zu storages, more than the %zu zerofs reads",
			  list->u.seq.n, ZF_PTLEGACY_MAX_RECORDS);
		goto out;
	}
	for (size_t i = 0; i < list->u.seq.n; i++) {
		const struct zf_pv *k = list->u.seq.items[i];

		if (!zf_pv_is(k, ZF_PV_STR)) {
			rc = fail(lf, err, ZF_EFORMAT,
				  "item %zu of the storage key list is a value of type %s, not a plain key",
				  i, zf_pv_type_name(k));
			goto out;
		}
		if (!plain_key(k)) {
			rc = fail(lf, err, ZF_EFORMAT,
				  "item %zu of the storage key list is not a plain key: empty, or with a '/' or a NUL",
				  i);
			goto out;
		}
		bytes += k->u.str.len + 1; /* bounded by the pickle's size */
	}
	lf->nkeys = list->u.seq.n;
	lf->keys = calloc(lf->nkeys ? lf->nkeys : 1, sizeof(*lf->keys));
	lf->key_block = malloc(bytes ? bytes : 1);
	sorted = calloc(lf->nkeys ? lf->nkeys : 1, sizeof(*sorted));
	if (!lf->keys || !lf->key_block || !sorted) {
		rc = fail(lf, err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	at = lf->key_block;
	for (size_t i = 0; i < lf->nkeys; i++) {
		const struct zf_pv *k = list->u.seq.items[i];

		memcpy(at, k->u.str.s, k->u.str.len + 1);
		lf->keys[i] = sorted[i] = at;
		at += k->u.str.len + 1;
	}
	qsort(sorted, lf->nkeys, sizeof(*sorted), cmp_str);
	for (size_t i = 1; i < lf->nkeys; i++)
		if (!strcmp(sorted[i - 1], sorted[i])) {
			rc = fail(lf, err, ZF_EFORMAT,
				  "the storage key list names storage '%.64s' twice",
				  sorted[i]);
			goto out;
		}
out:
	free(sorted);
	zf_pickle_free(pk);
	return rc;
}

/* ---- open ------------------------------------------------------------- */

void zf_ptlegacy_close(struct zf_ptlegacy *lf)
{
	if (!lf)
		return;
	free(lf->keys);
	free(lf->key_block);
	free(lf->recs);
	free(lf->by_key);
	free(lf);
}

int zf_ptlegacy_open(struct zf_source *src, struct zf_ptlegacy **out,
		     struct zf_error *err)
{
	struct zf_ptlegacy *lf;
	uint64_t at = 0;
	int rc;

	*out = NULL;
	lf = calloc(1, sizeof(*lf));
	if (!lf)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	lf->src = src;
	lf->size = zf_source_size(src);
	rc = read_header(lf, &at, err);
	if (!rc) {
		lf->pkl_off = at;
		rc = find_end(lf, at, ZF_PTLEGACY_MAX_PICKLE, "main pickle",
			      &at, err);
	}
	if (!rc) {
		lf->pkl_len = at - lf->pkl_off;
		rc = read_keys(lf, at, &at, err);
	}
	if (rc) {
		zf_ptlegacy_close(lf);
		return rc;
	}
	lf->data_off = at;
	*out = lf;
	return ZF_OK;
}

void zf_ptlegacy_pickle(const struct zf_ptlegacy *lf, uint64_t *offset,
			uint64_t *len)
{
	*offset = lf->pkl_off;
	*len = lf->pkl_len;
}

int zf_ptlegacy_read_pickle(const struct zf_ptlegacy *lf, unsigned char **out,
			    size_t *len, struct zf_error *err)
{
	unsigned char *buf = malloc(lf->pkl_len ? (size_t)lf->pkl_len : 1);
	int rc;

	*out = NULL;
	*len = 0;
	if (!buf)
		return fail(lf, err, ZF_ENOMEM, "out of memory");
	rc = zf_source_pread(lf->src, buf, (size_t)lf->pkl_len, lf->pkl_off,
			     err);
	if (rc) {
		free(buf);
		return context(lf, err, rc, "reading the main pickle");
	}
	*out = buf;
	*len = (size_t)lf->pkl_len;
	return ZF_OK;
}

size_t zf_ptlegacy_count(const struct zf_ptlegacy *lf)
{
	return lf->nkeys;
}

const char *zf_ptlegacy_key(const struct zf_ptlegacy *lf, size_t i)
{
	return i < lf->nkeys ? lf->keys[i] : NULL;
}

/* ---- records ----------------------------------------------------------- */

size_t zf_ptlegacy_element_size(const char *class_name)
{
	/* Every storage class torch's pickles name (torch/storage.py,
	 * _get_dtype_from_pickle_storage_type), with its element size. */
	static const struct {
		const char *name;
		size_t size;
	} sizes[] = {
		{ "DoubleStorage", 8 },	       { "FloatStorage", 4 },
		{ "HalfStorage", 2 },	       { "BFloat16Storage", 2 },
		{ "LongStorage", 8 },	       { "IntStorage", 4 },
		{ "ShortStorage", 2 },	       { "CharStorage", 1 },
		{ "ByteStorage", 1 },	       { "BoolStorage", 1 },
		{ "ComplexDoubleStorage", 16 }, { "ComplexFloatStorage", 8 },
		{ "QUInt8Storage", 1 },	       { "QInt8Storage", 1 },
		{ "QInt32Storage", 4 },	       { "QUInt4x2Storage", 1 },
		{ "QUInt2x4Storage", 1 },      { "UntypedStorage", 1 },
	};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if (!strcmp(sizes[i].name, class_name))
			return sizes[i].size;
	return 0;
}

/* Record headers are read through a window: consecutive small records
 * share one pread. */
struct window {
	unsigned char buf[HEADER_WINDOW];
	uint64_t off;
	size_t len;
};

/* The 8 bytes at off (off + 8 <= file size, checked by the caller),
 * from the window when they are in it, else from a window read at off. */
static int read_u64(struct zf_ptlegacy *lf, struct window *w, uint64_t off,
		    uint64_t *v, struct zf_error *err)
{
	struct zf_cursor c = zf_cursor_make(w->buf, w->len);
	uint64_t left = lf->size - off;
	int rc;

	if (off >= w->off && off - w->off <= w->len) {
		*v = zf_cursor_u64_at(&c, (size_t)(off - w->off));
		if (!zf_cursor_failed(&c))
			return ZF_OK;
	}
	w->len = left < sizeof(w->buf) ? (size_t)left : sizeof(w->buf);
	w->off = off;
	rc = zf_source_pread(lf->src, w->buf, w->len, off, err);
	if (rc) {
		w->len = 0;
		return context(lf, err, rc, "reading a record header");
	}
	c = zf_cursor_make(w->buf, w->len);
	*v = zf_cursor_u64_at(&c, 0);
	return ZF_OK;
}

/* Index of the storage with key in sorted (n of them, by key), or n. */
static size_t find_storage(const struct zf_pv *const *sorted, size_t n,
			   const char *key)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(key, sorted[mid]->u.storage.key);

		if (!c)
			return mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return n;
}

static int cmp_storage(const void *a, const void *b)
{
	const struct zf_pv *x = *(const struct zf_pv *const *)a;
	const struct zf_pv *y = *(const struct zf_pv *const *)b;

	return strcmp(x->u.storage.key, y->u.storage.key);
}

static int cmp_rec(const void *a, const void *b)
{
	return strcmp((*(struct rec *const *)a)->key,
		      (*(struct rec *const *)b)->key);
}

/* One record: its header at *off must hold st's count, its bytes must
 * fit the file; *off moves past it. rec keeps key, lf's copy of st's key
 * (the pickle is the caller's, gone after bind). */
static int walk_one(struct zf_ptlegacy *lf, struct window *w,
		    const struct zf_pv *st, const char *key, struct rec *rec,
		    uint64_t *off, struct zf_error *err)
{
	const struct zf_pv_storage *s = &st->u.storage;
	size_t elem = zf_ptlegacy_element_size(s->class_name);
	uint64_t header = 0, data, bytes;
	int rc;

	if (!elem)
		return fail(lf, err, ZF_EFORMAT,
			    "storage '%s' is a %s, whose element size zerofs does not know, so the records after it cannot be found",
			    s->key, s->class_name);
	if (lf->size - *off < 8)
		return fail(lf, err, ZF_EFORMAT,
			    "the record of storage '%s' at byte %llu: the file ends %llu bytes into its 8-byte header",
			    s->key, (unsigned long long)*off,
			    (unsigned long long)(lf->size - *off));
	rc = read_u64(lf, w, *off, &header, err);
	if (rc)
		return rc;
	if (header != (uint64_t)s->numel)
		return fail(lf, err, ZF_EFORMAT,
			    "the record of storage '%s' at byte %llu holds %lld elements, the pickle says %lld",
			    s->key, (unsigned long long)*off,
			    (long long)header, (long long)s->numel);
	data = *off + 8;
	if (zf_ckd_mul(&bytes, (uint64_t)s->numel, (uint64_t)elem) ||
	    bytes > lf->size - data)
		return fail(lf, err, ZF_EFORMAT,
			    "the record of storage '%s' at byte %llu: %lld elements of %zu bytes run past the end of the file (%llu bytes)",
			    s->key, (unsigned long long)*off,
			    (long long)s->numel, elem,
			    (unsigned long long)lf->size);
	rec->key = key;
	rec->offset = data;
	rec->size = bytes;
	rec->numel = s->numel;
	*off = data + bytes;
	return ZF_OK;
}

int zf_ptlegacy_bind(struct zf_ptlegacy *lf, const struct zf_pickle *pk,
		     struct zf_error *err)
{
	const struct zf_pv *const *storages;
	const struct zf_pv **sorted = NULL;
	struct window *w = NULL;
	uint64_t off = lf->data_off;
	bool *used = NULL;
	size_t n;
	int rc = ZF_OK;

	if (lf->bound)
		return fail(lf, err, ZF_EUSAGE, "records already bound");
	storages = zf_pickle_storages(pk, &n);
	sorted = malloc((n ? n : 1) * sizeof(*sorted));
	used = calloc(n ? n : 1, sizeof(*used));
	lf->recs = calloc(lf->nkeys ? lf->nkeys : 1, sizeof(*lf->recs));
	lf->by_key = malloc((lf->nkeys ? lf->nkeys : 1) * sizeof(*lf->by_key));
	w = malloc(sizeof(*w));
	if (!sorted || !used || !lf->recs || !lf->by_key || !w) {
		rc = fail(lf, err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	w->off = 0;
	w->len = 0;
	if (n)
		memcpy(sorted, storages, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), cmp_storage);
	for (size_t i = 0; i < lf->nkeys; i++) {
		size_t at = find_storage(sorted, n, lf->keys[i]);

		if (at == n) {
			rc = fail(lf, err, ZF_EFORMAT,
				  "the storage key list names '%.64s', which the main pickle does not use",
				  lf->keys[i]);
			goto out;
		}
		used[at] = true; /* once: the list has no repeats */
		rc = walk_one(lf, w, sorted[at], lf->keys[i], &lf->recs[i], &off,
			      err);
		if (rc)
			goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (!used[i]) {
			rc = fail(lf, err, ZF_EFORMAT,
				  "storage '%.64s' of the main pickle has no record: the storage key list does not name it",
				  sorted[i]->u.storage.key);
			goto out;
		}
	if (off != lf->size) {
		rc = fail(lf, err, ZF_EFORMAT,
			  "%llu bytes follow the last storage record (at byte %llu)",
			  (unsigned long long)(lf->size - off),
			  (unsigned long long)off);
		goto out;
	}
	for (size_t i = 0; i < lf->nkeys; i++)
		lf->by_key[i] = &lf->recs[i];
	qsort(lf->by_key, lf->nkeys, sizeof(*lf->by_key), cmp_rec);
	lf->bound = true;
out:
	free(sorted);
	free(used);
	free(w);
	if (rc) {
		free(lf->recs);
		free(lf->by_key);
		lf->recs = NULL;
		lf->by_key = NULL;
	}
	return rc;
}

static void fill(const struct rec *r, struct zf_ptlegacy_record *out)
{
	out->key = r->key;
	out->offset = r->offset;
	out->size = r->size;
	out->numel = r->numel;
}

int zf_ptlegacy_record(const struct zf_ptlegacy *lf, const char *key,
		       struct zf_ptlegacy_record *rec, struct zf_error *err)
{
	size_t lo = 0, hi = lf->nkeys;

	if (!lf->bound)
		return fail(lf, err, ZF_EUSAGE, "records asked for before bind");
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(key, lf->by_key[mid]->key);

		if (!c) {
			fill(lf->by_key[mid], rec);
			return ZF_OK;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return fail(lf, err, ZF_EFORMAT, "no record for storage '%.64s'", key);
}

int zf_ptlegacy_record_at(const struct zf_ptlegacy *lf, size_t i,
			  struct zf_ptlegacy_record *rec)
{
	if (!lf->bound || i >= lf->nkeys)
		return ZF_EUSAGE;
	fill(&lf->recs[i], rec);
	return ZF_OK;
}
