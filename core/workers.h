/* SPDX-License-Identifier: MIT */
/*
 * A few threads running one function while the calling thread reports
 * progress: what export, verify and the checkpoint loader do with their
 * work queues.
 */
#ifndef ZEROFS_WORKERS_H
#define ZEROFS_WORKERS_H

/*
 * Runs fn(arg) on up to n threads and waits for all of them, calling
 * tick(tick_arg) every tick_ns nanoseconds meanwhile (tick may be NULL).
 * fn takes its work from arg itself (a shared counter). Returns how many
 * threads ran: fewer than n when the system refused more, 0 when none
 * could start (the caller may then run fn itself or fail).
 */
unsigned zf_run_workers(unsigned n, void *(*fn)(void *), void *arg,
			void (*tick)(void *), void *tick_arg, long tick_ns);

#endif /* ZEROFS_WORKERS_H */
