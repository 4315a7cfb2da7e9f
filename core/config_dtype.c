/* SPDX-License-Identifier: MIT */
/*
 * A strict JSON scanner that records where the top-level members of an
 * object are, and the edit that sets the dtype (config_dtype.h). It never
 * builds a tree and never re-serializes: the output is the input with one
 * or two byte ranges replaced, or one member inserted.
 *
 * What it accepts is what Python's json.loads() accepts from a file that
 * transformers opened as UTF-8, so that zerofs refuses exactly the
 * config.json files a loader would fail on: RFC 8259 grammar, the
 * NaN / Infinity / -Infinity extension, strings without raw control
 * characters, valid UTF-8 everywhere. Nesting is tracked on a fixed stack,
 * not by recursion, so a hostile file cannot overflow the C stack.
 */
#include "config_dtype.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "zerofs/text.h"

#define NONE SIZE_MAX

enum key_kind { KEY_OTHER, KEY_TORCH_DTYPE, KEY_DTYPE };

/* A member of the top-level object; offsets into the text. */
struct member {
	size_t lead;	  /* first byte after the '{' or ',' before it */
	size_t key;	  /* its key's opening quote */
	size_t key_end;	  /* one past the key's closing quote */
	size_t value;	  /* first byte of its value */
	size_t value_end; /* one past its value */
	enum key_kind kind;
	bool escaped;	  /* the key holds an escape */
};

struct scan {
	const unsigned char *p;
	size_t n, i;
	struct zf_error *err;
	struct member *m; /* the top-level members, in file order */
	size_t n_m, cap_m;
	size_t root_open; /* the top-level '{' */
};

/* Fails at the current position: "... at line L, column C" (columns
 * count characters, from 1). Never quotes the text. */
static int fail(struct scan *s, const char *what)
{
	size_t line = 1, col = 1;

	for (size_t k = 0; k < s->i && k < s->n; k++) {
		if (s->p[k] == '\n') {
			line++;
			col = 1;
		} else if ((s->p[k] & 0xc0) != 0x80) {
			col++;
		}
	}
	return zf_fail(s->err, ZF_EFORMAT, "not valid JSON: %s at line %zu, column %zu",
		       what, line, col);
}

static void skip_ws(struct scan *s)
{
	while (s->i < s->n && (s->p[s->i] == ' ' || s->p[s->i] == '\t' ||
			       s->p[s->i] == '\n' || s->p[s->i] == '\r'))
		s->i++;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned hex_val(unsigned char c)
{
	return is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* At an opening quote: moves past the closing one. *escaped tells
 * whether the string holds an escape. */
static int scan_string(struct scan *s, bool *escaped)
{
	*escaped = false;
	s->i++;
	for (;;) {
		unsigned char c;

		if (s->i >= s->n)
			return fail(s, "a string is not closed");
		c = s->p[s->i];
		if (c == '"') {
			s->i++;
			return ZF_OK;
		}
		if (c < 0x20)
			return fail(s, "a control character inside a string");
		if (c == '\\') {
			unsigned char e = s->i + 1 < s->n ? s->p[s->i + 1] : 0;

			*escaped = true;
			if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' ||
			    e == 'n' || e == 'r' || e == 't') {
				s->i += 2;
			} else if (e == 'u') {
				for (size_t k = 2; k < 6; k++)
					if (s->i + k >= s->n || !is_hex(s->p[s->i + k]))
						return fail(s, "a \\u escape without four hex digits");
				s->i += 6;
			} else {
				return fail(s, "a bad escape in a string");
			}
			continue;
		}
		if (c < 0x80) {
			s->i++;
		} else {
			size_t j = s->i;
			uint32_t cp;

			if (!zf_utf8_next(s->p, s->n, &j, &cp))
				return fail(s, "bytes that are not UTF-8 inside a string");
			s->i = j;
		}
	}
}

/* Does the word w come next? Moves past it if so. */
static bool take(struct scan *s, const char *w)
{
	size_t k = strlen(w);

	if (s->n - s->i < k || memcmp(s->p + s->i, w, k))
		return false;
	s->i += k;
	return true;
}

static int scan_number(struct scan *s)
{
	if (s->p[s->i] == '-')
		s->i++;
	if (take(s, "Infinity"))
		return ZF_OK;
	if (s->i >= s->n || !is_digit(s->p[s->i]))
		return fail(s, "a bad number");
	if (s->p[s->i] == '0')
		s->i++;
	else
		while (s->i < s->n && is_digit(s->p[s->i]))
			s->i++;
	if (s->i < s->n && s->p[s->i] == '.') {
		s->i++;
		if (s->i >= s->n || !is_digit(s->p[s->i]))
			return fail(s, "a bad number (no digit after '.')");
		while (s->i < s->n && is_digit(s->p[s->i]))
			s->i++;
	}
	if (s->i < s->n && (s->p[s->i] == 'e' || s->p[s->i] == 'E')) {
		s->i++;
		if (s->i < s->n && (s->p[s->i] == '+' || s->p[s->i] == '-'))
			s->i++;
		if (s->i >= s->n || !is_digit(s->p[s->i]))
			return fail(s, "a bad number (no digit in the exponent)");
		while (s->i < s->n && is_digit(s->p[s->i]))
			s->i++;
	}
	return ZF_OK;
}

/* A string, number or literal at s->i. */
static int scan_scalar(struct scan *s)
{
	unsigned char c = s->p[s->i];
	bool esc;

	if (c == '"')
		return scan_string(s, &esc);
	if (c == '-' || is_digit(c))
		return scan_number(s);
	if (take(s, "true") || take(s, "false") || take(s, "null") ||
	    take(s, "NaN") || take(s, "Infinity"))
		return ZF_OK;
	return fail(s, "expected a value");
}

/* The raw key (between its quotes, escapes decoded) equals the ASCII
 * word w. */
static bool key_is(const unsigned char *k, size_t n, const char *w)
{
	size_t wn = strlen(w), at = 0;

	for (size_t i = 0; i < n; at++) {
		unsigned c = k[i];

		if (c == '\\') {
			unsigned char e = k[i + 1];

			if (e == 'u') {
				c = 0;
				for (size_t j = 2; j < 6; j++)
					c = c * 16 + hex_val(k[i + j]);
				i += 6;
			} else {
				c = e == 'b' ? '\b' : e == 'f' ? '\f' : e == 'n' ? '\n' :
				    e == 'r' ? '\r' : e == 't' ? '\t' : e;
				i += 2;
			}
		} else {
			i++;
		}
		if (at >= wn || c != (unsigned char)w[at])
			return false;
	}
	return at == wn;
}

/* At a key inside an object at depth `depth` (1: the top level): scans
 * the key and its colon, and records a top-level member. */
static int scan_key(struct scan *s, size_t depth, size_t lead, size_t *cur)
{
	struct member m = { .lead = lead, .key = s->i };
	int rc;

	if (s->i >= s->n || s->p[s->i] != '"')
		return fail(s, "expected a key (a string in double quotes)");
	rc = scan_string(s, &m.escaped);
	if (rc)
		return rc;
	m.key_end = s->i;
	skip_ws(s);
	if (s->i >= s->n || s->p[s->i] != ':')
		return fail(s, "expected ':' after a key");
	s->i++;
	skip_ws(s);
	if (depth != 1)
		return ZF_OK;
	m.value = s->i;
	if (key_is(s->p + m.key + 1, m.key_end - m.key - 2, "torch_dtype"))
		m.kind = KEY_TORCH_DTYPE;
	else if (key_is(s->p + m.key + 1, m.key_end - m.key - 2, "dtype"))
		m.kind = KEY_DTYPE;
	if (s->n_m == s->cap_m && zf_grow(&s->m, &s->cap_m, s->n_m + 1, 64))
		return zf_fail(s->err, ZF_ENOMEM, "out of memory");
	*cur = s->n_m;
	s->m[s->n_m++] = m;
	return ZF_OK;
}

/* Scans the whole text: one object, then only whitespace. */
static int scan_doc(struct scan *s)
{
	unsigned char stack[ZF_CONFIG_MAX_DEPTH]; /* '{' or '[' per level */
	size_t depth = 0, cur = NONE;
	bool done = false; /* a value just ended at s->i */
	int rc;

	if (s->n >= 3 && !memcmp(s->p, "\xef\xbb\xbf", 3))
		return fail(s, "a byte order mark at the start");
	skip_ws(s);
	if (s->i >= s->n || s->p[s->i] != '{')
		return fail(s, "the top level is not an object");
	s->root_open = s->i;
	for (;;) {
		unsigned char c;

		if (!done) {
			skip_ws(s);
			if (s->i >= s->n)
				return fail(s, "the file ends inside a value");
			c = s->p[s->i];
			if (c == '{' || c == '[') {
				if (depth == ZF_CONFIG_MAX_DEPTH)
					return fail(s, "nesting deeper than 512 levels");
				stack[depth++] = c;
				s->i++;
				skip_ws(s);
				if (s->i < s->n && s->p[s->i] == (c == '{' ? '}' : ']')) {
					s->i++;
					depth--;
					done = true;
				} else if (c == '{') {
					rc = scan_key(s, depth, s->root_open + 1, &cur);
					if (rc)
						return rc;
				}
				continue;
			}
			rc = scan_scalar(s);
			if (rc)
				return rc;
			done = true;
		}
		/* A value ended. */
		if (depth == 1 && cur != NONE) {
			s->m[cur].value_end = s->i;
			cur = NONE;
		}
		if (!depth)
			break;
		skip_ws(s);
		if (s->i >= s->n)
			return fail(s, "the file ends inside an object or array");
		c = s->p[s->i];
		if (c == ',') {
			s->i++;
			done = false;
			if (stack[depth - 1] == '{') {
				size_t lead = s->i;

				skip_ws(s);
				rc = scan_key(s, depth, lead, &cur);
				if (rc)
					return rc;
			}
			continue;
		}
		if (c == (stack[depth - 1] == '{' ? '}' : ']')) {
			s->i++;
			depth--;
			continue; /* done stays true: the container was a value */
		}
		return fail(s, stack[depth - 1] == '{' ? "expected ',' or '}'"
						       : "expected ',' or ']'");
	}
	skip_ws(s);
	if (s->i != s->n)
		return fail(s, "more data after the top-level object");
	return ZF_OK;
}

/* One change to the text: bytes [at, at + del) become ins (ins_len). */
struct edit {
	size_t at, del;
	const unsigned char *ins[5]; /* pieces, concatenated */
	size_t ins_len[5];
};

static void piece(struct edit *e, const void *p, size_t n)
{
	for (size_t k = 0; k < 5; k++)
		if (!e->ins[k]) {
			e->ins[k] = p;
			e->ins_len[k] = n;
			return;
		}
}

/* Key order of two members' raw keys (neither escaped). */
static int key_cmp(const unsigned char *p, const struct member *a,
		   const unsigned char *b, size_t bn)
{
	size_t an = a->key_end - a->key - 2;
	int c = memcmp(p + a->key + 1, b, an < bn ? an : bn);

	return c ? c : (an > bn) - (an < bn);
}

int zf_config_set_dtype(const char *text, size_t len, const char *dtype,
			char **out, size_t *out_len, struct zf_error *err)
{
	static const char torch_key[] = "torch_dtype";
	struct scan s = { .p = (const unsigned char *)text, .n = len, .err = err };
	struct edit edits[8], *e;
	size_t n_edits = 0, total = len, dn = strlen(dtype), at = 0, found = 0;
	char *quoted = NULL, *buf = NULL, *w;
	int rc;

	*out = NULL;
	*out_len = 0;
	rc = scan_doc(&s);
	if (rc)
		goto done;
	quoted = malloc(dn + 3);
	if (!quoted) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto done;
	}
	snprintf(quoted, dn + 3, "\"%s\"", dtype);

	for (size_t k = 0; k < s.n_m; k++) {
		const struct member *m = &s.m[k];

		if (m->kind == KEY_OTHER)
			continue;
		found++;
		if (m->value_end - m->value == dn + 2 && !memcmp(s.p + m->value, quoted, dn + 2))
			continue;
		if (n_edits == sizeof(edits) / sizeof(edits[0])) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "more than %zu top-level dtype keys",
				     sizeof(edits) / sizeof(edits[0]));
			goto done;
		}
		e = &edits[n_edits++];
		memset(e, 0, sizeof(*e));
		e->at = m->value;
		e->del = m->value_end - m->value;
		piece(e, quoted, dn + 2);
	}
	if (!found) {
		bool sorted = true;
		size_t before = NONE;

		for (size_t k = 0; k < s.n_m; k++) {
			if (s.m[k].escaped || (k && key_cmp(s.p, &s.m[k], s.p + s.m[k - 1].key + 1,
							   s.m[k - 1].key_end - s.m[k - 1].key - 2) < 0))
				sorted = false;
			if (before == NONE && key_cmp(s.p, &s.m[k], (const unsigned char *)torch_key,
						      sizeof(torch_key) - 1) > 0)
				before = k;
		}
		e = &edits[n_edits++];
		memset(e, 0, sizeof(*e));
		if (!s.n_m) {
			/* {} : the member alone, in the usual ": " style. */
			e->at = s.root_open + 1;
			piece(e, "\"torch_dtype\": ", 15);
			piece(e, quoted, dn + 2);
		} else if (sorted && before != NONE) {
			/* "torch_dtype": "D",<lead of next> then the next key */
			const struct member *m = &s.m[before];

			e->at = m->key;
			piece(e, "\"torch_dtype\"", 13);
			piece(e, s.p + m->key_end, m->value - m->key_end);
			piece(e, quoted, dn + 2);
			piece(e, ",", 1);
			piece(e, s.p + m->lead, m->key - m->lead);
		} else {
			/* ,<lead of the last>"torch_dtype": "D" after the last */
			const struct member *m = &s.m[s.n_m - 1];

			e->at = m->value_end;
			piece(e, ",", 1);
			piece(e, s.p + m->lead, m->key - m->lead);
			piece(e, "\"torch_dtype\"", 13);
			piece(e, s.p + m->key_end, m->value - m->key_end);
			piece(e, quoted, dn + 2);
		}
	}

	for (size_t k = 0; k < n_edits; k++) {
		total -= edits[k].del;
		for (size_t j = 0; j < 5; j++)
			total += edits[k].ins_len[j];
	}
	buf = malloc(total + 1);
	if (!buf) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto done;
	}
	/* Edits are in file order: members are, and an insertion is the
	 * only edit when there is one. */
	w = buf;
	for (size_t k = 0; k < n_edits; k++) {
		memcpy(w, text + at, edits[k].at - at);
		w += edits[k].at - at;
		for (size_t j = 0; j < 5; j++) {
			if (!edits[k].ins_len[j])
				continue;
			memcpy(w, edits[k].ins[j], edits[k].ins_len[j]);
			w += edits[k].ins_len[j];
		}
		at = edits[k].at + edits[k].del;
	}
	memcpy(w, text + at, len - at);
	w += len - at;
	*w = '\0';
	*out = buf;
	*out_len = total;
	buf = NULL;
done:
	free(buf);
	free(quoted);
	free(s.m);
	return rc;
}
