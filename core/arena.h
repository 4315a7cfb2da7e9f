/* SPDX-License-Identifier: MIT */
/**
 * @file arena.h
 * A bump allocator for parsers that build many small values and free them
 * all at once (the pickle tree). Private to core/.
 *
 * Memory comes in chunks that double in size up to a ceiling; a request
 * larger than a quarter of the current chunk size gets a chunk of its own,
 * so waste stays bounded. Chunks of 256 KiB and more are mapped with their
 * pages populated at once, far cheaper than a page fault per page when a
 * large pickle fills tens of megabytes. An optional cap on the total bytes of chunks
 * makes an allocation fail (NULL, with over_cap set) instead of letting
 * hostile input take all memory.
 */
#ifndef ZEROFS_ARENA_H
#define ZEROFS_ARENA_H

#include <stdbool.h>
#include <stddef.h>

struct zf_arena_chunk;

struct zf_arena {
	struct zf_arena_chunk *head; /* chunk being filled, newest first */
	char *last;		     /* start of the newest allocation */
	size_t chunk_size;	     /* size of the next regular chunk, bytes */
	size_t total;		     /* bytes of all chunks, headers included */
	size_t max;		     /* cap on total, bytes; 0 means none */
	bool over_cap;		     /* an allocation failed because of max */
};

/* Prepares an empty arena capped at max bytes (0: no cap). */
void zf_arena_init(struct zf_arena *a, size_t max);

/*
 * size bytes aligned to 8 (size 0 gives a valid unique pointer), or NULL
 * when malloc fails or the cap would be exceeded (then a->over_cap is
 * set). The memory is not zeroed. Valid until zf_arena_release().
 */
void *zf_arena_alloc(struct zf_arena *a, size_t size);

/* Same, zeroed. */
void *zf_arena_zalloc(struct zf_arena *a, size_t size);

/*
 * Resizes p (old_size bytes, from this arena, or NULL with old_size 0) to
 * new_size >= old_size bytes: in place when p is the newest allocation and
 * its chunk has room, else by copying into a new allocation (the old bytes
 * stay allocated until release). NULL on failure, p unchanged.
 */
void *zf_arena_grow(struct zf_arena *a, void *p, size_t old_size,
		    size_t new_size);

/* A NUL-terminated copy of len bytes at s (which may contain NULs). */
char *zf_arena_memdup0(struct zf_arena *a, const void *s, size_t len);

/* Frees every chunk; the arena is empty (and reusable) afterwards.
 * Full-size chunks are kept (up to 32 MiB, process-wide) for the next
 * arena, until zf_arena_trim(). */
void zf_arena_release(struct zf_arena *a);

/* Returns the kept chunks to the system (after a burst of parses). */
void zf_arena_trim(void);

#endif /* ZEROFS_ARENA_H */
