/* SPDX-License-Identifier: MIT */
/*
 * Finds the tag folder of a checkpoint from folder and file names alone
 * (no checkpoint file is parsed here); ckpt_scan.c then names its rank
 * files.
 *
 * Accepted: a DeepSpeed save folder (`latest` names the tag), a Hugging
 * Face Trainer checkpoint-N/ folder (the same, plus config and tokenizer
 * files beside `latest`), or a tag folder itself (global_stepN/, XTuner's
 * iter_N.pth/, which has no `latest`). A folder without `latest` is a run
 * folder: its checkpoint is chosen as a resume would choose it
 * (runfolder.c: mmengine's `last_checkpoint`, the Trainer's highest
 * checkpoint-N, or the only one); a folder so chosen that is itself a save folder (its own
 * `latest`, as in an XTuner iter_N.pth/ holding global_stepN/, or a Trainer
 * run's checkpoint-N/) is followed one level. `latest` is stripped as
 * DeepSpeed strips it, and its text is never shown whole.
 */
#include "ckpt_scan_i.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"
#include "zerofs/text.h"
#include "zerofs/runfolder.h"

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *dir, const char *name)
{
	char *p = zf_ckpt_path_join(dir, name);
	struct stat st;
	bool ok = p && stat(p, &st) == 0;

	free(p);
	return ok;
}

/*
 * A short excerpt of a name for a message, where every character that is
 * not printable ASCII is shown by its code (\u{feff}, \x1b), so that a
 * byte order mark or a no-break space in a tag is seen, not guessed.
 */
const char *zf_ckpt_excerpt(const char *s, char *buf, size_t size)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), used = 0;

	for (size_t i = 0; i < n;) {
		size_t j = i;
		uint32_t c;
		char one[16];

		if (!zf_utf8_next(u, n, &j, &c)) {
			snprintf(one, sizeof(one), "\\x%02x", u[i]);
			j = i + 1;
		} else if (c >= 0x20 && c < 0x7f && c != '\\') {
			snprintf(one, sizeof(one), "%c", (char)c);
		} else {
			snprintf(one, sizeof(one), c < 0x80 ? "\\x%02x" : "\\u{%x}", c);
		}
		if (used + strlen(one) + 4 >= size) {
			snprintf(buf + used, size - used, "...");
			return buf;
		}
		used += (size_t)snprintf(buf + used, size - used, "%s", one);
		i = j;
	}
	buf[used] = '\0';
	return buf;
}

static bool is_file(const char *dir, const char *name)
{
	char *p = zf_ckpt_path_join(dir, name);
	struct stat st;
	bool ok = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);

	free(p);
	return ok;
}

/*
 * A folder that holds a checkpoint one level down: a tag folder (rank
 * files), or a save folder of its own (a `latest` file): an HF Trainer
 * run's checkpoint-N/, or an XTuner iter_N.pth/ that DeepSpeed was told
 * to save into, with its own `latest` and global_stepN/.
 */
bool zf_ckpt_holds(const char *dir)
{
	return zf_ckpt_has_rank_files(dir) || is_file(dir, "latest");
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
 * Python's str.isspace(), which is what str.strip() removes: DeepSpeed
 * reads `latest` with `fd.read().strip()` (every release, engine.py
 * load_checkpoint and zero_to_fp32.py), mmengine its `last_checkpoint`
 * the same way. A byte order mark is not white space there, so not here.
 */
static bool py_space(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) ||
	       c == 0x85 || c == 0xa0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
	       c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Why a text file's content is no tag folder name (for messages that
 * must not show the content itself). */
enum tag_text {
	TT_OK,
	TT_NOT_UTF8,	/* Python would fail to decode it */
	TT_EMPTY,	/* nothing but white space */
	TT_CONTROL,	/* line breaks or control characters inside */
	TT_PATH,	/* '/', "." or "..": not a folder inside this one */
	TT_LONG,	/* longer than a file name can be */
};

/*
 * Cuts text (len bytes) as Python's str.strip() does, in place, and says
 * whether what is left can name a folder here. *out points into text.
 */
static enum tag_text strip_tag(char *text, size_t len, char **out)
{
	const unsigned char *u = (const unsigned char *)text;
	size_t i = 0, start = len, end = 0;

	while (i < len) {
		size_t j = i;
		uint32_t c;

		if (!zf_utf8_next(u, len, &j, &c))
			return TT_NOT_UTF8;
		if (!py_space(c)) {
			if (start == len)
				start = i;
			end = j;
		}
		i = j;
	}
	if (start == len)
		return TT_EMPTY;
	text[end] = '\0';
	*out = text + start;
	for (i = start; i < end; i++)
		if (u[i] < 0x20 || u[i] == 0x7f)
			return TT_CONTROL;
	if (end - start > 255)
		return TT_LONG;
	if (!tag_is_safe(*out))
		return TT_PATH;
	return TT_OK;
}

/*
 * The tag the `latest` file of save folder dir holds, stripped as
 * DeepSpeed strips it, into *tag (owned). *latest_path (owned) is the
 * file, for messages. ZF_ENOTFOUND without a message when there is no
 * `latest`. A file that is not a tag folder name is refused without
 * showing its content: `latest` may be a link to any file.
 */
int zf_ckpt_read_latest(const char *dir, char **tag, char **latest_path,
			struct zf_error *err)
{
	char *text = NULL, *name = NULL;
	size_t len;
	int rc;

	*tag = NULL;
	*latest_path = zf_ckpt_path_join(dir, "latest");
	if (!*latest_path)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	rc = zf_read_small_file(*latest_path, 4096, &text, &len, err);
	if (rc == ZF_ENOTFOUND) {
		zf_error_clear(err);
		return ZF_ENOTFOUND;
	}
	if (rc)
		return rc;
	switch (strip_tag(text, len, &name)) {
	case TT_OK:
		*tag = strdup(name);
		free(text);
		return *tag ? ZF_OK : zf_fail(err, ZF_ENOMEM, "out of memory");
	case TT_NOT_UTF8:
		zf_fail(err, ZF_EFORMAT,
			"does not hold a tag folder name: %zu bytes that are not UTF-8 text", len);
		break;
	case TT_EMPTY:
		zf_fail(err, ZF_EFORMAT,
			"is empty: it should hold the name of the tag folder, e.g. global_step100 (%zu bytes of white space)",
			len);
		break;
	case TT_CONTROL:
		zf_fail(err, ZF_EFORMAT,
			"does not hold a tag folder name: %zu bytes with line breaks or control characters", len);
		break;
	case TT_PATH:
		zf_fail(err, ZF_EFORMAT,
			"does not hold a tag folder name: a path, '.' or '..', where the name of a folder beside 'latest' belongs");
		break;
	case TT_LONG:
		zf_fail(err, ZF_EFORMAT,
			"does not hold a tag folder name: %zu bytes, longer than a file name can be", len);
		break;
	}
	free(text);
	zf_error_where(err, *latest_path);
	return ZF_EFORMAT;
}

/*
 * The tag mmengine's `last_checkpoint` (a path, usually absolute, to the
 * newest iter_N.pth) names inside dir, or NULL: only its last component
 * is used, and only when dir holds such a folder with a checkpoint in it.
 */
char *zf_ckpt_last_checkpoint(const char *dir)
{
	char *p = zf_ckpt_path_join(dir, "last_checkpoint"), *text = NULL, *tag = NULL;
	char *name = NULL;
	size_t len;

	if (!p || zf_read_small_file(p, 4096, &text, &len, NULL)) {
		free(p);
		return NULL;
	}
	free(p);
	/* A path: '/' is expected here, the other reasons are not. */
	switch (strip_tag(text, len, &name)) {
	case TT_OK:
	case TT_PATH:
		len = strlen(name);
		while (len > 1 && name[len - 1] == '/')
			name[--len] = '\0';
		tag = basename_dup(name);
		break;
	default:
		break;
	}
	free(text);
	if (tag && tag_is_safe(tag)) {
		char *t = zf_ckpt_path_join(dir, tag);
		bool ok = t && is_dir(t) && zf_ckpt_holds(t);

		free(t);
		if (ok)
			return tag;
	}
	free(tag);
	return NULL;
}

/* mmengine's CheckpointHook names: iter_N.pth, epoch_N.pth (folders when
 * DeepSpeed saved them). */
static bool is_xtuner_tag(const char *name)
{
	const char *p = name;

	if (!strncmp(p, "iter_", 5))
		p += 5;
	else if (!strncmp(p, "epoch_", 6))
		p += 6;
	else
		return false;
	if (*p < '0' || *p > '9')
		return false;
	while (*p >= '0' && *p <= '9')
		p++;
	return !strcmp(p, ".pth");
}

/* The last component of path is checkpoint-N (transformers'
 * PREFIX_CHECKPOINT_DIR). */
static bool is_trainer_name(const char *path)
{
	char *base = basename_dup(path);
	bool yes = base && !strncmp(base, "checkpoint-", 11) && base[11];

	for (const char *p = yes ? base + 11 : ""; yes && *p; p++)
		yes = *p >= '0' && *p <= '9';
	free(base);
	return yes;
}

/*
 * No `latest` in save folder dir: the folder a resume would load, by the
 * rules of runfolder.h, into *tag; *pick and *n say how and among how
 * many.
 */
static int choose_tag(const char *dir, char **tag, enum zf_pick *pick,
		      size_t *n, struct zf_error *err)
{
	struct zf_runfolder *run = NULL;
	size_t i;
	int rc = zf_runfolder_scan(dir, &run, err);

	if (!rc)
		rc = zf_runfolder_pick(run, &i, pick, err);
	if (!rc) {
		*n = zf_runfolder_count(run);
		*tag = strdup(zf_runfolder_entry(run, i)->name);
		if (!*tag)
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	zf_runfolder_free(run);
	return rc;
}

/* "the tag folder `latest_path` names does not exist", showing the name
 * only when `latest` is a file of its own, never the content of a file it
 * links to, and then only a short escaped excerpt. */
static void no_tag_folder(const char *tag, const char *latest_path,
			  const char *dir, struct zf_error *err)
{
	char shown[48];
	struct stat st;

	if (!latest_path) {
		zf_fail(err, ZF_ENOTFOUND, "no tag folder '%s'",
			zf_ckpt_excerpt(tag, shown, sizeof(shown)));
		zf_error_where(err, dir);
	} else if (lstat(latest_path, &st) == 0 && S_ISLNK(st.st_mode)) {
		zf_fail(err, ZF_ENOTFOUND,
			"is a symbolic link to a file whose text names no folder beside it; its text is not shown");
		zf_error_where(err, latest_path);
	} else {
		zf_fail(err, ZF_ENOTFOUND,
			"names tag '%s', but there is no such folder beside it",
			zf_ckpt_excerpt(tag, shown, sizeof(shown)));
		zf_error_where(err, latest_path);
	}
}

int zf_ckpt_locate(const char *path, const char *tag,
		   struct zf_ckpt_files *out, struct zf_error *err)
{
	char *save = NULL, *latest_path = NULL, *tag_dir = NULL;
	char *name = NULL, *outer = NULL;
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

	if (!tag && zf_ckpt_has_rank_files(path)) {
		/* The tag folder itself: global_stepN/, iter_N.pth/. */
		char *parent = dirname_dup(path);

		out->layout = ZF_LAYOUT_TAGDIR;
		out->pick = ZF_PICK_GIVEN;
		out->tag = basename_dup(path);
		out->tag_dir = strdup(path);
		if (parent && exists(parent, "config.json"))
			out->hf_dir = strdup(parent);
		free(parent);
		if (!out->tag || !out->tag_dir) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		if (out->tag && is_xtuner_tag(out->tag))
			out->layout = ZF_LAYOUT_XTUNER;
		rc = zf_ckpt_scan_tag_dir(out->tag_dir, out, err);
		goto out;
	}

	save = strdup(path);
	if (!save) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	if (tag) {
		char shown[48];

		if (!tag_is_safe(tag)) {
			rc = zf_fail(err, ZF_EUSAGE, "tag '%s' is not a folder name",
				     zf_ckpt_excerpt(tag, shown, sizeof(shown)));
			goto out;
		}
		name = strdup(tag);
		if (!name) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		out->pick = ZF_PICK_GIVEN;
	} else {
		out->pick = ZF_PICK_LATEST;
		rc = zf_ckpt_read_latest(save, &name, &latest_path, err);
		if (rc == ZF_ENOTFOUND) {
			free(latest_path);
			latest_path = NULL;
			rc = choose_tag(save, &name, &out->pick, &out->n_choices, err);
		}
		if (rc)
			goto out;
	}
	/*
	 * The folder chosen may be a save folder of its own, with a `latest`
	 * and no rank files (an XTuner iter_N.pth/ holding global_stepN/, a
	 * Trainer checkpoint-N/ in a run folder): follow its `latest`, once.
	 */
	for (;;) {
		tag_dir = zf_ckpt_path_join(save, name);
		if (!tag_dir) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		if (!is_dir(tag_dir)) {
			no_tag_folder(name, latest_path, save, err);
			rc = ZF_ENOTFOUND;
			goto out;
		}
		if (outer || zf_ckpt_has_rank_files(tag_dir) || !is_file(tag_dir, "latest"))
			break;
		free(save);
		save = tag_dir;
		tag_dir = NULL;
		outer = name;
		free(latest_path);
		rc = zf_ckpt_read_latest(save, &name, &latest_path, err);
		if (rc == ZF_ENOTFOUND) { /* removed since is_file() */
			rc = zf_fail(err, ZF_ECHANGED, "disappeared while being read");
			zf_error_where(err, latest_path);
		}
		if (rc)
			goto out;
	}
	if (outer) {
		/* Shown as the tag: which of the outer folders was read. */
		char *both = zf_ckpt_path_join(outer, name);

		if (!both) {
			rc = zf_fail(err, ZF_ENOMEM, "out of memory");
			goto out;
		}
		free(name);
		name = both;
	}
	out->layout = ZF_LAYOUT_DEEPSPEED;
	{
		/* XTuner's names: an iter_N.pth/ given, chosen or followed, or a
		 * work_dir with mmengine's last_checkpoint. */
		char *base = basename_dup(path);

		if ((base && is_xtuner_tag(base)) || is_xtuner_tag(name) ||
		    (outer && is_xtuner_tag(outer)) || is_file(path, "last_checkpoint"))
			out->layout = ZF_LAYOUT_XTUNER;
		free(base);
	}
	/* The Trainer's: files it writes beside `latest`, or its names (a
	 * checkpoint-N/ given, or chosen in a run folder). */
	if (out->layout == ZF_LAYOUT_DEEPSPEED &&
	    (exists(save, "config.json") || exists(save, "trainer_state.json") ||
	     is_trainer_name(path) || (outer && is_trainer_name(outer))))
		out->layout = ZF_LAYOUT_TRAINER;
	out->tag = name;
	out->tag_dir = tag_dir;
	out->hf_dir = save;
	name = tag_dir = save = NULL;
	rc = zf_ckpt_scan_tag_dir(out->tag_dir, out, err);
out:
	free(save);
	free(name);
	free(outer);
	free(tag_dir);
	free(latest_path);
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
	for (uint32_t i = 0; f->layers && i < f->n_layers; i++)
		free(f->layers[i]);
	free(f->layers);
	free(f->layer_idx);
	free(f->optim);
	free(f->model);
	free(f->tag);
	free(f->tag_dir);
	free(f->hf_dir);
	memset(f, 0, sizeof(*f));
}
