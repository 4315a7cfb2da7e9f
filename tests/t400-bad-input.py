#!/usr/bin/python3
"""A catalogue of bad checkpoints: every case is made in a fresh temp copy
of a good checkpoint (generated ZeRO-3 ws 2, ZeRO-2 ws 2 and ZeRO-1 ws 2,
and the real fixtures z3_ws2_fp32 / z2_ws2 where ../shared/fixtures/real
exists), then `zerofs inspect` (and `zerofs mount` for a few) must:

  * exit with the documented status (3 bad input, 4 system error such as
    EACCES), never by a signal, never with a sanitizer report;
  * print one line (at most three) on stderr, each starting "zerofs: ",
    naming the file or folder concerned and saying what is wrong;
  * leave the checkpoint exactly as it was (listing, modes, sizes and every
    file's sha256), with no new file anywhere in the case's folder;
  * for mount: nothing mounted afterwards (/proc/mounts) and the mount
    point untouched;
  * never execute anything from a pickle (GLOBAL os system + REDUCE must not
    create its marker file).

Every case is pinned to the one message fragment that proves the check
meant for it fired (compared literally), and to the file or folder the
message is about.

Names with odd but valid UTF-8 (newline, quote, backslash, non-ASCII) must
be served: mount works and the safetensors header is valid JSON holding the
exact name. A name with invalid UTF-8, or with a NUL byte, must be refused,
naming the tensor.

The served folder's own attacks (zerofs(1), SECURITY): an allowlisted
metadata file that is a link out of the folder (/etc/shadow, a
~/.docker/config.json), a FIFO, a folder, a broken link or a loop is left
out by mount and export with one warning naming it; 0600 files are not
readable by another user through a root mount with allow_other; export
refuses CKPT/out and a bind mount of the checkpoint, even with --force.

Crafting: pickles are edited as objects (torch.load with the generator's
DeepSpeed stand-ins, then torch.save, which keeps torch's zip layout), or
hand-assembled; zips are rewritten with torch's layout by write_pt() below,
or patched at offsets found by parse_zip().
"""
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from zftest import Tap, ZEROFS, TMPROOT, FIXTURES  # noqa: E402
from zfmount import is_mounted, unmount, mounts  # noqa: E402

GEN = os.path.join(HERE, "gen", "make_ckpt.py")
PY = os.environ.get("PYTHON", "/usr/bin/python3")
TIMEOUT = 60

tap = Tap()
WORK = tempfile.mkdtemp(prefix="t400-", dir=TMPROOT)


# --------------------------------------------------------------------------
# torch-style zip reading and writing

def parse_zip(b):
    """Entries of a zip (from the central directory) with their local data
    offsets, plus the positions of the directory structures."""
    eocd = b.rfind(b"PK\x05\x06")
    if eocd < 0:
        raise ValueError("no EOCD")
    _, _, _, _, n, cdsize, cdoff, _ = struct.unpack_from("<IHHHHIIH", b, eocd)
    z64 = b.rfind(b"PK\x06\x06", 0, eocd)
    z64loc = b.rfind(b"PK\x06\x07", 0, eocd)
    if z64 >= 0:
        n, cdsize, cdoff = struct.unpack_from("<QQQ", b, z64 + 32)
    ents = []
    p = cdoff
    for _ in range(n):
        f = struct.unpack_from("<IHHHHHHIIIHHHHHII", b, p)
        assert f[0] == 0x02014B50
        flags, method, crc, cs, us, nl, el, cl, lho = f[3], f[4], f[7], f[8], f[9], f[10], f[11], f[12], f[16]
        name = b[p + 46:p + 46 + nl].decode("utf-8")
        lnl, lel = struct.unpack_from("<HH", b, lho + 26)
        ents.append(dict(name=name, cd=p, flags=flags, method=method, crc=crc, csize=cs,
                         usize=us, lho=lho, data=lho + 30 + lnl + lel))
        p += 46 + nl + el + cl
    return dict(entries=ents, cdoff=cdoff, cdsize=cdsize, eocd=eocd, z64=z64, z64loc=z64loc)


def entry(z, suffix):
    for e in z["entries"]:
        if e["name"].endswith(suffix):
            return e
    raise KeyError(suffix)


def read_records(path):
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i.filename)) for i in zf.infolist()]


def write_pt(path, records, deflate=()):
    """Writes records [(full name, bytes)] the way torch.save lays out a zip
    (64-byte aligned data, 'FB' padding, data descriptors, zip64 end records);
    names ending in one of `deflate` are stored compressed (method 8)."""
    out = bytearray()
    central = []
    for name, data in records:
        nb = name.encode("utf-8")
        method = 8 if any(name.endswith(s) for s in deflate) else 0
        crc = zlib.crc32(data) & 0xFFFFFFFF
        stored = data
        if method == 8:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            stored = c.compress(data) + c.flush()
        ofs = len(out)
        pad = (-(ofs + 30 + len(nb) + 4)) % 64
        extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        flags = 0x0808 if data else 0x0800
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, flags, method, 0, 0, 0, 0, 0,
                           len(nb), len(extra)) + nb + extra
        out += stored
        if data:
            out += struct.pack("<IIII", 0x08074B50, crc, len(stored), len(data))
        central.append((nb, flags, method, crc, len(stored), len(data), ofs))
    cd = len(out)
    for nb, flags, method, crc, cs, us, ofs in central:
        out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, flags, method, 0, 0,
                           crc, cs, us, len(nb), 0, 0, 0, 0, 0, ofs) + nb
    cdend = len(out)
    n = len(central)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x002D, 0, 0, n, n, cdend - cd, cd)
    out += struct.pack("<IIQI", 0x07064B50, 0, cdend, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cdend - cd, cd, 0)
    with open(path, "wb") as f:
        f.write(out)


def replace_record(path, suffix, data):
    recs = [(n, data if n.endswith(suffix) else d) for n, d in read_records(path)]
    write_pt(path, recs)


def patch(path, off, fmt, *vals):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(struct.pack(fmt, *vals))


def truncate(path, n):
    with open(path, "r+b") as f:
        f.truncate(n)


_torch = None


def torch_mod():
    """torch, with the generator's DeepSpeed stand-ins registered so that
    optim pickles load and save back with the same GLOBALs."""
    global _torch
    if _torch is None:
        sys.path.insert(0, os.path.join(HERE, "gen"))
        __import__("make_ckpt")  # registers the deepspeed.* stand-in modules
        import torch  # noqa: E402
        _torch = torch
    return _torch


def edit_obj(path, fn):
    """torch.load the .pt, let fn change the object (or return a new one),
    torch.save it back under the same name (same zip prefix)."""
    torch = torch_mod()
    obj = torch.load(path, map_location="cpu")
    new = fn(obj)
    torch.save(obj if new is None else new, path)


def rename_everywhere(obj, old, new):
    """Renames dict keys equal to old, recursively (model module,
    param_shapes, frozen shapes, param_slice_mappings, shared_params)."""
    if isinstance(obj, dict):
        items = list(obj.items())
        obj.clear()
        for k, v in items:
            obj[new if k == old else k] = rename_everywhere(v, old, new)
        return obj
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            obj[i] = rename_everywhere(v, old, new)
        return obj
    return obj


# --------------------------------------------------------------------------
# checkpoints

def generate(name, *args):
    out = os.path.join(WORK, "gen")
    os.makedirs(out, exist_ok=True)
    p = subprocess.run([PY, GEN, "--out", out, "--name", name] + list(args),
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError("make_ckpt %s failed: %s" % (name, p.stderr[-2000:]))
    return os.path.join(out, name)


class Ck:
    """A temp copy of a checkpoint: .root (what zerofs is given), .tagdir,
    .f(kind, rank) -> path of a rank file."""

    def __init__(self, src, case):
        self.case_dir = tempfile.mkdtemp(prefix="case-", dir=WORK)
        self.root = os.path.join(self.case_dir, "ckpt")
        shutil.copytree(src, self.root)
        for dp, dn, fn in os.walk(self.root):
            os.chmod(dp, 0o755)
            for x in fn:
                os.chmod(os.path.join(dp, x), 0o644)
        with open(os.path.join(self.root, "latest")) as f:
            self.tag = f.read().strip()
        self.tagdir = os.path.join(self.root, self.tag)
        self.names = sorted(os.listdir(self.tagdir))
        # ZeRO-3 keeps one model states file per rank
        self.z3 = any(n.startswith("zero_pp_rank_1_") and n.endswith("_model_states.pt")
                      for n in self.names)

    def f(self, kind, rank=0):
        """kind 'optim' or 'model'."""
        for n in self.names:
            if kind == "optim" and n.endswith("_optim_states.pt") and "_rank_%d_" % rank in n:
                return os.path.join(self.tagdir, n)
            if kind == "model" and n.endswith("_model_states.pt") and (
                    n.startswith("mp_rank_00") or "zero_pp_rank_%d_" % rank in n):
                return os.path.join(self.tagdir, n)
        raise KeyError((kind, rank))


def snapshot(top):
    """{relative path: (type, mode, size, sha256)} of everything under top."""
    out = {}
    for dp, dn, fn in os.walk(top):
        for d in dn:
            p = os.path.join(dp, d)
            st = os.lstat(p)
            out[os.path.relpath(p, top)] = ("d", stat.S_IMODE(st.st_mode), 0, "")
        for x in fn:
            p = os.path.join(dp, x)
            st = os.lstat(p)
            h = ""
            if stat.S_ISREG(st.st_mode):
                hh = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        hh.update(chunk)
                h = hh.hexdigest()
            out[os.path.relpath(p, top)] = ("f", stat.S_IMODE(st.st_mode), st.st_size, h)
    return out


def snap_diff(a, b):
    d = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            d.append("%s: %s -> %s" % (k, a.get(k), b.get(k)))
    return d


MARKER = os.path.join(WORK, "PWNED-marker")


# --------------------------------------------------------------------------
# hostile pickles (hand assembled, protocol 2)

def binunicode(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return b"X" + struct.pack("<I", len(b)) + b


P_DEEP_LIST = b"\x80\x02" + b"]" * 100000 + b"a" * 99999 + b"."
P_DEEP_MARK = b"\x80\x02" + b"(" * 100000 + b")" + b"t" * 100000 + b"."
P_DEEP_DICT = b"\x80\x02" + b"}" * 100000 + b"."
P_MEMO = b"\x80\x02}q\x00j\xf0\xff\xff\xff."
P_MEMO_BINGET = b"\x80\x02}h\xfe."
P_OS_SYSTEM = (b"\x80\x02cos\nsystem\n" + binunicode("touch " + MARKER) + b"\x85R.")
P_POSIX_SYSTEM_IN_DICT = None  # built from a real pickle below
P_UNICODE_HUGE = b"\x80\x02}X\xff\xff\xff\xffabc"
P_BINBYTES8 = b"\x80\x04}\x8e" + struct.pack("<Q", 1 << 62) + b"abc"
P_BINBYTES = b"\x80\x03}B" + struct.pack("<I", 0xFFFFFFFF) + b"abc"
P_NOT_A_PICKLE = b"PK\x03\x04this is not a pickle at all"
# The memory bound (16 bytes per pickle byte) stops these before their depth
DEEP_LIST_WANT = ("pickle: EMPTY_LIST needs more than the 4248608 bytes of memory a pickle of "
                  "200002 bytes may use (16 per byte)")
PERM_LATEST = "cannot open: Permission denied"
PERM_LIST = "cannot open folder: Permission denied"


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + MARKER,))


# --------------------------------------------------------------------------
# the cases: fn(ck) -> dict(target, name, want, codes)
#   target  path given to zerofs (default ck.root)
#   name    what stderr must name: the file or folder the message is
#           about, followed by "': " (the message's subject), exactly
#   want    the exact fragment of the message that proves the check meant
#           for this case fired (literal, case-sensitive): one check, one
#           fragment; where a layout words it differently, the case asks
#           ck which layout it has
#   also    another literal fragment the message must hold (optional)
#   codes   acceptable exit codes (default {3})

NO_EOCD = "not a zip file or truncated: no end of central directory record in the last "
EMPTY_ZIP = "not a zip file: 0 bytes, too short for an end of central directory record"
LH_PAST = " is not before the central directory at "
RUN_PAST = " run past the end of the data (the central directory starts at "


def at(path):
    """The subject of a message about path: its name, then "': "."""
    return os.path.basename(path) + "': "


def trunc_cases(kind, rank):
    def mk(where):
        def fn(ck):
            p = ck.f(kind, rank)
            with open(p, "rb") as f:
                b = f.read()
            z = parse_zip(b)
            pkl = entry(z, "/data.pkl")
            datas = [e for e in z["entries"] if "/data/" in e["name"] and e["usize"] > 64]
            if where == "end record":
                n = len(b) - 10
            elif where == "zip64 end record":
                n = z["z64"] + 20
            elif where == "central directory":
                n = z["cdoff"] + z["cdsize"] // 2
            elif where == "local header":
                n = datas[-1]["lho"] + 12
            elif where == "record data":
                e = max(datas, key=lambda e: e["usize"])
                n = e["data"] + e["usize"] // 2
            elif where == "data.pkl":
                n = pkl["data"] + pkl["usize"] // 2
            elif where == "0 bytes":
                n = 0
            truncate(p, n)
            return dict(name=at(p), want=EMPTY_ZIP if where == "0 bytes" else NO_EOCD)
        return fn
    def keep_dir(where):
        # the file cut at a boundary, but with its central directory and end
        # records put back after the cut (offsets rewritten so they are
        # found): reaches the per-record checks a plain truncation never does
        def fn(ck):
            p = ck.f(kind, rank)
            with open(p, "rb") as f:
                b = f.read()
            z = parse_zip(b)
            pkl = entry(z, "/data.pkl")
            datas = [e for e in z["entries"] if "/data/" in e["name"] and e["usize"] > 64]
            big = max(datas, key=lambda e: e["usize"])
            n = {"local header": datas[-1]["lho"] + 12,
                 "record data": big["data"] + big["usize"] // 2,
                 "data.pkl": pkl["data"] + pkl["usize"] // 2}[where]
            cd = b[z["cdoff"]:z["cdoff"] + z["cdsize"]]
            cnt = len(z["entries"])
            out = b[:n] + cd
            out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x002D, 0, 0, cnt, cnt,
                               len(cd), n)
            out += struct.pack("<IIQI", 0x07064B50, 0, n + len(cd), 1)
            out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, cnt, cnt, len(cd), n, 0)
            with open(p, "wb") as f:
                f.write(out)
            return dict(name=at(p), want=LH_PAST, also="local header offset ")
        return fn
    return [("%s rank %d truncated in the %s" % (kind, rank, w), mk(w))
            for w in ("end record", "zip64 end record", "central directory", "local header",
                      "record data", "data.pkl", "0 bytes")] + [
        ("%s rank %d cut in the %s, directory kept" % (kind, rank, w), keep_dir(w))
        for w in ("local header", "record data", "data.pkl")]


def c_missing_rank(ck):
    p = ck.f("optim", 1)
    os.unlink(p)
    if ck.z3:  # the model states file of rank 1 is there without its partner
        return dict(name=ck.tag + "': ", want="rank 1 has '%s' but no optimizer states file"
                    % os.path.basename(ck.f("model", 1)))
    return dict(name=ck.tag + "': ", want="saved by 2 ranks, but only 1 rank files are here: missing '%s'"
                % os.path.basename(p))


def c_missing_model_rank(ck):
    p = ck.f("model", 1)
    os.unlink(p)
    return dict(name=ck.tag + "': ", want="rank 1 has '%s' but no model states file"
                % os.path.basename(ck.f("optim", 1)))


def c_extra_rank(ck):
    src = ck.f("optim", 1)
    dst = src.replace("_rank_1_", "_rank_2_")
    shutil.copy(src, dst)
    # keep the copy's zip prefix consistent with its name
    recs = [(n.replace("_rank_1_", "_rank_2_"), d) for n, d in read_records(dst)]
    write_pt(dst, recs)
    if ck.z3:
        return dict(name=ck.tag + "': ", want="rank 2 has '%s' but no model states file"
                    % os.path.basename(dst))
    return dict(name=at(ck.f("optim", 0)),
                want="saved by 2 ranks, but the folder holds 3 rank files: files from different runs are mixed")


def mixed(kind, other):
    def fn(ck):
        p = ck.f(kind, 1)
        otag = open(os.path.join(other, "latest")).read().strip()
        shutil.copy(os.path.join(other, otag, os.path.basename(p)), p)
        if kind == "optim":
            return dict(name=at(p), want="optimizer is at step 5, but rank 0's file is at step 3: "
                        "files from different saves are mixed")
        return dict(name=at(p), want="saved at step 5, but rank 0's file at step 3: "
                    "files from different saves are mixed")
    return fn


def c_latest_missing_tag(ck):
    with open(os.path.join(ck.root, "latest"), "w") as f:
        f.write("global_step999")
    return dict(name="latest': ", want="names tag 'global_step999', but there is no such folder beside it")


def c_no_latest_two_tags(ck):
    os.unlink(os.path.join(ck.root, "latest"))
    shutil.copytree(ck.tagdir, os.path.join(ck.root, "global_step7"))
    return dict(name=at(ck.root), want="no 'latest' file and 2 folders that hold a checkpoint "
                "('global_step3', 'global_step7'): choose one with --tag")


def c_latest_junk(ck):
    with open(os.path.join(ck.root, "latest"), "wb") as f:
        f.write(b"\xff\xfe\x00\x01junk\x7f\n\x00")
    return dict(name="latest': ", want="does not hold a tag folder name: 11 bytes that are not UTF-8 text")


def c_latest_slash(ck):
    with open(os.path.join(ck.root, "latest"), "w") as f:
        f.write("../ckpt/" + ck.tag)
    return dict(name="latest': ", want="does not hold a tag folder name: a path, '.' or '..', "
                "where the name of a folder beside 'latest' belongs")


def c_latest_abs(ck):
    with open(os.path.join(ck.root, "latest"), "w") as f:
        f.write(ck.tagdir)
    return dict(name="latest': ", want="does not hold a tag folder name: a path, '.' or '..', "
                "where the name of a folder beside 'latest' belongs")


def c_latest_empty(ck):
    open(os.path.join(ck.root, "latest"), "w").close()
    return dict(name="latest': ", want="is empty: it should hold the name of the tag folder")


def c_compressed(ck):
    p = ck.f("optim", 0)
    recs = read_records(p)
    write_pt(p, recs, deflate=tuple(n[n.index("/data/"):] for n, _ in recs if "/data/" in n))
    return dict(name=at(p), want="/data/0' is compressed (method 8); zerofs needs stored records")


def c_compressed_pkl(ck):
    p = ck.f("model", 0)
    write_pt(p, read_records(p), deflate=("/data.pkl",))
    return dict(name=at(p), want="/data.pkl' is compressed (method 8); zerofs needs stored records")


def c_encrypted(ck):
    p = ck.f("optim", 0)
    with open(p, "rb") as f:
        z = parse_zip(f.read())
    for e in z["entries"]:
        patch(p, e["cd"] + 8, "<H", e["flags"] | 1)
        patch(p, e["lho"] + 6, "<H", e["flags"] | 1)
    return dict(name=at(p), want="data.pkl' is encrypted (flags 0x0809, method 0); "
                "zerofs needs plain stored records")


def c_offset_past(ck):
    p = ck.f("optim", 0)
    with open(p, "rb") as f:
        b = f.read()
    e = max((e for e in parse_zip(b)["entries"] if "/data/" in e["name"]), key=lambda e: e["usize"])
    patch(p, e["cd"] + 42, "<I", len(b) + 4096)
    return dict(name=at(p), want="local header offset %d%s" % (len(b) + 4096, LH_PAST))


def c_size_past(ck):
    p = ck.f("optim", 0)
    with open(p, "rb") as f:
        b = f.read()
    e = max((e for e in parse_zip(b)["entries"] if "/data/" in e["name"]), key=lambda e: e["usize"])
    patch(p, e["cd"] + 20, "<II", len(b) * 2, len(b) * 2)
    return dict(name=at(p), want="%d bytes at local header offset %d%s" % (len(b) * 2, e["lho"], RUN_PAST))


def c_size_huge(ck):
    p = ck.f("optim", 0)
    with open(p, "rb") as f:
        b = f.read()
    e = max((e for e in parse_zip(b)["entries"] if "/data/" in e["name"]), key=lambda e: e["usize"])
    patch(p, e["cd"] + 20, "<II", 0xFFFFFFF0, 0xFFFFFFF0)
    return dict(name=at(p), want="4294967280 bytes at local header offset %d%s" % (e["lho"], RUN_PAST))


def c_size_mismatch(ck):
    # central says compressed != uncompressed for a stored record
    p = ck.f("optim", 0)
    with open(p, "rb") as f:
        b = f.read()
    e = max((e for e in parse_zip(b)["entries"] if "/data/" in e["name"]), key=lambda e: e["usize"])
    patch(p, e["cd"] + 24, "<I", e["usize"] - 4)
    return dict(name=at(p), want="' is stored but its sizes differ: %d bytes in the file, %d uncompressed"
                % (e["csize"], e["usize"] - 4))


def hostile(data, want, kind="optim", rank=0):
    def fn(ck):
        p = ck.f(kind, rank)
        replace_record(p, "/data.pkl", data)
        return dict(name=at(p), want=want)
    return fn


def c_pickle_truncated(kind, where):
    """data.pkl cut before its STOP, or in the middle of the first
    BINUNICODE string past its middle (each cut meets one check)."""
    def fn(ck):
        import pickletools  # noqa: E402
        p = ck.f(kind, 0)
        recs = read_records(p)
        pkl = next(d for n, d in recs if n.endswith("/data.pkl"))
        if where == "before STOP":
            cut = len(pkl) - 1
            want = "pickle: input ends at byte %d without STOP" % cut
        else:
            op, arg, pos = next((op, arg, pos) for op, arg, pos in pickletools.genops(pkl)
                                if op.name == "BINUNICODE" and pos > len(pkl) // 2
                                and len(arg.encode()) >= 4)
            n = len(arg.encode())
            cut = pos + 5 + n // 2
            want = "pickle: BINUNICODE of %d bytes, but only %d bytes are left" % (n, n // 2)
        recs = [(rn, d[:cut] if rn.endswith("/data.pkl") else d) for rn, d in recs]
        write_pt(p, recs)
        return dict(name=at(p), want=want)
    return fn


def c_pickle_system_in_dict(ck):
    p = ck.f("optim", 0)
    edit_obj(p, lambda o: o.__setitem__("client_state_evil", _Evil()))
    # A key zerofs never reads: the call is kept as inert data, never run
    # (the marker file stays absent), and the checkpoint is served.
    return dict(name=None, want=None, codes={0}, quiet=True)


def c_pickle_os_system_nested(ck):
    # os.system REDUCE where a tensor is expected: inside fp32_flat_groups / single_partition
    p = ck.f("optim", 0)

    def fn(o):
        osd = o["optimizer_state_dict"]
        key = "fp32_flat_groups" if "fp32_flat_groups" in osd else "single_partition_of_fp32_groups"
        osd[key][0] = _Evil()
    edit_obj(p, fn)
    key = "fp32_flat_groups" if ck.z3 else "single_partition_of_fp32_groups"
    return dict(name=at(p), want="'%s[0]' is of type object, expected a tensor" % key)


def shape_overflow(dims):
    def fn(ck):
        torch = torch_mod()
        p = ck.f("model", 0)

        def ed(o):
            ps = o["param_shapes"][0]
            k = list(ps.keys())[-1]
            ps[k] = torch.Size(dims)
        edit_obj(p, ed)
        return dict(name=at(p), want="' is absurd: its element count overflows")
    return fn


def c_shape_negative(ck):
    torch = torch_mod()
    p = ck.f("model", 0)

    def ed(o):
        ps = o["param_shapes"][0]
        k = list(ps.keys())[-1]
        ps[k] = torch.Size([-3, 5])
    edit_obj(p, ed)
    return dict(name=at(p), want="' has a dimension that is not a non-negative int")


def c_partition_count(ck):
    p0 = ck.f("optim", 0)

    def ed(o):
        osd = o["optimizer_state_dict"]
        pc = osd["partition_count"]
        osd["partition_count"] = [3] * len(pc) if isinstance(pc, list) else 3
    for r in (0, 1):
        edit_obj(ck.f("optim", r), ed)
    return dict(name=ck.tag + "': ", want="saved by 3 ranks, but only 2 rank files are here: "
                "missing '%s'" % os.path.basename(p0).replace("_rank_0_", "_rank_2_"))


def c_flat_short(ck):
    p = ck.f("optim", 1)

    def ed(o):
        osd = o["optimizer_state_dict"]
        key = "fp32_flat_groups" if "fp32_flat_groups" in osd else "single_partition_of_fp32_groups"
        t = osd[key][-1]
        osd[key][-1] = t[:-3].clone()
    edit_obj(p, ed)
    # ZeRO-3 checks each rank's flat groups against param_shapes; ZeRO-1/2
    # sums each group over the ranks (and names rank 0's file)
    if ck.z3:
        return dict(name=at(p), want="fp32 flat groups hold", also=": model and optimizer files do not match")
    return dict(name=at(ck.f("optim", 0)), want="the ranks' fp32 partitions hold",
                also=": model and optimizer files do not match")


def c_flat_long(ck):
    p = ck.f("optim", 0)

    def ed(o):
        torch = torch_mod()
        osd = o["optimizer_state_dict"]
        key = "fp32_flat_groups" if "fp32_flat_groups" in osd else "single_partition_of_fp32_groups"
        t = osd[key][0]
        osd[key][0] = torch.cat([t, torch.zeros(1000)])
    edit_obj(p, ed)
    return dict(name=at(p), want="fp32 flat groups hold" if ck.z3 else "the ranks' fp32 partitions hold",
                also=": model and optimizer files do not match")


def optim_from(other):
    def fn(ck):
        for r in (0, 1):
            p = ck.f("optim", r)
            shutil.copy(os.path.join(other, ck.tag, os.path.basename(p)), p)
        return dict(name=at(ck.f("optim", 0)),
                    want="fp32 flat groups hold" if ck.z3 else "the ranks' fp32 partitions hold",
                    also=": model and optimizer files do not match")
    return fn


def c_empty_folder(ck):
    d = os.path.join(ck.case_dir, "empty")
    os.mkdir(d)
    return dict(target=d, name=d + "': ", want="no 'latest' file and no tag folder with DeepSpeed "
                "rank files: not a DeepSpeed checkpoint")


def c_empty_tag(ck):
    for n in os.listdir(ck.tagdir):
        os.unlink(os.path.join(ck.tagdir, n))
    return dict(name=ck.tag + "': ", want="no DeepSpeed checkpoint files ('*_model_states.pt', "
                "'*_optim_states.pt') in this folder")


def c_nonexistent(ck):
    d = os.path.join(ck.case_dir, "does-not-exist")
    return dict(target=d, name=d + "': ", want="no such file or folder")


def c_file_not_folder(ck):
    p = ck.f("optim", 0)
    return dict(target=p, name=at(p), want="not a folder: give the checkpoint folder")


def c_text_file(ck):
    p = os.path.join(ck.case_dir, "notes.txt")
    with open(p, "w") as f:
        f.write("hello\n")
    return dict(target=p, name="notes.txt': ", want="not a folder: give the checkpoint folder")


def c_latest_is_dir(ck):
    os.unlink(os.path.join(ck.root, "latest"))
    os.mkdir(os.path.join(ck.root, "latest"))
    return dict(name="latest': ", want="not a regular file")


def c_rank_is_dir(ck):
    p = ck.f("optim", 1)
    os.unlink(p)
    os.mkdir(p)
    return dict(name=at(p), want="not a regular file")


def c_rank_fifo(ck):
    p = ck.f("optim", 1)
    os.unlink(p)
    os.mkfifo(p)
    return dict(name=at(p), want="not a regular file",
                timeout=10)


def c_rank_symlink_loop(ck):
    p = ck.f("optim", 1)
    os.unlink(p)
    os.symlink(os.path.basename(p), p)
    return dict(name=at(p), want="cannot open: Too many levels of symbolic links", codes={4})


# rank identity: every rank file is its own (pinned to the exact message)

SAME_FILE = "is the same file as"
SAME_RECORDS = "holds the same records as"


def c_rank_symlinked(ck):
    """Rank 1's optimizer file is a symbolic link to rank 0's."""
    p, q = ck.f("optim", 1), ck.f("optim", 0)
    os.unlink(p)
    os.symlink(os.path.basename(q), p)
    return dict(name=at(p), also="/%s'" % os.path.basename(q), want=SAME_FILE)


def c_rank_hardlinked(ck):
    """Rank 1's optimizer file is a hard link to rank 0's."""
    p, q = ck.f("optim", 1), ck.f("optim", 0)
    os.unlink(p)
    os.link(q, p)
    return dict(name=at(p), also="/%s'" % os.path.basename(q), want=SAME_FILE)


def c_rank_byte_copy(ck):
    """Rank 1's optimizer file is a byte copy of rank 0's."""
    p, q = ck.f("optim", 1), ck.f("optim", 0)
    shutil.copyfile(q, p)
    return dict(name=at(p), also="/%s'" % os.path.basename(q), want=SAME_RECORDS)


def c_ranks_swapped(ck):
    """Ranks 0 and 1 swapped their optimizer files (ZeRO-1/2: each file's
    param_slice_mappings say which part of each group it holds)."""
    p, q = ck.f("optim", 0), ck.f("optim", 1)
    tmp = p + ".swap"
    os.rename(p, tmp)
    os.rename(q, p)
    os.rename(tmp, q)
    return dict(name=at(p), want="its param_slice_mappings describe rank 1's part of "
                "param group 0, not rank 0's: rank files swapped or renamed")


def c_no_data_pkl(ck):
    p = ck.f("model", 0)
    recs = [(n.replace("data.pkl", "data.pkx"), d) for n, d in read_records(p)]
    write_pt(p, recs)
    return dict(name=at(p), want="no 'data.pkl' entry in ", also=" zip entries; not a torch.save file")


def biggest(recs):
    """Names of the largest storage records (the flat fp32 partition and the
    Adam moments have the same size; zerofs needs the first only)."""
    m = max(len(d) for n, d in recs if "/data/" in n)
    return {n for n, d in recs if "/data/" in n and len(d) == m}


def c_missing_storage(ck):
    p = ck.f("optim", 0)
    recs = read_records(p)
    big = biggest(recs)
    recs = [r for r in recs if r[0] not in big]
    write_pt(p, recs)
    prefix = recs[0][0].split("/")[0]
    return dict(name=at(p), want="no record '%s/data/" % prefix)


def c_storage_short(ck):
    # a storage record shorter than the pickle's numel says
    p = ck.f("optim", 0)
    recs = read_records(p)
    big = biggest(recs)
    recs = [(n, d[:-64] if n in big else d) for n, d in recs]
    write_pt(p, recs)
    return dict(name=at(p), want=" elements of 4 bytes, but its record holds ")


# names with odd bytes -------------------------------------------------------

ODD_VICTIM = "model.odd.bias"
PLACEHOLDER = "model.odd.QQQQQQQQQQ"


def rename_tensor(ck, new):
    files = [os.path.join(ck.tagdir, n) for n in ck.names]
    for p in files:
        edit_obj(p, lambda o: rename_everywhere(o, ODD_VICTIM, new))


def c_name_invalid_utf8(ck):
    rename_tensor(ck, PLACEHOLDER)
    bad = b"model.odd.\xff\xfe\xc3(x"
    for n in ck.names:
        p = os.path.join(ck.tagdir, n)
        recs = read_records(p)
        recs = [(rn, d.replace(binunicode(PLACEHOLDER), binunicode(bad))
                 if rn.endswith("/data.pkl") else d) for rn, d in recs]
        write_pt(p, recs)
    # names the tensor (its valid part), says why, says where (a file or
    # the tag folder, as every other message does), and does not write the
    # raw invalid bytes to the terminal
    return dict(name=at(ck.f("model", 0)), also="tensor name 'model.odd.\\xff\\xfe\\xc3(x'",
                want="is not valid UTF-8: it cannot be served under a Hugging Face name",
                stderr_utf8=True, json_too=True)


# --------------------------------------------------------------------------
# running

def check_stderr(err, name, want, also=None):
    """One to three 'zerofs: ' lines naming the subject and holding the
    case's fragments, all compared literally."""
    lines = [l for l in err.splitlines() if l.strip()]
    probs = []
    if not lines:
        probs.append("stderr is empty")
    elif len(lines) > 3:
        probs.append("stderr has %d lines (want 1-3)" % len(lines))
    if any(not l.startswith("zerofs: ") for l in lines):
        probs.append("a stderr line does not start with 'zerofs: '")
    if name is not None and name not in err:
        probs.append("stderr does not name %r" % name)
    if also and also not in err:
        probs.append("stderr lacks %r" % also)
    if want and want not in err:
        probs.append("stderr does not say %r" % want)
    return probs


def crashed(p):
    bad = []
    if p.returncode < 0:
        bad.append("killed by signal %d" % -p.returncode)
    if p.returncode == 999:
        bad.append("hung (killed after the timeout)")
    for s in ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
              "runtime error:", "Segmentation fault", "core dumped", "stack-overflow"):
        if s in p.stderr:
            bad.append("stderr has %r" % s)
    return bad


VERBOSE = bool(os.environ.get("ZF_VERBOSE"))


def _json_ok(p):
    try:
        json.loads(p.raw_stdout.decode("utf-8"))
        return True
    except Exception:  # noqa: BLE001
        return False


def zrun(args, user=None, timeout=TIMEOUT):
    cmd = [ZEROFS] + args
    if user:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout)
        p.raw_stderr = p.stderr
        p.raw_stdout = p.stdout
        p.stdout = p.stdout.decode("utf-8", "replace")
        p.stderr = p.stderr.decode("utf-8", "replace")
        return p
    except subprocess.TimeoutExpired:
        p = subprocess.CompletedProcess(cmd, 999, "", "TIMEOUT: still running after %ds" % timeout)
        p.raw_stderr = p.raw_stdout = b""
        return p


def run_case(label, base, fn, do_mount=False):
    ck = Ck(base, label)
    try:
        try:
            spec = fn(ck)
        except Exception as e:  # noqa: BLE001
            tap.ok(False, "%s: crafting the case" % label, repr(e))
            return
        target = spec.get("target", ck.root)
        codes = spec.get("codes", {3})
        before = snapshot(ck.case_dir)
        p = zrun(["inspect", target], timeout=spec.get("timeout", TIMEOUT))
        after = snapshot(ck.case_dir)
        probs = crashed(p)
        if p.returncode not in codes:
            probs.append("exit %d, want %s" % (p.returncode, "/".join(map(str, sorted(codes)))))
        if spec.get("quiet"):
            if p.stderr.strip() or "model.embed_tokens.weight" not in p.stdout:
                probs.append("want the checkpoint listed and nothing on stderr")
        else:
            probs += check_stderr(p.stderr, spec["name"], spec["want"], spec.get("also"))
        if spec.get("stderr_utf8"):
            try:
                p.raw_stderr.decode("utf-8")
            except UnicodeDecodeError:
                probs.append("stderr holds invalid UTF-8 (raw name bytes, not escaped)")
        d = snap_diff(before, after)
        if d:
            probs.append("checkpoint changed: " + "; ".join(d[:5]))
        if os.path.exists(MARKER):
            probs.append("MARKER FILE CREATED: a pickle was executed")
        tap.ok(not probs, "%s: inspect exits %s, one clear line, nothing written"
               % (label, "/".join(map(str, sorted(codes)))),
               "\n".join(probs) + "\nstderr: " + p.stderr[-1500:])
        if VERBOSE:
            print("#   [%d] %s" % (p.returncode, p.stderr.strip()[:400]))
        if spec.get("json_too"):
            q = zrun(["inspect", "--json", target])
            probs = crashed(q)
            if q.returncode != 3:
                probs.append("exit %d, want 3 (stdout valid JSON: %s)" % (q.returncode, _json_ok(q)))
            probs += check_stderr(q.stderr, spec["name"], spec["want"], spec.get("also"))
            tap.ok(not probs, "%s: inspect --json exits 3 too (no invalid JSON on stdout)" % label,
                   "\n".join(probs) + "\nstderr: " + q.stderr[-800:])
        if do_mount:
            mnt = tempfile.mkdtemp(prefix="mnt-", dir=ck.case_dir)
            before = snapshot(ck.case_dir)
            try:
                p = zrun(["mount", target, mnt])
                mounted = is_mounted(mnt)
                listing = os.listdir(mnt) if not mounted else ["(mounted)"]
            finally:
                if is_mounted(mnt):
                    unmount(mnt)
            after = snapshot(ck.case_dir)
            probs = crashed(p)
            if p.returncode not in (codes - {0} or {3}):
                probs.append("mount exit %d, want %s" % (p.returncode, sorted(codes - {0})))
            probs += check_stderr(p.stderr, spec["name"], spec["want"], spec.get("also"))
            if spec.get("stderr_utf8"):
                try:
                    p.raw_stderr.decode("utf-8")
                except UnicodeDecodeError:
                    probs.append("stderr holds invalid UTF-8 (raw name bytes, not escaped)")
            if mounted:
                probs.append("%s was mounted" % mnt)
            if listing:
                probs.append("mount point not empty: %s" % listing)
            d = snap_diff(before, after)
            if d:
                probs.append("checkpoint changed: " + "; ".join(d[:5]))
            tap.ok(not probs, "%s: mount refuses, nothing mounted" % label,
                   "\n".join(probs) + "\nstderr: " + p.stderr[-1500:])
    finally:
        shutil.rmtree(ck.case_dir, ignore_errors=True)


def identity_other_commands(label, base, fn):
    """export and verify refuse a rank that is not its own file, with the
    same message inspect gives (mount: run_case)."""
    ck = Ck(base, label)
    try:
        spec = fn(ck)
        out = os.path.join(ck.case_dir, "out")
        before = snapshot(ck.root)
        p = zrun(["export", ck.root, out])
        probs = crashed(p)
        if p.returncode != 3:
            probs.append("export exit %d, want 3" % p.returncode)
        probs += check_stderr(p.stderr, spec["name"], spec["want"], spec.get("also"))
        if os.path.exists(out) and os.listdir(out):
            probs.append("export wrote %s" % os.listdir(out))
        tap.ok(not probs, "%s: export refuses it (exit 3, the same message)" % label,
               "\n".join(probs) + "\nstderr: " + p.stderr[-800:])
        q = zrun(["verify", ck.root])
        text = q.stdout + q.stderr
        probs = crashed(q)
        # verify reports the failed open as a finding: unsound, exit 1
        if q.returncode != 1:
            probs.append("verify exit %d, want 1" % q.returncode)
        if spec["want"] not in text:
            probs.append("verify does not say %r" % spec["want"])
        if spec["name"] not in text:
            probs.append("verify does not name %r" % spec["name"])
        if snap_diff(before, snapshot(ck.root)):
            probs.append("checkpoint changed")
        tap.ok(not probs, "%s: verify finds it unsound (exit 1), saying why" % label,
               "\n".join(probs) + "\noutput: " + text[-800:])
    finally:
        shutil.rmtree(ck.case_dir, ignore_errors=True)


def odd_name_ok(label, base, newname):
    """A valid-UTF-8 odd name: served; the header is JSON with that exact name."""
    ck = Ck(base, label)
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=WORK)
    try:
        rename_tensor(ck, newname)
        before = snapshot(ck.case_dir)
        p = zrun(["inspect", "--json", ck.root])
        names = []
        try:
            names = [t["name"] for t in json.loads(p.stdout)["tensors"]]
        except Exception:  # noqa: BLE001
            pass
        tap.ok(p.returncode == 0 and newname in names and not crashed(p),
               "%s: inspect --json lists the exact name" % label,
               "exit %d names~%s stderr %s" % (p.returncode, [n for n in names if "odd" in n], p.stderr[-800:]))
        q = zrun(["mount", ck.root, mnt])
        probs = crashed(q)
        if q.returncode != 0 or not is_mounted(mnt):
            probs.append("mount exit %d (mounted: %s)" % (q.returncode, is_mounted(mnt)))
        else:
            files = sorted(x for x in os.listdir(mnt) if x.endswith(".safetensors"))
            found = False
            for fn_ in files:
                with open(os.path.join(mnt, fn_), "rb") as f:
                    n = struct.unpack("<Q", f.read(8))[0]
                    raw = f.read(n)
                try:
                    hdr = json.loads(raw.decode("utf-8"))
                except Exception as e:  # noqa: BLE001
                    probs.append("%s: header is not valid JSON: %r" % (fn_, e))
                    continue
                if newname in hdr:
                    found = True
                    e = hdr[newname]
                    if e.get("shape") != [7]:
                        probs.append("shape %s" % e.get("shape"))
            if not found:
                probs.append("name not found in any header")
        if is_mounted(mnt):
            ok, how = unmount(mnt)
            if not ok:
                probs.append("unmount failed: " + how)
        d = snap_diff(before, snapshot(ck.case_dir))
        if d:
            probs.append("checkpoint changed: " + "; ".join(d[:5]))
        tap.ok(not probs, "%s: mounts, safetensors header is JSON with the exact name" % label,
               "\n".join(probs) + "\nstderr: " + q.stderr[-800:])
    except Exception as e:  # noqa: BLE001
        tap.ok(False, "%s: crafting the case" % label, repr(e))
    finally:
        if is_mounted(mnt):
            unmount(mnt)
        shutil.rmtree(ck.case_dir, ignore_errors=True)
        try:
            os.rmdir(mnt)
        except OSError:
            pass


def permission_cases(base, label):
    """As nobody, on a world-readable copy (outside the 0700 $TMPROOT)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        tap.skip("%s: unreadable files" % label, "needs root and setpriv")
        return
    top = tempfile.mkdtemp(prefix="zf-t400-perm-", dir="/tmp")
    try:
        os.chmod(top, 0o755)
        root = os.path.join(top, "ckpt")
        shutil.copytree(base, root)
        for dp, dn, fn in os.walk(root):
            os.chmod(dp, 0o755)
            for x in fn:
                os.chmod(os.path.join(dp, x), 0o644)
        tag = open(os.path.join(root, "latest")).read().strip()
        tagdir = os.path.join(root, tag)
        p = zrun(["inspect", root], user=True)
        tap.ok(p.returncode == 0, "%s: control: nobody can inspect the readable copy" % label,
               "exit %d: %s" % (p.returncode, p.stderr[-500:]))
        optim1 = [n for n in os.listdir(tagdir) if "_rank_1_" in n and "optim" in n][0]
        model0 = [n for n in os.listdir(tagdir) if "model_states" in n][0]
        denied = "cannot open: Permission denied"
        cases = [("optim rank 1 mode 000", os.path.join(tagdir, optim1), 0o000, optim1, denied),
                 ("model rank 0 mode 000", os.path.join(tagdir, model0), 0o000, model0, denied),
                 ("latest mode 000", os.path.join(root, "latest"), 0o000, "latest", PERM_LATEST),
                 ("tag folder mode 000", tagdir, 0o000, tag, PERM_LIST),
                 ("tag folder mode 0711 (no listing)", tagdir, 0o711, tag, PERM_LIST)]
        for what, path, mode, name, want in cases:
            old = stat.S_IMODE(os.stat(path).st_mode)
            os.chmod(path, mode)
            try:
                before = snapshot(top)
                p = zrun(["inspect", root], user=True)
                after = snapshot(top)
            finally:
                os.chmod(path, old)
            probs = crashed(p)
            if p.returncode != 4:
                probs.append("exit %d, want 4" % p.returncode)
            probs += check_stderr(p.stderr, name + "': ", want)
            d = snap_diff(before, after)
            if d:
                probs.append("checkpoint changed: " + "; ".join(d[:5]))
            tap.ok(not probs, "%s: %s, as nobody: exit 4, 'Permission denied' naming it"
                   % (label, what), "\n".join(probs) + "\nstderr: " + p.stderr[-800:])
    finally:
        shutil.rmtree(top, ignore_errors=True)


# the served folder's own attacks -------------------------------------------
#
# Files beside the rank files that the mount serves (config, tokenizer):
# each attack is planted under an allowlisted name; mount and export must
# serve the rest, leave that file out, and say so in one warning line
# naming it (zerofs(1), SECURITY).

def plant_link(target_of):
    def fn(ck, name):
        os.symlink(target_of(ck), os.path.join(ck.root, name))
    return fn


def fake_docker_config(ck):
    home = os.path.join(ck.case_dir, "home", ".docker")
    os.makedirs(home)
    p = os.path.join(home, "config.json")
    with open(p, "w") as f:
        f.write('{"auths": {"registry.example": {"auth": "c2VjcmV0OnNlY3JldA=="}}}\n')
    return p


META_CASES = [
    # (label, served name, plant(ck, name), fragment of the warning)
    ("tokenizer.json is a link to /etc/shadow", "tokenizer.json",
     plant_link(lambda ck: "/etc/shadow"),
     lambda ck: "a symbolic link to '/etc/shadow', outside the checkpoint folder"),
    ("config.json is a link to ~/.docker/config.json", "config.json",
     plant_link(fake_docker_config),
     lambda ck: "a symbolic link to '%s', outside the checkpoint folder"
     % os.path.join(ck.case_dir, "home", ".docker", "config.json")),
    ("tokenizer_config.json is a link up out of the folder", "tokenizer_config.json",
     plant_link(lambda ck: "../outside.json"),
     lambda ck: "a symbolic link to '../outside.json', outside the checkpoint folder"),
    ("vocab.json is a FIFO", "vocab.json",
     lambda ck, name: os.mkfifo(os.path.join(ck.root, name)),
     lambda ck: "a FIFO, not a regular file"),
    ("merges.txt is a folder", "merges.txt",
     lambda ck, name: os.mkdir(os.path.join(ck.root, name)),
     lambda ck: "a folder, not a regular file"),
    ("special_tokens_map.json is a broken link", "special_tokens_map.json",
     plant_link(lambda ck: "gone.json"),
     lambda ck: "a broken symbolic link (to 'gone.json')"),
    ("generation_config.json is a link to a folder inside", "generation_config.json",
     plant_link(lambda ck: ck.tag),
     lambda ck: "a symbolic link to a folder, not a regular file"),
    ("added_tokens.json is a link loop", "added_tokens.json",
     plant_link(lambda ck: "added_tokens.json"),
     lambda ck: "a symbolic link loop (to 'added_tokens.json')"),
]


def meta_case(label, base, name, plant, frag):
    ck = Ck(base, label)
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=ck.case_dir)
    out = os.path.join(ck.case_dir, "out")
    try:
        with open(os.path.join(ck.root, "outside.json"), "w") as f:
            f.write("{}\n")
        os.rename(os.path.join(ck.root, "outside.json"), os.path.join(ck.case_dir, "outside.json"))
        if name != "config.json":
            with open(os.path.join(ck.root, "config.json"), "w") as f:
                f.write('{"model_type": "llama", "torch_dtype": "float32"}\n')
        plant(ck, name)
        want = "zerofs: warning: '%s' left out: %s" % (os.path.join(ck.root, name), frag(ck))
        before = snapshot(ck.root)
        p = zrun(["mount", ck.root, mnt], timeout=20)
        listing = sorted(os.listdir(mnt)) if is_mounted(mnt) else None
        if is_mounted(mnt):
            unmount(mnt)
        probs = crashed(p)
        if p.returncode != 0 or listing is None:
            probs.append("mount exit %d (mounted: %s)" % (p.returncode, listing is not None))
        elif name in listing or "model.safetensors" not in listing:
            probs.append("served %s" % listing)
        lines = p.stderr.splitlines()
        if lines.count(want) != 1 or any(not l.startswith("zerofs: ") for l in lines):
            probs.append("want the line %r once" % want)
        tap.ok(not probs, "%s: mount serves the rest and warns, naming it" % label,
               "\n".join(probs) + "\nstderr: " + p.stderr[-1200:])
        q = zrun(["export", "-q", ck.root, out], timeout=20)
        probs = crashed(q)
        written = sorted(os.listdir(out)) if os.path.isdir(out) else []
        if q.returncode != 0 or name in written or "model.safetensors" not in written:
            probs.append("export exit %d wrote %s" % (q.returncode, written))
        if q.stderr.splitlines().count(want) != 1:
            probs.append("want the line %r once" % want)
        d = snap_diff(before, snapshot(ck.root))
        if d:
            probs.append("checkpoint changed: " + "; ".join(d[:5]))
        tap.ok(not probs, "%s: export writes the rest and warns, naming it" % label,
               "\n".join(probs) + "\nstderr: " + q.stderr[-1200:])
        # verify judges the same directory: the same warning, and --json
        # lists it; leaving a metadata file out does not make it unsound.
        v = zrun(["verify", ck.root], timeout=20)
        vj = zrun(["verify", "--json", ck.root], timeout=20)
        probs = crashed(v) + crashed(vj)
        try:
            left = json.loads(vj.stdout).get("left_out")
        except ValueError:
            left = None
        if v.returncode != 0 or v.stderr.splitlines().count(want) != 1:
            probs.append("verify exit %d, want the line %r once" % (v.returncode, want))
        if vj.returncode != 0 or not left or left[0].get("path") != os.path.join(ck.root, name) \
                or left[0].get("why") != frag(ck):
            probs.append("verify --json exit %d, left_out %r" % (vj.returncode, left))
        tap.ok(not probs, "%s: verify warns too and lists it in --json" % label,
               "\n".join(probs) + "\nstderr: " + v.stderr[-1200:])
    except Exception as e:  # noqa: BLE001
        tap.ok(False, "%s: crafting the case" % label, repr(e))
    finally:
        if is_mounted(mnt):
            unmount(mnt)
        shutil.rmtree(ck.case_dir, ignore_errors=True)


def private_files_case(base, label):
    """0600 files: through a root mount with allow_other, nobody cannot read
    them (EACCES), but reads the 0644 ones."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        tap.skip("%s: 0600 files through allow_other" % label, "needs root and setpriv")
        return
    top = tempfile.mkdtemp(prefix="zf-t400-priv-", dir="/tmp")
    mnt = os.path.join(top, "mnt")
    try:
        os.chmod(top, 0o755)
        os.mkdir(mnt)
        root = os.path.join(top, "ckpt")
        shutil.copytree(base, root)
        for dp, dn, fn in os.walk(root):
            os.chmod(dp, 0o755)
            for x in fn:
                os.chmod(os.path.join(dp, x), 0o644)
        for n, mode in (("tokenizer.json", 0o600), ("tokenizer_config.json", 0o644)):
            with open(os.path.join(root, n), "w") as f:
                f.write('{"secret": %d}\n' % mode)
            os.chmod(os.path.join(root, n), mode)
        tag = open(os.path.join(root, "latest")).read().strip()
        optim1 = [n for n in os.listdir(os.path.join(root, tag)) if "_rank_1_" in n and "optim" in n][0]
        for what, private in (("tokenizer.json 0600", None), ("optim rank 1 0600", optim1)):
            if private:
                os.chmod(os.path.join(root, tag, private), 0o600)
            p = zrun(["mount", root, mnt, "-o", "allow_other"], timeout=20)
            probs = crashed(p)
            if p.returncode or not is_mounted(mnt):
                probs.append("mount exit %d: %s" % (p.returncode, p.stderr[-400:]))
            else:
                reads = {}
                for n in ("tokenizer.json", "tokenizer_config.json", "model.safetensors"):
                    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                        "head", "-c", "16", os.path.join(mnt, n)],
                                       capture_output=True, text=True)
                    reads[n] = "Permission denied" in r.stderr if r.returncode else "read"
                want = {"tokenizer.json": True, "tokenizer_config.json": "read",
                        "model.safetensors": True if private else "read"}
                if reads != want:
                    probs.append("as nobody: %s, want %s (True: EACCES)" % (reads, want))
                unmount(mnt)
            tap.ok(not probs, "%s: %s: as nobody through allow_other, EACCES on what it makes, "
                   "the 0644 files read" % (label, what), "\n".join(probs))
    finally:
        if is_mounted(mnt):
            unmount(mnt)
        shutil.rmtree(top, ignore_errors=True)


def c_name_nul(ck):
    """A tensor name with a NUL byte (the pickle's string has a length;
    a C string would end at the NUL)."""
    rename_tensor(ck, PLACEHOLDER)
    bad = b"model.odd.bi\x00as"
    for n in ck.names:
        p = os.path.join(ck.tagdir, n)
        recs = read_records(p)
        recs = [(rn, d.replace(binunicode(PLACEHOLDER), binunicode(bad))
                 if rn.endswith("/data.pkl") else d) for rn, d in recs]
        write_pt(p, recs)
    return dict(name=at(ck.f("model", 0)),
                want="tensor name 'model.odd.bi\\x00as' contains a NUL byte: "
                "it cannot be served under a Hugging Face name")


def export_guard_cases(base, label):
    """export never writes into the checkpoint: not into CKPT/out, not
    through a bind mount of it, even with --force."""
    ck = Ck(base, label)
    bind = os.path.join(ck.case_dir, "bind")
    try:
        with open(os.path.join(ck.root, "config.json"), "w") as f:
            f.write('{"torch_dtype": "float32"}\n')
        before = snapshot(ck.root)
        inside = os.path.join(ck.root, "out")
        p = zrun(["export", ck.root, inside])
        probs = crashed(p)
        if p.returncode != 2:
            probs.append("exit %d, want 2" % p.returncode)
        probs += check_stderr(p.stderr, inside + "': ",
                              "lies inside the checkpoint folder ('%s'); export never writes "
                              "into a checkpoint" % ck.root)
        if os.path.exists(inside):
            probs.append("%s was created" % inside)
        tap.ok(not probs, "%s: export CKPT CKPT/out is refused, nothing created" % label,
               "\n".join(probs) + "\nstderr: " + p.stderr[-800:])
        os.mkdir(bind)
        r = subprocess.run(["mount", "--bind", ck.root, bind], capture_output=True, text=True)
        if r.returncode:
            tap.skip("%s: export through a bind mount of the checkpoint" % label,
                     "mount --bind failed: " + r.stderr.strip())
            return
        try:
            for target, frag in ((bind, "is the checkpoint folder ('%s'); export never writes "
                                  "into a checkpoint or over its sources" % ck.root),
                                 (os.path.join(bind, "sub"), "lies inside the checkpoint folder "
                                  "('%s'); export never writes into a checkpoint" % ck.root)):
                p = zrun(["export", "--force", ck.root, target])
                probs = crashed(p)
                if p.returncode != 2:
                    probs.append("exit %d, want 2" % p.returncode)
                probs += check_stderr(p.stderr, target + "': ", frag)
                tap.ok(not probs, "%s: export --force into %s of the checkpoint is refused"
                       % (label, "a bind mount" if target == bind else "a folder inside a bind mount"),
                       "\n".join(probs) + "\nstderr: " + p.stderr[-800:])
        finally:
            subprocess.run(["umount", bind], capture_output=True)
        d = snap_diff(before, snapshot(ck.root))
        tap.ok(not d, "%s: the checkpoint (its config.json too) is unchanged" % label, d)
    finally:
        if os.path.ismount(bind):
            subprocess.run(["umount", "-l", bind], capture_output=True)
        shutil.rmtree(ck.case_dir, ignore_errors=True)



# --------------------------------------------------------------------------

def main():
    try:
        z3 = generate("z3", "--stage", "3", "--ws", "2", "--seed", "1")
        z3b = generate("z3b", "--stage", "3", "--ws", "2", "--seed", "7", "--steps", "5")
        z3big = generate("z3big", "--stage", "3", "--ws", "2", "--hidden", "24")
        z2 = generate("z2", "--stage", "2", "--ws", "2", "--seed", "1")
        z2b = generate("z2b", "--stage", "2", "--ws", "2", "--seed", "7", "--steps", "5")
        z2big = generate("z2big", "--stage", "2", "--ws", "2", "--hidden", "24")
        z1 = generate("z1", "--stage", "1", "--ws", "2", "--seed", "1")
    except Exception as e:  # noqa: BLE001
        tap.ok(False, "generate checkpoints", e)
        tap.done()

    # controls: the untouched copies are good
    for lbl, b in (("gen z3", z3), ("gen z2", z2), ("gen z1", z1)):
        p = zrun(["inspect", b])
        tap.ok(p.returncode == 0, "%s: control: the untouched checkpoint inspects (exit 0)" % lbl,
               p.stderr[-800:])

    bases = [("gen z3", z3, True), ("gen z2", z2, False), ("gen z1", z1, False)]
    for rn in ("z3_ws2_fp32", "z2_ws2"):
        d = os.path.join(FIXTURES, rn)
        if os.path.isdir(d):
            bases.append(("real " + rn, d, False))
        else:
            tap.skip("real %s: bad-input cases" % rn, "fixture absent")

    mount_cases = {"optim rank 1 truncated in the record data",
                   "model rank 0 truncated in the central directory"}

    # 1. truncation at every boundary, model and optim files, every base
    for lbl, b, _ in bases:
        z3like = "z3" in lbl
        cs = trunc_cases("optim", 1) + trunc_cases("optim", 0)[:1] + trunc_cases("model", 0)
        if z3like:
            cs += trunc_cases("model", 1)[-3:]
        for name, fn in cs:
            run_case("%s: %s" % (lbl, name), b, fn,
                     do_mount=(lbl == "gen z3" and name in mount_cases))

    # 2. ranks, saves, tags, zip features, on every base
    for lbl, b, _ in bases:
        other = {"gen z3": z3b, "gen z2": z2b, "gen z1": None}.get(lbl)
        big = {"gen z3": z3big, "gen z2": z2big}.get(lbl)
        cs = [("missing optim rank file", c_missing_rank),
              ("extra optim rank file (rank 2 of 2)", c_extra_rank),
              ("latest names a missing tag", c_latest_missing_tag),
              ("no latest, two tag folders", c_no_latest_two_tags),
              ("latest holds junk bytes", c_latest_junk),
              ("latest holds a relative path with '/'", c_latest_slash),
              ("latest holds an absolute path", c_latest_abs),
              ("latest is empty", c_latest_empty),
              ("latest is a folder", c_latest_is_dir),
              ("deflated storage records", c_compressed),
              ("deflated data.pkl", c_compressed_pkl),
              ("encrypted flag", c_encrypted),
              ("record offset past the end (central directory)", c_offset_past),
              ("record size past the end (central directory)", c_size_past),
              ("record size 0xFFFFFFF0", c_size_huge),
              ("stored record with csize != usize", c_size_mismatch),
              ("no data.pkl record", c_no_data_pkl),
              ("storage record missing", c_missing_storage),
              ("storage record shorter than its numel", c_storage_short),
              ("tag folder without rank files", c_empty_tag),
              ("rank file is a folder", c_rank_is_dir),
              ("rank file is a symlink loop", c_rank_symlink_loop),
              ("optim rank 1 is a symlink to rank 0's", c_rank_symlinked),
              ("optim rank 1 is a hard link to rank 0's", c_rank_hardlinked),
              ("optim rank 1 is a byte copy of rank 0's", c_rank_byte_copy)]
        if "z3" not in lbl:
            cs.append(("optim ranks 0 and 1 swapped", c_ranks_swapped))
        if "z3" in lbl:
            cs.append(("missing model rank file", c_missing_model_rank))
        if lbl == "gen z3":
            cs.append(("rank file is a FIFO", c_rank_fifo))
        if other:
            cs.append(("optim rank 1 from another save", mixed("optim", other)))
            if "z3" in lbl:
                cs.append(("model rank 1 from another save", mixed("model", other)))
        if big:
            cs.append(("optim files of a bigger model", optim_from(big)))
        for name, fn in cs:
            run_case("%s: %s" % (lbl, name), b, fn,
                     do_mount=(lbl == "gen z3" and name in (
                         "missing optim rank file", "deflated storage records",
                         "optim rank 1 from another save", "no latest, two tag folders",
                         "optim rank 1 is a symlink to rank 0's",
                         "optim rank 1 is a byte copy of rank 0's")) or (
                         lbl == "gen z2" and name == "optim ranks 0 and 1 swapped"))

    # 3. hostile pickles, world sizes, shapes: generated bases (torch edits) and real ones
    for lbl, b, _ in bases:
        cs = [("pickle: 100000 nested EMPTY_LIST+APPEND",
               hostile(P_DEEP_LIST, DEEP_LIST_WANT)),
              ("pickle: 100000 nested MARK+TUPLE",
               hostile(P_DEEP_MARK, "pickle: MARK opens more than 1000 MARKs")),
              ("pickle: 100000 EMPTY_DICTs on the stack",
               hostile(P_DEEP_DICT, "pickle: EMPTY_DICT needs more than the 2648624 bytes of memory "
                       "a pickle of 100003 bytes may use (16 per byte)")),
              ("pickle: LONG_BINGET 0xFFFFFFF0",
               hostile(P_MEMO, "pickle: LONG_BINGET of memo index 4294967280 that was never stored")),
              ("pickle: BINGET of an unset memo slot",
               hostile(P_MEMO_BINGET, "pickle: BINGET of memo index 254 that was never stored")),
              # the call is built as inert data, and a top level that is
              # not a dict is refused before anything looks inside it
              ("pickle: GLOBAL os system + REDUCE (top level)",
               hostile(P_OS_SYSTEM, "the pickle holds a value of type object, not a dict")),
              ("pickle: BINUNICODE length 0xFFFFFFFF",
               hostile(P_UNICODE_HUGE, "pickle: BINUNICODE of 4294967295 bytes, but only 3 bytes are left")),
              ("pickle: BINBYTES8 length 2^62",
               hostile(P_BINBYTES8, "pickle: BINBYTES8 of 4611686018427387904 bytes, but only 3 bytes are left")),
              ("pickle: BINBYTES length 0xFFFFFFFF",
               hostile(P_BINBYTES, "pickle: BINBYTES of 4294967295 bytes, but only 3 bytes are left")),
              # 'P' (the zip magic's first byte) is PERSID
              ("pickle: not a pickle",
               hostile(P_NOT_A_PICKLE, "pickle: PERSID argument has no end of line (at byte 0)")),
              ("pickle: model data.pkl hostile (deep lists)",
               hostile(P_DEEP_LIST, DEEP_LIST_WANT, kind="model")),
              ("pickle: optim cut before STOP", c_pickle_truncated("optim", "before STOP")),
              ("pickle: model cut before STOP", c_pickle_truncated("model", "before STOP")),
              ("pickle: optim cut inside a string", c_pickle_truncated("optim", "in a string")),
              ("pickle: model cut inside a string", c_pickle_truncated("model", "in a string")),
              ("pickle: os.system object as an extra top-level key", c_pickle_system_in_dict),
              ("pickle: os.system object where a flat group tensor is", c_pickle_os_system_nested),
              ("shape [2**40, 2**40] in param_shapes", shape_overflow([2 ** 40, 2 ** 40])),
              ("shape [2**31, 2**31] (bytes overflow)", shape_overflow([2 ** 31, 2 ** 31])),
              ("shape [2**62, 4]", shape_overflow([2 ** 62, 4])),
              ("shape [-3, 5]", c_shape_negative),
              ("partition_count says 3 with 2 files", c_partition_count),
              ("last flat group 3 elements short", c_flat_short),
              ("first flat group 1000 elements long", c_flat_long)]
        for name, fn in cs:
            run_case("%s: %s" % (lbl, name), b, fn,
                     do_mount=(lbl == "gen z3" and name in (
                         "pickle: GLOBAL os system + REDUCE (top level)",
                         "pickle: 100000 nested EMPTY_LIST+APPEND",
                         "shape [2**40, 2**40] in param_shapes")))

    # 4. paths
    for name, fn in (("empty folder", c_empty_folder), ("nonexistent path", c_nonexistent),
                     ("a .pt file instead of a folder", c_file_not_folder),
                     ("a text file instead of a folder", c_text_file)):
        run_case("paths: " + name, z3, fn, do_mount=(name == "empty folder"))

    # 4b. rank identity, through export and verify too
    for lbl, b, fn in (("gen z3: optim rank 1 is a symlink to rank 0's", z3, c_rank_symlinked),
                       ("gen z3: optim rank 1 is a byte copy of rank 0's", z3, c_rank_byte_copy),
                       ("gen z2: optim ranks 0 and 1 swapped", z2, c_ranks_swapped),
                       ("gen z1: optim rank 1 is a hard link to rank 0's", z1, c_rank_hardlinked)):
        identity_other_commands(lbl, b, fn)

    # 5. unreadable files, as another user
    permission_cases(z3, "gen z3")
    permission_cases(z2, "gen z2")

    # 6. names with odd bytes
    for lbl, b in (("gen z3", z3), ("gen z2", z2)):
        for what, nm in (("a newline", "model.odd.bi\nas"), ("a double quote", 'model.odd."bias"'),
                         ("a backslash", "model.odd\\bias"),
                         ("non-ASCII UTF-8", "model.odd.bïas.权重.😀"),
                         ("a tab and DEL", "model.odd.b\tias\x7f")):
            odd_name_ok("%s: tensor name with %s" % (lbl, what), b, nm)
        run_case("%s: tensor name with invalid UTF-8" % lbl, b, c_name_invalid_utf8,
                 do_mount=(lbl == "gen z3"))

    # 7. the served folder's own attacks: links out, FIFOs, folders, broken
    # links, private files, a NUL in a name, export into the checkpoint
    for lbl, name, plant, frag in META_CASES:
        meta_case("gen z3: " + lbl, z3, name, plant, frag)
    private_files_case(z3, "gen z3")
    private_files_case(z2, "gen z2")
    for lbl, b in (("gen z3", z3), ("gen z2", z2)):
        run_case("%s: tensor name with a NUL byte" % lbl, b, c_name_nul, do_mount=(lbl == "gen z3"))
    export_guard_cases(z3, "gen z3")

    tap.ok(not os.path.exists(MARKER), "no pickle was ever executed (marker file absent)")
    left = [m for m in mounts() if m[1].startswith(WORK)]
    tap.ok(not left, "nothing left mounted under the test folder", left)


try:
    main()
finally:
    for m in mounts():
        if m[1].startswith(WORK):
            unmount(m[1])
    shutil.rmtree(WORK, ignore_errors=True)
tap.done()
