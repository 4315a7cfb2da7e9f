/* SPDX-License-Identifier: MIT */
/*
 * Checked integer arithmetic: the one way core/ tests a size or an offset
 * computed from untrusted input for overflow. Private to core/.
 *
 * The names and the contract are C23's <stdckdint.h>: ckd_add(&r, a, b)
 * stores the exact result in r when it fits r's type and returns false, or
 * stores the wrapped result and returns true when it does not. The usual
 * shape is
 *
 *	if (zf_ckd_mul(&bytes, count, size) || bytes > left)
 *		return fail(...);
 *
 * Unlike hand-written `a > SIZE_MAX - b` tests, this is right for every
 * mix of types (r's type decides, and negative values of signed operands
 * count as overflow when r is unsigned), and it reads the same everywhere.
 * GCC and clang build it on __builtin_*_overflow, which both have had for
 * a decade; a C23 compiler could map it to ckd_* directly.
 */
#ifndef ZEROFS_CKD_H
#define ZEROFS_CKD_H

#include <stdbool.h>

#define zf_ckd_add(r, a, b) ((bool)__builtin_add_overflow((a), (b), (r)))
#define zf_ckd_sub(r, a, b) ((bool)__builtin_sub_overflow((a), (b), (r)))
#define zf_ckd_mul(r, a, b) ((bool)__builtin_mul_overflow((a), (b), (r)))

#endif /* ZEROFS_CKD_H */
