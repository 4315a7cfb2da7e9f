"""Checks `zerofs inspect --json --extents` of a checkpoint against its
NAME.ref.json (the real fixtures' format, which tests/gen/make_ckpt.py
writes too): stage, world size, dtype, tag, names in state_dict order,
shapes, kinds, tied sources, and every tensor's bytes, read by following
the extents core computed, against the reference sha256."""
import os

from zftest import f32_to_bf16, inspect_json, read_extents, sha, to_f32

CHUNK = 64 << 20


def check(tap, label, ckpt, ref, extra_args=()):
    """Runs the checks as TAP lines; returns the inspect JSON (or None)."""
    try:
        info = inspect_json(ckpt, *extra_args)
    except Exception as e:  # noqa: BLE001
        tap.ok(False, f"{label}: inspect runs", e)
        return None
    tap.ok(info["stage"] == ref["zero_stage"] and info["world_size"] == ref["world_size"],
           f"{label}: stage {ref['zero_stage']}, world size {ref['world_size']}",
           (info["stage"], info["world_size"]))
    want_dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[ref["train_dtype"]]
    tap.ok(info["train_dtype"] == want_dtype, f"{label}: train dtype {want_dtype}", info["train_dtype"])
    tap.ok(info["tag"] == ref["tag"], f"{label}: tag {ref['tag']}")

    live = ref["live_state_dict"]
    got = info["tensors"]
    tap.ok([t["name"] for t in got] == [t["name"] for t in live],
           f"{label}: {len(got)} tensor names in state_dict order",
           f"got {[t['name'] for t in got][:20]}\nwant {[t['name'] for t in live][:20]}")
    tap.ok(len(got) == len(live) and all(g["shape"] == w["shape"] for g, w in zip(got, live)),
           f"{label}: shapes")
    entries = {e["name"]: e for e in ref.get("entries") or []}
    aliases = ref.get("aliases") or {}
    frozen = set(ref.get("frozen_names") or []) | set(ref.get("frozen_params_live") or [])
    buffers = set(ref.get("buffer_names") or [])

    def want_kind(n):
        if n in aliases:
            return "alias"
        if n in buffers:
            return "buffer"
        if n in frozen:
            return "frozen"
        return "param"
    bad_kinds = [(t["name"], t["kind"], want_kind(t["name"])) for t in got
                 if t["kind"] != want_kind(t["name"])]
    tap.ok(not bad_kinds, f"{label}: kinds", bad_kinds)
    bad_alias = [t["name"] for t in got if t["kind"] == "alias"
                 and t.get("source") != aliases.get(t["name"])]
    tap.ok(not bad_alias, f"{label}: tied aliases name their source", bad_alias)

    livemap = {t["name"]: t for t in live}
    mism, checked, big = [], 0, []
    for t in got:
        if t["kind"] == "alias":
            continue
        e = entries.get(t["name"])
        if e and e.get("big_zero"):
            big.append(t)
            continue
        raw = read_extents(info, t)
        f32 = to_f32(raw, t["dtype"])
        lv = livemap.get(t["name"])
        if e and e.get("sha256_fp32"):
            ok = sha(f32.tobytes()) == e["sha256_fp32"]
        elif lv is not None:
            # zero_to_fp32 has no answer here: compare with the live model,
            # in its own dtype (bf16 runs keep bf16 params: RNE of the master).
            ldt = lv["dtype"].replace("torch.", "")
            if ldt == "bfloat16" and t["dtype"] == "float32":
                native = f32_to_bf16(f32).tobytes()
            elif ldt == t["dtype"]:
                native = raw
            else:
                native = None
            ok = native is not None and sha(native) == lv["sha256_native"]
        else:
            ok = False
        checked += 1
        if not ok:
            mism.append(t["name"])
    tap.ok(not mism and checked > 0,
           f"{label}: bytes of {checked} tensors match the reference sha256", mism[:20])
    for t in got:
        if t["kind"] == "buffer" and t["dtype"] == "int64":
            tap.ok(sha(read_extents(info, t)) == livemap[t["name"]]["sha256_native"],
                   f"{label}: int64 buffer {t['name']} bytes equal the live model's")
    for t in big:
        # An all-zero tensor in a sparse file past 4 GiB: its extents must
        # reach beyond 4 GiB and hold exactly its bytes, all zero.
        total = sum(x[2] for x in t["extents"])
        far = max(x[1] + x[2] for x in t["extents"])
        tap.ok(total == t["numel"] * 4 and far > (4 << 30),
               f"{label}: {t['name']} ({total} bytes) is mapped past 4 GiB (to byte {far})")
        zeros = True
        for src, off, length in t["extents"]:
            with open(info["files"][src]["path"], "rb") as f:
                for pos in (off, off + length // 2, off + length - 4096):
                    f.seek(pos)
                    zeros &= f.read(4096) == bytes(4096)
        tap.ok(zeros, f"{label}: {t['name']} reads as zeros at its start, middle and end")
    return info
