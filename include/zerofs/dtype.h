/* SPDX-License-Identifier: MIT */
/**
 * @file dtype.h
 * Element types zerofs meets in torch storages and writes to safetensors.
 */
#ifndef ZEROFS_DTYPE_H
#define ZEROFS_DTYPE_H

#include <stdbool.h>
#include <stddef.h>

enum zf_dtype {
	ZF_DT_INVALID = 0,
	ZF_DT_F32,
	ZF_DT_F16,
	ZF_DT_BF16,
	ZF_DT_F64,
	ZF_DT_I64,
	ZF_DT_I32,
	ZF_DT_I16,
	ZF_DT_I8,
	ZF_DT_U8,
	ZF_DT_BOOL,
	ZF_DT_COUNT
};

/* Bytes per element; 0 for ZF_DT_INVALID. */
size_t zf_dtype_size(enum zf_dtype dt);

/* True for F32, F16, BF16 and F64: the types a --dtype choice converts. */
bool zf_dtype_is_float(enum zf_dtype dt);

/* safetensors' name ("F32", "BF16", "I64", ...); "?" for an invalid type. */
const char *zf_dtype_st_name(enum zf_dtype dt);

/* torch's name ("float32", "bfloat16", "int64", ...), as config.json's
 * torch_dtype spells it; "?" for an invalid type. */
const char *zf_dtype_torch_name(enum zf_dtype dt);

/*
 * Position in safetensors' Dtype enum declaration. save_file() writes
 * tensors in descending rank order, then by name
 * (man/zerofs-safetensors.5, "Tensor order").
 */
int zf_dtype_st_rank(enum zf_dtype dt);

/*
 * The dtype a torch storage class stands for ("FloatStorage" -> F32,
 * "BFloat16Storage" -> BF16, ...); ZF_DT_INVALID when unknown.
 */
enum zf_dtype zf_dtype_from_storage(const char *class_name);

/* Parses "fp32"/"float32"/"f32", "bf16"/"bfloat16", "fp16"/"float16"/"half";
 * ZF_DT_INVALID otherwise. */
enum zf_dtype zf_dtype_parse(const char *s);

#endif /* ZEROFS_DTYPE_H */
