/* SPDX-License-Identifier: MIT */
/* Looping, EINTR-safe file reads; see io.h. */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int zf_check_opened(int fd, const char *path, struct stat *st,
		     struct zf_error *err)
{
	struct stat sb;
	int status;

	if (fd < 0) {
		int e = errno;

		status = e == ENOENT ? ZF_ENOTFOUND : ZF_EIO;
		zf_fail_at(err, status, path, "cannot open: %s", strerror(e));
		return status;
	}
	if (fstat(fd, &sb) < 0) {
		int e = errno;

		close(fd);
		return zf_fail_at(err, ZF_EIO, path, "cannot stat: %s", strerror(e));
	}
	if (!S_ISREG(sb.st_mode)) {
		close(fd);
		return zf_fail_at(err, ZF_EFORMAT, path, "not a regular file");
	}
	if (st)
		*st = sb;
	return ZF_OK;
}

int zf_open_ro(const char *path, int *fd, struct stat *st,
	       struct zf_error *err)
{
	/* O_NONBLOCK: a FIFO or device planted among the rank files must not
	 * block the open; zf_check_opened() refuses it. */
	int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	int rc = zf_check_opened(f, path, st, err);

	if (rc)
		return rc;
	fcntl(f, F_SETFL, fcntl(f, F_GETFL) & ~O_NONBLOCK);
	*fd = f;
	return ZF_OK;
}

int zf_pread_full(int fd, void *buf, size_t len, uint64_t off,
		  struct zf_error *err)
{
	unsigned char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, p + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return zf_fail(err, ZF_EIO, "read failed at byte %llu: %s",
				       (unsigned long long)(off + done),
				       strerror(errno));
		}
		if (n == 0)
			return zf_fail(err, ZF_EIO,
				       "file ends at byte %llu, expected %llu bytes",
				       (unsigned long long)(off + done),
				       (unsigned long long)(off + len));
		done += (size_t)n;
	}
	return ZF_OK;
}

int zf_read_small_file(const char *path, size_t max, char **out, size_t *len,
		       struct zf_error *err)
{
	struct stat st;
	char *buf;
	int fd, rc;

	rc = zf_open_ro(path, &fd, &st, err);
	if (rc)
		return rc;
	if ((uint64_t)st.st_size > max) {
		close(fd);
		zf_fail(err, ZF_EFORMAT, "file is %lld bytes, at most %zu expected",
			(long long)st.st_size, max);
		zf_error_where(err, path);
		return ZF_EFORMAT;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	}
	rc = zf_pread_full(fd, buf, (size_t)st.st_size, 0, err);
	close(fd);
	if (rc) {
		free(buf);
		zf_error_where(err, path);
		return rc;
	}
	buf[st.st_size] = '\0';
	*out = buf;
	*len = (size_t)st.st_size;
	return ZF_OK;
}

char *zf_absolute_path(const char *dir, const char *name)
{
	char *cwd = NULL, *out;
	size_t a = 0, b = strlen(dir), c = name ? strlen(name) : 0;

	if (dir[0] != '/') {
		cwd = getcwd(NULL, 0);
		if (cwd)
			a = strlen(cwd);
	}
	out = malloc(a + 1 + b + 1 + c + 1);
	if (out) {
		char *p = out;

		if (cwd) {
			memcpy(p, cwd, a);
			p += a;
			*p++ = '/';
		}
		memcpy(p, dir, b);
		p += b;
		if (name) {
			*p++ = '/';
			memcpy(p, name, c);
			p += c;
		}
		*p = '\0';
	}
	free(cwd);
	return out;
}
