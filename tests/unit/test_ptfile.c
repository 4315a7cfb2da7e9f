/* SPDX-License-Identifier: MIT */
/*
 * Tests for core/ptfile.c. Zips are written at run time by a small writer
 * below that lays records out the way torch.save does (64-byte aligned
 * data via a 0x4246 local extra field, data descriptors, zip64 end
 * records), so each corruption can be made by patching a known offset.
 * Real torch files (written now, if /usr/bin/python3 has torch) and the
 * shared fixtures are checked against libzip and Python's zipfile: the
 * bytes at our offsets must be the bytes those readers return.
 */
#include "zerofs/ptfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "tap.h"

static char tmpdir[4096];

static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

/* ---- a torch-style zip writer ---- */

#define TZ_MAX 64

struct tz_ent {
	char name[256];
	uint16_t method, flags;
	uint32_t crc;
	uint64_t csize, usize, lh_off;
	uint64_t data_off; /* where the (stored) data starts */
	bool aes; /* central directory says WinZip AES (method 99) */
};

struct tz {
	int fd;
	bool bad;	  /* a write failed */
	uint64_t pos;	  /* where the next structure goes */
	struct tz_ent e[TZ_MAX];
	size_t n;
	uint64_t cd_ent[TZ_MAX]; /* offset of each central header */
	uint64_t cd_off, cd_size, z64_off, loc_off, eocd_off, end;
};

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static void tz_write(struct tz *z, uint64_t off, const void *buf, size_t len)
{
	if (len && pwrite(z->fd, buf, len, (off_t)off) != (ssize_t)len)
		z->bad = true;
}

static void tz_begin(struct tz *z, const char *path)
{
	memset(z, 0, sizeof(*z));
	z->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (z->fd < 0)
		z->bad = true;
}

/* Adds an entry the way torch does. method 8 wraps data in one stored
 * deflate block (a valid deflate stream); data NULL leaves a hole. */
static void tz_add(struct tz *z, const char *name, const void *data,
		   uint64_t len, uint16_t method)
{
	struct tz_ent *e = &z->e[z->n];
	unsigned char h[30 + 256 + 4 + 64], dd[24], blk[5];
	size_t nl = strlen(name), hl;
	uint64_t hdr_end, pad;
	bool zip64 = len >= 0xffffffffu;

	snprintf(e->name, sizeof(e->name), "%s", name);
	e->method = method;
	e->flags = len ? 0x0808 : 0x0800;
	e->usize = len;
	e->csize = method == 8 ? len + 5 : len;
	e->crc = data ? crc32_update(0, data, (size_t)len) : 0;
	e->lh_off = z->pos;
	hdr_end = z->pos + 30 + nl + 4 + (method == 8 ? 5 : 0);
	pad = (64 - hdr_end % 64) % 64;
	memset(h, 0, sizeof(h));
	put32(h, 0x04034b50);
	put16(h + 6, e->flags);
	put16(h + 8, method);
	put16(h + 26, (uint16_t)nl);
	put16(h + 28, (uint16_t)(4 + pad));
	memcpy(h + 30, name, nl);
	put16(h + 30 + nl, 0x4246);
	put16(h + 32 + nl, (uint16_t)pad);
	memset(h + 34 + nl, 'Z', pad);
	hl = 34 + nl + pad;
	tz_write(z, z->pos, h, hl);
	z->pos += hl;
	if (method == 8) {
		blk[0] = 1;
		put16(blk + 1, (uint16_t)len);
		put16(blk + 3, (uint16_t)~len);
		tz_write(z, z->pos, blk, 5);
		z->pos += 5;
	}
	e->data_off = z->pos;
	if (data)
		tz_write(z, z->pos, data, (size_t)len);
	z->pos += len;
	if (e->flags & 8) {
		put32(dd, 0x08074b50);
		put32(dd + 4, e->crc);
		if (zip64) {
			put64(dd + 8, e->csize);
			put64(dd + 16, e->usize);
		} else {
			put32(dd + 8, (uint32_t)e->csize);
			put32(dd + 12, (uint32_t)e->usize);
		}
		tz_write(z, z->pos, dd, zip64 ? 24 : 16);
		z->pos += zip64 ? 24 : 16;
	}
	z->n++;
}

/* Writes the end records at z->pos for a directory of count entries. */
static void tz_end(struct tz *z, uint64_t cd_off, uint64_t cd_size,
		   uint64_t count, bool zip64)
{
	unsigned char r[56 + 20 + 22];
	unsigned char *eocd = r;
	size_t len = 22;

	memset(r, 0, sizeof(r));
	if (zip64) {
		z->z64_off = z->pos;
		z->loc_off = z->pos + 56;
		put32(r, 0x06064b50);
		put64(r + 4, 44);
		put16(r + 12, 45);
		put16(r + 14, 45);
		put64(r + 24, count);
		put64(r + 32, count);
		put64(r + 40, cd_size);
		put64(r + 48, cd_off);
		put32(r + 56, 0x07064b50);
		put64(r + 64, z->z64_off);
		put32(r + 72, 1);
		eocd = r + 76;
		len += 76;
	}
	z->eocd_off = z->pos + len - 22;
	put32(eocd, 0x06054b50);
	put16(eocd + 8, count >= 0xffff ? 0xffff : (uint16_t)count);
	put16(eocd + 10, count >= 0xffff ? 0xffff : (uint16_t)count);
	put32(eocd + 12, cd_size >= 0xffffffffu ? 0xffffffffu :
						  (uint32_t)cd_size);
	put32(eocd + 16, cd_off >= 0xffffffffu ? 0xffffffffu : (uint32_t)cd_off);
	tz_write(z, z->pos, r, len);
	z->pos += len;
	z->end = z->pos;
	if (ftruncate(z->fd, (off_t)z->end) != 0)
		z->bad = true;
}

/* Writes the central directory and the end records, and closes. */
static bool tz_finish(struct tz *z, bool zip64)
{
	unsigned char c[46 + 256 + 28];
	size_t i;

	z->cd_off = z->pos;
	for (i = 0; i < z->n; i++) {
		const struct tz_ent *e = &z->e[i];
		size_t nl = strlen(e->name), xl = 0;
		bool bu = e->usize >= 0xffffffffu, bc = e->csize >= 0xffffffffu;
		bool bo = e->lh_off >= 0xffffffffu;

		memset(c, 0, sizeof(c));
		put32(c, 0x02014b50);
		put16(c + 4, 0x031e);
		put16(c + 6, bu || bc || bo ? 45 : 20);
		put16(c + 8, e->flags);
		put16(c + 10, e->method);
		put32(c + 16, e->crc);
		put32(c + 20, bc ? 0xffffffffu : (uint32_t)e->csize);
		put32(c + 24, bu ? 0xffffffffu : (uint32_t)e->usize);
		put16(c + 28, (uint16_t)nl);
		put32(c + 42, bo ? 0xffffffffu : (uint32_t)e->lh_off);
		memcpy(c + 46, e->name, nl);
		if (bu || bc || bo) {
			unsigned char *x = c + 46 + nl;

			put16(x, 0x0001);
			xl = 4;
			if (bu)
				put64(x + xl, e->usize), xl += 8;
			if (bc)
				put64(x + xl, e->csize), xl += 8;
			if (bo)
				put64(x + xl, e->lh_off), xl += 8;
			put16(x + 2, (uint16_t)(xl - 4));
		}
		if (e->aes) {
			unsigned char *x = c + 46 + nl + xl;

			put16(c + 8, e->flags | 1);
			put16(c + 10, 99);
			put16(x, 0x9901);
			put16(x + 2, 7);
			put16(x + 4, 2);
			memcpy(x + 6, "AE", 2);
			x[8] = 3;
			put16(x + 9, e->method);
			xl += 11;
		}
		put16(c + 30, (uint16_t)xl);
		z->cd_ent[i] = z->pos;
		tz_write(z, z->pos, c, 46 + nl + xl);
		z->pos += 46 + nl + xl;
	}
	z->cd_size = z->pos - z->cd_off;
	tz_end(z, z->cd_off, z->cd_size, z->n, zip64);
	if (z->fd >= 0)
		close(z->fd);
	z->fd = -1;
	return !z->bad;
}

static void patch(const char *path, uint64_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0 || pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) {
		printf("Bail out! cannot patch %s: %s\n", path, strerror(errno));
		exit(1);
	}
	close(fd);
}

static void patch16(const char *path, uint64_t off, uint16_t v)
{
	unsigned char b[2];

	put16(b, v);
	patch(path, off, b, 2);
}

static void patch32(const char *path, uint64_t off, uint32_t v)
{
	unsigned char b[4];

	put32(b, v);
	patch(path, off, b, 4);
}

static void patch64(const char *path, uint64_t off, uint64_t v)
{
	unsigned char b[8];

	put64(b, v);
	patch(path, off, b, 8);
}

/* ---- the standard small file and its variants ---- */

struct spec {
	const char *prefix;    /* "arch/" unless set */
	bool no_pickle;
	bool pickle_deflate;
	bool rec_deflate;      /* data/3 compressed */
	const char *byteorder; /* NULL: no byteorder entry */
	bool dup;	       /* data/1 twice */
	bool two_pickles;
	bool classic;	       /* no zip64 end records */
	bool aes;	       /* data/1 WinZip AES encrypted */
};

static const unsigned char pickle_bytes[] = "\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x07s.";
static unsigned char rec0[100], rec1[13], rec2[64], rec3[50];

static void make_payloads(void)
{
	size_t i;

	for (i = 0; i < sizeof(rec0); i++)
		rec0[i] = (unsigned char)(i * 7 + 3);
	for (i = 0; i < sizeof(rec1); i++)
		rec1[i] = (unsigned char)(0xa0 + i);
	for (i = 0; i < sizeof(rec2); i++)
		rec2[i] = (unsigned char)(255 - i);
	for (i = 0; i < sizeof(rec3); i++)
		rec3[i] = (unsigned char)(i * i);
}

static void tmp_path(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", tmpdir, name);
}

/* Entry indices in the standard file. */
enum { E_PKL, E_R0, E_R1, E_R10, E_R2, E_R3, E_VERSION };

static bool build(struct tz *z, const char *path, const struct spec *s)
{
	const char *p = s->prefix ? s->prefix : "arch/";
	char name[256];

	tz_begin(z, path);
#define ADD(suffix, data, len, method)                                 \
	do {                                                           \
		snprintf(name, sizeof(name), "%s%s", p, suffix);       \
		tz_add(z, name, data, len, method);                    \
	} while (0)
	if (!s->no_pickle)
		ADD("data.pkl", pickle_bytes, sizeof(pickle_bytes) - 1,
		    s->pickle_deflate ? 8 : 0);
	else
		ADD("data.pk", pickle_bytes, sizeof(pickle_bytes) - 1, 0);
	ADD("data/0", rec0, sizeof(rec0), 0);
	ADD("data/1", rec1, sizeof(rec1), 0);
	ADD("data/10", rec0, 0, 0);
	ADD("data/2", rec2, sizeof(rec2), 0);
	ADD("data/3", rec3, sizeof(rec3), s->rec_deflate ? 8 : 0);
	ADD("version", "3\n", 2, 0);
	if (s->byteorder)
		ADD("byteorder", s->byteorder, strlen(s->byteorder), 0);
	ADD(".data/serialization_id", "1234567890", 10, 0);
	if (s->dup)
		ADD("data/1", rec1, sizeof(rec1), 0);
	z->e[E_R1].aes = s->aes;
	if (s->two_pickles)
		tz_add(z, "other/data.pkl", pickle_bytes, 4, 0);
#undef ADD
	return tz_finish(z, !s->classic);
}

/*
 * Expects path to fail with status and a message fragment: at open, or,
 * for a damaged storage record (located only when asked for), at the
 * lookup of that record.
 */
static void expect_fail(const char *path, int status, const char *frag,
			const char *what)
{
	struct zf_error err = { 0 };
	struct zf_ptfile *pf = NULL;
	int rc = zf_ptfile_open_path(path, 0, &pf, &err);
	const char *where_open = rc ? "open" : "record lookup";

	for (size_t i = 0; pf && !rc && i < zf_ptfile_count(pf); i++) {
		const char *name = zf_ptfile_entry_name(pf, i);
		const char *key = strstr(name, "/data/");
		struct zf_record rec;

		if (key && !strchr(key + 6, '/'))
			rc = zf_ptfile_record(pf, key + 6, &rec, &err);
	}
	tap_ok(rc == status && strcmp(err.where, path) == 0,
	       "%s: %s at %s (got %s: %s)", what, zf_status_str(status),
	       where_open, zf_status_str(rc), err.msg);
	tap_contains(err.msg, frag, "%s: message says '%s'", what, frag);
	zf_ptfile_close(pf);
}

static struct zf_ptfile *open_ok(const char *path, const char *what)
{
	struct zf_error err = { 0 };
	struct zf_ptfile *pf = NULL;
	int rc = zf_ptfile_open_path(path, 0, &pf, &err);

	tap_ok(rc == ZF_OK && pf, "%s: opens (%s)", what,
	       rc ? err.msg : "ok");
	if (rc)
		return NULL;
	/* Every valid file is also read by libzip, which must agree. */
	rc = zf_ptfile_cross_check(pf, &err);
	tap_ok(rc == ZF_OK, "%s: libzip sees the same entries (%s)", what,
	       rc ? err.msg : "ok");
	return pf;
}

/* Reads through the ptfile's own source, as zerofs serves bytes. */
static bool read_at(const struct zf_ptfile *pf, void *buf, size_t len, uint64_t off)
{
	return zf_source_pread(zf_ptfile_source(pf), buf, len, off, NULL) == ZF_OK;
}

static bool record_is(const struct zf_ptfile *pf, const char *key,
		      const void *want, size_t len)
{
	struct zf_error err = { 0 };
	struct zf_record r;
	unsigned char buf[256];

	if (zf_ptfile_record(pf, key, &r, &err) != ZF_OK || r.size != len ||
	    len > sizeof(buf) || r.offset % 64 != 0 ||
	    r.crc32 != crc32_update(0, want, len))
		return false;
	return read_at(pf, buf, len, r.offset) &&
	       memcmp(buf, want, len) == 0;
}

static void test_basic(void)
{
	struct spec s = { 0 };
	struct zf_error err = { 0 };
	struct zf_ptfile_entry ent;
	struct zf_record r;
	struct zf_ptfile *pf;
	struct tz z;
	char path[4200], msg[512];
	const unsigned char *pk;
	size_t len;

	tmp_path(path, sizeof(path), "basic.pt");
	tap_ok(build(&z, path, &s), "basic: written");
	pf = open_ok(path, "basic");
	if (!pf)
		return;
	pk = zf_ptfile_pickle(pf, &len);
	tap_ok(len == sizeof(pickle_bytes) - 1 &&
		       memcmp(pk, pickle_bytes, len) == 0,
	       "basic: pickle bytes");
	tap_ok(zf_ptfile_count(pf) == 8, "basic: 8 entries");
	tap_ok(strcmp(zf_ptfile_entry_name(pf, E_R10), "arch/data/10") == 0 &&
		       zf_ptfile_entry_name(pf, 8) == NULL,
	       "basic: entry names, NULL past the end");
	tap_ok(zf_ptfile_entry(pf, 8, &ent) == ZF_EUSAGE,
	       "basic: entry() refuses an index past the end");
	tap_ok(zf_ptfile_entry(pf, E_VERSION, &ent) == ZF_OK &&
		       ent.data_offset == UINT64_MAX && ent.size == 2 &&
		       ent.local_offset == z.e[E_VERSION].lh_off,
	       "basic: 'version' is listed but not located");
	tap_ok(record_is(pf, "0", rec0, sizeof(rec0)) &&
		       record_is(pf, "1", rec1, sizeof(rec1)) &&
		       record_is(pf, "2", rec2, sizeof(rec2)) &&
		       record_is(pf, "3", rec3, sizeof(rec3)) &&
		       record_is(pf, "10", rec0, 0),
	       "basic: every record's bytes at its 64-aligned offset");
	tap_ok(zf_ptfile_record(pf, "7", &r, &err) == ZF_EFORMAT &&
		       strcmp(err.where, path) == 0,
	       "basic: missing record is ZF_EFORMAT naming the file");
	tap_contains(err.msg, "no record 'arch/data/7'",
		     "basic: message names the entry (%s)", err.msg);
	zf_error_clear(&err);
	tap_ok(zf_ptfile_record(pf, "", &r, &err) == ZF_EFORMAT,
	       "basic: empty key is not a record");
	zf_error_clear(&err);
	tap_ok(zf_ptfile_record(pf, "../data.pkl", &r, &err) == ZF_EFORMAT,
	       "basic: data.pkl is not a record");
	zf_error_clear(&err);
	tap_ok(zf_ptfile_check_crc(pf, &err) == ZF_OK, "basic: CRCs check (%s)",
	       err.msg);
	zf_ptfile_close(pf);

	/* A changed data byte: libzip's CRC check finds it. */
	{
		unsigned char b = rec2[5] ^ 0x01;

		patch(path, z.e[E_R2].data_off + 5, &b, 1);
	}
	pf = open_ok(path, "changed data byte");
	zf_error_clear(&err);
	tap_ok(pf && zf_ptfile_check_crc(pf, &err) == ZF_EFORMAT &&
		       strcmp(err.where, path) == 0,
	       "changed data byte: check_crc is ZF_EFORMAT naming the file");
	snprintf(msg, sizeof(msg),
		 "entry 'arch/data/2': CRC-32 mismatch (central directory says 0x%08x)",
		 z.e[E_R2].crc);
	tap_contains(err.msg, msg, "changed data byte: message (%s)", err.msg);
	zf_ptfile_close(pf);
	build(&z, path, &s);
	pf = open_ok(path, "basic again");
	tap_ok(pf && zf_ptfile_size(pf) == z.end &&
		       strcmp(zf_ptfile_path(pf), path) == 0,
	       "basic: size and path");
	zf_ptfile_close(pf);
	zf_ptfile_close(NULL);

	/* The same without zip64 end records, and with no prefix. */
	s.classic = true;
	tap_ok(build(&z, path, &s), "classic: written");
	pf = open_ok(path, "classic end record only");
	tap_ok(pf && record_is(pf, "2", rec2, sizeof(rec2)),
	       "classic: record 2");
	zf_ptfile_close(pf);
	s.classic = false;
	s.prefix = "";
	tap_ok(build(&z, path, &s), "no prefix: written");
	pf = open_ok(path, "data.pkl at top level");
	tap_ok(pf && record_is(pf, "1", rec1, sizeof(rec1)),
	       "no prefix: record 1");
	zf_ptfile_close(pf);
	s.prefix = "a/b/archive/";
	tap_ok(build(&z, path, &s), "deep prefix: written");
	pf = open_ok(path, "deep prefix a/b/archive/");
	tap_ok(pf && record_is(pf, "3", rec3, sizeof(rec3)),
	       "deep prefix: record 3");
	zf_ptfile_close(pf);
	s.prefix = NULL;

	s.byteorder = "little";
	tap_ok(build(&z, path, &s), "byteorder little: written");
	pf = open_ok(path, "byteorder 'little'");
	zf_ptfile_close(pf);
	s.byteorder = "big";
	build(&z, path, &s);
	expect_fail(path, ZF_EUNSUPPORTED, "'arch/byteorder' says the data is big-endian",
		    "byteorder big");
	s.byteorder = "middle";
	build(&z, path, &s);
	expect_fail(path, ZF_EFORMAT, "holds 'middle'", "byteorder middle");
	unlink(path);
}

static void test_unsupported(void)
{
	struct spec s = { 0 };
	struct zf_error err = { 0 };
	struct zf_record r;
	struct zf_ptfile *pf;
	struct tz z;
	char path[4200];

	tmp_path(path, sizeof(path), "unsupported.pt");
	s.rec_deflate = true;
	tap_ok(build(&z, path, &s), "deflate record: written");
	pf = open_ok(path, "deflate record (not needed at open)");
	if (pf) {
		tap_ok(zf_ptfile_record(pf, "3", &r, &err) == ZF_EUNSUPPORTED &&
			       strcmp(err.where, path) == 0,
		       "deflate record: ZF_EUNSUPPORTED when asked for");
		tap_contains(err.msg,
			     "entry 'arch/data/3' is compressed (method 8); zerofs needs stored records",
			     "deflate record: message (%s)", err.msg);
		zf_error_clear(&err);
		tap_ok(record_is(pf, "2", rec2, sizeof(rec2)),
		       "deflate record: the stored ones still serve");
		tap_ok(zf_ptfile_check_crc(pf, &err) == ZF_OK,
		       "deflate record: check_crc passes (%s)", err.msg);
		zf_ptfile_close(pf);
	}
	s.rec_deflate = false;

	s.pickle_deflate = true;
	build(&z, path, &s);
	expect_fail(path, ZF_EUNSUPPORTED,
		    "entry 'arch/data.pkl' is compressed (method 8)",
		    "deflate data.pkl");
	s.pickle_deflate = false;

	/* Encryption flag on a record: refused when asked for. */
	build(&z, path, &s);
	patch16(path, z.cd_ent[E_R1] + 8, 0x0809);
	pf = open_ok(path, "encrypted record (not needed at open)");
	if (pf) {
		zf_error_clear(&err);
		tap_ok(zf_ptfile_record(pf, "1", &r, &err) == ZF_EUNSUPPORTED,
		       "encrypted record: ZF_EUNSUPPORTED");
		tap_contains(err.msg, "entry 'arch/data/1' is encrypted",
			     "encrypted record: message (%s)", err.msg);
		zf_ptfile_close(pf);
	}
	s.aes = true;
	build(&z, path, &s);
	pf = open_ok(path, "AES record (method 99, not needed at open)");
	if (pf) {
		zf_error_clear(&err);
		tap_ok(zf_ptfile_record(pf, "1", &r, &err) == ZF_EUNSUPPORTED,
		       "AES record: ZF_EUNSUPPORTED");
		tap_contains(err.msg, "entry 'arch/data/1' is encrypted (flags 0x0809, method 99)",
			     "AES record: message (%s)", err.msg);
		zf_ptfile_close(pf);
	}
	s.aes = false;
	build(&z, path, &s);
	patch16(path, z.cd_ent[E_PKL] + 8, 0x0809);
	expect_fail(path, ZF_EUNSUPPORTED, "entry 'arch/data.pkl' is encrypted",
		    "encrypted data.pkl");

	build(&z, path, &s);
	patch16(path, z.eocd_off + 4, 1);
	patch32(path, z.z64_off + 16, 1);
	expect_fail(path, ZF_EUNSUPPORTED, "multi-disk", "multi-disk zip64");
	s.classic = true;
	build(&z, path, &s);
	patch16(path, z.eocd_off + 6, 2);
	expect_fail(path, ZF_EUNSUPPORTED, "multi-disk", "multi-disk classic");
	unlink(path);
}

static void test_corrupt(void)
{
	struct spec s = { 0 };
	struct tz z;
	char path[4200], msg[4200];
	uint64_t size, cut;
	bool all_fail = true;
	int fd;

	tmp_path(path, sizeof(path), "corrupt.pt");

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	close(fd);
	expect_fail(path, ZF_EFORMAT, "not a zip file: 0 bytes", "empty file");
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	dprintf(fd, "this is a text file and not a zip archive at all, sorry\n");
	close(fd);
	expect_fail(path, ZF_EFORMAT, "no end of central directory record",
		    "text file");
	tmp_path(msg, sizeof(msg), "does-not-exist.pt");
	expect_fail(msg, ZF_ENOTFOUND, "cannot open", "missing file");
	expect_fail(tmpdir, ZF_EFORMAT, "not a regular file", "a directory");

	/* Every truncation of a valid file fails cleanly. */
	build(&z, path, &s);
	size = z.end;
	for (cut = size; cut-- > 0;) {
		struct zf_error err = { 0 };
		struct zf_ptfile *pf = NULL;

		if (truncate(path, (off_t)cut) != 0 ||
		    zf_ptfile_open_path(path, 0, &pf, &err) != ZF_EFORMAT ||
		    !strstr(err.msg, "not a zip file")) {
			all_fail = false;
			printf("# cut at %llu: %s\n", (unsigned long long)cut,
			       err.msg);
		}
		zf_ptfile_close(pf);
	}
	tap_ok(all_fail,
	       "every truncation (%llu cuts, through EOCD, zip64 records, central directory, local headers and data) is ZF_EFORMAT 'not a zip file'",
	       (unsigned long long)size);

	/* Tail kept, directory points elsewhere. */
	build(&z, path, &s);
	patch64(path, z.z64_off + 48, z.end + 10);
	patch32(path, z.eocd_off + 16, (uint32_t)(z.end + 10));
	expect_fail(path, ZF_EFORMAT, "central directory offset", "central offset past EOF");

	build(&z, path, &s);
	patch64(path, z.z64_off + 40, z.cd_size + 30);
	patch32(path, z.eocd_off + 12, (uint32_t)(z.cd_size + 30));
	expect_fail(path, ZF_EFORMAT, "runs past its end record",
		    "central directory cut by its end record");

	build(&z, path, &s);
	patch64(path, z.z64_off + 40, z.cd_size - 20);
	patch32(path, z.eocd_off + 12, (uint32_t)(z.cd_size - 20));
	expect_fail(path, ZF_EFORMAT, "runs past the end of the directory",
		    "central directory shorter than its entries");

	build(&z, path, &s);
	patch64(path, z.z64_off + 24, z.n - 1);
	patch64(path, z.z64_off + 32, z.n - 1);
	patch16(path, z.eocd_off + 8, (uint16_t)(z.n - 1));
	patch16(path, z.eocd_off + 10, (uint16_t)(z.n - 1));
	expect_fail(path, ZF_EFORMAT, "73 bytes after its 7 entries",
		    "entry count one short");

	build(&z, path, &s);
	patch32(path, z.cd_ent[E_R2], 0x02014b51);
	expect_fail(path, ZF_EFORMAT, "bad signature 0x02014b51",
		    "central header signature");

	build(&z, path, &s);
	patch32(path, z.e[E_R0].lh_off, 0x04034b55);
	expect_fail(path, ZF_EFORMAT, "entry 'arch/data/0': bad local header signature",
		    "local header signature");

	build(&z, path, &s);
	patch32(path, z.cd_ent[E_R2] + 42, (uint32_t)(z.cd_off - 10));
	expect_fail(path, ZF_EFORMAT, "entry 'arch/data/2': 64 bytes at local header offset 976 run past the end of the data",
		    "local header offset into the data");

	build(&z, path, &s);
	patch32(path, z.cd_ent[E_R2] + 42, (uint32_t)z.cd_off);
	expect_fail(path, ZF_EFORMAT, "is not before the central directory",
		    "local header offset at the central directory");

	build(&z, path, &s);
	patch(path, z.e[E_R1].lh_off + 30 + 5, "/", 1);
	expect_fail(path, ZF_EFORMAT, "entry 'arch/data/1': local header at offset",
		    "name mismatch local vs central");

	build(&z, path, &s);
	patch16(path, z.e[E_R1].lh_off + 26, 4);
	expect_fail(path, ZF_EFORMAT, "names 'arch' (4 bytes)",
		    "name length mismatch local vs central");

	build(&z, path, &s);
	patch16(path, z.e[E_R1].lh_off + 8, 8);
	expect_fail(path, ZF_EFORMAT, "local header says method 8",
		    "method mismatch local vs central");

	build(&z, path, &s);
	patch32(path, z.cd_ent[E_R0] + 20, 0xfffffff0u);
	patch32(path, z.cd_ent[E_R0] + 24, 0xfffffff0u);
	snprintf(msg, sizeof(msg), "4294967280 bytes at local header offset %llu run past the end of the data",
		 (unsigned long long)z.e[E_R0].lh_off);
	expect_fail(path, ZF_EFORMAT, msg, "record size past EOF");

	build(&z, path, &s);
	patch32(path, z.cd_ent[E_R2] + 20, (uint32_t)(z.e[E_R2].usize + 400));
	patch32(path, z.cd_ent[E_R2] + 24, (uint32_t)(z.e[E_R2].usize + 400));
	expect_fail(path, ZF_EFORMAT, "run past the end of the data (the central directory starts at 986)",
		    "record runs into the central directory");

	build(&z, path, &s);
	patch32(path, z.cd_ent[E_R2] + 20, 63);
	expect_fail(path, ZF_EFORMAT, "is stored but its sizes differ",
		    "stored sizes differ");

	build(&z, path, &s);
	patch32(path, z.cd_ent[E_R2] + 24, 0xffffffffu);
	patch32(path, z.cd_ent[E_R2] + 20, 0xffffffffu);
	expect_fail(path, ZF_EFORMAT, "no zip64 extra field",
		    "0xffffffff size without zip64 extra");

	s.no_pickle = true;
	build(&z, path, &s);
	expect_fail(path, ZF_EFORMAT, "no 'data.pkl' entry", "no data.pkl");
	s.no_pickle = false;
	s.two_pickles = true;
	build(&z, path, &s);
	expect_fail(path, ZF_EFORMAT, "two pickles in one file", "two data.pkl");
	s.two_pickles = false;
	s.dup = true;
	build(&z, path, &s);
	expect_fail(path, ZF_EFORMAT, "duplicate entry 'arch/data/1'",
		    "duplicate name");
	s.dup = false;

	/* Counts. */
	build(&z, path, &s);
	patch64(path, z.z64_off + 24, (uint64_t)1 << 40);
	patch64(path, z.z64_off + 32, (uint64_t)1 << 40);
	patch16(path, z.eocd_off + 8, 0xffff);
	patch16(path, z.eocd_off + 10, 0xffff);
	expect_fail(path, ZF_EFORMAT, "cannot hold 1099511627776 entries",
		    "huge entry count (zip64)");
	s.classic = true;
	build(&z, path, &s);
	patch16(path, z.eocd_off + 8, 0xfff0);
	patch16(path, z.eocd_off + 10, 0xfff0);
	expect_fail(path, ZF_EFORMAT, "cannot hold 65520 entries",
		    "huge entry count (classic)");
	build(&z, path, &s);
	patch32(path, z.eocd_off + 16, 0xffffffffu);
	expect_fail(path, ZF_EFORMAT, "no zip64 locator",
		    "zip64 marker without locator");
	s.classic = false;

	/* Over the caps: the directory region is a hole. */
	build(&z, path, &s);
	{
		uint64_t big = 46 * (ZF_PTFILE_MAX_ENTRIES + 1);

		z.fd = open(path, O_RDWR | O_CLOEXEC);
		z.pos = z.cd_off + big;
		tz_end(&z, z.cd_off, big, ZF_PTFILE_MAX_ENTRIES + 1, true);
		close(z.fd);
		expect_fail(path, ZF_ENOMEM, "1048577 zip entries (at most 1048576)",
			    "entry count over the cap");
		build(&z, path, &s);
		z.fd = open(path, O_RDWR | O_CLOEXEC);
		big = ZF_PTFILE_MAX_CDIR + 1;
		z.pos = z.cd_off + big;
		tz_end(&z, z.cd_off, big, 8, true);
		close(z.fd);
		expect_fail(path, ZF_ENOMEM, "central directory is 268435457 bytes",
			    "central directory over the cap");
	}

	/* zip64 end records. */
	build(&z, path, &s);
	patch64(path, z.loc_off + 8, z.end + 1000);
	expect_fail(path, ZF_EFORMAT, "zip64 end of central directory offset",
		    "zip64 locator past the file");
	build(&z, path, &s);
	patch64(path, z.loc_off + 8, z.loc_off - 20);
	expect_fail(path, ZF_EFORMAT, "runs into its locator",
		    "zip64 record overlapping its locator");
	build(&z, path, &s);
	patch32(path, z.z64_off, 0x06064b55);
	expect_fail(path, ZF_EFORMAT, "bad zip64 end of central directory signature",
		    "zip64 record signature");
	build(&z, path, &s);
	patch64(path, z.z64_off + 4, 1000);
	expect_fail(path, ZF_EFORMAT, "has a bad size 1000", "zip64 record size");
	build(&z, path, &s);
	patch64(path, z.z64_off + 48, z.cd_off + 46);
	expect_fail(path, ZF_EFORMAT, "end of central directory records disagree",
		    "classic and zip64 records disagree");
	unlink(path);
}

/*
 * Every single-byte change of a valid file either still opens, with every
 * record inside the file, or fails with a message that names the file.
 */
static void test_byte_flips(void)
{
	struct spec s = { 0 };
	struct tz z;
	char path[4200];
	uint64_t pos;
	unsigned long opened = 0, failed = 0, disagree = 0, bad = 0;
	static const char *const keys[] = { "0", "1", "2", "3", "10" };

	tmp_path(path, sizeof(path), "flip.pt");
	build(&z, path, &s);
	for (pos = 0; pos < z.end; pos++) {
		struct zf_error err = { 0 };
		struct zf_ptfile *pf = NULL;
		unsigned char orig, flip;
		int fd = open(path, O_RDWR | O_CLOEXEC);
		size_t k;

		if (fd < 0 || pread(fd, &orig, 1, (off_t)pos) != 1) {
			bad++;
			break;
		}
		flip = orig ^ (unsigned char)(pos % 2 ? 0xff : 0x10);
		if (pwrite(fd, &flip, 1, (off_t)pos) != 1)
			bad++;
		if (zf_ptfile_open_path(path, 0, &pf, &err) == ZF_OK) {
			struct zf_error xerr = { 0 };

			opened++;
			/* What our reader accepts, libzip must read alike, or
			 * say where they differ. */
			if (zf_ptfile_cross_check(pf, &xerr)) {
				disagree++;
				if (!strstr(xerr.msg, "disagree") && !strstr(xerr.msg, "libzip"))
					bad++;
				if (strcmp(xerr.where, path) != 0)
					bad++;
			}
			for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
				struct zf_record r;

				if (zf_ptfile_record(pf, keys[k], &r, NULL) ==
					    ZF_OK &&
				    (r.offset > z.end || r.size > z.end - r.offset))
					bad++;
			}
			zf_ptfile_close(pf);
		} else {
			failed++;
			if (!err.msg[0] || strcmp(err.where, path) != 0) {
				bad++;
				printf("# flip at %llu: '%s': '%s'\n",
				       (unsigned long long)pos, err.where, err.msg);
			}
		}
		if (pwrite(fd, &orig, 1, (off_t)pos) != 1)
			bad++;
		close(fd);
	}
	tap_ok(bad == 0,
	       "%llu one-byte corruptions: %lu open with records in bounds, %lu fail with a message naming the file (%lu more caught by the libzip cross-check)",
	       (unsigned long long)z.end, opened, failed, disagree);
	unlink(path);
}

/* A > 4 GiB sparse file with zip64 sizes and offsets in the directory. */
static void test_zip64_sparse(void)
{
	const uint64_t gib4 = (uint64_t)1 << 32;
	const uint64_t big = gib4 + 16;
	struct zf_error err = { 0 };
	struct zf_record r;
	struct zf_ptfile_entry ent;
	struct zf_ptfile *pf;
	struct tz z;
	char path[4200];
	unsigned char buf[64];
	uint64_t want;

	tmp_path(path, sizeof(path), "sparse64.pt");
	tz_begin(&z, path);
	tz_add(&z, "big/data.pkl", pickle_bytes, sizeof(pickle_bytes) - 1, 0);
	tz_add(&z, "big/data/0", rec0, sizeof(rec0), 0);
	z.pos = gib4 + 1000;
	tz_add(&z, "big/data/1", NULL, big, 0);
	tz_add(&z, "big/data/2", rec2, sizeof(rec2), 0);
	if (!tz_finish(&z, true)) {
		unlink(path);
		tap_ok(1, "zip64 sparse file # SKIP cannot write a sparse %llu-byte file here",
		       (unsigned long long)z.end);
		return;
	}
	pf = open_ok(path, "zip64 sparse file");
	if (pf) {
		want = z.e[2].lh_off + 30 + strlen("big/data/1");
		want += 4 + (64 - (want + 4) % 64) % 64;
		tap_ok(zf_ptfile_size(pf) > 2 * gib4, "zip64: file is %llu bytes",
		       (unsigned long long)zf_ptfile_size(pf));
		tap_ok(zf_ptfile_record(pf, "1", &r, &err) == ZF_OK &&
			       r.offset == want && r.size == big &&
			       r.offset > gib4,
		       "zip64: record 1 at %llu, %llu bytes (offset and size from the zip64 extra field)",
		       (unsigned long long)r.offset, (unsigned long long)r.size);
		tap_ok(zf_ptfile_record(pf, "2", &r, &err) == ZF_OK &&
			       r.offset > 2 * gib4 && r.size == sizeof(rec2) &&
			       read_at(pf, buf, sizeof(rec2), r.offset) &&
			       memcmp(buf, rec2, sizeof(rec2)) == 0,
		       "zip64: record 2 past 8 GiB reads back");
		tap_ok(record_is(pf, "0", rec0, sizeof(rec0)),
		       "zip64: record 0 below 4 GiB");
		tap_ok(zf_ptfile_entry(pf, 3, &ent) == ZF_OK &&
			       ent.local_offset == z.e[3].lh_off &&
			       ent.local_offset > 2 * gib4,
		       "zip64: local header offset from the zip64 extra field");
		zf_ptfile_close(pf);
	}
	/* data.pkl over the cap (its bytes are a hole). */
	{
		char p2[4200];
		struct tz z2;

		tmp_path(p2, sizeof(p2), "bigpickle.pt");
		tz_begin(&z2, p2);
		tz_add(&z2, "bp/data.pkl", NULL, ZF_PTFILE_MAX_PICKLE + 1, 0);
		if (tz_finish(&z2, true))
			expect_fail(p2, ZF_ENOMEM,
				    "entry 'bp/data.pkl' is 1073741825 bytes (at most 1073741824)",
				    "data.pkl over the cap");
		unlink(p2);
	}
	/* The zip64 extra field cut short. */
	patch16(path, z.cd_ent[2] + 46 + strlen("big/data/1") + 2, 16);
	patch16(path, z.cd_ent[2] + 30, 20);
	expect_fail(path, ZF_EFORMAT, "zip64 extra field of 16 bytes is too short",
		    "zip64 extra too short");
	unlink(path);
}

/* ---- comparisons with libzip and Python's zipfile ---- */

static const char *python(void)
{
	const char *p = getenv("PYTHON");

	return p && *p ? p : "/usr/bin/python3";
}

static bool have_torch(void)
{
	static int have = -1;
	char cmd[4200];

	if (have < 0) {
		snprintf(cmd, sizeof(cmd),
			 "'%s' -c 'import torch' >/dev/null 2>&1", python());
		have = access(python(), X_OK) == 0 && system(cmd) == 0;
	}
	return have;
}

/*
 * Checks every located entry of path: its bytes at our offset equal what
 * libzip reads, and (when manifest is not NULL) the CRC-32 of those bytes
 * equals the one Python's zipfile computed from zf.read(). Returns the
 * number of records compared, or -1 with why filled in.
 */
static long compare_readers(const char *path, const char *manifest,
			    char *why, size_t why_size)
{
	struct zf_error err = { 0 };
	struct zf_ptfile *pf = NULL;
	zip_t *za = NULL;
	unsigned char *ours = NULL, *theirs = NULL;
	long compared = -1, n = 0;
	size_t i;
	int zerr;

	snprintf(why, why_size, "ok");
	if (zf_ptfile_open_path(path, 0, &pf, &err)) {
		snprintf(why, why_size, "open: %s", err.msg);
		goto out;
	}
	za = zip_open(path, ZIP_RDONLY, &zerr);
	if (!za) {
		snprintf(why, why_size, "libzip open failed (%d)", zerr);
		goto out;
	}
	for (i = 0; i < zf_ptfile_count(pf); i++) {
		struct zf_ptfile_entry e;
		zip_file_t *zf;
		zip_int64_t got;

		zf_ptfile_entry(pf, i, &e);
		/* Storage records are located when looked up. */
		if (e.data_offset == UINT64_MAX && strstr(e.name, "/data/") &&
		    !strchr(strstr(e.name, "/data/") + 6, '/')) {
			struct zf_record rec;

			if (zf_ptfile_record(pf, strstr(e.name, "/data/") + 6, &rec, NULL) == ZF_OK)
				e.data_offset = rec.offset;
		}
		if (e.data_offset == UINT64_MAX)
			continue;
		free(ours);
		free(theirs);
		ours = malloc(e.size + 1);
		theirs = malloc(e.size + 1);
		zf = zip_fopen(za, e.name, 0);
		if (!ours || !theirs || !zf ||
		    !read_at(pf, ours, e.size, e.data_offset) ||
		    (got = zip_fread(zf, theirs, e.size + 1)) != (zip_int64_t)e.size ||
		    memcmp(ours, theirs, e.size) != 0 || e.data_offset % 64) {
			snprintf(why, why_size, "entry '%s' differs", e.name);
			if (zf)
				zip_fclose(zf);
			goto out;
		}
		zip_fclose(zf);
		if (manifest) {
			char line[600];
			FILE *f = fopen(manifest, "r");
			bool found = false;

			while (f && fgets(line, sizeof(line), f)) {
				char name[512];
				unsigned long long size;
				unsigned long crc;

				if (sscanf(line, "%511s %llu %lu", name, &size, &crc) == 3 &&
				    strcmp(name, e.name) == 0)
					found = size == e.size &&
						crc == crc32_update(0, ours, e.size);
			}
			if (f)
				fclose(f);
			if (!found) {
				snprintf(why, why_size,
					 "entry '%s' differs from python's zipfile",
					 e.name);
				goto out;
			}
		}
		n++;
	}
	if (zf_ptfile_check_crc(pf, &err)) {
		snprintf(why, why_size, "check_crc: %s", err.msg);
		goto out;
	}
	compared = n;
out:
	free(ours);
	free(theirs);
	if (za)
		zip_discard(za);
	zf_ptfile_close(pf);
	return compared;
}

/* Writes "name size crc" lines for every entry of the given files. */
static bool python_manifest(const char *manifest_dir, char **paths,
			    size_t n)
{
	char script[4200], cmd[9000];
	FILE *f;
	size_t i;
	bool ok;

	snprintf(script, sizeof(script), "%s/manifest.py", tmpdir);
	f = fopen(script, "w");
	if (!f)
		return false;
	fprintf(f, "import sys, zipfile, zlib, os\n"
		   "out = sys.argv[1]\n"
		   "for i, p in enumerate(sys.argv[2:]):\n"
		   "    with zipfile.ZipFile(p) as z, open(os.path.join(out, '%%d.txt' %% i), 'w') as o:\n"
		   "        for info in z.infolist():\n"
		   "            if info.compress_type == 0:\n"
		   "                o.write('%%s %%d %%d\\n' %% (info.filename, info.file_size, zlib.crc32(z.read(info))))\n");
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s/args", tmpdir);
	f = fopen(cmd, "w");
	if (!f)
		return false;
	for (i = 0; i < n; i++)
		fprintf(f, "%s\n", paths[i]);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "cat '%s/args' | tr '\\n' '\\0' | xargs -0 '%s' '%s' '%s'",
		 tmpdir, python(), script, manifest_dir);
	ok = system(cmd) == 0;
	unlink(script);
	snprintf(cmd, sizeof(cmd), "%s/args", tmpdir);
	unlink(cmd);
	return ok;
}

static void test_torch(void)
{
	static const char *const kinds[] = { "file", "buffer" };
	char path[4200], cmd[12000], man[4300], why[1200], *paths[1];
	size_t k;

	if (!have_torch()) {
		tap_ok(1, "torch-written file # SKIP no torch");
		return;
	}
	for (k = 0; k < 2; k++) {
		snprintf(path, sizeof(path), "%s/torch_%s.pt", tmpdir, kinds[k]);
		snprintf(cmd, sizeof(cmd),
			 "'%s' - '%s' %d <<'EOF'\n"
			 "import sys, io, torch\n"
			 "torch.manual_seed(0)\n"
			 "base = torch.randn(40, 3)\n"
			 "d = {'t%%d' %% i: torch.randn(i * 5 + 1) for i in range(24)}\n"
			 "d.update(bf=torch.randn(7, 3).bfloat16(), h=torch.randn(9).half(),\n"
			 "         l=torch.arange(17), b=torch.tensor([True, False]),\n"
			 "         empty=torch.empty(0), scalar=torch.tensor(2.5),\n"
			 "         view=base[3:9], base=base, big=torch.randn(70000))\n"
			 "if sys.argv[2] == '1':\n"
			 "    buf = io.BytesIO(); torch.save(d, buf)\n"
			 "    open(sys.argv[1], 'wb').write(buf.getvalue())\n"
			 "else:\n"
			 "    torch.save(d, sys.argv[1])\n"
			 "EOF",
			 python(), path, (int)k);
		if (system(cmd) != 0) {
			tap_ok(0, "torch.save to a %s", kinds[k]);
			continue;
		}
		snprintf(man, sizeof(man), "%s/man_torch", tmpdir);
		mkdir(man, 0755);
		paths[0] = path;
		tap_ok(python_manifest(man, paths, 1), "torch %s: python manifest",
		       kinds[k]);
		snprintf(man, sizeof(man), "%s/man_torch/0.txt", tmpdir);
		{
			long n = compare_readers(path, man, why, sizeof(why));

			tap_ok(n >= 33,
			       "torch %s: %ld records match libzip and python's zipfile, CRCs check (%s)",
			       kinds[k], n, why);
		}
		{
			struct zf_error err = { 0 };
			struct zf_ptfile *pf = NULL;
			struct zf_record r;
			char key[16];
			int i, bad = 0, n = 0;

			if (zf_ptfile_open_path(path, 0, &pf, &err) == ZF_OK) {
				for (i = 0; i < 40; i++) {
					snprintf(key, sizeof(key), "%d", i);
					if (zf_ptfile_record(pf, key, &r, &err) == ZF_OK)
						n++;
					else if (err.status != ZF_EFORMAT)
						bad++;
					zf_error_clear(&err);
				}
			}
			tap_ok(pf && n >= 32 && !bad &&
				       strncmp(zf_ptfile_entry_name(pf, 0),
					       k ? "archive/" : "torch_file/", 8) == 0,
			       "torch %s: %d records found by key, prefix '%s'",
			       kinds[k], n, pf ? zf_ptfile_entry_name(pf, 0) : "?");
			zf_ptfile_close(pf);
		}
		unlink(man);
		snprintf(man, sizeof(man), "%s/man_torch", tmpdir);
		rmdir(man);
		unlink(path);
	}
}

static void test_fixtures(void)
{
	const char *dir = getenv("ZEROFS_FIXTURES");
	char pattern[4200], man[4300], why[1200];
	glob_t g;
	size_t i;
	bool py;

	if (!dir || !*dir)
		dir = "../shared/fixtures/real";
	snprintf(pattern, sizeof(pattern), "%s/*/global_step3/*.pt", dir);
	if (glob(pattern, 0, NULL, &g) != 0 || g.gl_pathc == 0) {
		tap_ok(1, "real fixtures # SKIP none under %s", dir);
		return;
	}
	snprintf(man, sizeof(man), "%s/man_fix", tmpdir);
	mkdir(man, 0755);
	py = access(python(), X_OK) == 0 &&
	     python_manifest(man, g.gl_pathv, g.gl_pathc);
	if (!py)
		tap_ok(1, "fixtures against python's zipfile # SKIP no %s", python());
	for (i = 0; i < g.gl_pathc; i++) {
		char mf[4400];
		long n;

		snprintf(mf, sizeof(mf), "%s/%zu.txt", man, i);
		n = compare_readers(g.gl_pathv[i], py ? mf : NULL, why, sizeof(why));
		tap_ok(n > 0, "fixture %s: %ld records match libzip%s, CRCs check (%s)",
		       g.gl_pathv[i] + strlen(dir) + 1, n,
		       py ? " and python's zipfile" : "", why);
		unlink(mf);
	}
	rmdir(man);
	globfree(&g);
}

static void remove_tmpdir(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	char p[4400];

	while (d && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", tmpdir, de->d_name);
			unlink(p);
		}
	}
	if (d)
		closedir(d);
	rmdir(tmpdir);
}

int main(void)
{
	const char *root = getenv("TMPROOT");

	snprintf(tmpdir, sizeof(tmpdir), "%s/zf-ptfile.XXXXXX",
		 root && *root ? root : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp"));
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	make_payloads();
	test_basic();
	test_unsupported();
	test_corrupt();
	test_byte_flips();
	test_zip64_sparse();
	test_torch();
	test_fixtures();
	remove_tmpdir();
	return tap_done();
}
