/* SPDX-License-Identifier: MIT */
/*
 * The config.json dtype rewrite (core/config_dtype.c): exact output bytes
 * for the layouts config files come in (indent 2, tabs, CRLF, one line,
 * escapes, nested sub-configs, duplicate keys, neither key), refusal of
 * everything Python's json module refuses (each with its message), depth
 * and size limits, and a seeded mutation loop: every mutant either fails
 * cleanly or rewrites to something a second rewrite leaves unchanged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config_dtype.h"
#include "tap.h"

static char *rewrite(const char *in, size_t len, const char *dt, size_t *n,
		     struct zf_error *err)
{
	char *out = NULL;

	memset(err, 0, sizeof(*err));
	if (zf_config_set_dtype(in, len, dt, &out, n, err))
		return NULL;
	return out;
}

/* in -> want, exactly. */
static void same(const char *what, const char *in, const char *want)
{
	struct zf_error err;
	size_t n = 0;
	char *out = rewrite(in, strlen(in), "bfloat16", &n, &err);

	tap_ok(out && n == strlen(want) && !memcmp(out, want, n), "%s", what);
	if (!out)
		printf("#   error: %s\n", err.msg);
	else if (n != strlen(want) || memcmp(out, want, n))
		printf("#   got: %.*s\n", (int)n, out);
	free(out);
}

/* in is refused with a message holding frag. */
static void refused(const char *what, const char *in, size_t len, const char *frag)
{
	struct zf_error err;
	size_t n;
	char *out = rewrite(in, len, "bfloat16", &n, &err);

	tap_ok(!out && err.status == ZF_EFORMAT && strstr(err.msg, frag),
	       "refused: %s ('%s')", what, frag);
	if (out || !strstr(err.msg, frag))
		printf("#   got: %s\n", out ? "accepted" : err.msg);
	free(out);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void mutation_loop(void)
{
	static const char *const seeds[] = {
		"{\n  \"a\": [1, 2.5, -3e-2, true, null],\n  \"torch_dtype\": \"float32\",\n"
		"  \"t\": {\"torch_dtype\": \"x\", \"d\": [{}, []]}\n}\n",
		"{\"dtype\":null,\"s\":\"\\u00e9\\\"\\\\\\/\\b\\f\\n\\r\\t\",\"n\":NaN}",
		"{\r\n\t\"b\": -Infinity,\r\n\t\"a\": \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"\r\n}",
	};
	static const char alphabet[] = "{}[]\",:\\ \t\r\nu0123456789abcdefeE+-.tnNI\x01\x80\xc3\xff";
	unsigned ok = 0, failed = 0, bad = 0;

	for (unsigned iter = 0; iter < 20000; iter++) {
		const char *seed = seeds[iter % 3];
		size_t len = strlen(seed), n, m;
		char buf[512], *out, *again;
		struct zf_error err;
		unsigned edits = 1 + (unsigned)(next() % 4);

		memcpy(buf, seed, len);
		for (unsigned e = 0; e < edits; e++) {
			size_t at = (size_t)(next() % (len + 1));
			unsigned op = (unsigned)(next() % 3);
			char c = alphabet[next() % (sizeof(alphabet) - 1)];

			if (op == 0 && len < sizeof(buf) - 1) { /* insert */
				memmove(buf + at + 1, buf + at, len - at);
				buf[at] = c;
				len++;
			} else if (op == 1 && at < len) { /* delete */
				memmove(buf + at, buf + at + 1, len - at - 1);
				len--;
			} else if (at < len) { /* replace */
				buf[at] = c;
			}
		}
		out = rewrite(buf, len, "bfloat16", &n, &err);
		if (!out) {
			failed++;
			if (err.status != ZF_EFORMAT)
				bad++;
			continue;
		}
		ok++;
		again = rewrite(out, n, "bfloat16", &m, &err);
		if (!again || m != n || memcmp(again, out, n))
			bad++;
		free(again);
		free(out);
	}
	tap_ok(!bad && ok > 100 && failed > 100,
	       "20000 mutants: %u rewritten (and stable when rewritten again), %u refused cleanly",
	       ok, failed);
}

int main(void)
{
	struct zf_error err;
	size_t n;
	char *out;

	/* What save_pretrained writes: indent 2, sorted keys. */
	same("indent 2: only the value changes",
	     "{\n  \"hidden_size\": 8,\n  \"torch_dtype\": \"float32\",\n  \"vocab_size\": 9\n}\n",
	     "{\n  \"hidden_size\": 8,\n  \"torch_dtype\": \"bfloat16\",\n  \"vocab_size\": 9\n}\n");
	same("tabs kept",
	     "{\n\t\"torch_dtype\":\t\"float16\",\n\t\"x\": 1\n}",
	     "{\n\t\"torch_dtype\":\t\"bfloat16\",\n\t\"x\": 1\n}");
	same("CRLF kept",
	     "{\r\n  \"a\": 1,\r\n  \"torch_dtype\": \"float32\"\r\n}\r\n",
	     "{\r\n  \"a\": 1,\r\n  \"torch_dtype\": \"bfloat16\"\r\n}\r\n");
	same("one line, no spaces",
	     "{\"torch_dtype\":\"float32\",\"a\":[1,2]}",
	     "{\"torch_dtype\":\"bfloat16\",\"a\":[1,2]}");
	same("escapes elsewhere untouched, an escaped key still counts",
	     "{\"n\": \"\\u00e9\\ud83d\\ude00\", \"torch\\u005fdtype\": \"float32\"}",
	     "{\"n\": \"\\u00e9\\ud83d\\ude00\", \"torch\\u005fdtype\": \"bfloat16\"}");
	same("only the top level counts: text_config keeps its own",
	     "{\n  \"text_config\": {\n    \"torch_dtype\": \"float32\"\n  },\n  \"torch_dtype\": \"float32\"\n}",
	     "{\n  \"text_config\": {\n    \"torch_dtype\": \"float32\"\n  },\n  \"torch_dtype\": \"bfloat16\"\n}");
	same("a key in a nested array of objects does not count",
	     "{\"a\": [{\"dtype\": \"float32\"}], \"dtype\": \"float16\"}",
	     "{\"a\": [{\"dtype\": \"float32\"}], \"dtype\": \"bfloat16\"}");
	same("both torch_dtype and dtype: both set",
	     "{\n  \"dtype\": \"float32\",\n  \"torch_dtype\": \"float32\"\n}",
	     "{\n  \"dtype\": \"bfloat16\",\n  \"torch_dtype\": \"bfloat16\"\n}");
	same("duplicate keys: every one set (whichever a parser keeps)",
	     "{\"torch_dtype\": \"float32\", \"torch_dtype\": \"float16\"}",
	     "{\"torch_dtype\": \"bfloat16\", \"torch_dtype\": \"bfloat16\"}");
	same("a null or non-string value is replaced",
	     "{\"torch_dtype\": null, \"dtype\": {\"x\": [1]}}",
	     "{\"torch_dtype\": \"bfloat16\", \"dtype\": \"bfloat16\"}");
	same("already the served dtype: byte for byte the same",
	     "{ \"torch_dtype\" : \"bfloat16\" }", "{ \"torch_dtype\" : \"bfloat16\" }");
	same("neither key, sorted keys: inserted in its place (one added line)",
	     "{\n  \"hidden_size\": 8,\n  \"vocab_size\": 9\n}\n",
	     "{\n  \"hidden_size\": 8,\n  \"torch_dtype\": \"bfloat16\",\n  \"vocab_size\": 9\n}\n");
	same("neither key, sorted, all before it: added last",
	     "{\n  \"a\": 1,\n  \"b\": 2\n}\n",
	     "{\n  \"a\": 1,\n  \"b\": 2,\n  \"torch_dtype\": \"bfloat16\"\n}\n");
	same("neither key, unsorted: added last in the file's style",
	     "{\r\n\t\"z\":1,\r\n\t\"a\":2\r\n}",
	     "{\r\n\t\"z\":1,\r\n\t\"a\":2,\r\n\t\"torch_dtype\":\"bfloat16\"\r\n}");
	same("empty object", "{}", "{\"torch_dtype\": \"bfloat16\"}");
	same("NaN and Infinity, as json.dumps writes them",
	     "{\"e\": NaN, \"f\": -Infinity, \"g\": Infinity, \"torch_dtype\": \"float32\"}",
	     "{\"e\": NaN, \"f\": -Infinity, \"g\": Infinity, \"torch_dtype\": \"bfloat16\"}");
	same("numbers of every form",
	     "{\"n\": [0, -0, 1.5, 2e10, 3E-2, -4.25e+1], \"dtype\": \"float32\"}",
	     "{\"n\": [0, -0, 1.5, 2e10, 3E-2, -4.25e+1], \"dtype\": \"bfloat16\"}");

	refused("a byte order mark", "\xef\xbb\xbf{}", 5, "a byte order mark at the start");
	refused("an array at the top", "[1]", 3, "the top level is not an object");
	refused("empty input", "", 0, "the top level is not an object");
	refused("a trailing comma", "{\"a\": 1,}", 9, "expected a key");
	refused("a comment", "{\"a\": 1 // x\n}", 14, "expected ',' or '}'");
	refused("single quotes", "{'a': 1}", 8, "expected a key");
	refused("a raw newline in a string", "{\"a\": \"x\ny\"}", 11,
		"a control character inside a string");
	refused("a bad escape", "{\"a\": \"\\x41\"}", 13, "a bad escape in a string");
	refused("a short \\u escape", "{\"a\": \"\\u12\"}", 13, "without four hex digits");
	refused("invalid UTF-8", "{\"a\": \"\xc3(\"}", 11, "not UTF-8 inside a string");
	refused("an encoded surrogate", "{\"a\": \"\xed\xa0\x80\"}", 12, "not UTF-8 inside a string");
	refused("a leading zero", "{\"a\": 01}", 9, "expected ',' or '}'");
	refused("a bare minus", "{\"a\": -}", 8, "a bad number");
	refused("a dot without digits", "{\"a\": 1.}", 9, "no digit after '.'");
	refused("an empty exponent", "{\"a\": 1e}", 9, "no digit in the exponent");
	refused("garbage after the object", "{} x", 4, "more data after the top-level object");
	refused("two objects", "{}{}", 4, "more data after the top-level object");
	refused("an unclosed object", "{\"a\": [1", 8, "the file ends inside an object or array");
	refused("an unclosed string", "{\"a\": \"x", 8, "a string is not closed");
	refused("a missing colon", "{\"a\" 1}", 7, "expected ':' after a key");
	refused("a NUL byte", "{\"a\": 1\0}", 9, "expected ',' or '}'");
	refused("-NaN", "{\"a\": -NaN}", 11, "a bad number");
	refused("True", "{\"a\": True}", 11, "expected a value");
	refused("a mismatched bracket", "{\"a\": [1}", 9, "expected ',' or ']'");

	/* The position is told in lines and columns (characters). */
	out = rewrite("{\n  \"\xc3\xa9\": 1,\n  \"b\": tru\n}", 23, "bfloat16", &n, &err);
	tap_ok(!out && strstr(err.msg, "expected a value at line 3, column 8"),
	       "the message gives line 3, column 8 (got: %s)", err.msg);
	free(out);

	/* Depth: 512 levels are read, 513 are refused without recursion. */
	for (int levels = 512; levels <= 513; levels++) {
		char deep[2 * 600 + 16];
		size_t k = 0;

		k += (size_t)snprintf(deep, 8, "{\"x\": ");
		for (int l = 1; l < levels; l++)
			deep[k++] = '[';
		for (int l = 1; l < levels; l++)
			deep[k++] = ']';
		deep[k++] = '}';
		out = rewrite(deep, k, "bfloat16", &n, &err);
		if (levels == 512)
			tap_ok(out != NULL, "512 levels of nesting are read (%s)", out ? "ok" : err.msg);
		else
			tap_ok(!out && strstr(err.msg, "nesting deeper than 512 levels"),
			       "513 levels are refused (%s)", err.msg);
		free(out);
	}

	/* A big file (12 MB of numbers) goes through in one pass. */
	{
		size_t cap = 12u << 20, k = 0;
		char *big = malloc(cap + 64);
		clock_t t0 = clock();
		double secs;

		k += (size_t)snprintf(big, 64, "{\"torch_dtype\": \"float32\", \"w\": [");
		while (k < cap)
			k += (size_t)snprintf(big + k, 16, "%s%u", big[k - 1] == '[' ? "" : ",",
					      (unsigned)(k % 100000));
		big[k++] = ']';
		big[k++] = '}';
		out = rewrite(big, k, "bfloat16", &n, &err);
		secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
		tap_ok(out && n == k + 1 && !memcmp(out + 16, "\"bfloat16\"", 10) &&
		       !memcmp(out + 26, big + 25, k - 25),
		       "a 12 MB config: one value changed, the rest byte for byte (%.2f s)", secs);
		free(out);
		free(big);
	}

	mutation_loop();
	return tap_done();
}
