#!/usr/bin/python3
"""A 1,024-rank ZeRO-3 checkpoint (2,048 rank files, frozen and tied params)
under the open-file limit most shells start with, `ulimit -n 1024` (soft and
hard), and under a much lower one.

* inspect and mount work under 1,024 descriptors: every tensor's bytes,
  followed through `inspect --json --extents`, hash to the generator's
  reference; the mount serves model.safetensors byte for byte as a file
  built without zerofs; the daemon never holds more descriptors than the
  limit and stays under 32 MB of peak RSS;
* under `ulimit -n 20` inspect still works (a few descriptors suffice), a
  mount with the default 8 serving threads is refused with one message
  saying why and what to do, and a mount with --threads 2 serves every
  byte right through the few descriptors it has.

The checkpoint is generated once per test run (about 8 s) and kept under
$TMPROOT for the run."""
import os
import resource
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from zftest import Tap, ZEROFS, TMPROOT  # noqa: E402
from zfmount import is_mounted, wait_mounted, unmount  # noqa: E402
from zfexpect import Expect, ST_DTYPE, tbytes  # noqa: E402
import st_ref  # noqa: E402
import zfinspect  # noqa: E402

GEN = os.path.join(HERE, "gen", "make_ckpt.py")
PY = os.environ.get("PYTHON", "/usr/bin/python3")
WS = 1024

tap = Tap()
WORK = tempfile.mkdtemp(prefix="t260-", dir=TMPROOT)


def limit(n):
    """preexec_fn: the open-file limit, soft and hard, as `ulimit -n n`."""
    def fn():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return fn


def generate():
    base = os.path.join(TMPROOT, "zftest-scale")
    os.makedirs(base, exist_ok=True)
    name = "z3_ws%d" % WS
    ref = os.path.join(base, name + ".ref.json")
    if not os.path.exists(ref):
        p = subprocess.run([PY, GEN, "--out", base, "--name", name, "--stage", "3",
                            "--ws", str(WS), "--params", "40", "--frozen", "--tied"],
                           capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError("make_ckpt: " + p.stderr[-2000:])
    import json
    with open(ref) as f:
        return os.path.join(base, name), json.load(f), os.path.join(base, name + ".ref.pt")


def run(args, nofile):
    return subprocess.run([ZEROFS] + args, capture_output=True, text=True,
                          preexec_fn=limit(nofile), timeout=300)


def expected_file(ex):
    ts = []
    for n in ex.names:
        t = ex.tensor(n, "fp32")
        ts.append((n, ST_DTYPE[ex.served_dtype(n, "fp32")], ex.shape(n), tbytes(t)))
    return st_ref.file_bytes(ts)


def daemon_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def serve(ckpt, want, nofile, label, *args):
    """Mounts in the foreground under the limit; reads model.safetensors
    while a thread watches the daemon's descriptors."""
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=WORK)
    log = open(os.path.join(WORK, "mount-%d.log" % nofile), "w+")
    proc = subprocess.Popen([ZEROFS, "mount", "-f", ckpt, mnt] + list(args),
                            stdout=log, stderr=log, preexec_fn=limit(nofile))
    try:
        if not tap.ok(wait_mounted(mnt, proc=proc), "%s: mounts" % label):
            log.seek(0)
            print("# " + log.read()[-800:])
            return
        peak = [0]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], daemon_fds(proc.pid))
                stop.wait(0.01)
        w = threading.Thread(target=watch)
        w.start()
        with open(os.path.join(mnt, "model.safetensors"), "rb") as f:
            got = f.read()
        stop.set()
        w.join()
        tap.ok(got == want, "%s: model.safetensors (%d bytes) equals the file built without zerofs"
               % (label, len(want)), "got %d bytes" % len(got))
        tap.ok(0 < peak[0] <= nofile, "%s: the daemon held at most %d descriptors (peak %d)"
               % (label, nofile, peak[0]))
        kb = hwm_kb(proc.pid)
        tap.ok(0 < kb < 32 * 1024, "%s: daemon peak RSS %d kB < 32 MB" % (label, kb))
    finally:
        if is_mounted(mnt):
            unmount(mnt)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
        tap.ok(rc == 0, "%s: the daemon exits 0 after unmount" % label, "rc %s" % rc)
        log.close()


def main():
    try:
        ckpt, ref, ref_pt = generate()
    except Exception as e:  # noqa: BLE001
        tap.ok(False, "generate a %d-rank checkpoint" % WS, e)
        tap.done()

    # inspect --json --extents under ulimit -n 1024: every tensor's bytes
    orig = zfinspect.inspect_json

    def limited_inspect(ck, *extra):
        p = run(["inspect", "--json", "--extents", ck] + list(extra), 1024)
        if p.returncode:
            raise RuntimeError("zerofs inspect failed (%d): %s" % (p.returncode, p.stderr))
        import json
        return json.loads(p.stdout)
    zfinspect.inspect_json = limited_inspect
    info = zfinspect.check(tap, "ulimit -n 1024, %d ranks" % WS, ckpt, ref)
    zfinspect.inspect_json = orig
    if info:
        tap.ok(len(info["files"]) == 2 * WS, "%d rank files listed" % (2 * WS))

    ex = Expect(ckpt, ref, ref_pt)
    want = expected_file(ex)
    serve(ckpt, want, 1024, "ulimit -n 1024")

    # far fewer descriptors than files
    p = run(["inspect", ckpt], 20)
    tap.ok(p.returncode == 0 and "\nranks        %d\n" % WS in p.stdout,
           "ulimit -n 20: inspect works", p.stderr[-500:])
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=WORK)
    p = run(["mount", ckpt, mnt], 20)
    tap.ok(p.returncode == 4 and not is_mounted(mnt), "ulimit -n 20: mount with 8 threads exits 4",
           "rc %d" % p.returncode)
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    tap.ok(len(lines) == 1 and lines[0].startswith("zerofs: ") and
           "fewer than the 8 serving threads need: raise the limit or pass --threads" in lines[0],
           "ulimit -n 20: one message saying why and what to do", p.stderr)
    if is_mounted(mnt):
        unmount(mnt)
    serve(ckpt, want, 20, "ulimit -n 20, --threads 2", "--threads", "2")
    tap.done()


if __name__ == "__main__":
    main()
