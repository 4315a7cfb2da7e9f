/* SPDX-License-Identifier: MIT */
/*
 * The container ops of torch's legacy format, over the legacy reader
 * (ptlegacy.c): open reads the small pickles, finds the main pickle's end
 * and reads the key list; bind walks the records with the parse's element
 * counts. The format has no CRCs and no directory: the digest samples the
 * records' bytes instead, and nothing short of a parse shows two files
 * hold the same pickle.
 */
#include "container_i.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Bytes of each end of a record the digest reads. */
#define DIGEST_SAMPLE 64
/* Bytes read at once by check_records. */
#define READ_CHUNK ((size_t)1 << 20)

static int legacy_open(struct zf_container *c, struct zf_error *err)
{
	int rc = zf_ptlegacy_open(c->src, &c->u.legacy, err);

	if (rc)
		return rc;
	zf_ptlegacy_pickle(c->u.legacy, &c->pkl_off, &c->pkl_len);
	return ZF_OK;
}

static int legacy_load_pickle(struct zf_container *c, const unsigned char **data,
			      size_t *len, struct zf_error *err)
{
	int rc = zf_ptlegacy_read_pickle(c->u.legacy, &c->pkl_buf, len, err);

	*data = c->pkl_buf;
	return rc;
}

static void legacy_drop_pickle(struct zf_container *c)
{
	free(c->pkl_buf);
	c->pkl_buf = NULL;
}

static bool legacy_pickle_id(const struct zf_container *c, uint64_t id[2])
{
	(void)c;
	(void)id;
	return false;
}

/* zf_ptlegacy_bind() walks the records; it knows every storage class
 * torch writes, so no storage goes unchecked. */
static int legacy_bind(struct zf_container *c, const struct zf_pickle *pk,
		       struct zf_error *err)
{
	return zf_ptlegacy_bind(c->u.legacy, pk, err);
}

static int legacy_record(const struct zf_container *c, const char *key,
			 struct zf_record *rec, struct zf_error *err)
{
	struct zf_ptlegacy_record r;
	int rc = zf_ptlegacy_record(c->u.legacy, key, &r, err);

	if (rc)
		return rc;
	rec->offset = r.offset;
	rec->size = r.size;
	rec->crc32 = 0;
	return ZF_OK;
}

/* Every key and size, and up to DIGEST_SAMPLE bytes at each end of every
 * record: a copy of a file agrees on all of them; two ranks' files, whose
 * records hold different partitions and moments, do not, even where two
 * processes happened to give their storages the same keys (addresses). */
static int legacy_digest(const struct zf_container *c, uint64_t digest[2],
			 struct zf_error *err)
{
	const struct zf_ptlegacy *lf = c->u.legacy;
	struct zf_ptlegacy_record r;
	unsigned char b[2 * DIGEST_SAMPLE];
	XXH3_state_t *st;
	XXH128_hash_t h;
	int rc = ZF_OK;

	if (!c->bound)
		return zf_fail(err, ZF_EUSAGE, "records digested before bind");
	st = XXH3_createState();
	if (!st)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	XXH3_128bits_reset(st);
	for (size_t i = 0; !rc && zf_ptlegacy_record_at(lf, i, &r) == ZF_OK; i++) {
		size_t head = r.size < DIGEST_SAMPLE ? (size_t)r.size : DIGEST_SAMPLE;
		size_t tail = r.size - head < DIGEST_SAMPLE ? (size_t)(r.size - head) :
							       DIGEST_SAMPLE;

		XXH3_128bits_update(st, r.key, strlen(r.key) + 1);
		XXH3_128bits_update(st, &r.size, sizeof(r.size));
		if (head)
			rc = zf_source_pread(c->src, b, head, r.offset, err);
		if (!rc && tail)
			rc = zf_source_pread(c->src, b + head, tail,
					     r.offset + r.size - tail, err);
		if (!rc)
			XXH3_128bits_update(st, b, head + tail);
	}
	h = XXH3_128bits_digest(st);
	XXH3_freeState(st);
	digest[0] = h.high64;
	digest[1] = h.low64;
	return rc;
}

/* Nothing short of reading the main pickle shows it is another file's. */
static int legacy_same_head(const struct zf_container *tmpl,
			    struct zf_source *src, bool *same,
			    struct zf_error *err)
{
	(void)tmpl;
	(void)src;
	(void)err;
	*same = false;
	return ZF_OK;
}

/* The walk at bind was the second reading: there is no other reader. */
static int legacy_cross_check(const struct zf_container *c, struct zf_error *err)
{
	if (!c->bound)
		return zf_fail(err, ZF_EUSAGE, "records checked before bind");
	return ZF_OK;
}

/* Every byte of every record, read; there is nothing to check it with. */
static int legacy_check_records(const struct zf_container *c,
				struct zf_error *err)
{
	struct zf_ptlegacy_record r;
	unsigned char *buf;
	int rc = ZF_OK;

	if (!c->bound)
		return zf_fail(err, ZF_EUSAGE, "records checked before bind");
	buf = malloc(READ_CHUNK);
	if (!buf)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	for (size_t i = 0; !rc && zf_ptlegacy_record_at(c->u.legacy, i, &r) == ZF_OK; i++) {
		for (uint64_t done = 0; !rc && done < r.size;) {
			size_t n = r.size - done < READ_CHUNK ? (size_t)(r.size - done) :
								READ_CHUNK;

			rc = zf_source_pread(c->src, buf, n, r.offset + done, err);
			done += n;
		}
	}
	free(buf);
	return rc;
}

static void legacy_close(struct zf_container *c)
{
	zf_ptlegacy_close(c->u.legacy);
}

const struct zf_container_ops zf_container_legacy_ops = {
	.kind = ZF_CONTAINER_LEGACY,
	.open = legacy_open,
	.load_pickle = legacy_load_pickle,
	.drop_pickle = legacy_drop_pickle,
	.pickle_id = legacy_pickle_id,
	.bind = legacy_bind,
	.record = legacy_record,
	.digest = legacy_digest,
	.same_head = legacy_same_head,
	.cross_check = legacy_cross_check,
	.check_records = legacy_check_records,
	.close = legacy_close,
};
