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

/*
 * The length of the valid UTF-8 sequence at s (n bytes left) and its
 * code point, or 0 when the bytes are not UTF-8 (overlong forms,
 * surrogates and values past U+10FFFF included).
 */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	static const uint32_t min[4] = { 0, 0x80, 0x800, 0x10000 };
	size_t len;
	uint32_t v;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, v = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, v = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, v = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3f);
	}
	if (v < min[len - 1] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
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
		size_t k = utf8_seq(p + i, n - i, &cp);

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
