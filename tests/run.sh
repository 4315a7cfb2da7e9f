#!/bin/sh
# Runs every test and prints one closing line "N passed, N failed, N skipped".
# Every test speaks TAP ("ok N - ...", "not ok N - ...", "# SKIP" for a
# check that cannot run here, with the reason). A test program that exits
# non-zero without a "not ok" line counts as one failure (it crashed).
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
export PYTHON
export ZEROFS="$PWD/zerofs"
ZEROFS_BUILD=$(cd "${ZEROFS_BUILD:-build${SANITIZE:+-san}}" && pwd)
export ZEROFS_BUILD
# ../shared with symlinks resolved: zerofs reports real paths, and a test
# comparing them with a path through a symlink (../shared in a git worktree
# under /work/wt) would otherwise miss.
ZEROFS_FIXTURES="${ZEROFS_FIXTURES:-$PWD/../shared/fixtures/real}"
if [ -d "$ZEROFS_FIXTURES" ]; then
	ZEROFS_FIXTURES=$(cd "$ZEROFS_FIXTURES" && pwd -P)
fi
export ZEROFS_FIXTURES
# Sanitizer builds: a small ASan quarantine, so that freed memory held
# back to catch use-after-free does not read as growth in the tests that
# watch the daemon's RSS; LeakSanitizer stays on.
case "${SANITIZE:-}" in
*address*) export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=8:detect_leaks=1}" ;;
esac
TMPROOT=$(mktemp -d "${TMPDIR:-/tmp}/zerofs-tests.XXXXXX")
export TMPROOT
trap 'rm -rf "$TMPROOT"' EXIT

passed=0 failed=0 skipped=0
run_one() {
	name=$1; shift
	out="$TMPROOT/$(echo "$name" | tr '/' '_').out"
	"$@" >"$out" 2>&1
	rc=$?
	p=$(grep -c '^ok ' "$out" | tr -d ' ')
	s=$(grep -c '^ok .*# [Ss][Kk][Ii][Pp]' "$out" | tr -d ' ')
	f=$(grep -c '^not ok ' "$out" | tr -d ' ')
	p=$((p - s))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "not ok - $name exited with status $rc" >>"$out"
	fi
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
	if [ "$f" -gt 0 ]; then
		echo "FAIL $name ($p passed, $f failed)"
		grep -v '^ok ' "$out" | sed 's/^/    /' | head -60
	else
		echo "PASS $name ($p passed${s:+, $s skipped})"
		grep '# [Ss][Kk][Ii][Pp]' "$out" | sed 's/^/    /' | head -5
	fi
}

for t in "$ZEROFS_BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	run_one "$t" "$t"
done
for t in tests/t[0-9]*-*.sh tests/t[0-9]*-*.py; do
	[ -e "$t" ] || continue
	case "$t" in
	*.py) run_one "$t" "$PYTHON" "$t" ;;
	*) run_one "$t" sh "$t" ;;
	esac
done

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
