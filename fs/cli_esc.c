/* SPDX-License-Identifier: MIT */
/*
 * cli_esc(): text from a checkpoint made inert before it reaches a
 * terminal or a log (cli.h). A `latest` file, a tensor name or a folder
 * name can hold escape sequences that move the cursor, retitle the
 * window or hide what follows; printed as \xNN they are just text.
 */
#include "cli.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zerofs/text.h"

#define SLOTS 8

struct slot {
	char *buf;
	size_t cap;
};

struct slots {
	unsigned next;
	struct slot s[SLOTS];
};

/* Per thread (FUSE's workers log too), freed when the thread ends. */
static pthread_key_t slots_key;
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;

static void slots_free(void *arg)
{
	struct slots *sl = arg;

	for (int i = 0; i < SLOTS; i++)
		free(sl->s[i].buf);
	free(sl);
}

static void slots_init(void)
{
	pthread_key_create(&slots_key, slots_free);
}

/* Code points a terminal acts on, or that reorder what is shown. */
static bool active(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) ||	  /* C1: CSI, OSC, ... */
	       cp == 0x061c || cp == 0x200e || cp == 0x200f || /* bidi marks */
	       (cp >= 0x2028 && cp <= 0x202e) ||  /* separators, bidi embeddings */
	       (cp >= 0x2066 && cp <= 0x2069);	  /* bidi isolates */
}

const char *cli_esc(const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t n = strlen((const char *)p), used = 0;
	struct slots *all;
	struct slot *sl;

	pthread_once(&slots_once, slots_init);
	all = pthread_getspecific(slots_key);
	if (!all) {
		all = calloc(1, sizeof(*all));
		if (!all || pthread_setspecific(slots_key, all)) {
			free(all);
			return "(out of memory)";
		}
	}
	sl = &all->s[all->next++ % SLOTS];
	/* At most 6 bytes out ("\u202e") per byte in. */
	if (n > (SIZE_MAX - 1) / 6)
		return "(text too long to show)";
	if (sl->cap < 6 * n + 1) {
		char *b = realloc(sl->buf, 6 * n + 1);

		if (!b)
			return "(out of memory)";
		sl->buf = b;
		sl->cap = 6 * n + 1;
	}
	for (size_t i = 0; i < n;) {
		uint32_t cp = 0;
		size_t next = i;
		/* The length of the valid UTF-8 sequence at i, 0 if none. */
		size_t k = zf_utf8_next(p, n, &next, &cp) ? next - i : 0;

		if (k == 1 && cp >= 0x20 && cp != 0x7f) {
			sl->buf[used++] = (char)p[i++];
		} else if (k > 1 && !active(cp)) {
			memcpy(sl->buf + used, p + i, k);
			used += k;
			i += k;
		} else if (k > 1) {
			used += (size_t)snprintf(sl->buf + used, 7, "\\u%04x", (unsigned)cp);
			i += k;
		} else {
			used += (size_t)snprintf(sl->buf + used, 5, "\\x%02x", p[i]);
			i++;
		}
	}
	sl->buf[used] = '\0';
	return sl->buf;
}
