/* SPDX-License-Identifier: MIT */
/*
 * The mount's tree (tree.h): slots of checkpoints, opened on first use,
 * closed again when idle, least recently used first.
 *
 * Locks: t->lock guards every slot's state (ck, dir, users, stamp,
 * failed) and is never held while a checkpoint opens or closes; a slot's
 * open_lock makes one thread open it while others that need it wait, and
 * lets other slots open meanwhile. A slot's dir is freed only with no
 * user: every request that touches a directory holds a use from
 * tree_acquire() to tree_release(), and every open file one until its
 * release.
 */
#include "tree.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "cli.h"
#include "log.h"

struct tree_slot {
	const struct zf_run_entry *e; /* --all; NULL for the one checkpoint */
	pthread_mutex_t open_lock;
	struct zf_ckpt *ck;	      /* NULL when not open */
	struct zf_hfdir *dir;
	unsigned users;
	uint64_t stamp;		      /* t->clock at the last use */
	bool opened_once;
	uint64_t fingerprint;	      /* of the first open's files */
	struct zf_access_set access;  /* --all: who may list its folder */
	bool access_failed;
	uint64_t total_bytes, n_files;
	char tag[256], dtype[16];     /* from the first open */
	int failed;		      /* atomic: set once why is written */
	char why[ZF_ERROR_WHERE_MAX + ZF_ERROR_MSG_MAX + 96];
};

static int init_common(struct tree *t, size_t n)
{
	t->slots = calloc(n, sizeof(*t->slots));
	if (!t->slots)
		return -1;
	t->n_slots = n;
	t->newest = SIZE_MAX;
	pthread_mutex_init(&t->lock, NULL);
	for (size_t i = 0; i < n; i++)
		pthread_mutex_init(&t->slots[i].open_lock, NULL);
	return 0;
}

/*
 * What the served directory is made of: every served file's name and
 * size, and the identity of every file it reads. A reopened checkpoint
 * must have the same, or its folder would change under the kernel's
 * cached names, sizes and pages.
 */
static uint64_t fingerprint(const struct zf_ckpt *ck, const struct zf_hfdir *dir)
{
	const struct zf_hfdir_info *d = zf_hfdir_info(dir);
	XXH3_state_t *s = XXH3_createState();
	uint64_t h;

	if (!s)
		return 0;
	XXH3_64bits_reset(s);
	for (size_t i = 0; i < d->n_files; i++) {
		const struct zf_vfile *f = zf_hfdir_file(dir, i);

		XXH3_64bits_update(s, f->name, strlen(f->name) + 1);
		XXH3_64bits_update(s, &f->size, sizeof(f->size));
		if (f->src) {
			const struct zf_source_id *id = zf_source_id(f->src);

			XXH3_64bits_update(s, &id->dev, sizeof(id->dev));
			XXH3_64bits_update(s, &id->ino, sizeof(id->ino));
			XXH3_64bits_update(s, &id->mtime, sizeof(id->mtime));
		}
	}
	for (size_t i = 0; i < zf_ckpt_info(ck)->n_files; i++) {
		const struct zf_source_id *id = zf_source_id(zf_ckpt_file(ck, i));

		XXH3_64bits_update(s, &id->dev, sizeof(id->dev));
		XXH3_64bits_update(s, &id->ino, sizeof(id->ino));
		XXH3_64bits_update(s, &id->size, sizeof(id->size));
		XXH3_64bits_update(s, &id->mtime, sizeof(id->mtime));
	}
	h = XXH3_64bits_digest(s);
	XXH3_freeState(s);
	return h;
}

/* Called with t->lock held, on a slot's first open. */
static void remember(struct tree_slot *s)
{
	const struct zf_hfdir_info *d = zf_hfdir_info(s->dir);

	s->opened_once = true;
	s->fingerprint = fingerprint(s->ck, s->dir);
	s->total_bytes = d->total_bytes;
	s->n_files = d->n_files;
	snprintf(s->tag, sizeof(s->tag), "%s", zf_ckpt_info(s->ck)->tag);
	snprintf(s->dtype, sizeof(s->dtype), "%s", zf_dtype_torch_name(d->dtype));
}

int tree_init_one(struct tree *t, struct zf_ckpt *ck, struct zf_hfdir *dir)
{
	memset(t, 0, sizeof(*t));
	if (init_common(t, 1))
		return -1;
	t->slots[0].ck = ck;
	t->slots[0].dir = dir;
	t->slots[0].users = 1; /* never closed */
	t->n_open = 1;
	t->mtime = zf_hfdir_info(dir)->mtime;
	remember(&t->slots[0]);
	return 0;
}

int tree_init_all(struct tree *t, struct zf_runfolder *run, const struct serve_opts *so)
{
	struct stat st;

	memset(t, 0, sizeof(*t));
	if (init_common(t, zf_runfolder_count(run)))
		return -1;
	t->all = true;
	t->run = run;
	t->so = *so;
	t->so.ckpt.tag = NULL;
	if (zf_access_add_folder(&t->root_access, zf_runfolder_path(run), NULL))
		t->root_access_failed = true;
	for (size_t i = 0; i < t->n_slots; i++) {
		struct tree_slot *sl = &t->slots[i];
		char path[PATH_MAX];

		sl->e = zf_runfolder_entry(run, i);
		/* A folder's listing shows no more than the checkpoint folder
		 * itself would: learned now, so that ls opens nothing. */
		snprintf(path, sizeof(path), "%s/%s", zf_runfolder_path(run), sl->e->name);
		if (zf_access_add_folder(&sl->access, path, NULL))
			sl->access_failed = true;
	}
	if (zf_runfolder_pick(run, &t->newest, &t->newest_how, NULL))
		t->newest = SIZE_MAX;
	if (stat(zf_runfolder_path(run), &st) == 0)
		t->mtime = st.st_mtim;
	return 0;
}

void tree_free(struct tree *t)
{
	for (size_t i = 0; i < t->n_slots; i++) {
		zf_hfdir_free(t->slots[i].dir);
		zf_ckpt_free(t->slots[i].ck);
		zf_access_release(&t->slots[i].access);
		pthread_mutex_destroy(&t->slots[i].open_lock);
	}
	if (t->slots)
		pthread_mutex_destroy(&t->lock);
	free(t->slots);
	zf_access_release(&t->root_access);
	zf_runfolder_free(t->run);
	memset(t, 0, sizeof(*t));
}

enum tree_node tree_node_of(const struct tree *t, uint64_t ino, size_t *slot, size_t *file)
{
	uint64_t hi = ino >> 32, lo = ino & 0xffffffffu;

	if (ino == 1)
		return TREE_ROOT;
	if (!t->all) {
		if (hi || lo < 2)
			return TREE_NONE;
		*slot = 0;
		*file = lo - 2;
		return TREE_FILE;
	}
	if (!hi || hi > t->n_slots || !lo)
		return TREE_NONE;
	*slot = hi - 1;
	if (lo == 1)
		return TREE_FOLDER;
	*file = lo - 2;
	return TREE_FILE;
}

uint64_t tree_folder_ino(const struct tree *t, size_t slot)
{
	return t->all ? ((uint64_t)(slot + 1) << 32) | 1 : 1;
}

uint64_t tree_file_ino(const struct tree *t, size_t slot, size_t file)
{
	return (t->all ? (uint64_t)(slot + 1) << 32 : 0) | (uint64_t)(2 + file);
}

size_t tree_find_folder(const struct tree *t, const char *name)
{
	return t->all ? zf_runfolder_find(t->run, name) : SIZE_MAX;
}

const char *tree_slot_name(const struct tree *t, size_t slot)
{
	return t->slots[slot].e ? t->slots[slot].e->served : "";
}

struct timespec tree_slot_mtime(const struct tree *t, size_t slot)
{
	return t->slots[slot].e ? t->slots[slot].e->mtime : t->mtime;
}

const struct zf_hfdir *tree_open_dir(const struct tree *t, size_t slot)
{
	return __atomic_load_n(&t->slots[slot].dir, __ATOMIC_ACQUIRE);
}

bool tree_failed(const struct tree *t, size_t slot, const char **why)
{
	const struct tree_slot *s = &t->slots[slot];

	if (!__atomic_load_n(&s->failed, __ATOMIC_ACQUIRE))
		return false;
	*why = s->why;
	return true;
}

/* Makes s fail for good, saying head then msg; with t->lock held. */
static void fail_locked(struct tree_slot *s, const char *head, const char *msg)
{
	if (s->failed)
		return;
	snprintf(s->why, sizeof(s->why), "%s%s", head, msg);
	__atomic_store_n(&s->failed, 1, __ATOMIC_RELEASE);
}

void tree_set_failed(struct tree *t, size_t slot, const struct zf_error *err)
{
	struct tree_slot *s = &t->slots[slot];
	char msg[ZF_ERROR_WHERE_MAX + ZF_ERROR_MSG_MAX + 8];
	bool first;

	zf_error_format(err, msg, sizeof(msg));
	pthread_mutex_lock(&t->lock);
	first = !s->failed;
	fail_locked(s, "", msg);
	pthread_mutex_unlock(&t->lock);
	if (!first)
		return;
	if (t->all)
		zf_log("%s; checkpoint '%s' changed since it was opened: its folder now fails with EIO (remount once it is complete)",
		       msg, tree_slot_name(t, slot));
	else
		zf_log("%s; the checkpoint changed since it was mounted: every open and read now fails with EIO (remount once it is complete)",
		       msg);
}

/*
 * Closes idle slots while more than TREE_KEEP_OPEN are open, least
 * recently used first; with t->lock held. What is to be freed goes into
 * the victims lists, freed by the caller after unlocking.
 */
static size_t evict_locked(struct tree *t, struct zf_ckpt **cks, struct zf_hfdir **dirs,
			   size_t max)
{
	size_t n = 0;

	while (t->n_open > TREE_KEEP_OPEN && n < max) {
		struct tree_slot *lru = NULL;

		for (size_t i = 0; i < t->n_slots; i++) {
			struct tree_slot *s = &t->slots[i];

			if (s->dir && !s->users && (!lru || s->stamp < lru->stamp))
				lru = s;
		}
		if (!lru)
			break;
		cks[n] = lru->ck;
		dirs[n] = lru->dir;
		n++;
		__atomic_store_n(&lru->dir, NULL, __ATOMIC_RELEASE);
		lru->ck = NULL;
		t->n_open--;
	}
	return n;
}

static void free_victims(struct zf_ckpt **cks, struct zf_hfdir **dirs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		zf_hfdir_free(dirs[i]);
		zf_ckpt_free(cks[i]);
	}
}

/* Opens slot's checkpoint; with s->open_lock held, t->lock not. */
static int open_slot(struct tree *t, size_t slot, const char **why)
{
	struct tree_slot *s = &t->slots[slot];
	struct zf_error err = { 0 };
	struct zf_ckpt_options o = t->so.ckpt;
	struct zf_ckpt *ck = NULL;
	struct zf_hfdir *dir = NULL;
	struct zf_ckpt *cks[4];
	struct zf_hfdir *dirs[4];
	char msg[ZF_ERROR_WHERE_MAX + ZF_ERROR_MSG_MAX + 8];
	size_t nv = 0;
	int rc;

	o.tag = s->e->name;
	rc = zf_ckpt_open(zf_runfolder_path(t->run), &o, &ck, &err);
	if (!rc)
		rc = zf_hfdir_build(ck, &t->so.dir, &dir, &err);
	pthread_mutex_lock(&t->lock);
	if (rc) {
		zf_error_format(&err, msg, sizeof(msg));
		fail_locked(s, "cannot be opened: ", msg);
	} else if (s->opened_once && fingerprint(ck, dir) != s->fingerprint) {
		fail_locked(s, "", "changed since it was first opened (its files or served names and sizes differ)");
	} else {
		__atomic_store_n(&s->dir, dir, __ATOMIC_RELEASE);
		s->ck = ck;
		ck = NULL;
		dir = NULL;
		s->users++;
		s->stamp = ++t->clock;
		t->n_open++;
		if (!s->opened_once)
			remember(s);
		nv = evict_locked(t, cks, dirs, 4);
	}
	rc = s->dir ? 0 : -1;
	if (rc)
		*why = s->why;
	pthread_mutex_unlock(&t->lock);
	if (rc)
		zf_log("checkpoint '%s' %s; its folder answers EIO", tree_slot_name(t, slot), s->why);
	zf_hfdir_free(dir);
	zf_ckpt_free(ck);
	free_victims(cks, dirs, nv);
	return rc;
}

int tree_acquire(struct tree *t, size_t slot, const struct zf_hfdir **dir,
		 const char **why)
{
	struct tree_slot *s = &t->slots[slot];
	int rc;

	for (;;) {
		pthread_mutex_lock(&t->lock);
		/* A failed folder of --all fails whole; the one checkpoint of
		 * a plain mount still answers lookups and attributes once it
		 * changed (its opens and reads fail: fuse_ops.c). */
		if (s->failed && (t->all || !s->dir)) {
			*why = s->why;
			pthread_mutex_unlock(&t->lock);
			return -1;
		}
		if (s->dir) {
			s->users++;
			s->stamp = ++t->clock;
			*dir = s->dir;
			pthread_mutex_unlock(&t->lock);
			return 0;
		}
		pthread_mutex_unlock(&t->lock);
		/* Not open: one thread opens it, the others wait for that
		 * and then find it open (or failed). */
		pthread_mutex_lock(&s->open_lock);
		pthread_mutex_lock(&t->lock);
		if (s->dir || s->failed) {
			pthread_mutex_unlock(&t->lock);
			pthread_mutex_unlock(&s->open_lock);
			continue;
		}
		pthread_mutex_unlock(&t->lock);
		rc = open_slot(t, slot, why);
		if (!rc)
			*dir = s->dir;
		pthread_mutex_unlock(&s->open_lock);
		return rc;
	}
}

void tree_release(struct tree *t, size_t slot)
{
	struct tree_slot *s = &t->slots[slot];
	struct zf_ckpt *cks[4];
	struct zf_hfdir *dirs[4];
	size_t nv = 0;

	pthread_mutex_lock(&t->lock);
	if (s->users)
		s->users--;
	s->stamp = ++t->clock;
	if (t->all)
		nv = evict_locked(t, cks, dirs, 4);
	pthread_mutex_unlock(&t->lock);
	free_victims(cks, dirs, nv);
}

void tree_slot_state(struct tree *t, size_t slot, char *state, size_t n_state,
		     char *tag, size_t n_tag, char *dtype, size_t n_dtype)
{
	struct tree_slot *s = &t->slots[slot];

	pthread_mutex_lock(&t->lock);
	snprintf(state, n_state, "%s", s->failed ? "failed" : s->dir ? "open"
				      : s->opened_once ? "closed (idle)" : "not opened");
	snprintf(tag, n_tag, "%s", s->opened_once ? s->tag : "");
	snprintf(dtype, n_dtype, "%s", s->opened_once ? s->dtype : "");
	pthread_mutex_unlock(&t->lock);
}

void tree_totals(struct tree *t, uint64_t *bytes, uint64_t *files)
{
	*bytes = 0;
	*files = 0;
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n_slots; i++) {
		*bytes += t->slots[i].total_bytes;
		*files += t->slots[i].n_files + (t->all ? 1 : 0);
	}
	pthread_mutex_unlock(&t->lock);
}

void tree_failures(struct tree *t, char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n_slots && used < size; i++)
		if (t->slots[i].failed)
			used += (size_t)snprintf(buf + used, size - used, "%s%s: %s",
						 used ? "\n" : "", tree_slot_name(t, i),
						 t->slots[i].why);
	pthread_mutex_unlock(&t->lock);
}

bool tree_folder_access(const struct tree *t, size_t slot,
			const struct zf_access **v, size_t *n)
{
	if (!t->all) {
		/* The one checkpoint is always open. */
		const struct zf_hfdir_info *di = zf_hfdir_info(t->slots[0].dir);

		*v = di->dir_access;
		*n = di->n_dir_access;
		return true;
	}
	if (slot == SIZE_MAX) {
		*v = t->root_access.v;
		*n = t->root_access.n;
		return !t->root_access_failed;
	}
	*v = t->slots[slot].access.v;
	*n = t->slots[slot].access.n;
	return !t->slots[slot].access_failed;
}
