/* SPDX-License-Identifier: MIT */
/*
 * Pickle memory (include/zerofs/pickle.h, "Memory"): what real-shaped
 * pickles need per byte of input, the input bound that refuses a pickle
 * needing more, the process-wide cap shared by parses in flight and trees
 * alive, parses waiting for each other instead of failing, and the peak
 * RSS of many threads parsing hostile input at once, measured in a child
 * process. --quick (valgrind) shrinks the hostile inputs.
 */
#include "zerofs/pickle.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pickle_build.h"
#include "pickle_vectors.h"
#include "tap.h"

static bool quick;

static int load(const void *d, size_t n, struct zf_pickle **p,
		struct zf_error *e)
{
	zf_error_clear(e);
	return zf_pickle_load(d, n, NULL, p, e);
}

/* ---- what real pickles need --------------------------------------------- */

static double need(const struct bb *b, const char *what)
{
	struct zf_pickle *p = NULL;
	struct zf_error e;
	size_t peak = 0, held;
	int rc = load(b->p, b->n, &p, &e);

	tap_ok(rc == ZF_OK, "%s (%zu bytes) parses within the default bounds (%s)",
	       what, b->n, e.msg);
	held = zf_pickle_bytes(p, &peak);
	printf("# %s: %zu bytes in, tree %zu (%.2f x), peak %zu (%.2f x)\n",
	       what, b->n, held, (double)held / (double)b->n, peak,
	       (double)peak / (double)b->n);
	zf_pickle_free(p);
	return (double)peak / (double)b->n;
}

static void test_real_need(void)
{
	struct bb b = { 0 };
	double torch_like, dense;
	char what[80];

	/* As torch.save writes them: every object memoized. */
	torch_state_dict(&b, 20000);
	torch_like = need(&b, "torch.save's state_dict of 20,000 tensors");
	bb_free(&b);
	/* Denser than torch writes (few memo puts): more values per byte. */
	big_state_dict(&b, 20000);
	dense = need(&b, "a dense state_dict of 20,000 tensors");
	bb_free(&b);
	snprintf(what, sizeof(what), "torch.save's state_dict of 2,000 tensors");
	torch_state_dict(&b, 2000);
	need(&b, what);
	bb_free(&b);
	/* The bound is 16 per byte; what torch writes must stay well inside
	 * it (the real fixtures and a 20,000-tensor checkpoint need 6 to 9),
	 * and so must denser pickles of the same values. */
	tap_ok(torch_like < 9.0,
	       "torch.save's pickles need %.2f bytes per byte, under 9", torch_like);
	tap_ok(dense < ZF_PICKLE_BYTES_PER_BYTE / 1.25,
	       "a pickle denser than torch writes needs %.2f, still under %.1f",
	       dense, ZF_PICKLE_BYTES_PER_BYTE / 1.25);
}

/* ---- the input bound ---------------------------------------------------- */

static void empty_lists(struct bb *b, size_t n)
{
	bb_lit(b, "\x80\x02");
	for (size_t i = 0; i < n; i++)
		bb_u8(b, ']');
	bb_s(b, ".");
}

static void test_input_bound(void)
{
	struct zf_pickle *p = (struct zf_pickle *)&p;
	struct zf_pickle_memory m;
	struct zf_error e;
	struct bb b = { 0 };
	char frag[200];
	size_t budget;
	int rc;

	empty_lists(&b, (size_t)4 << 20);
	budget = ZF_PICKLE_BYTES_PER_BYTE * b.n + ZF_PICKLE_MIN_BYTES;
	rc = load(b.p, b.n, &p, &e);
	snprintf(frag, sizeof(frag),
		 "pickle: EMPTY_LIST needs more than the %zu bytes of memory a pickle of %zu bytes may use (16 per byte), more than any torch.save pickle needs",
		 budget, b.n);
	tap_ok(rc == ZF_EFORMAT && !p, "4 MiB of EMPTY_LIST: ZF_EFORMAT (got %s)",
	       zf_status_str((enum zf_status)rc));
	tap_contains(e.msg, frag, "... message '%s'", e.msg);
	zf_pickle_memory_stats(&m);
	tap_ok(m.held == 0 && m.parsing == 0,
	       "a failed parse keeps nothing charged (held %zu, parsing %u)", m.held,
	       m.parsing);
	bb_free(&b);

	/* 40,000 empty lists need 2.2 MB, more than 16 x 40 KB + 1 MiB. */
	empty_lists(&b, 40000);
	tap_ok(load(b.p, b.n, &p, &e) == ZF_EFORMAT &&
		       strstr(e.msg, "a pickle of 40003 bytes may use"),
	       "40,000 empty lists: refused by the input bound (%s)", e.msg);
	{
		struct zf_pickle_limits lim = { .bytes_per_byte = 128 };

		zf_error_clear(&e);
		rc = zf_pickle_load(b.p, b.n, &lim, &p, &e);
		tap_ok(rc == ZF_EFORMAT &&
			       strstr(e.msg, "STOP with 40000 items on the stack"),
		       "... bytes_per_byte = 128 lets them all be built (%s)",
		       e.msg);
	}
	bb_free(&b);
}

/* ---- the process-wide cap ------------------------------------------------ */

static void test_cap_and_live_trees(void)
{
	struct zf_pickle *a = NULL, *p = NULL;
	struct zf_pickle_memory m;
	struct bb small = { 0 }, big = { 0 };
	struct zf_error e;
	size_t need, held_a;
	char frag[200];
	int rc;

	big_state_dict(&small, 3000);
	big_state_dict(&big, 12000);
	/* What the big one holds and needs at its peak, alone. */
	tap_ok(load(big.p, big.n, &p, &e) == ZF_OK, "the big pickle parses alone");
	zf_pickle_bytes(p, &need);
	zf_pickle_free(p);

	tap_ok(load(small.p, small.n, &a, &e) == ZF_OK, "a small tree parses");
	held_a = zf_pickle_bytes(a, NULL);
	zf_pickle_memory_stats(&m);
	tap_ok(m.held == held_a && m.parsing == 0,
	       "a live tree keeps its %zu bytes charged to the cap (held %zu)",
	       held_a, m.held);

	/* A cap that holds the big parse alone, not beside the small tree. */
	zf_pickle_set_memory_cap(need + held_a / 2);
	rc = load(big.p, big.n, &p, &e);
	snprintf(frag, sizeof(frag),
		 "needs more than the %zu bytes left to it by the process-wide cap on pickle memory (%zu bytes, ZEROFS_PICKLE_MEMORY)",
		 need + held_a / 2 - held_a, need + held_a / 2);
	tap_ok(rc == ZF_ENOMEM && !p, "beside a live tree, the cap refuses the big parse: ZF_ENOMEM (got %s)",
	       zf_status_str((enum zf_status)rc));
	tap_contains(e.msg, frag, "... message '%s'", e.msg);
	zf_pickle_free(a);
	zf_pickle_memory_stats(&m);
	tap_ok(m.held == 0, "freeing the tree gives its bytes back (held %zu)", m.held);
	rc = load(big.p, big.n, &p, &e);
	tap_ok(rc == ZF_OK, "with the tree freed, the big parse fits the same cap (%s)",
	       e.msg);
	zf_pickle_free(p);
	zf_pickle_set_memory_cap(0);
	tap_ok(zf_pickle_memory_cap() == ZF_PICKLE_MEMORY_CAP,
	       "setting 0 restores the default cap (%zu)", zf_pickle_memory_cap());
	bb_free(&small);
	bb_free(&big);
}

/* ---- parses in parallel ---------------------------------------------------- */

struct job {
	const struct bb *in;
	pthread_barrier_t *start;
	int rc;
	struct zf_error err;
};

static void *parse_job(void *arg)
{
	struct job *j = arg;
	struct zf_pickle *p = NULL;

	pthread_barrier_wait(j->start);
	j->rc = zf_pickle_load(j->in->p, j->in->n, NULL, &p, &j->err);
	zf_pickle_free(p);
	return NULL;
}

/* n threads parse in at once; their results in jobs[]. */
static void parse_all(const struct bb *in, struct job *jobs, size_t n)
{
	pthread_t t[64];
	pthread_barrier_t start;

	pthread_barrier_init(&start, NULL, (unsigned)n);
	for (size_t i = 0; i < n; i++) {
		memset(&jobs[i], 0, sizeof(jobs[i]));
		jobs[i].in = in;
		jobs[i].start = &start;
		if (pthread_create(&t[i], NULL, parse_job, &jobs[i]))
			abort();
	}
	for (size_t i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&start);
}

static void test_threads_wait(void)
{
	struct job jobs[8];
	struct zf_pickle_memory before, after;
	struct bb b = { 0 };
	size_t ok = 0, reserve;

	/*
	 * A long pickle whose tree is one empty dict: NONE, POP, again and
	 * again. A finished parse's tree stays charged until its thread frees
	 * it, and later parses do not wait for trees (one may live for the
	 * whole mount), so with torch-sized trees whether all 8 fit depended
	 * on how the threads were scheduled. Here only parses in flight
	 * compete for the cap, which is what this test is about.
	 */
	bb_lit(&b, "\x80\x02");
	bb_rep(&b, "N0", quick ? 100000 : 400000);
	bb_lit(&b, "}.");
	reserve = ZF_PICKLE_BYTES_PER_BYTE * b.n + ZF_PICKLE_MIN_BYTES;
	/* Room for one parse in flight at a time. */
	zf_pickle_set_memory_cap(reserve + reserve / 2);
	zf_pickle_memory_stats(&before);
	parse_all(&b, jobs, 8);
	zf_pickle_memory_stats(&after);
	for (size_t i = 0; i < 8; i++)
		ok += jobs[i].rc == ZF_OK;
	tap_ok(ok == 8, "8 threads, a cap for one parse at a time: all 8 parse (%zu did)",
	       ok);
	tap_ok(after.peak <= after.cap,
	       "the cap held: at most %zu of %zu bytes charged at once",
	       after.peak, after.cap);
	tap_ok(after.waits > before.waits,
	       "parses waited for each other %u times instead of failing",
	       after.waits - before.waits);
	tap_ok(after.held == 0 && after.parsing == 0,
	       "afterwards nothing is charged");
	zf_pickle_set_memory_cap(0);
	bb_free(&b);
}

/* ---- peak RSS ------------------------------------------------------------ */

static size_t status_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t v = 0, n = strlen(field);

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':')
			v = strtoull(line + n + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

struct rss_result {
	size_t grew_kib;   /* peak RSS minus RSS before the parses */
	size_t failed;	   /* parses that failed with want_status ... */
	size_t right_msg;  /* ... and a message holding the fragment */
	size_t peak_held;  /* the cap's own peak */
};

/*
 * In a child: nthreads threads parse in (already in memory) at once under
 * cap; reports how much the peak RSS grew over the RSS before.
 */
static bool rss_child(const struct bb *in, size_t nthreads, size_t cap,
		      int want_status, const char *frag, struct rss_result *res)
{
	int fds[2];
	bool got;
	pid_t pid;
	int st;

	if (pipe(fds))
		return false;
	pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		struct job jobs[64];
		struct zf_pickle_memory m;
		struct rss_result r = { 0 };
		size_t before;

		close(fds[0]);
		zf_pickle_set_memory_cap(cap);
		before = status_kib("VmRSS");
		parse_all(in, jobs, nthreads);
		r.grew_kib = status_kib("VmHWM") - before;
		for (size_t i = 0; i < nthreads; i++) {
			r.failed += jobs[i].rc == want_status;
			r.right_msg += jobs[i].rc == want_status &&
				       strstr(jobs[i].err.msg, frag);
		}
		zf_pickle_memory_stats(&m);
		r.peak_held = m.peak;
		if (write(fds[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	got = read(fds[0], res, sizeof(*res)) == (ssize_t)sizeof(*res);
	close(fds[0]);
	return waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	       WEXITSTATUS(st) == 0 && got;
}

static void test_peak_rss(void)
{
	size_t mib = quick ? 1 : 8, threads = quick ? 4 : 16;
	size_t cap = quick ? (size_t)64 << 20 : ZF_PICKLE_MEMORY_CAP;
	size_t small_cap = quick ? (size_t)16 << 20 : (size_t)96 << 20;
	/* The arena keeps up to 32 MiB of chunks for reuse, and the stacks
	 * and libc take a few more. */
	size_t slack = (size_t)48 << 20;
	struct rss_result r = { 0 };
	struct bb b = { 0 };
	bool ran;

	empty_lists(&b, mib << 20);
	ran = rss_child(&b, threads, cap, ZF_EFORMAT,
			"bytes of memory a pickle of", &r);
	printf("# %zu threads x %zu MiB of EMPTY_LIST: peak RSS grew %zu MiB (cap %zu MiB, cap's peak %zu MiB)\n",
	       threads, mib, r.grew_kib >> 10, cap >> 20, r.peak_held >> 20);
	tap_ok(ran && r.failed == threads && r.right_msg == threads,
	       "%zu threads parsing %zu MiB of EMPTY_LIST each: all refused by the input bound (%zu, %zu)",
	       threads, mib, r.failed, r.right_msg);
	tap_ok(ran && r.grew_kib * 1024 <= cap + slack && r.peak_held <= cap,
	       "... and peak RSS grew %zu MiB, within the %zu MiB cap (+%zu MiB slack); unbounded it would be %zu MiB",
	       r.grew_kib >> 10, cap >> 20, slack >> 20,
	       (threads * b.n * 72) >> 20);

	ran = rss_child(&b, threads, small_cap, ZF_ENOMEM,
			"by the process-wide cap on pickle memory", &r);
	printf("# %zu threads x %zu MiB under a %zu MiB cap: peak RSS grew %zu MiB\n",
	       threads, mib, small_cap >> 20, r.grew_kib >> 10);
	tap_ok(ran && r.failed == threads && r.right_msg == threads,
	       "under a %zu MiB cap, all %zu refused by the process-wide cap (%zu, %zu)",
	       small_cap >> 20, threads, r.failed, r.right_msg);
	tap_ok(ran && r.grew_kib * 1024 <= small_cap + slack &&
		       r.peak_held <= small_cap,
	       "... and peak RSS grew %zu MiB, within the cap (+%zu MiB slack)",
	       r.grew_kib >> 10, slack >> 20);
	bb_free(&b);
}

int main(int argc, char **argv)
{
	quick = argc > 1 && !strcmp(argv[1], "--quick");
	test_real_need();
	test_input_bound();
	test_cap_and_live_trees();
	test_threads_wait();
	test_peak_rss();
	return tap_done();
}
