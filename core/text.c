/* SPDX-License-Identifier: MIT */
/* UTF-8 validation and printable names; see text.h. */
#include "text.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t seq_len(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		len = 2, cp = s[0] & 0x1F;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		len = 3, cp = s[0] & 0x0F;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

bool zf_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0; i < len;) {
		size_t k = seq_len(p + i, len - i);

		if (!k)
			return false;
		i += k;
	}
	return true;
}

char *zf_printable(const char *s, char *buf, size_t size)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), used = 0;

	if (!size)
		return buf;
	for (size_t i = 0; i < n;) {
		size_t k = seq_len(p + i, n - i);
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
