#!/bin/sh
# Builds the libFuzzer harnesses (clang, ASan + UBSan) and runs each for
# FUZZ_SECONDS (default 60). The working corpus is tests/fuzz/corpus-work/
# (gitignored), seeded from tests/fuzz/seeds/ and, when ../shared/fixtures
# exists, from seeds made from the real fixtures at run time (fixtures are
# never copied into the project). Any crash, leak, timeout or out-of-memory
# reproducer is copied to tests/fuzz/crashes/<harness>/ for the lead to
# commit; `make check` replays that folder (tests/unit/test_fuzz_replay.c).
# Exits 1 when a harness found a problem, 2 when the build failed.
#
#   FUZZ_SECONDS=10 tests/fuzz/run.sh          the short CI pass
#   FUZZ_HARNESSES="pickle ptlegacy" tests/fuzz/run.sh
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
[ -n "$FUZZ_SECONDS" ] || FUZZ_SECONDS=60
FUZZ_CC=${FUZZ_CC:-clang}
PYTHON=${PYTHON:-/usr/bin/python3}
HARNESSES=${FUZZ_HARNESSES:-pickle ptfile ptlegacy container ckpt config}
FIXTURES=${ZEROFS_FIXTURES:-$ROOT/../shared/fixtures/real}
OUT=$ROOT/build/fuzz
WORK=$ROOT/tests/fuzz/corpus-work
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
-std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Iinclude -Icore -pthread"
PKGS="libzip libcjson libxxhash"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/zerofs-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT INT TERM

max_len() {
	case $1 in
	pickle) echo 131072 ;;
	ptfile) echo 262144 ;;
	ptlegacy) echo 262144 ;;
	container) echo 262144 ;;
	ckpt) echo 655360 ;;
	config) echo 65536 ;;
	esac
}

# --- build -------------------------------------------------------------
command -v "$FUZZ_CC" >/dev/null || { echo "run.sh: no $FUZZ_CC" >&2; exit 2; }
# shellcheck disable=SC2086
PKG_CFLAGS=$(pkg-config --cflags $PKGS) || exit 2
# shellcheck disable=SC2086
PKG_LIBS=$(pkg-config --libs $PKGS) || exit 2
mkdir -p "$OUT/core" || exit 2
objs=
for src in core/*.c; do
	obj=$OUT/core/$(basename "$src" .c).o
	# rebuilt when the source or any header is newer than the object
	if [ ! -e "$obj" ] || [ -n "$(find "$src" core/*.h include -type f -newer "$obj" | head -1)" ]; then
		echo "  CC      $src"
		# shellcheck disable=SC2086
		$FUZZ_CC $CFLAGS $PKG_CFLAGS -c -o "$obj" "$src" || exit 2
	fi
	objs="$objs $obj"
done
for h in $HARNESSES; do
	echo "  LD      build/fuzz/fuzz_$h"
	# shellcheck disable=SC2086
	$FUZZ_CC $CFLAGS $PKG_CFLAGS -o "$OUT/fuzz_$h" "tests/fuzz/fuzz_$h.c" \
		$objs $PKG_LIBS -lm || exit 2
done

# --- seeds from the real fixtures (generated here, never committed) ------
extra=
if [ -d "$FIXTURES" ]; then
	if "$PYTHON" tests/fuzz/make_seeds.py --fixtures "$FIXTURES" --out "$TMP/fixture-seeds" >"$TMP/seeds.log" 2>&1; then
		extra=$TMP/fixture-seeds
	else
		echo "run.sh: fixture seeds not made:" >&2
		sed 's/^/    /' "$TMP/seeds.log" >&2
	fi
fi

# --- run ---------------------------------------------------------------
status=0
export TMPDIR="$TMP" # fuzz_ckpt's checkpoint folder
for h in $HARNESSES; do
	mkdir -p "$WORK/$h" "$TMP/art/$h" "tests/fuzz/seeds/$h"
	dirs="tests/fuzz/seeds/$h"
	[ -n "$extra" ] && [ -d "$extra/$h" ] && dirs="$dirs $extra/$h"
	log=$TMP/$h.log
	echo "== fuzz_$h: ${FUZZ_SECONDS}s, -max_len=$(max_len "$h")"
	# shellcheck disable=SC2086
	"$OUT/fuzz_$h" -max_total_time="$FUZZ_SECONDS" -max_len="$(max_len "$h")" \
		-timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
		-print_final_stats=1 -artifact_prefix="$TMP/art/$h/" \
		"$WORK/$h" $dirs >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	units=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
	found=0
	for a in "$TMP/art/$h"/*; do
		[ -f "$a" ] || continue
		case $(basename "$a") in
		crash-*|leak-*|timeout-*|oom-*) ;;
		*) continue ;;
		esac
		mkdir -p "tests/fuzz/crashes/$h"
		cp "$a" "tests/fuzz/crashes/$h/"
		echo "   reproducer: tests/fuzz/crashes/$h/$(basename "$a")"
		found=$((found + 1))
	done
	if [ "$found" -eq 0 ] && [ "$rc" -ne 0 ]; then
		found=1 # died without an artifact
	fi
	echo "   executions: ${execs:-?}, new units: ${units:-?}, crashes: $found"
	if [ "$found" -gt 0 ]; then
		status=1
		grep -m1 -A25 '^==[0-9]*==ERROR\|runtime error\|^==[0-9]*== ERROR\|deadly signal' "$log" | sed 's/^/    /'
	fi
done
exit $status
