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
 * content. Everything is bounds-checked; limits cap nesting depth, the memo
 * and the number of values, so hostile input ends in ZF_EFORMAT (or
 * ZF_ENOMEM when a limit on allocation is hit), never in a crash.
 *
 * Meanings given (module, name as pickle protocol 2 spells them):
 *  - torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
 *    requires_grad, hooks[, metadata])        -> ZF_PV_TENSOR
 *  - torch._utils._rebuild_parameter(tensor, requires_grad, hooks) and
 *    _rebuild_parameter_with_state(...)        -> that tensor
 *  - BINPERSID / PERSID of ('storage', torch.XxxStorage, key, location,
 *    numel)                                     -> ZF_PV_STORAGE, one node
 *    per key (a key seen again with another dtype is an error)
 *  - collections.OrderedDict()                 -> ZF_PV_DICT (keys keep order)
 *  - torch.Size(tuple)                         -> that ZF_PV_TUPLE
 *  - __builtin__/builtins set(list), frozenset -> ZF_PV_SET
 *  - __builtin__/builtins getattr(cls, 'name') -> ZF_PV_ENUM by name
 *  - <a class whose name ends in "Enum">(int)  -> ZF_PV_ENUM by value
 *  - _codecs.encode(str, 'latin1')              -> ZF_PV_BYTES
 *  - anything else called (REDUCE, NEWOBJ, NEWOBJ_EX, BUILD on it)
 *                                               -> ZF_PV_OBJECT
 *
 * All memory of a parse lives in one arena owned by struct zf_pickle and
 * is freed by zf_pickle_free(); values are read-only for callers. The tree
 * is a DAG (the memo shares values) and may even contain cycles in hostile
 * input, so callers must not walk it recursively without a depth bound.
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
	size_t max_bytes;  /* arena bytes in total */
};

#define ZF_PICKLE_MAX_DEPTH 1000
#define ZF_PICKLE_MAX_MEMO (1u << 24)
#define ZF_PICKLE_MAX_VALUES (1u << 26)
#define ZF_PICKLE_MAX_BYTES ((size_t)4 << 30)
#define ZF_PICKLE_MAX_DIMS 16

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

/* The value STOP returned; borrowed, valid until zf_pickle_free(). */
const struct zf_pv *zf_pickle_root(const struct zf_pickle *p);

/* Frees the tree and everything in it; NULL is a no-op. */
void zf_pickle_free(struct zf_pickle *p);

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
