"""Hugging Face writers and readers as references for zerofs mounts (needs the
client venv: tests/lib/zfclients.py).

    safe_open_all(folder)          name -> tensor, through safetensors.safe_open
                                   (the index when there is one), plus checks
    state_model(tensors, aliases)  a transformers PreTrainedModel whose
                                   state_dict() is exactly `tensors` (in that
                                   order, a tied alias sharing its source's
                                   Parameter and declared in _tied_weights_keys),
                                   so save_pretrained() writes what a model with
                                   these weights writes
    pretrained_files(model, dir, max_shard_size)
                                   save_pretrained's safetensors files and index
                                   (name -> bytes); config files left out
    model_files(folder)            the same files of a mount
    compare_files(got, want)       problems, file by file, byte by byte
"""
import collections
import json
import os
import re

import torch
from safetensors import safe_open
from transformers import PretrainedConfig, PreTrainedModel

OD = collections.OrderedDict
INDEX = "model.safetensors.index.json"
CONFIG_FILES = ("config.json", "generation_config.json")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def model_files(folder):
    """{file name: bytes} of the safetensors files and the index."""
    return {n: read(os.path.join(folder, n)) for n in sorted(os.listdir(folder))
            if n.endswith(".safetensors") or n == INDEX}


def safe_open_all(folder, problems):
    """Every tensor of a folder read with safe_open, as transformers finds
    the files (model.safetensors, else the index's shards)."""
    out = OD()
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        files = ["model.safetensors"]
        wmap = None
    else:
        with open(os.path.join(folder, INDEX)) as f:
            wmap = json.load(f)["weight_map"]
        files = sorted(set(wmap.values()))
    for fn in files:
        with safe_open(os.path.join(folder, fn), framework="pt") as f:
            md = f.metadata()
            if md != {"format": "pt"}:
                problems.append("%s: metadata %r, not {'format': 'pt'}" % (fn, md))
            for k in f.keys():
                if wmap is not None and wmap.get(k) != fn:
                    problems.append("%s: holds %s, the index says %s" % (fn, k, wmap.get(k)))
                t = f.get_tensor(k)
                if t.dim() >= 1 and t.shape[0] > 1:
                    # a partial read: the slice API maps only part of the file
                    part = f.get_slice(k)[1:2]
                    if not torch.equal(part.view(torch.uint8) if part.dtype == torch.bool else part,
                                       t[1:2].view(torch.uint8) if t.dtype == torch.bool else t[1:2]):
                        problems.append("%s: get_slice(%s)[1:2] differs from get_tensor" % (fn, k))
                if k in out:
                    problems.append("%s appears in two files" % k)
                out[k] = t
    if wmap is not None and set(wmap) != set(out):
        problems.append("the index names %d tensors, the shards hold %d" % (len(wmap), len(out)))
    return out


class StateConfig(PretrainedConfig):
    model_type = "zerofs-test-state"


class StateModel(PreTrainedModel):
    """A module tree whose state_dict() is exactly the given tensors."""
    config_class = StateConfig
    base_model_prefix = "zerofs_test"

    def __init__(self, config, tensors, aliases, buffers):
        super().__init__(config)
        # A PreTrainedModel counts its own config and such; the tensors go
        # into plain submodules created on first use.
        self._tied_weights_keys = ["^%s$" % re.escape(a) for a in aliases] or None
        params = {}
        for name, t in tensors.items():
            if name in aliases:
                continue
            mod, leaf = self._module_for(name)
            if name in buffers or not (t.is_floating_point()):
                mod.register_buffer(leaf, t, persistent=True)
            else:
                p = torch.nn.Parameter(t, requires_grad=False)
                mod.register_parameter(leaf, p)
                params[name] = p
        for a, src in aliases.items():
            mod, leaf = self._module_for(a)
            mod.register_parameter(leaf, params[src])

    def _module_for(self, name):
        parts = name.split(".")
        mod = self
        for p in parts[:-1]:
            if p not in mod._modules:
                mod.add_module(p, torch.nn.Module())
            mod = mod._modules[p]
        return mod, parts[-1]


def state_model(tensors, aliases=None, buffers=()):
    """tensors: OrderedDict served name -> tensor (checkpoint order, aliases
    included at their place); aliases: {alias: source}."""
    aliases = dict(aliases or {})
    m = StateModel(StateConfig(), tensors, aliases, set(buffers))
    got = list(m.state_dict().keys())
    want = list(tensors.keys())
    if got != want:
        raise AssertionError("the stand-in model's state_dict order differs from the checkpoint's:\n"
                             "got  %s\nwant %s" % (got[:12], want[:12]))
    return m


def pretrained_files(model, d, max_shard_size=None):
    kw = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(d, safe_serialization=True, **kw)
    return model_files(d)


def compare_files(got, want):
    """Problems between two {file name: bytes} maps (names, then bytes)."""
    problems = []
    if sorted(got) != sorted(want):
        problems.append("files %s, the reference writes %s" % (sorted(got), sorted(want)))
    for n in sorted(set(got) & set(want)):
        a, b = got[n], want[n]
        if a != b:
            i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
            problems.append("%s: %d bytes vs the reference's %d, first difference at byte %d: %r vs %r"
                            % (n, len(a), len(b), i, a[max(0, i - 20):i + 40], b[max(0, i - 20):i + 40]))
    return problems


def index_plan(files):
    """{shard: [names]} from an index's bytes (or None without an index)."""
    if INDEX not in files:
        return None
    plan = collections.defaultdict(list)
    for k, v in json.loads(files[INDEX])["weight_map"].items():
        plan[v].append(k)
    return {k: sorted(v) for k, v in plan.items()}
