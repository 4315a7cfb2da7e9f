"""--max-shard-size reads sizes exactly as transformers' save_pretrained
does (convert_file_size_to_int, transformers/utils/hub.py): GiB/MiB/KiB
binary, GB/MB/KB decimal, a lowercase final b counting bits, Python int()
for the number; a plain integer is bytes (transformers takes an int).

The table below holds the values transformers gives. When transformers is
importable, each one is also asked of transformers itself, so the table
cannot drift from it; zerofs refuses what transformers refuses, and sizes
of 0 bytes or less. Then the same through the command line: the shard
counts of --max-shard-size 20KB and 160kb (20,000 bytes as bits) agree.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import BUILD, Tap, checkpoints, run  # noqa: E402

tap = Tap()

# string -> bytes as transformers' convert_file_size_to_int gives them,
# or None where it raises ValueError. Plain integers are what it returns
# for an int.
TABLE = {
    "5GB": 5000000000, "5GiB": 5368709120, "5gib": 5368709120,
    "100MB": 100000000, "100MiB": 104857600, "10KB": 10000, "10KiB": 10240,
    "10kib": 10240, "5gb": 625000000, "5Gb": 625000000, "5gB": 5000000000,
    "100mb": 12500000, "1kb": 125, "3Kb": 375, " 5GB": 5000000000,
    "5 GB": 5000000000, "+2MB": 2000000, "1_000KB": 1000000, "007MB": 7000000,
    "50GB": 50000000000, "12345": 12345, "1": 1,
    "-1GB": -1000000000, "0GB": 0, "-5gb": -625000000,
    "1.5GB": None, "2TB": None, "5GB ": None, "5B": None, "GB": None, "": None,
    "5 G B": None, "0x10GB": None, "1__0KB": None, "_1KB": None, "1_KB": None,
    "5e3KB": None, "1.0MiB": None,
}

try:
    from transformers.utils.hub import convert_file_size_to_int
except ImportError:
    convert_file_size_to_int = None
    print("# transformers is not importable here: the table embedded in this test "
          "(values transformers' convert_file_size_to_int gives) is used alone")

if convert_file_size_to_int is not None:
    differ = []
    for s, want in TABLE.items():
        try:
            got = convert_file_size_to_int(int(s) if re.fullmatch(r"[0-9]+", s) else s)
        except ValueError:
            got = None
        if got != want:
            differ.append((s, want, got))
    tap.ok(not differ, "the embedded table is what transformers' convert_file_size_to_int gives",
           differ)

tool = os.path.join(BUILD, "tests", "size_tool")
p = subprocess.run([tool] + list(TABLE), capture_output=True, text=True)
lines = p.stdout.splitlines()
tap.ok(p.returncode == 0 and len(lines) == len(TABLE), "size_tool answers every size", p.stderr)
for (s, want), line in zip(TABLE.items(), lines):
    if want is not None and want > 0:
        tap.ok(line == str(want), f"--max-shard-size {s!r} is {want} bytes", line)
    elif want is None:
        tap.ok(line.startswith("error: ") and "is not a size" in line,
               f"--max-shard-size {s!r} is refused, as transformers refuses it", line)
    else:
        tap.ok(line.startswith("error: ") and "more than 0 bytes" in line,
               f"--max-shard-size {s!r} ({want} for transformers) is refused: not a size", line)

# Through the command line: verify's directory line counts the shards.
ck = checkpoints()
if ck:
    name, d, _ = ck[0]

    def shards(size):
        p = run(["verify", d, "--max-shard-size", size, "--dtype", "fp32"])
        m = re.search(r"in (\d+) shards?", p.stdout)
        return p.returncode, (int(m.group(1)) if m else None), p.stderr

    rc1, n1, e1 = shards("20KB")
    rc2, n2, e2 = shards("160kb")
    tap.ok(rc1 == 0 and rc2 == 0 and n1 and n1 > 1 and n1 == n2,
           f"{name}: --max-shard-size 160kb (bits) gives the shards of 20KB", (rc1, n1, e1, rc2, n2, e2))
    rc3, n3, _ = shards("5GiB")
    tap.ok(rc3 == 0 and n3 == 1, f"{name}: --max-shard-size 5GiB is taken (one shard)", (rc3, n3))
    p = run(["verify", d, "--max-shard-size", "1.5GB"])
    tap.ok(p.returncode == 2 and "'1.5GB' is not a size" in p.stderr,
           "--max-shard-size 1.5GB: usage error naming the value", p.stderr)
else:
    tap.ok(False, "a checkpoint to try --max-shard-size on")
tap.done()
