/* SPDX-License-Identifier: MIT */
/*
 * Private to the zip reader of torch.save() files (ptfile.c) and its
 * second opinion (ptfile_check.c, libzip and the CRC-32s): what the
 * central directory said about each entry, and where the fixed fields of
 * the zip structures are. man/zerofs-checkpoint.5 ("The zip container")
 * says which of them torch writes and how.
 */
#ifndef ZEROFS_PTFILE_I_H
#define ZEROFS_PTFILE_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zerofs/ptfile.h"

/* Signatures. */
#define ZIP_SIG_LOCAL 0x04034b50u
#define ZIP_SIG_CENTRAL 0x02014b50u
#define ZIP_SIG_DESCRIPTOR 0x08074b50u
#define ZIP_SIG_EOCD 0x06054b50u
#define ZIP_SIG_EOCD64 0x06064b50u
#define ZIP_SIG_LOCATOR64 0x07064b50u

/* Fixed-size parts of the structures, in bytes. */
#define ZIP_LOCAL_LEN 30
#define ZIP_CENTRAL_LEN 46
#define ZIP_EOCD_LEN 22
#define ZIP_EOCD64_LEN 56
#define ZIP_LOCATOR64_LEN 20
#define ZIP_MAX_COMMENT 0xffffu

/* Where each field is, from the start of its structure. */
enum zip_local_field {
	LOC_SIG = 0, LOC_FLAGS = 6, LOC_METHOD = 8, LOC_CRC = 14,
	LOC_CSIZE = 18, LOC_USIZE = 22, LOC_NAME_LEN = 26, LOC_EXTRA_LEN = 28,
};

enum zip_central_field {
	CEN_SIG = 0, CEN_FLAGS = 8, CEN_METHOD = 10, CEN_CRC = 16,
	CEN_CSIZE = 20, CEN_USIZE = 24, CEN_NAME_LEN = 28, CEN_EXTRA_LEN = 30,
	CEN_COMMENT_LEN = 32, CEN_DISK = 34, CEN_LOCAL_OFFSET = 42,
};

enum zip_eocd_field {
	EOCD_SIG = 0, EOCD_DISK = 4, EOCD_CD_DISK = 6, EOCD_DISK_ENTRIES = 8,
	EOCD_ENTRIES = 10, EOCD_CD_SIZE = 12, EOCD_CD_OFFSET = 16,
	EOCD_COMMENT_LEN = 20,
};

enum zip_locator64_field {
	LOC64_SIG = 0, LOC64_DISK = 4, LOC64_EOCD64 = 8, LOC64_DISKS = 16,
};

enum zip_eocd64_field {
	EOCD64_SIG = 0, EOCD64_SIZE = 4, EOCD64_DISK = 16, EOCD64_CD_DISK = 20,
	EOCD64_DISK_ENTRIES = 24, EOCD64_ENTRIES = 32, EOCD64_CD_SIZE = 40,
	EOCD64_CD_OFFSET = 48,
};

/* The ZIP64 extended information extra field. */
#define ZIP_EXTRA_ZIP64 0x0001u

/* General purpose flags. */
#define ZIP_FLAG_ENCRYPTED 0x0001u
#define ZIP_FLAG_DESCRIPTOR 0x0008u
#define ZIP_FLAG_STRONG_ENCRYPTION 0x0040u

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
};

static inline const char *zf_pt_name(const struct zf_ptfile *pf,
				     const struct pt_entry *e)
{
	return pf->names + e->name;
}

static inline bool zf_pt_encrypted(const struct pt_entry *e)
{
	return (e->flags & (ZIP_FLAG_ENCRYPTED | ZIP_FLAG_STRONG_ENCRYPTION)) != 0;
}

/* Bytes of a local header zf_pt_locate() reads: its fixed part and a
 * name of at most 64 KiB (the extra field is skipped, not read). */
#define ZIP_LOCAL_MAX (ZIP_LOCAL_LEN + (size_t)0xffff)

/*
 * Reads entry e's local header into buf (ZIP_LOCAL_MAX bytes) and sets
 * e->data_offset: local header offset + 30 + name length + the *local*
 * extra length. The data must end before the central directory.
 * ZF_EFORMAT (naming the entry) or the source's errors.
 */
int zf_pt_locate(const struct zf_ptfile *pf, struct pt_entry *e,
		 unsigned char *buf, struct zf_error *err);

#endif /* ZEROFS_PTFILE_I_H */
