/* SPDX-License-Identifier: MIT */
/*
 * The pickle machine of include/zerofs/pickle.h: a loop over opcodes that
 * builds values (core/pickle_values.c) and calls nothing; what torch's
 * callables mean is core/pickle_torch.c's business, protocol 0's text
 * arguments core/pickle_text.c's, memory core/pickle_mem.c's. The opcode semantics
 * follow CPython's Modules/_pickle.c (the Unpickler's split object and
 * mark stacks, the "fence" that hides items below the newest MARK, POP
 * that pops a MARK when one sits on top); core/pickle_ops.h lists the
 * opcodes and their argument encodings (Lib/pickletools.py documents
 * them). torch.save writes protocol 2, and about 30 of its opcodes.
 *
 * Workload: one parse per rank file, up to a few MB of protocol 2 each,
 * mostly BINPUT/BINGET, BININT1, BINUNICODE, TUPLE and REDUCE; several
 * parses run at once on different threads (no shared state but the
 * memory cap of core/pickle_mem.c and the arena's chunk cache).
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
 *  - A pickle may end with bytes after STOP; zf_pickle_load() ignores them
 *    as Python does, zf_pickle_load_prefix() says where they start.
 *  - Limits: depth, memo and values end in ZF_EFORMAT; memory (see
 *    core/pickle_mem.c) in ZF_EFORMAT when the input bound is exceeded,
 *    ZF_ENOMEM for max_bytes and the process-wide cap. Small ints, None,
 *    True, False and () are shared.
 */
#include "zerofs/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ckd.h"
#include "cursor.h"
#include "pickle_i.h"
#include "pickle_ops.h"

const struct pk_opinfo pk_ops[256] = {
#define PK_OP_INFO(name, byte, kind, size, what) \
	[byte] = { #name, PK_ARG_##kind, size, what },
	PK_OPS(PK_OP_INFO)
#undef PK_OP_INFO
};

/* ---- errors ---------------------------------------------------------- */

int pk_bad(struct pk_reader *r, int status, const char *fmt, ...)
{
	char what[512];
	const char *name = pk_ops[r->op].name ? pk_ops[r->op].name : "opcode";
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

int pk_nomem(struct pk_reader *r)
{
	if (!r->arena->over_cap)
		return pk_bad(r, ZF_ENOMEM, "ran out of memory");
	switch (r->bound) {
	case PK_BOUND_INPUT:
		return pk_bad(r, ZF_EFORMAT,
			      "needs more than the %zu bytes of memory a pickle of %zu bytes may use (%zu per byte), more than any torch.save pickle needs",
			      r->budget, r->in.len,
			      r->lim.bytes_per_byte ? r->lim.bytes_per_byte :
						      (size_t)ZF_PICKLE_BYTES_PER_BYTE);
	case PK_BOUND_LIMITS:
		return pk_bad(r, ZF_ENOMEM,
			      "needs more than the %zu bytes max_bytes allows",
			      r->lim.max_bytes);
	case PK_BOUND_PROCESS:
	default:
		return pk_bad(r, ZF_ENOMEM,
			      "needs more than the %zu bytes left to it by the process-wide cap on pickle memory (%zu bytes, ZEROFS_PICKLE_MEMORY)",
			      r->budget, zf_pickle_memory_cap());
	}
}

/* ---- arguments -------------------------------------------------------- */

/* An opcode's argument, decoded as pk_ops[op] says. */
struct pk_arg {
	uint64_t n;		 /* UINT, SINT (as two's complement), lengths */
	double f;		 /* F64BE */
	const unsigned char *s;	 /* DATA, SDATA, LINE, LINE2 (the module) */
	size_t len;
	const unsigned char *s2; /* LINE2: the name */
	size_t len2;
};

static int truncated(struct pk_reader *r, const char *what, size_t need,
		     size_t left)
{
	return pk_bad(r, ZF_EFORMAT, "needs %zu bytes of %s, only %zu left",
		      need, what, left);
}

/* Reads the current opcode's argument; a byte string's payload must be in
 * the input (it is copied later, never trusted for its length). */
static int read_arg(struct pk_reader *r, struct pk_arg *a)
{
	const struct pk_opinfo *op = &pk_ops[r->op];
	struct zf_cursor *in = &r->in;
	size_t left = zf_cursor_left(in);

	switch (op->kind) {
	case PK_ARG_NONE:
		return 0;
	case PK_ARG_UINT:
	case PK_ARG_SINT:
	case PK_ARG_F64BE:
	case PK_ARG_DATA:
	case PK_ARG_SDATA:
		if (left < op->size)
			return truncated(r, op->what, op->size, left);
		switch (op->size) { /* constant widths: inlined reads */
		case 1: a->n = zf_cursor_u8(in); break;
		case 2: a->n = zf_cursor_u16(in); break;
		case 4: a->n = zf_cursor_u32(in); break;
		default:
			if (op->kind == PK_ARG_F64BE)
				a->f = zf_cursor_f64be(in);
			else
				a->n = zf_cursor_u64(in);
		}
		if (op->kind != PK_ARG_DATA && op->kind != PK_ARG_SDATA)
			return 0;
		if (op->kind == PK_ARG_SDATA && a->n > INT32_MAX)
			return pk_bad(r, ZF_EFORMAT, "with negative length");
		left = zf_cursor_left(in);
		if (a->n > left)
			return pk_bad(r, ZF_EFORMAT,
				      "of %llu bytes, but only %zu bytes are left",
				      (unsigned long long)a->n, left);
		a->len = (size_t)a->n;
		a->s = zf_cursor_bytes(in, a->len);
		return 0;
	case PK_ARG_LINE:
	case PK_ARG_LINE2:
		a->s = zf_cursor_until(in, '\n', &a->len);
		if (a->s && op->kind == PK_ARG_LINE2)
			a->s2 = zf_cursor_until(in, '\n', &a->len2);
		if (zf_cursor_failed(in))
			return pk_bad(r, ZF_EFORMAT, "argument has no end of line");
		return 0;
	}
	return pk_bad(r, ZF_EFORMAT, "has no argument decoder");
}

/* ---- the stacks ------------------------------------------------------ */

static int push(struct pk_reader *r, struct zf_pv *v)
{
	if (!v)
		return r->status;
	if (r->sp == r->stack_cap &&
	    pk_work_grow(r, &r->stack, &r->stack_cap, r->sp + 1,
			 sizeof(*r->stack), 256, false))
		return r->status;
	r->stack[r->sp++] = v;
	return 0;
}

static int underflow(struct pk_reader *r, size_t need)
{
	if (r->nmarks && r->sp - r->fence < need)
		return pk_bad(r, ZF_EFORMAT,
			      "needs %zu stack items after the last MARK, has %zu",
			      need, r->sp - r->fence);
	return pk_bad(r, ZF_EFORMAT, "needs %zu stack items, has %zu", need,
		      r->sp);
}

/* The top n items (above the fence), or NULL after recording an error. */
static struct zf_pv **top_n(struct pk_reader *r, size_t n)
{
	if (r->sp - r->fence < n) {
		underflow(r, n);
		return NULL;
	}
	return r->stack + r->sp - n;
}

static int pop(struct pk_reader *r, struct zf_pv **v)
{
	if (r->sp <= r->fence)
		return underflow(r, 1);
	*v = r->stack[--r->sp];
	return 0;
}

static int top(struct pk_reader *r, struct zf_pv **v)
{
	if (r->sp <= r->fence)
		return underflow(r, 1);
	*v = r->stack[r->sp - 1];
	return 0;
}

/* Removes the newest MARK; the items it covered are stack[*at, sp). */
static int pop_mark(struct pk_reader *r, size_t *at)
{
	if (!r->nmarks)
		return pk_bad(r, ZF_EFORMAT, "without a MARK");
	*at = r->marks[--r->nmarks];
	r->fence = r->nmarks ? r->marks[r->nmarks - 1] : 0;
	return 0;
}

static int push_mark(struct pk_reader *r)
{
	if (r->nmarks >= r->lim.max_depth)
		return pk_bad(r, ZF_EFORMAT, "opens more than %zu MARKs",
			      r->lim.max_depth);
	if (r->nmarks == r->marks_cap &&
	    pk_work_grow(r, &r->marks, &r->marks_cap, r->nmarks + 1,
			 sizeof(*r->marks), 64, false))
		return r->status;
	r->marks[r->nmarks++] = r->sp;
	r->fence = r->sp;
	return 0;
}

/* The value the newest MARK's items are added to: the item just below the
 * MARK, which must itself be above any older MARK. */
static int mark_target(struct pk_reader *r, size_t *at,
		       struct zf_pv **target)
{
	if (pop_mark(r, at))
		return r->status;
	if (*at <= r->fence)
		return pk_bad(r, ZF_EFORMAT,
			      "has nothing below its MARK to add to");
	*target = r->stack[*at - 1];
	return 0;
}

/* ---- the memo -------------------------------------------------------- */

static int memo_put(struct pk_reader *r, uint64_t idx)
{
	struct zf_pv *v = NULL;

	if (top(r, &v))
		return r->status;
	if (idx >= r->lim.max_memo)
		return pk_bad(r, ZF_EFORMAT,
			      "of memo index %llu, at most %zu allowed",
			      (unsigned long long)idx, r->lim.max_memo - 1);
	if (idx >= r->memo_cap &&
	    pk_work_grow(r, &r->memo, &r->memo_cap, (size_t)idx + 1,
			 sizeof(*r->memo), 256, true))
		return r->status;
	if (!r->memo[idx])
		r->memo_count++;
	r->memo[idx] = v;
	return 0;
}

static int memo_get(struct pk_reader *r, uint64_t idx)
{
	if (idx >= r->memo_cap || !r->memo[idx])
		return pk_bad(r, ZF_EFORMAT,
			      "of memo index %llu that was never stored",
			      (unsigned long long)idx);
	return push(r, r->memo[idx]);
}

/* ---- binary ints ------------------------------------------------------ */

/* LONG1 / LONG4 payload: little-endian two's complement. */
static struct zf_pv *long_bin(struct pk_reader *r, const unsigned char *p,
			      size_t n)
{
	uint64_t v;

	if (n > 8) {
		unsigned char ext = p[7] & 0x80 ? 0xff : 0;

		for (size_t i = 8; i < n; i++)
			if (p[i] != ext)
				return pk_big_int(r, p, n, ZF_PV_BYTES);
		n = 8;
	}
	v = zf_le(p, n);
	if (n && n < 8 && (p[n - 1] & 0x80))
		v |= ~(uint64_t)0 << (8 * n);
	return pk_new_int(r, (int64_t)v);
}

/* ---- container opcodes ------------------------------------------------ */

/* The list or dict an opaque object keeps APPEND / SETITEM items in. */
static struct zf_pv *object_items(struct pk_reader *r, struct zf_pv *obj,
				  enum zf_pv_type type)
{
	struct zf_pv *items = (struct zf_pv *)obj->u.obj.items;

	if (!items) {
		items = type == ZF_PV_DICT ? pk_new_dict(r) :
					     pk_new_seq(r, ZF_PV_LIST, NULL, 0);
		if (!items || pk_nest(r, obj, items))
			return NULL;
		obj->u.obj.items = items;
	} else if (items->type != type) {
		pk_bad(r, ZF_EFORMAT, "on an object that already holds %s items",
		       zf_pv_type_name(items));
		return NULL;
	}
	return items;
}

/* APPEND, APPENDS, ADDITEMS: n items at the stack top into target. */
static int add_items(struct pk_reader *r, struct zf_pv *target,
		     struct zf_pv *const *items, size_t n)
{
	enum zf_pv_type want = r->op == PK_ADDITEMS ? ZF_PV_SET : ZF_PV_LIST;

	if (zf_pv_is(target, ZF_PV_OBJECT)) {
		target = object_items(r, target, ZF_PV_LIST);
		if (!target)
			return r->status;
	} else if (target->type != want) {
		return pk_bad(r, ZF_EFORMAT, "to a %s, expected a %s",
			      zf_pv_type_name(target),
			      want == ZF_PV_SET ? "set" : "list");
	}
	if (pk_seq_reserve(r, &target->u.seq, n))
		return r->status;
	for (size_t i = 0; i < n; i++)
		if (pk_seq_add(r, target, items[i]))
			return r->status;
	return 0;
}

/* SETITEM, SETITEMS, DICT: n / 2 pairs at the stack top into target. */
static int set_items(struct pk_reader *r, struct zf_pv *target,
		     struct zf_pv *const *items, size_t n)
{
	if (n % 2)
		return pk_bad(r, ZF_EFORMAT,
			      "with an odd number (%zu) of items", n);
	if (zf_pv_is(target, ZF_PV_OBJECT)) {
		target = object_items(r, target, ZF_PV_DICT);
		if (!target)
			return r->status;
	} else if (target->type != ZF_PV_DICT) {
		return pk_bad(r, ZF_EFORMAT, "on a %s, expected a dict",
			      zf_pv_type_name(target));
	}
	if (pk_dict_reserve(r, &target->u.dict, n / 2))
		return r->status;
	for (size_t i = 0; i < n; i += 2)
		if (pk_dict_set(r, target, items[i], items[i + 1]))
			return r->status;
	return 0;
}

static int build(struct pk_reader *r, struct zf_pv *state)
{
	struct zf_pv *v = NULL;

	if (top(r, &v))
		return r->status;
	switch (v->type) {
	case ZF_PV_OBJECT:
		if (pk_nest(r, v, state))
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
		return pk_bad(r, ZF_EFORMAT, "on a %s, which has no state",
			      zf_pv_type_name(v));
	}
}

/* fn(stack[args_at], ..., stack[sp - 1]), replacing stack[at, sp). */
static int call_stack(struct pk_reader *r, struct zf_pv *fn, size_t args_at,
		      size_t at)
{
	struct zf_pv *args = pk_new_seq(r, ZF_PV_TUPLE, r->stack + args_at,
					r->sp - args_at);

	if (!args)
		return r->status;
	r->sp = at;
	return push(r, pk_call(r, fn, args));
}

/* A tuple of the items above the newest MARK, replacing them. */
static int seq_from_mark(struct pk_reader *r, enum zf_pv_type type)
{
	struct zf_pv *v;
	size_t at = 0;

	if (pop_mark(r, &at))
		return r->status;
	v = pk_new_seq(r, type, r->stack + at, r->sp - at);
	r->sp = at;
	return push(r, v);
}

/* ---- the loop -------------------------------------------------------- */

/* One opcode, its argument already read. Constructors return NULL on
 * failure, which push() passes on as r->status. */
static int step(struct pk_reader *r, const struct pk_arg *arg)
{
	struct zf_pv **t, *a = NULL, *v;
	size_t at = 0;

	switch ((enum pk_op)r->op) {
	case PK_PROTO:
		if (arg->n > 5)
			return pk_bad(r, ZF_EFORMAT, "%u, at most 5 is known",
				      (unsigned)arg->n);
		return 0;
	case PK_FRAME: /* framing only: the opcodes inside are read as usual */
		if (arg->n > zf_cursor_left(&r->in))
			return pk_bad(r, ZF_EFORMAT,
				      "of %llu bytes, but only %zu bytes are left",
				      (unsigned long long)arg->n,
				      zf_cursor_left(&r->in));
		return 0;
	case PK_MARK:
		return push_mark(r);
	case PK_POP: /* pops a MARK when one is on top, as CPython does */
		if (r->nmarks && r->marks[r->nmarks - 1] == r->sp)
			return pop_mark(r, &at);
		return pop(r, &a);
	case PK_POP_MARK:
		if (pop_mark(r, &at))
			return r->status;
		r->sp = at;
		return 0;
	case PK_DUP:
		if (top(r, &a))
			return r->status;
		return push(r, a);
	case PK_NONE:
		return push(r, r->none);
	case PK_NEWTRUE:
		return push(r, r->yes);
	case PK_NEWFALSE:
		return push(r, r->no);
	case PK_BININT:
		return push(r, pk_new_int(r, (int32_t)(uint32_t)arg->n));
	case PK_BININT1:
	case PK_BININT2:
		return push(r, pk_new_int(r, (int64_t)arg->n));
	case PK_LONG1:
	case PK_LONG4:
		return push(r, long_bin(r, arg->s, arg->len));
	case PK_INT:
	case PK_LONG:
		return push(r, pk_text_int(r, arg->s, arg->len, r->op == PK_LONG));
	case PK_FLOAT:
		return push(r, pk_text_float(r, arg->s, arg->len));
	case PK_BINFLOAT:
		return push(r, pk_new_float(r, arg->f));
	case PK_STRING:
		return push(r, pk_text_string(r, arg->s, arg->len));
	case PK_UNICODE:
		return push(r, pk_text_unicode(r, arg->s, arg->len));
	case PK_BINSTRING:
	case PK_SHORT_BINSTRING:
	case PK_BINUNICODE:
	case PK_SHORT_BINUNICODE:
	case PK_BINUNICODE8:
		return push(r, pk_new_str(r, ZF_PV_STR, arg->s, arg->len));
	case PK_BINBYTES:
	case PK_SHORT_BINBYTES:
	case PK_BINBYTES8:
	case PK_BYTEARRAY8:
		return push(r, pk_new_str(r, ZF_PV_BYTES, arg->s, arg->len));
	case PK_EMPTY_TUPLE:
		return push(r, r->empty_tuple);
	case PK_EMPTY_LIST:
		return push(r, pk_new_seq(r, ZF_PV_LIST, NULL, 0));
	case PK_EMPTY_DICT:
		return push(r, pk_new_dict(r));
	case PK_EMPTY_SET:
		return push(r, pk_new_seq(r, ZF_PV_SET, NULL, 0));
	case PK_TUPLE1:
	case PK_TUPLE2:
	case PK_TUPLE3: {
		size_t n = (size_t)(r->op - PK_TUPLE1 + 1);

		if (!(t = top_n(r, n)))
			return r->status;
		v = pk_new_seq(r, ZF_PV_TUPLE, t, n);
		r->sp -= n;
		return push(r, v);
	}
	case PK_TUPLE:
		return seq_from_mark(r, ZF_PV_TUPLE);
	case PK_LIST:
		return seq_from_mark(r, ZF_PV_LIST);
	case PK_FROZENSET:
		return seq_from_mark(r, ZF_PV_SET);
	case PK_DICT:
		if (pop_mark(r, &at))
			return r->status;
		v = pk_new_dict(r);
		if (!v || set_items(r, v, r->stack + at, r->sp - at))
			return r->status;
		r->sp = at;
		return push(r, v);
	case PK_APPEND:
		if (!(t = top_n(r, 2)) || add_items(r, t[0], t + 1, 1))
			return r->status;
		r->sp--;
		return 0;
	case PK_APPENDS:
	case PK_ADDITEMS:
		if (mark_target(r, &at, &a) ||
		    add_items(r, a, r->stack + at, r->sp - at))
			return r->status;
		r->sp = at;
		return 0;
	case PK_SETITEM:
		if (!(t = top_n(r, 3)) || set_items(r, t[0], t + 1, 2))
			return r->status;
		r->sp -= 2;
		return 0;
	case PK_SETITEMS:
		if (mark_target(r, &at, &a) ||
		    set_items(r, a, r->stack + at, r->sp - at))
			return r->status;
		r->sp = at;
		return 0;
	case PK_BINPUT:
	case PK_LONG_BINPUT:
		return memo_put(r, arg->n);
	case PK_BINGET:
	case PK_LONG_BINGET:
		return memo_get(r, arg->n);
	case PK_PUT:
	case PK_GET: {
		int64_t idx;

		if (pk_parse_dec(arg->s, arg->len, &idx) || idx < 0)
			return pk_bad(r, ZF_EFORMAT, "with a bad memo index");
		return r->op == PK_PUT ? memo_put(r, (uint64_t)idx) :
					 memo_get(r, (uint64_t)idx);
	}
	case PK_MEMOIZE:
		return memo_put(r, r->memo_count);
	case PK_GLOBAL:
		if (!arg->len || !arg->len2)
			return pk_bad(r, ZF_EFORMAT,
				      "with an empty module or name");
		return push(r, pk_new_global(r, arg->s, arg->len, arg->s2,
					     arg->len2));
	case PK_STACK_GLOBAL:
		if (!(t = top_n(r, 2)))
			return r->status;
		if (!zf_pv_is(t[0], ZF_PV_STR) || !zf_pv_is(t[1], ZF_PV_STR))
			return pk_bad(r, ZF_EFORMAT,
				      "of a %s and a %s, expected strs",
				      zf_pv_type_name(t[0]),
				      zf_pv_type_name(t[1]));
		r->sp -= 2;
		return push(r, pk_new_global(r, t[0]->u.str.s, t[0]->u.str.len,
					     t[1]->u.str.s, t[1]->u.str.len));
	case PK_REDUCE:
	case PK_NEWOBJ:
		if (!(t = top_n(r, 2)))
			return r->status;
		if (!zf_pv_is(t[1], ZF_PV_TUPLE))
			return pk_bad(r, ZF_EFORMAT,
				      "with a %s as arguments, expected a tuple",
				      zf_pv_type_name(t[1]));
		r->sp -= 2;
		return push(r, pk_call(r, t[0], t[1]));
	case PK_NEWOBJ_EX: /* keyword arguments are dropped */
		if (!(t = top_n(r, 3)))
			return r->status;
		if (!zf_pv_is(t[1], ZF_PV_TUPLE) || !zf_pv_is(t[2], ZF_PV_DICT))
			return pk_bad(r, ZF_EFORMAT,
				      "with a %s and a %s, expected a tuple and a dict",
				      zf_pv_type_name(t[1]),
				      zf_pv_type_name(t[2]));
		r->sp -= 3;
		return push(r, pk_call(r, t[0], t[1]));
	case PK_INST:
		if (!arg->len || !arg->len2)
			return pk_bad(r, ZF_EFORMAT,
				      "with an empty module or name");
		a = pk_new_global(r, arg->s, arg->len, arg->s2, arg->len2);
		if (!a || pop_mark(r, &at))
			return r->status;
		return call_stack(r, a, at, at);
	case PK_OBJ:
		if (pop_mark(r, &at))
			return r->status;
		if (at == r->sp)
			return pk_bad(r, ZF_EFORMAT,
				      "without a class after its MARK");
		return call_stack(r, r->stack[at], at + 1, at);
	case PK_BUILD:
		if (pop(r, &a))
			return r->status;
		return build(r, a);
	case PK_BINPERSID:
		if (pop(r, &a))
			return r->status;
		return push(r, pk_persistent_load(r, a));
	case PK_PERSID:
		return pk_bad(r, ZF_EFORMAT,
			      "of the text id '%.*s', torch writes tuples with BINPERSID",
			      (int)(arg->len > 40 ? 40 : arg->len),
			      (const char *)arg->s);
	case PK_EXT1:
	case PK_EXT2:
	case PK_EXT4:
		return pk_bad(r, ZF_EFORMAT,
			      "refers to the copyreg extension registry, which zerofs does not have");
	case PK_NEXT_BUFFER:
	case PK_READONLY_BUFFER:
		return pk_bad(r, ZF_EFORMAT,
			      "refers to an out-of-band buffer, which torch.save never writes");
	case PK_STOP: /* handled by run() */
		break;
	}
	return pk_bad(r, ZF_EFORMAT, "0x%02x is unknown", r->op);
}

/* Runs opcodes up to STOP; *root gets the value it returns. */
static int run(struct pk_reader *r, const struct zf_pv **root)
{
	/* Allocated up front: r->stack + at must never be NULL + 0. */
	if (pk_work_grow(r, &r->stack, &r->stack_cap, 256, sizeof(*r->stack),
			 256, false))
		return r->status;
	r->none = pk_new(r, ZF_PV_NONE);
	r->yes = pk_new(r, ZF_PV_BOOL);
	r->no = pk_new(r, ZF_PV_BOOL);
	r->empty_tuple = pk_new_seq(r, ZF_PV_TUPLE, NULL, 0);
	if (!r->none || !r->yes || !r->no || !r->empty_tuple)
		return r->status;
	r->yes->u.b = true;
	while (zf_cursor_left(&r->in)) {
		struct pk_arg arg = { 0 };

		r->op_pos = r->in.pos;
		r->op = zf_cursor_u8(&r->in);
		if (r->op == PK_STOP) {
			if (r->nmarks)
				return pk_bad(r, ZF_EFORMAT,
					      "with %zu MARKs still open",
					      r->nmarks);
			if (r->sp != 1)
				return pk_bad(r, ZF_EFORMAT,
					      "with %zu items on the stack, expected 1",
					      r->sp);
			*root = r->stack[0];
			return pk_fold_duplicates(r);
		}
		if (!pk_ops[r->op].name)
			return pk_bad(r, ZF_EFORMAT, "0x%02x is unknown", r->op);
		if (read_arg(r, &arg) || step(r, &arg))
			return r->status;
	}
	return zf_fail(r->err, ZF_EFORMAT,
		       "pickle: input ends at byte %zu without STOP", r->in.len);
}

static void reader_release(struct pk_reader *r)
{
	pk_work_free(r->stack, r->stack_cap * sizeof(*r->stack));
	pk_work_free(r->marks, r->marks_cap * sizeof(*r->marks));
	pk_work_free(r->memo, r->memo_cap * sizeof(*r->memo));
	pk_work_free(r->dicts, r->dicts_cap * sizeof(*r->dicts));
	pk_storages_release(r);
	r->stack = NULL;
	r->marks = NULL;
	r->memo = NULL;
	r->dicts = NULL;
	r->work = 0;
}

/* ---- entry points ------------------------------------------------------ */

int zf_pickle_load_prefix(const void *data, size_t len,
			  const struct zf_pickle_limits *limits, size_t *end,
			  struct zf_pickle **out, struct zf_error *err)
{
	struct pk_reader r = { 0 };
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
	p = calloc(1, sizeof(*p));
	if (!p)
		return zf_fail(err, ZF_ENOMEM, "pickle: out of memory");
	zf_arena_init(&p->arena, 0);
	r.in = zf_cursor_make(data, len);
	r.arena = &p->arena;
	r.err = err;
	pk_mem_begin(&r, len);
	rc = run(&r, &root);
	if (!rc)
		rc = pk_storages_finish(&r, p);
	if (r.arena->total + r.work > r.peak)
		r.peak = r.arena->total + r.work;
	reader_release(&r);
	if (rc) {
		pk_mem_end(&r, 0);
		zf_arena_release(&p->arena);
		free(p);
		return rc;
	}
	p->held = p->arena.total;
	p->peak = r.peak;
	pk_mem_end(&r, p->held);
	p->root = root;
	if (end)
		*end = r.in.pos;
	*out = p;
	return ZF_OK;
}

int zf_pickle_load(const void *data, size_t len,
		   const struct zf_pickle_limits *limits,
		   struct zf_pickle **out, struct zf_error *err)
{
	return zf_pickle_load_prefix(data, len, limits, NULL, out, err);
}

const struct zf_pv *zf_pickle_root(const struct zf_pickle *p)
{
	return p ? p->root : NULL;
}

const struct zf_pv *const *zf_pickle_storages(const struct zf_pickle *p,
					      size_t *n)
{
	*n = p ? p->nstorages : 0;
	return p ? p->storages : NULL;
}

size_t zf_pickle_bytes(const struct zf_pickle *p, size_t *peak)
{
	if (peak)
		*peak = p ? p->peak : 0;
	return p ? p->held : 0;
}

void zf_pickle_free(struct zf_pickle *p)
{
	if (!p)
		return;
	zf_arena_release(&p->arena);
	pk_mem_release(p->held);
	free(p);
}

/* ---- scanning --------------------------------------------------------- */

int zf_pickle_scan(struct zf_pickle_scan *s, const void *data, size_t len,
		   uint64_t base, uint64_t limit, struct zf_error *err)
{
	const unsigned char *d = data;

	if (s->done)
		return ZF_OK;
	if (base > limit || len > limit - base || s->pos < base ||
	    s->pos - base > len)
		return zf_fail(err, ZF_EUSAGE,
			       "pickle: scan window does not hold byte %llu",
			       (unsigned long long)s->pos);
	for (;;) {
		size_t at = (size_t)(s->pos - base);
		struct zf_cursor c = zf_cursor_make(d + at, len - at);
		const struct pk_opinfo *op;
		unsigned char code;
		uint64_t n = 0;
		size_t ln;

		if (!zf_cursor_left(&c))
			break;
		code = zf_cursor_u8(&c);
		op = &pk_ops[code];
		if (!op->name)
			return zf_fail(err, ZF_EFORMAT,
				       "pickle: opcode 0x%02x is unknown (at byte %llu)",
				       code, (unsigned long long)s->pos);
		switch (op->kind) {
		case PK_ARG_NONE:
			break;
		case PK_ARG_UINT:
		case PK_ARG_SINT:
		case PK_ARG_F64BE:
			n = zf_cursor_le(&c, op->size);
			if (code == PK_PROTO && !c.failed && n > 5)
				return zf_fail(err, ZF_EFORMAT,
					       "pickle: PROTO %u, at most 5 is known (at byte %llu)",
					       (unsigned)n, (unsigned long long)s->pos);
			break;
		case PK_ARG_DATA:
		case PK_ARG_SDATA:
			n = zf_cursor_le(&c, op->size);
			if (c.failed)
				break;
			if (op->kind == PK_ARG_SDATA && n > INT32_MAX)
				return zf_fail(err, ZF_EFORMAT,
					       "pickle: %s with negative length (at byte %llu)",
					       op->name, (unsigned long long)s->pos);
			/* The payload need not be in the window. */
			if (n > limit - s->pos - c.pos)
				return zf_fail(err, ZF_EFORMAT,
					       "pickle: %s of %llu bytes, but only %llu bytes are left (at byte %llu)",
					       op->name, (unsigned long long)n,
					       (unsigned long long)(limit - s->pos - c.pos),
					       (unsigned long long)s->pos);
			s->pos += c.pos + n;
			if (s->pos - base > len)
				return ZF_OK; /* continue at s->pos */
			continue;
		case PK_ARG_LINE:
		case PK_ARG_LINE2:
			zf_cursor_until(&c, '\n', &ln);
			if (op->kind == PK_ARG_LINE2)
				zf_cursor_until(&c, '\n', &ln);
			break;
		}
		if (c.failed)
			break;
		s->pos += c.pos;
		if (code == PK_STOP) {
			s->done = true;
			return ZF_OK;
		}
	}
	/* The opcode at s->pos does not end inside the window. */
	if (base + len == limit)
		return zf_fail(err, ZF_EFORMAT,
			       "pickle: input ends at byte %llu without STOP",
			       (unsigned long long)limit);
	return ZF_OK;
}
