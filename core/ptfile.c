/* SPDX-License-Identifier: MIT */
/*
 * A torch.save() zip, read for pread(): the central directory is parsed
 * here (classic and ZIP64 end records, the 0x0001 extra field), and each
 * needed record's data offset is computed from its *local* header, because
 * torch pads data to 64 bytes with a local-only extra field (0x4246) and
 * writes zero sizes there (bit 3, data descriptor): man/zerofs-checkpoint.5,
 * "The container".
 *
 * libzip has no public call for an entry's data offset, so it is used as a
 * second, independent reader instead: after our own parse, libzip opens
 * the same file (through a libzip source reading our zf_source) and must see the
 * same entries with the same names, sizes, CRCs and methods. It also reads
 * the records for zf_ptfile_check_crc(), which validates the CRC-32 of
 * stored entries at their end (ZIP_ER_CRC).
 *
 * The file is hostile until proven otherwise: every length and offset is
 * checked against the file size and the structure it must lie inside,
 * with overflow-safe arithmetic, and every allocation sized from the file
 * is capped.
 *
 * A file in torch's legacy (non-zip) format, which DeepSpeed >= 0.17 writes
 * with "checkpoint_serialization": false, opens too: its first bytes say
 * so, and core/ptlegacy.c reads it. Its records are found once the main
 * pickle is parsed (zf_ptfile_bind()); it has no directory for libzip to
 * cross-check and no CRC-32s.
 */
#include "zerofs/ptfile.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "zerofs/ptlegacy.h"
#include "zerofs/source.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u

#define LOCAL_LEN 30	/* fixed part of a local file header */
#define CENTRAL_LEN 46	/* fixed part of a central directory header */
#define EOCD_LEN 22	/* classic end of central directory record */
#define EOCD64_LEN 56	/* zip64 end of central directory record */
#define LOCATOR64_LEN 20
#define MAX_COMMENT 0xffffu

#define EXTRA_ZIP64 0x0001u

#define FLAG_ENCRYPTED 0x0001u
#define FLAG_STRONG_ENCRYPTION 0x0040u

#define CRC_CHUNK ((size_t)1 << 20)

/* What the central directory says about one entry, plus where its data is. */
struct pt_entry {
	size_t name;	      /* offset of the NUL-terminated name in names */
	uint16_t name_len;    /* bytes, without the NUL */
	uint16_t method;      /* 0 stored, 8 deflate, ... */
	uint16_t flags;	      /* general purpose bit flags */
	uint32_t crc32;
	uint64_t csize;	      /* bytes in the file */
	uint64_t usize;	      /* bytes after decompression */
	uint64_t lh_offset;   /* absolute offset of the local header */
	uint64_t data_offset; /* absolute, UINT64_MAX until located */
};

/* A name (or storage key) and the entry it belongs to, for sorting. */
struct pt_key {
	const char *key;
	size_t idx;
};

struct zf_ptfile {
	struct zf_source *src;	/* every byte is read through it */
	bool owns_src;		/* opened by zf_ptfile_open_path() */
	uint64_t size;		/* bytes, at open */
	uint64_t cd_offset;	/* record data must end before this */
	struct pt_entry *ent;
	size_t count;
	char *names;		/* every entry name, NUL-terminated */
	size_t pickle_idx;	/* the data.pkl entry; its name starts with the prefix */
	size_t prefix_len;	/* bytes before "data.pkl", the '/' included */
	struct pt_key *records; /* <prefix>data/<key>, sorted by key */
	size_t n_records;
	unsigned char *pickle;
	size_t pickle_len;
	struct zf_ptlegacy *legacy; /* torch's legacy format: none of the above */
};

/* Where the central directory is, from the end records. */
struct pt_cdir {
	uint64_t offset; /* absolute */
	uint64_t size;	 /* bytes */
	uint64_t count;	 /* entries */
	uint64_t limit;	 /* the first end record: the directory ends by here */
};

/* Returns true when a + b overflows. */
static bool add_overflows(uint64_t a, uint64_t b, uint64_t *sum)
{
	return __builtin_add_overflow(a, b, sum);
}

/* A bounds-checked little-endian reader over bytes in memory. */
struct cursor {
	const unsigned char *p;
	size_t left;
};

static bool cur_take(struct cursor *c, size_t n, const unsigned char **out)
{
	if (c->left < n)
		return false;
	*out = c->p;
	c->p += n;
	c->left -= n;
	return true;
}

static uint16_t get_u16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static bool cur_u16(struct cursor *c, uint16_t *v)
{
	const unsigned char *p;

	if (!cur_take(c, 2, &p))
		return false;
	*v = get_u16(p);
	return true;
}

static bool cur_u32(struct cursor *c, uint32_t *v)
{
	const unsigned char *p;

	if (!cur_take(c, 4, &p))
		return false;
	*v = get_u32(p);
	return true;
}

static bool cur_u64(struct cursor *c, uint64_t *v)
{
	const unsigned char *p;

	if (!cur_take(c, 8, &p))
		return false;
	*v = get_u64(p);
	return true;
}

static const char *ent_name(const struct zf_ptfile *pf,
			    const struct pt_entry *e)
{
	return pf->names + e->name;
}

static bool is_encrypted(const struct pt_entry *e)
{
	return (e->flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION)) != 0;
}

/*
 * Finds the classic end record (its comment must reach the end of the
 * file exactly), then the zip64 locator and record when present.
 */
static int read_end(const struct zf_ptfile *pf, struct pt_cdir *cd,
		    struct zf_error *err)
{
	unsigned char *tail = NULL;
	unsigned char loc[LOCATOR64_LEN], rec[EOCD64_LEN];
	uint64_t tail_len, tail_off, eocd = 0, end;
	uint16_t disk, cd_disk, n_disk, n_total;
	uint32_t cd_size, cd_off;
	const unsigned char *e = NULL;
	size_t i;
	int rc;

	if (pf->size < EOCD_LEN)
		return zf_fail(err, ZF_EFORMAT,
			       "not a zip file: %llu bytes, too short for an end of central directory record",
			       (unsigned long long)pf->size);
	/* The last 4 KiB first: torch writes no archive comment, so the end
	 * record is there, and thousands of rank files are opened at once;
	 * the whole 64 KiB a comment may take only when it is not. */
	for (uint64_t want = 4096;; want = EOCD_LEN + MAX_COMMENT) {
		tail_len = pf->size < want ? pf->size : want;
		tail_off = pf->size - tail_len;
		free(tail);
		tail = malloc(tail_len);
		if (!tail)
			return zf_fail(err, ZF_ENOMEM, "out of memory");
		rc = zf_source_pread(pf->src, tail, tail_len, tail_off, err);
		if (rc)
			goto out;
		for (i = tail_len - EOCD_LEN + 1; i-- > 0;) {
			if (get_u32(tail + i) == SIG_EOCD &&
			    i + EOCD_LEN + get_u16(tail + i + 20) == tail_len) {
				e = tail + i;
				eocd = tail_off + i;
				break;
			}
		}
		if (e || tail_len == pf->size || want > 4096)
			break;
	}
	if (!e) {
		rc = zf_fail(err, ZF_EFORMAT,
			     "not a zip file or truncated: no end of central directory record in the last %llu bytes",
			     (unsigned long long)tail_len);
		goto out;
	}
	disk = get_u16(e + 4);
	cd_disk = get_u16(e + 6);
	n_disk = get_u16(e + 8);
	n_total = get_u16(e + 10);
	cd_size = get_u32(e + 12);
	cd_off = get_u32(e + 16);
	cd->offset = cd_off;
	cd->size = cd_size;
	cd->count = n_total;
	cd->limit = eocd;

	if (eocd >= LOCATOR64_LEN) {
		rc = zf_source_pread(pf->src, loc, sizeof(loc),
				   eocd - LOCATOR64_LEN, err);
		if (rc)
			goto out;
	}
	if (eocd < LOCATOR64_LEN || get_u32(loc) != SIG_LOCATOR64) {
		if (disk != 0 || cd_disk != 0 || n_disk != n_total) {
			rc = zf_fail(err, ZF_EUNSUPPORTED,
				     "multi-disk archives are not supported (disk %u, central directory on disk %u)",
				     disk, cd_disk);
			goto out;
		}
		if (cd_size == 0xffffffffu || cd_off == 0xffffffffu) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "end of central directory has zip64 markers (0xffffffff) but there is no zip64 locator");
			goto out;
		}
		goto out;
	}

	/* ZIP64: the locator says where the zip64 record is. */
	{
		uint32_t z64_disk = get_u32(loc + 4), n_disks = get_u32(loc + 16);
		uint64_t z64 = get_u64(loc + 8), loc_off = eocd - LOCATOR64_LEN;
		uint64_t rec_size;

		if (z64_disk != 0 || n_disks > 1) {
			rc = zf_fail(err, ZF_EUNSUPPORTED,
				     "multi-disk archives are not supported (zip64 locator: disk %u of %u)",
				     z64_disk, n_disks);
			goto out;
		}
		if (z64 >= pf->size) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "zip64 end of central directory offset %llu is past the end of the file (%llu bytes)",
				     (unsigned long long)z64,
				     (unsigned long long)pf->size);
			goto out;
		}
		if (add_overflows(z64, EOCD64_LEN, &end) || end > loc_off) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "zip64 end of central directory at offset %llu runs into its locator at %llu",
				     (unsigned long long)z64,
				     (unsigned long long)loc_off);
			goto out;
		}
		rc = zf_source_pread(pf->src, rec, sizeof(rec), z64, err);
		if (rc)
			goto out;
		if (get_u32(rec) != SIG_EOCD64) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "bad zip64 end of central directory signature 0x%08x at offset %llu",
				     get_u32(rec), (unsigned long long)z64);
			goto out;
		}
		rec_size = get_u64(rec + 4);
		if (rec_size < EOCD64_LEN - 12 ||
		    add_overflows(z64 + 12, rec_size, &end) || end > loc_off) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "zip64 end of central directory at offset %llu has a bad size %llu",
				     (unsigned long long)z64,
				     (unsigned long long)rec_size);
			goto out;
		}
		if (get_u32(rec + 16) != 0 || get_u32(rec + 20) != 0 ||
		    get_u64(rec + 24) != get_u64(rec + 32)) {
			rc = zf_fail(err, ZF_EUNSUPPORTED,
				     "multi-disk archives are not supported (zip64 record: disk %u, central directory on disk %u)",
				     get_u32(rec + 16), get_u32(rec + 20));
			goto out;
		}
		/* Classic fields that are not the 0xff.. marker must agree. */
		if ((n_total != 0xffffu && n_total != get_u64(rec + 32)) ||
		    (cd_size != 0xffffffffu && cd_size != get_u64(rec + 40)) ||
		    (cd_off != 0xffffffffu && cd_off != get_u64(rec + 48))) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "end of central directory records disagree: %u entries, %u bytes at %u vs. zip64 %llu entries, %llu bytes at %llu",
				     n_total, cd_size, cd_off,
				     (unsigned long long)get_u64(rec + 32),
				     (unsigned long long)get_u64(rec + 40),
				     (unsigned long long)get_u64(rec + 48));
			goto out;
		}
		cd->count = get_u64(rec + 32);
		cd->size = get_u64(rec + 40);
		cd->offset = get_u64(rec + 48);
		cd->limit = z64;
	}
out:
	free(tail);
	return rc;
}

/* Reads the zip64 extra field (0x0001): only the fields whose 32-bit
 * versions hold the 0xff.. marker are present, in this order. */
static int read_zip64_extra(const char *name, const unsigned char *extra,
			    uint16_t len, struct pt_entry *e, bool big_usize,
			    bool big_csize, bool big_off, bool big_disk,
			    struct zf_error *err)
{
	struct cursor c = { extra, len };
	bool found = false;

	while (c.left >= 4) {
		uint16_t id, n;
		const unsigned char *data;
		struct cursor f;

		cur_u16(&c, &id);
		cur_u16(&c, &n);
		if (!cur_take(&c, n, &data))
			return zf_fail(err, ZF_EFORMAT,
				       "entry '%s': extra field 0x%04x of %u bytes runs past the end of its %u-byte extra data",
				       name, id, n, len);
		if (id != EXTRA_ZIP64 || found)
			continue;
		found = true;
		f.p = data;
		f.left = n;
		if ((big_usize && !cur_u64(&f, &e->usize)) ||
		    (big_csize && !cur_u64(&f, &e->csize)) ||
		    (big_off && !cur_u64(&f, &e->lh_offset)) ||
		    (big_disk && f.left < 4))
			return zf_fail(err, ZF_EFORMAT,
				       "entry '%s': zip64 extra field of %u bytes is too short",
				       name, n);
		if (big_disk) {
			uint32_t disk;

			cur_u32(&f, &disk);
			if (disk != 0)
				return zf_fail(err, ZF_EUNSUPPORTED,
					       "entry '%s' is on disk %u; multi-disk archives are not supported",
					       name, disk);
		}
	}
	if (!found && (big_usize || big_csize || big_off || big_disk))
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s': central directory has 0xffffffff markers but no zip64 extra field",
			       name);
	return ZF_OK;
}

/* Walks the central directory into pf->ent and pf->names. */
static int read_cdir(struct zf_ptfile *pf, const struct pt_cdir *cd,
		     struct zf_error *err)
{
	unsigned char *buf = NULL;
	struct cursor c;
	uint64_t end;
	size_t i, used = 0;
	int rc = ZF_OK;

	if (cd->offset > pf->size)
		return zf_fail(err, ZF_EFORMAT,
			       "central directory offset %llu is past the end of the file (%llu bytes)",
			       (unsigned long long)cd->offset,
			       (unsigned long long)pf->size);
	if (add_overflows(cd->offset, cd->size, &end) || end > cd->limit)
		return zf_fail(err, ZF_EFORMAT,
			       "central directory at offset %llu, %llu bytes, runs past its end record at %llu",
			       (unsigned long long)cd->offset,
			       (unsigned long long)cd->size,
			       (unsigned long long)cd->limit);
	if (cd->count > cd->size / CENTRAL_LEN)
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

	c.p = buf;
	c.left = (size_t)cd->size;
	for (i = 0; i < cd->count; i++) {
		struct pt_entry *e = &pf->ent[i];
		const unsigned char *h, *name, *extra, *comment;
		uint16_t name_len, extra_len, comment_len, disk;
		uint32_t csize, usize, off;
		uint64_t at = cd->offset + (cd->size - c.left);
		char *dst;

		if (!cur_take(&c, CENTRAL_LEN, &h)) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "central directory entry %zu at offset %llu is truncated",
				     i, (unsigned long long)at);
			goto out;
		}
		if (get_u32(h) != SIG_CENTRAL) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "central directory entry %zu at offset %llu has a bad signature 0x%08x",
				     i, (unsigned long long)at, get_u32(h));
			goto out;
		}
		e->flags = get_u16(h + 8);
		e->method = get_u16(h + 10);
		e->crc32 = get_u32(h + 16);
		csize = get_u32(h + 20);
		usize = get_u32(h + 24);
		name_len = get_u16(h + 28);
		extra_len = get_u16(h + 30);
		comment_len = get_u16(h + 32);
		disk = get_u16(h + 34);
		off = get_u32(h + 42);
		if (!cur_take(&c, name_len, &name) ||
		    !cur_take(&c, extra_len, &extra) ||
		    !cur_take(&c, comment_len, &comment)) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "central directory entry %zu at offset %llu runs past the end of the directory",
				     i, (unsigned long long)at);
			goto out;
		}
		if (name_len == 0 || memchr(name, '\0', name_len)) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "central directory entry %zu at offset %llu has an empty name or one with a NUL byte",
				     i, (unsigned long long)at);
			goto out;
		}
		dst = pf->names + used;
		memcpy(dst, name, name_len);
		dst[name_len] = '\0';
		e->name = used;
		e->name_len = name_len;
		used += (size_t)name_len + 1;
		e->csize = csize;
		e->usize = usize;
		e->lh_offset = off;
		e->data_offset = UINT64_MAX;
		rc = read_zip64_extra(dst, extra, extra_len, e,
				      usize == 0xffffffffu,
				      csize == 0xffffffffu,
				      off == 0xffffffffu, disk == 0xffffu, err);
		if (rc)
			goto out;
		if (disk != 0 && disk != 0xffffu) {
			rc = zf_fail(err, ZF_EUNSUPPORTED,
				     "entry '%s' is on disk %u; multi-disk archives are not supported",
				     dst, disk);
			goto out;
		}
		if (e->method == 0 && !is_encrypted(e) && e->csize != e->usize) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "entry '%s' is stored but its sizes differ: %llu bytes in the file, %llu uncompressed",
				     dst, (unsigned long long)e->csize,
				     (unsigned long long)e->usize);
			goto out;
		}
		if (e->lh_offset >= cd->offset) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "entry '%s': local header offset %llu is not before the central directory at %llu",
				     dst, (unsigned long long)e->lh_offset,
				     (unsigned long long)cd->offset);
			goto out;
		}
	}
	if (c.left != 0)
		rc = zf_fail(err, ZF_EFORMAT,
			     "central directory has %zu bytes after its %llu entries",
			     c.left, (unsigned long long)cd->count);
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

/*
 * Finds the one data.pkl and the prefix before it, refuses duplicate
 * names, and indexes the storage records <prefix>data/<key> by key.
 */
static int index_entries(struct zf_ptfile *pf, size_t *pickle,
			 struct zf_error *err)
{
	static const char pkl[] = "data.pkl";
	const size_t pkl_len = sizeof(pkl) - 1;
	struct pt_key *all = NULL;
	size_t i, found = SIZE_MAX;
	int rc = ZF_OK;

	for (i = 0; i < pf->count; i++) {
		const struct pt_entry *e = &pf->ent[i];
		const char *name = ent_name(pf, e);
		size_t len = e->name_len;

		if (len < pkl_len || strcmp(name + len - pkl_len, pkl) != 0 ||
		    (len > pkl_len && name[len - pkl_len - 1] != '/'))
			continue;
		if (found != SIZE_MAX)
			return zf_fail(err, ZF_EFORMAT,
				       "two pickles in one file: '%s' and '%s'",
				       ent_name(pf, &pf->ent[found]), name);
		found = i;
	}
	if (found == SIZE_MAX)
		return zf_fail(err, ZF_EFORMAT,
			       "no 'data.pkl' entry in %zu zip entries; not a torch.save file",
			       pf->count);
	*pickle = found;
	pf->pickle_idx = found;
	pf->prefix_len = pf->ent[found].name_len - pkl_len;

	all = calloc(pf->count + 1, sizeof(*all));
	pf->records = calloc(pf->count + 1, sizeof(*pf->records));
	if (!all || !pf->records) {
		rc = zf_fail(err, ZF_ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < pf->count; i++) {
		const struct pt_entry *e = &pf->ent[i];
		const char *name = ent_name(pf, e);
		uint64_t end;

		/* Local headers are read only for records that are used, but
		 * every entry must at least fit before the central directory:
		 * a damaged file is refused whole, as torch.load would. */
		if (add_overflows(e->lh_offset, LOCAL_LEN + (uint64_t)e->name_len, &end) ||
		    add_overflows(end, e->csize, &end) || end > pf->cd_offset) {
			rc = zf_fail(err, ZF_EFORMAT,
				     "entry '%s': %llu bytes at local header offset %llu run past the end of the data (the central directory starts at %llu)",
				     name, (unsigned long long)e->csize,
				     (unsigned long long)e->lh_offset,
				     (unsigned long long)pf->cd_offset);
			goto out;
		}
		all[i].key = name;
		all[i].idx = i;
		if (pf->ent[i].name_len <= pf->prefix_len + 5 ||
		    memcmp(name, ent_name(pf, &pf->ent[found]),
			   pf->prefix_len) != 0 ||
		    memcmp(name + pf->prefix_len, "data/", 5) != 0 ||
		    strchr(name + pf->prefix_len + 5, '/'))
			continue;
		pf->records[pf->n_records].key = name + pf->prefix_len + 5;
		pf->records[pf->n_records].idx = i;
		pf->n_records++;
	}
	qsort(all, pf->count, sizeof(*all), key_cmp);
	for (i = 1; i < pf->count; i++) {
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
	if (is_encrypted(e))
		return zf_fail(err, ZF_EUNSUPPORTED,
			       "entry '%s' is encrypted (flags 0x%04x, method %u); zerofs needs plain stored records",
			       ent_name(pf, e), e->flags, e->method);
	if (e->method != 0)
		return zf_fail(err, ZF_EUNSUPPORTED,
			       "entry '%s' is compressed (method %u); zerofs needs stored records",
			       ent_name(pf, e), e->method);
	return ZF_OK;
}

/*
 * Reads entry e's local header and sets its data offset: local header
 * offset + 30 + name length + *local* extra length. The data must end
 * before the central directory.
 */
static int locate(const struct zf_ptfile *pf, struct pt_entry *e,
		  unsigned char *buf, struct zf_error *err)
{
	const char *name = ent_name(pf, e);
	uint64_t hdr_end, data, end;
	uint16_t name_len, method;
	int rc;

	if (add_overflows(e->lh_offset, LOCAL_LEN + (uint64_t)e->name_len,
			  &hdr_end) ||
	    hdr_end > pf->size)
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s': local header at offset %llu runs past the end of the file (%llu bytes)",
			       name, (unsigned long long)e->lh_offset,
			       (unsigned long long)pf->size);
	rc = zf_source_pread(pf->src, buf, LOCAL_LEN + (size_t)e->name_len,
			   e->lh_offset, err);
	if (rc)
		return rc;
	if (get_u32(buf) != SIG_LOCAL)
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s': bad local header signature 0x%08x at offset %llu",
			       name, get_u32(buf),
			       (unsigned long long)e->lh_offset);
	method = get_u16(buf + 8);
	name_len = get_u16(buf + 26);
	if (name_len != e->name_len ||
	    memcmp(buf + LOCAL_LEN, name, name_len) != 0)
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s': local header at offset %llu names '%.*s' (%u bytes)",
			       name, (unsigned long long)e->lh_offset,
			       name_len <= e->name_len ? (int)name_len :
							 (int)e->name_len,
			       (const char *)buf + LOCAL_LEN, name_len);
	if (method != e->method)
		return zf_fail(err, ZF_EFORMAT,
			       "entry '%s': local header says method %u, central directory says %u",
			       name, method, e->method);
	data = hdr_end + get_u16(buf + 28);
	if (add_overflows(data, e->csize, &end) || end > pf->size)
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

/* Locates data.pkl, byteorder and every stored storage record. */
static int locate_needed(struct zf_ptfile *pf, size_t pickle,
			 size_t *byteorder, struct zf_error *err)
{
	unsigned char *buf;
	size_t i;
	int rc;

	buf = malloc(LOCAL_LEN + 0xffff);
	if (!buf)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	*byteorder = SIZE_MAX;
	rc = check_stored(pf, &pf->ent[pickle], err);
	if (!rc)
		rc = locate(pf, &pf->ent[pickle], buf, err);
	for (i = 0; !rc && i < pf->count; i++) {
		const char *name = ent_name(pf, &pf->ent[i]);

		if (pf->ent[i].name_len == pf->prefix_len + 9 &&
		    strncmp(name, ent_name(pf, &pf->ent[pickle]),
			    pf->prefix_len) == 0 &&
		    strcmp(name + pf->prefix_len, "byteorder") == 0) {
			*byteorder = i;
			rc = check_stored(pf, &pf->ent[i], err);
			if (!rc)
				rc = locate(pf, &pf->ent[i], buf, err);
		}
	}
	/* Storage records are located when asked for (zf_ptfile_record):
	 * a model states file holds thousands of records a mount never
	 * reads, one local header read each. */
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
			       ent_name(pf, e), (unsigned long long)e->usize);
	rc = zf_source_pread(pf->src, buf, (size_t)e->usize, e->data_offset, err);
	if (rc)
		return rc;
	buf[e->usize] = '\0';
	if (strcmp(buf, "little") == 0)
		return ZF_OK;
	if (strcmp(buf, "big") == 0)
		return zf_fail(err, ZF_EUNSUPPORTED,
			       "entry '%s' says the data is big-endian; zerofs reads little-endian files only",
			       ent_name(pf, e));
	return zf_fail(err, ZF_EFORMAT,
		       "entry '%s' holds '%.*s', expected 'little' or 'big'",
		       ent_name(pf, e), (int)e->usize, buf);
}

static int load_pickle(struct zf_ptfile *pf, size_t idx, struct zf_error *err)
{
	const struct pt_entry *e = &pf->ent[idx];

	if (e->usize > ZF_PTFILE_MAX_PICKLE)
		return zf_fail(err, ZF_ENOMEM,
			       "entry '%s' is %llu bytes (at most %llu)",
			       ent_name(pf, e), (unsigned long long)e->usize,
			       (unsigned long long)ZF_PTFILE_MAX_PICKLE);
	pf->pickle = malloc((size_t)e->usize + 1);
	if (!pf->pickle)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	pf->pickle_len = (size_t)e->usize;
	return zf_source_pread(pf->src, pf->pickle, pf->pickle_len,
			     e->data_offset, err);
}

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

	if (pf->legacy)
		return zf_fail_at(err, ZF_EUNSUPPORTED, zf_source_path(pf->src),
				  "torch's legacy format: no zip directory for libzip to cross-check (its records were found and bounded at open)");
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
		const char *name = ent_name(pf, e);
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
		    enc != is_encrypted(e)) {
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

void zf_ptfile_pickle_record(const struct zf_ptfile *pf, struct zf_record *rec)
{
	const struct pt_entry *e;

	if (pf->legacy) {
		zf_ptlegacy_pickle(pf->legacy, &rec->offset, &rec->size);
		rec->crc32 = 0;
		return;
	}
	e = &pf->ent[pf->pickle_idx];

	rec->offset = e->data_offset;
	rec->size = e->usize;
	rec->crc32 = e->crc32;
}

int zf_ptfile_load_pickle(struct zf_ptfile *pf, struct zf_error *err)
{
	int rc;

	if (pf->pickle)
		return ZF_OK;
	if (pf->legacy)
		rc = zf_ptlegacy_read_pickle(pf->legacy, &pf->pickle, &pf->pickle_len, err);
	else
		rc = load_pickle(pf, pf->pickle_idx, err);
	if (rc) {
		free(pf->pickle);
		pf->pickle = NULL;
		pf->pickle_len = 0;
		zf_error_where(err, zf_source_path(pf->src));
	}
	return rc;
}

/* Opens pf as a legacy torch file when its first bytes say it is one;
 * leaves pf->legacy NULL for anything else. */
static int open_legacy(struct zf_ptfile *pf, unsigned flags, struct zf_error *err)
{
	unsigned char head[16];
	int rc;

	if (pf->size < sizeof(head))
		return ZF_OK;
	rc = zf_source_pread(pf->src, head, sizeof(head), 0, err);
	if (rc || !zf_ptlegacy_sniff(head, sizeof(head)))
		return rc;
	rc = zf_ptlegacy_open(pf->src, &pf->legacy, err);
	if (!rc && !(flags & ZF_PTFILE_LAZY_PICKLE))
		rc = zf_ptlegacy_read_pickle(pf->legacy, &pf->pickle, &pf->pickle_len, err);
	return rc;
}

int zf_ptfile_open(struct zf_source *src, unsigned flags,
		   struct zf_ptfile **out, struct zf_error *err)
{
	struct zf_ptfile *pf;
	struct pt_cdir cd = { 0 };
	size_t pickle = 0, byteorder = SIZE_MAX;
	int rc;

	*out = NULL;
	pf = calloc(1, sizeof(*pf));
	if (!pf)
		return zf_fail(err, ZF_ENOMEM, "out of memory");
	pf->src = src;
	pf->size = zf_source_size(src);
	rc = open_legacy(pf, flags, err);
	if (rc || pf->legacy) {
		if (rc) {
			zf_error_where(err, zf_source_path(src));
			zf_ptfile_close(pf);
			return rc;
		}
		*out = pf;
		return ZF_OK;
	}
	rc = read_end(pf, &cd, err);
	if (!rc)
		rc = read_cdir(pf, &cd, err);
	if (!rc)
		rc = index_entries(pf, &pickle, err);
	if (!rc)
		rc = locate_needed(pf, pickle, &byteorder, err);
	if (!rc)
		rc = check_byteorder(pf, byteorder, err);
	if (!rc && !(flags & ZF_PTFILE_LAZY_PICKLE))
		rc = load_pickle(pf, pickle, err);
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
	zf_ptlegacy_close(pf->legacy);
	free(pf->ent);
	free(pf->names);
	free(pf->records);
	free(pf->pickle);
	free(pf);
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

int zf_ptfile_record(const struct zf_ptfile *pf, const char *key,
		     struct zf_record *rec, struct zf_error *err)
{
	const struct pt_key want = { key, 0 };
	const struct pt_key *k;
	const struct pt_entry *e;
	int rc;

	if (!key) {
		rc = zf_fail(err, ZF_EUSAGE, "no record key given");
		goto out;
	}
	if (pf->legacy) {
		struct zf_ptlegacy_record r;

		rc = zf_ptlegacy_record(pf->legacy, key, &r, err);
		if (!rc) {
			rec->offset = r.offset;
			rec->size = r.size;
			rec->crc32 = 0;
		}
		goto out;
	}
	k = bsearch(&want, pf->records, pf->n_records, sizeof(*pf->records),
		    key_cmp);
	if (!k) {
		rc = zf_fail(err, ZF_EFORMAT, "no record '%.*sdata/%s'",
			     (int)pf->prefix_len,
			     ent_name(pf, &pf->ent[pf->pickle_idx]), key);
		goto out;
	}
	e = &pf->ent[k->idx];
	rc = check_stored(pf, e, err);
	if (rc)
		goto out;
	{
		/* A copy: pf stays read-only, so threads may share it. */
		struct pt_entry located = *e;
		unsigned char buf[LOCAL_LEN + 0xffff];

		rc = locate(pf, &located, buf, err);
		if (rc)
			goto out;
		rec->offset = located.data_offset;
	}
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

bool zf_ptfile_is_legacy(const struct zf_ptfile *pf)
{
	return pf->legacy != NULL;
}

int zf_ptfile_bind(struct zf_ptfile *pf, const struct zf_pickle *pk,
		   struct zf_error *err)
{
	int rc;

	if (!pf->legacy)
		return ZF_OK;
	rc = zf_ptlegacy_bind(pf->legacy, pk, err);
	zf_error_where(err, zf_source_path(pf->src));
	return rc;
}

size_t zf_ptfile_count(const struct zf_ptfile *pf)
{
	return pf->legacy ? zf_ptlegacy_count(pf->legacy) : pf->count;
}

const char *zf_ptfile_entry_name(const struct zf_ptfile *pf, size_t i)
{
	if (i >= zf_ptfile_count(pf))
		return NULL;
	return pf->legacy ? zf_ptlegacy_key(pf->legacy, i) : ent_name(pf, &pf->ent[i]);
}

int zf_ptfile_entry(const struct zf_ptfile *pf, size_t i,
		    struct zf_ptfile_entry *out)
{
	const struct pt_entry *e;

	if (i >= zf_ptfile_count(pf))
		return ZF_EUSAGE;
	if (pf->legacy) {
		/* Its storage records, by key: no sizes or CRCs before bind. */
		memset(out, 0, sizeof(*out));
		out->name = zf_ptlegacy_key(pf->legacy, i);
		out->local_offset = out->data_offset = UINT64_MAX;
		return ZF_OK;
	}
	e = &pf->ent[i];
	out->name = ent_name(pf, e);
	out->size = e->usize;
	out->csize = e->csize;
	out->crc32 = e->crc32;
	out->method = e->method;
	out->flags = e->flags;
	out->local_offset = e->lh_offset;
	out->data_offset = e->data_offset;
	return ZF_OK;
}

/* Reads entry i through libzip (which checks the CRC at the end) and, when
 * zerofs serves it, compares every chunk with the bytes at our offset. */
static int check_one(const struct zf_ptfile *pf, zip_t *za, size_t i,
		     unsigned char *buf, unsigned char *ours,
		     struct zf_error *err)
{
	struct pt_entry located = pf->ent[i];
	const struct pt_entry *e = &located;
	const char *name = ent_name(pf, e);
	zip_file_t *zf;
	uint64_t done = 0;
	int rc = ZF_OK;

	/* Records served are compared at the offset zerofs reads them from. */
	if (e->data_offset == UINT64_MAX && e->method == 0 && !is_encrypted(e)) {
		unsigned char hdr[LOCAL_LEN + 0xffff];

		rc = locate(pf, &located, hdr, err);
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

	if (pf->legacy)
		return zf_fail_at(err, ZF_EUNSUPPORTED, zf_source_path(pf->src),
				  "torch's legacy format: no CRC-32s to check (every record's length was checked at open)");

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
		if (pf->ent[i].method == 0 && !is_encrypted(&pf->ent[i]))
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

/* Whether name is "data.pkl" or ends in "/data.pkl". */
static bool is_pickle_name(const char *name, size_t len)
{
	static const char pkl[] = "data.pkl";
	const size_t n = sizeof(pkl) - 1;

	return len >= n && !memcmp(name + len - n, pkl, n) &&
	       (len == n || name[len - n - 1] == '/');
}

/*
 * The end records of src, read from its last bytes only: the classic end
 * record with no comment, and the zip64 locator and record right before
 * it when there are. *count is the number of entries; false when the tail
 * is not shaped so or the directory does not end where they start.
 */
static int tail_count(struct zf_source *src, uint64_t size, uint64_t *count,
		      bool *ok, struct zf_error *err)
{
	unsigned char t[EOCD64_LEN + LOCATOR64_LEN + EOCD_LEN];
	size_t len = size < sizeof(t) ? (size_t)size : sizeof(t);
	const unsigned char *e = t + len - EOCD_LEN, *loc = e - LOCATOR64_LEN;
	uint64_t cd_end;
	int rc;

	*ok = false;
	rc = zf_source_pread(src, t, len, size - len, err);
	if (rc)
		return rc;
	if (get_u32(e) != SIG_EOCD || get_u16(e + 20) != 0)
		return ZF_OK;
	if (len == sizeof(t) && get_u32(loc) == SIG_LOCATOR64) {
		const unsigned char *rec = t;

		if (get_u64(loc + 8) != size - sizeof(t) || get_u32(rec) != SIG_EOCD64)
			return ZF_OK;
		*count = get_u64(rec + 32);
		if (add_overflows(get_u64(rec + 48), get_u64(rec + 40), &cd_end) ||
		    cd_end != size - sizeof(t))
			return ZF_OK;
	} else {
		*count = get_u16(e + 10);
		cd_end = (uint64_t)get_u32(e + 16) + get_u32(e + 12);
		if (cd_end != size - EOCD_LEN)
			return ZF_OK;
	}
	*ok = true;
	return ZF_OK;
}

int zf_ptfile_same_head(const struct zf_ptfile *tmpl, struct zf_source *src,
			bool *same, struct zf_error *err)
{
	const struct pt_entry *e;
	uint64_t size = zf_source_size(src), data, end, count;
	unsigned char h[LOCAL_LEN], d[24];
	char name[512];
	uint16_t flags, name_len;
	uint32_t crc;
	bool ok;
	int rc;

	*same = false;
	if (tmpl->legacy)
		return ZF_OK;
	e = &tmpl->ent[tmpl->pickle_idx];
	if (e->lh_offset != 0 || e->method != 0 || is_encrypted(e) ||
	    size < LOCAL_LEN + EOCD_LEN)
		return ZF_OK;
	rc = zf_source_pread(src, h, LOCAL_LEN, 0, err);
	if (rc)
		return rc;
	flags = get_u16(h + 6);
	name_len = get_u16(h + 26);
	if (get_u32(h) != SIG_LOCAL || get_u16(h + 8) != 0 || flags != e->flags ||
	    (flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION)) ||
	    name_len > sizeof(name))
		return ZF_OK;
	data = LOCAL_LEN + (uint64_t)name_len + get_u16(h + 28);
	if (add_overflows(data, e->usize, &end) || end > size)
		return ZF_OK;
	rc = zf_source_pread(src, name, name_len, LOCAL_LEN, err);
	if (rc)
		return rc;
	if (!is_pickle_name(name, name_len))
		return ZF_OK;
	if (flags & 0x0008u) {
		/* Sizes and CRC follow the data: [signature] crc, then 32-
		 * or 64-bit sizes. */
		size_t len = size - end < sizeof(d) ? (size_t)(size - end) : sizeof(d);
		size_t at = 0;

		rc = zf_source_pread(src, d, len, end, err);
		if (rc)
			return rc;
		if (len >= 4 && get_u32(d) == 0x08074b50u)
			at = 4;
		if (len < at + 12)
			return ZF_OK;
		crc = get_u32(d + at);
		if (!((get_u32(d + at + 4) == e->csize && get_u32(d + at + 8) == e->usize) ||
		      (len >= at + 20 && get_u64(d + at + 4) == e->csize &&
		       get_u64(d + at + 12) == e->usize)))
			return ZF_OK;
	} else {
		crc = get_u32(h + 14);
		if (get_u32(h + 18) != e->csize || get_u32(h + 22) != e->usize)
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
