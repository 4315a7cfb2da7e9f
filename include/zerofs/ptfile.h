/* SPDX-License-Identifier: MIT */
/**
 * @file ptfile.h
 * A torch.save() file in torch's zip format (its default since 1.6): a
 * zip whose records are stored uncompressed. container.h reads either of
 * torch's formats; this is the zip one.
 *
 * Opening reads the central directory itself (ZIP64 included: real
 * optimizer files are far over 4 GiB; libzip 1.7 has no call that gives
 * an entry's data offset, and zf_ptfile_cross_check() lets libzip read the
 * same directory independently: core/ptfile_check.c), finds the record prefix from the entry that
 * ends in "/data.pkl" and loads that pickle into memory. A storage
 * record's absolute data offset is computed from its *local* header (the
 * local extra field torch uses for 64-byte alignment differs from the
 * central one) when zf_ptfile_record() asks for it: a model states file
 * holds thousands of records a mount never reads. Every offset and length
 * is checked against the file size; compressed or encrypted records are
 * refused when they are needed.
 *
 * Every byte is read through a struct zf_source (source.h), which checks
 * after each read that the file is still the one opened. A ptfile keeps
 * the zip directory in memory; callers that only serve bytes keep the
 * record offsets they need and close it.
 */
#ifndef ZEROFS_PTFILE_H
#define ZEROFS_PTFILE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "zerofs/error.h"
#include "zerofs/source.h"

/* Largest data.pkl zerofs loads into memory. */
#define ZF_PTFILE_MAX_PICKLE ((uint64_t)1 << 30)

/* Most zip entries, and largest central directory in bytes, read from one
 * file (real checkpoints have thousands of entries, a few hundred KiB). */
#define ZF_PTFILE_MAX_ENTRIES ((uint64_t)1 << 20)
#define ZF_PTFILE_MAX_CDIR ((uint64_t)256 << 20)

/* Where one record's bytes are. */
struct zf_record {
	uint64_t offset; /* absolute offset of the first data byte in the file */
	uint64_t size;	 /* bytes (uncompressed == stored) */
	uint32_t crc32;	 /* from the central directory */
};

struct zf_ptfile;

/* zf_ptfile_open() flag: do not read data.pkl at open (see
 * zf_ptfile_load_pickle), for callers that open many files and parse
 * them one at a time, or not at all. */
#define ZF_PTFILE_LAZY_PICKLE 1u

/*
 * Reads and validates the zip of src. src is borrowed: it must outlive the
 * ptfile, which never closes it. On success *out owns the zip directory
 * and (unless ZF_PTFILE_LAZY_PICKLE) the pickle bytes. Errors name the
 * file in err->where: ZF_EIO (a read failed), ZF_ECHANGED (the file
 * changed while read), ZF_EFORMAT (not a zip, truncated, offsets past the
 * end, no data.pkl, ...), ZF_EUNSUPPORTED (data.pkl compressed or
 * encrypted, multi-disk archive), ZF_ENOMEM.
 */
int zf_ptfile_open(struct zf_source *src, unsigned flags,
		   struct zf_ptfile **out, struct zf_error *err);

/* The same over a file named by path, for tests and tools: the ptfile
 * opens its own source and closes it with itself. Errors as above, and
 * those of zf_source_open(). */
int zf_ptfile_open_path(const char *path, unsigned flags,
			struct zf_ptfile **out, struct zf_error *err);

/* Where data.pkl's bytes are in the file (located and checked at open). */
void zf_ptfile_pickle_record(const struct zf_ptfile *pf, struct zf_record *rec);

/* Reads data.pkl into memory if it is not there (after a lazy open or
 * zf_ptfile_drop_pickle). Not safe to call on one pf from two threads. */
int zf_ptfile_load_pickle(struct zf_ptfile *pf, struct zf_error *err);

/* Frees the ptfile (and its source, when it opened it); NULL is a no-op. */
void zf_ptfile_close(struct zf_ptfile *pf);

/* Frees the data.pkl bytes once parsed (a big model's are megabytes per
 * rank); zf_ptfile_pickle() then gives NULL and length 0. */
void zf_ptfile_drop_pickle(struct zf_ptfile *pf);

/* The data.pkl bytes, borrowed until zf_ptfile_drop_pickle() or close. */
const unsigned char *zf_ptfile_pickle(const struct zf_ptfile *pf,
				      size_t *len);

/*
 * Finds the storage record data/<key>. Errors: ZF_EFORMAT when it does not
 * exist ("no record 'data/7'"), ZF_EUNSUPPORTED when it is compressed or
 * encrypted. The message names the entry; err->where names the file.
 */
int zf_ptfile_record(const struct zf_ptfile *pf, const char *key,
		     struct zf_record *rec, struct zf_error *err);

/*
 * The size in bytes of storage record data/<key>, from the central
 * directory alone (no read). ZF_EFORMAT ("no record 'data/7'", err->where
 * naming the file) when there is none.
 */
int zf_ptfile_record_size(const struct zf_ptfile *pf, const char *key,
			  uint64_t *size, struct zf_error *err);

/* The source's path, borrowed. */
const char *zf_ptfile_path(const struct zf_ptfile *pf);

/* The source the ptfile reads, borrowed (or owned by pf, see
 * zf_ptfile_open_path()). */
struct zf_source *zf_ptfile_source(const struct zf_ptfile *pf);

/* File size in bytes at open time. */
uint64_t zf_ptfile_size(const struct zf_ptfile *pf);

/* Number of zip entries, and entry i's full name / size / method, for
 * verify and tests. i must be < zf_ptfile_count(). */
size_t zf_ptfile_count(const struct zf_ptfile *pf);
const char *zf_ptfile_entry_name(const struct zf_ptfile *pf, size_t i);

/* What the central directory says about one entry. */
struct zf_ptfile_entry {
	const char *name;      /* full name, borrowed for the life of pf */
	uint64_t size;	       /* bytes, uncompressed */
	uint64_t csize;	       /* bytes in the file */
	uint32_t crc32;
	uint16_t method;       /* 0 stored, 8 deflate, ... */
	uint16_t flags;	       /* general purpose bit flags */
	uint64_t local_offset; /* absolute offset of the local header */
	uint64_t data_offset;  /* absolute offset of the data for data.pkl and
				* byteorder; UINT64_MAX for the rest (storage
				* records are located by zf_ptfile_record) */
};

/* Fills *ent for entry i; ZF_EUSAGE (nothing filled) when i >= count. */
int zf_ptfile_entry(const struct zf_ptfile *pf, size_t i,
		    struct zf_ptfile_entry *ent);

/*
 * Whether src begins with the same data.pkl record as tmpl's (stored, the
 * same size and CRC-32 as recorded in its local header or in the data
 * descriptor after its data) and ends with end records for a directory of
 * as many entries, ending where they start. Judged from four small reads,
 * without the central directory: for the rank files torch.save writes,
 * where the pickle is the first record and ranks after the first write
 * the same one. *same false means "not shown to be the same": open the
 * file fully. Errors are the source's (ZF_EIO, ZF_ECHANGED).
 */
int zf_ptfile_same_head(const struct zf_ptfile *tmpl, struct zf_source *src,
			bool *same, struct zf_error *err);

/*
 * Opens the file a second time through libzip, an independent reader of
 * the same central directory, and checks that it sees the same entries:
 * names, sizes, methods, CRCs. Not done at open (it costs more than the
 * open itself on files with thousands of records); verify does it.
 * ZF_EFORMAT names the first entry the readers disagree on.
 */
int zf_ptfile_cross_check(const struct zf_ptfile *pf, struct zf_error *err);

/*
 * Reads every stored record through libzip and checks its CRC-32 against
 * the central directory (slow: reads all bytes). The records zerofs serves
 * are also compared byte for byte with pread() at their offsets, so a pass
 * means the served bytes are the ones any zip reader sees. ZF_EFORMAT
 * names the first bad entry.
 */
int zf_ptfile_check_crc(const struct zf_ptfile *pf, struct zf_error *err);

#endif /* ZEROFS_PTFILE_H */
