/* SPDX-License-Identifier: MIT */
/**
 * @file error.h
 * Status codes and the error record every core call fills in.
 *
 * Core never prints and never exits: a failing call returns a non-zero
 * enum zf_status and, when given a struct zf_error, records which file the
 * problem is in and a one-line message saying what is wrong. Only the
 * program (fs/) turns that into text on stderr and an exit code, and only
 * the FUSE adapter turns it into an errno.
 */
#ifndef ZEROFS_ERROR_H
#define ZEROFS_ERROR_H

#include <stddef.h>

enum zf_status {
	ZF_OK = 0,
	ZF_EFORMAT,	 /* input is malformed, truncated or inconsistent */
	ZF_EUNSUPPORTED, /* well formed, but not something zerofs can serve */
	ZF_ENOTFOUND,	 /* a file or folder the checkpoint needs is missing */
	ZF_EIO,		 /* the operating system failed an open, stat or read */
	ZF_ENOMEM,	 /* out of memory, or an allocation over a safety cap */
	ZF_ECHANGED,	 /* a source file changed after it was opened */
	ZF_EUSAGE,	 /* the caller passed a bad argument or option */
	ZF_EEXIST,	 /* an output already exists and may not be replaced */
};

#define ZF_ERROR_WHERE_MAX 1024
#define ZF_ERROR_MSG_MAX 1024

/*
 * What went wrong. `where` names the file (or folder) the problem is in,
 * "" when no file is involved; `msg` says what is wrong, git style: lower
 * case, no final period, the subject in single quotes. src_file/src_line
 * record the core line that failed, for debugging only.
 *
 * Start each one zeroed (`struct zf_error err = { 0 };`): the first
 * failure recorded is kept, so a record is read before it is written.
 */
struct zf_error {
	enum zf_status status;
	char where[ZF_ERROR_WHERE_MAX];
	char msg[ZF_ERROR_MSG_MAX];
	const char *src_file;
	int src_line;
};

/*
 * Records status and message in err (err may be NULL) and returns status,
 * so that call sites read `return zf_fail(err, ZF_EFORMAT, "...", ...);`.
 * The first failure wins: a message already recorded is kept, because the
 * innermost failure knows the most.
 */
int zf_error_set(struct zf_error *err, enum zf_status status,
		 const char *src_file, int src_line, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

#define zf_fail(err, status, ...) \
	zf_error_set((err), (status), __FILE__, __LINE__, __VA_ARGS__)

/*
 * zf_fail() that also names the file the problem is in (where may be
 * NULL): `return zf_fail_at(err, ZF_EFORMAT, path, "no '%s'", key);`.
 * Like zf_fail(), it records the calling line, and the first failure wins
 * (a file already named is kept).
 */
int zf_error_set_at(struct zf_error *err, enum zf_status status,
		    const char *where, const char *src_file, int src_line,
		    const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

#define zf_fail_at(err, status, where, ...) \
	zf_error_set_at((err), (status), (where), __FILE__, __LINE__, __VA_ARGS__)

/*
 * Names the file the recorded error is in, unless a (more precise) file is
 * already named. No-op when err is NULL or holds no error.
 */
void zf_error_where(struct zf_error *err, const char *path);

/* Forgets any recorded error. */
void zf_error_clear(struct zf_error *err);

/* A short stable name for a status ("bad format", "I/O error", ...). */
const char *zf_status_str(enum zf_status status);

/*
 * Writes "'where': msg" (or just msg) into buf, always NUL-terminated.
 * Returns buf.
 */
char *zf_error_format(const struct zf_error *err, char *buf, size_t size);

#endif /* ZEROFS_ERROR_H */
