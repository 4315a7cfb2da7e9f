#!/bin/sh
# The zerofs demo: generate a small ZeRO-3 bf16 checkpoint in DeepSpeed's
# layout (4 ranks, as the Hugging Face Trainer saves it), inspect it, mount
# it as a Hugging Face model directory, show ls -l, du -h and one tensor,
# and unmount. Needs FUSE (root, or a user allowed to mount with fusermount3).
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
work=build/demo
rm -rf "$work"
mkdir -p "$work/mnt"
mnt=$(cd "$work/mnt" && pwd)

echo "== generating a ZeRO-3 checkpoint (4 ranks, bf16 training, HF Trainer layout)"
"$PYTHON" tests/gen/make_ckpt.py --out "$work" --name checkpoint-100 --stage 3 --ws 4 \
	--dtype bf16 --layout trainer --tied --frozen --hidden 64 --layers 4 --vocab 2048 >/dev/null
ckpt="$work/checkpoint-100"
ls -l "$ckpt" "$ckpt"/global_step*

echo
echo "== zerofs inspect $ckpt 'model.layers.0.*' (the summary, then layer 0's tensors)"
./zerofs inspect "$ckpt" 'model.layers.0.*'

echo
echo "== zerofs mount $ckpt $mnt --max-shard-size 200KB"
./zerofs mount "$ckpt" "$mnt" --max-shard-size 200KB
trap './zerofs umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true' EXIT
echo
echo "== ls -l $mnt"
ls -l "$mnt"
echo
echo "== du -h $mnt"
du -h "$mnt"/*
echo
echo "== a tensor, read through the mount with nothing but the safetensors rules"
"$PYTHON" - "$mnt" <<'PY'
import json, struct, sys
import numpy as np
mnt = sys.argv[1]
index = json.load(open(f"{mnt}/model.safetensors.index.json"))
name = "model.layers.0.self_attn.q_proj.weight"
shard = index["weight_map"][name]
with open(f"{mnt}/{shard}", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    info = header[name]
    a, b = info["data_offsets"]
    f.seek(8 + n + a)
    raw = f.read(b - a)
bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
t = bits.view(np.float32).reshape(info["shape"])
print(f"{name} in {shard}: dtype {info['dtype']}, shape {info['shape']}")
print(np.array2string(t[:3, :6], precision=4))
cfg = json.load(open(f"{mnt}/config.json"))
print("config.json torch_dtype:", cfg.get("torch_dtype"))
PY
echo
echo "== zerofs umount $mnt"
./zerofs umount "$mnt"
trap - EXIT
