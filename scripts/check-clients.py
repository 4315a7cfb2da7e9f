#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks the test clients' venv (made by scripts/setup-debian.sh); run with
the venv's python:

    .venv/bin/python3 scripts/check-clients.py scripts/clients-requirements.txt

- torch is Debian's python3-torch (imported from /usr/lib/python3), and no
  torch, CUDA (nvidia-*) or triton distribution sits in the venv;
- the venv holds exactly the pinned distributions (plus pip/setuptools),
  each at its pinned version and imported from the venv;
- their own requirements are met (pip check, limited to them);
- transformers' AutoModelForCausalLM runs a small Llama on this torch, and
  safetensors writes and reads a bf16 tensor with it.
Prints one line per check; exits 1 on the first failure.
"""
import importlib.metadata as md
import os
import re
import subprocess
import sys
import tempfile

DEBIAN = "/usr/lib/python3/dist-packages/"


def fail(msg):
    print("check-clients: FAILED: " + msg, file=sys.stderr)
    sys.exit(1)


def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, ver = line.split("==")
                out[canon(name)] = ver.strip()
    return out


def main():
    want = pins(sys.argv[1])
    venv = sys.prefix
    if venv == sys.base_prefix:
        fail("not running inside a venv (%s)" % sys.executable)

    import torch
    if not torch.__file__.startswith(DEBIAN):
        fail("torch comes from %s, not Debian's python3-torch" % torch.__file__)
    if not torch.__version__.startswith("1.13"):
        fail("torch %s is not Debian 12's 1.13" % torch.__version__)
    print("torch %s from %s (Debian's)" % (torch.__version__, os.path.dirname(torch.__file__)))

    mine = {}
    for d in md.distributions():
        loc = str(d.locate_file(""))
        if loc.startswith(venv):
            mine[canon(d.metadata["Name"])] = d.version
    banned = sorted(n for n in mine if n in ("torch", "triton") or n.startswith("nvidia-"))
    if banned:
        fail("the venv holds %s: pip pulled a torch/CUDA build" % ", ".join(banned))
    extra = sorted(set(mine) - set(want) - {"pip", "setuptools", "wheel"})
    if extra:
        fail("the venv holds unpinned distributions: %s" % ", ".join(extra))
    for name, ver in sorted(want.items()):
        if mine.get(name) != ver:
            fail("%s is %s in the venv, pinned %s" % (name, mine.get(name, "missing"), ver))
    print("venv %s: exactly the %d pinned distributions" % (venv, len(want)))

    p = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    broken = [l for l in p.stdout.splitlines() if canon(l.split(" ", 1)[0]) in want]
    if broken:
        fail("pip check: " + "; ".join(broken))
    print("their requirements are met (pip check)")

    import safetensors
    import transformers
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, LlamaConfig
    for mod in (safetensors, transformers):
        if not mod.__file__.startswith(venv):
            fail("%s imported from %s, not the venv" % (mod.__name__, mod.__file__))
    cfg = LlamaConfig(vocab_size=61, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    model = AutoModelForCausalLM.from_config(cfg)
    logits = model(torch.tensor([[1, 2, 3]])).logits
    if tuple(logits.shape) != (1, 3, 61):
        fail("a small Llama gave logits of shape %s" % (tuple(logits.shape),))
    with tempfile.TemporaryDirectory() as d:
        t = torch.arange(6, dtype=torch.float32).reshape(2, 3).to(torch.bfloat16)
        save_file({"t": t}, os.path.join(d, "x.safetensors"), metadata={"format": "pt"})
        if not torch.equal(load_file(os.path.join(d, "x.safetensors"))["t"], t):
            fail("safetensors did not read back what it wrote")
    print("transformers %s runs a Llama on torch %s; safetensors %s round-trips bf16"
          % (transformers.__version__, torch.__version__, safetensors.__version__))


if __name__ == "__main__":
    main()
