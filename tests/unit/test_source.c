/* SPDX-License-Identifier: MIT */
/*
 * Sources and the descriptor cache: many files served through a few
 * descriptors, re-opens proven to be the same file, and every way a file
 * can change under a reader (rewritten in place, truncated, grown,
 * replaced by rename, removed, touched) ends in ZF_ECHANGED, never in
 * bytes of two versions.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "zerofs/source.h"

static char dir[] = "/tmp/zf-test-source.XXXXXX";

static void path_of(char *buf, size_t size, int i)
{
	snprintf(buf, size, "%s/f%04d", dir, i);
}

/* Writes n bytes of pattern (seed) into path, replacing it in place. */
static void write_file(const char *path, size_t n, unsigned seed)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	unsigned char buf[4096];

	for (size_t done = 0; done < n;) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);

		for (size_t i = 0; i < k; i++)
			buf[i] = (unsigned char)((done + i) * 31 + seed);
		if (write(fd, buf, k) != (ssize_t)k)
			abort();
		done += k;
	}
	close(fd);
}

static int expect_byte(const unsigned char *b, size_t off, unsigned seed)
{
	return b[0] == (unsigned char)(off * 31 + seed);
}

/* Sleeps past the file system's timestamp granularity, so a rewrite of
 * the same size moves the modification time. */
static void tick(void)
{
	struct timespec t = { 0, 20 * 1000 * 1000 };

	nanosleep(&t, NULL);
}

static void test_many_files_few_fds(void)
{
	enum { N = 300 };
	struct zf_source *src[N];
	struct zf_source_stats st;
	char path[256];
	int ok = 1;

	zf_source_set_max_open(16);
	for (int i = 0; i < N; i++) {
		struct zf_error err = { 0 };

		path_of(path, sizeof(path), i);
		write_file(path, 1000 + (size_t)i, (unsigned)i);
		if (zf_source_open(path, &src[i], &err))
			ok = 0;
	}
	tap_ok(ok, "%d sources open", N);
	zf_source_stats(&st);
	tap_ok(st.open_now <= 16, "at most 16 descriptors held (%zu)", st.open_now);
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < N; i++) {
			struct zf_error err = { 0 };
			unsigned char b;
			size_t off = (size_t)(i * 7 + round) % (1000 + (size_t)i);

			if (zf_source_pread(src[i], &b, 1, off, &err) ||
			    !expect_byte(&b, off, (unsigned)i))
				ok = 0;
		}
	tap_ok(ok, "every file read right, three rounds");
	zf_source_stats(&st);
	tap_ok(st.open_peak <= 16, "peak descriptors %zu <= 16", st.open_peak);
	tap_ok(st.reopens >= 2 * N, "files were opened again (%llu re-opens)",
	       (unsigned long long)st.reopens);
	tap_ok(zf_source_size(src[5]) == 1005, "size recorded at open");
	tap_ok(!strcmp(zf_source_name(src[5]), "f0005"), "name is the last component");
	for (int i = 0; i < N; i++)
		zf_source_close(src[i]);
	zf_source_stats(&st);
	tap_ok(st.open_now == 0, "closing the sources closes their descriptors");
	zf_source_set_max_open(512);
}

/* Opens a fresh file, evicts its descriptor when `evict`, lets `change`
 * alter it, and expects ZF_ECHANGED with `how` in the message. */
static void expect_change(const char *what, void (*change)(const char *),
			  const char *how, int evict)
{
	char path[256], other[256];
	struct zf_source *src, *filler;
	struct zf_error err = { 0 };
	unsigned char b[16];
	int rc;

	snprintf(path, sizeof(path), "%s/change", dir);
	snprintf(other, sizeof(other), "%s/filler", dir);
	write_file(path, 4096, 1);
	write_file(other, 10, 2);
	zf_source_set_max_open(1);
	rc = zf_source_open(path, &src, &err);
	tap_ok(!rc && !zf_source_pread(src, b, sizeof(b), 100, &err),
	       "%s: read before the change", what);
	if (evict) {
		zf_source_open(other, &filler, &err);
		zf_source_close(filler);
	}
	tick();
	change(path);
	memset(&err, 0, sizeof(err));
	rc = zf_source_pread(src, b, sizeof(b), 100, &err);
	tap_ok(rc == ZF_ECHANGED, "%s%s: read fails with ZF_ECHANGED (%d: %s)", what,
	       evict ? " (descriptor evicted)" : "", rc, err.msg);
	tap_contains(err.msg, how, "%s: message says '%s'", what, how);
	tap_ok(strstr(err.where, "/change") != NULL, "%s: error names the file", what);
	memset(&err, 0, sizeof(err));
	tap_ok(zf_source_check(src, &err) == ZF_ECHANGED, "%s: check says changed too", what);
	zf_source_close(src);
	unlink(path);
	unlink(other);
	zf_source_set_max_open(512);
}

static void rewrite_same_size(const char *p) { write_file(p, 4096, 9); }
static void truncate_it(const char *p) { if (truncate(p, 50)) abort(); }
static void grow(const char *p)
{
	int fd = open(p, O_WRONLY | O_APPEND);

	if (write(fd, "x", 1) != 1)
		abort();
	close(fd);
}
static void replace_by_rename(const char *p)
{
	char tmp[300];

	snprintf(tmp, sizeof(tmp), "%s.new", p);
	write_file(tmp, 4096, 1);
	if (rename(tmp, p))
		abort();
}
static void remove_it(const char *p) { unlink(p); }
static void touch_it(const char *p) { utimensat(AT_FDCWD, p, NULL, 0); }
static void chmod_it(const char *p) { chmod(p, 0600); }

static void test_changes(void)
{
	for (int evict = 0; evict < 2; evict++) {
		expect_change("rewritten in place", rewrite_same_size, "written to", evict);
		expect_change("truncated", truncate_it, "size went from 4096 to 50", evict);
		expect_change("grown", grow, "size went from 4096 to 4097", evict);
		expect_change("touched", touch_it, "written to", evict);
		expect_change("chmod", chmod_it, "inode was changed", evict);
	}
	/* A rename over the path leaves an open descriptor on the old file:
	 * reads of it are still of one version, but a check (and any
	 * re-open) sees the new file. */
	expect_change("replaced by rename", replace_by_rename, "another file", 1);
	expect_change("removed", remove_it, "gone", 1);
}

static void test_bad_opens(void)
{
	struct zf_source *src = NULL;
	struct zf_error err = { 0 };
	char path[256];

	snprintf(path, sizeof(path), "%s/missing", dir);
	tap_ok(zf_source_open(path, &src, &err) == ZF_ENOTFOUND && !src,
	       "a missing file is ZF_ENOTFOUND");
	tap_ok(!strcmp(err.where, path), "and the error names it");
	memset(&err, 0, sizeof(err));
	tap_ok(zf_source_open(dir, &src, &err) == ZF_EFORMAT,
	       "a folder is not a source (%s)", err.msg);
	snprintf(path, sizeof(path), "%s/fifo", dir);
	mkfifo(path, 0600);
	memset(&err, 0, sizeof(err));
	tap_ok(zf_source_open(path, &src, &err) == ZF_EFORMAT,
	       "a FIFO is refused without blocking (%s)", err.msg);
	unlink(path);
	snprintf(path, sizeof(path), "%s/short", dir);
	write_file(path, 10, 0);
	memset(&err, 0, sizeof(err));
	if (!zf_source_open(path, &src, &err)) {
		unsigned char b[20];

		tap_ok(zf_source_pread(src, b, sizeof(b), 0, &err) == ZF_EIO,
		       "reading past the end is ZF_EIO (%s)", err.msg);
		zf_source_close(src);
	}
	unlink(path);
}

struct reader_arg {
	struct zf_source **src;
	int n;
	int bad;
};

static void *reader(void *p)
{
	struct reader_arg *a = p;

	for (int k = 0; k < 20000; k++) {
		int i = (k * 7919) % a->n;
		struct zf_error err = { 0 };
		unsigned char b;
		size_t off = (size_t)k % 1000;

		if (zf_source_pread(a->src[i], &b, 1, off, &err) ||
		    !expect_byte(&b, off, (unsigned)i)) {
			if (__atomic_add_fetch(&a->bad, 1, __ATOMIC_RELAXED) < 4)
				printf("# bad read of file %d at %zu: %s: %s\n", i, off,
				       err.where, err.msg);
		}
	}
	return NULL;
}

/* Threads reading many files through a cache smaller than the thread
 * count times two: pinned descriptors are never closed under a read. */
static void test_threads(void)
{
	enum { N = 64, T = 4 };
	struct zf_source *src[N];
	struct reader_arg a = { src, N, 0 };
	pthread_t tid[T];
	struct zf_source_stats st;
	char path[256];

	for (int i = 0; i < N; i++) {
		struct zf_error err = { 0 };

		path_of(path, sizeof(path), i);
		write_file(path, 1000, (unsigned)i);
		zf_source_open(path, &src[i], &err);
	}
	zf_source_set_max_open(3);
	for (int t = 0; t < T; t++)
		pthread_create(&tid[t], NULL, reader, &a);
	for (int t = 0; t < T; t++)
		pthread_join(tid[t], NULL);
	tap_ok(a.bad == 0, "%d threads x 20,000 reads through 3 cached descriptors: %d bad",
	       T, a.bad);
	zf_source_stats(&st);
	tap_ok(st.open_now <= 3, "no more than the cache's size held afterwards (%zu)",
	       st.open_now);
	for (int i = 0; i < N; i++)
		zf_source_close(src[i]);
	zf_source_set_max_open(512);
}

static void test_pin(void)
{
	struct zf_source *a, *b;
	struct zf_error err = { 0 };
	char pa[256], pb[256];
	int fd = -1;
	unsigned char c;

	path_of(pa, sizeof(pa), 900);
	path_of(pb, sizeof(pb), 901);
	write_file(pa, 100, 3);
	write_file(pb, 100, 4);
	zf_source_set_max_open(1);
	zf_source_open(pa, &a, &err);
	tap_ok(!zf_source_pin_fd(a, &fd, &err) && fd >= 0, "pinned a descriptor");
	zf_source_open(pb, &b, &err);
	zf_source_pread(b, &c, 1, 0, &err);
	tap_ok(fcntl(fd, F_GETFD) >= 0, "a pinned descriptor survives a full cache");
	tap_ok(pread(fd, &c, 1, 5) == 1 && expect_byte(&c, 5, 3), "and reads its file");
	zf_source_unpin_fd(a);
	zf_source_close(a);
	zf_source_close(b);
	zf_source_set_max_open(512);
}

/* A source let go of holds no descriptor, opens its file again on the
 * next read, and a change in between is seen. */
static void test_idle(void)
{
	struct zf_source *a;
	struct zf_source_stats st0, st1;
	struct zf_error err = { 0 };
	char pa[256];
	unsigned char c;

	path_of(pa, sizeof(pa), 950);
	write_file(pa, 100, 5);
	zf_source_open(pa, &a, &err);
	zf_source_stats(&st0);
	zf_source_idle(a);
	zf_source_stats(&st1);
	tap_ok(st1.open_now == st0.open_now - 1, "idle: the descriptor is closed (%zu -> %zu)",
	       st0.open_now, st1.open_now);
	tap_ok(!zf_source_pread(a, &c, 1, 7, &err) && expect_byte(&c, 7, 5),
	       "idle: the next read opens the file again and reads it");
	zf_source_stats(&st0);
	tap_ok(st0.open_now == st1.open_now + 1, "idle: ... holding a descriptor again");
	zf_source_idle(a);
	tick();
	write_file(pa, 100, 6);
	memset(&err, 0, sizeof(err));
	tap_ok(zf_source_pread(a, &c, 1, 7, &err) == ZF_ECHANGED,
	       "idle: a file rewritten meanwhile is a change (%s)", err.msg);
	zf_source_close(a);
}

int main(void)
{
	char cmd[300];

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_many_files_few_fds();
	test_changes();
	test_bad_opens();
	test_threads();
	test_pin();
	test_idle();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		return 1;
	return tap_done();
}
