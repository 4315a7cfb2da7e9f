/* SPDX-License-Identifier: MIT */
/*
 * A tiny TAP harness for the C unit tests: each check prints "ok N - what"
 * or "not ok N - what" (with the failing expression and line), and
 * tap_done() prints the plan and returns the exit status. tests/run.sh
 * counts the lines.
 */
#ifndef ZEROFS_TESTS_TAP_H
#define ZEROFS_TESTS_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

#define tap_ok(cond, ...)                                                    \
	do {                                                                 \
		int tap_c_ = (cond) ? 1 : 0;                                 \
		tap_n++;                                                     \
		if (!tap_c_)                                                 \
			tap_failed++;                                        \
		printf("%sok %d - ", tap_c_ ? "" : "not ", tap_n);          \
		printf(__VA_ARGS__);                                         \
		printf("\n");                                                \
		if (!tap_c_)                                                 \
			printf("#   failed: %s at %s:%d\n", #cond, __FILE__, \
			       __LINE__);                                    \
		fflush(stdout);                                              \
	} while (0)

/* Checks that a string contains a fragment (for error messages). */
#define tap_contains(hay, needle, ...) \
	tap_ok((hay) && strstr((hay), (needle)) != NULL, __VA_ARGS__)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif /* ZEROFS_TESTS_TAP_H */
