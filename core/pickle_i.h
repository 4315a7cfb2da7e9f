/* SPDX-License-Identifier: MIT */
/*
 * What the parts of the pickle reader share. Private to
 * core/pickle*.c:
 *
 *  - core/pickle.c, the machine: opcodes, their arguments, the stack and
 *    MARKs, the memo, limits, the entry points, the scanner;
 *  - core/pickle_text.c, protocol 0's text arguments;
 *  - core/pickle_values.c, the values it builds (in one arena), dicts and
 *    their duplicate keys, the public accessors;
 *  - core/pickle_torch.c, the meaning of the callables torch and DeepSpeed
 *    pickles name (one table), and torch's persistent ids (storages);
 *  - core/pickle_mem.c, memory: every byte a parse allocates is charged to
 *    a budget bounded by the input's size and by a process-wide cap.
 */
#ifndef ZEROFS_PICKLE_I_H
#define ZEROFS_PICKLE_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zerofs/pickle.h"

#include "arena.h"
#include "cursor.h"

struct zf_pickle {
	struct zf_arena arena;
	const struct zf_pv *root;
	const struct zf_pv *const *storages; /* in the arena */
	size_t nstorages;
	size_t held; /* bytes charged to the process-wide cap until freed */
	size_t peak; /* most bytes the parse used at once (tree + work) */
};

/* Containers (and opaque objects) are allocated as nodes, so that their
 * depth travels with them; most scalars are a bare struct zf_pv. */
struct pk_node {
	struct zf_pv pv;
	size_t depth; /* 1 + the depth of the deepest item */
};

struct pk_callable;

/* A GLOBAL, with the meaning pickle_torch.c found for it when it was
 * made (NULL: none), so that calling it needs no string compares. */
struct pk_global {
	struct zf_pv pv;
	const struct pk_callable *callable;
};

/* Ints in this range are shared: sizes, strides and offsets are mostly
 * small, and values are read-only once built. */
#define PK_SMALL_INT_MIN (-1)
#define PK_SMALL_INT_MAX 256

struct pk_storage_slot {
	const char *key; /* NULL: empty slot */
	size_t key_len;
	uint64_t hash;
	struct zf_pv *pv;
};

/* Which bound a parse's memory budget is (for the message when it is
 * exceeded). */
enum pk_bound {
	PK_BOUND_INPUT,	  /* ZF_PICKLE_BYTES_PER_BYTE times the input */
	PK_BOUND_LIMITS,  /* the caller's max_bytes */
	PK_BOUND_PROCESS, /* what the process-wide cap left */
};

struct pk_reader {
	struct zf_cursor in;
	size_t op_pos; /* offset of the opcode being executed */
	unsigned char op;
	struct zf_pickle_limits lim;
	struct zf_arena *arena;
	struct zf_error *err;
	int status; /* first failure, so NULL-returning helpers can report */

	/* Memory: arena->total + work <= budget, always. */
	size_t budget;
	enum pk_bound bound;
	size_t work;	  /* bytes of the work arrays below (malloc'd) */
	size_t peak;	  /* most of arena->total + work at once */
	size_t reserved;  /* taken from the process-wide cap */

	struct zf_pv **stack;
	size_t sp, stack_cap;
	size_t fence; /* items below this index belong to an outer MARK */
	size_t *marks;
	size_t nmarks, marks_cap;

	struct zf_pv **memo; /* dense, NULL where nothing was stored */
	size_t memo_cap, memo_count;

	/* Storages by key. torch's zip format numbers keys 0, 1, 2... in
	 * order of first use, so those index an array; other keys (the
	 * legacy format's are addresses) go to a hash table. */
	struct zf_pv **by_num;
	size_t by_num_cap, by_num_count;
	struct pk_storage_slot *storages; /* open addressing, power of 2 */
	size_t storage_cap, storage_count;
	struct zf_pv **storage_list; /* every storage, in order of first use */
	size_t nstorage_list, storage_list_cap;

	struct zf_pv **dicts; /* every dict, for the duplicate-key pass */
	size_t ndicts, dicts_cap;

	size_t nvalues;
	struct zf_pv *none, *yes, *no, *empty_tuple;
	struct zf_pv *small_ints[PK_SMALL_INT_MAX - PK_SMALL_INT_MIN + 1];
};

/* ---- pickle.c: errors ---------------------------------------------- */

/* Records "pickle: <OPNAME> <what> (at byte N)" with status; returns it. */
__attribute__((format(printf, 3, 4)))
int pk_bad(struct pk_reader *r, int status, const char *fmt, ...);

/* After a failed allocation: says which bound (or malloc) it was. */
int pk_nomem(struct pk_reader *r);

/* ---- pickle_mem.c: the budget --------------------------------------- */

/*
 * Sets r's budget for an input of len bytes: the least of the input
 * bound, the caller's max_bytes and what the process-wide cap gives
 * (waiting while other parses run and the cap is short). Never fails.
 */
void pk_mem_begin(struct pk_reader *r, size_t len);

/* Ends the parse: the reservation shrinks to keep (the bytes the tree
 * holds, 0 on failure), which stays charged until pk_mem_release(). */
void pk_mem_end(struct pk_reader *r, size_t keep);
void pk_mem_release(size_t keep);

/* Grows the malloc'd work array *pitems (of *cap elements of elem bytes)
 * to at least need elements, charging the budget; new elements are zeroed
 * when zero is set. ZF_ENOMEM (recorded in r) when the budget or malloc
 * says no. */
int pk_work_grow(struct pk_reader *r, void *pitems, size_t *cap, size_t need,
		 size_t elem, size_t min, bool zero);

/* Memory for work arrays (see pickle_mem.c: big ones are mappings of
 * their own); pk_work_free() needs the size they were allocated with. */
void *pk_work_alloc(size_t bytes, bool zero);
void pk_work_free(void *p, size_t bytes);

/* Charges (pk_work_uncharge: gives back) work bytes that are not in a
 * work array grown by pk_work_grow(): a table allocated whole. */
int pk_work_charge(struct pk_reader *r, size_t n);
void pk_work_uncharge(struct pk_reader *r, size_t n);

/* Bytes the arena may still take: the budget minus the work arrays. Kept
 * in r->arena->max, and updated whenever work changes. */
void pk_mem_sync(struct pk_reader *r);

/* ---- pickle_values.c: building values --------------------------------- */

bool pk_is_node(enum zf_pv_type type);
struct zf_pv *pk_new(struct pk_reader *r, enum zf_pv_type type);
/* A zeroed value followed by extra bytes (not zeroed) at *tail. */
struct zf_pv *pk_new_tail(struct pk_reader *r, enum zf_pv_type type,
			  size_t extra, void **tail);
struct zf_pv *pk_new_str(struct pk_reader *r, enum zf_pv_type type,
			 const void *s, size_t len);
struct zf_pv *pk_new_int(struct pk_reader *r, int64_t i);
struct zf_pv *pk_new_seq(struct pk_reader *r, enum zf_pv_type type,
			 struct zf_pv *const *items, size_t n);
int pk_seq_reserve(struct pk_reader *r, struct zf_pv_seq *s, size_t more);
int pk_seq_add(struct pk_reader *r, struct zf_pv *v, struct zf_pv *item);
struct zf_pv *pk_new_dict(struct pk_reader *r);
int pk_dict_reserve(struct pk_reader *r, struct zf_pv_dict *d, size_t more);
int pk_dict_set(struct pk_reader *r, struct zf_pv *d, struct zf_pv *key,
		struct zf_pv *val);
/* Notes that child now sits inside parent (a node): depth check. */
int pk_nest(struct pk_reader *r, struct zf_pv *parent,
	    const struct zf_pv *child);
struct zf_pv *pk_new_object(struct pk_reader *r, const char *module,
			    const char *name, struct zf_pv *args);
/* The bytes as a ZF_PV_GLOBAL, its meaning looked up (pk_lookup). */
struct zf_pv *pk_new_global(struct pk_reader *r, const void *mod,
			    size_t mod_len, const void *name, size_t name_len);
/* An int too large for int64_t: opaque "int" holding its bytes or digits
 * (type ZF_PV_BYTES or ZF_PV_STR). */
struct zf_pv *pk_big_int(struct pk_reader *r, const void *s, size_t n,
			 enum zf_pv_type type);
bool pk_is_str(const struct zf_pv *v, const char *s);
uint64_t pk_hash_bytes(const char *s, size_t n);
/* Python's dict keeps one entry per key: folds repeats in every dict. */
int pk_fold_duplicates(struct pk_reader *r);

/* ---- pickle_text.c: protocol 0's text arguments ------------------------ */

/* Decimal with an optional sign: 0 ok, 1 out of int64 range, -1 bad. */
int pk_parse_dec(const unsigned char *s, size_t n, int64_t *out);
/* INT (is_long false) and LONG; an int too large is an opaque "int". */
struct zf_pv *pk_text_int(struct pk_reader *r, const unsigned char *s,
			  size_t n, bool is_long);
struct zf_pv *pk_text_float(struct pk_reader *r, const unsigned char *s,
			    size_t n);
struct zf_pv *pk_new_float(struct pk_reader *r, double d);
/* STRING and UNICODE: the decoded bytes as a ZF_PV_STR (UTF-8). */
struct zf_pv *pk_text_string(struct pk_reader *r, const unsigned char *s,
			     size_t n);
struct zf_pv *pk_text_unicode(struct pk_reader *r, const unsigned char *s,
			      size_t n);

/* ---- pickle_torch.c: meanings ------------------------------------------ */

/* The table entry for module.name, or NULL. */
const struct pk_callable *pk_lookup(const char *module, const char *name);

/*
 * What calling fn with the tuple args builds (REDUCE, NEWOBJ, INST, OBJ):
 * the meanings of pickle.h, else an opaque object. Nothing runs. NULL on
 * failure (recorded in r).
 */
struct zf_pv *pk_call(struct pk_reader *r, struct zf_pv *fn,
		      struct zf_pv *args);

/* BINPERSID: torch's storage ids; NULL on failure. */
struct zf_pv *pk_persistent_load(struct pk_reader *r, struct zf_pv *pid);

/* At the end of a successful parse: the storage list, into p's arena. */
int pk_storages_finish(struct pk_reader *r, struct zf_pickle *p);

/* Frees the storage tables (work arrays). */
void pk_storages_release(struct pk_reader *r);

#endif /* ZEROFS_PICKLE_I_H */
