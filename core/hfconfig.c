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
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

struct zf_vfile *zf_vfiles_add(struct zf_vfiles *l, const char *name)
{
	struct zf_vfile *f;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct zf_vfile *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		l->v = v;
		l->cap = cap;
	}
	f = &l->v[l->n];
	memset(f, 0, sizeof(*f));
	f->fd = -1;
	f->name = strdup(name);
	if (!f->name)
		return NULL;
	l->n++;
	return f;
}

static bool is_wanted(const char *name)
{
	for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
		if (!fnmatch(wanted[i], name, 0))
			return true;
	return false;
}

static char *join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);

	if (p) {
		memcpy(p, dir, a);
		p[a] = '/';
		memcpy(p + a + 1, name, b + 1);
	}
	return p;
}

/* config.json with torch_dtype (and dtype, when present) set to dtype. */
static int add_config(struct zf_vfiles *l, const char *path,
		      enum zf_dtype dtype, struct zf_error *err)
{
	char *text = NULL, *out = NULL;
	size_t len;
	cJSON *root = NULL, *dt;
	struct stat st;
	struct zf_vfile *f;
	int rc;

	rc = zf_read_small_file(path, MAX_CONFIG_FILE, &text, &len, err);
	if (rc)
		return rc;
	root = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(root)) {
		rc = zf_fail(err, ZF_EFORMAT, "not a JSON object; fix it or pass --config DIR");
		zf_error_where(err, path);
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
	f = zf_vfiles_add(l, "config.json");
	if (!f) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	len = strlen(out);
	out[len] = '\0';
	/* json.dump style: a trailing newline */
	f->data = realloc(out, len + 2);
	if (!f->data) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	out = NULL;
	f->data[len] = '\n';
	f->data[len + 1] = '\0';
	f->size = len + 1;
	f->kind = ZF_VF_MEMORY;
	if (stat(path, &st) == 0)
		f->mtime = st.st_mtim;
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
		path = join(dir, de->d_name);
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
			struct zf_vfile *f = zf_vfiles_add(l, de->d_name);
			int fd;

			if (!f) {
				free(path);
				rc = zf_fail(err, ZF_ENOMEM, "out of memory");
				break;
			}
			rc = zf_open_ro(path, &fd, &st, err);
			if (rc) {
				free(path);
				free(f->name);
				l->n--;
				break;
			}
			f->kind = ZF_VF_PASSTHROUGH;
			f->path = path;
			f->fd = fd;
			f->size = (uint64_t)st.st_size;
			f->mtime = st.st_mtim;
		}
	}
	closedir(d);
	return rc;
}
