/* SPDX-License-Identifier: MIT */
/*
 * A string -> index map with open addressing, for name lookups over
 * thousands of tensors at mount time. Keys are borrowed: they must outlive
 * the map. Fixed capacity chosen at init (no rehash): a loader knows how
 * many names it will insert.
 */
#ifndef ZEROFS_STRMAP_H
#define ZEROFS_STRMAP_H

#include <stddef.h>

struct zf_strmap {
	const char **keys;
	size_t *vals;
	size_t mask; /* capacity - 1, capacity a power of two */
	size_t n;
};

#define ZF_STRMAP_NONE ((size_t)-1)

/* Room for at least max_keys keys. Returns 0, or -1 when out of memory. */
int zf_strmap_init(struct zf_strmap *m, size_t max_keys);
void zf_strmap_release(struct zf_strmap *m);

/* Inserts key -> val. Returns 0, 1 when key was already there (the old
 * value is kept), -1 when the map is full. */
int zf_strmap_put(struct zf_strmap *m, const char *key, size_t val);

/* The value of key, or ZF_STRMAP_NONE. */
size_t zf_strmap_get(const struct zf_strmap *m, const char *key);

#endif /* ZEROFS_STRMAP_H */
