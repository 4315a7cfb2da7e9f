/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of core/pickle.c: the pickles torch.save and Python write
 * (embedded from gen_pickle_vectors.py), handcrafted opcodes, and hostile
 * input: limits, truncation at every byte, random mutations.
 */
#include "zerofs/pickle.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pickle_build.h"
#include "pickle_vectors.h"
#include "tap.h"

/* ---- helpers ---------------------------------------------------------- */

static int load(const void *d, size_t n, const struct zf_pickle_limits *lim,
		struct zf_pickle **p, struct zf_error *e)
{
	zf_error_clear(e);
	return zf_pickle_load(d, n, lim, p, e);
}

/* Parses what must parse; returns the root (the pickle in *p). */
static const struct zf_pv *ok_root(const void *d, size_t n,
				   struct zf_pickle **p, const char *what)
{
	struct zf_error e;
	int rc = load(d, n, NULL, p, &e);

	tap_ok(rc == ZF_OK && *p, "%s parses", what);
	if (rc)
		printf("#   error: %s\n", e.msg);
	return rc ? NULL : zf_pickle_root(*p);
}

/* Checks that d fails with status and a message containing frag. */
static void expect_err(const void *d, size_t n,
		       const struct zf_pickle_limits *lim, int status,
		       const char *frag, const char *what)
{
	struct zf_pickle *p = (struct zf_pickle *)&p; /* must become NULL */
	struct zf_error e;
	int rc = load(d, n, lim, &p, &e);

	tap_ok(rc == status && !p && e.status == (enum zf_status)status,
	       "%s: fails with %s (got %s)", what,
	       zf_status_str((enum zf_status)status),
	       zf_status_str((enum zf_status)rc));
	tap_contains(e.msg, frag, "%s: message '%s' has '%s'", what, e.msg,
		     frag);
	if (!p)
		return;
	zf_pickle_free(p);
}

static bool str_is(const struct zf_pv *v, const char *s)
{
	return zf_pv_is(v, ZF_PV_STR) && v->u.str.len == strlen(s) &&
	       !memcmp(v->u.str.s, s, v->u.str.len);
}

static bool int_is(const struct zf_pv *v, int64_t i)
{
	return zf_pv_is(v, ZF_PV_INT) && v->u.i == i;
}

static bool tensor_is(const struct zf_pv *t, const char *key,
		      enum zf_dtype dt, int64_t offset, uint32_t ndim,
		      const int64_t *size, const int64_t *stride)
{
	if (!zf_pv_is(t, ZF_PV_TENSOR) || t->u.tensor.ndim != ndim ||
	    t->u.tensor.offset != offset || t->u.tensor.requires_grad)
		return false;
	if (!zf_pv_is(t->u.tensor.storage, ZF_PV_STORAGE) ||
	    strcmp(t->u.tensor.storage->u.storage.key, key) ||
	    t->u.tensor.storage->u.storage.dtype != dt ||
	    strcmp(t->u.tensor.storage->u.storage.location, "cpu"))
		return false;
	for (uint32_t i = 0; i < ndim; i++)
		if (t->u.tensor.size[i] != size[i] ||
		    t->u.tensor.stride[i] != stride[i])
			return false;
	return true;
}

/* ---- torch.save output -------------------------------------------------- */

static void test_model(void)
{
	struct zf_pickle *p = NULL;
	const struct zf_pv *root, *m, *v, *w;

	root = ok_root(pv_model, sizeof(pv_model), &p, "torch.save dict");
	if (!root)
		return;
	tap_ok(zf_pv_is(root, ZF_PV_DICT) && root->u.dict.n == 24,
	       "root is a dict of 24 keys (%zu)", root->u.dict.n);

	m = zf_pv_get(root, "module");
	tap_ok(zf_pv_is(m, ZF_PV_DICT) && m->u.dict.n == 8,
	       "OrderedDict module is a dict of 8");
	tap_ok(m && str_is(m->u.dict.keys[0], "a.weight") &&
		       str_is(m->u.dict.keys[7], "empty"),
	       "OrderedDict keeps key order");
	{
		static const int64_t s34[] = { 3, 4 }, st41[] = { 4, 1 };
		static const int64_t s3[] = { 3 }, st1[] = { 1 };
		static const int64_t s23[] = { 2, 3 }, st31[] = { 3, 1 };
		static const int64_t s4[] = { 4 }, s5[] = { 5 }, s0[] = { 0 };
		static const int64_t s32[] = { 3, 2 }, st13[] = { 1, 3 };
		const struct zf_pv *aw = zf_pv_get(m, "a.weight");

		tap_ok(tensor_is(aw, "0", ZF_DT_F32, 4, 2, s34, st41),
		       "view a.weight: storage 0 F32, offset 4, (3,4)/(4,1)");
		tap_ok(aw && aw->u.tensor.storage->u.storage.numel == 40 &&
			       !strcmp(aw->u.tensor.storage->u.storage.class_name,
				       "FloatStorage"),
		       "storage 0 is a FloatStorage of 40 elements");
		tap_ok(tensor_is(zf_pv_get(m, "a.bias"), "0", ZF_DT_F32, 16, 1,
				 s3, st1),
		       "view a.bias at offset 16");
		tap_ok(tensor_is(zf_pv_get(m, "emb"), "1", ZF_DT_BF16, 0, 2,
				 s23, st31),
		       "bf16 tensor from BFloat16Storage");
		tap_ok(tensor_is(zf_pv_get(m, "h"), "2", ZF_DT_F16, 0, 1, s4,
				 st1),
		       "fp16 tensor from HalfStorage");
		tap_ok(tensor_is(zf_pv_get(m, "pos"), "3", ZF_DT_I64, 0, 1, s5,
				 st1),
		       "int64 tensor from LongStorage");
		tap_ok(tensor_is(zf_pv_get(m, "t"), "0", ZF_DT_F32, 0, 2, s32,
				 st13),
		       "transposed view keeps its strides");
		tap_ok(tensor_is(zf_pv_get(m, "empty"), "4", ZF_DT_F32, 0, 1,
				 s0, st1) &&
			       zf_pv_get(m, "empty")->u.tensor.storage->u.storage.numel == 0,
		       "0-element tensor on a 0-element storage");
		tap_ok(aw && zf_pv_get(m, "tied") != aw &&
			       zf_pv_get(m, "tied")->u.tensor.storage ==
				       aw->u.tensor.storage &&
			       zf_pv_get(m, "a.bias")->u.tensor.storage ==
				       aw->u.tensor.storage &&
			       zf_pv_get(m, "t")->u.tensor.storage ==
				       aw->u.tensor.storage,
		       "storage key 0 seen 4 times is one node");
	}

	v = zf_pv_get(root, "meta_od");
	tap_ok(zf_pv_is(v, ZF_PV_DICT) && v->u.dict.n == 1 &&
		       zf_pv_get(v, "w") && !zf_pv_get(v, "_metadata"),
	       "BUILD on an OrderedDict leaves its items alone");

	v = zf_pv_get(root, "param_shapes");
	tap_ok(zf_pv_is(v, ZF_PV_LIST) && v->u.seq.n == 1 &&
		       zf_pv_is(v->u.seq.items[0], ZF_PV_DICT),
	       "param_shapes is a list of one dict");
	if (zf_pv_is(v, ZF_PV_LIST) && v->u.seq.n == 1) {
		w = zf_pv_get(v->u.seq.items[0], "a.weight");
		tap_ok(zf_pv_is(w, ZF_PV_TUPLE) && w->u.seq.n == 2 &&
			       int_is(w->u.seq.items[0], 3) &&
			       int_is(w->u.seq.items[1], 4),
		       "torch.Size([3, 4]) is the tuple (3, 4)");
	}

	v = zf_pv_get(root, "sparse_tensor_module_names");
	tap_ok(zf_pv_is(v, ZF_PV_SET) && v->u.seq.n == 0, "set() is an empty set");
	v = zf_pv_get(root, "small_set");
	tap_ok(zf_pv_is(v, ZF_PV_SET) && v->u.seq.n == 1 &&
		       int_is(v->u.seq.items[0], 7),
	       "set([7])");

	v = zf_pv_get(root, "global_samples");
	tap_ok(zf_pv_is(v, ZF_PV_OBJECT) && !strcmp(v->u.obj.name, "int") &&
		       !strcmp(v->u.obj.module, "builtins") && v->u.obj.args &&
		       v->u.obj.args->u.seq.n == 1 &&
		       zf_pv_is(v->u.obj.args->u.seq.items[0], ZF_PV_BYTES) &&
		       v->u.obj.args->u.seq.items[0]->u.str.len == 9 &&
		       !memcmp(v->u.obj.args->u.seq.items[0]->u.str.s,
			       "\x05\0\0\0\0\0\0\0\x01", 9),
	       "LONG1 2^64+5 is an opaque int holding its 9 bytes");
	v = zf_pv_get(root, "big_neg");
	tap_ok(zf_pv_is(v, ZF_PV_OBJECT) && !strcmp(v->u.obj.name, "int"),
	       "LONG1 -2^70 is an opaque int");
	tap_ok(int_is(zf_pv_get(root, "i40"), (int64_t)1 << 40),
	       "LONG1 2^40 is an int");
	tap_ok(int_is(zf_pv_get(root, "neg"), -5), "BININT -5");

	v = zf_pv_get(root, "zero_stage");
	tap_ok(zf_pv_is(v, ZF_PV_ENUM) &&
		       !strcmp(v->u.enm.cls_name, "ZeroStageEnum") &&
		       !strcmp(v->u.enm.cls_module, "__main__") &&
		       v->u.enm.member && !strcmp(v->u.enm.member, "weights"),
	       "getattr(ZeroStageEnum, 'weights') is an enum by name");
	v = zf_pv_get(root, "by_value");
	tap_ok(zf_pv_is(v, ZF_PV_ENUM) && !strcmp(v->u.enm.cls_name, "ValueEnum") &&
		       !v->u.enm.member && v->u.enm.value == 3,
	       "ValueEnum(3) is an enum by value");

	v = zf_pv_get(root, "nested");
	tap_ok(zf_pv_is(v, ZF_PV_LIST) && v->u.seq.n == 2 &&
		       zf_pv_is(v->u.seq.items[0], ZF_PV_LIST) &&
		       zf_pv_is(v->u.seq.items[1], ZF_PV_TUPLE) &&
		       v->u.seq.items[1]->u.seq.n == 4 &&
		       int_is(v->u.seq.items[1]->u.seq.items[3], 4),
	       "nested list with a 4-tuple");
	if (zf_pv_is(v, ZF_PV_LIST) && v->u.seq.n == 2) {
		w = v->u.seq.items[0]; /* [1, [2, [3]]] */
		w = w->u.seq.n == 2 ? w->u.seq.items[1] : NULL;
		w = w && w->u.seq.n == 2 ? w->u.seq.items[1] : NULL;
		tap_ok(zf_pv_is(w, ZF_PV_LIST) && w->u.seq.n == 1 &&
			       int_is(w->u.seq.items[0], 3),
		       "innermost list is [3]");
	}
	tap_ok(str_is(zf_pv_get(root, "ds_version"), "0.14.0"), "ds_version");

	v = zf_pv_get(root, "loss_scaler");
	tap_ok(zf_pv_is(v, ZF_PV_OBJECT) &&
		       !strcmp(v->u.obj.name, "LossScaler") &&
		       zf_pv_is(v->u.obj.args, ZF_PV_TUPLE) &&
		       v->u.obj.args->u.seq.n == 0 &&
		       zf_pv_is(v->u.obj.state, ZF_PV_DICT),
	       "NEWOBJ + BUILD is an object with its state");
	if (zf_pv_is(v, ZF_PV_OBJECT) && v->u.obj.state) {
		w = zf_pv_get(v->u.obj.state, "cur_scale");
		tap_ok(zf_pv_is(w, ZF_PV_FLOAT) && w->u.f == 1.0,
		       "state cur_scale is 1.0");
		w = zf_pv_get(v->u.obj.state, "dynamic");
		tap_ok(zf_pv_is(w, ZF_PV_BOOL) && !w->u.b, "state dynamic False");
	}

	v = zf_pv_get(root, "step");
	tap_ok(zf_pv_is(v, ZF_PV_TENSOR) && v->u.tensor.ndim == 0 &&
		       !strcmp(v->u.tensor.storage->u.storage.key, "6"),
	       "0-dim tensor");
	v = zf_pv_get(root, "bytes");
	tap_ok(zf_pv_is(v, ZF_PV_BYTES) && v->u.str.len == 5 &&
		       !memcmp(v->u.str.s, "ab\xff\0c", 6),
	       "_codecs.encode(..., 'latin1') is bytes ab\\xff\\0c");
	v = zf_pv_get(root, "empty_bytes");
	tap_ok(zf_pv_is(v, ZF_PV_BYTES) && v->u.str.len == 0 && !v->u.str.s[0],
	       "bytes() is empty bytes");
	v = zf_pv_get(root, "float");
	tap_ok(zf_pv_is(v, ZF_PV_FLOAT) && v->u.f == 1.5, "BINFLOAT 1.5");
	tap_ok(zf_pv_is(zf_pv_get(root, "none"), ZF_PV_NONE), "None");
	v = zf_pv_get(root, "yes");
	tap_ok(zf_pv_is(v, ZF_PV_BOOL) && v->u.b, "True");
	v = zf_pv_get(root, "no");
	tap_ok(zf_pv_is(v, ZF_PV_BOOL) && !v->u.b, "False");
	v = zf_pv_get(root, "dtype");
	tap_ok(zf_pv_is(v, ZF_PV_GLOBAL) && !strcmp(v->u.global.module, "torch") &&
		       !strcmp(v->u.global.name, "float16"),
	       "torch.float16 is a bare global");
	v = zf_pv_get(root, "int_keys");
	tap_ok(str_is(zf_pv_get_int(v, 0), "a") &&
		       str_is(zf_pv_get_int(v, 300), "c") &&
		       !zf_pv_get_int(v, 2) && !zf_pv_get(v, "0"),
	       "int keys found by zf_pv_get_int only");
	tap_ok(str_is(zf_pv_get(root, "unicode"), "h\xc3\xa9\xe4\xb8\x96"),
	       "BINUNICODE keeps UTF-8");
	tap_ok(!zf_pv_get(root, "nope") && !zf_pv_get(NULL, "x") &&
		       !zf_pv_get(zf_pv_get(root, "neg"), "x"),
	       "zf_pv_get misses give NULL");
	tap_ok(!strcmp(zf_pv_type_name(root), "dict") &&
		       !strcmp(zf_pv_type_name(zf_pv_get(root, "step")), "tensor") &&
		       !strcmp(zf_pv_type_name(zf_pv_get(root, "loss_scaler")), "object") &&
		       !strcmp(zf_pv_type_name(NULL), "nothing"),
	       "zf_pv_type_name");
	zf_pickle_free(p);
}

/* ---- plain Python pickles, protocols 0 to 5 ---------------------------- */

static void test_protocol(const unsigned char *d, size_t n, int proto)
{
	struct zf_pickle *p = NULL;
	const struct zf_pv *root, *v, *w;
	char what[64];

	snprintf(what, sizeof(what), "protocol %d", proto);
	root = ok_root(d, n, &p, what);
	if (!root)
		return;
	v = zf_pv_get(root, "set");
	tap_ok(zf_pv_is(v, ZF_PV_SET) && v->u.seq.n == 3 &&
		       int_is(v->u.seq.items[2], 3),
	       "%s: set {1, 2, 3}", what);
	v = zf_pv_get(root, "fset");
	tap_ok(zf_pv_is(v, ZF_PV_SET) && v->u.seq.n == 1 &&
		       int_is(v->u.seq.items[0], 4),
	       "%s: frozenset {4}", what);
	v = zf_pv_get(root, "bytes");
	tap_ok(zf_pv_is(v, ZF_PV_BYTES) && v->u.str.len == 3 &&
		       !memcmp(v->u.str.s, "xyz", 3),
	       "%s: bytes xyz", what);
	v = zf_pv_get(root, "long_bytes");
	tap_ok(zf_pv_is(v, ZF_PV_BYTES) && v->u.str.len == 300 &&
		       v->u.str.s[299] == 'q' && v->u.str.s[300] == '\0',
	       "%s: 300 bytes, NUL-terminated", what);
	v = zf_pv_get(root, "barr");
	tap_ok(zf_pv_is(v, ZF_PV_BYTES) && v->u.str.len == 2 &&
		       !memcmp(v->u.str.s, "ba", 2),
	       "%s: bytearray", what);
	tap_ok(str_is(zf_pv_get(root, "str"), "abc"), "%s: str", what);
	v = zf_pv_get(root, "tuple");
	tap_ok(zf_pv_is(v, ZF_PV_TUPLE) && v->u.seq.n == 4 &&
		       int_is(v->u.seq.items[0], 1) &&
		       str_is(v->u.seq.items[1], "x") &&
		       zf_pv_is(v->u.seq.items[2], ZF_PV_NONE) &&
		       zf_pv_is(v->u.seq.items[3], ZF_PV_FLOAT) &&
		       v->u.seq.items[3]->u.f == 2.5,
	       "%s: tuple (1, 'x', None, 2.5)", what);
	/* Protocols 2 and 3 spell __getnewargs_ex__ as a call of
	 * functools.partial(getattr(KwNew, '__new__'), ...): opaque. */
	v = zf_pv_get(root, "kw");
	tap_ok(zf_pv_is(v, ZF_PV_OBJECT) &&
		       !strcmp(v->u.obj.name,
			       proto == 2 || proto == 3 ? "partial" : "KwNew") &&
		       int_is(zf_pv_get(v->u.obj.state, "a"), 5) &&
		       int_is(zf_pv_get(v->u.obj.state, "b"), 6),
	       "%s: object with state {a: 5, b: 6}", what);
	v = zf_pv_get(root, "sub");
	tap_ok(zf_pv_is(v, ZF_PV_OBJECT) && !strcmp(v->u.obj.name, "Sub"),
	       "%s: dict subclass is an object", what);
	if (zf_pv_is(v, ZF_PV_OBJECT)) {
		/* Protocols 0 and 1 pass the items as _reconstructor's
		 * state argument, 2+ add them with SETITEM. */
		w = proto < 2 ? v->u.obj.args->u.seq.items[2] : v->u.obj.items;
		tap_ok(int_is(zf_pv_get(w, "k"), 1),
		       "%s: dict subclass items {k: 1}", what);
	}
	v = zf_pv_get(root, "lst");
	tap_ok(zf_pv_is(v, ZF_PV_LIST) && v->u.seq.n == 2 &&
		       int_is(v->u.seq.items[1], 2) &&
		       zf_pv_get(root, "again") == v,
	       "%s: a list shared through the memo is one node", what);
	v = zf_pv_get(root, "big");
	tap_ok(zf_pv_is(v, ZF_PV_OBJECT) && !strcmp(v->u.obj.name, "int") &&
		       v->u.obj.args && v->u.obj.args->u.seq.n == 1,
	       "%s: 2^100 is an opaque int", what);
	if (proto == 0 && zf_pv_is(v, ZF_PV_OBJECT) && v->u.obj.args)
		tap_ok(str_is(v->u.obj.args->u.seq.items[0],
			      "1267650600228229401496703205376"),
		       "%s: LONG digits kept as str", what);
	v = zf_pv_get(root, "od");
	tap_ok(zf_pv_is(v, ZF_PV_DICT) && v->u.dict.n == 1 &&
		       int_is(zf_pv_get(v, "x"), 1),
	       "%s: OrderedDict(x=1)", what);
	zf_pickle_free(p);
}

/* ---- handcrafted opcodes ----------------------------------------------- */

static const struct zf_pv *parse_lit(const char *d, size_t n,
				     struct zf_pickle **p, const char *what)
{
	*p = NULL;
	return ok_root(d, n, p, what);
}

static void test_opcodes(void)
{
	struct zf_pickle *p;
	const struct zf_pv *v;

	v = parse_lit(LIT("\x80\x02" "cos\nsystem\n(S'echo pwned'\ntR."), &p,
		      "GLOBAL os.system + REDUCE");
	tap_ok(zf_pv_is(v, ZF_PV_OBJECT) && !strcmp(v->u.obj.module, "os") &&
		       !strcmp(v->u.obj.name, "system") &&
		       str_is(v->u.obj.args->u.seq.items[0], "echo pwned"),
	       "os.system('echo pwned') is an opaque object, not a call");
	zf_pickle_free(p);

	v = parse_lit(LIT("(K\x01K\x02imymod\nMyCls\n."), &p, "INST");
	tap_ok(zf_pv_is(v, ZF_PV_OBJECT) && !strcmp(v->u.obj.module, "mymod") &&
		       !strcmp(v->u.obj.name, "MyCls") &&
		       v->u.obj.args->u.seq.n == 2 &&
		       int_is(v->u.obj.args->u.seq.items[1], 2),
	       "INST builds an opaque object with args (1, 2)");
	zf_pickle_free(p);
	v = parse_lit(LIT("(ccollections\nOrderedDict\nK\x05o."), &p, "OBJ");
	tap_ok(zf_pv_is(v, ZF_PV_OBJECT) && !strcmp(v->u.obj.name, "OrderedDict") &&
		       int_is(v->u.obj.args->u.seq.items[0], 5),
	       "OBJ OrderedDict(5) is opaque (5 is no item list)");
	zf_pickle_free(p);
	v = parse_lit(LIT("(icollections\nOrderedDict\n."), &p, "INST dict");
	tap_ok(zf_pv_is(v, ZF_PV_DICT) && v->u.dict.n == 0,
	       "INST OrderedDict() is a dict");
	zf_pickle_free(p);

	v = parse_lit(LIT("(S'a\\n\\x41\\'\\\\b\\101'\nU\x02hiT\x03\0\0\0abcl."),
		      &p, "STRING forms");
	tap_ok(zf_pv_is(v, ZF_PV_LIST) && v->u.seq.n == 3 &&
		       str_is(v->u.seq.items[0], "a\nA'\\bA") &&
		       str_is(v->u.seq.items[1], "hi") &&
		       str_is(v->u.seq.items[2], "abc"),
	       "STRING escapes, SHORT_BINSTRING, BINSTRING");
	zf_pickle_free(p);
	v = parse_lit(LIT("(V\\u00e9x\\\\u\xe9\n\x8c\x01z\x8d\x02\0\0\0\0\0\0\0"
			  "hi\x8e\x01\0\0\0\0\0\0\0Q\x96\x00\0\0\0\0\0\0\0l."),
		      &p, "unicode and *8 forms");
	tap_ok(zf_pv_is(v, ZF_PV_LIST) && v->u.seq.n == 5 &&
		       str_is(v->u.seq.items[0], "\xc3\xa9x\\\\u\xc3\xa9") &&
		       str_is(v->u.seq.items[1], "z") &&
		       str_is(v->u.seq.items[2], "hi") &&
		       zf_pv_is(v->u.seq.items[3], ZF_PV_BYTES) &&
		       v->u.seq.items[3]->u.str.s[0] == 'Q' &&
		       zf_pv_is(v->u.seq.items[4], ZF_PV_BYTES) &&
		       v->u.seq.items[4]->u.str.len == 0,
	       "UNICODE raw escapes, SHORT_BINUNICODE, BINUNICODE8, BINBYTES8, BYTEARRAY8");
	zf_pickle_free(p);

	v = parse_lit(LIT("(I01\nI00\nI-7\nL123L\nF-0.25\nJ\xff\xff\xff\x7f"
			  "M\xff\xff\x8a\0\x8a\x01\xff\x8b\x02\0\0\0\x01\x80"
			  "\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xff"
			  "I99999999999999999999\nt."),
		      &p, "number forms");
	tap_ok(zf_pv_is(v, ZF_PV_TUPLE) && v->u.seq.n == 12, "12 numbers");
	if (zf_pv_is(v, ZF_PV_TUPLE) && v->u.seq.n == 12) {
		struct zf_pv **it = v->u.seq.items;

		tap_ok(zf_pv_is(it[0], ZF_PV_BOOL) && it[0]->u.b &&
			       zf_pv_is(it[1], ZF_PV_BOOL) && !it[1]->u.b,
		       "INT 01 / 00 are True / False");
		tap_ok(int_is(it[2], -7) && int_is(it[3], 123),
		       "INT -7, LONG 123L");
		tap_ok(zf_pv_is(it[4], ZF_PV_FLOAT) && it[4]->u.f == -0.25,
		       "FLOAT -0.25");
		tap_ok(int_is(it[5], INT32_MAX) && int_is(it[6], 65535),
		       "BININT 2^31-1, BININT2 65535");
		tap_ok(int_is(it[7], 0) && int_is(it[8], -1) &&
			       int_is(it[9], -32767),
		       "LONG1 empty is 0, LONG1 ff is -1, LONG4 0x8001 is -32767");
		tap_ok(int_is(it[10], -1), "LONG1 of 9 bytes that fits is -1");
		tap_ok(zf_pv_is(it[11], ZF_PV_OBJECT) &&
			       str_is(it[11]->u.obj.args->u.seq.items[0],
				      "99999999999999999999"),
		       "INT past int64 is an opaque int");
	}
	zf_pickle_free(p);

	v = parse_lit(LIT("\x80\x02K\x02\x30(K\x03\x31(\x30K\x04\x32\x86."),
		      &p, "POP, POP_MARK, DUP");
	tap_ok(zf_pv_is(v, ZF_PV_TUPLE) && v->u.seq.n == 2 &&
		       v->u.seq.items[0] == v->u.seq.items[1] &&
		       int_is(v->u.seq.items[0], 4),
	       "stack juggling leaves (4, 4)");
	zf_pickle_free(p);

	v = parse_lit(LIT("\x80\x04\x95\x0d\0\0\0\0\0\0\0]\x94\x30K\x07\x94\x30"
			  "h\x00h\x01\x86."),
		      &p, "FRAME, MEMOIZE");
	tap_ok(zf_pv_is(v, ZF_PV_TUPLE) && zf_pv_is(v->u.seq.items[0], ZF_PV_LIST) &&
		       int_is(v->u.seq.items[1], 7),
	       "MEMOIZE numbers the memo 0, 1");
	zf_pickle_free(p);
	v = parse_lit(LIT("K\x05q\xc8\x30h\xc8p9\ng9\n\x86."), &p, "sparse memo");
	tap_ok(zf_pv_is(v, ZF_PV_TUPLE) && int_is(v->u.seq.items[0], 5) &&
		       int_is(v->u.seq.items[1], 5),
	       "memo index 200 without 0..199, PUT/GET text forms");
	zf_pickle_free(p);

	v = parse_lit(LIT("\x80\x02}."), &p, "empty dict (fuzzer find)");
	tap_ok(zf_pv_is(v, ZF_PV_DICT) && v->u.dict.n == 0 && !zf_pv_get(v, "x"),
	       "an empty dict has no entries");
	zf_pickle_free(p);
	v = parse_lit(LIT("]q\x00h\x00" "a."), &p, "list appended to itself");
	tap_ok(zf_pv_is(v, ZF_PV_LIST) && v->u.seq.n == 1 &&
		       v->u.seq.items[0] == v,
	       "the list contains itself");
	zf_pickle_free(p);
	v = parse_lit(LIT("}]K\x01s(K\x02K\x03" "d\x86."), &p, "list as dict key");
	tap_ok(zf_pv_is(v, ZF_PV_TUPLE) &&
		       zf_pv_is(v->u.seq.items[0]->u.dict.keys[0], ZF_PV_LIST) &&
		       int_is(zf_pv_get_int(v->u.seq.items[1], 2), 3),
	       "a list may be a dict key; DICT from MARK");
	zf_pickle_free(p);
	v = parse_lit(LIT("}(X\x01\0\0\0aK\x01K\x05K\x02X\x01\0\0\0aK\x03"
			  "K\x05K\x04u."),
		      &p, "duplicate keys");
	tap_ok(zf_pv_is(v, ZF_PV_DICT) && v->u.dict.n == 2 &&
		       str_is(v->u.dict.keys[0], "a") &&
		       int_is(zf_pv_get(v, "a"), 3) &&
		       int_is(zf_pv_get_int(v, 5), 4),
	       "repeated keys keep first place and last value");
	zf_pickle_free(p);

	/* SETITEM / APPEND on an opaque object: collected in obj.items. */
	v = parse_lit(LIT("cm\nC\n)\x81X\x01\0\0\0kK\x01s."), &p,
		      "SETITEM on an object");
	tap_ok(zf_pv_is(v, ZF_PV_OBJECT) && int_is(zf_pv_get(v->u.obj.items, "k"), 1),
	       "dict-subclass items land in obj.items");
	zf_pickle_free(p);
	v = parse_lit(LIT("cm\nL\n)\x81(K\x01K\x02" "e."), &p, "APPENDS on an object");
	tap_ok(zf_pv_is(v, ZF_PV_OBJECT) && zf_pv_is(v->u.obj.items, ZF_PV_LIST) &&
		       v->u.obj.items->u.seq.n == 2,
	       "list-subclass items land in obj.items");
	zf_pickle_free(p);
	expect_err(LIT("cm\nC\n)\x81K\x01" "aK\x01K\x02s."), NULL, ZF_EFORMAT,
		   "SETITEM on an object that already holds list items",
		   "SETITEM after APPEND on an object");
	v = parse_lit(LIT("cm\nF\n)R)R."), &p, "calling an object");
	tap_ok(zf_pv_is(v, ZF_PV_OBJECT) && !strcmp(v->u.obj.name, "F"),
	       "calling an opaque result stays opaque");
	zf_pickle_free(p);
	expect_err(LIT("K\x01)R."), NULL, ZF_EFORMAT,
		   "REDUCE calls a int, which is not callable (at byte 3)",
		   "REDUCE on an int");
	expect_err(LIT("cm\nF\nK\x01R."), NULL, ZF_EFORMAT,
		   "REDUCE with a int as arguments", "REDUCE with non-tuple args");

	v = parse_lit(LIT("c__builtin__\nfrozenset\n](K\x01K\x02" "e\x85R."),
		      &p, "frozenset");
	tap_ok(zf_pv_is(v, ZF_PV_SET) && v->u.seq.n == 2, "frozenset([1, 2])");
	zf_pickle_free(p);
	v = parse_lit(LIT("\x8c\x08" "builtins\x8c\x07getattr\x93\x8c\x01m\x8c\x04"
			  "Mode\x93\x8c\x01" "a\x86R."),
		      &p, "STACK_GLOBAL builtins.getattr");
	tap_ok(zf_pv_is(v, ZF_PV_ENUM) && !strcmp(v->u.enm.cls_name, "Mode") &&
		       !strcmp(v->u.enm.member, "a"),
	       "'builtins' works like '__builtin__'");
	zf_pickle_free(p);
	expect_err(LIT("c_codecs\nencode\nX\x03\0\0\0\xe4\xb8\x96X\x06\0\0\0latin1\x86R."),
		   NULL, ZF_EFORMAT, "outside latin1", "_codecs.encode of a CJK char");
	expect_err(LIT("P0\n."), NULL, ZF_EFORMAT, "PERSID of the text id '0'",
		   "text persistent id");
	expect_err(LIT("\x80\x02K\x01Q."), NULL, ZF_EFORMAT,
		   "BINPERSID of a persistent id (a int) that is not a torch storage",
		   "BINPERSID of an int");
	expect_err(LIT("\x80\x02\x82\x01."), NULL, ZF_EFORMAT,
		   "EXT1 refers to the copyreg extension registry", "EXT1");
	expect_err(LIT("\x80\x05\x97."), NULL, ZF_EFORMAT,
		   "NEXT_BUFFER refers to an out-of-band buffer", "NEXT_BUFFER");
	expect_err(LIT("\x80\x02\xff."), NULL, ZF_EFORMAT,
		   "pickle: opcode 0xff is unknown (at byte 2)", "unknown opcode");
	expect_err(LIT("\x80\x06N."), NULL, ZF_EFORMAT, "PROTO 6, at most 5",
		   "protocol 6");
	expect_err(LIT("\x80\x02K\x01}b."), NULL, ZF_EFORMAT,
		   "BUILD on a int, which has no state (at byte 5)", "BUILD on an int");
}

/* ---- tensors ------------------------------------------------------------ */

/* A _rebuild_tensor_v2 pickle: storage id, then args_tail (after the
 * storage) appended raw before TUPLE REDUCE STOP. */
static void tensor_pickle(struct bb *b, const char *cls, const char *key,
			  int numel, const char *tail, size_t tail_len)
{
	bb_s(b, "\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n((");
	bb_str(b, "storage");
	bb_s(b, "ctorch\n");
	bb_s(b, cls);
	bb_s(b, "\n");
	bb_str(b, key);
	bb_str(b, "cpu");
	bb_u8(b, 'J');
	bb_le(b, (uint32_t)numel, 4);
	bb_s(b, "tQ");
	bb_put(b, tail, tail_len);
	bb_s(b, "tR.");
}

static void tensor_err(const char *tail, size_t tail_len, int numel,
		       const char *frag, const char *what)
{
	struct bb b = { 0 };

	tensor_pickle(&b, "FloatStorage", "0", numel, tail, tail_len);
	expect_err(b.p, b.n, NULL, ZF_EFORMAT, frag, what);
	bb_free(&b);
}

static void test_tensors(void)
{
	struct zf_pickle *p;
	const struct zf_pv *v;
	struct bb b = { 0 };

	tensor_pickle(&b, "FloatStorage", "7", 10,
		      LIT("K\x02K\x02K\x03\x86K\x03K\x01\x86\x88N" "ccollections\nOrderedDict\n)R"));
	v = ok_root(b.p, b.n, &p, "7-argument _rebuild_tensor_v2");
	tap_ok(zf_pv_is(v, ZF_PV_TENSOR) && v->u.tensor.requires_grad &&
		       v->u.tensor.offset == 2 && v->u.tensor.size[1] == 3,
	       "7 args (torch 2.x metadata) accepted, requires_grad kept");
	zf_pickle_free(p);
	bb_free(&b);

	/* Parameter wrapper and the tensor-subclass wrapper. */
	bb_s(&b, "ctorch._utils\n_rebuild_parameter\n");
	tensor_pickle(&b, "HalfStorage", "1", 4, LIT("K\0K\x04\x85K\x01\x85\x89N"));
	b.n--; /* drop the STOP */
	bb_s(&b, "\x88N\x87R.");
	v = ok_root(b.p, b.n, &p, "_rebuild_parameter");
	tap_ok(zf_pv_is(v, ZF_PV_TENSOR) && v->u.tensor.requires_grad &&
		       v->u.tensor.storage->u.storage.dtype == ZF_DT_F16,
	       "a parameter is its tensor, with the parameter's requires_grad");
	zf_pickle_free(p);
	bb_free(&b);
	bb_s(&b, "\x80\x02" "ctorch._tensor\n_rebuild_from_type_v2\n("
		 "ctorch._utils\n_rebuild_tensor_v2\nctorch\nTensor\n(");
	bb_s(&b, "(");
	bb_str(&b, "storage");
	bb_s(&b, "ctorch\nLongStorage\n");
	bb_str(&b, "k");
	bb_str(&b, "cuda:0");
	bb_lit(&b, "K\x03tQK\0K\x03\x85K\x01\x85\x89NtNtR.");
	v = ok_root(b.p, b.n, &p, "_rebuild_from_type_v2");
	tap_ok(zf_pv_is(v, ZF_PV_TENSOR) &&
		       v->u.tensor.storage->u.storage.dtype == ZF_DT_I64 &&
		       !strcmp(v->u.tensor.storage->u.storage.location, "cuda:0"),
	       "_rebuild_from_type_v2 unwraps to the tensor");
	zf_pickle_free(p);
	bb_free(&b);

	tensor_pickle(&b, "ComplexFloatStorage", "0", 4,
		      LIT("K\0K\x04\x85K\x01\x85\x89N"));
	v = ok_root(b.p, b.n, &p, "unknown storage class");
	tap_ok(zf_pv_is(v, ZF_PV_TENSOR) &&
		       v->u.tensor.storage->u.storage.dtype == ZF_DT_INVALID &&
		       !strcmp(v->u.tensor.storage->u.storage.class_name,
			       "ComplexFloatStorage"),
	       "an unknown storage class has dtype ZF_DT_INVALID");
	zf_pickle_free(p);
	bb_free(&b);

	tensor_err(LIT("K\x00K\x04\x85K\x01\x85\x89"), 4,
		   "_rebuild_tensor_v2 with 5 arguments, expected 6 or 7",
		   "5 arguments");
	tensor_err(LIT("J\xff\xff\xff\xffK\x04\x85K\x01\x85\x89N"), 4,
		   "bad storage offset", "negative offset");
	tensor_err(LIT("K\0J\xfe\xff\xff\xff\x85K\x01\x85\x89N"), 4,
		   "size[0] = -2", "negative size");
	tensor_err(LIT("K\0K\x04\x85J\xff\xff\xff\xff\x85\x89N"), 4,
		   "stride[0] = -1", "negative stride");
	tensor_err(LIT("K\0K\x04K\x01\x86K\x01\x85\x89N"), 4,
		   "with 2 sizes but 1 strides", "size/stride length mismatch");
	tensor_err(LIT("K\0]K\x01\x85\x89N"), 4, "a list as size, expected a tuple",
		   "size as a list");
	tensor_err(LIT("K\0K\x04\x85K\x01\x85K\0N"), 4, "a int as requires_grad",
		   "requires_grad an int");
	tensor_err(LIT("K\x01K\x04\x85K\x01\x85\x89N"), 4,
		   "view past the end of storage '0' (4 elements)",
		   "view past the storage end");
	tensor_err(LIT("K\0K\x02K\x02\x86J\xff\xff\xff\x7fJ\xff\xff\xff\x7f\x86\x89N"),
		   1000, "past the end", "huge strides");
	tensor_err(LIT("K\0X\x01\0\0\0" "a\x85K\x01\x85\x89N"), 4,
		   "with a str in its size", "str in size");

	/* 1000 dimensions. */
	tensor_pickle(&b, "FloatStorage", "0", 4, LIT("K\0("));
	b.n -= 3;
	bb_rep(&b, "K\x01", 1000);
	bb_s(&b, "t(");
	bb_rep(&b, "K\x01", 1000);
	bb_s(&b, "t\x89NtR.");
	expect_err(b.p, b.n, NULL, ZF_EFORMAT,
		   "_rebuild_tensor_v2 with 1000 dimensions, at most 16",
		   "tensor with 1000 dims");
	bb_free(&b);

	/* Storage that is not a storage. */
	expect_err(LIT("ctorch._utils\n_rebuild_tensor_v2\n(K\0K\0)))\x89NtR."),
		   NULL, ZF_EFORMAT, "a int as storage, expected a storage",
		   "int as storage");

	/* One key, two dtypes / numels. */
	tensor_pickle(&b, "FloatStorage", "0", 4, LIT("K\0K\x04\x85K\x01\x85\x89N"));
	b.n--;
	bb_s(&b, "0");
	tensor_pickle(&b, "HalfStorage", "0", 4, LIT("K\0K\x04\x85K\x01\x85\x89N"));
	expect_err(b.p, b.n, NULL, ZF_EFORMAT,
		   "storage '0' as HalfStorage of 4 elements, earlier FloatStorage of 4",
		   "storage key reused with another dtype");
	bb_free(&b);
	expect_err(LIT("(X\x07\0\0\0storagectorch\nFloatStorage\nX\x04\0\0\0../xX\x03\0\0\0cpuK\x01tQ."),
		   NULL, ZF_EFORMAT, "not a plain name", "storage key with a slash");
	expect_err(LIT("(X\x07\0\0\0storagectorch\nFloatStorage\nK\x01X\x03\0\0\0cpuK\x01tQ."),
		   NULL, ZF_EFORMAT, "typed (global, int, str, int)",
		   "storage key an int");
}

/* ---- stack and memo misuse -------------------------------------------- */

static void test_misuse(void)
{
	expect_err(LIT("\x80\x02" "a."), NULL, ZF_EFORMAT,
		   "pickle: APPEND needs 2 stack items, has 0 (at byte 2)",
		   "APPEND on an empty stack");
	expect_err(LIT("0."), NULL, ZF_EFORMAT, "POP needs 1 stack items", "POP on empty");
	expect_err(LIT("K\x01(\x85."), NULL, ZF_EFORMAT,
		   "TUPLE1 needs 1 stack items after the last MARK, has 0",
		   "TUPLE1 reaching below a MARK");
	expect_err(LIT("K\x01K\x02t."), NULL, ZF_EFORMAT, "TUPLE without a MARK",
		   "TUPLE without MARK");
	expect_err(LIT("(e."), NULL, ZF_EFORMAT, "APPENDS has nothing below its MARK",
		   "APPENDS with nothing to append to");
	expect_err(LIT("}(K\x01u."), NULL, ZF_EFORMAT,
		   "SETITEMS with an odd number (1) of items", "SETITEMS odd");
	expect_err(LIT("(K\x01K\x02K\x03" "d."), NULL, ZF_EFORMAT,
		   "DICT with an odd number (3)", "DICT odd");
	expect_err(LIT("K\x01K\x02" "a."), NULL, ZF_EFORMAT,
		   "APPEND to a int, expected a list (at byte 4)", "APPEND to an int");
	expect_err(LIT(")K\x01K\x02s."), NULL, ZF_EFORMAT,
		   "SETITEM on a tuple, expected a dict", "SETITEM on a tuple");
	expect_err(LIT("](K\x01\x90."), NULL, ZF_EFORMAT,
		   "ADDITEMS to a list, expected a set", "ADDITEMS to a list");
	expect_err(LIT("K\x01K\x02."), NULL, ZF_EFORMAT,
		   "STOP with 2 items on the stack, expected 1", "STOP with 2");
	expect_err(LIT("."), NULL, ZF_EFORMAT, "STOP with 0 items", "STOP with 0");
	expect_err(LIT("(K\x01."), NULL, ZF_EFORMAT, "STOP with 1 MARKs still open",
		   "STOP with an open MARK");
	expect_err(LIT(""), NULL, ZF_EFORMAT, "input ends at byte 0 without STOP",
		   "empty input");
	expect_err(LIT("\x80\x02N"), NULL, ZF_EFORMAT,
		   "input ends at byte 3 without STOP", "no STOP");
	expect_err(LIT("\x80\x02h\x07."), NULL, ZF_EFORMAT,
		   "pickle: BINGET of memo index 7 that was never stored (at byte 2)",
		   "BINGET of an unset index");
	expect_err(LIT("q\x00."), NULL, ZF_EFORMAT, "BINPUT needs 1 stack items",
		   "BINPUT on empty stack");
	expect_err(LIT("K\x01r\x00\x00\x00\x80."), NULL, ZF_EFORMAT,
		   "LONG_BINPUT of memo index 2147483648, at most 16777215 allowed (at byte 2)",
		   "memo index 2^31");
	expect_err(LIT("K\x01p99999999999999999999999\n."), NULL, ZF_EFORMAT,
		   "PUT with a bad memo index", "text memo index overflow");
	expect_err(LIT("\x93."), NULL, ZF_EFORMAT, "STACK_GLOBAL needs 2",
		   "STACK_GLOBAL on empty");
	expect_err(LIT("K\x01K\x02\x93."), NULL, ZF_EFORMAT,
		   "STACK_GLOBAL of a int and a int, expected strs", "STACK_GLOBAL of ints");
	expect_err(LIT("cos\n"), NULL, ZF_EFORMAT, "GLOBAL argument has no end of line",
		   "GLOBAL cut after module");
	expect_err(LIT("c\nx\n."), NULL, ZF_EFORMAT, "GLOBAL with an empty module",
		   "GLOBAL empty module");
	expect_err(LIT("Ix\n."), NULL, ZF_EFORMAT, "INT argument 'x' is not a decimal",
		   "INT junk");
	expect_err(LIT("F1.5x\n."), NULL, ZF_EFORMAT, "FLOAT argument '1.5x' is not a float",
		   "FLOAT junk");
	expect_err(LIT("Sabc\n."), NULL, ZF_EFORMAT, "STRING argument is not a quoted",
		   "STRING unquoted");
	expect_err(LIT("V\\u12\n."), NULL, ZF_EFORMAT, "truncated \\u escape",
		   "UNICODE short escape");
	expect_err(LIT("V\\U00110000\n."), NULL, ZF_EFORMAT, "code point 0x110000",
		   "UNICODE beyond U+10FFFF");
	expect_err(LIT("T\xff\xff\xff\xff."), NULL, ZF_EFORMAT,
		   "BINSTRING with negative length", "BINSTRING negative");
	expect_err(LIT("\x95\xff\0\0\0\0\0\0\0N."), NULL, ZF_EFORMAT,
		   "FRAME of 255 bytes, but only 2 bytes are left", "FRAME too long");
	expect_err(LIT("X\xff\xff\xff\xff" "abc."), NULL, ZF_EFORMAT,
		   "pickle: BINUNICODE of 4294967295 bytes, but only 4 bytes are left (at byte 0)",
		   "BINUNICODE length 0xFFFFFFFF");
	expect_err(LIT("\x8d\0\0\0\0\0\0\0\x40" "abc."), NULL, ZF_EFORMAT,
		   "BINUNICODE8 of 4611686018427387904 bytes, but only 4",
		   "BINUNICODE8 length 2^62");
	expect_err(LIT("\x8e\xff\xff\xff\xff\xff\xff\xff\xff."), NULL, ZF_EFORMAT,
		   "BINBYTES8 of 18446744073709551615 bytes", "BINBYTES8 length 2^64-1");
	expect_err(LIT("\x8b\xff\xff\xff\x7f."), NULL, ZF_EFORMAT,
		   "LONG4 of 2147483647 bytes, but only 1", "LONG4 huge");
	expect_err(LIT("J\x01\x02"), NULL, ZF_EFORMAT,
		   "BININT needs 4 bytes of int, only 2 left (at byte 0)",
		   "BININT cut short");
}

/* ---- legacy storage ids, the storage list ------------------------------- */

/* A tensor on a legacy 6-item storage id whose 6th item is the pickled
 * bytes view. */
static void legacy_tensor(struct bb *b, const char *key, const char *view,
			  size_t view_len)
{
	bb_s(b, "\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n((");
	bb_str(b, "storage");
	bb_s(b, "ctorch\nFloatStorage\n");
	bb_str(b, key);
	bb_str(b, "cpu");
	bb_lit(b, "K\x06");
	bb_put(b, view, view_len);
	bb_lit(b, "tQK\x00K\x06\x85K\x01\x85\x89N" "tR.");
}

static void test_storage_ids(void)
{
	const struct zf_pv *const *st;
	struct zf_pickle *p;
	const struct zf_pv *v;
	struct bb b = { 0 };
	size_t n;

	legacy_tensor(&b, "140737", LIT("N"));
	v = ok_root(b.p, b.n, &p, "a legacy storage id (6 items, None)");
	tap_ok(zf_pv_is(v, ZF_PV_TENSOR) &&
		       !strcmp(v->u.tensor.storage->u.storage.key, "140737") &&
		       v->u.tensor.storage->u.storage.numel == 6,
	       "the legacy id gives a storage like the zip format's");
	zf_pickle_free(p);
	bb_free(&b);

	legacy_tensor(&b, "140737", LIT("(X\x03\0\0\0" "999K\x00K\x02t"));
	expect_err(b.p, b.n, NULL, ZF_EFORMAT,
		   "BINPERSID of storage '140737' with view metadata (a tuple): a view of another storage, which only torch before 1.0 wrote",
		   "a legacy storage view");
	bb_free(&b);

	/* ('module', cls, file, source) stands for the class. */
	bb_s(&b, "\x80\x02(");
	bb_str(&b, "module");
	bb_s(&b, "cmy.models\nNet\n");
	bb_str(&b, "net.py");
	bb_str(&b, "class Net: ...");
	bb_s(&b, "tQ.");
	v = ok_root(b.p, b.n, &p, "a legacy module id");
	tap_ok(zf_pv_is(v, ZF_PV_GLOBAL) && !strcmp(v->u.global.name, "Net"),
	       "a legacy module id is its class");
	zf_pickle_free(p);
	bb_free(&b);

	bb_s(&b, "\x80\x02(");
	bb_str(&b, "storage");
	bb_s(&b, "ctorch\nFloatStorage\n");
	bb_str(&b, "1");
	bb_s(&b, "tQ.");
	expect_err(b.p, b.n, NULL, ZF_EFORMAT,
		   "BINPERSID of a persistent id (a tuple) that is not a torch storage",
		   "a 3-item storage id");
	bb_free(&b);

	/* The storage list: one per key, in order of first use. */
	v = ok_root(pv_model, sizeof(pv_model), &p, "torch.save pickle");
	st = zf_pickle_storages(p, &n);
	tap_ok(n >= 2 && !strcmp(st[0]->u.storage.key, "0") &&
		       !strcmp(st[1]->u.storage.key, "1"),
	       "zf_pickle_storages: %zu storages, keys in order of first use", n);
	for (size_t i = 0, dup = 0; i < n; i++) {
		for (size_t k = 0; k < i; k++)
			dup += !strcmp(st[i]->u.storage.key, st[k]->u.storage.key);
		if (i == n - 1)
			tap_ok(dup == 0, "zf_pickle_storages: no key twice");
	}
	zf_pickle_free(p);
	tap_ok(zf_pickle_storages(NULL, &n) == NULL && n == 0,
	       "zf_pickle_storages(NULL) is empty");
}

/* ---- pickles followed by other bytes, and scanning ---------------------- */

/* Scans d (whose pickle ends at end) through windows of w bytes, growing
 * a window that holds no whole opcode; 0 when the scan ends at end. */
static int scan_windows(const unsigned char *d, size_t n, size_t w, size_t end)
{
	struct zf_pickle_scan s = { 0 };
	struct zf_error e = { 0 };

	while (!s.done) {
		uint64_t base = s.pos;
		size_t len = n - base < w ? (size_t)(n - base) : w;

		if (zf_pickle_scan(&s, d + base, len, base, n, &e))
			return -1;
		if (!s.done && s.pos == base)
			w *= 2;
	}
	return s.pos == end ? 0 : -1;
}

/* The reference pickles: torch.save's and one of each protocol. */
static const struct {
	const unsigned char *d;
	size_t n;
	const char *name;
} vec[] = {
	{ pv_model, sizeof(pv_model), "torch.save pickle" },
	{ pv_proto0, sizeof(pv_proto0), "protocol 0" },
	{ pv_proto1, sizeof(pv_proto1), "protocol 1" },
	{ pv_proto2, sizeof(pv_proto2), "protocol 2" },
	{ pv_proto3, sizeof(pv_proto3), "protocol 3" },
	{ pv_proto4, sizeof(pv_proto4), "protocol 4" },
	{ pv_proto5, sizeof(pv_proto5), "protocol 5" },
};

static void test_prefix_and_scan(void)
{
	struct zf_pickle_scan s = { 0 };
	struct zf_pickle *p = NULL;
	struct zf_error e = { 0 };
	struct bb b = { 0 };
	size_t end = 0;
	int rc;

	rc = zf_pickle_load_prefix(LIT("K\x07.K\x08.junk"), NULL, &end, &p, &e);
	tap_ok(rc == ZF_OK && end == 3 && zf_pickle_root(p)->u.i == 7,
	       "load_prefix: the first pickle of two, ending at byte 3");
	zf_pickle_free(p);

	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		size_t bad = 0;

		/* The vector followed by another pickle and junk. */
		bb_put(&b, vec[i].d, vec[i].n);
		bb_lit(&b, "\x80\x02N.\xff\xff");
		rc = zf_pickle_load_prefix(b.p, b.n, NULL, &end, &p, &e);
		tap_ok(rc == ZF_OK && end == vec[i].n,
		       "%s: load_prefix ends at byte %zu of %zu", vec[i].name,
		       end, vec[i].n);
		zf_pickle_free(p);
		for (size_t w = 1; w <= 40; w++)
			bad += scan_windows(b.p, b.n, w, vec[i].n) != 0;
		bad += scan_windows(b.p, b.n, b.n, vec[i].n) != 0;
		tap_ok(bad == 0,
		       "%s: scanning through windows of 1 to 40 bytes and whole finds its end (%zu wrong)",
		       vec[i].name, bad);
		bb_free(&b);
	}

	/* A payload may lie beyond the window: the scan jumps it. */
	bb_lit(&b, "\x80\x04\x8e");
	bb_le(&b, 100000, 8);
	for (size_t i = 0; i < 100000; i++)
		bb_u8(&b, 'x');
	bb_s(&b, "0N.");
	memset(&s, 0, sizeof(s));
	rc = zf_pickle_scan(&s, b.p, 64, 0, b.n, &e);
	tap_ok(rc == ZF_OK && !s.done && s.pos == 11 + 100000,
	       "scan: a BINBYTES8 payload past the window is jumped (pos %llu)",
	       (unsigned long long)s.pos);
	rc = zf_pickle_scan(&s, b.p + s.pos, b.n - s.pos, s.pos, b.n, &e);
	tap_ok(rc == ZF_OK && s.done && s.pos == b.n,
	       "scan: ... and the rest found after it");
	bb_free(&b);

	memset(&s, 0, sizeof(s));
	zf_error_clear(&e);
	rc = zf_pickle_scan(&s, LIT("\x80\x02X\xff\xff\xff\x7f" "ab"), 0, 9, &e);
	tap_ok(rc == ZF_EFORMAT && strstr(e.msg,
		"pickle: BINUNICODE of 2147483647 bytes, but only 2 bytes are left (at byte 2)"),
	       "scan: a length past the limit (%s)", e.msg);
	memset(&s, 0, sizeof(s));
	zf_error_clear(&e);
	rc = zf_pickle_scan(&s, LIT("\x80\x02N"), 0, 3, &e);
	tap_ok(rc == ZF_EFORMAT && strstr(e.msg, "pickle: input ends at byte 3 without STOP"),
	       "scan: no STOP before the limit (%s)", e.msg);
	memset(&s, 0, sizeof(s));
	zf_error_clear(&e);
	rc = zf_pickle_scan(&s, LIT("N\xfe."), 0, 3, &e);
	tap_ok(rc == ZF_EFORMAT && strstr(e.msg, "pickle: opcode 0xfe is unknown (at byte 1)"),
	       "scan: an unknown opcode (%s)", e.msg);
	memset(&s, 0, sizeof(s));
	zf_error_clear(&e);
	rc = zf_pickle_scan(&s, LIT("\x8b\xff\xff\xff\xff."), 0, 6, &e);
	tap_ok(rc == ZF_EFORMAT && strstr(e.msg, "pickle: LONG4 with negative length (at byte 0)"),
	       "scan: a negative length (%s)", e.msg);
	memset(&s, 0, sizeof(s));
	zf_error_clear(&e);
	rc = zf_pickle_scan(&s, LIT("\x80\x07N."), 0, 4, &e);
	tap_ok(rc == ZF_EFORMAT && strstr(e.msg, "pickle: PROTO 7, at most 5 is known (at byte 0)"),
	       "scan: protocol 7 (%s)", e.msg);
	memset(&s, 0, sizeof(s));
	s.pos = 5;
	zf_error_clear(&e);
	rc = zf_pickle_scan(&s, LIT("NN."), 0, 3, &e);
	tap_ok(rc == ZF_EUSAGE, "scan: a window that does not hold pos is a usage error");
}

/* ---- limits and deep nesting ------------------------------------------ */

static void test_limits(void)
{
	struct zf_pickle_limits lim = { 0 };
	struct zf_pickle *p = NULL;
	struct zf_error e;
	struct bb b = { 0 };
	int rc;

	bb_rep(&b, "(", 100000);
	expect_err(b.p, b.n, NULL, ZF_EFORMAT,
		   "pickle: MARK opens more than 1000 MARKs (at byte 1000)",
		   "100k MARKs");
	bb_free(&b);

	/* 100k empty lists take 56 bytes each per byte of input, more than
	 * the input bound allows (see test_memory): raised here, so that
	 * the depth limit is what fires. */
	lim.bytes_per_byte = 256;
	bb_rep(&b, "]", 100000);
	bb_rep(&b, "a", 99999);
	bb_s(&b, ".");
	expect_err(b.p, b.n, &lim, ZF_EFORMAT,
		   "APPEND nests values more than 1000 deep",
		   "100k nested lists (EMPTY_LIST ... APPEND)");
	lim.max_depth = 200000;
	rc = load(b.p, b.n, &lim, &p, &e);
	tap_ok(rc == ZF_OK && zf_pv_is(zf_pickle_root(p), ZF_PV_LIST),
	       "the same 100k nesting parses when max_depth allows it (no recursion)");
	zf_pickle_free(p);
	bb_free(&b);

	bb_s(&b, "K\x01");
	bb_rep(&b, "\x85", 5000);
	bb_s(&b, ".");
	expect_err(b.p, b.n, NULL, ZF_EFORMAT,
		   "TUPLE1 nests values more than 1000 deep (at byte 1002)",
		   "5000 nested 1-tuples");
	bb_free(&b);

	/* A wide structure is not deep: 50k lists in one tuple. */
	bb_s(&b, "(");
	bb_rep(&b, "]", 50000);
	bb_s(&b, "t.");
	memset(&lim, 0, sizeof(lim));
	lim.bytes_per_byte = 256;
	rc = load(b.p, b.n, &lim, &p, &e);
	tap_ok(rc == ZF_OK && zf_pickle_root(p)->u.seq.n == 50000,
	       "a tuple of 50000 lists is within max_depth");
	zf_pickle_free(p);
	bb_free(&b);

	memset(&lim, 0, sizeof(lim));
	lim.max_depth = 3;
	expect_err(LIT("]]]]aaa."), &lim, ZF_EFORMAT, "nests values more than 3 deep",
		   "max_depth 3 vs depth 4");
	tap_ok(load(LIT("]]]aa."), &lim, &p, &e) == ZF_OK, "depth 3 within max_depth 3");
	zf_pickle_free(p);
	expect_err(LIT("((((N1111."), &lim, ZF_EFORMAT,
		   "MARK opens more than 3 MARKs (at byte 3)", "max_depth 3 vs 4 MARKs");

	memset(&lim, 0, sizeof(lim));
	lim.max_memo = 10;
	tap_ok(load(LIT("Nq\x09."), &lim, &p, &e) == ZF_OK, "memo index 9 within max_memo 10");
	zf_pickle_free(p);
	expect_err(LIT("Nq\x0a."), &lim, ZF_EFORMAT,
		   "BINPUT of memo index 10, at most 9 allowed", "max_memo 10");

	memset(&lim, 0, sizeof(lim));
	lim.max_values = 20;
	bb_s(&b, "(");
	bb_rep(&b, "]", 30);
	bb_s(&b, "l.");
	expect_err(b.p, b.n, &lim, ZF_EFORMAT,
		   "EMPTY_LIST would create more than 20 values",
		   "max_values 20 vs 30 lists");
	bb_free(&b);

	memset(&lim, 0, sizeof(lim));
	lim.max_bytes = 65536;
	bb_s(&b, "B");
	bb_le(&b, 100000, 4);
	bb_rep(&b, "z", 100000);
	bb_s(&b, ".");
	expect_err(b.p, b.n, &lim, ZF_ENOMEM,
		   "BINBYTES needs more than the 65536 bytes max_bytes allows (at byte 0)",
		   "max_bytes 64 KiB vs 100 KB bytes");
	lim.max_bytes = 1 << 20;
	tap_ok(load(b.p, b.n, &lim, &p, &e) == ZF_OK &&
		       zf_pickle_root(p)->u.str.len == 100000,
	       "the 100 KB bytes fit in 1 MiB");
	zf_pickle_free(p);
	bb_free(&b);
}

/* ---- truncation and mutation ---------------------------------------- */

static void test_truncation(const unsigned char *d, size_t n, const char *what)
{
	size_t bad_status = 0, no_msg = 0, succeeded = 0;
	struct zf_pickle *p;
	struct zf_error e;

	for (size_t k = 0; k < n; k++) {
		int rc = load(d, k, NULL, &p, &e);

		if (rc == ZF_OK) {
			succeeded++;
			zf_pickle_free(p);
			continue;
		}
		if (rc != ZF_EFORMAT || p)
			bad_status++;
		if (strncmp(e.msg, "pickle: ", 8))
			no_msg++;
	}
	tap_ok(succeeded == 0 && bad_status == 0 && no_msg == 0,
	       "%s: all %zu truncations fail with a 'pickle: ' EFORMAT (%zu parsed, %zu other status, %zu bad messages)",
	       what, n, succeeded, bad_status, no_msg);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	/* xorshift64*: reproducible, independent of libc's rand(). */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static void test_mutations(const unsigned char *d, size_t n, size_t rounds,
			   const char *what)
{
	unsigned char *m = malloc(n);
	size_t okc = 0, errc = 0, odd = 0;

	for (size_t r = 0; r < rounds; r++) {
		size_t flips = 1 + rng() % 4;
		struct zf_pickle *p = NULL;
		struct zf_error e;
		int rc;

		memcpy(m, d, n);
		for (size_t i = 0; i < flips; i++) {
			size_t at = rng() % n;

			/* Half bit flips, half interesting bytes. */
			if (rng() & 1)
				m[at] ^= (unsigned char)(1u << (rng() % 8));
			else
				m[at] = "\xff\x00\x80\x7f(tu.ehqjrX\x8d"[rng() % 16];
		}
		rc = load(m, n, NULL, &p, &e);
		if (rc == ZF_OK) {
			okc++;
			if (!zf_pickle_root(p))
				odd++;
			zf_pickle_free(p);
		} else {
			errc++;
			if (p || strncmp(e.msg, "pickle: ", 8))
				odd++;
		}
	}
	tap_ok(odd == 0 && okc + errc == rounds,
	       "%s: %zu mutants, %zu parsed, %zu rejected cleanly", what,
	       rounds, okc, errc);
	free(m);
}

/* ---- speed ------------------------------------------------------------- */

static void test_speed(void)
{
	struct bb b = { 0 };
	struct zf_pickle *p = NULL;
	struct zf_error e;
	struct timespec t0, t1;
	double ms;
	int rc;
	const struct zf_pv *m;

	big_state_dict(&b, 70000);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	rc = load(b.p, b.n, NULL, &p, &e);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
	     (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	m = rc ? NULL : zf_pv_get(zf_pickle_root(p), "module");
	tap_ok(rc == ZF_OK && zf_pv_is(m, ZF_PV_DICT) && m->u.dict.n == 70000 &&
		       zf_pv_is(m->u.dict.vals[69999], ZF_PV_TENSOR) &&
		       m->u.dict.vals[69999]->u.tensor.size[0] == 256,
	       "a %.1f MB state_dict of 70000 tensors parses", b.n / 1e6);
	if (rc)
		printf("#   error: %s\n", e.msg);
	printf("# parsed %.1f MB in %.1f ms of CPU (%.0f MB/s)\n", b.n / 1e6, ms,
	       b.n / 1e3 / (ms > 0 ? ms : 1));
	/* CPU time, so a loaded machine does not fail the test; generous,
	 * because sanitizer builds run ~10x slower than the ~50 ms of an
	 * optimised build. */
	tap_ok(ms < 5000, "parse CPU time %.1f ms is sane", ms);
	zf_pickle_free(p);
	bb_free(&b);
}

int main(void)
{
	test_model();
	test_protocol(pv_proto0, sizeof(pv_proto0), 0);
	test_protocol(pv_proto1, sizeof(pv_proto1), 1);
	test_protocol(pv_proto2, sizeof(pv_proto2), 2);
	test_protocol(pv_proto3, sizeof(pv_proto3), 3);
	test_protocol(pv_proto4, sizeof(pv_proto4), 4);
	test_protocol(pv_proto5, sizeof(pv_proto5), 5);
	test_opcodes();
	test_tensors();
	test_storage_ids();
	test_prefix_and_scan();
	test_misuse();
	test_limits();
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++)
		test_truncation(vec[i].d, vec[i].n, vec[i].name);
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++)
		test_mutations(vec[i].d, vec[i].n, i == 0 ? 20000 : 3000,
			       vec[i].name);
	test_speed();
	return tap_done();
}
