"""Mounting zerofs in tests, always cleaned up.

    with mounted(ckpt, "--dtype", "bf16") as m:
        m.path      the mount point
        m.proc      the CompletedProcess of `zerofs mount` (stdout/stderr)
        ...

mounted() makes a fresh mount point under $TMPROOT, runs `zerofs mount`,
waits until the mount shows in /proc/mounts, and on leaving (also on an
exception) runs `zerofs umount`, falling back to `umount -l`, and removes the
mount point. A failing `zerofs mount` raises MountFailed (after making sure
nothing was left mounted).
"""
import atexit
import contextlib
import os
import signal
import subprocess
import tempfile
import time

from zftest import ZEROFS, TMPROOT

MOUNT_WAIT = float(os.environ.get("ZEROFS_MOUNT_WAIT", "20"))

# Mount points this process mounted and has not unmounted yet: unmounted at
# exit, and SIGTERM/SIGHUP turn into SystemExit so that finally blocks run.
ACTIVE = set()


def _cleanup():
    for mp in list(ACTIVE):
        unmount(mp)
        ACTIVE.discard(mp)


def _on_signal(sig, frame):
    raise SystemExit(128 + sig)


atexit.register(_cleanup)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    try:
        if signal.getsignal(_sig) in (signal.SIG_DFL, None):
            signal.signal(_sig, _on_signal)
    except (ValueError, OSError):
        pass


def run_zerofs(args, retries=5, **kw):
    """subprocess.run of zerofs; retries when the binary cannot be executed
    for a moment (it is being relinked by a concurrent `make`)."""
    for i in range(retries):
        try:
            return subprocess.run([ZEROFS] + list(args), capture_output=True, text=True, **kw)
        except OSError:
            if i == retries - 1:
                raise
            time.sleep(1)


class MountFailed(Exception):
    def __init__(self, proc):
        self.proc = proc
        super().__init__("zerofs mount exited %d: %s" % (proc.returncode, proc.stderr.strip()))


def _unescape(s):
    # /proc/mounts escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mounts():
    """[(source, mountpoint, fstype, options)] from /proc/mounts."""
    out = []
    with open("/proc/mounts") as f:
        for line in f:
            p = line.split()
            if len(p) >= 4:
                out.append((_unescape(p[0]), _unescape(p[1]), p[2], p[3]))
    return out


def mount_entry(path):
    path = os.path.realpath(path)
    for e in mounts():
        if e[1] == path:
            return e
    return None


def is_mounted(path):
    return mount_entry(path) is not None


def zerofs_mounts():
    return [e for e in mounts() if e[2].startswith("fuse") and "zerofs" in (e[0] + e[2])]


def wait_mounted(path, timeout=MOUNT_WAIT, proc=None):
    """True once path is a mount point in /proc/mounts (False on timeout or
    when proc, a Popen, exits first)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if is_mounted(path):
            return True
        if proc is not None and proc.poll() is not None:
            return is_mounted(path)
        time.sleep(0.02)
    return is_mounted(path)


def unmount(path):
    """Unmounts path if mounted: `zerofs umount`, then `umount -l`. Returns
    (ok, how)."""
    if not is_mounted(path):
        return True, "not mounted"
    try:
        p = run_zerofs(["umount", path], timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        p = subprocess.CompletedProcess([], -1, "", str(e))
    end = time.monotonic() + 5
    while is_mounted(path) and time.monotonic() < end:
        time.sleep(0.02)
    if not is_mounted(path):
        return True, "zerofs umount"
    for cmd in (["umount", "-l", path], ["fusermount3", "-u", "-z", path]):
        if not is_mounted(path):
            break
        try:
            subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return (not is_mounted(path)), "umount -l (zerofs umount: %d %s)" % (p.returncode, p.stderr.strip())


def mountpoint(prefix="mnt"):
    return tempfile.mkdtemp(prefix="zf-%s-" % prefix, dir=TMPROOT)


class Mount:
    def __init__(self, path, proc, ckpt, args):
        self.path = path
        self.proc = proc
        self.ckpt = ckpt
        self.args = args

    def file(self, name):
        return os.path.join(self.path, name)


@contextlib.contextmanager
def mounted(ckpt, *args, mnt=None, keep_dir=False):
    own = mnt is None
    if own:
        mnt = mountpoint()
    args = [str(a) for a in args]
    ACTIVE.add(mnt)
    try:
        try:
            proc = run_zerofs(["mount", ckpt, mnt] + args, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise MountFailed(subprocess.CompletedProcess([], -1, "", "cannot run zerofs mount: %s" % e))
        if proc.returncode != 0:
            raise MountFailed(proc)
        if not wait_mounted(mnt):
            raise MountFailed(subprocess.CompletedProcess(
                proc.args, 0, proc.stdout,
                proc.stderr + "\n(exit 0 but %s never showed in /proc/mounts)" % mnt))
        yield Mount(mnt, proc, ckpt, args)
    finally:
        ok, how = unmount(mnt)
        if ok:
            ACTIVE.discard(mnt)
        else:
            print("# WARNING: could not unmount %s (%s)" % (mnt, how))
        if own and not keep_dir and ok:
            try:
                os.rmdir(mnt)
            except OSError:
                pass
