#!/bin/sh
# make style: what clang-format (.clang-format, the kernel's style) would
# change in the C lines changed since BASE (default HEAD: the work not yet
# committed; STYLE_BASE=main for a branch). Only changed lines are looked
# at, as in git's own `make style`: the tree is not reformatted in one go,
# so history stays readable. Prints the diff and exits 1 when there is one.
set -eu
base=${1:-HEAD}
command -v git-clang-format >/dev/null 2>&1 || {
	echo "make style: git-clang-format not found (apt-get install clang-format)" >&2
	exit 2
}
out=$(git clang-format --style=file --diff --extensions c,h "$base" -- 2>&1) || true
case $out in
"" | "no modified files to format" | "clang-format did not modify any files")
	echo "make style: the C lines changed since $base are formatted"
	exit 0
	;;
esac
printf '%s\n' "$out"
# git-clang-format's own errors (a bad base, no repository) are not diffs.
case $out in
diff* | *"
diff"*) echo "make style: clang-format would change the lines above" >&2; exit 1 ;;
*) exit 2 ;;
esac
