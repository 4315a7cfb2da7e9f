/* SPDX-License-Identifier: MIT */
/**
 * @file container.h
 * A torch.save() file in either of torch's two formats, read through one
 * interface: the zip format (torch's default since 1.6, ptfile.h) and the
 * legacy one (torch.save(..., _use_new_zipfile_serialization=False), and
 * every file DeepSpeed >= 0.17 writes with "checkpoint_serialization":
 * false, ptlegacy.h). Which one a file is, is decided from its first byte:
 * a pickle's PROTO opcode (0x80) starts a legacy file, anything else is
 * read as a zip (whose own checks then say what is wrong with it).
 *
 * Both formats hold one main pickle, whose persistent ids name storages
 * by key, and one record of raw little-endian bytes per storage. Only the
 * zip says where each record is; a legacy file's records can only be
 * walked with the element counts and sizes its pickle gives. Hence the
 * steps, the same for both:
 *
 *   zf_container_open()    reads what the format allows without the main
 *                          pickle (zip: its directory; legacy: its small
 *                          pickles, the main pickle's extent, the key list)
 *   zf_container_parse()   parses the main pickle (zf_pickle_load())
 *   zf_container_bind()    checks a parse against the records: every
 *                          storage it uses has a record of numel times its
 *                          element size (legacy: the records are walked
 *                          here, and must account for every byte)
 *   zf_container_record()  says where one storage's bytes are
 *
 * The parse given to bind may be another file's: ranks after the first
 * often write byte for byte the same pickle (zf_container_pickle_id()),
 * and one tree then serves them all, each bound to its own records.
 *
 * Errors name the file in err->where. A container is read-only after
 * bind: any number of threads may call zf_container_record() at once.
 */
#ifndef ZEROFS_CONTAINER_H
#define ZEROFS_CONTAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zerofs/error.h"
#include "zerofs/pickle.h"
#include "zerofs/ptfile.h"
#include "zerofs/source.h"

enum zf_container_kind {
	ZF_CONTAINER_ZIP = 1,	 /* torch's zip format */
	ZF_CONTAINER_LEGACY = 2, /* torch's legacy format: pickles, then records */
};

struct zf_container;

/*
 * Reads the head of src, decides its format and opens it. src is
 * borrowed: it must outlive the container, which never closes it. On
 * success *out owns what was read. Errors: those of zf_ptfile_open() (with
 * ZF_PTFILE_LAZY_PICKLE) or zf_ptlegacy_open(), and of reading src.
 */
int zf_container_open(struct zf_source *src, struct zf_container **out,
		      struct zf_error *err);

/* The same over a file named by path, for tests and tools: the container
 * opens its own source and closes it with itself. */
int zf_container_open_path(const char *path, struct zf_container **out,
			   struct zf_error *err);

/* Frees the container (and its source when it opened it); NULL is a
 * no-op. */
void zf_container_close(struct zf_container *c);

enum zf_container_kind zf_container_kind(const struct zf_container *c);

/* "zip" or "legacy", as inspect --json shows it; "?" for anything else. */
const char *zf_container_kind_name(enum zf_container_kind kind);

/* The source read, borrowed; its path, borrowed. */
struct zf_source *zf_container_source(const struct zf_container *c);
const char *zf_container_path(const struct zf_container *c);

/* The main pickle's absolute offset and length in bytes. */
void zf_container_pickle(const struct zf_container *c, uint64_t *offset,
			 uint64_t *len);

/*
 * What identifies the main pickle's bytes without reading them: for a
 * zip, its size and CRC-32 from the directory (id[0], id[1]). Two files
 * with equal ids hold the same pickle (a CRC collision aside, which the
 * caller's checks of the tree against each file's records would catch).
 * false when the format records nothing of the kind (legacy).
 */
bool zf_container_pickle_id(const struct zf_container *c, uint64_t id[2]);

/*
 * Reads the main pickle and parses it with the default limits
 * (zf_pickle_load()); the bytes are freed before it returns. On success
 * *out owns the tree. Errors: the pickle reader's (ZF_EFORMAT, ZF_ENOMEM),
 * a pickle over ZF_PTFILE_MAX_PICKLE / ZF_PTLEGACY_MAX_PICKLE bytes
 * (ZF_ENOMEM), the source's, and for a zip a compressed or encrypted
 * data.pkl (found at open). Not safe on one container from two threads.
 */
int zf_container_parse(struct zf_container *c, struct zf_pickle **out,
		       struct zf_error *err);

/*
 * Checks pk (needed only during the call) against c's records: every
 * storage it uses must have a record holding numel elements of its
 * storage class's size (zf_ptlegacy_element_size()). A legacy file's
 * records are walked here (see zf_ptlegacy_bind() for what else must
 * hold); a zip's sizes come from its directory. Errors (ZF_EFORMAT, the
 * message naming the storage): "no record '<prefix>data/K'", "storage 'K'
 * claims N elements of E bytes, but its record holds M bytes", and the
 * legacy walk's; the source's. Binding twice is ZF_EUSAGE.
 */
int zf_container_bind(struct zf_container *c, const struct zf_pickle *pk,
		      struct zf_error *err);

/*
 * Where storage key's bytes are. A zip's record is found in its directory
 * and located from its local header, and must be stored (ZF_EUNSUPPORTED
 * when compressed or encrypted); a legacy file's must be bound first
 * (ZF_EUSAGE). crc32 is the directory's for a zip, 0 for a legacy record
 * (the format stores none). ZF_EFORMAT when there is no such record.
 */
int zf_container_record(const struct zf_container *c, const char *key,
			struct zf_record *rec, struct zf_error *err);

/*
 * A 128-bit digest of the file's records that is equal for two copies of
 * one file and differs between files whose records hold different bytes:
 * for a zip, every entry's name, size and CRC-32 (no data is read); for a
 * legacy file, which has no CRCs, every key and size and the first and
 * last 64 bytes of each record (after bind; ZF_EUSAGE before). Errors:
 * the source's.
 */
int zf_container_digest(const struct zf_container *c, uint64_t digest[2],
			struct zf_error *err);

/*
 * Whether src starts with the same main pickle as tmpl's and ends as a
 * whole file of its format, judged from a few small reads (for a zip,
 * zf_ptfile_same_head()). *same false means "not shown": open src fully.
 * A legacy template never shows it. Errors: the source's.
 */
int zf_container_same_head(const struct zf_container *tmpl,
			   struct zf_source *src, bool *same,
			   struct zf_error *err);

/*
 * A second reading of the file's structure, for verify: a zip's directory
 * is read again by libzip, which must see the same entries
 * (zf_ptfile_cross_check()); a legacy file has no directory for another
 * reader, and its structure is the walk of its records done by bind
 * (ZF_EUSAGE before bind), so there is nothing more to do. ZF_EFORMAT
 * names the first disagreement.
 */
int zf_container_cross_check(const struct zf_container *c,
			     struct zf_error *err);

/*
 * Reads every record, for verify (slow: every byte of the file): a zip's
 * through libzip, which checks each stored record's CRC-32, the served
 * ones compared byte for byte with what zerofs reads at its own offsets
 * (zf_ptfile_check_crc()); a legacy file's through the source, after bind
 * (ZF_EUSAGE before): the format stores no CRC, so this proves only that
 * every byte reads. ZF_EFORMAT names the first bad record; the source's
 * errors.
 */
int zf_container_check_records(const struct zf_container *c,
			       struct zf_error *err);

/* The zip reader under a zip container (verify's cross-checks, tests),
 * NULL for a legacy one; borrowed. */
struct zf_ptfile *zf_container_zip(const struct zf_container *c);

#endif /* ZEROFS_CONTAINER_H */
