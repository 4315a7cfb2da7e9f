/* SPDX-License-Identifier: MIT */
/* UTF-8 validation and printable names; see text.h. */
#include "zerofs/text.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

bool zf_utf8_next(const unsigned char *s, size_t n, size_t *i, uint32_t *cp)
{
	unsigned c;
	uint32_t v, min;
	size_t extra;

	if (*i >= n)
		return false;
	c = s[*i];
	if (c < 0x80) {
		*cp = c;
		(*i)++;
		return true;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		extra = 1;
		v = c & 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		extra = 2;
		v = c & 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		extra = 3;
		v = c & 0x07;
		min = 0x10000;
	} else {
		return false;
	}
	if (extra >= n - *i)
		return false;
	for (size_t k = 1; k <= extra; k++) {
		unsigned cc = s[*i + k];

		if ((cc & 0xc0) != 0x80)
			return false;
		v = (v << 6) | (cc & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return false;
	*cp = v;
	*i += extra + 1;
	return true;
}

bool zf_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t cp;

	for (size_t i = 0; i < len;)
		if (!zf_utf8_next(p, len, &i, &cp))
			return false;
	return true;
}

char *zf_printable(const char *s, char *buf, size_t size)
{
	return zf_printable_n(s, strlen(s), buf, size);
}

char *zf_printable_n(const char *s, size_t n, char *buf, size_t size)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t used = 0;

	if (!size)
		return buf;
	for (size_t i = 0; i < n;) {
		size_t j = i;
		uint32_t cp;
		size_t k = zf_utf8_next(p, n, &j, &cp) ? j - i : 0;
		bool plain = k > 1 || (k == 1 && p[i] >= 0x20 && p[i] != 0x7F && p[i] != '\\');

		if (used + (plain ? k : 4) + 4 >= size) {
			snprintf(buf + used, size - used, "...");
			return buf;
		}
		if (plain) {
			memcpy(buf + used, p + i, k);
			used += k;
			i += k;
		} else {
			used += (size_t)snprintf(buf + used, size - used, "\\x%02x", p[i]);
			i++;
		}
	}
	buf[used] = '\0';
	return buf;
}

void zf_shape_text(const uint64_t *shape, uint32_t nd, char *buf, size_t size)
{
	size_t used = (size_t)snprintf(buf, size, "[");

	for (uint32_t i = 0; i < nd && used < size; i++)
		used += (size_t)snprintf(buf + used, size - used, "%s%llu",
					 i ? ", " : "",
					 (unsigned long long)shape[i]);
	if (used < size)
		snprintf(buf + used, size - used, "]");
}
