/* SPDX-License-Identifier: MIT */
/*
 * The small helpers of core/: the bounded little-endian cursor
 * (core/cursor.h) read at every offset and length of a span, against a
 * naive reference; its sticky failure state; the growth rule
 * (core/grow.h) and checked arithmetic (core/ckd.h) at their limits.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckd.h"
#include "cursor.h"
#include "grow.h"
#include "tap.h"

/* The reference: n bytes at off of buf, little-endian, or false. */
static bool ref_le(const unsigned char *buf, size_t len, size_t off, size_t n,
		   uint64_t *v)
{
	if (off > len || len - off < n)
		return false;
	*v = 0;
	for (size_t i = 0; i < n; i++)
		*v |= (uint64_t)buf[off + i] << (8 * i);
	return true;
}

static void test_every_offset(void)
{
	unsigned char buf[24];
	size_t bad = 0, reads = 0;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(0x11 * (i + 1) ^ 0x80);
	for (size_t len = 0; len <= sizeof(buf); len++) {
		for (size_t off = 0; off <= len + 2; off++) {
			static const size_t widths[] = { 1, 2, 4, 8 };

			for (size_t w = 0; w < 4; w++) {
				size_t n = widths[w];
				struct zf_cursor c = zf_cursor_make(buf, len);
				struct zf_cursor d = zf_cursor_make(buf, len);
				uint64_t want = 0, got_at, got_seq = 0;
				bool fits = ref_le(buf, len, off, n, &want);

				switch (n) {
				case 1: got_at = zf_cursor_u8_at(&c, off); break;
				case 2: got_at = zf_cursor_u16_at(&c, off); break;
				case 4: got_at = zf_cursor_u32_at(&c, off); break;
				default: got_at = zf_cursor_u64_at(&c, off);
				}
				if (zf_cursor_seek(&d, off)) {
					switch (n) {
					case 1: got_seq = zf_cursor_u8(&d); break;
					case 2: got_seq = zf_cursor_u16(&d); break;
					case 4: got_seq = zf_cursor_u32(&d); break;
					default: got_seq = zf_cursor_u64(&d);
					}
				}
				reads += 2;
				if (fits != !zf_cursor_failed(&c) ||
				    fits != !zf_cursor_failed(&d) ||
				    (fits ? got_at != want || got_seq != want ||
						    d.pos != off + n || c.pos != 0
					  : got_at != 0 || got_seq != 0 ||
						    c.fail_pos != off ||
						    c.fail_need != n))
					bad++;
			}
		}
	}
	tap_ok(bad == 0,
	       "%zu reads of 1, 2, 4, 8 bytes at every offset of spans of 0 to 24 bytes agree with a naive reader, in bounds or failed (%zu differ)",
	       reads, bad);
}

static void test_sticky_and_kinds(void)
{
	static const unsigned char d[] = {
		0xfe, 0xff, 0xff, 0xff,				/* i32 -2 */
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, /* i64 max */
		0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18, /* pi, BE */
		'a', 'b', '\n', 'c',
	};
	struct zf_cursor c = zf_cursor_make(d, sizeof(d));
	const unsigned char *s;
	size_t n = 0;

	tap_ok(zf_cursor_i32(&c) == -2 && zf_cursor_i64(&c) == INT64_MAX,
	       "signed reads are two's complement");
	tap_ok(zf_cursor_f64be(&c) == 3.141592653589793,
	       "a big-endian binary64 (pickle's BINFLOAT)");
	s = zf_cursor_until(&c, '\n', &n);
	tap_ok(s && n == 2 && !memcmp(s, "ab", 2) && zf_cursor_left(&c) == 1,
	       "until: the bytes before the delimiter, the cursor after it");
	tap_ok(!zf_cursor_until(&c, '\n', &n) && zf_cursor_failed(&c) &&
		       c.fail_pos == 23 && c.fail_need == 0,
	       "until without a delimiter fails at its start");
	tap_ok(zf_cursor_u8(&c) == 'c' && zf_cursor_failed(&c) && c.fail_pos == 23,
	       "failure is sticky: a later read that fits still reads, the first failure is kept");
	c = zf_cursor_make(d, sizeof(d));
	tap_ok(zf_cursor_bytes(&c, 25) == NULL && c.pos == 0 &&
		       c.fail_need == 25 && zf_cursor_skip(&c, 24) &&
		       !zf_cursor_skip(&c, 1) && c.pos == 24,
	       "bytes past the end read nothing and do not move; skip to the end, not past it");
	c = zf_cursor_make(NULL, 0);
	tap_ok(!zf_cursor_failed(&c) && zf_cursor_left(&c) == 0 &&
		       zf_cursor_u64(&c) == 0 && zf_cursor_failed(&c),
	       "an empty span reads nothing");
	c = zf_cursor_make(d, sizeof(d));
	tap_ok(zf_cursor_u32_at(&c, SIZE_MAX - 1) == 0 && zf_cursor_failed(&c) &&
		       c.fail_pos == SIZE_MAX - 1,
	       "an offset near SIZE_MAX fails, no wrap-around");
	{
		static const unsigned char want[8] = { 0x08, 0x07, 0x06, 0x05,
						       0x04, 0x03, 0x02, 0x81 };
		unsigned char w[9] = { [8] = 0xee };

		zf_put_le64(w, 0x8102030405060708ull);
		c = zf_cursor_make(w, 8);
		tap_ok(!memcmp(w, want, 8) && w[8] == 0xee &&
			       zf_cursor_u64_at(&c, 0) == 0x8102030405060708ull,
		       "zf_put_le64 writes 8 little-endian bytes, which the cursor reads back");
	}
}

static void test_grow_and_ckd(void)
{
	size_t r = 0, cap = 0;
	uint64_t u = 0;
	int *a = NULL;
	int bad = 0;

	tap_ok(zf_grow_cap(0, 1, 4, 16) == 16 && zf_grow_cap(16, 17, 4, 16) == 32 &&
		       zf_grow_cap(16, 100, 4, 16) == 100 && zf_grow_cap(32, 5, 4, 16) == 32,
	       "grow_cap: the minimum, doubling, need when larger, unchanged when it fits");
	tap_ok(zf_grow_cap(0, SIZE_MAX / 2, 4, 16) == 0 &&
		       zf_grow_cap(0, (size_t)PTRDIFF_MAX / 8 + 1, 8, 1) == 0,
	       "grow_cap: 0 when the bytes cannot be addressed");
	tap_ok(zf_grow_cap((size_t)PTRDIFF_MAX / 16 + 1, (size_t)PTRDIFF_MAX / 16 + 2, 8, 1) ==
		       (size_t)PTRDIFF_MAX / 16 + 2,
	       "grow_cap: need alone when doubling would not be addressable");
	for (int i = 0; i < 1000; i++) {
		if ((size_t)i == cap && zf_grow(&a, &cap, (size_t)i + 1, 8)) {
			bad++;
			break;
		}
		a[i] = i;
	}
	for (int i = 0; i < 1000 && !bad; i++)
		bad += a[i] != i;
	tap_ok(!bad && cap == 1024, "zf_grow: 1000 appends keep every element (cap %zu)", cap);
	tap_ok(zf_grow(&a, &cap, SIZE_MAX / 2, 8) == -1 && cap == 1024 && a[999] == 999,
	       "zf_grow: an impossible size fails and leaves the array as it was");
	free(a);

	tap_ok(!zf_ckd_add(&r, (size_t)1, (size_t)2) && r == 3 &&
		       zf_ckd_add(&r, SIZE_MAX, (size_t)1) &&
		       zf_ckd_mul(&u, (uint64_t)1 << 62, (uint64_t)4) &&
		       !zf_ckd_mul(&u, (uint64_t)1 << 62, (uint64_t)3) &&
		       zf_ckd_sub(&r, (size_t)1, (size_t)2) &&
		       zf_ckd_add(&u, (int64_t)-1, (uint64_t)0),
	       "ckd: true exactly on overflow, negative into unsigned included");
}

int main(void)
{
	test_every_offset();
	test_sticky_and_kinds();
	test_grow_and_ckd();
	return tap_done();
}
