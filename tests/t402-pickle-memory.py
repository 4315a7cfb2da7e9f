#!/usr/bin/python3
"""Pickle memory is bounded by the input and by one process-wide cap
(issue 10): a ZeRO-3 checkpoint whose optimizer files of ranks 1 to 5 each
hold a 66 MB data.pkl made of nothing but EMPTY_LIST opcodes (these files
are parsed in parallel). Before the bound, one such pickle took 4.7 GB of
RSS before it was refused.

`zerofs inspect` must exit 3 with one line naming one of those files and
the input bound (16 bytes of memory per byte of pickle), and its peak RSS
(measured with wait4) must stay under the cap plus what the inputs
themselves take. With ZEROFS_PICKLE_MEMORY=256M it must exit 4 naming the
process-wide cap, and its peak RSS must stay under that cap.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from zftest import Tap, ZEROFS, TMPROOT  # noqa: E402

GEN = os.path.join(HERE, "gen", "make_ckpt.py")
PY = os.environ.get("PYTHON", "/usr/bin/python3")
MB = 1000 * 1000
MIB = 1 << 20
HOSTILE_LEN = 66 * MB  # the pickle
RANKS = 6

tap = Tap()
work = tempfile.mkdtemp(prefix="t402-", dir=TMPROOT)


def replace_pickle(path, data):
    """Rewrites the .pt zip at path with data as its data.pkl (stored)."""
    with zipfile.ZipFile(path) as z:
        recs = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, d in recs:
            z.writestr(name, data if name.endswith("/data.pkl") else d)


def inspect(ckpt, env=None):
    """Runs zerofs inspect; (exit status, stderr, peak RSS in bytes)."""
    e = dict(os.environ)
    e.update(env or {})
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen([ZEROFS, "inspect", ckpt], stdout=subprocess.DEVNULL,
                             stderr=err, env=e)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    return p.returncode, text, ru.ru_maxrss * 1024


def main():
    subprocess.run([PY, GEN, "--out", work, "--name", "ck", "--stage", "3", "--ws", str(RANKS),
                    "--hidden", "8", "--intermediate", "9", "--vocab", "11", "--layers", "1",
                    "--no-zero-to-fp32"], check=True, stdout=subprocess.DEVNULL)
    ckpt = os.path.join(work, "ck")
    tag = os.path.join(ckpt, "global_step3")
    hostile = b"\x80\x02" + b"]" * (HOSTILE_LEN - 3) + b"."
    names = []
    for r in range(1, RANKS):
        name = "zero_pp_rank_%d_mp_rank_00_optim_states.pt" % r
        replace_pickle(os.path.join(tag, name), hostile)
        names.append(name)

    # The input bound.
    code, err, rss = inspect(ckpt)
    lines = [l for l in err.splitlines() if l.strip()]
    tap.ok(code == 3, "hostile pickles: exit 3 (bad input)", "exit %d: %s" % (code, err))
    tap.ok(len(lines) == 1 and lines[0].startswith("zerofs: ")
           and any(n in lines[0] for n in names),
           "one line, naming a hostile rank file", err)
    want = ("EMPTY_LIST needs more than the %d bytes of memory a pickle of %d bytes may use "
            "(16 per byte)" % (16 * HOSTILE_LEN + MIB, HOSTILE_LEN))
    tap.ok(want in err, "it names the input bound: %r" % want, err)
    # One parse at a time fits the 1 GiB cap (each reserves 16 x 66 MB
    # + 1 MiB); beside it, the data.pkl bytes of the files being parsed
    # (66 MB each, one per thread, at most 8) and the program itself.
    limit = (1 << 30) + 8 * HOSTILE_LEN + 64 * MIB
    print("# peak RSS %d MiB (cap 1024 MiB; the same pickle took 4.7 GB before the bound)"
          % (rss // MIB))
    tap.ok(rss < limit, "peak RSS %d MiB < %d MiB (cap + inputs + program)"
           % (rss // MIB, limit // MIB))

    # The process-wide cap, lowered.
    code, err, rss = inspect(ckpt, {"ZEROFS_PICKLE_MEMORY": "256M"})
    lines = [l for l in err.splitlines() if l.strip()]
    tap.ok(code == 4, "ZEROFS_PICKLE_MEMORY=256M: exit 4 (memory)", "exit %d: %s" % (code, err))
    tap.ok(len(lines) == 1 and lines[0].startswith("zerofs: ")
           and any(n in lines[0] for n in names),
           "one line, naming a hostile rank file", err)
    tap.ok(re.search(r"needs more than the \d+ bytes left to it by the process-wide cap on "
                     r"pickle memory \(268435456 bytes, ZEROFS_PICKLE_MEMORY\)", err),
           "it names the process-wide cap and the variable", err)
    limit = 256 * MIB + 8 * HOSTILE_LEN + 64 * MIB
    print("# peak RSS %d MiB under ZEROFS_PICKLE_MEMORY=256M" % (rss // MIB))
    tap.ok(rss < limit, "peak RSS %d MiB < %d MiB (cap + inputs + program)"
           % (rss // MIB, limit // MIB))

    # A checkpoint without the hostile files still opens under that cap.
    good = os.path.join(work, "good")
    subprocess.run([PY, GEN, "--out", work, "--name", "good", "--stage", "3", "--ws", "2",
                    "--no-zero-to-fp32"], check=True, stdout=subprocess.DEVNULL)
    code, err, rss = inspect(good, {"ZEROFS_PICKLE_MEMORY": "256M"})
    tap.ok(code == 0, "a sound checkpoint inspects fine under ZEROFS_PICKLE_MEMORY=256M", err)


try:
    main()
finally:
    shutil.rmtree(work, ignore_errors=True)
tap.done()
