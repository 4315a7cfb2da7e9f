/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the config.json dtype rewrite (core/config_dtype.c):
 * any input either fails cleanly or gives an output that is accepted
 * again and that a second rewrite leaves byte for byte as it is (the
 * value is set, nothing else moves). Seeds: tests/fuzz/seeds/config/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config_dtype.h"

#ifndef ZF_FUZZ_ENTRY
#define ZF_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int ZF_FUZZ_ENTRY(const uint8_t *data, size_t size);

int ZF_FUZZ_ENTRY(const uint8_t *data, size_t size)
{
	struct zf_error err = { 0 };
	char *out = NULL, *again = NULL;
	size_t n = 0, m = 0;

	if (zf_config_set_dtype((const char *)data, size, "bfloat16", &out, &n, &err))
		return 0;
	if (zf_config_set_dtype(out, n, "bfloat16", &again, &m, &err) ||
	    m != n || memcmp(out, again, n))
		abort();
	free(again);
	free(out);
	return 0;
}
