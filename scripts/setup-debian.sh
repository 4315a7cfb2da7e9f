#!/bin/sh
# Installs what zerofs needs to build, run its demo and run its tests on
# Debian 12 (bookworm): Debian's own packages, then the Python clients the
# tests read mounts with (transformers, safetensors, huggingface_hub,
# tokenizers), pinned, from PyPI, into a virtual environment made with
# Debian's python and its system site-packages, so that Debian's
# python3-torch stays the torch. Idempotent; uses sudo for apt when not
# run as root.
#
# The venv is $ZEROFS_VENV, by default .venv in the repository (git
# ignores it); `make check` runs the suite with its python, and the client
# tests re-run themselves with it when started by another python.
set -eu
cd "$(dirname "$0")/.."
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
	build-essential pkg-config make \
	libfuse3-dev fuse3 libzip-dev libcjson-dev libxxhash-dev \
	python3 python3-numpy python3-torch python3-xxhash python3-yaml \
	python3-requests python3-venv \
	clang clang-format libclang-rt-14-dev valgrind mandoc xxhash git

VENV=${ZEROFS_VENV:-$PWD/.venv}
REQ=scripts/clients-requirements.txt
if [ ! -x "$VENV/bin/python3" ]; then
	echo "setup-debian: creating the client venv $VENV"
	/usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
# --no-deps: every distribution is pinned in $REQ, nothing else may come
# (above all no torch from PyPI); --only-binary: nothing is built here.
PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python3" -m pip install -q \
	--no-deps --only-binary=:all: --require-virtualenv -r "$REQ"
"$VENV/bin/python3" scripts/check-clients.py "$REQ"
