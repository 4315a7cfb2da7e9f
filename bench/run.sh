#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/run.sh: the zerofs benchmarks (`make bench`). Writes bench/RESULTS.md.
#
#   bench/run.sh [--gen-only | --peer-only]
#
# --peer-only runs only the side-by-side section with DeepSpeed's
# zero_to_fp32 (section 7) and writes bench/work/RESULTS-peer.md, leaving
# bench/RESULTS.md alone.
#
# Everything is measured side by side in one run, on checkpoints generated
# into bench/work/ (cached, keyed by the generator's arguments and the
# generator's own hash). Needs root (FUSE mounts, /sys/class/bdi), cc and
# pkg-config fuse3; perf and valgrind are used when present.
#
# Environment: PYTHON (torch for the generator), BENCH_RUNS (runs per
# measurement, default 5; cheap ones get BENCH_RUNS + 2), BENCH_GATE_MAX
# (seconds the whole run may spend waiting for an idle machine, default 60),
# BENCH_IDLE (idle % that counts as idle, default 90), ZEROFS_VENV (the
# client venv of scripts/setup-debian.sh, default .venv: transformers for
# section 7), BENCH_PEER_RUNS (runs of section 7 per mode, default 2).
#
# Cold FUSE cache: zerofs sets FOPEN_KEEP_CACHE, so a second read of a file
# is served by the kernel page cache of the mount and never reaches zerofs.
# Before every timed FUSE read, `rd -m evict` calls
# posix_fadvise(POSIX_FADV_DONTNEED) on each file of the mount: that drops
# the clean pages of those FUSE inodes only. The source files stay in the
# page cache (they are read once per measurement group and their residency
# is checked and reported), so "warm" means: sources cached, FUSE cache
# empty. This is checked once per run with mincore (the mount's files are
# 0% resident after evict, 100% after a read). Remounting would do the same
# but adds mount time and new inodes; drop_caches would also drop the
# sources.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-/usr/bin/python3}
RUNS=${BENCH_RUNS:-5}
RUNS_CHEAP=$((RUNS + 2))
GATE_MAX=${BENCH_GATE_MAX:-60}
IDLE_MIN=${BENCH_IDLE:-90}
W=$ROOT/bench/work
BIN=$W/bin
RAW=$W/raw.tsv
META=$W/meta.tsv
ZF=$ROOT/zerofs
GEN=$ROOT/tests/gen/make_ckpt.py
T_START=$EPOCHREALTIME

if [ -n "${MAKELEVEL:-}" ]; then
	CMD="make bench"
else
	CMD="bench/run.sh${*:+ $*}"
fi

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (FUSE mounts, /sys/class/bdi readahead, evicting caches)"
[ -x "$ZF" ] || die "build zerofs first (make)"

mkdir -p "$W" "$BIN" "$W/ckpt" "$W/mnt"

# ---------------------------------------------------------------- cleanup
MOUNTS=()
PIDS=()
cleanup() {
	local m p
	set +e
	for m in "${MOUNTS[@]}"; do
		if mountpoint -q "$m" 2>/dev/null; then
			fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
		fi
	done
	for p in "${PIDS[@]}"; do
		if kill -0 "$p" 2>/dev/null; then
			kill "$p" 2>/dev/null
			wait "$p" 2>/dev/null
		fi
	done
	rm -rf "$W/exp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools
build_tools() {
	local fl="-O2 -g -std=c11 -Wall -Wextra -pthread"
	cc $fl -o "$BIN/rd" bench/rd.c
	# shellcheck disable=SC2046
	cc $fl $(pkg-config --cflags fuse3) -o "$BIN/passthrough" bench/passthrough.c \
		$(pkg-config --libs fuse3)
	# zerofs with and without the identity check after each read of a
	# source (core/source_file.c), both built here the same way (object
	# files, one link), so that only the check differs between them.
	local c opt v
	for v in check nocheck; do
		mkdir -p "$W/$v"
		for c in core/*.c fs/*.c; do
			opt=-O2
			[ "$c" = core/convert.c ] && opt=-O3
			# shellcheck disable=SC2046
			cc $opt -g -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -pthread -Iinclude -Icore \
				$([ $v = nocheck ] && echo -DZF_BENCH_NO_READ_CHECK) \
				$(pkg-config --cflags fuse3 libzip libcjson libxxhash) \
				-c -o "$W/$v/$(echo "$c" | tr / _).o" "$c"
		done
		# shellcheck disable=SC2046
		cc -pthread -o "$BIN/zerofs-$v" "$W/$v"/*.o \
			$(pkg-config --libs fuse3 libzip libcjson libxxhash) -lm
	done
	local o=$W/nocheck
	# The same check measured alone, without FUSE: bench/srccheck.c
	# linked with the core as built by make, and with the core above.
	# shellcheck disable=SC2046
	cc $fl -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Iinclude -Icore -o "$BIN/srccheck" \
		bench/srccheck.c build/libzerofs.a $(pkg-config --libs libzip libcjson libxxhash) -lm
	# shellcheck disable=SC2046
	cc $fl -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Iinclude -Icore -o "$BIN/srccheck-nocheck" \
		bench/srccheck.c "$o"/core_*.o $(pkg-config --libs libzip libcjson libxxhash) -lm
}
RD=$BIN/rd

# ---------------------------------------------------------------- checkpoints
# gen NAME ARGS...: a cached checkpoint; prints its folder. The cache key is
# the generator's arguments (and CKPT_VERSION): after a change to the
# generator that matters here, bump CKPT_VERSION or rm -rf bench/work/ckpt.
CKPT_VERSION=1
gen() {
	local name=$1 key dir t0 t1
	shift
	key=$(printf '%s\n' "$CKPT_VERSION" "$@" | sha1sum | cut -c1-12)
	dir=$W/ckpt/$name-$key
	if [ ! -f "$dir.done" ]; then
		find "$W/ckpt" -maxdepth 1 -name "$name-*" -exec rm -rf {} +
		rm -rf "$W/ckpt/tmp"
		log "generating $name ($*)"
		t0=$EPOCHREALTIME
		"$PYTHON" "$GEN" --out "$W/ckpt/tmp" --name "$name" "$@" >&2
		t1=$EPOCHREALTIME
		mv "$W/ckpt/tmp/$name" "$dir"
		rm -rf "$W/ckpt/tmp"
		printf '%s\t%s\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')" "$*" >"$dir.done"
	fi
	echo "$dir"
}

# ---------------------------------------------------------------- records
# rec KEY VALUE: one sample. meta KEY VALUE: one fact.
rec() { printf '%s\t%s\n' "$1" "$2" >>"$RAW"; }
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }
# field NAME LINE: value of NAME=... in an rd output line
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# ---------------------------------------------------------------- idle gate
# Time only when the machine is idle (this 2-core VM is shared: busy
# neighbours halve throughput figures). Each run samples
# /proc/stat for 0.15 s and waits (0.5 s steps) until >= IDLE_MIN % idle;
# the whole run waits GATE_MAX seconds at most, then measures anyway and
# counts the run as "busy". The idle % seen is recorded for every run.
GATE_USED_MS=0
BUSY_RUNS=0
GATED_RUNS=0
idle_pct() {
	local a b
	a=$(head -1 /proc/stat)
	sleep 0.15
	b=$(head -1 /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," ");split(b,y," ");t=0;
		for(i=2;i<=9;i++)t+=y[i]-x[i]; idle=(y[5]-x[5])+(y[6]-x[6]);
		printf "%d", (t>0 ? 100*idle/t : 100)}'
}
gate() { # gate KEY
	local p
	GATED_RUNS=$((GATED_RUNS + 1))
	while :; do
		p=$(idle_pct)
		if [ "$p" -ge "$IDLE_MIN" ]; then
			break
		fi
		if [ "$GATE_USED_MS" -ge $((GATE_MAX * 1000)) ]; then
			BUSY_RUNS=$((BUSY_RUNS + 1))
			break
		fi
		sleep 0.5
		GATE_USED_MS=$((GATE_USED_MS + 650))
	done
	rec "idle.$1" "$p"
}

# ---------------------------------------------------------------- mounts
wait_mount() { # wait_mount MNT PID
	local i
	for i in $(seq 1 600); do
		mountpoint -q "$1" && return 0
		kill -0 "$2" 2>/dev/null || die "the daemon for $1 exited (see $W/logs)"
		sleep 0.05
	done
	die "$1: not mounted after 30 s"
}
# zmount MNT CKPT ARGS...: zerofs in the foreground; sets ZPID. ZBIN
# (default ./zerofs) picks the binary, ZNOFILE a descriptor limit.
zmount() {
	local mnt=$1 ck=$2
	shift 2
	mkdir -p "$mnt" "$W/logs"
	(
		[ -n "${ZNOFILE:-}" ] && ulimit -n "$ZNOFILE"
		exec "${ZBIN:-$ZF}" mount -f "$ck" "$mnt" "$@"
	) 2>>"$W/logs/$(basename "$mnt").log" &
	ZPID=$!
	PIDS+=("$ZPID")
	MOUNTS+=("$mnt")
	wait_mount "$mnt" "$ZPID"
}
pmount() { # pmount MNT SRC; sets PPID_
	mkdir -p "$1" "$W/logs"
	"$BIN/passthrough" "$2" "$1" 2>>"$W/logs/$(basename "$1").log" &
	PPID_=$!
	PIDS+=("$PPID_")
	MOUNTS+=("$1")
	wait_mount "$1" "$PPID_"
}
unmount() { # unmount MNT PID
	fusermount3 -u "$1" || umount "$1"
	wait "$2" 2>/dev/null || true
}
# ensure_ra MNT: record the readahead the daemon left on its mount, then
# raise it to 1024 KiB if it is lower. The kernel keeps min(bdi, INIT
# max_readahead), so a daemon must both write read_ahead_kb and ask for the
# window in its INIT reply (zerofs does both since this bench found it
# did not; bench/README.md, "Readahead"). The main rows measure 1024 KiB;
# the "as mounted" rows measure what zerofs leaves, and must agree.
bdi_ra() { echo "/sys/class/bdi/$(mountpoint -d "$1")/read_ahead_kb"; }
ensure_ra() {
	local f ra
	f=$(bdi_ra "$1")
	ra=$(cat "$f")
	meta "readahead.$(basename "$1").as_mounted" "$ra KiB"
	if [ "$ra" -lt 1024 ]; then
		echo 1024 >"$f"
	fi
	meta "readahead.$(basename "$1").used" "$(cat "$f") KiB"
}
hwm_kb() { awk '/^VmHWM:/{print $2}' "/proc/$1/status"; }
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- timed runs
# fuse_rd KEY FILES...: (with RD_ARGS) evict the mount's cache, then time.
fuse_rd() {
	local key=$1 out
	shift
	gate "$key"
	"$RD" -m evict "$@" >/dev/null # (-l LIMIT is accepted and ignored)
	out=$("$RD" "${RD_ARGS[@]}" "$@")
	rec "$key.gbps" "$(field gbps "$out")"
	rec "$key.secs" "$(field secs "$out")"
	rec "$key.opsps" "$(field opsps "$out")"
	rec "$key.bytes" "$(field bytes "$out")"
}
# plain_rd KEY FILES...: no eviction (page cache, or keep_cache re-reads).
plain_rd() {
	local key=$1 out
	shift
	gate "$key"
	out=$("$RD" "${RD_ARGS[@]}" "$@")
	rec "$key.gbps" "$(field gbps "$out")"
	rec "$key.secs" "$(field secs "$out")"
	rec "$key.opsps" "$(field opsps "$out")"
	rec "$key.bytes" "$(field bytes "$out")"
}
warm_sources() { # warm_sources TAG FILES...: read them, record residency
	local tag=$1
	shift
	"$RD" -m read "$@" >/dev/null
	rec "resident.$tag" "$(field frac "$("$RD" -m resident "$@")")"
}
now_ms() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.3f", (b-a)*1000}'; }

# ---------------------------------------------------------------- 7 peer
# DeepSpeed's own zero_to_fp32 on the same checkpoints as zerofs
# (bench/peer.py). DeepSpeed comes from PyPI (bench/peer-requirements.txt)
# into $PEER with the client venv's pip, --no-deps: never a torch; it is
# used through PYTHONPATH by the zero_to_fp32 runs only.
VENV=${ZEROFS_VENV:-$ROOT/.venv}
VPY=$VENV/bin/python3
PEER=$W/peer
PEER_REQ=$ROOT/bench/peer-requirements.txt
PEER_RUNS=${BENCH_PEER_RUNS:-2}
install_peer() {
	local stamp
	stamp=$(sha1sum "$PEER_REQ" | cut -c1-12)
	[ -x "$VPY" ] && "$VPY" -c 'import transformers' 2>/dev/null ||
		die "no client venv at $VENV with transformers: run scripts/setup-debian.sh"
	if [ "$(cat "$PEER/.stamp" 2>/dev/null)" != "$stamp" ]; then
		log "installing DeepSpeed for the side-by-side section into $PEER (PyPI, --no-deps)"
		rm -rf "$PEER"
		grep -v '^deepspeed==' "$PEER_REQ" >"$W/peer-deps.txt"
		PIP_DISABLE_PIP_VERSION_CHECK=1 "$VPY" -m pip install -q --no-deps --only-binary=:all: \
			--target "$PEER" -r "$W/peer-deps.txt" >&2
		DS_BUILD_OPS=0 PIP_DISABLE_PIP_VERSION_CHECK=1 "$VPY" -m pip install -q --no-deps \
			--no-build-isolation --target "$PEER" "$(grep '^deepspeed==' "$PEER_REQ")" >&2
		if ls -d "$PEER"/torch "$PEER"/torch-* "$PEER"/nvidia* >/dev/null 2>&1; then
			die "a torch or CUDA package landed in $PEER"
		fi
		echo "$stamp" >"$PEER/.stamp"
	fi
	meta peer.versions "$(cd "$W" && PYTHONPATH="$PEER" DS_ACCELERATOR=cpu "$VPY" -c '
import deepspeed, torch, transformers, safetensors, sys
print("DeepSpeed %s (PyPI, DS_BUILD_OPS=0), torch %s (%s), transformers %s, safetensors %s, Python %s" % (
    deepspeed.__version__, torch.__version__, torch.__file__.rsplit("/", 2)[0], transformers.__version__,
    safetensors.__version__, sys.version.split()[0]))' 2>/dev/null | tail -1)"
}
peer_checkpoints() {
	# Llama-shaped (make_ckpt.py --llama), ~1 GB of fp32 masters (246 M
	# parameters, untied head: zero_to_fp32 cannot write tied ones as
	# safetensors), bf16 training, HF Trainer layout (config.json).
	local shape="--llama --layout trainer --dtype bf16 --hidden 1024 --heads 16 --kv-heads 4 \
		--intermediate 2816 --vocab 32000 --layers 16"
	# shellcheck disable=SC2086
	P3=$(gen p3 $shape --stage 3 --ws 2 --seed 5)
	# shellcheck disable=SC2086
	P2=$(gen p2 $shape --stage 2 --ws 2 --seed 6)
	PTIED=$(gen ptied --llama --layout trainer --dtype bf16 --stage 3 --ws 2 --tied --seed 7)
	for c in "$P3" "$P2"; do
		IFS=$'\t' read -r secs args <"$c.done"
		meta "gen.$(basename "$c" | cut -d- -f1)" "$secs s: make_ckpt.py $args"
	done
}
peer_section() {
	log "DeepSpeed's zero_to_fp32 side by side ($PEER_RUNS warm + $PEER_RUNS cold runs per checkpoint)"
	install_peer
	meta peer.runs "$PEER_RUNS"
	local spec name ck
	for spec in "z3:$P3" "z2:$P2"; do
		name=${spec%%:*} ck=${spec#*:}
		"$VPY" bench/peer.py --ckpt "$ck" --name "$name" --work "$W/peerwork" --zerofs "$ZF" \
			--rd "$RD" --peer "$PEER" --runs "$PEER_RUNS" --raw "$RAW" --meta "$META" \
			--idle "$IDLE_MIN" --gate-max "$GATE_MAX" ||
			die "bench/peer.py $name failed"
	done
	"$VPY" bench/peer.py --tied-only --ckpt "$PTIED" --name tied --work "$W/peerwork" --zerofs "$ZF" \
		--rd "$RD" --peer "$PEER" --raw "$RAW" --meta "$META"
}

# ================================================================ main
: >"$RAW"
: >"$META"
log "building bench tools"
build_tools

# Checkpoints. R: ~1 GB of real random fp32 weights, ZeRO-3, 2 ranks (the
# throughput model). S: ~3.9 GB, ZeRO-3, 8 ranks, mostly one sparse all-zero
# param (RSS vs model size only). M: 64 ranks, 2,100 tiny tensors (metadata).
R=$(gen r1g --stage 3 --ws 2 --hidden 1024 --intermediate 2816 --vocab 32000 \
	--max-pos 16 --layers 15 --no-odd --no-edge --seed 1)
S=$(gen s4g --stage 3 --ws 8 --big-gib 0.45 --hidden 256 --intermediate 688 \
	--vocab 8000 --max-pos 16 --layers 4 --no-odd --no-edge --seed 2)
M=$(gen m64 --stage 3 --ws 64 --params 2100 --no-odd --no-edge --seed 3)
peer_checkpoints
for c in "$R" "$S" "$M"; do
	IFS=$'\t' read -r secs args <"$c.done"
	meta "gen.$(basename "$c" | cut -d- -f1)" "$secs s: make_ckpt.py $args"
done
# Scaling: ranks x tensors (a 1,024 x 20,000 takes ~2 minutes to write
# once), and Llama-2-70B's shape at 64 ranks (sparse: 771 GB apparent,
# 25 MB on disk).
declare -A SC
for ranks in 8 64 256 1024; do
	for tensors in 300 2000 20000; do
		SC[${ranks}x$tensors]=$(gen "sc${ranks}x$tensors" --stage 3 --ws "$ranks" \
			--params "$tensors" --no-odd --no-edge --seed 4)
	done
done
L70=$(gen l70b --llama70b --ws 64 --seed 5)
[ "${1:-}" = --gen-only ] && { log "checkpoints ready"; exit 0; }

tagdir() { echo "$1/$(cat "$1/latest")"; }
RT=$(tagdir "$R")

# Machine.
meta machine.nproc "$(nproc)"
meta machine.kernel "$(uname -r)"
meta machine.cpu "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
meta machine.mem "$(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
meta machine.libfuse "$(pkg-config --modversion fuse3) (pkg-config fuse3)"
meta machine.cc "$(cc --version | head -1)"
meta machine.fs "$(df -T "$W" | awk 'NR==2{print $2" ("$1")"}')"
meta machine.load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
meta zerofs.git "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
meta cmd "$CMD"
meta date "$(date '+%Y-%m-%d %H:%M')"
meta runs "$RUNS (cheap measurements: $RUNS_CHEAP)"
if [ "${1:-}" = --peer-only ]; then
	peer_section
	meta elapsed "$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f s", b-a}')"
	PEER_ONLY=1 "$PYTHON" bench/report.py "$RAW" "$META" "$W" >"$W/RESULTS-peer.md"
	log "wrote $W/RESULTS-peer.md"
	exit 0
fi

# ---------------------------------------------------------------- mounts
MZ32=$W/mnt/z32 MZB=$W/mnt/zbf16 MZH=$W/mnt/zfp16 MPT=$W/mnt/pt
SHARD=300MB
zmount "$MZ32" "$R" --dtype fp32 --max-shard-size $SHARD
PID_Z32=$ZPID
zmount "$MZB" "$R" --dtype bf16 --max-shard-size $SHARD
PID_ZB=$ZPID
zmount "$MZH" "$R" --dtype fp16 --max-shard-size $SHARD
PID_ZH=$ZPID
pmount "$MPT" "$RT"
PID_PT=$PPID_
Z32=("$MZ32"/*.safetensors)
ZB=("$MZB"/*.safetensors)
ZH=("$MZH"/*.safetensors)
SRC=("$RT"/*_optim_states.pt)
PT=()
for f in "${SRC[@]}"; do PT+=("$MPT/$(basename "$f")"); done
for m in "$MZ32" "$MZB" "$MZH" "$MPT"; do
	ensure_ra "$m"
done
# The passthrough and page-cache runs read as many bytes as the fp32 view.
LIM=$(du -cb --apparent-size "${Z32[@]}" | tail -1 | cut -f1)
meta files.z32 "${#Z32[@]} safetensors, $(du -cb --apparent-size "${Z32[@]}" | tail -1 | cut -f1) bytes"
meta files.zbf16 "${#ZB[@]} safetensors, $(du -cb --apparent-size "${ZB[@]}" | tail -1 | cut -f1) bytes"
meta files.src "${#SRC[@]} optim files, $(du -cb --apparent-size "${SRC[@]}" | tail -1 | cut -f1) bytes"

# Cold-cache check: the mount's cache is empty after evict, full after a read.
warm_sources r "${SRC[@]}"
"$RD" -m read "${Z32[@]}" >/dev/null
meta check.z32_after_read "$(field frac "$("$RD" -m resident "${Z32[@]}")")"
"$RD" -m evict "${Z32[@]}" >/dev/null
meta check.z32_after_evict "$(field frac "$("$RD" -m resident "${Z32[@]}")")"
meta check.src_after_evict "$(field frac "$("$RD" -m resident "${SRC[@]}")")"

# ---------------------------------------------------------------- 1+2 sequential
log "sequential reads: zerofs fp32, passthrough, page cache (1/2/4 readers, mmap)"
for spec in "read:1" "read:2" "read:4" "touch:1" "copy:1"; do
	mode=${spec%:*} t=${spec#*:}
	RD_ARGS=(-m "$mode" -t "$t" -b 1048576)
	k=$mode.t$t
	warm_sources r "${SRC[@]}"
	for i in $(seq 1 "$RUNS"); do
		fuse_rd "seq.z32.$k" "${Z32[@]}"
		fuse_rd "seq.pt.$k" -l "$LIM" "${PT[@]}"
		plain_rd "seq.pc.$k" -l "$LIM" "${SRC[@]}"
	done
	rec "resident_after.seq.$k" "$(field frac "$("$RD" -m resident "${SRC[@]}")")"
done
RA_Z32=$(awk '$1=="readahead.z32.as_mounted"{print $2}' "$META")
if [ "$RA_Z32" -lt 1024 ]; then
	log "sequential reads with the readahead zerofs leaves ($RA_Z32 KiB)"
	echo "$RA_Z32" >"$(bdi_ra "$MZ32")"
	for spec in "read:1" "copy:1"; do
		mode=${spec%:*} t=${spec#*:}
		RD_ARGS=(-m "$mode" -t "$t" -b 1048576)
		for i in $(seq 1 "$RUNS"); do
			fuse_rd "seq.z32ra.$mode.t$t" "${Z32[@]}"
		done
	done
	echo 1024 >"$(bdi_ra "$MZ32")"
fi
log "keep_cache warm re-reads"
RD_ARGS=(-m read -t 1 -b 1048576)
"$RD" -m read "${Z32[@]}" >/dev/null
"$RD" -m read -l "$LIM" "${PT[@]}" >/dev/null
for i in $(seq 1 "$RUNS_CHEAP"); do
	plain_rd seq.z32.warm "${Z32[@]}"
	plain_rd seq.pt.warm -l "$LIM" "${PT[@]}"
done
RD_ARGS=(-m copy -t 1 -b 1048576)
for i in $(seq 1 "$RUNS_CHEAP"); do
	plain_rd seq.z32.warmcopy "${Z32[@]}"
done
"$RD" -m evict "${PT[@]}" >/dev/null

# ---------------------------------------------------------------- 2b read checks
# Every read of a source checks, after the bytes are in, that the file is
# still the one opened (fstat, core/source_file.c). The same zerofs built
# without that check, read the same way, alternating run by run.
log "per-read source checks: zerofs vs the same build without them (fp32, sequential)"
MCK=$W/mnt/check MNC=$W/mnt/nocheck
ZBIN=$BIN/zerofs-check zmount "$MCK" "$R" --dtype fp32 --max-shard-size $SHARD
PID_CK=$ZPID
ZBIN=$BIN/zerofs-nocheck zmount "$MNC" "$R" --dtype fp32 --max-shard-size $SHARD
PID_NC=$ZPID
ensure_ra "$MCK"
ensure_ra "$MNC"
CK=("$MCK"/*.safetensors)
NC=("$MNC"/*.safetensors)
warm_sources r "${SRC[@]}"
# Throughput needs an idle machine; the daemons' CPU time per GB served
# (utime + stime from /proc, both daemons reading the same bytes) does not.
# The two alternate, and which goes first alternates too.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) * 1000 / hz}' "/proc/$1/stat"; }
chk_run() { # chk_run on|off T
	local pid=$PID_CK files=("${CK[@]}") c0
	[ "$1" = off ] && pid=$PID_NC files=("${NC[@]}")
	c0=$(cpu_ms "$pid")
	fuse_rd "chk.$1.t$2" "${files[@]}"
	rec "chk.$1.t$2.cpu_ms" "$(awk -v a="$c0" -v b="$(cpu_ms "$pid")" 'BEGIN{print b-a}')"
}
for t in 1 2; do
	RD_ARGS=(-m read -t "$t" -b 1048576)
	for i in $(seq 1 $((RUNS_CHEAP * 2))); do
		if [ $((i % 2)) = 0 ]; then
			chk_run on "$t"
			chk_run off "$t"
		else
			chk_run off "$t"
			chk_run on "$t"
		fi
	done
done
unmount "$MCK" "$PID_CK"
unmount "$MNC" "$PID_NC"
# Without FUSE: a source read with and without the check, against plain
# pread, interleaved block by block (bench/srccheck.c); 4 KiB reads show
# the fixed cost per read, the larger ones what it is worth.
warm_sources r "${SRC[@]}"
for b in 4096 131072 1048576; do
	for v in srccheck srccheck-nocheck; do
		for i in $(seq 1 3); do
			gate "chk.micro"
			out=$("$BIN/$v" "${SRC[0]}" "$b" 5)
			rec "chk.micro.$v.$b.us" "$(field per_read_us "$out")"
			rec "chk.micro.$v.$b.ratio" "$(field ratio "$out")"
		done
	done
done

# ---------------------------------------------------------------- 3 dtypes
log "bf16 / fp16 views vs fp32"
warm_sources r "${SRC[@]}"
RD_ARGS=(-m read -t 1 -b 1048576)
for i in $(seq 1 "$RUNS"); do
	fuse_rd dt.fp32 "${Z32[@]}"
	fuse_rd dt.bf16 "${ZB[@]}"
	fuse_rd dt.fp16 "${ZH[@]}"
done
RD_ARGS=(-m read -t 2 -b 1048576)
for i in $(seq 1 "$RUNS"); do
	fuse_rd dt2.fp32 "${Z32[@]}"
	fuse_rd dt2.bf16 "${ZB[@]}"
done

# ---------------------------------------------------------------- 4 random
log "random preads (4 KiB, 1 MiB)"
warm_sources r "${SRC[@]}"
# Random preads are the noisiest rows on a shared 2-CPU machine: each run
# is a pair (zerofs and passthrough back to back, same seed, which one goes
# first alternating), and the summary takes the median of the pairs'
# ratios, so drift between runs cancels out.
for spec in "4096:20000" "1048576:200"; do
	b=${spec%:*} n=${spec#*:}
	for i in $(seq 1 $((RUNS_CHEAP * 2 - 1))); do
		RD_ARGS=(-m rand -t 1 -b "$b" -n "$n" -s "$i")
		if [ $((i % 2)) = 1 ]; then
			fuse_rd "rand.z32.$b" "${Z32[@]}"
			fuse_rd "rand.pt.$b" -l "$LIM" "${PT[@]}"
		else
			fuse_rd "rand.pt.$b" -l "$LIM" "${PT[@]}"
			fuse_rd "rand.z32.$b" "${Z32[@]}"
		fi
		plain_rd "rand.pc.$b" -l "$LIM" "${SRC[@]}"
	done
done
"$RD" -m evict "${Z32[@]}" "${ZB[@]}" "${ZH[@]}" "${PT[@]}" >/dev/null

# ---------------------------------------------------------------- profile
PROF_PERF=no
if command -v perf >/dev/null && perf stat -e instructions true >/dev/null 2>&1 &&
	perf stat -e instructions true 2>&1 | grep -q '[0-9] *instructions'; then
	meta prof.hw "perf stat -e instructions works"
else
	meta prof.hw "perf stat -e instructions: not supported here (no PMU in this guest)"
fi
if command -v perf >/dev/null && perf record -q -e cpu-clock -o "$W/perf.probe" true >/dev/null 2>&1; then
	PROF_PERF=yes
	log "profiling: perf record -e cpu-clock -a -g while reading the fp32 view (3 passes)"
	warm_sources r "${SRC[@]}"
	perf record -q -e cpu-clock -F 2000 -a -g -o "$W/perf.data" -- sh -c \
		"for i in 1 2 3; do '$RD' -m evict $(printf "'%s' " "${Z32[@]}") >/dev/null; '$RD' -m read $(printf "'%s' " "${Z32[@]}") >/dev/null; done" \
		>/dev/null 2>&1 || PROF_PERF=no
fi
rm -f "$W/perf.probe"
if [ "$PROF_PERF" = yes ]; then
	perf report -i "$W/perf.data" --stdio --no-children --sort comm -q -g none 2>/dev/null |
		grep -v '^$' | head -8 >"$W/prof.comm.txt" || true
	perf report -i "$W/perf.data" --stdio --no-children --pid "$PID_Z32" --percentage relative \
		--sort dso,sym -q -g none 2>/dev/null | grep -v '^$' | head -25 >"$W/prof.zerofs.txt" || true
	perf report -i "$W/perf.data" --stdio --no-children --comms rd --percentage relative \
		--sort dso,sym -q -g none 2>/dev/null | grep -v '^$' | head -15 >"$W/prof.rd.txt" || true
fi

# Unmount the throughput mounts (they pin ~0 memory after evict).
unmount "$MZ32" "$PID_Z32"
unmount "$MZB" "$PID_ZB"
unmount "$MZH" "$PID_ZH"
unmount "$MPT" "$PID_PT"

# callgrind: user-space instruction profile of the daemon on a smaller run
# (the first shard of the fp32 view, ~300 MB).
if command -v valgrind >/dev/null; then
	log "profiling: valgrind --tool=callgrind of zerofs serving one fp32 shard"
	MCG=$W/mnt/cg
	mkdir -p "$MCG" "$W/logs"
	rm -f "$W"/callgrind.out*
	valgrind --tool=callgrind --callgrind-out-file="$W/callgrind.out" \
		"$ZF" mount -f "$R" "$MCG" --dtype fp32 --max-shard-size $SHARD \
		2>"$W/logs/callgrind.log" &
	CGPID=$!
	PIDS+=("$CGPID")
	MOUNTS+=("$MCG")
	wait_mount "$MCG" "$CGPID"
	CG1=("$MCG"/model-00001-*.safetensors)
	stat "${CG1[@]}" >/dev/null
	# count the serving only: zero the counters once the mount is up
	callgrind_control -z "$CGPID" >/dev/null 2>&1 || meta prof.callgrind_zero "callgrind_control -z failed: totals include start-up"
	t0=$EPOCHREALTIME
	out=$("$RD" -m read "${CG1[@]}")
	meta prof.callgrind_read "$(field bytes "$out") bytes at $(field gbps "$out") GB/s under callgrind"
	unmount "$MCG" "$CGPID"
	callgrind_annotate --inclusive=no "$W/callgrind.out" 2>/dev/null |
		awk '/^-+$/{d++} d>=3' | grep -v '^-' | grep -v '^$' | head -20 >"$W/prof.cg.self.txt" || true
	callgrind_annotate --inclusive=yes "$W/callgrind.out" 2>/dev/null |
		awk '/^-+$/{d++} d>=3' | grep -v '^-' | grep -v '^$' | head -20 >"$W/prof.cg.incl.txt" || true
fi

# ---------------------------------------------------------------- 5 metadata
log "metadata: inspect and mount time (64 ranks)"
meta m64 "$("$ZF" inspect "$M" | awk '/^ranks|^parameters|^files/' | tr -s ' ' | paste -sd ';')"
"$ZF" inspect "$M" >/dev/null # warm the metadata files
MM=$W/mnt/m64
mkdir -p "$MM"
MOUNTS+=("$MM")
for i in $(seq 1 "$RUNS_CHEAP"); do
	gate meta.inspect
	t0=$EPOCHREALTIME
	"$ZF" inspect "$M" >/dev/null
	rec meta.inspect.ms "$(now_ms "$t0")"
	gate meta.mount
	t0=$EPOCHREALTIME
	"$ZF" mount "$M" "$MM" 2>/dev/null
	rec meta.mount.ms "$(now_ms "$t0")"
	t0=$EPOCHREALTIME
	ls -l "$MM" >/dev/null
	rec meta.ls.ms "$(now_ms "$t0")"
	"$ZF" umount "$MM"
	while mountpoint -q "$MM"; do sleep 0.05; done
done
out=$( { /usr/bin/time -f 'rss_kb=%M' "$ZF" inspect "$M" >/dev/null; } 2>&1 | tail -1)
meta m64.inspect_rss "$(field rss_kb "$out") KiB"

# ---------------------------------------------------------------- 5 RSS
log "peak RSS of the daemon while serving a full read"
MR=$W/mnt/rss
for spec in "r1g:$R:fp32" "r1g:$R:bf16" "s4g:$S:fp32" "s4g:$S:bf16" "m64:$M:fp32"; do
	IFS=: read -r name ck dt <<<"$spec"
	zmount "$MR" "$ck" --dtype "$dt" --max-shard-size $SHARD
	rec "rss.$name.$dt.idle_kb" "$(rss_kb "$ZPID")"
	files=("$MR"/*)
	out=$("$RD" -m read -t 2 "${files[@]}")
	rec "rss.$name.$dt.hwm_kb" "$(hwm_kb "$ZPID")"
	rec "rss.$name.$dt.bytes" "$(field bytes "$out")"
	rec "rss.$name.$dt.gbps" "$(field gbps "$out")"
	rec "rss.$name.$dt.threads" "$(awk '/^Threads:/{print $2}' "/proc/$ZPID/status")"
	unmount "$MR" "$ZPID"
done
"$RD" -m evict "$(tagdir "$S")"/*_optim_states.pt >/dev/null

# ---------------------------------------------------------------- 7 scale
# Ranks x tensors, ZeRO-3, every file generated (make_ckpt.py --params T
# --ws R). inspect and mount under `ulimit -n 1024` (what most shells
# start with); the daemon, under the same limit, reads every byte of the
# fp32 view, then its peak RSS and the descriptors it holds are recorded.
log "scaling: ranks x tensors under ulimit -n 1024"
MS=$W/mnt/scale
mkdir -p "$MS"
MOUNTS+=("$MS")
for ranks in 8 64 256 1024; do
	for tensors in 300 2000 20000; do
		name=sc${ranks}x${tensors}
		ck=${SC[${ranks}x$tensors]}
		IFS=$'\t' read -r secs args <"$ck.done"
		meta "gen.$name" "$secs s"
		meta "scale.$name.files" "$(find "$(tagdir "$ck")" -name '*.pt' | wc -l) files, $(du -sb --apparent-size "$(tagdir "$ck")" | cut -f1) bytes, $("$ZF" inspect "$ck" | awk '/^parameters/{for (i = 1; i < NF; i++) if ($(i + 1) == "tensors") print $i}') tensors"
		for i in $(seq 1 "$RUNS_CHEAP"); do
			gate "scale.$name.inspect"
			t0=$EPOCHREALTIME
			(ulimit -n 1024; exec "$ZF" inspect "$ck" >/dev/null)
			rec "scale.$name.inspect.ms" "$(now_ms "$t0")"
			gate "scale.$name.mount"
			t0=$EPOCHREALTIME
			(ulimit -n 1024; exec "$ZF" mount "$ck" "$MS" 2>/dev/null)
			rec "scale.$name.mount.ms" "$(now_ms "$t0")"
			"$ZF" umount "$MS"
			while mountpoint -q "$MS"; do sleep 0.05; done
		done
		ZNOFILE=1024 zmount "$MS" "$ck" --dtype fp32
		files=("$MS"/*)
		out=$("$RD" -m read -t 2 "${files[@]}")
		rec "scale.$name.hwm_kb" "$(hwm_kb "$ZPID")"
		rec "scale.$name.fds" "$(find "/proc/$ZPID/fd" -mindepth 1 | wc -l)"
		rec "scale.$name.bytes" "$(field bytes "$out")"
		rec "scale.$name.read_s" "$(field secs "$out")"
		unmount "$MS" "$ZPID"
	done
done

# Where opening a checkpoint spends its time: CPU (perf stat task-clock,
# every thread) and wall, then a deterministic instruction profile.
for spec in "m64:$M" "sc1024x2000:${SC[1024x2000]}"; do
	name=${spec%%:*} ck=${spec#*:}
	if command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; then
		for i in $(seq 1 "$RUNS_CHEAP"); do
			gate "open.$name"
			t0=$EPOCHREALTIME
			out=$(perf stat -x, -e task-clock "$ZF" inspect "$ck" 2>&1 >/dev/null | grep task-clock)
			rec "open.$name.wall_ms" "$(now_ms "$t0")"
			rec "open.$name.cpu_ms" "${out%%,*}"
		done
	fi
	if command -v valgrind >/dev/null; then
		valgrind --tool=callgrind --callgrind-out-file="$W/cg.open.$name.out" \
			"$ZF" inspect "$ck" >/dev/null 2>"$W/logs/cg.open.$name.log" || true
		callgrind_annotate --inclusive=no --auto=no --threshold=100 "$W/cg.open.$name.out" 2>/dev/null |
			awk '/^-+$/{d++} d>=3' | grep -v '^-' | grep -v '^$' >"$W/prof.open.$name.self.txt" || true
	fi
done

# ---------------------------------------------------------------- 8 70B
# Llama-2-70B's 723 tensors (276 GB of fp32) at 64 ranks, every parameter
# a sparse hole. Throughput over a sample: the first 2 GB of the second
# shard of each view, sources warm (read once before), FUSE cache cold.
# BENCH_70B_FULL=1 also reads every byte of the fp32 view once (~276 GB
# through the page cache) for the daemon's peak RSS after all of it.
log "Llama-2-70B shape, 64 ranks"
IFS=$'\t' read -r secs args <"$L70.done"
meta gen.l70b "$secs s: make_ckpt.py $args"
meta l70b "$("$ZF" inspect "$L70" | awk '/^ranks|^parameters|^files/' | tr -s ' ' | paste -sd ';')"
for i in $(seq 1 "$RUNS_CHEAP"); do
	gate l70b.inspect
	t0=$EPOCHREALTIME
	"$ZF" inspect "$L70" >/dev/null
	rec l70b.inspect.ms "$(now_ms "$t0")"
	gate l70b.mount
	t0=$EPOCHREALTIME
	"$ZF" mount "$L70" "$MS" 2>/dev/null
	rec l70b.mount.ms "$(now_ms "$t0")"
	"$ZF" umount "$MS"
	while mountpoint -q "$MS"; do sleep 0.05; done
done
for dt in fp32 bf16; do
	zmount "$MS" "$L70" --dtype "$dt"
	ensure_ra "$MS"
	rec "l70b.$dt.idle_kb" "$(rss_kb "$ZPID")"
	shard=("$MS"/model-00002-of-*.safetensors)
	RD_ARGS=(-m read -t 1 -b 1048576 -l 2000000000)
	"$RD" "${RD_ARGS[@]}" "${shard[@]}" >/dev/null # sources into the page cache
	for i in $(seq 1 "$RUNS"); do
		fuse_rd "l70b.$dt" "${shard[@]}"
	done
	if [ "$dt" = fp32 ] && [ "${BENCH_70B_FULL:-0}" = 1 ]; then
		log "Llama-2-70B shape: every byte of the fp32 view"
		out=$("$RD" -m read -t 2 "$MS"/*)
		rec l70b.full.bytes "$(field bytes "$out")"
		rec l70b.full.gbps "$(field gbps "$out")"
	fi
	rec "l70b.$dt.hwm_kb" "$(hwm_kb "$ZPID")"
	rec "l70b.$dt.fds" "$(find "/proc/$ZPID/fd" -mindepth 1 | wc -l)"
	unmount "$MS" "$ZPID"
done

# ---------------------------------------------------------------- 6 export
log "export vs cp -r"
EXP=$W/exp
rm -rf "$EXP"
mkdir -p "$EXP"
EXPARGS=(--dtype fp32 --max-shard-size $SHARD -q)
if "$ZF" export --help >/dev/null 2>&1; then
	meta export.help "$("$ZF" export --help 2>&1 | head -1)"
	warm_sources r "${SRC[@]}"
	"$ZF" export "$R" "$EXP/ref" "${EXPARGS[@]}" --no-fsync >/dev/null 2>&1 ||
		die "zerofs export $R failed"
	meta export.bytes "$(du -sb --apparent-size "$EXP/ref" | cut -f1)"
	meta export.files "$(find "$EXP/ref" -type f | wc -l)"
	find "$EXP/ref" -type f -exec "$RD" -m read {} + >/dev/null
	sync
	# Page-cache speed: export --no-fsync vs cp -r (neither flushes).
	for i in $(seq 1 "$RUNS"); do
		gate export.zf
		t0=$EPOCHREALTIME
		"$ZF" export "$R" "$EXP/out" "${EXPARGS[@]}" --no-fsync >/dev/null 2>&1
		rec export.zf.ms "$(now_ms "$t0")"
		rm -rf "$EXP/out"
		sync
		gate export.cp
		t0=$EPOCHREALTIME
		cp -r "$EXP/ref" "$EXP/out"
		rec export.cp.ms "$(now_ms "$t0")"
		rm -rf "$EXP/out"
		sync
	done
	# Durable: export (fsync, the default) vs cp -r + sync of those files.
	for i in $(seq 1 3); do
		gate export.zfsync
		t0=$EPOCHREALTIME
		"$ZF" export "$R" "$EXP/out" "${EXPARGS[@]}" >/dev/null 2>&1
		rec export.zfsync.ms "$(now_ms "$t0")"
		rm -rf "$EXP/out"
		sync
		gate export.cpsync
		t0=$EPOCHREALTIME
		cp -r "$EXP/ref" "$EXP/out"
		find "$EXP/out" -type f -exec sync {} +
		rec export.cpsync.ms "$(now_ms "$t0")"
		rm -rf "$EXP/out"
		sync
	done
else
	meta export.missing "$("$ZF" export --help 2>&1 | head -1; echo "exit status $?")"
fi
# cp -r out of a zerofs mount, for reference (what a user without export does).
zmount "$MR" "$R" --dtype fp32 --max-shard-size $SHARD
MRPID=$ZPID
ensure_ra "$MR"
warm_sources r "${SRC[@]}"
for i in $(seq 1 "$RUNS"); do
	"$RD" -m evict "$MR"/* >/dev/null
	sync
	gate export.cpmnt
	t0=$EPOCHREALTIME
	cp -r "$MR" "$EXP/mnt"
	rec export.cpmnt.ms "$(now_ms "$t0")"
	rm -rf "$EXP/mnt"
	sync
done
meta export.cpmnt_bytes "$(du -cb --apparent-size "$MR"/* | tail -1 | cut -f1)"
if ! [ -d "$EXP/ref" ]; then
	# the cp -r baseline alone, from a plain copy of the mount's files
	cp -r "$MR" "$EXP/ref"
	sync
	for i in $(seq 1 "$RUNS"); do
		gate export.cp
		t0=$EPOCHREALTIME
		cp -r "$EXP/ref" "$EXP/out"
		rec export.cp.ms "$(now_ms "$t0")"
		rm -rf "$EXP/out"
		sync
	done
	meta export.bytes "$(du -sb --apparent-size "$EXP/ref" | cut -f1)"
fi
unmount "$MR" "$MRPID"
rm -rf "$EXP"

peer_section

# ---------------------------------------------------------------- report
meta gate "$GATED_RUNS runs gated at >= $IDLE_MIN% idle; $BUSY_RUNS measured busy after the ${GATE_MAX}s wait budget ran out; waited $((GATE_USED_MS / 1000)) s"
meta machine.load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
meta elapsed "$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f s", b-a}')"
"$PYTHON" bench/report.py "$RAW" "$META" "$W" >bench/RESULTS.md
log "wrote bench/RESULTS.md"
awk '/^## Summary/{p=1} p&&/^## /&&!/Summary/{exit} p' bench/RESULTS.md
