#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes tests/unit/convert_vectors.h: inputs and torch's Tensor.to()
results on CPU, so that test_convert.c can check zerofs against torch
without needing Python when it runs.

Run from the repository root with the Debian interpreter (torch 1.13):
    /usr/bin/python3 tests/unit/gen_convert_vectors.py > tests/unit/convert_vectors.h

The inputs are fixed by a seeded generator, so a re-run gives the same file
as long as torch gives the same answers. Each conversion is done twice,
once on the whole tensor (torch's vectorised kernel) and once element by
element (its scalar tail); the two must agree for every non-NaN input, and
the script stops if they do not.
"""
import random
import struct
import sys

import numpy as np
import torch


def f32_edges():
    e = set()
    for sign in (0, 0x80000000):
        for u in (0x00000000, 0x00000001, 0x007FFFFF, 0x00800000,
                  0x3F800000, 0x7F7FFFFF, 0x7F800000,
                  # bf16 ties: low half exactly 0x8000, even/odd kept part
                  0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001,
                  0x3F81FFFF, 0x7F7F8000, 0x7F7F7FFF, 0x7F7EFFFF,
                  0x7F7F0000, 0x00008000, 0x00018000, 0x00007FFF,
                  # fp16 overflow boundary around 65504/65520
                  0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001,
                  0x47800000, 0x477FFFFF,
                  # fp16 normal/subnormal boundaries
                  0x38800000, 0x387FFFFF, 0x387FE000, 0x387FF000,
                  0x387FEFFF, 0x33800000, 0x33000000, 0x33000001,
                  0x32FFFFFF, 0x33C00000, 0x33A00000, 0x33A00001,
                  0x34000000, 0x34200000, 0x34600000, 0x3F801000,
                  0x3F803000, 0x3F802000, 0x3F801001, 0x3F802FFF):
            e.add(u | sign)
    # powers of two across the whole range, +-1 ulp
    for exp in range(0, 255):
        for d in (-1, 0, 1):
            u = (exp << 23) + d
            if 0 <= u <= 0x7F800000:
                e.add(u)
                e.add(u | 0x80000000)
    # a few NaNs of each sign: quiet, signalling, payload in low bits
    for u in (0x7FC00000, 0x7F800001, 0x7FFFFFFF, 0x7F80FFFF, 0x7FA00000,
              0x7F807FFF, 0x7F808000, 0x7FBFFFFF, 0x7FC0FFFF):
        e.add(u)
        e.add(u | 0x80000000)
    return e


def f32_inputs(rng):
    xs = f32_edges()
    while len(xs) < 1500:
        xs.add(rng.getrandbits(32))
    # values in fp16's range, with ties and near-ties in the dropped bits
    while len(xs) < 3000:
        exp = rng.randrange(100, 144)
        mant = rng.getrandbits(23)
        if rng.random() < 0.5:
            mant = (mant & ~0x1FFF) | rng.choice((0x1000, 0xFFF, 0x1001))
        xs.add((rng.getrandbits(1) << 31) | (exp << 23) | mant)
    # bf16 ties
    while len(xs) < 3600:
        u = rng.getrandbits(32) & 0xFFFF0000
        xs.add(u | rng.choice((0x8000, 0x7FFF, 0x8001)))
    return sorted(xs)


def h16_inputs(rng):
    xs = {0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0x7C00,
          0xFC00, 0x7C01, 0x7E00, 0x7FFF, 0xFFFF, 0x7F80, 0xFF80, 0x7F7F,
          0x7FC0, 0x7F81, 0x3C00, 0x3F80, 0x0080, 0x007F, 0x3555, 0x3556}
    while len(xs) < 1200:
        xs.add(rng.getrandbits(16))
    return sorted(xs)


def to_bits(t, np_dtype):
    return t.contiguous().view(
        torch.int16 if t.element_size() == 2 else torch.int32
    ).numpy().view(np_dtype).tolist()


def isnan_f32(u):
    return (u & 0x7FFFFFFF) > 0x7F800000


def isnan_bf16(h):
    return (h & 0x7FFF) > 0x7F80


def isnan_f16(h):
    return (h & 0x7FFF) > 0x7C00


def convert(src_bits, src_dtype, src_np, dst_dtype, dst_np, src_isnan):
    arr = np.array(src_bits, dtype=src_np)
    t = torch.from_numpy(arr.view(np.int16 if src_np == np.uint16 else
                                  np.int32)).view(src_dtype)
    whole = to_bits(t.to(dst_dtype), dst_np)
    for i in range(len(src_bits)):
        one = to_bits(t[i:i + 1].clone().to(dst_dtype), dst_np)[0]
        if not src_isnan(src_bits[i]) and one != whole[i]:
            sys.exit("torch disagrees with itself on 0x%x: 0x%x vs 0x%x" %
                     (src_bits[i], one, whole[i]))
    return whole


def main():
    rng = random.Random(20240607)
    f32 = f32_inputs(rng)
    bf = convert(f32, torch.float32, np.uint32, torch.bfloat16, np.uint16,
                 isnan_f32)
    hf = convert(f32, torch.float32, np.uint32, torch.float16, np.uint16,
                 isnan_f32)
    h16 = h16_inputs(rng)
    bf_w = convert(h16, torch.bfloat16, np.uint16, torch.float32, np.uint32,
                   isnan_bf16)
    hf_w = convert(h16, torch.float16, np.uint16, torch.float32, np.uint32,
                   isnan_f16)
    bf_hf = convert(h16, torch.bfloat16, np.uint16, torch.float16, np.uint16,
                    isnan_bf16)
    hf_bf = convert(h16, torch.float16, np.uint16, torch.bfloat16, np.uint16,
                    isnan_f16)
    # sanity: the numpy bit views agree with struct packing
    assert struct.unpack("<I", struct.pack("<f", 1.0))[0] == 0x3F800000

    out = sys.stdout
    out.write("/* SPDX-License-Identifier: MIT */\n")
    out.write("/* Generated by tests/unit/gen_convert_vectors.py with torch "
              "%s; do not edit. */\n" % torch.__version__)
    out.write("#ifndef ZEROFS_TESTS_CONVERT_VECTORS_H\n")
    out.write("#define ZEROFS_TESTS_CONVERT_VECTORS_H\n\n")
    out.write("#include <stdint.h>\n\n")
    out.write("/* fp32 bits -> torch's bf16 and fp16 bits */\n")
    out.write("static const struct { uint32_t in; uint16_t bf16, f16; } "
              "cv_narrow[] = {\n")
    for u, b, h in zip(f32, bf, hf):
        out.write("\t{ 0x%08xu, 0x%04x, 0x%04x },\n" % (u, b, h))
    out.write("};\n\n")
    out.write("/* 16-bit pattern read as bf16 and as fp16 -> torch's fp32, "
              "and the cross conversions bf16->fp16, fp16->bf16 */\n")
    out.write("static const struct { uint16_t in; uint32_t bf16_f32, "
              "f16_f32; uint16_t bf16_f16, f16_bf16; } cv_wide[] = {\n")
    for h, a, b, c, d in zip(h16, bf_w, hf_w, bf_hf, hf_bf):
        out.write("\t{ 0x%04x, 0x%08xu, 0x%08xu, 0x%04x, 0x%04x },\n" %
                  (h, a, b, c, d))
    out.write("};\n\n#endif /* ZEROFS_TESTS_CONVERT_VECTORS_H */\n")


if __name__ == "__main__":
    main()
