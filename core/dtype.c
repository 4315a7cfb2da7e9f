/* SPDX-License-Identifier: MIT */
/*
 * One table of facts per element type: size, safetensors and torch names,
 * and the position in safetensors' Dtype enum, which decides the order of
 * tensors in a file: save_file() writes the highest position first
 * (man/zerofs-safetensors.5, "Tensor order", lists the whole enum; the
 * ranks below are those positions, gaps being dtypes zerofs never serves).
 */
#include "zerofs/dtype.h"

#include <string.h>
#include <strings.h>

struct dtype_info {
	size_t size;
	const char *st_name;
	const char *torch_name;
	int st_rank;
	const char *storage;
};

static const struct dtype_info dtypes[ZF_DT_COUNT] = {
	[ZF_DT_INVALID] = { 0, "?", "?", -1, NULL },
	[ZF_DT_BOOL] = { 1, "BOOL", "bool", 0, "BoolStorage" },
	[ZF_DT_U8] = { 1, "U8", "uint8", 4, "ByteStorage" },
	[ZF_DT_I8] = { 1, "I8", "int8", 5, "CharStorage" },
	[ZF_DT_I16] = { 2, "I16", "int16", 11, "ShortStorage" },
	[ZF_DT_F16] = { 2, "F16", "float16", 13, "HalfStorage" },
	[ZF_DT_BF16] = { 2, "BF16", "bfloat16", 14, "BFloat16Storage" },
	[ZF_DT_I32] = { 4, "I32", "int32", 15, "IntStorage" },
	[ZF_DT_F32] = { 4, "F32", "float32", 17, "FloatStorage" },
	[ZF_DT_F64] = { 8, "F64", "float64", 19, "DoubleStorage" },
	[ZF_DT_I64] = { 8, "I64", "int64", 20, "LongStorage" },
};

static const struct dtype_info *info(enum zf_dtype dt)
{
	if ((unsigned)dt >= ZF_DT_COUNT)
		dt = ZF_DT_INVALID;
	return &dtypes[dt];
}

size_t zf_dtype_size(enum zf_dtype dt)
{
	return info(dt)->size;
}

bool zf_dtype_is_float(enum zf_dtype dt)
{
	return dt == ZF_DT_F32 || dt == ZF_DT_F16 || dt == ZF_DT_BF16 ||
	       dt == ZF_DT_F64;
}

const char *zf_dtype_st_name(enum zf_dtype dt)
{
	return info(dt)->st_name;
}

const char *zf_dtype_torch_name(enum zf_dtype dt)
{
	return info(dt)->torch_name;
}

int zf_dtype_st_rank(enum zf_dtype dt)
{
	return info(dt)->st_rank;
}

enum zf_dtype zf_dtype_from_storage(const char *class_name)
{
	for (int i = 1; i < ZF_DT_COUNT; i++)
		if (dtypes[i].storage && !strcmp(dtypes[i].storage, class_name))
			return (enum zf_dtype)i;
	return ZF_DT_INVALID;
}

enum zf_dtype zf_dtype_parse(const char *s)
{
	static const struct {
		const char *name;
		enum zf_dtype dt;
	} names[] = {
		{ "fp32", ZF_DT_F32 },	   { "float32", ZF_DT_F32 },
		{ "f32", ZF_DT_F32 },	   { "float", ZF_DT_F32 },
		{ "bf16", ZF_DT_BF16 },	   { "bfloat16", ZF_DT_BF16 },
		{ "fp16", ZF_DT_F16 },	   { "float16", ZF_DT_F16 },
		{ "f16", ZF_DT_F16 },	   { "half", ZF_DT_F16 },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcasecmp(s, names[i].name))
			return names[i].dt;
	return ZF_DT_INVALID;
}
