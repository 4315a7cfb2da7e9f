/* SPDX-License-Identifier: MIT */
/*
 * How much memory pickle parses may take, per parse and all together.
 *
 * A parse allocates in two places: the arena the value tree lives in
 * (chunks, counted by the arena itself) and a few work arrays freed at the
 * end (stack, MARKs, memo, storage tables). Both are charged to one
 * budget before the memory is taken, so a parse never holds more than its
 * budget, whatever the input: the budget is the least of
 *
 *  - ZF_PICKLE_BYTES_PER_BYTE times the input's size, plus
 *    ZF_PICKLE_MIN_BYTES (the input bound: torch's pickles need 6 to 9
 *    times their size, see pickle.h; a pickle that needs more is not one
 *    torch wrote, and fails with ZF_EFORMAT);
 *  - the caller's max_bytes;
 *  - what the process-wide cap leaves (ZF_ENOMEM).
 *
 * The process-wide cap counts every parse in flight (its whole budget,
 * reserved when it starts) and every parsed tree still alive (what it
 * really holds, from the end of its parse to zf_pickle_free()). A parse
 * that finds the cap short waits while other parses are running: they end
 * in bounded time and give back what they reserved but did not keep. When
 * none is running there is nothing to wait for (only live trees hold the
 * cap), and the parse starts with what is left; it fails only if it
 * really needs more. So a given set of parses never deadlocks, and their
 * total never exceeds the cap, however many threads parse at once.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "grow.h"
#include "pickle_i.h"

static struct {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	pthread_once_t once;
	size_t cap;	  /* bytes; set once from the environment */
	size_t held;	  /* reserved by parses in flight + kept by trees */
	size_t peak;	  /* most held at once */
	unsigned parsing; /* parses in flight */
	unsigned waits;	  /* times a parse waited for others */
} mem = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.freed = PTHREAD_COND_INITIALIZER,
	.once = PTHREAD_ONCE_INIT,
};

/* "512M", "2G", "1073741824": bytes, or 0 when s is not such a size. */
static size_t parse_size(const char *s)
{
	unsigned long long v = 0;
	unsigned shift = 0;
	size_t n = 0;

	if (!s || !*s)
		return 0;
	for (; s[n] >= '0' && s[n] <= '9'; n++)
		if (zf_ckd_mul(&v, v, 10u) || zf_ckd_add(&v, v, (unsigned)(s[n] - '0')))
			return 0;
	if (!n)
		return 0;
	switch (s[n]) {
	case '\0': break;
	case 'k': case 'K': shift = 10; n++; break;
	case 'm': case 'M': shift = 20; n++; break;
	case 'g': case 'G': shift = 30; n++; break;
	case 't': case 'T': shift = 40; n++; break;
	default: return 0;
	}
	if (s[n] != '\0' || v > (size_t)-1 >> shift)
		return 0;
	return (size_t)(v << shift);
}

static void mem_init(void)
{
	size_t cap = parse_size(getenv("ZEROFS_PICKLE_MEMORY"));

	/* A cap below the smallest budget would refuse every file. */
	if (cap < ZF_PICKLE_MIN_BYTES)
		cap = ZF_PICKLE_MEMORY_CAP;
	mem.cap = cap;
}

size_t zf_pickle_memory_cap(void)
{
	size_t cap;

	pthread_once(&mem.once, mem_init);
	pthread_mutex_lock(&mem.lock);
	cap = mem.cap;
	pthread_mutex_unlock(&mem.lock);
	return cap;
}

void zf_pickle_set_memory_cap(size_t bytes)
{
	pthread_once(&mem.once, mem_init);
	pthread_mutex_lock(&mem.lock);
	mem.cap = bytes >= ZF_PICKLE_MIN_BYTES ? bytes : ZF_PICKLE_MEMORY_CAP;
	mem.peak = mem.held;
	pthread_cond_broadcast(&mem.freed);
	pthread_mutex_unlock(&mem.lock);
}

void zf_pickle_memory_stats(struct zf_pickle_memory *out)
{
	pthread_once(&mem.once, mem_init);
	pthread_mutex_lock(&mem.lock);
	out->cap = mem.cap;
	out->held = mem.held;
	out->peak = mem.peak;
	out->parsing = mem.parsing;
	out->waits = mem.waits;
	pthread_mutex_unlock(&mem.lock);
}

void pk_mem_begin(struct pk_reader *r, size_t len)
{
	size_t per = r->lim.bytes_per_byte ? r->lim.bytes_per_byte :
					     ZF_PICKLE_BYTES_PER_BYTE;
	size_t want, left;

	if (zf_ckd_mul(&want, len, per) ||
	    zf_ckd_add(&want, want, (size_t)ZF_PICKLE_MIN_BYTES))
		want = SIZE_MAX;
	r->bound = PK_BOUND_INPUT;
	if (r->lim.max_bytes < want) {
		want = r->lim.max_bytes;
		r->bound = PK_BOUND_LIMITS;
	}

	pthread_once(&mem.once, mem_init);
	pthread_mutex_lock(&mem.lock);
	if (want > mem.cap) {
		want = mem.cap;
		r->bound = PK_BOUND_PROCESS;
	}
	for (;;) {
		/* held can exceed a cap lowered since it was reserved. */
		left = mem.held < mem.cap ? mem.cap - mem.held : 0;
		if (left >= want || !mem.parsing)
			break;
		mem.waits++;
		pthread_cond_wait(&mem.freed, &mem.lock);
	}
	if (left < want) {
		want = left;
		r->bound = PK_BOUND_PROCESS;
	}
	mem.held += want;
	if (mem.held > mem.peak)
		mem.peak = mem.held;
	mem.parsing++;
	pthread_mutex_unlock(&mem.lock);

	r->reserved = want;
	r->budget = want;
	pk_mem_sync(r);
}

void pk_mem_end(struct pk_reader *r, size_t keep)
{
	if (keep > r->reserved)
		keep = r->reserved; /* cannot happen: the arena is inside it */
	pthread_mutex_lock(&mem.lock);
	mem.held -= r->reserved - keep;
	mem.parsing--;
	pthread_cond_broadcast(&mem.freed);
	pthread_mutex_unlock(&mem.lock);
	r->reserved = 0;
}

void pk_mem_release(size_t keep)
{
	if (!keep)
		return;
	pthread_mutex_lock(&mem.lock);
	mem.held -= keep;
	pthread_cond_broadcast(&mem.freed);
	pthread_mutex_unlock(&mem.lock);
}

void pk_mem_sync(struct pk_reader *r)
{
	size_t used = r->arena->total + r->work;

	if (used > r->peak)
		r->peak = used;
	/* The arena treats max 0 as "no cap": keep it at least 1. */
	r->arena->max = r->budget > r->work ? r->budget - r->work : 1;
}

int pk_work_charge(struct pk_reader *r, size_t n)
{
	size_t used;

	if (zf_ckd_add(&used, r->arena->total, r->work) ||
	    zf_ckd_add(&used, used, n) || used > r->budget) {
		r->arena->over_cap = true;
		return pk_nomem(r);
	}
	r->work += n;
	pk_mem_sync(r);
	return 0;
}

void pk_work_uncharge(struct pk_reader *r, size_t n)
{
	r->work -= n;
	pk_mem_sync(r);
}

/*
 * Work arrays of PK_WORK_MAP_MIN bytes and more get a mapping of their
 * own, returned to the system the moment it is freed. malloc would keep
 * freed memory in the arena of the thread that used it, and with many
 * threads parsing one after the other, memory no parse holds any more
 * would still be resident, outside the cap.
 */
#define PK_WORK_MAP_MIN ((size_t)256 << 10)

static size_t page_round(size_t bytes)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (bytes + page - 1) & ~(page - 1);
}

void *pk_work_alloc(size_t bytes, bool zero)
{
	void *p;

	if (bytes < PK_WORK_MAP_MIN)
		return zero ? calloc(1, bytes ? bytes : 1) : malloc(bytes ? bytes : 1);
	p = mmap(NULL, page_round(bytes), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p; /* zeroed by the kernel */
}

void pk_work_free(void *p, size_t bytes)
{
	if (!p)
		return;
	if (bytes < PK_WORK_MAP_MIN)
		free(p);
	else
		munmap(p, page_round(bytes));
}

/* Grows p from old to bytes (> old), keeping its contents; the new part
 * is not zeroed. NULL on failure, p untouched. */
static void *work_resize(void *p, size_t old, size_t bytes)
{
	void *q;

	if (bytes < PK_WORK_MAP_MIN)
		return realloc(p, bytes);
	if (p && old >= PK_WORK_MAP_MIN) {
		q = mremap(p, page_round(old), page_round(bytes), MREMAP_MAYMOVE);
		return q == MAP_FAILED ? NULL : q;
	}
	q = pk_work_alloc(bytes, false);
	if (q && old)
		memcpy(q, p, old);
	if (q)
		pk_work_free(p, old);
	return q;
}

int pk_work_grow(struct pk_reader *r, void *pitems, size_t *cap, size_t need,
		 size_t elem, size_t min, bool zero)
{
	size_t to = zf_grow_cap(*cap, need, elem, min);
	void *old, *p;

	if (to == *cap)
		return 0;
	if (!to)
		return pk_bad(r, ZF_ENOMEM, "makes a table too large");
	/* The last doubling may not fit the budget when need itself does. */
	if (to > need && r->budget - r->arena->total - r->work <
				 (to - *cap) * elem)
		to = need;
	if (pk_work_charge(r, (to - *cap) * elem))
		return r->status;
	memcpy(&old, pitems, sizeof(old));
	p = work_resize(old, *cap * elem, to * elem);
	if (!p) {
		pk_work_uncharge(r, (to - *cap) * elem);
		r->arena->over_cap = false;
		return pk_nomem(r);
	}
	if (zero)
		memset((char *)p + *cap * elem, 0, (to - *cap) * elem);
	memcpy(pitems, &p, sizeof(p));
	*cap = to;
	return 0;
}
