/* SPDX-License-Identifier: MIT */
/*
 * The bytes safetensors.torch.save_file() and transformers'
 * save_pretrained() would write, computed from names, dtypes and shapes
 * alone (safetensors.h). The truth is safetensors' tensor.rs (prepare()
 * and Metadata's Serialize, with serde_json's compact formatter),
 * huggingface_hub's split_state_dict_into_shards_factory(),
 * transformers' convert_file_size_to_int(), and Python's json.dumps(indent=2,
 * sort_keys=True) for the index; man/zerofs-safetensors.5 (SAFETENSORS
 * FILES, SHARDS) describes the result. The JSON text is
 * written here by hand because no library lays it out byte for byte the
 * same way (cJSON's spacing differs from both serde_json and Python).
 * tests/t120-safetensors-reference.py checks all of it against an
 * independent Python implementation.
 */
#include "zerofs/safetensors.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ckd.h"
#include "cursor.h"
#include "grow.h"
#include "zerofs/text.h"

/* ---- a growable byte buffer that remembers failure ------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
	size_t max; /* give up (too_big) past this many bytes */
	bool oom, too_big;
};

static bool sb_reserve(struct sbuf *b, size_t add)
{
	if (b->oom || b->too_big)
		return false;
	if (add > b->max - b->len) {
		b->too_big = true;
		return false;
	}
	if (zf_grow(&b->p, &b->cap, b->len + add, 256)) {
		b->oom = true;
		return false;
	}
	return true;
}

static void sb_add(struct sbuf *b, const void *s, size_t n)
{
	if (n && sb_reserve(b, n)) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_u64(struct sbuf *b, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);

	sb_add(b, tmp, (size_t)n);
}

static const char hexdig[] = "0123456789abcdef";

static void sb_u4(struct sbuf *b, unsigned v)
{
	char t[6] = { '\\', 'u', hexdig[(v >> 12) & 15], hexdig[(v >> 8) & 15],
		      hexdig[(v >> 4) & 15], hexdig[v & 15] };

	sb_add(b, t, sizeof(t));
}

/* The short JSON escape for c ('n' for a newline, ...), or 0. Python
 * and serde_json use the same five plus the quote and the backslash. */
static char short_escape(uint32_t c)
{
	switch (c) {
	case '"': return '"';
	case '\\': return '\\';
	case '\b': return 'b';
	case '\f': return 'f';
	case '\n': return 'n';
	case '\r': return 'r';
	case '\t': return 't';
	}
	return 0;
}

/*
 * A JSON string as serde_json writes it: only '"', '\\' and C0 controls
 * are escaped, the usual five with their short forms, the rest as \u00XX
 * in lower case. Everything else, DEL and non-ASCII included, goes out
 * raw. The input is already known to be valid UTF-8.
 */
static void sb_json_serde(struct sbuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t run = 0;

	sb_add(b, "\"", 1);
	for (size_t i = 0; p[i]; i++) {
		unsigned c = p[i];
		char esc;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		sb_add(b, p + run, i - run);
		run = i + 1;
		esc = short_escape(c);
		if (esc) {
			char t[2] = { '\\', esc };

			sb_add(b, t, 2);
		} else {
			sb_u4(b, c);
		}
	}
	sb_add(b, p + run, strlen((const char *)p + run));
	sb_add(b, "\"", 1);
}

/*
 * A JSON string as Python's json.dumps(ensure_ascii=True) writes it:
 * printable ASCII (space to '~') raw except '"' and '\\'; the five short
 * escapes; everything else, DEL included, as lower-case \uXXXX, and a
 * code point above U+FFFF as a UTF-16 surrogate pair.
 */
static void sb_json_ascii(struct sbuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n = strlen(s);

	sb_add(b, "\"", 1);
	while (i < n) {
		uint32_t c;
		char esc;

		if (!zf_utf8_next(p, n, &i, &c))
			return; /* callers validate first */
		if (c >= 0x20 && c <= 0x7e && c != '"' && c != '\\') {
			char ch = (char)c;

			sb_add(b, &ch, 1);
			continue;
		}
		esc = short_escape(c);
		if (esc) {
			char t[2] = { '\\', esc };

			sb_add(b, t, 2);
		} else if (c >= 0x10000) {
			c -= 0x10000;
			sb_u4(b, 0xd800 | (c >> 10));
			sb_u4(b, 0xdc00 | (c & 0x3ff));
		} else {
			sb_u4(b, c);
		}
	}
	sb_add(b, "\"", 1);
}

/* ---- zf_st_layout ---------------------------------------------------- */

struct order {
	const char *name;
	int rank;
	size_t idx;
};

static int by_name(const void *a, const void *b)
{
	const struct order *x = a, *y = b;

	return strcmp(x->name, y->name); /* unsigned bytes: UTF-8 order */
}

/* An order array for n tensors (NULL when n is 0). */
static int new_order(size_t n, struct order **ord, struct zf_error *err)
{
	size_t bytes;

	*ord = NULL;
	if (!n)
		return ZF_OK;
	if (zf_ckd_mul(&bytes, n, sizeof(**ord)))
		return zf_fail(err, ZF_ENOMEM, "too many tensors");
	*ord = malloc(bytes);
	if (!*ord)
		return zf_fail(err, ZF_ENOMEM, "out of memory for %zu tensors", n);
	return ZF_OK;
}

/* Sorts ord by name (byte order) and refuses a name given twice. */
static int sort_by_name_unique(struct order *ord, size_t n, struct zf_error *err)
{
	if (n > 1)
		qsort(ord, n, sizeof(*ord), by_name);
	for (size_t i = 1; i < n; i++)
		if (!strcmp(ord[i - 1].name, ord[i].name))
			return zf_fail(err, ZF_EFORMAT, "duplicate tensor '%s'",
				       ord[i].name);
	return ZF_OK;
}

/* safetensors' write order: descending Dtype position, then name. */
static int by_rank_name(const void *a, const void *b)
{
	const struct order *x = a, *y = b;

	if (x->rank != y->rank)
		return x->rank > y->rank ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Checks what save_file() would have refused, or what a reader would
 * refuse in the result; everything here is a caller or input bug. */
static int check_tensor(const struct zf_st_tensor *t, struct zf_error *err)
{
	uint64_t numel = 1, nbytes;

	if (!t->name)
		return zf_fail(err, ZF_EFORMAT, "tensor without a name");
	if (!zf_utf8_valid(t->name, strlen(t->name)))
		return zf_fail(err, ZF_EFORMAT,
			       "tensor name '%s' is not valid UTF-8", t->name);
	/* A tensor called __metadata__ would collide with the metadata
	 * key; the reader cannot take it either way. */
	if (!strcmp(t->name, "__metadata__"))
		return zf_fail(err, ZF_EFORMAT,
			       "tensor name '__metadata__' is reserved");
	if (zf_dtype_st_rank(t->dtype) < 0)
		return zf_fail(err, ZF_EFORMAT, "tensor '%s': invalid dtype",
			       t->name);
	if (t->ndim && !t->shape)
		return zf_fail(err, ZF_EFORMAT, "tensor '%s': no shape",
			       t->name);
	for (uint32_t d = 0; d < t->ndim; d++)
		if (zf_ckd_mul(&numel, numel, t->shape[d]))
			return zf_fail(err, ZF_EFORMAT,
				       "tensor '%s': element count overflows",
				       t->name);
	if (zf_ckd_mul(&nbytes, numel, zf_dtype_size(t->dtype)) ||
	    nbytes != t->nbytes)
		return zf_fail(err, ZF_EFORMAT,
			       "tensor '%s': %" PRIu64 " bytes do not match "
			       "%" PRIu64 " elements of %s",
			       t->name, t->nbytes, numel,
			       zf_dtype_st_name(t->dtype));
	return ZF_OK;
}

int zf_st_layout(const struct zf_st_tensor *tensors, size_t n,
		 const char *metadata_format, unsigned char **header,
		 size_t *header_len, uint64_t *data_offset, uint64_t *file_size,
		 struct zf_error *err)
{
	struct sbuf b = { .max = (size_t)ZF_ST_MAX_HEADER + 8 };
	struct order *ord = NULL;
	uint64_t pos = 0, total;
	size_t json_len, padded;
	int rc = ZF_OK;

	*header = NULL;
	*header_len = 0;
	if (metadata_format && !zf_utf8_valid(metadata_format, strlen(metadata_format)))
		return zf_fail(err, ZF_EFORMAT,
			       "metadata format is not valid UTF-8");
	for (size_t i = 0; i < n; i++) {
		rc = check_tensor(&tensors[i], err);
		if (rc)
			return rc;
	}
	rc = new_order(n, &ord, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		ord[i].name = tensors[i].name;
		ord[i].rank = zf_dtype_st_rank(tensors[i].dtype);
		ord[i].idx = i;
	}
	/* Duplicates need not be neighbours in write order (the dtypes may
	 * differ), so look for them in name order first. */
	rc = sort_by_name_unique(ord, n, err);
	if (rc)
		goto out;
	if (n > 1)
		qsort(ord, n, sizeof(*ord), by_rank_name);

	sb_add(&b, "\0\0\0\0\0\0\0\0{", 9); /* the prefix is filled in last */
	if (metadata_format) {
		sb_str(&b, "\"__metadata__\":{\"format\":");
		sb_json_serde(&b, metadata_format);
		sb_str(&b, "}");
	}
	for (size_t k = 0; k < n; k++) {
		const struct zf_st_tensor *t = &tensors[ord[k].idx];
		uint64_t end;

		if (zf_ckd_add(&end, pos, t->nbytes)) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "tensor '%s': data offsets overflow",
				     t->name);
			goto out;
		}
		if (k || metadata_format)
			sb_str(&b, ",");
		sb_json_serde(&b, t->name);
		sb_str(&b, ":{\"dtype\":\"");
		sb_str(&b, zf_dtype_st_name(t->dtype));
		sb_str(&b, "\",\"shape\":[");
		for (uint32_t d = 0; d < t->ndim; d++) {
			if (d)
				sb_str(&b, ",");
			sb_u64(&b, t->shape[d]);
		}
		sb_str(&b, "],\"data_offsets\":[");
		sb_u64(&b, pos);
		sb_str(&b, ",");
		sb_u64(&b, end);
		sb_str(&b, "]}");
		data_offset[ord[k].idx] = pos; /* made absolute below */
		pos = end;
	}
	sb_str(&b, "}");
	if (b.oom) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory for the header");
		goto out;
	}
	json_len = b.len - 8;
	/* Spaces (JSON whitespace) to a multiple of 8, counted in the
	 * prefix, so that the data starts 8-aligned in the file. */
	padded = (json_len + 7) & ~(size_t)7;
	if (b.too_big || padded > ZF_ST_MAX_HEADER) {
		rc = zf_fail(err, ZF_EFORMAT,
			     "safetensors header over %u bytes (%zu tensors)",
			     ZF_ST_MAX_HEADER, n);
		goto out;
	}
	while (b.len - 8 < padded)
		sb_add(&b, " ", 1);
	if (b.oom) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory for the header");
		goto out;
	}
	zf_put_le64((unsigned char *)b.p, padded);
	/* header + data cannot overflow: header <= 100 MB + 8 and pos was
	 * checked, but check anyway rather than trust the bound. */
	if (zf_ckd_add(&total, pos, b.len)) {
		rc = zf_fail(err, ZF_EFORMAT, "file size overflows");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		data_offset[i] += b.len;
	*file_size = total;
	*header = (unsigned char *)b.p;
	*header_len = b.len;
	b.p = NULL;
out:
	free(b.p);
	free(ord);
	return rc;
}

/* ---- sharding -------------------------------------------------------- */

#define SHARD_OPEN UINT32_MAX

void zf_st_plan_shards(const uint64_t *nbytes, size_t n, uint64_t limit,
		       uint32_t *shard_of, uint32_t *n_shards)
{
	uint32_t next = 0;	/* number the next closed shard gets */
	uint64_t cur = 0;	/* bytes in the open shard */
	size_t first_open = 0;	/* members of the open shard are >= this */
	bool open = false;

	for (size_t i = 0; i < n; i++) {
		/* Too big for any shard: a shard of its own, numbered now,
		 * while the open shard stays open (and so numbers later). */
		if (nbytes[i] > limit) {
			shard_of[i] = next++;
			continue;
		}
		/* The hub tests "current + size > max"; as cur <= limit and
		 * nbytes[i] <= limit here, limit - cur cannot wrap. */
		if (open && nbytes[i] > limit - cur) {
			for (size_t j = first_open; j < i; j++)
				if (shard_of[j] == SHARD_OPEN)
					shard_of[j] = next;
			next++;
			open = false;
		}
		if (!open) {
			open = true;
			cur = 0;
			first_open = i;
		}
		shard_of[i] = SHARD_OPEN;
		cur += nbytes[i];
	}
	if (open) {
		for (size_t j = first_open; j < n; j++)
			if (shard_of[j] == SHARD_OPEN)
				shard_of[j] = next;
		next++;
	}
	*n_shards = next;
}

void zf_st_shard_name(uint32_t k, uint32_t n_shards, char *buf, size_t size)
{
	if (n_shards <= 1)
		snprintf(buf, size, "model.safetensors");
	else
		snprintf(buf, size, "model-%05" PRIu32 "-of-%05" PRIu32
			 ".safetensors", k, n_shards);
}

/* ---- model.safetensors.index.json ------------------------------------ */

int zf_st_index_json(const char *const *names, const uint32_t *shard_of,
		     size_t n, uint32_t n_shards, uint64_t total_size,
		     char **out, size_t *out_len, struct zf_error *err)
{
	struct sbuf b = { .max = SIZE_MAX - 1 };
	struct order *ord = NULL;
	int rc = ZF_OK;

	*out = NULL;
	*out_len = 0;
	for (size_t i = 0; i < n; i++) {
		if (!names[i] || !zf_utf8_valid(names[i], strlen(names[i])))
			return zf_fail(err, ZF_EFORMAT,
				       "tensor name '%s' is not valid UTF-8",
				       names[i] ? names[i] : "(null)");
		if (shard_of[i] >= n_shards)
			return zf_fail(err, ZF_EUSAGE,
				       "tensor '%s': shard %" PRIu32
				       " of %" PRIu32,
				       names[i], shard_of[i], n_shards);
	}
	rc = new_order(n, &ord, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		ord[i].name = names[i];
		ord[i].rank = 0;
		ord[i].idx = i;
	}
	/* sort_keys: Python orders str by code point, which for valid
	 * UTF-8 is the byte order strcmp gives. */
	rc = sort_by_name_unique(ord, n, err);
	if (rc)
		goto out;

	sb_str(&b, "{\n  \"metadata\": {\n    \"total_size\": ");
	sb_u64(&b, total_size);
	sb_str(&b, "\n  },\n  \"weight_map\": {");
	for (size_t k = 0; k < n; k++) {
		char file[64];

		zf_st_shard_name(shard_of[ord[k].idx] + 1, n_shards, file,
				 sizeof(file));
		sb_str(&b, k ? ",\n    " : "\n    ");
		sb_json_ascii(&b, ord[k].name);
		sb_str(&b, ": ");
		sb_json_ascii(&b, file);
	}
	/* json.dumps writes an empty dict as {} even with indent. */
	sb_str(&b, n ? "\n  }\n}\n" : "}\n}\n");
	sb_add(&b, "", 1); /* NUL, not counted */
	if (b.oom || b.too_big) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory for the index");
		goto out;
	}
	*out = b.p;
	*out_len = b.len - 1;
	b.p = NULL;
out:
	free(b.p);
	free(ord);
	return rc;
}

/* ---- shard size ------------------------------------------------------ */

/* Python's str.isspace() for ASCII: int() strips these. */
static bool py_space(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/*
 * Python's int(s[0..len)) for ASCII text: surrounding whitespace, one
 * optional sign, decimal digits with single underscores between them
 * ("1_000"). Sets *neg and the magnitude *v; false when int() would raise
 * (or, *big set, when the magnitude does not fit in 64 bits).
 */
static bool py_int(const char *s, size_t len, bool *neg, uint64_t *v, bool *big)
{
	size_t i = 0, digits = 0;

	*neg = *big = false;
	*v = 0;
	while (len && py_space(s[len - 1]))
		len--;
	while (i < len && py_space(s[i]))
		i++;
	if (i < len && (s[i] == '+' || s[i] == '-'))
		*neg = s[i++] == '-';
	for (; i < len; i++) {
		if (s[i] == '_') {
			/* Only between two digits. */
			if (!digits || i + 1 >= len || s[i + 1] < '0' || s[i + 1] > '9')
				return false;
			continue;
		}
		if (s[i] < '0' || s[i] > '9')
			return false;
		digits++;
		if (zf_ckd_mul(v, *v, 10) || zf_ckd_add(v, *v, s[i] - '0'))
			*big = true;
	}
	return digits && !*big;
}

static bool ends_with_ci(const char *s, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	return len >= n && !strncasecmp(s + len - n, suffix, n);
}

int zf_parse_size(const char *s, uint64_t *bytes, struct zf_error *err)
{
	/* Binary units first: "5KiB" also ends in a case-blind "B". */
	static const struct {
		const char *unit;
		uint64_t mult;
		bool bits; /* a lowercase final 'b' counts bits */
	} units[] = {
		{ "GIB", (uint64_t)1 << 30, false }, { "MIB", (uint64_t)1 << 20, false },
		{ "KIB", (uint64_t)1 << 10, false }, { "GB", 1000000000, true },
		{ "MB", 1000000, true },	     { "KB", 1000, true },
	};
	size_t len = s ? strlen(s) : 0, num = len;
	uint64_t mult = 1, v;
	bool neg, big, bits = false;

	for (size_t u = 0; s && u < sizeof(units) / sizeof(units[0]); u++)
		if (ends_with_ci(s, len, units[u].unit)) {
			mult = units[u].mult;
			num = len - strlen(units[u].unit);
			bits = units[u].bits && s[len - 1] == 'b';
			break;
		}
	if (!s || !py_int(s, num, &neg, &v, &big)) {
		if (s && big)
			return zf_fail(err, ZF_EUSAGE, "'%s' is too large", s);
		return zf_fail(err, ZF_EUSAGE,
			       "'%s' is not a size: give bytes, or an integer with GiB, MiB, KiB, GB, MB or KB (a lowercase b counts bits: 5Gb is 625000000 bytes)",
			       s ? s : "");
	}
	if (neg || !v)
		return zf_fail(err, ZF_EUSAGE, "'%s': a shard size must be more than 0 bytes", s);
	if (zf_ckd_mul(&v, v, mult))
		return zf_fail(err, ZF_EUSAGE, "'%s' is too large", s);
	/* transformers: int_size // 8 (a floor, exact for positive sizes). */
	if (bits)
		v /= 8;
	if (!v)
		return zf_fail(err, ZF_EUSAGE, "'%s': a shard size must be more than 0 bytes", s);
	*bytes = v;
	return ZF_OK;
}
