"""zerofs verify: every real fixture is sound (exit 0) with and without
--deep; the XXH3-128 digests it prints equal those of the exported files'
bytes and of each tensor's bytes in them (computed here with python3-xxhash
or xxhsum); and copies of a fixture with damage are unsound (exit 1) with
the damage named: a flipped byte in a zip record (CRC), NaN and Inf written
into a param (values; reported along with the CRC failure, and alone with
--digests), a rank file removed, a file truncated."""
import json
import re
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import Tap, fixtures, checkpoints, run, inspect_json, TMPROOT  # noqa: E402

tap = Tap()
work = tempfile.mkdtemp(prefix="t310-", dir=TMPROOT)

try:
    import xxhash

    def xxh128(b):
        return xxhash.xxh3_128_hexdigest(b)
except ImportError:
    xxhash = None
    if shutil.which("xxhsum"):
        def xxh128(b):
            p = subprocess.run(["xxhsum", "-H2", "-"], input=b, capture_output=True, check=True)
            return p.stdout.split()[0].decode()
    else:
        xxh128 = None


def verify(*args):
    return run(["verify", "-q"] + list(args))


def verify_json(*args):
    p = verify("--json", *args)
    try:
        return p, json.loads(p.stdout)
    except ValueError:
        return p, None


def safetensors_tensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    h = json.loads(blob[8:8 + n])
    h.pop("__metadata__", None)
    return {k: blob[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items()}


def copy_fixture(d, name):
    dst = os.path.join(work, name)
    shutil.copytree(d, dst)
    return dst


def record_data_offset(path, entry):
    """Absolute offset of a stored zip entry's data, from its local header."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(entry)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        lh = f.read(30)
    name_len = int.from_bytes(lh[26:28], "little")
    extra_len = int.from_bytes(lh[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len, info.file_size


if not fixtures():
    print("# ../shared/fixtures/real is absent: generated checkpoints only")
fx = checkpoints()
if xxh128 is None:
    tap.skip("digests against xxhash", "neither python3-xxhash nor xxhsum is installed")

METADATA_ONLY = "sound (metadata only: no data was read; records not read: use --deep)"
DIGEST_LINE = re.compile(r"^([0-9a-f]{32})  (\S+)$")
xxhsum_checked = False

for name, d, ref in fx:
    p = verify(d)
    lines = p.stdout.splitlines()
    tap.ok(p.returncode == 0 and lines and lines[-1] == METADATA_ONLY and "FAIL" not in p.stdout,
           f"{name}: verify says sound, and that it read no data (exit 0)", p.stdout + p.stderr)
    tap.ok("skip  data       tensor data not read: use --digests" in p.stdout
           and "skip  crc        records not read: use --deep" in p.stdout,
           f"{name}: verify lists the checks it did not run", p.stdout)
    p = verify("--deep", d)
    tap.ok(p.stdout.splitlines()[-1:] == ["sound"] and "skip " not in p.stdout,
           f"{name}: verify --deep's verdict is a plain 'sound'", p.stdout[-500:])
    n_pt = sum(1 for r, _, fs in os.walk(d) for f in fs if f.endswith(".pt"))
    n_crc = sum(1 for ln in p.stdout.splitlines() if ln.startswith("ok    crc "))
    tap.ok(p.returncode == 0 and n_crc == n_pt,
           f"{name}: verify --deep is sound, a CRC line per file", p.stdout[-2000:] + p.stderr)
    if xxh128 is None:
        continue
    out = os.path.join(work, "exp-" + name)
    e = run(["export", "-q", "--dtype", "bf16", d, out])
    p, j = verify_json("--digests", "--dtype", "bf16", d)
    if not tap.ok(e.returncode == 0 and p.returncode == 0 and j and j["sound"],
                  f"{name}: export and verify --digests --json run", e.stderr + p.stderr):
        continue
    files = {f["name"]: f["xxh3_128"] for f in j["files"]}
    bad = []
    for fn in sorted(os.listdir(out)):
        with open(os.path.join(out, fn), "rb") as f:
            if files.get(fn) != xxh128(f.read()):
                bad.append(fn)
    tap.ok(files and not bad and set(files) == set(os.listdir(out)),
           f"{name}: each file's digest is the XXH3-128 of the exported file", bad)
    tensors = {}
    for fn in os.listdir(out):
        if fn.endswith(".safetensors"):
            tensors.update(safetensors_tensors(os.path.join(out, fn)))
    bad = [t["name"] for t in j["tensors"] if xxh128(tensors.get(t["name"], b"?")) != t["xxh3_128"]]
    tap.ok(j["tensors"] and not bad and len(j["tensors"]) == len(tensors),
           f"{name}: each tensor's digest is the XXH3-128 of its exported bytes", bad)
    p2 = verify("--digests", "--dtype", "bf16", d)
    text = {m.group(2): m.group(1) for m in map(DIGEST_LINE.match, p2.stdout.splitlines()) if m}
    tap.ok(text == files, f"{name}: text and JSON digests agree", (text, files))
    tap.ok(p2.stdout.splitlines()[-1] == "sound (records' CRC-32 not checked: use --deep)",
           f"{name}: verify --digests says the CRCs were not checked", p2.stdout[-300:])
    if not xxhsum_checked and shutil.which("xxhsum"):
        # The report as it is, given to Debian's xxhsum -c in the export.
        xxhsum_checked = True
        sums = os.path.join(work, "sums-" + name)
        with open(sums, "w") as f:
            f.write(p2.stdout)
        c = subprocess.run(["xxhsum", "-c", sums], cwd=out, capture_output=True, text=True)
        oks = sorted(ln.split(":")[0] for ln in c.stdout.splitlines() if ln.endswith(": OK"))
        tap.ok(c.returncode == 0 and oks == sorted(os.listdir(out)),
               f"{name}: 'xxhsum -c' on verify --digests' output checks every exported file",
               (c.returncode, c.stdout, c.stderr))
        victim_file = sorted(os.listdir(out))[0]
        with open(os.path.join(out, victim_file), "ab") as f:
            f.write(b" ")
        c = subprocess.run(["xxhsum", "-c", sums], cwd=out, capture_output=True, text=True)
        tap.ok(c.returncode == 1 and f"{victim_file}: FAILED" in c.stdout,
               f"{name}: ... and finds a changed file", (c.returncode, c.stdout))

byname = {n: (d, r) for n, d, r in fx}
pick = "z2_ws2" if "z2_ws2" in byname else (fx[0][0] if fx else None)

if pick:
    d, ref = byname[pick]
    info = inspect_json(d)
    # A flipped byte inside the record holding a served param's bytes.
    bad = copy_fixture(d, "flip")
    victim = next(t for t in info["tensors"] if t["kind"] == "param" and t["numel"] > 4)
    s_idx, s_off, s_len = victim["extents"][0]
    optim = os.path.basename(info["files"][s_idx]["path"])
    # Rank files are named by their real path (d may hold a symlink).
    opath = os.path.join(bad, os.path.relpath(os.path.realpath(info["files"][s_idx]["path"]),
                                              os.path.realpath(d)))
    pos = s_off + s_len // 2
    entry = None
    with zipfile.ZipFile(opath) as z:
        for i in z.infolist():
            off, size = record_data_offset(opath, i.filename)
            if off <= pos < off + size:
                entry = i.filename
    with open(opath, "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 0x10]))
    p = verify(bad)
    tap.ok(p.returncode == 0 and p.stdout.splitlines()[-1] == METADATA_ONLY,
           "a flipped data byte passes the metadata checks (verify without --deep), "
           "and the verdict says no data was read", p.stdout + p.stderr)
    p = verify("--deep", bad)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("FAIL") and " crc " in ln]
    tap.ok(p.returncode == 1 and len(lines) == 1 and optim in lines[0] and entry in lines[0],
           "verify --deep: exit 1, the CRC failure names the file and the entry",
           p.stdout[-1500:] + p.stderr)
    # fp32: the master bytes themselves (a flipped low bit can vanish in
    # the rounding to a 16-bit training dtype).
    p0, j0 = verify_json("--digests", "--dtype", "fp32", d)
    p1, j1 = verify_json("--digests", "--dtype", "fp32", bad)
    if j0 and j1:
        a = {t["name"]: t["xxh3_128"] for t in j0["tensors"]}
        b = {t["name"]: t["xxh3_128"] for t in j1["tensors"]}
        diff = [k for k in a if a[k] != b.get(k)]
        tap.ok(diff == [victim["name"]],
               "the digests show which tensor the flipped byte changed", diff)
    else:
        tap.ok(False, "verify --digests --json on the flipped copy", p1.stderr)

    # NaN and Inf written into two fp32 params' bytes.
    params = [t for t in info["tensors"] if t["kind"] == "param" and t["dtype"] == "float32"
              and t["numel"] > 1]
    nanc = copy_fixture(d, "nan")
    src = [f["path"] for f in info["files"]]

    def poke(t, value, elem=0):
        s, off, _ = t["extents"][0]
        path = os.path.join(nanc, os.path.relpath(os.path.realpath(src[s]), os.path.realpath(d)))
        with open(path, "r+b") as f:
            f.seek(off + 4 * elem)
            f.write(value)
    poke(params[0], b"\x00\x00\xc0\x7f")          # NaN
    poke(params[1], b"\x00\x00\x80\xff", elem=1)  # -Inf
    p = verify("--deep", "--dtype", "fp32", nanc)
    out = p.stdout
    vals = [ln for ln in out.splitlines() if ln.startswith("FAIL") and " values " in ln]
    crcs = [ln for ln in out.splitlines() if ln.startswith("FAIL") and " crc " in ln]
    tap.ok(p.returncode == 1 and len(vals) == 2 and crcs and
           any(params[0]["name"] in ln and "1 NaN, 0 Inf" in ln for ln in vals) and
           any(params[1]["name"] in ln and "0 NaN, 1 Inf" in ln for ln in vals),
           "verify --deep reports both the CRC failure and the NaN and Inf, per tensor",
           out[-2000:] + p.stderr)
    p = verify("--digests", "--dtype", "fp32", nanc)
    tap.ok(p.returncode == 1 and not re.search(r"^(ok|FAIL) +crc ", p.stdout, re.M) and p.stdout.count("FAIL  values") == 2,
           "verify --digests (no CRC) still finds the NaN and the Inf", p.stdout[-1500:])
    p, j = verify_json("--digests", "--dtype", "fp32", nanc)
    nan = {t["name"]: (t["nan"], t["inf"]) for t in (j or {}).get("tensors", [])}
    tap.ok(j is not None and not j["sound"] and nan.get(params[0]["name"]) == (1, 0) and
           nan.get(params[1]["name"]) == (0, 1),
           "--json gives the NaN and Inf counts per tensor", nan)

    # A truncated optimizer file.
    tr = copy_fixture(d, "trunc")
    tpath = os.path.join(tr, ref["tag"], optim)
    os.truncate(tpath, os.path.getsize(tpath) // 2)
    p = verify(tr)
    tap.ok(p.returncode == 1 and optim in p.stdout and "unsound" in p.stdout,
           "a truncated file: exit 1 naming it", p.stdout + p.stderr)

# A rank file removed: the rank is named.
many = next((n for n in ("z3_ws4_frozen", "z3_ws3_bf16", "z2_ws3_frozen_bf16", "gen_z3_ws3_bf16")
             if n in byname), None)
if many:
    d, ref = byname[many]
    ws = ref["world_size"]
    for rank in (1, ws - 1):
        cp = copy_fixture(d, f"norank{rank}")
        tag = os.path.join(cp, ref["tag"])
        gone = [f for f in os.listdir(tag)
                if re.match(rf"(bf16_|fp16_)?zero_pp_rank_{rank}_.*optim_states\.pt$", f)]
        tap.ok(len(gone) == 1, f"{many}: rank {rank} has one optimizer file to remove", gone)
        for f in gone:
            os.remove(os.path.join(tag, f))
        p = verify(cp)
        named = f"rank {rank}" in p.stdout or f"rank_{rank}_" in p.stdout
        tap.ok(p.returncode == 1 and named,
               f"{many} without rank {rank}'s optimizer file: exit 1 naming the rank",
               p.stdout + p.stderr)
else:
    tap.skip("a removed rank file", "no fixture with 3 or more ranks")

# Exit codes that are not verdicts.
p = verify(os.path.join(work, "no-such-checkpoint"))
tap.ok(p.returncode == 3 and p.stdout == "", "a missing CKPT: exit 3 (nothing to judge)", p.stderr)
p = verify("--no-such-option", work)
tap.ok(p.returncode == 2, "a bad option: exit 2", p.stderr)
# --json: every outcome is one JSON object on stdout, errors included.
missing = os.path.join(work, "no-such-checkpoint")
p, j = verify_json(missing)
tap.ok(p.returncode == 3 and j and j["error"]["where"] == missing and j["exit"] == 3
       and j["error"]["message"] == "no such file or folder",
       "verify --json on a missing CKPT: a JSON error, exit 3", (p.returncode, p.stdout, p.stderr))
p, j = verify_json("--no-such-option", work)
tap.ok(p.returncode == 2 and j and j["error"]["status"] == "usage"
       and "--no-such-option" in j["error"]["message"],
       "verify --json with a bad option: a JSON usage error, exit 2", (p.returncode, p.stdout))
p = verify("--threads", "2", work)
tap.ok(p.returncode == 2 and "plain verify reads no data" in p.stderr,
       "--threads without --digests or --deep is a usage error", p.stderr)
if fx:
    p = verify("--dtype", "int8", fx[0][1])
    tap.ok(p.returncode == 2, "a bad --dtype: exit 2", p.stderr)

shutil.rmtree(work, ignore_errors=True)
tap.done()
