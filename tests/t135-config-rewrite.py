#!/usr/bin/python3
"""The served config.json is the source's bytes with only the dtype value
changed (zerofs(1), config.json).

(a) The scanner against Python's json module, which is what transformers
    reads config.json with: thousands of mutants of real-shaped configs go
    through tests/helpers/config_tool and json.loads(); zerofs rewrites
    exactly the ones Python reads as an object, and what it writes parses
    to the same members in the same order with the top-level dtype keys
    set to the served dtype (torch_dtype added when neither is there).
(b) Through a mount and an export: the served config.json of a
    save_pretrained-style file (indent 2, sorted keys), a CRLF + tabs one
    and one without any dtype key differs from its source by exactly the
    one line `diff` would show (a changed value or an added key), and is
    the same bytes in the export.
"""
import difflib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import Tap, BUILD, TMPROOT, checkpoints, run  # noqa: E402
from zfmount import mounted, MountFailed  # noqa: E402

tap = Tap()
WORK = tempfile.mkdtemp(prefix="t130-", dir=TMPROOT)
TOOL = os.path.join(BUILD, "tests", "config_tool")

LLAMA = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 1,
    "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 10000.0,
    "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.44.0",
    "use_cache": True, "vocab_size": 32000,
}


def save_pretrained_text(d):
    """What PretrainedConfig.to_json_file writes."""
    return json.dumps(d, indent=2, sort_keys=True) + "\n"


def batch(inputs, dtype="bfloat16"):
    """[(ok, bytes)] from config_tool for each input."""
    blob = b"".join(struct.pack("<I", len(x)) + x for x in inputs)
    p = subprocess.run([TOOL, dtype], input=blob, capture_output=True)
    if p.returncode:
        raise RuntimeError("config_tool: %r" % p.stderr)
    out, i = [], 0
    for _ in inputs:
        ok = p.stdout[i:i + 1] == b"y"
        n = struct.unpack_from("<I", p.stdout, i + 1)[0]
        out.append((ok, p.stdout[i + 5:i + 5 + n]))
        i += 5 + n
    return out


def py_pairs(b):
    """The top-level members as Python reads the file, or None."""
    try:
        text = b.decode("utf-8")
        v = json.loads(text, object_pairs_hook=lambda pairs: ("obj", pairs))
    except (ValueError, RecursionError):
        return None
    if not (isinstance(v, tuple) and v[0] == "obj"):
        return None
    return v[1]


def expected_ok(pin, pout, dtype):
    """pout is pin with every top-level torch_dtype / dtype set, or with
    one torch_dtype added when there was none."""
    keys = {"torch_dtype", "dtype"}
    if any(k in keys for k, _ in pin):
        want = [(k, dtype if k in keys else v) for k, v in pin]
        return pout == want
    rest = [(k, v) for k, v in pout if k != "torch_dtype"]
    added = [(k, v) for k, v in pout if k == "torch_dtype"]
    return rest == pin and added == [("torch_dtype", dtype)]


def mutate(rng, b):
    b = bytearray(b)
    alphabet = b'{}[]",:\\ \t\r\nu0123456789abcdefeE+-.tnNI\x01\x7f\x80\xc3\xa9\xff'
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(b))
        op = rng.randint(0, 2)
        if op == 0:
            b[at:at] = bytes([rng.choice(alphabet)])
        elif op == 1 and at < len(b):
            del b[at]
        elif at < len(b):
            b[at] = rng.choice(alphabet)
    return bytes(b)


# (a) differential --------------------------------------------------------
if not os.path.exists(TOOL):
    tap.ok(False, "tests/helpers/config_tool is built", TOOL)
else:
    seeds = [
        save_pretrained_text(LLAMA).encode(),
        json.dumps({"a": [1, 2.5, None], "dtype": "float32", "t": {"torch_dtype": "x"}}).encode(),
        b'{\r\n\t"z": NaN,\r\n\t"a": "\\u00e9\\ud83d\\ude00",\r\n\t"n": -Infinity\r\n}\r\n',
        b'{"torch_dtype": "float32", "torch_dtype": null, "k": {"dtype": 1}}',
        b"{}",
    ]
    rng = random.Random(130)
    cases = list(seeds)
    while len(cases) < 6000:
        cases.append(mutate(rng, rng.choice(seeds)))
    results = batch(cases)
    agree = disagree = 0
    accepted = 0
    problems = []
    for src, (ok, out) in zip(cases, results):
        pin = py_pairs(src)
        if (pin is not None) != ok:
            disagree += 1
            if len(problems) < 5:
                problems.append("python %s, zerofs %s: %r (%s)" % (
                    "reads it" if pin is not None else "refuses it",
                    "rewrites it" if ok else "refuses it", src[:120], out[:120]))
            continue
        agree += 1
        if not ok:
            continue
        accepted += 1
        pout = py_pairs(out)
        if pout is None or not expected_ok(pin, pout, "bfloat16"):
            problems.append("wrong rewrite: %r -> %r" % (src[:120], out[:120]))
    tap.ok(not problems and accepted > 200,
           "6000 configs and mutants: zerofs accepts exactly what json.loads reads as an object "
           "(%d agree, %d accepted), and sets only the top-level dtype" % (agree, accepted),
           "\n".join(problems))
    # Every refusal says where, in lines and columns, and never quotes the file.
    refusals = [out.decode() for ok, out in results if not ok]
    tap.ok(refusals and all(r.startswith("not valid JSON: ") and " at line " in r
                            and ", column " in r for r in refusals),
           "every refusal is 'not valid JSON: ... at line L, column C'", refusals[:3])

# (b) through a mount and an export --------------------------------------
CONFIGS = [
    ("save_pretrained (indent 2, sorted)", save_pretrained_text(LLAMA).encode(),
     '-  "torch_dtype": "float16",', '+  "torch_dtype": "bfloat16",'),
    ("CRLF, tabs, transformers >= 4.56 'dtype'",
     b'{\r\n\t"model_type": "llama",\r\n\t"dtype": "float32",\r\n\t"vocab_size": 32000\r\n}\r\n',
     '-\t"dtype": "float32",\r', '+\t"dtype": "bfloat16",\r'),
    ("no dtype key (sorted): one added line",
     save_pretrained_text({k: v for k, v in LLAMA.items() if k != "torch_dtype"}).encode(),
     None, '+  "torch_dtype": "bfloat16",'),
]

ck = checkpoints()
src = next((d for n, d, _ in ck if n == "z3_ws2_fp32"), ck[0][1] if ck else None)
for label, text, minus, plus in CONFIGS:
    case = tempfile.mkdtemp(prefix="case-", dir=WORK)
    root = os.path.join(case, "ckpt")
    shutil.copytree(src, root, symlinks=True)
    with open(os.path.join(root, "config.json"), "wb") as f:
        f.write(text)
    try:
        with mounted(root, "--dtype", "bf16") as m:
            with open(m.file("config.json"), "rb") as f:
                served = f.read()
    except MountFailed as e:
        tap.ok(False, "%s: mounts" % label, e)
        continue
    old = text.decode().splitlines(keepends=True)
    new = served.decode().splitlines(keepends=True)
    diff = [l.rstrip("\n") for l in difflib.unified_diff(old, new, n=0)
            if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    want = [x for x in (minus, plus) if x]
    tap.ok(diff == want, "%s: diff against the source shows %s" % (
        label, "one changed line" if minus else "one added line"), diff)
    out = os.path.join(case, "out")
    p = run(["export", "-q", "--dtype", "bf16", root, out])
    got = open(os.path.join(out, "config.json"), "rb").read() if p.returncode == 0 else None
    tap.ok(got == served, "%s: export writes the same bytes" % label, p.stderr)

shutil.rmtree(WORK, ignore_errors=True)
tap.done()
