"""--max-shard-size reads sizes as transformers' save_pretrained does: since
4.42 it hands a string to huggingface_hub's parse_size_to_int (TB/GB/MB/KB,
decimal, any case, the number as Python's float() reads it, the product cut
to whole bytes); a plain integer is bytes (save_pretrained takes an int).
TiB/GiB/MiB/KiB (binary) are zerofs' own: huggingface_hub refuses them.

The table below holds the values huggingface_hub gives. When it is
importable, each one is also asked of parse_size_to_int itself, and
transformers' save_pretrained is checked to go through it, so the table
cannot drift; zerofs refuses what it refuses, and sizes under 1 byte. Then
the same through the command line: --max-shard-size 20KB, 20kb and 0.02MB
give the same shards.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import BUILD, Tap, checkpoints, run  # noqa: E402

tap = Tap()

# string -> bytes as huggingface_hub's parse_size_to_int gives them, or
# None where it raises. Plain integers are what save_pretrained takes as an
# int; BINARY are zerofs' own units (huggingface_hub refuses them).
TABLE = {
    "5GB": 5000000000, "5gb": 5000000000, "5Gb": 5000000000, "5gB": 5000000000,
    "100MB": 100000000, "100mb": 100000000, "10KB": 10000, "1kb": 1000, "2TB": 2000000000000,
    " 5GB": 5000000000, "5GB ": 5000000000, "5 GB": 5000000000, "+2MB": 2000000,
    "1_000KB": 1000000, "007MB": 7000000, "50GB": 50000000000, "1.5GB": 1500000000,
    "4.35MB": 4350000, "0.3KB": 300, ".5KB": 500, "5.KB": 5000, "1e3KB": 1000000,
    "1.1GB": 1100000000, "2.675MB": 2675000, "12345": 12345, "1": 1,
    "-1GB": -1000000000, "0GB": 0, "0.0001KB": 0,
    "5B": None, "GB": None, "": None, "5 G B": None, "0x10GB": None, "1__0KB": None,
    "_1KB": None, "1_KB": None, "infGB": None, "nanGB": None, "1e400GB": None,
}
BINARY = {
    "5GiB": 5368709120, "5gib": 5368709120, "100MiB": 104857600, "10KiB": 10240,
    "1.5GiB": 1610612736, "1TiB": 1099511627776,
}

try:
    from huggingface_hub.serialization._base import parse_size_to_int
except ImportError:
    parse_size_to_int = None
    print("# huggingface_hub is not importable here: the table embedded in this test "
          "(values its parse_size_to_int gives) is used alone")

if parse_size_to_int is not None:
    def hub(s):
        if re.fullmatch(r"[0-9]+", s):
            return int(s)
        try:
            return parse_size_to_int(s)
        except (ValueError, OverflowError):
            return None
    differ = [(s, want, hub(s)) for s, want in TABLE.items() if hub(s) != want]
    tap.ok(not differ, "the embedded table is what huggingface_hub's parse_size_to_int gives",
           differ)
    tap.ok(all(hub(s) is None for s in BINARY),
           "huggingface_hub refuses the binary units (zerofs' own)",
           [(s, hub(s)) for s in BINARY])
    try:
        import inspect
        from transformers import PreTrainedModel
        src = inspect.getsource(PreTrainedModel.save_pretrained)
        tap.ok("split_torch_state_dict_into_shards" in src,
               "transformers' save_pretrained shards with huggingface_hub (which parses "
               "the size with parse_size_to_int)")
    except ImportError:
        print("# transformers is not importable here: save_pretrained not looked at")

TABLE.update(BINARY)
tool = os.path.join(BUILD, "tests", "size_tool")
p = subprocess.run([tool] + list(TABLE), capture_output=True, text=True)
lines = p.stdout.splitlines()
tap.ok(p.returncode == 0 and len(lines) == len(TABLE), "size_tool answers every size", p.stderr)
for (s, want), line in zip(TABLE.items(), lines):
    if want is not None and want > 0:
        tap.ok(line == str(want), f"--max-shard-size {s!r} is {want} bytes", line)
    elif want is None:
        tap.ok(line.startswith("error: ") and "is not a size" in line,
               f"--max-shard-size {s!r} is refused, as huggingface_hub refuses it", line)
    else:
        tap.ok(line.startswith("error: ") and "at least 1 byte" in line,
               f"--max-shard-size {s!r} ({want} for huggingface_hub) is refused: under 1 byte",
               line)

# Through the command line: verify's directory line counts the shards.
ck = checkpoints()
if ck:
    name, d, _ = ck[0]

    def shards(size):
        p = run(["verify", d, "--max-shard-size", size, "--dtype", "fp32"])
        m = re.search(r"in (\d+) shards?", p.stdout)
        return p.returncode, (int(m.group(1)) if m else None), p.stderr

    rc1, n1, e1 = shards("20KB")
    rc2, n2, e2 = shards("20kb")
    rc4, n4, e4 = shards("0.02MB")
    tap.ok(rc1 == 0 and rc2 == 0 and rc4 == 0 and n1 and n1 > 1 and n1 == n2 == n4,
           f"{name}: --max-shard-size 20KB, 20kb and 0.02MB give the same shards",
           (rc1, n1, e1, rc2, n2, e2, rc4, n4, e4))
    rc3, n3, _ = shards("5GiB")
    tap.ok(rc3 == 0 and n3 == 1, f"{name}: --max-shard-size 5GiB is taken (one shard)", (rc3, n3))
    p = run(["verify", d, "--max-shard-size", "5B"])
    tap.ok(p.returncode == 2 and "'5B' is not a size" in p.stderr,
           "--max-shard-size 5B: usage error naming the value", p.stderr)
else:
    tap.ok(False, "a checkpoint to try --max-shard-size on")
tap.done()
