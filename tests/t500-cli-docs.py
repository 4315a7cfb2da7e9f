"""The program and its documentation agree: every command answers --help
with exit 0, every long option a command's --help lists appears in
man/zerofs.1, the man page passes mandoc's lint, usage errors exit 2 with
a pointer to --help, and the README's two commands are the ones CI runs."""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import ROOT, Tap, run  # noqa: E402

tap = Tap()
man = open(os.path.join(ROOT, "man", "zerofs.1")).read()
# mdoc writes "--tag" as "Fl -tag"; collect both spellings.
man_opts = set(re.findall(r"Fl -([a-z][a-z0-9-]*)", man)) | set(re.findall(r"--([a-z][a-z0-9-]*)", man))

for cmd in ["mount", "umount", "inspect", "export", "verify"]:
    p = run([cmd, "--help"])
    tap.ok(p.returncode == 0 and p.stdout.startswith("usage: zerofs " + cmd),
           f"zerofs {cmd} --help exits 0 with a usage line", p.stderr)
    opts = set(re.findall(r"--([a-z][a-z0-9-]*)", p.stdout)) - {"help"}
    missing = sorted(opts - man_opts)
    tap.ok(not missing, f"every option of '{cmd}' is in the man page", missing)
    tap.ok(re.search(r"\.Cm %s\b" % cmd, man) is not None, f"the man page describes '{cmd}'")
    bad = run([cmd, "--no-such-option"])
    tap.ok(bad.returncode == 2 and f"try 'zerofs {cmd} --help'" in bad.stderr,
           f"zerofs {cmd} with a bad option exits 2 and points to --help", bad.stderr)

p = run([])
tap.ok(p.returncode == 2, "zerofs with no command exits 2")
p = run(["frobnicate"])
tap.ok(p.returncode == 2 and "'frobnicate' is not a zerofs command" in p.stderr,
       "an unknown command exits 2 and says so", p.stderr)
p = run(["--version"])
tap.ok(p.returncode == 0 and p.stdout.startswith("zerofs "), "--version")
p = run(["--help"])
tap.ok(p.returncode == 0 and all(c in p.stdout for c in ["mount", "umount", "inspect", "export", "verify"]),
       "--help lists every command")

if shutil.which("mandoc"):
    lint = subprocess.run(["mandoc", "-Tlint", "-Wwarning", os.path.join(ROOT, "man", "zerofs.1")],
                          capture_output=True, text=True)
    tap.ok(lint.returncode == 0 and not lint.stdout.strip(), "mandoc -Tlint passes", lint.stdout)
else:
    tap.ok(False, "mandoc is installed (scripts/setup-debian.sh installs it)")

readme = open(os.path.join(ROOT, "README.md")).read()
ci = open(os.path.join(ROOT, ".ci", "run")).read()
tap.ok("scripts/setup-debian.sh && make check" in readme and "make check" in ci
       and "scripts/setup-debian.sh" in ci,
       "the README's test command is what .ci/run runs")
tap.ok("scripts/setup-debian.sh && make demo" in readme, "the README has the demo command")
tap.done()
