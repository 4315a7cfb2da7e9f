/* SPDX-License-Identifier: MIT */
/*
 * A torch.save() zip, read for pread(): the end records (classic and
 * ZIP64), the central directory with its ZIP64 extra fields, and each
 * needed record's local header, whose *local* extra field decides where
 * the data starts (torch pads data to 64 bytes there and writes zero
 * sizes, bit 3: man/zerofs-checkpoint.5, "The zip container").
 *
 * Every fixed-offset field is read through a cursor (cursor.h) over the
 * bytes of its structure, so no read can leave the structure it belongs
 * to; every length and offset taken from the file is checked against the
 * file size and the structure it must lie inside with zf_ckd_*()
 * arithmetic, and every allocation sized from the file is capped.
 *
 * The second opinion on the same bytes (libzip's reading of the directory,
 * the CRC-32 of every record) is ptfile_check.c.
 */
#include "ptfile_i.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ckd.h"
#include "cursor.h"
#include "zerofs/source.h"

/* Where the central directory is, from the end records. */
struct pt_cdir {
	uint64_t offset; /* absolute */
	uint64_t size;	 /* bytes */
	uint64_t count;	 /* entries */
	uint64_t limit;	 /* the first end record: the directory ends by here */
};

/* The last bytes of the file read first: torch writes no archive
 * comment, so its end records are there, and thousands of rank files may
 * be opened at once. The whole 64 KiB a comment may take only when not. */
#define TAIL_FIRST ((uint64_t)4096)

/* Finds the classic end record in tail (tail_len bytes ending at the end
 * of the file): the last one whose comment reaches the end exactly.
 * SIZE_MAX when there is none. */
static size_t find_eocd(const unsigned char *tail, size_t tail_len)
{
	struct zf_cursor c = zf_cursor_make(tail, tail_len);

	for (size_t i = tail_len - ZIP_EOCD_LEN + 1; i-- > 0;) {
		if (zf_cursor_u32_at(&c, i + EOCD_SIG) == ZIP_SIG_EOCD &&
		    i + ZIP_EOCD_LEN + zf_cursor_u16_at(&c, i + EOCD_COMMENT_LEN) == tail_len)
			return i;
	}
	return SIZE_MAX;
}

/*
 * The ZIP64 locator (loc, read just before the classic end record at
 * eocd) and the record it points at: they replace the classic counts,
 * size and offset in *cd, which must agree where they are not the 0xff..
 * marker.
 */
static int read_end64(const struct zf_ptfile *pf, struct zf_cursor *loc,
		      uint64_t eocd, struct pt_cdir *cd, struct zf_error *err)
{
	unsigned char rec[ZIP_EOCD64_LEN];
	struct zf_cursor r = zf_cursor_make(rec, sizeof(rec));
	uint32_t z64_disk = zf_cursor_u32_at(loc, LOC64_DISK);
	uint32_t n_disks = zf_cursor_u32_at(loc, LOC64_DISKS);
	uint64_t z64 = zf_cursor_u64_at(loc, LOC64_EOCD64);
	uint64_t loc_off = eocd - ZIP_LOCATOR64_LEN, end, rec_size;
	uint64_t n64, size64, off64;
	int rc;

	if (z64_disk != 0 || n_disks > 1)
		return zf_fail(err, ZF_EUNSUPPORTED,
			       "multi-disk archives are not supported (zip64 locator: disk %u of %u)",
			       z64_disk, n_disks);
	if (z64 >= pf->size)
		return zf_fail(err, ZF_EFORMAT,
			       "zip64 end of central directory offset %llu is past the end of the file (%llu bytes)",
			       (unsigned long long)z64, (unsigned long long)pf->size);
	if (zf_ckd_add(&end, z64, ZIP_EOCD64_LEN) || end > loc_off)
		return zf_fail(err, ZF_EFORMAT,
			       "zip64 end of central directory at offset %llu runs into its locator at %llu",
			       (unsigned long long)z64, (unsigned long long)loc_off);
	rc = zf_source_pread(pf->src, rec, sizeof(rec), z64, err);
	if (rc)
		return rc;
	if (zf_cursor_u32_at(&r, EOCD64_SIG) != ZIP_SIG_EOCD64)
		return zf_fail(err, ZF_EFORMAT,
			       "bad zip64 end of central directory signature 0x%08x at offset %llu",
			       zf_cursor_u32_at(&r, EOCD64_SIG), (unsigned long long)z64);
	/* The size field counts the bytes after itself (12 before it). */
	rec_size = zf_cursor_u64_at(&r, EOCD64_SIZE);
	if (rec_size < ZIP_EOCD64_LEN - 12 || zf_ckd_add(&end, z64 + 12, rec_size) ||
	    end > loc_off)
		return zf_fail(err, ZF_EFORMAT,
			       "zip64 end of central directory at offset %llu has a bad size %llu",
			       (unsigned long long)z64, (unsigned long long)rec_size);
	n64 = zf_cursor_u64_at(&r, EOCD64_ENTRIES);
	size64 = zf_cursor_u64_at(&r, EOCD64_CD_SIZE);
	off64 = zf_cursor_u64_at(&r, EOCD64_CD_OFFSET);
	if (zf_cursor_u32_at(&r, EOCD64_DISK) != 0 || zf_cursor_u32_at(&r, EOCD64_CD_DISK) != 0 ||
	    zf_cursor_u64_at(&r, EOCD64_DISK_ENTRIES) != n64)
		return zf_fail(err, ZF_EUNSUPPORTED,
			       "multi-disk archives are not supported (zip64 record: disk %u, central directory on disk %u)",
			       zf_cursor_u32_at(&r, EOCD64_DISK),
			       zf_cursor_u32_at(&r, EOCD64_CD_DISK));
	/* Classic fields that are not the 0xff.. marker must agree. */
	if ((cd->count != 0xffffu && cd->count != n64) ||
	    (cd->size != 0xffffffffu && cd->size != size64) ||
	    (cd->offset != 0xffffffffu && cd->offset != off64))
		return zf_fail(err, ZF_EFORMAT,
			       "end of central directory records disagree: %u entries, %u bytes at %u vs. zip64 %llu entries, %llu bytes at %llu",
			       (unsigned)cd->count, (unsigned)cd->size, (unsigned)cd->offset,
			       (unsigned long long)n64, (unsigned long long)size64,
			       (unsigned long long)off64);
	cd->count = n64;
	cd->size = size64;
	cd->offset = off64;
	cd->limit = z64;
	return ZF_OK;
}

/*
 * Finds the classic end record (its comment must reach the end of the
 * file exactly), then the zip64 locator and record when present.
 */
static int read_end(const struct zf_ptfile *pf, struct pt_cdir *cd,
		    struct zf_error *err)
{
	unsigned char *tail = NULL;
	unsigned char loc_buf[ZIP_LOCATOR64_LEN];
	struct zf_cursor t, loc = zf_cursor_make(loc_buf, sizeof(loc_buf));
	uint64_t tail_len = 0, tail_off = 0, eocd;
	size_t at = SIZE_MAX;
	uint16_t disk, cd_disk, n_disk;
	int rc = ZF_OK;

	if (pf->size < ZIP_EOCD_LEN)
		return zf_fail(err, ZF_EFORMAT,
			       "not a zip file: %llu bytes, too short for an end of central directory record",
			       (unsigned long long)pf->size);
	for (uint64_t want = TAIL_FIRST;; want = ZIP_EOCD_LEN + ZIP_MAX_COMMENT) {
		tail_len = pf->size < want ? pf->size : want;
		tail_off = pf->size - tail_len;
		free(tail);
		tail = malloc(tail_len);
		if (!tail)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
		rc = zf_source_pread(pf->src, tail, tail_len, tail_off, err);
		if (rc)
			goto out;
		at = find_eocd(tail, tail_len);
		if (at != SIZE_MAX || tail_len == pf->size || want > TAIL_FIRST)
			break;
	}
	if (at == SIZE_MAX) {
		rc = zf_fail(err, ZF_EFORMAT,
			     "not a zip file or truncated: no end of central directory record in the last %llu bytes",
			     (unsigned long long)tail_len);
		goto out;
	}
	/* find_eocd() proved the whole record inside the tail. */
	t = zf_cursor_make(tail, tail_len);
	eocd = tail_off + at;
	disk = zf_cursor_u16_at(&t, at + EOCD_DISK);
	cd_disk = zf_cursor_u16_at(&t, at + EOCD_CD_DISK);
	n_disk = zf_cursor_u16_at(&t, at + EOCD_DISK_ENTRIES);
	cd->count = zf_cursor_u16_at(&t, at + EOCD_ENTRIES);
	cd->size = zf_cursor_u32_at(&t, at + EOCD_CD_SIZE);
	cd->offset = zf_cursor_u32_at(&t, at + EOCD_CD_OFFSET);
	cd->limit = eocd;

	if (eocd >= ZIP_LOCATOR64_LEN) {
		rc = zf_source_pread(pf->src, loc_buf, sizeof(loc_buf),
				     eocd - ZIP_LOCATOR64_LEN, err);
		if (rc)
			goto out;
		if (zf_cursor_u32_at(&loc, LOC64_SIG) == ZIP_SIG_LOCATOR64) {
			rc = read_end64(pf, &loc, eocd, cd, err);
			goto out;
		}
	}
	if (disk != 0 || cd_disk != 0 || n_disk != cd->count) {
		rc = zf_fail(err, ZF_EUNSUPPORTED,
			     "multi-disk archives are not supported (disk %u, central directory on disk %u)",
			     disk, cd_disk);
		goto out;
	}
	if (cd->size == 0xffffffffu || cd->offset == 0xffffffffu)
		rc = zf_fail(err, ZF_EFORMAT,
			     "end of central directory has zip64 markers (0xffffffff) but there is no zip64 locator");
out:
	free(tail);
	return rc;
}

/* Which of an entry's 32-bit fields hold the 0xff.. marker: those have
 * their real value in the ZIP64 extra field, in this order. */
struct zip64_need {
	bool usize, csize, offset, disk;
};

/* Reads the zip64 extra field (0x0001) of a central directory entry. */
static int read_zip64_extra(const char *name, const unsigned char *extra,
			    uint16_t len, struct pt_entry *e,
			    struct zip64_need need, struct zf_error *err)
{
	struct zf_cursor c = zf_cursor_make(extra, len);
	bool found = false;

	while (zf_cursor_left(&c) >= 4) {
		uint16_t id = zf_cursor_u16(&c), n = zf_cursor_u16(&c);
		const unsigned char *data = zf_cursor_bytes(&c, n);
		struct zf_cursor f;
		uint64_t usize, csize, offset;
		uint32_t disk;

		if (zf_cursor_failed(&c))
			return zf_fail(err, ZF_EFORMAT,
				       "entry '%s': extra field 0x%04x of %u bytes runs past the end of its %u-byte extra data",
				       name, id, n, len);
		if (id != ZIP_EXTRA_ZIP64 || found)
			continue;
		found = true;
		f = zf_cursor_make(data, n);
		usize = need.usize ? zf_cursor_u64(&f) : e->usize;
		csize = need.csize ? zf_cursor_u64(&f) : e->csize;
		offset = need.offset ? zf_cursor_u64(&f) : e->lh_offset;
		disk = need.disk ? zf_cursor_u32(&f) : 0;
		if (zf_cursor_failed(&f))
			return zf_fail(err, ZF_EFORMAT,
				       "entry '%s': zip64 extra field of %u bytes is too short",
				       name, n);
		if (disk != 0)
			return zf_fail(err, ZF_EUNSUPPORTED,
				       "entry '%s' is on disk %u; multi-disk archives are not supported",
				       name, disk);
		e->usize = usize;
		e->csize = csize;
		e->lh_offset = offset;
	}
	if (!found && (need.usize || need.csize || need.offset || need.disk))
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s': central directory has 0xffffffff markers but no zip64 extra field",
			       name);
	return ZF_OK;
}

/*
 * One central directory entry from c (at absolute offset at) into e, its
 * name copied to dst with a NUL (there is room: every entry takes more
 * bytes of the directory than its name and a NUL). Checks what can be
 * checked without the local header.
 */
static int read_central(struct zf_cursor *c, uint64_t at, size_t i,
			const struct pt_cdir *cd, struct pt_entry *e,
			char *dst, struct zf_error *err)
{
	const unsigned char *h = zf_cursor_bytes(c, ZIP_CENTRAL_LEN);
	struct zf_cursor f = zf_cursor_make(h, h ? ZIP_CENTRAL_LEN : 0);
	const unsigned char *name, *extra;
	uint16_t name_len, extra_len, comment_len, disk;
	uint32_t csize, usize, off;
	struct zip64_need need;
	int rc;

	if (!h)
		return zf_fail(err, ZF_EFORMAT,
			       "central directory entry %zu at offset %llu is truncated",
			       i, (unsigned long long)at);
	if (zf_cursor_u32_at(&f, CEN_SIG) != ZIP_SIG_CENTRAL)
		return zf_fail(err, ZF_EFORMAT,
			       "central directory entry %zu at offset %llu has a bad signature 0x%08x",
			       i, (unsigned long long)at, zf_cursor_u32_at(&f, CEN_SIG));
	e->flags = zf_cursor_u16_at(&f, CEN_FLAGS);
	e->method = zf_cursor_u16_at(&f, CEN_METHOD);
	e->crc32 = zf_cursor_u32_at(&f, CEN_CRC);
	csize = zf_cursor_u32_at(&f, CEN_CSIZE);
	usize = zf_cursor_u32_at(&f, CEN_USIZE);
	name_len = zf_cursor_u16_at(&f, CEN_NAME_LEN);
	extra_len = zf_cursor_u16_at(&f, CEN_EXTRA_LEN);
	comment_len = zf_cursor_u16_at(&f, CEN_COMMENT_LEN);
	disk = zf_cursor_u16_at(&f, CEN_DISK);
	off = zf_cursor_u32_at(&f, CEN_LOCAL_OFFSET);
	name = zf_cursor_bytes(c, name_len);
	extra = zf_cursor_bytes(c, extra_len);
	zf_cursor_skip(c, comment_len);
	if (zf_cursor_failed(c))
		return zf_fail(err, ZF_EFORMAT,
			       "central directory entry %zu at offset %llu runs past the end of the directory",
			       i, (unsigned long long)at);
	if (name_len == 0 || memchr(name, '\0', name_len))
		return zf_fail(err, ZF_EFORMAT,
			       "central directory entry %zu at offset %llu has an empty name or one with a NUL byte",
			       i, (unsigned long long)at);
	memcpy(dst, name, name_len);
	dst[name_len] = '\0';
	e->name_len = name_len;
	e->csize = csize;
	e->usize = usize;
	e->lh_offset = off;
	e->data_offset = UINT64_MAX;
	need = (struct zip64_need){ .usize = usize == 0xffffffffu,
				    .csize = csize == 0xffffffffu,
				    .offset = off == 0xffffffffu,
				    .disk = disk == 0xffffu };
	rc = read_zip64_extra(dst, extra, extra_len, e, need, err);
	if (rc)
		return rc;
	if (disk != 0 && disk != 0xffffu)
		return zf_fail(err, ZF_EUNSUPPORTED,
			       "entry '%s' is on disk %u; multi-disk archives are not supported",
			       dst, disk);
	if (e->method == 0 && !zf_pt_encrypted(e) && e->csize != e->usize)
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s' is stored but its sizes differ: %llu bytes in the file, %llu uncompressed",
			       dst, (unsigned long long)e->csize,
			       (unsigned long long)e->usize);
	if (e->lh_offset >= cd->offset)
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s': local header offset %llu is not before the central directory at %llu",
			       dst, (unsigned long long)e->lh_offset,
			       (unsigned long long)cd->offset);
	return ZF_OK;
}

/* Walks the central directory into pf->ent and pf->names. */
static int read_cdir(struct zf_ptfile *pf, const struct pt_cdir *cd,
		     struct zf_error *err)
{
	unsigned char *buf = NULL;
	struct zf_cursor c;
	uint64_t end;
	size_t used = 0;
	int rc = ZF_OK;

	if (cd->offset > pf->size)
		return zf_fail(err, ZF_EFORMAT,
			       "central directory offset %llu is past the end of the file (%llu bytes)",
			       (unsigned long long)cd->offset,
			       (unsigned long long)pf->size);
	if (zf_ckd_add(&end, cd->offset, cd->size) || end > cd->limit)
		return zf_fail(err, ZF_EFORMAT,
			       "central directory at offset %llu, %llu bytes, runs past its end record at %llu",
			       (unsigned long long)cd->offset,
			       (unsigned long long)cd->size,
			       (unsigned long long)cd->limit);
	if (cd->count > cd->size / ZIP_CENTRAL_LEN)
		return zf_fail(err, ZF_EFORMAT,
			       "central directory of %llu bytes cannot hold %llu entries",
			       (unsigned long long)cd->size,
			       (unsigned long long)cd->count);
	if (cd->count > ZF_PTFILE_MAX_ENTRIES)
		return zf_fail(err, ZF_ENOMEM,
			       "%llu zip entries (at most %llu)",
			       (unsigned long long)cd->count,
			       (unsigned long long)ZF_PTFILE_MAX_ENTRIES);
	if (cd->size > ZF_PTFILE_MAX_CDIR)
		return zf_fail(err, ZF_ENOMEM,
			       "central directory is %llu bytes (at most %llu)",
			       (unsigned long long)cd->size,
			       (unsigned long long)ZF_PTFILE_MAX_CDIR);

	pf->cd_offset = cd->offset;
	/* Every entry takes at least 46 bytes, so names fit in cd->size. */
	buf = malloc((size_t)cd->size + 1);
	pf->names = malloc((size_t)cd->size + 1);
	pf->ent = calloc((size_t)cd->count + 1, sizeof(*pf->ent));
	if (!buf || !pf->names || !pf->ent) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	rc = zf_source_pread(pf->src, buf, (size_t)cd->size, cd->offset, err);
	if (rc)
		goto out;

	c = zf_cursor_make(buf, (size_t)cd->size);
	for (size_t i = 0; i < cd->count; i++) {
		struct pt_entry *e = &pf->ent[i];

		rc = read_central(&c, cd->offset + c.pos, i, cd, e, pf->names + used, err);
		if (rc)
			goto out;
		e->name = used;
		used += (size_t)e->name_len + 1;
	}
	if (zf_cursor_left(&c) != 0)
		rc = zf_fail(err, ZF_EFORMAT,
			     "central directory has %zu bytes after its %llu entries",
			     zf_cursor_left(&c), (unsigned long long)cd->count);
	pf->count = (size_t)cd->count;
out:
	free(buf);
	return rc;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(((const struct pt_key *)a)->key,
		      ((const struct pt_key *)b)->key);
}

/* Whether name (len bytes) is "data.pkl" or ends in "/data.pkl". */
static bool is_pickle_name(const char *name, size_t len)
{
	static const char pkl[] = "data.pkl";
	const size_t n = sizeof(pkl) - 1;

	return len >= n && !memcmp(name + len - n, pkl, n) &&
	       (len == n || name[len - n - 1] == '/');
}

/*
 * Finds the one data.pkl and the prefix before it, refuses duplicate
 * names, and indexes the storage records <prefix>data/<key> by key.
 */
static int index_entries(struct zf_ptfile *pf, struct zf_error *err)
{
	struct pt_key *all = NULL;
	size_t found = SIZE_MAX;
	const char *prefix;
	int rc = ZF_OK;

	for (size_t i = 0; i < pf->count; i++) {
		const struct pt_entry *e = &pf->ent[i];

		if (!is_pickle_name(zf_pt_name(pf, e), e->name_len))
			continue;
		if (found != SIZE_MAX)
			return zf_fail(err, ZF_EFORMAT,
				       "two pickles in one file: '%s' and '%s'",
				       zf_pt_name(pf, &pf->ent[found]), zf_pt_name(pf, e));
		found = i;
	}
	if (found == SIZE_MAX)
		return zf_fail(err, ZF_EFORMAT,
			       "no 'data.pkl' entry in %zu zip entries; not a torch.save file",
			       pf->count);
	pf->pickle_idx = found;
	pf->prefix_len = pf->ent[found].name_len - (sizeof("data.pkl") - 1);
	prefix = zf_pt_name(pf, &pf->ent[found]);

	all = calloc(pf->count + 1, sizeof(*all));
	pf->records = calloc(pf->count + 1, sizeof(*pf->records));
	if (!all || !pf->records) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < pf->count; i++) {
		const struct pt_entry *e = &pf->ent[i];
		const char *name = zf_pt_name(pf, e);
		uint64_t end;

		/* Local headers are read only for records that are used, but
		 * every entry must at least fit before the central directory:
		 * a damaged file is refused whole, as torch.load would. */
		if (zf_ckd_add(&end, e->lh_offset, ZIP_LOCAL_LEN + (uint64_t)e->name_len) ||
		    zf_ckd_add(&end, end, e->csize) || end > pf->cd_offset) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "entry '%s': %llu bytes at local header offset %llu run past the end of the data (the central directory starts at %llu)",
				     name, (unsigned long long)e->csize,
				     (unsigned long long)e->lh_offset,
				     (unsigned long long)pf->cd_offset);
			goto out;
		}
		all[i].key = name;
		all[i].idx = i;
		if (e->name_len <= pf->prefix_len + 5 ||
		    memcmp(name, prefix, pf->prefix_len) != 0 ||
		    memcmp(name + pf->prefix_len, "data/", 5) != 0 ||
		    strchr(name + pf->prefix_len + 5, '/'))
			continue;
		pf->records[pf->n_records].key = name + pf->prefix_len + 5;
		pf->records[pf->n_records].idx = i;
		pf->n_records++;
	}
	qsort(all, pf->count, sizeof(*all), key_cmp);
	for (size_t i = 1; i < pf->count; i++) {
		if (strcmp(all[i - 1].key, all[i].key) == 0) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "duplicate entry '%s'", all[i].key);
			goto out;
		}
	}
	qsort(pf->records, pf->n_records, sizeof(*pf->records), key_cmp);
out:
	free(all);
	return rc;
}

/* Refuses a record zerofs cannot pread: compressed or encrypted. */
static int check_stored(const struct zf_ptfile *pf, const struct pt_entry *e,
			struct zf_error *err)
{
	if (zf_pt_encrypted(e))
		return zf_fail(err, ZF_EUNSUPPORTED,
			       "entry '%s' is encrypted (flags 0x%04x, method %u); zerofs needs plain stored records",
			       zf_pt_name(pf, e), e->flags, e->method);
	if (e->method != 0)
		return zf_fail(err, ZF_EUNSUPPORTED,
			       "entry '%s' is compressed (method %u); zerofs needs stored records",
			       zf_pt_name(pf, e), e->method);
	return ZF_OK;
}

int zf_pt_locate(const struct zf_ptfile *pf, struct pt_entry *e,
		 unsigned char *buf, struct zf_error *err)
{
	const char *name = zf_pt_name(pf, e);
	const size_t len = ZIP_LOCAL_LEN + (size_t)e->name_len;
	struct zf_cursor c = zf_cursor_make(buf, len);
	const unsigned char *local_name;
	uint64_t hdr_end, data, end;
	uint16_t name_len, method;
	int rc;

	if (zf_ckd_add(&hdr_end, e->lh_offset, len) || hdr_end > pf->size)
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s': local header at offset %llu runs past the end of the file (%llu bytes)",
			       name, (unsigned long long)e->lh_offset,
			       (unsigned long long)pf->size);
	rc = zf_source_pread(pf->src, buf, len, e->lh_offset, err);
	if (rc)
		return rc;
	if (zf_cursor_u32_at(&c, LOC_SIG) != ZIP_SIG_LOCAL)
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s': bad local header signature 0x%08x at offset %llu",
			       name, zf_cursor_u32_at(&c, LOC_SIG),
			       (unsigned long long)e->lh_offset);
	method = zf_cursor_u16_at(&c, LOC_METHOD);
	name_len = zf_cursor_u16_at(&c, LOC_NAME_LEN);
	/* Up to the central name's length: a longer local name differs. */
	local_name = zf_cursor_span_at(&c, ZIP_LOCAL_LEN,
				       name_len < e->name_len ? name_len : e->name_len);
	if (name_len != e->name_len || memcmp(local_name, name, name_len) != 0)
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s': local header at offset %llu names '%.*s' (%u bytes)",
			       name, (unsigned long long)e->lh_offset,
			       name_len <= e->name_len ? (int)name_len : (int)e->name_len,
			       (const char *)local_name, name_len);
	if (method != e->method)
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s': local header says method %u, central directory says %u",
			       name, method, e->method);
	data = hdr_end + zf_cursor_u16_at(&c, LOC_EXTRA_LEN);
	if (zf_ckd_add(&end, data, e->csize) || end > pf->size)
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s': data at offset %llu, %llu bytes, runs past the end of the file (%llu bytes)",
			       name, (unsigned long long)data,
			       (unsigned long long)e->csize,
			       (unsigned long long)pf->size);
	if (end > pf->cd_offset)
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s': data at offset %llu, %llu bytes, overlaps the central directory at %llu",
			       name, (unsigned long long)data,
			       (unsigned long long)e->csize,
			       (unsigned long long)pf->cd_offset);
	e->data_offset = data;
	return ZF_OK;
}

/* Whether entry i is <prefix>byteorder. */
static bool is_byteorder(const struct zf_ptfile *pf, size_t i)
{
	const struct pt_entry *e = &pf->ent[i];
	const char *name = zf_pt_name(pf, e);

	return e->name_len == pf->prefix_len + 9 &&
	       !memcmp(name, zf_pt_name(pf, &pf->ent[pf->pickle_idx]), pf->prefix_len) &&
	       !strcmp(name + pf->prefix_len, "byteorder");
}

/*
 * Locates data.pkl and, when there is one, <prefix>byteorder (*byteorder,
 * SIZE_MAX when none). Storage records are located when asked for
 * (zf_ptfile_record): a model states file holds thousands of records a
 * mount never reads, one local header read each.
 */
static int locate_needed(struct zf_ptfile *pf, size_t *byteorder,
			 struct zf_error *err)
{
	unsigned char *buf = malloc(ZIP_LOCAL_MAX);
	int rc;

	if (!buf)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	*byteorder = SIZE_MAX;
	rc = check_stored(pf, &pf->ent[pf->pickle_idx], err);
	if (!rc)
		rc = zf_pt_locate(pf, &pf->ent[pf->pickle_idx], buf, err);
	for (size_t i = 0; !rc && i < pf->count; i++) {
		if (!is_byteorder(pf, i))
			continue;
		*byteorder = i;
		rc = check_stored(pf, &pf->ent[i], err);
		if (!rc)
			rc = zf_pt_locate(pf, &pf->ent[i], buf, err);
	}
	free(buf);
	return rc;
}

/* torch >= 2.1 may write <prefix>byteorder; only little-endian data is
 * served (no byteorder entry means little-endian). */
static int check_byteorder(const struct zf_ptfile *pf, size_t idx,
			   struct zf_error *err)
{
	const struct pt_entry *e;
	char buf[16];
	int rc;

	if (idx == SIZE_MAX)
		return ZF_OK;
	e = &pf->ent[idx];
	if (e->usize >= sizeof(buf))
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s' is %llu bytes, expected 'little' or 'big'",
			       zf_pt_name(pf, e), (unsigned long long)e->usize);
	rc = zf_source_pread(pf->src, buf, (size_t)e->usize, e->data_offset, err);
	if (rc)
		return rc;
	buf[e->usize] = '\0';
	if (strcmp(buf, "little") == 0)
		return ZF_OK;
	if (strcmp(buf, "big") == 0)
		return zf_fail(err, ZF_EUNSUPPORTED,
			       "entry '%s' says the data is big-endian; zerofs reads little-endian files only",
			       zf_pt_name(pf, e));
	return zf_fail(err, ZF_EFORMAT,
		       "entry '%s' holds '%.*s', expected 'little' or 'big'",
		       zf_pt_name(pf, e), (int)e->usize, buf);
}

static int load_pickle(struct zf_ptfile *pf, struct zf_error *err)
{
	const struct pt_entry *e = &pf->ent[pf->pickle_idx];

	if (e->usize > ZF_PTFILE_MAX_PICKLE)
		return zf_fail(err, ZF_ENOMEM,
			       "entry '%s' is %llu bytes (at most %llu)",
			       zf_pt_name(pf, e), (unsigned long long)e->usize,
			       (unsigned long long)ZF_PTFILE_MAX_PICKLE);
	pf->pickle = malloc((size_t)e->usize + 1);
	if (!pf->pickle)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	pf->pickle_len = (size_t)e->usize;
	return zf_source_pread(pf->src, pf->pickle, pf->pickle_len,
			       e->data_offset, err);
}

/* --- the interface ---------------------------------------------------- */

int zf_ptfile_open(struct zf_source *src, unsigned flags,
		   struct zf_ptfile **out, struct zf_error *err)
{
	struct zf_ptfile *pf;
	struct pt_cdir cd = { 0 };
	size_t byteorder = SIZE_MAX;
	int rc;

	*out = NULL;
	pf = calloc(1, sizeof(*pf));
	if (!pf)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	pf->src = src;
	pf->size = zf_source_size(src);
	rc = read_end(pf, &cd, err);
	if (!rc)
		rc = read_cdir(pf, &cd, err);
	if (!rc)
		rc = index_entries(pf, err);
	if (!rc)
		rc = locate_needed(pf, &byteorder, err);
	if (!rc)
		rc = check_byteorder(pf, byteorder, err);
	if (!rc && !(flags & ZF_PTFILE_LAZY_PICKLE))
		rc = load_pickle(pf, err);
	if (rc) {
		zf_error_where(err, zf_source_path(src));
		zf_ptfile_close(pf);
		return rc;
	}
	*out = pf;
	return ZF_OK;
}

int zf_ptfile_open_path(const char *path, unsigned flags,
			struct zf_ptfile **out, struct zf_error *err)
{
	struct zf_source *src;
	int rc;

	*out = NULL;
	rc = zf_source_open(path, &src, err);
	if (rc)
		return rc;
	rc = zf_ptfile_open(src, flags, out, err);
	if (rc) {
		zf_source_close(src);
		return rc;
	}
	(*out)->owns_src = true;
	return ZF_OK;
}

void zf_ptfile_close(struct zf_ptfile *pf)
{
	if (!pf)
		return;
	if (pf->owns_src)
		zf_source_close(pf->src);
	free(pf->ent);
	free(pf->names);
	free(pf->records);
	free(pf->pickle);
	free(pf);
}

void zf_ptfile_pickle_record(const struct zf_ptfile *pf, struct zf_record *rec)
{
	const struct pt_entry *e = &pf->ent[pf->pickle_idx];

	rec->offset = e->data_offset;
	rec->size = e->usize;
	rec->crc32 = e->crc32;
}

int zf_ptfile_load_pickle(struct zf_ptfile *pf, struct zf_error *err)
{
	int rc;

	if (pf->pickle)
		return ZF_OK;
	rc = load_pickle(pf, err);
	if (rc) {
		free(pf->pickle);
		pf->pickle = NULL;
		pf->pickle_len = 0;
		zf_error_where(err, zf_source_path(pf->src));
	}
	return rc;
}

void zf_ptfile_drop_pickle(struct zf_ptfile *pf)
{
	if (!pf)
		return;
	free(pf->pickle);
	pf->pickle = NULL;
	pf->pickle_len = 0;
}

const unsigned char *zf_ptfile_pickle(const struct zf_ptfile *pf,
				      size_t *len)
{
	if (len)
		*len = pf->pickle_len;
	return pf->pickle;
}

/* The entry of storage record data/<key>, or NULL. */
static const struct pt_entry *find_record(const struct zf_ptfile *pf,
					  const char *key)
{
	const struct pt_key want = { key, 0 };
	const struct pt_key *k = bsearch(&want, pf->records, pf->n_records,
					 sizeof(*pf->records), key_cmp);

	return k ? &pf->ent[k->idx] : NULL;
}

int zf_ptfile_record_size(const struct zf_ptfile *pf, const char *key,
			  uint64_t *size, struct zf_error *err)
{
	const struct pt_entry *e = key ? find_record(pf, key) : NULL;

	if (!e)
		return zf_fail_at(err, ZF_EFORMAT, zf_source_path(pf->src),
				  "no record '%.*sdata/%s'", (int)pf->prefix_len,
				  zf_pt_name(pf, &pf->ent[pf->pickle_idx]), key ? key : "");
	*size = e->usize;
	return ZF_OK;
}

int zf_ptfile_record(const struct zf_ptfile *pf, const char *key,
		     struct zf_record *rec, struct zf_error *err)
{
	const struct pt_entry *e;
	struct pt_entry located;
	unsigned char buf[ZIP_LOCAL_MAX];
	int rc;

	if (!key) {
		rc = zf_fail(err, ZF_EUSAGE, "no record key given");
		goto out;
	}
	e = find_record(pf, key);
	if (!e) {
		rc = zf_fail(err, ZF_EFORMAT, "no record '%.*sdata/%s'",
			     (int)pf->prefix_len,
			     zf_pt_name(pf, &pf->ent[pf->pickle_idx]), key);
		goto out;
	}
	rc = check_stored(pf, e, err);
	if (rc)
		goto out;
	/* A copy: pf stays read-only, so threads may share it. */
	located = *e;
	rc = zf_pt_locate(pf, &located, buf, err);
	if (rc)
		goto out;
	rec->offset = located.data_offset;
	rec->size = e->usize;
	rec->crc32 = e->crc32;
out:
	zf_error_where(err, zf_source_path(pf->src));
	return rc;
}

const char *zf_ptfile_path(const struct zf_ptfile *pf)
{
	return zf_source_path(pf->src);
}

struct zf_source *zf_ptfile_source(const struct zf_ptfile *pf)
{
	return pf->src;
}

uint64_t zf_ptfile_size(const struct zf_ptfile *pf)
{
	return pf->size;
}

size_t zf_ptfile_count(const struct zf_ptfile *pf)
{
	return pf->count;
}

const char *zf_ptfile_entry_name(const struct zf_ptfile *pf, size_t i)
{
	if (i >= pf->count)
		return NULL;
	return zf_pt_name(pf, &pf->ent[i]);
}

int zf_ptfile_entry(const struct zf_ptfile *pf, size_t i,
		    struct zf_ptfile_entry *out)
{
	const struct pt_entry *e;

	if (i >= pf->count)
		return ZF_EUSAGE;
	e = &pf->ent[i];
	out->name = zf_pt_name(pf, e);
	out->size = e->usize;
	out->csize = e->csize;
	out->crc32 = e->crc32;
	out->method = e->method;
	out->flags = e->flags;
	out->local_offset = e->lh_offset;
	out->data_offset = e->data_offset;
	return ZF_OK;
}

/* --- a rank file like another ---------------------------------------- */

/*
 * The end records of src, read from its last bytes only: the classic end
 * record with no comment, and the zip64 locator and record right before
 * it when there are. *count is the number of entries; false when the tail
 * is not shaped so or the directory does not end where they start.
 */
static int tail_count(struct zf_source *src, uint64_t size, uint64_t *count,
		      bool *ok, struct zf_error *err)
{
	unsigned char t[ZIP_EOCD64_LEN + ZIP_LOCATOR64_LEN + ZIP_EOCD_LEN];
	const size_t len = size < sizeof(t) ? (size_t)size : sizeof(t);
	const size_t e = len - ZIP_EOCD_LEN, loc = e - ZIP_LOCATOR64_LEN;
	struct zf_cursor c = zf_cursor_make(t, len);
	uint64_t cd_end;
	int rc;

	*ok = false;
	rc = zf_source_pread(src, t, len, size - len, err);
	if (rc)
		return rc;
	if (zf_cursor_u32_at(&c, e + EOCD_SIG) != ZIP_SIG_EOCD ||
	    zf_cursor_u16_at(&c, e + EOCD_COMMENT_LEN) != 0)
		return ZF_OK;
	if (len == sizeof(t) && zf_cursor_u32_at(&c, loc + LOC64_SIG) == ZIP_SIG_LOCATOR64) {
		/* The zip64 record is the first thing in t. */
		if (zf_cursor_u64_at(&c, loc + LOC64_EOCD64) != size - sizeof(t) ||
		    zf_cursor_u32_at(&c, EOCD64_SIG) != ZIP_SIG_EOCD64)
			return ZF_OK;
		*count = zf_cursor_u64_at(&c, EOCD64_ENTRIES);
		if (zf_ckd_add(&cd_end, zf_cursor_u64_at(&c, EOCD64_CD_OFFSET),
			       zf_cursor_u64_at(&c, EOCD64_CD_SIZE)) ||
		    cd_end != size - sizeof(t))
			return ZF_OK;
	} else {
		*count = zf_cursor_u16_at(&c, e + EOCD_ENTRIES);
		cd_end = (uint64_t)zf_cursor_u32_at(&c, e + EOCD_CD_OFFSET) +
			 zf_cursor_u32_at(&c, e + EOCD_CD_SIZE);
		if (cd_end != size - ZIP_EOCD_LEN)
			return ZF_OK;
	}
	*ok = true;
	return ZF_OK;
}

/* The CRC-32 and sizes of the data descriptor after a record's data,
 * read from the d.len bytes at its end: [signature] crc, then 32- or
 * 64-bit sizes. False when they are not the central directory's. */
static bool descriptor_is(struct zf_cursor *d, const struct pt_entry *e,
			  uint32_t *crc)
{
	size_t at = zf_cursor_u32_at(d, 0) == ZIP_SIG_DESCRIPTOR ? 4 : 0;

	if (d->len < at + 12)
		return false;
	*crc = zf_cursor_u32_at(d, at);
	if (zf_cursor_u32_at(d, at + 4) == e->csize && zf_cursor_u32_at(d, at + 8) == e->usize)
		return true;
	return d->len >= at + 20 && zf_cursor_u64_at(d, at + 4) == e->csize &&
	       zf_cursor_u64_at(d, at + 12) == e->usize;
}

int zf_ptfile_same_head(const struct zf_ptfile *tmpl, struct zf_source *src,
			bool *same, struct zf_error *err)
{
	const struct pt_entry *e = &tmpl->ent[tmpl->pickle_idx];
	uint64_t size = zf_source_size(src), data, end, count;
	unsigned char h[ZIP_LOCAL_LEN], d[24];
	struct zf_cursor c = zf_cursor_make(h, sizeof(h));
	char name[512];
	uint16_t flags, name_len;
	uint32_t crc;
	bool ok;
	int rc;

	*same = false;
	if (e->lh_offset != 0 || e->method != 0 || zf_pt_encrypted(e) ||
	    size < ZIP_LOCAL_LEN + ZIP_EOCD_LEN)
		return ZF_OK;
	rc = zf_source_pread(src, h, ZIP_LOCAL_LEN, 0, err);
	if (rc)
		return rc;
	flags = zf_cursor_u16_at(&c, LOC_FLAGS);
	name_len = zf_cursor_u16_at(&c, LOC_NAME_LEN);
	if (zf_cursor_u32_at(&c, LOC_SIG) != ZIP_SIG_LOCAL ||
	    zf_cursor_u16_at(&c, LOC_METHOD) != 0 || flags != e->flags ||
	    (flags & (ZIP_FLAG_ENCRYPTED | ZIP_FLAG_STRONG_ENCRYPTION)) ||
	    name_len > sizeof(name))
		return ZF_OK;
	data = ZIP_LOCAL_LEN + (uint64_t)name_len + zf_cursor_u16_at(&c, LOC_EXTRA_LEN);
	if (zf_ckd_add(&end, data, e->usize) || end > size)
		return ZF_OK;
	rc = zf_source_pread(src, name, name_len, ZIP_LOCAL_LEN, err);
	if (rc)
		return rc;
	if (!is_pickle_name(name, name_len))
		return ZF_OK;
	if (flags & ZIP_FLAG_DESCRIPTOR) {
		size_t len = size - end < sizeof(d) ? (size_t)(size - end) : sizeof(d);
		struct zf_cursor dc = zf_cursor_make(d, len);

		rc = zf_source_pread(src, d, len, end, err);
		if (rc)
			return rc;
		if (!descriptor_is(&dc, e, &crc))
			return ZF_OK;
	} else {
		crc = zf_cursor_u32_at(&c, LOC_CRC);
		if (zf_cursor_u32_at(&c, LOC_CSIZE) != e->csize ||
		    zf_cursor_u32_at(&c, LOC_USIZE) != e->usize)
			return ZF_OK;
	}
	if (crc != e->crc32)
		return ZF_OK;
	rc = tail_count(src, size, &count, &ok, err);
	if (rc || !ok || count != tmpl->count)
		return rc;
	*same = true;
	return ZF_OK;
}
