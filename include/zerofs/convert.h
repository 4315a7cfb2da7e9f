/* SPDX-License-Identifier: MIT */
/**
 * @file convert.h
 * Element conversion between the floating types zerofs serves, bit-exact
 * with torch's Tensor.to() on CPU.
 *
 * F32 -> BF16 and F32 -> F16 round to nearest, ties to even, with
 * subnormals kept (no flush), overflow to +-Inf and Inf kept: bit-exact with
 * torch for every input that is not a NaN. Widening (BF16/F16 -> F32) is
 * exact. BF16 <-> F16 goes through F32, as torch does. Same type: a copy,
 * bit for bit.
 *
 * NaN, one rule for both kernels: narrowing gives the quiet NaN of the
 * input's sign with no payload (BF16 0x7FC0 or 0xFFC0, F16 0x7E00 or
 * 0xFE00); widening keeps sign and payload (BF16 -> F32 shifts the bits,
 * F16 -> F32 also sets the quiet bit). torch gives the same bits except for
 * a NaN narrowed to BF16, where it drops the sign and writes 0x7FC0 or
 * 0xFFFF depending on its CPU code path.
 * A vectorised kernel (AVX2, chosen at run time by CPUID) is used where the
 * CPU has it, with a portable scalar fallback giving the same bits.
 */
#ifndef ZEROFS_CONVERT_H
#define ZEROFS_CONVERT_H

#include <stdbool.h>
#include <stddef.h>

#include "zerofs/dtype.h"

/* True when zf_convert() handles src -> dst. */
bool zf_convert_supported(enum zf_dtype dst, enum zf_dtype src);

/*
 * Converts n elements from src (type src_dt) into dst (type dst_dt).
 * Buffers must not overlap; no alignment needed. The pair must be
 * supported (checked with assert).
 */
void zf_convert(enum zf_dtype dst_dt, void *dst, enum zf_dtype src_dt,
		const void *src, size_t n);

/* Name of the kernel in use: "avx2" or "scalar". */
const char *zf_convert_impl(void);

/* Forces the scalar kernel (tests compare it with the vector one). */
void zf_convert_force_scalar(bool on);

#endif /* ZEROFS_CONVERT_H */
