/* SPDX-License-Identifier: MIT */
/*
 * Replays every committed fuzz input without libFuzzer: the reproducers in
 * tests/fuzz/crashes/<harness>/ and the seeds in tests/fuzz/seeds/<harness>/
 * run through the harness bodies, included here with their entry
 * point renamed. A fixed bug that comes back crashes this program (under
 * `make SANITIZE=address,undefined check`, also an out-of-bounds access).
 * Run from the repository root, as tests/run.sh does.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tap.h"

#define ZF_FUZZ_ENTRY replay_pickle
#include "../fuzz/fuzz_pickle.c"
#undef ZF_FUZZ_ENTRY
#define ZF_FUZZ_ENTRY replay_ptfile
#include "../fuzz/fuzz_ptfile.c"
#undef ZF_FUZZ_ENTRY
#define ZF_FUZZ_ENTRY replay_ptlegacy
#include "../fuzz/fuzz_ptlegacy.c"
#undef ZF_FUZZ_ENTRY
#define ZF_FUZZ_ENTRY replay_ckpt
#include "../fuzz/fuzz_ckpt.c"
#undef ZF_FUZZ_ENTRY
#define ZF_FUZZ_ENTRY replay_container
#include "../fuzz/fuzz_container.c"
#undef ZF_FUZZ_ENTRY

#define FUZZ_DIR "tests/fuzz"

static const struct {
	const char *name;
	int (*run)(const uint8_t *data, size_t size);
} harnesses[] = {
	{ "pickle", replay_pickle },
	{ "ptfile", replay_ptfile },
	{ "ptlegacy", replay_ptlegacy },
	{ "ckpt", replay_ckpt },
	{ "container", replay_container },
};

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
	    fread(buf, 1, (size_t)n, f) == (size_t)n) {
		*len = (size_t)n;
	} else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static int skip_dot(const struct dirent *de)
{
	return de->d_name[0] != '.';
}

/* Replays every file in FUZZ_DIR/kind/harness; returns how many. */
static int replay_dir(const char *kind, size_t h)
{
	char dir[256], path[512];
	struct dirent **ents;
	int n, done = 0;

	snprintf(dir, sizeof(dir), FUZZ_DIR "/%s/%s", kind, harnesses[h].name);
	n = scandir(dir, &ents, skip_dot, alphasort);
	if (n < 0)
		return 0;
	for (int i = 0; i < n; i++) {
		unsigned char *data;
		size_t len = 0;

		snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
		free(ents[i]);
		data = slurp(path, &len);
		tap_ok(data && harnesses[h].run(data, len) == 0, "replay %s/%s/%s (%zu bytes)",
		       kind, harnesses[h].name, path + strlen(dir) + 1, len);
		free(data);
		done++;
	}
	free(ents);
	return done;
}

int main(void)
{
	struct stat st;
	int seeds = 0;

	if (stat(FUZZ_DIR "/seeds", &st) || !S_ISDIR(st.st_mode)) {
		tap_ok(0, "find " FUZZ_DIR "/seeds (run from the repository root)");
		return tap_done();
	}
	for (size_t h = 0; h < sizeof(harnesses) / sizeof(harnesses[0]); h++) {
		replay_dir("crashes", h);
		seeds += replay_dir("seeds", h);
	}
	tap_ok(seeds > 0, "replayed %d seeds", seeds);
	return tap_done();
}
