/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the container interface (core/container*.c): one file
 * torch 1.13 wrote in its legacy format (tests/unit/ptlegacy_vectors.h)
 * and the same pickle and records rewritten as a zip here, read through
 * one interface: each format sniffed, parsed, bound and asked for every
 * storage, which must hold the same bytes in both; what bind checks in a
 * zip (a missing record, a record of the wrong size), each proven by its
 * message; the digest (copies agree, other files do not); the verify
 * passes of each format; a record asked for after the parse was freed.
 */
#include "zerofs/container.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pickle_build.h"
#include "ptlegacy_vectors.h"
#include "tap.h"

static char tmpdir[4096];

/* ---- zip records ------------------------------------------------------- */

static uint32_t crc32(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = c >> 1 ^ (0xedb88320u & (0u - (c & 1)));
	}
	return ~c;
}

static void write_file(const char *path, const void *d, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || (n && write(fd, d, n) != (ssize_t)n) || close(fd))
		abort();
}

static char *tmp_path(const char *name)
{
	static char path[8][4300];
	static int next;
	char *p = path[next++ % 8];

	snprintf(p, sizeof(path[0]), "%s/%s", tmpdir, name);
	return p;
}

/* ---- a zip of the legacy vector's pickle and records ------------------- */

struct zent {
	char name[64];
	const unsigned char *data;
	size_t len;
	uint64_t off;
};

/*
 * Writes a zip of stored entries "arch/data.pkl" (the legacy file's main
 * pickle) and "arch/data/<key>" (its records), minimal headers, no
 * alignment: what the zip reader needs, not all torch writes. With
 * skip_key, that record is left out; with short_key, it loses a byte.
 */
static void write_zip(const char *path, const char *skip_key,
		      const char *short_key)
{
	struct zent e[16];
	struct bb b = { 0 };
	size_t n = 0, cd;

	snprintf(e[n].name, sizeof(e[n].name), "arch/data.pkl");
	e[n].data = pl_small + pl_small_pickle[0];
	e[n].len = pl_small_pickle[1];
	n++;
	for (const struct pl_record *r = pl_small_recs; r->key; r++) {
		if (skip_key && !strcmp(r->key, skip_key))
			continue;
		snprintf(e[n].name, sizeof(e[n].name), "arch/data/%s", r->key);
		e[n].data = pl_small + r->offset;
		e[n].len = r->size - (short_key && !strcmp(r->key, short_key) && r->size);
		n++;
	}
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(e[i].name);

		e[i].off = b.n;
		bb_le(&b, 0x04034b50u, 4);
		bb_le(&b, 20, 2);
		bb_le(&b, 0, 2); /* flags */
		bb_le(&b, 0, 2); /* stored */
		bb_le(&b, 0, 4); /* time, date */
		bb_le(&b, crc32(e[i].data, e[i].len), 4);
		bb_le(&b, e[i].len, 4);
		bb_le(&b, e[i].len, 4);
		bb_le(&b, nl, 2);
		bb_le(&b, 0, 2);
		bb_put(&b, e[i].name, nl);
		bb_put(&b, e[i].data, e[i].len);
	}
	cd = b.n;
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(e[i].name);

		bb_le(&b, 0x02014b50u, 4);
		bb_le(&b, 20, 2);
		bb_le(&b, 20, 2);
		bb_le(&b, 0, 2);
		bb_le(&b, 0, 2);
		bb_le(&b, 0, 4);
		bb_le(&b, crc32(e[i].data, e[i].len), 4);
		bb_le(&b, e[i].len, 4);
		bb_le(&b, e[i].len, 4);
		bb_le(&b, nl, 2);
		bb_le(&b, 0, 2); /* extra */
		bb_le(&b, 0, 2); /* comment */
		bb_le(&b, 0, 2); /* disk */
		bb_le(&b, 0, 2);
		bb_le(&b, 0, 4);
		bb_le(&b, e[i].off, 4);
		bb_put(&b, e[i].name, nl);
	}
	bb_le(&b, 0x06054b50u, 4);
	bb_le(&b, 0, 4);
	bb_le(&b, n, 2);
	bb_le(&b, n, 2);
	bb_le(&b, b.n - 12 - cd, 4); /* the directory's size: up to here */
	bb_le(&b, cd, 4);
	bb_le(&b, 0, 2);
	write_file(path, b.p, b.n);
	free(b.p);
}

/* ---- one pass: open, parse, bind --------------------------------------- */

struct pass {
	struct zf_container *c;
	struct zf_pickle *pk;
	struct zf_error err;
	int rc;
};

static int run(const char *path, struct pass *p)
{
	memset(p, 0, sizeof(*p));
	p->rc = zf_container_open_path(path, &p->c, &p->err);
	if (!p->rc)
		p->rc = zf_container_parse(p->c, &p->pk, &p->err);
	if (!p->rc)
		p->rc = zf_container_bind(p->c, p->pk, &p->err);
	return p->rc;
}

static void pass_free(struct pass *p)
{
	zf_pickle_free(p->pk);
	zf_container_close(p->c);
	memset(p, 0, sizeof(*p));
}

/* Every storage of the legacy vector: found, of its size, its bytes. */
static size_t bad_records(const struct zf_container *c)
{
	size_t bad = 0;

	for (const struct pl_record *r = pl_small_recs; r->key; r++) {
		struct zf_record rec;
		unsigned char buf[256];

		if (zf_container_record(c, r->key, &rec, NULL) || rec.size != r->size ||
		    rec.size > sizeof(buf) ||
		    zf_source_pread(zf_container_source(c), buf, rec.size, rec.offset, NULL) ||
		    memcmp(buf, pl_small + r->offset, rec.size))
			bad++;
	}
	return bad;
}

/* ---- tests ------------------------------------------------------------- */

static void test_both_formats(void)
{
	const char *legacy = tmp_path("legacy.pt"), *zip = tmp_path("zip.pt");
	struct pass l, z;
	uint64_t off, len, id[2];

	write_file(legacy, pl_small, sizeof(pl_small));
	write_zip(zip, NULL, NULL);
	tap_ok(run(legacy, &l) == ZF_OK, "legacy: opens, parses, binds (%s)", l.err.msg);
	tap_ok(run(zip, &z) == ZF_OK, "zip: opens, parses, binds (%s)", z.err.msg);
	if (l.rc || z.rc)
		goto out;
	tap_ok(zf_container_kind(l.c) == ZF_CONTAINER_LEGACY &&
		       !strcmp(zf_container_kind_name(zf_container_kind(l.c)), "legacy"),
	       "legacy: sniffed as torch's legacy format");
	tap_ok(zf_container_kind(z.c) == ZF_CONTAINER_ZIP &&
		       !strcmp(zf_container_kind_name(zf_container_kind(z.c)), "zip"),
	       "zip: sniffed as a zip");
	zf_container_pickle(l.c, &off, &len);
	tap_ok(off == pl_small_pickle[0] && len == pl_small_pickle[1],
	       "legacy: main pickle at byte %llu, %llu bytes", (unsigned long long)off,
	       (unsigned long long)len);
	zf_container_pickle(z.c, &off, &len);
	tap_ok(len == pl_small_pickle[1] && off > 0,
	       "zip: data.pkl at byte %llu, the same %llu bytes", (unsigned long long)off,
	       (unsigned long long)len);
	tap_ok(!zf_container_pickle_id(l.c, id), "legacy: no pickle id (no CRC recorded)");
	tap_ok(zf_container_pickle_id(z.c, id) && id[0] == pl_small_pickle[1] &&
		       id[1] == crc32(pl_small + pl_small_pickle[0], pl_small_pickle[1]),
	       "zip: the pickle id is its size and CRC-32");
	tap_ok(bad_records(l.c) == 0, "legacy: every storage's bytes where torch put them");
	tap_ok(bad_records(z.c) == 0, "zip: every storage's bytes the same as the legacy file's");
	tap_ok(zf_container_zip(z.c) && !zf_container_zip(l.c),
	       "the zip reader is there for the zip only");
	tap_ok(zf_container_cross_check(z.c, &z.err) == ZF_OK,
	       "zip: libzip reads the same entries (%s)", z.err.msg);
	tap_ok(zf_container_check_records(z.c, &z.err) == ZF_OK,
	       "zip: every CRC-32 checks (%s)", z.err.msg);
	tap_ok(zf_container_cross_check(l.c, &l.err) == ZF_OK &&
		       zf_container_check_records(l.c, &l.err) == ZF_OK,
	       "legacy: the structure was walked at bind, every record reads (%s)", l.err.msg);
	tap_ok(zf_container_bind(l.c, l.pk, &l.err) == ZF_EUSAGE &&
		       strstr(l.err.msg, "records already bound"),
	       "binding twice is a usage error: '%s'", l.err.msg);
out:
	pass_free(&l);
	pass_free(&z);
}

/* The legacy reader's records keep their own keys: the parse can go. */
static void test_parse_freed(void)
{
	const char *legacy = tmp_path("legacy.pt");
	struct pass l;

	write_file(legacy, pl_small, sizeof(pl_small));
	if (run(legacy, &l)) {
		tap_ok(0, "legacy: opens (%s)", l.err.msg);
		pass_free(&l);
		return;
	}
	zf_pickle_free(l.pk);
	l.pk = NULL;
	tap_ok(bad_records(l.c) == 0, "legacy: records found by key after the parse is freed");
	pass_free(&l);
}

static void test_zip_bind(void)
{
	const char *zip = tmp_path("zip.pt");
	const char *key = pl_small_recs[0].key;
	char want[128];
	struct pass z;

	write_zip(zip, key, NULL);
	snprintf(want, sizeof(want), "no record 'arch/data/%s'", key);
	tap_ok(run(zip, &z) == ZF_EFORMAT && strstr(z.err.msg, want) &&
		       strstr(z.err.where, "zip.pt"),
	       "zip without a storage's record: '%s' (%s)", z.err.msg, z.err.where);
	pass_free(&z);

	write_zip(zip, NULL, key);
	snprintf(want, sizeof(want), "storage '%s' claims %lld elements of %llu bytes, but its record holds %llu bytes",
		 key, (long long)pl_small_recs[0].numel,
		 (unsigned long long)(pl_small_recs[0].size / pl_small_recs[0].numel),
		 (unsigned long long)pl_small_recs[0].size - 1);
	tap_ok(run(zip, &z) == ZF_EFORMAT && strstr(z.err.msg, want),
	       "zip with a record a byte short: '%s'", z.err.msg);
	pass_free(&z);
}

static void test_digest(void)
{
	const char *a = tmp_path("a.pt"), *b = tmp_path("b.pt"), *c = tmp_path("c.pt");
	unsigned char *other = malloc(sizeof(pl_small));
	const struct pl_record *last = &pl_small_recs[0];
	struct pass pa, pb, pc;
	uint64_t da[2] = { 0 }, db[2] = { 1 }, dc[2] = { 0 };

	while (last[1].key)
		last++;
	memcpy(other, pl_small, sizeof(pl_small));
	other[last->offset + last->size - 1] ^= 1; /* the last byte of the last record */
	write_file(a, pl_small, sizeof(pl_small));
	write_file(b, pl_small, sizeof(pl_small));
	write_file(c, other, sizeof(pl_small));
	free(other);
	run(a, &pa);
	run(b, &pb);
	run(c, &pc);
	tap_ok(!pa.rc && !pb.rc && !pc.rc && !zf_container_digest(pa.c, da, NULL) &&
		       !zf_container_digest(pb.c, db, NULL) &&
		       !zf_container_digest(pc.c, dc, NULL),
	       "legacy: three digests");
	tap_ok(!memcmp(da, db, sizeof(da)), "legacy: a copy has the same digest");
	tap_ok(memcmp(da, dc, sizeof(da)), "legacy: a file whose last record differs has another");
	pass_free(&pa);
	pass_free(&pb);
	pass_free(&pc);

	memset(&pa, 0, sizeof(pa));
	write_file(a, pl_small, sizeof(pl_small));
	zf_container_open_path(a, &pa.c, &pa.err);
	tap_ok(pa.c && zf_container_digest(pa.c, da, &pa.err) == ZF_EUSAGE,
	       "legacy: no digest before bind: '%s'", pa.err.msg);
	pass_free(&pa);

	write_zip(a, NULL, NULL);
	write_zip(b, NULL, NULL);
	write_zip(c, pl_small_recs[0].key, NULL);
	run(a, &pa);
	run(b, &pb);
	memset(&pc, 0, sizeof(pc));
	zf_container_open_path(c, &pc.c, &pc.err);
	tap_ok(!pa.rc && !pb.rc && pc.c && !zf_container_digest(pa.c, da, NULL) &&
		       !zf_container_digest(pb.c, db, NULL) &&
		       !zf_container_digest(pc.c, dc, NULL) && !memcmp(da, db, sizeof(da)) &&
		       memcmp(da, dc, sizeof(da)),
	       "zip: a copy has the same digest, a file with other records another");
	pass_free(&pa);
	pass_free(&pb);
	pass_free(&pc);
}

static void test_sniff(void)
{
	static const unsigned char junk[] = { 0x80, 0x02, 'K', 0x07, '.' };
	const char *p = tmp_path("s.pt");
	struct zf_container *c = NULL;
	struct zf_error err = { 0 };
	struct zf_source *src = NULL;
	bool same = true;

	write_file(p, "", 0);
	tap_ok(zf_container_open_path(p, &c, &err) == ZF_EFORMAT && !c &&
		       strstr(err.msg, "not a zip file: 0 bytes, too short"),
	       "an empty file is read as a zip and refused: '%s'", err.msg);
	zf_error_clear(&err);
	write_file(p, "hello, world: not torch at all", 30);
	tap_ok(zf_container_open_path(p, &c, &err) == ZF_EFORMAT &&
		       strstr(err.msg, "not a zip file or truncated"),
	       "text is read as a zip and refused: '%s'", err.msg);
	zf_error_clear(&err);
	write_file(p, junk, sizeof(junk));
	tap_ok(zf_container_open_path(p, &c, &err) == ZF_EFORMAT &&
		       strstr(err.msg, "not a torch.save file: its first pickle holds a value of type int, not torch's magic number"),
	       "a pickle of 7 is read as legacy and refused: '%s'", err.msg);
	zf_error_clear(&err);

	{
		unsigned char tar[512] = "pickle";

		memcpy(tar + 257, "ustar", 5);
		write_file(p, tar, sizeof(tar));
		tap_ok(zf_container_open_path(p, &c, &err) == ZF_EUNSUPPORTED &&
			       strstr(err.msg, "a tar archive: torch's format of before 0.4 (2018), which zerofs does not read"),
		       "a tar is sniffed as torch's oldest format and refused: '%s'", err.msg);
		zf_error_clear(&err);
	}

	write_file(p, pl_small, sizeof(pl_small));
	if (zf_container_open_path(p, &c, &err) == ZF_OK &&
	    zf_source_open(p, &src, &err) == ZF_OK)
		tap_ok(zf_container_same_head(c, src, &same, &err) == ZF_OK && !same,
		       "legacy: a file is never shown the same from its head");
	else
		tap_ok(0, "legacy: opens (%s)", err.msg);
	zf_source_close(src);
	zf_container_close(c);
	zf_container_close(NULL);
}

int main(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/zf-container-XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_both_formats();
	test_parse_freed();
	test_zip_bind();
	test_digest();
	test_sniff();
	{
		char cmd[4400];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd))
			tap_ok(0, "removed %s", tmpdir);
	}
	return tap_done();
}
