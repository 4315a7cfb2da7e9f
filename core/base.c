/* SPDX-License-Identifier: MIT */
/*
 * Reads a Hugging Face model folder given with --base: which safetensors
 * files hold its weights, and each tensor's name, dtype, shape and place,
 * from the files' headers. Everything comes from outside, so everything
 * is checked before it is believed, the way safetensors' own reader
 * checks it: a header is at most 100 MB and inside its file, a JSON
 * object of valid UTF-8, each tensor of a known dtype with a shape whose
 * size is exactly its data_offsets, inside the file; no name twice.
 *
 * The folder is untrusted like any other: its files are opened through
 * confine.h, so a link that leads out of it (or, for a hub snapshot, out
 * of the repository's blobs/) is refused, not served.
 *
 * Workload: once per open; a 70B base has ~30 shards of ~1,000 tensors.
 */
#include "base.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckd.h"
#include "confine.h"
#include "cursor.h"
#include "grow.h"
#include "io.h"
#include "zerofs/text.h"
#include "zerofs/safetensors.h"

#define MAX_INDEX ((size_t)64 << 20)

static bool is_file(const char *dir, const char *name)
{
	char *p = zf_absolute_path(dir, name);
	struct stat st;
	bool yes = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);

	free(p);
	return yes;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A plain file name: no folder, not "." or "..", not empty. */
static bool plain_name(const char *s)
{
	return s[0] && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

static bool ends_with(const char *s, const char *tail)
{
	size_t a = strlen(s), b = strlen(tail);

	return a >= b && !strcmp(s + a - b, tail);
}

/*
 * The folder whose files are read: dir itself, or, for a hub cache repo
 * folder (models--org--name/ holding refs/main and snapshots/), the
 * snapshot refs/main names.
 */
static int resolve_dir(const char *dir, char **out, struct zf_error *err)
{
	char *refs = zf_absolute_path(dir, "refs/main"), *text = NULL, *snap = NULL;
	size_t len;
	int rc = ZF_OK;

	*out = NULL;
	if (!refs)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	if (!is_dir(dir)) {
		free(refs);
		return zf_fail_at(err, is_file(dir, NULL) ? ZF_EUSAGE : ZF_ENOTFOUND, dir,
				  "--base: not a folder (give the base model's Hugging Face folder)");
	}
	if (is_file(dir, "refs/main") && !is_file(dir, "config.json")) {
		rc = zf_read_small_file(refs, 4096, &text, &len, err);
		if (rc)
			goto out;
		while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
			text[--len] = '\0';
		if (!plain_name(text) || !zf_utf8_valid(text, len)) {
			rc = zf_fail_at(err, ZF_EFORMAT, refs,
					"does not hold a snapshot name");
			goto out;
		}
		snap = malloc(strlen(dir) + len + 16);
		if (!snap) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		snprintf(snap, strlen(dir) + len + 16, "%s/snapshots/%s", dir, text);
		if (!is_dir(snap)) {
			rc = zf_fail_at(err, ZF_ENOTFOUND, refs,
					"names snapshot '%s', but there is no such folder in snapshots/",
					text);
			goto out;
		}
		*out = zf_absolute_path(snap, NULL);
	} else {
		*out = zf_absolute_path(dir, NULL);
	}
	if (!*out)
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
out:
	free(refs);
	free(text);
	free(snap);
	return rc;
}

/* The dtypes zerofs serves, by their safetensors names. */
static enum zf_dtype st_dtype(const char *s)
{
	for (int d = ZF_DT_INVALID + 1; d < ZF_DT_COUNT; d++)
		if (!strcmp(s, zf_dtype_st_name((enum zf_dtype)d)))
			return (enum zf_dtype)d;
	return ZF_DT_INVALID;
}

/* A JSON number that is a non-negative integer a double holds exactly. */
static bool json_u64(const cJSON *v, uint64_t *out)
{
	double d;

	if (!cJSON_IsNumber(v))
		return false;
	d = v->valuedouble;
	if (!(d >= 0) || d >= 9007199254740992.0 || d != (double)(uint64_t)d)
		return false;
	*out = (uint64_t)d;
	return true;
}

struct list {
	struct zf_base_tensor *v;
	size_t n, cap;
};

static struct zf_base_tensor *list_add(struct list *l)
{
	if (l->n == l->cap && zf_grow(&l->v, &l->cap, l->n + 1, 64))
		return NULL;
	memset(&l->v[l->n], 0, sizeof(l->v[0]));
	return &l->v[l->n++];
}

/* One tensor entry of a header. */
static int read_entry(const cJSON *e, const char *path, uint64_t data_start,
		      uint64_t size, uint32_t file, struct list *l,
		      struct zf_error *err)
{
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
	const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
	const char *name = e->string;
	struct zf_base_tensor *t;
	uint64_t begin, end, numel = 1, bytes, abs_end;
	char shown[256];
	int nd;

	if (!zf_utf8_valid(name, strlen(name)))
		return zf_fail_at(err, ZF_EFORMAT, path, "tensor name '%s' is not valid UTF-8",
				  zf_printable(name, shown, sizeof(shown)));
	zf_printable(name, shown, sizeof(shown));
	if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
	    !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "tensor '%s': not an object with dtype, shape and data_offsets",
				  shown);
	t = list_add(l);
	if (!t)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	t->dtype = st_dtype(dt->valuestring);
	if (t->dtype == ZF_DT_INVALID)
		return zf_fail_at(err, ZF_EUNSUPPORTED, path,
				  "tensor '%s' is of dtype %s, which zerofs does not serve",
				  shown, dt->valuestring);
	nd = cJSON_GetArraySize(shape);
	if (nd > ZF_MAX_DIMS)
		return zf_fail_at(err, ZF_EUNSUPPORTED, path,
				  "tensor '%s' has %d dimensions (at most %d)", shown, nd,
				  ZF_MAX_DIMS);
	for (int i = 0; i < nd; i++) {
		if (!json_u64(cJSON_GetArrayItem(shape, i), &t->shape[i]) ||
		    zf_ckd_mul(&numel, numel, t->shape[i]) || numel > ((uint64_t)1 << 61))
			return zf_fail_at(err, ZF_EFORMAT, path,
					  "tensor '%s': its shape is not a list of sizes, or its size overflows",
					  shown);
	}
	/* Its bytes too: 2^61 elements of 8 bytes would wrap to 0. */
	if (zf_ckd_mul(&bytes, numel, zf_dtype_size(t->dtype)))
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "tensor '%s': its shape is not a list of sizes, or its size overflows",
				  shown);
	t->ndim = (uint32_t)nd;
	t->numel = numel;
	if (!json_u64(cJSON_GetArrayItem(offs, 0), &begin) ||
	    !json_u64(cJSON_GetArrayItem(offs, 1), &end) || begin > end)
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "tensor '%s': data_offsets is not [begin, end] with begin <= end",
				  shown);
	if (end - begin != bytes)
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "tensor '%s': data_offsets hold %llu bytes, but its shape of %s needs %llu",
				  shown, (unsigned long long)(end - begin), dt->valuestring,
				  (unsigned long long)bytes);
	if (zf_ckd_add(&abs_end, data_start, end) || abs_end > size)
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "tensor '%s': its data (bytes %llu..%llu of the data) runs past the end of the file",
				  shown, (unsigned long long)begin, (unsigned long long)end);
	t->name = strdup(name);
	if (!t->name)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	t->file = file;
	t->offset = data_start + begin;
	return ZF_OK;
}

/* The header of base file `file` (already open): its tensors into l. */
static int read_header(struct zf_base *b, uint32_t file, struct list *l,
		       struct zf_error *err)
{
	struct zf_source *src = b->files[file];
	const char *path = zf_source_path(src);
	uint64_t size = zf_source_size(src), hlen;
	unsigned char len8[8];
	struct zf_cursor hc = zf_cursor_make(len8, sizeof(len8));
	char *json = NULL;
	cJSON *root = NULL, *e;
	size_t first = l->n;
	int rc;

	if (size < 8)
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "%llu bytes: too short to be a safetensors file",
				  (unsigned long long)size);
	rc = zf_source_pread(src, len8, 8, 0, err);
	if (rc)
		return rc;
	hlen = zf_cursor_u64(&hc);
	if (hlen > ZF_ST_MAX_HEADER || hlen > size - 8)
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "not a safetensors file: its header length %llu is over %u bytes or past the end of the file (%llu bytes)",
				  (unsigned long long)hlen, ZF_ST_MAX_HEADER,
				  (unsigned long long)size);
	json = malloc(hlen + 1);
	if (!json)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	rc = zf_source_pread(src, json, (size_t)hlen, 8, err);
	if (rc)
		goto out;
	json[hlen] = '\0';
	if (!zf_utf8_valid(json, (size_t)hlen) || !(root = cJSON_ParseWithLength(json, (size_t)hlen)) ||
	    !cJSON_IsObject(root)) {
		rc = zf_fail_at(err, ZF_EFORMAT, path,
				"not a safetensors file: its header is not a JSON object of UTF-8 text");
		goto out;
	}
	cJSON_ArrayForEach(e, root) {
		if (!e->string) {
			rc = zf_fail_at(err, ZF_EFORMAT, path, "its header has an entry without a name");
			break;
		}
		if (!strcmp(e->string, "__metadata__"))
			continue;
		rc = read_entry(e, path, 8 + hlen, size, file, l, err);
		if (rc)
			break;
	}
	/* Physical order: tensors of a file by where their data is. */
	for (size_t i = first + 1; !rc && i < l->n; i++) {
		struct zf_base_tensor t = l->v[i];
		size_t j = i;

		while (j > first && l->v[j - 1].offset > t.offset) {
			l->v[j] = l->v[j - 1];
			j--;
		}
		l->v[j] = t;
	}
out:
	cJSON_Delete(root);
	free(json);
	return rc;
}

/* Opens file name of the base folder, confined to it. */
static int open_in(const struct zf_confine *c, const char *name, struct zf_source **out,
		   struct zf_error *err)
{
	char *why = NULL;
	int rc = zf_confine_open(c, name, out, &why, err);

	if (!rc && !*out) {
		char *path = zf_absolute_path(c->dir, name);

		rc = zf_fail_at(err, ZF_EFORMAT, path ? path : c->dir, "--base: %s",
				why ? why : "not a regular file");
		free(path);
	}
	free(why);
	return rc;
}

/* The names of the files to read, each once. */
struct names {
	char **v;
	size_t n, cap;
};

/* Appends name to the files to read (once). */
static int add_file(struct names *nl, const char *name, struct zf_error *err)
{
	for (size_t i = 0; i < nl->n; i++)
		if (!strcmp(nl->v[i], name))
			return ZF_OK;
	if (nl->n == nl->cap && zf_grow(&nl->v, &nl->cap, nl->n + 1, 8))
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	if (!(nl->v[nl->n] = strdup(name)))
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	nl->n++;
	return ZF_OK;
}

/* The files of the index's weight_map, in order of first mention; the
 * parsed index is kept in *index to check against the headers. */
static int read_index(const struct zf_confine *c, cJSON **index, struct names *nl,
		      struct zf_error *err)
{
	char *path = zf_absolute_path(c->dir, "model.safetensors.index.json"), *text = NULL;
	struct zf_source *src = NULL;
	const cJSON *map, *e;
	size_t len;
	int rc;

	if (!path)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	rc = open_in(c, "model.safetensors.index.json", &src, err);
	if (rc)
		goto out;
	if (zf_source_size(src) > MAX_INDEX) {
		rc = zf_fail_at(err, ZF_EFORMAT, path, "over %zu bytes: not an index", MAX_INDEX);
		goto out;
	}
	len = (size_t)zf_source_size(src);
	text = malloc(len + 1);
	if (!text) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	rc = zf_source_pread(src, text, len, 0, err);
	if (rc)
		goto out;
	text[len] = '\0';
	*index = zf_utf8_valid(text, len) ? cJSON_ParseWithLength(text, len) : NULL;
	map = cJSON_GetObjectItemCaseSensitive(*index, "weight_map");
	if (!cJSON_IsObject(map)) {
		rc = zf_fail_at(err, ZF_EFORMAT, path, "not JSON with a \"weight_map\" object");
		goto out;
	}
	cJSON_ArrayForEach(e, map) {
		if (!cJSON_IsString(e) || !plain_name(e->valuestring) ||
		    !ends_with(e->valuestring, ".safetensors")) {
			char shown[128];

			rc = zf_fail_at(err, ZF_EFORMAT, path,
					"weight_map maps '%s' to something that is not a .safetensors file beside it",
					zf_printable(e->string ? e->string : "", shown, sizeof(shown)));
			goto out;
		}
		rc = add_file(nl, e->valuestring, err);
		if (rc)
			goto out;
	}
out:
	zf_source_close(src);
	free(text);
	if (rc)
		zf_error_where(err, path);
	free(path);
	return rc;
}

/* Without an index and model.safetensors: the one *.safetensors file. */
static int find_single(const char *dir, struct names *nl, struct zf_error *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool bin = false;
	size_t found = 0;
	int rc = ZF_OK;

	if (!d)
		return zf_fail_at(err, ZF_EIO, dir, "cannot read the folder: %s", strerror(errno));
	while (!rc && (de = readdir(d))) {
		if (ends_with(de->d_name, ".bin") || ends_with(de->d_name, ".pt") ||
		    ends_with(de->d_name, ".pth"))
			bin = true;
		if (de->d_name[0] != '.' && ends_with(de->d_name, ".safetensors") &&
		    is_file(dir, de->d_name)) {
			found++;
			rc = add_file(nl, de->d_name, err);
		}
	}
	closedir(d);
	if (rc)
		return rc;
	if (found > 1)
		return zf_fail_at(err, ZF_EFORMAT, dir,
				  "--base: %zu .safetensors files and no model.safetensors.index.json to say which are the model's",
				  found);
	if (!found)
		return zf_fail_at(err, bin ? ZF_EUNSUPPORTED : ZF_ENOTFOUND, dir,
				  bin ? "--base: the weights here are PyTorch .bin/.pt files; zerofs reads a base model's safetensors files (model.safetensors, or shards with model.safetensors.index.json)"
				      : "--base: no model.safetensors or model.safetensors.index.json here: not a Hugging Face model folder");
	return ZF_OK;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp((*(const struct zf_base_tensor *const *)a)->name,
		      (*(const struct zf_base_tensor *const *)b)->name);
}

/* No name twice in the whole folder; every name of the index in the file
 * it names. */
static int check_names(struct zf_base *b, const cJSON *index, char **names,
		       struct zf_error *err)
{
	const struct zf_base_tensor **v = malloc((b->n ? b->n : 1) * sizeof(*v));
	const cJSON *map = cJSON_GetObjectItemCaseSensitive(index, "weight_map"), *e;
	int rc = ZF_OK;
	char shown[256];

	if (!v)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	for (size_t i = 0; i < b->n; i++)
		v[i] = &b->tensors[i];
	qsort(v, b->n, sizeof(*v), cmp_name);
	for (size_t i = 1; i < b->n && !rc; i++)
		if (!strcmp(v[i - 1]->name, v[i]->name))
			rc = zf_fail_at(err, ZF_EFORMAT, zf_source_path(b->files[v[i]->file]),
					"tensor '%s' is also in '%s': two tensors of one name",
					zf_printable(v[i]->name, shown, sizeof(shown)),
					zf_source_path(b->files[v[i - 1]->file]));
	cJSON_ArrayForEach(e, map) {
		struct zf_base_tensor key = { .name = e->string };
		const struct zf_base_tensor *kp = &key, **hit;

		if (rc || !e->string)
			break;
		hit = bsearch(&kp, v, b->n, sizeof(*v), cmp_name);
		if (!hit || strcmp(names[(*hit)->file], e->valuestring))
			rc = zf_fail_at(err, ZF_EFORMAT, b->dir,
					"model.safetensors.index.json puts '%s' in '%s', which does not hold it",
					zf_printable(e->string, shown, sizeof(shown)), e->valuestring);
	}
	free(v);
	return rc;
}

int zf_base_open(const char *dir, struct zf_base **out, struct zf_error *err)
{
	struct zf_base *b = calloc(1, sizeof(*b));
	struct zf_confine c = { 0 };
	struct list l = { 0 };
	cJSON *index = NULL;
	struct names nl = { 0 };
	int rc;

	*out = NULL;
	if (!b)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	rc = resolve_dir(dir, &b->dir, err);
	if (!rc)
		rc = zf_confine_init(&c, b->dir, "the --base folder", err);
	if (!rc) {
		if (is_file(b->dir, "model.safetensors.index.json"))
			rc = read_index(&c, &index, &nl, err);
		else if (is_file(b->dir, "model.safetensors"))
			rc = add_file(&nl, "model.safetensors", err);
		else
			rc = find_single(b->dir, &nl, err);
	}
	if (!rc && nl.n >= UINT32_MAX)
		rc = zf_fail_at(err, ZF_EFORMAT, b->dir, "too many files");
	if (!rc && !(b->files = calloc(nl.n ? nl.n : 1, sizeof(*b->files))))
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
	for (size_t i = 0; !rc && i < nl.n; i++) {
		rc = open_in(&c, nl.v[i], &b->files[i], err);
		if (rc)
			break;
		b->n_files = i + 1;
		rc = read_header(b, (uint32_t)i, &l, err);
	}
	b->tensors = l.v;
	b->n = l.n;
	if (!rc)
		rc = check_names(b, index, nl.v, err);
	cJSON_Delete(index);
	if (c.dir)
		zf_confine_release(&c);
	for (size_t i = 0; i < nl.n; i++)
		free(nl.v[i]);
	free(nl.v);
	if (rc) {
		zf_base_free(b);
		return rc;
	}
	*out = b;
	return ZF_OK;
}

void zf_base_free(struct zf_base *b)
{
	if (!b)
		return;
	for (size_t i = 0; b->files && i < b->n_files; i++)
		zf_source_close(b->files[i]);
	for (size_t i = 0; i < b->n; i++)
		free(b->tensors[i].name);
	free(b->tensors);
	free(b->files);
	free(b->dir);
	free(b);
}
