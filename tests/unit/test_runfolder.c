/* SPDX-License-Identifier: MIT */
/*
 * Run folders (runfolder.h) from names alone, in scratch folders of empty
 * files: which folders hold a checkpoint, their order and served names,
 * and which one a resume would load by each rule, with the exact
 * messages of the cases that ask for --tag.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "zerofs/runfolder.h"

static char root[] = "/tmp/zf-test-runfolder.XXXXXX";

static void put(const char *rel, const char *text)
{
	char p[512];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		if (text && write(fd, text, strlen(text)) < 0)
			perror(p);
		close(fd);
	}
}

static void dir_(const char *rel)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	mkdir(p, 0755);
}

/* A folder holding a checkpoint by name: one rank file. */
static void ckpt(const char *rel)
{
	char p[512];

	dir_(rel);
	snprintf(p, sizeof(p), "%s/zero_pp_rank_0_mp_rank_00_optim_states.pt", rel);
	put(p, NULL);
}

static char *path(const char *rel)
{
	static char p[512];

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	return p;
}

/* Names of r's entries, comma separated. */
static const char *names(const struct zf_runfolder *r)
{
	static char buf[1024];
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < zf_runfolder_count(r); i++)
		used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s", i ? "," : "",
					 zf_runfolder_entry(r, i)->served);
	return buf;
}

/* The pick of folder rel: its served name, or "error: message". */
static const char *pick(const char *rel, enum zf_pick *how)
{
	static char out[2048];
	struct zf_error err = { 0 };
	struct zf_runfolder *r;
	size_t i;

	if (zf_runfolder_scan(path(rel), &r, &err)) {
		snprintf(out, sizeof(out), "scan error: %s", err.msg);
		return out;
	}
	if (zf_runfolder_pick(r, &i, how, &err))
		snprintf(out, sizeof(out), "error: %s", err.msg);
	else
		snprintf(out, sizeof(out), "%s", zf_runfolder_entry(r, i)->name);
	zf_runfolder_free(r);
	return out;
}

int main(void)
{
	struct zf_error err = { 0 };
	struct zf_runfolder *r = NULL;
	enum zf_pick how = ZF_PICK_GIVEN;
	const char *got;

	if (!mkdtemp(root))
		return 1;

	/* A Trainer output_dir: natural order, the highest N by number. */
	dir_("trainer");
	ckpt("trainer/checkpoint-9");
	ckpt("trainer/checkpoint-10");
	ckpt("trainer/checkpoint-200");
	dir_("trainer/runs");	 /* TensorBoard logs: no checkpoint */
	put("trainer/README.md", "x");
	tap_ok(!zf_runfolder_scan(path("trainer"), &r, &err) && zf_runfolder_count(r) == 3,
	       "a Trainer run: 3 folders hold a checkpoint");
	tap_ok(r && !strcmp(names(r), "checkpoint-9,checkpoint-10,checkpoint-200"),
	       "in natural order: %s", r ? names(r) : "");
	tap_ok(r && zf_runfolder_entry(r, 1)->step == 10 && zf_runfolder_find(r, "checkpoint-200") == 2 &&
		       zf_runfolder_find(r, "checkpoint-2") == SIZE_MAX,
	       "steps from the names; found by name");
	zf_runfolder_free(r);
	got = pick("trainer", &how);
	tap_ok(!strcmp(got, "checkpoint-200") && how == ZF_PICK_NEWEST_STEP,
	       "the highest checkpoint-N: %s (%s)", got, zf_pick_str(how));

	/* The newest one still being written: named, the previous offered. */
	dir_("trainer/checkpoint-300");
	got = pick("trainer", &how);
	tap_contains(got, "error: 'checkpoint-300', the newest checkpoint-N (the one the Trainer "
			  "resumes from), holds no DeepSpeed checkpoint (still being written, or saved "
			  "without DeepSpeed?); --tag checkpoint-200 serves the newest that does",
		     "an empty newest checkpoint-N is named, with the --tag to use: %s", got);
	rmdir(path("trainer/checkpoint-300"));

	/* Two folders of one step. */
	ckpt("trainer/checkpoint-0200");
	got = pick("trainer", &how);
	tap_ok(!strcmp(got, "error: 'checkpoint-0200' and 'checkpoint-200' both number step 200: "
			    "choose one with --tag"),
	       "two folders of one step ask for --tag: %s", got);

	/* A DeepSpeed save folder: latest first; without it, no choice. */
	dir_("ds");
	ckpt("ds/global_step5");
	ckpt("ds/global_step10");
	got = pick("ds", &how);
	tap_ok(!strcmp(got, "error: no 'latest' file and 2 folders that hold a checkpoint "
			    "('global_step5', 'global_step10'): choose one with --tag"),
	       "several tags without latest: --tag asked for: %s", got);
	put("ds/latest", "global_step5\n");
	got = pick("ds", &how);
	tap_ok(!strcmp(got, "global_step5") && how == ZF_PICK_LATEST, "latest names it: %s", got);
	put("ds/latest", "global_step7");
	got = pick("ds", &how);
	tap_contains(got, "names tag 'global_step7', but no folder beside it holds that checkpoint",
		     "latest naming no checkpoint folder: %s", got);

	/* An XTuner work_dir: last_checkpoint; iter_N.pth served as iter_N. */
	dir_("xt");
	ckpt("xt/iter_500.pth");
	ckpt("xt/iter_1000.pth");
	ckpt("xt/iter_1000");	 /* takes the short name: the .pth one keeps its own */
	put("xt/last_checkpoint", "/elsewhere/work_dirs/xt/iter_500.pth");
	got = pick("xt", &how);
	tap_ok(!strcmp(got, "iter_500.pth") && how == ZF_PICK_LAST_CHECKPOINT,
	       "last_checkpoint (an absolute path elsewhere) names it: %s", got);
	tap_ok(!zf_runfolder_scan(path("xt"), &r, &err) &&
		       !strcmp(names(r), "iter_500,iter_1000,iter_1000.pth"),
	       "served names: .pth dropped unless taken: %s", r ? names(r) : "");
	zf_runfolder_free(r);

	/* One folder: the only one. None: not a checkpoint. */
	dir_("one");
	ckpt("one/pytorch_model");
	got = pick("one", &how);
	tap_ok(!strcmp(got, "pytorch_model") && how == ZF_PICK_ONLY, "the only one: %s", got);
	dir_("none");
	got = pick("none", &how);
	tap_ok(!strcmp(got, "error: no 'latest' file and no tag folder with DeepSpeed rank files: "
			    "not a DeepSpeed checkpoint"),
	       "nothing to pick: %s", got);
	memset(&err, 0, sizeof(err));
	tap_ok(zf_runfolder_scan(path("nope"), &r, &err) == ZF_ENOTFOUND && !r,
	       "a missing folder: ZF_ENOTFOUND");
	tap_ok(!strcmp(zf_pick_str(ZF_PICK_NEWEST_STEP), "newest-step"), "zf_pick_str");

	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", root);
		if (system(cmd) != 0)
			perror("rm");
	}
	return tap_done();
}
