/* SPDX-License-Identifier: MIT */
/*
 * The bump allocator of arena.h. Chunks form a singly linked list, newest
 * first; only the newest is ever bumped, so an allocation too large for
 * what is left of it starts a fresh chunk and the tail of the old one is
 * wasted (at most a quarter of a chunk, because larger requests get a
 * dedicated chunk linked behind the current one).
 */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "ckd.h"

#define ARENA_ALIGN 8
#define ARENA_FIRST_CHUNK ((size_t)16 << 10)
#define ARENA_MAX_CHUNK ((size_t)1 << 20)
#define ARENA_MAP_MIN ((size_t)256 << 10)

struct zf_arena_chunk {
	struct zf_arena_chunk *next;
	size_t size; /* usable bytes after the header */
	size_t mapped; /* bytes mmap()ed for the chunk, 0 when malloc()ed */
	size_t used; /* bytes handed out, a multiple of ARENA_ALIGN */
	/* Keeps data[] aligned for doubles and pointers. */
	_Alignas(ARENA_ALIGN) char data[];
};

/*
 * Full-size mapped chunks freed by one parse are kept for the next: a
 * checkpoint with many ranks parses one pickle per file, and mapping
 * fresh populated pages each time costs more in the kernel (zeroing them)
 * than the parse itself. zf_arena_trim() gives them back.
 */
#define ARENA_CACHE_MAX 32

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct zf_arena_chunk *cache[ARENA_CACHE_MAX];
static size_t cache_n;

static struct zf_arena_chunk *cache_take(size_t bytes)
{
	struct zf_arena_chunk *c = NULL;

	pthread_mutex_lock(&cache_lock);
	if (cache_n && cache[cache_n - 1]->mapped == bytes)
		c = cache[--cache_n];
	pthread_mutex_unlock(&cache_lock);
	return c;
}

static bool cache_give(struct zf_arena_chunk *c)
{
	bool kept = false;

	if (c->size != ARENA_MAX_CHUNK)
		return false;
	pthread_mutex_lock(&cache_lock);
	if (cache_n < ARENA_CACHE_MAX) {
		cache[cache_n++] = c;
		kept = true;
	}
	pthread_mutex_unlock(&cache_lock);
	return kept;
}

void zf_arena_trim(void)
{
	pthread_mutex_lock(&cache_lock);
	while (cache_n) {
		struct zf_arena_chunk *c = cache[--cache_n];

		munmap(c, c->mapped);
	}
	pthread_mutex_unlock(&cache_lock);
}

/* n (at least 1) rounded up to the alignment in *r; true when that
 * overflows. */
static bool round_up(size_t n, size_t *r)
{
	if (zf_ckd_add(r, n ? n : 1, ARENA_ALIGN - 1))
		return true;
	*r &= ~(size_t)(ARENA_ALIGN - 1);
	return false;
}

void zf_arena_init(struct zf_arena *a, size_t max)
{
	memset(a, 0, sizeof(*a));
	a->chunk_size = ARENA_FIRST_CHUNK;
	a->max = max;
}

static struct zf_arena_chunk *new_chunk(struct zf_arena *a, size_t size)
{
	struct zf_arena_chunk *c;
	size_t bytes;

	if (zf_ckd_add(&bytes, size, sizeof(*c)))
		return NULL;
	if (a->max && (bytes > a->max || a->total > a->max - bytes)) {
		a->over_cap = true;
		return NULL;
	}
	if (bytes >= ARENA_MAP_MIN && (c = cache_take(bytes))) {
		/* reused: still mapped and populated */
	} else if (bytes >= ARENA_MAP_MIN) {
		/* Populating the whole chunk at once is much cheaper than
		 * taking a page fault on each of its pages. */
		void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

		if (m == MAP_FAILED)
			return NULL;
		c = m;
		c->mapped = bytes;
	} else {
		c = malloc(bytes);
		if (!c)
			return NULL;
		c->mapped = 0;
	}
	c->size = size;
	c->used = 0;
	a->total += bytes;
	return c;
}

void *zf_arena_alloc(struct zf_arena *a, size_t size)
{
	struct zf_arena_chunk *c = a->head;
	size_t need;

	if (round_up(size, &need))
		return NULL;
	if (c && c->size - c->used >= need) {
		a->last = c->data + c->used;
		c->used += need;
		return a->last;
	}
	if (need > a->chunk_size / 4) {
		/* Dedicated chunk, linked behind the head so the head's room
		 * is still used by the small allocations that follow. */
		struct zf_arena_chunk *big = new_chunk(a, need);

		if (!big)
			return NULL;
		big->used = need;
		if (c) {
			big->next = c->next;
			c->next = big;
		} else {
			big->next = NULL;
			a->head = big;
		}
		/* Not "last": growing it in place would need the head. */
		a->last = c ? NULL : big->data;
		return big->data;
	}
	c = new_chunk(a, a->chunk_size);
	if (!c)
		return NULL;
	if (a->chunk_size < ARENA_MAX_CHUNK)
		a->chunk_size *= 2;
	c->next = a->head;
	a->head = c;
	c->used = need;
	a->last = c->data;
	return c->data;
}

void *zf_arena_zalloc(struct zf_arena *a, size_t size)
{
	void *p = zf_arena_alloc(a, size);

	if (p)
		memset(p, 0, size);
	return p;
}

void *zf_arena_grow(struct zf_arena *a, void *p, size_t old_size,
		    size_t new_size)
{
	struct zf_arena_chunk *c = a->head;
	size_t need;
	void *q;

	if (p && p == a->last && c && (char *)p >= c->data &&
	    (char *)p < c->data + c->size && !round_up(new_size, &need)) {
		size_t start = (size_t)((char *)p - c->data);

		if (need <= c->size - start) {
			c->used = start + need;
			return p;
		}
	}
	q = zf_arena_alloc(a, new_size);
	if (q && old_size)
		memcpy(q, p, old_size);
	return q;
}

char *zf_arena_memdup0(struct zf_arena *a, const void *s, size_t len)
{
	char *p;
	size_t n;

	if (zf_ckd_add(&n, len, 1))
		return NULL;
	p = zf_arena_alloc(a, n);
	if (!p)
		return NULL;
	if (len)
		memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

void zf_arena_release(struct zf_arena *a)
{
	struct zf_arena_chunk *c = a->head;

	while (c) {
		struct zf_arena_chunk *next = c->next;

		if (c->mapped && !cache_give(c))
			munmap(c, c->mapped);
		else if (!c->mapped)
			free(c);
		c = next;
	}
	zf_arena_init(a, a->max);
}
