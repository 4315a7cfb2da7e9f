#!/bin/sh
# Installs what zerofs needs to build, run its demo and run its tests on
# Debian 12 (bookworm), from Debian's own packages. Idempotent; uses sudo
# when not run as root.
set -eu
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
	build-essential pkg-config make \
	libfuse3-dev fuse3 libzip-dev libcjson-dev libxxhash-dev \
	python3 python3-numpy python3-torch python3-xxhash \
	clang libclang-rt-14-dev valgrind mandoc xxhash
