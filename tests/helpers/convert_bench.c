/* SPDX-License-Identifier: MIT */
/*
 * Throughput of zf_convert(), scalar and AVX2 kernels, in GB/s of input.
 *   convert_bench [BYTES_OF_FP32_INPUT [SECONDS_PER_POINT]]
 * Default: 256 KiB of fp32 input (L2-resident: bench/README.md, "Conversion"),
 * about 0.5 s per point, median of 5. Inputs are random finite floats with
 * a sprinkling of NaN/Inf/subnormals, so no branch predicts them away.
 * Pin it for stable numbers: taskset -c 1 build/tests/convert_bench
 */
#include "zerofs/convert.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* GB/s of source bytes, median of 5 runs of about `secs` each. */
static double measure(enum zf_dtype dst_dt, void *dst, enum zf_dtype src_dt,
		      const void *src, size_t n, double secs)
{
	double r[5];
	size_t src_bytes = n * zf_dtype_size(src_dt);

	for (int k = 0; k < 5; k++) {
		double t0 = now(), t;
		uint64_t reps = 0;

		do {
			for (int j = 0; j < 16; j++)
				zf_convert(dst_dt, dst, src_dt, src, n);
			reps += 16;
			t = now() - t0;
		} while (t < secs / 5);
		r[k] = (double)reps * (double)src_bytes / t / 1e9;
	}
	qsort(r, 5, sizeof(r[0]), cmp_double);
	return r[2];
}

int main(int argc, char **argv)
{
	size_t bytes = argc > 1 ? strtoull(argv[1], NULL, 0) : 256 * 1024;
	double secs = argc > 2 ? strtod(argv[2], NULL) : 0.5;
	size_t n = bytes / 4;
	uint32_t *f32 = malloc(n * 4), *w = malloc(n * 4);
	uint16_t *h = malloc(n * 2), *h2 = malloc(n * 2);
	uint64_t x = 0x9e3779b97f4a7c15u;
	static const struct {
		enum zf_dtype dst, src;
	} pairs[] = {
		{ ZF_DT_BF16, ZF_DT_F32 }, { ZF_DT_F16, ZF_DT_F32 },
		{ ZF_DT_F32, ZF_DT_BF16 }, { ZF_DT_F32, ZF_DT_F16 },
		{ ZF_DT_F16, ZF_DT_BF16 }, { ZF_DT_BF16, ZF_DT_F16 },
		{ ZF_DT_F32, ZF_DT_F32 },
	};

	if (!f32 || !w || !h || !h2 || n == 0)
		return 2;
	for (size_t i = 0; i < n; i++) {
		float f;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		f = (float)((int64_t)(x >> 11) - (1ll << 52)) * 1e-12f;
		memcpy(&f32[i], &f, 4);
		if (x % 97 == 0)
			f32[i] = (uint32_t)x; /* any bits: NaN, Inf, subnormal */
	}
	zf_convert(ZF_DT_BF16, h, ZF_DT_F32, f32, n);
	printf("# %zu elements (%zu bytes of fp32), GB/s of input, median of "
	       "5\n", n, n * 4);
	printf("%-12s %8s %8s\n", "pair", "scalar", "avx2");
	for (size_t p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++) {
		const void *src = pairs[p].src == ZF_DT_F32 ? (void *)f32 :
							      (void *)h;
		void *dst = zf_dtype_size(pairs[p].dst) == 4 ? (void *)w :
							       (void *)h2;
		double s, v;

		zf_convert_force_scalar(true);
		s = measure(pairs[p].dst, dst, pairs[p].src, src, n, secs);
		zf_convert_force_scalar(false);
		v = measure(pairs[p].dst, dst, pairs[p].src, src, n, secs);
		printf("%4s->%-6s %8.2f %8.2f%s\n",
		       zf_dtype_st_name(pairs[p].src),
		       zf_dtype_st_name(pairs[p].dst), s, v,
		       strcmp(zf_convert_impl(), "avx2") ? " (no avx2)" : "");
	}
	free(f32);
	free(w);
	free(h);
	free(h2);
	return 0;
}
