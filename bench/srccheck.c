/* SPDX-License-Identifier: MIT */
/*
 * What the identity check after every source read costs, without FUSE:
 * reads FILE in BLOCK-byte pieces, each piece once through
 * zf_source_pread() (the read engine's path: pinned descriptor, pread,
 * fstat compared with the identity at open) and once with plain pread()
 * on one descriptor, in alternating order (so both see the same machine,
 * and neither always gets the other's cache), timing each call; PASSES
 * passes over the file, the fastest pass of each kind counted (the one
 * least disturbed by other jobs). Prints GB/s of both, their ratio, and
 * the extra microseconds per read.
 *
 *   srccheck FILE [BLOCK [PASSES]]
 *
 * The file should be in the page cache (read it once first), as the
 * mount's sources are in bench/run.sh.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "zerofs/source.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	size_t block = argc > 2 ? strtoull(argv[2], NULL, 10) : 1 << 20;
	int passes = argc > 3 ? atoi(argv[3]) : 9;
	struct zf_source *src;
	struct zf_error err = { 0 };
	double best_src = 1e9, best_raw = 1e9;
	unsigned char *buf;
	uint64_t size;
	int fd;

	if (argc < 2 || !block) {
		fprintf(stderr, "usage: srccheck FILE [BLOCK [PASSES]]\n");
		return 2;
	}
	if (zf_source_open(argv[1], &src, &err)) {
		fprintf(stderr, "srccheck: %s: %s\n", err.where, err.msg);
		return 1;
	}
	fd = open(argv[1], O_RDONLY);
	buf = malloc(block);
	size = zf_source_size(src) / block * block;
	if (fd < 0 || !buf)
		return 1;
	for (int p = 0; p < passes; p++) {
		double t_src = 0, t_raw = 0;

		for (uint64_t off = 0, k = 0; off < size; off += block, k++) {
			for (int which = 0; which < 2; which++) {
				bool checked = (which == 0) == (k % 2 == 0);
				double t0 = now();

				if (checked) {
					if (zf_source_pread(src, buf, block, off, &err))
						return 1;
					t_src += now() - t0;
				} else {
					if (pread(fd, buf, block, (off_t)off) != (ssize_t)block)
						return 1;
					t_raw += now() - t0;
				}
			}
		}
		if (t_src < best_src)
			best_src = t_src;
		if (t_raw < best_raw)
			best_raw = t_raw;
	}
	printf("bytes=%llu block=%zu checked_gbps=%.3f plain_gbps=%.3f ratio=%.4f per_read_us=%.3f\n",
	       (unsigned long long)size, block, (double)size / best_src / 1e9,
	       (double)size / best_raw / 1e9, best_raw / best_src,
	       (best_src - best_raw) / (double)(size / block) * 1e6);
	zf_source_close(src);
	close(fd);
	free(buf);
	return 0;
}
