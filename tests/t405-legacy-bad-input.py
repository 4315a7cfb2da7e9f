#!/usr/bin/python3
"""Bad checkpoints in torch's legacy (non-zip) serialization: five pickles
(magic number, protocol version, sys_info, the object, the sorted list of
storage keys), then one record per key (an 8-byte element count and the
elements), nothing that says where anything ends (core/ptlegacy.c,
man/zerofs-checkpoint.5). Each case is made in a fresh copy of a good
checkpoint that tests/gen/make_ckpt.py --legacy writes (ZeRO-2 and ZeRO-3,
2 ranks), and `zerofs inspect` (mount for a few) must

  * exit 3, never by a signal or with a sanitizer report;
  * print one line on stderr, "zerofs: '<the file>': <message>", naming
    the file that is bad and holding the one fragment that proves the
    check meant for the case fired (compared literally);
  * leave the checkpoint exactly as it was; mount leaves nothing mounted.

The cases: the file cut inside each of its parts (each pickle, a record's
header, a record's data, its last byte), a wrong magic number and protocol
version, record counts that disagree with the pickle, a key list naming a
storage the pickle does not use, naming one twice or leaving one out, a
key list that is no list, hostile lengths (a string of 4 GiB in the main
pickle, a storage of 2^40 and of 2^62 elements, 2^20 + 1 keys), a storage
class of unknown element size, bytes after the last record, a main pickle
that is no dict, torch's pre-0.4 tar format, and one rank's optimizer file
copied under another rank's name.
"""
import hashlib
import io
import os
import pickle
import pickletools
import shutil
import stat
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from zftest import ROOT, TMPROOT, ZEROFS, Tap  # noqa: E402
from zfmount import is_mounted, unmount  # noqa: E402

tap = Tap()
WORK = tempfile.mkdtemp(prefix="t405-", dir=TMPROOT)
GEN = os.path.join(ROOT, "tests", "gen", "make_ckpt.py")
TIMEOUT = 60

# Bytes per element of the storage classes the generator writes.
ELEM = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
        "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
        "ByteStorage": 1, "BoolStorage": 1}


# --------------------------------------------------------------------------
# the parts of a legacy file, found the way torch's own reader does

class _Any(dict):
    """Stands for every class and function a pickle names (never runs them)."""

    def __init__(self, *a, **k):
        pass

    def __setstate__(self, state):
        pass


def parts(b):
    """(ends of the five pickles, [(key, header offset, numel, element size)]
    in file order)."""
    f = io.BytesIO(b)
    ends = []
    for _ in range(5):
        for _op in pickletools.genops(f):
            pass
        ends.append(f.tell())
    keys = pickle.loads(b[ends[3]:ends[4]])
    sizes = {}

    class U(pickle.Unpickler):
        def find_class(self, mod, name):
            if mod == "collections":
                return getattr(__import__("collections"), name)
            return type(name, (_Any,), {})

        def persistent_load(self, pid):
            sizes[pid[2]] = (pid[4], ELEM[pid[1].__name__])

    U(io.BytesIO(b[ends[2]:ends[3]])).load()
    recs, off = [], ends[4]
    for k in keys:
        numel, es = sizes[k]
        recs.append((k, off, numel, es))
        off += 8 + numel * es
    assert off == len(b), "the records do not tile the file"
    return ends, recs


def keys_pickle(keys):
    return pickle.dumps(list(keys), protocol=2)


# --------------------------------------------------------------------------
# checkpoints and cases

def generate(name, *args):
    p = subprocess.run([sys.executable, GEN, "--out", WORK, "--name", name, "--legacy"]
                       + list(args), capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(p.stderr[-2000:])
    return os.path.join(WORK, name)


def snapshot(top):
    out = {}
    for dp, dn, fn in os.walk(top):
        for x in dn + fn:
            p = os.path.join(dp, x)
            st = os.lstat(p)
            h = ""
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    h = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(p, top)] = (stat.S_IMODE(st.st_mode), st.st_size, h)
    return out


def zrun(args):
    try:
        return subprocess.run([ZEROFS] + args, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 999, "", "TIMEOUT")


def problems(p, path, want):
    """What is wrong with a refusal: exit, signal, sanitizer, the line."""
    out = []
    if p.returncode != 3:
        out.append("exit %d, want 3" % p.returncode)
    for s in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "TIMEOUT"):
        if s in p.stderr:
            out.append("stderr has %r" % s)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    subject = "zerofs: '%s': " % path
    if len(lines) != 1 or not lines[0].startswith(subject):
        out.append("want one line starting %r" % subject)
    elif want not in lines[0][len(subject):]:
        out.append("the message lacks %r" % want)
    return out


def run_case(label, base, kind, craft, mount=False):
    """craft(path, bytes) -> (new bytes or None, the file the message is
    about, the fragment)."""
    case = tempfile.mkdtemp(prefix="case-", dir=WORK)
    root = os.path.join(case, "ckpt")
    shutil.copytree(base, root)
    tag = os.path.join(root, "global_step3")
    names = sorted(os.listdir(tag))
    path = os.path.join(tag, next(n for n in names if kind in n))
    with open(path, "rb") as f:
        b = f.read()
    try:
        new, about, want = craft(path, b)
    except Exception as e:  # noqa: BLE001
        tap.ok(False, "%s: crafting the case" % label, repr(e))
        return
    if new is not None:
        with open(path, "wb") as f:
            f.write(new)
    before = snapshot(case)
    p = zrun(["inspect", root])
    probs = problems(p, about, want)
    if snapshot(case) != before:
        probs.append("the checkpoint changed")
    tap.ok(not probs, "%s: inspect exits 3 naming the file: '%s'" % (label, want),
           "\n".join(probs) + "\nstderr: " + p.stderr[-1000:])
    if mount:
        mnt = os.path.join(case, "mnt")
        os.mkdir(mnt)
        p = zrun(["mount", root, mnt])
        was = is_mounted(mnt)
        if was:
            unmount(mnt)
        probs = problems(p, about, want)
        if was or os.listdir(mnt):
            probs.append("something was mounted")
        tap.ok(not probs, "%s: mount refuses, nothing mounted" % label,
               "\n".join(probs) + "\nstderr: " + p.stderr[-1000:])
    shutil.rmtree(case, ignore_errors=True)


def cut(where):
    """The file cut inside one of its parts."""
    def craft(path, b):
        ends, recs = parts(b)
        k1, h1, n1, e1 = recs[1]
        last_k, last_h, last_n, last_e = recs[-1]
        at = {
            "magic number pickle": (8, "magic number pickle (at byte 0): pickle: LONG1 of 10 "
                                       "bytes, but only 4 bytes are left (at byte 2)"),
            "protocol version pickle": (18, "protocol version pickle (at byte 15): pickle: "
                                            "input ends at byte 3 without STOP"),
            # the pickles cut before their STOP
            "sys_info pickle": (ends[2] - 1, "sys_info pickle (at byte %d): pickle: input ends "
                                             "at byte %d without STOP"
                                % (ends[1], ends[2] - 1 - ends[1])),
            "main pickle": (ends[3] - 1, "main pickle (at byte %d): pickle: input ends at byte "
                                         "%d without STOP" % (ends[2], ends[3] - 1 - ends[2])),
            "storage key list": (ends[4] - 1, "storage key list pickle (at byte %d): pickle: "
                                              "input ends at byte %d without STOP"
                                 % (ends[3], ends[4] - 1 - ends[3])),
            "a record's header": (h1 + 4, "the record of storage '%s' at byte %d: the file ends "
                                          "4 bytes into its 8-byte header" % (k1, h1)),
            "a record's data": (h1 + 100, "the record of storage '%s' at byte %d: %d elements of "
                                          "%d bytes run past the end of the file (%d bytes)"
                                % (k1, h1, n1, e1, h1 + 100)),
            "its last byte": (len(b) - 1, "the record of storage '%s' at byte %d: %d elements of "
                                          "%d bytes run past the end of the file (%d bytes)"
                              % (last_k, last_h, last_n, last_e, len(b) - 1)),
        }[where]
        return b[:at[0]], path, at[1]
    return craft


def c_magic(path, b):
    return b[:5] + bytes([b[5] ^ 1]) + b[6:], path, \
        "not a torch.save file: its first pickle holds a value of type object, not torch's magic number"


def c_version(path, b):
    assert b[15:21] == b"\x80\x02M\xe9\x03."
    return b[:18] + b"\xea" + b[19:], path, "protocol version 1002, torch writes and reads only 1001"


def c_count(delta):
    def craft(path, b):
        ends, recs = parts(b)
        k, h, n, e = recs[1]
        return b[:h] + struct.pack("<q", n + delta) + b[h + 8:], path, \
            "the record of storage '%s' at byte %d holds %d elements, the pickle says %d" \
            % (k, h, n + delta, n)
    return craft


def c_key_unused(path, b):
    ends, recs = parts(b)
    keys = sorted([r[0] for r in recs] + ["99999999999999"])
    return b[:ends[3]] + keys_pickle(keys) + b[ends[4]:], path, \
        "the storage key list names '99999999999999', which the main pickle does not use"


def c_key_twice(path, b):
    ends, recs = parts(b)
    keys = sorted([r[0] for r in recs] + [recs[0][0]])
    return b[:ends[3]] + keys_pickle(keys) + b[ends[4]:], path, \
        "the storage key list names storage '%s' twice" % recs[0][0]


def c_key_left_out(path, b):
    ends, recs = parts(b)
    k, h, n, e = recs[-1]
    return b[:ends[3]] + keys_pickle(r[0] for r in recs[:-1]) + b[ends[4]:h], path, \
        "storage '%s' of the main pickle has no record: the storage key list does not name it" % k


def c_keys_not_list(path, b):
    ends, recs = parts(b)
    return b[:ends[3]] + pickle.dumps({"a": 1}, protocol=2) + b[ends[4]:], path, \
        "the storage key list pickle (at byte %d) holds a value of type dict, not a list" % ends[3]


def c_keys_many(path, b):
    ends, recs = parts(b)
    return b[:ends[3]] + keys_pickle(str(i) for i in range((1 << 20) + 1)) + b[ends[4]:], path, \
        "the storage key list names 1048577 storages, more than the 1048576 zerofs reads"


def c_string_4gib(path, b):
    ends, recs = parts(b)
    return b[:ends[2]] + b"\x80\x02}X\xff\xff\xff\xffabc", path, \
        "main pickle (at byte %d): pickle: BINUNICODE of 4294967295 bytes, but only 3 bytes " \
        "are left (at byte 3)" % ends[2]


def c_numel(numel):
    """A storage whose pickle and record header both claim numel elements:
    the numel in the persistent id (BININT2 after the key and location)
    becomes a LONG1 of 8 bytes."""
    def craft(path, b):
        ends, recs = parts(b)
        k, h, n, e = recs[1]
        kb = b"X" + struct.pack("<I", len(k)) + k.encode()
        at = b.index(kb, ends[2], ends[3])
        old = b"M" + struct.pack("<H", n)
        num = b.index(old, at + len(kb), at + len(kb) + 8)
        new = b[:num] + b"\x8a\x08" + struct.pack("<q", numel) + b[num + len(old):]
        shift = len(new) - len(b)
        h += shift
        new = new[:h] + struct.pack("<q", numel) + new[h + 8:]
        return new, path, "the record of storage '%s' at byte %d: %d elements of %d bytes run " \
            "past the end of the file (%d bytes)" % (k, h, numel, e, len(new))
    return craft


def c_unknown_class(path, b):
    ends, recs = parts(b)
    at = b.index(b"ctorch\nFloatStorage\n", ends[2], ends[3])
    new = b[:at] + b"ctorch\nFloatStorag3\n" + b[at + 20:]
    return new, path, "storage '%s' is a FloatStorag3, whose element size zerofs does not " \
        "know, so the records after it cannot be found" % recs[0][0]


def c_trailing(path, b):
    return b + b"12345", path, "5 bytes follow the last storage record (at byte %d)" % len(b)


def c_not_dict(path, b):
    ends, recs = parts(b)
    return b[:ends[2]] + pickle.dumps([1, 2], protocol=2) + keys_pickle([]), path, \
        "the pickle holds a value of type list, not a dict"


def c_tar(path, b):
    head = bytearray(512)
    head[0:6] = b"pickle"
    head[257:262] = b"ustar"
    return bytes(head) + b, path, \
        "a tar archive: torch's format of before 0.4 (2018), which zerofs does not read"


def c_copy(path, b):
    other = path.replace("_rank_0_", "_rank_1_")
    shutil.copy(path, other)
    return None, other, "holds the same records as '%s' (keys, sizes and the bytes at each " \
        "record's ends): a copy of one rank's optimizer file under another rank's name" % path


def main():
    z2 = generate("lz2", "--stage", "2", "--ws", "2", "--tied")
    z3 = generate("lz3", "--stage", "3", "--ws", "2", "--dtype", "bf16", "--frozen")
    cases = [("cut inside the %s" % w, cut(w)) for w in (
        "magic number pickle", "protocol version pickle", "sys_info pickle", "main pickle",
        "storage key list", "a record's header", "a record's data", "its last byte")]
    cases += [("a wrong magic number", c_magic),
              ("protocol version 1002", c_version),
              ("a record header one element short", c_count(-1)),
              ("a record header of 2^62 elements", c_count(1 << 62)),
              ("the key list names a storage the pickle does not use", c_key_unused),
              ("the key list names a storage twice", c_key_twice),
              ("the key list leaves a storage out", c_key_left_out),
              ("the key list is a dict", c_keys_not_list),
              ("2^20 + 1 keys", c_keys_many),
              ("a string of 4 GiB in the main pickle", c_string_4gib),
              ("a storage of 2^40 elements", c_numel(1 << 40)),
              ("a storage of 2^62 elements (its bytes overflow)", c_numel(1 << 62)),
              ("a storage class of unknown element size", c_unknown_class),
              ("5 bytes after the last record", c_trailing),
              ("the main pickle is a list", c_not_dict),
              ("torch's pre-0.4 tar format", c_tar)]
    mounted_too = {"cut inside the main pickle", "a record header one element short",
                   "a storage of 2^62 elements (its bytes overflow)"}
    for lbl, base in (("legacy z2", z2), ("legacy z3", z3)):
        for kind in ("optim_states", "model_states"):
            for name, craft in cases:
                if kind == "model_states" and name not in (
                        "cut inside the main pickle", "cut inside a record's data",
                        "a record header one element short", "the key list leaves a storage out"):
                    continue
                run_case("%s %s: %s" % (lbl, kind, name), base, kind, craft,
                         mount=lbl == "legacy z2" and kind == "optim_states" and name in mounted_too)
        run_case("%s: optim rank 1 is a byte copy of rank 0's" % lbl, base, "rank_0_mp_rank_00_optim",
                 c_copy, mount=lbl == "legacy z2")


try:
    main()
finally:
    shutil.rmtree(WORK, ignore_errors=True)
tap.done()
