/* SPDX-License-Identifier: MIT */
/*
 * A bounded reader of little-endian fields in a span of bytes already in
 * memory: the pickle machine reads its opcodes' arguments with it, the zip
 * and legacy torch readers their headers and records, and zf_put_le64()
 * writes the one little-endian field of a safetensors header. Private to
 * core/.
 *
 * Every read is checked against the end of the span. A read that does not
 * fit reads nothing, returns 0 (or NULL), and marks the cursor failed;
 * the mark is sticky (later reads that fit still read, but the cursor
 * stays failed, remembering the first failure), so a run of reads can be
 * checked once at its end:
 *
 *	struct zf_cursor c = zf_cursor_make(rec, rec_len);
 *	uint32_t sig = zf_cursor_u32(&c);
 *	uint64_t size = zf_cursor_u64_at(&c, 24);
 *	if (zf_cursor_failed(&c))
 *		return fail("record truncated: needs %zu bytes at %zu",
 *			    c.fail_need, c.fail_pos);
 *
 * Two ways to read: sequentially from pos (zf_cursor_u32() and friends
 * advance it), or at a fixed offset from the start of the span
 * (zf_cursor_u32_at() and friends leave pos alone), as zip headers are
 * specified. The bytes are never copied; zf_cursor_bytes() returns a
 * pointer into the span, valid as long as the span.
 *
 * Multi-byte fields are assembled byte by byte, so the span needs no
 * alignment and the host's byte order does not matter.
 */
#ifndef ZEROFS_CURSOR_H
#define ZEROFS_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct zf_cursor {
	const unsigned char *p; /* the span; NULL only when len is 0 */
	size_t len;		/* bytes in the span */
	size_t pos;		/* next byte a sequential read takes, <= len */
	bool failed;		/* a read did not fit (sticky) */
	size_t fail_pos;	/* where the first failed read started */
	size_t fail_need;	/* how many bytes it wanted */
};

static inline struct zf_cursor zf_cursor_make(const void *p, size_t len)
{
	struct zf_cursor c = { .p = p, .len = len };

	return c;
}

/* Bytes left after pos. */
static inline size_t zf_cursor_left(const struct zf_cursor *c)
{
	return c->len - c->pos;
}

static inline bool zf_cursor_failed(const struct zf_cursor *c)
{
	return c->failed;
}

/* Records the first failure; later ones keep it. */
static inline void zf_cursor_fail(struct zf_cursor *c, size_t at, size_t need)
{
	if (c->failed)
		return;
	c->failed = true;
	c->fail_pos = at;
	c->fail_need = need;
}

/* n bytes at offset at of the span, or NULL (and failed) when they do not
 * fit. Does not move pos. */
static inline const unsigned char *zf_cursor_span_at(struct zf_cursor *c,
						     size_t at, size_t n)
{
	if (at > c->len || n > c->len - at) {
		zf_cursor_fail(c, at, n);
		return NULL;
	}
	return c->p ? c->p + at : NULL; /* NULL + 0 is undefined in C */
}

/* The next n bytes, or NULL (and failed) when fewer are left; advances
 * past them. n == 0 gives a valid pointer (or NULL for an empty span
 * without storage: check zf_cursor_failed(), not the pointer, then).
 * Sequential reads after a failure still read what fits (the failure
 * stays recorded): the common path is one compare. */
static inline const unsigned char *zf_cursor_bytes(struct zf_cursor *c,
						   size_t n)
{
	const unsigned char *s;

	if (n > c->len - c->pos) {
		zf_cursor_fail(c, c->pos, n);
		return NULL;
	}
	s = c->p ? c->p + c->pos : NULL; /* NULL + 0 is undefined in C */
	c->pos += n;
	return s;
}

/* Skips n bytes; false (and failed) when fewer are left. */
static inline bool zf_cursor_skip(struct zf_cursor *c, size_t n)
{
	if (n > c->len - c->pos) {
		zf_cursor_fail(c, c->pos, n);
		return false;
	}
	c->pos += n;
	return true;
}

/* Moves pos to offset at (<= len); false (and failed) past the end. */
static inline bool zf_cursor_seek(struct zf_cursor *c, size_t at)
{
	if (at > c->len) {
		zf_cursor_fail(c, at, 0);
		return false;
	}
	c->pos = at;
	return true;
}

/* The bytes up to the next delim (not included) and its length in *n;
 * advances past the delimiter. NULL (and failed, with fail_need 0) when no
 * delim is left in the span. */
static inline const unsigned char *zf_cursor_until(struct zf_cursor *c,
						   unsigned char delim,
						   size_t *n)
{
	const unsigned char *s, *end;

	if (c->pos == c->len) {
		zf_cursor_fail(c, c->pos, 0);
		return NULL;
	}
	s = c->p + c->pos;
	end = memchr(s, delim, c->len - c->pos);
	if (!end) {
		zf_cursor_fail(c, c->pos, 0);
		return NULL;
	}
	*n = (size_t)(end - s);
	c->pos += *n + 1;
	return s;
}

/* Little-endian unsigned of 2, 4 and 8 bytes at s: written out, so that
 * compilers turn each into one load. */
static inline uint16_t zf_le16(const unsigned char *s)
{
	return (uint16_t)(s[0] | (unsigned)s[1] << 8);
}

static inline uint32_t zf_le32(const unsigned char *s)
{
	return (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 |
	       (uint32_t)s[3] << 24;
}

static inline uint64_t zf_le64(const unsigned char *s)
{
	return (uint64_t)zf_le32(s) | (uint64_t)zf_le32(s + 4) << 32;
}

/* The writing side, for the few fields zerofs writes (the length prefix
 * of a safetensors header): v as 8 little-endian bytes at s, which the
 * caller has room for. */
static inline void zf_put_le64(unsigned char *s, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		s[i] = (unsigned char)(v >> (8 * i));
}

/* Little-endian unsigned of n <= 8 bytes at s. */
static inline uint64_t zf_le(const unsigned char *s, size_t n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = v << 8 | s[n];
	return v;
}

static inline uint64_t zf_cursor_le_at(struct zf_cursor *c, size_t at,
				       size_t n)
{
	const unsigned char *s = zf_cursor_span_at(c, at, n);

	return s ? zf_le(s, n) : 0;
}

static inline uint64_t zf_cursor_le(struct zf_cursor *c, size_t n)
{
	const unsigned char *s = zf_cursor_bytes(c, n);

	return s ? zf_le(s, n) : 0;
}

/* Sequential reads: 0 when they do not fit. */
static inline uint8_t zf_cursor_u8(struct zf_cursor *c)
{
	const unsigned char *s = zf_cursor_bytes(c, 1);

	return s ? s[0] : 0;
}

static inline uint16_t zf_cursor_u16(struct zf_cursor *c)
{
	const unsigned char *s = zf_cursor_bytes(c, 2);

	return s ? zf_le16(s) : 0;
}

static inline uint32_t zf_cursor_u32(struct zf_cursor *c)
{
	const unsigned char *s = zf_cursor_bytes(c, 4);

	return s ? zf_le32(s) : 0;
}

static inline uint64_t zf_cursor_u64(struct zf_cursor *c)
{
	const unsigned char *s = zf_cursor_bytes(c, 8);

	return s ? zf_le64(s) : 0;
}

/* Two's complement, as every format zerofs reads stores signed fields. */
static inline int32_t zf_cursor_i32(struct zf_cursor *c)
{
	uint32_t u = zf_cursor_u32(c);
	int32_t v;

	memcpy(&v, &u, sizeof(v));
	return v;
}

static inline int64_t zf_cursor_i64(struct zf_cursor *c)
{
	uint64_t u = zf_cursor_u64(c);
	int64_t v;

	memcpy(&v, &u, sizeof(v));
	return v;
}

/* An IEEE 754 binary64, little-endian. */
static inline double zf_cursor_f64(struct zf_cursor *c)
{
	uint64_t u = zf_cursor_u64(c);
	double d;

	memcpy(&d, &u, sizeof(d));
	return d;
}

/* The same, big-endian: pickle's BINFLOAT is the one such field. */
static inline double zf_cursor_f64be(struct zf_cursor *c)
{
	const unsigned char *s = zf_cursor_bytes(c, 8);
	uint64_t u = 0;
	double d;

	for (size_t i = 0; s && i < 8; i++)
		u = u << 8 | s[i];
	memcpy(&d, &u, sizeof(d));
	return d;
}

/* Fixed-offset reads (from the start of the span): 0 when they do not
 * fit. pos does not move. */
static inline uint8_t zf_cursor_u8_at(struct zf_cursor *c, size_t at)
{
	const unsigned char *s = zf_cursor_span_at(c, at, 1);

	return s ? s[0] : 0;
}

static inline uint16_t zf_cursor_u16_at(struct zf_cursor *c, size_t at)
{
	const unsigned char *s = zf_cursor_span_at(c, at, 2);

	return s ? zf_le16(s) : 0;
}

static inline uint32_t zf_cursor_u32_at(struct zf_cursor *c, size_t at)
{
	const unsigned char *s = zf_cursor_span_at(c, at, 4);

	return s ? zf_le32(s) : 0;
}

static inline uint64_t zf_cursor_u64_at(struct zf_cursor *c, size_t at)
{
	const unsigned char *s = zf_cursor_span_at(c, at, 8);

	return s ? zf_le64(s) : 0;
}

#endif /* ZEROFS_CURSOR_H */
