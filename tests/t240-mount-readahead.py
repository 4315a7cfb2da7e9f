"""The mount's kernel readahead window ends at 1 MiB (or what --readahead
asks), so mmap readers such as safetensors get 1 MiB requests instead of
4-64 KiB ones (bench/README.md, "Readahead"). The kernel takes the smaller of the
bdi window and the daemon's INIT reply, so both must say it."""
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import ROOT, TMPROOT, Tap, fixtures  # noqa: E402
from zfmount import mounted  # noqa: E402

tap = Tap()


def window(path):
    st = os.stat(path)
    bdi = f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb"
    with open(bdi) as f:
        return int(f.read())


fx = fixtures()
if fx:
    ckpt = fx[0][1]
else:
    out = tempfile.mkdtemp(dir=TMPROOT)
    os.system(f"{sys.executable} {ROOT}/tests/gen/make_ckpt.py --out {out} --name c --stage 3 --ws 2 >/dev/null")
    ckpt = os.path.join(out, "c")

for args, want in [((), 1024), (("--readahead", "4096"), 4096), (("--readahead", "512"), 512)]:
    with mounted(ckpt, *args) as m:
        name = sorted(n for n in os.listdir(m.path) if n.endswith(".safetensors"))[0]
        with open(os.path.join(m.path, name), "rb") as f:
            f.read()
        got = window(m.path)
        tap.ok(got == want, f"readahead window {want} KiB with {' '.join(args) or 'defaults'} (got {got})")
tap.done()
