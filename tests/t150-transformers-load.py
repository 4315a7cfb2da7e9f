"""transformers itself loads zerofs mounts (client venv: transformers 4.47.1 on
Debian's torch 1.13). The checkpoints are generated with
`tests/gen/make_ckpt.py --llama`, whose model is exactly LlamaForCausalLM
(GQA, tied or untied head), in the HF Trainer layout (checkpoint-N with
config.json and tokenizer files) and the XTuner layout (iter_N.pth, 'llm.'
prefix, config from --config DIR):

  - AutoModelForCausalLM.from_pretrained(MNT, torch_dtype="auto"): no
    missing, unexpected or mismatched keys, the served dtype, every weight and
    the logits (and greedy decoding) equal to the same LlamaForCausalLM
    built from the reference tensors;
  - that reference model's save_pretrained(), single file and
    max_shard_size, writes byte for byte the mount's files;
  - AutoTokenizer reads the tokenizer files the mount passes through;
  - README.md's transformers example is run verbatim with the venv's
    python, on a mount at the /mnt/model it names (tests/t500 runs it too,
    where transformers is importable).
"""
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import zfclients  # noqa: E402

zfclients.require()
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.disable_progress_bar()

from zftest import ROOT, TMPROOT, Tap  # noqa: E402
from zfexpect import Expect  # noqa: E402
from zfmount import MountFailed, mounted  # noqa: E402
import zfhf  # noqa: E402

tap = Tap()
print("# clients: %s" % zfclients.versions())
GEN = os.path.join(ROOT, "tests", "gen", "make_ckpt.py")
WORK = tempfile.mkdtemp(prefix="t150-", dir=TMPROOT)
SHAPE = ["--llama", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "44",
         "--vocab", "97", "--max-pos", "64", "--layers", "2"]
TORCH = {"float32": torch.float32, "bfloat16": torch.bfloat16}
IDS = torch.tensor([[1, 5, 9, 17, 33, 65, 96, 3]])


def gen(name, *args):
    p = subprocess.run([sys.executable, GEN, "--out", WORK, "--name", name] + SHAPE + list(args),
                       capture_output=True, text=True)
    if not tap.ok(p.returncode == 0, "generate %s (--llama %s)" % (name, " ".join(args)), p.stderr[-2000:]):
        return None, None
    with open(os.path.join(WORK, name + ".ref.json")) as f:
        return os.path.join(WORK, name), json.load(f)


def reference_model(cfg_path, ex, served):
    """LlamaForCausalLM from the mount's config, weights = the reference
    tensors in the served dtype (the tied head re-tied by transformers)."""
    with open(cfg_path) as f:
        cfg = LlamaConfig(**json.load(f))
    dt = TORCH[cfg.torch_dtype if isinstance(cfg.torch_dtype, str) else str(cfg.torch_dtype)[6:]]
    # built as from_pretrained builds it for a dtype (buffers such as the
    # rotary inv_freq stay fp32), then given the reference weights
    model = LlamaForCausalLM._from_config(cfg, torch_dtype=dt).eval()
    sd = collections.OrderedDict((n, ex.tensor(n, served)) for n in ex.names)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    want_missing = ["lm_head.weight"] if cfg.tie_word_embeddings else []
    if sorted(missing) != want_missing or unexpected:
        raise AssertionError("reference model: missing %s, unexpected %s" % (missing, unexpected))
    model.tie_weights()
    return model, dt


def greedy(model, steps=4):
    """Greedy decoding by hand: generate() cannot run here, its FSDP check
    imports torch.distributed.fsdp, which torch 1.13 cannot import on
    Python 3.11 (a dataclass with a mutable default)."""
    ids = IDS
    for _ in range(steps):
        nxt = model(ids).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
    return ids


def check_load(tag, m, ex, served, cfg_src):
    model, info = AutoModelForCausalLM.from_pretrained(m.path, torch_dtype="auto", output_loading_info=True)
    model.eval()
    loading = {k: v for k, v in info.items() if v}
    tap.ok(not loading, "%s: from_pretrained(torch_dtype='auto'): no missing, unexpected or "
           "mismatched keys" % tag, loading)
    ref, dt = reference_model(cfg_src, ex, served)
    tap.ok(model.dtype == dt and type(model).__name__ == "LlamaForCausalLM",
           "%s: a %s LlamaForCausalLM" % (tag, dt), (type(model).__name__, model.dtype))
    a, b = model.state_dict(), ref.state_dict()
    bad = [n for n in b if n not in a or a[n].dtype != b[n].dtype or not torch.equal(a[n], b[n])]
    tap.ok(not bad and set(a) == set(b), "%s: all %d weights equal the reference model's" % (tag, len(b)), bad[:8])
    tied = model.config.tie_word_embeddings
    tap.ok(tied == (model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()),
           "%s: lm_head %s the embedding, as the config says" % (tag, "is" if tied else "is not"))
    with torch.no_grad():
        la, lb = model(IDS).logits, ref(IDS).logits
        ga, gb = greedy(model), greedy(ref)
    tap.ok(la.dtype == dt and torch.equal(la, lb) and la.abs().sum() > 0,
           "%s: logits equal the reference model's, bit for bit" % tag,
           "max abs diff %s" % (la.float() - lb.float()).abs().max().item())
    tap.ok(torch.equal(ga, gb), "%s: greedy decoding gives the same tokens %s" % (tag, ga[0, -4:].tolist()))
    return ref


def check_save_pretrained(tag, m, ref, max_shard=None):
    d = os.path.join(WORK, "pretrained")
    shutil.rmtree(d, ignore_errors=True)
    want = zfhf.pretrained_files(ref, d, max_shard)
    got = zfhf.model_files(m.path)
    problems = zfhf.compare_files(got, want)
    n = len([f for f in want if f.endswith(".safetensors")])
    tap.ok(not problems, "%s: byte for byte what LlamaForCausalLM.save_pretrained(%s) writes "
           "(%d safetensors file%s%s)" % (tag, "max_shard_size=%r" % max_shard if max_shard else "",
                                          n, "" if n == 1 else "s", " + index" if n > 1 else ""),
           "\n".join(problems))
    return n


def check_tokenizer(tag, m):
    tok = AutoTokenizer.from_pretrained(m.path)
    ids = tok("t3 t4 t5")["input_ids"]
    tap.ok(ids[-3:] == [3, 4, 5], "%s: AutoTokenizer reads the passed-through tokenizer (%s)" % (tag, ids))


def guarded(what, fn, *args):
    try:
        return fn(*args)
    except MountFailed as e:
        tap.ok(False, "%s: mounts" % what, e)
    except Exception:  # noqa: BLE001 - report and go on
        tap.ok(False, "%s: checks run without an exception" % what, traceback.format_exc())


def trainer_cases():
    out = []
    ck, ref = gen("checkpoint-3", "--layout", "trainer", "--stage", "3", "--ws", "2", "--dtype", "bf16", "--tied")
    if ck:
        out.append(("trainer ZeRO-3 bf16 tied", ck, ref))
    ck2, ref2 = gen("checkpoint-5", "--layout", "trainer", "--stage", "2", "--ws", "3", "--dtype", "fp32",
                    "--steps", "5", "--seed", "7")
    if ck2:
        out.append(("trainer ZeRO-2 fp32 untied", ck2, ref2))
    return out


def readme_transformers_blocks():
    """README's fenced python blocks that use transformers, not marked
    'not run by the tests' (the way tests/t500-cli-docs.py reads them)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    out = []
    for m in re.finditer(r"(?:<!--(.*?)-->\n)?```(\w*)\n(.*?)```", text, re.S):
        note, lang, body = (m.group(1) or ""), m.group(2), m.group(3)
        if lang == "python" and "transformers" in body and "not run by the tests" not in note:
            out.append(body)
    return out


def readme_example(ck, ex):
    """README's transformers example, verbatim, with the venv's python, on a
    mount of the Trainer checkpoint at the /mnt/model it names."""
    blocks = readme_transformers_blocks()
    tap.ok(len(blocks) == 1 and "/mnt/model" in blocks[0],
           "README.md has one transformers example, loading /mnt/model", blocks)
    if not blocks:
        return
    os.makedirs("/mnt/model", exist_ok=True)
    want = sum(int(torch.Size(ex.shape(n)).numel()) for n in ex.names)
    with mounted(ck, mnt="/mnt/model"):
        p = subprocess.run([zfclients.venv_python(), "-c", blocks[0]], cwd=WORK, capture_output=True,
                           text=True, timeout=300)
    tap.ok(p.returncode == 0 and p.stdout.split() == ["torch.float32", str(want)],
           "README's transformers example runs as written and prints the dtype and the %d parameters"
           % want, (p.returncode, p.stdout, p.stderr[-2000:]))


try:
    cases = trainer_cases()
    for label, ck, ref in cases:
        ex = Expect(ck, ref, ck + ".ref.pt")
        for served in ("auto", "fp32", "bf16"):
            tag = "%s --dtype %s" % (label, served)

            def one(tag=tag, served=served, ck=ck, ex=ex):
                with mounted(ck, "--dtype", served) as m:
                    refm = check_load(tag, m, ex, served, m.file("config.json"))
                    check_save_pretrained(tag, m, refm)
                    if served == "auto":
                        check_tokenizer(tag, m)
                with mounted(ck, "--dtype", served, "--max-shard-size", "20KB") as m:
                    check_load(tag + " --max-shard-size 20KB", m, ex, served, m.file("config.json"))
                    n = check_save_pretrained(tag + " --max-shard-size 20KB", m, refm, "20KB")
                    tap.ok(n > 1, "%s --max-shard-size 20KB: several shards (%d)" % (tag, n))
            guarded(tag, one)

    # XTuner: iter_N.pth with 'llm.' names, config and tokenizer from --config DIR
    xt, xref = gen("xt", "--layout", "xtuner", "--stage", "2", "--ws", "2", "--dtype", "bf16", "--tied")
    if xt and cases:
        cfgdir = cases[0][1]
        ex = Expect(os.path.join(xt, xref["tag"]), xref, xt + ".ref.pt")
        tap.ok(ex.strip == "llm." and all(n.startswith("llm.") for n in ex.live),
               "xtuner: every generated name starts with llm.")
        for served in ("auto", "fp32"):
            tag = "xtuner work folder --config checkpoint-3/ --dtype %s" % served

            def xone(tag=tag, served=served):
                with mounted(xt, "--dtype", served, "--config", cfgdir) as m:
                    refm = check_load(tag, m, ex, served, m.file("config.json"))
                    check_save_pretrained(tag, m, refm)
            guarded(tag, xone)

    if cases:
        guarded("README example", readme_example, cases[0][1],
                Expect(cases[0][1], cases[0][2], cases[0][1] + ".ref.pt"))
finally:
    shutil.rmtree(WORK, ignore_errors=True)
tap.done()
