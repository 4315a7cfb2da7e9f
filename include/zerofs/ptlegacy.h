/* SPDX-License-Identifier: MIT */
/**
 * @file ptlegacy.h
 * A torch.save() file in torch's legacy format: what
 * torch.save(obj, f, _use_new_zipfile_serialization=False) writes, and
 * DeepSpeed >= 0.17 with "checkpoint": {"checkpoint_serialization": false}
 * for every file of a checkpoint.
 *
 * The file is five pickles and then raw data, with no directory
 * (torch/serialization.py, _legacy_save and _legacy_load):
 *
 *   1. the magic number 0x1950a86a20f9469cfc6c, an int;
 *   2. the protocol version, the int 1001;
 *   3. sys_info, a dict (protocol_version, little_endian, type_sizes),
 *      which torch reads and ignores;
 *   4. the object saved (the "main" pickle): a storage is the persistent
 *      id ('storage', torch.XxxStorage, key, location, numel, None),
 *      where key is a decimal address;
 *   5. the list of the storage keys, sorted as strings;
 *   then, for each key in that list's order, one record: the storage's
 *   element count as an 8-byte little-endian integer, then that many
 *   elements of the storage class's size, little-endian, nothing between.
 *
 * Nothing records where the main pickle ends or how long a record is: the
 * pickle is scanned opcode by opcode (zf_pickle_scan, no values built),
 * and the records can only be walked with each storage's element size,
 * which the main pickle says. Hence two steps:
 *
 *   zf_ptlegacy_open()  reads and checks pickles 1-3 and 5, and finds the
 *                       main pickle's byte range (zf_ptlegacy_pickle);
 *   zf_ptlegacy_bind()  takes the caller's parse of the main pickle and
 *                       walks the records: every one must hold the count
 *                       the pickle gives its storage, lie inside the file,
 *                       and the last must end where the file ends; every
 *                       storage the pickle uses must have exactly one.
 *   zf_ptlegacy_record() then says where a storage's bytes are.
 *
 * Every length and offset is checked against the file's size before it
 * is used; counts are capped; each failure is one ZF_EFORMAT (or
 * ZF_EUNSUPPORTED) message saying what is wrong, with err->where naming
 * the file. The file is read through its struct zf_source, which the
 * caller keeps open for as long as the struct zf_ptlegacy lives.
 */
#ifndef ZEROFS_PTLEGACY_H
#define ZEROFS_PTLEGACY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zerofs/error.h"
#include "zerofs/pickle.h"
#include "zerofs/source.h"

/* Largest main pickle the reader accepts (as ZF_PTFILE_MAX_PICKLE). */
#define ZF_PTLEGACY_MAX_PICKLE ((uint64_t)1 << 30)
/* Largest of the small pickles (magic, version, sys_info). */
#define ZF_PTLEGACY_MAX_HEADER ((size_t)64 << 10)
/* Most storage records in one file, and the largest key list pickle. */
#define ZF_PTLEGACY_MAX_RECORDS ((size_t)1 << 20)
#define ZF_PTLEGACY_MAX_KEYS_PICKLE ((uint64_t)64 << 20)

struct zf_ptlegacy;

/* Where one storage's bytes are. */
struct zf_ptlegacy_record {
	const char *key; /* borrowed for the life of the struct zf_ptlegacy */
	uint64_t offset; /* absolute offset of the first element */
	uint64_t size;	 /* bytes: numel times the element size */
	int64_t numel;	 /* elements, as the record's header and pickle say */
};

/*
 * True when the first bytes of a file (len of them, at least 16 are
 * needed) start a legacy torch file: a protocol 2 pickle of the magic
 * number. A zip (torch's default format) starts "PK\3\4".
 */
bool zf_ptlegacy_sniff(const void *head, size_t len);

/*
 * Reads src's pickles 1, 2, 3 and 5 and locates the main pickle. src is
 * borrowed and must stay open until zf_ptlegacy_close(). Errors (the
 * message says which part is wrong, err->where names src's path):
 * ZF_EFORMAT (not a legacy torch file, truncated, a bad length, magic
 * or version, a key list that is no list of plain keys, repeated keys,
 * too many keys), ZF_EUNSUPPORTED (torch's tar format of before 0.4),
 * ZF_EIO / ZF_ECHANGED (reading src failed), ZF_ENOMEM.
 */
int zf_ptlegacy_open(struct zf_source *src, struct zf_ptlegacy **out,
		     struct zf_error *err);

/* Frees everything (not the source); NULL is a no-op. */
void zf_ptlegacy_close(struct zf_ptlegacy *lf);

/* The main pickle's absolute offset and length in bytes. */
void zf_ptlegacy_pickle(const struct zf_ptlegacy *lf, uint64_t *offset,
			uint64_t *len);

/* Reads the main pickle into a malloc'd buffer the caller frees. */
int zf_ptlegacy_read_pickle(const struct zf_ptlegacy *lf, unsigned char **out,
			    size_t *len, struct zf_error *err);

/* Number of storage keys the file lists, and key i (i < count), borrowed. */
size_t zf_ptlegacy_count(const struct zf_ptlegacy *lf);
const char *zf_ptlegacy_key(const struct zf_ptlegacy *lf, size_t i);

/*
 * Walks the records with the storages of pk, the caller's parse of the
 * main pickle (zf_pickle_storages gives their classes and counts). Needs
 * pk only during the call. Errors (ZF_EFORMAT, the message names the
 * storage key and the byte offset): a listed key the pickle does not use
 * or a storage the list lacks, a storage class whose element size is not
 * known (so the records after it cannot be found), a record header that
 * disagrees with the pickle's count, a record past the end of the file,
 * bytes after the last record. ZF_EIO / ZF_ECHANGED from reads. Binding
 * twice is ZF_EUSAGE.
 */
int zf_ptlegacy_bind(struct zf_ptlegacy *lf, const struct zf_pickle *pk,
		     struct zf_error *err);

/*
 * Where the storage with key is, after zf_ptlegacy_bind(). ZF_EFORMAT
 * ("no record for storage 'K'") when there is none, ZF_EUSAGE before
 * bind.
 */
int zf_ptlegacy_record(const struct zf_ptlegacy *lf, const char *key,
		       struct zf_ptlegacy_record *rec, struct zf_error *err);

/* Record i in file order (i < zf_ptlegacy_count()), after bind. */
int zf_ptlegacy_record_at(const struct zf_ptlegacy *lf, size_t i,
			  struct zf_ptlegacy_record *rec);

/* Bytes per element of a torch storage class ("FloatStorage" 4,
 * "BFloat16Storage" 2, "ComplexDoubleStorage" 16, ...), 0 if unknown. */
size_t zf_ptlegacy_element_size(const char *class_name);

#endif /* ZEROFS_PTLEGACY_H */
