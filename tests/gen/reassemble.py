#!/usr/bin/python3
"""Independent mini zero_to_fp32, written from the rules of man/zerofs-checkpoint.5, PLACEMENT
("ZeRO-3 parameters", "ZeRO-1/2 parameters", "ZeRO-3 frozen parameters"), not from DeepSpeed's
code or zerofs' C code. Loads the .pt files with torch (no DeepSpeed needed: unknown classes are
replaced by opaque stand-ins) and rebuilds the tensors.

Library:
    load_pt(path)                       -> object (torch.load with a permissive unpickler)
    find_tag_dir(path)                  -> the folder holding the *_states.pt files
    Checkpoint(path)                    -> .stage, .world_size, .bf16_optimizer, ...
        .zero_to_fp32(allow_bf16_optimizer=False) -> OrderedDict name -> tensor, kinds
              (zero_to_fp32 order and dtypes: buffers .float(), frozen in stored dtype,
               params fp32 master, aliases whose source exists)
        .full_state(), served(): every live tensor (model order = module order), params from
              the fp32 master, frozen params from the fragments or (stage 1) from module,
              buffers native; aliases included (see .aliases)
CLI:
    reassemble.py CKPT [--ref NAME.ref.json] [--allow-bf16-optimizer]
        prints one line per tensor; with --ref compares sha256_fp32 of every entry.
"""
import argparse
import collections
import glob
import hashlib
import json
import os
import pickle
import re
import sys
import types

import torch

OD = collections.OrderedDict
ZERO_STAGE_NAMES = {"disabled": 0, "optimizer_states": 1, "gradients": 2, "weights": 3}


# ---------------------------------------------------------------------------------------
# permissive loading
# ---------------------------------------------------------------------------------------
class _Opaque:
    """Stand-in for any class that cannot be imported (DeepSpeed, mmengine, ...)."""

    def __init__(self, *args, **kw):
        self._args = args

    def __setstate__(self, st):
        if isinstance(st, dict):
            self.__dict__.update(st)
        else:
            self._state = st

    def __repr__(self):
        return "<%s %r>" % (type(self).__qualname__, self.__dict__)


class _EnumMember:
    def __init__(self, cls, name=None, value=None):
        self.cls, self.name, self.value = cls, name, value
        if value is None and name in ZERO_STAGE_NAMES:
            self.value = ZERO_STAGE_NAMES[name]
        if name is None and value is not None:
            for k, v in ZERO_STAGE_NAMES.items():
                if v == value:
                    self.name = k

    def __int__(self):
        return int(self.value)

    def __repr__(self):
        return "%s.%s" % (self.cls, self.name)


class _OpaqueMeta(type):
    def __getattr__(cls, name):  # getattr(ZeroStageEnum, 'weights') (Python 3.11 enum pickling)
        if name.startswith("__"):
            raise AttributeError(name)
        return _EnumMember(cls.__name__, name=name)


def _opaque_class(mod, name):
    def new(cls, *args, **kw):
        if cls.__name__ == "ZeroStageEnum" and len(args) == 1 and isinstance(args[0], int):
            return _EnumMember("ZeroStageEnum", value=args[0])
        return object.__new__(cls)
    return _OpaqueMeta(name, (_Opaque,), {"__module__": mod, "__new__": new})


class _Unpickler(pickle.Unpickler):
    def find_class(self, mod, name):
        try:
            return super().find_class(mod, name)
        except Exception:
            return _opaque_class(mod, name)


_pickle_module = types.ModuleType("pickle")
_pickle_module.__dict__.update({k: v for k, v in pickle.__dict__.items() if not k.startswith("__")})
_pickle_module.Unpickler = _Unpickler


def load_pt(path):
    # Debian's torch 1.13 torch.load ignores pickle_module= (it always resets it to `pickle`),
    # so swap the module torch.serialization sees while loading.
    import torch.serialization as ser
    saved = ser.pickle
    ser.pickle = _pickle_module
    try:
        return torch.load(path, map_location="cpu", pickle_module=_pickle_module)
    finally:
        ser.pickle = saved


def natural_key(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def find_tag_dir(path):
    if glob.glob(os.path.join(path, "*_model_states.pt")):
        return path
    latest = os.path.join(path, "latest")
    if os.path.isfile(latest):
        with open(latest) as f:
            return os.path.join(path, f.read().strip())
    subs = [d for d in sorted(os.listdir(path))
            if glob.glob(os.path.join(path, d, "*_model_states.pt"))]
    if len(subs) == 1:
        return os.path.join(path, subs[0])
    raise SystemExit("%s: cannot find the tag folder (%s)" % (path, subs))


def _stage_of(v):
    if v is None:
        return None
    if isinstance(v, _EnumMember):
        return int(v.value)
    return int(v)


# ---------------------------------------------------------------------------------------
class Checkpoint:
    def __init__(self, path):
        self.tag_dir = find_tag_dir(path)
        self.optim_files = sorted(glob.glob(os.path.join(self.tag_dir, "*_optim_states.pt")),
                                  key=natural_key)
        self.model_files = sorted(glob.glob(os.path.join(self.tag_dir, "*_model_states.pt")),
                                  key=natural_key)
        self.optims = [load_pt(f)["optimizer_state_dict"] for f in self.optim_files]
        self.models = [load_pt(f) for f in self.model_files]
        o0 = self.optims[0]
        self.bf16_optimizer = "zero_stage" not in o0
        self.stage = _stage_of(o0.get("zero_stage"))
        if self.stage is None:
            self.stage = 1  # BF16_Optimizer runs with ZeRO-1
        pc = o0["partition_count"]
        self.world_size = max(pc) if isinstance(pc, (list, tuple)) else int(pc)
        assert self.world_size == len(self.optim_files), (self.world_size, self.optim_files)
        m0 = self.models[0]
        self.module = m0["module"]
        self.buffer_names = list(m0["buffer_names"])
        self.param_shapes = m0["param_shapes"]
        self.frozen_shapes = m0.get("frozen_param_shapes") or OD()
        self.aliases = OD(m0.get("shared_params") or {})

    # fp32 trainable params
    def trainable(self):
        ws = self.world_size
        out = OD()
        if self.stage == 3:
            flats = [torch.cat([t.reshape(-1) for t in o["fp32_flat_groups"]]) if
                     o["fp32_flat_groups"] else torch.zeros(0) for o in self.optims]
            off = 0
            for shapes in self.param_shapes:
                for name, shape in shapes.items():
                    n = 1
                    for d in shape:
                        n *= d
                    p = -(-n // ws)
                    full = torch.cat([flats[r][off:off + p] for r in range(ws)])[:n]
                    out[name] = full.reshape(tuple(shape)).clone()
                    off += p
            for r in range(ws):
                assert off == flats[r].numel(), (off, flats[r].numel())
        else:
            key = "single_partition_of_fp32_groups"
            ngroups = len(self.optims[0][key])
            for gi in range(ngroups):
                full = torch.cat([o[key][gi].reshape(-1) for o in self.optims])
                off = 0
                for name, shape in self.param_shapes[gi].items():
                    n = 1
                    for d in shape:
                        n *= d
                    out[name] = full[off:off + n].reshape(tuple(shape)).clone()
                    off += n
                assert off <= full.numel()
        return out

    def frozen(self):
        """Frozen params as zero_to_fp32 would return them (stage 2/3 only)."""
        out = OD()
        for name, shape in self.frozen_shapes.items():
            n = 1
            for d in shape:
                n *= d
            if self.stage == 3:
                full = torch.cat([m["frozen_param_fragments"][name].reshape(-1)
                                  for m in self.models])[:n]
            else:
                full = self.models[0]["frozen_param_fragments"][name].reshape(-1)[:n]
            out[name] = full.reshape(tuple(shape)).clone()
        return out

    def zero_to_fp32(self, allow_bf16_optimizer=False):
        if self.bf16_optimizer and not allow_bf16_optimizer:
            raise ValueError("BF16_Optimizer checkpoint (no zero_stage): zero_to_fp32 rejects it")
        out, kinds = OD(), OD()
        for n in self.buffer_names:
            out[n] = self.module[n].float()
            kinds[n] = "buffer"
        for n, t in self.frozen().items():
            out[n] = t
            kinds[n] = "frozen"
        for n, t in self.trainable().items():
            out[n] = t
            kinds[n] = "param"
        for al, src in self.aliases.items():
            if src in out:
                out[al] = out[src]
                kinds[al] = "alias"
        return out, kinds

    def full_state(self):
        """Every tensor of module, in module order: buffers native, trainable params fp32
        master, frozen params in stored dtype (fragments, or module for stage 1)."""
        z, _ = self.zero_to_fp32(allow_bf16_optimizer=True)
        out = OD()
        for n, t in self.module.items():
            if n in self.buffer_names:
                out[n] = self.module[n]
            elif n in z:
                out[n] = z[n]
            elif n in self.aliases and self.aliases[n] in out:
                out[n] = out[self.aliases[n]]
            else:
                # stage 1 frozen param: only its module copy (bit16 / training dtype)
                assert self.stage in (1, 2) and t.numel() > 0, n
                out[n] = t.clone()
        return out


def sha(t):
    t = t.detach().contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt")
    ap.add_argument("--ref", help="NAME.ref.json to compare with (entries sha256_fp32)")
    ap.add_argument("--allow-bf16-optimizer", action="store_true")
    ap.add_argument("--live", action="store_true",
                    help="with --ref: also compare full_state() (cast to each live dtype) with "
                         "live_state_dict sha256_native")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args()
    ck = Checkpoint(a.ckpt)
    ref = json.load(open(a.ref)) if a.ref else None
    allow = a.allow_bf16_optimizer or (ref is not None and "entries" not in ref)
    out, kinds = ck.zero_to_fp32(allow_bf16_optimizer=allow)
    bad = 0
    if ref is not None and a.live:
        full = ck.full_state()
        live = ref["live_state_dict"]
        if [e["name"] for e in live] != list(full):
            print("LIVE ORDER/KEYS differ")
            bad += 1
        for e in live:
            t = full.get(e["name"])
            if t is None:
                continue
            if e.get("big_zero"):
                if t.any():
                    bad += 1
                continue
            dt = getattr(torch, e["dtype"].split(".")[1])
            if sha(t.to(dt)) != e["sha256_native"] or list(t.shape) != e["shape"]:
                bad += 1
                print("LIVE MISMATCH", e["name"], t.dtype, e["dtype"])
        print("%s: %d live tensors: %s" % (a.ckpt, len(live), "OK" if not bad else "%d bad" % bad))
    if ref is not None:
        entries = ref.get("entries") or ref.get("master_entries")
        if entries is None:
            # no entries (real BF16_Optimizer fixture): compare live bf16 hashes
            live = {e["name"]: e for e in ref["live_state_dict"]}
            n = 0
            for name, t in out.items():
                if name in live and kinds[name] in ("param", "alias"):
                    n += 1
                    if sha(t.to(torch.bfloat16)) != live[name]["sha256_native"]:
                        bad += 1
                        print("MISMATCH", name)
            print("%s: %d params vs live bf16: %s" % (a.ckpt, n, "OK" if not bad else "%d bad" % bad))
            sys.exit(1 if bad else 0)
        names = [e["name"] for e in entries]
        if names != list(out):
            print("ORDER/KEYS differ:\n ref %s\n got %s" % (names, list(out)))
            bad += 1
        for e in entries:
            if e.get("big_zero"):
                # all-zero big param: check without hashing GiBs again
                t = out.get(e["name"])
                if t is None or t.numel() != e["numel"] or bool(t.any()):
                    bad += 1
                    print("MISMATCH big", e["name"])
                continue
            t = out.get(e["name"])
            if t is None:
                bad += 1
                print("MISSING", e["name"])
                continue
            got = sha(t.float())
            if got != e["sha256_fp32"] or list(t.shape) != e["shape"] \
                    or str(t.dtype) != e["dtype"] or kinds[e["name"]] != e["kind"]:
                bad += 1
                print("MISMATCH", e["name"], list(t.shape), t.dtype, kinds[e["name"]])
        print("%s: %d entries: %s" % (a.ckpt, len(entries), "OK" if not bad else "%d bad" % bad))
        sys.exit(1 if bad else 0)
    if not a.quiet:
        for n, t in out.items():
            print(n, list(t.shape), t.dtype, kinds[n], sha(t.float()))


if __name__ == "__main__":
    main()
