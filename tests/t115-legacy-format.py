#!/usr/bin/python3
"""Checkpoints in torch's legacy (non-zip) serialization, what DeepSpeed
>= 0.17 writes for every file with "checkpoint": {"checkpoint_serialization":
false}, are served exactly like zip ones (include/zerofs/container.h):

  * generated in that format (tests/gen/make_ckpt.py --legacy: ZeRO-1, 2
    and 3, BF16_Optimizer, 2 to 8 ranks, and a rank file with a record
    over 4 GiB, sparse), each checked with `inspect --json --extents`
    against the generator's reference, every file said to be "legacy";
  * mounted at --dtype auto, fp32, bf16 and fp16: every tensor hashes to
    the reference, read through the mount;
  * one save written in both formats is exported to the same bytes, and so
    is a checkpoint whose files mix the two formats;
  * verify --deep says the legacy files' records were read but that no
    CRC-32 exists to check, in their crc lines, the zip line and the
    verdict, and --json counts them (files_without_crc);
  * where ../shared is present, the real v0.18.9 legacy fixture serves its
    whole live state_dict (NAME.live.pt) at auto, and the reference's
    hashes at fp32, bf16 and fp16.
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from zftest import FIXTURES, ROOT, TMPROOT, Tap, run  # noqa: E402
from zfinspect import check  # noqa: E402
from zfmount import MountFailed, mounted  # noqa: E402
from zfexpect import Expect, tbytes  # noqa: E402

tap = Tap()
WORK = tempfile.mkdtemp(prefix="t115-", dir=TMPROOT)
GEN = os.path.join(ROOT, "tests", "gen", "make_ckpt.py")
FIELD = os.path.join(os.path.dirname(os.path.abspath(FIXTURES)), "field")
DTYPES = ("auto", "fp32", "bf16", "fp16")

CASES = [
    # name, generator options, mounted at every dtype
    ("lz3_ws3_bf16", ["--stage", "3", "--ws", "3", "--dtype", "bf16", "--frozen", "--tied"], True),
    ("lz2_ws2_fp16", ["--stage", "2", "--ws", "2", "--dtype", "fp16", "--frozen", "--tied"], True),
    ("lz1_ws3_bf16", ["--stage", "1", "--ws", "3", "--dtype", "bf16", "--tied"], True),
    ("lbf16opt_ws2", ["--bf16-optimizer", "--ws", "2"], False),
    ("lz3_ws8", ["--stage", "3", "--ws", "8", "--sub-group-size", "300", "--tied"], False),
    ("lz2_ws5_trainer", ["--stage", "2", "--ws", "5", "--layout", "trainer", "--dtype", "bf16"],
     False),
    ("lbig", ["--stage", "3", "--ws", "1", "--big-gib", "4.1", "--no-edge"], False),
]


def gen(name, opts, legacy=True):
    p = subprocess.run([sys.executable, GEN, "--out", WORK, "--name", name]
                       + (["--legacy"] if legacy else []) + opts,
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(p.stderr[-2000:])
    with open(os.path.join(WORK, name + ".ref.json")) as f:
        ref = json.load(f)
    return os.path.join(WORK, name), ref


def sha(b):
    return hashlib.sha256(b).hexdigest()


def served(path):
    """{name: bytes} of every tensor of the safetensors files under path."""
    out = {}
    for fn in sorted(os.listdir(path)):
        if not fn.endswith(".safetensors"):
            continue
        with open(os.path.join(path, fn), "rb") as f:
            b = f.read()
        n = struct.unpack("<Q", b[:8])[0]
        for k, v in json.loads(b[8:8 + n]).items():
            if k != "__metadata__":
                s, e = v["data_offsets"]
                out[k] = b[8 + n + s:8 + n + e]
    return out


def check_mounts(label, d, ex):
    for dt in DTYPES:
        try:
            with mounted(d, "--dtype", dt) as m:
                got = served(m.path)
        except MountFailed as e:
            tap.ok(False, f"{label} --dtype {dt}: mounts", e)
            continue
        bad = [n for n in ex.names if n not in got or sha(got[n]) != ex.sha(n, dt)]
        extra = sorted(set(got) - set(ex.names))
        tap.ok(not bad and not extra and not ex.problems,
               f"{label} --dtype {dt}: {len(ex.names)} tensors hash to the reference",
               f"differ {bad[:10]}\nextra {extra}\n{ex.problems}")


def export(d, name):
    out = os.path.join(WORK, "exp-" + name)
    p = run(["export", "-q", d, out])
    if p.returncode:
        raise RuntimeError(p.stderr)
    return {fn: open(os.path.join(out, fn), "rb").read() for fn in sorted(os.listdir(out))}


def files_of(info):
    return [(os.path.basename(f["path"]), f.get("format")) for f in info["files"]]


# --- generated checkpoints ---------------------------------------------------
for name, opts, mount_all in CASES:
    try:
        d, ref = gen(name, opts)
    except RuntimeError as e:
        tap.ok(False, f"{name}: generated", e)
        continue
    root = os.path.join(WORK, ref["root"]) if "root" in ref else d
    info = check(tap, name, d, ref)
    if not info:
        continue
    fmts = files_of(info)
    tap.ok(fmts and all(f == "legacy" for _, f in fmts),
           f"{name}: inspect --json says every file is in the legacy format", fmts)
    if name == "lbig":
        big = max(f["size"] for f in info["files"])
        tap.ok(big > (4 << 30), f"lbig: a legacy rank file of {big} bytes, a record over 4 GiB")
    if mount_all:
        check_mounts(name, d, Expect(d, ref, d + ".ref.pt"))

# --- the same save in both formats, and mixed ----------------------------------
try:
    zd, zref = gen("same_zip", ["--stage", "2", "--ws", "3", "--dtype", "bf16", "--tied",
                                "--frozen"], legacy=False)
    ld, lref = gen("same_legacy", ["--stage", "2", "--ws", "3", "--dtype", "bf16", "--tied",
                                   "--frozen"])
    ez, el = export(zd, "zip"), export(ld, "legacy")
    tap.ok(ez and ez == el, "one save in both formats: the exports are byte for byte the same",
           sorted(ez))
    # rank 1's optimizer file and the model states from the legacy save
    md = os.path.join(WORK, "same_mixed")
    shutil.copytree(zd, md)
    tag = os.path.join(md, zref["tag"])
    for fn in ("zero_pp_rank_1_mp_rank_00_optim_states.pt",
               "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt", "mp_rank_00_model_states.pt"):
        src = os.path.join(ld, lref["tag"], fn)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(tag, fn))
    p = run(["inspect", "--json", md])
    fm = sorted(f["format"] for f in json.loads(p.stdout)["files"]) if p.returncode == 0 else p.stderr
    tap.ok(fm == ["legacy", "legacy", "zip", "zip"],
           "a checkpoint mixing the formats: inspect says which file is which", fm)
    tap.ok(export(md, "mixed") == ez, "a checkpoint mixing the formats exports the same bytes")
except (RuntimeError, OSError, ValueError) as e:
    tap.ok(False, "the same save in both formats", e)

# --- verify --------------------------------------------------------------------
vd = os.path.join(WORK, "lz2_ws2_fp16")
p = run(["verify", "--deep", vd])
lines = p.stdout.splitlines()
crc = [ln for ln in lines if ln.startswith("ok    crc ")]
tap.ok(p.returncode == 0 and len(crc) == 3 and all(
    ln.endswith("every record read; none checked: torch's legacy format stores no CRC-32")
    for ln in crc), "verify --deep: each legacy file's crc line says no CRC-32 was checked",
    p.stdout[-1500:] + p.stderr)
tap.ok("ok    zip        3 files in torch's legacy format: no zip directory for libzip to "
       "cross-check; pickles parsed and records walked again" in lines,
       "verify: the zip line says what was done instead of libzip's cross-check", p.stdout[-1500:])
tap.ok(lines[-1:] == ["sound (3 files in torch's legacy format: no CRC-32 to check)"],
       "verify --deep's verdict says the CRCs could not be checked", lines[-1:])
p = run(["verify", "--deep", "--json", vd])
try:
    j = json.loads(p.stdout)
except ValueError:
    j = {}
tap.ok(p.returncode == 0 and j.get("sound") is True and j.get("files_without_crc") == 3,
       "verify --deep --json: sound, files_without_crc 3", p.stdout[-500:])
mixed = os.path.join(WORK, "same_mixed")
p = run(["verify", "--deep", mixed])
lines = p.stdout.splitlines()
tap.ok(p.returncode == 0 and "ok    zip        libzip reads the same entries as zerofs in all 2 zip files"
       in lines and lines[-1:] == ["sound (2 files in torch's legacy format: no CRC-32 to check)"],
       "verify --deep of a mixed checkpoint: libzip for the zips, the legacy ones named",
       p.stdout[-1500:])
p = run(["verify", "--deep", os.path.join(WORK, "same_zip")])
tap.ok(p.returncode == 0 and p.stdout.splitlines()[-1:] == ["sound"],
       "verify --deep of the zip save: a plain 'sound'", p.stdout[-300:])

# --- the real fixture -------------------------------------------------------------
FX = "v0.18.9_legacy_z2_ws2_bf16"
fx = os.path.join(FIELD, FX)
if not os.path.isdir(fx):
    tap.skip(f"{FX}: the real DeepSpeed 0.18.9 legacy checkpoint",
             f"{FIELD} is absent (the generated checkpoints above cover the format)")
else:
    import torch  # noqa: E402

    with open(fx + ".ref.json") as f:
        ref = json.load(f)
    info = check(tap, FX, fx, ref)
    tap.ok(info and all(f == "legacy" for _, f in files_of(info)),
           f"{FX}: inspect says every file is in the legacy format", info and files_of(info))
    ex = Expect(fx, ref, fx + ".ref.pt")
    check_mounts(FX, fx, ex)
    live = torch.load(fx + ".live.pt")
    live = live.get("live", live)
    with mounted(fx) as m:
        got = served(m.path)
    want = {n: tbytes(t) for n, t in live.items() if n not in (ref.get("aliases") or {})}
    bad = [n for n in want if got.get(n) != want[n]]
    tap.ok(want and not bad and set(got) == set(want),
           f"{FX}: the mount serves the live state_dict's {len(want)} tensors byte for byte",
           f"differ {bad}\nextra {sorted(set(got) - set(want))}")
    p = run(["verify", "--deep", fx])
    tap.ok(p.returncode == 0 and p.stdout.splitlines()[-1:] ==
           ["sound (3 files in torch's legacy format: no CRC-32 to check)"],
           f"{FX}: verify --deep is sound and says no CRC-32 exists", p.stdout[-300:])

shutil.rmtree(WORK, ignore_errors=True)
tap.done()
