"""A strict, independent safetensors + index validator, written from the
rules of man/zerofs-safetensors.5 and the upstream code it names (not from
zerofs' code).

It accepts exactly what a file written by safetensors.torch.save_file(...,
metadata={"format": "pt"}) and a folder written by transformers'
save_pretrained() look like, which is stricter than the Rust reader (the
page's CLIENTS says what the reader checks; SAFETENSORS FILES and SHARDS what
the writers produce, and zerofs promises the writers' bytes).

    validate_file(path_or_bytes)  -> StFile (raises Invalid listing every problem)
    validate_dir(path, ...)       -> StDir  (the whole HF directory: single file
                                     or shards + index)
    load_file(path)               -> OrderedDict name -> (dtype, shape, bytes)
    load_dir(path)                -> the same over every shard (own loader: no
                                     safetensors/transformers needed)
"""
import collections
import json
import os
import re
import struct

OD = collections.OrderedDict

MAX_HEADER_SIZE = 100_000_000

# Dtype enum in declaration order ("Tensor order"): save_file sorts by DESCENDING
# position, then ascending name.
DTYPE_ORDER = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3",
               "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16",
               "I32", "U32", "F32", "C64", "F64", "I64", "U64"]
DTYPE_RANK = {d: i for i, d in enumerate(DTYPE_ORDER)}
DTYPE_BITS = {"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
              "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8,
              "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32,
              "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64}
U64_MAX = (1 << 64) - 1

SHARD_RE = re.compile(r"^model-(\d{5})-of-(\d{5})\.safetensors$")
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


class Invalid(Exception):
    def __init__(self, where, problems):
        self.where = where
        self.problems = list(problems)
        super().__init__("%s: %s" % (where, "; ".join(self.problems[:10])))


class StFile:
    """A validated file: header_len, header (the parsed JSON as an OrderedDict),
    metadata, tensors (OrderedDict name -> dict(dtype, shape, begin, end) in
    on-disk order), data_start, size."""


def _reject_constant(s):
    raise ValueError("non-JSON constant %s" % s)


def _pairs_no_dup(pairs):
    d = OD()
    for k, v in pairs:
        if k in d:
            raise ValueError("duplicate key %r" % k)
        d[k] = v
    return d


def _nelems(shape):
    n = 1
    for d in shape:
        n *= d
        if n > U64_MAX:
            return None
    return n


def _is_uint(v):
    return type(v) is int and 0 <= v <= U64_MAX


def parse_header(buf, where="file", problems=None):
    """Checks of "Header", "Tensor order" and CLIENTS on the bytes of a whole
    file. Returns StFile;
    appends to problems (a list) or raises Invalid."""
    raise_at_end = problems is None
    if problems is None:
        problems = []
    st = StFile()
    st.size = len(buf)
    st.tensors = OD()
    st.metadata = None
    st.header = None
    if len(buf) < 8:
        problems.append("file is %d bytes, shorter than the 8-byte length prefix" % len(buf))
        raise Invalid(where, problems)
    n = struct.unpack("<Q", buf[:8])[0]
    st.header_len = n
    st.data_start = 8 + n
    if n > MAX_HEADER_SIZE:
        problems.append("header length %d > %d" % (n, MAX_HEADER_SIZE))
        raise Invalid(where, problems)
    if 8 + n > len(buf):
        problems.append("header length %d runs past the end of the %d-byte file" % (n, len(buf)))
        raise Invalid(where, problems)
    if n % 8 != 0:
        problems.append("header length %d is not a multiple of 8" % n)
    raw = bytes(buf[8:8 + n])
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        problems.append("header is not UTF-8: %s" % e)
        raise Invalid(where, problems)
    # Padding: the writer appends ASCII spaces only, fewer than 8, after the
    # compact JSON, which has no leading whitespace.
    body = text.rstrip(" ")
    pad = len(text) - len(body)
    if pad >= 8:
        problems.append("%d padding spaces (save_file pads fewer than 8)" % pad)
    if body != body.strip(" \t\r\n"):
        problems.append("header JSON has leading or non-space trailing whitespace")
    if not body.startswith("{"):
        problems.append("header does not start with '{'")
    try:
        hdr = json.loads(body, object_pairs_hook=_pairs_no_dup, parse_constant=_reject_constant)
    except ValueError as e:
        problems.append("header is not valid JSON: %s" % e)
        raise Invalid(where, problems)
    if not isinstance(hdr, dict):
        problems.append("header JSON is not an object")
        raise Invalid(where, problems)
    st.header = hdr
    # The writer's exact text ("Header"): compact, __metadata__ first,
    # fields dtype, shape, data_offsets in that order, ensure_ascii=False.
    compact = json.dumps(hdr, separators=(",", ":"), ensure_ascii=False)
    if compact != body:
        problems.append("header is not serde_json's compact text of itself "
                        "(spacing, escapes or number forms differ)")
    keys = list(hdr)
    if "__metadata__" not in hdr:
        problems.append("no __metadata__")
    else:
        if keys[0] != "__metadata__":
            problems.append("__metadata__ is not the first key")
        md = hdr["__metadata__"]
        st.metadata = md
        if md != {"format": "pt"}:
            problems.append("__metadata__ is %r, not {\"format\": \"pt\"}" % (md,))
    entries = []
    for name, ti in hdr.items():
        if name == "__metadata__":
            continue
        if not isinstance(ti, dict):
            problems.append("%s: tensor info is not an object" % name)
            continue
        if list(ti) != ["dtype", "shape", "data_offsets"]:
            problems.append("%s: fields are %r, not dtype, shape, data_offsets" % (name, list(ti)))
        dt = ti.get("dtype")
        shape = ti.get("shape")
        offs = ti.get("data_offsets")
        if not isinstance(dt, str) or dt not in DTYPE_RANK:
            problems.append("%s: unknown dtype %r" % (name, dt))
            continue
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            problems.append("%s: shape %r is not a list of non-negative integers" % (name, shape))
            continue
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(_is_uint(o) for o in offs)):
            problems.append("%s: data_offsets %r is not two non-negative integers" % (name, offs))
            continue
        if name == "":
            problems.append("empty tensor name")
        entries.append((name, dt, shape, offs[0], offs[1]))
    # The reader's check (CLIENTS): sorted by (start, end), contiguous from 0,
    # size matches.
    start = 0
    for name, dt, shape, b, e in sorted(entries, key=lambda x: (x[3], x[4])):
        if b != start or e < b:
            problems.append("%s: data_offsets [%d, %d] leave a hole or overlap (expected start %d)"
                            % (name, b, e, start))
        start = max(start, e)
        ne = _nelems(shape)
        if ne is None or ne * DTYPE_BITS[dt] > U64_MAX:
            problems.append("%s: size overflows" % name)
            continue
        nbits = ne * DTYPE_BITS[dt]
        if nbits % 8:
            problems.append("%s: misaligned slice" % name)
        if e - b != nbits // 8:
            problems.append("%s: %d bytes for %s %r (expected %d)" % (name, e - b, dt, shape, nbits // 8))
    end = max([e for *_, e in entries], default=0)
    if 8 + n + end != len(buf):
        problems.append("file is %d bytes, header says %d (8 + %d + %d)" % (len(buf), 8 + n + end, n, end))
    # "Tensor order": save_file order is descending dtype rank, then name;
    # header lists them in that order, and offsets follow the same order.
    want = sorted(entries, key=lambda x: (-DTYPE_RANK[x[1]], x[0].encode("utf-8")))
    if [x[0] for x in entries] != [x[0] for x in want]:
        problems.append("tensors are not in save_file order (descending dtype, then name): %r"
                        % [x[0] for x in entries][:8])
    pos = 0
    for name, dt, shape, b, e in want:
        if b != pos:
            problems.append("%s: laid out at %d, save_file order puts it at %d" % (name, b, pos))
            break
        pos = e
    # Alignment ("Tensor order": the padding and the order together): every
    # tensor aligned to its element size.
    for name, dt, shape, b, e in entries:
        el = max(1, DTYPE_BITS[dt] // 8)
        if (8 + n + b) % el:
            problems.append("%s: file offset %d not aligned to %d" % (name, 8 + n + b, el))
    for name, dt, shape, b, e in entries:
        st.tensors[name] = {"dtype": dt, "shape": list(shape), "begin": b, "end": e}
    if raise_at_end and problems:
        raise Invalid(where, problems)
    return st


def validate_file(src):
    """src: a path or the bytes of a whole file."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return parse_header(bytes(src), "<bytes>")
    with open(src, "rb") as f:
        buf = f.read()
    st = parse_header(buf, os.path.basename(src))
    st.path = src
    return st


def tensor_nbytes(ti):
    return ti["end"] - ti["begin"]


class StDir:
    """files: OrderedDict shard name -> StFile; weight_map: name -> shard;
    index (the parsed index or None); total_size."""


def validate_dir(path, others=None):
    """Validates the model files of an HF directory: either exactly one
    model.safetensors and no index, or model-0000k-of-0000n.safetensors for
    k = 1..n (n > 1) with model.safetensors.index.json. others: the exact set
    of the remaining (non-model) file names expected in the folder, or None to
    not check them. Raises Invalid with every problem."""
    problems = []
    names = sorted(os.listdir(path))
    shards = [n for n in names if SHARD_RE.match(n)]
    has_single = SINGLE_NAME in names
    has_index = INDEX_NAME in names
    stray = [n for n in names if n.endswith(".safetensors") and n not in shards and n != SINGLE_NAME]
    if stray:
        problems.append("unexpected safetensors files %r" % stray)
    d = StDir()
    d.files = OD()
    d.weight_map = OD()
    d.index = None
    if others is not None:
        rest = set(names) - set(shards) - {SINGLE_NAME, INDEX_NAME}
        if rest != set(others):
            problems.append("other files %r, expected %r" % (sorted(rest), sorted(others)))
    if has_single:
        if shards:
            problems.append("both model.safetensors and shards %r" % shards)
        if has_index:
            problems.append("model.safetensors.index.json beside a single model.safetensors")
        try:
            st = validate_file(os.path.join(path, SINGLE_NAME))
            d.files[SINGLE_NAME] = st
            for t in st.tensors:
                d.weight_map[t] = SINGLE_NAME
        except Invalid as e:
            problems.extend(e.problems)
        d.total_size = sum(tensor_nbytes(ti) for st in d.files.values() for ti in st.tensors.values())
        if problems:
            raise Invalid(path, problems)
        return d
    if not shards:
        problems.append("no model.safetensors and no shards")
        raise Invalid(path, problems)
    nums = []
    for s in shards:
        m = SHARD_RE.match(s)
        nums.append((int(m.group(1)), int(m.group(2))))
    ns = {b for _, b in nums}
    if len(ns) != 1:
        problems.append("shards disagree on their count: %r" % shards)
    n = max(ns)
    if n < 2:
        problems.append("a single shard must be named model.safetensors, got %r" % shards)
    if sorted(k for k, _ in nums) != list(range(1, n + 1)):
        problems.append("shard numbers %r are not 1..%d" % ([k for k, _ in nums], n))
    for s in shards:
        try:
            d.files[s] = validate_file(os.path.join(path, s))
        except Invalid as e:
            problems.extend(e.problems)
    if not has_index:
        problems.append("shards without model.safetensors.index.json")
        raise Invalid(path, problems)
    with open(os.path.join(path, INDEX_NAME), "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
        idx = json.loads(text, object_pairs_hook=_pairs_no_dup, parse_constant=_reject_constant)
    except ValueError as e:
        problems.append("index is not JSON: %s" % e)
        raise Invalid(path, problems)
    d.index = idx
    if not isinstance(idx, dict) or set(idx) != {"metadata", "weight_map"}:
        problems.append("index keys %r, expected metadata and weight_map" % (list(idx) if isinstance(idx, dict) else idx))
        raise Invalid(path, problems)
    want_text = json.dumps(idx, indent=2, sort_keys=True) + "\n"
    if text != want_text:
        problems.append("index text is not json.dumps(indent=2, sort_keys=True) + newline")
    md, wm = idx["metadata"], idx["weight_map"]
    if not isinstance(md, dict) or not isinstance(wm, dict):
        problems.append("index metadata/weight_map are not objects")
        raise Invalid(path, problems)
    extra = set(md) - {"total_size", "total_parameters"}
    if extra or "total_size" not in md:
        problems.append("index metadata keys %r (want total_size[, total_parameters])" % list(md))
    total = sum(tensor_nbytes(ti) for st in d.files.values() for ti in st.tensors.values())
    d.total_size = total
    if type(md.get("total_size")) is not int or md.get("total_size") != total:
        problems.append("metadata.total_size %r != %d, the sum of tensor bytes" % (md.get("total_size"), total))
    if "total_parameters" in md and (type(md["total_parameters"]) is not int or md["total_parameters"] < 0):
        problems.append("metadata.total_parameters %r is not a count" % md["total_parameters"])
    seen = {}
    for s, st in d.files.items():
        if not st.tensors:
            problems.append("%s holds no tensor" % s)
        for t in st.tensors:
            if t in seen:
                problems.append("%s is in both %s and %s" % (t, seen[t], s))
            seen[t] = s
    for t, s in wm.items():
        if not isinstance(s, str) or not SHARD_RE.match(s) or s not in d.files:
            problems.append("weight_map[%r] = %r is not a shard of the folder" % (t, s))
        elif seen.get(t) != s:
            problems.append("weight_map[%r] = %r but the tensor is in %r" % (t, s, seen.get(t)))
    missing = set(seen) - set(wm)
    if missing:
        problems.append("tensors missing from weight_map: %r" % sorted(missing)[:10])
    if set(wm.values()) != set(d.files):
        problems.append("weight_map names shards %r, folder holds %r" % (sorted(set(wm.values())), list(d.files)))
    for t in wm:
        d.weight_map[t] = wm[t]
    if problems:
        raise Invalid(path, problems)
    return d


def hf_split(sizes, max_size):
    """huggingface_hub's split_state_dict_into_shards_factory ("Split") on
    [(name, nbytes)] in state-dict order: list of lists of names, in shard
    order."""
    shards = []
    cur, cur_size = [], 0
    for name, size in sizes:
        if size > max_size:
            shards.append([name])
            continue
        if cur_size + size > max_size:
            shards.append(cur)
            cur, cur_size = [], 0
        cur.append(name)
        cur_size += size
    if cur:
        shards.append(cur)
    return shards


def load_file(path):
    """OrderedDict name -> (dtype, shape, bytes), after validate_file."""
    with open(path, "rb") as f:
        buf = f.read()
    st = parse_header(buf, os.path.basename(path))
    out = OD()
    for name, ti in st.tensors.items():
        out[name] = (ti["dtype"], ti["shape"], buf[st.data_start + ti["begin"]:st.data_start + ti["end"]])
    return out


def load_dir(path):
    """Every tensor of an HF directory (single file or shards via the index),
    as transformers loads it: index -> sorted(set(weight_map.values()))."""
    ip = os.path.join(path, INDEX_NAME)
    sp = os.path.join(path, SINGLE_NAME)
    out = OD()
    if os.path.exists(sp):
        return load_file(sp)
    with open(ip) as f:
        idx = json.load(f)
    for s in sorted(set(idx["weight_map"].values())):
        for k, v in load_file(os.path.join(path, s)).items():
            out[k] = v
    return out
