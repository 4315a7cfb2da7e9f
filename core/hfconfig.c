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
 */
#include "hfdir_i.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct zf_vfile_entry *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		l->v = v;
		l->cap = cap;
	}
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

/* Reads the whole of a small file (at most max bytes) through a source,
 * NUL-terminated. */
static int read_whole(const char *path, size_t max, char **out, size_t *len,
		      struct timespec *mtime, struct zf_error *err)
{
	struct zf_source *src;
	uint64_t size;
	char *buf;
	int rc;

	rc = zf_source_open(path, &src, err);
	if (rc)
		return rc;
	size = zf_source_size(src);
	*mtime = zf_source_id(src)->mtime;
	if (size > max) {
		zf_source_close(src);
		return zf_fail_at(err, ZF_EFORMAT, path,
				  "file is %llu bytes, at most %zu expected",
				  (unsigned long long)size, max);
	}
	buf = malloc((size_t)size + 1);
	if (!buf) {
		zf_source_close(src);
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	rc = zf_source_pread(src, buf, (size_t)size, 0, err);
	zf_source_close(src);
	if (rc) {
		free(buf);
		return rc;
	}
	buf[size] = '\0';
	*out = buf;
	*len = (size_t)size;
	return ZF_OK;
}

/* config.json with torch_dtype (and dtype, when present) set to dtype. */
static int add_config(struct zf_vfiles *l, const char *path,
		      enum zf_dtype dtype, struct zf_error *err)
{
	char *text = NULL, *out = NULL;
	size_t len = 0;
	cJSON *root = NULL, *dt;
	struct timespec mtime;
	struct zf_vfile_entry *e;
	int rc;

	rc = read_whole(path, MAX_CONFIG_FILE, &text, &len, &mtime, err);
	if (rc)
		return rc;
	root = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(root)) {
		rc = zf_fail_at(err, ZF_EFORMAT, path,
				"not a JSON object; fix it or pass --config DIR");
		goto out;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(root, "torch_dtype");
	cJSON_AddStringToObject(root, "torch_dtype", zf_dtype_torch_name(dtype));
	dt = cJSON_GetObjectItemCaseSensitive(root, "dtype");
	if (dt && cJSON_IsString(dt))
		cJSON_ReplaceItemInObjectCaseSensitive(root, "dtype",
						       cJSON_CreateString(zf_dtype_torch_name(dtype)));
	out = cJSON_Print(root);
	if (!out) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	e = zf_vfiles_add(l, "config.json");
	if (!e) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	len = strlen(out);
	out[len] = '\0';
	/* json.dump style: a trailing newline */
	e->data.data = realloc(out, len + 2);
	if (!e->data.data) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	out = NULL;
	e->data.data[len] = '\n';
	e->data.data[len + 1] = '\0';
	e->f.size = len + 1;
	e->f.kind = ZF_VF_MEMORY;
	e->f.mtime = mtime;
out:
	free(out);
	free(text);
	cJSON_Delete(root);
	return rc;
}

int zf_hf_add_metadata(struct zf_vfiles *l, const char *dir,
		       enum zf_dtype dtype, bool *config_found,
		       struct zf_error *err)
{
	DIR *d;
	struct dirent *de;
	int rc = ZF_OK;

	*config_found = false;
	d = opendir(dir);
	if (!d) {
		zf_fail(err, ZF_ENOTFOUND, "cannot open the config folder");
		zf_error_where(err, dir);
		return ZF_ENOTFOUND;
	}
	while (!rc && (de = readdir(d))) {
		char *path;
		struct stat st;

		if (strcmp(de->d_name, "config.json") && !is_wanted(de->d_name))
			continue;
		path = zf_absolute_path(dir, de->d_name);
		if (!path) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			break;
		}
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
			free(path);
			continue;
		}
		if (!strcmp(de->d_name, "config.json")) {
			rc = add_config(l, path, dtype, err);
			*config_found = !rc;
			free(path);
		} else if ((uint64_t)st.st_size > MAX_META_FILE) {
			free(path);
		} else {
			struct zf_vfile_entry *e = zf_vfiles_add(l, de->d_name);
			struct zf_source *src;

			if (!e) {
				free(path);
				rc = zf_fail(err, ZF_ENOMEM, "out of memory");
				break;
			}
			/* A source, not a descriptor: a folder of a thousand
			 * tokenizer and code files holds none open. */
			rc = zf_source_open(path, &src, err);
			free(path);
			if (rc) {
				free((char *)e->f.name);
				l->n--;
				break;
			}
			/* Opened again when read. */
			zf_source_idle(src);
			e->f.kind = ZF_VF_PASSTHROUGH;
			e->f.src = src;
			e->f.size = zf_source_size(src);
			e->f.mtime = zf_source_id(src)->mtime;
		}
	}
	closedir(d);
	return rc;
}
