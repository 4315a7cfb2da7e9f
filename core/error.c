/* SPDX-License-Identifier: MIT */
/*
 * The error record of include/zerofs/error.h. The first failure recorded
 * wins, because the innermost code knows the most about what went wrong;
 * callers further out only add the file name if none is there yet.
 */
#include "zerofs/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Records the first failure; where (may be NULL) names the file. */
static int __attribute__((format(printf, 6, 0)))
record(struct zf_error *err, enum zf_status status, const char *where,
       const char *src_file, int src_line, const char *fmt, va_list ap)
{
	if (!err || err->status != ZF_OK)
		return status;
	err->status = status;
	err->src_file = src_file;
	err->src_line = src_line;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	if (where)
		snprintf(err->where, sizeof(err->where), "%s", where);
	return status;
}

int zf_error_set(struct zf_error *err, enum zf_status status,
		 const char *src_file, int src_line, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = record(err, status, NULL, src_file, src_line, fmt, ap);
	va_end(ap);
	return rc;
}

int zf_error_set_at(struct zf_error *err, enum zf_status status,
		    const char *where, const char *src_file, int src_line,
		    const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = record(err, status, where, src_file, src_line, fmt, ap);
	va_end(ap);
	return rc;
}

void zf_error_where(struct zf_error *err, const char *path)
{
	if (!err || err->status == ZF_OK || err->where[0] || !path)
		return;
	snprintf(err->where, sizeof(err->where), "%s", path);
}

void zf_error_clear(struct zf_error *err)
{
	if (err)
		memset(err, 0, sizeof(*err));
}

const char *zf_status_str(enum zf_status status)
{
	switch (status) {
	case ZF_OK:
		return "success";
	case ZF_EFORMAT:
		return "bad format";
	case ZF_EUNSUPPORTED:
		return "unsupported";
	case ZF_ENOTFOUND:
		return "not found";
	case ZF_EIO:
		return "I/O error";
	case ZF_ENOMEM:
		return "out of memory";
	case ZF_ECHANGED:
		return "changed on disk";
	case ZF_EUSAGE:
		return "usage";
	case ZF_EEXIST:
		return "already exists";
	}
	return "unknown error";
}

char *zf_error_format(const struct zf_error *err, char *buf, size_t size)
{
	const char *msg = err->msg[0] ? err->msg : zf_status_str(err->status);

	if (err->where[0])
		snprintf(buf, size, "'%s': %s", err->where, msg);
	else
		snprintf(buf, size, "%s", msg);
	return buf;
}
