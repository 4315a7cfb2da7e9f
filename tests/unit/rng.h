/* SPDX-License-Identifier: MIT */
/*
 * A small seeded generator for the unit tests that draw random layouts
 * (xorshift64): the seed is printed, so a failure can be run again.
 */
#ifndef ZEROFS_TESTS_RNG_H
#define ZEROFS_TESTS_RNG_H

#include <stdint.h>

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

#endif /* ZEROFS_TESTS_RNG_H */
