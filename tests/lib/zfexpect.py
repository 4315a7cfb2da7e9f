"""What a zerofs mount of a checkpoint with a NAME.ref.json (real fixture or
tests/gen/make_ckpt.py output) must serve, computed without zerofs.

Rule (tests/gen/README.md, refcheck.py): every live_state_dict tensor except the
tied aliases (XTuner's 'llm.' prefix removed); floating tensors in the served
dtype, hashing to entries' sha256_<dtype>; integer buffers in their own dtype
(live sha256_native). Names zero_to_fp32 has no answer for (stage-1 frozen
params, everything of a BF16_Optimizer checkpoint) come from the live model:
its own bytes when the served dtype is the live dtype, otherwise the tensor
rebuilt by tests/gen/reassemble.py (an independent reader written from
man/zerofs-checkpoint.5, PLACEMENT) after checking that it reproduces the
live sha256_native, then cast with torch's .to(dtype).
"""
import collections
import hashlib
import os
import sys

import torch

from zftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "gen"))

OD = collections.OrderedDict
SERVED = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
TORCH = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
         "int64": torch.int64, "float64": torch.float64, "int32": torch.int32,
         "bool": torch.bool, "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16}
ST_DTYPE = {"float32": "F32", "bfloat16": "BF16", "float16": "F16", "int64": "I64",
            "float64": "F64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
            "bool": "BOOL"}
FLOATS = {"float32", "bfloat16", "float16", "float64"}


def tbytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.numpy().tobytes()


def sha(b):
    return hashlib.sha256(b).hexdigest()


def prefix_of(ref):
    """The prefix zerofs removes without asking ('llm.' when every name has it)."""
    names = [e["name"] for e in ref["live_state_dict"]]
    if names and all(n.startswith("llm.") for n in names):
        return "llm."
    return ""


def ldtype(e):
    return e["dtype"].replace("torch.", "")


class Expect:
    """Expectations for one checkpoint.

    names            served tensor names (prefix removed), state-dict order
    served_dtype(n, served)  -> torch dtype name of the served tensor
    sha(n, served)   -> sha256 hex the served bytes must have
    tensor(n, served) -> torch tensor in the served dtype (for building
                        files), from NAME.ref.pt when it has the name
    """

    def __init__(self, ckpt, ref, ref_pt=None, strip=None):
        self.ckpt = ckpt
        self.ref = ref
        self.ref_pt_path = ref_pt
        self.strip = prefix_of(ref) if strip is None else strip
        self.aliases = ref.get("aliases") or {}
        self.entries = {e["name"]: e for e in (ref.get("entries") or [])}
        self.live = OD((e["name"], e) for e in ref["live_state_dict"])
        self.train = SERVED[ref["train_dtype"]]
        self.orig = OD()  # served name -> original name
        for n in self.live:
            if n in self.aliases:
                continue
            s = n[len(self.strip):] if self.strip and n.startswith(self.strip) else n
            self.orig[s] = n
        self.names = list(self.orig)
        self._ck = None
        self._full = None
        self._pt = None
        self.problems = []  # reference inconsistencies found while computing

    def served_name(self, orig):
        return orig[len(self.strip):] if self.strip and orig.startswith(self.strip) else orig

    def resolve(self, served):
        return self.train if served in (None, "auto") else SERVED.get(served, served)

    def served_dtype(self, n, served):
        ld = ldtype(self.live[self.orig[n]])
        if ld not in FLOATS:
            return ld
        return self.resolve(served)

    def shape(self, n):
        return list(self.live[self.orig[n]]["shape"])

    def nbytes(self, n, served):
        k = 1
        for d in self.shape(n):
            k *= d
        return k * torch.tensor([], dtype=TORCH[self.served_dtype(n, served)]).element_size()

    # -- sources ---------------------------------------------------------------
    def full_state(self):
        """reassemble.py's every-live-tensor reconstruction (lazy)."""
        if self._full is None:
            import reassemble  # noqa: E402
            self._ck = reassemble.Checkpoint(self.ckpt)
            self._full = self._ck.full_state()
        return self._full

    def ref_pt(self):
        if self._pt is None:
            self._pt = {}
            if self.ref_pt_path and os.path.exists(self.ref_pt_path):
                self._pt = torch.load(self.ref_pt_path)
        return self._pt

    def live_checked(self, orig):
        """reassemble's tensor for orig, after checking it reproduces the live
        model's own bytes; None (and a problem noted) otherwise."""
        le = self.live[orig]
        t = self.full_state().get(orig)
        if t is None:
            self.problems.append("%s: reassemble has no tensor" % orig)
            return None
        if sha(tbytes(t.to(TORCH[ldtype(le)]))) != le["sha256_native"]:
            self.problems.append("%s: reassembled tensor does not reproduce the live bytes" % orig)
            return None
        return t

    def sha(self, n, served):
        """sha256 the served bytes of n must have."""
        orig = self.orig[n]
        le = self.live[orig]
        dt = self.served_dtype(n, served)
        ld = ldtype(le)
        if ld not in FLOATS or dt == ld and orig not in self.entries:
            return le["sha256_native"]
        key = {"float32": "sha256_fp32", "bfloat16": "sha256_bf16", "float16": "sha256_fp16"}[dt]
        e = self.entries.get(orig)
        if e is not None and e.get(key):
            return e[key]
        if dt == ld:
            return le["sha256_native"]
        t = self.live_checked(orig)
        if t is None:
            return None
        return sha(tbytes(t.to(TORCH[dt])))

    def tensor(self, n, served):
        """The served tensor itself (dtype = served_dtype), built from
        NAME.ref.pt (zero_to_fp32's answer) or, when it lacks the name, from
        the checked live reconstruction. Its bytes are checked against sha()."""
        orig = self.orig[n]
        dt = self.served_dtype(n, served)
        pt = self.ref_pt()
        src = pt.get(orig)
        if src is None:
            src = self.live_checked(orig)
            if src is None:
                raise KeyError("no reference tensor for %s" % orig)
        t = src.to(TORCH[dt]).reshape(self.shape(n)).contiguous()
        want = self.sha(n, served)
        if sha(tbytes(t)) != want:
            raise ValueError("%s: reference tensor (%s) does not hash to the reference sha256 as %s"
                             % (orig, "ref.pt" if orig in pt else "live", dt))
        return t
