/* SPDX-License-Identifier: MIT */
/*
 * A folder of checkpoints (runfolder.h): which of its folders hold one,
 * under which names `mount --all` serves them, and which one a resume
 * would load. Folder names and the two pointer files only: no checkpoint
 * file is opened here.
 */
#include "zerofs/runfolder.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_scan_i.h"
#include "grow.h"

struct zf_runfolder {
	char *path;
	struct zf_run_entry *v; /* names owned */
	size_t n, cap;
	/* The highest checkpoint-N among all folders, whether or not it
	 * holds a checkpoint (the Trainer does not look inside), and a
	 * second folder with the same N when there is one. */
	char *newest_ckpt, *newest_twin;
};

/*
 * Natural order, digit runs compared as numbers (checkpoint-9 before
 * checkpoint-10, as zero_to_fp32 sorts files); names equal that way
 * (checkpoint-01, checkpoint-1) fall back to byte order, so the order is
 * total.
 */
static int natural_cmp(const char *sa, const char *sb)
{
	const unsigned char *a = (const unsigned char *)sa;
	const unsigned char *b = (const unsigned char *)sb;

	while (*a && *b) {
		if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
			const unsigned char *ea, *eb;

			while (*a == '0')
				a++;
			while (*b == '0')
				b++;
			for (ea = a; *ea >= '0' && *ea <= '9'; ea++)
				;
			for (eb = b; *eb >= '0' && *eb <= '9'; eb++)
				;
			if (ea - a != eb - b)
				return ea - a < eb - b ? -1 : 1;
			for (; a < ea; a++, b++)
				if (*a != *b)
					return *a < *b ? -1 : 1;
			b = eb;
			continue;
		}
		if (*a != *b)
			return *a < *b ? -1 : 1;
		a++;
		b++;
	}
	if (*a || *b)
		return *a ? 1 : -1;
	return strcmp(sa, sb);
}

static int entry_cmp(const void *pa, const void *pb)
{
	const struct zf_run_entry *a = pa, *b = pb;

	return natural_cmp(a->served, b->served);
}

/* The digits of name after "checkpoint-", when that is all there is
 * (the Trainer's ^checkpoint-(\d+)$, ASCII digits), or NULL. */
static const char *trainer_step(const char *name)
{
	const char *p;

	if (strncmp(name, "checkpoint-", 11))
		return NULL;
	p = name + 11;
	if (!*p)
		return NULL;
	for (const char *q = p; *q; q++)
		if (*q < '0' || *q > '9')
			return NULL;
	return p;
}

/* Compares two digit strings as numbers of any length. */
static int number_cmp(const char *a, const char *b)
{
	size_t la, lb;

	while (*a == '0' && a[1])
		a++;
	while (*b == '0' && b[1])
		b++;
	la = strlen(a);
	lb = strlen(b);
	if (la != lb)
		return la < lb ? -1 : 1;
	return strcmp(a, b);
}

/* The number name ends with, less a final ".pth"; UINT64_MAX if none or
 * too long. */
static uint64_t trailing_step(const char *name)
{
	size_t n = strlen(name), end, start;
	uint64_t v = 0;

	if (n > 4 && !strcmp(name + n - 4, ".pth"))
		n -= 4;
	end = n;
	start = end;
	while (start > 0 && name[start - 1] >= '0' && name[start - 1] <= '9')
		start--;
	if (start == end || end - start > 18)
		return UINT64_MAX;
	for (size_t i = start; i < end; i++)
		v = v * 10 + (uint64_t)(name[i] - '0');
	return v;
}

static void note_trainer_folder(struct zf_runfolder *r, const char *name,
				bool *oom)
{
	const char *step = trainer_step(name);
	int c;

	if (!step)
		return;
	c = r->newest_ckpt ? number_cmp(step, trainer_step(r->newest_ckpt)) : 1;
	if (c > 0) {
		free(r->newest_ckpt);
		free(r->newest_twin);
		r->newest_twin = NULL;
		r->newest_ckpt = strdup(name);
		*oom |= !r->newest_ckpt;
	} else if (c == 0 && !r->newest_twin) {
		/* In byte order, so that messages do not depend on readdir's. */
		r->newest_twin = strdup(name);
		*oom |= !r->newest_twin;
		if (r->newest_twin && strcmp(r->newest_twin, r->newest_ckpt) < 0) {
			char *t = r->newest_twin;

			r->newest_twin = r->newest_ckpt;
			r->newest_ckpt = t;
		}
	}
}

static int add_entry(struct zf_runfolder *r, const char *name,
		     const struct stat *st)
{
	struct zf_run_entry *e;

	if (r->n == r->cap && zf_grow(&r->v, &r->cap, r->n + 1, 16))
		return ZF_ENOMEM;
	e = &r->v[r->n];
	memset(e, 0, sizeof(*e));
	e->name = strdup(name);
	if (!e->name)
		return ZF_ENOMEM;
	e->step = trailing_step(name);
	e->mtime = st->st_mtim;
	r->n++;
	return ZF_OK;
}

/*
 * Served names: the name, less a final ".pth" (a folder named like a file
 * confuses people and tools that glob *.pth), unless the shorter name is
 * taken by another entry.
 */
static int name_served(struct zf_runfolder *r)
{
	for (size_t i = 0; i < r->n; i++) {
		const char *name = r->v[i].name;
		size_t n = strlen(name);
		char *s = NULL;
		bool taken = false;

		if (n > 4 && !strcmp(name + n - 4, ".pth")) {
			s = strndup(name, n - 4);
			if (!s)
				return ZF_ENOMEM;
			for (size_t j = 0; j < r->n && !taken; j++)
				taken = !strcmp(r->v[j].name, s);
			if (taken) {
				free(s);
				s = NULL;
			}
		}
		r->v[i].served = s ? s : name;
	}
	return ZF_OK;
}

int zf_runfolder_scan(const char *path, struct zf_runfolder **out,
		      struct zf_error *err)
{
	struct zf_runfolder *r = calloc(1, sizeof(*r));
	struct dirent *de;
	bool oom = false;
	DIR *d;
	int rc = ZF_OK;

	*out = NULL;
	if (!r || !(r->path = strdup(path))) {
		free(r);
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	d = opendir(path);
	if (!d) {
		int e = errno;

		zf_runfolder_free(r);
		if (e == ENOTDIR)
			return zf_fail_at(err, ZF_EFORMAT, path, "not a folder");
		return zf_fail_at(err, e == ENOENT ? ZF_ENOTFOUND : ZF_EIO, path,
				  "cannot open folder: %s", strerror(e));
	}
	while (!rc && !oom && (de = readdir(d))) {
		struct stat st;
		char *p;

		if (de->d_name[0] == '.')
			continue;
		p = zf_ckpt_path_join(path, de->d_name);
		if (!p) {
			oom = true;
			break;
		}
		if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
			note_trainer_folder(r, de->d_name, &oom);
			if (zf_ckpt_holds(p))
				rc = add_entry(r, de->d_name, &st);
		}
		free(p);
	}
	closedir(d);
	if (!rc && !oom)
		rc = name_served(r);
	if (rc || oom) {
		zf_runfolder_free(r);
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	if (r->n)
		qsort(r->v, r->n, sizeof(*r->v), entry_cmp);
	*out = r;
	return ZF_OK;
}

void zf_runfolder_free(struct zf_runfolder *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		if (r->v[i].served != r->v[i].name)
			free((char *)r->v[i].served);
		free((char *)r->v[i].name);
	}
	free(r->v);
	free(r->path);
	free(r->newest_ckpt);
	free(r->newest_twin);
	free(r);
}

const char *zf_runfolder_path(const struct zf_runfolder *r)
{
	return r->path;
}

size_t zf_runfolder_count(const struct zf_runfolder *r)
{
	return r->n;
}

const struct zf_run_entry *zf_runfolder_entry(const struct zf_runfolder *r,
					      size_t i)
{
	return i < r->n ? &r->v[i] : NULL;
}

size_t zf_runfolder_find(const struct zf_runfolder *r, const char *served)
{
	size_t lo = 0, hi = r->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = natural_cmp(served, r->v[mid].served);

		if (!c)
			return mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return SIZE_MAX;
}

/* The entry whose on-disk name is name, or SIZE_MAX. */
static size_t find_name(const struct zf_runfolder *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->v[i].name, name))
			return i;
	return SIZE_MAX;
}

/* "'a', 'b', 'c'" (escaped), cut to fit buf. */
static void list_names(const struct zf_runfolder *r, char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < r->n && used < size; i++) {
		char shown[64];

		if (i == 6 && r->n > 8) {
			used += (size_t)snprintf(buf + used, size - used, ", ... (%zu more), '%s'",
						 r->n - 7,
						 zf_ckpt_excerpt(r->v[r->n - 1].name, shown, sizeof(shown)));
			break;
		}
		used += (size_t)snprintf(buf + used, size - used, "%s'%s'", i ? ", " : "",
					 zf_ckpt_excerpt(r->v[i].name, shown, sizeof(shown)));
	}
}

/* Rule 3: the highest checkpoint-N, which must hold a checkpoint. */
static int pick_newest_step(const struct zf_runfolder *r, size_t *i,
			    struct zf_error *err)
{
	char a[64], b[64];
	size_t k;

	if (r->newest_twin) {
		const char *step = trainer_step(r->newest_ckpt);

		while (*step == '0' && step[1])
			step++;
		return zf_fail_at(err, ZF_ENOTFOUND, r->path,
				  "'%s' and '%s' both number step %s: choose one with --tag",
				  zf_ckpt_excerpt(r->newest_ckpt, a, sizeof(a)),
				  zf_ckpt_excerpt(r->newest_twin, b, sizeof(b)), step);
	}
	k = find_name(r, r->newest_ckpt);
	if (k != SIZE_MAX) {
		*i = k;
		return ZF_OK;
	}
	/* The newest that does hold one, to suggest. */
	for (size_t j = r->n; j-- > 0;)
		if (trainer_step(r->v[j].name)) {
			if (k == SIZE_MAX ||
			    number_cmp(trainer_step(r->v[j].name), trainer_step(r->v[k].name)) > 0)
				k = j;
		}
	if (k == SIZE_MAX)
		return zf_fail_at(err, ZF_ENOTFOUND, r->path,
				  "'%s', the newest checkpoint-N (the one the Trainer resumes from), holds no DeepSpeed checkpoint (still being written, or saved without DeepSpeed?)",
				  zf_ckpt_excerpt(r->newest_ckpt, a, sizeof(a)));
	return zf_fail_at(err, ZF_ENOTFOUND, r->path,
			  "'%s', the newest checkpoint-N (the one the Trainer resumes from), holds no DeepSpeed checkpoint (still being written, or saved without DeepSpeed?); --tag %s serves the newest that does",
			  zf_ckpt_excerpt(r->newest_ckpt, a, sizeof(a)),
			  zf_ckpt_excerpt(r->v[k].name, b, sizeof(b)));
}

int zf_runfolder_pick(const struct zf_runfolder *r, size_t *i,
		      enum zf_pick *how, struct zf_error *err)
{
	char *name = NULL, *latest_path = NULL, names[512];
	struct zf_error local = { 0 };
	int rc;

	/* io.c's readers tell a missing file apart only with a record. */
	if (!err)
		err = &local;
	rc = zf_ckpt_read_latest(r->path, &name, &latest_path, err);

	if (rc != ZF_ENOTFOUND) {
		/* Rule 1: DeepSpeed's `latest`. */
		size_t k = rc ? SIZE_MAX : find_name(r, name);
		char shown[64];

		if (!rc && k == SIZE_MAX)
			rc = zf_fail_at(err, ZF_ENOTFOUND, latest_path,
					"names tag '%s', but no folder beside it holds that checkpoint",
					zf_ckpt_excerpt(name, shown, sizeof(shown)));
		*i = k;
		*how = ZF_PICK_LATEST;
		free(name);
		free(latest_path);
		return rc;
	}
	free(latest_path);
	name = zf_ckpt_last_checkpoint(r->path);
	if (name) {
		/* Rule 2: mmengine's last_checkpoint (it holds a checkpoint). */
		*i = find_name(r, name);
		free(name);
		if (*i != SIZE_MAX) {
			*how = ZF_PICK_LAST_CHECKPOINT;
			return ZF_OK;
		}
	}
	if (r->newest_ckpt) {
		*how = ZF_PICK_NEWEST_STEP;
		return pick_newest_step(r, i, err);
	}
	if (r->n == 1) {
		*i = 0;
		*how = ZF_PICK_ONLY;
		return ZF_OK;
	}
	if (!r->n)
		return zf_fail_at(err, ZF_ENOTFOUND, r->path,
				  "no 'latest' file and no tag folder with DeepSpeed rank files: not a DeepSpeed checkpoint");
	list_names(r, names, sizeof(names));
	return zf_fail_at(err, ZF_ENOTFOUND, r->path,
			  "no 'latest' file and %zu folders that hold a checkpoint (%s): choose one with --tag",
			  r->n, names);
}

const char *zf_pick_str(enum zf_pick how)
{
	switch (how) {
	case ZF_PICK_GIVEN:
		return "given";
	case ZF_PICK_LATEST:
		return "latest";
	case ZF_PICK_LAST_CHECKPOINT:
		return "last_checkpoint";
	case ZF_PICK_NEWEST_STEP:
		return "newest-step";
	case ZF_PICK_ONLY:
		return "only";
	}
	return "?";
}
