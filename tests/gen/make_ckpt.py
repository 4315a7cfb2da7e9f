#!/usr/bin/python3
"""Write synthetic DeepSpeed v0.14-style ZeRO checkpoints (no DeepSpeed needed) plus
NAME.ref.json / NAME.ref.pt in the format of shared/fixtures/real/*.ref.json.

Run with /usr/bin/python3 (torch 1.13 + numpy). See tests/gen/README.md.
"""
import argparse
import collections
import dataclasses
import enum
import hashlib
import json
import os
import random
import shutil
import sys
import time
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tzip  # noqa: E402

OD = collections.OrderedDict
DS_VERSION = "0.14.0"
TDT = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# --------------------------------------------------------------------------------------
# Stand-in classes that pickle under DeepSpeed's (and others') module/qualnames.
# --------------------------------------------------------------------------------------
def _module(name):
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        n = ".".join(parts[:i])
        if n not in sys.modules:
            m = types.ModuleType(n)
            m.__path__ = []
            sys.modules[n] = m
            if i > 1:
                setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], m)
    return sys.modules[name]


def _register(modname, cls):
    cls.__module__ = modname
    setattr(_module(modname), cls.__name__, cls)
    return cls


class ZeroStageEnum(int, enum.Enum):
    disabled = 0
    optimizer_states = 1
    gradients = 2
    weights = 3
    max_stage = 3


_register("deepspeed.runtime.zero.config", ZeroStageEnum)


class LossScaler:
    def __init__(self, scale=1.0):
        self.cur_scale = scale
        self.dynamic = False


class DynamicLossScaler:
    def __init__(self, steps):
        self.cur_scale = 256
        self.dynamic = True
        self.cur_iter = steps
        self.last_overflow_iter = -1
        self.scale_factor = 2.0
        self.scale_window = 100
        self.min_scale = 1
        self.delayed_shift = 2
        self.cur_hysteresis = 2
        self.consecutive_hysteresis = False
        self.raise_error_at_min_scale = True
        self.dtype = torch.float16


_register("deepspeed.runtime.fp16.loss_scaler", LossScaler)
_register("deepspeed.runtime.fp16.loss_scaler", DynamicLossScaler)


@dataclasses.dataclass
class fragment_address:  # noqa: N801 (DeepSpeed's name)
    numel: int
    start: int


_register("deepspeed.utils.tensor_fragment", fragment_address)


class TrainingArguments:  # transformers.training_args.TrainingArguments look-alike
    pass


_register("transformers.training_args", TrainingArguments)


class HistoryBuffer:  # mmengine.logging.history_buffer.HistoryBuffer look-alike
    pass


_register("mmengine.logging.history_buffer", HistoryBuffer)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def sha(t):
    t = t.detach().contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        b = t.view(torch.int16).numpy().tobytes()
    elif t.dtype == torch.bool:
        b = t.numpy().tobytes()
    else:
        b = t.numpy().tobytes()
    return hashlib.sha256(b).hexdigest()


_zeros_sha_cache = {}


def zeros_sha(nbytes):
    if nbytes not in _zeros_sha_cache:
        _zeros_sha_cache[nbytes] = _zeros_sha(nbytes)
    return _zeros_sha_cache[nbytes]


def _zeros_sha(nbytes):
    h = hashlib.sha256()
    chunk = bytes(min(nbytes, 64 << 20))
    left = nbytes
    while left > 0:
        k = min(left, len(chunk))
        h.update(chunk if k == len(chunk) else chunk[:k])
        left -= k
    return h.hexdigest()


def garbage(n, dtype):
    """Padding filler: NaN, 1e38, -1e38, 7.0, ... (never valid model data)."""
    pat = np.array([np.nan, 1e38, -1e38, 7.0, np.inf, 123456.0], dtype=np.float32)
    v = np.resize(pat, n) if n else np.zeros(0, np.float32)
    return torch.from_numpy(v.copy()).to(dtype)


def fresh(s):
    """A new str object equal to s: DeepSpeed builds every name string separately, so pickle
    writes each one out again instead of a memo reference (as in the real files)."""
    return s.encode("utf-8").decode("utf-8")


def dtype_str(dt):
    return str(dt)


def natural_rank_files(ws, pattern):
    return [pattern.format(r) for r in range(ws)]


# --------------------------------------------------------------------------------------
# Model description
# --------------------------------------------------------------------------------------
class Entry:
    def __init__(self, name, shape, kind, dtype=None, persistent=True):
        self.name = name
        self.shape = tuple(shape)
        self.kind = kind  # 'buffer' or 'param'
        self.dtype = dtype
        self.numel = int(np.prod(self.shape)) if self.shape else 1
        self.trainable = True
        self.alias_of = None
        self.twin_of = None  # --twice: a second name of this module's param (not in shared_params)
        self.view = None     # --views: how the model holds it ("T", "rows", "expand", "perm")
        self.big = False
        self.near_one = False  # --llama norm weights: 1 + noise


def llama_entries(P, layers, H, V, I, kv):
    """LlamaForCausalLM's parameters in its state_dict() order, lm_head last
    (GQA: kv is the width of k_proj and v_proj; no biases, no buffers)."""
    ents = [Entry(P + "model.embed_tokens.weight", (V, H), "param")]
    for l in range(layers):
        b = P + "model.layers.%d." % l
        ents += [Entry(b + "self_attn.q_proj.weight", (H, H), "param"),
                 Entry(b + "self_attn.k_proj.weight", (kv, H), "param"),
                 Entry(b + "self_attn.v_proj.weight", (kv, H), "param"),
                 Entry(b + "self_attn.o_proj.weight", (H, H), "param"),
                 Entry(b + "mlp.gate_proj.weight", (I, H), "param"),
                 Entry(b + "mlp.up_proj.weight", (I, H), "param"),
                 Entry(b + "mlp.down_proj.weight", (H, I), "param"),
                 Entry(b + "input_layernorm.weight", (H,), "param"),
                 Entry(b + "post_attention_layernorm.weight", (H,), "param")]
    ents += [Entry(P + "model.norm.weight", (H,), "param"),
             Entry(P + "lm_head.weight", (V, H), "param")]
    return ents


def build_llama(a):
    """--llama: exactly transformers' LlamaForCausalLM (attention_bias false,
    GQA with --heads/--kv-heads), names in its state_dict() order; no buffers
    (the rotary inv_freq is not persistent). RMSNorm weights are drawn around
    1.0 so that the model computes something."""
    P = a.prefix
    ents = llama_entries(P, a.layers, a.hidden, a.vocab, a.intermediate,
                         a.kv_heads * (a.hidden // a.heads))
    for e in ents:
        e.near_one = e.name.endswith("norm.weight")
    lm = ents[-1]
    if a.tied:
        lm.alias_of = P + "model.embed_tokens.weight"
    if a.frozen:
        ents[0].trainable = False
        if a.tied:
            lm.trainable = False
    return ents


def build_llama70b(a):
    """Llama-2-70B's state_dict names and shapes (grouped-query attention:
    8 key/value heads of 128; no biases, no buffers, untied lm_head); every
    parameter all zeros, stored as sparse holes."""
    ents = llama_entries(a.prefix, a.layers, 8192, 32000, 28672, 1024)
    for e in ents:
        e.big = True
    return ents


def build_model(a):
    if a.llama70b:
        return build_llama70b(a)
    if a.llama:
        return build_llama(a)
    P = a.prefix
    H, V, I, M = a.hidden, a.vocab, a.intermediate, a.max_pos
    ents = []
    ents.append(Entry(P + "model.position_ids", (1, M), "buffer", torch.int64))
    ents.append(Entry(P + "model.logit_bias", (7,), "buffer", "train"))
    if a.edge:
        ents.append(Entry(P + "model.scale", (), "buffer", "train"))
    if a.big_gib:
        # numel of the big param: rank 0's fp32 partition alone exceeds big_gib GiB
        per_rank = int(a.big_gib * (1 << 30)) // 4 + 1024
        cols = 1024
        rows = -(-per_rank * a.ws // cols)
        rows += (-rows) % a.ws  # numel divisible by ws: no tail padding
        e = Entry(P + "model.big.weight", (rows, cols), "param")
        e.big = True
        ents.append(e)
    if a.fp32_buffer:
        # kept float32 in a 16-bit run (DeepSpeed >= 0.19.2 casts params only)
        ents.append(Entry(P + "model.rope_cache", (5,), "buffer", torch.float32))
    if a.views:
        for n, shape, dt, view in (("model.tbuf", (4, 3), "train", "T"),
                                   ("model.itr", (3, 2), torch.int64, "T"),
                                   ("model.rows", (3, 4), "train", "rows"),
                                   ("model.expand", (3, 4), "train", "expand"),
                                   ("model.perm", (2, 3, 4), "train", "perm")):
            ents.append(Entry(P + n, shape, "buffer", dt))
            ents[-1].view = view
    ents.append(Entry(P + "model.embed_tokens.weight", (V, H), "param"))
    ents.append(Entry(P + "model.embed_positions.weight", (M, H), "param"))
    if a.views:
        ft = Entry(P + "model.frozen_t.weight", (a.view_rows, a.view_rows + 2), "param")
        ft.view, ft.trainable = "T", False
        ents.append(ft)
    for l in range(a.layers):
        b = P + "model.layers.%d." % l
        ents.append(Entry(b + "input_layernorm.weight", (H,), "param"))
        for p in ("q", "k", "v"):
            ents.append(Entry(b + "self_attn.%s_proj.weight" % p, (H, H), "param"))
            ents.append(Entry(b + "self_attn.%s_proj.bias" % p, (H,), "param"))
        ents.append(Entry(b + "self_attn.o_proj.weight", (H, H), "param"))
        ents.append(Entry(b + "post_attention_layernorm.weight", (H,), "param"))
        ents.append(Entry(b + "mlp.gate_proj.weight", (I, H), "param"))
        ents.append(Entry(b + "mlp.up_proj.weight", (I, H), "param"))
        ents.append(Entry(b + "mlp.down_proj.weight", (H, I), "param"))
    if a.odd:
        ents.append(Entry(P + "model.odd.weight", (13, 5), "param"))
        ents.append(Entry(P + "model.odd.bias", (7,), "param"))
    if a.edge:
        ents.append(Entry(P + "model.empty.weight", (0, H), "param"))
        ents.append(Entry(P + "model.one.weight", (1,), "param"))
    ents.append(Entry(P + "model.norm.weight", (H,), "param"))
    if a.twice:
        # one nn.Linear registered as model.proj_a and model.proj_b
        ents.append(Entry(P + "model.proj_a.weight", (H, H), "param"))
        ents.append(Entry(P + "model.proj_a.bias", (H,), "param"))
        for n in ("weight", "bias"):
            ents.append(Entry(P + "model.proj_b." + n, (H, H) if n == "weight" else (H,), "param"))
            ents[-1].twin_of = P + "model.proj_a." + n
    lm = Entry(P + "lm_head.weight", (V, H), "param")
    if a.tied:
        lm.alias_of = P + "model.embed_tokens.weight"
    ents.append(lm)
    if a.frozen:
        for e in ents:
            if e.name in (P + "model.embed_tokens.weight", P + "model.embed_positions.weight"):
                e.trainable = False
        if a.tied:
            lm.trainable = False
    return ents


def module_metadata(names, prefix_root=""):
    md = OD()
    md[""] = {"version": 1}
    for n in names:
        parts = n.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            k = ".".join(parts[:i])
            if k not in md:
                md[k] = {"version": 1}
    return md


_md_cache = {}


def with_metadata(od, names):
    """state_dict()'s `_metadata` attribute (pickled as BUILD on the OrderedDict)."""
    key = tuple(names)
    if key not in _md_cache:
        _md_cache[key] = module_metadata(names)
    od._metadata = _md_cache[key]
    return od


# --------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------
class Gen:
    def __init__(self, a):
        self.a = a
        self.ws = a.ws
        self.tdt = TDT[a.dtype]
        self.rng = np.random.default_rng(a.seed)
        self.ents = build_model(a)
        self.byname = {e.name: e for e in self.ents}
        self.params = [e for e in self.ents
                       if e.kind == "param" and e.alias_of is None and e.twin_of is None]
        self.buffers = [e for e in self.ents if e.kind == "buffer"]
        self.aliases = OD((e.name, e.alias_of) for e in self.ents if e.alias_of)
        self.trainable = [e for e in self.params if e.trainable]
        self.frozen = [e for e in self.params if not e.trainable]
        # AdamW groups as the HF Trainer builds them: decay (>=2-D weights) / no decay
        g0 = [e for e in self.trainable if len(e.shape) >= 2]
        g1 = [e for e in self.trainable if len(e.shape) < 2]
        self.groups = [g for g in (g0, g1) if g]
        self.group_decay = [g is g0 for g in (g0, g1) if g]
        self.files = []
        self.make_values()

    # ---- values -------------------------------------------------------------------
    def rand(self, n, scale=0.05):
        return (self.rng.standard_normal(n, dtype=np.float32) * np.float32(scale)
                + np.float32(0.001))

    def make_values(self):
        self.master = {}   # name -> fp32 tensor (trainable)
        self.native = {}   # name -> live tensor in its own dtype (trainable, frozen, buffers)
        for e in self.buffers:
            if e.dtype is torch.int64:
                t = torch.arange(e.numel, dtype=torch.int64).reshape(e.shape)
            elif e.dtype is torch.float32:
                t = torch.from_numpy(self.rand(e.numel, 1.0)).reshape(e.shape)
            else:
                t = torch.from_numpy(self.rand(e.numel, 1.0)).reshape(e.shape).to(self.tdt)
            self.native[e.name] = self.as_view(e, t)
        for e in self.params:
            if e.big:
                self.master[e.name] = None  # all zeros, never materialised
                self.native[e.name] = None
                continue
            v = torch.from_numpy(self.rand(e.numel)).reshape(e.shape)
            if e.near_one:
                v = v + 1.0
            if e.trainable:
                self.master[e.name] = v
                self.native[e.name] = v.to(self.tdt)
            else:
                self.native[e.name] = self.as_view(e, v.to(self.tdt))

    def as_view(self, e, t):
        """--views: t as the model holds it, not contiguous: a transpose, a slice of
        wider rows, a row expanded, a permuted 3-D block (same values)."""
        if e.view == "T":
            return t.t().contiguous().t()
        if e.view == "rows":
            wide = torch.from_numpy(self.rand(t.shape[0] * (t.shape[1] + 2), 9.0)) \
                .reshape(t.shape[0], t.shape[1] + 2).to(t.dtype)
            wide[:, 1:-1] = t
            return wide[:, 1:-1]
        if e.view == "expand":
            return t[:1].clone().expand(t.shape)
        if e.view == "perm":
            return t.permute(2, 0, 1).contiguous().permute(1, 2, 0)
        return t

    def module_copy(self, e, t):
        """What `module` holds: a clone, or (--views) the view itself, strides kept
        (DeepSpeed does not clone before torch.save)."""
        return t if e.view else t.clone()

    # ---- common pieces --------------------------------------------------------------
    def ds_config(self):
        a = self.a
        zo = OD([("stage", 0 if a.zero0 else a.stage)])
        if a.stage == 3:
            if a.persistence_threshold >= 0:
                zo["stage3_param_persistence_threshold"] = a.persistence_threshold
            if self.sub_group_size_cfg is not None:
                zo["sub_group_size"] = self.sub_group_size_cfg
        c = OD([("train_micro_batch_size_per_gpu", 2), ("gradient_accumulation_steps", 1),
                ("gradient_clipping", 1.0), ("zero_optimization", dict(zo)),
                ("zero_allow_untested_optimizer", True), ("steps_per_print", 1000),
                ("wall_clock_breakdown", False)])
        if a.dtype == "bf16":
            c["bf16"] = {"enabled": True}
        if a.dtype == "fp16":
            c["fp16"] = {"enabled": True, "initial_scale_power": 8, "loss_scale_window": 100}
        if a.bf16_optimizer:
            c["data_types"] = {"grad_accum_dtype": "fp32"}
        return dict(c)

    def loss_scaler(self):
        if self.a.dtype == "fp16":
            return DynamicLossScaler(self.a.steps)
        return LossScaler(1.0)

    def param_group_dicts(self, index_lists):
        out = []
        for gi, idx in enumerate(index_lists):
            out.append({"weight_decay": 0.1 if self.group_decay[gi] else 0.0,
                        "lr": 0.02, "betas": (0.9, 0.95), "eps": 1e-08, "amsgrad": False,
                        "foreach": None, "maximize": False, "capturable": False,
                        "params": list(idx)})
        return out

    def adam_state(self, numel, hole=False):
        step = torch.tensor(float(self.a.steps))
        if hole:
            return {"step": step,
                    "exp_avg": tzip.HoleTensor(tzip.HoleStorage(numel)),
                    "exp_avg_sq": tzip.HoleTensor(tzip.HoleStorage(numel))}
        return {"step": step,
                "exp_avg": torch.from_numpy(self.rand(numel, 1e-3)),
                "exp_avg_sq": torch.from_numpy(np.abs(self.rand(numel, 1e-5)))}

    def client_extras(self, rank):
        """Extra model_states keys written by the training framework (client_state)."""
        if self.a.layout != "xtuner":
            return []
        hb = HistoryBuffer()
        hb._max_length = 1000000
        hb._log_history = np.array([2.5, 2.25, 2.0][: self.a.steps], dtype=np.float64)
        hb._count_history = np.array([1, 1, 1][: self.a.steps], dtype=np.int64)
        hb._statistics_methods = {}
        meta = {
            "cfg": "model = dict(type='SupervisedFinetune')\n",
            "seed": np.int64(self.a.seed),
            "experiment_name": "synthetic_%d" % self.a.seed,
            "time": "20240101_000000",
            "mmengine_version": "0.10.3",
            "dataset_meta": None,
            "epoch": 0,
            "iter": self.a.steps,
            "timestamp_ns": 1704067200123456789,
            "grid": (1, 2, 3),
            "message_hub": {"log_scalars": {"train/loss": hb},
                            "runtime_info": {"iter": self.a.steps, "max_iters": 1000},
                            "resumed_keys": {"iter": True}},
        }
        ps = [{"start_factor": 1e-05, "end_factor": 1.0, "by_epoch": False, "begin": 0,
               "end": 30, "last_step": self.a.steps, "verbose": False,
               "_global_step": self.a.steps, "_get_lr_called_within_step": False,
               "_last_lr": [2e-05 * self.a.steps / 30]}]
        ow = {"base_param_settings": None, "_accumulative_counts": 1, "_inner_count": self.a.steps,
              "_max_counts": 1000, "_remainder_counts": 0}
        return [("meta", meta), ("param_schedulers", ps), ("optim_wrapper", ow)]

    def lr_sched(self):
        if self.a.layout != "trainer":
            return None
        lr = 2e-05 * (1 - self.a.steps / 100)
        return {"base_lrs": [2e-05] * len(self.groups), "last_epoch": self.a.steps,
                "verbose": False, "_step_count": self.a.steps + 1,
                "_get_lr_called_within_step": False, "_last_lr": [lr] * len(self.groups),
                "lr_lambdas": [None] * len(self.groups)}

    def model_states(self, rank, module, param_shapes, fshapes, ffrags):
        d = OD()
        d["module"] = module
        d["buffer_names"] = [fresh(e.name) for e in self.buffers]
        d["optimizer"] = None
        d["param_shapes"] = param_shapes
        d["frozen_param_shapes"] = fshapes
        d["shared_params"] = ({fresh(k): fresh(v) for k, v in self.aliases.items()}
                              if rank == 0 and not self.a.empty_shared else {})
        d["frozen_param_fragments"] = ffrags
        d["lr_scheduler"] = self.lr_sched()
        d["data_sampler"] = None
        d["random_ltd"] = None
        d["sparse_tensor_module_names"] = set()
        d["skipped_steps"] = 0
        d["global_steps"] = self.a.steps
        d["global_samples"] = self.a.steps * 2 * self.ws
        d["dp_world_size"] = self.ws
        d["mp_world_size"] = 1
        d["ds_config"] = self.ds_config()
        d["ds_version"] = DS_VERSION
        for k, v in self.client_extras(rank):
            d[k] = v
        return dict(d)

    def save(self, obj, fname, custom=False):
        path = os.path.join(self.tagdir, fname)
        if self.a.legacy:
            # torch's legacy format, as DeepSpeed >= 0.17 writes every file with
            # "checkpoint": {"checkpoint_serialization": false}
            if custom or not self.a.torch_save:
                tzip.save_legacy(obj, path)  # torch's bytes but for the keys (addresses)
            else:
                torch.save(obj, path, _use_new_zipfile_serialization=False)
        elif custom or not self.a.torch_save:
            tzip.save(obj, path)  # byte-identical to torch.save (see README), but faster
        else:
            torch.save(obj, path)
        self.files.append(fname)

    # ---- ZeRO-3 ---------------------------------------------------------------------
    def subgroups(self):
        """List of (param_group_index, [entries]) — DeepSpeed v0.14 rule: whole params,
        close a sub-group once its partition numel reaches sub_group_size."""
        sgs = []
        S = self.sub_group_size
        for gi, g in enumerate(self.groups):
            cur, tot = [], 0
            for i, e in enumerate(g):
                cur.append(e)
                tot += -(-e.numel // self.ws)
                if tot >= S or i == len(g) - 1:
                    sgs.append((gi, cur))
                    cur, tot = [], 0
        return sgs

    def z3_rank_matrix(self, ents):
        """(ws, sum ceil(n/ws)) fp32 array: row r = rank r's flat data for these params."""
        ws = self.ws
        cols = []
        for e in ents:
            p = -(-e.numel // ws)
            if p == 0:
                continue
            buf = garbage(p * ws, torch.float32).numpy().copy()
            buf[: e.numel] = self.master[e.name].reshape(-1).numpy()
            cols.append(buf.reshape(ws, p))
        if not cols:
            return np.zeros((ws, 0), np.float32)
        return np.concatenate(cols, axis=1)

    def write_z3(self):
        ws = self.ws
        a = self.a
        prefix = "bf16_" if a.dtype == "bf16" else ""
        big = [e for e in self.trainable if e.big]
        # sub-groups: list of (group index, [entries], per-rank matrix or None for big)
        subs = []
        if a.span_subgroups:
            S = self.sub_group_size
            for gi, g in enumerate(self.groups):
                mat = self.z3_rank_matrix(g)
                nchunks = max(1, -(-mat.shape[1] // S))
                members = [[] for _ in range(nchunks)]
                off = 0
                for e in g:  # a param belongs to the chunk holding its first element
                    members[min(off // S, nchunks - 1)].append(e)
                    off += -(-e.numel // ws)
                for c in range(nchunks):
                    subs.append((gi, members[c], mat[:, c * S:(c + 1) * S]))
        else:
            for gi, ents in self.subgroups():
                if any(e.big for e in ents):
                    assert len(ents) == 1 or all(e.big for e in ents)
                    subs.append((gi, ents, None))
                else:
                    subs.append((gi, ents, self.z3_rank_matrix(ents)))
        self.z3_subs = subs
        param_shapes = [OD((fresh(e.name), torch.Size(e.shape)) for e in ents)
                        for _, ents, _ in subs]
        fshapes = OD((fresh(e.name), torch.Size(e.shape)) for e in self.frozen)
        names = [e.name for e in self.ents]
        self.fp32_partitions = OD()
        # Without frozen params, the model states of ranks >= 1 are one
        # object (only rank 0 records shared_params): pickled once.
        same_ms = not self.frozen and not a.torch_save and not a.legacy and ws > 2
        for r in range(ws):
            if same_ms and r > 1:
                self.files.append("zero_pp_rank_%d_mp_rank_00_model_states.pt" % r)
            else:
                # module: buffers complete, every param a 0-element placeholder
                module = OD()
                ph = {}
                for e in self.ents:
                    if e.kind == "buffer":
                        module[fresh(e.name)] = self.module_copy(e, self.native[e.name])
                    elif e.alias_of or e.twin_of:
                        module[fresh(e.name)] = ph[e.alias_of or e.twin_of].view(0)
                    else:
                        dt = self.tdt
                        ph[e.name] = torch.empty(0, dtype=dt)
                        if not (a.exclude_frozen and not e.trainable):
                            module[fresh(e.name)] = ph[e.name]
                with_metadata(module, names)
                ffr = OD()
                fshapes = OD((fresh(e.name), torch.Size(e.shape)) for e in self.frozen)
                fnames = dict(zip([e.name for e in self.frozen], fshapes.keys()))
                for e in self.frozen:
                    p = -(-e.numel // ws)
                    full = torch.cat([self.native[e.name].reshape(-1),
                                      garbage(p * ws - e.numel, self.tdt)])
                    ffr[fnames[e.name]] = full[r * p:(r + 1) * p].clone()
                if a.exclude_frozen:
                    fshapes, ffr = None, None
                ms = self.model_states(r, module, param_shapes, fshapes, ffr)
                if same_ms and r == 1:
                    tzip.save_many(ms, [os.path.join(self.tagdir,
                                                     "zero_pp_rank_%d_mp_rank_00_model_states.pt" % q)
                                        for q in range(1, ws)])
                    self.files.append("zero_pp_rank_1_mp_rank_00_model_states.pt")
                else:
                    self.save(ms, "zero_pp_rank_%d_mp_rank_00_model_states.pt" % r)
            # optimizer
            flat, state = [], {}
            for si, (gi, ents, mat) in enumerate(subs):
                if mat is None:
                    n = sum(-(-e.numel // ws) for e in ents)
                    t = tzip.HoleTensor(tzip.HoleStorage(n), requires_grad=True)
                    state[si] = self.adam_state(n, hole=True)
                else:
                    t = torch.from_numpy(mat[r].copy()).requires_grad_(True)
                    state[si] = self.adam_state(mat.shape[1])
                flat.append(t)
            pg = self.param_group_dicts(
                [[si for si, s in enumerate(subs) if s[0] == gi] for gi in range(len(self.groups))])
            osd = OD()
            osd["zero_stage"] = ZeroStageEnum.weights
            osd["loss_scaler"] = self.loss_scaler()
            osd["dynamic_loss_scale"] = a.dtype == "fp16"
            osd["overflow"] = False
            osd["partition_count"] = ws
            osd["optimizer_state_dict"] = {"state": state, "param_groups": pg}
            osd["fp32_flat_groups"] = flat
            fname = prefix + "zero_pp_rank_%d_mp_rank_00_optim_states.pt" % r
            self.save({"optimizer_state_dict": dict(osd), "ds_config": self.ds_config(),
                       "ds_version": DS_VERSION}, fname, custom=bool(big))
            self.fp32_partitions[fname] = {
                "key": "fp32_flat_groups",
                "numels": [sum(-(-e.numel // ws) for e in s[1]) if s[2] is None
                           else int(s[2].shape[1]) for s in subs],
                "zero_stage": "ZeroStageEnum.weights", "partition_count": ws}

    # ---- ZeRO-1/2 and BF16_Optimizer -------------------------------------------------
    def write_z12(self):
        ws = self.ws
        a = self.a
        bf16opt = a.bf16_optimizer
        prefix = "bf16_" if a.dtype == "bf16" else ""
        align = 2 * ws
        names = [e.name for e in self.ents]
        flats16, fp32_full, offsets, totals, padded = [], [], [], [], []
        for g in self.groups:
            offs, off = {}, 0
            for e in g:
                offs[e.name] = off
                off += e.numel
            tot = off
            pad_tot = -(-tot // align) * align if tot else align
            f32 = np.zeros(pad_tot, np.float32)
            for e in g:
                f32[offs[e.name]:offs[e.name] + e.numel] = self.master[e.name].reshape(-1).numpy()
            flats16.append(torch.from_numpy(f32.copy()).to(self.tdt))
            fp32_full.append(f32)
            offsets.append(offs)
            totals.append(tot)
            padded.append(pad_tot)
        # module
        module = OD()
        frozen_store = {}
        for e in self.ents:
            if e.kind == "buffer":
                module[fresh(e.name)] = self.module_copy(e, self.native[e.name])
                continue
            src = self.byname[e.alias_of or e.twin_of] if e.alias_of or e.twin_of else e
            if not src.trainable:
                if src.name not in frozen_store:
                    frozen_store[src.name] = self.module_copy(src, self.native[src.name])
                if a.exclude_frozen and src is e:
                    continue
                module[fresh(e.name)] = frozen_store[src.name].detach() if e.alias_of else \
                    frozen_store[src.name]
                continue
            gi = next(i for i, g in enumerate(self.groups) if src.name in offsets[i])
            o = offsets[gi][src.name]
            module[fresh(e.name)] = flats16[gi][o:o + src.numel].view(src.shape)
        with_metadata(module, names)
        param_shapes = [OD((fresh(e.name), torch.Size(e.shape)) for e in g) for g in self.groups]
        if a.stage == 2 and not bf16opt and not a.exclude_frozen:
            fshapes = OD((fresh(e.name), torch.Size(e.shape)) for e in self.frozen)
            ffr = OD((k, frozen_store[e.name].detach()) for k, e in zip(fshapes, self.frozen))
        else:
            fshapes, ffr = None, None
        self.save(self.model_states(0, module, param_shapes, fshapes, ffr),
                  "mp_rank_00_model_states.pt")
        self.fp32_partitions = OD()
        zs = ZeroStageEnum.optimizer_states if a.stage == 1 else ZeroStageEnum.gradients
        for r in range(ws):
            parts, paddings, maps, state = [], [], [], {}
            for gi, g in enumerate(self.groups):
                P = padded[gi] // ws
                pad = padded[gi] - totals[gi]
                store = torch.from_numpy(fp32_full[gi][r * P:(r + 1) * P].copy())
                mypad = pad if r == ws - 1 else 0
                if r == ws - 1 and pad:
                    # padding region of the storage: garbage (readers must use the size)
                    keep = max(0, P - pad)
                    store[keep:] = garbage(P - keep, torch.float32)
                    t = store if bf16opt else store[:keep]
                else:
                    t = store
                t.requires_grad_(True)
                parts.append(t)
                paddings.append(mypad)
                m = OD()
                lo, hi = r * P, (r + 1) * P
                for e in g:
                    s, en = offsets[gi][e.name], offsets[gi][e.name] + e.numel
                    ov0, ov1 = max(s, lo), min(en, hi)
                    if ov1 > ov0:
                        m[fresh(e.name)] = fragment_address(numel=ov1 - ov0, start=ov0 - lo)
                maps.append(m)
                state[gi] = self.adam_state(P)
            pg = self.param_group_dicts([[gi] for gi in range(len(self.groups))])
            osd = OD()
            if not bf16opt:
                osd["loss_scaler"] = self.loss_scaler()
                osd["dynamic_loss_scale"] = a.dtype == "fp16"
                osd["overflow"] = False
            osd["clip_grad"] = 1.0
            osd["base_optimizer_state"] = {"state": state, "param_groups": pg}
            osd["single_partition_of_fp32_groups"] = parts
            if not bf16opt:
                osd["zero_stage"] = zs
            osd["group_paddings"] = paddings
            osd["partition_count"] = [ws] * len(self.groups)
            osd["ds_version"] = DS_VERSION
            osd["param_slice_mappings"] = maps
            fname = prefix + "zero_pp_rank_%d_mp_rank_00_optim_states.pt" % r
            self.save({"optimizer_state_dict": dict(osd), "ds_config": self.ds_config(),
                       "ds_version": DS_VERSION}, fname)
            self.fp32_partitions[fname] = {
                "key": "single_partition_of_fp32_groups",
                "numels": [int(t.numel()) for t in parts],
                "zero_stage": "None" if bf16opt else str(zs),
                "partition_count": [ws] * len(self.groups)}

    # ---- ZeRO-0 (--zero0): one model states file, masters in 'optimizer' ------------
    def write_z0(self):
        """DeepSpeed without ZeRO: FP16_UnfusedOptimizer (fp32_groups, one full-shaped
        master per param), FP16_Optimizer (fp32_groups_flat, one flat master per group,
        the module's params views of its 16-bit twin) or, in fp32, the torch optimizer's
        own state_dict (the module holds the weights)."""
        a = self.a
        kind = a.zero0
        names = [e.name for e in self.ents]
        module, own = OD(), {}
        if kind == "fused":
            for g in self.groups:
                flat = torch.cat([self.native[e.name].reshape(-1) for e in g])
                o = 0
                for e in g:
                    own[e.name] = flat[o:o + e.numel].view(e.shape)
                    o += e.numel
        for e in self.ents:
            src = self.byname[e.alias_of or e.twin_of] if e.alias_of or e.twin_of else e
            if src.name not in own:
                own[src.name] = self.module_copy(src, self.native[src.name])
            if a.exclude_frozen and src is e and e.kind == "param" and not e.trainable:
                continue
            module[fresh(e.name)] = own[src.name]
        with_metadata(module, names)
        state = {i: self.adam_state(e.numel) for i, e in
                 enumerate(e for g in self.groups for e in g)}
        idx, pg = 0, []
        for g in self.groups:
            pg.append(list(range(idx, idx + len(g))))
            idx += len(g)
        osd = {"state": state, "param_groups": self.param_group_dicts(pg)}
        if kind == "fp32":
            opt = osd
        else:
            opt = OD([("dynamic_loss_scale", a.dtype == "fp16"), ("cur_scale", 1.0),
                      ("cur_iter", a.steps), ("optimizer_state_dict", osd)])
            if kind == "unfused":
                opt["fp32_groups"] = [[self.master[e.name].clone() for e in g]
                                      for g in self.groups]
            else:
                opt["fp32_groups_flat"] = [torch.cat([self.master[e.name].reshape(-1)
                                                      for e in g]) for g in self.groups]
                opt["clip_grad"] = 1.0
            opt = dict(opt)
        ms = self.model_states(0, module, None, None, None)
        ms["optimizer"] = opt
        ms["shared_params"] = None
        self.save(ms, "mp_rank_00_model_states.pt")
        self.fp32_partitions = OD()

    # ---- reference ------------------------------------------------------------------
    def tensor_hashes(self, t, e=None):
        if t is None and self.a.llama70b:  # hashing 276 GB of zeros: not done
            return None, None, None
        if t is None:  # big all-zero param
            n = e.numel
            z2 = zeros_sha(2 * n)
            return zeros_sha(4 * n), z2, z2
        return sha(t.to(torch.float32)), sha(t.to(torch.bfloat16)), sha(t.to(torch.float16))

    def reference(self):
        a = self.a
        out = OD()  # zero_to_fp32 order: buffers, frozen, params, aliases
        kinds = {}
        for e in self.buffers:
            out[e.name] = self.native[e.name].float()
            kinds[e.name] = "buffer"
        stage_has_frozen = a.stage >= 2 and not a.bf16_optimizer and not a.exclude_frozen
        if stage_has_frozen:
            for e in self.frozen:
                out[e.name] = self.native[e.name]
                kinds[e.name] = "frozen"
        for g in self.groups_in_shapes_order():
            for e in g:
                out[e.name] = self.master[e.name]
                kinds[e.name] = "param"
        for al, src in self.aliases.items():
            if src in out:
                out[al] = out[src]
                kinds[al] = "alias"
        entries = []
        for n, t in out.items():
            ee = self.byname[self.aliases.get(n, n)]
            h32, h16b, h16 = self.tensor_hashes(t, ee)
            entries.append(OD([("name", n), ("shape", list(ee.shape)),
                               ("dtype", dtype_str(t.dtype) if t is not None else "torch.float32"),
                               ("numel", ee.numel), ("sha256_fp32", h32), ("sha256_bf16", h16b),
                               ("sha256_fp16", h16), ("kind", kinds[n])]
                              + ([("big_zero", True)] if t is None else [])))
        live = []
        for e in self.ents:
            src = self.byname[e.alias_of or e.twin_of] if e.alias_of or e.twin_of else e
            t = self.native[src.name]
            if t is None:
                dt = self.tdt
                n = src.numel
                if self.a.llama70b:
                    hn = h32 = None
                else:
                    hn = zeros_sha(n * torch.empty(0, dtype=dt).element_size())
                    h32 = zeros_sha(4 * n)
                live.append(OD([("name", e.name), ("shape", list(e.shape)),
                                ("dtype", dtype_str(dt)), ("sha256_native", hn),
                                ("sha256_fp32", h32), ("big_zero", True)]))
                continue
            live.append(OD([("name", e.name), ("shape", list(e.shape)), ("dtype", dtype_str(t.dtype)),
                            ("sha256_native", sha(t)), ("sha256_fp32", sha(t.float()))]))
        return out, entries, live

    def groups_in_shapes_order(self):
        if self.a.stage == 3:
            return [ents for _, ents, _ in self.z3_subs]
        return self.groups

    # ---- layouts --------------------------------------------------------------------
    def write_layout_files(self, root):
        a = self.a
        if a.adapter_config:
            # a PEFT run's adapter beside the tag folder, as the HF Trainer saves it
            with open(os.path.join(root, "adapter_config.json"), "w") as f:
                json.dump({"peft_type": "LORA", "r": 2, "lora_alpha": 4,
                           "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"},
                          f, indent=2)
        if a.zero_to_fp32_stub:
            p = os.path.join(root, "zero_to_fp32.py")
            with open(p, "w") as f:
                f.write("#!/usr/bin/env python\n# placeholder for DeepSpeed's zero_to_fp32.py "
                        "(written by tests/gen/make_ckpt.py; not a tensor file)\n")
            os.chmod(p, 0o744)
        if a.layout == "xtuner":
            with open(os.path.join(root, "last_checkpoint"), "w") as f:
                f.write(os.path.abspath(self.tagdir))
            return
        with open(os.path.join(root, "latest"), "w") as f:
            f.write(self.tag)
        if a.layout != "trainer":
            return
        H = a.hidden
        cfg = OD([("architectures", ["LlamaForCausalLM"]), ("attention_bias", not a.llama),
                  ("bos_token_id", 1), ("eos_token_id", 2), ("hidden_act", "silu"),
                  ("hidden_size", H), ("initializer_range", 0.02),
                  ("intermediate_size", a.intermediate), ("max_position_embeddings", a.max_pos),
                  ("model_type", "llama"), ("num_attention_heads", a.heads if a.llama else 1),
                  ("num_hidden_layers", a.layers),
                  ("num_key_value_heads", a.kv_heads if a.llama else 1),
                  ("rms_norm_eps", 1e-06), ("rope_theta", 10000.0),
                  ("tie_word_embeddings", bool(a.tied)),
                  ("torch_dtype", {"fp32": "float32", "bf16": "bfloat16",
                                   "fp16": "float16"}[a.dtype]),
                  ("transformers_version", "4.40.0"), ("use_cache", True),
                  ("vocab_size", a.vocab)])
        js = {"config.json": cfg,
              "generation_config.json": OD([("_from_model_config", True), ("bos_token_id", 1),
                                            ("eos_token_id", 2),
                                            ("transformers_version", "4.40.0")]),
              "special_tokens_map.json": {"bos_token": "<s>", "eos_token": "</s>",
                                          "unk_token": "<unk>"},
              "tokenizer_config.json": OD([("add_bos_token", True), ("add_eos_token", False),
                                           ("bos_token", "<s>"), ("eos_token", "</s>"),
                                           ("unk_token", "<unk>"),
                                           ("model_max_length", a.max_pos),
                                           ("tokenizer_class", "PreTrainedTokenizerFast")]),
              "tokenizer.json": OD([("version", "1.0"), ("truncation", None), ("padding", None),
                                    ("added_tokens", []), ("normalizer", None),
                                    ("pre_tokenizer", {"type": "Whitespace"}),
                                    ("post_processor", None), ("decoder", None),
                                    ("model", {"type": "WordLevel", "unk_token": "<unk>",
                                               "vocab": OD([("<unk>", 0), ("<s>", 1), ("</s>", 2)]
                                                           + [("t%d" % i, i) for i in
                                                              range(3, min(a.vocab, 64))])})]),
              "trainer_state.json": OD([("best_metric", None), ("best_model_checkpoint", None),
                                        ("epoch", 0.01), ("eval_steps", 500),
                                        ("global_step", a.steps),
                                        ("is_hyper_param_search", False),
                                        ("is_local_process_zero", True),
                                        ("is_world_process_zero", True),
                                        ("log_history", [{"epoch": 0.01, "grad_norm": 1.5,
                                                          "learning_rate": 2e-05, "loss": 2.5,
                                                          "step": a.steps}]),
                                        ("logging_steps", 1), ("max_steps", 100),
                                        ("num_train_epochs", 1), ("save_steps", a.steps),
                                        ("total_flos", 0.0), ("train_batch_size", 2)])}
        for fn, obj in js.items():
            with open(os.path.join(root, fn), "w") as f:
                json.dump(obj, f, indent=2)
                f.write("\n")
        ta = TrainingArguments()
        ta.__dict__.update({"output_dir": os.path.dirname(os.path.abspath(root)),
                            "per_device_train_batch_size": 2, "learning_rate": 2e-05,
                            "bf16": a.dtype == "bf16", "fp16": a.dtype == "fp16",
                            "deepspeed": {"zero_optimization": {"stage": a.stage}},
                            "save_steps": a.steps, "seed": a.seed})
        torch.save(ta, os.path.join(root, "training_args.bin"))
        for r in range(self.ws):
            fn = "rng_state.pth" if self.ws == 1 else "rng_state_%d.pth" % r
            torch.save({"python": random.getstate(), "numpy": np.random.get_state(),
                        "cpu": torch.random.get_rng_state()}, os.path.join(root, fn))

    # ---- main -----------------------------------------------------------------------
    def run(self):
        a = self.a
        self.name = a.name
        outdir = os.path.abspath(a.out)
        root = os.path.join(outdir, a.name)
        if os.path.exists(root):
            shutil.rmtree(root)
        os.makedirs(root)
        if a.tag:
            self.tag = a.tag
        elif a.layout == "xtuner":
            self.tag = "iter_%d.pth" % a.steps
        else:
            self.tag = "global_step%d" % a.steps
        self.tagdir = os.path.join(root, self.tag)
        os.makedirs(self.tagdir)
        # sub-group size (ZeRO-3)
        self.sub_group_size_cfg = a.sub_group_size
        self.sub_group_size = a.sub_group_size if a.sub_group_size else 1000000000
        if a.big_gib:
            big = next(e for e in self.params if e.big)
            p = -(-big.numel // self.ws)
            if self.sub_group_size > p:
                self.sub_group_size = p
                self.sub_group_size_cfg = p
        if a.zero0:
            self.write_z0()
        elif a.stage == 3:
            self.write_z3()
        else:
            self.write_z12()
        self.write_layout_files(root)
        out, entries, live = self.reference()
        self.write_ref(outdir, root, out, entries, live)

    def write_ref(self, outdir, root, out, entries, live):
        a = self.a
        rel_tag = os.path.relpath(self.tagdir, outdir)
        files = sorted([os.path.join(rel_tag, f) for f in self.files])
        if a.layout != "xtuner":
            files.append(os.path.join(a.name, "latest"))
        optcls = ({"unfused": "FP16_UnfusedOptimizer", "fused": "FP16_Optimizer",
                   "fp32": "AdamW"}[a.zero0] if a.zero0 else
                  "BF16_Optimizer" if a.bf16_optimizer else
                  "DeepSpeedZeroOptimizer_Stage3" if a.stage == 3 else "DeepSpeedZeroOptimizer")
        ps = [[[n, list(s)] for n, s in g.items()] for g in
              ([OD((e.name, e.shape) for e in ents) for ents in self.groups_in_shapes_order()])]
        frozen_names = [e.name for e in self.frozen] if (a.stage >= 2 and not a.bf16_optimizer
                                                         and not a.exclude_frozen) else []
        ref = OD()
        ref["fixture"] = a.name
        ref["generator"] = "tests/gen/make_ckpt.py"
        # --llama's and issue 8's options appear only when used: default output
        # stays as it was
        ref["generator_args"] = {k: v for k, v in vars(a).items()
                                 if (a.llama or k not in ("llama", "heads", "kv_heads"))
                                 and (k not in NEW_OPTS or v != NEW_OPTS[k])}
        ref["deepspeed_version"] = DS_VERSION
        ref["torch_version"] = torch.__version__
        ref["zero_stage"] = 0 if a.zero0 else a.stage
        ref["world_size"] = self.ws
        ref["bf16"] = a.dtype == "bf16"
        ref["fp16"] = a.dtype == "fp16"
        ref["train_dtype"] = a.dtype
        notes = []
        if a.bf16_optimizer:
            notes.append("expected failure: BF16_Optimizer.state_dict() has no 'zero_stage' key, so "
                         "zero_to_fp32 rejects it; no entries; 'master_entries' holds the fp32 "
                         "master reconstruction (buffers, params, aliases) for readers that "
                         "support it")
        if a.stage == 1 and self.frozen:
            notes.append("expected mismatch: stage 1 writes no frozen_param_*, so zero_to_fp32 drops "
                         "the frozen params (and aliases of them); their values exist only in "
                         "mp_rank_00_model_states.pt['module']")
        if a.zero0:
            notes.append("ZeRO-0 (%s): no optimizer files, so zero_to_fp32 refuses it; "
                         "'master_entries' holds the fp32 master reconstruction" % a.zero0)
        if a.exclude_frozen:
            notes.append("exclude_frozen_parameters=True: the frozen params are not in the "
                         "checkpoint; only live_state_dict has them")
        if a.twice:
            notes.append("model.proj_b.* is model.proj_a.* registered a second time: only in "
                         "module, so zero_to_fp32 drops it")
        if a.big_gib:
            notes.append("big mode: %s is all zeros, stored as sparse holes; not in ref.pt"
                         % next(e.name for e in self.params if e.big))
        if a.llama70b:
            notes.append("llama70b mode: Llama-2-70B's names and shapes, every parameter all "
                         "zeros as sparse holes; no sha256 (not computed), not in ref.pt")
        ref["note"] = "; ".join(notes)
        ref["ds_config"] = self.ds_config()
        ref["model"] = {"vocab": a.vocab, "hidden": a.hidden, "intermediate": a.intermediate,
                        "max_pos": a.max_pos, "layers": a.layers, "tie_word_embeddings": a.tied,
                        "name_prefix": a.prefix, "odd": a.odd, "edge": a.edge}
        if a.llama:
            ref["model"].update({"llama": True, "heads": a.heads, "kv_heads": a.kv_heads,
                                 "odd": False, "edge": False})
        ref["layout"] = a.layout
        ref["root"] = a.name
        ref["tag_dir"] = rel_tag
        ref["checkpoint_files"] = files
        ref["tag"] = self.tag
        ref["optimizer_class"] = optcls
        ref["optimizer_param_groups"] = [[e.name for e in g] for g in self.groups]
        ref["zero_to_fp32"] = ("FAILED: ValueError: not a zero checkpoint (BF16_Optimizer)"
                               if a.bf16_optimizer else
                               "FAILED: no optimizer files (ZeRO-0)" if a.zero0 else "ok")
        ref["shared_params"] = [[k, v] for k, v in self.aliases.items()]
        ref["aliases"] = dict(self.aliases)
        ref["buffer_names"] = [e.name for e in self.buffers]
        ref["frozen_names"] = frozen_names
        ref["frozen_params_live"] = [e.name for e in self.frozen]
        ref["param_shapes"] = ps
        ref["global_steps"] = a.steps
        ref["skipped_steps"] = 0
        ref["fp32_partitions"] = self.fp32_partitions
        if a.bf16_optimizer or a.zero0:
            ref["master_entries"] = entries
        else:
            ref["entries"] = entries
        ref["live_state_dict"] = live
        live_names = [e.name for e in self.ents]
        if a.bf16_optimizer or a.zero0:
            ref["live_vs_zero_to_fp32"] = "n/a"
            ref["mismatches"] = []
        elif set(live_names) != set(out):
            ref["live_vs_zero_to_fp32"] = "MISMATCH"
            ref["mismatches"] = ["key sets differ: only_ref=%s only_live=%s"
                                 % (sorted(set(out) - set(live_names)),
                                    sorted(set(live_names) - set(out)))]
        else:
            ref["live_vs_zero_to_fp32"] = "match (bit-exact after casting reference to live dtype)"
            ref["mismatches"] = []
        with open(os.path.join(outdir, a.name + ".ref.json"), "w") as f:
            json.dump(ref, f, indent=1)
        torch.save({n: t for n, t in out.items() if t is not None},
                   os.path.join(outdir, a.name + ".ref.pt"))


# Options added after the fixtures were compared opcode by opcode, and their
# defaults (left out of ref.json's generator_args when unused).
NEW_OPTS = {"fp32_buffer": False, "views": False, "view_rows": 5, "twice": False,
            "empty_shared": False, "exclude_frozen": False, "adapter_config": False,
            "zero0": None, "legacy": False}


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory receiving NAME/, NAME.ref.json, NAME.ref.pt")
    ap.add_argument("--name", required=True)
    ap.add_argument("--stage", type=int, choices=(1, 2, 3), default=3)
    ap.add_argument("--ws", "--ranks", type=int, default=2, dest="ws")
    ap.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    ap.add_argument("--frozen", action="store_true", help="embed_tokens/embed_positions frozen")
    ap.add_argument("--tied", action="store_true", help="lm_head.weight tied to embed_tokens")
    ap.add_argument("--prefix", default=None, help="name prefix, e.g. 'llm.' (xtuner default)")
    ap.add_argument("--layout", choices=("deepspeed", "trainer", "xtuner"), default="deepspeed")
    ap.add_argument("--bf16-optimizer", action="store_true",
                    help="BF16_Optimizer (implies --stage 1 --dtype bf16)")
    ap.add_argument("--sub-group-size", type=int, default=None, help="ZeRO-3 sub_group_size")
    ap.add_argument("--span-subgroups", action="store_true",
                    help="ZeRO-3: cut each rank's flat data into sub_group_size chunks "
                         "regardless of param boundaries (params span sub-groups)")
    ap.add_argument("--persistence-threshold", type=int, default=0,
                    help="ZeRO-3 ds_config stage3_param_persistence_threshold (-1: omit the key; "
                         "only changes ds_config, every param is partitioned regardless)")
    ap.add_argument("--torch-save", action="store_true",
                    help="write the .pt files with torch.save itself instead of tests/gen/tzip.py "
                         "(same bytes, slower)")
    ap.add_argument("--legacy", action="store_true",
                    help="write the rank files in torch's legacy (non-zip) format, as DeepSpeed "
                         ">= 0.17 does with \"checkpoint_serialization\": false")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default=None)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=22)
    ap.add_argument("--intermediate", type=int, default=37)
    ap.add_argument("--vocab", type=int, default=1031)
    ap.add_argument("--max-pos", type=int, default=16)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--params", type=int, default=None,
                    help="approximate number of parameter tensors (sets --layers)")
    ap.add_argument("--no-odd", dest="odd", action="store_false",
                    help="omit the odd-sized model.odd.weight 13x5 / model.odd.bias 7")
    ap.add_argument("--no-edge", dest="edge", action="store_false",
                    help="omit the edge cases model.empty.weight [0,H], model.one.weight [1] and "
                         "the 0-dim buffer model.scale (with --no-edge the model is the one of "
                         "the real fixtures)")
    ap.add_argument("--big-gib", type=float, default=0,
                    help="add an all-zero param so rank 0's optim file exceeds G GiB (sparse; "
                         "ZeRO-3 only)")
    ap.add_argument("--llama70b", action="store_true",
                    help="Llama-2-70B's tensor names and shapes (80 layers unless --layers), "
                         "every parameter all zeros as sparse holes (zip64; ZeRO-3 only); "
                         "implies --no-odd --no-edge, no buffers, no sha256 in the reference")
    ap.add_argument("--no-zero-to-fp32", dest="zero_to_fp32_stub", action="store_false",
                    help="do not write the zero_to_fp32.py placeholder beside the tag")
    ap.add_argument("--llama", action="store_true",
                    help="the model is exactly transformers' LlamaForCausalLM (no buffers, no "
                         "biases, no embed_positions/odd/edge tensors); the trainer layout's "
                         "config.json describes it (for loading mounts with transformers)")
    ap.add_argument("--heads", type=int, default=1, help="--llama: attention heads")
    ap.add_argument("--kv-heads", type=int, default=1, help="--llama: key/value heads (GQA)")
    ap.add_argument("--fp32-buffer", action="store_true",
                    help="a float buffer model.rope_cache the model keeps in float32 whatever "
                         "the training dtype (DeepSpeed >= 0.19.2 casts params only)")
    ap.add_argument("--views", action="store_true",
                    help="buffers and a frozen param (model.frozen_t.weight) held as views "
                         "with strides: transposed, sliced rows, expanded, permuted 3-D; "
                         "module keeps them as they are, strides and storages")
    ap.add_argument("--view-rows", type=int, default=5,
                    help="--views: rows of the transposed frozen param (columns: rows + 2)")
    ap.add_argument("--twice", action="store_true",
                    help="one nn.Linear registered as model.proj_a and model.proj_b: the second "
                         "name only in module (DeepSpeed's shared_params misses it)")
    ap.add_argument("--empty-shared", action="store_true",
                    help="shared_params = {} as DeepSpeed <= 0.10.0 writes at ZeRO-1/2 "
                         "(with --tied: the tie only in module)")
    ap.add_argument("--exclude-frozen", action="store_true",
                    help="save_checkpoint(exclude_frozen_parameters=True): frozen params left "
                         "out of module, frozen_param_shapes None (needs --frozen)")
    ap.add_argument("--adapter-config", action="store_true",
                    help="write a PEFT adapter_config.json beside the tag folder")
    ap.add_argument("--zero0", choices=("unfused", "fused", "fp32"), default=None,
                    help="no ZeRO (stage 0): one mp_rank_00_model_states.pt whose 'optimizer' "
                         "holds the fp32 masters (FP16_UnfusedOptimizer's fp32_groups, "
                         "FP16_Optimizer's fp32_groups_flat) or, fp32, is the torch "
                         "optimizer's state_dict")
    a = ap.parse_args(argv)
    if a.llama:
        if a.hidden % a.heads or (a.hidden // a.heads) % 2 or a.heads % a.kv_heads:
            ap.error("--llama needs --hidden divisible by --heads into an even head size, "
                     "and --heads divisible by --kv-heads")
        if a.bf16_optimizer or a.big_gib:
            ap.error("--llama does not go with --bf16-optimizer or --big-gib")
        a.odd = a.edge = False
        if a.fp32_buffer or a.views or a.twice:
            ap.error("--llama does not go with --fp32-buffer, --views or --twice")
    if a.exclude_frozen and not a.frozen:
        ap.error("--exclude-frozen needs --frozen")
    if a.zero0:
        if (a.zero0 == "fp32") != (a.dtype == "fp32"):
            ap.error("--zero0 fp32 goes with --dtype fp32, unfused/fused with bf16 or fp16")
        if a.bf16_optimizer or a.big_gib or (a.zero0 == "fp32" and a.frozen):
            ap.error("--zero0 does not go with --bf16-optimizer, --big-gib or "
                     "(fp32) --frozen")
        a.stage = 1  # the ZeRO-1/2 pieces (groups, module) apply
    if a.bf16_optimizer:
        a.stage, a.dtype = 1, "bf16"
    if a.prefix is None:
        a.prefix = "llm." if a.layout == "xtuner" else ""
    if a.llama70b:
        if a.stage != 3 or a.tied or a.frozen or a.big_gib or a.span_subgroups or a.llama:
            ap.error("--llama70b is ZeRO-3 without --tied, --frozen, --big-gib, --span-subgroups, --llama")
        a.odd = a.edge = False
        if "--layers" not in (argv if argv is not None else sys.argv):
            a.layers = 80
    elif a.params and a.llama:
        a.layers = max(1, -(-(a.params - (2 if a.tied else 3)) // 9))
    elif a.params:
        fixed = 4 + (2 if a.odd else 0) + (3 if a.edge else 0) + (0 if a.tied else 1)
        a.layers = max(1, -(-(a.params - fixed) // 12))
    if a.big_gib and a.stage != 3:
        ap.error("--big-gib needs --stage 3")
    if a.span_subgroups and not a.sub_group_size:
        ap.error("--span-subgroups needs --sub-group-size")
    if a.big_gib and a.span_subgroups:
        ap.error("--big-gib and --span-subgroups are exclusive")
    return a


def main(argv=None):
    a = parse(argv)
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    t0 = time.time()
    g = Gen(a)
    g.run()
    print("%s: %d files in %s (%.2fs)" % (a.name, len(g.files), g.tagdir, time.time() - t0))


if __name__ == "__main__":
    main()
