/* SPDX-License-Identifier: MIT */
/*
 * Private to core/: where a tensor's bytes are, in a form that does not
 * grow with tensors x ranks.
 *
 * A place is a tagged union with one kind per way DeepSpeed stores a
 * tensor (man/zerofs-checkpoint.5, PLACEMENT). The per-rank facts places
 * share live in one struct zf_rank_tables: tables of uint64_t that are stored
 * once however many ranks have the same one (ranks after the first write
 * the same pickle and the same zip layout, so their tables are equal).
 * Memory is O(tensors + ranks + distinct tables).
 *
 * zf_place_map() is the one function that turns (tensor, byte) into a run
 * of a file. Adding a kind (a strided view, a tensor of a base model's
 * safetensors file) is an enum value, a union member and a case there.
 */
#ifndef ZEROFS_PLACE_H
#define ZEROFS_PLACE_H

#include <stddef.h>
#include <stdint.h>

#include "zerofs/ckpt.h"

enum zf_place_kind {
	ZF_PLACE_NONE,	 /* no bytes of its own: an alias, or no elements */
	ZF_PLACE_WHOLE,	 /* contiguous bytes in one file */
	ZF_PLACE_ZERO3,	 /* ZeRO-3 parameter in every rank's fp32 flat space */
	ZF_PLACE_ZERO12, /* ZeRO-1/2 parameter in its group's fp32 partitions */
	ZF_PLACE_FRAG3,	 /* ZeRO-3 frozen parameter: one fragment per rank */
	ZF_PLACE_STRIDED, /* a view with strides (transposed, sliced, expanded) */
	ZF_PLACE_BASE,	 /* contiguous bytes in a --base safetensors file */
};

struct zf_place {
	enum zf_place_kind kind;
	union {
		struct {
			uint32_t file;	 /* index in the checkpoint's files */
			uint64_t offset; /* absolute byte offset of element 0 */
		} whole;
		struct {
			/* Element offset of the parameter in each rank's flat
			 * space (its fp32 flat groups back to back); rank r
			 * holds elements [r*p, r*p + p) there, p = ceil(n/ws). */
			uint64_t flat;
		} zero3;
		struct {
			uint32_t group; /* optimizer param group */
			uint64_t start; /* element offset in the group's data */
		} zero12;
		struct {
			uint32_t index; /* column in the ranks' fragment tables */
		} frag3;
		struct {
			uint32_t file;
			/* Table id of [ndim, sizes..., strides...] in
			 * elements, dimensions coalesced (zf_place_strided). */
			uint32_t dims;
			uint64_t offset; /* absolute byte offset of element 0 */
		} strided;
		struct {
			uint32_t file;	 /* a --base file, index in the files */
			uint64_t offset; /* absolute byte offset of element 0 */
		} base;
	} u;
};

/* Distinct tables of uint64_t, each stored once. Not thread safe. */
struct zf_tables {
	uint64_t *data;		/* every table, back to back */
	size_t len, cap;	/* entries */
	struct zf_table_ref {
		size_t off, n;	/* where in data, how many entries */
		uint64_t hash;
	} *refs;
	uint32_t n;
	size_t cap_refs;
	uint32_t *slots;	/* hash index over refs; UINT32_MAX is empty */
	size_t mask;		/* slots - 1 */
};

/* The table id of v (n entries): an existing equal table's, or a new
 * one's. ZF_ENOMEM. */
int zf_tables_intern(struct zf_tables *t, const uint64_t *v, size_t n,
		     uint32_t *id, struct zf_error *err);
const uint64_t *zf_tables_get(const struct zf_tables *t, uint32_t id,
			      size_t *n);
void zf_tables_release(struct zf_tables *t);

/*
 * The per-rank facts places refer to. Files of rank r: its model states
 * file is files[first_model + r] (ZeRO-3; rank 0's only otherwise) and its
 * optimizer file files[first_optim + r].
 *
 * Table shapes (pairs are flattened: [a0, b0, a1, b1, ...]):
 *   zero3_segs[r]:  the fp32 flat groups of rank r in order, as pairs
 *                   (element where the group ends in the rank's flat
 *                   space, absolute byte offset of its element 0);
 *   zero12_cuts[g]: the partitions of param group g in rank order, as
 *                   pairs (element where rank r's part ends in the group,
 *                   absolute byte offset of its element 0);
 *   frags[r]:	     for each ZeRO-3 frozen parameter, the absolute byte
 *                   offset of rank r's fragment, UINT64_MAX when rank r
 *                   holds none of it.
 */
struct zf_rank_tables {
	uint32_t world_size;
	uint32_t first_model, first_optim;
	uint32_t *zero3_segs;  /* world_size ids, or NULL */
	uint32_t *zero12_cuts; /* n_groups ids, or NULL */
	uint32_t n_groups;
	uint32_t *frags;       /* world_size ids, or NULL */
	uint32_t n_frozen;
	struct zf_tables tables;
};

void zf_rank_tables_release(struct zf_rank_tables *lay);

/*
 * The place of a view of file `file` whose element 0 is at byte offset,
 * with ndim sizes and strides (in elements, each >= 0): dimensions of
 * size 1 are dropped and neighbours that are contiguous with each other
 * merged, so that a row-major view becomes ZF_PLACE_WHOLE and the rest
 * ZF_PLACE_STRIDED with as few dimensions as describe it. ZF_ENOMEM.
 */
int zf_place_strided(struct zf_rank_tables *lay, uint32_t file, uint64_t offset,
		     uint32_t ndim, const uint64_t *sizes,
		     const uint64_t *strides, struct zf_place *pl,
		     struct zf_error *err);

/* A strided place's coalesced dimensions: *nd of them, sizes and strides. */
void zf_place_dims(const struct zf_rank_tables *lay, const struct zf_place *pl,
		   uint32_t *nd, const uint64_t **sizes, const uint64_t **strides);

/* The bytes a strided place reaches: [offset, offset + *span). */
uint64_t zf_place_span(const struct zf_rank_tables *lay,
		       const struct zf_place *pl, uint64_t esize, uint64_t numel);

/*
 * The run holding byte off of a tensor t placed at pl, cut at len (see
 * zf_ckpt_map()). off < numel * element size and len > 0 are the
 * caller's to check; the tables were proven to lie inside their files
 * when the layout was built, so this is arithmetic only.
 */
void zf_place_map(const struct zf_rank_tables *lay, const struct zf_place *pl,
		  const struct zf_tensor *t, uint64_t off, uint64_t len,
		  struct zf_run *run);

#endif /* ZEROFS_PLACE_H */
