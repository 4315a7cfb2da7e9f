"""Every real DeepSpeed fixture, mounted with --dtype auto, fp32, bf16 and fp16:
the folder is a strictly valid Hugging Face directory (tests/lib/st_validate.py),
every served tensor's bytes, read with read(2) and through mmap, hash to the
reference, the served names are the live state_dict minus tied aliases
('llm.' removed), auto serves the training dtype, sizes agree between ls,
stat, du and the bytes read, inodes are stable, writes fail, statfs works and
readdir lists exactly the model file. Then --max-shard-size 20KB on one
fixture: several shards + index, split as huggingface_hub splits, and the
shards together hold the same tensors as the single file."""
import errno
import mmap
import os
import traceback
import re
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import Tap, fixtures, checkpoints, sha  # noqa: E402
from zfmount import mounted, MountFailed, is_mounted  # noqa: E402
from zfexpect import Expect, ST_DTYPE  # noqa: E402
import st_validate as sv  # noqa: E402

tap = Tap()
if not fixtures():
    print("# ../shared/fixtures/real is absent: generated checkpoints only")
fx = checkpoints()

WRITE_ERRNOS = (errno.EROFS, errno.EACCES)


def read_plain(path):
    """The whole file through read(2), in odd-sized chunks."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            b = os.read(fd, 4093)
            if not b:
                break
            out.append(b)
    finally:
        os.close(fd)
    return b"".join(out)


def read_mmap(path):
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            assert len(mm) == size
            return bytes(mm[:])


def tensor_bytes(buf, st):
    return {n: buf[st.data_start + ti["begin"]:st.data_start + ti["end"]]
            for n, ti in st.tensors.items()}


def write_fails(fn):
    try:
        fn()
    except OSError as e:
        return e.errno in WRITE_ERRNOS, "%s (%s)" % (errno.errorcode.get(e.errno), e)
    return False, "succeeded"


def ls_size(path):
    p = subprocess.run(["ls", "-ln", path], capture_output=True, text=True)
    f = p.stdout.split()
    return int(f[4]) if p.returncode == 0 and len(f) > 4 else None


def du(args, path):
    p = subprocess.run(["du"] + args + [path], capture_output=True, text=True)
    try:
        return int(p.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def check_mount(name, d, ex, dt, m):
    """Checks one mounted fixture; returns {name: bytes} of the served tensors."""
    tag = "%s --dtype %s" % (name, dt)
    mp = m.path
    # readdir
    listing = sorted(os.listdir(mp))
    tap.ok(listing == ["model.safetensors"], "%s: readdir lists exactly model.safetensors" % tag, listing)
    # strict validation
    try:
        sd = sv.validate_dir(mp, others=[])
        tap.ok(True, "%s: strictly valid safetensors folder (zerofs-safetensors(5))" % tag)
    except sv.Invalid as e:
        tap.ok(False, "%s: strictly valid safetensors folder (zerofs-safetensors(5))" % tag, "\n".join(e.problems))
        return {}
    st = sd.files["model.safetensors"]
    f = os.path.join(mp, "model.safetensors")
    # names and dtypes
    want_names = set(ex.names)
    got_names = set(st.tensors)
    tap.ok(got_names == want_names, "%s: served names == live state_dict minus tied aliases%s"
           % (tag, " (prefix '%s' removed)" % ex.strip if ex.strip else ""),
           "missing %s\nextra %s" % (sorted(want_names - got_names), sorted(got_names - want_names)))
    bad = [(n, st.tensors[n]["dtype"], st.tensors[n]["shape"]) for n in ex.names if n in st.tensors
           and (st.tensors[n]["dtype"] != ST_DTYPE[ex.served_dtype(n, dt)]
                or st.tensors[n]["shape"] != ex.shape(n))]
    tap.ok(not bad, "%s: dtypes (%s; integer buffers keep theirs) and shapes"
           % (tag, ex.resolve(dt)), bad)
    if dt == "auto":
        floats = {st.tensors[n]["dtype"] for n in st.tensors if not st.tensors[n]["dtype"].startswith("I")}
        tap.ok(floats == {ST_DTYPE[ex.train]}, "%s: auto serves the training dtype %s" % (tag, ex.train),
               floats)
    # bytes: plain reads and mmap
    plain = read_plain(f)
    mm = read_mmap(f)
    size = os.stat(f).st_size
    tap.ok(len(plain) == size and len(mm) == size, "%s: read(2) and mmap return st_size bytes" % tag,
           (len(plain), len(mm), size))
    tap.ok(plain == mm, "%s: read(2) and mmap agree byte for byte" % tag)
    got = tensor_bytes(plain, st)
    gotm = tensor_bytes(mm, st)
    bad = []
    for n in ex.names:
        want = ex.sha(n, dt)
        if want is None or n not in got or sha(got[n]) != want or sha(gotm[n]) != want:
            bad.append(n)
    tap.ok(not bad and not ex.problems, "%s: %d tensors hash to the reference (read and mmap)"
           % (tag, len(ex.names)), "\n".join(bad + ex.problems))
    # sizes: ls, stat, du
    s1 = os.stat(f)
    tap.ok(ls_size(f) == s1.st_size == len(plain), "%s: ls -l size == st_size == bytes read" % tag,
           (ls_size(f), s1.st_size, len(plain)))
    tap.ok(du(["-B1", "--apparent-size"], f) == s1.st_size,
           "%s: du --apparent-size == size" % tag, du(["-B1", "--apparent-size"], f))
    blocks = s1.st_blocks * 512
    duk = du(["-k"], f)
    tap.ok(s1.st_size <= blocks < s1.st_size + 4096 + 512 and duk == -(-blocks // 1024),
           "%s: st_blocks covers the size and du -k reports it (not 0)" % tag,
           "st_blocks*512=%d size=%d du -k=%s" % (blocks, s1.st_size, duk))
    dirk = du(["-sk"], mp)
    tap.ok(dirk is not None and dirk >= s1.st_size // 1024,
           "%s: du -sk of the mount >= the model's size" % tag, dirk)
    # inode stable
    s2 = os.stat(f)
    tap.ok(s1.st_ino == s2.st_ino and s1.st_ino != 0 and s1.st_size == s2.st_size,
           "%s: stat twice gives the same inode" % tag, (s1.st_ino, s2.st_ino))
    # read-only
    res = [("open r+", write_fails(lambda: os.close(os.open(f, os.O_RDWR)))),
           ("open w", write_fails(lambda: os.close(os.open(f, os.O_WRONLY)))),
           ("create", write_fails(lambda: os.close(os.open(os.path.join(mp, "new.bin"),
                                                            os.O_WRONLY | os.O_CREAT, 0o644)))),
           ("unlink", write_fails(lambda: os.unlink(f))),
           ("mkdir", write_fails(lambda: os.mkdir(os.path.join(mp, "newdir")))),
           ("rename", write_fails(lambda: os.rename(f, os.path.join(mp, "x.safetensors")))),
           ("truncate", write_fails(lambda: os.truncate(f, 0))),
           ("chmod", write_fails(lambda: os.chmod(f, 0o666)))]
    bad = [(w, why) for w, (ok, why) in res if not ok]
    tap.ok(not bad, "%s: open for write, create, unlink, mkdir, rename, truncate, chmod fail "
           "with EROFS/EACCES" % tag, bad)
    p_touch = subprocess.run(["touch", f], capture_output=True, text=True)
    p_touch2 = subprocess.run(["touch", os.path.join(mp, "touched")], capture_output=True, text=True)
    p_rm = subprocess.run(["rm", "-f", f], capture_output=True, text=True)
    p_mkdir = subprocess.run(["mkdir", os.path.join(mp, "d")], capture_output=True, text=True)
    tap.ok(p_touch.returncode and p_touch2.returncode and p_rm.returncode and p_mkdir.returncode
           and sorted(os.listdir(mp)) == listing and os.stat(f).st_size == size,
           "%s: touch, rm, mkdir fail and change nothing" % tag,
           (p_touch.stderr, p_touch2.stderr, p_rm.stderr, p_mkdir.stderr))
    tap.ok(read_plain(f) == plain, "%s: content unchanged after the write attempts" % tag)
    # statfs
    try:
        vfs = os.statvfs(mp)
        tap.ok(vfs.f_bsize > 0 and vfs.f_flag & os.ST_RDONLY,
               "%s: statfs works and reports read-only" % tag, vfs)
    except OSError as e:
        tap.ok(False, "%s: statfs works" % tag, e)
    return {n: got[n] for n in got}


sharded_done = False
for name, d, ref in fx:
    ex = Expect(d, ref, d + ".ref.pt")
    files = {}
    for dt in ("auto", "fp32", "bf16", "fp16"):
        try:
            with mounted(d, "--dtype", dt) as m:
                tap.ok(True, "%s --dtype %s: mounts" % (name, dt))
                check_mount(name, d, ex, dt, m)
                files[dt] = sha(read_plain(m.file("model.safetensors")))
                mp = m.path
            tap.ok(not is_mounted(mp), "%s --dtype %s: unmounted afterwards" % (name, dt))
        except MountFailed as e:
            tap.ok(False, "%s --dtype %s: mounts" % (name, dt), e)
        except Exception:  # noqa: BLE001 - report, unmount, go on
            tap.ok(False, "%s --dtype %s: checks run without an exception" % (name, dt), traceback.format_exc())
    short = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[ex.train]
    tap.ok(files.get("auto") is not None and files.get("auto") == files.get(short),
           "%s: --dtype auto serves the same file as --dtype %s" % (name, short))

# --max-shard-size 20KB: several shards + index.
pick = [f for f in fx if f[0] == "z3_ws3_bf16"] or fx[:1]
for name, d, ref in pick:
    ex = Expect(d, ref, d + ".ref.pt")
    for dt in ("bf16", "fp32"):
        tag = "%s --dtype %s --max-shard-size 20KB" % (name, dt)
        try:
            with mounted(d, "--dtype", dt) as m:
                single = sv.load_file(m.file("model.safetensors"))
            with mounted(d, "--dtype", dt, "--max-shard-size", "20KB") as m:
                names = sorted(os.listdir(m.path))
                shards = [n for n in names if sv.SHARD_RE.match(n)]
                tap.ok(len(shards) > 1 and "model.safetensors.index.json" in names
                       and "model.safetensors" not in names,
                       "%s: several shards + index, no model.safetensors" % tag, names)
                try:
                    sd = sv.validate_dir(m.path, others=[])
                    tap.ok(True, "%s: shards and index strictly valid (zerofs-safetensors(5) SHARDS)" % tag)
                except sv.Invalid as e:
                    tap.ok(False, "%s: shards and index strictly valid (zerofs-safetensors(5) SHARDS)" % tag,
                           "\n".join(e.problems))
                    continue
                # huggingface_hub's greedy split over the state-dict order, 20KB = 20000 bytes
                want = sv.hf_split([(n, ex.nbytes(n, dt)) for n in ex.names], 20000)
                n = len(want)
                want_map = {t: "model-%05d-of-%05d.safetensors" % (i + 1, n)
                            for i, ts in enumerate(want) for t in ts}
                tap.ok(dict(sd.weight_map) == want_map,
                       "%s: %d shards split as huggingface_hub splits (decimal KB)" % (tag, n),
                       "got %s\nwant %s" % (sorted(set(sd.weight_map.values())),
                                            sorted(set(want_map.values()))))
                big = [s for s, st in sd.files.items()
                       if sum(sv.tensor_nbytes(t) for t in st.tensors.values()) > 20000
                       and len(st.tensors) > 1]
                tap.ok(not big, "%s: no multi-tensor shard exceeds 20000 bytes of data" % tag, big)
                allt = sv.load_dir(m.path)
                tap.ok(list(allt) and {k: v for k, v in allt.items()} == dict(single),
                       "%s: all shards together hold the same tensors as the single file" % tag)
                bad = [t for t in ex.names if t not in allt or sha(allt[t][2]) != ex.sha(t, dt)]
                tap.ok(not bad, "%s: every sharded tensor hashes to the reference" % tag, bad)
                # the index is served byte-exact and its sizes agree
                ip = m.file("model.safetensors.index.json")
                with open(ip, "rb") as fh:
                    b = fh.read()
                tap.ok(os.stat(ip).st_size == len(b) and ls_size(ip) == len(b),
                       "%s: index st_size == ls size == bytes read" % tag)
                with open(ip, "rb") as fh:
                    mmb = read_mmap(ip)
                tap.ok(mmb == b, "%s: index mmap == read" % tag)
                # each shard: plain read == mmap
                bad = [s for s in shards if read_plain(m.file(s)) != read_mmap(m.file(s))]
                tap.ok(not bad, "%s: each shard reads the same through read(2) and mmap" % tag, bad)
        except MountFailed as e:
            tap.ok(False, "%s: mounts" % tag, e)
        except Exception:  # noqa: BLE001 - report, unmount, go on
            tap.ok(False, "%s: checks run without an exception" % tag, traceback.format_exc())

# The validator itself must reject broken files (so a pass above means something).
name, d, ref = fx[0]
with mounted(d) as m:
    good = read_plain(m.file("model.safetensors"))
n = struct.unpack("<Q", good[:8])[0]
hdr = good[8:8 + n]
mut = {
    "trailing byte": good + b"\0",
    "missing last byte": good[:-1],
    "NUL padding": good[:8] + hdr.rstrip(b" ") + b"\0" * (len(hdr) - len(hdr.rstrip(b" "))) + good[8 + n:]
    if hdr.endswith(b" ") else None,
    "no __metadata__": None,
    "swapped tensor order": None,
}
j = hdr.rstrip(b" ").decode()
j2 = re.sub(r'"__metadata__":\{"format":"pt"\},', "", j)
if j2 != j:
    h2 = j2.encode()
    h2 += b" " * (-len(h2) % 8)
    mut["no __metadata__"] = struct.pack("<Q", len(h2)) + h2 + good[8 + n:]
h3 = j.replace('{"format":"pt"}', '{"format":"tf"}').encode()
h3 += b" " * (-len(h3) % 8)
mut["format tf"] = struct.pack("<Q", len(h3)) + h3 + good[8 + n:]
h4 = (j + " " * 8).encode()
h4 += b" " * (-len(h4) % 8)
mut["over-padded header"] = struct.pack("<Q", len(h4)) + h4 + good[8 + n:]
rej = []
for what, b in mut.items():
    if b is None:
        continue
    try:
        sv.validate_file(b)
        rej.append(what)
    except sv.Invalid:
        pass
try:
    sv.validate_file(good)
    ok_good = True
except sv.Invalid as e:
    ok_good = False
    rej.append(str(e))
tap.ok(ok_good and not rej, "st_validate accepts the served file and rejects %d broken variants"
       % sum(1 for b in mut.values() if b is not None), rej)

tap.done()
