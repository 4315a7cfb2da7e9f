"""The program and its documentation agree, and every command line they show
runs as written.

- Every command answers --help (anywhere on its line) with exit 0, every
  long option its --help lists is in man/zerofs.1, the man page passes
  mandoc's lint, usage errors exit 2 with a pointer to --help, options and
  paths go in any order, "--" ends the options.
- Every command line in README.md (```sh blocks), in zerofs(1)'s EXAMPLES
  and in the "examples:" of every --help is run verbatim, in a private
  mount namespace where /mnt and /srv are scratch tmpfs and the current
  folder holds a generated Trainer checkpoint out/checkpoint-1000 and an
  XTuner run work_dirs/run/iter_500.pth. README's python blocks run too
  (the transformers one where transformers is importable); a block the
  README marks "not run by the tests" (vLLM, the install commands) must
  say why, and the install block's packages must be Debian's names.
- zerofs(1)'s fstab line mounts through mount -T, and its systemd unit
  passes systemd-analyze verify.
- The section 5 pages (file formats) pass mandoc's lint and show no command
  lines: the commands are documented, and run, where the bullets above say.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import ROOT, ZEROFS, Tap, TMPROOT, run  # noqa: E402

PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
COMMANDS = ["mount", "umount", "status", "inspect", "export", "verify"]
README = open(os.path.join(ROOT, "README.md")).read()
MAN = open(os.path.join(ROOT, "man", "zerofs.1")).read()


def readme_blocks():
    """[(lang, text, note)] of README's fenced blocks; note is the HTML
    comment on the line before the fence, if any."""
    out = []
    for m in re.finditer(r"(?:<!--(.*?)-->\n)?```(\w*)\n(.*?)```", README, re.S):
        out.append((m.group(2), m.group(3), (m.group(1) or "").strip()))
    return out


def man_examples():
    """The command lines of the man page's EXAMPLES (.Bd -literal blocks),
    continuation lines joined."""
    ex = MAN[MAN.index(".Sh EXAMPLES"):]
    ex = ex[:ex.index("\n.Sh ", 1)] if "\n.Sh " in ex[1:] else ex
    text = "\n".join(re.findall(r"\.Bd -literal[^\n]*\n(.*?)\.Ed", ex, re.S))
    return join_lines(text.replace("\\e", "\\"))


def man_block(after):
    """The .Bd -literal block following the text `after`."""
    i = MAN.index(after)
    m = re.search(r"\.Bd -literal[^\n]*\n(.*?)\.Ed", MAN[i:], re.S)
    return m.group(1).replace("\\e", "\\")


def join_lines(text):
    out, cur = [], ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip() and not cur.strip().startswith("#"):
            out.append(cur.strip())
        cur = ""
    return out


def help_examples(cmd, text):
    if "\nexamples:\n" not in text:
        return []
    return [ln.strip() for ln in text.split("\nexamples:\n", 1)[1].splitlines() if ln.strip()]


# ---- the namespace half -------------------------------------------------

def inside(work):
    res = []

    def ok(cond, what, detail=None, skip=None):
        res.append((bool(cond), what, None if detail is None else str(detail)[-2500:], skip))

    for d in ("/mnt", "/srv"):
        subprocess.run(["mount", "-t", "tmpfs", "zerofs-docs", d], check=True)
    # zerofs on PATH, also where mount.fuse3 looks (its default PATH).
    bindir = os.path.join(work, "bin")
    os.makedirs(bindir)
    os.symlink(ZEROFS, os.path.join(bindir, "zerofs"))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    "lowerdir=%s:/usr/local/bin" % bindir, "/usr/local/bin"], check=True)
    cwd = "/srv/work"
    gen = os.path.join(ROOT, "tests", "gen", "make_ckpt.py")
    for out, args in ((cwd + "/out", ["--name", "checkpoint-1000", "--stage", "3", "--dtype", "bf16",
                                     "--layout", "trainer", "--tied"]),
                      (cwd + "/work_dirs", ["--name", "run", "--stage", "2", "--dtype", "bf16",
                                           "--layout", "xtuner", "--tag", "iter_500.pth"])):
        p = subprocess.run([PYTHON, gen, "--out", out, "--ws", "2", "--hidden", "32", "--layers", "2",
                            "--vocab", "256"] + args, capture_output=True, text=True)
        if p.returncode:
            ok(False, "generate the documents' checkpoints", p.stderr)
            return res
    ck = cwd + "/out/checkpoint-1000"

    def reset():
        for line in open("/proc/self/mountinfo").read().splitlines():
            f = line.split()
            if f[4].startswith("/mnt/") and "fuse.zerofs" in line:
                subprocess.run(["umount", "-l", f[4]])
        for d in os.listdir("/srv"):
            if d != "work":
                p = os.path.join("/srv", d)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
        os.makedirs("/mnt/model", exist_ok=True)
        os.makedirs("/srv/models/Qwen2-7B", exist_ok=True)
        os.makedirs("/srv/run", exist_ok=True)
        for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(ck, f), "/srv/models/Qwen2-7B")
        shutil.copytree(ck, "/srv/run/checkpoint-1000")

    env = dict(os.environ, PATH=bindir + ":/usr/bin:/bin:/usr/sbin:/sbin", HOME=cwd,
               XDG_STATE_HOME=cwd + "/state")

    def sh(doc, line):
        p = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=300, stdin=subprocess.DEVNULL)
        ok(p.returncode == 0, f"{doc}: `{line}` exits 0", (p.returncode, p.stdout[-1200:], p.stderr))
        return p

    # README, in order.
    reset()
    have_transformers = subprocess.run([PYTHON, "-c", "import transformers"],
                                       capture_output=True).returncode == 0
    for lang, text, note in readme_blocks():
        if "not run by the tests" in note:
            continue
        if lang == "sh":
            for line in join_lines(text):
                sh("README.md", line)
        elif lang == "python":
            if "import transformers" in text or "from transformers" in text:
                if not have_transformers:
                    ok(True, "README.md: the transformers example", skip="transformers is not "
                       "importable by %s (scripts/setup-debian.sh installs it)" % PYTHON)
                    continue
            p = subprocess.run([PYTHON, "-c", text], cwd=cwd, env=env, capture_output=True,
                               text=True, timeout=600)
            ok(p.returncode == 0, "README.md: a python block runs", (text, p.stderr[-1500:]))

    # zerofs(1)'s EXAMPLES, in order.
    reset()
    for line in man_examples():
        sh("zerofs(1) EXAMPLES", line)

    # Each --help's examples, each from a clean state; umount and status
    # examples need a mount to act on.
    for cmd in COMMANDS:
        text = subprocess.run([ZEROFS, cmd, "--help"], capture_output=True, text=True).stdout
        lines = help_examples(cmd, text)
        ok(lines, f"zerofs {cmd} --help shows examples", text)
        for line in lines:
            reset()
            if cmd in ("umount", "status"):
                subprocess.run([ZEROFS, "mount", ck, "/mnt/model"], capture_output=True)
            sh(f"zerofs {cmd} --help", line)
    reset()

    # The fstab line, through mount(8) and mount.fuse3.
    fstab_line = man_block("An\n.Xr fstab 5\nline:").strip()
    with open(cwd + "/fstab", "w") as f:
        f.write(fstab_line + "\n")
    p = subprocess.run(["mount", "-T", cwd + "/fstab", "/mnt/model"], capture_output=True, text=True,
                       cwd=cwd, env=env)
    try:
        dt = os.getxattr("/mnt/model", "user.zerofs.dtype").decode()
    except OSError as e:
        dt = str(e)
    ok(p.returncode == 0 and dt == "bfloat16", "zerofs(1)'s fstab line mounts (mount -T)",
       (p.returncode, p.stderr, dt))
    subprocess.run(["umount", "/mnt/model"])
    reset()
    return res


if len(sys.argv) == 3 and sys.argv[1] == "--inside":
    print(json.dumps(inside(sys.argv[2])))
    sys.exit(0)

# ---- the plain half -----------------------------------------------------

tap = Tap()
man_opts = set(re.findall(r"Fl -([a-z][a-z0-9-]*)", MAN)) | set(re.findall(r"--([a-z][a-z0-9-]*)", MAN))
work = tempfile.mkdtemp(prefix="t500-", dir=TMPROOT)
ck = os.path.join(work, "ck")
subprocess.run([PYTHON, os.path.join(ROOT, "tests", "gen", "make_ckpt.py"), "--out", work, "--name", "ck",
                "--stage", "3", "--ws", "2", "--hidden", "32", "--layers", "1", "--vocab", "256"],
               capture_output=True)

for cmd in COMMANDS:
    p = run([cmd, "--help"])
    tap.ok(p.returncode == 0 and p.stdout.startswith("usage: zerofs " + cmd),
           f"zerofs {cmd} --help exits 0 with a usage line", p.stderr)
    opts = set(re.findall(r"--([a-z][a-z0-9-]*)", p.stdout)) - {"help"}
    missing = sorted(opts - man_opts)
    tap.ok(not missing, f"every option of '{cmd}' is in the man page", missing)
    tap.ok(re.search(r"\.Cm %s\b" % cmd, MAN) is not None, f"the man page describes '{cmd}'")
    bad = run([cmd, "--no-such-option"])
    tap.ok(bad.returncode == 2 and f"zerofs {cmd}: unknown option '--no-such-option'" in bad.stderr
           and f"try 'zerofs {cmd} --help'" in bad.stderr,
           f"zerofs {cmd} with a bad option exits 2, names it and points to --help", bad.stderr)
    p = run([cmd, "some/path", "--help"])
    tap.ok(p.returncode == 0 and p.stdout.startswith("usage: zerofs " + cmd),
           f"zerofs {cmd} PATH --help: --help after a path", p.stderr)
    p = run(["help", cmd])
    tap.ok(p.returncode == 0 and p.stdout.startswith("usage: zerofs " + cmd), f"zerofs help {cmd}")

# Options and paths in any order; "--" ends the options.
a = run(["inspect", ck, "--json"])
b = run(["inspect", "--json", ck])
tap.ok(a.returncode == 0 and a.stdout == b.stdout and a.stdout.startswith("{"),
       "inspect CKPT --json == inspect --json CKPT", a.stderr)
env = dict(os.environ, POSIXLY_CORRECT="1")
c = subprocess.run([ZEROFS, "inspect", ck, "--json"], capture_output=True, text=True, env=env)
tap.ok(c.returncode == 0 and c.stdout == a.stdout, "... also under POSIXLY_CORRECT", c.stderr)
dash = os.path.join(work, "-dash")
shutil.copytree(ck, dash)
p = subprocess.run([ZEROFS, "inspect", "--json", "--", "-dash"], cwd=work, capture_output=True, text=True)
tap.ok(p.returncode == 0 and p.stdout.startswith("{"), "'--' ends the options: inspect -- -dash", p.stderr)
p = run(["inspect", ck, "--extents"])
tap.ok(p.returncode == 2 and "--extents adds to --json's output" in p.stderr,
       "inspect --extents without --json is a usage error", p.stderr)
p = run(["inspect", ck, "--tag"])
tap.ok(p.returncode == 2 and "option '--tag' needs a value" in p.stderr, "a missing value is named", p.stderr)
p = run(["verify", ck, "extra"])
tap.ok(p.returncode == 2 and "expected one checkpoint folder" in p.stderr, "too many arguments", p.stderr)

p = run([])
tap.ok(p.returncode == 2, "zerofs with no command exits 2")
p = run(["frobnicate"])
tap.ok(p.returncode == 2 and "'frobnicate' is not a zerofs command" in p.stderr,
       "an unknown command exits 2 and says so", p.stderr)
p = run(["--version"])
tap.ok(p.returncode == 0 and p.stdout.startswith("zerofs "), "--version")
p = run(["--help"])
tap.ok(p.returncode == 0 and all(c in p.stdout for c in COMMANDS), "--help lists every command")

if shutil.which("mandoc"):
    lint = subprocess.run(["mandoc", "-Tlint", "-Wwarning", os.path.join(ROOT, "man", "zerofs.1")],
                          capture_output=True, text=True)
    tap.ok(lint.returncode == 0 and not lint.stdout.strip(), "mandoc -Tlint passes", lint.stdout)
else:
    tap.ok(False, "mandoc is installed (scripts/setup-debian.sh installs it)")

# A section 5 page describes bytes, not how to run anything; a command line
# in it would be documented without being run, so none may appear in its
# literal text (.Dl, .Bd -literal). A line is taken for a command when its
# first word is zerofs or a program on PATH.
for page in sorted(glob.glob(os.path.join(ROOT, "man", "*.5"))):
    name = os.path.basename(page)
    text = open(page).read()
    if shutil.which("mandoc"):
        lint = subprocess.run(["mandoc", "-Tlint", "-Wwarning", page], capture_output=True, text=True)
        tap.ok(lint.returncode == 0 and not lint.stdout.strip(), "%s: mandoc -Tlint passes" % name,
               lint.stdout)
    literal = re.findall(r"^\.Dl (.*)$", text, re.M)
    for block in re.findall(r"\.Bd -literal[^\n]*\n(.*?)\.Ed", text, re.S):
        literal += block.splitlines()
    cmds = [ln for ln in literal if ln.split()
            and (ln.split()[0].lstrip("$") in ("zerofs", "mount.zerofs") or shutil.which(ln.split()[0]))]
    tap.ok(not cmds, "%s shows no command lines (formats only)" % name, cmds)

ci = open(os.path.join(ROOT, ".ci", "run")).read()
tap.ok("scripts/setup-debian.sh && make check" in README and "make check" in ci
       and "scripts/setup-debian.sh" in ci,
       "the README's test command is what .ci/run runs")
tap.ok("scripts/setup-debian.sh && make demo" in README, "the README has the demo command")
setup = re.findall(r"^\s*(scripts/setup-debian\.sh[^\n]*)$", README, re.M)
tap.ok(sorted(setup) == ["scripts/setup-debian.sh && make check", "scripts/setup-debian.sh && make demo"],
       "the README has exactly two setup+run commands", setup)

# What the README does not run says why; every zerofs line is in a run block.
blocks = readme_blocks()
for lang, text, note in blocks:
    if "vllm" in text.lower():
        before = " ".join(README[:README.index(text)][-400:].split())
        tap.ok("not run by the tests" in note and "vLLM cannot be installed" in note
               and "not run by the tests" in before,
               "README's vLLM example is marked, visibly, as not run by the tests", note)
    if "apt-get install" in text:
        pkgs = text.split("apt-get install", 1)[1].split("\n")[0].split()
        known = [p for p in pkgs
                 if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode == 0]
        tap.ok("not run by the tests" in note and pkgs and known == pkgs,
               "README's install block names installed Debian runtime packages, and says it is not run",
               (pkgs, known, note))
run_text = "\n".join(t for lang, t, note in blocks if lang == "sh" and "not run by the tests" not in note)
stray = [ln for lang, t, note in blocks for ln in t.splitlines()
         if re.match(r"\s*(\$ )?zerofs ", ln) and ln.strip() not in run_text]
tap.ok(not stray, "every zerofs command line in README.md is in a block the tests run", stray)

# The systemd unit as zerofs(1) shows it.
unit = man_block("The same as a systemd mount unit")
udir = os.path.join(work, "unit")
os.makedirs(udir)
with open(os.path.join(udir, "mnt-model.mount"), "w") as f:
    f.write(unit)
if shutil.which("systemd-analyze"):
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", "mnt-model.mount"], cwd=udir,
                       capture_output=True, text=True, timeout=60)
    tap.ok(p.returncode == 0 and "Type=fuse.zerofs" in unit,
           "zerofs(1)'s systemd mount unit passes systemd-analyze verify", p.stdout + p.stderr)
else:
    tap.ok(False, "systemd-analyze is installed (systemd)")

# Every documented command line, run as written, in a private namespace.
if shutil.which("unshare"):
    p = subprocess.run(["unshare", "-m", "--propagation", "private", PYTHON, os.path.abspath(__file__),
                        "--inside", work], capture_output=True, text=True, timeout=1800)
    try:
        results = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        results = [(False, "the documents' command lines ran", p.stdout[-2000:] + p.stderr[-2000:], None)]
    for cond, what, detail, skip in results:
        if skip:
            tap.skip(what, skip)
        else:
            tap.ok(cond, what, detail)
else:
    tap.ok(False, "unshare(1) is installed (util-linux)")
shutil.rmtree(work, ignore_errors=True)
tap.done()
