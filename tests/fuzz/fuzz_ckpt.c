/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for a whole checkpoint load: the input is unpacked into
 * a small checkpoint folder (reused across runs), which is opened, turned
 * into the virtual model directory, and every file of it read in chunks.
 *
 * Input format (tests/fuzz/make_seeds.py writes it):
 *   byte 0    bits 0-1 layout (names below), bits 2-3 served dtype,
 *             bits 4-5 shard size
 *   then up to 6 slots in order: latest, model 0, optim 0, model 1,
 *   optim 1, config.json; each is a u32le length and that many bytes
 *   (cut at the end of input); 0xffffffff or a missing slot: no file.
 * tests/unit/test_fuzz_replay.c includes this file with ZF_FUZZ_ENTRY
 * renamed to replay inputs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zerofs/ckpt.h"
#include "zerofs/hfdir.h"

#ifndef ZF_FUZZ_ENTRY
#define ZF_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int ZF_FUZZ_ENTRY(const uint8_t *data, size_t size);

#define CK_SLOTS 6
#define CK_M "_mp_rank_00_model_states.pt"
#define CK_O "_mp_rank_00_optim_states.pt"

/* Per layout, the file of each slot (NULL: none). */
static const char *const ck_names[4][CK_SLOTS] = {
	{ "latest", "global_step3/mp_rank_00_model_states.pt", "global_step3/zero_pp_rank_0" CK_O,
	  NULL, "global_step3/zero_pp_rank_1" CK_O, "config.json" },
	{ "latest", "global_step3/mp_rank_00_model_states.pt", "global_step3/bf16_zero_pp_rank_0" CK_O,
	  NULL, "global_step3/bf16_zero_pp_rank_1" CK_O, "config.json" },
	{ "latest", "global_step3/zero_pp_rank_0" CK_M, "global_step3/zero_pp_rank_0" CK_O,
	  "global_step3/zero_pp_rank_1" CK_M, "global_step3/zero_pp_rank_1" CK_O, "config.json" },
	{ "latest", "global_step3/zero_pp_rank_0" CK_M, "global_step3/bf16_zero_pp_rank_0" CK_O,
	  "global_step3/zero_pp_rank_1" CK_M, "global_step3/bf16_zero_pp_rank_1" CK_O, "config.json" },
};
static char ck_dir[256];

static void ck_unlink_all(void)
{
	char p[512];

	for (int l = 0; l < 4; l++)
		for (int s = 0; s < CK_SLOTS; s++)
			if (ck_names[l][s] && snprintf(p, sizeof(p), "%s/%s", ck_dir, ck_names[l][s]) > 0)
				unlink(p);
}

static void ck_cleanup(void)
{
	char p[512];

	ck_unlink_all();
	snprintf(p, sizeof(p), "%s/global_step3", ck_dir);
	rmdir(p);
	rmdir(ck_dir);
}

static void ck_write(const char *name, const uint8_t *d, size_t n)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", ck_dir, name);
	if (!(f = fopen(p, "wb")) || fwrite(d, 1, n, f) != n || fclose(f))
		abort();
}

/* Reads all of f in chunks; checks the zf_vfile_read() contract. */
static void ck_read_file(const struct zf_hfdir *d, const struct zf_vfile *f, uint64_t *budget)
{
	static unsigned char buf[65536];
	struct zf_error err = { 0 };
	uint64_t off = 0;
	int64_t n;

	if (f->size > 2 && zf_vfile_read(d, f, buf, 3, f->size / 2 - 1, &err) > 3)
		abort();
	while (off < f->size && *budget >= sizeof(buf)) {
		n = zf_vfile_read(d, f, buf, sizeof(buf), off, &err);
		if (n < 0)
			return;
		if (n > (int64_t)sizeof(buf) || (n < (int64_t)sizeof(buf) && off + (uint64_t)n != f->size))
			abort(); /* too long, or short before the end of the file */
		off += (uint64_t)n;
		*budget -= (uint64_t)n;
	}
	if (off >= f->size && zf_vfile_read(d, f, buf, 1, f->size, &err) != 0)
		abort();
}

int ZF_FUZZ_ENTRY(const uint8_t *data, size_t size)
{
	static const enum zf_dtype dtypes[4] = { ZF_DT_INVALID, ZF_DT_F32, ZF_DT_BF16, ZF_DT_F16 };
	static const uint64_t shards[4] = { 0, 1, 1000, 100000 };
	struct zf_hfdir_options o = { 0 };
	struct zf_ckpt *ck = NULL;
	struct zf_hfdir *d = NULL;
	struct zf_error err = { 0 };
	uint64_t budget = 64u << 20;
	char sub[300];
	size_t pos = 1;

	if (!ck_dir[0]) {
		const char *t = getenv("TMPDIR");

		snprintf(ck_dir, sizeof(ck_dir), "%s/zerofs-fuzz-ckpt.XXXXXX", t && *t ? t : "/tmp");
		snprintf(sub, sizeof(sub), "%s/global_step3", mkdtemp(ck_dir) ? ck_dir : "");
		if (mkdir(sub, 0700))
			abort();
		atexit(ck_cleanup);
	}
	if (size < 1)
		return 0;
	ck_unlink_all();
	for (int s = 0; s < CK_SLOTS && size - pos >= 4; s++) {
		uint32_t len = (uint32_t)data[pos] | (uint32_t)data[pos + 1] << 8 |
			       (uint32_t)data[pos + 2] << 16 | (uint32_t)data[pos + 3] << 24;

		pos += 4;
		if (len == UINT32_MAX)
			continue;
		if (len > size - pos)
			len = (uint32_t)(size - pos);
		if (ck_names[data[0] & 3][s])
			ck_write(ck_names[data[0] & 3][s], data + pos, len);
		pos += len;
	}
	o.dtype = dtypes[data[0] >> 2 & 3];
	o.max_shard_size = shards[data[0] >> 4 & 3];
	if (zf_ckpt_open(ck_dir, NULL, &ck, &err) == ZF_OK) {
		const struct zf_ckpt_info *ci = zf_ckpt_info(ck);

		if (zf_ckpt_check_files(ck, &err) == ZF_OK &&
		    zf_hfdir_build(ck, &o, &d, &err) == ZF_OK) {
			for (size_t i = 0; i < zf_hfdir_info(d)->n_files; i++) {
				const struct zf_vfile *f = zf_hfdir_file(d, i);

				if (zf_hfdir_lookup(d, f->name) != f)
					abort();
				ck_read_file(d, f, &budget);
			}
		}
		for (size_t i = 0; i < ci->n_tensors; i++)
			if (zf_ckpt_find(ck, zf_ckpt_tensor(ck, i)->name) > i)
				abort();
	}
	zf_hfdir_free(d);
	zf_ckpt_free(ck);
	return 0;
}
