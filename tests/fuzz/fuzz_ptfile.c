/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the torch.save zip reader: the input is a .pt file,
 * put in a memfd (opened by path: /proc/self/fd/N). Every
 * entry is described, every data/<key> looked up, a found record must lie
 * inside the file, and the CRCs are checked. tests/unit/test_fuzz_replay.c
 * includes this file with ZF_FUZZ_ENTRY renamed to replay inputs.
 */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "zerofs/ptfile.h"

#ifndef ZF_FUZZ_ENTRY
#define ZF_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int ZF_FUZZ_ENTRY(const uint8_t *data, size_t size);

int ZF_FUZZ_ENTRY(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct zf_ptfile *pf = NULL;
	struct zf_ptfile_entry ent;
	struct zf_record rec;
	struct zf_error err = { 0 };
	size_t i, plen;

	if (fd < 0 && (fd = memfd_create("fuzz.pt", 0)) >= 0)
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (fd < 0 || ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	if (zf_ptfile_open_path(path, 0, &pf, &err) != ZF_OK)
		return 0;
	if (!zf_ptfile_pickle(pf, &plen) || plen > zf_ptfile_size(pf))
		abort();
	for (i = 0; zf_ptfile_entry(pf, i, &ent) == ZF_OK; i++) {
		const char *key = strstr(ent.name, "/data/");

		if (strcmp(ent.name, zf_ptfile_entry_name(pf, i)))
			abort();
		if (key && zf_ptfile_record(pf, key + 6, &rec, &err) == ZF_OK &&
		    (rec.offset > zf_ptfile_size(pf) || rec.size > zf_ptfile_size(pf) - rec.offset))
			abort();
	}
	if (i != zf_ptfile_count(pf))
		abort();
	zf_ptfile_cross_check(pf, &err);
	zf_ptfile_check_crc(pf, &err);
	zf_ptfile_close(pf);
	return 0;
}
