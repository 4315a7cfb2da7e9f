/* SPDX-License-Identifier: MIT */
/*
 * Runs the config.json dtype rewrite (core/config_dtype.c) over a batch of
 * inputs, for tests that compare it with Python's json module.
 *
 *   config_tool DTYPE < batch
 *
 * stdin: records of a u32le length and that many bytes. stdout: per
 * record, one status byte ('y' rewritten, 'n' refused), a u32le length
 * and the output (or the error message).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_dtype.h"

static int put_u32(uint32_t v)
{
	unsigned char b[4] = { (unsigned char)v, (unsigned char)(v >> 8),
			       (unsigned char)(v >> 16), (unsigned char)(v >> 24) };

	return fwrite(b, 1, 4, stdout) == 4 ? 0 : -1;
}

int main(int argc, char **argv)
{
	unsigned char len4[4];

	if (argc != 2) {
		fprintf(stderr, "usage: config_tool DTYPE < batch\n");
		return 2;
	}
	while (fread(len4, 1, 4, stdin) == 4) {
		uint32_t n = len4[0] | (uint32_t)len4[1] << 8 | (uint32_t)len4[2] << 16 |
			     (uint32_t)len4[3] << 24;
		char *in = malloc(n ? n : 1), *out = NULL;
		struct zf_error err = { 0 };
		size_t out_len = 0;

		if (!in || fread(in, 1, n, stdin) != n)
			return 2;
		if (zf_config_set_dtype(in, n, argv[1], &out, &out_len, &err)) {
			putchar('n');
			put_u32((uint32_t)strlen(err.msg));
			fwrite(err.msg, 1, strlen(err.msg), stdout);
		} else {
			putchar('y');
			put_u32((uint32_t)out_len);
			fwrite(out, 1, out_len, stdout);
		}
		free(out);
		free(in);
	}
	return fflush(stdout) ? 2 : 0;
}
