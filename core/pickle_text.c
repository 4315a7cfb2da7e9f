/* SPDX-License-Identifier: MIT */
/*
 * The text arguments of protocol 0's opcodes, decoded as CPython's
 * Unpickler does: INT and LONG (decimal digits), FLOAT (repr), STRING (a
 * quoted, escaped repr) and UNICODE (raw-unicode-escape), and the memo
 * indices of PUT and GET. torch.save never writes them (it writes
 * protocol 2); they are read because any pickle may hold them.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ckd.h"
#include "pickle_i.h"

/* Decimal with an optional sign: 0 ok, 1 out of int64 range, -1 bad. */
int pk_parse_dec(const unsigned char *s, size_t n, int64_t *out)
{
	uint64_t v = 0, lim;
	bool neg = false;
	size_t i = 0;

	if (n && (s[0] == '-' || s[0] == '+')) {
		neg = s[0] == '-';
		i++;
	}
	if (i == n)
		return -1;
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < n; i++) {
		unsigned d = s[i] - (unsigned)'0';

		if (d > 9)
			return -1;
		if (v > (lim - d) / 10) {
			/* Keep scanning so that junk still reads as bad. */
			for (i++; i < n; i++)
				if ((unsigned)(s[i] - '0') > 9)
					return -1;
			return 1;
		}
		v = v * 10 + d;
	}
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/* INT and LONG: decimal text; INT "00" and "01" are False and True. */
struct zf_pv *pk_text_int(struct pk_reader *r, const unsigned char *s,
			      size_t n, bool is_long)
{
	int64_t v;
	int rc;

	if (is_long && n && s[n - 1] == 'L')
		n--;
	if (!is_long && n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1'))
		return s[1] == '1' ? r->yes : r->no;
	rc = pk_parse_dec(s, n, &v);
	if (rc < 0) {
		pk_bad(r, ZF_EFORMAT, "argument '%.*s' is not a decimal integer",
		       (int)(n > 40 ? 40 : n), (const char *)s);
		return NULL;
	}
	if (rc > 0)
		return pk_big_int(r, s, n, ZF_PV_STR);
	return pk_new_int(r, v);
}

struct zf_pv *pk_new_float(struct pk_reader *r, double d)
{
	struct zf_pv *v = pk_new(r, ZF_PV_FLOAT);

	if (v)
		v->u.f = d;
	return v;
}

struct zf_pv *pk_text_float(struct pk_reader *r, const unsigned char *s,
				size_t n)
{
	char buf[128];
	char *end;
	double d;

	if (n == 0 || n >= sizeof(buf)) {
		pk_bad(r, ZF_EFORMAT, "argument of %zu bytes is not a float", n);
		return NULL;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	d = strtod(buf, &end);
	if (end != buf + n) {
		pk_bad(r, ZF_EFORMAT, "argument '%s' is not a float", buf);
		return NULL;
	}
	return pk_new_float(r, d);
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A string value whose bytes (o of them, NUL-terminated) are already in
 * the arena at out. */
static struct zf_pv *str_at(struct pk_reader *r, char *out, size_t o)
{
	struct zf_pv *v = pk_new(r, ZF_PV_STR);

	if (v) {
		v->u.str.s = out;
		v->u.str.len = o;
	}
	return v;
}

/* STRING: a quoted repr whose escapes Python undoes with escape_decode. */
struct zf_pv *pk_text_string(struct pk_reader *r, const unsigned char *s,
				 size_t n)
{
	char *out;
	size_t o = 0;

	if (n < 2 || (s[0] != '\'' && s[0] != '"') || s[n - 1] != s[0]) {
		pk_bad(r, ZF_EFORMAT, "argument is not a quoted string");
		return NULL;
	}
	s++;
	n -= 2;
	out = zf_arena_alloc(r->arena, n + 1);
	if (!out) {
		pk_nomem(r);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];

		if (c != '\\' || i + 1 == n) {
			out[o++] = (char)c;
			continue;
		}
		c = s[++i];
		switch (c) {
		case '\n':
			break;
		case 'a': out[o++] = '\a'; break;
		case 'b': out[o++] = '\b'; break;
		case 'f': out[o++] = '\f'; break;
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case 'v': out[o++] = '\v'; break;
		case '\\': case '\'': case '"': out[o++] = (char)c; break;
		case 'x':
			if (i + 2 >= n || hexval(s[i + 1]) < 0 ||
			    hexval(s[i + 2]) < 0) {
				pk_bad(r, ZF_EFORMAT,
				       "argument has a bad \\x escape");
				return NULL;
			}
			out[o++] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
			i += 2;
			break;
		default:
			if (c >= '0' && c <= '7') {
				unsigned val = c - '0';

				for (int k = 0; k < 2 && i + 1 < n &&
						s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
					val = val * 8 + (s[++i] - '0');
				out[o++] = (char)(val & 0xff);
			} else {
				/* Unknown escapes stay as they are. */
				out[o++] = '\\';
				out[o++] = (char)c;
			}
		}
	}
	out[o] = '\0';
	return str_at(r, out, o);
}

static size_t put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* UNICODE: raw-unicode-escape, i.e. Latin-1 bytes plus \uXXXX and
 * \UXXXXXXXX after an odd run of backslashes. Output is at most twice the
 * input (a Latin-1 byte becomes two UTF-8 bytes; escapes shrink). */
struct zf_pv *pk_text_unicode(struct pk_reader *r, const unsigned char *s,
				  size_t n)
{
	size_t o = 0, bytes;
	char *out;

	if (zf_ckd_mul(&bytes, n, (size_t)2) || zf_ckd_add(&bytes, bytes, (size_t)1)) {
		pk_bad(r, ZF_ENOMEM, "argument too long");
		return NULL;
	}
	out = zf_arena_alloc(r->arena, bytes);
	if (!out) {
		pk_nomem(r);
		return NULL;
	}
	for (size_t i = 0; i < n;) {
		size_t run = 0, digits;
		uint32_t cp = 0;

		if (s[i] != '\\') {
			o += put_utf8(out + o, s[i++]);
			continue;
		}
		while (i < n && s[i] == '\\') {
			out[o++] = '\\';
			run++;
			i++;
		}
		if (!(run & 1) || i == n || (s[i] != 'u' && s[i] != 'U'))
			continue;
		o--; /* the escaping backslash */
		digits = s[i] == 'u' ? 4 : 8;
		i++;
		if (n - i < digits) {
			pk_bad(r, ZF_EFORMAT, "argument has a truncated \\u escape");
			return NULL;
		}
		for (size_t k = 0; k < digits; k++, i++) {
			int h = hexval(s[i]);

			if (h < 0) {
				pk_bad(r, ZF_EFORMAT, "argument has a bad \\u escape");
				return NULL;
			}
			cp = cp << 4 | (uint32_t)h;
		}
		if (cp > 0x10ffff) {
			pk_bad(r, ZF_EFORMAT, "argument escapes code point 0x%x",
			       (unsigned)cp);
			return NULL;
		}
		o += put_utf8(out + o, cp);
	}
	out[o] = '\0';
	return str_at(r, out, o);
}
