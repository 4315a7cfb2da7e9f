#!/usr/bin/python3
"""Faults while mounted (every mount runs `zerofs mount -f` so the daemon's
stderr and exit status are seen).

(a) The checkpoint changes under a live mount: after a shard was read in
    full, (i) an optim file is truncated, (ii) one is replaced by rename with
    other content, (iii) one is deleted, (iv) one is touched (same bytes, new
    mtime). Then opening and reading a shard not yet read, and the read one
    after dropping its cache, fail with EIO (every read checks the files it
    reads; the first change seen makes every later open fail too); a read
    through an fd opened before the change returns EIO or the original bytes,
    never anything else; the daemon logs one line naming the changed file.
(b) I/O errors are passed up, never zero-filled: a source truncated into
    tensor data before the first read of that tensor (open before the
    truncation, so the open check passes and the read path must notice) ->
    EIO; and truncated before the open -> EIO at open.
(c) A bounded stress test (~20 s): threads and processes, sequential,
    pread and mmap readers with frequent cache drops, opens and closes,
    against fp32 and bf16 mounts of a ZeRO-3 ws 8 checkpoint with several
    shards; every byte compared with files built independently (NAME.ref.pt
    via tests/lib/zfexpect.py, tests/lib/st_ref.py writer, huggingface split);
    the daemons' fd counts and RSS steady between the first and last third;
    clean unmount, daemon exit 0. Then a lazy unmount while readers are
    active: the daemon exits 0 once they are gone, readers saw errors or the
    right bytes, never wrong ones.

Expected bytes never come from zerofs.
"""
import errno
import json
import mmap
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from zftest import Tap, ZEROFS, TMPROOT  # noqa: E402
from zfmount import is_mounted, wait_mounted, unmount, mounts  # noqa: E402
from zfexpect import Expect, ST_DTYPE, tbytes  # noqa: E402
import st_ref  # noqa: E402
import st_validate as sv  # noqa: E402

GEN = os.path.join(HERE, "gen", "make_ckpt.py")
PY = os.environ.get("PYTHON", "/usr/bin/python3")
STRESS_S = float(os.environ.get("ZEROFS_STRESS_SECONDS", "20"))
SEED = int(os.environ.get("ZEROFS_SEED", str(int(time.time()) % 100000)))
print("# seed %d (ZEROFS_SEED=%d replays)" % (SEED, SEED))

tap = Tap()
WORK = tempfile.mkdtemp(prefix="t410-", dir=TMPROOT)
SAN = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "ThreadSanitizer",
       "Segmentation fault", "stack-overflow")


def generate(name, *args):
    out = os.path.join(WORK, "gen")
    os.makedirs(out, exist_ok=True)
    p = subprocess.run([PY, GEN, "--out", out, "--name", name] + list(args),
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError("make_ckpt %s: %s" % (name, p.stderr[-2000:]))
    d = os.path.join(out, name)
    with open(d + ".ref.json") as f:
        ref = json.load(f)
    return d, ref


def expected_files(ex, dt, max_shard=None):
    """{file name: bytes} the mount must serve (safetensors and index),
    built without zerofs (same recipe as t210)."""
    ts = []
    for n in ex.names:
        t = ex.tensor(n, dt)
        ts.append((n, ST_DTYPE[ex.served_dtype(n, dt)], ex.shape(n), tbytes(t)))
    if max_shard is None:
        return {"model.safetensors": st_ref.file_bytes(ts)}
    split = sv.hf_split([(n, len(b)) for n, _, _, b in ts], max_shard)
    if len(split) == 1:
        return {"model.safetensors": st_ref.file_bytes(ts)}
    byname = {t[0]: t for t in ts}
    out, wm = {}, {}
    k = len(split)
    for i, names in enumerate(split):
        fn = "model-%05d-of-%05d.safetensors" % (i + 1, k)
        out[fn] = st_ref.file_bytes([byname[n] for n in names])
        for n in names:
            wm[n] = fn
    idx = {"metadata": {"total_size": sum(len(b) for *_, b in ts)}, "weight_map": wm}
    out["model.safetensors.index.json"] = (json.dumps(idx, indent=2, sort_keys=True) + "\n").encode()
    return out


def copy_ckpt(src):
    d = tempfile.mkdtemp(prefix="ck-", dir=WORK)
    dst = os.path.join(d, "ckpt")
    shutil.copytree(src, dst)
    return dst


def rank_file(ck, kind, rank):
    tag = open(os.path.join(ck, "latest")).read().strip()
    for n in sorted(os.listdir(os.path.join(ck, tag))):
        if n.endswith("_%s_states.pt" % kind) and "_rank_%d_" % rank in n:
            return os.path.join(ck, tag, n)
    raise KeyError((kind, rank))


class FgMount:
    """`zerofs mount -f CKPT MNT ARGS` in the background, stderr to a file."""

    def __init__(self, ckpt, *args):
        self.mnt = tempfile.mkdtemp(prefix="mnt-", dir=WORK)
        self.log = os.path.join(WORK, os.path.basename(self.mnt) + ".log")
        self.logf = open(self.log, "w")
        self.proc = subprocess.Popen([ZEROFS, "mount", ckpt, self.mnt, "-f"] + list(args),
                                     stdout=self.logf, stderr=self.logf)
        self.ok = wait_mounted(self.mnt, proc=self.proc)
        self.rc = None

    def stderr(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def file(self, n):
        return os.path.join(self.mnt, n)

    def umount(self, lazy=False, wait=10):
        """Unmounts (zerofs umount [-l]); returns the daemon's exit status
        (None if it did not exit within `wait` s)."""
        if is_mounted(self.mnt):
            subprocess.run([ZEROFS, "umount"] + (["-l"] if lazy else []) + [self.mnt],
                           capture_output=True)
        try:
            self.rc = self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.rc = None
        return self.rc

    def cleanup(self):
        if is_mounted(self.mnt):
            unmount(self.mnt)
        if self.proc.poll() is None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self.logf.close()


def read_all(path, drop=False):
    fd = os.open(path, os.O_RDONLY)
    try:
        if drop:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        out = bytearray()
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return bytes(out)
            out += b
    finally:
        os.close(fd)


def open_errno(path):
    """errno of opening and reading path in full (after dropping its cache),
    or 0 and the bytes."""
    try:
        return 0, read_all(path, drop=True)
    except OSError as e:
        return e.errno, None


def no_crash(m):
    s = m.stderr()
    return [x for x in SAN if x in s]


# ---------------------------------------------------------------- (a) + (b)

def live_change(label, src, exp, change, victim_desc):
    ck = copy_ckpt(src)
    m = FgMount(ck, "--max-shard-size", str(SMALL_SHARD))
    try:
        if not tap.ok(m.ok, "%s: mounted" % label, m.stderr()):
            return
        shards = sorted(n for n in exp if n.endswith(".safetensors"))
        first, second, third = shards[0], shards[1], shards[-1]
        b = read_all(m.file(first))
        tap.ok(b == exp[first], "%s: %s read in full before the change equals the reference"
               % (label, first))
        # an fd opened before the change, nothing read through it yet
        early = os.open(m.file(third), os.O_RDONLY)
        try:
            victim = change(ck)
            time.sleep(0.05)
            e2, _ = open_errno(m.file(second))
            tap.ok(e2 == errno.EIO, "%s: open of %s (never read) after %s fails with EIO"
                   % (label, second, victim_desc), "errno %s" % e2)
            e1, got = open_errno(m.file(first))
            tap.ok(e1 == errno.EIO, "%s: open of %s (read before; cache dropped) fails with EIO"
                   % (label, first), "errno %s" % e1)
            # the early fd: EIO or exactly the original bytes, never a mix
            os.posix_fadvise(early, 0, 0, os.POSIX_FADV_DONTNEED)
            out, err = bytearray(), None
            try:
                off = 0
                while True:
                    c = os.pread(early, 1 << 16, off)
                    if not c:
                        break
                    out += c
                    off += len(c)
            except OSError as e:
                err = e.errno
            good = exp[third][:len(out)] == bytes(out) and (err == errno.EIO or (
                err is None and len(out) == len(exp[third])))
            tap.ok(good, "%s: reads through an fd opened before the change give EIO or the "
                   "original bytes (got %d bytes, %s)" % (label, len(out),
                                                         "EIO" if err == errno.EIO else err),
                   "prefix equal: %s" % (exp[third][:len(out)] == bytes(out)))
        finally:
            os.close(early)
        time.sleep(0.1)
        log = m.stderr()
        lines = [l for l in log.splitlines() if os.path.basename(victim) in l]
        tap.ok(bool(lines) and all(l.startswith("zerofs: ") for l in lines),
               "%s: the daemon logs a line naming %s" % (label, os.path.basename(victim)), log[-1500:])
        rc = m.umount()
        tap.ok(rc == 0 and not no_crash(m), "%s: clean unmount, daemon exits 0" % label,
               "rc %s %s\n%s" % (rc, no_crash(m), m.stderr()[-800:]))
    finally:
        m.cleanup()


def c_truncate(ck):
    p = rank_file(ck, "optim", 1)
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) // 2)
    return p


def c_rename(ck):
    p = rank_file(ck, "optim", 1)
    other = rank_file(OTHER, "optim", 1)
    tmp = p + ".new"
    shutil.copy(other, tmp)
    os.rename(tmp, p)
    return p


def c_delete(ck):
    p = rank_file(ck, "optim", 0)
    os.unlink(p)
    return p


def c_touch(ck):
    # same bytes, new mtime: a change of identity as far as anyone can tell
    p = rank_file(ck, "optim", 1)
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    return p


def no_zero_fill(label, src, exp):
    """(b): truncation into tensor data before the first read."""
    # b1: open first (passes the check), truncate, then read
    ck = copy_ckpt(src)
    m = FgMount(ck, "--max-shard-size", str(SMALL_SHARD))
    try:
        if not tap.ok(m.ok, "%s: mounted" % label, m.stderr()):
            return
        shards = sorted(n for n in exp if n.endswith(".safetensors"))
        name = shards[len(shards) // 2]
        fd = os.open(m.file(name), os.O_RDONLY)
        try:
            for r in range(WS_SMALL):
                p = rank_file(ck, "optim", r)
                with open(p, "r+b") as f:
                    f.truncate(os.path.getsize(p) // 3)
            out, err = bytearray(), None
            try:
                off = 0
                while True:
                    c = os.pread(fd, 1 << 16, off)
                    if not c:
                        break
                    out += c
                    off += len(c)
            except OSError as e:
                err = e.errno
        finally:
            os.close(fd)
        # the header may come from memory; tensor data must not be served
        hlen = 8 + int.from_bytes(exp[name][:8], "little")
        prefix_ok = bytes(out) == exp[name][:len(out)]
        tap.ok(err == errno.EIO and prefix_ok and len(out) < len(exp[name]),
               "%s: sources truncated after open, before any read: read fails with EIO, "
               "nothing zero-filled (%d bytes before the error, header %d)" % (label, len(out), hlen),
               "errno %s, prefix equal %s, got %d of %d" % (err, prefix_ok, len(out), len(exp[name])))
        time.sleep(0.1)
        log = m.stderr()
        tap.ok("read of '%s'" % name in log or "optim_states" in log,
               "%s: the daemon logs the failed read" % label, log[-1200:])
        rc = m.umount()
        tap.ok(rc == 0 and not no_crash(m), "%s: clean unmount after read errors, exit 0" % label,
               "rc %s %s\n%s" % (rc, no_crash(m), m.stderr()[-800:]))
    finally:
        m.cleanup()

    # b2: truncate right after mounting, nothing opened yet, then open + read
    ck = copy_ckpt(src)
    m = FgMount(ck, "--max-shard-size", str(SMALL_SHARD))
    try:
        if not tap.ok(m.ok, "%s (truncate before open): mounted" % label, m.stderr()):
            return
        p = rank_file(ck, "optim", 0)
        with open(p, "r+b") as f:
            f.truncate(os.path.getsize(p) // 3)
        shards = sorted(n for n in exp if n.endswith(".safetensors"))
        bad = []
        for name in shards:
            e, got = open_errno(m.file(name))
            if e != errno.EIO:
                bad.append("%s: errno %s%s" % (name, e, ", bytes equal" if got == exp[name] else
                                               ", WRONG BYTES" if got is not None else ""))
        tap.ok(not bad, "%s: sources truncated before any open: every shard's open/read fails "
               "with EIO" % label, bad)
        rc = m.umount()
        tap.ok(rc == 0 and not no_crash(m), "%s (truncate before open): clean unmount, exit 0"
               % label, "rc %s\n%s" % (rc, m.stderr()[-800:]))
    finally:
        m.cleanup()


# ---------------------------------------------------------------- (c) stress

def worker_loop(mnt, exp, names, deadline, seed, counters, stop=None):
    """Random reads until deadline; counters: dict with 'ops', 'bytes',
    'mismatch', 'errors', 'detail' (list)."""
    rng = random.Random(seed)
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        name = rng.choice(names)
        want = exp[name]
        path = os.path.join(mnt, name)
        mode = rng.random()
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            counters["errors"] += 1
            counters["detail"].append("open %s: %s" % (name, e))
            if stop is not None:
                time.sleep(0.01)
            continue
        try:
            if rng.random() < 0.5:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            if mode < 0.3:  # sequential, odd chunk sizes
                off = 0
                chunk = rng.choice([4096, 65536, 1 << 20, 12345, 300001])
                while True:
                    b = os.read(fd, chunk)
                    if not b:
                        break
                    if b != want[off:off + len(b)]:
                        counters["mismatch"] += 1
                        counters["detail"].append("seq %s @%d+%d" % (name, off, len(b)))
                        break
                    off += len(b)
                    counters["bytes"] += len(b)
                if off != len(want):
                    counters["mismatch"] += 1
                    counters["detail"].append("seq %s ended at %d of %d" % (name, off, len(want)))
            elif mode < 0.7:  # pread at random places, some past EOF
                for _ in range(rng.randrange(5, 40)):
                    off = rng.randrange(0, len(want) + 100)
                    ln = int(2 ** rng.uniform(0, 20))
                    b = os.pread(fd, ln, off)
                    if b != want[off:off + ln]:
                        counters["mismatch"] += 1
                        counters["detail"].append("pread %s @%d+%d got %d" % (name, off, ln, len(b)))
                    counters["bytes"] += len(b)
            else:  # mmap slices
                with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
                    if rng.random() < 0.3:
                        mm.madvise(mmap.MADV_DONTNEED)
                    for _ in range(rng.randrange(5, 40)):
                        off = rng.randrange(0, len(want))
                        ln = int(2 ** rng.uniform(0, 19))
                        if mm[off:off + ln] != want[off:off + ln]:
                            counters["mismatch"] += 1
                            counters["detail"].append("mmap %s @%d+%d" % (name, off, ln))
                        counters["bytes"] += min(ln, len(want) - off)
            counters["ops"] += 1
        except OSError as e:
            counters["errors"] += 1
            counters["detail"].append("%s: %s" % (name, e))
        except (ValueError, BufferError) as e:  # mmap of a gone mount
            counters["errors"] += 1
            counters["detail"].append("%s: %r" % (name, e))
        finally:
            os.close(fd)


def proc_worker(mnt, exp, names, deadline, seed, q):
    c = {"ops": 0, "bytes": 0, "mismatch": 0, "errors": 0, "detail": []}
    try:
        worker_loop(mnt, exp, names, deadline, seed, c)
    except Exception as e:  # noqa: BLE001
        c["errors"] += 1
        c["detail"].append("worker died: %r" % e)
    c["detail"] = c["detail"][:10]
    q.put(c)


def daemon_stats(pid):
    try:
        nfd = len(os.listdir("/proc/%d/fd" % pid))
        rss = threads = 0
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        return nfd, rss, threads
    except OSError:
        return None


def stress(mounts_exp, seconds):
    """mounts_exp: [(label, FgMount, exp)]. Runs for `seconds`."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    # warm up: one full pass per file (all per-thread buffers get made)
    for label, m, exp in mounts_exp:
        for n in exp:
            read_all(m.file(n), drop=True)
    start = time.monotonic()
    deadline = start + seconds
    procs = []
    for i, (label, m, exp) in enumerate(mounts_exp):
        names = sorted(exp)
        for k in range(2):
            p = ctx.Process(target=proc_worker,
                            args=(m.mnt, exp, names, deadline, SEED * 100 + i * 10 + k, q))
            p.start()
            procs.append(p)
    threads, tcounters = [], []
    for i, (label, m, exp) in enumerate(mounts_exp):
        names = sorted(exp)
        for k in range(3):
            c = {"ops": 0, "bytes": 0, "mismatch": 0, "errors": 0, "detail": []}
            t = threading.Thread(target=worker_loop,
                                 args=(m.mnt, exp, names, deadline, SEED * 100 + 50 + i * 10 + k, c))
            t.start()
            threads.append(t)
            tcounters.append(c)
    samples = {label: [] for label, _, _ in mounts_exp}
    while time.monotonic() < deadline:
        now = time.monotonic() - start
        for label, m, _ in mounts_exp:
            s = daemon_stats(m.proc.pid)
            if s:
                samples[label].append((now, s[0], s[1], s[2]))
        time.sleep(0.25)
    for t in threads:
        t.join(30)
    results = list(tcounters)
    for p in procs:
        try:
            results.append(q.get(timeout=30))
        except Exception:  # noqa: BLE001
            results.append({"ops": 0, "bytes": 0, "mismatch": 0, "errors": 1,
                            "detail": ["a worker process sent nothing"]})
    for p in procs:
        p.join(10)
    return results, samples, [p.exitcode for p in procs]


def lazy_unmount_test(label, src, exp, args):
    m = FgMount(src, *args)
    try:
        if not tap.ok(m.ok, "%s: mounted" % label, m.stderr()):
            return
        names = sorted(exp)
        stop = threading.Event()
        deadline = time.monotonic() + 30
        cs, ts = [], []
        # readers holding fds across the unmount, plus ones reopening by path
        held = [(n, os.open(m.file(n), os.O_RDONLY)) for n in names]

        def held_reader(seed, c):
            rng = random.Random(seed)
            while not stop.is_set():
                n, fd = rng.choice(held)
                want = exp[n]
                off = rng.randrange(0, len(want))
                ln = rng.randrange(1, 1 << 18)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    b = os.pread(fd, ln, off)
                    c["ops"] += 1
                    if b != want[off:off + ln]:
                        c["mismatch"] += 1
                        c["detail"].append("held %s @%d+%d got %d" % (n, off, ln, len(b)))
                except OSError as e:
                    c["errors"] += 1
                    c["detail"].append("held %s: %s" % (n, e))
        for k in range(3):
            c = {"ops": 0, "bytes": 0, "mismatch": 0, "errors": 0, "detail": []}
            t = threading.Thread(target=worker_loop,
                                 args=(m.mnt, exp, names, deadline, SEED + 900 + k, c, stop))
            t.start()
            ts.append(t)
            cs.append(c)
        for k in range(2):
            c = {"ops": 0, "bytes": 0, "mismatch": 0, "errors": 0, "detail": []}
            t = threading.Thread(target=held_reader, args=(SEED + 950 + k, c))
            t.start()
            ts.append(t)
            cs.append(c)
        time.sleep(1.5)
        ops_before = sum(c["ops"] for c in cs)
        p = subprocess.run([ZEROFS, "umount", "-l", m.mnt], capture_output=True, text=True)
        tap.ok(p.returncode == 0 and not is_mounted(m.mnt),
               "%s: zerofs umount -l while %d readers are busy detaches at once" % (label, len(ts)),
               "exit %d: %s" % (p.returncode, p.stderr))
        time.sleep(1.5)
        still = m.proc.poll() is None
        stop.set()
        for t in ts:
            t.join(30)
        for _, fd in held:
            os.close(fd)
        try:
            rc = m.proc.wait(15)
        except subprocess.TimeoutExpired:
            rc = None
        mism = sum(c["mismatch"] for c in cs)
        ops = sum(c["ops"] for c in cs)
        errs = sum(c["errors"] for c in cs)
        detail = [d for c in cs for d in c["detail"] if "got" in d][:10]
        print("# %s: %d ops (%d before the unmount), %d errors, %d mismatches; daemon alive after "
              "detach while fds held: %s" % (label, ops, ops_before, errs, mism, still))
        tap.ok(ops_before > 0 and mism == 0,
               "%s: readers across the lazy unmount got errors or the right bytes (0 wrong of %d)"
               % (label, ops), detail)
        tap.ok(rc == 0 and not no_crash(m),
               "%s: after the last reader is gone the daemon exits 0, no crash" % label,
               "rc %s %s\n%s" % (rc, no_crash(m), m.stderr()[-1200:]))
    finally:
        m.cleanup()


def lazy_unmount_rounds(label, src, rounds, per_file):
    """Lazy unmounts while many descriptors are held, which leaves RELEASE
    requests queued when the last one is closed and the kernel shuts the
    connection down: a serving thread reading /dev/fuse at that moment gets
    ECONNABORTED, not ENODEV (fs/fuse/dev.c). That is the end of the mount
    like any other: the daemon must exit 0 every time, with no error line.
    Before zerofs said so, one round in 7 to 15 exited 4 here: a net for a
    regression, not a proof; fs/cmd_mount.c (dev_read) says why."""
    bad = []
    for k in range(rounds):
        m = FgMount(src, "--dtype", "fp32", "--max-shard-size", "1000000")
        try:
            if not m.ok:
                bad.append("round %d: not mounted: %s" % (k, m.stderr()[-400:]))
                continue
            names = sorted(os.listdir(m.mnt))
            held = [os.open(m.file(n), os.O_RDONLY) for n in names for _ in range(per_file)]
            stop = threading.Event()

            def reader(seed):
                rng = random.Random(seed)
                while not stop.is_set():
                    fd = rng.choice(held)
                    try:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        os.pread(fd, rng.randrange(1, 1 << 18), rng.randrange(0, 1 << 20))
                    except OSError:
                        pass
            ts = [threading.Thread(target=reader, args=(SEED + 970 + 10 * k + j,)) for j in range(3)]
            for t in ts:
                t.start()
            time.sleep(0.3)
            subprocess.run([ZEROFS, "umount", "-l", m.mnt], capture_output=True)
            time.sleep(0.2)
            stop.set()
            for t in ts:
                t.join(30)
            # closed from four threads at once, so that serving threads are
            # busy reading RELEASE requests when the last close ends the mount
            cl = [threading.Thread(target=lambda part: [os.close(fd) for fd in part],
                                   args=(held[j::4],)) for j in range(4)]
            for t in cl:
                t.start()
            for t in cl:
                t.join(30)
            try:
                rc = m.proc.wait(15)
            except subprocess.TimeoutExpired:
                rc = None
            err = m.stderr()
            if rc != 0 or no_crash(m) or "fuse: reading device" in err:
                bad.append("round %d: exit %s: %s" % (k, rc, err[-600:]))
        finally:
            m.cleanup()
    tap.ok(not bad, "%s: %d lazy unmounts with %d descriptors per file held: the daemon exits 0 every time, "
           "no error line" % (label, rounds, per_file), bad[:3])


# ---------------------------------------------------------------- main

WS_SMALL = 2
SMALL_SHARD = 60000
OTHER = None


def main():
    global OTHER
    t0 = time.monotonic()
    try:
        small, small_ref = generate("small", "--stage", "3", "--ws", str(WS_SMALL), "--seed", "3")
        other, _ = generate("other", "--stage", "3", "--ws", str(WS_SMALL), "--seed", "4")
        OTHER = other
        bigargs = ["--stage", "3", "--ws", "8", "--seed", "5", "--hidden", "96",
                   "--intermediate", "200", "--vocab", "3000", "--layers", "3", "--dtype", "bf16"]
        # the stress runs on a model without 0-element tensors (see (d))
        big, big_ref = generate("big", *(bigargs + ["--no-edge"]))
        edge, edge_ref = generate("edge", *bigargs)
    except Exception as e:  # noqa: BLE001
        tap.ok(False, "generate checkpoints", e)
        return
    try:
        ex = Expect(small, small_ref, small + ".ref.pt")
        exp_small = expected_files(ex, "fp32", SMALL_SHARD)
        exb = Expect(big, big_ref, big + ".ref.pt")
        exp_big32 = expected_files(exb, "fp32", 1_000_000)
        exp_big16 = expected_files(exb, "bf16", 700_000)
        exe = Expect(edge, edge_ref, edge + ".ref.pt")
        exp_edge = {("fp32", 1_000_000): expected_files(exe, "fp32", 1_000_000),
                    ("bf16", 700_000): expected_files(exe, "bf16", 700_000),
                    ("bf16", None): expected_files(exe, "bf16", None)}
    except Exception as e:  # noqa: BLE001
        tap.ok(False, "reference bytes can be built", repr(e))
        return
    nsh = len([n for n in exp_small if n.endswith(".safetensors")])
    tap.ok(nsh >= 3, "small checkpoint has %d shards at --max-shard-size %d" % (nsh, SMALL_SHARD))
    print("# setup %.1f s" % (time.monotonic() - t0))

    # (a)
    live_change("(a-i) optim truncated", small, exp_small, c_truncate, "truncating an optim file")
    live_change("(a-ii) optim replaced by rename", small, exp_small, c_rename,
                "replacing an optim file by rename")
    live_change("(a-iii) optim deleted", small, exp_small, c_delete, "deleting an optim file")
    live_change("(a-iv) optim file mtime changed", small, exp_small, c_touch,
                "changing an optim file's mtime")
    # (b)
    no_zero_fill("(b) truncation before the first read", small, exp_small)
    print("# faults done at %.1f s" % (time.monotonic() - t0))

    # (d) a shard holding a 0-element tensor (model.empty.weight [0, 96])
    # that shares its data offset with the next tensor: every file read in
    # 1 MiB chunks, and by pread at each tensor's start, equals the reference
    for (dt, ms), exp in exp_edge.items():
        args = ["--dtype", dt] + (["--max-shard-size", str(ms)] if ms else [])
        m = FgMount(edge, *args)
        try:
            if not tap.ok(m.ok, "(d) %s mounted" % " ".join(args), m.stderr()):
                continue
            bad = []
            for n in sorted(exp):
                e, got = open_errno(m.file(n))
                if got != exp[n]:
                    bad.append("%s: %s" % (n, os.strerror(e) if e else "WRONG BYTES, no error"))
                if not n.endswith(".safetensors"):
                    continue
                st = sv.parse_header(exp[n], n)
                hl = 8 + int.from_bytes(exp[n][:8], "little")
                fd = os.open(m.file(n), os.O_RDONLY)
                try:
                    for tn, ti in sorted(st.tensors.items()):
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        a = hl + ti["begin"]
                        try:
                            b = os.pread(fd, 64, a)
                            if b != exp[n][a:a + 64]:
                                bad.append("%s: pread(64) at %s's start: WRONG BYTES" % (n, tn))
                        except OSError as ex:
                            bad.append("%s: pread(64) at %s's start: %s" % (n, tn, ex.strerror))
                finally:
                    os.close(fd)
            tap.ok(not bad, "(d) %s: every file equals the reference (1 MiB reads and preads at "
                   "each tensor start)" % " ".join(args), "\n".join(bad[:12]) + "\n"
                   + m.stderr()[-700:])
            rc = m.umount()
            tap.ok(rc == 0 and not no_crash(m), "(d) %s: clean unmount, exit 0" % " ".join(args),
                   "rc %s\n%s" % (rc, m.stderr()[-500:]))
        finally:
            m.cleanup()

    # (c)
    m32 = FgMount(big, "--dtype", "fp32", "--max-shard-size", "1000000")
    m16 = FgMount(big, "--dtype", "bf16", "--max-shard-size", "700000")
    try:
        if not (tap.ok(m32.ok, "(c) fp32 mount of the ws 8 checkpoint", m32.stderr()) and
                tap.ok(m16.ok, "(c) bf16 mount of the ws 8 checkpoint", m16.stderr())):
            return
        for lbl, m, exp in (("fp32", m32, exp_big32), ("bf16", m16, exp_big16)):
            listed = sorted(n for n in os.listdir(m.mnt) if n.startswith("model"))
            tap.ok(listed == sorted(exp), "(c) %s: the mount lists the expected %d model files"
                   % (lbl, len(exp)), "got %s want %s" % (listed, sorted(exp)))
            bad = []
            for n in sorted(exp):
                e, got = open_errno(m.file(n))
                if got != exp[n]:
                    bad.append("%s: %s" % (n, os.strerror(e) if e else "WRONG BYTES"))
            tap.ok(not bad, "(c) %s: a first full read of every file equals the reference" % lbl,
                   "\n".join(bad) + "\n" + m.stderr()[-600:])
        results, samples, pexit = stress([("fp32", m32, exp_big32), ("bf16", m16, exp_big16)],
                                         STRESS_S)
        ops = sum(r["ops"] for r in results)
        nbytes = sum(r["bytes"] for r in results)
        mism = sum(r["mismatch"] for r in results)
        errs = sum(r["errors"] for r in results)
        print("# stress: %d workers, %d operations, %.1f MB compared, %d errors, %d mismatches"
              % (len(results), ops, nbytes / 1e6, errs, mism))
        tap.ok(ops > 100 and all(r["ops"] > 0 for r in results) and pexit == [0] * len(pexit),
               "(c) every reader thread and process made progress (%d operations)" % ops,
               "ops per worker %s, process exits %s" % ([r["ops"] for r in results], pexit))
        tap.ok(mism == 0, "(c) 0 mismatched bytes over %.1f MB read" % (nbytes / 1e6),
               [d for r in results for d in r["detail"]][:15])
        tap.ok(errs == 0, "(c) no read or open errors", [d for r in results for d in r["detail"]][:15])
        for lbl, s in samples.items():
            k = len(s) // 3
            if k < 2:
                tap.ok(False, "(c) %s: enough daemon samples" % lbl, s)
                continue
            first, last = s[:k], s[-k:]
            fd1, fd3 = max(x[1] for x in first), max(x[1] for x in last)
            r1, r3 = max(x[2] for x in first), max(x[2] for x in last)
            t1, t3 = max(x[3] for x in first), max(x[3] for x in last)
            print("# %s daemon: fds %d -> %d, VmRSS %d kB -> %d kB, threads %d -> %d (%d samples)"
                  % (lbl, fd1, fd3, r1, r3, t1, t3, len(s)))
            tap.ok(fd3 == fd1, "(c) %s: daemon fd count steady (%d -> %d)" % (lbl, fd1, fd3),
                   [x[1] for x in s])
            if "address" in os.environ.get("SANITIZE", ""):
                # ASan's allocator keeps freed memory in caches and a
                # quarantine, so RSS grows without a leak; LeakSanitizer
                # checks the daemon at unmount instead (no_crash below).
                print("# %s: RSS not compared under AddressSanitizer" % lbl)
            else:
                # libfuse starts serving threads as concurrency rises (up
                # to --threads, 8) and keeps them; each holds a request
                # buffer, a reply buffer and a conversion buffer, 1 MiB
                # each. Growth beyond that would be a leak.
                allowed = r1 * 1.2 + max(0, t3 - t1) * 3 * 1024 + 512
                tap.ok(r3 < allowed,
                       "(c) %s: daemon RSS steady (%d kB -> %d kB; %d new serving threads allow %d kB)"
                       % (lbl, r1, r3, max(0, t3 - t1), allowed), [(x[2], x[3]) for x in s])
        for lbl, m in (("fp32", m32), ("bf16", m16)):
            rc = m.umount()
            tap.ok(rc == 0 and not no_crash(m) and not is_mounted(m.mnt),
                   "(c) %s: clean unmount after the stress, daemon exits 0" % lbl,
                   "rc %s %s\n%s" % (rc, no_crash(m), m.stderr()[-800:]))
    finally:
        m32.cleanup()
        m16.cleanup()
    print("# stress done at %.1f s" % (time.monotonic() - t0))

    lazy_unmount_test("(c) lazy unmount under load", big, exp_big32,
                      ["--dtype", "fp32", "--max-shard-size", "1000000"])
    lazy_unmount_rounds("(c) lazy unmount, descriptors released at teardown", big, 12, 40)
    print("# total %.1f s" % (time.monotonic() - t0))


try:
    main()
finally:
    left = [mm[1] for mm in mounts() if mm[1].startswith(WORK)]
    for p in left:
        unmount(p)
    tap.ok(not left, "nothing left mounted", left)
    shutil.rmtree(WORK, ignore_errors=True)
tap.done()
