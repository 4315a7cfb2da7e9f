/* SPDX-License-Identifier: MIT */
/* String -> index map; see strmap.h. Load factor stays <= 1/2. */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

int zf_strmap_init(struct zf_strmap *m, size_t max_keys)
{
	size_t cap = 16;

	memset(m, 0, sizeof(*m));
	while (cap < max_keys * 2 + 2) {
		if (cap > ((size_t)-1) / 4)
			return -1;
		cap *= 2;
	}
	m->keys = calloc(cap, sizeof(*m->keys));
	m->vals = calloc(cap, sizeof(*m->vals));
	if (!m->keys || !m->vals) {
		zf_strmap_release(m);
		return -1;
	}
	m->mask = cap - 1;
	return 0;
}

void zf_strmap_release(struct zf_strmap *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

static size_t slot_of(const struct zf_strmap *m, const char *key)
{
	size_t i = (size_t)XXH3_64bits(key, strlen(key)) & m->mask;

	while (m->keys[i] && strcmp(m->keys[i], key))
		i = (i + 1) & m->mask;
	return i;
}

int zf_strmap_put(struct zf_strmap *m, const char *key, size_t val)
{
	size_t i;

	if (!m->keys)
		return -1;
	i = slot_of(m, key);
	if (m->keys[i])
		return 1;
	if ((m->n + 1) * 2 > m->mask + 1)
		return -1;
	m->keys[i] = key;
	m->vals[i] = val;
	m->n++;
	return 0;
}

size_t zf_strmap_get(const struct zf_strmap *m, const char *key)
{
	size_t i;

	if (!m->keys)
		return ZF_STRMAP_NONE;
	i = slot_of(m, key);
	return m->keys[i] ? m->vals[i] : ZF_STRMAP_NONE;
}
