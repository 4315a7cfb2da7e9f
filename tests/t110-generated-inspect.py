"""Checkpoints the tests make themselves, in DeepSpeed's layout, cover
what the real fixtures do not: 64 ranks and thousands of params, files
over 4 GiB (sparse), 0-element and 1-element params and a 0-dim buffer,
params spanning ZeRO-3 sub-groups, ZeRO-1/2 and BF16_Optimizer with many
ranks, and each layout a checkpoint folder can have. Each is checked with
`zerofs inspect --json --extents` against the generator's reference, as
the real fixtures are (tests/lib/zfinspect.py). These run everywhere,
also where ../shared is absent."""
import json
import re
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import ROOT, TMPROOT, Tap, run  # noqa: E402
from zfinspect import check  # noqa: E402

tap = Tap()
out = tempfile.mkdtemp(prefix="t110-", dir=TMPROOT)
GEN = os.path.join(ROOT, "tests", "gen", "make_ckpt.py")

CASES = [
    # name, generator options, what it covers
    ("z3_ws64_2000", ["--stage", "3", "--ws", "64", "--params", "2000", "--frozen", "--tied",
                      "--hidden", "16"], "64 ranks, 2,000+ tensors, frozen and tied"),
    ("z3_span", ["--stage", "3", "--ws", "5", "--sub-group-size", "97", "--span-subgroups",
                 "--dtype", "bf16", "--frozen"], "params spanning sub-groups, bf16, 5 ranks"),
    ("z2_ws16_fp16", ["--stage", "2", "--ws", "16", "--dtype", "fp16", "--frozen", "--tied"],
     "ZeRO-2, 16 ranks, fp16, tiny groups"),
    ("z1_ws7_bf16", ["--stage", "1", "--ws", "7", "--dtype", "bf16", "--frozen"],
     "ZeRO-1, 7 ranks, frozen params only in module"),
    ("bf16opt_ws3", ["--bf16-optimizer", "--ws", "3", "--tied"], "BF16_Optimizer, 3 ranks"),
    ("xtuner", ["--stage", "3", "--ws", "3", "--layout", "xtuner", "--prefix", "llm."],
     "XTuner iter_N.pth folder, llm. names"),
    ("trainer", ["--stage", "2", "--ws", "2", "--layout", "trainer", "--dtype", "bf16"],
     "HF Trainer checkpoint-N folder"),
    ("big", ["--stage", "3", "--ws", "2", "--big-gib", "5", "--no-edge"],
     "a rank file over 4 GiB (sparse, ZIP64)"),
]

for name, opts, what in CASES:
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, GEN, "--out", out, "--name", name] + opts,
                       capture_output=True, text=True)
    if not tap.ok(p.returncode == 0, f"{name}: generated ({what})", p.stderr[-2000:]):
        continue
    with open(os.path.join(out, name + ".ref.json")) as f:
        ref = json.load(f)
    ckpt = os.path.join(out, name)
    if name == "xtuner":
        ckpt = os.path.join(out, ref["tag_dir"])
    print(f"# {name}: generated in {time.monotonic() - t0:.1f} s")
    info = check(tap, name, ckpt, ref)
    if info and name == "big":
        sizes = [f["size"] for f in info["files"]]
        tap.ok(max(sizes) > (4 << 30), f"big: a source file is {max(sizes)} bytes, over 4 GiB")
    if info and name == "z3_ws64_2000":
        t0 = time.monotonic()
        p = run(["inspect", ckpt])
        dt = time.monotonic() - t0
        lines = p.stdout.splitlines()
        head = next((i for i, ln in enumerate(lines) if ln.startswith("NAME ")), len(lines))
        tap.ok(p.returncode == 0 and "\nranks        64\n" in p.stdout,
               f"z3_ws64_2000: text inspect answers ({dt:.2f} s, metadata only)", p.stderr)
        # A terminal's first screen (24 lines) shows the whole summary and
        # the table's head; the 128 rank files only with --files.
        tap.ok(head < 22 and not any("_states.pt" in ln for ln in lines[:head]),
               f"z3_ws64_2000: the summary is {head} lines, no file lines, the table follows",
               "\n".join(lines[:head + 2]))
        tap.ok(re.search(r"^parameters   \d+(\.\d+)? [KMB] in 2\d\d\d tensors \(", p.stdout, re.M),
               "z3_ws64_2000: parameters as people write them (1.23 B)",
               [ln for ln in lines if ln.startswith("parameters")])
        p = run(["inspect", ckpt, "--files"])
        tap.ok(p.returncode == 0 and len([ln for ln in p.stdout.splitlines()
                                          if ln.startswith("  ") and "_states.pt" in ln]) == 128,
               "z3_ws64_2000: --files lists the 128 rank files", p.stderr)
    if info and name == "xtuner":
        tap.ok(info["layout"] == "xtuner", "xtuner: an iter_N.pth folder is XTuner's", info["layout"])
        # A work_dir with several iter_N.pth folders: mmengine's
        # last_checkpoint names the newest one.
        work = os.path.join(out, name)
        older = os.path.join(work, "iter_1.pth")
        shutil.copytree(ckpt, older)
        p = run(["inspect", "--json", work])
        tap.ok(p.returncode == 0 and json.loads(p.stdout)["tag"] == os.path.basename(ckpt),
               "xtuner: a work_dir with two iter folders follows last_checkpoint", p.stderr)
        os.remove(os.path.join(work, "last_checkpoint"))
        p = run(["inspect", work])
        tap.ok(p.returncode == 3 and "choose one with --tag" in p.stderr,
               "xtuner: without last_checkpoint the choice is left to --tag", p.stderr)
        p = run(["inspect", "--json", "--tag", "iter_1.pth", work])
        tap.ok(p.returncode == 0 and json.loads(p.stdout)["tag"] == "iter_1.pth",
               "xtuner: --tag picks an iter folder", p.stderr)
    if info and name == "trainer":
        tap.ok(info["layout"] == "hf-trainer", "trainer: recognised as a HF Trainer folder", info["layout"])

tap.done()
