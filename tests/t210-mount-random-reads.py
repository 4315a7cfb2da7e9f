"""Random reads of mounted files against bytes assembled independently.

For each mount the expected files are built in Python: tensors from the
fixture's NAME.ref.pt (zero_to_fp32's answer; names it lacks come from the
live model, see tests/lib/zfexpect.py), cast with torch's .to(dtype), laid out
by tests/lib/st_ref.py (a reference save_file writer, man/zerofs-safetensors.5
"Header" and "Tensor order") and, when sharded, split as huggingface_hub
splits ("Split") with the index written as transformers writes it ("Index"). The mounted header is never used as
the expectation.

Then several thousand pread()s per mount at chosen and random offsets and
lengths: 0 and 1 byte, odd offsets inside bf16/fp16 elements, reads
crossing the length prefix / header / data boundary, tensor boundaries and
the end of each shard, reads past EOF, big reads; some through mmap; part of
them from several threads at once. The seed is printed; set ZEROFS_SEED to
replay."""
import json
import mmap
import os
import traceback
import random
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import Tap, fixtures, checkpoints  # noqa: E402
from zfmount import mounted, MountFailed  # noqa: E402
from zfexpect import Expect, ST_DTYPE, tbytes  # noqa: E402
import st_ref  # noqa: E402
import st_validate as sv  # noqa: E402

tap = Tap()
if not fixtures():
    print("# ../shared/fixtures/real is absent: generated checkpoints only")
fx = checkpoints()

SEED = int(os.environ.get("ZEROFS_SEED", "20240611"))
READS = int(os.environ.get("ZEROFS_READS", "3000"))
THREADS = 6
print("# seed %d (ZEROFS_SEED=%d replays), %d reads per mount + %d threads x %d"
      % (SEED, SEED, READS, THREADS, READS // 4))


STREF = st_ref.reference_module()
print("# expected headers from %s" % ("tests/ref/st_reference.py, cross-checked with tests/lib/st_ref.py"
                                      if STREF else "tests/lib/st_ref.py (tests/ref/st_reference.py absent)"))
disagree = []


def build_file(ts):
    """Header + data of [(name, st_dtype, shape, bytes)] as save_file lays them."""
    mine = st_ref.file_bytes(ts)
    if STREF is None:
        return mine
    hdr, offs = STREF.header_bytes([(n, d, s) for n, d, s, _ in ts], {"format": "pt"})
    data = bytearray(max([e for _, e in offs.values()], default=0))
    for n, _, _, b in ts:
        s, e = offs[n]
        assert e - s == len(b), n
        data[s:e] = b
    theirs = hdr + bytes(data)
    if theirs != mine:
        disagree.append([n for n, *_ in ts][:3])
    return theirs


def expected_files(ex, dt, max_shard=None):
    """{file name: bytes} that the mount must serve (model files only)."""
    ts = []
    for n in ex.names:
        t = ex.tensor(n, dt)
        ts.append((n, ST_DTYPE[ex.served_dtype(n, dt)], ex.shape(n), tbytes(t)))
    if max_shard is None:
        return {"model.safetensors": build_file(ts)}
    split = sv.hf_split([(n, len(b)) for n, _, _, b in ts], max_shard)
    if STREF is not None:
        plan = STREF.plan_shards([len(b) for *_, b in ts], max_shard)
        if [[ts[i][0] for i in range(len(ts)) if plan[i] == k] for k in range(len(split))] != split:
            disagree.append("shard plans differ")
    if len(split) == 1:
        return {"model.safetensors": build_file(ts)}
    byname = {t[0]: t for t in ts}
    out = {}
    wm = {}
    k = len(split)
    for i, names in enumerate(split):
        fn = "model-%05d-of-%05d.safetensors" % (i + 1, k)
        out[fn] = build_file([byname[n] for n in names])
        for n in names:
            wm[n] = fn
    total = sum(len(b) for *_, b in ts)
    idx = {"metadata": {"total_size": total}, "weight_map": wm}
    text = json.dumps(idx, indent=2, sort_keys=True) + "\n"
    if STREF is not None and STREF.index_json(wm, total) != text:
        disagree.append("index texts differ")
    out["model.safetensors.index.json"] = text.encode()
    return out


def interesting(exp):
    """Offsets worth reading around: header edges, tensor edges, 2-byte
    element interiors, EOF."""
    pts = [0, 1, 7, 8, 9, len(exp)]
    elem = []
    if len(exp) >= 8 and exp[:1] != b"{":
        n = int.from_bytes(exp[:8], "little")
        ds = 8 + n
        pts += [ds - 1, ds, ds + 1, 8 + n // 2]
        try:
            st = sv.parse_header(exp, "expected")
            for ti in st.tensors.values():
                pts += [ds + ti["begin"], ds + ti["end"]]
                if ti["dtype"] in ("BF16", "F16") and ti["end"] > ti["begin"]:
                    elem.append((ds + ti["begin"], ds + ti["end"]))
        except sv.Invalid:
            pass
    return sorted(set(pts)), elem


def gen_reads(rng, exp, count):
    size = len(exp)
    pts, elem = interesting(exp)
    reads = []
    for _ in range(count):
        k = rng.random()
        if k < 0.06:
            reads.append((rng.randrange(0, size + 100), 0))
        elif k < 0.14:
            reads.append((rng.randrange(0, size), 1))
        elif k < 0.30 and elem:
            b, e = rng.choice(elem)
            off = b + 1 + 2 * rng.randrange(0, max(1, (e - b) // 2))
            reads.append((min(off, e - 1), rng.choice([1, 2, 3, 5, 7, 63, 1001])))
        elif k < 0.55:
            p = rng.choice(pts)
            off = max(0, p - rng.randrange(0, 70))
            reads.append((off, rng.randrange(1, 300)))
        elif k < 0.63:
            reads.append((size + rng.randrange(0, 5000), rng.randrange(0, 9000)))
        elif k < 0.70:
            reads.append((max(0, size - rng.randrange(1, 3000)), rng.randrange(1, 10000)))
        elif k < 0.78:
            reads.append((rng.randrange(0, size), rng.randrange(4096, 300000)))
        else:
            reads.append((rng.randrange(0, size), int(2 ** rng.uniform(0, 15))))
    return reads


def drop_cache(fd):
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):
        pass


def run_reads(path, exp, reads, bad, use_mmap_every=0):
    fd = os.open(path, os.O_RDONLY)
    mm = None
    try:
        if use_mmap_every and len(exp):
            mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        for i, (off, ln) in enumerate(reads):
            if i % 97 == 0:
                drop_cache(fd)
            want = exp[off:off + ln]
            if mm is not None and i % use_mmap_every == 0:
                got = mm[off:off + ln]
                how = "mmap"
            else:
                got = os.pread(fd, ln, off)
                how = "pread"
            if got != want:
                bad.append("%s off=%d len=%d: got %d bytes%s" % (
                    how, off, ln, len(got),
                    "" if len(got) != len(want) else
                    ", first difference at +%d" % next(j for j in range(len(got)) if got[j] != want[j])))
    finally:
        if mm is not None:
            mm.close()
        os.close(fd)


def exercise(tag, m, exp_files, seed):
    rng = random.Random(seed)
    names = sorted(os.listdir(m.path))
    tap.ok(names == sorted(exp_files), "%s: lists %s" % (tag, ", ".join(sorted(exp_files))), names)
    for fn, exp in sorted(exp_files.items()):
        p = m.file(fn)
        if not os.path.exists(p):
            tap.ok(False, "%s %s: exists" % (tag, fn))
            continue
        ftag = "%s %s" % (tag, fn)
        tap.ok(os.stat(p).st_size == len(exp), "%s: st_size == expected %d" % (ftag, len(exp)),
               os.stat(p).st_size)
        # sequential pass
        with open(p, "rb") as f:
            whole = f.read()
        tap.ok(whole == exp, "%s: whole file equals the independently built bytes" % ftag,
               "sizes %d vs %d" % (len(whole), len(exp)) if len(whole) != len(exp) else
               "first difference at %d" % next((j for j in range(len(exp)) if whole[j] != exp[j]), -1))
        count = READS if fn.endswith(".safetensors") else max(300, READS // 10)
        reads = gen_reads(rng, exp, count)
        bad = []
        run_reads(p, exp, reads, bad, use_mmap_every=5)
        tap.ok(not bad, "%s: %d random reads (pread + mmap, seed %d)" % (ftag, len(reads), seed), bad[:10])
        # concurrent part: several threads, own fds, different read lists
        tbad = []
        lists = [gen_reads(random.Random(seed * 31 + i), exp, max(100, count // 4)) for i in range(THREADS)]
        ths = [threading.Thread(target=run_reads, args=(p, exp, lst, tbad, 7 if i % 2 else 0))
               for i, lst in enumerate(lists)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        tap.ok(not tbad, "%s: %d threads x %d concurrent random reads" % (ftag, THREADS, len(lists[0])),
               tbad[:10])
        # one shared fd across threads (pread is position-free)
        fd = os.open(p, os.O_RDONLY)
        sbad = []

        def shared(lst):
            for off, ln in lst:
                if os.pread(fd, ln, off) != exp[off:off + ln]:
                    sbad.append((off, ln))
        ths = [threading.Thread(target=shared, args=(lst[: len(lst) // 2],)) for lst in lists]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        os.close(fd)
        tap.ok(not sbad, "%s: concurrent preads on one shared fd" % ftag, sbad[:10])


plan = []
for name, d, ref in fx:
    plan.append((name, d, ref, "auto", None))
byname = {f[0]: f for f in fx}
for name, dt, ms in (("z3_ws3_bf16", "bf16", None), ("z3_ws3_bf16", "fp16", None),
                     ("z2_ws2", "bf16", None), ("z1_ws2_frozen", "bf16", None),
                     ("bf16opt_z1_ws2", "fp32", None), ("z3_ws2_prefix", "fp16", None),
                     ("z3_ws3_bf16", "fp32", 20000), ("z2_ws2_fp16", "bf16", 20000)):
    if name in byname:
        f = byname[name]
        plan.append((f[0], f[1], f[2], dt, ms))

for i, (name, d, ref, dt, ms) in enumerate(plan):
    tag = "%s --dtype %s%s" % (name, dt, " --max-shard-size 20KB" if ms else "")
    ex = Expect(d, ref, d + ".ref.pt")
    try:
        exp = expected_files(ex, dt, ms)
    except (KeyError, ValueError) as e:
        tap.ok(False, "%s: reference bytes can be built" % tag, e)
        continue
    tap.ok(not ex.problems and not disagree, "%s: reference bytes built from %s.ref.pt%s" %
           (tag, name, " and the checked live model" if ex._full is not None else ""),
           ex.problems + ["the two reference writers disagree: %s" % disagree] if disagree else ex.problems)
    del disagree[:]
    args = ["--dtype", dt] + (["--max-shard-size", "20KB"] if ms else [])
    try:
        with mounted(d, *args) as m:
            exercise(tag, m, exp, SEED + i)
    except MountFailed as e:
        tap.ok(False, "%s: mounts" % tag, e)
    except Exception:  # noqa: BLE001 - report, unmount, go on
        tap.ok(False, "%s: checks run without an exception" % tag, traceback.format_exc())

tap.done()
