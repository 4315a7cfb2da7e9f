/* SPDX-License-Identifier: MIT */
/*
 * The one growth rule for arrays core/ fills one element at a time: a
 * capacity at least doubles, starts at a minimum, and never overflows.
 * Private to core/.
 *
 *	if (n == cap && zf_grow(&items, &cap, n + 1, 16))
 *		return zf_fail(err, ZF_ENOMEM, "out of memory");
 *	items[n++] = x;
 *
 * Callers that account for memory (the pickle reader charges every byte to
 * a budget before it allocates) use zf_grow_cap() to learn the capacity
 * first and then realloc themselves.
 */
#ifndef ZEROFS_GROW_H
#define ZEROFS_GROW_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ckd.h"

/*
 * The capacity to grow to from cap so that need elements of elem bytes
 * fit: cap itself when they already do, else the largest of need, twice
 * cap and min (need alone when twice cap would not be addressable). 0 when
 * need * elem bytes cannot be addressed at all.
 */
static inline size_t zf_grow_cap(size_t cap, size_t need, size_t elem,
				 size_t min)
{
	size_t to, bytes;

	if (need <= cap)
		return cap;
	if (elem == 0 || zf_ckd_mul(&bytes, need, elem) || bytes > PTRDIFF_MAX)
		return 0;
	to = min > need ? min : need;
	if (cap <= SIZE_MAX / 2 && 2 * cap > to)
		to = 2 * cap;
	if (zf_ckd_mul(&bytes, to, elem) || bytes > PTRDIFF_MAX)
		to = need;
	return to;
}

/*
 * Grows the malloc'd array *pitems (capacity *cap elements of elem bytes)
 * so that it holds at least need elements. New elements are not zeroed.
 * Returns 0, or -1 when the size overflows or realloc fails, leaving the
 * array and *cap as they were. pitems is the address of the array pointer,
 * of any object pointer type.
 */
static inline int zf_grow_fn(void *pitems, size_t *cap, size_t need,
			     size_t elem, size_t min)
{
	size_t to;
	void *old, *p;

	if (need <= *cap)
		return 0;
	to = zf_grow_cap(*cap, need, elem, min);
	if (!to)
		return -1;
	/* The pointer is copied, not accessed as void *: its real type is
	 * the caller's (all object pointers share one representation on the
	 * platforms zerofs runs on, which POSIX requires of void * anyway). */
	memcpy(&old, pitems, sizeof(old));
	p = realloc(old, to * elem);
	if (!p)
		return -1;
	memcpy(pitems, &p, sizeof(p));
	*cap = to;
	return 0;
}

#define zf_grow(pitems, cap, need, min) \
	zf_grow_fn((pitems), (cap), (need), sizeof(**(pitems)), (min))

#endif /* ZEROFS_GROW_H */
