/* SPDX-License-Identifier: MIT */
/* Worker threads with a progress tick; see workers.h. */
#include "workers.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t ended; /* a worker has returned */
	unsigned running;     /* under lock */
	void *(*fn)(void *);
	void *arg;
};

static void *run_one(void *p)
{
	struct pool *pool = p;

	pool->fn(pool->arg);
	pthread_mutex_lock(&pool->lock);
	pool->running--;
	pthread_cond_signal(&pool->ended);
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

unsigned zf_run_workers(unsigned n, void *(*fn)(void *), void *arg,
			void (*tick)(void *), void *tick_arg, long tick_ns)
{
	struct pool pool = { .fn = fn, .arg = arg };
	pthread_t *tid = calloc(n ? n : 1, sizeof(*tid));
	unsigned started = 0;

	if (!tid)
		return 0;
	pthread_mutex_init(&pool.lock, NULL);
	pthread_cond_init(&pool.ended, NULL);
	pthread_mutex_lock(&pool.lock);
	for (; started < n; started++) {
		if (pthread_create(&tid[started], NULL, run_one, &pool))
			break;
		pool.running++;
	}
	while (pool.running) {
		struct timespec t;

		if (!tick) {
			pthread_cond_wait(&pool.ended, &pool.lock);
			continue;
		}
		clock_gettime(CLOCK_REALTIME, &t);
		t.tv_nsec += tick_ns;
		t.tv_sec += t.tv_nsec / 1000000000L;
		t.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&pool.ended, &pool.lock, &t);
		if (pool.running && tick) {
			pthread_mutex_unlock(&pool.lock);
			tick(tick_arg);
			pthread_mutex_lock(&pool.lock);
		}
	}
	pthread_mutex_unlock(&pool.lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	pthread_cond_destroy(&pool.ended);
	pthread_mutex_destroy(&pool.lock);
	free(tid);
	return started;
}
