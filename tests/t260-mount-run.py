"""A training run's folder, mounted.

- A Trainer output_dir (checkpoint-50 incomplete, checkpoint-100,
  checkpoint-200, checkpoint-1000) mounts as the checkpoint the Trainer's
  get_last_checkpoint picks (the highest N, by number), byte for byte what
  mounting that checkpoint-N directly serves, and says which and why
  (stderr, user.zerofs.chosen, zerofs status).
- `mount --all` shows one folder per checkpoint in natural order; nothing
  is opened at mount time, nor by `ls -l` of the root; a folder's files are
  exactly those of mounting its checkpoint alone. The incomplete one is a
  folder whose listing and lookups fail with EIO, logged once with the
  reason, shown by its user.zerofs.error, the root's user.zerofs.failed and
  zerofs status; the others keep working.
- Idle checkpoints close again: visiting 12 keeps at most 4 open;
  revisiting one reopens it with the same inode numbers and bytes; one
  whose files changed while closed fails from then on.
- 200 checkpoints (hard-linked copies) mount with --all as fast as one,
  opening none; figures printed.
- DeepSpeed save folders (tags) and XTuner work_dirs (iter_N.pth -> iter_N)
  get their own folder names; `-o all`; options that do not apply are
  errors; inspect --all lists them all.
"""
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import ROOT, TMPROOT, Tap, run  # noqa: E402
from zfmount import MountFailed, mounted  # noqa: E402

tap = Tap()
WORK = tempfile.mkdtemp(prefix="t260-", dir=TMPROOT)
GEN = os.path.join(ROOT, "tests", "gen", "make_ckpt.py")
PY = os.environ.get("PYTHON", "/usr/bin/python3")
SMALL = ["--ws", "2", "--hidden", "32", "--layers", "1", "--vocab", "256", "--no-zero-to-fp32"]


def gen(dest, name, *opts):
    """Generates checkpoint `name` and moves it into folder dest (its
    reference files stay behind)."""
    out = os.path.join(WORK, "gen")
    p = subprocess.run([PY, GEN, "--out", out, "--name", name] + SMALL + list(opts),
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(p.stderr[-2000:])
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(out, name + ".ref.json")) as f:
        ref = json.load(f)
    shutil.move(os.path.join(out, name), os.path.join(dest, name))
    return os.path.join(dest, name), ref


def digests(folder):
    """{file: sha256} of every file in folder."""
    out = {}
    for n in sorted(os.listdir(folder)):
        with open(os.path.join(folder, n), "rb") as f:
            out[n] = hashlib.sha256(f.read()).hexdigest()
    return out


def xattr(path, name):
    try:
        return os.getxattr(path, "user.zerofs." + name).decode()
    except OSError as e:
        return "errno %d" % e.errno


def states(mnt):
    return {n: xattr(os.path.join(mnt, n), "state") for n in os.listdir(mnt)}


def errno_of(fn, *args):
    try:
        fn(*args)
        return 0
    except OSError as e:
        return e.errno


RUN = os.path.join(WORK, "run")
try:
    gen(RUN, "checkpoint-100", "--stage", "2", "--layout", "trainer", "--seed", "1")
    gen(RUN, "checkpoint-200", "--stage", "2", "--layout", "trainer", "--seed", "2")
    gen(RUN, "checkpoint-50", "--stage", "2", "--layout", "trainer", "--seed", "3")
except RuntimeError as e:
    tap.ok(False, "generate the run's checkpoints", e)
    tap.done()
# checkpoint-1000 is newer than checkpoint-200 by number, not by name.
subprocess.run(["cp", "-al", os.path.join(RUN, "checkpoint-200"), os.path.join(RUN, "checkpoint-1000")],
               check=True)
# checkpoint-50: a rank file missing (a partial copy).
tag50 = os.path.join(RUN, "checkpoint-50", "global_step3")
gone = sorted(n for n in os.listdir(tag50) if n.endswith("optim_states.pt"))[-1]
os.remove(os.path.join(tag50, gone))
NAMES = ["checkpoint-50", "checkpoint-100", "checkpoint-200", "checkpoint-1000"]

# The served files of each complete checkpoint, mounted alone.
alone = {}
for n in NAMES[1:]:
    try:
        with mounted(os.path.join(RUN, n)) as m:
            alone[n] = digests(m.path)
    except MountFailed as e:
        tap.ok(False, f"mount {n} alone", e)
tap.ok(len(alone) == 3 and alone["checkpoint-100"] != alone["checkpoint-200"]
       and alone["checkpoint-200"] == alone["checkpoint-1000"],
       "reference: each complete checkpoint mounted alone (100 and 200 differ)")

# ---- a plain mount of the run folder: the Trainer's pick
try:
    with mounted(RUN) as m:
        tap.ok(digests(m.path) == alone.get("checkpoint-1000"),
               "the run folder serves checkpoint-1000, the highest N, byte for byte")
        tap.ok("zerofs: chose checkpoint-1000/global_step3 of the 4 checkpoints there: the highest "
               "checkpoint-N (as the Trainer resumes); --tag NAME serves another, --all all of them"
               in m.proc.stderr, "mount says which checkpoint it chose and why", m.proc.stderr)
        tap.ok(xattr(m.path, "tag") == "checkpoint-1000/global_step3"
               and xattr(m.path, "chosen") == "the highest checkpoint-N (as the Trainer resumes), of 4",
               "user.zerofs.tag and user.zerofs.chosen", (xattr(m.path, "tag"), xattr(m.path, "chosen")))
        s = run(["status", m.path])
        tap.ok(s.returncode == 0 and "\n  chosen       the highest checkpoint-N (as the Trainer "
               "resumes), of 4\n" in s.stdout, "zerofs status says how it was chosen", s.stdout)
except MountFailed as e:
    tap.ok(False, "mount the run folder", e)
p = run(["mount", RUN, WORK, "--tag", "checkpoint-100", "--all"])
tap.ok(p.returncode == 2 and "--all serves every checkpoint: --tag does not apply" in p.stderr,
       "mount --all --tag is a usage error", p.stderr)

def folder_mode(path):
    """The mode a folder of a root mount shows (zerofs(1), SECURITY
    CONSIDERATIONS): read and search for a class only when that class may
    search every folder from / down to path and read path itself; the owner
    (root, who mounted) keeps them."""
    mode = 0o555
    p = os.path.realpath(path)
    chain = [p]
    while p != "/":
        p = os.path.dirname(p)
        chain.append(p)
    for i, d in enumerate(chain):
        m = os.stat(d).st_mode
        need = 0o5 if i == 0 else 0o1
        if m & need != need:
            mode &= ~0o5
        if (m >> 3) & need != need:
            mode &= ~0o50
    return mode


# ---- mount --all
log = os.path.join(WORK, "all.log")
try:
    with mounted(RUN, "--all", "--log", log) as m:
        mnt = m.path
        tap.ok(os.listdir(mnt) == NAMES, "--all: one folder per checkpoint, in natural order",
               os.listdir(mnt))
        tap.ok("zerofs: serving the 4 checkpoints of '%s' at '%s', a folder each (checkpoint-50 to "
               "checkpoint-1000), each opened on first use" % (RUN, mnt) in m.proc.stderr
               and "zerofs: the newest is checkpoint-1000: the highest checkpoint-N" in m.proc.stderr,
               "--all: mount says what it serves", m.proc.stderr)
        tap.ok(xattr(mnt, "checkpoints") == "4" and xattr(mnt, "newest") == "checkpoint-1000"
               and xattr(mnt, "dtype") == "auto",
               "--all: the root's user.zerofs.checkpoints, newest, dtype")
        st = {n: os.stat(os.path.join(mnt, n)) for n in NAMES}
        tap.ok(all(s.st_mode & 0o777 == folder_mode(os.path.join(RUN, n)) and s.st_nlink == 2
                   for n, s in st.items())
               and set(states(mnt).values()) == {"not opened"},
               "--all: ls -l of the root opens no checkpoint; each folder's mode is what its "
               "checkpoint folder allows", (states(mnt), {n: oct(s.st_mode) for n, s in st.items()}))
        got = {n: digests(os.path.join(mnt, n)) for n in NAMES[1:]}
        tap.ok(got == alone, "--all: each folder serves what mounting its checkpoint alone serves")
        tap.ok(states(mnt)["checkpoint-100"] == "open"
               and xattr(os.path.join(mnt, "checkpoint-100"), "tag") == "checkpoint-100/global_step3",
               "--all: a visited folder is open and names its tag", states(mnt))
        bad = os.path.join(mnt, "checkpoint-50")
        e1 = errno_of(os.listdir, bad)
        e2 = errno_of(os.stat, os.path.join(bad, "model.safetensors"))
        tap.ok(e1 == errno.EIO and e2 == errno.EIO and os.path.isdir(bad),
               "--all: the incomplete checkpoint is a folder whose listing and lookups fail with EIO",
               (e1, e2))
        why = xattr(bad, "error")
        tap.ok(why.startswith("cannot be opened: '%s': " % tag50) and gone in why
               and xattr(bad, "state") == "failed",
               "--all: its user.zerofs.error says why, naming the missing file", why)
        tap.ok(xattr(mnt, "failed") == "checkpoint-50: " + why, "--all: the root's user.zerofs.failed",
               xattr(mnt, "failed"))
        s = run(["status", mnt])
        tap.ok(s.returncode == 0 and "\n  failed       checkpoint-50: cannot be opened: " in s.stdout
               and "\n  checkpoints  4\n  newest       checkpoint-1000\n" in s.stdout,
               "--all: zerofs status shows the checkpoints, the newest and the failure", s.stdout)
        js = json.loads(run(["status", mnt, "--json"]).stdout or "[{}]")[0]
        tap.ok(js.get("checkpoints") == "4" and js.get("failed", "").startswith("checkpoint-50: "),
               "--all: zerofs status --json too", js)
        tap.ok(digests(os.path.join(mnt, "checkpoint-100")) == alone["checkpoint-100"],
               "--all: the other folders keep working")
        time.sleep(0.2)
        text = open(log).read()
        tap.ok(text.count("checkpoint 'checkpoint-50' cannot be opened: '%s': " % tag50) == 1
               and "its folder answers EIO" in text
               and "listing of 'checkpoint-50' failed with EIO: cannot be opened" in text,
               "--all: the log says once why it cannot be opened, and logs each refusal", text[-1500:])
except MountFailed as e:
    tap.ok(False, "mount --all", e)

# ---- idle checkpoints close, reopen with the same inodes; a change while
# closed fails the folder
MANY = os.path.join(WORK, "many")
os.makedirs(MANY)
for k in range(1, 13):
    subprocess.run(["cp", "-al", os.path.join(RUN, "checkpoint-100"),
                    os.path.join(MANY, "checkpoint-%d" % k)], check=True)
try:
    with mounted(MANY, "-o", "all") as m:
        mnt = m.path
        first = os.path.join(mnt, "checkpoint-1", "model.safetensors")
        ino = os.stat(first).st_ino
        peak = 0
        for k in range(1, 13):
            d = digests(os.path.join(mnt, "checkpoint-%d" % k))
            peak = max(peak, list(states(mnt).values()).count("open"))
        s = states(mnt)
        tap.ok(peak <= 4 and list(s.values()).count("closed (idle)") == 8
               and d == alone["checkpoint-100"],
               "-o all: 12 checkpoints visited, at most 4 open at once, 8 closed again", s)
        tap.ok(s["checkpoint-1"] == "closed (idle)" and digests(os.path.join(mnt, "checkpoint-1"))
               == alone["checkpoint-100"] and os.stat(first).st_ino == ino and ino >> 32 == 1,
               "a closed checkpoint reopens: same bytes, same inode number", (ino, s["checkpoint-1"]))
        fd = os.open(os.path.join(mnt, "checkpoint-2", "model.safetensors"), os.O_RDONLY)
        for k in range(3, 13):
            digests(os.path.join(mnt, "checkpoint-%d" % k))
        tap.ok(states(mnt)["checkpoint-2"] == "open",
               "a checkpoint with an open file is not closed, however long idle")
        os.close(fd)
        # checkpoint-12 is closed by now: change one of its files.
        for k in range(1, 5):
            digests(os.path.join(mnt, "checkpoint-%d" % k))
        victim = os.path.join(MANY, "checkpoint-12", "global_step3")
        os.remove(os.path.join(victim, gone))
        shutil.copy(os.path.join(RUN, "checkpoint-100", "global_step3", gone), victim)
        e = errno_of(digests, os.path.join(mnt, "checkpoint-12"))
        tap.ok(e == errno.EIO and xattr(os.path.join(mnt, "checkpoint-12"), "error")
               == "changed since it was first opened (its files or served names and sizes differ)",
               "a checkpoint whose file was replaced while closed fails on reopening",
               (e, xattr(os.path.join(mnt, "checkpoint-12"), "error")))
except MountFailed as e:
    tap.ok(False, "mount -o all", e)

# ---- 200 checkpoints mount as fast as one
RUN200 = os.path.join(WORK, "run200")
os.makedirs(RUN200)
for k in range(1, 201):
    subprocess.run(["cp", "-al", os.path.join(RUN, "checkpoint-100"),
                    os.path.join(RUN200, "checkpoint-%d" % (100 * k))], check=True)


def mount_time(*args):
    best = None
    for _ in range(3):
        mnt = tempfile.mkdtemp(prefix="t260-m-", dir=WORK)
        t0 = time.monotonic()
        p = run(["mount"] + list(args[:1]) + [mnt] + list(args[1:]))
        dt = time.monotonic() - t0
        st = states(mnt) if p.returncode == 0 and "--all" in args else {}
        run(["umount", mnt])
        best = dt if best is None else min(best, dt)
    return best, p, st


t1, p1, _ = mount_time(os.path.join(RUN200, "checkpoint-20000"))
t200, p200, st = mount_time(RUN200, "--all")
print("# mount of one checkpoint: %.3f s; --all of 200: %.3f s (best of 3)" % (t1, t200))
tap.ok(p1.returncode == 0 and p200.returncode == 0 and len(st) == 200
       and set(st.values()) == {"not opened"} and t200 < max(3 * t1, 0.5),
       "200 checkpoints mount with --all in %.3f s (one alone: %.3f s), none opened" % (t200, t1),
       (p200.stderr, t1, t200))

# ---- DeepSpeed save folder with tags; XTuner work_dir
try:
    ds, _ = gen(os.path.join(WORK, "ds"), "save", "--stage", "3", "--tag", "global_step5")
    other, _ = gen(os.path.join(WORK, "gen2"), "other", "--stage", "3", "--tag", "global_step9",
                   "--seed", "7")
    shutil.move(os.path.join(other, "global_step9"), os.path.join(ds, "global_step9"))
    with mounted(ds, "--all") as m:
        tap.ok(os.listdir(m.path) == ["global_step5", "global_step9"]
               and xattr(m.path, "newest") == "global_step5",
               "--all on a DeepSpeed save folder: its tags; newest is the one 'latest' names",
               (os.listdir(m.path), xattr(m.path, "newest")))
    xt, _ = gen(os.path.join(WORK, "xt"), "work", "--stage", "2", "--layout", "xtuner", "--tag",
                "iter_500.pth", "--prefix", "llm.")
    shutil.copytree(os.path.join(xt, "iter_500.pth"), os.path.join(xt, "iter_1000.pth"))
    with mounted(xt, "--all") as m:
        names = os.listdir(m.path)
        tap.ok(names == ["iter_500", "iter_1000"]
               and "model.safetensors" in os.listdir(os.path.join(m.path, "iter_1000")),
               "--all on an XTuner work_dir: iter_N.pth/ is served as iter_N/", names)
except (RuntimeError, MountFailed) as e:
    tap.ok(False, "save folder and work_dir cases", e)
p = run(["mount", os.path.join(RUN, "checkpoint-100", "global_step3"), os.path.join(WORK, "gen"),
         "--all"])
tap.ok(p.returncode == 3 and "no folder in it holds a checkpoint; --all serves the checkpoints of a run "
       "folder" in p.stderr, "--all on a tag folder says what --all is for (exit 3)", p.stderr)

# ---- inspect of the run
p = run(["inspect", RUN])
tap.ok(p.returncode == 0 and "\nrun          4 checkpoints: checkpoint-50, checkpoint-100, "
       "checkpoint-200, checkpoint-1000\nchosen       checkpoint-1000, the highest checkpoint-N"
       in p.stdout, "inspect of the run lists its checkpoints and says which one is served",
       p.stdout[:700] + p.stderr)
p = run(["inspect", RUN, "--all"])
rows = [ln for ln in p.stdout.splitlines() if ln.startswith("checkpoint-")]
tap.ok(p.returncode == 3 and len(rows) == 4 and "cannot be opened: '%s': " % tag50 in rows[0]
       and rows[3].startswith("checkpoint-1000 *") and "newest       checkpoint-1000 (*)" in p.stdout,
       "inspect --all: a line per checkpoint, the newest marked, the broken one says why (exit 3)",
       p.stdout)
p = run(["inspect", RUN, "--all", "--json"])
try:
    js = json.loads(p.stdout)
except ValueError:
    js = {}
cks = js.get("checkpoints", [])
tap.ok(p.returncode == 3 and js.get("newest") == "checkpoint-1000"
       and [c["name"] for c in cks] == NAMES and "error" in cks[0]
       and cks[3].get("served", {}).get("shards") == 1,
       "inspect --all --json", p.stdout[:800])
p = run(["inspect", RUN, "--all", "model.*"])
tap.ok(p.returncode == 2 and "--all shows one line per checkpoint" in p.stderr,
       "inspect --all with a tensor pattern is a usage error", p.stderr)

shutil.rmtree(WORK, ignore_errors=True)
tap.done()
