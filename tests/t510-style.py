#!/usr/bin/python3
"""`make style` (scripts/style.sh): what clang-format, with the checked-in
.clang-format, would change in the C lines changed since a base commit.

Run in a scratch git repository holding the project's .clang-format and one
C file in the project's style: untouched, it passes; a changed line that
breaks the style (a 90-column condition, a brace on the wrong line) makes it
print that line's fix and exit 1, while an equally long message string,
which the style never splits, passes; a bad base is an error (2), not a
pass. The project's own tree must pass against HEAD (what CI checks out).
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "lib"))
from zftest import Tap, TMPROOT  # noqa: E402

tap = Tap()
STYLE = os.path.join(ROOT, "scripts", "style.sh")
work = tempfile.mkdtemp(prefix="t510-", dir=TMPROOT)

GOOD = """\
#include <stdio.h>

/* Says what n is. */
static int show(const char *what, int n)
{
	if (n < 0)
		return -1;
	printf("%s: %d\\n", what, n);
	return 0;
}

int main(void)
{
	return show("answer", 42);
}
"""


def git(*args):
    return subprocess.run(["git", "-C", work] + list(args), capture_output=True, text=True,
                          env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
                                   GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t"))


def style(base=None):
    return subprocess.run([STYLE] + ([base] if base else []), cwd=work, capture_output=True,
                          text=True)


def edit(text):
    with open(os.path.join(work, "a.c"), "w") as f:
        f.write(text)


git("init", "-q")
shutil.copy(os.path.join(ROOT, ".clang-format"), work)
edit(GOOD)
git("add", "-A")
r = git("commit", "-q", "-m", "good")
tap.ok(r.returncode == 0, "a scratch repository with .clang-format and a C file", r.stderr)

p = style()
tap.ok(p.returncode == 0 and "formatted" in p.stdout,
       "nothing changed: exit 0", (p.returncode, p.stdout, p.stderr))
tap.ok(subprocess.run(["clang-format", "--style=file", os.path.join(work, "a.c")],
                      capture_output=True, text=True, cwd=work).stdout == GOOD,
       "the project's style leaves a file in the project's style as it is")

long_call = GOOD.replace("\tif (n < 0)\n", "\tif (n < 0 || n > 1000000 || n == 12345 || n == 54321 || n == 99999 || n == 77)\n")
edit(long_call)
p = style()
tap.ok(p.returncode == 1 and "+\tif (n < 0 || n > 1000000 || n == 12345 || n == 54321 || n == 99999 ||\n"
       "+\t    n == 77)" in p.stdout,
       "a changed 90-column condition: exit 1 with the fix", (p.returncode, p.stdout, p.stderr))

brace = GOOD.replace("int main(void)\n{", "int main(void) {")
edit(brace)
p = style()
tap.ok(p.returncode == 1 and "+int main(void)\n+{" in p.stdout,
       "a function's brace on its line: exit 1 with the fix", (p.returncode, p.stdout))

message = GOOD.replace('\tprintf("%s: %d\\n", what, n);',
                       '\tprintf("%s: %d, a message string that runs past the eightieth column\\n",\n'
                       '\t       what, n);')
edit(message)
p = style()
tap.ok(p.returncode == 0, "a long message string is never split: exit 0",
       (p.returncode, p.stdout, p.stderr))

edit(GOOD)
git("commit", "-qam", "same")
p = style("no-such-commit")
tap.ok(p.returncode == 2, "a base that is not a commit: exit 2", (p.returncode, p.stdout, p.stderr))

# `make style` is that script on the tree, against STYLE_BASE (HEAD).
want = subprocess.run([STYLE, "HEAD"], cwd=ROOT, capture_output=True, text=True)
p = subprocess.run(["make", "-s", "style"], cwd=ROOT, capture_output=True, text=True)
# (make answers 2 for any failed recipe: compare pass/fail, and the diff.)
tap.ok(want.returncode != 2 and (p.returncode == 0) == (want.returncode == 0)
       and p.stdout == want.stdout,
       "`make style` runs scripts/style.sh against HEAD", (p.returncode, want.returncode, p.stderr))

shutil.rmtree(work, ignore_errors=True)
tap.done()
