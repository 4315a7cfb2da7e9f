/* SPDX-License-Identifier: MIT */
/**
 * @file access.h
 * Who may read what zerofs serves: a served file (or the mount's folder)
 * never lets anyone read what they could not read in the source folder.
 *
 * A served file is made of sources (rank files, a tokenizer file, ...),
 * each reached through folders. Each of those is recorded as an "access
 * rule": its owner, group, and which of owner, group and others may read
 * it (a file) or search it (a folder, its x bits moved to the r places).
 * Someone may read the served file only when every rule lets them.
 *
 * The served file shows another owner and group than its sources (the
 * mounting user's, or -o uid=,gid=), so zf_access_mode() maps each class
 * of the served file onto the classes its members may have in each rule,
 * and grants a read bit only when all of them may read:
 *
 *   owner  the rule's owner bit when the served owner is the rule's owner;
 *          granted when the served owner is the user who opened the
 *          sources (it did read them) or root; else group and other bits;
 *   group  when the served group is the rule's group: its group bit (and
 *          its owner bit, as the rule's owner may be a member); else the
 *          owner, group and other bits;
 *   other  the other bit, and the owner and group bits of the classes an
 *          "other" of the served file may belong to in the rule.
 *
 * With the usual modes (owner >= group >= other) and the served owner and
 * group equal to the sources', this is the sources' read bits exactly: a
 * 0600 source is served 0400, 0644 is served 0444.
 *
 * A source with a POSIX access ACL has its group bits dropped (its mode's
 * group bits are the ACL mask, which may grant more than the owning
 * group's own entry): the ACL's extra readers lose access through the
 * mount, nobody gains it.
 */
#ifndef ZEROFS_ACCESS_H
#define ZEROFS_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "zerofs/error.h"
#include "zerofs/source.h"

struct zf_access {
	uid_t uid;
	gid_t gid;
	mode_t read; /* a subset of 0444: who may read (search) */
};

/* A growing set of distinct rules. Start zeroed. */
struct zf_access_set {
	struct zf_access *v;
	size_t n, cap;
	/* Caches: the last canonical folder whose way was added, and the
	 * last folder of a source as named. */
	char *last_dir, *last_given;
};

/*
 * Adds the rules of reading src: the file itself (its mode, owner and
 * group as opened) and searching every folder from / down to the one
 * holding it (symbolic links resolved). ZF_ENOMEM, or ZF_EIO when a
 * folder on the way cannot be examined (naming it).
 */
int zf_access_add_source(struct zf_access_set *s, const struct zf_source *src,
			 struct zf_error *err);

/*
 * Adds the rules of listing the folder at path (reading and searching it)
 * and of searching every folder above it. ZF_ENOMEM, ZF_EIO.
 */
int zf_access_add_folder(struct zf_access_set *s, const char *path,
			 struct zf_error *err);

/* Adds the rules of another set. ZF_ENOMEM. */
int zf_access_add_set(struct zf_access_set *s, const struct zf_access_set *from,
		      struct zf_error *err);

/* Frees the set's memory; it can be used again. */
void zf_access_release(struct zf_access_set *s);

/*
 * The read bits (a subset of 0444) a thing governed by the n rules in a
 * may show when presented as owned by owner:group, `opener` being the
 * user that opened the sources. No rules: 0444.
 */
mode_t zf_access_mode(const struct zf_access *a, size_t n, uid_t owner,
		      gid_t group, uid_t opener);

#endif /* ZEROFS_ACCESS_H */
