"""zerofs export writes the directory the mount shows, byte for byte: for
every checkpoint (the real fixtures when present, and the generated set),
in each dtype and once sharded, the exported folder and the mounted one
hold the same file names, and every file's bytes are equal."""
import filecmp
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import TMPROOT, Tap, checkpoints, run  # noqa: E402
from zfmount import mounted  # noqa: E402

tap = Tap()
work = tempfile.mkdtemp(prefix="t320-", dir=TMPROOT)
VARIANTS = [("auto", ()), ("fp32", ("--dtype", "fp32")), ("bf16", ("--dtype", "bf16")),
            ("fp16", ("--dtype", "fp16")), ("sharded", ("--max-shard-size", "20KB"))]

for name, d, _ref in checkpoints():
    for label, args in VARIANTS:
        out = os.path.join(work, name, label)
        p = run(["export", "-q", d, out, *args])
        if not tap.ok(p.returncode == 0, f"{name} {label}: export exits 0", p.stderr):
            continue
        with mounted(d, *args) as m:
            got = sorted(os.listdir(m.path))
            want = sorted(os.listdir(out))
            same = got == want and all(
                filecmp.cmp(os.path.join(out, f), os.path.join(m.path, f), shallow=False)
                for f in want)
            tap.ok(same and any(f.endswith(".safetensors") for f in want),
                   f"{name} {label}: {len(want)} exported files equal the mount's byte for byte",
                   (got, want))
        shutil.rmtree(out)

tap.done()
