#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""core/safetensors.c against tests/ref/st_reference.py, byte for byte, over
hand-picked and a few hundred randomised cases (unicode and control
character names, every dtype zerofs knows, shapes with 0 and [], shard
limits), through build/tests/st_layout_tool. The headers and sizes are
also compared with what the real safetensors.torch.save_file writes
(safetensors from the client venv, tests/lib/zfclients.py; cases of more
than SAVE_FILE_MAX bytes of tensor data are not written). TAP on stdout.

Env: ZEROFS_BUILD (default ./build) locates the helper.
"""
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
sys.path.insert(0, os.path.join(HERE, "lib"))
import st_reference as ref  # noqa: E402
import zfclients  # noqa: E402

zfclients.require()

BUILD = os.environ.get("ZEROFS_BUILD", "./build")
TOOL = os.path.join(BUILD, "tests", "st_layout_tool")
DTYPES = ["BOOL", "U8", "I8", "I16", "F16", "BF16", "I32", "F32", "F64",
          "I64"]

n_tests = 0
n_failed = 0


def ok(cond, what, detail=None):
    global n_tests, n_failed
    n_tests += 1
    if not cond:
        n_failed += 1
    print("%sok %d - %s" % ("" if cond else "not ", n_tests, what))
    if not cond and detail:
        for line in str(detail).splitlines()[:40]:
            print("#   " + line)
    sys.stdout.flush()


def skip(what, why):
    global n_tests
    n_tests += 1
    print("ok %d - # SKIP %s: %s" % (n_tests, what, why))


def expected_lines(case):
    """What the tool must print for one case, from the reference."""
    def name(h):
        try:
            return bytes.fromhex(h).decode("utf-8")  # strict, as Rust's
        except UnicodeDecodeError:
            return None  # zerofs must refuse it

    tensors = [(name(t["name_hex"]), t["dtype"],
                [int(x) for x in t["shape"].split(",") if x != ""])
               for t in case["tensors"]]
    md = {"format": case["metadata"]} if case["metadata"] is not None \
        else None

    def layout(sel, tag):
        ts = [tensors[i] for i in sel]
        if any(t[0] is None for t in ts):
            return "error bad format"
        try:
            hdr, offs = ref.header_bytes(ts, md)
        except ValueError:
            return "error bad format"
        size = len(hdr) + sum(ref.nbytes(t[1], t[2]) for t in ts)
        return "%s %s %d%s" % (tag, hdr.hex(), size, "".join(
            " %d" % (len(hdr) + offs[t[0]][0]) for t in ts))

    if case["limit"] is None:
        return [layout(range(len(tensors)), "layout"), "end"]
    sizes = [ref.nbytes(t[1], t[2]) for t in tensors]
    shard_of = ref.plan_shards(sizes, int(case["limit"]))
    n = max(shard_of) + 1 if shard_of else 0
    lines = ["plan %d%s" % (n, "".join(" %d" % s for s in shard_of))]
    for k in range(n):
        sel = [i for i in range(len(tensors)) if shard_of[i] == k]
        lines.append(layout(sel, "shard " + ref.shard_name(k, n)))
    if n > 1:
        names = [t[0] for t in tensors]
        if None in names or len(set(names)) != len(names):
            lines.append("error bad format")
        else:
            wm = {t[0]: ref.shard_name(shard_of[i], n)
                  for i, t in enumerate(tensors)}
            lines.append("index " + ref.index_json(wm, sum(sizes))
                         .encode("ascii").hex())
    lines.append("end")
    return lines


def run_tool(cases):
    inp = "".join(json.dumps(c) + "\n" for c in cases)
    p = subprocess.run([TOOL], input=inp.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=600)
    if p.returncode != 0:
        raise RuntimeError("st_layout_tool exited %d: %s" %
                           (p.returncode, p.stderr.decode(errors="replace")))
    out = p.stdout.decode("ascii").split("\n")
    results, cur = [], []
    for line in out:
        if not line:
            continue
        cur.append(line)
        if line == "end":
            results.append(cur)
            cur = []
    return results


def mk(tensors, metadata="pt", limit=None):
    return {"metadata": metadata,
            "limit": None if limit is None else str(limit),
            "tensors": [{"name_hex": n.encode("utf-8").hex()
                         if isinstance(n, str) else n.hex(),
                         "dtype": d, "shape": ",".join(str(x) for x in s)}
                        for n, d, s in tensors]}


NAME_CHARS = (list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789._-/") +
              ['"', "\\", "\x01", "\x07", "\b", "\t", "\n", "\x0b", "\f",
               "\r", "\x1f", "\x7f", "\x80", "\xe9", "\u07ff", "\u0800",
               "\u20ac", "\u4e2d", "\ufffd", "\uffff", "\U00010000",
               "\U0001f600", "\U0010ffff", " ", ":", ",", "{", "}"])


# Byte sequences at the edges of UTF-8: the valid ones must pass, the rest
# (overlong, surrogate, past U+10FFFF, truncated, stray) must be refused.
UTF8_EDGES = [b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x9f\xbf",
              b"\xf0\x80\x80\x80", b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80",
              b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf5\x80\x80\x80", b"\x80",
              b"\xbf", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xfe", b"\xff",
              b"\xc3\x28", b"\xe2\x28\xa1",
              b"\xc2\x80", b"\xdf\xbf", b"\xe0\xa0\x80", b"\xed\x9f\xbf",
              b"\xee\x80\x80", b"\xef\xbf\xbf", b"\xf0\x90\x80\x80",
              b"\xf4\x8f\xbf\xbf"]


def rand_name(rng):
    k = rng.choice([0, 1, 2, 3, 5, 8, 12, 20])
    if rng.random() < 0.04:
        return b"w." + rng.choice(UTF8_EDGES) + b".x"
    if rng.random() < 0.5:  # realistic parameter names
        return "layer.%d.%s" % (rng.randrange(12), rng.choice(
            ["weight", "bias", "attn.q_proj.weight", "\xe9t\xe9"]))
    return "".join(rng.choice(NAME_CHARS) for _ in range(k))


def rand_case(rng):
    n = rng.choice([0, 1, 2, 3, 5, 8, 13, 30])
    names = set()
    tensors = []
    for _ in range(n):
        name = rand_name(rng)
        if name in names and rng.random() < 0.9:
            continue
        names.add(name)
        ndim = rng.choice([0, 1, 1, 2, 2, 3, 4])
        shape = [rng.choice([0, 1, 2, 3, 7, 64, 1000, 4097])
                 for _ in range(ndim)]
        tensors.append((name, rng.choice(DTYPES), shape))
    metadata = rng.choice(["pt", "pt", "pt", None, "t\xe9\"st\n"])
    limit = None
    if rng.random() < 0.7:
        total = sum(ref.nbytes(d, s) for _, d, s in tensors)
        limit = rng.choice([0, 1, 8, rng.randrange(total + 2),
                            total, total + 1, 2 ** 64 - 1])
    return mk(tensors, metadata, limit)


def fixed_cases():
    return [
        mk([("b", "F16", [2]), ("a", "F32", [1])]),
        mk([]),
        mk([], None),
        mk([("x", "F32", [])], None),
        mk([(d.lower(), d, [3]) for d in DTYPES]),
        mk([("z", "BF16", [2, 0, 3]), ("y", "BF16", [2, 3])]),
        mk([("caf\xe9", "F32", [1]), ("\U0001f600", "F16", [1]),
            ("q\"\\\x01\x7f", "U8", [1])], "pt", 4),
        mk([("a", "F32", [1]), ("a", "F16", [1])]),           # duplicate
        mk([(b"\xff\xfe", "F32", [1])]),                      # bad UTF-8
        mk([(b"\xed\xa0\x80", "F32", [1])]),                  # surrogate
        mk([("t%d" % i, "F32", [s]) for i, s in
            enumerate([6, 6, 2, 6, 2, 2])], "pt", 40),        # docstring
        mk([("a", "U8", [1]), ("b", "U8", [1]), ("big", "U8", [10]),
            ("c", "U8", [1])], "pt", 5),                      # oversized
        mk([("a", "U8", [3]), ("b", "U8", [4]), ("c", "U8", [3])], "pt",
           10),                                               # == limit
        mk([], "pt", 10),
    ]


def check_reference_escaping():
    # serde_json's escaping is what Python's json writes with
    # ensure_ascii=False: cross-check the reference on every name char.
    bad = [c for c in NAME_CHARS + [chr(i) for i in range(0x80)]
           if ref.serde_string(c) != json.dumps(c, ensure_ascii=False)]
    ok(not bad, "reference serde escaping == json.dumps(ensure_ascii="
       "False) on %d characters" % (len(NAME_CHARS) + 0x80), repr(bad))


def compare(cases, label):
    got = run_tool(cases)
    ok(len(got) == len(cases), "%s: tool answered %d of %d cases" %
       (label, len(got), len(cases)))
    bad = []
    for i, case in enumerate(cases):
        want = expected_lines(case)
        if i >= len(got) or got[i] != want:
            bad.append((case, want, got[i] if i < len(got) else None))
    detail = None
    if bad:
        case, want, have = bad[0]
        detail = "first mismatch, case %s\nwant %s\ngot  %s" % (
            json.dumps(case), want, have)
    ok(not bad, "%s: %d cases byte-exact with the reference (%d differ)"
       % (label, len(cases), len(bad)), detail)


TORCH_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8",
                "I16": "int16", "F16": "float16", "BF16": "bfloat16",
                "I32": "int32", "F32": "float32", "F64": "float64",
                "I64": "int64"}


SAVE_FILE_MAX = 32 << 20


def compare_real_safetensors(cases):
    import torch
    from safetensors.torch import save_file
    checked, big, bad = 0, 0, []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.safetensors")
        for case in cases:
            if case["limit"] is not None:
                continue
            try:
                tensors = [(bytes.fromhex(t["name_hex"]).decode("utf-8"),
                            t["dtype"], [int(x) for x in t["shape"]
                                         .split(",") if x])
                           for t in case["tensors"]]
            except UnicodeDecodeError:
                continue
            if len({t[0] for t in tensors}) != len(tensors):
                continue
            if sum(ref.nbytes(dt, s) for _, dt, s in tensors) > SAVE_FILE_MAX:
                big += 1
                continue
            sd = {n: torch.zeros(s, dtype=getattr(torch, TORCH_DTYPES[dt]))
                  for n, dt, s in tensors}
            md = None if case["metadata"] is None else {"format": case["metadata"]}
            save_file(sd, path, metadata=md)
            with open(path, "rb") as f:
                data = f.read()
            line = run_tool([case])[0][0]
            _, hexhdr, size = line.split(" ")[:3]
            hdr = bytes.fromhex(hexhdr)
            checked += 1
            if data[:len(hdr)] != hdr or len(data) != int(size):
                bad.append(case)
    ok(not bad and checked >= 50,
       "%d headers and sizes identical to safetensors.torch.save_file's "
       "(%d cases over %d MiB not written)" % (checked, big, SAVE_FILE_MAX >> 20),
       bad and json.dumps(bad[0]))


def main():
    if not os.access(TOOL, os.X_OK):
        ok(False, "helper %s is built (make %s)" % (TOOL, TOOL))
        print("1..%d" % n_tests)
        return 1
    check_reference_escaping()
    compare(fixed_cases(), "fixed cases")
    rng = random.Random(int(os.environ.get("ZEROFS_SEED", "120")))
    rand = [rand_case(rng) for _ in range(400)]
    compare(rand, "random cases (seed %s)" %
            os.environ.get("ZEROFS_SEED", "120"))
    compare_real_safetensors(fixed_cases() + rand)
    print("1..%d" % n_tests)
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
