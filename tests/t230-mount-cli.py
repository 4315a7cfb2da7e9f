"""`zerofs mount` / `zerofs umount` on the command line: bad checkpoints exit 3
with a message naming the file and the problem and leave nothing mounted; a
missing mount point exits 2; --help exits 0; unmounting a non-mount fails;
-f keeps the process in the foreground until the mount is unmounted, then it
exits 0."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import Tap, ZEROFS, TMPROOT, fixtures, run  # noqa: E402
from zfmount import (mounted, MountFailed, is_mounted, mounts, mountpoint as _mountpoint,  # noqa: E402
                     unmount, wait_mounted)
import st_validate as sv  # noqa: E402

tap = Tap()
WORK = tempfile.mkdtemp(prefix="t230-", dir=TMPROOT)
MADE = []


def mountpoint(prefix):  # noqa: F811 - remembers what to remove at the end
    d = _mountpoint(prefix)
    MADE.append(d)
    return d


def bad_mount(tag, ckpt, want_rc, must_say):
    """Runs zerofs mount on a bad input; checks rc, that stderr holds every
    string of must_say (a list; an inner tuple means any one of them), and
    that nothing got mounted."""
    mnt = mountpoint("bad")
    try:
        p = run(["mount", ckpt, mnt], timeout=60)
        want = want_rc if isinstance(want_rc, tuple) else (want_rc,)
        tap.ok(p.returncode in want, "%s: exits %s" % (tag, " or ".join(map(str, want))),
               "rc %d, stderr %s" % (p.returncode, p.stderr))
        missing = []
        for s in must_say:
            alts = s if isinstance(s, tuple) else (s,)
            if not any(a in p.stderr for a in alts):
                missing.append(" or ".join(repr(a) for a in alts))
        tap.ok(not missing and p.stderr.strip() != "",
               "%s: message names the file and the problem" % tag,
               "stderr: %s\nlacks: %s" % (p.stderr.strip(), ", ".join(missing)))
        time.sleep(0.1)
        # only this mount point: other tests and benchmarks mount concurrently
        tap.ok(not is_mounted(mnt) and os.listdir(mnt) == [],
               "%s: nothing is mounted afterwards" % tag,
               [e for e in mounts() if e[1] == os.path.realpath(mnt)])
    finally:
        unmount(mnt)
        try:
            os.rmdir(mnt)
        except OSError:
            pass


def copy_ckpt(src, name):
    dst = os.path.join(WORK, name)
    shutil.copytree(src, dst)
    for dp, dns, fns in os.walk(dst):
        os.chmod(dp, 0o755)
        for f in fns:
            os.chmod(os.path.join(dp, f), 0o644)
    return dst


try:
    fx = {f[0]: f for f in fixtures()}
    good = None
    for n in ("z3_ws2_fp32", "z2_ws2"):
        if n in fx:
            good = fx[n][1]
            break
    if good is None and fx:
        good = list(fx.values())[0][1]
    if good is None:
        # no real fixtures here: make a checkpoint with the generator
        gen = os.path.join(os.path.dirname(__file__), "gen", "make_ckpt.py")
        p = subprocess.run(["/usr/bin/python3", gen, "--out", WORK, "--name", "z3_ws2_fp32",
                            "--stage", "3", "--ws", "2", "--no-edge"], capture_output=True, text=True)
        tap.ok(p.returncode == 0, "generate a checkpoint (no real fixtures)", p.stderr)
        good = os.path.join(WORK, "z3_ws2_fp32")

    # --help
    p = run(["mount", "--help"])
    tap.ok(p.returncode == 0 and "usage" in (p.stdout + p.stderr).lower() and "--dtype" in p.stdout,
           "zerofs mount --help exits 0 and prints the usage on stdout", (p.returncode, p.stderr))

    # bad checkpoints
    missing = os.path.join(WORK, "does-not-exist")
    bad_mount("nonexistent checkpoint", missing, 3, [missing, ("no such", "No such", "not found")])
    empty = os.path.join(WORK, "empty")
    os.mkdir(empty)
    bad_mount("empty folder", empty, 3, ["empty", ("not a DeepSpeed checkpoint", "no 'latest'",
                                                   "no tag folder", "no DeepSpeed")])
    a_file = os.path.join(WORK, "a-file.pt")
    with open(a_file, "wb") as f:
        f.write(b"not a checkpoint\n")
    bad_mount("checkpoint path is a plain file", a_file, (2, 3), ["a-file.pt"])

    # missing rank files: copy a fixture, delete one optimizer (or model) file
    tagdir_of = {}
    cases = []
    for fxname, rank, kind in (("z3_ws2_fp32", 1, "optim"), ("z3_ws2_fp32", 0, "optim"),
                               ("z2_ws2", 1, "optim"), ("z3_ws3_bf16", 2, "optim"),
                               ("z3_ws2_fp32", 1, "model")):
        if fxname in fx:
            cases.append((fxname, fx[fxname][1], fx[fxname][2]["tag"], rank, kind))
    if not cases:
        cases.append(("generated", good, "global_step3", 1, "optim"))
    for i, (fxname, src, tag, rank, kind) in enumerate(cases):
        dst = copy_ckpt(src, "missing%d-%s" % (i, fxname))
        tdir = os.path.join(dst, tag)
        victims = sorted(f for f in os.listdir(tdir)
                         if "zero_pp_rank_%d_" % rank in f and f.endswith("_%s_states.pt" % kind))
        if len(victims) != 1:
            tap.ok(False, "%s: one %s file of rank %d to delete" % (fxname, kind, rank), victims)
            continue
        os.unlink(os.path.join(tdir, victims[0]))
        # The message must say which file is missing: its name, or its rank.
        bad_mount("%s without %s" % (fxname, victims[0]), dst, 3,
                  [(victims[0], "rank %d" % rank), ("missing", "Missing")])

    # a truncated rank file
    dst = copy_ckpt(good, "truncated")
    tag = sorted(d for d in os.listdir(dst) if os.path.isdir(os.path.join(dst, d)))[0]
    tdir = os.path.join(dst, tag)
    victim = sorted(f for f in os.listdir(tdir) if f.endswith("optim_states.pt"))[-1]
    with open(os.path.join(tdir, victim), "r+b") as f:
        f.truncate(1000)
    bad_mount("truncated %s" % victim, dst, 3, [victim, ("truncated", "not a zip", "corrupt", "short")])

    # mount point problems
    p = run(["mount", good, os.path.join(WORK, "no-such-mountpoint")])
    tap.ok(p.returncode == 2, "missing mount point: exits 2", (p.returncode, p.stderr))
    tap.ok("no-such-mountpoint" in p.stderr, "missing mount point: message names it", p.stderr)
    tap.ok(not is_mounted(os.path.join(WORK, "no-such-mountpoint")), "missing mount point: nothing mounted")
    p = run(["mount", good])
    tap.ok(p.returncode == 2, "no mount point argument: exits 2", (p.returncode, p.stderr))
    p = run(["mount", good, "--dtype", "fp64", mountpoint("baddtype")])
    tap.ok(p.returncode == 2, "--dtype fp64: usage error, exits 2", (p.returncode, p.stderr))

    # umount of a non-mount
    plain = mountpoint("plain")
    p = run(["umount", plain])
    tap.ok(p.returncode != 0 and p.stderr.strip() != "", "umount of a plain folder: non-zero with a message",
           (p.returncode, p.stderr))
    p = run(["umount", os.path.join(WORK, "nowhere")])
    tap.ok(p.returncode != 0, "umount of a nonexistent path: non-zero", (p.returncode, p.stderr))

    # mount, umount, umount again
    try:
        with mounted(good) as m:
            mp = m.path
            tap.ok(is_mounted(mp), "mount shows in /proc/mounts")
            ent = [e for e in mounts() if e[1] == os.path.realpath(mp)]
            tap.ok(ent and ent[0][2].startswith("fuse") and "ro" in ent[0][3].split(","),
                   "mount is a read-only FUSE mount", ent)
            p = run(["umount", mp])
            tap.ok(p.returncode == 0 and not is_mounted(mp), "zerofs umount exits 0 and unmounts",
                   (p.returncode, p.stderr))
            p = run(["umount", mp])
            tap.ok(p.returncode != 0, "second umount of the same folder: non-zero", (p.returncode, p.stderr))
    except MountFailed as e:
        tap.ok(False, "mount of a good checkpoint", e)

    # -f: foreground
    mnt = mountpoint("fg")
    proc = subprocess.Popen([ZEROFS, "mount", "-f", good, mnt], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        up = wait_mounted(mnt, proc=proc)
        tap.ok(up and proc.poll() is None, "-f: mounted while the process stays in the foreground",
               "rc %s" % proc.poll())
        if up:
            try:
                st = sv.validate_dir(mnt)
                tap.ok(len(st.weight_map) > 0, "-f: the served folder is valid and readable")
            except sv.Invalid as e:
                tap.ok(False, "-f: the served folder is valid and readable", "\n".join(e.problems))
            p = run(["umount", mnt])
            tap.ok(p.returncode == 0, "-f: zerofs umount exits 0", p.stderr)
            try:
                rc = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                rc = None
            tap.ok(rc == 0, "-f: the foreground process exits 0 after the unmount", rc)
            tap.ok(not is_mounted(mnt), "-f: nothing mounted afterwards")
    finally:
        unmount(mnt)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()

    # -f and SIGTERM: the process unmounts and exits
    mnt = mountpoint("fgterm")
    proc = subprocess.Popen([ZEROFS, "mount", "-f", good, mnt], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        up = wait_mounted(mnt, proc=proc)
        tap.ok(up, "-f (SIGTERM case): mounted", proc.poll())
        if up:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                rc = None
            # Sent the moment the mount shows: the handlers are in place
            # before the mount exists, so it is an orderly stop (exit 0).
            tap.ok(rc == 0 and not is_mounted(mnt),
                   "-f: SIGTERM unmounts and the process exits 0", (rc, is_mounted(mnt)))
    finally:
        unmount(mnt)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    # Mounting again on a zerofs mount point is refused: a second mount
    # would stack on the first and hide it.
    with mounted(good) as m:
        p = run(["mount", good, m.path])
        n = sum(1 for line in open("/proc/self/mountinfo") if f" {m.path} " in line)
        tap.ok(p.returncode == 2 and "already a zerofs mount" in p.stderr and n == 1,
               "mounting again on a zerofs mount point exits 2, names it, stacks nothing",
               (p.returncode, p.stderr, n))
finally:
    for d in MADE:
        unmount(d)
        try:
            os.rmdir(d)  # never recursive: only an empty, unmounted folder goes
        except OSError:
            pass
    shutil.rmtree(WORK, ignore_errors=True)

tap.done()
