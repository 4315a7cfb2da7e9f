"""The answer for a field fixture (../shared/fixtures/field, see its
README): the whole live state_dict at save time (NAME.live.pt), computed
without zerofs.

    a = Answer(FIELD, "v0.14.0_x_z2_ws2_bf16")      # or "trainer_multi_z2_ws2@0"
    a.names            live state_dict names, in model order
    a.served           the names a Hugging Face folder holds: all but the tied
                       aliases save_pretrained drops (DeepSpeed's shared_params,
                       and a tied lm_head.weight DeepSpeed did not record)
    a.kind(n)          'alias' / 'buffer' / 'frozen' / 'param'; a.source(n) for aliases
    a.dtype(n, served) torch dtype name of n served with --dtype served
                       (auto: the live tensor's own dtype; a dtype: every
                       floating tensor converted, integer/bool kept)
    a.tensor(n, served) the expected tensor, contiguous: the fp32 master
                       (where the run had one) or the live tensor, .to() the
                       served dtype, as torch converts
    a.problems         reference inconsistencies (a master that does not
                       round to the live tensor ...): the test reports them

Where the masters come from: 16-bit runs keep fp32 masters of the trainable
parameters in the optimizer state. They are taken from NAME.ref.pt (DeepSpeed's
own zero_to_fp32) where it ran, else read here from the optimizer state
(param_slice_mappings of ZeRO-1/2 and BF16_Optimizer partitions, the
fp32_groups of stage 0's FP16_UnfusedOptimizer), and always checked: each
master .to() the live dtype must equal the live tensor bit for bit. A name
that exists only in the module (a module registered under a second name, a
tie DeepSpeed did not record) has the master of the earlier name whose live
tensor it equals (its twin). fp32 runs: the live tensor is the master.
"""
import ast
import collections
import glob
import hashlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gen"))
import reassemble  # noqa: E402  (permissive torch.load for DeepSpeed pickles)

OD = collections.OrderedDict
SERVED = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ST_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
            torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
            torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
TRAIN = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def tbytes(t):
    """Little-endian bytes of a tensor, as safetensors stores them."""
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    elif t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.numpy().tobytes()


def sha(b):
    return hashlib.sha256(b).hexdigest()


def same(a, b):
    return a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) and tbytes(a) == tbytes(b)


def _tag_dir(ckpt):
    latest = os.path.join(ckpt, "latest")
    if os.path.exists(latest):
        with open(latest) as f:
            return os.path.join(ckpt, f.read().strip())
    return ckpt


class Answer:
    def __init__(self, field, name, ckpt=None):
        self.name = name
        base = self.base = os.path.join(field, name)
        self.ckpt = ckpt or os.path.join(field, name.split("@")[0])
        with open(base + ".ref.json") as f:
            self.ref = json.load(f)
        x = torch.load(base + ".live.pt")
        if isinstance(x, dict) and set(x) == {"live", "info"}:
            self.live, self.info = OD(x["live"]), x["info"]
        else:
            self.live, self.info = OD(x), {}
        self.names = list(self.live)
        self.train = TRAIN[self.ref["train_dtype"]]
        self.problems = []
        ref = self.ref
        self.aliases = dict(ref.get("aliases") or {})
        self.frozen = set(ref.get("frozen_params_live") or []) | set(self.info.get("frozen") or [])
        self.buffers = set(ref.get("buffer_names") or []) | set(self.info.get("buffers_persistent") or [])
        entries = {e["name"]: e for e in ref.get("entries") or []}
        known = set(self.aliases) | self.frozen | self.buffers | set(entries) \
            | set(self.info.get("names") or []) | set(self._param_shape_names())
        # Names only the module has (not in any DeepSpeed table, not a
        # parameter of the live model's named_parameters()): a second name of
        # an earlier tensor, found by its live bytes.
        self.twin = {}
        for i, n in enumerate(self.names):
            if n in known:
                continue
            for m in self.names[:i]:
                if same(self.live[m], self.live[n]):
                    self.twin[n] = self.twin.get(m, m)
                    break
            else:
                self.problems.append("%s: in no DeepSpeed table and equal to no earlier tensor" % n)
        # save_pretrained drops the tied lm_head.weight of a causal LM.
        self.dropped = dict(self.aliases)
        for n, m in self.twin.items():
            if n.endswith("lm_head.weight") and m.endswith("embed_tokens.weight"):
                self.dropped[n] = m
        self.served = [n for n in self.names if n not in self.dropped]
        self.masters = self._masters(entries)

    # -- kinds --------------------------------------------------------------
    def kind(self, n):
        if n in self.dropped:
            return "alias"
        k = self.twin.get(n, n)
        if k in self.buffers:
            return "buffer"
        if k in self.frozen:
            return "frozen"
        return "param"

    def source(self, n):
        return self.dropped.get(n)

    def is_float(self, n):
        return self.live[n].is_floating_point()

    def dtype(self, n, served):
        t = self.live[n]
        if served in (None, "auto") or not t.is_floating_point():
            return t.dtype
        return SERVED[served]

    def tensor(self, n, served):
        src = self.masters.get(n, self.live[n])
        return src.to(self.dtype(n, served)).contiguous()

    def nbytes(self, n, served):
        return self.live[n].numel() * torch.tensor([], dtype=self.dtype(n, served)).element_size()

    # -- masters --------------------------------------------------------------
    def _param_shape_names(self):
        ps = self.ref.get("param_shapes")
        if isinstance(ps, str):
            try:
                ps = ast.literal_eval(ps)
            except (ValueError, SyntaxError):
                return []
        out = []
        for g in ps or []:
            out += [p[0] for p in g] if isinstance(g, list) else list(g)
        return out

    def _masters(self, entries):
        """name -> fp32 master, for every trainable parameter name served."""
        want = [n for n in self.served if self.kind(n) == "param"]
        if self.train == torch.float32:
            return {n: self.live[n] for n in want}
        found = {}
        pt = self.ckpt_ref_pt()
        for n, e in entries.items():
            if e.get("kind") == "param" and n in pt:
                found[n] = pt[n]
        if not found:
            found = self._read_masters()
        out = {}
        for n in want:
            m = found.get(n)
            if m is None and n in self.twin:
                m = found.get(self.twin[n])
            if m is None:
                self.problems.append("%s: trainable, but no fp32 master found" % n)
                continue
            m = m.reshape(self.live[n].shape)
            if m.dtype != torch.float32 or not same(m.to(self.live[n].dtype), self.live[n]):
                self.problems.append("%s: the fp32 master does not round to the live tensor" % n)
                continue
            out[n] = m
        return out

    def ckpt_ref_pt(self):
        p = self.base + ".ref.pt"
        return torch.load(p) if os.path.exists(p) else {}

    def _read_masters(self):
        """fp32 masters straight from the optimizer state (where zero_to_fp32
        did not run): ZeRO-1/2 and BF16_Optimizer partitions through
        param_slice_mappings; stage 0's FP16_UnfusedOptimizer fp32_groups."""
        tag = _tag_dir(self.ckpt)
        out = {}
        optim = sorted(glob.glob(os.path.join(tag, "*_optim_states.pt")),
                       key=reassemble.natural_key)
        if optim:
            parts = collections.defaultdict(list)
            for f in optim:
                osd = reassemble.load_pt(f)["optimizer_state_dict"]
                for g, (flat, maps) in enumerate(zip(osd["single_partition_of_fp32_groups"],
                                                     osd["param_slice_mappings"])):
                    for n, frag in maps.items():
                        a = frag.__dict__ if hasattr(frag, "__dict__") else frag
                        parts[n].append(flat.narrow(0, a["start"], a["numel"]))
            for n, ps in parts.items():
                out[n] = torch.cat(ps).clone()
            return out
        for f in glob.glob(os.path.join(tag, "*model_states.pt")):
            opt = reassemble.load_pt(f).get("optimizer")
            if isinstance(opt, dict) and "fp32_groups" in opt:
                for names, ts in zip(self.info.get("param_groups") or [], opt["fp32_groups"]):
                    for n, t in zip(names, ts):
                        out[n] = t.clone()
        return out

    # -- a base model folder (--base) -----------------------------------------
    def write_base(self, d, perturb=True, wrong_shape=None):
        """A Hugging Face folder holding the whole model as a base for --base:
        every served name in its live dtype; the names the checkpoint holds
        itself are perturbed (the base must lose to the checkpoint there).
        wrong_shape: a name written with another shape."""
        from safetensors.torch import save_file
        os.makedirs(d, exist_ok=True)
        sd = OD()
        for n in self.served:
            t = self.live[n].clone()
            if perturb and self.kind(n) != "frozen" and t.is_floating_point():
                t = t + 1
            if n == wrong_shape:
                t = torch.zeros(t.numel() + 1, dtype=t.dtype)
            sd[n] = t.contiguous()
        save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"architectures": ["BaseForTest"], "model_type": "base-for-test",
                       "torch_dtype": str(self.train).replace("torch.", "")}, f, indent=2)
        return d
