/* SPDX-License-Identifier: MIT */
/*
 * The safe pickle reader of include/zerofs/pickle.h: a loop over opcodes
 * that builds values in an arena and calls nothing. The opcode semantics
 * follow CPython's Modules/_pickle.c (the Unpickler's split object and mark
 * stacks, the "fence" that hides items below the newest MARK, POP that
 * pops a MARK when one sits on top); Lib/pickletools.py documents each
 * opcode's argument encoding. FORMAT.md section 4 lists what torch.save
 * and DeepSpeed actually write.
 *
 * Choices the header leaves open:
 *  - Nesting depth is the depth of the value tree as it is built (scalars
 *    0, a container 1 + its deepest item) plus, separately, the number of
 *    open MARKs. Items added through the memo to a value that is already
 *    nested do not re-propagate depth, so callers still bound their walks.
 *  - BUILD sets the state of an opaque object and is ignored on a dict (an
 *    OrderedDict's state is its instance attributes, e.g. state_dict()'s
 *    _metadata, not items), list, set, tensor, storage, enum or global. On
 *    a str, int, tuple and the like it is an error, as in Python.
 *  - APPEND(S) and SETITEM(S) on an opaque object (a list or dict subclass)
 *    collect the items in obj.items, a list or dict the reader attaches.
 *  - Dict keys may be of any type (even lists); equal str or int keys keep
 *    the first position and the last value, as Python's dict does.
 *  - A pickle may end with bytes after STOP; they are ignored, as Python
 *    ignores them.
 *  - A storage key must be a plain name (not empty, no '/', no NUL, not
 *    "." or ".."), because callers open data/<key> in the zip. The same
 *    key with another class or numel is an error.
 *  - A _rebuild_tensor_v2 view must lie inside its storage (strides >= 0,
 *    offset + sum((size - 1) * stride) < numel unless a size is 0), as
 *    torch itself checks.
 *  - Limits: depth, memo and values end in ZF_EFORMAT, max_bytes (arena
 *    bytes) in ZF_ENOMEM. Small ints, None, True, False and () are shared.
 */
#include "zerofs/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

struct zf_pickle {
	struct zf_arena arena;
	const struct zf_pv *root;
};

/* Containers (and opaque objects) are allocated as nodes, so that their
 * depth travels with them; scalars are a bare struct zf_pv. */
struct node {
	struct zf_pv pv;
	size_t depth; /* 1 + the depth of the deepest item */
};

/* Ints in this range are shared: sizes, strides and offsets are mostly
 * small, and values are read-only once built. */
#define SMALL_INT_MIN (-1)
#define SMALL_INT_MAX 256

struct storage_slot {
	const char *key; /* NULL: empty slot */
	size_t key_len;
	uint64_t hash;
	struct zf_pv *pv;
};

struct reader {
	const unsigned char *data;
	size_t len;
	size_t pos;    /* next byte to read */
	size_t op_pos; /* offset of the opcode being executed */
	unsigned char op;
	struct zf_pickle_limits lim;
	struct zf_arena *arena;
	struct zf_error *err;
	int status; /* first failure, so NULL-returning helpers can report */

	struct zf_pv **stack;
	size_t sp, stack_cap;
	size_t fence; /* items below this index belong to an outer MARK */
	size_t *marks;
	size_t nmarks, marks_cap;

	struct zf_pv **memo; /* dense, NULL where nothing was stored */
	size_t memo_cap, memo_count;

	/* Storages by key. torch numbers keys 0, 1, 2... in order of first
	 * use, so those index an array; other keys go to a hash table. */
	struct zf_pv **by_num;
	size_t by_num_cap, by_num_count;
	struct storage_slot *storages; /* open addressing, power of 2 */
	size_t storage_cap, storage_count;

	struct zf_pv **dicts; /* every dict, for the duplicate-key pass */
	size_t ndicts, dicts_cap;

	size_t nvalues;
	struct zf_pv *none, *yes, *no, *empty_tuple;
	struct zf_pv *small_ints[SMALL_INT_MAX - SMALL_INT_MIN + 1];
};

/* Opcode names for messages; NULL marks a byte that is no opcode. */
static const char *const op_names[256] = {
	['('] = "MARK", ['.'] = "STOP", ['0'] = "POP", ['1'] = "POP_MARK",
	['2'] = "DUP", ['F'] = "FLOAT", ['I'] = "INT", ['J'] = "BININT",
	['K'] = "BININT1", ['L'] = "LONG", ['M'] = "BININT2", ['N'] = "NONE",
	['P'] = "PERSID", ['Q'] = "BINPERSID", ['R'] = "REDUCE",
	['S'] = "STRING", ['T'] = "BINSTRING", ['U'] = "SHORT_BINSTRING",
	['V'] = "UNICODE", ['X'] = "BINUNICODE", ['a'] = "APPEND",
	['b'] = "BUILD", ['c'] = "GLOBAL", ['d'] = "DICT", ['}'] = "EMPTY_DICT",
	['e'] = "APPENDS", ['g'] = "GET", ['h'] = "BINGET", ['i'] = "INST",
	['j'] = "LONG_BINGET", ['l'] = "LIST", [']'] = "EMPTY_LIST",
	['o'] = "OBJ", ['p'] = "PUT", ['q'] = "BINPUT", ['r'] = "LONG_BINPUT",
	['s'] = "SETITEM", ['t'] = "TUPLE", [')'] = "EMPTY_TUPLE",
	['u'] = "SETITEMS", ['G'] = "BINFLOAT", [0x80] = "PROTO",
	[0x81] = "NEWOBJ", [0x82] = "EXT1", [0x83] = "EXT2", [0x84] = "EXT4",
	[0x85] = "TUPLE1", [0x86] = "TUPLE2", [0x87] = "TUPLE3",
	[0x88] = "NEWTRUE", [0x89] = "NEWFALSE", [0x8a] = "LONG1",
	[0x8b] = "LONG4", ['B'] = "BINBYTES", ['C'] = "SHORT_BINBYTES",
	[0x8c] = "SHORT_BINUNICODE", [0x8d] = "BINUNICODE8",
	[0x8e] = "BINBYTES8", [0x8f] = "EMPTY_SET", [0x90] = "ADDITEMS",
	[0x91] = "FROZENSET", [0x92] = "NEWOBJ_EX", [0x93] = "STACK_GLOBAL",
	[0x94] = "MEMOIZE", [0x95] = "FRAME", [0x96] = "BYTEARRAY8",
	[0x97] = "NEXT_BUFFER", [0x98] = "READONLY_BUFFER",
};

static const char *const type_names[] = {
	[ZF_PV_NONE] = "none",	   [ZF_PV_BOOL] = "bool",
	[ZF_PV_INT] = "int",	   [ZF_PV_FLOAT] = "float",
	[ZF_PV_STR] = "str",	   [ZF_PV_BYTES] = "bytes",
	[ZF_PV_TUPLE] = "tuple",   [ZF_PV_LIST] = "list",
	[ZF_PV_SET] = "set",	   [ZF_PV_DICT] = "dict",
	[ZF_PV_GLOBAL] = "global", [ZF_PV_TENSOR] = "tensor",
	[ZF_PV_STORAGE] = "storage", [ZF_PV_ENUM] = "enum",
	[ZF_PV_OBJECT] = "object",
};

const char *zf_pv_type_name(const struct zf_pv *v)
{
	if (!v)
		return "nothing";
	if ((size_t)v->type >= sizeof(type_names) / sizeof(type_names[0]))
		return "?";
	return type_names[v->type];
}

/* ---- errors ---------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static int bad(struct reader *r, int status, const char *fmt, ...)
{
	char what[512];
	const char *name = op_names[r->op] ? op_names[r->op] : "opcode";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (!r->status)
		r->status = status;
	zf_fail(r->err, status, "pickle: %s %s (at byte %zu)", name, what,
		r->op_pos);
	return status;
}

/* After an arena or malloc failure: says which of the two it was. */
static int nomem(struct reader *r)
{
	if (r->arena->over_cap)
		return bad(r, ZF_ENOMEM,
			   "needs more than the %zu bytes max_bytes allows",
			   r->lim.max_bytes);
	return bad(r, ZF_ENOMEM, "ran out of memory");
}

static int truncated(struct reader *r, const char *what, size_t need)
{
	return bad(r, ZF_EFORMAT, "needs %zu bytes of %s, only %zu left", need,
		   what, r->len - r->pos);
}

/* ---- the input cursor ------------------------------------------------ */

static int take(struct reader *r, size_t n, const char *what,
		const unsigned char **out)
{
	if (r->len - r->pos < n)
		return truncated(r, what, n);
	*out = r->data + r->pos;
	r->pos += n;
	return 0;
}

static int take_le(struct reader *r, size_t n, const char *what,
		   uint64_t *out)
{
	const unsigned char *p = NULL;
	uint64_t v = 0;

	if (take(r, n, what, &p))
		return r->status;
	for (size_t i = n; i-- > 0;)
		v = v << 8 | p[i];
	*out = v;
	return 0;
}

/* A text argument up to (not including) the next '\n'. */
static int take_line(struct reader *r, const unsigned char **out,
		     size_t *len)
{
	const unsigned char *s = r->data + r->pos;
	const unsigned char *nl = memchr(s, '\n', r->len - r->pos);

	if (!nl)
		return bad(r, ZF_EFORMAT, "argument has no end of line");
	*out = s;
	*len = (size_t)(nl - s);
	r->pos += *len + 1;
	return 0;
}

/* A length from the input, checked against what is left before anything
 * is allocated for it. */
static int take_counted(struct reader *r, uint64_t n,
			const unsigned char **out)
{
	if (n > r->len - r->pos)
		return bad(r, ZF_EFORMAT,
			   "of %llu bytes, but only %zu bytes are left",
			   (unsigned long long)n, r->len - r->pos);
	return take(r, (size_t)n, "data", out);
}

/* ---- values ---------------------------------------------------------- */

static bool is_node(enum zf_pv_type type)
{
	return (type >= ZF_PV_TUPLE && type <= ZF_PV_DICT) ||
	       type == ZF_PV_OBJECT;
}

static size_t depth_of(const struct zf_pv *v)
{
	return is_node(v->type) ? ((const struct node *)v)->depth : 0;
}

/* A zeroed value of the given type, followed by extra bytes (not zeroed)
 * at *tail when tail is not NULL: strings and tuples live right after
 * their value, one allocation for both. */
static struct zf_pv *new_pv_tail(struct reader *r, enum zf_pv_type type,
				 size_t extra, void **tail)
{
	size_t head = is_node(type) ? sizeof(struct node) :
				      sizeof(struct zf_pv);
	struct zf_pv *v;

	if (r->nvalues >= r->lim.max_values) {
		bad(r, ZF_EFORMAT, "would create more than %zu values",
		    r->lim.max_values);
		return NULL;
	}
	if (extra > SIZE_MAX - head) {
		bad(r, ZF_ENOMEM, "needs more memory than there is");
		return NULL;
	}
	v = zf_arena_alloc(r->arena, head + extra);
	if (!v) {
		nomem(r);
		return NULL;
	}
	memset(v, 0, head);
	v->type = type;
	if (is_node(type))
		((struct node *)v)->depth = 1;
	if (tail)
		*tail = (char *)v + head;
	r->nvalues++;
	return v;
}

static struct zf_pv *new_pv(struct reader *r, enum zf_pv_type type)
{
	return new_pv_tail(r, type, 0, NULL);
}

/* Notes that child now sits inside parent. */
static int nest(struct reader *r, struct zf_pv *parent,
		const struct zf_pv *child)
{
	struct node *n = (struct node *)parent;
	size_t d = depth_of(child) + 1;

	if (d <= n->depth)
		return 0;
	if (d > r->lim.max_depth)
		return bad(r, ZF_EFORMAT, "nests values more than %zu deep",
			   r->lim.max_depth);
	n->depth = d;
	return 0;
}

static struct zf_pv *new_str(struct reader *r, enum zf_pv_type type,
			     const void *s, size_t len)
{
	struct zf_pv *v;
	char *tail;

	if (len == SIZE_MAX) {
		bad(r, ZF_ENOMEM, "needs more memory than there is");
		return NULL;
	}
	v = new_pv_tail(r, type, len + 1, (void **)&tail);
	if (!v)
		return NULL;
	if (len)
		memcpy(tail, s, len);
	tail[len] = '\0';
	v->u.str.s = tail;
	v->u.str.len = len;
	return v;
}

static struct zf_pv *new_int(struct reader *r, int64_t i)
{
	struct zf_pv **slot = NULL;
	struct zf_pv *v;

	if (i >= SMALL_INT_MIN && i <= SMALL_INT_MAX) {
		slot = &r->small_ints[i - SMALL_INT_MIN];
		if (*slot)
			return *slot;
	}
	v = new_pv(r, ZF_PV_INT);
	if (v) {
		v->u.i = i;
		if (slot)
			*slot = v;
	}
	return v;
}

static int seq_reserve(struct reader *r, struct zf_pv_seq *s, size_t more)
{
	size_t cap;
	void *p;

	if (s->cap - s->n >= more)
		return 0;
	if (more > SIZE_MAX / sizeof(*s->items) / 2 - s->n)
		return bad(r, ZF_ENOMEM, "makes a container too large");
	cap = s->cap ? s->cap * 2 : 8;
	if (cap < s->n + more)
		cap = s->n + more;
	p = zf_arena_grow(r->arena, s->items, s->n * sizeof(*s->items),
			  cap * sizeof(*s->items));
	if (!p)
		return nomem(r);
	s->items = p;
	s->cap = cap;
	return 0;
}

/* A TUPLE, LIST or SET holding copies of the n pointers at items; they
 * live right after the value (a list that grows later moves them). */
static struct zf_pv *new_seq(struct reader *r, enum zf_pv_type type,
			     struct zf_pv *const *items, size_t n)
{
	struct zf_pv **tail;
	struct zf_pv *v;

	if (type == ZF_PV_TUPLE && n == 0 && r->empty_tuple)
		return r->empty_tuple; /* immutable, so one is enough */
	if (n > SIZE_MAX / sizeof(*tail) / 2) {
		bad(r, ZF_ENOMEM, "makes a container too large");
		return NULL;
	}
	v = new_pv_tail(r, type, n * sizeof(*tail), (void **)&tail);
	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (nest(r, v, items[i]))
			return NULL;
		tail[i] = items[i];
	}
	v->u.seq.items = n ? tail : NULL;
	v->u.seq.n = n;
	v->u.seq.cap = n;
	return v;
}

static int seq_add(struct reader *r, struct zf_pv *v, struct zf_pv *item)
{
	if (nest(r, v, item) || seq_reserve(r, &v->u.seq, 1))
		return r->status;
	v->u.seq.items[v->u.seq.n++] = item;
	return 0;
}

static struct zf_pv *new_dict(struct reader *r)
{
	return new_pv(r, ZF_PV_DICT);
}

/* Notes d for the duplicate-key fold; called when it gets a 2nd entry,
 * so the fold never visits the many empty and 1-entry dicts. */
static int track_dict(struct reader *r, struct zf_pv *d)
{
	if (r->ndicts == r->dicts_cap) {
		size_t cap = r->dicts_cap ? r->dicts_cap * 2 : 64;
		void *p = realloc(r->dicts, cap * sizeof(*r->dicts));

		if (!p)
			return bad(r, ZF_ENOMEM, "ran out of memory");
		r->dicts = p;
		r->dicts_cap = cap;
	}
	r->dicts[r->ndicts++] = d;
	return 0;
}

/*
 * A dict's entries live in one block of cap keys, cap values and cap key
 * hashes (private: the fold of duplicate keys reads them once the keys
 * are cold in cache). 0 is the hash of a key that is never folded.
 */
static uint64_t *dict_hashes(const struct zf_pv_dict *d)
{
	return (uint64_t *)(d->keys + 2 * d->cap);
}

static int dict_reserve(struct reader *r, struct zf_pv_dict *d, size_t more)
{
	const size_t entry = 2 * sizeof(*d->keys) + sizeof(uint64_t);
	struct zf_pv **block;
	size_t cap;

	if (d->cap - d->n >= more)
		return 0;
	if (more > SIZE_MAX / entry / 2 - d->n)
		return bad(r, ZF_ENOMEM, "makes a dict too large");
	cap = d->cap ? d->cap * 2 : 8;
	if (cap < d->n + more)
		cap = d->n + more;
	block = zf_arena_alloc(r->arena, cap * entry);
	if (!block)
		return nomem(r);
	if (d->n) {
		memcpy(block, d->keys, d->n * sizeof(*d->keys));
		memcpy(block + cap, d->vals, d->n * sizeof(*d->vals));
		memcpy(block + 2 * cap, dict_hashes(d),
		       d->n * sizeof(uint64_t));
	}
	d->keys = block;
	d->vals = block + cap;
	d->cap = cap;
	return 0;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	/* FNV's low bits mix poorly, and the tables index by them. */
	h ^= h >> 32;
	h *= 0xbf58476d1ce4e5b9ull;
	return h ^ h >> 29;
}

/* Python folds equal keys; we fold str, bytes and int keys (0: others). */
static uint64_t key_hash(const struct zf_pv *k)
{
	uint64_t h;

	if (k->type == ZF_PV_INT) {
		h = ((uint64_t)k->u.i + 1) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 31;
	} else if (k->type == ZF_PV_STR || k->type == ZF_PV_BYTES) {
		h = hash_bytes(k->u.str.s, k->u.str.len) ^ k->type;
	} else {
		return 0;
	}
	return h ? h : 1;
}

static int dict_set(struct reader *r, struct zf_pv *d, struct zf_pv *key,
		    struct zf_pv *val)
{
	struct zf_pv_dict *dd = &d->u.dict;

	if (nest(r, d, key) || nest(r, d, val) || dict_reserve(r, dd, 1))
		return r->status;
	dd->keys[dd->n] = key;
	dd->vals[dd->n] = val;
	dict_hashes(dd)[dd->n] = key_hash(key);
	if (++dd->n == 2)
		return track_dict(r, d);
	return 0;
}

/* ---- the stacks ------------------------------------------------------ */

static int push(struct reader *r, struct zf_pv *v)
{
	if (!v)
		return r->status;
	if (r->sp == r->stack_cap) {
		size_t cap = r->stack_cap ? r->stack_cap * 2 : 256;
		void *p = realloc(r->stack, cap * sizeof(*r->stack));

		if (!p)
			return bad(r, ZF_ENOMEM, "ran out of memory");
		r->stack = p;
		r->stack_cap = cap;
	}
	r->stack[r->sp++] = v;
	return 0;
}

static int underflow(struct reader *r, size_t need)
{
	if (r->nmarks && r->sp - r->fence < need)
		return bad(r, ZF_EFORMAT,
			   "needs %zu stack items after the last MARK, has %zu",
			   need, r->sp - r->fence);
	return bad(r, ZF_EFORMAT, "needs %zu stack items, has %zu", need,
		   r->sp);
}

static int pop(struct reader *r, struct zf_pv **v)
{
	if (r->sp <= r->fence)
		return underflow(r, 1);
	*v = r->stack[--r->sp];
	return 0;
}

static int top(struct reader *r, struct zf_pv **v)
{
	if (r->sp <= r->fence)
		return underflow(r, 1);
	*v = r->stack[r->sp - 1];
	return 0;
}

/* Removes the newest MARK; the items it covered are stack[*at, sp). */
static int pop_mark(struct reader *r, size_t *at)
{
	if (!r->nmarks)
		return bad(r, ZF_EFORMAT, "without a MARK");
	*at = r->marks[--r->nmarks];
	r->fence = r->nmarks ? r->marks[r->nmarks - 1] : 0;
	return 0;
}

static int push_mark(struct reader *r)
{
	if (r->nmarks >= r->lim.max_depth)
		return bad(r, ZF_EFORMAT, "opens more than %zu MARKs",
			   r->lim.max_depth);
	if (r->nmarks == r->marks_cap) {
		size_t cap = r->marks_cap ? r->marks_cap * 2 : 64;
		void *p = realloc(r->marks, cap * sizeof(*r->marks));

		if (!p)
			return bad(r, ZF_ENOMEM, "ran out of memory");
		r->marks = p;
		r->marks_cap = cap;
	}
	r->marks[r->nmarks++] = r->sp;
	r->fence = r->sp;
	return 0;
}

/* The value the newest MARK's items are added to: the item just below the
 * MARK, which must itself be above any older MARK. */
static int mark_target(struct reader *r, size_t *at, struct zf_pv **target)
{
	if (pop_mark(r, at))
		return r->status;
	if (*at <= r->fence)
		return bad(r, ZF_EFORMAT, "has nothing below its MARK to add to");
	*target = r->stack[*at - 1];
	return 0;
}

/* ---- the memo -------------------------------------------------------- */

static int memo_put(struct reader *r, uint64_t idx)
{
	struct zf_pv *v = NULL;

	if (top(r, &v))
		return r->status;
	if (idx >= r->lim.max_memo)
		return bad(r, ZF_EFORMAT, "of memo index %llu, at most %zu allowed",
			   (unsigned long long)idx, r->lim.max_memo - 1);
	if (idx >= r->memo_cap) {
		size_t cap = r->memo_cap ? r->memo_cap * 2 : 256;
		void *p;

		while (cap <= idx)
			cap *= 2;
		if (cap > r->lim.max_memo)
			cap = r->lim.max_memo;
		p = realloc(r->memo, cap * sizeof(*r->memo));
		if (!p)
			return bad(r, ZF_ENOMEM, "ran out of memory");
		r->memo = p;
		memset(r->memo + r->memo_cap, 0,
		       (cap - r->memo_cap) * sizeof(*r->memo));
		r->memo_cap = cap;
	}
	if (!r->memo[idx])
		r->memo_count++;
	r->memo[idx] = v;
	return 0;
}

static int memo_get(struct reader *r, uint64_t idx)
{
	if (idx >= r->memo_cap || !r->memo[idx])
		return bad(r, ZF_EFORMAT,
			   "of memo index %llu that was never stored",
			   (unsigned long long)idx);
	return push(r, r->memo[idx]);
}

/* ---- numbers --------------------------------------------------------- */

/* Decimal with an optional sign: 0 ok, 1 out of int64 range, -1 bad. */
static int parse_dec(const unsigned char *s, size_t n, int64_t *out)
{
	uint64_t v = 0, lim;
	bool neg = false;
	size_t i = 0;

	if (n && (s[0] == '-' || s[0] == '+')) {
		neg = s[0] == '-';
		i++;
	}
	if (i == n)
		return -1;
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < n; i++) {
		unsigned d = s[i] - (unsigned)'0';

		if (d > 9)
			return -1;
		if (v > (lim - d) / 10) {
			/* Keep scanning so that junk still reads as bad. */
			for (i++; i < n; i++)
				if ((unsigned)(s[i] - '0') > 9)
					return -1;
			return 1;
		}
		v = v * 10 + d;
	}
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/* An int too large for int64_t: opaque "int" holding its bytes. */
static struct zf_pv *big_int(struct reader *r, const void *s, size_t n,
			     enum zf_pv_type type)
{
	struct zf_pv *v, *b, *args;

	b = new_str(r, type, s, n);
	if (!b)
		return NULL;
	args = new_seq(r, ZF_PV_TUPLE, &b, 1);
	v = args ? new_pv(r, ZF_PV_OBJECT) : NULL;
	if (!v)
		return NULL;
	v->u.obj.module = "builtins";
	v->u.obj.name = "int";
	v->u.obj.args = args;
	((struct node *)v)->depth = 2;
	return v;
}

/* LONG1 / LONG4 payload: little-endian two's complement. */
static struct zf_pv *long_bin(struct reader *r, const unsigned char *p,
			      size_t n)
{
	uint64_t v = 0;

	if (n > 8) {
		unsigned char ext = p[7] & 0x80 ? 0xff : 0;

		for (size_t i = 8; i < n; i++)
			if (p[i] != ext)
				return big_int(r, p, n, ZF_PV_BYTES);
		n = 8;
	}
	for (size_t i = n; i-- > 0;)
		v = v << 8 | p[i];
	if (n && n < 8 && (p[n - 1] & 0x80))
		v |= ~(uint64_t)0 << (8 * n);
	return new_int(r, (int64_t)v);
}

/* INT and LONG: decimal text; INT "00" and "01" are False and True. */
static struct zf_pv *text_int(struct reader *r, const unsigned char *s,
			      size_t n, bool is_long)
{
	int64_t v;
	int rc;

	if (is_long && n && s[n - 1] == 'L')
		n--;
	if (!is_long && n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1'))
		return s[1] == '1' ? r->yes : r->no;
	rc = parse_dec(s, n, &v);
	if (rc < 0) {
		bad(r, ZF_EFORMAT, "argument '%.*s' is not a decimal integer",
		    (int)(n > 40 ? 40 : n), (const char *)s);
		return NULL;
	}
	if (rc > 0)
		return big_int(r, s, n, ZF_PV_STR);
	return new_int(r, v);
}

static struct zf_pv *text_float(struct reader *r, const unsigned char *s,
				size_t n)
{
	char buf[128];
	char *end;
	double d;
	struct zf_pv *v;

	if (n == 0 || n >= sizeof(buf)) {
		bad(r, ZF_EFORMAT, "argument of %zu bytes is not a float", n);
		return NULL;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	d = strtod(buf, &end);
	if (end != buf + n) {
		bad(r, ZF_EFORMAT, "argument '%s' is not a float", buf);
		return NULL;
	}
	v = new_pv(r, ZF_PV_FLOAT);
	if (v)
		v->u.f = d;
	return v;
}

/* ---- text strings (protocol 0) ---------------------------------------- */

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* STRING: a quoted repr whose escapes Python undoes with escape_decode. */
static struct zf_pv *text_string(struct reader *r, const unsigned char *s,
				 size_t n)
{
	char *out;
	size_t o = 0;
	struct zf_pv *v;

	if (n < 2 || (s[0] != '\'' && s[0] != '"') || s[n - 1] != s[0]) {
		bad(r, ZF_EFORMAT, "argument is not a quoted string");
		return NULL;
	}
	s++;
	n -= 2;
	out = zf_arena_alloc(r->arena, n + 1);
	if (!out) {
		nomem(r);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];

		if (c != '\\' || i + 1 == n) {
			out[o++] = (char)c;
			continue;
		}
		c = s[++i];
		switch (c) {
		case '\n':
			break;
		case 'a': out[o++] = '\a'; break;
		case 'b': out[o++] = '\b'; break;
		case 'f': out[o++] = '\f'; break;
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case 'v': out[o++] = '\v'; break;
		case '\\': case '\'': case '"': out[o++] = (char)c; break;
		case 'x':
			if (i + 2 >= n || hexval(s[i + 1]) < 0 ||
			    hexval(s[i + 2]) < 0) {
				bad(r, ZF_EFORMAT, "argument has a bad \\x escape");
				return NULL;
			}
			out[o++] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
			i += 2;
			break;
		default:
			if (c >= '0' && c <= '7') {
				unsigned val = c - '0';

				for (int k = 0; k < 2 && i + 1 < n &&
						s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
					val = val * 8 + (s[++i] - '0');
				out[o++] = (char)(val & 0xff);
			} else {
				/* Unknown escapes stay as they are. */
				out[o++] = '\\';
				out[o++] = (char)c;
			}
		}
	}
	out[o] = '\0';
	v = new_pv(r, ZF_PV_STR);
	if (v) {
		v->u.str.s = out;
		v->u.str.len = o;
	}
	return v;
}

static size_t put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* UNICODE: raw-unicode-escape, i.e. Latin-1 bytes plus \uXXXX and
 * \UXXXXXXXX after an odd run of backslashes. Output is at most twice the
 * input (a Latin-1 byte becomes two UTF-8 bytes; escapes shrink). */
static struct zf_pv *text_unicode(struct reader *r, const unsigned char *s,
				  size_t n)
{
	char *out;
	size_t o = 0;
	struct zf_pv *v;

	if (n > (SIZE_MAX - 1) / 2) {
		bad(r, ZF_ENOMEM, "argument too long");
		return NULL;
	}
	out = zf_arena_alloc(r->arena, 2 * n + 1);
	if (!out) {
		nomem(r);
		return NULL;
	}
	for (size_t i = 0; i < n;) {
		size_t run = 0, digits;
		uint32_t cp = 0;

		if (s[i] != '\\') {
			o += put_utf8(out + o, s[i++]);
			continue;
		}
		while (i < n && s[i] == '\\') {
			out[o++] = '\\';
			run++;
			i++;
		}
		if (!(run & 1) || i == n || (s[i] != 'u' && s[i] != 'U'))
			continue;
		o--; /* the escaping backslash */
		digits = s[i] == 'u' ? 4 : 8;
		i++;
		if (n - i < digits) {
			bad(r, ZF_EFORMAT, "argument has a truncated \\u escape");
			return NULL;
		}
		for (size_t k = 0; k < digits; k++, i++) {
			int h = hexval(s[i]);

			if (h < 0) {
				bad(r, ZF_EFORMAT, "argument has a bad \\u escape");
				return NULL;
			}
			cp = cp << 4 | (uint32_t)h;
		}
		if (cp > 0x10ffff) {
			bad(r, ZF_EFORMAT, "argument escapes code point 0x%x",
			    (unsigned)cp);
			return NULL;
		}
		o += put_utf8(out + o, cp);
	}
	out[o] = '\0';
	v = new_pv(r, ZF_PV_STR);
	if (v) {
		v->u.str.s = out;
		v->u.str.len = o;
	}
	return v;
}

/* ---- callables ------------------------------------------------------- */

static bool is_str(const struct zf_pv *v, const char *s)
{
	return zf_pv_is(v, ZF_PV_STR) && v->u.str.len == strlen(s) &&
	       !memcmp(v->u.str.s, s, v->u.str.len);
}

static bool is_builtins(const char *module)
{
	return !strcmp(module, "builtins") || !strcmp(module, "__builtin__");
}

static struct zf_pv *new_object(struct reader *r, const char *module,
				const char *name, struct zf_pv *args)
{
	struct zf_pv *v = new_pv(r, ZF_PV_OBJECT);

	if (!v)
		return NULL;
	v->u.obj.module = module;
	v->u.obj.name = name;
	v->u.obj.args = args;
	if (args) {
		((struct node *)v)->depth = 1;
		if (nest(r, v, args))
			return NULL;
	}
	return v;
}

static int check_dims(struct reader *r, const struct zf_pv *t,
		      const char *what, int64_t *out, size_t *ndim)
{
	if (!zf_pv_is(t, ZF_PV_TUPLE))
		return bad(r, ZF_EFORMAT,
			   "of _rebuild_tensor_v2 with a %s as %s, expected a tuple",
			   zf_pv_type_name(t), what);
	if (t->u.seq.n > ZF_PICKLE_MAX_DIMS)
		return bad(r, ZF_EFORMAT,
			   "of _rebuild_tensor_v2 with %zu dimensions, at most %d",
			   t->u.seq.n, ZF_PICKLE_MAX_DIMS);
	for (size_t i = 0; i < t->u.seq.n; i++) {
		const struct zf_pv *d = t->u.seq.items[i];

		if (!zf_pv_is(d, ZF_PV_INT))
			return bad(r, ZF_EFORMAT,
				   "of _rebuild_tensor_v2 with a %s in its %s",
				   zf_pv_type_name(d), what);
		if (d->u.i < 0)
			return bad(r, ZF_EFORMAT,
				   "of _rebuild_tensor_v2 with %s[%zu] = %lld",
				   what, i, (long long)d->u.i);
		out[i] = d->u.i;
	}
	*ndim = t->u.seq.n;
	return 0;
}

/*
 * torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
 * requires_grad, hooks[, metadata]). The view must lie inside its storage:
 * torch checks that too when it rebuilds.
 */
static struct zf_pv *rebuild_tensor(struct reader *r, const struct zf_pv *a)
{
	struct zf_pv *const *it = a->u.seq.items;
	const struct zf_pv_storage *st;
	int64_t size[ZF_PICKLE_MAX_DIMS], stride[ZF_PICKLE_MAX_DIMS];
	size_t ndim, sdim;
	uint64_t last = 0;
	bool empty = false;
	int64_t *dims;
	struct zf_pv *v;

	if (a->u.seq.n != 6 && a->u.seq.n != 7) {
		bad(r, ZF_EFORMAT,
		    "of _rebuild_tensor_v2 with %zu arguments, expected 6 or 7",
		    a->u.seq.n);
		return NULL;
	}
	if (!zf_pv_is(it[0], ZF_PV_STORAGE)) {
		bad(r, ZF_EFORMAT,
		    "of _rebuild_tensor_v2 with a %s as storage, expected a storage",
		    zf_pv_type_name(it[0]));
		return NULL;
	}
	st = &it[0]->u.storage;
	if (!zf_pv_is(it[1], ZF_PV_INT) || it[1]->u.i < 0) {
		bad(r, ZF_EFORMAT,
		    "of _rebuild_tensor_v2 with a bad storage offset (%s)",
		    zf_pv_type_name(it[1]));
		return NULL;
	}
	if (check_dims(r, it[2], "size", size, &ndim) ||
	    check_dims(r, it[3], "stride", stride, &sdim))
		return NULL;
	if (ndim != sdim) {
		bad(r, ZF_EFORMAT,
		    "of _rebuild_tensor_v2 with %zu sizes but %zu strides",
		    ndim, sdim);
		return NULL;
	}
	if (!zf_pv_is(it[4], ZF_PV_BOOL)) {
		bad(r, ZF_EFORMAT,
		    "of _rebuild_tensor_v2 with a %s as requires_grad",
		    zf_pv_type_name(it[4]));
		return NULL;
	}
	/* Highest element the view touches: offset + sum((size-1)*stride),
	 * each term below 2^63 * 2^63, so checked step by step. */
	last = (uint64_t)it[1]->u.i;
	for (size_t i = 0; i < ndim; i++) {
		uint64_t span;

		if (size[i] == 0) {
			empty = true;
			continue;
		}
		if (stride[i] &&
		    (uint64_t)(size[i] - 1) > UINT64_MAX / (uint64_t)stride[i])
			goto out_of_range;
		span = (uint64_t)(size[i] - 1) * (uint64_t)stride[i];
		if (span > UINT64_MAX - last)
			goto out_of_range;
		last += span;
	}
	if (!empty && last >= (uint64_t)st->numel)
		goto out_of_range;
	v = new_pv(r, ZF_PV_TENSOR);
	if (!v)
		return NULL;
	dims = zf_arena_alloc(r->arena, 2 * ndim * sizeof(*dims));
	if (!dims) {
		nomem(r);
		return NULL;
	}
	memcpy(dims, size, ndim * sizeof(*dims));
	memcpy(dims + ndim, stride, ndim * sizeof(*dims));
	v->u.tensor.storage = it[0];
	v->u.tensor.offset = it[1]->u.i;
	v->u.tensor.ndim = (uint32_t)ndim;
	v->u.tensor.size = dims;
	v->u.tensor.stride = dims + ndim;
	v->u.tensor.requires_grad = it[4]->u.b;
	return v;

out_of_range:
	bad(r, ZF_EFORMAT,
	    "of _rebuild_tensor_v2 with a view past the end of storage '%s' (%lld elements)",
	    st->key, (long long)st->numel);
	return NULL;
}

/* _codecs.encode(str, 'latin1'): how protocol 2 spells bytes. The str is
 * UTF-8 of code points below 256, each of which is one byte. */
static struct zf_pv *latin1_bytes(struct reader *r, const struct zf_pv *s)
{
	const unsigned char *p = (const unsigned char *)s->u.str.s;
	size_t n = s->u.str.len, o = 0;
	char *out = zf_arena_alloc(r->arena, n + 1);
	struct zf_pv *v;

	if (!out) {
		nomem(r);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (p[i] < 0x80) {
			out[o++] = (char)p[i];
		} else if ((p[i] == 0xc2 || p[i] == 0xc3) && i + 1 < n &&
			   (p[i + 1] & 0xc0) == 0x80) {
			out[o++] = (char)((p[i] & 0x03) << 6 | (p[i + 1] & 0x3f));
			i++;
		} else {
			bad(r, ZF_EFORMAT,
			    "of _codecs.encode with a character outside latin1 at %zu",
			    i);
			return NULL;
		}
	}
	out[o] = '\0';
	v = new_pv(r, ZF_PV_BYTES);
	if (v) {
		v->u.str.s = out;
		v->u.str.len = o;
	}
	return v;
}

/* Items of a list, tuple or set, as the args of set(), OrderedDict() etc. */
static bool is_iterable(const struct zf_pv *v)
{
	return zf_pv_is(v, ZF_PV_LIST) || zf_pv_is(v, ZF_PV_TUPLE) ||
	       zf_pv_is(v, ZF_PV_SET);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

/*
 * What calling fn with the tuple args would build (REDUCE, NEWOBJ, INST,
 * OBJ): the meanings of pickle.h, else an opaque object. Nothing runs.
 * nested is set inside _rebuild_from_type_v2, which may not nest itself.
 */
static struct zf_pv *call(struct reader *r, struct zf_pv *fn,
			  struct zf_pv *args, bool nested)
{
	const char *mod, *name;
	struct zf_pv *const *a = args->u.seq.items;
	size_t n = args->u.seq.n;

	if (zf_pv_is(fn, ZF_PV_OBJECT)) {
		/* Calling what an opaque call returned: still opaque. */
		return new_object(r, fn->u.obj.module, fn->u.obj.name, args);
	}
	if (!zf_pv_is(fn, ZF_PV_GLOBAL)) {
		bad(r, ZF_EFORMAT, "calls a %s, which is not callable",
		    zf_pv_type_name(fn));
		return NULL;
	}
	mod = fn->u.global.module;
	name = fn->u.global.name;
	if (!strcmp(mod, "torch._utils")) {
		if (!strcmp(name, "_rebuild_tensor_v2"))
			return rebuild_tensor(r, args);
		if ((!strcmp(name, "_rebuild_parameter") ||
		     !strcmp(name, "_rebuild_parameter_with_state")) &&
		    n >= 2 && zf_pv_is(a[0], ZF_PV_TENSOR)) {
			/* A parameter is its tensor; requires_grad is the
			 * parameter's, so the tensor node is copied. */
			struct zf_pv *v = new_pv(r, ZF_PV_TENSOR);

			if (!v)
				return NULL;
			v->u.tensor = a[0]->u.tensor;
			if (zf_pv_is(a[1], ZF_PV_BOOL))
				v->u.tensor.requires_grad = a[1]->u.b;
			return v;
		}
	} else if (!strcmp(mod, "torch._tensor") &&
		   !strcmp(name, "_rebuild_from_type_v2") && !nested &&
		   n == 4 && zf_pv_is(a[0], ZF_PV_GLOBAL) &&
		   zf_pv_is(a[2], ZF_PV_TUPLE)) {
		/* (func, type, args, state): what torch >= 1.13 writes for
		 * tensors with Python attributes; the data is func(*args). */
		return call(r, a[0], a[2], true);
	} else if (!strcmp(mod, "collections") && !strcmp(name, "OrderedDict")) {
		if (n == 0)
			return new_dict(r);
		if (n == 1 && is_iterable(a[0])) {
			struct zf_pv *d = new_dict(r);
			const struct zf_pv_seq *s = &a[0]->u.seq;

			for (size_t i = 0; d && i < s->n; i++) {
				struct zf_pv *kv = s->items[i];

				if ((!zf_pv_is(kv, ZF_PV_TUPLE) &&
				     !zf_pv_is(kv, ZF_PV_LIST)) ||
				    kv->u.seq.n != 2) {
					bad(r, ZF_EFORMAT,
					    "of OrderedDict with an item that is no pair");
					return NULL;
				}
				if (dict_set(r, d, kv->u.seq.items[0],
					     kv->u.seq.items[1]))
					return NULL;
			}
			return d;
		}
	} else if (!strcmp(mod, "torch") && !strcmp(name, "Size")) {
		if (n == 1 && zf_pv_is(a[0], ZF_PV_TUPLE))
			return a[0];
		if (n == 1 && zf_pv_is(a[0], ZF_PV_LIST))
			return new_seq(r, ZF_PV_TUPLE, a[0]->u.seq.items,
				       a[0]->u.seq.n);
		if (n == 0)
			return new_seq(r, ZF_PV_TUPLE, NULL, 0);
	} else if (is_builtins(mod)) {
		if (!strcmp(name, "set") || !strcmp(name, "frozenset")) {
			if (n == 0)
				return new_seq(r, ZF_PV_SET, NULL, 0);
			if (n == 1 && is_iterable(a[0]))
				return new_seq(r, ZF_PV_SET, a[0]->u.seq.items,
					       a[0]->u.seq.n);
		} else if (!strcmp(name, "getattr")) {
			if (n == 2 && zf_pv_is(a[0], ZF_PV_GLOBAL) &&
			    zf_pv_is(a[1], ZF_PV_STR)) {
				struct zf_pv *v = new_pv(r, ZF_PV_ENUM);

				if (!v)
					return NULL;
				v->u.enm.cls_module = a[0]->u.global.module;
				v->u.enm.cls_name = a[0]->u.global.name;
				v->u.enm.member = a[1]->u.str.s;
				return v;
			}
		} else if (!strcmp(name, "bytes") ||
			   !strcmp(name, "bytearray")) {
			/* Protocol 2 writes b'' as bytes() and a bytearray
			 * as bytearray(<bytes>). */
			if (n == 0)
				return new_str(r, ZF_PV_BYTES, "", 0);
			if (n == 1 && zf_pv_is(a[0], ZF_PV_BYTES))
				return a[0];
		}
	} else if ((!strcmp(mod, "copyreg") || !strcmp(mod, "copy_reg")) &&
		   !strcmp(name, "_reconstructor") && n == 3 &&
		   zf_pv_is(a[0], ZF_PV_GLOBAL)) {
		/* Protocols 0 and 1 build instances of plain classes this
		 * way: name the object after the class, not the helper. */
		return new_object(r, a[0]->u.global.module, a[0]->u.global.name,
				  args);
	} else if (!strcmp(mod, "_codecs") && !strcmp(name, "encode")) {
		if (n == 2 && zf_pv_is(a[0], ZF_PV_STR) &&
		    (is_str(a[1], "latin1") || is_str(a[1], "latin-1") ||
		     is_str(a[1], "latin_1") || is_str(a[1], "iso-8859-1")))
			return latin1_bytes(r, a[0]);
	}
	if (ends_with(name, "Enum") && n == 1 && zf_pv_is(a[0], ZF_PV_INT)) {
		struct zf_pv *v = new_pv(r, ZF_PV_ENUM);

		if (!v)
			return NULL;
		v->u.enm.cls_module = mod;
		v->u.enm.cls_name = name;
		v->u.enm.value = a[0]->u.i;
		return v;
	}
	return new_object(r, mod, name, args);
}

static struct zf_pv *new_global(struct reader *r, const void *mod,
				size_t mod_len, const void *name,
				size_t name_len)
{
	struct zf_pv *v = new_pv(r, ZF_PV_GLOBAL);

	if (!v)
		return NULL;
	v->u.global.module = zf_arena_memdup0(r->arena, mod, mod_len);
	v->u.global.name = zf_arena_memdup0(r->arena, name, name_len);
	if (!v->u.global.module || !v->u.global.name) {
		nomem(r);
		return NULL;
	}
	return v;
}

/* GLOBAL and INST: "module\nname\n". */
static struct zf_pv *text_global(struct reader *r)
{
	const unsigned char *m, *n;
	size_t ml, nl;

	if (take_line(r, &m, &ml) || take_line(r, &n, &nl))
		return NULL;
	if (!ml || !nl) {
		bad(r, ZF_EFORMAT, "with an empty module or name");
		return NULL;
	}
	return new_global(r, m, ml, n, nl);
}

/* ---- persistent ids: torch storages ----------------------------------- */

static struct storage_slot *storage_slot(struct reader *r, const char *key,
					 size_t len, uint64_t hash)
{
	size_t mask = r->storage_cap - 1;
	size_t i = (size_t)hash & mask;
	struct storage_slot *s;

	for (;; i = (i + 1) & mask) {
		s = &r->storages[i];
		if (!s->key || (s->hash == hash && s->key_len == len &&
				!memcmp(s->key, key, len)))
			return s;
	}
}

static int storage_table_grow(struct reader *r)
{
	struct storage_slot *old = r->storages;
	size_t old_cap = r->storage_cap;
	size_t cap = old_cap ? old_cap * 2 : 64;

	r->storages = calloc(cap, sizeof(*r->storages));
	if (!r->storages) {
		r->storages = old;
		return bad(r, ZF_ENOMEM, "ran out of memory");
	}
	r->storage_cap = cap;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].key)
			*storage_slot(r, old[i].key, old[i].key_len,
				      old[i].hash) = old[i];
	free(old);
	return 0;
}

/* A key like "0" or "4711" (no sign, no leading zero) as a number. */
static bool key_number(const char *s, size_t len, size_t *num)
{
	size_t v = 0;

	if (!len || len > 9 || (s[0] == '0' && len > 1))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (size_t)(s[i] - '0');
	}
	*num = v;
	return true;
}

/* Where the storage of key is cached: *out points at its node pointer,
 * which is NULL for a key not seen before. */
static int storage_entry(struct reader *r, const char *key, size_t len,
			 struct zf_pv ***out)
{
	struct storage_slot *slot;
	uint64_t hash;
	size_t num;

	/* Dense numbers only: a hostile "99999999" takes the hash path
	 * instead of a huge array. */
	if (key_number(key, len, &num) && num < 4 * r->by_num_count + 4096) {
		if (num >= r->by_num_cap) {
			size_t cap = r->by_num_cap ? r->by_num_cap * 2 : 1024;
			void *p;

			while (cap <= num)
				cap *= 2;
			p = realloc(r->by_num, cap * sizeof(*r->by_num));
			if (!p)
				return bad(r, ZF_ENOMEM, "ran out of memory");
			r->by_num = p;
			memset(r->by_num + r->by_num_cap, 0,
			       (cap - r->by_num_cap) * sizeof(*r->by_num));
			r->by_num_cap = cap;
		}
		if (!r->by_num[num])
			r->by_num_count++;
		*out = &r->by_num[num];
		return 0;
	}
	if (r->storage_count >= r->storage_cap / 2 && storage_table_grow(r))
		return r->status;
	hash = hash_bytes(key, len);
	slot = storage_slot(r, key, len, hash);
	if (!slot->key) {
		slot->key = key;
		slot->key_len = len;
		slot->hash = hash;
		r->storage_count++;
	}
	*out = &slot->pv;
	return 0;
}

/*
 * torch's persistent id ('storage', <GLOBAL torch.XxxStorage>, key,
 * location, numel): one node per key, because torch.save emits the id
 * again for every tensor that shares the storage.
 */
static struct zf_pv *persistent_load(struct reader *r, struct zf_pv *pid)
{
	struct zf_pv *const *a;
	const struct zf_pv *key;
	struct zf_pv **entry = NULL;
	struct zf_pv *v;

	if (!zf_pv_is(pid, ZF_PV_TUPLE) || pid->u.seq.n != 5 ||
	    !is_str(pid->u.seq.items[0], "storage")) {
		bad(r, ZF_EFORMAT,
		    "of a persistent id (a %s) that is not a torch storage",
		    zf_pv_type_name(pid));
		return NULL;
	}
	a = pid->u.seq.items;
	key = a[2];
	if (!zf_pv_is(a[1], ZF_PV_GLOBAL) || !zf_pv_is(key, ZF_PV_STR) ||
	    !zf_pv_is(a[3], ZF_PV_STR) || !zf_pv_is(a[4], ZF_PV_INT)) {
		bad(r, ZF_EFORMAT,
		    "of a storage id typed (%s, %s, %s, %s), expected (global, str, str, int)",
		    zf_pv_type_name(a[1]), zf_pv_type_name(key),
		    zf_pv_type_name(a[3]), zf_pv_type_name(a[4]));
		return NULL;
	}
	/* The key names a zip entry data/<key>: keep it a plain name. */
	if (!key->u.str.len || memchr(key->u.str.s, '/', key->u.str.len) ||
	    strlen(key->u.str.s) != key->u.str.len || is_str(key, "..") ||
	    is_str(key, ".")) {
		bad(r, ZF_EFORMAT, "of storage key '%.64s', not a plain name",
		    key->u.str.s);
		return NULL;
	}
	if (a[4]->u.i < 0) {
		bad(r, ZF_EFORMAT, "of storage '%s' with %lld elements",
		    key->u.str.s, (long long)a[4]->u.i);
		return NULL;
	}
	if (storage_entry(r, key->u.str.s, key->u.str.len, &entry))
		return NULL;
	if (*entry) {
		const struct zf_pv_storage *st = &(*entry)->u.storage;

		if (strcmp(st->class_name, a[1]->u.global.name) ||
		    st->numel != a[4]->u.i) {
			bad(r, ZF_EFORMAT,
			    "of storage '%s' as %s of %lld elements, earlier %s of %lld",
			    st->key, a[1]->u.global.name,
			    (long long)a[4]->u.i, st->class_name,
			    (long long)st->numel);
			return NULL;
		}
		return *entry;
	}
	v = new_pv(r, ZF_PV_STORAGE);
	if (!v)
		return NULL;
	v->u.storage.class_name = a[1]->u.global.name;
	v->u.storage.dtype = strcmp(a[1]->u.global.module, "torch") ?
		ZF_DT_INVALID : zf_dtype_from_storage(a[1]->u.global.name);
	v->u.storage.key = key->u.str.s;
	v->u.storage.location = a[3]->u.str.s;
	v->u.storage.numel = a[4]->u.i;
	*entry = v;
	return v;
}

/* ---- container opcodes ------------------------------------------------ */

/* The list or dict an opaque object keeps APPEND / SETITEM items in. */
static struct zf_pv *object_items(struct reader *r, struct zf_pv *obj,
				  enum zf_pv_type type)
{
	struct zf_pv *items = (struct zf_pv *)obj->u.obj.items;

	if (!items) {
		items = type == ZF_PV_DICT ? new_dict(r) :
					     new_seq(r, ZF_PV_LIST, NULL, 0);
		if (!items || nest(r, obj, items))
			return NULL;
		obj->u.obj.items = items;
	} else if (items->type != type) {
		bad(r, ZF_EFORMAT, "on an object that already holds %s items",
		    zf_pv_type_name(items));
		return NULL;
	}
	return items;
}

/* APPEND, APPENDS, ADDITEMS: n items at the stack top into target. */
static int add_items(struct reader *r, struct zf_pv *target,
		     struct zf_pv *const *items, size_t n)
{
	enum zf_pv_type want = r->op == 0x90 ? ZF_PV_SET : ZF_PV_LIST;

	if (zf_pv_is(target, ZF_PV_OBJECT)) {
		target = object_items(r, target, ZF_PV_LIST);
		if (!target)
			return r->status;
	} else if (target->type != want) {
		return bad(r, ZF_EFORMAT, "to a %s, expected a %s",
			   zf_pv_type_name(target),
			   want == ZF_PV_SET ? "set" : "list");
	}
	if (seq_reserve(r, &target->u.seq, n))
		return r->status;
	for (size_t i = 0; i < n; i++)
		if (seq_add(r, target, items[i]))
			return r->status;
	return 0;
}

/* SETITEM, SETITEMS: n / 2 pairs at the stack top into target. */
static int set_items(struct reader *r, struct zf_pv *target,
		     struct zf_pv *const *items, size_t n)
{
	if (n % 2)
		return bad(r, ZF_EFORMAT, "with an odd number (%zu) of items",
			   n);
	if (zf_pv_is(target, ZF_PV_OBJECT)) {
		target = object_items(r, target, ZF_PV_DICT);
		if (!target)
			return r->status;
	} else if (target->type != ZF_PV_DICT) {
		return bad(r, ZF_EFORMAT, "on a %s, expected a dict",
			   zf_pv_type_name(target));
	}
	if (dict_reserve(r, &target->u.dict, n / 2))
		return r->status;
	for (size_t i = 0; i < n; i += 2)
		if (dict_set(r, target, items[i], items[i + 1]))
			return r->status;
	return 0;
}

static int build(struct reader *r, struct zf_pv *state)
{
	struct zf_pv *v = NULL;

	if (top(r, &v))
		return r->status;
	switch (v->type) {
	case ZF_PV_OBJECT:
		if (nest(r, v, state))
			return r->status;
		v->u.obj.state = state;
		return 0;
	case ZF_PV_DICT:
	case ZF_PV_LIST:
	case ZF_PV_SET:
	case ZF_PV_TENSOR:
	case ZF_PV_STORAGE:
	case ZF_PV_ENUM:
	case ZF_PV_GLOBAL:
		return 0;
	default:
		return bad(r, ZF_EFORMAT, "on a %s, which has no state",
			   zf_pv_type_name(v));
	}
}

/* fn(stack[args_at], ..., stack[sp - 1]), replacing stack[at, sp). */
static int call_stack(struct reader *r, struct zf_pv *fn, size_t args_at,
		      size_t at)
{
	struct zf_pv *args = new_seq(r, ZF_PV_TUPLE, r->stack + args_at,
				     r->sp - args_at);

	if (!args)
		return r->status;
	r->sp = at;
	return push(r, call(r, fn, args, false));
}

/* ---- the loop -------------------------------------------------------- */

/* Data ops push via push(); "v" carries a NULL (failure) there too. */
static int step(struct reader *r)
{
	const unsigned char *p = NULL;
	uint64_t n = 0;
	size_t at = 0, len = 0;
	struct zf_pv *a = NULL, *b, *c;

	switch (r->op) {
	case 0x80: /* PROTO */
		if (take(r, 1, "protocol", &p))
			return r->status;
		if (*p > 5)
			return bad(r, ZF_EFORMAT, "%u, at most 5 is known", *p);
		return 0;
	case 0x95: /* FRAME: framing only, the opcodes inside are read as usual */
		if (take_le(r, 8, "frame length", &n))
			return r->status;
		if (n > r->len - r->pos)
			return bad(r, ZF_EFORMAT,
				   "of %llu bytes, but only %zu bytes are left",
				   (unsigned long long)n, r->len - r->pos);
		return 0;
	case '(':
		return push_mark(r);
	case '0': /* POP: pops a MARK when one is on top, as CPython does */
		if (r->nmarks && r->marks[r->nmarks - 1] == r->sp)
			return pop_mark(r, &at);
		return pop(r, &a);
	case '1':
		if (pop_mark(r, &at))
			return r->status;
		r->sp = at;
		return 0;
	case '2':
		if (top(r, &a))
			return r->status;
		return push(r, a);
	case 'N':
		return push(r, r->none);
	case 0x88:
		return push(r, r->yes);
	case 0x89:
		return push(r, r->no);
	case 'J':
		if (take_le(r, 4, "int", &n))
			return r->status;
		return push(r, new_int(r, (int32_t)(uint32_t)n));
	case 'K':
		if (take_le(r, 1, "int", &n))
			return r->status;
		return push(r, new_int(r, (int64_t)n));
	case 'M':
		if (take_le(r, 2, "int", &n))
			return r->status;
		return push(r, new_int(r, (int64_t)n));
	case 0x8a:
	case 0x8b:
		if (take_le(r, r->op == 0x8a ? 1 : 4, "length", &n))
			return r->status;
		if (r->op == 0x8b && n > INT32_MAX)
			return bad(r, ZF_EFORMAT, "with negative length");
		if (take_counted(r, n, &p))
			return r->status;
		return push(r, long_bin(r, p, (size_t)n));
	case 'I':
	case 'L':
		if (take_line(r, &p, &len))
			return r->status;
		return push(r, text_int(r, p, len, r->op == 'L'));
	case 'F':
		if (take_line(r, &p, &len))
			return r->status;
		return push(r, text_float(r, p, len));
	case 'G': {
		double d;

		if (take(r, 8, "float", &p))
			return r->status;
		n = 0;
		for (size_t i = 0; i < 8; i++)
			n = n << 8 | p[i]; /* big-endian, unlike the ints */
		memcpy(&d, &n, sizeof(d));
		a = new_pv(r, ZF_PV_FLOAT);
		if (a)
			a->u.f = d;
		return push(r, a);
	}
	case 'S':
		if (take_line(r, &p, &len))
			return r->status;
		return push(r, text_string(r, p, len));
	case 'V':
		if (take_line(r, &p, &len))
			return r->status;
		return push(r, text_unicode(r, p, len));
	case 'T': /* BINSTRING: a signed length */
		if (take_le(r, 4, "length", &n))
			return r->status;
		if (n > INT32_MAX)
			return bad(r, ZF_EFORMAT, "with negative length");
		if (take_counted(r, n, &p))
			return r->status;
		return push(r, new_str(r, ZF_PV_STR, p, (size_t)n));
	case 'X':
	case 'U':
	case 0x8c:
	case 0x8d:
		len = r->op == 'X' ? 4 : r->op == 0x8d ? 8 : 1;
		if (take_le(r, len, "length", &n) || take_counted(r, n, &p))
			return r->status;
		return push(r, new_str(r, ZF_PV_STR, p, (size_t)n));
	case 'B':
	case 'C':
	case 0x8e:
	case 0x96:
		len = r->op == 'B' ? 4 : r->op == 'C' ? 1 : 8;
		if (take_le(r, len, "length", &n) || take_counted(r, n, &p))
			return r->status;
		return push(r, new_str(r, ZF_PV_BYTES, p, (size_t)n));
	case ')':
		return push(r, r->empty_tuple);
	case ']':
		return push(r, new_seq(r, ZF_PV_LIST, NULL, 0));
	case '}':
		return push(r, new_dict(r));
	case 0x8f:
		return push(r, new_seq(r, ZF_PV_SET, NULL, 0));
	case 0x85:
	case 0x86:
	case 0x87:
		len = (size_t)(r->op - 0x84);
		if (r->sp - r->fence < len)
			return underflow(r, len);
		a = new_seq(r, ZF_PV_TUPLE, r->stack + r->sp - len, len);
		r->sp -= len;
		return push(r, a);
	case 't':
	case 'l':
	case 0x91:
		if (pop_mark(r, &at))
			return r->status;
		a = new_seq(r, r->op == 't' ? ZF_PV_TUPLE :
			       r->op == 'l' ? ZF_PV_LIST : ZF_PV_SET,
			    r->stack + at, r->sp - at);
		r->sp = at;
		return push(r, a);
	case 'd':
		if (pop_mark(r, &at))
			return r->status;
		a = new_dict(r);
		if (!a || set_items(r, a, r->stack + at, r->sp - at))
			return r->status;
		r->sp = at;
		return push(r, a);
	case 'a':
		if (r->sp - r->fence < 2)
			return underflow(r, 2);
		if (add_items(r, r->stack[r->sp - 2], r->stack + r->sp - 1, 1))
			return r->status;
		r->sp--;
		return 0;
	case 'e':
	case 0x90:
		if (mark_target(r, &at, &a) ||
		    add_items(r, a, r->stack + at, r->sp - at))
			return r->status;
		r->sp = at;
		return 0;
	case 's':
		if (r->sp - r->fence < 3)
			return underflow(r, 3);
		if (set_items(r, r->stack[r->sp - 3], r->stack + r->sp - 2, 2))
			return r->status;
		r->sp -= 2;
		return 0;
	case 'u':
		if (mark_target(r, &at, &a) ||
		    set_items(r, a, r->stack + at, r->sp - at))
			return r->status;
		r->sp = at;
		return 0;
	case 'q':
	case 'r':
		if (take_le(r, r->op == 'q' ? 1 : 4, "memo index", &n))
			return r->status;
		return memo_put(r, n);
	case 'h':
	case 'j':
		if (take_le(r, r->op == 'h' ? 1 : 4, "memo index", &n))
			return r->status;
		return memo_get(r, n);
	case 'p':
	case 'g': {
		int64_t idx;

		if (take_line(r, &p, &len))
			return r->status;
		if (parse_dec(p, len, &idx) || idx < 0)
			return bad(r, ZF_EFORMAT, "with a bad memo index");
		return r->op == 'p' ? memo_put(r, (uint64_t)idx) :
				      memo_get(r, (uint64_t)idx);
	}
	case 0x94:
		return memo_put(r, r->memo_count);
	case 'c':
		return push(r, text_global(r));
	case 0x93:
		if (r->sp - r->fence < 2)
			return underflow(r, 2);
		a = r->stack[r->sp - 2];
		b = r->stack[r->sp - 1];
		if (!zf_pv_is(a, ZF_PV_STR) || !zf_pv_is(b, ZF_PV_STR))
			return bad(r, ZF_EFORMAT, "of a %s and a %s, expected strs",
				   zf_pv_type_name(a), zf_pv_type_name(b));
		r->sp -= 2;
		return push(r, new_global(r, a->u.str.s, a->u.str.len,
					  b->u.str.s, b->u.str.len));
	case 'R':
	case 0x81:
		if (r->sp - r->fence < 2)
			return underflow(r, 2);
		a = r->stack[r->sp - 2];
		b = r->stack[r->sp - 1];
		if (!zf_pv_is(b, ZF_PV_TUPLE))
			return bad(r, ZF_EFORMAT, "with a %s as arguments, expected a tuple",
				   zf_pv_type_name(b));
		r->sp -= 2;
		return push(r, call(r, a, b, false));
	case 0x92: /* NEWOBJ_EX: keyword arguments are dropped */
		if (r->sp - r->fence < 3)
			return underflow(r, 3);
		a = r->stack[r->sp - 3];
		b = r->stack[r->sp - 2];
		c = r->stack[r->sp - 1];
		if (!zf_pv_is(b, ZF_PV_TUPLE) || !zf_pv_is(c, ZF_PV_DICT))
			return bad(r, ZF_EFORMAT,
				   "with a %s and a %s, expected a tuple and a dict",
				   zf_pv_type_name(b), zf_pv_type_name(c));
		r->sp -= 3;
		return push(r, call(r, a, b, false));
	case 'i':
		a = text_global(r);
		if (!a || pop_mark(r, &at))
			return r->status;
		return call_stack(r, a, at, at);
	case 'o':
		if (pop_mark(r, &at))
			return r->status;
		if (at == r->sp)
			return bad(r, ZF_EFORMAT, "without a class after its MARK");
		return call_stack(r, r->stack[at], at + 1, at);
	case 'b':
		if (pop(r, &a))
			return r->status;
		return build(r, a);
	case 'Q':
		if (pop(r, &a))
			return r->status;
		return push(r, persistent_load(r, a));
	case 'P':
		if (take_line(r, &p, &len))
			return r->status;
		return bad(r, ZF_EFORMAT,
			   "of the text id '%.*s', torch writes tuples with BINPERSID",
			   (int)(len > 40 ? 40 : len), (const char *)p);
	case 0x82:
	case 0x83:
	case 0x84:
		return bad(r, ZF_EFORMAT,
			   "refers to the copyreg extension registry, which zerofs does not have");
	case 0x97:
	case 0x98:
		return bad(r, ZF_EFORMAT,
			   "refers to an out-of-band buffer, which torch.save never writes");
	default:
		return bad(r, ZF_EFORMAT, "0x%02x is unknown", r->op);
	}
}

/* ---- duplicate dict keys ---------------------------------------------- */

static bool same_key(const struct zf_pv *a, const struct zf_pv *b)
{
	if (a->type != b->type)
		return false;
	if (a->type == ZF_PV_INT)
		return a->u.i == b->u.i;
	return a->u.str.len == b->u.str.len &&
	       !memcmp(a->u.str.s, b->u.str.s, a->u.str.len);
}

/*
 * Python's dict keeps one entry per key: the first position, the last
 * value. Only hostile pickles repeat keys, but then zf_pv_get() and every
 * caller iterating names would see two, so str and int keys are folded
 * here, once, with a hash table reused across dicts.
 */
static int fold_duplicates(struct reader *r)
{
	uint32_t *slots = NULL;
	size_t nslots = 0;
	int rc = 0;

	for (size_t di = 0; di < r->ndicts; di++) {
		struct zf_pv_dict *d = &r->dicts[di]->u.dict;
		uint64_t *hashes;
		size_t want = 16, kept = 0, mask;

		/* 32-bit slots cannot index 2^31 entries (far beyond what
		 * max_bytes' default allows): such a dict is kept as is. */
		if (d->n < 2 || d->n >= (size_t)1 << 31)
			continue;
		hashes = dict_hashes(d); /* not before: an empty dict has no block */
		while (want < 2 * d->n)
			want *= 2;
		if (want > nslots) {
			free(slots);
			slots = malloc(want * sizeof(*slots));
			if (!slots) {
				rc = zf_fail(r->err, ZF_ENOMEM,
					     "pickle: ran out of memory");
				goto out;
			}
			nslots = want;
		}
		memset(slots, 0xff, want * sizeof(*slots));
		mask = want - 1;
		for (size_t i = 0; i < d->n; i++) {
			uint64_t h = hashes[i];
			size_t at;

			if (h) {
				at = (size_t)h & mask;
				while (slots[at] != UINT32_MAX &&
				       (hashes[slots[at]] != h ||
					!same_key(d->keys[slots[at]],
						  d->keys[i])))
					at = (at + 1) & mask;
				if (slots[at] != UINT32_MAX) {
					d->vals[slots[at]] = d->vals[i];
					continue;
				}
				slots[at] = (uint32_t)kept;
			}
			d->keys[kept] = d->keys[i];
			d->vals[kept] = d->vals[i];
			hashes[kept++] = h;
		}
		d->n = kept;
	}
out:
	free(slots);
	return rc;
}

/* ---- entry points ------------------------------------------------------ */

static int run(struct reader *r, const struct zf_pv **root)
{
	/* Allocated up front: r->stack + at must never be NULL + 0. */
	r->stack_cap = 256;
	r->stack = malloc(r->stack_cap * sizeof(*r->stack));
	if (!r->stack)
		return bad(r, ZF_ENOMEM, "ran out of memory");
	r->none = new_pv(r, ZF_PV_NONE);
	r->yes = new_pv(r, ZF_PV_BOOL);
	r->no = new_pv(r, ZF_PV_BOOL);
	r->empty_tuple = new_seq(r, ZF_PV_TUPLE, NULL, 0);
	if (!r->none || !r->yes || !r->no || !r->empty_tuple)
		return r->status;
	r->yes->u.b = true;
	while (r->pos < r->len) {
		r->op_pos = r->pos;
		r->op = r->data[r->pos++];
		if (r->op == '.') {
			if (r->nmarks)
				return bad(r, ZF_EFORMAT,
					   "with %zu MARKs still open",
					   r->nmarks);
			if (r->sp != 1)
				return bad(r, ZF_EFORMAT,
					   "with %zu items on the stack, expected 1",
					   r->sp);
			*root = r->stack[0];
			return fold_duplicates(r);
		}
		if (step(r))
			return r->status;
	}
	return zf_fail(r->err, ZF_EFORMAT,
		       "pickle: input ends at byte %zu without STOP", r->len);
}

int zf_pickle_load(const void *data, size_t len,
		   const struct zf_pickle_limits *limits,
		   struct zf_pickle **out, struct zf_error *err)
{
	struct reader r = { 0 };
	struct zf_pickle *p = NULL;
	const struct zf_pv *root = NULL;
	int rc;

	*out = NULL;
	if (!data && len)
		return zf_fail(err, ZF_EUSAGE, "pickle: no data");
	if (limits)
		r.lim = *limits;
	if (!r.lim.max_depth)
		r.lim.max_depth = ZF_PICKLE_MAX_DEPTH;
	if (!r.lim.max_memo)
		r.lim.max_memo = ZF_PICKLE_MAX_MEMO;
	if (!r.lim.max_values)
		r.lim.max_values = ZF_PICKLE_MAX_VALUES;
	if (!r.lim.max_bytes)
		r.lim.max_bytes = ZF_PICKLE_MAX_BYTES;
	p = malloc(sizeof(*p));
	if (!p)
		return zf_fail(err, ZF_ENOMEM, "pickle: out of memory");
	zf_arena_init(&p->arena, r.lim.max_bytes);
	r.data = data;
	r.len = len;
	r.arena = &p->arena;
	r.err = err;
	rc = run(&r, &root);
	free(r.stack);
	free(r.marks);
	free(r.memo);
	free(r.storages);
	free(r.by_num);
	free(r.dicts);
	if (rc) {
		zf_pickle_free(p);
		return rc;
	}
	p->root = root;
	*out = p;
	return ZF_OK;
}

const struct zf_pv *zf_pickle_root(const struct zf_pickle *p)
{
	return p ? p->root : NULL;
}

void zf_pickle_free(struct zf_pickle *p)
{
	if (!p)
		return;
	zf_arena_release(&p->arena);
	free(p);
}

const struct zf_pv *zf_pv_get(const struct zf_pv *v, const char *key)
{
	size_t len;

	if (!zf_pv_is(v, ZF_PV_DICT) || !key)
		return NULL;
	len = strlen(key);
	for (size_t i = 0; i < v->u.dict.n; i++) {
		const struct zf_pv *k = v->u.dict.keys[i];

		if (k->type == ZF_PV_STR && k->u.str.len == len &&
		    !memcmp(k->u.str.s, key, len))
			return v->u.dict.vals[i];
	}
	return NULL;
}

const struct zf_pv *zf_pv_get_int(const struct zf_pv *v, int64_t key)
{
	if (!zf_pv_is(v, ZF_PV_DICT))
		return NULL;
	for (size_t i = 0; i < v->u.dict.n; i++) {
		const struct zf_pv *k = v->u.dict.keys[i];

		if (k->type == ZF_PV_INT && k->u.i == key)
			return v->u.dict.vals[i];
	}
	return NULL;
}
