/* SPDX-License-Identifier: MIT */
/*
 * Opening the files of a metadata folder (config, tokenizer, code) without
 * letting a symbolic link lead out of it.
 *
 * The folder is untrusted: tokenizer.json -> /etc/shadow, or config.json
 * -> ~/.docker/config.json, planted in a checkpoint that root mounts for
 * everyone, must not be served. A link is followed only when it resolves
 * inside the folder, or, when the folder is a Hugging Face hub cache
 * snapshot (.../snapshots/REV/, whose files are links to ../../blobs/),
 * inside that repository's blobs/ folder. Only regular files are opened.
 *
 * The check cannot be raced: the resolved path is walked one folder at a
 * time from the allowed root with O_NOFOLLOW (a folder on the way that
 * became a link fails), and the file opened is proven to be the one
 * examined (device and inode) before it is used.
 */
#ifndef ZEROFS_CONFINE_H
#define ZEROFS_CONFINE_H

#include <stdbool.h>
#include <stddef.h>

#include "zerofs/error.h"
#include "zerofs/source.h"

struct zf_confine {
	char *dir;	  /* the folder as named */
	char *roots[2];	  /* canonical folders links may resolve into */
	size_t n_roots;
	const char *what; /* "the checkpoint folder", for messages */
};

/* Sets c up for the folder dir (what: how messages call it, borrowed).
 * ZF_ENOTFOUND / ZF_EIO when dir cannot be resolved, ZF_ENOMEM. */
int zf_confine_init(struct zf_confine *c, const char *dir, const char *what,
		    struct zf_error *err);
void zf_confine_release(struct zf_confine *c);

/*
 * Opens c->dir/name as a source. When it is not served, *out is NULL and
 * why (a malloc'd sentence, the caller frees it) says why: a folder, a
 * FIFO, a socket or a device; a broken link or a loop; a link to a place
 * outside the allowed folders (naming the link's text); or a file that
 * changed while it was being opened. Errors: ZF_EIO (cannot read it:
 * permission denied, ...), ZF_ENOMEM, both naming the file.
 */
int zf_confine_open(const struct zf_confine *c, const char *name,
		    struct zf_source **out, char **why, struct zf_error *err);

#endif /* ZEROFS_CONFINE_H */
