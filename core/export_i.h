/* SPDX-License-Identifier: MIT */
/*
 * Private to export (export.c, export_dir.c): the output folder's guard,
 * the names of temporary files, and the proof that makes a written file
 * "complete" for a later export to keep (export.h, Resume).
 */
#ifndef ZEROFS_EXPORT_I_H
#define ZEROFS_EXPORT_I_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "zerofs/export.h"

/* ".NAME" TMP_TAG "PID" ["-K"]: a temporary file of an export. */
#define ZF_EXPORT_TMP_TAG ".zerofs-tmp-"

/* The extended attribute holding a written file's proof. */
#define ZF_EXPORT_XATTR "user.zerofs.export"

/* Room for a proof's text. */
#define ZF_EXPORT_PROOF_MAX 96

/*
 * Refuses out_dir when it is the checkpoint folder or its tag folder or
 * lies inside either, or is a folder that a served file is read from
 * (ZF_EUSAGE, naming out_dir and the folder). Folders are compared by
 * device and inode, from out_dir up to the root. With dirfd -1, out_dir
 * may not exist yet: its deepest existing folder is checked (before
 * anything is created); else dirfd is out_dir, opened (checked again
 * after creation: what was opened is what counts). ZF_EIO, ZF_ENOMEM.
 */
int zf_export_check_out(const struct zf_hfdir *d, const char *out_dir, int dirfd,
			struct zf_error *err);

/* Parses a directory entry named like an export's temporary file: *name
 * (malloc'd) is the file it stands for, *pid the writer's process. */
bool zf_export_tmp_parse(const char *ent, char **name, long *pid);

/* The proof of a file with digest dig, as written (st: its fstat). */
void zf_export_proof(char *buf, size_t size, const unsigned char dig[16],
		     const struct stat *st);

/* Attaches the proof to fd (flushed and closed for writing by the
 * caller). 0, or the errno of fsetxattr (ENOTSUP: no extended
 * attributes on this file system). */
int zf_export_seal(int fd, const unsigned char dig[16]);

/* True when dirfd/name is complete: a regular file (not a link) owned by
 * this process's user, size bytes long, whose proof is exactly the one
 * dig and its current size and time give. */
bool zf_export_is_complete(int dirfd, const char *name,
			   const unsigned char dig[16], uint64_t size);

#endif /* ZEROFS_EXPORT_I_H */
