"""Shared bits of the Python tests: TAP output, where things are, and
reading tensor bytes by following the extents zerofs reports.

Every test prints TAP ("ok N - ...", "not ok N - ...", "ok N - ... # SKIP
why") and exits non-zero when a check failed; tests/run.sh counts them.
"""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZEROFS = os.environ.get("ZEROFS", os.path.join(ROOT, "zerofs"))
BUILD = os.environ.get("ZEROFS_BUILD", os.path.join(ROOT, "build"))
FIXTURES = os.environ.get("ZEROFS_FIXTURES",
                          os.path.join(ROOT, "..", "shared", "fixtures", "real"))
TMPROOT = os.environ.get("TMPROOT", "/tmp")


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, what, detail=None):
        self.n += 1
        if cond:
            print(f"ok {self.n} - {what}")
        else:
            self.failed += 1
            print(f"not ok {self.n} - {what}")
            if detail:
                for line in str(detail).splitlines()[:20]:
                    print(f"#   {line}")
        sys.stdout.flush()
        return cond

    def skip(self, what, why):
        self.n += 1
        print(f"ok {self.n} - {what} # SKIP {why}")

    def done(self):
        print(f"1..{self.n}")
        sys.exit(1 if self.failed else 0)


def fixtures():
    """(name, dir, ref) for every real fixture, or [] when absent."""
    if not os.path.isdir(FIXTURES):
        return []
    out = []
    for name in sorted(os.listdir(FIXTURES)):
        d = os.path.join(FIXTURES, name)
        ref = d + ".ref.json"
        if os.path.isdir(d) and os.path.exists(ref):
            with open(ref) as f:
                out.append((name, d, json.load(f)))
    return out


def run(args, **kw):
    """Runs zerofs with args; returns CompletedProcess (text)."""
    return subprocess.run([ZEROFS] + list(args), capture_output=True,
                          text=True, **kw)


def inspect_json(ckpt, *extra):
    p = run(["inspect", "--json", "--extents", ckpt] + list(extra))
    if p.returncode != 0:
        raise RuntimeError(f"zerofs inspect failed ({p.returncode}): {p.stderr}")
    return json.loads(p.stdout)


NP_DTYPES = {"float32": np.float32, "float16": np.float16,
             "bfloat16": np.uint16, "int64": np.int64, "float64": np.float64,
             "int32": np.int32, "int16": np.int16, "int8": np.int8,
             "uint8": np.uint8, "bool": np.bool_}


def read_extents(info, tensor):
    """The tensor's raw bytes, assembled from the source files by offset."""
    parts = []
    for src, off, length in tensor["extents"]:
        with open(info["files"][src]["path"], "rb") as f:
            f.seek(off)
            b = f.read(length)
            assert len(b) == length, "short read"
            parts.append(b)
    return b"".join(parts)


def to_f32(raw, dtype):
    """Raw little-endian bytes of dtype -> float32 array (exact widening;
    ints converted as torch .float() does)."""
    if dtype == "bfloat16":
        u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return u.view(np.float32)
    return np.frombuffer(raw, dtype=NP_DTYPES[dtype]).astype(np.float32)


def f32_to_bf16(a):
    """torch's round-to-nearest-even fp32 -> bf16 (c10 semantics)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    r[nan] = 0x7FC0
    return r


def sha(b):
    return hashlib.sha256(b).hexdigest()


# Checkpoints the tests make themselves, in the fixtures' format (dir +
# NAME.ref.json + NAME.ref.pt): they cover what the real ones cover, plus
# 0-element, 1-element and 0-dim tensors, and run where ../shared is absent.
GENERATED = [
    ("gen_z3_ws3_bf16", ["--stage", "3", "--ws", "3", "--dtype", "bf16", "--frozen", "--tied"]),
    ("gen_z2_ws2_fp16", ["--stage", "2", "--ws", "2", "--dtype", "fp16", "--tied"]),
    ("gen_z1_ws2_frozen", ["--stage", "1", "--ws", "2", "--frozen", "--tied"]),
    ("gen_bf16opt_ws2", ["--bf16-optimizer", "--ws", "2"]),
    ("gen_z3_ws2_prefix", ["--stage", "3", "--ws", "2", "--prefix", "llm."]),
]


def generated():
    """(name, dir, ref) for the GENERATED checkpoints, made once per test
    run under $TMPROOT (tests/run.sh shares it between tests)."""
    base = os.path.join(TMPROOT, "zftest-generated")
    os.makedirs(base, exist_ok=True)
    gen = os.path.join(ROOT, "tests", "gen", "make_ckpt.py")
    out = []
    for name, opts in GENERATED:
        ref = os.path.join(base, name + ".ref.json")
        if not os.path.exists(ref):
            p = subprocess.run([sys.executable, gen, "--out", base, "--name", name] + opts,
                               capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"make_ckpt {name}: {p.stderr[-2000:]}")
        with open(ref) as f:
            out.append((name, os.path.join(base, name), json.load(f)))
    return out


def checkpoints():
    """The real fixtures (when ../shared is there) and the generated set."""
    return fixtures() + generated()
