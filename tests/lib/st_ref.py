"""A small reference safetensors writer, from man/zerofs-safetensors.5,
"Header" and "Tensor order" (what safetensors.torch.save_file(d, path,
metadata={"format": "pt"}) writes),
used to build the expected bytes of a served file independently of zerofs.

    file_bytes([(name, st_dtype, shape, data_bytes)], metadata) -> bytes
    header_bytes([(name, st_dtype, shape, nbytes)], metadata)   -> bytes
        (8-byte length prefix + padded JSON header)

tests/ref/st_reference.py, when present, is the other reference; the
tests use it and check that both agree (reference_module()).
"""
import json
import os
import struct
import sys

from st_validate import DTYPE_RANK


def _order(items):
    # descending dtype enum position, then ascending name (UTF-8 byte order)
    return sorted(items, key=lambda x: (-DTYPE_RANK[x[1]], x[0].encode("utf-8")))


def header_bytes(tensors, metadata=None):
    """tensors: [(name, st_dtype, shape, nbytes)] in any order."""
    if metadata is None:
        metadata = {"format": "pt"}
    parts = []
    if metadata is not None:
        parts.append('"__metadata__":' + json.dumps(metadata, separators=(",", ":"),
                                                    ensure_ascii=False))
    off = 0
    for name, dt, shape, nb in _order(tensors):
        parts.append(json.dumps(name, ensure_ascii=False) + ":" + json.dumps(
            {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + nb]},
            separators=(",", ":")))
        off += nb
    h = ("{" + ",".join(parts) + "}").encode("utf-8")
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h


def file_bytes(tensors, metadata=None):
    """tensors: [(name, st_dtype, shape, data_bytes)]."""
    hdr = header_bytes([(n, d, s, len(b)) for n, d, s, b in tensors], metadata)
    return hdr + b"".join(b for _, _, _, b in _order(tensors))


def reference_module():
    """tests/ref/st_reference.py (another helper's independent reference
    writer: header_bytes([(name, dtype, shape)], metadata) -> (bytes,
    offsets), plan_shards, index_json), or None when it is absent."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    d = os.path.join(root, "ref")
    if not os.path.exists(os.path.join(d, "st_reference.py")):
        return None
    if d not in sys.path:
        sys.path.insert(0, d)
    import st_reference  # noqa: E402
    return st_reference
