/* SPDX-License-Identifier: MIT */
/**
 * @file verify.h
 * Is a checkpoint sound? Checks of an opened checkpoint and its built
 * directory, from cheap (metadata only) to deep (every byte read), with
 * every finding reported rather than stopping at the first, plus an
 * XXH3-128 digest of every served tensor and every virtual file so that
 * two copies can be compared without moving either.
 *
 * Opening the checkpoint (zf_ckpt_open) and building the directory
 * (zf_hfdir_build) are the first checks, done by the caller: they prove
 * every rank file present, one save, sizes and counts consistent. Then:
 *
 *   always:   "sources"  every source file is non-empty
 *             "zip"      libzip reads every zip's directory as zerofs
 *                        does (a file in torch's legacy format, which has
 *                        no directory, is parsed and walked again)
 *             "extents"  every extent lies inside its file and the extents
 *                        of each tensor add up to its shape
 *             "overlap"  no two tensors share a byte of one file (tied
 *                        aliases excluded): an overlap is a corrupt layout
 *   o->data:  "read"     every served byte can be read
 *             "values"   no NaN or Inf in a served floating tensor (in the
 *                        served dtype, so an fp32 value that overflows
 *                        fp16 is reported too)
 *             digests of each tensor's served bytes and of each file
 *   o->crc:   "crc"      the CRC-32 of every zip record of every source
 *                        file, and the served records read back the same
 *                        through libzip (zf_ckpt_check_crc); a file in
 *                        torch's legacy format has no CRCs: its records
 *                        are read, and the finding says none was checked
 */
#ifndef ZEROFS_VERIFY_H
#define ZEROFS_VERIFY_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zerofs/error.h"
#include "zerofs/export.h"
#include "zerofs/hfdir.h"

/* Default worker threads: each takes a whole file at a time. */
#define ZF_VERIFY_THREADS 2

/* At most this many findings are listed per check; the rest are counted. */
#define ZF_VERIFY_MAX_LISTED 20

struct zf_verify_options {
	bool data;		 /* read every served byte: digests, NaN/Inf */
	bool crc;		 /* check every source file's zip CRCs */
	unsigned threads;	 /* 0: ZF_VERIFY_THREADS; at most
				  * ZF_EXPORT_MAX_THREADS */
	zf_progress_fn progress; /* NULL: none; bytes read of all to read */
	void *progress_arg;
	const volatile sig_atomic_t *stop; /* as in zf_export_options */
};

/* One line of the report: a check passed, or one problem it found. */
struct zf_verify_finding {
	const char *check; /* static: "sources", "extents", "crc", ... */
	bool ok;
	char *where;	   /* the file concerned ("" for none), owned */
	char *msg;	   /* what passed or what is wrong, owned */
};

/* XXH3-128 in canonical (big-endian) byte order, as xxhsum -H2 prints. */
struct zf_digest {
	unsigned char b[16];
};

struct zf_verify_tensor {
	const struct zf_vtensor *vt; /* borrowed from the hfdir */
	const struct zf_vfile *file; /* the shard holding it */
	struct zf_digest digest;     /* of its served bytes */
	uint64_t n_nan, n_inf;	     /* elements, in the served dtype */
	bool read;		     /* false: a read failed, digest invalid */
};

struct zf_verify_file {
	const struct zf_vfile *f; /* borrowed from the hfdir */
	struct zf_digest digest;  /* of all its bytes */
	bool read;		  /* false: a read failed, digest invalid */
};

struct zf_verify_report {
	struct zf_verify_finding *findings; /* in check order */
	size_t n_findings;
	size_t n_problems;		    /* findings with !ok, plus those
					     * counted but not listed */
	/* With o->data: every file of the directory (its order), and every
	 * served tensor sorted by served name (so digests line up whatever
	 * the sharding); otherwise NULL and 0. */
	struct zf_verify_file *files;
	size_t n_files;
	struct zf_verify_tensor *tensors;
	size_t n_tensors;
	bool interrupted;		    /* o->stop ended it early */
	/* Why the checkpoint cannot be judged as a whole model (it lacks
	 * tensors the model has: zf_ckpt_info()->incomplete, borrowed from
	 * the checkpoint), or NULL. What is there is still checked. */
	const char *cannot_judge;
};

/*
 * Runs the checks on d (and d->ck). A problem found is not a failure: it
 * is a finding with ok == false, and the result is sound exactly when
 * (*out)->n_problems == 0, cannot_judge is NULL and it was not
 * interrupted (a partial checkpoint's directory is built with
 * zf_hfdir_options.allow_incomplete). Returns ZF_ENOMEM
 * (or ZF_EUSAGE for bad options) only when the checks could not be run;
 * *out is then NULL. Free the report with zf_verify_free() before d.
 */
int zf_verify(const struct zf_hfdir *d, const struct zf_verify_options *o,
	      struct zf_verify_report **out, struct zf_error *err);

void zf_verify_free(struct zf_verify_report *r);

/* Writes the 32 lowercase hex digits of dg and a NUL into hex. */
void zf_digest_hex(const struct zf_digest *dg, char hex[33]);

#endif /* ZEROFS_VERIFY_H */
