/* SPDX-License-Identifier: MIT */
/*
 * What the callables named in torch and DeepSpeed pickles mean, without
 * importing or running anything: one table of {module, name, handler}
 * (callables[] below), looked up once per GLOBAL, and torch's persistent
 * ids (storages). Everything not in the table becomes an opaque
 * ZF_PV_OBJECT, which is an error only where a caller needs its content.
 *
 * A handler gets the call's argument tuple and either builds the value
 * (*out), fails (a status, recorded), or declines (*out left NULL): then
 * the call is what any unknown callable gives, an opaque object. It
 * declines rather than fails when the arguments are not the shape torch
 * writes, because such a call may well be something zerofs never needs.
 *
 * What torch writes: its torch/serialization.py (_save, _legacy_save:
 * the persistent ids) and torch/_utils.py (the _rebuild_* functions);
 * what DeepSpeed adds: the stand-ins of tests/gen/make_ckpt.py.
 */
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ckd.h"
#include "pickle_i.h"

typedef int pk_handler(struct pk_reader *r, const struct zf_pv *fn,
		       struct zf_pv *args, struct zf_pv **out);

struct pk_callable {
	const char *module;
	const char *name;
	pk_handler *handle;
};

/* ---- tensors ---------------------------------------------------------- */

static int check_dims(struct pk_reader *r, const struct zf_pv *t,
		      const char *what, int64_t *out, size_t *ndim)
{
	if (!zf_pv_is(t, ZF_PV_TUPLE))
		return pk_bad(r, ZF_EFORMAT,
			      "of _rebuild_tensor_v2 with a %s as %s, expected a tuple",
			      zf_pv_type_name(t), what);
	if (t->u.seq.n > ZF_PICKLE_MAX_DIMS)
		return pk_bad(r, ZF_EFORMAT,
			      "of _rebuild_tensor_v2 with %zu dimensions, at most %d",
			      t->u.seq.n, ZF_PICKLE_MAX_DIMS);
	for (size_t i = 0; i < t->u.seq.n; i++) {
		const struct zf_pv *d = t->u.seq.items[i];

		if (!zf_pv_is(d, ZF_PV_INT))
			return pk_bad(r, ZF_EFORMAT,
				      "of _rebuild_tensor_v2 with a %s in its %s",
				      zf_pv_type_name(d), what);
		if (d->u.i < 0)
			return pk_bad(r, ZF_EFORMAT,
				      "of _rebuild_tensor_v2 with %s[%zu] = %lld",
				      what, i, (long long)d->u.i);
		out[i] = d->u.i;
	}
	*ndim = t->u.seq.n;
	return 0;
}

/*
 * torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
 * requires_grad, hooks[, metadata]). The view must lie inside its storage
 * (strides >= 0, offset + sum((size - 1) * stride) < numel unless a size
 * is 0): torch checks that too when it rebuilds.
 */
static int rebuild_tensor(struct pk_reader *r, const struct zf_pv *fn,
			  struct zf_pv *args, struct zf_pv **out)
{
	struct zf_pv *const *it = args->u.seq.items;
	const struct zf_pv_storage *st;
	int64_t size[ZF_PICKLE_MAX_DIMS], stride[ZF_PICKLE_MAX_DIMS];
	size_t ndim, sdim;
	uint64_t last, span;
	bool empty = false;
	int64_t *dims;
	struct zf_pv *v;

	(void)fn;
	if (args->u.seq.n != 6 && args->u.seq.n != 7)
		return pk_bad(r, ZF_EFORMAT,
			      "of _rebuild_tensor_v2 with %zu arguments, expected 6 or 7",
			      args->u.seq.n);
	if (!zf_pv_is(it[0], ZF_PV_STORAGE))
		return pk_bad(r, ZF_EFORMAT,
			      "of _rebuild_tensor_v2 with a %s as storage, expected a storage",
			      zf_pv_type_name(it[0]));
	st = &it[0]->u.storage;
	if (!zf_pv_is(it[1], ZF_PV_INT) || it[1]->u.i < 0)
		return pk_bad(r, ZF_EFORMAT,
			      "of _rebuild_tensor_v2 with a bad storage offset (%s)",
			      zf_pv_type_name(it[1]));
	if (check_dims(r, it[2], "size", size, &ndim) ||
	    check_dims(r, it[3], "stride", stride, &sdim))
		return r->status;
	if (ndim != sdim)
		return pk_bad(r, ZF_EFORMAT,
			      "of _rebuild_tensor_v2 with %zu sizes but %zu strides",
			      ndim, sdim);
	if (!zf_pv_is(it[4], ZF_PV_BOOL))
		return pk_bad(r, ZF_EFORMAT,
			      "of _rebuild_tensor_v2 with a %s as requires_grad",
			      zf_pv_type_name(it[4]));
	/* Highest element the view touches: offset + sum((size-1)*stride). */
	last = (uint64_t)it[1]->u.i;
	for (size_t i = 0; i < ndim; i++) {
		if (size[i] == 0) {
			empty = true;
			continue;
		}
		if (zf_ckd_mul(&span, (uint64_t)(size[i] - 1),
			       (uint64_t)stride[i]) ||
		    zf_ckd_add(&last, last, span))
			goto out_of_range;
	}
	if (!empty && last >= (uint64_t)st->numel)
		goto out_of_range;
	v = pk_new(r, ZF_PV_TENSOR);
	if (!v)
		return r->status;
	dims = zf_arena_alloc(r->arena, 2 * ndim * sizeof(*dims));
	if (!dims)
		return pk_nomem(r);
	memcpy(dims, size, ndim * sizeof(*dims));
	memcpy(dims + ndim, stride, ndim * sizeof(*dims));
	v->u.tensor.storage = it[0];
	v->u.tensor.offset = it[1]->u.i;
	v->u.tensor.ndim = (uint32_t)ndim;
	v->u.tensor.size = dims;
	v->u.tensor.stride = dims + ndim;
	v->u.tensor.requires_grad = it[4]->u.b;
	*out = v;
	return 0;

out_of_range:
	return pk_bad(r, ZF_EFORMAT,
		      "of _rebuild_tensor_v2 with a view past the end of storage '%s' (%lld elements)",
		      st->key, (long long)st->numel);
}

/* _rebuild_parameter(tensor, requires_grad, hooks) and
 * _rebuild_parameter_with_state(...): a parameter is its tensor, with the
 * parameter's requires_grad, so the tensor node is copied. */
static int rebuild_parameter(struct pk_reader *r, const struct zf_pv *fn,
			     struct zf_pv *args, struct zf_pv **out)
{
	struct zf_pv *const *a = args->u.seq.items;
	struct zf_pv *v;

	(void)fn;
	if (args->u.seq.n < 2 || !zf_pv_is(a[0], ZF_PV_TENSOR))
		return 0;
	v = pk_new(r, ZF_PV_TENSOR);
	if (!v)
		return r->status;
	v->u.tensor = a[0]->u.tensor;
	if (zf_pv_is(a[1], ZF_PV_BOOL))
		v->u.tensor.requires_grad = a[1]->u.b;
	*out = v;
	return 0;
}

static struct zf_pv *call(struct pk_reader *r, struct zf_pv *fn,
			  struct zf_pv *args, bool nested);

/* torch._tensor._rebuild_from_type_v2(func, type, args, state): what torch
 * >= 1.13 writes for tensors with Python attributes; the data is
 * func(*args). It may not nest itself. */
static int rebuild_from_type(struct pk_reader *r, const struct zf_pv *fn,
			     struct zf_pv *args, struct zf_pv **out)
{
	struct zf_pv *const *a = args->u.seq.items;

	(void)fn;
	if (args->u.seq.n != 4 || !zf_pv_is(a[0], ZF_PV_GLOBAL) ||
	    !zf_pv_is(a[2], ZF_PV_TUPLE))
		return 0;
	*out = call(r, a[0], a[2], true);
	return *out ? 0 : r->status;
}

/* ---- containers --------------------------------------------------------- */

/* Items of a list, tuple or set, as the args of set(), OrderedDict() etc. */
static bool is_iterable(const struct zf_pv *v)
{
	return zf_pv_is(v, ZF_PV_LIST) || zf_pv_is(v, ZF_PV_TUPLE) ||
	       zf_pv_is(v, ZF_PV_SET);
}

/* collections.OrderedDict() or OrderedDict(pairs): a dict, keys in order. */
static int ordered_dict(struct pk_reader *r, const struct zf_pv *fn,
			struct zf_pv *args, struct zf_pv **out)
{
	const struct zf_pv_seq *s;
	struct zf_pv *d;

	(void)fn;
	if (args->u.seq.n > 1 ||
	    (args->u.seq.n == 1 && !is_iterable(args->u.seq.items[0])))
		return 0;
	d = pk_new_dict(r);
	if (!d)
		return r->status;
	if (args->u.seq.n == 1) {
		s = &args->u.seq.items[0]->u.seq;
		for (size_t i = 0; i < s->n; i++) {
			struct zf_pv *kv = s->items[i];

			if ((!zf_pv_is(kv, ZF_PV_TUPLE) &&
			     !zf_pv_is(kv, ZF_PV_LIST)) ||
			    kv->u.seq.n != 2)
				return pk_bad(r, ZF_EFORMAT,
					      "of OrderedDict with an item that is no pair");
			if (pk_dict_set(r, d, kv->u.seq.items[0],
					kv->u.seq.items[1]))
				return r->status;
		}
	}
	*out = d;
	return 0;
}

/* torch.Size(tuple or list), torch.Size(): that tuple. */
static int torch_size(struct pk_reader *r, const struct zf_pv *fn,
		      struct zf_pv *args, struct zf_pv **out)
{
	struct zf_pv *const *a = args->u.seq.items;
	size_t n = args->u.seq.n;

	(void)fn;
	if (n == 1 && zf_pv_is(a[0], ZF_PV_TUPLE))
		*out = a[0];
	else if (n == 1 && zf_pv_is(a[0], ZF_PV_LIST))
		*out = pk_new_seq(r, ZF_PV_TUPLE, a[0]->u.seq.items,
				  a[0]->u.seq.n);
	else if (n == 0)
		*out = pk_new_seq(r, ZF_PV_TUPLE, NULL, 0);
	else
		return 0;
	return *out ? 0 : r->status;
}

/* set(iterable), frozenset(iterable), set(). */
static int make_set(struct pk_reader *r, const struct zf_pv *fn,
		    struct zf_pv *args, struct zf_pv **out)
{
	struct zf_pv *const *a = args->u.seq.items;
	size_t n = args->u.seq.n;

	(void)fn;
	if (n == 0)
		*out = pk_new_seq(r, ZF_PV_SET, NULL, 0);
	else if (n == 1 && is_iterable(a[0]))
		*out = pk_new_seq(r, ZF_PV_SET, a[0]->u.seq.items,
				  a[0]->u.seq.n);
	else
		return 0;
	return *out ? 0 : r->status;
}

/* bytes(), bytes(b), bytearray(b): protocol 2 writes b'' as bytes() and a
 * bytearray as bytearray(<bytes>). */
static int make_bytes(struct pk_reader *r, const struct zf_pv *fn,
		      struct zf_pv *args, struct zf_pv **out)
{
	struct zf_pv *const *a = args->u.seq.items;
	size_t n = args->u.seq.n;

	(void)fn;
	if (n == 0)
		*out = pk_new_str(r, ZF_PV_BYTES, "", 0);
	else if (n == 1 && zf_pv_is(a[0], ZF_PV_BYTES))
		*out = a[0];
	else
		return 0;
	return *out ? 0 : r->status;
}

/* _codecs.encode(str, 'latin1'): how protocol 2 spells bytes. The str is
 * UTF-8 of code points below 256, each of which is one byte. */
static int codecs_encode(struct pk_reader *r, const struct zf_pv *fn,
			 struct zf_pv *args, struct zf_pv **out)
{
	struct zf_pv *const *a = args->u.seq.items;
	const unsigned char *p;
	struct zf_pv *v;
	size_t n, o = 0;
	char *dst;

	(void)fn;
	if (args->u.seq.n != 2 || !zf_pv_is(a[0], ZF_PV_STR) ||
	    !(pk_is_str(a[1], "latin1") || pk_is_str(a[1], "latin-1") ||
	      pk_is_str(a[1], "latin_1") || pk_is_str(a[1], "iso-8859-1")))
		return 0;
	p = (const unsigned char *)a[0]->u.str.s;
	n = a[0]->u.str.len;
	dst = zf_arena_alloc(r->arena, n + 1);
	if (!dst)
		return pk_nomem(r);
	for (size_t i = 0; i < n; i++) {
		if (p[i] < 0x80) {
			dst[o++] = (char)p[i];
		} else if ((p[i] == 0xc2 || p[i] == 0xc3) && i + 1 < n &&
			   (p[i + 1] & 0xc0) == 0x80) {
			dst[o++] = (char)((p[i] & 0x03) << 6 | (p[i + 1] & 0x3f));
			i++;
		} else {
			return pk_bad(r, ZF_EFORMAT,
				      "of _codecs.encode with a character outside latin1 at %zu",
				      i);
		}
	}
	dst[o] = '\0';
	v = pk_new(r, ZF_PV_BYTES);
	if (!v)
		return r->status;
	v->u.str.s = dst;
	v->u.str.len = o;
	*out = v;
	return 0;
}

/* ---- enums and plain classes ------------------------------------------ */

/* getattr(cls, 'name'): how Python 3.11 pickles an Enum member. */
static int enum_by_name(struct pk_reader *r, const struct zf_pv *fn,
			struct zf_pv *args, struct zf_pv **out)
{
	struct zf_pv *const *a = args->u.seq.items;
	struct zf_pv *v;

	(void)fn;
	if (args->u.seq.n != 2 || !zf_pv_is(a[0], ZF_PV_GLOBAL) ||
	    !zf_pv_is(a[1], ZF_PV_STR))
		return 0;
	v = pk_new(r, ZF_PV_ENUM);
	if (!v)
		return r->status;
	v->u.enm.cls_module = a[0]->u.global.module;
	v->u.enm.cls_name = a[0]->u.global.name;
	v->u.enm.member = a[1]->u.str.s;
	*out = v;
	return 0;
}

/* copyreg._reconstructor(cls, base, state): how protocols 0 and 1 build
 * instances of plain classes. The object is named after the class, not
 * after the helper. */
static int reconstructor(struct pk_reader *r, const struct zf_pv *fn,
			 struct zf_pv *args, struct zf_pv **out)
{
	struct zf_pv *const *a = args->u.seq.items;

	(void)fn;
	if (args->u.seq.n != 3 || !zf_pv_is(a[0], ZF_PV_GLOBAL))
		return 0;
	*out = pk_new_object(r, a[0]->u.global.module, a[0]->u.global.name,
			     args);
	return *out ? 0 : r->status;
}

/*
 * The meanings, by the module and name pickle protocol 2 spells (builtins
 * are "__builtin__" there and "builtins" in protocol 3 and later). Looked
 * up once per GLOBAL opcode (a handful per file), so a linear table.
 */
static const struct pk_callable callables[] = {
	{ "torch._utils", "_rebuild_tensor_v2", rebuild_tensor },
	{ "torch._utils", "_rebuild_parameter", rebuild_parameter },
	{ "torch._utils", "_rebuild_parameter_with_state", rebuild_parameter },
	{ "torch._tensor", "_rebuild_from_type_v2", rebuild_from_type },
	{ "collections", "OrderedDict", ordered_dict },
	{ "torch", "Size", torch_size },
	{ "__builtin__", "set", make_set },
	{ "builtins", "set", make_set },
	{ "__builtin__", "frozenset", make_set },
	{ "builtins", "frozenset", make_set },
	{ "__builtin__", "getattr", enum_by_name },
	{ "builtins", "getattr", enum_by_name },
	{ "__builtin__", "bytes", make_bytes },
	{ "builtins", "bytes", make_bytes },
	{ "__builtin__", "bytearray", make_bytes },
	{ "builtins", "bytearray", make_bytes },
	{ "copyreg", "_reconstructor", reconstructor },
	{ "copy_reg", "_reconstructor", reconstructor },
	{ "_codecs", "encode", codecs_encode },
};

const struct pk_callable *pk_lookup(const char *module, const char *name)
{
	for (size_t i = 0; i < sizeof(callables) / sizeof(callables[0]); i++)
		if (!strcmp(callables[i].name, name) &&
		    !strcmp(callables[i].module, module))
			return &callables[i];
	return NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

static struct zf_pv *call(struct pk_reader *r, struct zf_pv *fn,
			  struct zf_pv *args, bool nested)
{
	const struct pk_callable *c;
	const char *mod, *name;
	struct zf_pv *v = NULL;

	if (zf_pv_is(fn, ZF_PV_OBJECT)) {
		/* Calling what an opaque call returned: still opaque. */
		return pk_new_object(r, fn->u.obj.module, fn->u.obj.name, args);
	}
	if (!zf_pv_is(fn, ZF_PV_GLOBAL)) {
		pk_bad(r, ZF_EFORMAT, "calls a %s, which is not callable",
		       zf_pv_type_name(fn));
		return NULL;
	}
	mod = fn->u.global.module;
	name = fn->u.global.name;
	c = ((const struct pk_global *)fn)->callable;
	if (c && !(nested && c->handle == rebuild_from_type)) {
		if (c->handle(r, fn, args, &v))
			return NULL;
		if (v)
			return v;
	}
	/* <a class whose name ends in "Enum">(int): an Enum member by value,
	 * how Python <= 3.10 pickles one. */
	if (ends_with(name, "Enum") && args->u.seq.n == 1 &&
	    zf_pv_is(args->u.seq.items[0], ZF_PV_INT)) {
		v = pk_new(r, ZF_PV_ENUM);
		if (!v)
			return NULL;
		v->u.enm.cls_module = mod;
		v->u.enm.cls_name = name;
		v->u.enm.value = args->u.seq.items[0]->u.i;
		return v;
	}
	return pk_new_object(r, mod, name, args);
}

struct zf_pv *pk_call(struct pk_reader *r, struct zf_pv *fn,
		      struct zf_pv *args)
{
	return call(r, fn, args, false);
}

/* ---- persistent ids: torch storages ----------------------------------- */

static struct pk_storage_slot *storage_slot(struct pk_reader *r,
					    const char *key, size_t len,
					    uint64_t hash)
{
	size_t mask = r->storage_cap - 1;
	size_t i = (size_t)hash & mask;
	struct pk_storage_slot *s;

	for (;; i = (i + 1) & mask) {
		s = &r->storages[i];
		if (!s->key || (s->hash == hash && s->key_len == len &&
				!memcmp(s->key, key, len)))
			return s;
	}
}

static int storage_table_grow(struct pk_reader *r)
{
	struct pk_storage_slot *old = r->storages;
	size_t old_cap = r->storage_cap, cap, bytes;

	cap = old_cap ? old_cap * 2 : 64;
	if (zf_ckd_mul(&bytes, cap, sizeof(*r->storages)))
		return pk_bad(r, ZF_ENOMEM, "makes a table too large");
	if (pk_work_charge(r, bytes))
		return r->status;
	r->storages = pk_work_alloc(bytes, true);
	if (!r->storages) {
		r->storages = old;
		pk_work_uncharge(r, bytes);
		return pk_bad(r, ZF_ENOMEM, "ran out of memory");
	}
	r->storage_cap = cap;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].key)
			*storage_slot(r, old[i].key, old[i].key_len,
				      old[i].hash) = old[i];
	pk_work_free(old, old_cap * sizeof(*old));
	pk_work_uncharge(r, old_cap * sizeof(*old));
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
static int storage_entry(struct pk_reader *r, const char *key, size_t len,
			 struct zf_pv ***out)
{
	struct pk_storage_slot *slot;
	uint64_t hash;
	size_t num;

	/* Dense numbers only: a hostile "99999999" takes the hash path
	 * instead of a huge array. */
	if (key_number(key, len, &num) && num < 4 * r->by_num_count + 4096) {
		if (num >= r->by_num_cap &&
		    pk_work_grow(r, &r->by_num, &r->by_num_cap, num + 1,
				 sizeof(*r->by_num), 1024, true))
			return r->status;
		if (!r->by_num[num])
			r->by_num_count++;
		*out = &r->by_num[num];
		return 0;
	}
	if (r->storage_count >= r->storage_cap / 2 && storage_table_grow(r))
		return r->status;
	hash = pk_hash_bytes(key, len);
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

/* The storage id's key names a zip entry data/<key> (or a legacy record):
 * it must be a plain name. */
static bool plain_key(const struct zf_pv *key)
{
	return key->u.str.len && !memchr(key->u.str.s, '/', key->u.str.len) &&
	       strlen(key->u.str.s) == key->u.str.len &&
	       !pk_is_str(key, "..") && !pk_is_str(key, ".");
}

/*
 * torch's persistent id for a storage:
 *   ('storage', <GLOBAL torch.XxxStorage>, key, location, numel)
 * as torch.save's zip format writes it, or with a 6th item, view_metadata,
 * as the legacy format (_use_new_zipfile_serialization=False) does:
 * None, or (view_key, offset, size) for a view of another storage, which
 * only torch before 1.0 wrote and zerofs refuses. One node per key,
 * because torch.save emits the id again for every tensor that shares the
 * storage.
 */
static struct zf_pv *storage_id(struct pk_reader *r, struct zf_pv *pid)
{
	struct zf_pv *const *a = pid->u.seq.items;
	const struct zf_pv *key = a[2];
	struct zf_pv **entry = NULL;
	struct zf_pv *v;

	if (!zf_pv_is(a[1], ZF_PV_GLOBAL) || !zf_pv_is(key, ZF_PV_STR) ||
	    !zf_pv_is(a[3], ZF_PV_STR) || !zf_pv_is(a[4], ZF_PV_INT)) {
		pk_bad(r, ZF_EFORMAT,
		       "of a storage id typed (%s, %s, %s, %s), expected (global, str, str, int)",
		       zf_pv_type_name(a[1]), zf_pv_type_name(key),
		       zf_pv_type_name(a[3]), zf_pv_type_name(a[4]));
		return NULL;
	}
	if (!plain_key(key)) {
		pk_bad(r, ZF_EFORMAT, "of storage key '%.64s', not a plain name",
		       key->u.str.s);
		return NULL;
	}
	if (a[4]->u.i < 0) {
		pk_bad(r, ZF_EFORMAT, "of storage '%s' with %lld elements",
		       key->u.str.s, (long long)a[4]->u.i);
		return NULL;
	}
	if (pid->u.seq.n == 6 && !zf_pv_is(a[5], ZF_PV_NONE)) {
		pk_bad(r, ZF_EFORMAT,
		       "of storage '%s' with view metadata (a %s): a view of another storage, which only torch before 1.0 wrote; zerofs does not read it",
		       key->u.str.s, zf_pv_type_name(a[5]));
		return NULL;
	}
	if (storage_entry(r, key->u.str.s, key->u.str.len, &entry))
		return NULL;
	if (*entry) {
		const struct zf_pv_storage *st = &(*entry)->u.storage;

		if (strcmp(st->class_name, a[1]->u.global.name) ||
		    st->numel != a[4]->u.i) {
			pk_bad(r, ZF_EFORMAT,
			       "of storage '%s' as %s of %lld elements, earlier %s of %lld",
			       st->key, a[1]->u.global.name,
			       (long long)a[4]->u.i, st->class_name,
			       (long long)st->numel);
			return NULL;
		}
		return *entry;
	}
	if (r->nstorage_list == r->storage_list_cap &&
	    pk_work_grow(r, &r->storage_list, &r->storage_list_cap,
			 r->nstorage_list + 1, sizeof(*r->storage_list), 64,
			 false))
		return NULL;
	v = pk_new(r, ZF_PV_STORAGE);
	if (!v)
		return NULL;
	v->u.storage.class_name = a[1]->u.global.name;
	v->u.storage.dtype = strcmp(a[1]->u.global.module, "torch") ?
		ZF_DT_INVALID : zf_dtype_from_storage(a[1]->u.global.name);
	v->u.storage.key = key->u.str.s;
	v->u.storage.location = a[3]->u.str.s;
	v->u.storage.numel = a[4]->u.i;
	*entry = v;
	r->storage_list[r->nstorage_list++] = v;
	return v;
}

struct zf_pv *pk_persistent_load(struct pk_reader *r, struct zf_pv *pid)
{
	struct zf_pv *const *a;

	if (zf_pv_is(pid, ZF_PV_TUPLE) && pid->u.seq.n >= 1) {
		a = pid->u.seq.items;
		if ((pid->u.seq.n == 5 || pid->u.seq.n == 6) &&
		    pk_is_str(a[0], "storage"))
			return storage_id(r, pid);
		/* ('module', cls, source_file, source): the legacy format's
		 * id of an nn.Module class saved whole; it stands for the
		 * class. */
		if (pid->u.seq.n == 4 && pk_is_str(a[0], "module") &&
		    zf_pv_is(a[1], ZF_PV_GLOBAL))
			return a[1];
	}
	pk_bad(r, ZF_EFORMAT,
	       "of a persistent id (a %s) that is not a torch storage",
	       zf_pv_type_name(pid));
	return NULL;
}

int pk_storages_finish(struct pk_reader *r, struct zf_pickle *p)
{
	const struct zf_pv **list;
	size_t bytes;

	p->nstorages = r->nstorage_list;
	if (!r->nstorage_list)
		return 0;
	if (zf_ckd_mul(&bytes, r->nstorage_list, sizeof(*list)))
		return pk_bad(r, ZF_ENOMEM, "makes a table too large");
	list = zf_arena_alloc(r->arena, bytes);
	if (!list)
		return pk_nomem(r);
	memcpy(list, r->storage_list, bytes);
	p->storages = list;
	return 0;
}

void pk_storages_release(struct pk_reader *r)
{
	pk_work_free(r->storages, r->storage_cap * sizeof(*r->storages));
	pk_work_free(r->by_num, r->by_num_cap * sizeof(*r->by_num));
	pk_work_free(r->storage_list,
		     r->storage_list_cap * sizeof(*r->storage_list));
	r->storages = NULL;
	r->by_num = NULL;
	r->storage_list = NULL;
}
