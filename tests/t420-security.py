#!/usr/bin/python3
"""Safe to share (zerofs(1), SECURITY): what a root mount with -o allow_other
shows other users, links and file types in the checkpoint folder, edits
under a live mount, and export's modes, guard, leftovers and resume.

(a) A user created here (useradd, removed at the end) reads a root mount
    with allow_other: a 0600 tokenizer file and a 0640 one are EACCES, the
    0644 ones and the shards read byte for byte; the modes shown are the
    sources' read bits; a checkpoint under a 0700 folder, or with a rank
    file in a 0700 folder on another "disk", is not readable by the user.
(b) A Hugging Face hub cache: --config SNAPSHOT (links into ../../blobs)
    serves config.json and the tokenizer, a link into another repository's
    blobs is left out with a warning; a checkpoint downloaded into the hub
    cache (every file a link) mounts.
(c) Rank files linked from another folder (a checkpoint assembled from
    several disks) are served, the bytes those of the unlinked copy.
(d) Edits under a live mount: a tokenizer file appended to, config.json
    rewritten in place, a tokenizer file replaced by rename: each read
    fails with EIO (never old bytes, never a cut file), the log says which
    file changed, and every later open fails too.
(e) export: modes of written files; leftovers of dead exports removed,
    other users' left alone; a second export into the same folder refused;
    a file of the right size but other bytes is not taken as done; a real
    SIGKILL mid-export, then the same export again: it keeps the complete
    files, redoes the rest, and the folder is byte for byte a fresh
    export's (the TAP line gives the bytes kept and the times).
"""
import fcntl
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import Tap, ZEROFS, ROOT, checkpoints, run  # noqa: E402
from zfmount import is_mounted, unmount, mounted, MountFailed  # noqa: E402

tap = Tap()
PY = os.environ.get("PYTHON", "/usr/bin/python3")
GEN = os.path.join(ROOT, "tests", "gen", "make_ckpt.py")
# Everything under a folder all users may search: the modes served follow
# the folders above the checkpoint.
TOP = tempfile.mkdtemp(prefix="zf-t420-", dir="/tmp")
os.chmod(TOP, 0o755)
USER = None


def sh(*cmd):
    return subprocess.run(list(cmd), capture_output=True, text=True)


def make_user():
    name = "zft420x%d" % os.getpid()
    p = sh("useradd", "-M", "-N", "-r", "-s", "/usr/sbin/nologin", name)
    if p.returncode:
        return None, p.stderr.strip()
    return pwd.getpwnam(name), None


def as_user(*cmd):
    return subprocess.run(["setpriv", "--reuid=%d" % USER.pw_uid, "--regid=%d" % USER.pw_gid,
                           "--init-groups"] + list(cmd), capture_output=True)


def user_reads(path):
    """The bytes the user reads, or 'EACCES' / another error text."""
    p = as_user("cat", path)
    if p.returncode == 0:
        return p.stdout
    err = p.stderr.decode(errors="replace")
    return "EACCES" if "Permission denied" in err else err.strip()


def copy_ckpt(src, dst, mode=0o644):
    shutil.copytree(src, dst, symlinks=True)
    for dp, _, fns in os.walk(dst):
        os.chmod(dp, 0o755)
        for f in fns:
            if not os.path.islink(os.path.join(dp, f)):
                os.chmod(os.path.join(dp, f), mode)
    return dst


def put(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def readall(path):
    with open(path, "rb") as f:
        return f.read()


def read_errno(path):
    try:
        readall(path)
        return 0
    except OSError as e:
        return e.errno


ck_all = checkpoints()
SRC = next((d for n, d, _ in ck_all if n == "z3_ws2_fp32"), ck_all[0][1] if ck_all else None)
CONFIG = '{\n  "model_type": "llama",\n  "torch_dtype": "float32"\n}\n'

try:
    # (a) another user through allow_other --------------------------------
    ck = copy_ckpt(SRC, os.path.join(TOP, "shared", "ckpt"))
    put(os.path.join(ck, "config.json"), CONFIG)
    put(os.path.join(ck, "tokenizer.json"), '{"private": true}\n', 0o600)
    put(os.path.join(ck, "generation_config.json"), '{"group": true}\n', 0o640)
    put(os.path.join(ck, "tokenizer_config.json"), '{"public": true}\n', 0o644)
    if os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("useradd"):
        tap.ok(False, "root, setpriv and useradd are here (the shared-mount tests need them)")
    else:
        USER, why = make_user()
        if not tap.ok(USER is not None, "useradd creates an unprivileged user for the test", why):
            raise SystemExit(tap.done())
        mnt = os.path.join(TOP, "mnt-a")
        os.mkdir(mnt)
        with mounted(ck, "-o", "allow_other", mnt=mnt) as m:
            modes = {n: oct(mode_of(m.file(n))) for n in sorted(os.listdir(m.path))}
            tap.ok(modes == {"config.json": "0o444", "generation_config.json": "0o440",
                             "model.safetensors": "0o444", "tokenizer.json": "0o400",
                             "tokenizer_config.json": "0o444"}
                   and oct(mode_of(m.path)) == "0o555",
                   "served modes are the sources' read bits (0600 -> 0400, 0640 -> 0440), "
                   "the folder 0555", (modes, oct(mode_of(m.path))))
            got = {n: user_reads(m.file(n)) for n in modes}
            want = {"tokenizer.json": "EACCES", "generation_config.json": "EACCES",
                    "tokenizer_config.json": readall(os.path.join(ck, "tokenizer_config.json")),
                    "config.json": readall(m.file("config.json")),
                    "model.safetensors": readall(m.file("model.safetensors"))}
            tap.ok(got == want, "%s (uid %d) through allow_other: the 0600 and 0640 files are "
                   "EACCES, the 0644 ones and the shard read byte for byte"
                   % (USER.pw_name, USER.pw_uid),
                   {n: (v if isinstance(v, str) else "%d bytes" % len(v)) for n, v in got.items()})
            ls = as_user("ls", m.path)
            tap.ok(ls.returncode == 0 and b"model.safetensors" in ls.stdout,
                   "the user lists the mount", ls.stderr)

        # A checkpoint in a 0700 folder: nobody else could reach it there.
        priv = os.path.join(TOP, "private")
        os.mkdir(priv, 0o700)
        ck2 = copy_ckpt(SRC, os.path.join(priv, "ckpt"))
        mnt = os.path.join(TOP, "mnt-b")
        os.mkdir(mnt)
        with mounted(ck2, "-o", "allow_other", mnt=mnt) as m:
            ls = as_user("ls", m.path)
            tap.ok(oct(mode_of(m.path)) == "0o500" and ls.returncode != 0
                   and b"Permission denied" in ls.stderr,
                   "a checkpoint under a 0700 folder: the mount's folder is 0500, the user "
                   "cannot list it", (oct(mode_of(m.path)), ls.stderr))

        # (c) a rank file on "another disk", in a 0700 folder there.
        ck3 = copy_ckpt(SRC, os.path.join(TOP, "assembled", "ckpt"))
        tag = open(os.path.join(ck3, "latest")).read().strip()
        disk2 = os.path.join(TOP, "disk2")
        os.mkdir(disk2)
        rank = sorted(f for f in os.listdir(os.path.join(ck3, tag)) if "optim" in f)[1]
        shutil.move(os.path.join(ck3, tag, rank), os.path.join(disk2, rank))
        os.symlink(os.path.join(disk2, rank), os.path.join(ck3, tag, rank))
        with mounted(SRC) as ref, mounted(ck3, "-o", "allow_other") as m:
            same = readall(ref.file("model.safetensors")) == readall(m.file("model.safetensors"))
        tap.ok(same, "(c) a rank file linked from another folder is followed: the shard's bytes "
               "are those of the unlinked checkpoint")
        os.chmod(disk2, 0o700)
        mnt = os.path.join(TOP, "mnt-c")
        os.mkdir(mnt)
        with mounted(ck3, "-o", "allow_other", mnt=mnt) as m:
            tap.ok(oct(mode_of(m.file("model.safetensors"))) == "0o400"
                   and user_reads(m.file("model.safetensors")) == "EACCES",
                   "(c) ... and when that folder is 0700, the shard is 0400: the user cannot "
                   "read through the mount what it could not read there",
                   oct(mode_of(m.file("model.safetensors"))))

    # (b) a hub cache ------------------------------------------------------
    hub = os.path.join(TOP, "hub")
    repo = os.path.join(hub, "models--org--base")
    other = os.path.join(hub, "models--org--other")
    snap = os.path.join(repo, "snapshots", "0123abcd")
    for d in (os.path.join(repo, "blobs"), snap, os.path.join(other, "blobs"),
              os.path.join(repo, "refs")):
        os.makedirs(d)
    put(os.path.join(repo, "refs", "main"), "0123abcd")
    blobs = {"config.json": CONFIG, "tokenizer.json": '{"version": "1.0"}\n'}
    for name, text in blobs.items():
        h = "%040x" % abs(hash(name))
        put(os.path.join(repo, "blobs", h), text)
        os.symlink(os.path.join("..", "..", "blobs", h), os.path.join(snap, name))
    put(os.path.join(other, "blobs", "f00"), '{"other": 1}\n')
    os.symlink("../../../models--org--other/blobs/f00", os.path.join(snap, "tokenizer_config.json"))
    try:
        with mounted(SRC, "--config", snap, "--dtype", "bf16") as m:
            names = sorted(os.listdir(m.path))
            cfg = readall(m.file("config.json"))
            tok = readall(m.file("tokenizer.json"))
            warn = ("zerofs: warning: '%s/tokenizer_config.json' left out: a symbolic link to "
                    "'../../../models--org--other/blobs/f00', outside the --config folder" % snap)
            tap.ok(cfg == CONFIG.replace("float32", "bfloat16").encode()
                   and tok == blobs["tokenizer.json"].encode()
                   and "tokenizer_config.json" not in names and warn in m.proc.stderr.splitlines(),
                   "(b) --config on a hub snapshot: config.json and tokenizer.json through "
                   "../../blobs are served; a link into another repository is left out, named",
                   (names, cfg, m.proc.stderr))
    except MountFailed as e:
        tap.ok(False, "(b) --config on a hub snapshot mounts", e)
    # A checkpoint downloaded into the hub cache: every file is a link.
    dl = os.path.join(hub, "models--org--ckpt")
    dsnap = os.path.join(dl, "snapshots", "feed")
    os.makedirs(os.path.join(dl, "blobs"))
    for dp, _, fns in os.walk(SRC):
        for f in fns:
            rel = os.path.relpath(os.path.join(dp, f), SRC)
            h = "%040x" % abs(hash(rel))
            shutil.copy(os.path.join(dp, f), os.path.join(dl, "blobs", h))
            link = os.path.join(dsnap, rel)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(os.path.relpath(os.path.join(dl, "blobs", h), os.path.dirname(link)), link)
    put(os.path.join(dl, "blobs", "cfg"), CONFIG)
    os.symlink("../../blobs/cfg", os.path.join(dsnap, "config.json"))
    try:
        with mounted(SRC) as ref, mounted(dsnap) as m:
            tap.ok(readall(m.file("model.safetensors")) == readall(ref.file("model.safetensors"))
                   and readall(m.file("config.json")) == CONFIG.encode(),
                   "(b) a checkpoint in the hub cache (latest, rank files, config.json all links "
                   "into blobs) mounts and serves the same bytes")
    except MountFailed as e:
        tap.ok(False, "(b) a checkpoint in the hub cache mounts", e)

    # (d) edits under a live mount -----------------------------------------
    def edited(label, target, edit, read):
        d = copy_ckpt(SRC, tempfile.mkdtemp(prefix="edit-", dir=TOP) + "/ckpt")
        put(os.path.join(d, "config.json"), CONFIG)
        put(os.path.join(d, "tokenizer.json"), '{"v": 1}\n')
        log = os.path.join(os.path.dirname(d), "zerofs.log")
        try:
            with mounted(d, "--log", log) as m:
                edit(os.path.join(d, target))
                e1 = read_errno(m.file(read))
                e2 = read_errno(m.file("model.safetensors"))
            text = open(log).read() if os.path.exists(log) else ""
            tap.ok(e1 == 5 and e2 == 5 and "%s': changed:" % target in text,
                   "(d) %s: the read fails with EIO, the log names the file and how it changed, "
                   "and every later open fails" % label, (e1, e2, text[-600:]))
        except MountFailed as e:
            tap.ok(False, "(d) %s: mounts" % label, e)

    def append(p):
        with open(p, "a") as f:
            f.write(" ")

    def rewrite_in_place(p):
        b = bytearray(readall(p))
        b[-2:-1] = b" "
        with open(p, "r+b") as f:
            f.write(b)

    def replace(p):
        put(p + ".new", '{"v": 2}\n')
        os.rename(p + ".new", p)

    edited("tokenizer.json appended to", "tokenizer.json", append, "tokenizer.json")
    edited("config.json rewritten in place, same size", "config.json", rewrite_in_place, "config.json")
    edited("tokenizer.json replaced by a rename", "tokenizer.json", replace, "tokenizer.json")

    # (e) export -------------------------------------------------------------
    exp = copy_ckpt(SRC, os.path.join(TOP, "exp", "ckpt"))
    put(os.path.join(exp, "config.json"), CONFIG)
    put(os.path.join(exp, "tokenizer.json"), '{"private": true}\n', 0o600)
    put(os.path.join(exp, "generation_config.json"), '{"group": true}\n', 0o640)
    out = os.path.join(TOP, "exp", "out")
    um = os.umask(0o022)
    try:
        p = run(["export", "-q", exp, out])
    finally:
        os.umask(um)
    modes = {n: oct(mode_of(os.path.join(out, n))) for n in sorted(os.listdir(out))} if p.returncode == 0 else p.stderr
    tap.ok(modes == {"config.json": "0o644", "generation_config.json": "0o640",
                     "model.safetensors": "0o644", "tokenizer.json": "0o600"},
           "(e) exported files carry the served read bits plus owner write (umask 022)", modes)

    # leftovers: ours partial (removed), another user's (left alone)
    dead = os.path.join(out, ".model.safetensors.zerofs-tmp-4194303")
    put(dead, "partial")
    foreign = os.path.join(out, ".config.json.zerofs-tmp-4194302")
    put(foreign, "not ours")
    if USER:
        os.chown(foreign, USER.pw_uid, USER.pw_gid)
    p = run(["export", exp, out])
    left = sorted(f for f in os.listdir(out) if "zerofs-tmp" in f)
    tap.ok(p.returncode == 0 and left == ([os.path.basename(foreign)] if USER else [])
           and "removed 1 partial temporary file left in '%s' by an export that did not finish" % out
           in p.stderr
           and (not USER or "warning: 1 temporary file in '%s' belongs to another user or a running "
                "export; left alone" % out in p.stderr)
           and "kept 4 files" in p.stderr,
           "(e) a dead export's partial temporary file is removed, another user's is left alone "
           "and both are told; complete files are kept", (p.returncode, left, p.stderr))
    if USER:
        os.unlink(foreign)

    # a second export while one holds the folder
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        p = run(["export", "-q", "--force", exp, out])
    finally:
        os.close(fd)
    tap.ok(p.returncode == 2 and "'%s': another zerofs export is writing into this folder" % out
           in p.stderr, "(e) a second export into a folder another export holds is refused (exit 2)",
           (p.returncode, p.stderr))

    # the right size is not enough
    shard = os.path.join(out, "model.safetensors")
    good = readall(shard)
    xattr = os.getxattr(shard, "user.zerofs.export")
    os.unlink(shard)
    with open(shard, "wb") as f:
        f.write(b"\0" * len(good))
    os.setxattr(shard, "user.zerofs.export", xattr)  # a proof for other bytes: stale mtime
    p = run(["export", "-q", exp, out])
    tap.ok(p.returncode == 2 and "model.safetensors': already exists; replace it with --force" in p.stderr,
           "(e) a file of the right size with a copied proof is not taken as complete", p.stderr)
    p = run(["export", "-q", "--force", exp, out])
    tap.ok(p.returncode == 0 and readall(shard) == good, "(e) --force writes it again", p.stderr)

    # SIGKILL mid-export, then resume
    gen = os.path.join(TOP, "gen")
    g = subprocess.run([PY, GEN, "--out", gen, "--name", "mid", "--stage", "2", "--ws", "2",
                        "--hidden", "384", "--intermediate", "1536", "--layers", "4",
                        "--vocab", "8000", "--no-zero-to-fp32"], capture_output=True, text=True)
    if not tap.ok(g.returncode == 0, "(e) a 30 MB checkpoint is generated for the resume test",
                  g.stderr[-800:]):
        raise SystemExit(tap.done())
    mid = os.path.join(gen, "mid")
    args = ["--dtype", "bf16", "--max-shard-size", "3MB", "--threads", "1"]
    killed = None
    for attempt in range(4):
        res = os.path.join(TOP, "resume-%d" % attempt)
        proc = subprocess.Popen([ZEROFS, "export", "-q", mid, res] + args,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sealed = []
        while proc.poll() is None and len(sealed) < 3:
            try:
                sealed = [f for f in os.listdir(res) if f.startswith(".")
                          and "user.zerofs.export" in os.listxattr(os.path.join(res, f))]
            except OSError:
                sealed = []
            time.sleep(0.001)
        if proc.poll() is None:
            proc.send_signal(signal.SIGSTOP)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = res
            break
        proc.wait()
    if not tap.ok(killed is not None, "(e) an export is SIGKILLed with 3 files complete "
                  "(under temporary names) and others partial"):
        raise SystemExit(tap.done())
    before = sorted(os.listdir(killed))
    total = sum(os.path.getsize(os.path.join(killed, f)) for f in before)
    t0 = time.monotonic()
    p = run(["export", mid, killed] + args)
    t_resume = time.monotonic() - t0
    fresh = os.path.join(TOP, "fresh")
    t0 = time.monotonic()
    q = run(["export", "-q", mid, fresh] + args)
    t_fresh = time.monotonic() - t0
    names = sorted(os.listdir(fresh)) if q.returncode == 0 else []
    same = p.returncode == 0 and names and sorted(os.listdir(killed)) == names and all(
        readall(os.path.join(killed, n)) == readall(os.path.join(fresh, n)) for n in names)
    kept = [l for l in p.stderr.splitlines() if l.startswith("zerofs: kept ")]
    kept_bytes = sum(os.path.getsize(os.path.join(killed, n.lstrip(".").split(".zerofs-tmp-")[0]))
                     for n in sealed) if same else 0
    out_total = sum(os.path.getsize(os.path.join(fresh, n)) for n in names)
    tap.ok(same and len(kept) == 1 and kept[0].startswith("zerofs: kept 3 files (")
           and kept[0].endswith(") already complete from an earlier export"),
           "(e) the same export after the SIGKILL keeps the 3 complete files (%d of %d bytes), "
           "redoes the rest (%d partial files, %d bytes on disk, removed), and the folder is "
           "byte for byte a fresh export's (resume %.2f s, fresh %.2f s)"
           % (kept_bytes, out_total, len(before) - 3, total, t_resume, t_fresh),
           (p.returncode, p.stderr, before))
finally:
    for mp in [os.path.join(TOP, x) for x in ("mnt-a", "mnt-b", "mnt-c")]:
        if is_mounted(mp):
            unmount(mp)
    if USER:
        sh("userdel", USER.pw_name)
    shutil.rmtree(TOP, ignore_errors=True)
tap.ok(USER is None or sh("id", USER.pw_name).returncode != 0, "the test user is removed")
tap.done()
