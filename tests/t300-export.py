"""zerofs export: for every real fixture and every --dtype, each tensor of
the exported safetensors (parsed here, not with zerofs code) hashes to the
fixture's reference; tied aliases are left out; export refuses to replace
files without --force and replaces them with it; a write failure (read-only
or full file system) exits 4 and leaves no file behind; a sharded export of
a generated checkpoint has an index covering every tensor."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import Tap, fixtures, checkpoints, run, TMPROOT, ROOT, f32_to_bf16, sha  # noqa: E402

DTYPES = {"fp32": ("float32", "F32"), "bf16": ("bfloat16", "BF16"), "fp16": ("float16", "F16")}
INT_DTYPES = {"torch.int64": "I64", "torch.int32": "I32", "torch.int16": "I16",
              "torch.int8": "I8", "torch.uint8": "U8", "torch.bool": "BOOL"}

tap = Tap()
work = tempfile.mkdtemp(prefix="t300-", dir=TMPROOT)


def read_safetensors(path):
    """{name: (dtype, shape, bytes)} and the metadata, from the file alone."""
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", None)
    data = blob[8 + n:]
    out = {}
    end = 0
    for name, t in header.items():
        a, b = t["data_offsets"]
        out[name] = (t["dtype"], t["shape"], data[a:b])
        end = max(end, b)
    if end != len(data):
        raise ValueError(f"{path}: data is {len(data)} bytes, tensors end at {end}")
    return out, meta


def read_export(out_dir):
    """Every tensor of the export, and the index (or None)."""
    tensors, where = {}, {}
    names = sorted(os.listdir(out_dir))
    for fn in names:
        if fn.endswith(".safetensors"):
            ts, _ = read_safetensors(os.path.join(out_dir, fn))
            for k, v in ts.items():
                if k in tensors:
                    raise ValueError(f"tensor {k} in two shards")
                tensors[k] = v
                where[k] = fn
    index = None
    if "model.safetensors.index.json" in names:
        with open(os.path.join(out_dir, "model.safetensors.index.json")) as f:
            index = json.load(f)
    return tensors, where, index


def served_names(ref):
    """Served name -> reference name: aliases out, XTuner's 'llm.' removed
    when every served name has it (zerofs' documented default)."""
    aliases = ref.get("aliases") or {}
    names = [t["name"] for t in ref["live_state_dict"] if t["name"] not in aliases]
    strip = "llm." if names and all(n.startswith("llm.") for n in names) else ""
    return {n[len(strip):]: n for n in names}


def check_export(label, out_dirs, ref):
    """out_dirs: {"fp32": dir, ...}. One TAP line per dtype, plus aliases."""
    live = {t["name"]: t for t in ref["live_state_dict"]}
    entries = {e["name"]: e for e in ref.get("entries") or []}
    want = served_names(ref)
    got = {}
    for d, out in out_dirs.items():
        try:
            got[d] = read_export(out)[0]
        except Exception as e:  # noqa: BLE001
            tap.ok(False, f"{label}: --dtype {d} export parses", e)
    f32 = got.get("fp32")
    for d, tensors in got.items():
        torch_name, st_name = DTYPES[d]
        bad, unchecked = [], []
        if set(tensors) != set(want):
            tap.ok(False, f"{label}: --dtype {d}: served names are the state_dict's minus tied aliases",
                   f"extra {sorted(set(tensors) - set(want))}\nmissing {sorted(set(want) - set(tensors))}")
            continue
        for name, (st_dt, shape, raw) in tensors.items():
            r = want[name]
            lv = live[r]
            if shape != lv["shape"]:
                bad.append(f"{name}: shape {shape}, want {lv['shape']}")
                continue
            if lv["dtype"] in INT_DTYPES:
                # Integer buffers keep their type and bytes.
                ok = st_dt == INT_DTYPES[lv["dtype"]] and sha(raw) == lv["sha256_native"]
            elif st_dt != st_name:
                ok = False
            elif r in entries and entries[r].get("sha256_" + d):
                ok = sha(raw) == entries[r]["sha256_" + d]
            elif lv["dtype"] == "torch." + torch_name:
                ok = sha(raw) == lv["sha256_native"]
            elif f32 is not None and name in f32:
                # No reference in this dtype: the conversion of the fp32
                # export (itself checked above or against the live model).
                a = np.frombuffer(f32[name][2], dtype="<f4")
                if lv["dtype"] == "torch.bfloat16" and d == "fp32":
                    ok = sha(f32_to_bf16(a).tobytes()) == lv["sha256_native"]
                elif d == "bf16":
                    ok = raw == f32_to_bf16(a).tobytes()
                elif d == "fp16":
                    ok = raw == a.astype("<f2").tobytes()
                else:
                    ok = False
            else:
                ok = False
                unchecked.append(name)
            if not ok:
                bad.append(name)
        tap.ok(not bad and not unchecked,
               f"{label}: --dtype {d}: all {len(tensors)} tensors hash to the reference",
               "\n".join(bad + [f"no reference for {u}" for u in unchecked]))


def export(ckpt, out, *extra):
    return run(["export", "-q", ckpt, out] + list(extra))


def export_mode(ckpt):
    """What export gives files of a checkpoint whose files are all readable
    by all and owned by us (zerofs(1), SECURITY): read for each class that
    may also search every folder above the checkpoint, write for the
    owner, less the umask."""
    mode = 0o644
    p = os.path.realpath(ckpt)
    while True:
        m = os.stat(p).st_mode
        if not m & 0o010:
            mode &= ~0o040
        if not m & 0o001:
            mode &= ~0o004
        if p == "/":
            break
        p = os.path.dirname(p)
    um = os.umask(0)
    os.umask(um)
    return mode & ~um


def leftovers(d):
    return [f for f in os.listdir(d) if "zerofs-tmp" in f] if os.path.isdir(d) else []


if not fixtures():
    print("# ../shared/fixtures/real is absent: generated checkpoints only")
fx = checkpoints()
for name, d, ref in fx:
    outs = {}
    for dt in DTYPES:
        out = os.path.join(work, name, dt)
        p = export(d, out, "--dtype", dt)
        if tap.ok(p.returncode == 0, f"{name}: export --dtype {dt} exits 0", p.stderr):
            outs[dt] = out
    check_export(name, outs, ref)
    if "fp32" in outs:
        want = oct(export_mode(d))
        mode = [oct(os.stat(os.path.join(outs["fp32"], f)).st_mode & 0o777)
                for f in os.listdir(outs["fp32"])]
        tap.ok(mode and all(m == want for m in mode) and not leftovers(outs["fp32"]),
               f"{name}: files are {want} (the served read bits, owner write), no temporary file left",
               (mode, leftovers(outs["fp32"])))

# (b) an existing output is refused without --force, replaced with it.
if fx:
    name, d, ref = fx[0]
    out = os.path.join(work, "again")
    p1 = export(d, out, "--dtype", "fp32")
    with open(os.path.join(out, "model.safetensors"), "rb") as f:
        first = f.read()
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(b"not a model")
    p = export(d, out, "--dtype", "fp32")
    tap.ok(p1.returncode == 0 and p.returncode == 2 and
           os.path.join(out, "model.safetensors") in p.stderr,
           "export into a folder holding model.safetensors exits 2 naming the file",
           (p.returncode, p.stderr))
    with open(os.path.join(out, "model.safetensors"), "rb") as f:
        tap.ok(f.read() == b"not a model" and not leftovers(out),
               "the refused export changed nothing")
    p = export(d, out, "--dtype", "fp32", "--force")
    with open(os.path.join(out, "model.safetensors"), "rb") as f:
        tap.ok(p.returncode == 0 and f.read() == first and not leftovers(out),
               "--force replaces it with the same bytes as a fresh export", p.stderr)
    # A sharded export over a single-file one: the stale model.safetensors
    # would be loaded instead of the shards, so it counts as in the way.
    p = export(d, out, "--dtype", "fp32", "--max-shard-size", "50KB")
    tap.ok(p.returncode == 2 and "model.safetensors" in p.stderr,
           "a stale model.safetensors blocks a sharded export without --force", p.stderr)
    p = export(d, out, "--dtype", "fp32", "--max-shard-size", "50KB", "--force")
    names = sorted(os.listdir(out))
    tap.ok(p.returncode == 0 and "model.safetensors" not in names and
           "model.safetensors.index.json" in names,
           "with --force the stale model.safetensors is gone", (p.stderr, names))
    # Never into the checkpoint.
    inside = os.path.join(d, ref["tag"], "hf")
    p = export(d, inside)
    tap.ok(p.returncode == 2 and not os.path.exists(inside),
           "export into the checkpoint's tag folder is refused, nothing created", p.stderr)

# (c) a failing write exits 4 and leaves nothing.
def try_mount(target, opts):
    os.makedirs(target, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", target],
                       capture_output=True)
    return r.returncode == 0


if fx:
    name, d, ref = fx[0]
    ro = os.path.join(work, "ro")
    full = os.path.join(work, "full")
    if os.geteuid() == 0 and try_mount(ro, "ro,size=1m"):
        try:
            p = export(d, ro)
            tap.ok(p.returncode == 4 and os.listdir(ro) == [],
                   "export into a read-only file system exits 4 and writes nothing",
                   (p.returncode, p.stderr, os.listdir(ro)))
            p = export(d, os.path.join(ro, "sub"))
            tap.ok(p.returncode == 4 and os.listdir(ro) == [] and ro in p.stderr,
                   "export below a read-only folder exits 4 naming it", (p.returncode, p.stderr))
        finally:
            subprocess.run(["umount", ro])
        if try_mount(full, "size=64k"):
            try:
                # 50 KB shards of a ~130 KB model: the first fits, a later one not.
                p = export(d, full, "--dtype", "fp32", "--max-shard-size", "50KB")
                tap.ok(p.returncode == 4 and os.listdir(full) == [],
                       "export onto a full file system exits 4 and leaves no file, temporary or not",
                       (p.returncode, p.stderr, os.listdir(full)))
            finally:
                subprocess.run(["umount", full])
        else:
            tap.skip("export onto a full file system", "cannot mount a tmpfs")
    elif os.geteuid() != 0:
        os.makedirs(ro)
        os.chmod(ro, 0o555)
        p = export(d, ro)
        tap.ok(p.returncode == 4 and os.listdir(ro) == [],
               "export into a read-only folder exits 4 and writes nothing", (p.returncode, p.stderr))
        os.chmod(ro, 0o755)
    else:
        tap.skip("export into a read-only location", "root, and cannot mount a tmpfs")

# (d) a generated checkpoint, sharded: the index covers every tensor.
gen = os.path.join(ROOT, "tests", "gen", "make_ckpt.py")
py = os.environ.get("PYTHON", "/usr/bin/python3")
g = subprocess.run([py, gen, "--out", work, "--name", "gen3", "--stage", "3", "--ws", "2",
                    "--dtype", "bf16", "--tied"], capture_output=True, text=True) \
    if os.path.exists(gen) else None
if g is None or g.returncode != 0:
    tap.skip("sharded export of a generated checkpoint",
             "tests/gen/make_ckpt.py missing or failed: " + (g.stderr[-300:] if g else ""))
else:
    with open(os.path.join(work, "gen3.ref.json")) as f:
        gref = json.load(f)
    ck = os.path.join(work, "gen3")
    outs = {}
    for dt in DTYPES:
        out = os.path.join(work, "gen3-out", dt)
        p = export(ck, out, "--dtype", dt, "--max-shard-size", "20KB")
        if tap.ok(p.returncode == 0, f"gen3: sharded export --dtype {dt} exits 0", p.stderr):
            outs[dt] = out
    check_export("gen3 (20KB shards)", outs, gref)
    if "fp32" in outs:
        tensors, where, index = read_export(outs["fp32"])
        shards = sorted(f for f in os.listdir(outs["fp32"]) if f.endswith(".safetensors"))
        n = len(shards)
        tap.ok(n > 2 and shards == [f"model-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)],
               f"gen3: {n} shards named model-0000k-of-{n:05d}", shards)
        wm = (index or {}).get("weight_map", {})
        tap.ok(index is not None and wm == where,
               "gen3: the index's weight_map names every tensor and the shard holding it",
               f"missing {sorted(set(where) - set(wm))}\nwrong {[k for k in wm if wm[k] != where.get(k)]}")
        total = sum(len(v[2]) for v in tensors.values())
        tap.ok(index is not None and index.get("metadata", {}).get("total_size") == total,
               "gen3: metadata.total_size is the sum of the tensors' bytes",
               (index or {}).get("metadata"))

shutil.rmtree(work, ignore_errors=True)
tap.done()
