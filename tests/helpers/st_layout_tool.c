/* SPDX-License-Identifier: MIT */
/*
 * Drives core/safetensors.c for tests/t120-safetensors-reference.py.
 * Reads one JSON case per line on stdin:
 *   {"metadata": "pt" | null, "limit": "DECIMAL" | null,
 *    "tensors": [{"name_hex": "HEX OF UTF-8 BYTES", "dtype": "F32",
 *                 "shape": "2,3"}, ...]}
 * Names travel as hex so that any bytes (invalid UTF-8 included) get
 * through; shape and limit as decimal strings so that u64 values do.
 * Prints, per case:
 *   without a limit: "layout HEX FILE_SIZE OFF..." (offsets in input order)
 *   with a limit:    "plan N SHARD..." then, per shard, "shard NAME HEX
 *                    FILE_SIZE OFF..." (its tensors in input order), then
 *                    "index HEX" when N > 1
 *   on a refusal:    "error STATUS" in place of the line that failed
 *   and "end".
 */
#include "zerofs/safetensors.h"

#include <cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_hex(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
}

static enum zf_dtype dtype_of(const char *s)
{
	for (int d = 1; d < ZF_DT_COUNT; d++)
		if (!strcmp(zf_dtype_st_name((enum zf_dtype)d), s))
			return (enum zf_dtype)d;
	return ZF_DT_INVALID;
}

struct tensor_in {
	char *name;
	uint64_t shape[8];
};

static int from_hex(const char *h, char **out)
{
	size_t n = strlen(h) / 2;
	char *s = malloc(n + 1);

	if (!s)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(h + 2 * i, "%2x", &v) != 1) {
			free(s);
			return -1;
		}
		s[i] = (char)v;
	}
	s[n] = '\0';
	*out = s;
	return 0;
}

/* Lays out the tensors whose index is in sel[0..m) as one file. */
static void layout(const struct zf_st_tensor *all, const size_t *sel,
		   size_t m, const char *fmt, const char *tag)
{
	struct zf_st_tensor *t = calloc(m ? m : 1, sizeof(*t));
	uint64_t *off = calloc(m ? m : 1, sizeof(*off)), fs = 0;
	unsigned char *h = NULL;
	size_t hl = 0;
	struct zf_error err = { 0 };

	if (!t || !off)
		exit(2);
	for (size_t i = 0; i < m; i++)
		t[i] = all[sel[i]];
	if (zf_st_layout(t, m, fmt, &h, &hl, off, &fs, &err)) {
		printf("error %s\n", zf_status_str(err.status));
	} else {
		printf("%s ", tag);
		put_hex(h, hl);
		printf(" %" PRIu64, fs);
		for (size_t i = 0; i < m; i++)
			printf(" %" PRIu64, off[i]);
		printf("\n");
	}
	free(h);
	free(t);
	free(off);
}

static int run_case(const cJSON *c)
{
	const cJSON *md = cJSON_GetObjectItemCaseSensitive(c, "metadata");
	const cJSON *lim = cJSON_GetObjectItemCaseSensitive(c, "limit");
	const cJSON *ts = cJSON_GetObjectItemCaseSensitive(c, "tensors");
	const char *fmt = cJSON_IsString(md) ? md->valuestring : NULL;
	size_t n = (size_t)cJSON_GetArraySize(ts);
	struct tensor_in *in = calloc(n ? n : 1, sizeof(*in));
	struct zf_st_tensor *t = calloc(n ? n : 1, sizeof(*t));
	size_t *sel = calloc(n ? n : 1, sizeof(*sel));
	size_t i = 0;
	const cJSON *e;

	if (!in || !t || !sel || !cJSON_IsArray(ts))
		return -1;
	cJSON_ArrayForEach(e, ts) {
		const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e,
								   "name_hex");
		const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
		const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
		const char *p;
		uint64_t nb;

		if (!cJSON_IsString(nm) || !cJSON_IsString(dt) ||
		    !cJSON_IsString(sh) || from_hex(nm->valuestring,
						    &in[i].name))
			return -1;
		t[i].name = in[i].name;
		t[i].dtype = dtype_of(dt->valuestring);
		t[i].shape = in[i].shape;
		nb = zf_dtype_size(t[i].dtype);
		for (p = sh->valuestring; *p && t[i].ndim < 8;) {
			char *end;
			uint64_t d = strtoull(p, &end, 10);

			if (end == p)
				return -1;
			in[i].shape[t[i].ndim++] = d;
			nb *= d;
			p = *end == ',' ? end + 1 : end;
		}
		t[i].nbytes = nb;
		sel[i] = i;
		i++;
	}

	if (!cJSON_IsString(lim)) {
		layout(t, sel, n, fmt, "layout");
	} else {
		uint64_t limit = strtoull(lim->valuestring, NULL, 10);
		uint64_t *nbytes = calloc(n ? n : 1, sizeof(*nbytes));
		uint32_t *shard_of = calloc(n ? n : 1, sizeof(*shard_of));
		const char **names = calloc(n ? n : 1, sizeof(*names));
		uint32_t ns = 0;
		uint64_t total = 0;

		if (!nbytes || !shard_of || !names)
			return -1;
		for (i = 0; i < n; i++) {
			nbytes[i] = t[i].nbytes;
			names[i] = t[i].name;
			total += t[i].nbytes;
		}
		zf_st_plan_shards(nbytes, n, limit, shard_of, &ns);
		printf("plan %" PRIu32, ns);
		for (i = 0; i < n; i++)
			printf(" %" PRIu32, shard_of[i]);
		printf("\n");
		for (uint32_t k = 0; k < ns; k++) {
			char tag[80] = "shard ";
			size_t m = 0;

			zf_st_shard_name(k + 1, ns, tag + 6, sizeof(tag) - 6);
			for (i = 0; i < n; i++)
				if (shard_of[i] == k)
					sel[m++] = i;
			layout(t, sel, m, fmt, tag);
		}
		if (ns > 1) {
			char *json = NULL;
			size_t jl = 0;
			struct zf_error err = { 0 };

			if (zf_st_index_json(names, shard_of, n, ns, total,
					     &json, &jl, &err)) {
				printf("error %s\n", zf_status_str(err.status));
			} else {
				printf("index ");
				put_hex((const unsigned char *)json, jl);
				printf("\n");
			}
			free(json);
		}
		free(nbytes);
		free(shard_of);
		free(names);
	}
	printf("end\n");
	for (i = 0; i < n; i++)
		free(in[i].name);
	free(in);
	free(t);
	free(sel);
	return 0;
}

int main(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;

	while ((len = getline(&line, &cap, stdin)) > 0) {
		cJSON *c = cJSON_Parse(line);

		if (!c || run_case(c)) {
			fprintf(stderr, "st_layout_tool: bad case: %s", line);
			rc = 2;
		}
		cJSON_Delete(c);
		fflush(stdout);
	}
	free(line);
	return rc;
}
