#!/usr/bin/python3
"""Expected answers for a checkpoint + NAME.ref.json (real fixture or make_ckpt.py output).

Library (import with sys.path including tests/gen):
    ref = Ref("/path/NAME.ref.json" [, ckpt_dir])     # ckpt_dir default: <dir>/<root or NAME>
    ref.expected_tensor(name)        torch tensor a reader should serve for `name` (before dtype
                                     conversion): entries' tensor (NAME.ref.pt) when the name is in
                                     entries, else rebuilt from the checkpoint by reassemble.py
                                     (stage-1 frozen params, BF16_Optimizer); integer buffers native
    ref.expected_bytes(name, dtype)  little-endian bytes served for dtype in
                                     fp32 / bf16 / fp16 / native (native = the training dtype for
                                     floating tensors, own dtype for integer buffers)
    ref.expected_sha256(name, dtype) the same as a sha256 hex digest (from the ref hashes when
                                     they exist, computed otherwise; never materialises big zeros)
    served_tensors(ref, strip_prefix=None, dtype="native")
                                     list of dicts {name, source, shape, dtype, sha256} that a
                                     Hugging Face directory made from the checkpoint should hold:
                                     every live_state_dict tensor except tied aliases, names with
                                     strip_prefix removed (True = the ref's model.name_prefix);
                                     floating tensors in the served dtype, integer buffers in their
                                     own dtype (tests/gen/README.md, the serving rule)
    read_safetensors_dir(d)          {name: (dtype_str, shape, sha256)} of every *.safetensors in d
    compare_hf_dir(ref, d, dtype, strip_prefix) -> list of problems (empty = OK)

CLI:
    refcheck.py NAME.ref.json [--ckpt DIR] [--dtype native] [--strip-prefix [P]] [--hf-dir D]
                [--verify]
    prints the served tensor list; --hf-dir compares a safetensors directory with it;
    --verify checks NAME.ref.pt and reassemble.py against the ref hashes.
"""
import argparse
import collections
import hashlib
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reassemble  # noqa: E402

OD = collections.OrderedDict
DT = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DT_NAME = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
ST_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
            torch.int64: "I64", torch.int32: "I32", torch.bool: "BOOL", torch.uint8: "U8",
            torch.int8: "I8", torch.int16: "I16", torch.float64: "F64"}


def tdtype(s):
    """'torch.bfloat16' -> torch.bfloat16"""
    return getattr(torch, s.split(".", 1)[1])


def tensor_bytes(t):
    t = t.detach().contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def sha(t):
    return hashlib.sha256(tensor_bytes(t)).hexdigest()


def zeros_sha(nbytes):
    h = hashlib.sha256()
    chunk = bytes(min(nbytes, 64 << 20))
    left = nbytes
    while left > 0:
        k = min(left, len(chunk))
        h.update(chunk[:k])
        left -= k
    return h.hexdigest()


class Ref:
    def __init__(self, ref_json, ckpt_dir=None):
        self.ref_json = os.path.abspath(ref_json)
        self.dir = os.path.dirname(self.ref_json)
        with open(ref_json) as f:
            self.j = json.load(f)
        name = os.path.basename(ref_json)[: -len(".ref.json")]
        self.name = name
        self.ckpt_dir = ckpt_dir or os.path.join(self.dir, self.j.get("root", name))
        self.has_entries = "entries" in self.j
        ent = self.j.get("entries") or self.j.get("master_entries") or []
        self.entries = OD((e["name"], e) for e in ent)
        self.live = OD((e["name"], e) for e in self.j["live_state_dict"])
        self.aliases = dict(self.j.get("aliases") or {})
        self.buffer_names = list(self.j.get("buffer_names") or [])
        self.frozen_names = list(self.j.get("frozen_names") or [])
        self.train_dtype = self.j["train_dtype"]
        self.zero_stage = self.j["zero_stage"]
        self.world_size = self.j["world_size"]
        self.tag = self.j.get("tag")
        self.prefix = (self.j.get("model") or {}).get("name_prefix", "")
        self._refpt = None
        self._full = None

    # ---- sources ----------------------------------------------------------------------
    def ref_pt(self):
        if self._refpt is None:
            p = os.path.join(self.dir, self.name + ".ref.pt")
            self._refpt = torch.load(p) if os.path.exists(p) else {}
        return self._refpt

    def full_state(self):
        """Every live tensor rebuilt from the checkpoint files by reassemble.py."""
        if self._full is None:
            self._full = reassemble.Checkpoint(self.ckpt_dir).full_state()
        return self._full

    def is_big(self, name):
        e = self.entries.get(name) or self.live.get(name) or {}
        return bool(e.get("big_zero"))

    def is_integer(self, name):
        e = self.live[name]
        return not tdtype(e["dtype"]).is_floating_point

    def served_dtype(self, name, dtype):
        if self.is_integer(name):
            return tdtype(self.live[name]["dtype"])
        if dtype in ("native", "auto"):
            dtype = self.train_dtype
        return DT[dtype]

    def expected_tensor(self, name):
        if self.is_big(name):
            raise ValueError("%s is an all-zero big tensor; use expected_sha256" % name)
        if self.is_integer(name):
            return self.full_state()[name]
        src = self.aliases.get(name, name) if name not in self.entries else name
        if src in self.entries and src in self.ref_pt():
            return self.ref_pt()[src]
        return self.full_state()[name]

    def expected_bytes(self, name, dtype="native"):
        d = self.served_dtype(name, dtype)
        if self.is_big(name):
            n = self.live[name]["shape"]
            numel = 1
            for x in n:
                numel *= x
            return bytes(numel * torch.empty(0, dtype=d).element_size())
        return tensor_bytes(self.expected_tensor(name).to(d))

    def expected_sha256(self, name, dtype="native"):
        d = self.served_dtype(name, dtype)
        live = self.live.get(name)
        if self.is_integer(name):
            return live["sha256_native"]
        e = self.entries.get(name)
        if e is not None:
            return e["sha256_" + DT_NAME[d]]
        if live is not None and tdtype(live["dtype"]) == d:
            return live["sha256_native"]
        if live is not None and d == torch.float32 and self.has_entries:
            # only in live_state_dict (stage-1 frozen): its fp32 view is its .float()
            return live["sha256_fp32"]
        if self.is_big(name):
            numel = 1
            for x in live["shape"]:
                numel *= x
            return zeros_sha(numel * torch.empty(0, dtype=d).element_size())
        return sha(self.expected_tensor(name).to(d))

    # ---- self check -------------------------------------------------------------------
    def verify(self):
        """Check NAME.ref.pt and reassemble.py against the ref hashes. Returns problems."""
        bad = []
        pt = self.ref_pt()
        for n, e in self.entries.items():
            if e.get("big_zero"):
                continue
            if pt:
                t = pt.get(n)
                if t is None or sha(t.float()) != e["sha256_fp32"] or \
                        sha(t.to(torch.bfloat16)) != e["sha256_bf16"] or \
                        sha(t.to(torch.float16)) != e["sha256_fp16"]:
                    bad.append("ref.pt %s" % n)
        if os.path.isdir(self.ckpt_dir) and not any(e.get("big_zero") for e in self.live.values()):
            full = self.full_state()
            for n, e in self.live.items():
                t = full.get(n)
                if t is None or sha(t.to(tdtype(e["dtype"]))) != e["sha256_native"]:
                    bad.append("reassembled live %s" % n)
        return bad


def served_tensors(ref, strip_prefix=None, dtype="native"):
    if strip_prefix is True:
        strip_prefix = ref.prefix
    out = []
    for n, e in ref.live.items():
        if n in ref.aliases:
            continue
        sn = n[len(strip_prefix):] if strip_prefix and n.startswith(strip_prefix) else n
        d = ref.served_dtype(n, dtype)
        out.append({"name": sn, "source": n, "shape": list(e["shape"]), "dtype": str(d),
                    "safetensors_dtype": ST_DTYPE[d], "sha256": ref.expected_sha256(n, dtype)})
    return out


def read_safetensors_dir(d):
    """{name: (safetensors dtype, shape, sha256 of the data bytes)} of every *.safetensors."""
    res = {}
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".safetensors"):
            continue
        with open(os.path.join(d, fn), "rb") as f:
            (hl,) = struct.unpack("<Q", f.read(8))
            hdr = json.loads(f.read(hl))
            base = 8 + hl
            for k, v in hdr.items():
                if k == "__metadata__":
                    continue
                a, b = v["data_offsets"]
                f.seek(base + a)
                h = hashlib.sha256()
                left = b - a
                while left:
                    chunk = f.read(min(left, 64 << 20))
                    if not chunk:
                        raise IOError("%s: short read in %s" % (fn, k))
                    h.update(chunk)
                    left -= len(chunk)
                if k in res:
                    raise ValueError("tensor %s in two files" % k)
                res[k] = (v["dtype"], list(v["shape"]), h.hexdigest())
    return res


def compare_hf_dir(ref, d, dtype="native", strip_prefix=True):
    want = {t["name"]: t for t in served_tensors(ref, strip_prefix, dtype)}
    got = read_safetensors_dir(d)
    probs = []
    for n in sorted(set(want) - set(got)):
        probs.append("missing %s" % n)
    for n in sorted(set(got) - set(want)):
        probs.append("unexpected %s" % n)
    for n in sorted(set(want) & set(got)):
        w, g = want[n], got[n]
        if g[0] != w["safetensors_dtype"] or g[1] != w["shape"] or g[2] != w["sha256"]:
            probs.append("differs %s: got %s %s, want %s %s" % (n, g[0], g[1],
                                                               w["safetensors_dtype"], w["shape"]))
    return probs


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ref")
    ap.add_argument("--ckpt")
    ap.add_argument("--dtype", default="native", choices=("native", "fp32", "bf16", "fp16"))
    ap.add_argument("--strip-prefix", nargs="?", const=True, default=None)
    ap.add_argument("--hf-dir")
    ap.add_argument("--verify", action="store_true")
    a = ap.parse_args()
    ref = Ref(a.ref, a.ckpt)
    if a.verify:
        bad = ref.verify()
        print("%s: verify %s" % (ref.name, "OK" if not bad else bad))
        sys.exit(1 if bad else 0)
    if a.hf_dir:
        probs = compare_hf_dir(ref, a.hf_dir, a.dtype, a.strip_prefix)
        for p in probs:
            print(p)
        print("%s vs %s: %s" % (ref.name, a.hf_dir, "OK" if not probs else "%d problems" % len(probs)))
        sys.exit(1 if probs else 0)
    for t in served_tensors(ref, a.strip_prefix, a.dtype):
        print(t["name"], t["shape"], t["safetensors_dtype"], t["sha256"])


if __name__ == "__main__":
    main()
