/* SPDX-License-Identifier: MIT */
/*
 * A one-line progress bar on stderr for the commands that read a whole
 * model (export, verify): bytes done of total, percent, rate and time
 * left, redrawn at most ten times a second, and only when stderr is a
 * terminal (a log file gets no carriage returns).
 */
#ifndef ZEROFS_PROGRESS_H
#define ZEROFS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct progress {
	bool on;		 /* drawing at all */
	bool drawn;		 /* a line is on the screen */
	const char *label;	 /* "export", "verify" */
	struct timespec start;
	struct timespec last;	 /* last redraw */
};

/* Starts a bar labelled label; it draws only when enabled and stderr is a
 * terminal. */
void progress_init(struct progress *p, const char *label, bool enabled);

/* Matches zf_progress_fn: arg is a struct progress. Redraws when 0.1 s
 * has passed since the last redraw, or when done == total. */
void progress_update(void *arg, uint64_t done, uint64_t total);

/* Clears the line, so that what is printed next starts clean. */
void progress_end(struct progress *p);

/* Seconds since progress_init(). */
double progress_elapsed(const struct progress *p);

#endif /* ZEROFS_PROGRESS_H */
