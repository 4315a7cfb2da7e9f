"""A zerofs mount behaves as FUSE file systems do (sshfs, rclone mount):

- df/findmnt/mount see type fuse.zerofs and the checkpoint's absolute path
  as the source; -o fsname= is honoured;
- -o uid=,gid=,umask= set owner and take bits off the served modes;
- the root's user.zerofs.* attributes and `zerofs status` tell the
  checkpoint, tag, dtype, pid and log of a live mount;
- --log FILE (and, with no syslog listening, ~/.local/state/zerofs/) gets
  one line per EIO naming the file and the reason;
- text from the checkpoint (a tag folder's name) is printed escaped;
- `zerofs umount` refuses a tmpfs, /proc and a plain folder (exits 6, 6,
  5), and a mount point that is a regular file is refused;
- installed (make install DESTDIR=...) in a private mount namespace:
  `mount -t fuse.zerofs`, `mount -t zerofs`, an fstab line (mount -T) and
  `mount.fuse3 'zerofs#CKPT' MNT` mount, util-linux umount unmounts, and
  the bash completion loads and completes commands and options.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import ROOT, ZEROFS, Tap, TMPROOT, checkpoints, run  # noqa: E402
from zfmount import mounted, MountFailed, is_mounted, mounts, mountpoint, unmount  # noqa: E402


def copy_ckpt(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    for dp, _, fns in os.walk(dst):
        os.chmod(dp, 0o755)
        for f in fns:
            os.chmod(os.path.join(dp, f), 0o644)
    return dst


def inside(ckpt, work):
    """The namespace half: returns [(ok, what, detail)]."""
    res = []

    def ok(cond, what, detail=None):
        res.append((bool(cond), what, str(detail)[-2000:] if detail is not None else None))
        return cond

    inst = os.path.join(work, "inst")
    p = subprocess.run(["make", "-s", "install", "DESTDIR=" + inst, "prefix=/usr",
                        "SANITIZE=" + os.environ.get("SANITIZE", "")],
                       cwd=ROOT, capture_output=True, text=True)
    want = ["usr/bin/zerofs", "usr/sbin/mount.zerofs", "usr/sbin/mount.fuse.zerofs",
            "usr/share/man/man1/zerofs.1", "usr/share/bash-completion/completions/zerofs"]
    ok(p.returncode == 0 and all(os.path.lexists(os.path.join(inst, w)) for w in want),
       "make install puts zerofs, mount.zerofs, mount.fuse.zerofs, the man page and "
       "the completion in place", p.stderr)
    if os.readlink(os.path.join(inst, "usr/sbin/mount.zerofs")) != "../bin/zerofs":
        ok(False, "mount.zerofs is a relative link to zerofs")
    # This namespace's /usr/bin and /usr/sbin show the installed files.
    for d in ("usr/bin", "usr/sbin"):
        p = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            "lowerdir=%s:/%s" % (os.path.join(inst, d), d), "/" + d],
                           capture_output=True, text=True)
        if not ok(p.returncode == 0, "overlay the installed /%s (private namespace)" % d, p.stderr):
            return res

    def try_mount(what, cmd, check_dtype, mnt=None):
        mnt = mnt or tempfile.mkdtemp(prefix="ns-", dir=work)
        p = subprocess.run([a.replace("MNT", mnt) for a in cmd], capture_output=True, text=True,
                           timeout=120)
        ent = [e for e in mounts() if e[1] == mnt]
        good = (p.returncode == 0 and ent and ent[0][2] == "fuse.zerofs"
                and ent[0][0] == os.path.realpath(ckpt))
        if good:
            try:
                dt = os.getxattr(mnt, "user.zerofs.dtype").decode()
                names = os.listdir(mnt)
            except OSError as e:
                dt, names = str(e), []
            good = dt == check_dtype and "model.safetensors" in names
        ok(good, what, (p.returncode, p.stdout, p.stderr, ent))
        u = subprocess.run(["umount", mnt], capture_output=True, text=True, timeout=60)
        ok(u.returncode == 0 and not is_mounted(mnt), what + ": util-linux umount unmounts it",
           u.stderr)
        if is_mounted(mnt):
            subprocess.run(["umount", "-l", mnt])

    try_mount("mount -t fuse.zerofs CKPT MNT -o dtype=bf16,nofail,x-systemd.automount",
              ["mount", "-t", "fuse.zerofs", ckpt, "MNT", "-o", "dtype=bf16,nofail,x-systemd.automount"],
              "bfloat16")
    try_mount("mount -t zerofs CKPT MNT -o dtype=fp16", ["mount", "-t", "zerofs", ckpt, "MNT", "-o",
                                                          "dtype=fp16"], "float16")
    try_mount("mount.fuse3 'zerofs#CKPT' MNT -o dtype=bf16",
              ["mount.fuse3", "zerofs#" + ckpt, "MNT", "-o", "dtype=bf16"], "bfloat16")
    fstab = os.path.join(work, "fstab")
    mnt = tempfile.mkdtemp(prefix="ns-fstab-", dir=work)
    with open(fstab, "w") as f:
        f.write("%s %s fuse.zerofs ro,allow_other,dtype=fp32,nofail 0 0\n" % (ckpt, mnt))
    try_mount("an fstab line of type fuse.zerofs (mount -T FSTAB MNT)",
              ["mount", "-T", fstab, mnt], "float32", mnt)

    # Bash completion, as bash-completion would load it.
    comp = os.path.join(inst, "usr/share/bash-completion/completions/zerofs")
    script = (f"source {comp} || exit 1\n"
              "COMP_WORDS=(zerofs mo); COMP_CWORD=1; _zerofs; echo \"1:${COMPREPLY[*]}\"\n"
              "COMP_WORDS=(zerofs inspect CKPT --j); COMP_CWORD=3; _zerofs; echo \"2:${COMPREPLY[*]}\"\n"
              "COMP_WORDS=(zerofs mount CKPT MNT --dtype b); COMP_CWORD=5; _zerofs; echo \"3:${COMPREPLY[*]}\"\n"
              f"COMP_WORDS=(zerofs inspect --tag global_step3 {ckpt} model.layers.0.self_attn.q_p); "
              "COMP_CWORD=5; _zerofs; echo \"4:${COMPREPLY[*]}\"\n"
              "complete -p zerofs\n")
    p = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True)
    ok(p.returncode == 0 and "1:mount" in p.stdout and "2:--json" in p.stdout
       and "3:bf16" in p.stdout and "complete -F _zerofs zerofs" in p.stdout
       and "4:model.layers.0.self_attn.q_proj.weight model.layers.0.self_attn.q_proj.bias" in p.stdout,
       "the installed bash completion loads and completes commands, options, --dtype and "
       "inspect's tensor names",
       p.stdout + p.stderr)
    return res


if len(sys.argv) == 4 and sys.argv[1] == "--inside":
    print(json.dumps(inside(sys.argv[2], sys.argv[3])))
    sys.exit(0)

tap = Tap()
WORK = tempfile.mkdtemp(prefix="t250-", dir=TMPROOT)
# Served modes follow the folders above the checkpoint too (zerofs(1),
# SECURITY): the uid=/gid= mount's checkpoint lies where all may search.
PUB = tempfile.mkdtemp(prefix="zf-t250-", dir="/tmp")
os.chmod(PUB, 0o755)
os.environ["XDG_STATE_HOME"] = os.path.join(WORK, "state")
try:
    ck = checkpoints()
    src = next((d for n, d, _ in ck if n == "z3_ws2_fp32"), ck[0][1] if ck else None)
    ckpt = copy_ckpt(src, os.path.join(PUB, "run", "ckpt"))

    # fsname, type, uid/gid/umask, xattrs, status: mounted from a relative path.
    mnt = mountpoint("conv")
    p = subprocess.run([ZEROFS, "mount", "ckpt", mnt, "-o", "uid=1234,gid=5678,umask=027",
                        "--dtype", "bf16"], cwd=os.path.join(PUB, "run"),
                       capture_output=True, text=True)
    try:
        tap.ok(p.returncode == 0, "mount with -o uid=,gid=,umask= from a relative path", p.stderr)
        fm = subprocess.run(["findmnt", "-n", "-t", "fuse.zerofs", "-o", "SOURCE,FSTYPE", mnt],
                            capture_output=True, text=True)
        tap.ok(fm.stdout.split() == [os.path.realpath(ckpt), "fuse.zerofs"],
               "findmnt -t fuse.zerofs shows the checkpoint's absolute path", fm.stdout + fm.stderr)
        df = subprocess.run(["df", "--output=source", mnt], capture_output=True, text=True)
        tap.ok(os.path.realpath(ckpt) in df.stdout, "df names the checkpoint", df.stdout)
        st_root = os.stat(mnt)
        st_file = os.stat(os.path.join(mnt, "model.safetensors"))
        tap.ok((st_file.st_uid, st_file.st_gid, stat.S_IMODE(st_file.st_mode)) == (1234, 5678, 0o440)
               and stat.S_IMODE(st_root.st_mode) == 0o550,
               "uid=1234,gid=5678,umask=027: files 0440 and the folder 0550, owned 1234:5678",
               (st_file.st_uid, st_file.st_gid, oct(st_file.st_mode), oct(st_root.st_mode)))
        x = {a: os.getxattr(mnt, a).decode() for a in os.listxattr(mnt)}
        tap.ok(x.get("user.zerofs.checkpoint") == os.path.realpath(ckpt)
               and x.get("user.zerofs.dtype") == "bfloat16" and x.get("user.zerofs.tag")
               and x.get("user.zerofs.pid", "").isdigit()
               and x.get("user.zerofs.log", "").startswith(os.environ["XDG_STATE_HOME"]),
               "the root's user.zerofs.* attributes: checkpoint, tag, dtype, pid, log", x)
        tap.ok(f"logging to {os.environ['XDG_STATE_HOME']}/zerofs/zerofs.log" in p.stderr
               or "logging to syslog" in p.stderr, "mount says where it logs", p.stderr)
        s = run(["status", mnt, "--json"])
        try:
            js = json.loads(s.stdout)
        except ValueError:
            js = []
        tap.ok(s.returncode == 0 and len(js) == 1 and js[0]["mountpoint"] == mnt
               and js[0]["checkpoint"] == os.path.realpath(ckpt) and js[0]["dtype"] == "bfloat16"
               and js[0]["responding"], "zerofs status MNT --json", s.stdout + s.stderr)
        s = run(["status"])
        tap.ok(s.returncode == 0 and f"\n  dtype        bfloat16" in "\n" + s.stdout
               and mnt in s.stdout, "zerofs status lists the mount", s.stdout)
        # A change to a rank file: the first read that touches it fails and
        # latches the mount stale; from then on every open fails too, each
        # logged with the reason.
        import errno as _errno
        rank = sorted(f for r, _, fs in os.walk(ckpt) for f in fs if f.endswith("optim_states.pt"))[0]
        rpath = next(os.path.join(r, rank) for r, _, fs in os.walk(ckpt) if rank in fs)
        t = os.stat(rpath).st_mtime + 100
        os.utime(rpath, (t, t))
        try:
            with open(os.path.join(mnt, "model.safetensors"), "rb") as f:
                f.read()
            got = "read"
        except OSError as e:
            got = e.errno
        tap.ok(got == _errno.EIO, "after a rank file changes, a read of it fails with EIO", got)
        try:
            open(os.path.join(mnt, "model.safetensors"), "rb").close()
            got = "opened"
        except OSError as e:
            got = e.errno
        tap.ok(got == _errno.EIO, "and then every open fails with EIO", got)
        time.sleep(0.2)
        log = x.get("user.zerofs.log", "")
        text = open(log).read() if os.path.isfile(log) else ""
        tap.ok("open of 'model.safetensors' failed with EIO: " in text and rank in text,
               "the default log (no syslog here) names the file and the reason of the EIO",
               text[-1500:])
    finally:
        unmount(mnt)

    # --log FILE, and -o fsname=.
    logf = os.path.join(WORK, "my.log")
    try:
        with mounted(ckpt, "--log", logf, "-o", "fsname=my-model") as m:
            ent = [e for e in mounts() if e[1] == m.path]
            tap.ok(ent and ent[0][0] == "my-model", "-o fsname= is honoured", ent)
            tap.ok(os.getxattr(m.path, "user.zerofs.log").decode() == logf
                   and f"logging to {logf}" in m.proc.stderr, "--log FILE: the mount logs there",
                   m.proc.stderr)
    except MountFailed as e:
        tap.ok(False, "mount --log FILE -o fsname=", e)
    # The serving process logs its last line after the unmount is seen.
    for _ in range(100):
        text = open(logf).read() if os.path.exists(logf) else ""
        if "stopped serving '" in text:
            break
        time.sleep(0.05)
    tap.ok("serving '" in text and "stopped serving '" in text, "--log FILE gets the mount's lines",
           text)

    # Text from the checkpoint is escaped: a tag folder named with ESC,
    # given directly (a `latest` holding control characters is refused
    # without its text being shown, below).
    esc_ck = copy_ckpt(src, os.path.join(WORK, "esc"))
    tag = [d for d in os.listdir(esc_ck) if os.path.isdir(os.path.join(esc_ck, d))][0]
    evil = "global_step\x1b]0;owned\x07\x1b[2J"
    os.rename(os.path.join(esc_ck, tag), os.path.join(esc_ck, evil))
    for cmd in (["inspect", os.path.join(esc_ck, evil)], ["verify", os.path.join(esc_ck, evil)]):
        p = run(cmd)
        out = p.stdout + p.stderr
        tap.ok(p.returncode == 0 and "\x1b" not in out and "\x07" not in out
               and "global_step\\x1b]0;owned\\x07\\x1b[2J" in out,
               f"zerofs {cmd[0]}: a tag folder named with escape sequences is printed escaped",
               repr(out[-600:]))
    with open(os.path.join(esc_ck, "latest"), "w") as f:
        f.write("nothing\x1b[31mhere")
    p = run(["inspect", esc_ck])
    tap.ok(p.returncode == 3 and "\x1b" not in p.stderr and "nothing" not in p.stderr
           and "control characters" in p.stderr,
           "a 'latest' holding control characters: refused, its text not shown", repr(p.stderr))

    # umount refuses what is not zerofs'; a file is no mount point.
    plain = mountpoint("plain")
    p = run(["umount", plain])
    tap.ok(p.returncode == 5 and "not mounted" in p.stderr, "umount of a plain folder: exit 5, 'not mounted'",
           (p.returncode, p.stderr))
    p = run(["umount", "/proc"])
    tap.ok(p.returncode == 6 and "not a zerofs mount: proc" in p.stderr and is_mounted("/proc"),
           "umount /proc: exit 6, 'not a zerofs mount: proc', nothing detached", (p.returncode, p.stderr))
    tm = mountpoint("tmpfs")
    if subprocess.run(["mount", "-t", "tmpfs", "none", tm]).returncode == 0:
        p = run(["umount", tm])
        tap.ok(p.returncode == 6 and "not a zerofs mount: tmpfs" in p.stderr and is_mounted(tm),
               "umount of a tmpfs: exit 6, 'not a zerofs mount: tmpfs', still mounted",
               (p.returncode, p.stderr))
        subprocess.run(["umount", tm])
    else:
        tap.ok(False, "mount a tmpfs to try umount on")
    os.rmdir(tm)
    os.rmdir(plain)
    a_file = os.path.join(WORK, "a-file")
    open(a_file, "w").close()
    p = run(["mount", ckpt, a_file])
    tap.ok(p.returncode == 2 and "not a folder" in p.stderr and not is_mounted(a_file),
           "a regular file as mount point: exit 2, 'not a folder', nothing mounted", (p.returncode, p.stderr))

    # The installed program through mount(8), in a private mount namespace.
    if shutil.which("unshare"):
        p = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                            os.path.abspath(__file__), "--inside", ckpt, WORK],
                           capture_output=True, text=True, timeout=600)
        try:
            results = json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            results = [(False, "the namespace half ran", p.stdout + p.stderr)]
        for cond, what, detail in results:
            tap.ok(cond, what, detail)
    else:
        tap.ok(False, "unshare(1) is installed (util-linux)")
finally:
    for e in mounts():
        if e[1].startswith(WORK + "/") or (e[2] == "fuse.zerofs" and e[0].startswith(WORK + "/")):
            unmount(e[1])
    shutil.rmtree(WORK, ignore_errors=True)
    shutil.rmtree(PUB, ignore_errors=True)
tap.done()
