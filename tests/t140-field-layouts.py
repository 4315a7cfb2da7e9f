#!/usr/bin/python3
"""Folder layouts met in the field, decided from file names alone
(core/ckpt_find.c), on generated checkpoints and, where
../shared/fixtures/field exists, on the real ones:

  * `latest` is stripped as DeepSpeed strips it (Python's str.strip():
    every Unicode white space, nothing else, so a byte order mark stays);
    what cannot name a folder beside it is refused without showing the
    file's text (a `latest` may be a link to any file), and a tag that
    names no folder is shown as a short escaped excerpt only;
  * a folder whose chosen checkpoint folder is a save folder of its own
    (an XTuner iter_N.pth/ with `latest` + global_stepN/, picked by
    mmengine's last_checkpoint; a Trainer run's checkpoint-N/ picked with
    --tag) is followed one level, and the tag shown says which;
  * mixture-of-experts, multi-stage pipeline and tensor-parallel
    checkpoints are refused naming exactly which, by inspect, export and
    mount (exit 3), and verify exits 3 (cannot judge) for them, not 1 --
    by their file names, and by what rank 0's model states say when only
    its files were copied (mp_world_size, expert parameter names); a
    one-stage PipelineModule is served (tests/t142-field-loader.py), and
    layer files beside a model states file that holds the model are
    refused as files of two runs.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import FIXTURES, ROOT, TMPROOT, Tap, run  # noqa: E402
from zfinspect import check  # noqa: E402

tap = Tap()
WORK = tempfile.mkdtemp(prefix="t140-", dir=TMPROOT)
GEN = os.path.join(ROOT, "tests", "gen", "make_ckpt.py")
FIELD = os.path.join(os.path.dirname(os.path.abspath(FIXTURES)), "field")


def gen(name, *opts):
    p = subprocess.run([sys.executable, GEN, "--out", WORK, "--name", name] + list(opts),
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(p.stderr)
    with open(os.path.join(WORK, name + ".ref.json")) as f:
        return os.path.join(WORK, name), json.load(f)


def fresh(src, name):
    dst = os.path.join(WORK, name)
    shutil.copytree(src, dst, symlinks=True)
    return dst


def write(path, data):
    if os.path.islink(path):
        os.unlink(path)
    with open(path, "wb") as f:
        f.write(data)


def refused(label, args, code, fragment, absent=()):
    """Runs zerofs args; passes when it exits `code` with `fragment` in one
    'zerofs: ' line of stderr and none of `absent` anywhere in its output."""
    p = run(args)
    if "--json" in args:
        # --json reports errors as JSON on stdout, with nothing on stderr.
        try:
            e = json.loads(p.stdout)["error"]
            line = "zerofs: '%s': %s" % (e["where"], e["message"]) if e["where"] else e["message"]
        except (ValueError, KeyError, TypeError):
            line = ""
        lines = [line] if not p.stderr.strip() else p.stderr.strip().splitlines() + [line]
    else:
        lines = p.stderr.strip().splitlines()
    ok = (p.returncode == code and len(lines) == 1 and lines[0].startswith("zerofs: ")
          and fragment in lines[0] and not any(a in p.stderr + p.stdout for a in absent))
    tap.ok(ok, f"{label}: exit {code}, '{fragment}'",
           f"exit {p.returncode}\nstderr: {p.stderr!r}\nstdout: {p.stdout[:300]!r}")
    return p


def tag_of(ckpt, *extra):
    p = run(["inspect", "--json"] + list(extra) + [ckpt])
    if p.returncode:
        return "exit %d: %s" % (p.returncode, p.stderr.strip())
    return json.loads(p.stdout)["tag"]


# --------------------------------------------------------------------------
# `latest`, stripped as DeepSpeed strips it

base, base_ref = gen("z2", "--stage", "2", "--ws", "2", "--tied", "--no-zero-to-fp32")

STRIPPED = [
    (b"  global_step3 \n\n", "spaces and newlines"),
    (b"\tglobal_step3\r\n", "tab, CRLF"),
    ("\u00a0\u3000global_step3\u2028\u0085".encode(), "no-break, ideographic, line separator, NEL"),
    (b"\x1c\x1fglobal_step3\x0b\x0c", "information separators, VT, FF"),
]
for i, (text, what) in enumerate(STRIPPED):
    ck = fresh(base, f"strip{i}")
    write(os.path.join(ck, "latest"), text)
    got = tag_of(ck)
    tap.ok(got == "global_step3", f"latest with {what} around the tag: read as global_step3", got)

ck = fresh(base, "space_inside")
os.rename(os.path.join(ck, "global_step3"), os.path.join(ck, "global step3"))
write(os.path.join(ck, "latest"), b" global step3\n")
got = tag_of(ck)
tap.ok(got == "global step3", "a tag with a space inside is kept whole, as DeepSpeed keeps it", got)

ck = fresh(base, "bom")
write(os.path.join(ck, "latest"), b"\xef\xbb\xbfglobal_step3")
refused("latest with a byte order mark (not white space to Python)", ["inspect", ck], 3,
        "/latest': names tag '\\u{feff}global_step3', but there is no such folder beside it")

SECRET = "s3cr3t-" + "x" * 20
secret = os.path.join(WORK, "secret.txt")
write(secret, SECRET.encode())
ck = fresh(base, "link")
os.unlink(os.path.join(ck, "latest"))
os.symlink(secret, os.path.join(ck, "latest"))
refused("latest: a symbolic link to another file", ["inspect", ck], 3,
        "/latest': is a symbolic link to a file whose text names no folder beside it; "
        "its text is not shown", absent=[SECRET[:6]])

multi = os.path.join(WORK, "multi.txt")
MULTI = ("line one " + SECRET + "\nline two\n").encode()
write(multi, MULTI)
ck = fresh(base, "link_multi")
os.unlink(os.path.join(ck, "latest"))
os.symlink(multi, os.path.join(ck, "latest"))
refused("latest: a link to a file of several lines", ["inspect", ck], 3,
        "/latest': does not hold a tag folder name: %d bytes with line breaks or control "
        "characters" % len(MULTI), absent=[SECRET[:6]])

BAD_LATEST = [
    (b"global_step3\nglobal_step2", "does not hold a tag folder name: 25 bytes with line breaks "
     "or control characters", "two lines"),
    (b"glo\x00bal", "does not hold a tag folder name: 7 bytes with line breaks or control "
     "characters", "a NUL byte"),
    (b"global\xffstep", "does not hold a tag folder name: 11 bytes that are not UTF-8 text",
     "invalid UTF-8"),
    (b"  \r\n\t", "is empty: it should hold the name of the tag folder, e.g. global_step100 "
     "(5 bytes of white space)", "only white space"),
    (b"../elsewhere/global_step3", "does not hold a tag folder name: a path, '.' or '..', "
     "where the name of a folder beside 'latest' belongs", "a relative path"),
    (b"..", "does not hold a tag folder name: a path", "'..'"),
    (b"g" * 256, "does not hold a tag folder name: 256 bytes, longer than a file name can be",
     "256 bytes"),
]
for text, frag, what in BAD_LATEST:
    ck = fresh(base, "bad_latest")
    write(os.path.join(ck, "latest"), text)
    refused(f"latest holding {what}", ["inspect", ck], 3, "/latest': " + frag)
    shutil.rmtree(ck)

ck = fresh(base, "long_tag")
write(os.path.join(ck, "latest"), ("global_step3_" + SECRET * 4).encode())
p = refused("latest naming a missing folder with a long name: a short excerpt",
            ["inspect", ck], 3, "/latest': names tag 'global_step3_s3cr3t-")
tap.ok("...'" in p.stderr and len(p.stderr) < len(ck) + 140,
       "  the name is cut short (at most 48 bytes shown)", p.stderr)

ck = fresh(base, "esc_tag")
write(os.path.join(ck, "latest"), b"global\x1b[2Jstep")
refused("latest with an escape sequence: refused, not echoed", ["inspect", ck], 3,
        "with line breaks or control characters", absent=["\x1b"])
refused("--tag with an escape sequence: shown escaped", ["inspect", "--tag", "a/\x1b[31m", ck], 2,
        "tag 'a/\\x1b[31m' is not a folder name", absent=["\x1b"])

# --------------------------------------------------------------------------
# nested save folders: XTuner iter_N.pth/ with latest + global_stepN/, a
# Trainer run folder of checkpoint-N/ folders

xt, xt_ref = gen("xt", "--stage", "3", "--ws", "2", "--layout", "xtuner", "--prefix", "llm.",
                 "--tied", "--no-zero-to-fp32")
it3 = os.path.join(WORK, xt_ref["tag_dir"])          # xt/iter_3.pth
os.mkdir(os.path.join(it3, "global_step3"))
for f in glob.glob(os.path.join(it3, "*.pt")):
    os.rename(f, os.path.join(it3, "global_step3", os.path.basename(f)))
write(os.path.join(it3, "latest"), b"global_step3")
shutil.copytree(it3, os.path.join(xt, "iter_1.pth"))
# The older one holds other bytes: reading it by mistake shows.
for f in glob.glob(os.path.join(xt, "iter_1.pth", "global_step3", "*optim_states.pt")):
    os.unlink(f)
with open(os.path.join(xt, "last_checkpoint"), "w") as f:
    f.write(it3)  # mmengine writes the absolute path, no newline

ref = dict(xt_ref, tag="iter_3.pth/global_step3")
check(tap, "XTuner work_dir, last_checkpoint names a nested iter_3.pth/ with latest", xt, ref)
ref = dict(xt_ref, tag="global_step3")
check(tap, "the nested iter_3.pth/ itself (a save folder with latest)", it3, ref)
got = tag_of(xt, "--tag", "iter_3.pth")
tap.ok(got == "iter_3.pth/global_step3", "--tag iter_3.pth in the work_dir follows its latest", got)
with open(os.path.join(xt, "last_checkpoint"), "w") as f:
    f.write(" " + os.path.join(xt, "iter_1.pth") + "/\n")
refused("last_checkpoint naming the older nested iter_1.pth: its files are read",
        ["inspect", xt], 3, "iter_1.pth/global_step3': no '*_optim_states.pt' files beside "
        "the model states")
os.unlink(os.path.join(xt, "last_checkpoint"))
refused("no last_checkpoint, two nested iter folders: --tag asked for", ["inspect", xt], 3,
        "no 'latest' file and 2 folders that hold a checkpoint ('iter_1.pth', 'iter_3.pth'): "
        "choose one with --tag")
shutil.rmtree(os.path.join(xt, "iter_1.pth"))
got = tag_of(xt)
tap.ok(got == "iter_3.pth/global_step3", "one nested iter folder, no last_checkpoint: read", got)

run_dir = os.path.join(WORK, "run")
os.mkdir(run_dir)
tr, tr_ref = gen("trainer", "--stage", "2", "--ws", "2", "--layout", "trainer", "--tied")
os.rename(tr, os.path.join(run_dir, "checkpoint-3"))
shutil.copytree(os.path.join(run_dir, "checkpoint-3"), os.path.join(run_dir, "checkpoint-1"))
# A run folder: the highest checkpoint-N, as the Trainer's get_last_checkpoint
# picks it (numbers, not names: checkpoint-10 is newer than checkpoint-3).
p = run(["inspect", "--json", run_dir])
info = json.loads(p.stdout) if p.returncode == 0 else {}
tap.ok(info.get("tag") == "checkpoint-3/global_step3" and info.get("chosen_by") == "newest-step"
       and info.get("run", {}).get("chosen") == "checkpoint-3"
       and [c["name"] for c in info.get("run", {}).get("checkpoints", [])]
       == ["checkpoint-1", "checkpoint-3"],
       "Trainer run folder with two checkpoint-N: the highest is read, the run is listed",
       p.stderr or {k: info.get(k) for k in ("tag", "chosen_by", "run")})
p = run(["inspect", run_dir])
tap.ok(p.returncode == 0 and "\nchosen       checkpoint-3, the highest checkpoint-N (as the "
       "Trainer resumes); --tag NAME for another\n" in p.stdout
       and "\nrun          2 checkpoints: checkpoint-1, checkpoint-3\n" in p.stdout,
       "... and the summary says which and why", p.stdout[:600] + p.stderr)
os.mkdir(os.path.join(run_dir, "checkpoint-10"))
refused("the newest checkpoint-N is still empty: named, and the newest complete one suggested",
        ["inspect", run_dir], 3,
        "run': 'checkpoint-10', the newest checkpoint-N (the one the Trainer resumes from), holds no "
        "DeepSpeed checkpoint (still being written, or saved without DeepSpeed?); --tag checkpoint-3 "
        "serves the newest that does")
got = tag_of(run_dir, "--tag", "checkpoint-3")
tap.ok(got == "checkpoint-3/global_step3", "... and --tag checkpoint-3 reads it", got)
os.rmdir(os.path.join(run_dir, "checkpoint-10"))
shutil.copytree(os.path.join(run_dir, "checkpoint-3"), os.path.join(run_dir, "checkpoint-03"))
refused("two folders of one step: --tag asked for", ["inspect", run_dir], 3,
        "run': 'checkpoint-03' and 'checkpoint-3' both number step 3: choose one with --tag")
shutil.rmtree(os.path.join(run_dir, "checkpoint-03"))
p = run(["inspect", "--json", "--tag", "checkpoint-3", run_dir])
info = json.loads(p.stdout) if p.returncode == 0 else {}
tap.ok(info.get("tag") == "checkpoint-3/global_step3" and info.get("layout") == "hf-trainer",
       "--tag checkpoint-3 in a run folder: its latest is followed, Trainer layout",
       p.stderr or {k: info.get(k) for k in ("tag", "layout")})

# --------------------------------------------------------------------------
# what zerofs does not serve, told apart by name

MOE = "mixture-of-experts checkpoint: "
NOT_MOE = "; zerofs does not serve mixture-of-experts (MoE) checkpoints"


def copy_as(ck, src, *names):
    tag = os.path.join(ck, "global_step3")
    for n in names:
        shutil.copy(os.path.join(tag, src), os.path.join(tag, n))


MODEL = "mp_rank_00_model_states.pt"
OPTIM = "zero_pp_rank_0_mp_rank_00_optim_states.pt"
CASES = [
    ("MoE expert files and expert optimizer file",
     [(MODEL, "layer_0_expert_0_mp_rank_00_model_states.pt",
       "layer_0_expert_1_mp_rank_00_model_states.pt", "layer_1_expert_0_mp_rank_00_model_states.pt"),
      (OPTIM, "expp_rank_0_mp_rank_00_optim_states.pt")],
     MOE + "3 expert parameter files ('layer_0_expert_0_mp_rank_00_model_states.pt', ...) "
     "and 1 expert optimizer file" + NOT_MOE),
    ("MoE expert files of old releases (no layer_ head)",
     [(MODEL, "expert_0_mp_rank_00_model_states.pt", "expert_1_mp_rank_00_model_states.pt")],
     MOE + "2 expert parameter files ('expert_0_mp_rank_00_model_states.pt', ...)" + NOT_MOE),
    ("an MoE expert optimizer file alone",
     [(OPTIM, "expp_rank_0_mp_rank_00_optim_states.pt", "expp_rank_1_mp_rank_00_optim_states.pt")],
     MOE + "2 expert optimizer files ('expp_rank_0_mp_rank_00_optim_states.pt', ...)" + NOT_MOE),
    ("MoE with tensor parallelism: MoE named first",
     [(MODEL, "layer_0_expert_0_mp_rank_01_model_states.pt", "mp_rank_01_model_states.pt")],
     MOE + "1 expert parameter file ('layer_0_expert_0_mp_rank_01_model_states.pt', ...)"
     + NOT_MOE),
    ("three-stage pipeline",
     [(MODEL, "layer_00-model_states.pt", "layer_01-model_states.pt", "mp_rank_01_model_states.pt",
       "mp_rank_02_model_states.pt"),
      (OPTIM, "zero_pp_rank_0_mp_rank_01_optim_states.pt",
       "zero_pp_rank_0_mp_rank_02_optim_states.pt")],
     "pipeline-parallel checkpoint with 3 stages (mp_rank_00 to mp_rank_02, 2 layer files); "
     "zerofs does not serve multi-stage pipelines"),
    ("pipeline with a tensor-parallel axis",
     [(MODEL, "layer_00-model_00-model_states.pt", "layer_00-model_01-model_states.pt",
       "mp_rank_01_model_states.pt")],
     "pipeline checkpoint with tensor parallelism: layer files of 2 tensor-parallel ranks "
     "('layer_00-model_00-model_states.pt', ...); zerofs does not serve tensor-parallel "
     "checkpoints"),
    ("tensor parallelism (mp_rank_01, no layer files)",
     [(MODEL, "mp_rank_01_model_states.pt"),
      (OPTIM, "zero_pp_rank_0_mp_rank_01_optim_states.pt",
       "zero_pp_rank_1_mp_rank_01_optim_states.pt")],
     "tensor-parallel checkpoint: files of model-parallel ranks up to 1 "
     "('mp_rank_01_model_states.pt', ...); zerofs does not serve tensor-parallel checkpoints "
     "(mp_rank_00 only)"),
]
mnt = os.path.join(WORK, "mnt")
os.mkdir(mnt)
for what, copies, frag in CASES:
    ck = fresh(base, "refuse")
    for src, *names in copies:
        copy_as(ck, src, *names)
    where = "'%s': " % os.path.join(ck, "global_step3")
    refused(f"{what}: inspect", ["inspect", ck], 3, where + frag)
    refused(f"{what}: verify cannot judge", ["verify", ck], 3, where + frag)
    refused(f"{what}: export", ["export", ck, os.path.join(WORK, "out")], 3, where + frag)
    tap.ok(not os.path.exists(os.path.join(WORK, "out")), f"{what}: export created nothing")
    shutil.rmtree(ck)
ck = fresh(base, "refuse")
copy_as(ck, MODEL, "layer_00-model_states.pt", "layer_01-model_states.pt")
where = "'%s': " % os.path.join(ck, "global_step3", MODEL)
MIXED = ("holds the model ('module'), yet pipeline layer files ('layer_00-model_states.pt', "
         "...) are beside it: files of different runs?")
refused("layer files beside a model states file that holds the model: inspect", ["inspect", ck], 3,
        where + MIXED)
p = run(["verify", ck])
tap.ok(p.returncode == 1 and ("FAIL  open       " + where + MIXED) in p.stdout,
       "layer files beside a model states file that holds the model: verify says unsound",
       (p.returncode, p.stdout[-400:]))
shutil.rmtree(ck)
ck = fresh(base, "refuse")
copy_as(ck, MODEL, "layer_0_expert_0_mp_rank_00_model_states.pt")
refused("MoE: mount refused", ["mount", ck, mnt], 3, MOE + "1 expert parameter file")
tap.ok(not os.listdir(mnt) and not os.path.ismount(mnt), "MoE: nothing mounted")
# The tag folder itself, given directly, is recognised by these names too.
refused("MoE: the tag folder given directly", ["verify", os.path.join(ck, "global_step3")], 3,
        MOE + "1 expert parameter file")
shutil.rmtree(ck)

# --------------------------------------------------------------------------
# the real checkpoints of ../shared/fixtures/field

FIELD_CASES = [
    ("moe_ep1_z2_ws2", MOE + "2 expert parameter files ('layer_0_expert_0_mp_rank_00_model_"
     "states.pt', ...) and 1 expert optimizer file" + NOT_MOE),
    ("pipe_s2_z1_ws2", "pipeline-parallel checkpoint with 2 stages (mp_rank_00 to mp_rank_01, "
     "5 layer files); zerofs does not serve multi-stage pipelines"),
]
# Only rank 0's files copied: the model states say what the names cannot.
PARTS = [
    ("pipe_s2_z1_ws2", ("mp_rank_01",), "mp_rank_00_model_states.pt': pipeline-parallel checkpoint "
     "(mp_world_size 2) with only the files of stage 0 here; zerofs does not serve multi-stage "
     "pipelines"),
    ("moe_ep1_z2_ws2", ("expert", "expp_"), "mp_rank_00_model_states.pt': mixture-of-experts model "
     "('moe.deepspeed_moe.gate.wg.weight'), without its expert files here; zerofs does not serve "
     "mixture-of-experts (MoE) checkpoints"),
    ("moe_ep1_z2_ws2", ("expp_",), "mixture-of-experts checkpoint: 2 expert parameter files"),
]
if not os.path.isdir(FIELD):
    tap.skip("field fixtures", f"{FIELD} is absent")
else:
    for name, frag in FIELD_CASES:
        ck = os.path.join(FIELD, name)
        where = "'%s': " % os.path.join(ck, "global_step3")
        refused(f"field {name}: inspect", ["inspect", ck], 3, where + frag)
        refused(f"field {name}: verify cannot judge", ["verify", "--json", ck], 3, where + frag)
    for name, drop, frag in PARTS:
        ck = fresh(os.path.join(FIELD, name), "part")
        os.chmod(os.path.join(ck, "global_step3"), 0o755)
        for f in os.listdir(os.path.join(ck, "global_step3")):
            if any(d in f for d in drop):
                os.unlink(os.path.join(ck, "global_step3", f))
        what = " and ".join("'*%s*'" % d for d in drop)
        refused(f"field {name} without its {what} files: inspect", ["inspect", ck], 3, frag)
        refused(f"field {name} without its {what} files: verify cannot judge",
                ["verify", ck], 3, frag)
        shutil.rmtree(ck)
    multi = os.path.join(FIELD, "trainer_multi_z2_ws2")
    with open(os.path.join(FIELD, "trainer_multi_z2_ws2.ref.json")) as f:
        ref = json.load(f)
    check(tap, "field trainer_multi_z2_ws2: the run folder serves the highest checkpoint-N", multi,
          dict(ref, tag="checkpoint-3/" + ref["tag"]))
    for n, ref_name in (("checkpoint-3", "trainer_multi_z2_ws2.ref.json"),
                        ("checkpoint-2", "trainer_multi_z2_ws2@0.ref.json")):
        with open(os.path.join(FIELD, ref_name)) as f:
            ref = json.load(f)
        got = tag_of(multi, "--tag", n)
        tap.ok(got == n + "/" + ref["tag"], f"field trainer_multi_z2_ws2 --tag {n}: its latest "
               "is followed", got)
        check(tap, f"field trainer_multi_z2_ws2/{n}", os.path.join(multi, n), ref)

shutil.rmtree(WORK, ignore_errors=True)
tap.done()
