#!/usr/bin/python3
"""Seed corpora for the libFuzzer harnesses in tests/fuzz/.

  make_seeds.py                       regenerate tests/fuzz/seeds/ (committed):
                                      tiny checkpoints from tests/gen/make_ckpt.py
                                      and small pickles from torch.save / pickle
  make_seeds.py --fixtures DIR --out OUT
                                      seeds made from the real fixtures, into OUT
                                      (tests/fuzz/run.sh does this at fuzz time:
                                      fixtures are never copied into the project)

Each OUT has pickle/ (data.pkl bytes), ptfile/ (whole .pt files), ptlegacy/
(whole .pt files in torch's legacy format, _use_new_zipfile_serialization=False),
container/ (.pt files of both formats, rank files of checkpoints in each) and ckpt/
(checkpoints packed in the format fuzz_ckpt.c reads: a flags byte, then the
slots latest, model 0, optim 0, model 1, optim 1, config.json, each a u32le
length and its bytes, 0xffffffff for no file).

Run with /usr/bin/python3 (torch).
"""
import argparse
import collections
import hashlib
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_CKPT = os.path.join(HERE, "..", "gen", "make_ckpt.py")
ABSENT = 0xFFFFFFFF
MAX_LEN = {"pickle": 131072, "ptfile": 262144, "ptlegacy": 262144, "container": 262144,
           "ckpt": 655360}  # as in run.sh


def put(out, harness, data, name):
    if len(data) > MAX_LEN[harness]:
        return
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    h = hashlib.sha1(data).hexdigest()[:12]
    if any(f.endswith("-" + h) for f in os.listdir(d)):
        return
    with open(os.path.join(d, "%s-%s" % (name, h)), "wb") as f:
        f.write(data)


def data_pkl(pt_path):
    with zipfile.ZipFile(pt_path) as z:
        for n in z.namelist():
            if n.endswith("/data.pkl"):
                return z.read(n)
    raise SystemExit("%s: no data.pkl" % pt_path)


def pack_ckpt(save_dir, flags=0):
    """Packs a save folder (latest + global_step3/) into fuzz_ckpt's format;
    None when its files do not fit the slots."""
    with open(os.path.join(save_dir, "latest"), "rb") as f:
        latest = f.read()
    tag = os.path.join(save_dir, latest.decode().strip())
    names = sorted(os.listdir(tag))
    bf16 = any(n.startswith("bf16_") for n in names)
    z3 = "mp_rank_00_model_states.pt" not in names
    opt = ("bf16_" if bf16 else "") + "zero_pp_rank_%d_mp_rank_00_optim_states.pt"
    model3 = "zero_pp_rank_%d_mp_rank_00_model_states.pt"
    slots = [os.path.join(save_dir, "latest")]
    slots += [os.path.join(tag, model3 % 0 if z3 else "mp_rank_00_model_states.pt"),
              os.path.join(tag, opt % 0),
              os.path.join(tag, model3 % 1) if z3 else None,
              os.path.join(tag, opt % 1),
              os.path.join(save_dir, "config.json")]
    known = {os.path.basename(s) for s in slots[1:5] if s}
    if set(names) - known - {"zero_to_fp32.py"} or not latest.startswith(b"global_step3"):
        return None
    layout = (2 if z3 else 0) + (1 if bf16 else 0)
    buf = bytearray([layout | flags])
    for s in slots:
        if s and os.path.exists(s):
            with open(s, "rb") as f:
                b = f.read()
            buf += struct.pack("<I", len(b)) + b
        else:
            buf += struct.pack("<I", ABSENT)
    return bytes(buf)


def from_fixtures(fixtures, out):
    seen = set()
    for ck in sorted(os.listdir(fixtures)):
        save = os.path.join(fixtures, ck)
        tag = os.path.join(save, "global_step3")
        if not os.path.isdir(tag):
            continue
        for n in sorted(os.listdir(tag)):
            p = os.path.join(tag, n)
            pk = data_pkl(p)
            if pk not in seen:
                seen.add(pk)
                put(out, "pickle", pk, "fx-%s-%s" % (ck, n[:-3]))
            if os.path.getsize(p) <= 80 * 1024:
                with open(p, "rb") as f:
                    b = f.read()
                put(out, "ptfile", b, "fx-%s-%s" % (ck, n[:-3]))
                put(out, "container", b, "fx-%s-%s" % (ck, n[:-3]))
        packed = pack_ckpt(save)
        if packed:
            put(out, "ckpt", packed, "fx-" + ck)
    # The field fixtures in torch's legacy format, beside the real ones.
    field = os.path.join(fixtures, "..", "field")
    for ck in sorted(os.listdir(field)) if os.path.isdir(field) else []:
        tag = os.path.join(field, ck, "global_step3")
        if "legacy" not in ck or not os.path.isdir(tag):
            continue
        for n in sorted(os.listdir(tag)):
            with open(os.path.join(tag, n), "rb") as f:
                b = f.read()
            put(out, "ptlegacy", b, "fx-%s-%s" % (ck, n[:-3]))
            put(out, "container", b, "fx-%s-%s" % (ck, n[:-3]))


# --- committed seeds, generated here -----------------------------------------

TINY = ["--hidden", "4", "--intermediate", "5", "--vocab", "7", "--max-pos", "4",
        "--layers", "1"]
CKPTS = [  # name, make_ckpt.py options, fuzz_ckpt flags (dtype, shard size)
    ("z3ws2", ["--stage", "3", "--ws", "2"], 0),
    ("z3ws1-edge", ["--stage", "3", "--ws", "1", "--tied"], 0x10),
    ("z3ws2-bf16-frozen", ["--stage", "3", "--ws", "2", "--dtype", "bf16", "--frozen"], 0x04),
    ("z3ws2-subgroups", ["--stage", "3", "--ws", "2", "--sub-group-size", "16",
                         "--span-subgroups", "--no-edge"], 0x20),
    ("z2ws2-fp16", ["--stage", "2", "--ws", "2", "--dtype", "fp16", "--no-odd"], 0x08),
    ("z1ws2-bf16opt", ["--bf16-optimizer", "--ws", "2", "--prefix", "llm."], 0x0c),
    ("z2ws2-trainer", ["--stage", "2", "--ws", "2", "--layout", "trainer", "--tied"], 0x30),
    # torch's legacy format, as DeepSpeed >= 0.17 writes it without checkpoint_serialization
    ("z2ws2-legacy", ["--stage", "2", "--ws", "2", "--tied", "--legacy"], 0),
    ("z3ws2-bf16-legacy", ["--stage", "3", "--ws", "2", "--dtype", "bf16", "--frozen",
                           "--legacy"], 0x04),
]


def small_pickles():
    """Pickles torch.save writes (protocol 2) and the stdlib at protocols 2-5."""
    import torch
    od = collections.OrderedDict
    vals = {
        "state-dict": od([("a.weight", torch.arange(6, dtype=torch.float32).reshape(2, 3)),
                          ("a.bias", torch.zeros(3, dtype=torch.bfloat16)),
                          ("b", torch.ones(2, 2, dtype=torch.float16).t()),
                          ("i", torch.tensor([1, 2], dtype=torch.int64)),
                          ("scalar", torch.tensor(3.5))]),
        "param": {"p": torch.nn.Parameter(torch.ones(2)), "shared": None},
        "misc": {0: {"step": 3, "exp_avg": torch.zeros(4)}, 1: [1.5, -2, 2 ** 70, -(2 ** 40)],
                 "s": {1, 2}, "fs": frozenset(["x"]), "b": b"\x00\xff", "t": (None, True, False),
                 "u": "h\u00e9llo", "dtype": torch.bfloat16, "size": torch.Size([2, 3])},
    }
    for name, v in vals.items():
        buf = io.BytesIO()
        torch.save(v, buf)
        buf.seek(0)
        with zipfile.ZipFile(buf) as z:
            pk = [z.read(n) for n in z.namelist() if n.endswith("/data.pkl")][0]
        yield "torch-" + name, pk, buf.getvalue()
    plain = {"l": [1, [2, [3]], (4,)], "d": {"k": "v" * 300, 7: 2.0 ** -3},
             "big": [2 ** 31, 2 ** 63, -(2 ** 63) - 1, 10 ** 30], "bytes": bytearray(b"ab")}
    for proto in (2, 3, 4, 5):
        yield "py-p%d" % proto, pickle.dumps(plain, protocol=proto), None


def legacy_files():
    """Files in torch's legacy format (what DeepSpeed >= 0.17 writes with
    "checkpoint_serialization": false)."""
    import torch
    od = collections.OrderedDict
    w = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    vals = {
        "state-dict": od([("w", w), ("v", w[1]), ("b", torch.ones(3, dtype=torch.bfloat16)),
                          ("e", torch.empty(0)), ("i", torch.arange(4)),
                          ("s", torch.tensor(2.5))]),
        "no-tensors": {"ds_version": "0.18.9", "global_steps": 3},
        "misc": {0: {"step": 3, "exp_avg": torch.zeros(4)}, "size": torch.Size([2, 3]),
                 "h": torch.ones(2, 2, dtype=torch.float16).t()},
    }
    for name, v in vals.items():
        buf = io.BytesIO()
        torch.save(v, buf, _use_new_zipfile_serialization=False)
        yield "torch-legacy-" + name, buf.getvalue()


def generate(out, only=None):
    for h in MAX_LEN:
        if only in (None, h):
            shutil.rmtree(os.path.join(out, h), ignore_errors=True)
    if only == "ptlegacy":
        for name, data in legacy_files():
            put(out, "ptlegacy", data, name)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, opts, flags in CKPTS:
            subprocess.run([sys.executable, MAKE_CKPT, "--out", tmp, "--name", name] + TINY + opts,
                           check=True, stdout=subprocess.DEVNULL)
            save = os.path.join(tmp, name)
            packed = pack_ckpt(save, flags)
            if packed is None:
                raise SystemExit("%s: files do not fit fuzz_ckpt's slots" % name)
            put(out, "ckpt", packed, "gen-" + name)
            tag = os.path.join(save, "global_step3")
            for n in sorted(os.listdir(tag)):
                if not n.endswith(".pt"):
                    continue
                p = os.path.join(tag, n)
                with open(p, "rb") as f:
                    b = f.read()
                put(out, "container", b, "gen-%s-%s" % (name, n[:-3]))
                if "legacy" in name:
                    put(out, "ptlegacy", b, "gen-%s-%s" % (name, n[:-3]))
                    continue
                put(out, "pickle", data_pkl(p), "gen-%s-%s" % (name, n[:-3]))
                put(out, "ptfile", b, "gen-%s-%s" % (name, n[:-3]))
        for name, pk, pt in small_pickles():
            put(out, "pickle", pk, name)
            if pt:
                put(out, "ptfile", pt, name)
                put(out, "container", pt, name)
        for name, data in legacy_files():
            put(out, "ptlegacy", data, name)
            put(out, "container", data, name)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", help="the real fixtures (shared/fixtures/real)")
    ap.add_argument("--out", default=os.path.join(HERE, "seeds"))
    ap.add_argument("--only", choices=sorted(MAX_LEN),
                    help="regenerate the committed seeds of one harness only")
    a = ap.parse_args()
    if a.fixtures:
        from_fixtures(a.fixtures, a.out)
    else:
        generate(a.out, a.only)
    for h in MAX_LEN:
        d = os.path.join(a.out, h)
        n = len(os.listdir(d)) if os.path.isdir(d) else 0
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)) if n else 0
        print("%s: %d seeds, %d bytes" % (h, n, size))


if __name__ == "__main__":
    main()
