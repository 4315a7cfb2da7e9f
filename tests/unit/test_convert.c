/* SPDX-License-Identifier: MIT */
/*
 * core/convert.c against itself (scalar vs AVX2 on all 2^32 fp32 inputs and
 * all 2^16 half inputs), against hand-worked bit patterns, and against
 * torch's own Tensor.to() results recorded in convert_vectors.h by
 * gen_convert_vectors.py. Non-NaN results must be bit-exact. NaNs follow
 * one rule (convert.h), checked exactly on every input; torch's NaN bits are
 * the same except for bf16 narrowing, where torch drops the sign and its
 * scalar and vector paths disagree (0x7fc0, 0xffff): that difference is
 * pinned too.
 */
#include "zerofs/convert.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "convert_vectors.h"
#include "tap.h"

#define CHUNK ((size_t)1 << 20)

/* Under ASan the full sweep takes minutes; the sanitizer's value is in
 * the code paths, which every 8th chunk (plus all NaN chunks) covers. */
#if defined(__SANITIZE_ADDRESS__)
#define SWEEP_STRIDE 8
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SWEEP_STRIDE 8
#endif
#endif
#ifndef SWEEP_STRIDE
#define SWEEP_STRIDE 1
#endif
#define SWEEP (SWEEP_STRIDE == 1 ? "all 2^32" : \
	       "1/8 of 2^32 (sanitizer build; all NaNs)")

static int isnan32(uint32_t u)
{
	return (u & 0x7fffffffu) > 0x7f800000u;
}

static int isnan_bf16(uint16_t h)
{
	return (h & 0x7fffu) > 0x7f80u;
}

static int isnan_f16(uint16_t h)
{
	return (h & 0x7fffu) > 0x7c00u;
}

static uint16_t cvt16(enum zf_dtype dst, enum zf_dtype src, uint32_t in)
{
	uint16_t out = 0;
	uint16_t in16 = (uint16_t)in;

	if (src == ZF_DT_F32)
		zf_convert(dst, &out, src, &in, 1);
	else
		zf_convert(dst, &out, src, &in16, 1);
	return out;
}

static uint32_t cvt32(enum zf_dtype src, uint16_t in)
{
	uint32_t out = 0;

	zf_convert(ZF_DT_F32, &out, src, &in, 1);
	return out;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * Counts outputs breaking the NaN rule: NaN in -> exactly the quiet NaN
 * qnan with the input's sign; anything else -> not a NaN (nan_max is the
 * Inf pattern). Written branch-free so that it vectorises: it runs 2^32
 * times.
 */
static uint64_t count_nan_bad(const uint32_t *in, const uint16_t *out,
			      size_t n, uint16_t nan_max, uint16_t qnan)
{
	uint64_t bad = 0;

	for (size_t i = 0; i < n; i++) {
		uint32_t in_nan = (in[i] & 0x7fffffffu) > 0x7f800000u;
		uint32_t out_nan = (uint32_t)(out[i] & 0x7fffu) > nan_max;
		uint32_t want = ((in[i] >> 16) & 0x8000u) | qnan;

		bad += (in_nan ^ out_nan) | (in_nan & (out[i] != want));
	}
	return bad;
}

static uint64_t count_nan_out(const uint16_t *out, size_t n, uint16_t nan_max)
{
	uint32_t bad = 0;

	for (size_t i = 0; i < n; i++)
		bad += (uint16_t)(out[i] & 0x7fffu) > nan_max;
	return bad;
}

/*
 * Every fp32 pattern through both kernels, for one destination type.
 * Also checks the NaN rule on every input: NaN in -> the canonical quiet
 * NaN of the same sign, anything else -> not a NaN.
 */
static void exhaustive_narrow(enum zf_dtype dst, uint32_t *in, uint16_t *a,
			      uint16_t *b)
{
	uint64_t mismatches = 0, nan_bad = 0, first_bad = 0;
	uint16_t qnan = dst == ZF_DT_BF16 ? 0x7fc0 : 0x7e00;
	uint16_t nan_max = dst == ZF_DT_BF16 ? 0x7f80 : 0x7c00;
	double t0 = now();

	for (uint64_t base = 0; base < ((uint64_t)1 << 32); base += CHUNK) {
		if ((base / CHUNK) % SWEEP_STRIDE &&
		    ((base >> 23) & 0xff) != 0xff)
			continue;
		for (size_t i = 0; i < CHUNK; i++)
			in[i] = (uint32_t)(base + i);
		zf_convert_force_scalar(false);
		zf_convert(dst, a, ZF_DT_F32, in, CHUNK);
		zf_convert_force_scalar(true);
		zf_convert(dst, b, ZF_DT_F32, in, CHUNK);
		if (memcmp(a, b, CHUNK * 2)) {
			for (size_t i = 0; i < CHUNK; i++)
				if (a[i] != b[i] && mismatches++ == 0)
					first_bad = base + i;
		}
		/* The NaN inputs fill whole chunks (0x7f8xxxxx..0x7fffffff
		 * and the same with the sign), so elsewhere it is enough, and
		 * three times faster, to check that no NaN comes out. */
		if (((base >> 23) & 0xff) == 0xff)
			nan_bad += count_nan_bad(in, a, CHUNK, nan_max, qnan);
		else
			nan_bad += count_nan_out(a, CHUNK, nan_max);
	}
	zf_convert_force_scalar(false);
	tap_ok(mismatches == 0,
	       "%s fp32 -> %s: avx2 == scalar (%llu mismatches, first "
	       "0x%08llx, %.1f s)",
	       SWEEP, zf_dtype_st_name(dst), (unsigned long long)mismatches,
	       (unsigned long long)first_bad, now() - t0);
	tap_ok(nan_bad == 0,
	       "%s fp32 -> %s: NaN <-> canonical NaN of same sign "
	       "(%llu bad)",
	       SWEEP, zf_dtype_st_name(dst), (unsigned long long)nan_bad);
}

/* All 65536 patterns of one 16-bit type: widening, both kernels, and back. */
static void exhaustive_half(enum zf_dtype src)
{
	enum zf_dtype other = src == ZF_DT_BF16 ? ZF_DT_F16 : ZF_DT_BF16;
	static uint16_t h[65536 + 7], back_v[65536 + 7], back_s[65536 + 7];
	static uint16_t x_v[65536 + 7], x_s[65536 + 7];
	static uint32_t w_v[65536 + 7], w_s[65536 + 7];
	int (*isnan16)(uint16_t) = src == ZF_DT_BF16 ? isnan_bf16 : isnan_f16;
	unsigned bad_widen = 0, bad_trip = 0, bad_cross = 0;

	for (uint32_t i = 0; i < 65536; i++)
		h[i] = (uint16_t)i;
	zf_convert_force_scalar(false);
	zf_convert(ZF_DT_F32, w_v, src, h, 65536);
	zf_convert(src, back_v, ZF_DT_F32, w_v, 65536);
	zf_convert(other, x_v, src, h, 65536);
	zf_convert_force_scalar(true);
	zf_convert(ZF_DT_F32, w_s, src, h, 65536);
	zf_convert(src, back_s, ZF_DT_F32, w_s, 65536);
	zf_convert(other, x_s, src, h, 65536);
	zf_convert_force_scalar(false);

	tap_ok(!memcmp(w_v, w_s, sizeof(uint32_t) * 65536),
	       "all 2^16 %s -> F32: avx2 == scalar", zf_dtype_st_name(src));
	tap_ok(!memcmp(x_v, x_s, sizeof(uint16_t) * 65536),
	       "all 2^16 %s -> %s: avx2 == scalar", zf_dtype_st_name(src),
	       zf_dtype_st_name(other));
	tap_ok(!memcmp(back_v, back_s, sizeof(uint16_t) * 65536),
	       "all 2^16 %s -> F32 -> %s: avx2 == scalar",
	       zf_dtype_st_name(src), zf_dtype_st_name(src));

	for (uint32_t i = 0; i < 65536; i++) {
		uint32_t w = w_s[i];

		/* Exact widening: sign and value, checked independently of
		 * the kernel's own formula through the double value. NaN:
		 * sign and payload kept, bf16 by a plain shift, fp16 with
		 * the quiet bit set (torch and vcvtph2ps); narrowed again,
		 * and across to the other half type, the canonical quiet
		 * NaN of the same sign. */
		if (isnan16(h[i])) {
			uint32_t sign = (uint32_t)(h[i] & 0x8000u);
			uint32_t want = src == ZF_DT_BF16
						? (uint32_t)h[i] << 16
						: sign << 16 | 0x7fc00000u |
							  (uint32_t)(h[i] & 0x3ffu) << 13;

			if (w != want)
				bad_widen++;
			if (back_s[i] != (sign | (src == ZF_DT_BF16 ? 0x7fc0u : 0x7e00u)))
				bad_trip++;
			if (x_s[i] != (sign | (src == ZF_DT_BF16 ? 0x7e00u : 0x7fc0u)))
				bad_cross++;
			continue;
		}
		if (src == ZF_DT_BF16) {
			if (w != (uint32_t)h[i] << 16)
				bad_widen++;
		} else {
			float f;
			double want;
			unsigned e = (h[i] >> 10) & 0x1f, m = h[i] & 0x3ff;

			memcpy(&f, &w, 4);
			if (e == 0x1f)
				want = 1.0 / 0.0;
			else if (e == 0)
				want = (double)m / 16777216.0;
			else
				want = (1.0 + m / 1024.0) *
				       (double)(1u << e) / 32768.0;
			if (h[i] & 0x8000)
				want = -want;
			if ((double)f != want || (w >> 31) != (h[i] >> 15u))
				bad_widen++;
		}
		if (back_s[i] != h[i])
			bad_trip++;
	}
	tap_ok(bad_widen == 0, "all 2^16 %s widen exactly, NaN payload and sign "
	       "kept (%u bad)", zf_dtype_st_name(src), bad_widen);
	tap_ok(bad_cross == 0, "all 2^16 %s NaNs -> %s: the canonical quiet NaN "
	       "of the same sign (%u bad)", zf_dtype_st_name(src),
	       zf_dtype_st_name(other), bad_cross);
	tap_ok(bad_trip == 0,
	       "all 2^16 %s round trip through F32 (NaN -> canonical; %u bad)",
	       zf_dtype_st_name(src), bad_trip);
}

struct edge {
	uint32_t in;
	uint16_t bf16, f16;
	const char *what;
};

static const struct edge edges[] = {
	{ 0x00000000u, 0x0000, 0x0000, "+0" },
	{ 0x80000000u, 0x8000, 0x8000, "-0" },
	{ 0x3f800000u, 0x3f80, 0x3c00, "1.0" },
	{ 0xbf800000u, 0xbf80, 0xbc00, "-1.0" },
	{ 0x7f800000u, 0x7f80, 0x7c00, "+Inf" },
	{ 0xff800000u, 0xff80, 0xfc00, "-Inf" },
	/* bf16 ties: kept part even stays, odd goes up */
	{ 0x3f808000u, 0x3f80, 0x3c04, "1+2^-8 tie, bf16 down to even" },
	{ 0x3f818000u, 0x3f82, 0x3c0c, "1+3*2^-8 tie, bf16 up to even" },
	{ 0x3f807fffu, 0x3f80, 0x3c04, "just below a bf16 tie" },
	{ 0x3f808001u, 0x3f81, 0x3c04, "just above a bf16 tie" },
	{ 0xbf818000u, 0xbf82, 0xbc0c, "negative bf16 tie" },
	/* fp16 ties in the 13 dropped bits */
	{ 0x3f801000u, 0x3f80, 0x3c00, "1+2^-11 tie, fp16 down to even" },
	{ 0x3f803000u, 0x3f80, 0x3c02, "1+3*2^-11 tie, fp16 up to even" },
	{ 0x3f801001u, 0x3f80, 0x3c01, "just above an fp16 tie" },
	/* largest finite and overflow */
	{ 0x7f7fffffu, 0x7f80, 0x7c00, "FLT_MAX -> bf16 Inf, fp16 Inf" },
	{ 0x7f7f7fffu, 0x7f7f, 0x7c00, "just below bf16 overflow" },
	{ 0x7f7f8000u, 0x7f80, 0x7c00, "bf16 overflow tie -> Inf" },
	{ 0x477fe000u, 0x4780, 0x7bff, "65504 = fp16 max" },
	{ 0x477fefffu, 0x4780, 0x7bff, "just below 65520 -> 65504" },
	{ 0x477ff000u, 0x4780, 0x7c00, "65520 -> fp16 Inf" },
	{ 0xc77ff000u, 0xc780, 0xfc00, "-65520 -> fp16 -Inf" },
	{ 0x47800000u, 0x4780, 0x7c00, "65536 -> fp16 Inf" },
	/* fp16 subnormal boundaries */
	{ 0x38800000u, 0x3880, 0x0400, "2^-14 smallest fp16 normal" },
	{ 0x387fc000u, 0x3880, 0x03ff, "largest fp16 subnormal" },
	{ 0x387fe000u, 0x3880, 0x0400, "tie between 0x3ff and 0x400 -> even" },
	{ 0x387fdfffu, 0x3880, 0x03ff, "just below that tie" },
	{ 0x33800000u, 0x3380, 0x0001, "2^-24 smallest fp16 subnormal" },
	{ 0x33000000u, 0x3300, 0x0000, "2^-25 tie -> 0 (even)" },
	{ 0x33000001u, 0x3300, 0x0001, "just above 2^-25 -> 2^-24" },
	{ 0xb3000001u, 0xb300, 0x8001, "negative just above 2^-25" },
	{ 0x33c00000u, 0x33c0, 0x0002, "1.5*2^-24 tie -> 2 (even)" },
	{ 0x34200000u, 0x3420, 0x0002, "2.5*2^-24 tie -> 2 (even)" },
	{ 0x32ffffffu, 0x3300, 0x0000, "below 2^-25 -> 0" },
	{ 0xb2ffffffu, 0xb300, 0x8000, "negative tiny -> -0" },
	/* fp32 subnormals: bf16 keeps them (no flush) */
	{ 0x00000001u, 0x0000, 0x0000, "smallest fp32 subnormal" },
	{ 0x00008000u, 0x0000, 0x0000, "fp32 subnormal bf16 tie -> even 0" },
	{ 0x00018000u, 0x0002, 0x0000, "fp32 subnormal bf16 tie -> even 2" },
	{ 0x007fffffu, 0x0080, 0x0000, "largest fp32 subnormal -> bf16 min normal" },
	{ 0x80010000u, 0x8001, 0x8000, "negative bf16 subnormal kept" },
	/* NaNs: the canonical quiet NaN with the input's sign */
	{ 0x7fc00000u, 0x7fc0, 0x7e00, "quiet NaN" },
	{ 0xffc00000u, 0xffc0, 0xfe00, "negative quiet NaN" },
	{ 0x7f800001u, 0x7fc0, 0x7e00, "signalling NaN, payload in low bits" },
	{ 0xff800001u, 0xffc0, 0xfe00, "negative signalling NaN" },
	{ 0x7fffffffu, 0x7fc0, 0x7e00, "all-ones NaN (would carry into sign)" },
	{ 0xffffffffu, 0xffc0, 0xfe00, "negative all-ones NaN" },
	{ 0x7f808000u, 0x7fc0, 0x7e00, "NaN whose payload rounds to Inf bits" },
};

static void edge_cases(void)
{
	for (int pass = 0; pass < 2; pass++) {
		zf_convert_force_scalar(pass == 1);
		for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
			const struct edge *e = &edges[i];
			uint16_t b = cvt16(ZF_DT_BF16, ZF_DT_F32, e->in);
			uint16_t h = cvt16(ZF_DT_F16, ZF_DT_F32, e->in);

			tap_ok(b == e->bf16 && h == e->f16,
			       "%s: 0x%08x -> bf16 0x%04x (want 0x%04x), "
			       "fp16 0x%04x (want 0x%04x) [%s]",
			       e->what, e->in, b, e->bf16, h, e->f16,
			       zf_convert_impl());
		}
	}
	zf_convert_force_scalar(false);
}

/* What torch 1.13 writes for a NaN narrowed to bf16: the sign dropped,
 * 0x7fc0 from c10's scalar code, 0xffff from its AVX2 kernel (the one
 * place where its NaN bits differ from our rule, see convert.h). */
static int torch_bf16_nan(uint16_t h)
{
	return h == 0x7fc0 || h == 0xffff;
}

/* The recorded torch results, one element at a time and as whole arrays
 * (so both the vector body and the scalar tail are used). */
static void torch_vectors(void)
{
	size_t nn = sizeof(cv_narrow) / sizeof(cv_narrow[0]);
	size_t nw = sizeof(cv_wide) / sizeof(cv_wide[0]);
	uint32_t *in = malloc(nn * 4);
	uint16_t *ob = malloc(nn * 2), *oh = malloc(nn * 2);
	uint16_t *in16 = malloc(nw * 2);
	uint32_t *wb = malloc(nw * 4), *wh = malloc(nw * 4);
	uint16_t *xbh = malloc(nw * 2), *xhb = malloc(nw * 2);

	if (!in || !ob || !oh || !in16 || !wb || !wh || !xbh || !xhb)
		abort();
	for (size_t i = 0; i < nn; i++)
		in[i] = cv_narrow[i].in;
	for (size_t i = 0; i < nw; i++)
		in16[i] = cv_wide[i].in;

	for (int pass = 0; pass < 2; pass++) {
		unsigned bad_b = 0, bad_h = 0, bad_w = 0, bad_x = 0, nans = 0;

		zf_convert_force_scalar(pass == 1);
		zf_convert(ZF_DT_BF16, ob, ZF_DT_F32, in, nn);
		zf_convert(ZF_DT_F16, oh, ZF_DT_F32, in, nn);
		for (size_t i = 0; i < nn; i++) {
			if (isnan32(in[i])) {
				nans++;
				bad_b += !torch_bf16_nan(cv_narrow[i].bf16) ||
					 ob[i] != (((in[i] >> 16) & 0x8000u) | 0x7fc0u);
				bad_h += oh[i] != cv_narrow[i].f16;
				continue;
			}
			bad_b += ob[i] != cv_narrow[i].bf16 ||
				 cvt16(ZF_DT_BF16, ZF_DT_F32, in[i]) != ob[i];
			bad_h += oh[i] != cv_narrow[i].f16 ||
				 cvt16(ZF_DT_F16, ZF_DT_F32, in[i]) != oh[i];
		}
		tap_ok(bad_b == 0,
		       "%zu torch fp32 -> bf16 vectors (%u NaN: torch 0x7fc0 or "
		       "0xffff, ours the sign's) [%s]: %u bad", nn, nans,
		       zf_convert_impl(), bad_b);
		tap_ok(bad_h == 0,
		       "%zu torch fp32 -> fp16 vectors (%u NaN, same bits) [%s]: "
		       "%u bad", nn, nans, zf_convert_impl(), bad_h);

		zf_convert(ZF_DT_F32, wb, ZF_DT_BF16, in16, nw);
		zf_convert(ZF_DT_F32, wh, ZF_DT_F16, in16, nw);
		zf_convert(ZF_DT_F16, xbh, ZF_DT_BF16, in16, nw);
		zf_convert(ZF_DT_BF16, xhb, ZF_DT_F16, in16, nw);
		for (size_t i = 0; i < nw; i++) {
			uint16_t h = in16[i];

			bad_w += wb[i] != cv_wide[i].bf16_f32;
			bad_x += xbh[i] != cv_wide[i].bf16_f16;
			if (isnan_f16(h)) {
				bad_w += wh[i] != cv_wide[i].f16_f32;
				bad_x += !torch_bf16_nan(cv_wide[i].f16_bf16) ||
					 xhb[i] != ((h & 0x8000u) | 0x7fc0u);
			} else {
				bad_w += wh[i] != cv_wide[i].f16_f32 ||
					 cvt32(ZF_DT_F16, h) != wh[i];
				bad_x += xhb[i] != cv_wide[i].f16_bf16;
			}
		}
		tap_ok(bad_w == 0,
		       "%zu torch bf16/fp16 -> fp32 vectors [%s]: %u bad", nw,
		       zf_convert_impl(), bad_w);
		tap_ok(bad_x == 0,
		       "%zu torch bf16 <-> fp16 vectors [%s]: %u bad", nw,
		       zf_convert_impl(), bad_x);
	}
	zf_convert_force_scalar(false);
	free(in);
	free(ob);
	free(oh);
	free(in16);
	free(wb);
	free(wh);
	free(xbh);
	free(xhb);
}

/* Odd lengths and misaligned buffers: the vector body plus every tail. */
static void lengths_and_alignment(void)
{
	unsigned char src[4 * 100 + 8], d1[4 * 100 + 8], d2[4 * 100 + 8];
	unsigned bad = 0;
	const enum zf_dtype t[3] = { ZF_DT_F32, ZF_DT_BF16, ZF_DT_F16 };

	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (unsigned char)(i * 37 + 11);
	for (int a = 0; a < 3; a++)
		for (int b = 0; b < 3; b++)
			for (size_t n = 0; n <= 100; n++)
				for (size_t off = 0; off < 4; off++) {
					memset(d1, 0xa5, sizeof(d1));
					memset(d2, 0xa5, sizeof(d2));
					zf_convert_force_scalar(false);
					zf_convert(t[b], d1 + off, t[a],
						   src + off, n);
					zf_convert_force_scalar(true);
					zf_convert(t[b], d2 + off, t[a],
						   src + off, n);
					if (memcmp(d1, d2, sizeof(d1)))
						bad++;
					/* nothing written past n elements */
					if (d1[off + n * zf_dtype_size(t[b])] !=
					    0xa5)
						bad++;
				}
	zf_convert_force_scalar(false);
	tap_ok(bad == 0,
	       "all 9 pairs, n = 0..100, offsets 0..3: avx2 == scalar, no "
	       "overrun (%u bad)", bad);
}

static void supported(void)
{
	tap_ok(zf_convert_supported(ZF_DT_BF16, ZF_DT_F32) &&
		       zf_convert_supported(ZF_DT_F16, ZF_DT_F32) &&
		       zf_convert_supported(ZF_DT_F32, ZF_DT_BF16) &&
		       zf_convert_supported(ZF_DT_F32, ZF_DT_F16) &&
		       zf_convert_supported(ZF_DT_F16, ZF_DT_BF16) &&
		       zf_convert_supported(ZF_DT_BF16, ZF_DT_F16),
	       "F32/BF16/F16 pairs supported");
	tap_ok(zf_convert_supported(ZF_DT_F64, ZF_DT_F64) &&
		       zf_convert_supported(ZF_DT_I64, ZF_DT_I64) &&
		       zf_convert_supported(ZF_DT_F32, ZF_DT_F32),
	       "same type supported (a copy)");
	tap_ok(!zf_convert_supported(ZF_DT_F32, ZF_DT_F64) &&
		       !zf_convert_supported(ZF_DT_F64, ZF_DT_F32) &&
		       !zf_convert_supported(ZF_DT_BF16, ZF_DT_F64) &&
		       !zf_convert_supported(ZF_DT_F32, ZF_DT_I32) &&
		       !zf_convert_supported(ZF_DT_INVALID, ZF_DT_INVALID),
	       "F64 pairs, int <-> float and INVALID refused");
	{
		double d[3] = { 1.5, -2.25, 1e300 }, e[3] = { 0, 0, 0 };

		zf_convert(ZF_DT_F64, e, ZF_DT_F64, d, 3);
		tap_ok(!memcmp(d, e, sizeof(d)), "F64 -> F64 copies");
	}
	tap_ok(!strcmp(zf_convert_impl(), "avx2") ||
		       !strcmp(zf_convert_impl(), "scalar"),
	       "kernel in use: %s", zf_convert_impl());
	zf_convert_force_scalar(true);
	tap_ok(!strcmp(zf_convert_impl(), "scalar"), "force_scalar works");
	zf_convert_force_scalar(false);
}

int main(int argc, char **argv)
{
	uint32_t *in = malloc(CHUNK * 4);
	uint16_t *a = malloc(CHUNK * 2), *b = malloc(CHUNK * 2);
	int quick = argc > 1 && !strcmp(argv[1], "--quick");

	if (!in || !a || !b)
		abort();
	supported();
	edge_cases();
	torch_vectors();
	lengths_and_alignment();
	exhaustive_half(ZF_DT_BF16);
	exhaustive_half(ZF_DT_F16);
	if (strcmp(zf_convert_impl(), "avx2")) {
		printf("ok %d - # SKIP exhaustive avx2 vs scalar: no AVX2 "
		       "here\n", ++tap_n);
	} else if (quick) {
		printf("ok %d - # SKIP exhaustive fp32 sweep (--quick)\n",
		       ++tap_n);
	} else {
		exhaustive_narrow(ZF_DT_BF16, in, a, b);
		exhaustive_narrow(ZF_DT_F16, in, a, b);
	}
	free(in);
	free(a);
	free(b);
	return tap_done();
}
