/* SPDX-License-Identifier: MIT */
/*
 * Building pickles byte by byte for the pickle tests (test_pickle.c,
 * test_pickle_mem.c): a growing buffer, opcode argument encoders, and a
 * state_dict shaped as torch.save writes one.
 */
#ifndef ZEROFS_TESTS_PICKLE_BUILD_H
#define ZEROFS_TESTS_PICKLE_BUILD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A literal and its length without the terminating NUL. */
#define LIT(s) (s), (sizeof(s) - 1)

struct bb {
	unsigned char *p;
	size_t n, cap;
};

static inline void bb_put(struct bb *b, const void *s, size_t n)
{
	if (b->cap - b->n < n) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap - b->n < n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			abort();
		b->cap = cap;
	}
	if (n) /* s may be NULL then */
		memcpy(b->p + b->n, s, n);
	b->n += n;
}

static inline void bb_s(struct bb *b, const char *s)
{
	bb_put(b, s, strlen(s));
}

static inline void bb_u8(struct bb *b, unsigned v)
{
	unsigned char c = (unsigned char)v;

	bb_put(b, &c, 1);
}

static inline void bb_le(struct bb *b, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bb_u8(b, (unsigned)(v >> (8 * i)) & 0xff);
}

/* A literal, NULs included. */
#define bb_lit(b, s) bb_put((b), (s), sizeof(s) - 1)

static inline void bb_rep(struct bb *b, const char *s, size_t times)
{
	for (size_t i = 0; i < times; i++)
		bb_s(b, s);
}

/* BINUNICODE of a C string. */
static inline void bb_str(struct bb *b, const char *s)
{
	bb_u8(b, 'X');
	bb_le(b, strlen(s), 4);
	bb_s(b, s);
}

static inline void bb_free(struct bb *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* A state_dict of n tensors as torch.save writes it, about 150 bytes each. */
static inline void big_state_dict(struct bb *b, size_t n)
{
	char name[64];

	bb_lit(b, "\x80\x02}q\x00(X\x06\0\0\0module" "ccollections\nOrderedDict\n"
		"q\x01)Rq\x02(");
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "model.layers.%zu.mlp.weight", i);
		bb_str(b, name);
		bb_s(b, "r");
		bb_le(b, 10 + 10 * i, 4);
		if (i == 0) {
			bb_s(b, "ctorch._utils\n_rebuild_tensor_v2\nq\x03((");
			bb_str(b, "storage");
			bb_s(b, "q\x04" "ctorch\nBFloat16Storage\nq\x05");
		} else {
			bb_s(b, "h\x03((h\x04h\x05");
		}
		snprintf(name, sizeof(name), "%zu", i);
		bb_str(b, name);
		if (i == 0)
			bb_lit(b, "X\x03\0\0\0cpuq\x06");
		else
			bb_s(b, "h\x06");
		bb_lit(b, "J\0\0\x01\0tQK\0M\0\x01M\0\x01\x86M\0\x01K\x01"
			"\x86\x89h\x01)RtR");
		bb_s(b, "r");
		bb_le(b, 10 + 10 * i + 1, 4);
		if (i % 1000 == 999)
			bb_s(b, "u(");
	}
	bb_s(b, "uu.");
}


/* The memo index after each object, as Python's pickler writes it:
 * BINPUT below 256, LONG_BINPUT from there on. */
static inline void bb_put_memo(struct bb *b, unsigned *memo)
{
	if (*memo < 256) {
		bb_u8(b, 'q');
		bb_u8(b, *memo);
	} else {
		bb_u8(b, 'r');
		bb_le(b, *memo, 4);
	}
	(*memo)++;
}

/*
 * A state_dict of n 2-D bf16 tensors byte for byte as torch.save writes it
 * (protocol 2, every object memoized, the shapes torch gives):
 * {"module": OrderedDict(name -> tensor)}, about 250 bytes a tensor, as
 * in a DeepSpeed model states file.
 */
static inline void torch_state_dict(struct bb *b, size_t n)
{
	unsigned memo = 0;
	char name[64];

	bb_lit(b, "\x80\x02}");
	bb_put_memo(b, &memo); /* 0: the dict */
	bb_s(b, "(");
	bb_str(b, "module");
	bb_put_memo(b, &memo); /* 1 */
	bb_s(b, "ccollections\nOrderedDict\n");
	bb_put_memo(b, &memo); /* 2 */
	bb_s(b, ")R");
	bb_put_memo(b, &memo); /* 3 */
	bb_s(b, "(");
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "model.layers.%zu.self_attn.q_proj.weight", i);
		bb_str(b, name);
		bb_put_memo(b, &memo);
		if (i == 0) {
			bb_s(b, "ctorch._utils\n_rebuild_tensor_v2\n");
			bb_put_memo(b, &memo); /* 5 */
			bb_s(b, "((");
			bb_str(b, "storage");
			bb_put_memo(b, &memo); /* 6 */
			bb_s(b, "ctorch\nBFloat16Storage\n");
			bb_put_memo(b, &memo); /* 7 */
		} else {
			bb_s(b, "h\x05((h\x06h\x07");
		}
		snprintf(name, sizeof(name), "%zu", i);
		bb_str(b, name);
		bb_put_memo(b, &memo);
		if (i == 0) {
			bb_str(b, "cpu");
			bb_put_memo(b, &memo); /* 9 */
		} else {
			bb_s(b, "h\x09");
		}
		bb_lit(b, "J\0\x00\x01\0t"); /* numel 65536 */
		bb_put_memo(b, &memo);
		bb_lit(b, "QK\0M\0\x01M\0\x01\x86");
		bb_put_memo(b, &memo);
		bb_lit(b, "M\0\x01K\x01\x86");
		bb_put_memo(b, &memo);
		bb_lit(b, "\x89h\x02)R");
		bb_put_memo(b, &memo);
		bb_s(b, "t");
		bb_put_memo(b, &memo);
		bb_s(b, "R");
		bb_put_memo(b, &memo);
		if (i % 1000 == 999)
			bb_s(b, "u(");
	}
	bb_s(b, "uu.");
}

#endif /* ZEROFS_TESTS_PICKLE_BUILD_H */
