/* SPDX-License-Identifier: MIT */
/*
 * What a mount serves, as a tree: the root, then either one checkpoint's
 * model directory (the files at the root), or with `mount --all` one
 * folder per checkpoint of a run folder, each holding that checkpoint's
 * model directory.
 *
 * With --all, a checkpoint is opened when something looks inside its
 * folder (a lookup in it, a listing, a file's attributes, an open), not at
 * mount time, so a run of 200 checkpoints mounts as fast as one; `ls` of
 * the root and `stat` of a folder open nothing. Once opened, a checkpoint
 * stays open while any of its files is open; otherwise it may be closed
 * again when more than TREE_KEEP_OPEN are open (least recently used
 * first), and reopened on the next use, which must find the same files
 * (same identities, same served names and sizes) or the folder fails
 * from then on, as a changed checkpoint does. A checkpoint that cannot be
 * opened keeps failing, with the reason logged once and shown in its
 * folder's user.zerofs.error. The list of checkpoints is read at mount
 * time.
 *
 * Inode numbers never change while mounted: the root is 1; without --all
 * file i is 2 + i; with --all the folder of checkpoint k (in the order of
 * zf_runfolder_entry()) is (k + 1) << 32 | 1 and its file i is
 * (k + 1) << 32 | (2 + i).
 *
 * Every function may be called from any serving thread.
 */
#ifndef ZEROFS_TREE_H
#define ZEROFS_TREE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "serve_opts.h"
#include "zerofs/access.h"
#include "zerofs/ckpt.h"
#include "zerofs/hfdir.h"
#include "zerofs/runfolder.h"

/* Opened checkpoints kept while idle (none of their files open). */
#define TREE_KEEP_OPEN 4

struct tree_slot;

struct tree {
	bool all;		  /* one folder per checkpoint */
	size_t n_slots;		  /* 1 without --all */
	struct tree_slot *slots;
	size_t newest;		  /* --all: the slot a resume would load, or SIZE_MAX */
	enum zf_pick newest_how;
	struct timespec mtime;	  /* the root's */
	struct zf_runfolder *run; /* --all: owned */
	struct serve_opts so;	  /* --all: how each is opened (strings borrowed) */
	/* --all: who may list the run folder (its own bits and the folders
	 * above it); root_access_failed when that could not be learned. */
	struct zf_access_set root_access;
	bool root_access_failed;
	pthread_mutex_t lock;	  /* slot states, users, the LRU clock */
	size_t n_open;
	uint64_t clock;
};

enum tree_node { TREE_NONE, TREE_ROOT, TREE_FOLDER, TREE_FILE };

/* One checkpoint, already opened (ck and dir are owned from now on). */
int tree_init_one(struct tree *t, struct zf_ckpt *ck, struct zf_hfdir *dir);

/* The checkpoints of run (owned from now on), none opened; so is copied
 * (its strings must outlive t). 0, or -1 when out of memory. */
int tree_init_all(struct tree *t, struct zf_runfolder *run, const struct serve_opts *so);

void tree_free(struct tree *t);

/* What inode ino is: *slot and *file set for a folder or a file. A file's
 * index is not checked against its directory (it may be closed). */
enum tree_node tree_node_of(const struct tree *t, uint64_t ino, size_t *slot, size_t *file);

uint64_t tree_folder_ino(const struct tree *t, size_t slot);
uint64_t tree_file_ino(const struct tree *t, size_t slot, size_t file);

/* The slot whose folder is named name (--all), or SIZE_MAX. */
size_t tree_find_folder(const struct tree *t, const char *name);

/*
 * Who may list a folder of the mount (slot SIZE_MAX: the root), as rules
 * for zf_access_mode(): without --all the root is the checkpoint's
 * directory (its hfdir's dir_access); with --all the root is the run
 * folder and a slot's folder the checkpoint's own folder, both learned at
 * mount time without opening any checkpoint. Returns false when the rules
 * could not be learned: then only the owner may list it.
 */
bool tree_folder_access(const struct tree *t, size_t slot,
			const struct zf_access **v, size_t *n);

/* Folder name and modification time of a slot (--all; no open needed). */
const char *tree_slot_name(const struct tree *t, size_t slot);
struct timespec tree_slot_mtime(const struct tree *t, size_t slot);

/*
 * Pins slot's directory, opening the checkpoint first if it is not open:
 * 0 and *dir, valid until tree_release(), or -1 with *why (a static or
 * slot-owned message: why it cannot be opened, or what changed).
 */
int tree_acquire(struct tree *t, size_t slot, const struct zf_hfdir **dir,
		 const char **why);
void tree_release(struct tree *t, size_t slot);

/* The directory of a slot one of whose files is open (the open holds a
 * use: no lock needed). */
const struct zf_hfdir *tree_open_dir(const struct tree *t, size_t slot);

/* True once the slot failed (cannot be opened, or changed); *why says
 * why. Cheap: for every read. */
bool tree_failed(const struct tree *t, size_t slot, const char **why);

/* Makes slot fail from now on, logging why once (a source file changed
 * under a read). */
void tree_set_failed(struct tree *t, size_t slot, const struct zf_error *err);

/* The slot's state for people: "not opened", "open", "closed (idle)",
 * "failed", into buf; its tag and served dtype when known (else ""). */
void tree_slot_state(struct tree *t, size_t slot, char *state, size_t n_state,
		     char *tag, size_t n_tag, char *dtype, size_t n_dtype);

/* Bytes of the directories opened so far (statfs), and their files. */
void tree_totals(struct tree *t, uint64_t *bytes, uint64_t *files);

/* "name: why" lines of the failed slots into buf ("" when none). */
void tree_failures(struct tree *t, char *buf, size_t size);

#endif /* ZEROFS_TREE_H */
