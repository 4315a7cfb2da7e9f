/* SPDX-License-Identifier: MIT */
/*
 * The non-weight files of the model directory: config.json (with its dtype
 * rewritten to the served one), generation config, tokenizer, processor
 * and chat template files, and remote-code Python files, taken from the
 * checkpoint folder (the HF Trainer keeps them beside global_stepN/) or
 * from a folder the user names (e.g. the base model's).
 *
 * An allowlist, not a denylist: a Trainer folder also holds optimizer,
 * scheduler, rng and trainer state, and a base model folder holds its own
 * weights; none of that may appear in the served model.
 *
 * The folder is untrusted (a mount may be shared with every user of the
 * machine): files are opened through confine.h, so a link out of the
 * folder, a FIFO, a folder or a broken link under an allowlisted name is
 * left out and reported (struct zf_left_out), never followed or dropped
 * without a word.
 */
#include "hfdir_i.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_dtype.h"
#include "confine.h"
#include "grow.h"
#include "io.h"

static const char *const wanted[] = {
	"generation_config.json", "tokenizer.json", "tokenizer_config.json",
	"special_tokens_map.json", "added_tokens.json", "tokenizer.model",
	"spiece.model", "sentencepiece.bpe.model", "vocab.json", "vocab.txt",
	"merges.txt", "chat_template.json", "chat_template.jinja",
	"preprocessor_config.json", "processor_config.json",
	"video_preprocessor_config.json", "feature_extractor_config.json",
	"*.tiktoken", "configuration_*.py", "modeling_*.py",
	"tokenization_*.py", "processing_*.py", "image_processing_*.py",
};

/* Largest config or tokenizer file served. */
#define MAX_META_FILE ((size_t)1 << 30)
#define MAX_CONFIG_FILE ((size_t)16 << 20)

struct zf_vfile_entry *zf_vfiles_add(struct zf_vfiles *l, const char *name)
{
	struct zf_vfile_entry *e;
	char *copy;

	if (l->n == l->cap && zf_grow(&l->v, &l->cap, l->n + 1, 16))
		return NULL;
	copy = strdup(name);
	if (!copy)
		return NULL;
	e = &l->v[l->n++];
	memset(e, 0, sizeof(*e));
	e->f.name = copy;
	return e;
}

static bool is_wanted(const char *name)
{
	for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
		if (!fnmatch(wanted[i], name, 0))
			return true;
	return false;
}

int zf_left_outs_add(struct zf_left_outs *lo, const char *path, char *why)
{
	char *p = strdup(path);

	if (!p || (lo->n == lo->cap && zf_grow(&lo->v, &lo->cap, lo->n + 1, 8))) {
		free(p);
		free(why);
		return -1;
	}
	lo->v[lo->n++] = (struct zf_left_out){ p, why };
	return 0;
}

/* Records path/name as left out (why is taken). */
static int note(struct zf_left_outs *lo, const char *dir, const char *name,
		char *why, struct zf_error *err)
{
	char *path = zf_absolute_path(dir, name);
	int rc = 0;

	if (!path) {
		free(why);
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	rc = zf_left_outs_add(lo, path, why);
	free(path);
	return rc ? zf_fail(err, ZF_ENOMEM, "out of memory") : ZF_OK;
}

/* Reads the whole of a small source (at most max bytes), NUL-terminated. */
static int read_whole(struct zf_source *src, size_t max, char **out, size_t *len,
		      struct zf_error *err)
{
	uint64_t size = zf_source_size(src);
	char *buf;
	int rc;

	if (size > max)
		return zf_fail_at(err, ZF_EFORMAT, zf_source_path(src),
				  "file is %llu bytes, at most %zu expected",
				  (unsigned long long)size, max);
	buf = malloc((size_t)size + 1);
	if (!buf)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	rc = zf_source_pread(src, buf, (size_t)size, 0, err);
	if (rc) {
		free(buf);
		return rc;
	}
	buf[size] = '\0';
	*out = buf;
	*len = (size_t)size;
	return ZF_OK;
}

/*
 * config.json: the source's bytes with the dtype value set (config_dtype.h).
 * The file keeps its source: every read of the served copy checks that
 * the source is unchanged, as a passthrough file's reads do, and its
 * owner and mode decide who may read it.
 */
static int add_config(struct zf_vfiles *l, struct zf_source *src,
		      enum zf_dtype dtype, struct zf_error *err)
{
	char *text = NULL, *out = NULL;
	size_t len = 0, out_len = 0;
	struct zf_vfile_entry *e;
	int rc;

	rc = read_whole(src, MAX_CONFIG_FILE, &text, &len, err);
	if (!rc)
		rc = zf_config_set_dtype(text, len, zf_dtype_torch_name(dtype), &out,
					 &out_len, err);
	if (rc) {
		/* A loader would fail on it too: say where to look. */
		if (err && err->status == ZF_EFORMAT) {
			size_t n = strlen(err->msg);

			snprintf(err->msg + n, sizeof(err->msg) - n,
				 "; fix it or pass --config DIR");
		}
		zf_error_where(err, zf_source_path(src));
		goto out;
	}
	e = zf_vfiles_add(l, "config.json");
	if (!e) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	e->data.data = out;
	out = NULL;
	e->f.size = out_len;
	e->f.kind = ZF_VF_MEMORY;
	e->f.mtime = zf_source_id(src)->mtime;
	zf_source_idle(src); /* kept to be checked, not open */
	e->f.src = src;
	src = NULL;
out:
	zf_source_close(src);
	free(out);
	free(text);
	return rc;
}

/* A tokenizer, processor or code file, copied through as it is. */
static int add_passthrough(struct zf_vfiles *l, const char *name,
			   struct zf_source *src, struct zf_error *err)
{
	struct zf_vfile_entry *e = zf_vfiles_add(l, name);

	if (!e) {
		zf_source_close(src);
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	/* A source, not a descriptor: a folder of a thousand tokenizer and
	 * code files holds none open; each is opened again when read. */
	zf_source_idle(src);
	e->f.kind = ZF_VF_PASSTHROUGH;
	e->f.src = src;
	e->f.size = zf_source_size(src);
	e->f.mtime = zf_source_id(src)->mtime;
	return ZF_OK;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int zf_hf_add_metadata(struct zf_vfiles *l, struct zf_left_outs *lo,
		       const char *dir, bool chosen, enum zf_dtype dtype,
		       bool *config_found, struct zf_error *err)
{
	struct zf_confine c;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int rc;

	*config_found = false;
	rc = zf_confine_init(&c, dir, chosen ? "the --config folder" : "the checkpoint folder",
			     err);
	if (rc)
		return rc;
	d = opendir(dir);
	if (!d) {
		zf_confine_release(&c);
		zf_fail(err, ZF_ENOTFOUND, "cannot open the config folder: %s", strerror(errno));
		zf_error_where(err, dir);
		return ZF_ENOTFOUND;
	}
	/* Names first, in order: what is served and what is said about the
	 * rest does not depend on the folder's listing order. */
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, "config.json") && !is_wanted(de->d_name))
			continue;
		if (n == cap && zf_grow(&names, &cap, n + 1, 16))
			break;
		if (!(names[n] = strdup(de->d_name)))
			break;
		n++;
	}
	if (de)
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
	closedir(d);
	if (names)
		qsort(names, n, sizeof(*names), cmp_name);

	for (size_t i = 0; !rc && i < n; i++) {
		struct zf_source *src;
		char *why;

		rc = zf_confine_open(&c, names[i], &src, &why, err);
		if (rc)
			break;
		if (!src) {
			rc = note(lo, dir, names[i], why, err);
			continue;
		}
		if (!strcmp(names[i], "config.json")) {
			rc = add_config(l, src, dtype, err);
			*config_found = !rc;
		} else if (zf_source_size(src) > MAX_META_FILE) {
			char *w = NULL;

			if (asprintf(&w, "%llu bytes, more than the %zu a metadata file may have",
				     (unsigned long long)zf_source_size(src), MAX_META_FILE) < 0)
				w = NULL;
			zf_source_close(src);
			rc = w ? note(lo, dir, names[i], w, err)
			       : zf_fail(err, ZF_ENOMEM, "out of memory");
		} else {
			rc = add_passthrough(l, names[i], src, err);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	zf_confine_release(&c);
	return rc;
}
