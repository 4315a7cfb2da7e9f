/* SPDX-License-Identifier: MIT */
/* The progress bar of progress.h. */
#include "progress.h"

#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"

#define REDRAW_S 0.1

static double since(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

void progress_init(struct progress *p, const char *label, bool enabled)
{
	p->on = enabled && isatty(STDERR_FILENO);
	p->drawn = false;
	p->label = label;
	clock_gettime(CLOCK_MONOTONIC, &p->start);
	p->last = p->start;
}

static int columns(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

static void hms(double s, char *buf, size_t size)
{
	unsigned long t = s < 0 ? 0 : (unsigned long)(s + 0.5);

	if (t >= 3600)
		snprintf(buf, size, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, size, "%lu:%02lu", t / 60, t % 60);
}

void progress_update(void *arg, uint64_t done, uint64_t total)
{
	struct progress *p = arg;
	struct timespec now;
	char a[32], b[32], r[32], eta[32], line[512];
	double el, rate, frac;
	int cols, bar;

	if (!p->on)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (done < total && p->drawn && since(&p->last, &now) < REDRAW_S)
		return;
	p->last = now;
	el = since(&p->start, &now);
	rate = el > 0 ? (double)done / el : 0;
	frac = total ? (double)done / (double)total : 1.0;
	if (rate > 0 && done < total)
		hms((double)(total - done) / rate, eta, sizeof(eta));
	else if (done >= total)
		hms(el, eta, sizeof(eta));
	else
		snprintf(eta, sizeof(eta), "--:--");
	cli_human_size(done, a, sizeof(a));
	cli_human_size(total, b, sizeof(b));
	cli_human_size((unsigned long long)rate, r, sizeof(r));
	snprintf(line, sizeof(line), " %s / %s  %3d%%  %s/s  %s %s",
		     a, b, (int)(frac * 100), r, done < total ? "ETA" : "in", eta);
	/* The bar's width depends on the terminal only, so it does not
	 * jitter as the numbers beside it change length. */
	cols = columns() - 1;
	bar = cols - 62;
	if (bar > 30)
		bar = 30;
	fprintf(stderr, "\r%s", p->label);
	if (bar >= 10) {
		int fill = (int)(frac * bar);

		fputs(" [", stderr);
		for (int i = 0; i < bar; i++)
			fputc(i < fill ? '#' : '.', stderr);
		fputc(']', stderr);
	}
	fprintf(stderr, "%s\033[K", line);
	fflush(stderr);
	p->drawn = true;
}

void progress_end(struct progress *p)
{
	if (p->on && p->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
	p->drawn = false;
}

double progress_elapsed(const struct progress *p)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return since(&p->start, &now);
}
