# SPDX-License-Identifier: MIT
"""An independent reference for what zerofs must write, built from the
rules (man/zerofs-safetensors.5, SAFETENSORS FILES and SHARDS; safetensors
tensor.rs, serde_json, huggingface_hub _base.py, transformers
save_pretrained), not from zerofs.

    header_bytes(tensors, metadata) -> (bytes, {name: (begin, end)})
        tensors: list of (name: str, dtype: str, shape: list[int])
        metadata: dict[str, str] with at most one key, or None
        The bytes are the 8-byte little-endian length, the compact JSON
        and its space padding: everything before the tensor data.
    plan_shards(sizes, limit) -> list of shard numbers (0-based), one per
        tensor in the given order
    shard_name(k, n) -> file name of shard k (0-based) of n
    index_json(weight_map, total_size) -> str, model.safetensors.index.json

Raises ValueError where safetensors/zerofs refuse (duplicate names, a
header over 100 MB).
"""
import json
import struct

# safetensors' Dtype enum in declaration order; save_file() writes
# descending position, then ascending name.
DTYPE_ORDER = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2",
               "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16",
               "U16", "F16", "BF16", "I32", "U32", "F32", "C64", "F64",
               "I64", "U64"]
DTYPE_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2,
              "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8,
              "U64": 8, "C64": 8}
MAX_HEADER_SIZE = 100_000_000

_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
          "\r": "\\r", "\t": "\\t"}


def serde_string(s):
    """A JSON string as serde_json's compact writer spells it."""
    out = ['"']
    for ch in s:
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def nbytes(dtype, shape):
    n = 1
    for d in shape:
        n *= d
    return n * DTYPE_SIZE[dtype]


def header_bytes(tensors, metadata):
    names = [t[0] for t in tensors]
    if len(set(names)) != len(names):
        raise ValueError("duplicate tensor name")
    order = sorted(tensors,
                   key=lambda t: (-DTYPE_ORDER.index(t[1]), t[0]))
    parts = []
    if metadata is not None:
        parts.append(serde_string("__metadata__") + ":{" + ",".join(
            serde_string(k) + ":" + serde_string(v)
            for k, v in metadata.items()) + "}")
    offsets = {}
    pos = 0
    for name, dtype, shape in order:
        end = pos + nbytes(dtype, shape)
        offsets[name] = (pos, end)
        parts.append('%s:{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}'
                     % (serde_string(name), dtype,
                        ",".join(str(d) for d in shape), pos, end))
        pos = end
    js = ("{" + ",".join(parts) + "}").encode("utf-8")
    js += b" " * (-len(js) % 8)
    if len(js) > MAX_HEADER_SIZE:
        raise ValueError("header too large")
    return struct.pack("<Q", len(js)) + js, offsets


def plan_shards(sizes, limit):
    """huggingface_hub split_state_dict_into_shards_factory, by index."""
    shard_list = []
    current = []
    current_size = 0
    for i, size in enumerate(sizes):
        if size > limit:
            shard_list.append([i])
            continue
        if current_size + size > limit:
            shard_list.append(current)
            current = []
            current_size = 0
        current.append(i)
        current_size += size
    if current:
        shard_list.append(current)
    shard_of = [None] * len(sizes)
    for k, members in enumerate(shard_list):
        for i in members:
            shard_of[i] = k
    return shard_of


def shard_name(k, n):
    if n <= 1:
        return "model.safetensors"
    return "model{suffix}.safetensors".format(
        suffix=f"-{k + 1:05d}-of-{n:05d}")


def index_json(weight_map, total_size):
    index = {"metadata": {"total_size": total_size},
             "weight_map": weight_map}
    return json.dumps(index, indent=2, sort_keys=True) + "\n"
