/* SPDX-License-Identifier: MIT */
/*
 * The container ops of torch's zip format, over the zip reader
 * (ptfile.c): the directory is read at open, data.pkl when parsed, and a
 * storage record's local header when its place is asked for. Binding
 * checks sizes from the directory alone.
 */
#include "container_i.h"

#include <string.h>
#include <xxhash.h>

#include "ckd.h"

static int zip_open(struct zf_container *c, struct zf_error *err)
{
	struct zf_record pkl;
	int rc = zf_ptfile_open(c->src, ZF_PTFILE_LAZY_PICKLE, &c->u.zip, err);

	if (rc)
		return rc;
	zf_ptfile_pickle_record(c->u.zip, &pkl);
	c->pkl_off = pkl.offset;
	c->pkl_len = pkl.size;
	return ZF_OK;
}

static int zip_load_pickle(struct zf_container *c, const unsigned char **data,
			   size_t *len, struct zf_error *err)
{
	int rc = zf_ptfile_load_pickle(c->u.zip, err);

	if (rc)
		return rc;
	*data = zf_ptfile_pickle(c->u.zip, len);
	return ZF_OK;
}

static void zip_drop_pickle(struct zf_container *c)
{
	zf_ptfile_drop_pickle(c->u.zip);
}

static bool zip_pickle_id(const struct zf_container *c, uint64_t id[2])
{
	struct zf_record pkl;

	zf_ptfile_pickle_record(c->u.zip, &pkl);
	id[0] = pkl.size;
	id[1] = pkl.crc32;
	return true;
}

/* Every storage has a record of its size. Records are not located (their
 * local headers are read when served): the directory's sizes suffice. */
static int zip_bind(struct zf_container *c, const struct zf_pickle *pk,
		    struct zf_error *err)
{
	size_t n;
	const struct zf_pv *const *storages = zf_pickle_storages(pk, &n);

	for (size_t i = 0; i < n; i++) {
		const struct zf_pv_storage *st = &storages[i]->u.storage;
		size_t elem = zf_container_element_size(st);
		uint64_t size, want;
		int rc = zf_ptfile_record_size(c->u.zip, st->key, &size, err);

		if (rc)
			return rc;
		/* An unknown class is refused where a tensor of it is served;
		 * a file may hold one zerofs never reads. */
		if (!elem)
			continue;
		if (zf_ckd_mul(&want, st->numel, elem) ||
		    want != size)
			return zf_fail(err, ZF_EFORMAT,
				       "storage '%s' claims %lld elements of %zu bytes, but its record holds %llu bytes",
				       st->key, (long long)st->numel, elem,
				       (unsigned long long)size);
	}
	return ZF_OK;
}

static int zip_record(const struct zf_container *c, const char *key,
		      struct zf_record *rec, struct zf_error *err)
{
	return zf_ptfile_record(c->u.zip, key, rec, err);
}

/* Every entry's full name, size and CRC-32. torch.save() names the
 * records after the file (the archive prefix is the file name's stem),
 * and each rank's file holds its own data, so two ranks' files never
 * agree on all of them; a copy of one under another rank's name does. */
static int zip_digest(const struct zf_container *c, uint64_t digest[2],
		      struct zf_error *err)
{
	XXH3_state_t *st = XXH3_createState();
	struct zf_ptfile_entry ent;
	XXH128_hash_t h;

	if (!st)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	XXH3_128bits_reset(st);
	for (size_t i = 0; zf_ptfile_entry(c->u.zip, i, &ent) == ZF_OK; i++) {
		uint64_t v[2] = { ent.size, ent.crc32 };

		XXH3_128bits_update(st, ent.name, strlen(ent.name) + 1);
		XXH3_128bits_update(st, v, sizeof(v));
	}
	h = XXH3_128bits_digest(st);
	XXH3_freeState(st);
	digest[0] = h.high64;
	digest[1] = h.low64;
	return ZF_OK;
}

static int zip_same_head(const struct zf_container *tmpl, struct zf_source *src,
			 bool *same, struct zf_error *err)
{
	return zf_ptfile_same_head(tmpl->u.zip, src, same, err);
}

static int zip_cross_check(const struct zf_container *c, struct zf_error *err)
{
	return zf_ptfile_cross_check(c->u.zip, err);
}

static int zip_check_records(const struct zf_container *c, struct zf_error *err)
{
	return zf_ptfile_check_crc(c->u.zip, err);
}

static void zip_close(struct zf_container *c)
{
	zf_ptfile_close(c->u.zip);
}

const struct zf_container_ops zf_container_zip_ops = {
	.kind = ZF_CONTAINER_ZIP,
	.open = zip_open,
	.load_pickle = zip_load_pickle,
	.drop_pickle = zip_drop_pickle,
	.pickle_id = zip_pickle_id,
	.bind = zip_bind,
	.record = zip_record,
	.digest = zip_digest,
	.same_head = zip_same_head,
	.cross_check = zip_cross_check,
	.check_records = zip_check_records,
	.close = zip_close,
};
