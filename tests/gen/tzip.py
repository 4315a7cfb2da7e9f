"""Minimal re-implementation of torch 1.13's torch.save containers (zip + protocol-2 pickle, and
the legacy format: save_legacy below), used by make_ckpt.py when a checkpoint must hold records
that are not in memory (sparse "holes", > 4 GiB), and cross-checked byte for byte against
torch.save for ordinary objects.

Written from man/zerofs-checkpoint.5 ("The zip container", "The legacy container") and from
observing torch.save output:
  * entries: <prefix>/data.pkl, <prefix>/data/<key> (keys sorted as strings), <prefix>/version
  * every entry Stored, data aligned to 64 bytes with a local extra field 'FB' + 'Z' padding
  * non-empty entries: flags 0x0808, local crc/sizes 0, data descriptor after the data
    (16 bytes; 24 bytes with 64-bit sizes when the entry needs zip64)
  * empty entries: flags 0x0800, no descriptor
  * central entries without extra fields, except a zip64 extra (0x0001) when a size or the
    local header offset does not fit in 32 bits
  * zip64 end-of-central-directory record + locator, then the classic EOCD (always)
"""
import collections
import io
import os
import pickle
import struct
import zlib

import torch

U32 = 0xFFFFFFFF
ALIGN = 64


class Hole:
    """A record of `nbytes` zero bytes written as a sparse hole (seek, never written)."""

    def __init__(self, nbytes):
        self.nbytes = int(nbytes)


_ZERO_CHUNK = bytes(64 << 20)
_zero_crc_cache = {}


def crc32_zeros(n):
    """CRC-32 of n zero bytes (cached; computed in chunks, never materialised whole)."""
    if n in _zero_crc_cache:
        return _zero_crc_cache[n]
    c = 0
    left = n
    while left > 0:
        k = min(left, len(_ZERO_CHUNK))
        c = zlib.crc32(_ZERO_CHUNK[:k] if k < len(_ZERO_CHUNK) else _ZERO_CHUNK, c)
        left -= k
    _zero_crc_cache[n] = c
    return c


class ZipWriter:
    def __init__(self, path, prefix):
        self.f = open(path, "wb")
        self.prefix = prefix
        self.central = []

    def _padding(self, cursor, name_len, size):
        start = cursor + 30 + name_len + 4
        if size >= U32 or cursor >= U32:
            start += 4
            if size >= U32:
                start += 16
            if cursor >= U32:
                start += 8
        pad = (-start) % ALIGN
        return pad

    def write_record(self, name, data):
        full = (self.prefix + "/" + name).encode("utf-8")
        if isinstance(data, Hole):
            size = data.nbytes
        else:
            size = len(data)
        ofs = self.f.tell()
        zip64 = size >= U32 or ofs >= U32
        local_extra = b""
        if zip64:
            fields = b""
            if size >= U32:
                fields += struct.pack("<QQ", size, 0)
            if ofs >= U32:
                fields += struct.pack("<Q", ofs)
            local_extra = struct.pack("<HH", 1, len(fields)) + fields
        pad = self._padding(ofs, len(full), size)
        local_extra += b"FB" + struct.pack("<H", pad) + b"Z" * pad
        flags = 0x0808 if size else 0x0800
        self.f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, flags, 0, 0, 0, 0, 0, 0,
                                 len(full), len(local_extra)))
        self.f.write(full)
        self.f.write(local_extra)
        assert self.f.tell() % ALIGN == 0
        if isinstance(data, Hole):
            crc = crc32_zeros(size)
            self.f.seek(size, 1)
        else:
            crc = zlib.crc32(data) & U32
            self.f.write(data)
        if size:
            if zip64:
                self.f.write(struct.pack("<IIQQ", 0x08074B50, crc, size, size))
            else:
                self.f.write(struct.pack("<IIII", 0x08074B50, crc, size, size))
        self.central.append((full, flags, crc, size, ofs))

    def close(self):
        cd_start = self.f.tell()
        for full, flags, crc, size, ofs in self.central:
            extra = b""
            s32 = size
            o32 = ofs
            fields = b""
            if size >= U32:
                fields += struct.pack("<QQ", size, size)
                s32 = U32
            if ofs >= U32:
                fields += struct.pack("<Q", ofs)
                o32 = U32
            if fields:
                extra = struct.pack("<HH", 1, len(fields)) + fields
            self.f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, flags, 0, 0, 0,
                                     crc, s32, s32, len(full), len(extra), 0, 0, 0, 0, o32))
            self.f.write(full)
            self.f.write(extra)
        cd_end = self.f.tell()
        cd_size = cd_end - cd_start
        n = len(self.central)
        self.f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x002D, 0, 0, n, n,
                                 cd_size, cd_start))
        self.f.write(struct.pack("<IIQI", 0x07064B50, 0, cd_end, 1))
        self.f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF),
                                 min(n, 0xFFFF), min(cd_size, U32), min(cd_start, U32), 0))
        self.f.truncate()
        self.f.close()


class HoleStorage:
    """Stands for a torch storage of `numel` elements of `storage_type` whose bytes are a hole."""

    def __init__(self, numel, storage_type=torch.FloatStorage, elsize=4):
        self.numel = int(numel)
        self.storage_type = storage_type
        self.elsize = elsize


class HoleTensor:
    """Pickles exactly like a contiguous 1-D tensor viewing a HoleStorage."""

    def __init__(self, storage, numel=None, requires_grad=False, offset=0):
        self.storage = storage
        self.n = storage.numel if numel is None else int(numel)
        self.requires_grad = requires_grad
        self.offset = offset

    def __reduce_ex__(self, proto):
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, self.offset, (self.n,), (1,), self.requires_grad,
                 collections.OrderedDict()))


def _storage_bytes(ts):
    """Raw bytes of a torch TypedStorage."""
    nbytes = ts.size() * ts.element_size()
    if nbytes == 0:
        return b""
    t = torch.empty(0, dtype=ts.dtype)
    t.set_(ts)
    view = t.view(torch.uint8) if t.dim() else t
    return view.numpy().tobytes()


def save(obj, path):
    """torch.save(obj, path) look-alike that also accepts HoleTensor/HoleStorage."""
    save_many(obj, [path])


def save_many(obj, paths):
    """save(obj, path) for every path, pickling obj once: the files differ
    only in their archive prefix (each path's own stem), as torch.save of
    one object to several paths would."""
    id_map = {}
    storages = {}

    TS = torch.storage.TypedStorage

    def persistent_id(o):
        t = type(o)
        if t is not TS and t is not HoleStorage and not isinstance(o, TS):
            return None
        if isinstance(o, TS):
            key = id_map.setdefault(("t", o._storage._cdata), str(len(id_map)))
            storages[key] = o
            return ("storage", getattr(torch, o.pickle_storage_type()), key, "cpu", o.size())
        if isinstance(o, HoleStorage):
            key = id_map.setdefault(("h", id(o)), str(len(id_map)))
            storages[key] = o
            return ("storage", o.storage_type, key, "cpu", o.numel)
        return None

    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=2)
    p.persistent_id = persistent_id
    p.dump(obj)
    records = []
    for key in sorted(storages):
        s = storages[key]
        if isinstance(s, HoleStorage):
            records.append(("data/" + key, Hole(s.numel * s.elsize)))
        else:
            records.append(("data/" + key, _storage_bytes(s)))
    for path in paths:
        prefix = os.path.splitext(os.path.basename(path))[0]
        w = ZipWriter(path, prefix)
        w.write_record("data.pkl", buf.getvalue())
        for name, data in records:
            w.write_record(name, data)
        w.write_record("version", b"3\n")
        w.close()


# --------------------------------------------------------------------------------------
# torch's legacy format: torch.save(obj, f, _use_new_zipfile_serialization=False), which
# DeepSpeed >= 0.17 writes with "checkpoint": {"checkpoint_serialization": false}. Five
# protocol-2 pickles (magic number, protocol version 1001, sys_info, the object, the sorted
# list of storage keys), then per key in that order the storage's element count as 8 bytes
# little-endian and its bytes. torch names a storage by its address (str(storage._cdata));
# here keys are made-up addresses, or the caller's (to reproduce a torch.save file).

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
LEGACY_SYS_INFO = {"protocol_version": LEGACY_PROTOCOL, "little_endian": True,
                   "type_sizes": {"short": 2, "int": 4, "long": 4}}
# A heap-like address: 15 digits, as torch's keys on x86-64 Linux.
LEGACY_KEY_BASE = 94_371_000_000_000


def save_legacy(obj, path, keys=None):
    """torch.save(obj, path, _use_new_zipfile_serialization=False) look-alike that also accepts
    HoleTensor/HoleStorage. keys: the storage keys in first-use order (default: addresses
    LEGACY_KEY_BASE + 64*i); with torch's own keys the bytes are torch's."""
    id_map = {}
    storages = {}
    TS = torch.storage.TypedStorage

    def key_for(ident):
        # A new str each time, as torch's str(storage._cdata): the pickler memoizes objects,
        # so a key repeated as one object would pickle as a memo reference, not as text.
        if ident not in id_map:
            i = len(id_map)
            id_map[ident] = int(keys[i]) if keys is not None else LEGACY_KEY_BASE + 64 * i
        return str(id_map[ident])

    def persistent_id(o):
        if isinstance(o, TS):
            key = key_for(("t", o._storage._cdata))
            storages.setdefault(key, o)
            return ("storage", getattr(torch, o.pickle_storage_type()), key, "cpu", o.size(), None)
        if isinstance(o, HoleStorage):
            key = key_for(("h", id(o)))
            storages.setdefault(key, o)
            return ("storage", o.storage_type, key, "cpu", o.numel, None)
        return None

    with open(path, "wb") as f:
        for small in (LEGACY_MAGIC, LEGACY_PROTOCOL, LEGACY_SYS_INFO):
            pickle.dump(small, f, protocol=2)
        p = pickle.Pickler(f, protocol=2)
        p.persistent_id = persistent_id
        p.dump(obj)
        order = sorted(storages)
        pickle.dump(order, f, protocol=2)
        for key in order:
            s = storages[key]
            if isinstance(s, HoleStorage):
                f.write(struct.pack("<q", s.numel))
                f.seek(s.numel * s.elsize, 1)
            else:
                f.write(struct.pack("<q", s.size()))
                f.write(_storage_bytes(s))
        f.truncate()
