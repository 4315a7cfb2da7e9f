#!/usr/bin/python3
"""Issue 8's loader features, every served byte compared with the model
itself (the live tensors, and the fp32 masters where the run had them):

  * one Parameter, one value: a module registered twice (its second name
    only in `module`), DeepSpeed <= 0.10.0's empty shared_params: every
    name served with the first name's data, the fp32 master of a trainable
    one, at ZeRO-1/2/3; the tied lm_head.weight left out as an alias;
  * strided views: transposed, sliced, expanded and permuted buffers and
    frozen params, read whole and at odd offsets through a mount;
  * ZeRO-0: masters in mp_rank_00_model_states.pt (FP16_UnfusedOptimizer's
    fp32_groups, FP16_Optimizer's fp32_groups_flat), fp32 without masters,
    and what cannot be served said so;
  * --dtype auto per tensor: a float buffer a bf16 run kept in fp32;
  * never partial in silence: exclude_frozen_parameters=True checkpoints
    (ZeRO-1 + PEFT adapter, ZeRO-2, ZeRO-3) say so in inspect, verify exits
    3, mount and export refuse; --base DIR (single file, shards + index,
    a hub cache repo folder with links into blobs/) completes them, and a
    base that is not the run's is refused naming why;
  * one-stage PipelineModule checkpoints served from their layer files;
  * every file in torch's legacy (non-zip) format (ZeRO-0, 2 and 3);
and, where ../shared/fixtures/field exists, every field fixture zerofs
serves, against NAME.live.pt.
"""
import collections
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
sys.path.insert(0, os.path.join(HERE, "gen"))
from zftest import FIXTURES, TMPROOT, Tap, run  # noqa: E402
from zfinspect import check  # noqa: E402
from zfmount import MountFailed, mounted  # noqa: E402
import make_ckpt  # noqa: E402
import reassemble  # noqa: E402
import st_ref  # noqa: E402
import st_validate as sv  # noqa: E402

OD = collections.OrderedDict
tap = Tap()
WORK = tempfile.mkdtemp(prefix="t142-", dir=TMPROOT)
FIELD = os.path.join(os.path.dirname(os.path.abspath(FIXTURES)), "field")
DT = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ST = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
      torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.bool: "BOOL",
      torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16"}


def tbytes(t):
    t = t.detach().contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    elif t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.numpy().tobytes()


def served_as(t, served):
    """t as served with --dtype served: auto keeps the model's own dtype."""
    if served == "auto" or not t.is_floating_point() or t.dtype == torch.float64:
        return t
    return t.to(DT[served])


def export(ckpt, *args):
    """zerofs export into a fresh folder: (process, {name: (st dtype, shape, bytes)})."""
    out = tempfile.mkdtemp(prefix="exp-", dir=WORK)
    shutil.rmtree(out)
    p = run(["export", "-q", ckpt, out] + list(args))
    got = sv.load_dir(out) if p.returncode == 0 else {}
    shutil.rmtree(out, ignore_errors=True)
    return p, got


def compare(label, got, want):
    """One TAP line: got (export) holds exactly want's names, dtypes, shapes, bytes."""
    bad = []
    if list(sorted(got)) != list(sorted(want)):
        bad.append("names: missing %s, extra %s" % (sorted(set(want) - set(got))[:5],
                                                     sorted(set(got) - set(want))[:5]))
    for n, t in want.items():
        if n not in got:
            continue
        dt, shape, b = got[n]
        if dt != ST[t.dtype] or list(shape) != list(t.shape):
            bad.append("%s: %s %s, want %s %s" % (n, dt, shape, ST[t.dtype], list(t.shape)))
        elif b != tbytes(t):
            bad.append("%s: other bytes" % n)
    tap.ok(not bad, label, "; ".join(bad[:6]))


def exported(label, ckpt, want_of, dtypes=("auto", "fp32", "bf16"), extra=()):
    for served in dtypes:
        p, got = export(ckpt, "--dtype", served, *extra)
        if not tap.ok(p.returncode == 0, f"{label}: export --dtype {served}", p.stderr[-600:]):
            continue
        compare(f"{label}: --dtype {served}: every tensor is the model's, bit for bit", got,
                want_of(served))


def refused(label, args, code, text, absent=None):
    """zerofs args exits code, stderr is the one line 'zerofs: ' + text."""
    p = run(args)
    ok = p.returncode == code and p.stderr.strip() == "zerofs: " + text
    ok = ok and (absent is None or not os.path.exists(absent))
    tap.ok(ok, f"{label}: exit {code}, {text[:90]}...",
           f"exit {p.returncode}\nstderr: {p.stderr!r}\nstdout: {p.stdout[-300:]!r}")
    return p


def verify_says(label, ckpt, code, last, *extra):
    p = run(["verify", ckpt] + list(extra))
    lines = p.stdout.strip().splitlines()
    tap.ok(p.returncode == code and lines and lines[-1] == last,
           f"{label}: verify {' '.join(extra)} exits {code}: '{last[:80]}'",
           f"exit {p.returncode}\n{p.stdout[-800:]}{p.stderr[-400:]}")


def inspect_says(label, ckpt, msg):
    """inspect of a partial checkpoint: the partial line says why, the served
    line that a mount fails, exit 3 (as for anything a mount refuses)."""
    p = run(["inspect", ckpt])
    lines = p.stdout.splitlines()
    tap.ok(p.returncode == 3 and ("partial      " + msg) in lines
           and "served       a mount fails: the checkpoint is partial (above)" in lines,
           f"{label}: inspect prints the partial line, exit 3", (p.returncode, p.stdout[:1500]))


def kinds(label, ckpt, want, *extra):
    """inspect --json: kind (and source / same_as) of the names in want."""
    p = run(["inspect", "--json", ckpt] + list(extra))
    info = json.loads(p.stdout) if p.returncode == 0 else {"tensors": []}
    got = {t["name"]: (t["kind"], t.get("source") or t.get("same_as")) for t in info["tensors"]}
    bad = [(n, got.get(n), w) for n, w in want.items() if got.get(n) != w]
    tap.ok(p.returncode == 0 and not bad, f"{label}: inspect: kinds and ties of {len(want)} names",
           p.stderr or bad)
    return info


# --------------------------------------------------------------------------
# generated checkpoints, with the generator's own tensors as the truth

def gen(name, *opts):
    a = make_ckpt.parse(["--out", WORK, "--name", name] + list(opts))
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    g = make_ckpt.Gen(a)
    g.run()
    return os.path.join(WORK, name), g


def truth(g, served, excluded_too=False):
    """name -> tensor a whole directory of generator g's model serves: every
    name but the aliases, a trainable param from its fp32 master, the rest
    as the model holds it."""
    out = OD()
    for e in g.ents:
        if e.alias_of:
            continue
        src = g.byname[e.twin_of] if e.twin_of else e
        if g.a.exclude_frozen and src.kind == "param" and not src.trainable and not excluded_too:
            continue
        live = g.native[src.name]
        master = g.master.get(src.name) if src.kind == "param" and src.trainable else None
        if served == "auto" or master is None:
            out[e.name] = served_as(live, served)
        else:
            out[e.name] = master.to(DT[served])
    return out


GEN = [
    ("views1", ["--stage", "1", "--views", "--frozen"]),
    ("views2", ["--stage", "2", "--ws", "3", "--dtype", "bf16", "--views", "--frozen", "--tied"]),
    ("views3", ["--stage", "3", "--views", "--frozen", "--view-rows", "40"]),
    ("twice2", ["--stage", "2", "--dtype", "bf16", "--twice", "--tied"]),
    ("twice3", ["--stage", "3", "--ws", "3", "--dtype", "bf16", "--twice", "--tied"]),
    ("empty1", ["--stage", "1", "--dtype", "bf16", "--tied", "--empty-shared"]),
    ("empty2_fp16", ["--stage", "2", "--dtype", "fp16", "--tied", "--empty-shared", "--twice"]),
    ("z0_unfused", ["--zero0", "unfused", "--dtype", "bf16", "--tied", "--frozen"]),
    ("z0_unfused_fp16", ["--zero0", "unfused", "--dtype", "fp16", "--twice"]),
    ("z0_fused", ["--zero0", "fused", "--dtype", "bf16", "--tied", "--views"]),
    ("z0_fused_fp16", ["--zero0", "fused", "--dtype", "fp16", "--ws", "4"]),
    ("z0_fp32", ["--zero0", "fp32", "--tied", "--views"]),
    ("f32buf2", ["--stage", "2", "--dtype", "bf16", "--fp32-buffer"]),
    ("f32buf3", ["--stage", "3", "--dtype", "fp16", "--fp32-buffer", "--frozen"]),
    ("legacy3", ["--stage", "3", "--ws", "3", "--dtype", "bf16", "--legacy", "--frozen",
                 "--tied", "--twice"]),
    ("legacy2", ["--stage", "2", "--legacy", "--frozen", "--views"]),
    ("legacy0", ["--zero0", "unfused", "--dtype", "bf16", "--legacy", "--tied"]),
]
OPT = {"unfused": "FP16_UnfusedOptimizer", "fused": "FP16_Optimizer",
       "fp32": "none (fp32 without ZeRO: the model states hold the weights)"}
made = {}
for name, opts in GEN:
    ckpt, g = gen(name, *opts)
    made[name] = (ckpt, g)
    with open(ckpt + ".ref.json") as f:
        ref = json.load(f)
    # zfinspect compares 16-bit values through bf16 only, and takes the
    # frozen names of the live model (an fp32 run without ZeRO does not say).
    if g.a.dtype != "fp16" and g.a.zero0 != "fp32":
        check(tap, f"gen {name}", ckpt, ref)
    want = {}
    for e in g.ents:
        if e.alias_of:
            want[e.name] = ("alias", e.alias_of)
        elif e.twin_of:
            want[e.name] = ("param", e.twin_of)
        elif e.kind == "buffer":
            want[e.name] = ("buffer", None)
        elif g.a.zero0 == "fp32" or e.trainable:
            want[e.name] = ("param", None)
        else:
            want[e.name] = ("frozen", None)
    info = kinds(f"gen {name}", ckpt, want)
    if g.a.zero0:
        tap.ok(info.get("stage") == 0 and info.get("optimizer") == OPT[g.a.zero0]
               and info.get("world_size") == g.ws,
               f"gen {name}: ZeRO stage 0, {OPT[g.a.zero0][:21]}, world size {g.ws}",
               {k: info.get(k) for k in ("stage", "optimizer", "world_size")})
    exported(f"gen {name}", ckpt, lambda s, g=g: truth(g, s), ("auto", "fp32", "bf16", "fp16"))
    # torch's legacy format has no CRC-32s: verify says so with its verdict
    n_pt = sum(f.endswith(".pt") for _, _, fs in os.walk(ckpt) for f in fs)
    verify_says(f"gen {name}", ckpt, 0, "sound (%d file%s in torch's legacy format: no CRC-32 to "
                "check)" % (n_pt, "" if n_pt == 1 else "s") if g.a.legacy else "sound",
                "--deep", "-q")

# A strided view read through a mount at odd offsets and lengths (the read
# engine's partial elements and boxes), against the exported bytes.
ckpt, g = made["views3"]
p, got = export(ckpt, "--dtype", "fp16")
rng = random.Random(7)
try:
    with mounted(ckpt, "--dtype", "fp16") as m:
        st = sv.validate_file(m.file("model.safetensors"))
        with open(m.file("model.safetensors"), "rb") as f:
            bad = []
            for n in ("model.frozen_t.weight", "model.tbuf", "model.rows", "model.expand",
                      "model.perm", "model.itr"):
                ti = st.tensors[n]
                want = got[n][2]
                for _ in range(40):
                    a = rng.randrange(0, len(want))
                    b = rng.randrange(a + 1, len(want) + 1)
                    f.seek(st.data_start + ti["begin"] + a)
                    if f.read(b - a) != want[a:b]:
                        bad.append((n, a, b))
        tap.ok(not bad, "gen views3: strided tensors read at 240 random offsets and lengths "
               "through the mount", bad[:5])
except MountFailed as e:
    tap.ok(False, "gen views3: mount", e)

# ZeRO-0 that cannot be served, said so.
ckpt, g = gen("z0_nomaster", "--zero0", "unfused", "--dtype", "bf16")
ms_path = os.path.join(ckpt, "global_step3", "mp_rank_00_model_states.pt")
ms = torch.load(ms_path)
masters = ms["optimizer"]["fp32_groups"]
masters[0][1] = masters[0][1] + 1.0
torch.save(ms, ms_path)
refused("gen ZeRO-0 whose masters do not round to the model's params", ["inspect", ckpt], 3,
        "'%s': ZeRO-0 checkpoint whose fp32 master weights (optimizer.fp32_groups) cannot be "
        "matched to parameter names: group 0 param 1 (shape [16, 22]) fits no parameter of "
        "the model in order" % ms_path)
ms["optimizer"] = None
torch.save(ms, ms_path)
refused("gen ZeRO-0 bf16 without masters", ["inspect", ckpt], 3,
        "'%s': a ZeRO-0 bf16 run whose fp32 master weights are not here ('optimizer' holds no "
        "fp32_groups): was it saved without optimizer state?" % ms_path)
ckpt, g = gen("z2_nooptim", "--stage", "2", "--dtype", "bf16")
for f in os.listdir(os.path.join(ckpt, "global_step3")):
    if "optim_states" in f:
        os.unlink(os.path.join(ckpt, "global_step3", f))
refused("gen ZeRO-2 whose optimizer files are gone", ["inspect", ckpt], 3,
        "'%s': no '*_optim_states.pt' files beside the model states: the fp32 weights live "
        "there; was the checkpoint saved without optimizer state, or only partly copied?"
        % os.path.join(ckpt, "global_step3"))


# --------------------------------------------------------------------------
# partial checkpoints and --base

def write_base(d, tensors, shards=1, hub=False):
    """A Hugging Face folder of tensors (name -> tensor): model.safetensors, or
    `shards` files + index; hub: a cache repo folder (blobs/, snapshots/abc/
    of links, refs/main). Returns the folder to give --base."""
    os.makedirs(d)
    items = list(tensors.items())
    files = {}
    for k in range(shards):
        part = items[k::shards]
        fn = "model.safetensors" if shards == 1 else "model-%05d-of-%05d.safetensors" % (k + 1, shards)
        files[fn] = st_ref.file_bytes([(n, ST[t.dtype], list(t.shape), tbytes(t)) for n, t in part])
    if shards > 1:
        wm = {n: "model-%05d-of-%05d.safetensors" % (i % shards + 1, shards)
              for i, (n, _) in enumerate(items)}
        files["model.safetensors.index.json"] = json.dumps(
            {"metadata": {"total_size": 0}, "weight_map": wm}, indent=2).encode()
    files["config.json"] = b'{"model_type": "base-for-test"}\n'
    if not hub:
        for fn, b in files.items():
            with open(os.path.join(d, fn), "wb") as f:
                f.write(b)
        return d
    os.makedirs(os.path.join(d, "blobs"))
    os.makedirs(os.path.join(d, "snapshots", "abc"))
    os.makedirs(os.path.join(d, "refs"))
    for i, (fn, b) in enumerate(files.items()):
        with open(os.path.join(d, "blobs", "blob%d" % i), "wb") as f:
            f.write(b)
        os.symlink(os.path.join("..", "..", "blobs", "blob%d" % i),
                   os.path.join(d, "snapshots", "abc", fn))
    with open(os.path.join(d, "refs", "main"), "w") as f:
        f.write("abc")
    return d


def base_of(g, perturb=True):
    """The model the run started from: every name (the excluded frozen ones
    too) as the model holds it, the trainable ones changed (the checkpoint
    must win for those)."""
    out = OD()
    for n, t in truth(g, "auto", excluded_too=True).items():
        e = g.byname[n]
        src = g.byname[e.twin_of] if e.twin_of else e
        changed = perturb and t.is_floating_point() and (src.kind != "param" or src.trainable)
        out[n] = (t.float() + 1).to(t.dtype) if changed else t.contiguous()
    return out


EXF = "saved with exclude_frozen_parameters=True: the frozen parameters are not in the checkpoint"
BASE = "give the base model with --base DIR to serve the whole model"
PARTIAL = [
    ("exf2", ["--stage", "2", "--dtype", "bf16", "--frozen", "--tied", "--exclude-frozen"],
     "mp_rank_00_model_states.pt",
     EXF + " (ZeRO-2's frozen_param_shapes is None; 1 known: 'model.embed_tokens.weight'); " + BASE),
    ("exf3", ["--stage", "3", "--ws", "3", "--frozen", "--exclude-frozen"],
     "zero_pp_rank_0_mp_rank_00_model_states.pt",
     EXF + " (ZeRO-3's frozen_param_shapes is None; their names are not recorded); " + BASE),
    ("exf1", ["--stage", "1", "--dtype", "bf16", "--frozen", "--exclude-frozen",
              "--adapter-config", "--layout", "trainer"],
     "mp_rank_00_model_states.pt",
     "a PEFT run (adapter_config.json beside it), which the HF Trainer saves with "
     "exclude_frozen_parameters=True: the frozen base model weights are not in the checkpoint; "
     + BASE),
]
for name, opts, msfile, msg in PARTIAL:
    ckpt, g = gen(name, *opts)
    where = os.path.join(ckpt, "global_step3", msfile)
    line = "'%s': %s" % (where, msg)
    inspect_says(f"gen {name}", ckpt, msg)
    p = run(["inspect", "--json", ckpt])
    inc = json.loads(p.stdout).get("incomplete") if p.stdout.startswith("{") else None
    tap.ok(p.returncode == 3 and inc == {"where": where, "message": msg},
           f"gen {name}: inspect --json: incomplete, exit 3", (p.returncode, inc))
    verify_says(f"gen {name}", ckpt, 3, "cannot judge: " + msg)
    p = run(["verify", "--json", ckpt])
    v = json.loads(p.stdout) if p.stdout.startswith("{") else {}
    tap.ok(p.returncode == 3 and v.get("sound", False) is None and v.get("cannot_judge") == msg
           and v.get("problems") == 0, f"gen {name}: verify --json: sound null, cannot_judge",
           (p.returncode, {k: v.get(k) for k in ("sound", "cannot_judge", "problems")}))
    out = os.path.join(WORK, "out-" + name)
    refused(f"gen {name}: export refuses", ["export", ckpt, out], 3, line, absent=out)
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=WORK)
    refused(f"gen {name}: mount refuses", ["mount", ckpt, mnt], 3, line)
    tap.ok(not os.path.ismount(mnt) and not os.listdir(mnt), f"gen {name}: nothing mounted")

    full = base_of(g)
    want = lambda s, g=g: truth(g, s, excluded_too=True)  # noqa: E731
    b1 = write_base(os.path.join(WORK, name + "-base"), full)
    exported(f"gen {name} --base (model.safetensors)", ckpt, want, ("auto", "fp32"),
             ("--base", b1))
    b2 = write_base(os.path.join(WORK, name + "-shards"), full, shards=3)
    exported(f"gen {name} --base (3 shards + index)", ckpt, want, ("bf16",), ("--base", b2))
    b3 = write_base(os.path.join(WORK, name + "-hub"), full, hub=True)
    exported(f"gen {name} --base (hub repo folder, links into blobs/)", ckpt, want, ("auto",),
             ("--base", b3))
    verify_says(f"gen {name} --base", ckpt, 0, "sound", "--deep", "-q", "--base", b1)
    p = run(["inspect", ckpt, "--base", os.path.join(b3, "snapshots", "abc")])
    n_base = sum(1 for e in g.frozen)
    tap.ok(p.returncode == 0 and ("base         %s (%d tensors from it)"
                                  % (os.path.join(b3, "snapshots", "abc"), n_base))
           in p.stdout.splitlines() and "partial" not in p.stdout,
           f"gen {name}: inspect --base (a hub snapshot) says where {n_base} tensors come from",
           p.stdout[:900] + p.stderr)

    # Bases that are not the run's.
    held = next(n for n in full if g.byname[n].kind == "param" and g.byname[n].trainable
                and len(full[n].shape) == 2 and full[n].shape[0] != full[n].shape[1])
    bad = OD(full)
    bad[held] = torch.zeros(full[held].shape[1], full[held].shape[0], dtype=full[held].dtype)
    d = write_base(os.path.join(WORK, name + "-badshape"), bad)
    shape = lambda t: "[%s]" % ", ".join(str(x) for x in t.shape)  # noqa: E731
    refused(f"gen {name}: --base with a held name of another shape", ["export", ckpt, out,
            "--base", d], 3,
            "'%s': --base: '%s' has shape %s here, but the checkpoint's '%s' has shape %s: not "
            "the model this run started from" % (os.path.join(d, "model.safetensors"), held,
                                                  shape(bad[held]), held, shape(full[held])),
            absent=out)

ckpt, g = gen("exf2b", "--stage", "2", "--dtype", "bf16", "--frozen", "--tied",
                          "--exclude-frozen")
full = base_of(g)
E = "model.embed_tokens.weight"
nobase = OD((n, t) for n, t in full.items() if n != E)
d = write_base(os.path.join(WORK, "exf2-noembed"), nobase)
refused("gen exf2: --base without the excluded tied source", ["inspect", ckpt, "--base", d], 3,
        "'%s': --base: '%s' was excluded from the checkpoint (a name it holds is tied to it), and "
        "this folder does not hold it either" % (d, E))
other = OD(full)
other[E] = (full[E].float() * 2).to(full[E].dtype)
d = write_base(os.path.join(WORK, "exf2-otherembed"), other)
refused("gen exf2: --base whose embedding differs from the checkpoint's tied copy",
        ["inspect", ckpt, "--base", d], 3,
        "'%s': --base: not the model this run started from: its '%s' differs from the "
        "checkpoint's copy under the tied name 'lm_head.weight'" % (d, E))
other[E] = torch.zeros(full[E].numel() + 1, dtype=full[E].dtype)
d = write_base(os.path.join(WORK, "exf2-wrongembed"), other)
refused("gen exf2: --base whose embedding has another shape than the checkpoint's tied copy",
        ["inspect", ckpt, "--base", d], 3,
        "'%s': --base: '%s' has shape [%d] here, but the checkpoint's copy of it under the tied "
        "name 'lm_head.weight' has shape [1031, 22]: not the model this run started from"
        % (d, E, full[E].numel() + 1))
d = os.path.join(WORK, "notweights")
os.makedirs(d)
open(os.path.join(d, "pytorch_model.bin"), "wb").close()
refused("--base with .bin weights only", ["inspect", ckpt, "--base", d], 3,
        "'%s': --base: the weights here are PyTorch .bin/.pt files; zerofs reads a base model's "
        "safetensors files (model.safetensors, or shards with model.safetensors.index.json)" % d)
with open(os.path.join(d, "model.safetensors"), "wb") as f:
    f.write(b"\xff" * 8 + b"{}")
refused("--base whose model.safetensors is not one", ["inspect", ckpt, "--base", d], 3,
        "'%s': not a safetensors file: its header length 18446744073709551615 is over 100000000 "
        "bytes or past the end of the file (10 bytes)" % os.path.join(d, "model.safetensors"))
# 2^61 float64 elements: 2^64 bytes, which wrap to 0 and would match
# data_offsets [0, 0] if the byte count were not checked
hdr = json.dumps({"x": {"dtype": "F64", "shape": [1 << 61], "data_offsets": [0, 0]}}).encode()
with open(os.path.join(d, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hdr)) + hdr)
refused("--base whose tensor's byte count overflows", ["inspect", ckpt, "--base", d], 3,
        "'%s': tensor 'x': its shape is not a list of sizes, or its size overflows"
        % os.path.join(d, "model.safetensors"))
d = os.path.join(WORK, "linkout")
os.makedirs(d)
os.symlink(os.path.join(WORK, "exf2-base", "model.safetensors"), os.path.join(d, "model.safetensors"))
refused("--base whose model.safetensors links out of the folder", ["inspect", ckpt, "--base", d], 3,
        "'%s': --base: a symbolic link to '%s', outside the --base folder"
        % (os.path.join(d, "model.safetensors"), os.path.join(WORK, "exf2-base", "model.safetensors")))
refused("--base naming no folder", ["inspect", ckpt, "--base", os.path.join(WORK, "none")], 3,
        "'%s': --base: not a folder (give the base model's Hugging Face folder)"
        % os.path.join(WORK, "none"))


# --------------------------------------------------------------------------
# the real checkpoints of ../shared/fixtures/field against NAME.live.pt

def live_of(name):
    x = torch.load(os.path.join(FIELD, name + ".live.pt"))
    return OD(x["live"]) if isinstance(x, dict) and set(x) == {"live", "info"} else OD(x)


# Ties DeepSpeed did not record: left out as save_pretrained leaves them.
UNRECORDED = {"v0.9.5_z2_ws2_bf16": {"lm_head.weight": "model.embed_tokens.weight"},
              "v0.18.9_z0_ws2_bf16": {"lm_head.weight": "model.embed_tokens.weight"}}
# Second names of one module, served with the first name's data (and kind).
TWINS = {
    "v0.14.0_x_z2_ws2_bf16": {"model.proj_b.weight": "model.proj_a.weight",
                              "model.proj_b.bias": "model.proj_a.bias"},
    "v0.14.0_x_z3_ws3_bf16": {"model.proj_b.weight": "model.proj_a.weight",
                              "model.proj_b.bias": "model.proj_a.bias"},
    "shared_z2_ws2_bf16": {"proj_again.weight": "proj.weight", "bn_alias.weight": "bn.weight",
                           "bn_alias.bias": "bn.bias", "bn_alias.running_mean": "bn.running_mean",
                           "bn_alias.running_var": "bn.running_var",
                           "bn_alias.num_batches_tracked": "bn.num_batches_tracked"},
}
WHOLE = ["v0.9.5_z2_ws2_bf16", "v0.10.3_z3_ws2_bf16", "v0.12.6_z2_ws2_fp16",
         "v0.16.9_z3_ws2_frozen_bf16", "v0.16.9_z0_ws2_bf16", "v0.18.9_z3_ws2_bf16",
         "v0.18.9_z0_ws2_bf16", "v0.14.0_x_z2_ws2_bf16", "v0.14.0_x_z3_ws3_bf16",
         "v0.14.0_pipe_z1_ws2_bf16", "v0.14.0_off_z3_ws2_bf16", "shared_z2_ws2_bf16",
         "views_z2_ws2", "pipe_s1_frozen_z1_ws2", "lora_z3_ws3_bf16"]
FIELD_PARTIAL = {
    "v0.14.0_exf_z2_ws2_bf16": ("mp_rank_00_model_states.pt", EXF + " (ZeRO-2's "
                                "frozen_param_shapes is None; 1 known: 'model.embed_tokens."
                                "weight'); " + BASE),
    "v0.14.0_exfpos_z3_ws2_bf16": ("zero_pp_rank_0_mp_rank_00_model_states.pt", EXF +
                                   " (ZeRO-3's frozen_param_shapes is None; their names are not "
                                   "recorded); " + BASE),
    "lora_untied_z2_ws2_exclfrozen": ("mp_rank_00_model_states.pt", EXF + " (ZeRO-2's "
                                      "frozen_param_shapes is None; their names are not "
                                      "recorded); " + BASE),
}


def field_masters(name, ref):
    """name -> fp32 master of a 16-bit fixture, read without zerofs: DeepSpeed's
    own zero_to_fp32 (NAME.ref.pt) where it ran; else the optimizer files'
    partitions cut by their param_slice_mappings; else (ZeRO-0) the model
    states' fp32_groups, named by the live model's param groups."""
    rp = os.path.join(FIELD, name + ".ref.pt")
    if os.path.exists(rp):
        kinds_ = {e["name"]: e["kind"] for e in ref.get("entries") or []}
        return {n: t for n, t in torch.load(rp).items() if kinds_.get(n) == "param"}
    tag = os.path.join(FIELD, name, ref["tag"])
    optim = sorted((f for f in os.listdir(tag) if f.endswith("optim_states.pt")),
                   key=reassemble.natural_key)
    parts = collections.defaultdict(list)
    for f in optim:
        osd = reassemble.load_pt(os.path.join(tag, f))["optimizer_state_dict"]
        for flat, maps in zip(osd["single_partition_of_fp32_groups"], osd["param_slice_mappings"]):
            for n, frag in maps.items():
                a = frag.__dict__ if hasattr(frag, "__dict__") else frag
                parts[n].append(flat.narrow(0, a["start"], a["numel"]))
    out = {n: torch.cat(ps) for n, ps in parts.items()}
    if not optim:
        opt = reassemble.load_pt(os.path.join(tag, "mp_rank_00_model_states.pt"))["optimizer"]
        info = torch.load(os.path.join(FIELD, name + ".live.pt"))["info"]
        for names, ts in zip(info["param_groups"], opt["fp32_groups"]):
            out.update(zip(names, ts))
    return out


def field_want(name, live, served):
    """What a folder of fixture `name` serves: every live name but the ties,
    in the model's dtype (auto), or converted from the fp32 master where
    NAME.ref.pt (DeepSpeed's own zero_to_fp32) has it."""
    with open(os.path.join(FIELD, name + ".ref.json")) as f:
        ref = json.load(f)
    drop = set(ref.get("aliases") or {}) | set(UNRECORDED.get(name, {}))
    twins = TWINS.get(name, {})
    masters = field_masters(name, ref) if ref["train_dtype"] != "fp32" else {}
    out = OD()
    for n, t in live.items():
        if n in drop:
            continue
        m = masters.get(twins.get(n, n))
        m = None if m is None else m.reshape(t.shape)
        out[n] = served_as(t, served) if served == "auto" or m is None else m.to(DT[served])
    return out, masters


if not os.path.isdir(FIELD):
    tap.skip("field fixtures", f"{FIELD} is absent (the generated checkpoints above cover the "
             "features)")
else:
    for name in WHOLE:
        ckpt = os.path.join(FIELD, name)
        live = live_of(name)
        exported(f"field {name}", ckpt, lambda s, n=name, lv=live: field_want(n, lv, s)[0],
                 ("auto",))
        # --dtype fp32: DeepSpeed's own zero_to_fp32 masters where it ran,
        # else every served fp32 tensor rounds to the model's own value.
        p, got = export(ckpt, "--dtype", "fp32")
        want, masters = field_want(name, live, "fp32")
        bad = []
        for n, t in want.items():
            if n not in got:
                bad.append(n + ": missing")
                continue
            b = got[n][2]
            if n in masters or TWINS.get(name, {}).get(n) in masters or not t.is_floating_point():
                ok = b == tbytes(t)
            else:
                f32 = torch.from_numpy(np.frombuffer(b, dtype=np.float32).copy())
                ok = tbytes(f32.to(live[n].dtype)) == tbytes(live[n]) and got[n][0] == "F32"
            if not ok:
                bad.append(n)
        tap.ok(p.returncode == 0 and not bad and len(got) == len(want),
               f"field {name}: --dtype fp32: {len(masters)} fp32 masters bit for bit, every "
               "other tensor rounds to the model's own", (p.stderr, bad[:5]))
        verify_says(f"field {name}", ckpt, 0, "sound", "--deep", "-q")
    tied = {n: ("param", m) for n, m in TWINS["shared_z2_ws2_bf16"].items() if ".running" not in n
            and "num_batches" not in n}
    tied.update({n: ("buffer", m) for n, m in TWINS["shared_z2_ws2_bf16"].items()
                 if n not in tied})
    for name, want in [
            ("shared_z2_ws2_bf16", tied),
            ("v0.14.0_x_z3_ws3_bf16", {n: ("param", m) for n, m in
                                       TWINS["v0.14.0_x_z3_ws3_bf16"].items()}),
            ("v0.9.5_z2_ws2_bf16", {"lm_head.weight": ("alias", "model.embed_tokens.weight")}),
            ("v0.18.9_z0_ws2_bf16", {"lm_head.weight": ("alias", "model.embed_tokens.weight")}),
            ("pipe_s1_frozen_z1_ws2", {"tied_modules.embed.weight": ("param", None),
                                       "1.fc.weight": ("frozen", None),
                                       "1.norm.bias": ("frozen", None),
                                       "2.fc.weight": ("param", None)}),
            ("v0.14.0_pipe_z1_ws2_bf16", {"0.position_ids": ("buffer", None),
                                          "3.lm_head.weight": ("param", None)}),
            ("views_z2_ws2", {"frozen_t": ("frozen", None), "tbuf": ("buffer", None),
                              "itr": ("buffer", None)})]:
        kinds(f"field {name}", os.path.join(FIELD, name), want)
    for name, stage, opt in (("v0.16.9_z0_ws2_bf16", 0, "BF16_Optimizer"),
                             ("v0.18.9_z0_ws2_bf16", 0, "FP16_UnfusedOptimizer")):
        p = run(["inspect", "--json", os.path.join(FIELD, name)])
        info = json.loads(p.stdout) if p.returncode == 0 else {}
        tap.ok(info.get("stage") == stage and info.get("optimizer") == opt,
               f"field {name}: ZeRO stage {stage}, {opt}",
               {k: info.get(k) for k in ("stage", "optimizer")} or p.stderr)
    # A one-stage pipeline's mount, read through FUSE.
    try:
        with mounted(os.path.join(FIELD, "pipe_s1_frozen_z1_ws2")) as m:
            got = sv.load_file(m.file("model.safetensors"))
        compare("field pipe_s1_frozen_z1_ws2: the mount serves the whole model", got,
                field_want("pipe_s1_frozen_z1_ws2", live_of("pipe_s1_frozen_z1_ws2"), "auto")[0])
    except MountFailed as e:
        tap.ok(False, "field pipe_s1_frozen_z1_ws2: mount", e)
    # A layer whose file is gone, named.
    ck = os.path.join(WORK, "pipe_nolayer")
    shutil.copytree(os.path.join(FIELD, "pipe_s1_frozen_z1_ws2"), ck)
    os.chmod(os.path.join(ck, "global_step3"), 0o755)
    os.unlink(os.path.join(ck, "global_step3", "layer_02-model_states.pt"))
    refused("field pipe_s1_frozen_z1_ws2 without layer_02-model_states.pt", ["inspect", ck], 3,
            "'%s': PipelineModule checkpoint without the file of layer 2 "
            "('layer_02-model_states.pt'), which '2.fc.weight' belongs to"
            % os.path.join(ck, "global_step3"))
    for f in os.listdir(os.path.join(ck, "global_step3")):
        if f.startswith("layer_"):
            os.unlink(os.path.join(ck, "global_step3", f))
    refused("field pipe_s1_frozen_z1_ws2 without any layer file", ["inspect", ck], 3,
            "'%s': 'module' is None, as a PipelineModule saves it, but no layer files "
            "('layer_00-model_states.pt', ...) are beside it: its frozen params and buffers are "
            "there" % os.path.join(ck, "global_step3", "mp_rank_00_model_states.pt"))

    for name, (msfile, msg) in FIELD_PARTIAL.items():
        ckpt = os.path.join(FIELD, name)
        line = "'%s': %s" % (os.path.join(ckpt, "global_step3", msfile), msg)
        inspect_says(f"field {name}", ckpt, msg)
        verify_says(f"field {name}", ckpt, 3, "cannot judge: " + msg)
        out = os.path.join(WORK, "out-" + name)
        refused(f"field {name}: export refuses", ["export", ckpt, out], 3, line, absent=out)
        live = live_of(name)
        with open(os.path.join(FIELD, name + ".ref.json")) as f:
            ref = json.load(f)
        frozen = set(ref.get("frozen_params_live") or [])
        base = OD()
        for n, t in live.items():
            if n in (ref.get("aliases") or {}):
                continue
            base[n] = t.contiguous() if n in frozen or not t.is_floating_point() \
                else (t.float() + 1).to(t.dtype)
        d = write_base(os.path.join(WORK, name + "-base"), base)
        exported(f"field {name} --base", ckpt,
                 lambda s, n=name, lv=live: field_want(n, lv, s)[0], ("auto",), ("--base", d))
        verify_says(f"field {name} --base", ckpt, 0, "sound", "--deep", "-q", "--base", d)
        if name.startswith("lora"):
            # The base as the Hub has it: no PEFT wrapper, no base_layer.
            plain = OD((n.replace("base_model.model.", "", 1).replace(".base_layer.", "."), t)
                       for n, t in base.items() if ".lora_" not in n)
            d = write_base(os.path.join(WORK, name + "-plainbase"), plain)
            exported(f"field {name} --base with the Hub's names (no base_model.model., no "
                     "base_layer)", ckpt, lambda s, n=name, lv=live: field_want(n, lv, s)[0],
                     ("auto",), ("--base", d))

shutil.rmtree(WORK, ignore_errors=True)
tap.done()
