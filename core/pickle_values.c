/* SPDX-License-Identifier: MIT */
/*
 * The values the pickle machine builds: allocated in the parse's arena,
 * read-only once the parse is over. Containers carry their nesting depth
 * (struct pk_node) so that depth is checked as they are built, never by a
 * walk; dict entries carry their key's hash so that repeated keys are
 * folded in one pass at the end (pk_fold_duplicates).
 */
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ckd.h"
#include "grow.h"
#include "pickle_i.h"

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

/* ---- allocation ------------------------------------------------------- */

bool pk_is_node(enum zf_pv_type type)
{
	return (type >= ZF_PV_TUPLE && type <= ZF_PV_DICT) ||
	       type == ZF_PV_OBJECT;
}

static size_t head_size(enum zf_pv_type type)
{
	if (pk_is_node(type))
		return sizeof(struct pk_node);
	if (type == ZF_PV_GLOBAL)
		return sizeof(struct pk_global);
	return sizeof(struct zf_pv);
}

static size_t depth_of(const struct zf_pv *v)
{
	return pk_is_node(v->type) ? ((const struct pk_node *)v)->depth : 0;
}

struct zf_pv *pk_new_tail(struct pk_reader *r, enum zf_pv_type type,
			  size_t extra, void **tail)
{
	size_t head = head_size(type), bytes;
	struct zf_pv *v;

	if (r->nvalues >= r->lim.max_values) {
		pk_bad(r, ZF_EFORMAT, "would create more than %zu values",
		       r->lim.max_values);
		return NULL;
	}
	if (zf_ckd_add(&bytes, head, extra)) {
		pk_bad(r, ZF_ENOMEM, "needs more memory than there is");
		return NULL;
	}
	v = zf_arena_alloc(r->arena, bytes);
	if (!v) {
		pk_nomem(r);
		return NULL;
	}
	memset(v, 0, head);
	v->type = type;
	if (pk_is_node(type))
		((struct pk_node *)v)->depth = 1;
	if (tail)
		*tail = (char *)v + head;
	r->nvalues++;
	return v;
}

struct zf_pv *pk_new(struct pk_reader *r, enum zf_pv_type type)
{
	return pk_new_tail(r, type, 0, NULL);
}

int pk_nest(struct pk_reader *r, struct zf_pv *parent,
	    const struct zf_pv *child)
{
	struct pk_node *n = (struct pk_node *)parent;
	size_t d = depth_of(child) + 1;

	if (d <= n->depth)
		return 0;
	if (d > r->lim.max_depth)
		return pk_bad(r, ZF_EFORMAT, "nests values more than %zu deep",
			      r->lim.max_depth);
	n->depth = d;
	return 0;
}

struct zf_pv *pk_new_str(struct pk_reader *r, enum zf_pv_type type,
			 const void *s, size_t len)
{
	struct zf_pv *v;
	size_t bytes;
	char *tail;

	if (zf_ckd_add(&bytes, len, (size_t)1)) {
		pk_bad(r, ZF_ENOMEM, "needs more memory than there is");
		return NULL;
	}
	v = pk_new_tail(r, type, bytes, (void **)&tail);
	if (!v)
		return NULL;
	if (len)
		memcpy(tail, s, len);
	tail[len] = '\0';
	v->u.str.s = tail;
	v->u.str.len = len;
	return v;
}

struct zf_pv *pk_new_int(struct pk_reader *r, int64_t i)
{
	struct zf_pv **slot = NULL;
	struct zf_pv *v;

	if (i >= PK_SMALL_INT_MIN && i <= PK_SMALL_INT_MAX) {
		slot = &r->small_ints[i - PK_SMALL_INT_MIN];
		if (*slot)
			return *slot;
	}
	v = pk_new(r, ZF_PV_INT);
	if (v) {
		v->u.i = i;
		if (slot)
			*slot = v;
	}
	return v;
}

struct zf_pv *pk_big_int(struct pk_reader *r, const void *s, size_t n,
			 enum zf_pv_type type)
{
	struct zf_pv *v, *b, *args;

	b = pk_new_str(r, type, s, n);
	if (!b)
		return NULL;
	args = pk_new_seq(r, ZF_PV_TUPLE, &b, 1);
	v = args ? pk_new(r, ZF_PV_OBJECT) : NULL;
	if (!v)
		return NULL;
	v->u.obj.module = "builtins";
	v->u.obj.name = "int";
	v->u.obj.args = args;
	((struct pk_node *)v)->depth = 2;
	return v;
}

/* ---- sequences -------------------------------------------------------- */

/* Arena arrays of pointers double like work arrays; the old copy stays in
 * the arena (it cannot be freed alone), so at most half is waste. */
static size_t arena_grow_cap(struct pk_reader *r, size_t cap, size_t n,
			     size_t more, size_t elem)
{
	size_t need, to;

	if (zf_ckd_add(&need, n, more) ||
	    !(to = zf_grow_cap(cap, need, elem, 8))) {
		pk_bad(r, ZF_ENOMEM, "makes a container too large");
		return 0;
	}
	return to;
}

int pk_seq_reserve(struct pk_reader *r, struct zf_pv_seq *s, size_t more)
{
	size_t cap;
	void *p;

	if (s->cap - s->n >= more)
		return 0;
	cap = arena_grow_cap(r, s->cap, s->n, more, sizeof(*s->items));
	if (!cap)
		return r->status;
	p = zf_arena_grow(r->arena, s->items, s->n * sizeof(*s->items),
			  cap * sizeof(*s->items));
	if (!p)
		return pk_nomem(r);
	s->items = p;
	s->cap = cap;
	return 0;
}

struct zf_pv *pk_new_seq(struct pk_reader *r, enum zf_pv_type type,
			 struct zf_pv *const *items, size_t n)
{
	struct zf_pv **tail;
	struct zf_pv *v;
	size_t bytes;

	if (type == ZF_PV_TUPLE && n == 0 && r->empty_tuple)
		return r->empty_tuple; /* immutable, so one is enough */
	if (zf_ckd_mul(&bytes, n, sizeof(*tail))) {
		pk_bad(r, ZF_ENOMEM, "makes a container too large");
		return NULL;
	}
	v = pk_new_tail(r, type, bytes, (void **)&tail);
	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (pk_nest(r, v, items[i]))
			return NULL;
		tail[i] = items[i];
	}
	v->u.seq.items = n ? tail : NULL;
	v->u.seq.n = n;
	v->u.seq.cap = n;
	return v;
}

int pk_seq_add(struct pk_reader *r, struct zf_pv *v, struct zf_pv *item)
{
	if (pk_nest(r, v, item) || pk_seq_reserve(r, &v->u.seq, 1))
		return r->status;
	v->u.seq.items[v->u.seq.n++] = item;
	return 0;
}

/* ---- dicts ------------------------------------------------------------ */

struct zf_pv *pk_new_dict(struct pk_reader *r)
{
	return pk_new(r, ZF_PV_DICT);
}

/* Notes d for the duplicate-key fold; called when it gets a 2nd entry,
 * so the fold never visits the many empty and 1-entry dicts. */
static int track_dict(struct pk_reader *r, struct zf_pv *d)
{
	if (r->ndicts == r->dicts_cap &&
	    pk_work_grow(r, &r->dicts, &r->dicts_cap, r->ndicts + 1,
			 sizeof(*r->dicts), 64, false))
		return r->status;
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

int pk_dict_reserve(struct pk_reader *r, struct zf_pv_dict *d, size_t more)
{
	const size_t entry = 2 * sizeof(*d->keys) + sizeof(uint64_t);
	struct zf_pv **block;
	size_t cap;

	if (d->cap - d->n >= more)
		return 0;
	cap = arena_grow_cap(r, d->cap, d->n, more, entry);
	if (!cap)
		return r->status;
	block = zf_arena_alloc(r->arena, cap * entry);
	if (!block)
		return pk_nomem(r);
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

uint64_t pk_hash_bytes(const char *s, size_t n)
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
		h = pk_hash_bytes(k->u.str.s, k->u.str.len) ^ k->type;
	} else {
		return 0;
	}
	return h ? h : 1;
}

int pk_dict_set(struct pk_reader *r, struct zf_pv *d, struct zf_pv *key,
		struct zf_pv *val)
{
	struct zf_pv_dict *dd = &d->u.dict;

	if (pk_nest(r, d, key) || pk_nest(r, d, val) ||
	    pk_dict_reserve(r, dd, 1))
		return r->status;
	dd->keys[dd->n] = key;
	dd->vals[dd->n] = val;
	dict_hashes(dd)[dd->n] = key_hash(key);
	if (++dd->n == 2)
		return track_dict(r, d);
	return 0;
}

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
 * here, once, with a hash table reused across dicts (charged to the
 * budget like the work arrays).
 */
int pk_fold_duplicates(struct pk_reader *r)
{
	uint32_t *slots = NULL;
	size_t nslots = 0;
	int rc = 0;

	for (size_t di = 0; di < r->ndicts; di++) {
		struct zf_pv_dict *d = &r->dicts[di]->u.dict;
		uint64_t *hashes;
		size_t want = 16, kept = 0, mask;

		/* 32-bit slots cannot index 2^31 entries (far beyond what
		 * the memory bounds allow): such a dict is kept as is. */
		if (d->n < 2 || d->n >= (size_t)1 << 31)
			continue;
		hashes = dict_hashes(d); /* not before: an empty dict has no block */
		while (want < 2 * d->n)
			want *= 2;
		if (want > nslots) {
			pk_work_uncharge(r, nslots * sizeof(*slots));
			pk_work_free(slots, nslots * sizeof(*slots));
			slots = NULL;
			nslots = 0;
			if ((rc = pk_work_charge(r, want * sizeof(*slots))))
				goto out;
			slots = pk_work_alloc(want * sizeof(*slots), false);
			if (!slots) {
				pk_work_uncharge(r, want * sizeof(*slots));
				rc = pk_bad(r, ZF_ENOMEM, "ran out of memory");
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
	pk_work_uncharge(r, nslots * sizeof(*slots));
	pk_work_free(slots, nslots * sizeof(*slots));
	return rc;
}

/* ---- objects and globals ---------------------------------------------- */

bool pk_is_str(const struct zf_pv *v, const char *s)
{
	return zf_pv_is(v, ZF_PV_STR) && v->u.str.len == strlen(s) &&
	       !memcmp(v->u.str.s, s, v->u.str.len);
}

struct zf_pv *pk_new_object(struct pk_reader *r, const char *module,
			    const char *name, struct zf_pv *args)
{
	struct zf_pv *v = pk_new(r, ZF_PV_OBJECT);

	if (!v)
		return NULL;
	v->u.obj.module = module;
	v->u.obj.name = name;
	v->u.obj.args = args;
	if (args && pk_nest(r, v, args))
		return NULL;
	return v;
}

struct zf_pv *pk_new_global(struct pk_reader *r, const void *mod,
			    size_t mod_len, const void *name, size_t name_len)
{
	struct zf_pv *v = pk_new(r, ZF_PV_GLOBAL);

	if (!v)
		return NULL;
	v->u.global.module = zf_arena_memdup0(r->arena, mod, mod_len);
	v->u.global.name = zf_arena_memdup0(r->arena, name, name_len);
	if (!v->u.global.module || !v->u.global.name) {
		pk_nomem(r);
		return NULL;
	}
	((struct pk_global *)v)->callable =
		pk_lookup(v->u.global.module, v->u.global.name);
	return v;
}

/* ---- public accessors ------------------------------------------------- */

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
