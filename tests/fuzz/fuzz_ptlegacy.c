/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the reader of torch's legacy format: the input is
 * a .pt file, put in a memfd opened as a source (/proc/self/fd/N). It is
 * opened, its main pickle parsed and bound; every record must then lie
 * inside the file, the records must tile the data after the key list, and
 * each key must find its own record. tests/unit/test_fuzz_replay.c
 * includes this file with ZF_FUZZ_ENTRY renamed to replay inputs.
 */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "zerofs/ptlegacy.h"

#ifndef ZF_FUZZ_ENTRY
#define ZF_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int ZF_FUZZ_ENTRY(const uint8_t *data, size_t size);

/* Aborts unless every record lies in the file, one after the other. */
static void ptlegacy_check(const struct zf_ptlegacy *lf, uint64_t size)
{
	struct zf_ptlegacy_record rec, by_key;
	struct zf_error err = { 0 };
	uint64_t end = 0;

	for (size_t i = 0; i < zf_ptlegacy_count(lf); i++) {
		if (zf_ptlegacy_record_at(lf, i, &rec) ||
		    rec.offset > size || rec.size > size - rec.offset ||
		    (i && rec.offset != end + 8) ||
		    zf_ptlegacy_record(lf, rec.key, &by_key, &err) ||
		    by_key.offset != rec.offset ||
		    strcmp(rec.key, zf_ptlegacy_key(lf, i)))
			abort();
		end = rec.offset + rec.size;
	}
	if (zf_ptlegacy_count(lf) && end != size)
		abort();
}

int ZF_FUZZ_ENTRY(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct zf_source *src = NULL;
	struct zf_ptlegacy *lf = NULL;
	struct zf_pickle *pk = NULL;
	struct zf_error err = { 0 };
	unsigned char *pkl = NULL;
	uint64_t off, len;
	size_t n = 0;

	if (fd < 0 && (fd = memfd_create("fuzz-legacy.pt", 0)) >= 0)
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (fd < 0 || ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	if (zf_source_open(path, &src, &err) != ZF_OK)
		abort();
	if (zf_ptlegacy_open(src, &lf, &err) == ZF_OK) {
		zf_ptlegacy_pickle(lf, &off, &len);
		if (off > size || len > size - off)
			abort();
		if (zf_ptlegacy_read_pickle(lf, &pkl, &n, &err) == ZF_OK &&
		    zf_pickle_load(pkl, n, NULL, &pk, &err) == ZF_OK &&
		    zf_ptlegacy_bind(lf, pk, &err) == ZF_OK)
			ptlegacy_check(lf, size);
	}
	free(pkl);
	zf_pickle_free(pk);
	zf_ptlegacy_close(lf);
	zf_source_close(src);
	return 0;
}
