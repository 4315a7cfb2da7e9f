/* SPDX-License-Identifier: MIT */
/*
 * A second opinion on a torch.save() zip that ptfile.c has read: libzip,
 * an independent reader, opens the same bytes and must see the same
 * entries (names, sizes, CRCs, methods), and reads every stored record
 * back, checking its CRC-32 at the end (ZIP_ER_CRC); the records zerofs
 * serves are compared byte for byte with what it reads at its own
 * offsets. verify runs these; mounts never do (they read every byte).
 *
 * libzip has no public call for an entry's data offset (1.7), which is why
 * ptfile.c reads the directory itself; here libzip reads through a source
 * of our own over the struct zf_source, never through the path.
 */
#include "ptfile_i.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "zerofs/source.h"

/* Bytes read from libzip per step of the CRC check. */
#define CRC_CHUNK ((size_t)1 << 20)

/*
 * A read-only libzip source over pf's zf_source. Every read goes through
 * it, so libzip sees exactly the file that was validated (a read of a
 * changed file fails), shares no file position with anyone, and owns
 * nothing.
 */
struct zsrc {
	const struct zf_ptfile *pf;
	uint64_t pos;
	zip_error_t error;
	/* The central directory and end records, read once: libzip reads
	 * them one small piece per entry, a syscall each (270,000 for a
	 * 64-rank checkpoint) without this. */
	unsigned char *tail;
	uint64_t tail_off; /* file offset of tail[0]; tail runs to EOF */
};

static zip_int64_t zsrc_cb(void *ud, void *data, zip_uint64_t len,
			   zip_source_cmd_t cmd)
{
	struct zsrc *z = ud;

	switch (cmd) {
	case ZIP_SOURCE_OPEN:
		z->pos = 0;
		return 0;
	case ZIP_SOURCE_READ: {
		uint64_t n;

		if (z->pos >= z->pf->size)
			return 0;
		n = z->pf->size - z->pos;
		if (n > len)
			n = len;
		if (n > INT64_MAX)
			n = INT64_MAX;
		if (z->tail && z->pos >= z->tail_off)
			memcpy(data, z->tail + (z->pos - z->tail_off), (size_t)n);
		else if (zf_source_pread(z->pf->src, data, (size_t)n, z->pos, NULL)) {
			zip_error_set(&z->error, ZIP_ER_READ, 0);
			return -1;
		}
		z->pos += n;
		return (zip_int64_t)n;
	}
	case ZIP_SOURCE_CLOSE:
		return 0;
	case ZIP_SOURCE_FREE:
		/* libzip frees the source with the archive (or on a failed
		 * open): the cached tail goes with it. */
		free(z->tail);
		z->tail = NULL;
		return 0;
	case ZIP_SOURCE_STAT: {
		zip_stat_t *st = data;

		if (len < sizeof(*st)) {
			zip_error_set(&z->error, ZIP_ER_INVAL, 0);
			return -1;
		}
		zip_stat_init(st);
		st->size = z->pf->size;
		st->comp_size = z->pf->size;
		st->comp_method = ZIP_CM_STORE;
		st->encryption_method = ZIP_EM_NONE;
		st->valid = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE |
			    ZIP_STAT_COMP_METHOD | ZIP_STAT_ENCRYPTION_METHOD;
		return sizeof(*st);
	}
	case ZIP_SOURCE_ERROR:
		return zip_error_to_data(&z->error, data, len);
	case ZIP_SOURCE_SEEK: {
		zip_int64_t pos = zip_source_seek_compute_offset(
			z->pos, z->pf->size, data, len, &z->error);

		if (pos < 0)
			return -1;
		z->pos = (uint64_t)pos;
		return 0;
	}
	case ZIP_SOURCE_TELL:
		return (zip_int64_t)z->pos;
	case ZIP_SOURCE_SUPPORTS:
		return ZIP_SOURCE_SUPPORTS_SEEKABLE;
	default:
		zip_error_set(&z->error, ZIP_ER_OPNOTSUPP, 0);
		return -1;
	}
}

/* Opens pf through libzip; z must outlive the returned archive. */
static int lz_open(const struct zf_ptfile *pf, struct zsrc *z, zip_t **out,
		   struct zf_error *err)
{
	zip_source_t *src;
	zip_error_t zerr;
	zip_t *za;
	int rc;

	z->pf = pf;
	z->pos = 0;
	z->tail = NULL;
	z->tail_off = pf->cd_offset;
	/* Bounded by the directory cap checked at open; without it (a
	 * failed allocation) reads simply go to the file. */
	if (pf->size - pf->cd_offset <= ZF_PTFILE_MAX_CDIR + (1u << 20)) {
		z->tail = malloc((size_t)(pf->size - pf->cd_offset) + 1);
		if (z->tail && zf_source_pread(pf->src, z->tail, (size_t)(pf->size - pf->cd_offset),
					     pf->cd_offset, NULL)) {
			free(z->tail);
			z->tail = NULL;
		}
	}
	zip_error_init(&z->error);
	zip_error_init(&zerr);
	src = zip_source_function_create(zsrc_cb, z, &zerr);
	if (!src) {
		free(z->tail);
		z->tail = NULL;
		rc = zf_fail(err, ZF_ENOMEM, "libzip: %s",
			     zip_error_strerror(&zerr));
		zip_error_fini(&zerr);
		return rc;
	}
	za = zip_open_from_source(src, ZIP_RDONLY, &zerr);
	if (!za) {
		zip_source_free(src);
		rc = zf_fail(err, ZF_EFORMAT, "libzip cannot open it: %s",
			     zip_error_strerror(&zerr));
		zip_error_fini(&zerr);
		return rc;
	}
	zip_error_fini(&zerr);
	*out = za;
	return ZF_OK;
}

/* Our parse and libzip's must see the same entries. */
int zf_ptfile_cross_check(const struct zf_ptfile *pf, struct zf_error *err)
{
	struct zsrc z;
	zip_t *za = NULL;
	zip_int64_t n;
	size_t i;
	int rc;

	rc = lz_open(pf, &z, &za, err);
	if (rc) {
		zf_error_where(err, zf_source_path(pf->src));
		return rc;
	}
	n = zip_get_num_entries(za, 0);
	if (n < 0 || (uint64_t)n != pf->count) {
		rc = zf_fail(err, ZF_EFORMAT,
			     "zip readers disagree: libzip sees %lld entries, the central directory %zu",
			     (long long)n, pf->count);
		goto out;
	}
	for (i = 0; i < pf->count; i++) {
		const struct pt_entry *e = &pf->ent[i];
		const char *name = zf_pt_name(pf, e);
		bool enc;
		zip_stat_t st;

		zip_stat_init(&st);
		if (zip_stat_index(za, i, ZIP_FL_ENC_RAW, &st) < 0) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "entry '%s': libzip cannot stat it: %s",
				     name, zip_strerror(za));
			goto out;
		}
		/* WinZip AES entries say method 99 in the directory and
		 * the real method in an extra field, which libzip reports;
		 * for AE-2 libzip reports no CRC. */
		enc = st.encryption_method != ZIP_EM_NONE;
		if (!(st.valid & ZIP_STAT_NAME) || strcmp(st.name, name) ||
		    !(st.valid & ZIP_STAT_SIZE) || st.size != e->usize ||
		    !(st.valid & ZIP_STAT_COMP_SIZE) ||
		    st.comp_size != e->csize ||
		    !(st.valid & ZIP_STAT_COMP_METHOD) ||
		    (!enc && st.comp_method != e->method) ||
		    (!enc && !(st.valid & ZIP_STAT_CRC)) ||
		    ((st.valid & ZIP_STAT_CRC) && st.crc != e->crc32) ||
		    enc != zf_pt_encrypted(e)) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "zip readers disagree on entry %zu '%s': libzip sees '%s', %llu bytes (%llu stored), method %u, crc 0x%08x, %s",
				     i, name, st.name ? st.name : "",
				     (unsigned long long)st.size,
				     (unsigned long long)st.comp_size,
				     (unsigned)st.comp_method, st.crc,
				     enc ? "encrypted" : "not encrypted");
			goto out;
		}
	}
out:
	zip_discard(za);
	zf_error_where(err, zf_source_path(pf->src));
	return rc;
}

/* Reads entry i through libzip (which checks the CRC at the end) and, when
 * zerofs serves it, compares every chunk with the bytes at our offset. */
static int check_one(const struct zf_ptfile *pf, zip_t *za, size_t i,
		     unsigned char *buf, unsigned char *ours,
		     struct zf_error *err)
{
	struct pt_entry located = pf->ent[i];
	const struct pt_entry *e = &located;
	const char *name = zf_pt_name(pf, e);
	zip_file_t *zf;
	uint64_t done = 0;
	int rc = ZF_OK;

	/* Records served are compared at the offset zerofs reads them from. */
	if (e->data_offset == UINT64_MAX && e->method == 0 && !zf_pt_encrypted(e)) {
		unsigned char hdr[ZIP_LOCAL_MAX];

		rc = zf_pt_locate(pf, &located, hdr, err);
		if (rc)
			return rc;
	}

	zf = zip_fopen_index(za, i, 0);
	if (!zf)
		return zf_fail(err, ZF_EFORMAT, "entry '%s': libzip cannot open it: %s",
			       name, zip_strerror(za));
	for (;;) {
		zip_int64_t n = zip_fread(zf, buf, CRC_CHUNK);

		if (n < 0) {
			zip_error_t *ze = zip_file_get_error(zf);

			if (zip_error_code_zip(ze) == ZIP_ER_CRC)
				rc = zf_fail(err, ZF_EFORMAT,
					     "entry '%s': CRC-32 mismatch (central directory says 0x%08x)",
					     name, e->crc32);
			else
				rc = zf_fail(err, ZF_EFORMAT,
					     "entry '%s': libzip read failed after %llu bytes: %s",
					     name, (unsigned long long)done,
					     zip_error_strerror(ze));
			goto out;
		}
		if (n == 0)
			break;
		if ((uint64_t)n > e->usize - done) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "entry '%s': libzip reads more than its %llu bytes",
				     name, (unsigned long long)e->usize);
			goto out;
		}
		if (e->data_offset != UINT64_MAX) {
			rc = zf_source_pread(pf->src, ours, (size_t)n,
					   e->data_offset + done, err);
			if (rc)
				goto out;
			if (memcmp(buf, ours, (size_t)n) != 0) {
				rc = zf_fail(err, ZF_EFORMAT,
					     "entry '%s': bytes at offset %llu differ from what libzip reads",
					     name,
					     (unsigned long long)(e->data_offset + done));
				goto out;
			}
		}
		done += (uint64_t)n;
	}
	if (done != e->usize)
		rc = zf_fail(err, ZF_EFORMAT,
			     "entry '%s': libzip reads %llu bytes, expected %llu",
			     name, (unsigned long long)done,
			     (unsigned long long)e->usize);
out:
	zip_fclose(zf);
	return rc;
}

int zf_ptfile_check_crc(const struct zf_ptfile *pf, struct zf_error *err)
{
	unsigned char *buf = NULL, *ours = NULL;
	struct zsrc z;
	zip_t *za = NULL;
	size_t i;
	int rc;

	rc = lz_open(pf, &z, &za, err);
	if (rc)
		goto out;
	buf = malloc(CRC_CHUNK);
	ours = malloc(CRC_CHUNK);
	if (!buf || !ours) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; !rc && i < pf->count; i++) {
		if (pf->ent[i].method == 0 && !zf_pt_encrypted(&pf->ent[i]))
			rc = check_one(pf, za, i, buf, ours, err);
	}
out:
	if (za)
		zip_discard(za);
	free(buf);
	free(ours);
	zf_error_where(err, zf_source_path(pf->src));
	return rc;
}
