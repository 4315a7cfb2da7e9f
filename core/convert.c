/* SPDX-License-Identifier: MIT */
/*
 * Element conversion F32/F16/BF16, bit-exact with torch's CPU Tensor.to()
 * for every non-NaN input (convert.h). The truth is c10/util/BFloat16.h
 * round_to_nearest_even() for bf16 and c10/util/Half.h
 * fp16_ieee_from_fp32_value() for fp16: both are IEEE round to nearest,
 * ties to even, with subnormals kept and overflow to Inf.
 *
 * NaN, the one rule (convert.h): narrowing maps every NaN to the quiet NaN
 * of the same sign with no payload (bf16 0x7FC0/0xFFC0, fp16 0x7E00/
 * 0xFE00); widening keeps sign and payload, bf16 -> F32 as a plain shift
 * and F16 -> F32 with the quiet bit set. torch 1.13 (measured with every
 * NaN class, both CPU code paths) agrees on all of it except bf16
 * narrowing, where it drops the sign and its answer depends on the CPU:
 * F32 -> BF16 gives 0x7FC0 from c10's scalar round_to_nearest_even
 * (ATEN_CPU_CAPABILITY=default) and 0xFFFF from its AVX2 kernel; F16 ->
 * BF16 gives 0x7FC0 on both. No rule can match a machine-dependent answer;
 * ours keeps the sign, as fp16 does, and both our kernels give it (F16C
 * alone would keep part of the payload).
 *
 * Two kernels: portable C, and AVX2+F16C chosen at run time through
 * __builtin_cpu_supports, so this file needs no -march. The vector kernel
 * hands its tail (< 16 elements) to the scalar code, so the two must give
 * the same bits; tests/unit/test_convert.c checks all 2^32 inputs.
 */
#include "zerofs/convert.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ZF_HAVE_AVX2_KERNEL 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define ZF_HAVE_AVX2_KERNEL 0
#endif

/* ---- portable scalar kernels ---------------------------------------- */

static inline uint32_t ld32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static inline uint16_t ld16(const unsigned char *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

static inline void st32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static inline void st16(unsigned char *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static inline uint16_t f32_to_bf16(uint32_t u)
{
	uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
	uint32_t q = ((u >> 16) & 0x8000u) | 0x7fc0u;

	/* A NaN must not take the rounded value: the add can carry into
	 * the sign, or turn a NaN whose payload sits in the low bits into
	 * Inf. A select, not a branch, so that the loop vectorises. */
	return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? q : r);
}

static inline uint16_t f32_to_f16(uint32_t u)
{
	uint32_t sign = (u >> 16) & 0x8000u;
	uint32_t a = u & 0x7fffffffu;
	uint32_t e, m, shift, r, rem, half;

	if (a > 0x7f800000u)
		return (uint16_t)(sign | 0x7e00u);
	/* 65520 = 65504 + half an ulp: the tie goes to the even neighbour,
	 * which is 2^16, i.e. Inf. Inf itself lands here too. */
	if (a >= 0x477ff000u)
		return (uint16_t)(sign | 0x7c00u);
	if (a >= 0x38800000u) {
		/* Normal in fp16: rebias the exponent (127 -> 15), then round
		 * away the 13 low mantissa bits; a carry out of the mantissa
		 * correctly bumps the exponent. */
		uint32_t v = a - 0x38000000u;

		v += 0xfffu + ((v >> 13) & 1u);
		return (uint16_t)(sign | (v >> 13));
	}
	/* Subnormal (or zero) in fp16: the result counts units of 2^-24.
	 * value = m * 2^(e - 150), so units = m >> (126 - e). */
	e = a >> 23;
	if (e < 102) /* below 2^-25: rounds to zero (2^-25 itself too) */
		return (uint16_t)sign;
	m = (a & 0x7fffffu) | 0x800000u;
	shift = 126 - e; /* 14..24 */
	r = m >> shift;
	rem = m & ((1u << shift) - 1);
	half = 1u << (shift - 1);
	if (rem > half || (rem == half && (r & 1u)))
		r++;
	return (uint16_t)(sign | r);
}

static inline uint32_t bf16_to_f32(uint16_t h)
{
	return (uint32_t)h << 16;
}

static inline uint32_t f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t e = (h >> 10) & 0x1fu;
	uint32_t m = h & 0x3ffu;

	if (e == 0x1f) {
		if (m == 0)
			return sign | 0x7f800000u;
		return sign | 0x7fc00000u | (m << 13);
	}
	if (e != 0)
		return sign | ((e + 112) << 23) | (m << 13);
	if (m == 0)
		return sign;
	/* Subnormal: normalise. m * 2^-24 with m < 2^10; the leading one
	 * ends up at bit 10 after k shifts, exponent 2^(-14 - k). */
	e = 113;
	while (!(m & 0x400u)) {
		m <<= 1;
		e--;
	}
	return sign | (e << 23) | ((m & 0x3ffu) << 13);
}

static void scalar_f32_bf16(unsigned char *d, const unsigned char *s,
			    size_t n)
{
	for (size_t i = 0; i < n; i++)
		st16(d + 2 * i, f32_to_bf16(ld32(s + 4 * i)));
}

static void scalar_f32_f16(unsigned char *d, const unsigned char *s,
			   size_t n)
{
	for (size_t i = 0; i < n; i++)
		st16(d + 2 * i, f32_to_f16(ld32(s + 4 * i)));
}

static void scalar_bf16_f32(unsigned char *d, const unsigned char *s,
			    size_t n)
{
	for (size_t i = 0; i < n; i++)
		st32(d + 4 * i, bf16_to_f32(ld16(s + 2 * i)));
}

static void scalar_f16_f32(unsigned char *d, const unsigned char *s,
			   size_t n)
{
	for (size_t i = 0; i < n; i++)
		st32(d + 4 * i, f16_to_f32(ld16(s + 2 * i)));
}

static void scalar_bf16_f16(unsigned char *d, const unsigned char *s,
			    size_t n)
{
	for (size_t i = 0; i < n; i++)
		st16(d + 2 * i, f32_to_f16(bf16_to_f32(ld16(s + 2 * i))));
}

static void scalar_f16_bf16(unsigned char *d, const unsigned char *s,
			    size_t n)
{
	for (size_t i = 0; i < n; i++)
		st16(d + 2 * i, f32_to_bf16(f16_to_f32(ld16(s + 2 * i))));
}

/* ---- AVX2 + F16C kernels -------------------------------------------- */

#if ZF_HAVE_AVX2_KERNEL
#define ZF_AVX2 __attribute__((target("avx2,f16c,fma")))

/* Replaces NaN lanes by the quiet NaN of the same sign with no payload, so
 * that both narrowing paths below give the canonical NaN of the scalar
 * code. */
ZF_AVX2 static inline __m256i canon_nan(__m256i u)
{
	__m256 x = _mm256_castsi256_ps(u);
	__m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
	__m256i q = _mm256_or_si256(
		_mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u)),
		_mm256_set1_epi32(0x7fc00000));

	return _mm256_blendv_epi8(u, q, nan);
}

/* True when a lane of a or b is a NaN: one compare for 16 lanes. NaNs are
 * rare in weights, so the kernels canonicalise only blocks that hold one
 * and the common path skips four operations per 8 lanes. */
ZF_AVX2 static inline bool any_nan(__m256i a, __m256i b)
{
	return _mm256_movemask_ps(_mm256_cmp_ps(_mm256_castsi256_ps(a),
						_mm256_castsi256_ps(b),
						_CMP_UNORD_Q)) != 0;
}

/* c10's RNE on 8 lanes with no NaN (canon_nan() first otherwise); the
 * result sits in the low half of each lane. */
ZF_AVX2 static inline __m256i rne_bf16(__m256i u)
{
	__m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16),
				       _mm256_set1_epi32(1));

	u = _mm256_add_epi32(u, _mm256_add_epi32(lsb,
						 _mm256_set1_epi32(0x7fff)));
	return _mm256_srli_epi32(u, 16);
}

/* 16 lanes of bf16 in 32-bit slots -> 16 packed uint16 in order. */
ZF_AVX2 static inline __m256i pack_bf16(__m256i a, __m256i b)
{
	/* packus works per 128-bit half: [a0-3 b0-3 | a4-7 b4-7]. */
	return _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
}

ZF_AVX2 static void avx2_f32_bf16(unsigned char *d, const unsigned char *s,
				  size_t n)
{
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m256i a = _mm256_loadu_si256((const __m256i *)(s + 4 * i));
		__m256i b =
			_mm256_loadu_si256((const __m256i *)(s + 4 * i + 32));

		if (any_nan(a, b)) {
			a = canon_nan(a);
			b = canon_nan(b);
		}
		_mm256_storeu_si256((__m256i *)(d + 2 * i),
				    pack_bf16(rne_bf16(a), rne_bf16(b)));
	}
	scalar_f32_bf16(d + 2 * i, s + 4 * i, n - i);
}

/* IEEE RNE with subnormals, like c10's fp16_ieee_from_fp32_value; NaN
 * lanes must have been canonicalised (F16C would keep their payload). */
ZF_AVX2 static inline __m128i narrow_f16(__m256i u)
{
	return _mm256_cvtps_ph(_mm256_castsi256_ps(u),
			       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

ZF_AVX2 static void avx2_f32_f16(unsigned char *d, const unsigned char *s,
				 size_t n)
{
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m256i a = _mm256_loadu_si256((const __m256i *)(s + 4 * i));
		__m256i b =
			_mm256_loadu_si256((const __m256i *)(s + 4 * i + 32));

		if (any_nan(a, b)) {
			a = canon_nan(a);
			b = canon_nan(b);
		}
		_mm_storeu_si128((__m128i *)(d + 2 * i), narrow_f16(a));
		_mm_storeu_si128((__m128i *)(d + 2 * i + 16), narrow_f16(b));
	}
	scalar_f32_f16(d + 2 * i, s + 4 * i, n - i);
}

ZF_AVX2 static inline __m256i widen_bf16(__m128i h)
{
	return _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
}

ZF_AVX2 static inline __m256i widen_f16(__m128i h)
{
	return _mm256_castps_si256(_mm256_cvtph_ps(h));
}

ZF_AVX2 static void avx2_bf16_f32(unsigned char *d, const unsigned char *s,
				  size_t n)
{
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m128i a = _mm_loadu_si128((const __m128i *)(s + 2 * i));
		__m128i b = _mm_loadu_si128((const __m128i *)(s + 2 * i + 16));

		_mm256_storeu_si256((__m256i *)(d + 4 * i), widen_bf16(a));
		_mm256_storeu_si256((__m256i *)(d + 4 * i + 32),
				    widen_bf16(b));
	}
	scalar_bf16_f32(d + 4 * i, s + 2 * i, n - i);
}

ZF_AVX2 static void avx2_f16_f32(unsigned char *d, const unsigned char *s,
				 size_t n)
{
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m128i a = _mm_loadu_si128((const __m128i *)(s + 2 * i));
		__m128i b = _mm_loadu_si128((const __m128i *)(s + 2 * i + 16));

		_mm256_storeu_si256((__m256i *)(d + 4 * i), widen_f16(a));
		_mm256_storeu_si256((__m256i *)(d + 4 * i + 32), widen_f16(b));
	}
	scalar_f16_f32(d + 4 * i, s + 2 * i, n - i);
}

ZF_AVX2 static void avx2_bf16_f16(unsigned char *d, const unsigned char *s,
				  size_t n)
{
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m256i a = widen_bf16(
			_mm_loadu_si128((const __m128i *)(s + 2 * i)));
		__m256i b = widen_bf16(
			_mm_loadu_si128((const __m128i *)(s + 2 * i + 16)));

		if (any_nan(a, b)) {
			a = canon_nan(a);
			b = canon_nan(b);
		}
		_mm_storeu_si128((__m128i *)(d + 2 * i), narrow_f16(a));
		_mm_storeu_si128((__m128i *)(d + 2 * i + 16), narrow_f16(b));
	}
	scalar_bf16_f16(d + 2 * i, s + 2 * i, n - i);
}

ZF_AVX2 static void avx2_f16_bf16(unsigned char *d, const unsigned char *s,
				  size_t n)
{
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m256i a = widen_f16(
			_mm_loadu_si128((const __m128i *)(s + 2 * i)));
		__m256i b = widen_f16(
			_mm_loadu_si128((const __m128i *)(s + 2 * i + 16)));

		if (any_nan(a, b)) {
			a = canon_nan(a);
			b = canon_nan(b);
		}
		_mm256_storeu_si256((__m256i *)(d + 2 * i),
				    pack_bf16(rne_bf16(a), rne_bf16(b)));
	}
	scalar_f16_bf16(d + 2 * i, s + 2 * i, n - i);
}
#endif /* ZF_HAVE_AVX2_KERNEL */

/* ---- dispatch -------------------------------------------------------- */

typedef void (*kernel_fn)(unsigned char *, const unsigned char *, size_t);

enum { K_F32_BF16, K_F32_F16, K_BF16_F32, K_F16_F32, K_BF16_F16, K_F16_BF16,
       K_COUNT };

static const kernel_fn scalar_kernels[K_COUNT] = {
	scalar_f32_bf16, scalar_f32_f16,  scalar_bf16_f32,
	scalar_f16_f32,	 scalar_bf16_f16, scalar_f16_bf16,
};

#if ZF_HAVE_AVX2_KERNEL
static const kernel_fn avx2_kernels[K_COUNT] = {
	avx2_f32_bf16, avx2_f32_f16,  avx2_bf16_f32,
	avx2_f16_f32,  avx2_bf16_f16, avx2_f16_bf16,
};
#endif

/* 0: not probed yet, 1: scalar, 2: avx2. Racing first calls all store the
 * same answer, so relaxed atomics are enough. */
static atomic_int cpu_kind;
static atomic_bool force_scalar;

static int probe_cpu(void)
{
	int k = atomic_load_explicit(&cpu_kind, memory_order_relaxed);

	if (k)
		return k;
	k = 1;
#if ZF_HAVE_AVX2_KERNEL
	/* __builtin_cpu_supports("avx2") also checks that the OS saves the
	 * ymm state (XGETBV). clang's builtin does not know "f16c", so that
	 * bit comes from CPUID leaf 1 directly. */
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
		unsigned a, b, c, d;

		if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C))
			k = 2;
	}
#endif
	atomic_store_explicit(&cpu_kind, k, memory_order_relaxed);
	return k;
}

static bool use_avx2(void)
{
	if (atomic_load_explicit(&force_scalar, memory_order_relaxed))
		return false;
	return probe_cpu() == 2;
}

static int kernel_index(enum zf_dtype dst, enum zf_dtype src)
{
	if (src == ZF_DT_F32 && dst == ZF_DT_BF16)
		return K_F32_BF16;
	if (src == ZF_DT_F32 && dst == ZF_DT_F16)
		return K_F32_F16;
	if (src == ZF_DT_BF16 && dst == ZF_DT_F32)
		return K_BF16_F32;
	if (src == ZF_DT_F16 && dst == ZF_DT_F32)
		return K_F16_F32;
	if (src == ZF_DT_BF16 && dst == ZF_DT_F16)
		return K_BF16_F16;
	if (src == ZF_DT_F16 && dst == ZF_DT_BF16)
		return K_F16_BF16;
	return -1;
}

bool zf_convert_supported(enum zf_dtype dst, enum zf_dtype src)
{
	if (zf_dtype_size(dst) == 0 || zf_dtype_size(src) == 0)
		return false;
	/* Same type is a copy, whatever the type (F64 included). */
	if (dst == src)
		return true;
	return kernel_index(dst, src) >= 0;
}

void zf_convert(enum zf_dtype dst_dt, void *dst, enum zf_dtype src_dt,
		const void *src, size_t n)
{
	int k;

	assert(zf_convert_supported(dst_dt, src_dt));
	if (dst_dt == src_dt) {
		/* n * size cannot overflow: the caller's buffer holds it. */
		if (n)
			memcpy(dst, src, n * zf_dtype_size(src_dt));
		return;
	}
	k = kernel_index(dst_dt, src_dt);
	assert(k >= 0);
	if (k < 0 || n == 0)
		return;
#if ZF_HAVE_AVX2_KERNEL
	if (use_avx2()) {
		avx2_kernels[k](dst, src, n);
		return;
	}
#endif
	scalar_kernels[k](dst, src, n);
}

const char *zf_convert_impl(void)
{
	return use_avx2() ? "avx2" : "scalar";
}

void zf_convert_force_scalar(bool on)
{
	atomic_store_explicit(&force_scalar, on, memory_order_relaxed);
}
