/* SPDX-License-Identifier: MIT */
/**
 * @file pickle.h
 * A safe reader for the pickles torch.save() writes: it builds a tree of
 * values and executes nothing.
 *
 * Accepts protocols 2 to 5 (torch.save writes 2). GLOBAL / STACK_GLOBAL
 * never import anything: a small table gives meaning to the callables torch
 * and DeepSpeed checkpoints use, and every other callable or class becomes
 * an opaque ZF_PV_OBJECT that is an error only where a caller needs its
 * content. Everything is bounds-checked; limits cap nesting depth, the memo,
 * the number of values and memory, so hostile input ends in ZF_EFORMAT (or
 * ZF_ENOMEM when a cap on memory is hit), never in a crash.
 *
 * Meanings given (module, name as pickle protocol 2 spells them):
 *  - torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
 *    requires_grad, hooks[, metadata])        -> ZF_PV_TENSOR
 *  - torch._utils._rebuild_parameter(tensor, requires_grad, hooks) and
 *    _rebuild_parameter_with_state(...)        -> that tensor
 *  - torch._tensor._rebuild_from_type_v2(func, type, args, state)
 *                                               -> what func(*args) gives
 *  - BINPERSID of ('storage', torch.XxxStorage, key, location, numel)
 *    (torch's zip format) or of the same with a 6th item None (its legacy
 *    format)                                    -> ZF_PV_STORAGE, one node
 *    per key (a key seen again with another class or numel is an error;
 *    a 6th item that is not None, a view of another storage, which only
 *    torch before 1.0 wrote, is refused)
 *  - BINPERSID of ('module', cls, file, source) (legacy format) -> cls
 *  - collections.OrderedDict()                 -> ZF_PV_DICT (keys keep order)
 *  - torch.Size(tuple)                         -> that ZF_PV_TUPLE
 *  - __builtin__/builtins set(list), frozenset -> ZF_PV_SET
 *  - __builtin__/builtins getattr(cls, 'name') -> ZF_PV_ENUM by name
 *  - <a class whose name ends in "Enum">(int)  -> ZF_PV_ENUM by value
 *  - _codecs.encode(str, 'latin1')              -> ZF_PV_BYTES
 *  - anything else called (REDUCE, NEWOBJ, NEWOBJ_EX, BUILD on it)
 *                                               -> ZF_PV_OBJECT
 *
 * Memory. Every byte a parse allocates (the tree and its work tables) is
 * charged to a budget before it is taken; the budget is the least of
 *  - ZF_PICKLE_BYTES_PER_BYTE bytes per byte of input, plus
 *    ZF_PICKLE_MIN_BYTES: torch.save pickles need 6 to 9 at their peak
 *    (measured on the real and field fixtures and on a 20,000-tensor,
 *    64-rank checkpoint, whose 5 MB model states pickle peaks at 37 MB),
 *    so a pickle that needs more was not written by torch, and fails
 *    with ZF_EFORMAT. With its input, a parse thus never holds more than
 *    ZF_PICKLE_BYTES_PER_BYTE + 1 times the input's size plus 1 MiB;
 *  - the caller's max_bytes (ZF_ENOMEM);
 *  - what the process-wide cap leaves: all parses in flight (their whole
 *    budget) and all trees not yet freed (what they hold) share one cap,
 *    ZF_PICKLE_MEMORY_CAP unless the environment variable
 *    ZEROFS_PICKLE_MEMORY (bytes, or with a K, M, G or T suffix; read at
 *    the first parse, ignored when it is no size or below
 *    ZF_PICKLE_MIN_BYTES) or zf_pickle_set_memory_cap() says otherwise.
 *    A parse that finds the cap short waits while other parses run, and
 *    fails (ZF_ENOMEM) only when none runs and it needs more than is
 *    left. However many threads parse at once, pickle memory stays under
 *    the cap, and no set of parses waits forever.
 * Each message says which of the three bounds was hit. Outside the cap:
 * the input bytes themselves (the caller's), and up to 32 MiB of freed
 * arena chunks the process keeps for the next parse (zf_arena_trim()).
 *
 * All memory of a parse lives in one arena owned by struct zf_pickle and
 * is freed by zf_pickle_free(); values are read-only for callers. The tree
 * is a DAG (the memo shares values) and may even contain cycles in hostile
 * input, so callers must not walk it recursively without a depth bound.
 * Any number of threads may parse at once; one tree is read-only, so it
 * may be read by several threads.
 */
#ifndef ZEROFS_PICKLE_H
#define ZEROFS_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zerofs/dtype.h"
#include "zerofs/error.h"

enum zf_pv_type {
	ZF_PV_NONE,
	ZF_PV_BOOL,
	ZF_PV_INT,	/* fits int64_t; larger LONG values are ZF_PV_OBJECT "int" */
			/* (builtins.int, args: a 1-tuple of the LONG1/LONG4
			 * bytes, little-endian two's complement, or the str of
			 * INT/LONG digits) */
	ZF_PV_FLOAT,
	ZF_PV_STR,	/* UTF-8 as stored (not validated), NUL-terminated copy */
	ZF_PV_BYTES,
	ZF_PV_TUPLE,
	ZF_PV_LIST,
	ZF_PV_SET,
	ZF_PV_DICT,	/* insertion order kept; keys of any type */
	ZF_PV_GLOBAL,	/* a bare class or function, e.g. torch.float16 */
	ZF_PV_TENSOR,
	ZF_PV_STORAGE,
	ZF_PV_ENUM,
	ZF_PV_OBJECT,	/* opaque: what some unknown callable would have built */
};

struct zf_pv;

struct zf_pv_seq {
	struct zf_pv **items;
	size_t n;
	size_t cap; /* private */
};

struct zf_pv_dict {
	struct zf_pv **keys;
	struct zf_pv **vals;
	size_t n;
	size_t cap; /* private */
};

/* A storage record: the bytes live in the .pt zip at data/<key>. */
struct zf_pv_storage {
	enum zf_dtype dtype;	/* ZF_DT_INVALID for an unknown storage class */
	const char *class_name; /* e.g. "FloatStorage" */
	const char *key;	/* the zip entry name under data/ */
	const char *location;	/* "cpu", "cuda:0", ...: informational */
	int64_t numel;		/* storage length in elements, >= 0 */
};

/* torch._utils._rebuild_tensor_v2: a view into a storage. */
struct zf_pv_tensor {
	const struct zf_pv *storage; /* a ZF_PV_STORAGE, checked by the reader */
	int64_t offset;		     /* storage offset in elements, >= 0 */
	uint32_t ndim;		     /* <= ZF_PICKLE_MAX_DIMS */
	const int64_t *size;	     /* ndim entries, each >= 0 */
	const int64_t *stride;	     /* ndim entries */
	bool requires_grad;
};

/* An Enum member, pickled by name (getattr) or by value (Cls(value)). */
struct zf_pv_enum {
	const char *cls_module;
	const char *cls_name;
	const char *member; /* NULL when pickled by value */
	int64_t value;	    /* valid when member is NULL */
};

/* Opaque object: callable or class, its arguments, and BUILD state. */
struct zf_pv_object {
	const char *module;
	const char *name;
	const struct zf_pv *args;  /* NULL or a tuple */
	const struct zf_pv *state; /* NULL, or what BUILD gave (often a dict) */
	/* NULL, or a list / dict of what APPEND(S) / SETITEM(S) added to the
	 * object (list and dict subclasses). */
	const struct zf_pv *items;
};

struct zf_pv {
	enum zf_pv_type type;
	union {
		bool b;
		int64_t i;
		double f;
		struct {
			const char *s; /* NUL-terminated; may contain NULs */
			size_t len;
		} str; /* ZF_PV_STR and ZF_PV_BYTES */
		struct zf_pv_seq seq;	/* TUPLE, LIST, SET */
		struct zf_pv_dict dict;
		struct {
			const char *module;
			const char *name;
		} global;
		struct zf_pv_tensor tensor;
		struct zf_pv_storage storage;
		struct zf_pv_enum enm;
		struct zf_pv_object obj;
	} u;
};

/* Limits; zero fields take the defaults below. */
struct zf_pickle_limits {
	size_t max_depth;  /* nesting of MARK / containers on the stack */
	size_t max_memo;   /* highest memo index + 1 */
	size_t max_values; /* values created in total */
	size_t max_bytes;  /* memory of the parse (tree + work), bytes */
	size_t bytes_per_byte; /* memory per byte of input, see "Memory" */
};

#define ZF_PICKLE_MAX_DEPTH 1000
#define ZF_PICKLE_MAX_MEMO (1u << 24)
#define ZF_PICKLE_MAX_VALUES (1u << 26)
#define ZF_PICKLE_MAX_BYTES ((size_t)4 << 30)
#define ZF_PICKLE_MAX_DIMS 16

/* The memory bounds described at the top. */
#define ZF_PICKLE_BYTES_PER_BYTE 16
#define ZF_PICKLE_MIN_BYTES ((size_t)1 << 20)
#define ZF_PICKLE_MEMORY_CAP ((size_t)1 << 30)

struct zf_pickle;

/*
 * Parses len bytes at data (which need not outlive the call: strings are
 * copied). On success *out owns the tree; free it with zf_pickle_free().
 * limits may be NULL. Errors: ZF_EFORMAT (malformed, truncated, unknown
 * opcode, stack or memo misuse, limit exceeded), ZF_ENOMEM. The message
 * names the opcode and its byte offset, e.g.
 * "pickle: BINGET of memo index 7 that was never stored (at byte 1234)".
 */
int zf_pickle_load(const void *data, size_t len,
		   const struct zf_pickle_limits *limits,
		   struct zf_pickle **out, struct zf_error *err);

/*
 * Same, for a pickle followed by other bytes (torch's legacy format writes
 * several pickles and raw data in one file): parses from data up to the
 * first STOP and sets *end to the offset just past it. zf_pickle_load()
 * is this with the end ignored.
 */
int zf_pickle_load_prefix(const void *data, size_t len,
			  const struct zf_pickle_limits *limits, size_t *end,
			  struct zf_pickle **out, struct zf_error *err);

/* The value STOP returned; borrowed, valid until zf_pickle_free(). */
const struct zf_pv *zf_pickle_root(const struct zf_pickle *p);

/*
 * Every ZF_PV_STORAGE the pickle refers to, one per key, in order of first
 * use; *n gets their number. Borrowed, valid until zf_pickle_free().
 */
const struct zf_pv *const *zf_pickle_storages(const struct zf_pickle *p,
					      size_t *n);

/* Bytes the tree holds (charged to the process-wide cap until it is
 * freed); *peak (may be NULL) gets the most the parse used at once. */
size_t zf_pickle_bytes(const struct zf_pickle *p, size_t *peak);

/* Frees the tree and everything in it; NULL is a no-op. */
void zf_pickle_free(struct zf_pickle *p);

/*
 * Finding where a pickle ends without parsing it, from windows of its
 * bytes: torch's legacy format puts its main pickle, which can be large,
 * between other pickles and the tensor data, and nothing records its
 * length. The scan checks opcodes and lengths only (no values are built).
 *
 * Start with a zeroed struct. Each call gets a window: data holds len
 * bytes of the pickle starting at offset base (offsets count from the
 * pickle's first byte), with base <= s->pos <= base + len; limit is how
 * many bytes the pickle may span at most (what is left of the file). The
 * scan walks opcodes from s->pos and returns ZF_OK when
 *  - it met STOP: s->done is set and s->pos is just past it; or
 *  - the opcode at s->pos does not end inside the window: call again with
 *    a window that starts at or before s->pos. A long byte string's
 *    payload need not be in any window (s->pos may jump past the window's
 *    end), but a text line (protocol 0 opcodes, GLOBAL) must fit in one:
 *    when s->pos did not move, pass a larger window.
 * ZF_EFORMAT: an unknown opcode, a negative or too long length, protocol
 * above 5, or the input ends (base + len == limit) without STOP.
 */
struct zf_pickle_scan {
	uint64_t pos; /* next opcode, or just past STOP once done */
	bool done;
};

int zf_pickle_scan(struct zf_pickle_scan *s, const void *data, size_t len,
		   uint64_t base, uint64_t limit, struct zf_error *err);

/* The process-wide cap on pickle memory, in bytes (see the top). Setting
 * a value below ZF_PICKLE_MIN_BYTES restores the default. */
size_t zf_pickle_memory_cap(void);
void zf_pickle_set_memory_cap(size_t bytes);

struct zf_pickle_memory {
	size_t cap;	  /* bytes */
	size_t held;	  /* reserved by parses in flight + held by trees */
	size_t peak;	  /* most held at once since the cap was last set */
	unsigned parsing; /* parses in flight */
	unsigned waits;	  /* times a parse waited for the cap */
};

void zf_pickle_memory_stats(struct zf_pickle_memory *out);

/*
 * Dict lookup by string key: the value, or NULL when v is not a dict or
 * has no such key. Linear in the number of keys.
 */
const struct zf_pv *zf_pv_get(const struct zf_pv *v, const char *key);

/* Same, for an integer key (optimizer state is keyed by ints). */
const struct zf_pv *zf_pv_get_int(const struct zf_pv *v, int64_t key);

/* True when v is non-NULL and of type t. */
static inline bool zf_pv_is(const struct zf_pv *v, enum zf_pv_type t)
{
	return v && v->type == t;
}

/* A human name of v's type for messages ("dict", "tensor", "object
 * 'numpy.core.multiarray._reconstruct'" is not produced: just "object"). */
const char *zf_pv_type_name(const struct zf_pv *v);

#endif /* ZEROFS_PICKLE_H */
