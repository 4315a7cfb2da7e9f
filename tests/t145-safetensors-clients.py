"""The real safetensors and transformers libraries (client venv, pinned in
scripts/clients-requirements.txt) against every mount of every real fixture
and generated checkpoint, in every served dtype:

  (a) safetensors.safe_open reads every served file (single or through the
      index): metadata {"format": "pt"}, every tensor equal to the reference
      (NAME.ref.json hashes / the live tensors, tests/lib/zfexpect.py), a
      get_slice partial read equal to the same rows of get_tensor;
  (b) the served files are byte for byte what safetensors.torch.save_file
      writes for the same tensors, and what transformers' save_pretrained
      writes for a model whose state_dict() is exactly the checkpoint's
      tensors (tests/lib/zfhf.py: a PreTrainedModel built from the names,
      the tied lm_head.weight sharing the embedding's Parameter): the single
      file, and with --max-shard-size / max_shard_size the shard names, the
      shard plan, the index JSON and every shard's bytes.
"""
import collections
import os
import shutil
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import zfclients  # noqa: E402

zfclients.require()

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from zftest import TMPROOT, Tap, checkpoints, fixtures  # noqa: E402
from zfexpect import Expect, sha, tbytes  # noqa: E402
from zfmount import MountFailed, mounted  # noqa: E402
import zfhf  # noqa: E402

tap = Tap()
print("# clients: %s" % zfclients.versions())
if not fixtures():
    print("# ../shared/fixtures/real is absent: generated checkpoints only")
WORK = tempfile.mkdtemp(prefix="t140-", dir=TMPROOT)
DTYPES = ("auto", "fp32", "bf16", "fp16")


def reference_tensors(ex, dt):
    """OrderedDict served name -> tensor (served dtype), aliases excluded."""
    return collections.OrderedDict((n, ex.tensor(n, dt)) for n in ex.names)


def check_safe_open(tag, mp, ex, dt):
    problems = []
    got = zfhf.safe_open_all(mp, problems)
    if set(got) != set(ex.names):
        problems.append("names: missing %s, extra %s" % (sorted(set(ex.names) - set(got))[:6],
                                                         sorted(set(got) - set(ex.names))[:6]))
    bad = [n for n in ex.names if n in got and (
        list(got[n].shape) != ex.shape(n) or str(got[n].dtype) != "torch." + ex.served_dtype(n, dt)
        or sha(tbytes(got[n])) != ex.sha(n, dt))]
    if bad:
        problems.append("%d tensors differ from the reference: %s" % (len(bad), bad[:6]))
    tap.ok(not problems and not ex.problems,
           "%s: safe_open reads %d tensors, each equal to the reference" % (tag, len(got)),
           "\n".join(problems + ex.problems))


def check_save_file(tag, mp, ref):
    p = os.path.join(WORK, "save_file.safetensors")
    save_file(dict(ref), p, metadata={"format": "pt"})
    problems = zfhf.compare_files(zfhf.model_files(mp), {"model.safetensors": zfhf.read(p)})
    tap.ok(not problems, "%s: model.safetensors is byte for byte safetensors.torch.save_file's" % tag,
           "\n".join(problems))


def stand_in(ex, ref):
    """The PreTrainedModel whose state_dict() is the checkpoint's served
    tensors, tied aliases sharing their source's Parameter."""
    tensors = collections.OrderedDict()
    aliases = {}
    for orig in ex.live:
        n = ex.served_name(orig)
        if orig in ex.aliases:
            aliases[n] = ex.served_name(ex.aliases[orig])
            tensors[n] = ref[aliases[n]]
        else:
            tensors[n] = ref[n]
    buffers = {ex.served_name(b) for b in ex.ref.get("buffer_names") or []}
    return zfhf.state_model(tensors, aliases, buffers)


def check_save_pretrained(tag, mp, ex, ref, max_shard=None):
    d = os.path.join(WORK, "pretrained")
    shutil.rmtree(d, ignore_errors=True)
    want = zfhf.pretrained_files(stand_in(ex, ref), d, max_shard)
    got = zfhf.model_files(mp)
    problems = zfhf.compare_files(got, want)
    plan_got, plan_want = zfhf.index_plan(got), zfhf.index_plan(want)
    if plan_got != plan_want:
        problems.insert(0, "shard plan differs: %s vs save_pretrained's %s" % (plan_got, plan_want))
    n = len([f for f in want if f.endswith(".safetensors")])
    tap.ok(not problems, "%s: %d file%s byte for byte what save_pretrained(%s) writes (names, shard "
           "plan, index, bytes)" % (tag, n + (1 if zfhf.INDEX in want else 0), "" if n == 1 else "s",
                                    "max_shard_size=%r" % max_shard if max_shard else "default 5GB"),
           "\n".join(problems))
    return n


def run_one(what, fn, *args):
    try:
        return fn(*args)
    except MountFailed as e:
        tap.ok(False, "%s: mounts" % what, e)
    except Exception:  # noqa: BLE001 - report and go on
        tap.ok(False, "%s: checks run without an exception" % what, traceback.format_exc())


def per_checkpoint(name, d, ref):
    ex = Expect(d, ref, d + ".ref.pt")
    for dt in DTYPES:
        tag = "%s --dtype %s" % (name, dt)

        def one(tag=tag, dt=dt):
            refs = reference_tensors(ex, dt)
            with mounted(d, "--dtype", dt) as m:
                check_safe_open(tag, m.path, ex, dt)
                check_save_file(tag, m.path, refs)
                check_save_pretrained(tag, m.path, ex, refs)
        run_one(tag, one)
    # sharded: about six shards of the fp32 view (the embedding alone exceeds the limit), in decimal KB as both parse it
    total = sum(ex.nbytes(n, "fp32") for n in ex.names)
    limit = "%dKB" % max(1, total // 6 // 1000)
    for dt in ("fp32", "bf16"):
        tag = "%s --dtype %s --max-shard-size %s" % (name, dt, limit)

        def sharded(tag=tag, dt=dt):
            refs = reference_tensors(ex, dt)
            with mounted(d, "--dtype", dt, "--max-shard-size", limit) as m:
                check_safe_open(tag, m.path, ex, dt)
                n = check_save_pretrained(tag, m.path, ex, refs, limit)
                tap.ok(n and n > 1, "%s: several shards (%s)" % (tag, n))
        run_one(tag, sharded)


try:
    for name, d, ref in checkpoints():
        per_checkpoint(name, d, ref)
finally:
    shutil.rmtree(WORK, ignore_errors=True)
tap.done()
