/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the container interface (include/zerofs/
 * container.h): the input is a .pt file in either of torch's formats, put
 * in a memfd opened as a source (/proc/self/fd/N). It is opened as the
 * checkpoint loader opens rank files (the format sniffed), parsed and
 * bound; then every storage of the pickle must have a record inside the
 * file, of numel times its element size, and the digest and verify's two
 * passes must run. tests/unit/test_fuzz_replay.c includes this file with
 * ZF_FUZZ_ENTRY renamed to replay inputs.
 */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "zerofs/container.h"
#include "zerofs/ptlegacy.h"

#ifndef ZF_FUZZ_ENTRY
#define ZF_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int ZF_FUZZ_ENTRY(const uint8_t *data, size_t size);

/* Aborts unless every storage found lies in the file with its size. */
static void container_check(const struct zf_container *c,
			    const struct zf_pickle *pk, uint64_t size)
{
	size_t n;
	const struct zf_pv *const *st = zf_pickle_storages(pk, &n);
	struct zf_error err = { 0 };
	uint64_t digest[2];

	for (size_t i = 0; i < n; i++) {
		const struct zf_pv_storage *s = &st[i]->u.storage;
		size_t elem = zf_ptlegacy_element_size(s->class_name);
		struct zf_record rec;

		if (zf_container_record(c, s->key, &rec, &err) != ZF_OK)
			continue; /* a zip record may be compressed: refused, fine */
		if (rec.offset > size || rec.size > size - rec.offset ||
		    (elem && rec.size != (uint64_t)s->numel * elem))
			abort();
	}
	zf_container_digest(c, digest, &err);
	zf_container_cross_check(c, &err);
	zf_container_check_records(c, &err);
}

int ZF_FUZZ_ENTRY(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct zf_source *src = NULL;
	struct zf_container *c = NULL;
	struct zf_pickle *pk = NULL;
	struct zf_error err = { 0 };
	uint64_t off, len;

	if (fd < 0 && (fd = memfd_create("fuzz-container.pt", 0)) >= 0)
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (fd < 0 || ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	if (zf_source_open(path, &src, &err) != ZF_OK)
		abort();
	if (zf_container_open(src, &c, &err) == ZF_OK) {
		zf_container_pickle(c, &off, &len);
		if (off > size || len > size - off)
			abort();
		if (zf_container_parse(c, &pk, &err) == ZF_OK &&
		    zf_container_bind(c, pk, &err) == ZF_OK)
			container_check(c, pk, size);
	}
	zf_pickle_free(pk);
	zf_container_close(c);
	zf_source_close(src);
	return 0;
}
