/* SPDX-License-Identifier: MIT */
/*
 * core/safetensors.c on hand-worked cases with their exact bytes: header
 * layout, ordering, escaping and padding; shard planning; shard names; the
 * index JSON; shard-size parsing. The randomised comparison with an
 * independent implementation is tests/t120-safetensors-reference.py.
 */
#include "zerofs/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

#define T(nm, dt, nd, ...)                                                 \
	{ .name = (nm), .dtype = (dt), .ndim = (nd),                        \
	  .shape = (const uint64_t[]){ __VA_ARGS__ }, .nbytes = 0 }

/* Fills nbytes from the shape, as a caller would. */
static void fill_nbytes(struct zf_st_tensor *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t v = zf_dtype_size(t[i].dtype);

		for (uint32_t d = 0; d < t[i].ndim; d++)
			v *= t[i].shape[d];
		t[i].nbytes = v;
	}
}

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int k = 7; k >= 0; k--)
		v = v << 8 | p[k];
	return v;
}

/*
 * Lays out and checks the frame: prefix = padded length, padding is
 * spaces, the JSON equals want_json exactly. Returns the status.
 */
static int check_layout(const char *what, struct zf_st_tensor *t, size_t n,
			const char *fmt, const char *want_json,
			uint64_t *offs, uint64_t *fsize)
{
	unsigned char *h = NULL;
	size_t hl = 0, jl = want_json ? strlen(want_json) : 0;
	uint64_t off_buf[64], fs = 0;
	struct zf_error err = { 0 };
	int rc;

	fill_nbytes(t, n);
	rc = zf_st_layout(t, n, fmt, &h, &hl, offs ? offs : off_buf,
			  fsize ? fsize : &fs, &err);
	if (!want_json) {
		tap_ok(rc != 0 && h == NULL, "%s: refused (%s)", what,
		       err.msg);
		return rc;
	}
	if (rc) {
		tap_ok(0, "%s: layout failed: %s", what, err.msg);
		return rc;
	}
	{
		uint64_t pl = le64(h);
		int ok = hl >= 8 && pl == hl - 8 && pl % 8 == 0 &&
			 pl >= jl && pl < jl + 8 &&
			 !memcmp(h + 8, want_json, jl);

		for (size_t i = 8 + jl; ok && i < hl; i++)
			ok = h[i] == ' ';
		tap_ok(ok, "%s: header bytes (%zu JSON + %zu spaces)", what,
		       jl, hl >= 8 + jl ? hl - 8 - jl : 0);
		if (!ok)
			printf("#   got:  %.*s|\n#   want: %s|\n",
			       (int)(hl > 8 ? hl - 8 : 0), h + 8, want_json);
	}
	free(h);
	return 0;
}

static void layout_cases(void)
{
	{
		struct zf_st_tensor t[] = {
			T("b", ZF_DT_F16, 1, 2),
			T("a", ZF_DT_F32, 1, 1),
		};
		uint64_t offs[2], fs;
		const char *want =
			"{\"__metadata__\":{\"format\":\"pt\"},"
			"\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
			"\"data_offsets\":[0,4]},"
			"\"b\":{\"dtype\":\"F16\",\"shape\":[2],"
			"\"data_offsets\":[4,8]}}";

		/* 138 bytes of JSON + 6 spaces = 144 */
		check_layout("zerofs-safetensors(5) EXAMPLES header", t, 2,
			     "pt", want, offs, &fs);
		tap_ok(offs[1] == 8 + 144 && offs[0] == 8 + 144 + 4 &&
			       fs == 8 + 144 + 8,
		       "example offsets a=%llu b=%llu size=%llu",
		       (unsigned long long)offs[1],
		       (unsigned long long)offs[0], (unsigned long long)fs);
	}
	{
		struct zf_st_tensor t[] = {
			T("x", ZF_DT_F32, 0, 0),
		};
		uint64_t offs[1], fs;

		/* 53 bytes -> 3 spaces */
		check_layout("scalar shape [] without metadata", t, 1, NULL,
			     "{\"x\":{\"dtype\":\"F32\",\"shape\":[],"
			     "\"data_offsets\":[0,4]}}",
			     offs, &fs);
		tap_ok(offs[0] == 8 + 56 && fs == 8 + 56 + 4,
		       "scalar offset %llu, size %llu",
		       (unsigned long long)offs[0], (unsigned long long)fs);
	}
	{
		uint64_t fs = 0, offs[1];

		check_layout("no tensors, no metadata", NULL, 0, NULL, "{}",
			     offs, &fs);
		tap_ok(fs == 16, "empty file is 16 bytes (got %llu)",
		       (unsigned long long)fs);
		check_layout("no tensors, format pt", NULL, 0, "pt",
			     "{\"__metadata__\":{\"format\":\"pt\"}}", offs,
			     &fs);
	}
	{
		/* Every dtype once, names in reverse: on disk descending
		 * safetensors Dtype position, BF16 before F16, BOOL last. */
		struct zf_st_tensor t[] = {
			T("a", ZF_DT_BOOL, 1, 1), T("b", ZF_DT_U8, 1, 1),
			T("c", ZF_DT_I8, 1, 1),	  T("d", ZF_DT_I16, 1, 1),
			T("e", ZF_DT_F16, 1, 1),  T("f", ZF_DT_BF16, 1, 1),
			T("g", ZF_DT_I32, 1, 1),  T("h", ZF_DT_F32, 1, 1),
			T("i", ZF_DT_F64, 1, 1),  T("j", ZF_DT_I64, 1, 1),
		};
		uint64_t offs[10], fs;
		const char *want =
			"{\"j\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
			"\"i\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]},"
			"\"h\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]},"
			"\"g\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[20,24]},"
			"\"f\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[24,26]},"
			"\"e\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[26,28]},"
			"\"d\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[28,30]},"
			"\"c\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[30,31]},"
			"\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[31,32]},"
			"\"a\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[32,33]}}";

		check_layout("dtype order I64 F64 F32 I32 BF16 F16 I16 I8 U8 BOOL",
			     t, 10, NULL, want, offs, &fs);
		tap_ok(offs[9] == fs - 33 && offs[0] == fs - 1,
		       "I64 first at the data start, BOOL last");
	}
	{
		/* Byte order of names: upper case before lower case, '.'
		 * before digits, "a" before "a.b", UTF-8 after ASCII, and
		 * an empty name first. */
		struct zf_st_tensor t[] = {
			T("layer.10", ZF_DT_F32, 1, 0),
			T("layer.2", ZF_DT_F32, 1, 0),
			T("\xc3\xa9", ZF_DT_F32, 1, 0),
			T("Z", ZF_DT_F32, 1, 0),
			T("a.b", ZF_DT_F32, 1, 0),
			T("a", ZF_DT_F32, 1, 0),
			T("", ZF_DT_F32, 1, 0),
		};
		const char *want =
			"{\"\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
			"\"Z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
			"\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
			"\"a.b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
			"\"layer.10\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
			"\"layer.2\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
			"\"\xc3\xa9\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}";

		check_layout("names in byte order, 0-element tensors share "
			     "[0,0]",
			     t, 7, NULL, want, NULL, NULL);
	}
	{
		struct zf_st_tensor t[] = {
			T("w", ZF_DT_BF16, 3, 2, 0, 3),
			T("v", ZF_DT_BF16, 2, 2, 3),
		};
		uint64_t offs[2], fs;

		check_layout("0 in a shape, multi-dim shape", t, 2, "pt",
			     "{\"__metadata__\":{\"format\":\"pt\"},"
			     "\"v\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
			     "\"w\":{\"dtype\":\"BF16\",\"shape\":[2,0,3],\"data_offsets\":[12,12]}}",
			     offs, &fs);
		tap_ok(offs[0] == fs && offs[1] + 12 == fs,
		       "0-element tensor at the end of the file");
	}
	{
		/* serde_json escaping: ", \, short forms, other C0 as
		 * \u00XX lower case, DEL and non-ASCII raw, '/' raw. */
		struct zf_st_tensor t[] = {
			T("q\"b\\s/\x7f\b\f\n\r\t\x01\x1f\xf0\x9f\x98\x80",
			  ZF_DT_U8, 1, 1),
		};

		check_layout("serde_json escaping of a name", t, 1, NULL,
			     "{\"q\\\"b\\\\s/\x7f\\b\\f\\n\\r\\t\\u0001\\u001f"
			     "\xf0\x9f\x98\x80\":{\"dtype\":\"U8\",\"shape\":[1],"
			     "\"data_offsets\":[0,1]}}",
			     NULL, NULL);
	}
	{
		struct zf_st_tensor t[] = {
			T("a", ZF_DT_F32, 1, 1),
			T("b", ZF_DT_F16, 1, 1),
			T("a", ZF_DT_BF16, 1, 1),
		};

		check_layout("duplicate names of different dtypes", t, 3,
			     "pt", NULL, NULL, NULL);
	}
	{
		struct zf_st_tensor t[] = { T("\xc3", ZF_DT_F32, 1, 1) };
		struct zf_st_tensor u[] = { T("\xed\xa0\x80", ZF_DT_F32, 1,
					      1) };
		struct zf_st_tensor v[] = { T("\xc0\xaf", ZF_DT_F32, 1, 1) };
		struct zf_st_tensor w[] = { T("__metadata__", ZF_DT_F32, 1,
					      1) };

		check_layout("truncated UTF-8 name", t, 1, "pt", NULL, NULL,
			     NULL);
		check_layout("UTF-8 surrogate in a name", u, 1, "pt", NULL,
			     NULL, NULL);
		check_layout("overlong UTF-8 in a name", v, 1, "pt", NULL,
			     NULL, NULL);
		check_layout("tensor named __metadata__", w, 1, "pt", NULL,
			     NULL, NULL);
	}
	{
		struct zf_st_tensor t[] = { T("x", ZF_DT_F32, 1, 3) };
		unsigned char *h = (unsigned char *)"sentinel";
		size_t hl;
		uint64_t o[1], fs;
		struct zf_error err = { 0 };

		fill_nbytes(t, 1);
		t[0].nbytes = 13;
		tap_ok(zf_st_layout(t, 1, "pt", &h, &hl, o, &fs, &err) ==
				       ZF_EFORMAT && !h,
		       "nbytes not numel * size refused: %s", err.msg);
		t[0].shape = (const uint64_t[]){ UINT64_MAX / 2 };
		t[0].nbytes = 0;
		zf_error_clear(&err);
		tap_ok(zf_st_layout(t, 1, "pt", &h, &hl, o, &fs, &err) ==
			       ZF_EFORMAT,
		       "byte count overflow refused: %s", err.msg);
	}
	{
		/* Two tensors whose sizes add past 2^64. */
		struct zf_st_tensor t[] = {
			T("a", ZF_DT_U8, 1, UINT64_MAX - 3),
			T("b", ZF_DT_U8, 1, 8),
		};
		unsigned char *h;
		size_t hl;
		uint64_t o[2], fs;
		struct zf_error err = { 0 };

		fill_nbytes(t, 2);
		tap_ok(zf_st_layout(t, 2, "pt", &h, &hl, o, &fs, &err) ==
			       ZF_EFORMAT,
		       "offset overflow refused: %s", err.msg);
	}
	{
		/* A header past 100 MB: 1.2M tensors with 80-byte names. */
		size_t n = 1200000;
		struct zf_st_tensor *t = calloc(n, sizeof(*t));
		char *names = malloc(n * 81);
		uint64_t *o = malloc(n * sizeof(*o)), fs;
		static const uint64_t one = 1;
		unsigned char *h;
		size_t hl;
		struct zf_error err = { 0 };
		int rc;

		if (!t || !names || !o)
			abort();
		for (size_t i = 0; i < n; i++) {
			snprintf(names + 81 * i, 81, "%080zu", i);
			t[i].name = names + 81 * i;
			t[i].dtype = ZF_DT_U8;
			t[i].ndim = 1;
			t[i].shape = &one;
			t[i].nbytes = 1;
		}
		rc = zf_st_layout(t, n, "pt", &h, &hl, o, &fs, &err);
		tap_ok(rc == ZF_EFORMAT, "header over 100 MB refused: %s",
		       err.msg);
		free(t);
		free(names);
		free(o);
	}
}

static void plan(const char *what, const uint64_t *sz, size_t n,
		 uint64_t limit, const uint32_t *want, uint32_t want_n)
{
	uint32_t got[32], gn = 99;
	int ok;

	zf_st_plan_shards(sz, n, limit, got, &gn);
	ok = gn == want_n && (n == 0 || !memcmp(got, want, n * 4));
	tap_ok(ok, "plan: %s -> %u shards", what, gn);
	if (!ok) {
		printf("#   got:");
		for (size_t i = 0; i < n; i++)
			printf(" %u", got[i]);
		printf("\n");
	}
}

static void shard_cases(void)
{
	const uint64_t G = 1000000000;

	{
		const uint64_t s[] = { 6 * G, 6 * G, 2 * G, 6 * G, 2 * G,
				       2 * G };
		const uint32_t w[] = { 0, 1, 1, 2, 2, 2 };

		plan("docstring [6,6,2,6,2,2]GB at 10GB", s, 6, 10 * G, w, 3);
	}
	{
		/* man/zerofs-safetensors.5, "Split": a=1, b=1, big=10,
		 * c=1 with max 5 -> 00001 = [big], 00002 = [a, b, c] */
		const uint64_t s[] = { 1, 1, 10, 1 };
		const uint32_t w[] = { 1, 1, 0, 1 };

		plan("oversized tensor numbered before the open shard", s, 4,
		     5, w, 2);
	}
	{
		const uint64_t s[] = { 3, 4, 3, 1, 9, 10 };
		const uint32_t w[] = { 0, 0, 0, 1, 1, 2 };

		plan("exactly at the limit fits (3+4+3, 1+9)", s, 6, 10, w,
		     3);
	}
	{
		const uint64_t s[] = { 11, 12 };
		const uint32_t w[] = { 0, 1 };

		plan("only oversized tensors", s, 2, 10, w, 2);
	}
	{
		const uint64_t s[] = { 4, 11, 4, 11, 4 };
		const uint32_t w[] = { 2, 0, 2, 1, 3 };

		plan("two oversized inside an open shard", s, 5, 10, w, 4);
	}
	{
		const uint64_t s[] = { 0, 0, 10, 0, 1, 0 };
		const uint32_t w[] = { 0, 0, 0, 0, 1, 1 };

		plan("0-byte tensors never close a shard", s, 6, 10, w, 2);
	}
	{
		const uint64_t s[] = { 5, 5 };
		const uint32_t w[] = { 0, 0 };

		plan("everything in one shard", s, 2, UINT64_MAX, w, 1);
	}
	{
		const uint64_t s[] = { UINT64_MAX, UINT64_MAX - 1, 1 };
		const uint32_t w[] = { 0, 1, 2 };

		plan("limit near 2^64 does not wrap", s, 3, UINT64_MAX - 1, w,
		     3);
	}
	plan("no tensors", NULL, 0, 10, NULL, 0);
	{
		char b[64];

		zf_st_shard_name(1, 1, b, sizeof(b));
		tap_ok(!strcmp(b, "model.safetensors"), "one shard: %s", b);
		zf_st_shard_name(1, 0, b, sizeof(b));
		tap_ok(!strcmp(b, "model.safetensors"), "no shards: %s", b);
		zf_st_shard_name(2, 3, b, sizeof(b));
		tap_ok(!strcmp(b, "model-00002-of-00003.safetensors"), "%s",
		       b);
		zf_st_shard_name(123456, 123456, b, sizeof(b));
		tap_ok(!strcmp(b, "model-123456-of-123456.safetensors"),
		       "more than 5 digits widens, as {:05d} does: %s", b);
		zf_st_shard_name(UINT32_MAX, UINT32_MAX, b, 40);
		tap_ok(strlen(b) < 40, "largest name fits in 40 bytes: %s", b);
	}
}

static void index_case(const char *what, const char *const *names,
		       const uint32_t *shard_of, size_t n, uint32_t n_shards,
		       uint64_t total, const char *want)
{
	char *out = NULL;
	size_t len = 0;
	struct zf_error err = { 0 };
	int rc = zf_st_index_json(names, shard_of, n, n_shards, total, &out,
				  &len, &err);

	if (!want) {
		tap_ok(rc != 0 && !out, "index: %s refused (%s)", what,
		       err.msg);
		return;
	}
	tap_ok(rc == 0 && len == strlen(want) && !strcmp(out, want),
	       "index: %s", what);
	if (rc == 0 && strcmp(out, want))
		printf("#   got:\n%s#   want:\n%s", out, want);
	free(out);
}

static void index_cases(void)
{
	{
		const char *names[] = { "lm_head.weight", "embed.weight",
					"a\"b\\c" };
		const uint32_t sh[] = { 1, 0, 1 };

		index_case("ASCII, sorted, escaped", names, sh, 3, 2, 123456789,
			   "{\n"
			   "  \"metadata\": {\n"
			   "    \"total_size\": 123456789\n"
			   "  },\n"
			   "  \"weight_map\": {\n"
			   "    \"a\\\"b\\\\c\": \"model-00002-of-00002.safetensors\",\n"
			   "    \"embed.weight\": \"model-00001-of-00002.safetensors\",\n"
			   "    \"lm_head.weight\": \"model-00002-of-00002.safetensors\"\n"
			   "  }\n"
			   "}\n");
	}
	{
		/* é U+00E9, € U+20AC, 😀 U+1F600 (surrogates d83d de00),
		 * DEL and a control character. Sorted by code point:
		 * "caf..." < "\x7f..." < "€" < "😀". */
		const char *names[] = { "\xf0\x9f\x98\x80", "\xe2\x82\xac",
					"caf\xc3\xa9", "\x7f\x01\t" };
		const uint32_t sh[] = { 0, 1, 2, 2 };

		index_case("non-ASCII as \\uXXXX, surrogate pairs, DEL", names,
			   sh, 4, 3, 0,
			   "{\n"
			   "  \"metadata\": {\n"
			   "    \"total_size\": 0\n"
			   "  },\n"
			   "  \"weight_map\": {\n"
			   "    \"caf\\u00e9\": \"model-00003-of-00003.safetensors\",\n"
			   "    \"\\u007f\\u0001\\t\": \"model-00003-of-00003.safetensors\",\n"
			   "    \"\\u20ac\": \"model-00002-of-00003.safetensors\",\n"
			   "    \"\\ud83d\\ude00\": \"model-00001-of-00003.safetensors\"\n"
			   "  }\n"
			   "}\n");
	}
	index_case("no tensors: weight_map {}", NULL, NULL, 0, 0,
		   UINT64_MAX,
		   "{\n"
		   "  \"metadata\": {\n"
		   "    \"total_size\": 18446744073709551615\n"
		   "  },\n"
		   "  \"weight_map\": {}\n"
		   "}\n");
	{
		const char *names[] = { "a" };
		const uint32_t sh[] = { 0 };

		index_case("one shard names model.safetensors", names, sh, 1, 1,
			   4,
			   "{\n"
			   "  \"metadata\": {\n"
			   "    \"total_size\": 4\n"
			   "  },\n"
			   "  \"weight_map\": {\n"
			   "    \"a\": \"model.safetensors\"\n"
			   "  }\n"
			   "}\n");
	}
	{
		const char *bad[] = { "ok", "\xff" };
		const char *dup[] = { "x", "x" };
		const uint32_t sh[] = { 0, 1 };
		const uint32_t sh_bad[] = { 0, 2 };

		index_case("invalid UTF-8", bad, sh, 2, 2, 0, NULL);
		index_case("duplicate name", dup, sh, 2, 2, 0, NULL);
		index_case("shard number out of range", dup, sh_bad, 2, 2, 0,
			   NULL);
	}
}

static void size_case(const char *s, int want_ok, uint64_t want)
{
	uint64_t v = 0;
	struct zf_error err = { 0 };
	int rc = zf_parse_size(s, &v, &err);

	if (want_ok)
		tap_ok(rc == 0 && v == want, "parse_size '%s' = %llu (got %llu)",
		       s, (unsigned long long)want, (unsigned long long)v);
	else
		tap_ok(rc == ZF_EUSAGE && err.msg[0],
		       "parse_size '%s' refused: %s", s, err.msg);
}

/* transformers' convert_file_size_to_int (tests/t125-max-shard-size.py
 * checks a larger table against transformers itself when installed). */
static void size_cases(void)
{
	size_case("5GB", 1, 5000000000u);
	size_case("5GiB", 1, 5368709120u);
	size_case("100MB", 1, 100000000u);
	size_case("100MiB", 1, 104857600u);
	size_case("10KB", 1, 10000);
	size_case("10kib", 1, 10240);
	size_case("12345", 1, 12345);
	size_case("5gb", 1, 625000000u);	/* bits */
	size_case("5Gb", 1, 625000000u);
	size_case("5gB", 1, 5000000000u);
	size_case("1kb", 1, 125);
	size_case(" 5 GB", 1, 5000000000u);	/* int(" 5 ") */
	size_case("+2MB", 1, 2000000u);
	size_case("1_000KB", 1, 1000000u);
	size_case("18446744073709551615", 1, UINT64_MAX);
	size_case("1.5GB", 0, 0);
	size_case("2TB", 0, 0);
	size_case("5GB ", 0, 0);
	size_case("", 0, 0);
	size_case("   ", 0, 0);
	size_case("-1GB", 0, 0);
	size_case("0GB", 0, 0);
	size_case("0", 0, 0);
	size_case("1b", 0, 0);
	size_case("GB", 0, 0);
	size_case("18446744073709551616", 0, 0);
	size_case("20000000000GB", 0, 0);
	size_case("5B", 0, 0);
	size_case("0x10GB", 0, 0);
	size_case("1__0KB", 0, 0);
	size_case("_1KB", 0, 0);
	size_case("1_KB", 0, 0);
	size_case("5 G B", 0, 0);
}

int main(void)
{
	layout_cases();
	shard_cases();
	index_cases();
	size_cases();
	return tap_done();
}
