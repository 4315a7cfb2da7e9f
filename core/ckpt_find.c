/* SPDX-License-Identifier: MIT */
/*
 * Finds the tag folder of a checkpoint and the rank files in it, from
 * names alone (no file is parsed here).
 *
 * Accepted: a DeepSpeed save folder (`latest` names the tag), a Hugging
 * Face Trainer checkpoint-N/ folder (the same, plus config and tokenizer
 * files beside `latest`), or a tag folder itself (global_stepN/, XTuner's
 * iter_N.pth/, which has no `latest`). Rank files are matched by pattern
 * and ordered by their rank number (rank 10 after rank 9), and every rank
 * from 0 to N-1 must be there.
 */
#include "ckpt_i.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"

#define MAX_RANKS 65536

static char *path_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 2);

	if (!p)
		return NULL;
	memcpy(p, a, la);
	while (la > 1 && p[la - 1] == '/')
		la--;
	p[la] = '/';
	memcpy(p + la + 1, b, lb + 1);
	return p;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *dir, const char *name)
{
	char *p = path_join(dir, name);
	struct stat st;
	bool ok = p && stat(p, &st) == 0;

	free(p);
	return ok;
}

/* Parses a decimal number of at most 9 digits at *s, advancing it. */
static bool parse_num(const char **s, uint32_t *v)
{
	const char *p = *s;
	uint32_t n = 0;
	int digits = 0;

	while (*p >= '0' && *p <= '9' && digits < 9) {
		n = n * 10 + (uint32_t)(*p - '0');
		p++;
		digits++;
	}
	if (!digits || (*p >= '0' && *p <= '9'))
		return false;
	*s = p;
	*v = n;
	return true;
}

static bool eat(const char **s, const char *lit)
{
	size_t n = strlen(lit);

	if (strncmp(*s, lit, n))
		return false;
	*s += n;
	return true;
}

enum rank_file { RF_NONE, RF_OPTIM, RF_MODEL_RANK, RF_MODEL_MP };

/*
 * Classifies a file name:
 *   [bf16_|fp16_]zero_pp_rank_<r>_mp_rank_<m>_optim_states.pt -> RF_OPTIM
 *   zero_pp_rank_<r>_mp_rank_<m>_model_states.pt           -> RF_MODEL_RANK
 *   mp_rank_<m>_model_states.pt                            -> RF_MODEL_MP
 */
static enum rank_file classify(const char *name, uint32_t *rank, uint32_t *mp)
{
	const char *s = name;
	bool prefixed = eat(&s, "bf16_") || eat(&s, "fp16_");

	*rank = 0;
	if (!prefixed && eat(&s, "mp_rank_")) {
		if (parse_num(&s, mp) && !strcmp(s, "_model_states.pt"))
			return RF_MODEL_MP;
		return RF_NONE;
	}
	if (!eat(&s, "zero_pp_rank_") || !parse_num(&s, rank) ||
	    !eat(&s, "_mp_rank_") || !parse_num(&s, mp))
		return RF_NONE;
	if (!strcmp(s, "_optim_states.pt"))
		return RF_OPTIM;
	if (!prefixed && !strcmp(s, "_model_states.pt"))
		return RF_MODEL_RANK;
	return RF_NONE;
}

struct found {
	char **names; /* indexed by rank, NULL when missing */
	uint32_t cap;
	uint32_t max_rank_plus1;
};

static int found_put(struct found *f, uint32_t rank, const char *name,
		     const char *dir, struct zf_error *err)
{
	if (rank >= MAX_RANKS) {
		zf_fail(err, ZF_EUNSUPPORTED, "rank %u in '%s' is beyond %u ranks",
			rank, name, MAX_RANKS);
		zf_error_where(err, dir);
		return ZF_EUNSUPPORTED;
	}
	if (rank >= f->cap) {
		uint32_t cap = f->cap ? f->cap : 16;
		char **n;

		while (cap <= rank)
			cap *= 2;
		n = realloc(f->names, cap * sizeof(*n));
		if (!n)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
		memset(n + f->cap, 0, (cap - f->cap) * sizeof(*n));
		f->names = n;
		f->cap = cap;
	}
	if (f->names[rank]) {
		zf_fail(err, ZF_EFORMAT,
			"two files for rank %u: '%s' and '%s'", rank,
			f->names[rank], name);
		zf_error_where(err, dir);
		return ZF_EFORMAT;
	}
	f->names[rank] = strdup(name);
	if (!f->names[rank])
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	if (rank + 1 > f->max_rank_plus1)
		f->max_rank_plus1 = rank + 1;
	return ZF_OK;
}

static void found_release(struct found *f)
{
	for (uint32_t i = 0; i < f->cap; i++)
		free(f->names[i]);
	free(f->names);
	memset(f, 0, sizeof(*f));
}

/*
 * The name rank `rank`'s file would have, following the pattern of
 * `example` (another rank's file of the same kind): the digits after
 * "zero_pp_rank_" are replaced.
 */
void zf_rank_file_name(const char *example, uint32_t rank, char *buf,
		       size_t size)
{
	const char *p = strstr(example, "zero_pp_rank_");
	const char *q;

	if (!p) {
		snprintf(buf, size, "rank %u", rank);
		return;
	}
	p += strlen("zero_pp_rank_");
	for (q = p; *q >= '0' && *q <= '9'; q++)
		;
	snprintf(buf, size, "%.*s%u%s", (int)(p - example), example, rank, q);
}

/* Checks ranks 0..n-1 are all present; names the missing files. */
static int found_complete(const struct found *f, uint32_t n, const char *kind,
			  const char *dir, struct zf_error *err)
{
	char names[512] = "";
	const char *example = NULL;
	uint32_t missing = 0;
	size_t used = 0;

	for (uint32_t r = 0; r < n && r < f->cap && !example; r++)
		example = f->names[r];
	for (uint32_t r = 0; r < n; r++) {
		char one[256];

		if (r < f->cap && f->names[r])
			continue;
		if (missing++ < 4 && example) {
			zf_rank_file_name(example, r, one, sizeof(one));
			used += (size_t)snprintf(names + used, sizeof(names) - used,
						 "%s'%s'", used ? ", " : "", one);
		}
	}
	if (!missing)
		return ZF_OK;
	zf_fail(err, ZF_ENOTFOUND, "missing %u of %u %s files: %s%s", missing,
		n, kind, names, missing > 4 ? ", ..." : "");
	zf_error_where(err, dir);
	return ZF_ENOTFOUND;
}

static int scan_tag_dir(const char *dir, struct zf_ckpt_files *out,
			struct zf_error *err)
{
	struct found optim = { 0 }, model = { 0 };
	char *model_mp = NULL;
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = ZF_OK;

	if (!d) {
		zf_fail(err, errno == ENOENT ? ZF_ENOTFOUND : ZF_EIO,
			"cannot open folder: %s", strerror(errno));
		zf_error_where(err, dir);
		return err ? err->status : ZF_EIO;
	}
	while ((de = readdir(d))) {
		uint32_t rank, mp;
		enum rank_file kind = classify(de->d_name, &rank, &mp);

		if (kind == RF_NONE)
			continue;
		if (mp != 0) {
			zf_fail(err, ZF_EUNSUPPORTED,
				"'%s' belongs to tensor-parallel rank %u; zerofs reads checkpoints without tensor parallelism (mp_rank_00 only)",
				de->d_name, mp);
			zf_error_where(err, dir);
			rc = ZF_EUNSUPPORTED;
			goto out;
		}
		if (kind == RF_OPTIM)
			rc = found_put(&optim, rank, de->d_name, dir, err);
		else if (kind == RF_MODEL_RANK)
			rc = found_put(&model, rank, de->d_name, dir, err);
		else if (!model_mp && !(model_mp = strdup(de->d_name)))
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		if (rc)
			goto out;
	}
	if (!optim.max_rank_plus1) {
		if (model.max_rank_plus1 || model_mp)
			zf_fail(err, ZF_ENOTFOUND,
				"no '*_optim_states.pt' files beside the model states: the fp32 weights live there; was the checkpoint saved without optimizer state, or only partly copied?");
		else
			zf_fail(err, ZF_ENOTFOUND,
				"no DeepSpeed checkpoint files ('*_model_states.pt', '*_optim_states.pt') in this folder");
		zf_error_where(err, dir);
		rc = err ? err->status : ZF_ENOTFOUND;
		goto out;
	}
	/* ZeRO-3 pairs a model and an optimizer file per rank: a rank with
	 * one but not the other beyond the other kind's last rank is an extra
	 * file (another run, or a copy in progress), not a missing one. */
	if (model.max_rank_plus1 && model.max_rank_plus1 != optim.max_rank_plus1) {
		bool more_optim = optim.max_rank_plus1 > model.max_rank_plus1;
		const struct found *big = more_optim ? &optim : &model;
		uint32_t r = big->max_rank_plus1 - 1;

		zf_fail(err, ZF_EFORMAT,
			"rank %u has '%s' but no %s states file, while ranks below %u have both: an extra file from another run, or a partial copy",
			r, big->names[r], more_optim ? "model" : "optimizer",
			more_optim ? model.max_rank_plus1 : optim.max_rank_plus1);
		zf_error_where(err, dir);
		rc = ZF_EFORMAT;
		goto out;
	}
	/* The highest rank seen of either kind sets the world size, so that
	 * a missing last rank is named rather than shrinking the world. */
	out->world_size = optim.max_rank_plus1;
	if (model.max_rank_plus1 > out->world_size)
		out->world_size = model.max_rank_plus1;
	rc = found_complete(&optim, out->world_size, "optimizer states", dir, err);
	if (rc)
		goto out;
	if (model.max_rank_plus1) {
		/* ZeRO-3: one model file per rank. */
		rc = found_complete(&model, out->world_size, "model states", dir, err);
		if (rc)
			goto out;
		out->n_model = out->world_size;
	} else if (model_mp) {
		out->n_model = 1;
	} else {
		zf_fail(err, ZF_ENOTFOUND,
			"no '*_model_states.pt' file: it holds the parameter names and shapes");
		zf_error_where(err, dir);
		rc = ZF_ENOTFOUND;
		goto out;
	}
	out->optim = calloc(out->world_size, sizeof(char *));
	out->model = calloc(out->n_model, sizeof(char *));
	if (!out->optim || !out->model) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t r = 0; r < out->world_size; r++)
		if (!(out->optim[r] = path_join(dir, optim.names[r]))) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
	for (uint32_t r = 0; r < out->n_model; r++)
		if (!(out->model[r] = path_join(dir, model_mp && !model.max_rank_plus1 ? model_mp : model.names[r]))) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
out:
	closedir(d);
	found_release(&optim);
	found_release(&model);
	free(model_mp);
	return rc;
}

static bool has_rank_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool yes = false;

	if (!d)
		return false;
	while (!yes && (de = readdir(d))) {
		uint32_t r, mp;

		yes = classify(de->d_name, &r, &mp) != RF_NONE;
	}
	closedir(d);
	return yes;
}

/* Tag folders directly under dir that hold rank files. */
static int list_tags(const char *dir, char *buf, size_t size, int *count,
		     char **only)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t used = 0;

	*count = 0;
	*only = NULL;
	buf[0] = '\0';
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char *p;

		if (de->d_name[0] == '.')
			continue;
		p = path_join(dir, de->d_name);
		if (p && is_dir(p) && has_rank_files(p)) {
			(*count)++;
			if (used < size)
				used += (size_t)snprintf(buf + used, size - used, "%s'%s'",
							 used ? ", " : "", de->d_name);
			free(*only);
			*only = strdup(de->d_name);
		}
		free(p);
	}
	closedir(d);
	return 0;
}

/* A copy of path without trailing slashes ("/" stays "/"), or NULL. */
static char *trimmed_dup(const char *path)
{
	char *p = strdup(path);
	size_t n;

	if (!p)
		return NULL;
	n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';
	return p;
}

static char *dirname_dup(const char *path)
{
	char *p = trimmed_dup(path), *slash;

	if (!p)
		return NULL;
	slash = strrchr(p, '/');
	if (!slash) {
		free(p);
		return strdup(".");
	}
	if (slash == p)
		slash[1] = '\0';
	else
		*slash = '\0';
	return p;
}

static char *basename_dup(const char *path)
{
	char *p = trimmed_dup(path), *slash, *b;

	if (!p)
		return NULL;
	slash = strrchr(p, '/');
	if (!slash)
		return p;
	b = strdup(slash + 1);
	free(p);
	return b;
}

/* A tag must name a folder directly inside the save folder. */
static bool tag_is_safe(const char *tag)
{
	return tag[0] && strcmp(tag, ".") && strcmp(tag, "..") &&
	       !strchr(tag, '/');
}

/*
 * The tag mmengine's `last_checkpoint` (a path, usually absolute, to the
 * newest iter_N.pth) names inside dir, or NULL: only its last component
 * is used, and only when dir holds such a tag folder with rank files.
 */
static char *mmengine_last(const char *dir)
{
	char *p = path_join(dir, "last_checkpoint"), *text = NULL, *tag = NULL;
	size_t len;

	if (!p || zf_read_small_file(p, 4096, &text, &len, NULL)) {
		free(p);
		return NULL;
	}
	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		text[--len] = '\0';
	while (len > 1 && text[len - 1] == '/')
		text[--len] = '\0';
	tag = basename_dup(text);
	free(text);
	free(p);
	if (tag && tag_is_safe(tag)) {
		char *t = path_join(dir, tag);
		bool ok = t && is_dir(t) && has_rank_files(t);

		free(t);
		if (ok)
			return tag;
	}
	free(tag);
	return NULL;
}

int zf_ckpt_locate(const char *path, const char *tag,
		   struct zf_ckpt_files *out, struct zf_error *err)
{
	char *latest_path = NULL, *latest = NULL;
	int rc = ZF_OK;

	memset(out, 0, sizeof(*out));
	if (!is_dir(path)) {
		struct stat st;

		if (stat(path, &st) < 0)
			zf_fail(err, ZF_ENOTFOUND, "no such file or folder");
		else
			zf_fail(err, ZF_EFORMAT,
				"not a folder: give the checkpoint folder (the one with 'latest', or a tag folder such as global_step100/)");
		zf_error_where(err, path);
		return err ? err->status : ZF_ENOTFOUND;
	}

	if (!tag && has_rank_files(path)) {
		/* The tag folder itself: global_stepN/, iter_N.pth/. */
		char *parent = dirname_dup(path);

		out->layout = ZF_LAYOUT_TAGDIR;
		out->tag = basename_dup(path);
		out->tag_dir = strdup(path);
		if (parent && exists(parent, "config.json"))
			out->hf_dir = strdup(parent);
		free(parent);
		if (!out->tag || !out->tag_dir) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		rc = scan_tag_dir(out->tag_dir, out, err);
		goto out;
	}

	if (tag) {
		if (!tag_is_safe(tag)) {
			rc = zf_fail(err, ZF_EUSAGE,
				     "tag '%s' is not a folder name", tag);
			goto out;
		}
		out->tag = strdup(tag);
	} else {
		size_t len;

		latest_path = path_join(path, "latest");
		if (!latest_path) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		rc = zf_read_small_file(latest_path, 4096, &latest, &len, err);
		if (rc == ZF_ENOTFOUND) {
			char tags[512], *only = NULL;
			int count;

			zf_error_clear(err);
			list_tags(path, tags, sizeof(tags), &count, &only);
			if (count == 1) {
				/* No `latest`, one tag folder: unambiguous. */
				out->tag = only;
				rc = ZF_OK;
			} else if (count > 1 && (out->tag = mmengine_last(path))) {
				/* An XTuner/mmengine work_dir names its newest
				 * checkpoint in `last_checkpoint`. */
				free(only);
				rc = ZF_OK;
			} else {
				free(only);
				if (count)
					zf_fail(err, ZF_ENOTFOUND,
						"no 'latest' file and %d tag folders (%s): choose one with --tag",
						count, tags);
				else
					zf_fail(err, ZF_ENOTFOUND,
						"no 'latest' file and no tag folder with DeepSpeed rank files: not a DeepSpeed checkpoint");
				zf_error_where(err, path);
				rc = ZF_ENOTFOUND;
				goto out;
			}
		} else if (rc) {
			goto out;
		} else {
			/* DeepSpeed writes the tag with no newline; tolerate one. */
			while (len && (latest[len - 1] == '\n' || latest[len - 1] == '\r' ||
				       latest[len - 1] == ' ' || latest[len - 1] == '\t'))
				latest[--len] = '\0';
			if (strlen(latest) != len || !tag_is_safe(latest)) {
				rc = zf_fail(err, ZF_EFORMAT,
					     "does not hold a tag folder name (%zu bytes)", len);
				zf_error_where(err, latest_path);
				goto out;
			}
			out->tag = latest;
			latest = NULL;
		}
	}
	if (!out->tag) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	out->tag_dir = path_join(path, out->tag);
	if (!out->tag_dir) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	if (!is_dir(out->tag_dir)) {
		if (latest_path && !tag)
			zf_fail(err, ZF_ENOTFOUND,
				"names tag '%s', but there is no folder '%s'",
				out->tag, out->tag_dir);
		else
			zf_fail(err, ZF_ENOTFOUND, "no tag folder '%s'", out->tag);
		zf_error_where(err, latest_path && !tag ? latest_path : path);
		rc = ZF_ENOTFOUND;
		goto out;
	}
	out->layout = (exists(path, "config.json") || exists(path, "trainer_state.json"))
			      ? ZF_LAYOUT_TRAINER
			      : ZF_LAYOUT_DEEPSPEED;
	out->hf_dir = strdup(path);
	if (!out->hf_dir) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	rc = scan_tag_dir(out->tag_dir, out, err);
out:
	free(latest_path);
	free(latest);
	if (rc)
		zf_ckpt_files_release(out);
	return rc;
}

void zf_ckpt_files_release(struct zf_ckpt_files *f)
{
	if (f->optim)
		for (uint32_t i = 0; i < f->world_size; i++)
			free(f->optim[i]);
	if (f->model)
		for (uint32_t i = 0; i < f->n_model; i++)
			free(f->model[i]);
	free(f->optim);
	free(f->model);
	free(f->tag);
	free(f->tag_dir);
	free(f->hf_dir);
	memset(f, 0, sizeof(*f));
}
