/* SPDX-License-Identifier: MIT */
/*
 * A small seeded generator for the unit tests that draw random layouts
 * (xorshift64): the seed is printed, so a failure can be run again.
 */
#ifndef ZEROFS_TESTS_RNG_H
#define ZEROFS_TESTS_RNG_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t rng_state;

static inline uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

/* A number below n (0 when n is 0). */
static inline uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* Seeds from ZF_SEED, else the clock, and prints the seed. */
static inline void rng_seed(void)
{
	const char *s = getenv("ZF_SEED");

	rng_state = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
	if (!rng_state)
		rng_state = 1;
	printf("# seed %llu (ZF_SEED replays)\n",
	       (unsigned long long)rng_state);
}

#endif /* ZEROFS_TESTS_RNG_H */
