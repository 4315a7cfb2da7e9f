/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the pickle reader: the input is a pickle. The tree
 * it builds is walked to a bounded depth and size (it is a DAG and may hold
 * cycles), touching every value, then freed. tests/unit/test_fuzz_replay.c
 * includes this file with ZF_FUZZ_ENTRY renamed to replay inputs.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "zerofs/pickle.h"

#ifndef ZF_FUZZ_ENTRY
#define ZF_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int ZF_FUZZ_ENTRY(const uint8_t *data, size_t size);

/* Visits v and what it holds; *budget caps visits of a shared DAG. */
static uint64_t pickle_walk(const struct zf_pv *v, int depth, long *budget)
{
	uint64_t h = 0;
	size_t i;

	if (!v || depth > 64 || --*budget < 0)
		return 0;
	h = (uint64_t)v->type + strlen(zf_pv_type_name(v));
	switch (v->type) {
	case ZF_PV_STR: case ZF_PV_BYTES:
		for (i = 0; i < v->u.str.len; i++)
			h = h * 31 + (unsigned char)v->u.str.s[i];
		return h + (unsigned char)v->u.str.s[v->u.str.len];
	case ZF_PV_TUPLE: case ZF_PV_LIST: case ZF_PV_SET:
		for (i = 0; i < v->u.seq.n; i++)
			h += pickle_walk(v->u.seq.items[i], depth + 1, budget);
		return h;
	case ZF_PV_DICT:
		for (i = 0; i < v->u.dict.n; i++)
			h += pickle_walk(v->u.dict.keys[i], depth + 1, budget) +
			     pickle_walk(v->u.dict.vals[i], depth + 1, budget);
		return h + (zf_pv_get(v, "state") != NULL) + (zf_pv_get_int(v, 0) != NULL);
	case ZF_PV_GLOBAL:
		return h + strlen(v->u.global.module) + strlen(v->u.global.name);
	case ZF_PV_TENSOR:
		for (i = 0; i < v->u.tensor.ndim; i++)
			h += (uint64_t)(v->u.tensor.size[i] ^ v->u.tensor.stride[i]);
		return h + pickle_walk(v->u.tensor.storage, depth + 1, budget);
	case ZF_PV_STORAGE:
		return h + strlen(v->u.storage.class_name) + strlen(v->u.storage.key) +
		       strlen(v->u.storage.location) + (uint64_t)v->u.storage.numel;
	case ZF_PV_ENUM:
		return h + strlen(v->u.enm.cls_module) + strlen(v->u.enm.cls_name) +
		       (v->u.enm.member ? strlen(v->u.enm.member) : (uint64_t)v->u.enm.value);
	case ZF_PV_OBJECT:
		return h + strlen(v->u.obj.module) + strlen(v->u.obj.name) +
		       pickle_walk(v->u.obj.args, depth + 1, budget) +
		       pickle_walk(v->u.obj.state, depth + 1, budget) +
		       pickle_walk(v->u.obj.items, depth + 1, budget);
	case ZF_PV_BOOL:
		return h + v->u.b;
	case ZF_PV_INT:
		return h + (uint64_t)v->u.i;
	case ZF_PV_FLOAT:
		return h + (v->u.f != v->u.f);
	default:
		return h;
	}
}

int ZF_FUZZ_ENTRY(const uint8_t *data, size_t size)
{
	struct zf_pickle *p = NULL;
	struct zf_error err = { 0 };
	long budget = 1000000;
	volatile uint64_t sink;

	if (zf_pickle_load(data, size, NULL, &p, &err) == ZF_OK)
		sink = pickle_walk(zf_pickle_root(p), 0, &budget);
	(void)sink;
	zf_pickle_free(p);
	return 0;
}
