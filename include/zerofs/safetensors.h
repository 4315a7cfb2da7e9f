/* SPDX-License-Identifier: MIT */
/**
 * @file safetensors.h
 * What safetensors.torch.save_file(tensors, metadata={"format": "pt"})
 * writes, computed without the data: the header bytes and where each
 * tensor's data goes. man/zerofs-safetensors.5 ("Header", "Tensor
 * order", SHARDS) describes these bytes.
 *
 * Order on disk: descending safetensors dtype rank, then ascending name
 * (byte order); tensors back to back from offset 0; compact JSON with
 * "__metadata__" first; header padded with spaces to a multiple of 8; the
 * 8-byte little-endian length prefix includes the padding.
 */
#ifndef ZEROFS_SAFETENSORS_H
#define ZEROFS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "zerofs/dtype.h"
#include "zerofs/error.h"

/* safetensors refuses headers larger than this (MAX_HEADER_SIZE). */
#define ZF_ST_MAX_HEADER 100000000u

struct zf_st_tensor {
	const char *name; /* UTF-8, borrowed */
	enum zf_dtype dtype;
	uint32_t ndim;
	const uint64_t *shape; /* ndim entries, borrowed */
	uint64_t nbytes;       /* numel * element size */
};

/*
 * Lays out one file. On success *header is a malloc'd buffer of
 * *header_len bytes (the 8-byte prefix, the JSON and its padding; the
 * caller frees it), and data_offset[i] is where tensor i's data starts,
 * counted from the start of the file (so header_len + its data_offsets[0]).
 * *file_size is the whole file's size. Tensors are given in any order.
 * metadata_format is the value of __metadata__.format ("pt"), or NULL for
 * no __metadata__. Errors: ZF_EFORMAT for a duplicate name, a header over
 * ZF_ST_MAX_HEADER, or a tensor no reader could take back (name not valid
 * UTF-8 or "__metadata__", invalid dtype, nbytes != numel * element size,
 * offsets overflowing u64); ZF_ENOMEM. On error *header is NULL.
 */
int zf_st_layout(const struct zf_st_tensor *tensors, size_t n,
		 const char *metadata_format, unsigned char **header,
		 size_t *header_len, uint64_t *data_offset, uint64_t *file_size,
		 struct zf_error *err);

/*
 * huggingface_hub's split_torch_state_dict_into_shards(): greedy over the
 * tensors in the given (state_dict) order, limit in bytes, a tensor larger
 * than the limit in a shard of its own (numbered before the shard open
 * when it came), "current + size > limit" closes a shard. Writes each
 * tensor's shard number (0-based) into shard_of and returns the number of
 * shards in *n_shards (0 for no tensors, else >= 1).
 */
void zf_st_plan_shards(const uint64_t *nbytes, size_t n, uint64_t limit,
		       uint32_t *shard_of, uint32_t *n_shards);

/*
 * "model.safetensors" when n_shards <= 1, else
 * "model-%05u-of-%05u.safetensors" with k counted from 1: k is the shard
 * number as printed, i.e. shard_of[i] + 1. Writes into buf (at least 40
 * bytes).
 */
void zf_st_shard_name(uint32_t k, uint32_t n_shards, char *buf, size_t size);

/*
 * model.safetensors.index.json exactly as transformers' save_pretrained
 * writes it: json.dumps({"metadata": {"total_size": total_size},
 * "weight_map": {name: file}}, indent=2, sort_keys=True) + "\n", with
 * ensure_ascii (non-ASCII as \uXXXX, surrogate pairs above U+FFFF).
 * names[i] is stored in the file zf_st_shard_name(shard_of[i] + 1,
 * n_shards) names. *out is malloc'd and NUL-terminated (*out_len does not
 * count the NUL), caller frees. With n == 0 the weight_map is {}.
 * Errors: ZF_ENOMEM, ZF_EFORMAT (name not valid UTF-8, duplicate name),
 * ZF_EUSAGE (shard_of[i] >= n_shards).
 */
int zf_st_index_json(const char *const *names, const uint32_t *shard_of,
		     size_t n, uint32_t n_shards, uint64_t total_size,
		     char **out, size_t *out_len, struct zf_error *err);

/*
 * Parses a shard size exactly as transformers' save_pretrained does
 * (convert_file_size_to_int in transformers/utils/hub.py): an integer
 * followed by GiB, MiB or KiB (binary) or GB, MB or KB (decimal), the
 * unit case-blind, except that a lowercase final 'b' counts bits ("5gb"
 * and "5Gb" are 625000000 bytes, "5GB" and "5gB" 5000000000); the number
 * is what Python's int() takes (whitespace around it, a sign, "1_000").
 * transformers takes a plain int as bytes: so does a bare integer here.
 * Not taken, as transformers takes none of them: decimals ("1.5GB"), TB,
 * a bare "B". Also refused: sizes below 1 byte, sizes over 64 bits, and
 * non-ASCII digits or spaces (which int() would take).
 * Returns 0 and sets *bytes, or ZF_EUSAGE with a message.
 */
int zf_parse_size(const char *s, uint64_t *bytes, struct zf_error *err);

#endif /* ZEROFS_SAFETENSORS_H */
