"""Mounting the folder layouts people actually have, made by
tests/gen/make_ckpt.py:
 (a) a HF Trainer checkpoint-N folder (config, tokenizer, trainer state, rng
     state, training args beside global_stepN/): config.json passes through
     with torch_dtype == the served dtype, tokenizer and generation files are
     byte-identical, no training state is served;
 (b) an XTuner iter_N.pth/ folder: 'llm.' removed from every name, and
     --config DIR takes config and tokenizer from (a)'s folder;
 (c) ZeRO-3 on 16 ranks with odd shapes (0-element, 1-element, scalar
     buffer, 13x5), in bf16 and fp32, hashes against the generator's ref.json;
 (d) a folder without config.json: the mount works and stderr says how to
     add one (--config).
No python3-safetensors/transformers on Debian 12: tensors are loaded with
tests/lib/st_validate.py's own loader."""
import json
import os
import traceback
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import Tap, ROOT, TMPROOT, sha  # noqa: E402
from zfmount import mounted, MountFailed  # noqa: E402
from zfexpect import Expect  # noqa: E402
import st_validate as sv  # noqa: E402

tap = Tap()
GEN = os.path.join(ROOT, "tests", "gen", "make_ckpt.py")
PY = "/usr/bin/python3"
WORK = tempfile.mkdtemp(prefix="t220-", dir=TMPROOT)
TORCH_NAME = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def gen(name, *args):
    p = subprocess.run([PY, GEN, "--out", WORK, "--name", name] + list(args),
                       capture_output=True, text=True)
    ok = tap.ok(p.returncode == 0, "generate %s (%s)" % (name, " ".join(args)), p.stderr[-2000:])
    if not ok:
        return None, None
    with open(os.path.join(WORK, name + ".ref.json")) as f:
        return os.path.join(WORK, name), json.load(f)


def readb(p):
    with open(p, "rb") as f:
        return f.read()


def check_tensors(tag, m, ex, dt):
    """Strict validation + every tensor's hash; returns the loaded tensors."""
    try:
        sv.validate_dir(m.path)
        tap.ok(True, "%s: valid safetensors directory" % tag)
    except sv.Invalid as e:
        tap.ok(False, "%s: valid safetensors directory" % tag, "\n".join(e.problems))
        return {}
    t = sv.load_dir(m.path)
    tap.ok(set(t) == set(ex.names), "%s: served names == live state_dict minus tied aliases" % tag,
           "missing %s\nextra %s" % (sorted(set(ex.names) - set(t)), sorted(set(t) - set(ex.names))))
    bad = []
    for n in ex.names:
        if n not in t:
            continue
        want = ex.sha(n, dt)
        if want is None or sha(t[n][2]) != want or t[n][1] != ex.shape(n):
            bad.append((n, t[n][0], t[n][1]))
    tap.ok(not bad and not ex.problems, "%s: %d tensors hash to the reference" % (tag, len(ex.names)),
           bad + ex.problems)
    return t


try:
    if not os.path.exists(GEN):
        tap.ok(False, "tests/gen/make_ckpt.py exists")
        tap.done()

    # ---- (a) HF Trainer checkpoint-N -------------------------------------------
    TRAINER_META = ["config.json", "generation_config.json", "special_tokens_map.json",
                    "tokenizer.json", "tokenizer_config.json"]
    ck, ref = gen("checkpoint-3", "--layout", "trainer", "--stage", "3", "--ws", "2",
                  "--dtype", "bf16", "--tied")
    if ck:
        # extra things a Trainer folder holds that must not be served, and
        # more tokenizer files that must be
        with open(os.path.join(ck, "scheduler.pt"), "wb") as f:
            f.write(b"PK\x03\x04 not a model file")
        with open(os.path.join(ck, "tokenizer.model"), "wb") as f:
            f.write(bytes(range(256)) * 3 + b"\x00\xff tail")
        with open(os.path.join(ck, "merges.txt"), "w") as f:
            f.write("#version: 0.2\nt 3\n")
        with open(os.path.join(ck, "README.md"), "w") as f:
            f.write("model card, not served\n")
        served_meta = TRAINER_META + ["tokenizer.model", "merges.txt"]
        training_state = ["trainer_state.json", "training_args.bin", "rng_state_0.pth",
                          "rng_state_1.pth", "scheduler.pt", "latest", "zero_to_fp32.py",
                          "global_step3", "README.md"]
        for f in training_state:
            assert os.path.exists(os.path.join(ck, f)), f
        orig_cfg = json.loads(readb(os.path.join(ck, "config.json")))
        ex = Expect(ck, ref)
        for dt in ("auto", "fp32", "bf16", "fp16"):
            tag = "(a) trainer checkpoint-3 --dtype %s" % dt
            try:
                with mounted(ck, "--dtype", dt) as m:
                    tap.ok(True, "%s: mounts" % tag)
                    listing = sorted(os.listdir(m.path))
                    want = sorted(["model.safetensors"] + served_meta)
                    tap.ok(listing == want, "%s: lists exactly the model, config and tokenizer files"
                           % tag, "got %s\nwant %s" % (listing, want))
                    leaked = [f for f in training_state if os.path.lexists(m.file(f))]
                    tap.ok(not leaked, "%s: no training state (trainer_state, training_args, rng_state, "
                           "scheduler, latest, global_step3, zero_to_fp32.py, README)" % tag, leaked)
                    served = ex.resolve(dt)
                    raw = readb(m.file("config.json"))
                    try:
                        cfg = json.loads(raw)
                    except ValueError as e:
                        cfg = None
                        tap.ok(False, "%s: config.json is JSON" % tag, e)
                    if cfg is not None:
                        tap.ok(cfg.get("torch_dtype") == served,
                               "%s: config.json torch_dtype == %s" % (tag, served), cfg.get("torch_dtype"))
                        a = {k: v for k, v in cfg.items() if k != "torch_dtype"}
                        b = {k: v for k, v in orig_cfg.items() if k != "torch_dtype"}
                        tap.ok(a == b, "%s: every other config.json key passes through unchanged" % tag,
                               {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)})
                    st = os.stat(m.file("config.json"))
                    tap.ok(st.st_size == len(raw), "%s: config.json st_size == bytes read" % tag,
                           (st.st_size, len(raw)))
                    diff = [f for f in served_meta if f != "config.json" and
                            readb(m.file(f)) != readb(os.path.join(ck, f))]
                    tap.ok(not diff, "%s: tokenizer and generation files byte-identical" % tag, diff)
                    bad = [f for f in served_meta if os.stat(m.file(f)).st_size != len(readb(m.file(f)))]
                    tap.ok(not bad, "%s: their st_size == bytes read" % tag, bad)
                    check_tensors(tag, m, ex, dt)
            except MountFailed as e:
                tap.ok(False, "%s: mounts" % tag, e)
            except Exception:  # noqa: BLE001 - report, unmount, go on
                tap.ok(False, "%s: checks run without an exception" % tag, traceback.format_exc())

    # ---- (b) XTuner iter_N.pth ---------------------------------------------------
    xt, xref = gen("xt", "--layout", "xtuner", "--stage", "2", "--ws", "2", "--dtype", "fp16", "--tied")
    if xt:
        tagdir = os.path.join(xt, xref["tag"])
        tap.ok(xref["tag"].startswith("iter_") and xref["tag"].endswith(".pth") and os.path.isdir(tagdir),
               "(b) generator wrote an iter_N.pth/ folder", xref["tag"])
        tap.ok(all(e["name"].startswith("llm.") for e in xref["live_state_dict"]),
               "(b) the XTuner model's names all start with llm.")
        ex = Expect(tagdir, xref)
        for target, what in ((tagdir, "iter_3.pth/"), (xt, "work dir")):
            for dt, cfgargs in (("auto", []), ("bf16", ["--config", ck] if ck else [])):
                tag = "(b) xtuner %s --dtype %s%s" % (what, dt, " --config" if cfgargs else "")
                try:
                    with mounted(target, "--dtype", dt, *cfgargs) as m:
                        tap.ok(True, "%s: mounts" % tag)
                        t = check_tensors(tag, m, ex, dt)
                        tap.ok(t and not any(n.startswith("llm.") for n in t),
                               "%s: no served name starts with llm." % tag, [n for n in t if n.startswith("llm.")])
                        listing = sorted(os.listdir(m.path))
                        if cfgargs:
                            want = sorted(["model.safetensors"] + served_meta)
                            tap.ok(listing == want, "%s: config and tokenizer files from --config DIR" % tag,
                                   listing)
                            cfg = json.loads(readb(m.file("config.json")))
                            tap.ok(cfg.get("torch_dtype") == "bfloat16",
                                   "%s: config.json torch_dtype == bfloat16" % tag, cfg.get("torch_dtype"))
                            diff = [f for f in served_meta if f != "config.json"
                                    and readb(m.file(f)) != readb(os.path.join(ck, f))]
                            tap.ok(not diff, "%s: tokenizer files byte-identical to --config DIR's" % tag, diff)
                            leaked = [f for f in ("trainer_state.json", "training_args.bin", "scheduler.pt",
                                                  "rng_state_0.pth", "README.md") if os.path.lexists(m.file(f))]
                            tap.ok(not leaked, "%s: nothing but config/tokenizer taken from --config DIR"
                                   % tag, leaked)
                        else:
                            tap.ok(listing == ["model.safetensors"], "%s: lists only model.safetensors"
                                   % tag, listing)
                except MountFailed as e:
                    tap.ok(False, "%s: mounts" % tag, e)
                except Exception:  # noqa: BLE001 - report, unmount, go on
                    tap.ok(False, "%s: checks run without an exception" % tag, traceback.format_exc())
        # --strip-prefix '' keeps the names
        tag = "(b) xtuner --strip-prefix ''"
        try:
            with mounted(tagdir, "--strip-prefix", "") as m:
                t = sv.load_dir(m.path)
                tap.ok(t and all(n.startswith("llm.") for n in t), "%s: keeps the llm. names" % tag,
                       sorted(t)[:5])
        except MountFailed as e:
            tap.ok(False, "%s: mounts" % tag, e)
        except Exception:  # noqa: BLE001 - report, unmount, go on
            tap.ok(False, "%s: checks run without an exception" % tag, traceback.format_exc())

    # ---- (c) ZeRO-3, 16 ranks, odd shapes --------------------------------------
    for extra, label in (([], "16 ranks"),
                         (["--sub-group-size", "97", "--span-subgroups"], "16 ranks, params spanning sub-groups")):
        z, zref = gen("z3_ws16" + ("_span" if extra else ""), "--stage", "3", "--ws", "16",
                      "--dtype", "bf16", "--tied", *extra)
        if not z:
            continue
        shapes = {e["name"]: e["shape"] for e in zref["live_state_dict"]}
        tap.ok(shapes.get("model.empty.weight", [1])[0] == 0 and shapes.get("model.one.weight") == [1]
               and shapes.get("model.scale") == [] and shapes.get("model.odd.weight") == [13, 5],
               "(c) %s: the generated model has 0-element, 1-element, scalar and 13x5 tensors" % label,
               {k: shapes.get(k) for k in ("model.empty.weight", "model.one.weight", "model.scale",
                                            "model.odd.weight")})
        ex = Expect(z, zref)
        for dt in ("bf16", "fp32"):
            tag = "(c) ZeRO-3 %s --dtype %s" % (label, dt)
            try:
                with mounted(z, "--dtype", dt) as m:
                    tap.ok(True, "%s: mounts" % tag)
                    t = check_tensors(tag, m, ex, dt)
                    if t:
                        e = t.get("model.empty.weight")
                        s = t.get("model.scale")
                        tap.ok(e is not None and e[1] == shapes["model.empty.weight"] and e[2] == b"",
                               "%s: 0-element tensor served with its shape and no bytes" % tag, e and e[:2])
                        tap.ok(s is not None and s[1] == [] and len(s[2]) == (2 if dt == "bf16" else 4),
                               "%s: scalar buffer served with shape [] and one element" % tag, s and s[:2])
            except MountFailed as e:
                tap.ok(False, "%s: mounts" % tag, e)
            except Exception:  # noqa: BLE001 - report, unmount, go on
                tap.ok(False, "%s: checks run without an exception" % tag, traceback.format_exc())

    # ---- (d) no config -----------------------------------------------------------
    nc, ncref = gen("noconfig", "--stage", "1", "--ws", "2", "--dtype", "fp32")
    if nc:
        tag = "(d) no config.json"
        try:
            with mounted(nc) as m:
                tap.ok(True, "%s: mounts" % tag)
                tap.ok(sorted(os.listdir(m.path)) == ["model.safetensors"],
                       "%s: serves model.safetensors alone" % tag, os.listdir(m.path))
                err = m.proc.stderr
                tap.ok("config" in err.lower() and "--config" in err,
                       "%s: stderr says how to add one (--config)" % tag, err)
                check_tensors(tag, m, Expect(nc, ncref), "auto")
        except MountFailed as e:
            tap.ok(False, "%s: mounts" % tag, e)
        except Exception:  # noqa: BLE001 - report, unmount, go on
            tap.ok(False, "%s: checks run without an exception" % tag, traceback.format_exc())
finally:
    shutil.rmtree(WORK, ignore_errors=True)

tap.done()
