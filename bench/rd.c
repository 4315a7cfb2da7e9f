/* SPDX-License-Identifier: MIT */
/*
 * rd: the reader of the zerofs benchmarks (bench/run.sh).
 *
 *   rd [-m MODE] [-t THREADS] [-b BS] [-n COUNT] [-s SEED] [-l LIMIT] FILE...
 *
 * The files are treated as one concatenation of bytes, cut after LIMIT
 * bytes if -l is given (to read as many bytes as another file set).
 *   read      pread() BS-byte blocks into one reused buffer per thread
 *   touch     mmap (MAP_SHARED, PROT_READ) and load one byte per 4 KiB page
 *   copy      mmap and memcpy() BS-byte chunks into one reused buffer
 *   rand      pread() COUNT blocks of BS bytes at distinct random
 *             BS-aligned offsets (never the same block twice, so every
 *             read misses a cold cache)
 *   evict     posix_fadvise(POSIX_FADV_DONTNEED) on every file: drops that
 *             file's clean page-cache pages (FUSE files included) and
 *             nothing else
 *   resident  mincore(): bytes of the files that are in the page cache
 * With THREADS > 1 the concatenation is cut into THREADS contiguous parts,
 * one per thread (rand: the block list is dealt out). Timing starts when
 * every thread is ready and stops when the last one is done; mmap and
 * munmap happen outside it. Prints one line of key=value pairs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u

struct file {
	const char *path;
	int fd;
	uint64_t size, start; /* start: offset in the concatenation */
	unsigned char *map;
};

static struct file *files;
static int nfiles;
static uint64_t total;
static size_t bs = 1u << 20;
static enum { M_READ, M_TOUCH, M_COPY, M_RAND } mode;

/* rand: the blocks, as (file, offset) pairs */
static int *rfile;
static uint64_t *roff;
static uint64_t rcount;

static pthread_barrier_t start_line;
static int nthreads = 1;

struct job {
	int id;
	uint64_t a, b; /* part of the concatenation */
	uint64_t bytes, ops;
	unsigned long sink;
	int failed;
};

static void die(const char *what, const char *path)
{
	fprintf(stderr, "rd: %s%s%s: %s\n", what, path ? " " : "", path ? path : "",
		strerror(errno));
	exit(1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int pread_full(int fd, unsigned char *buf, size_t n, uint64_t off)
{
	while (n) {
		ssize_t k = pread(fd, buf, n, (off_t)off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		buf += k;
		n -= (size_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	unsigned char *buf = NULL;

	if (mode != M_TOUCH && posix_memalign((void **)&buf, PAGE, bs))
		die("out of memory", NULL);
	if (buf)
		memset(buf, 0, bs);
	pthread_barrier_wait(&start_line);

	if (mode == M_RAND) {
		for (uint64_t i = (uint64_t)j->id; i < rcount; i += (uint64_t)nthreads) {
			if (pread_full(files[rfile[i]].fd, buf, bs, roff[i])) {
				j->failed = 1;
				break;
			}
			j->bytes += bs;
			j->ops++;
		}
		free(buf);
		return NULL;
	}
	for (int f = 0; f < nfiles; f++) {
		struct file *F = &files[f];
		uint64_t a = j->a > F->start ? j->a - F->start : 0;
		uint64_t b = j->b < F->start + F->size ? j->b - F->start : F->size;

		if (j->b <= F->start || j->a >= F->start + F->size)
			continue;
		for (uint64_t off = a; off < b;) {
			size_t n = b - off < bs ? (size_t)(b - off) : bs;

			if (mode == M_READ) {
				if (pread_full(F->fd, buf, n, off)) {
					j->failed = 1;
					goto out;
				}
			} else if (mode == M_COPY) {
				memcpy(buf, F->map + off, n);
				j->sink += buf[n - 1];
			} else {
				unsigned long s = 0;

				for (size_t p = 0; p < n; p += PAGE)
					s += ((volatile unsigned char *)F->map)[off + p];
				j->sink += s;
			}
			j->bytes += n;
			j->ops++;
			off += n;
		}
	}
out:
	free(buf);
	return NULL;
}

/* rand: pick rcount distinct bs-aligned blocks over all files. */
static void pick_blocks(uint64_t seed)
{
	uint64_t nblocks = 0, *first = calloc((size_t)nfiles + 1, sizeof(*first));
	unsigned char *used;
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;

	for (int f = 0; f < nfiles; f++) {
		first[f] = nblocks;
		nblocks += files[f].size / bs;
	}
	first[nfiles] = nblocks;
	if (rcount > nblocks / 2) {
		fprintf(stderr, "rd: %llu blocks asked, only %llu exist (at most half may be used)\n",
			(unsigned long long)rcount, (unsigned long long)nblocks);
		exit(2);
	}
	used = calloc((size_t)(nblocks + 7) / 8, 1);
	rfile = malloc(rcount * sizeof(*rfile));
	roff = malloc(rcount * sizeof(*roff));
	for (uint64_t i = 0; i < rcount;) {
		uint64_t k;
		int f = 0;

		x ^= x << 13; /* xorshift64 */
		x ^= x >> 7;
		x ^= x << 17;
		k = x % nblocks;
		if (used[k / 8] & (1u << (k % 8)))
			continue;
		used[k / 8] |= (unsigned char)(1u << (k % 8));
		while (k >= first[f + 1])
			f++;
		rfile[i] = f;
		roff[i] = (k - first[f]) * bs;
		i++;
	}
	free(used);
	free(first);
}

static void usage(void)
{
	fputs("usage: rd [-m read|touch|copy|rand|evict|resident] [-t THREADS] [-b BS] [-n COUNT] [-s SEED] [-l LIMIT] FILE...\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *m = "read";
	uint64_t seed = 1, limit = UINT64_MAX;
	int c;

	while ((c = getopt(argc, argv, "m:t:b:n:s:l:")) != -1) {
		switch (c) {
		case 'm': m = optarg; break;
		case 't': nthreads = atoi(optarg); break;
		case 'b': bs = strtoull(optarg, NULL, 0); break;
		case 'n': rcount = strtoull(optarg, NULL, 0); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'l': limit = strtoull(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (optind >= argc || nthreads < 1 || nthreads > 64 || bs < 1 || bs % PAGE)
		usage();
	nfiles = argc - optind;
	files = calloc((size_t)nfiles, sizeof(*files));
	for (int f = 0; f < nfiles; f++) {
		struct stat st;

		files[f].path = argv[optind + f];
		files[f].fd = open(files[f].path, O_RDONLY | O_CLOEXEC);
		if (files[f].fd < 0 || fstat(files[f].fd, &st))
			die("cannot open", files[f].path);
		files[f].size = (uint64_t)st.st_size;
		if (files[f].size > limit - total)
			files[f].size = limit - total; /* cut at LIMIT */
		files[f].start = total;
		total += files[f].size;
	}

	if (!strcmp(m, "evict")) {
		for (int f = 0; f < nfiles; f++) {
			errno = posix_fadvise(files[f].fd, 0, 0, POSIX_FADV_DONTNEED);
			if (errno)
				die("fadvise", files[f].path);
		}
		printf("evicted=%d\n", nfiles);
		return 0;
	}
	if (!strcmp(m, "resident")) {
		uint64_t res = 0;

		for (int f = 0; f < nfiles; f++) {
			size_t pages = (size_t)((files[f].size + PAGE - 1) / PAGE);
			unsigned char *vec;
			void *p;

			if (!files[f].size)
				continue;
			p = mmap(NULL, files[f].size, PROT_READ, MAP_SHARED, files[f].fd, 0);
			if (p == MAP_FAILED)
				die("mmap", files[f].path);
			vec = malloc(pages);
			if (mincore(p, files[f].size, vec))
				die("mincore", files[f].path);
			for (size_t i = 0; i < pages; i++)
				res += (vec[i] & 1) ? PAGE : 0;
			free(vec);
			munmap(p, files[f].size);
		}
		printf("resident=%llu total=%llu frac=%.4f\n", (unsigned long long)res,
		       (unsigned long long)total, total ? (double)res / (double)total : 1.0);
		return 0;
	}
	if (!strcmp(m, "read")) mode = M_READ;
	else if (!strcmp(m, "touch")) mode = M_TOUCH;
	else if (!strcmp(m, "copy")) mode = M_COPY;
	else if (!strcmp(m, "rand")) mode = M_RAND;
	else usage();

	if (mode == M_TOUCH || mode == M_COPY) {
		for (int f = 0; f < nfiles; f++) {
			if (!files[f].size)
				continue;
			files[f].map = mmap(NULL, files[f].size, PROT_READ, MAP_SHARED, files[f].fd, 0);
			if (files[f].map == MAP_FAILED)
				die("mmap", files[f].path);
		}
	}
	if (mode == M_RAND) {
		if (!rcount)
			usage();
		pick_blocks(seed);
	}

	pthread_t *th = calloc((size_t)nthreads, sizeof(*th));
	struct job *jobs = calloc((size_t)nthreads, sizeof(*jobs));

	pthread_barrier_init(&start_line, NULL, (unsigned)nthreads + 1);
	for (int i = 0; i < nthreads; i++) {
		jobs[i].id = i;
		/* contiguous parts, cut on page boundaries */
		jobs[i].a = total * (uint64_t)i / (uint64_t)nthreads / PAGE * PAGE;
		jobs[i].b = i == nthreads - 1 ? total
					      : total * (uint64_t)(i + 1) / (uint64_t)nthreads / PAGE * PAGE;
		if (pthread_create(&th[i], NULL, worker, &jobs[i]))
			die("pthread_create", NULL);
	}
	pthread_barrier_wait(&start_line);
	double t0 = now();
	uint64_t bytes = 0, ops = 0;
	unsigned long sink = 0;
	int failed = 0;

	for (int i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
		bytes += jobs[i].bytes;
		ops += jobs[i].ops;
		sink += jobs[i].sink;
		failed |= jobs[i].failed;
	}
	double dt = now() - t0;

	if (failed) {
		fprintf(stderr, "rd: a read failed or ended early\n");
		return 1;
	}
	if (mode != M_RAND && bytes != total) {
		fprintf(stderr, "rd: read %llu of %llu bytes\n", (unsigned long long)bytes,
			(unsigned long long)total);
		return 1;
	}
	printf("bytes=%llu secs=%.6f gbps=%.4f ops=%llu opsps=%.1f sink=%lu\n",
	       (unsigned long long)bytes, dt, bytes / dt / 1e9, (unsigned long long)ops,
	       ops / dt, sink & 1);
	return 0;
}
