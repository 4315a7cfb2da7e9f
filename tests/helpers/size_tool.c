/* SPDX-License-Identifier: MIT */
/*
 * Prints what zf_parse_size() makes of each argument, one line each:
 * the byte count, or "error: <message>". tests/t125-max-shard-size.py
 * compares the lines with what transformers says.
 */
#include <inttypes.h>
#include <stdio.h>

#include "zerofs/safetensors.h"

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		struct zf_error err = { 0 };
		uint64_t v = 0;

		if (zf_parse_size(argv[i], &v, &err))
			printf("error: %s\n", err.msg);
		else
			printf("%" PRIu64 "\n", v);
	}
	return 0;
}
