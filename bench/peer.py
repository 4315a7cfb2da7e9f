#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""zerofs side by side with DeepSpeed's own zero_to_fp32 on one checkpoint
(bench/run.sh's "peer" section; run with the client venv's python).

usage: peer.py --ckpt DIR --name NAME --work DIR --zerofs BIN --rd BIN
               --peer DIR --runs N --raw RAW.tsv --meta META.tsv

For each run, warm (the source files read once before, so they sit in the
page cache) and cold (their pages dropped with posix_fadvise(DONTNEED)
through `rd -m evict`, checked with mincore):

  export  `zerofs export CKPT OUT --dtype fp32 --no-fsync`
  z2f     `python -m deepspeed.utils.zero_to_fp32 CKPT OUT --safe_serialization`
          (DeepSpeed from PyPI, on PYTHONPATH), then the checkpoint's
          config.json copied beside it and
          AutoModelForCausalLM.from_pretrained(OUT, torch_dtype=float32)
  mount   `zerofs mount -f CKPT MNT --dtype fp32` until mounted, then
          from_pretrained(MNT, torch_dtype=float32), then umount
  mount16 the same with zerofs' default view (--dtype auto, the training
          dtype) and torch_dtype="auto"

Measured: wall seconds; peak RSS (wait4's ru_maxrss of the process); bytes
read, from the exited process's /proc/PID/io (read while it is a zombie,
waitid WNOWAIT): rchar = bytes returned by read(2)/pread(2) from any file
(the sources, plus Python's own modules), read_bytes = bytes the kernel
fetched from the disk (cold: the source pages that were not cached); for
the mount the daemon's counters and VmHWM. The loader prints its own
import and load times. Records go to RAW as "peer.NAME.WHAT.MODE.METRIC<TAB>value".
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

LOADER = r"""
import json, sys, time
t0 = time.time()
import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging
logging.disable_progress_bar()
t1 = time.time()
dt = "auto" if sys.argv[2] == "auto" else getattr(torch, sys.argv[2])
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=dt)
t2 = time.time()
with torch.no_grad():
    logits = m(torch.tensor([[1, 2, 3, 4]])).logits
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "params": sum(p.numel() for p in m.parameters()),
                  "dtype": str(m.dtype), "logit0": float(logits[0, -1, 0])}))
"""


def proc_io(pid):
    out = {}
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            k, v = line.split(":")
            out[k.strip()] = int(v)
    return out


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def run(cmd, env=None, cwd=None):
    """Runs cmd; returns dict(secs, rss_kb, rchar, read_bytes, rc, out, err).
    Output goes to files, not pipes: the child must stay unreaped (a zombie)
    until its /proc/PID/io has been read."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fo, stderr=fe, text=True)
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
        secs = time.monotonic() - t0
        io = proc_io(p.pid)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        return {"secs": secs, "rss_kb": ru.ru_maxrss, "rchar": io["rchar"], "read_bytes": io["read_bytes"],
                "rc": p.returncode, "out": fo.read(), "err": fe.read()}


def idle_pct():
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v), v[3] + v[4]
    t0, i0 = sample()
    time.sleep(0.15)
    t1, i1 = sample()
    return 100.0 * (i1 - i0) / max(1, t1 - t0)


class Bench:
    def __init__(self, a):
        self.a = a
        self.gate_left = a.gate_max
        self.ck = os.path.abspath(a.ckpt)
        with open(os.path.join(self.ck, "latest")) as f:
            self.tag = os.path.join(self.ck, f.read().strip())
        self.sources = sorted(os.path.join(self.tag, n) for n in os.listdir(self.tag))
        self.src_bytes = sum(os.path.getsize(p) for p in self.sources)
        self.work = os.path.abspath(a.work)
        os.makedirs(self.work, exist_ok=True)
        self.env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        self.penv = dict(self.env, PYTHONPATH=os.path.abspath(a.peer), DS_ACCELERATOR="cpu")

    # -- records ---------------------------------------------------------------
    def rec(self, key, value):
        with open(self.a.raw, "a") as f:
            f.write("peer.%s.%s\t%s\n" % (self.a.name, key, value))

    def meta(self, key, value):
        with open(self.a.meta, "a") as f:
            f.write("peer.%s.%s\t%s\n" % (self.a.name, key, value))

    def log(self, msg):
        print("[peer %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)

    # -- page cache --------------------------------------------------------------
    def resident(self):
        out = subprocess.run([self.a.rd, "-m", "resident"] + self.sources, capture_output=True,
                             text=True).stdout
        for kv in out.split():
            if kv.startswith("frac="):
                return float(kv[5:])
        return float("nan")

    def gate(self, what):
        """Time only on an idle machine (bench/README.md, "Measuring"). Waits
        (0.5 s steps) until >= --idle % idle, for --gate-max seconds in all;
        records the idle % seen before each timed run."""
        while True:
            p = idle_pct()
            if p >= self.a.idle or self.gate_left <= 0:
                break
            time.sleep(0.5)
            self.gate_left -= 0.65
        self.rec("idle.%s" % what, p)

    def prepare(self, mode):
        os.sync()
        if mode == "warm":
            subprocess.run([self.a.rd, "-m", "read"] + self.sources, capture_output=True, check=True)
        else:
            subprocess.run([self.a.rd, "-m", "evict"] + self.sources, capture_output=True, check=True)
        self.rec("resident_before.%s" % mode, self.resident())
        self.gate(mode)

    # -- the four ways ------------------------------------------------------------
    def export(self, mode):
        out = os.path.join(self.work, "export")
        shutil.rmtree(out, ignore_errors=True)
        r = run([self.a.zerofs, "export", self.ck, out, "--dtype", "fp32", "--no-fsync", "-q"], env=self.env)
        if r["rc"] != 0:
            raise RuntimeError("zerofs export failed: %s" % r["err"][-2000:])
        self.rec("export.%s.secs" % mode, r["secs"])
        self.rec("export.%s.rss_kb" % mode, r["rss_kb"])
        self.rec("export.%s.rchar" % mode, r["rchar"])
        self.rec("export.%s.read_bytes" % mode, r["read_bytes"])
        return out

    def loader(self, folder, dtype):
        r = run([sys.executable, "-c", LOADER, folder, dtype], env=self.env)
        if r["rc"] != 0:
            raise RuntimeError("from_pretrained(%s) failed: %s" % (folder, r["err"][-2000:]))
        r.update(json.loads(r["out"].strip().splitlines()[-1]))
        return r

    def z2f(self, mode, load=True):
        out = os.path.join(self.work, "z2f")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)  # 0.15's CLI does not create it
        r = run([sys.executable, "-m", "deepspeed.utils.zero_to_fp32", self.ck, out, "--safe_serialization"],
                env=self.penv, cwd=self.work)
        if r["rc"] != 0:
            raise RuntimeError("zero_to_fp32 failed: %s" % r["err"][-3000:])
        self.rec("z2f.%s.secs" % mode, r["secs"])
        self.rec("z2f.%s.rss_kb" % mode, r["rss_kb"])
        self.rec("z2f.%s.rchar" % mode, r["rchar"])
        self.rec("z2f.%s.read_bytes" % mode, r["read_bytes"])
        if load:
            shutil.copy(os.path.join(self.ck, "config.json"), out)
            ld = self.loader(out, "float32")
            self.rec("z2f_load.%s.secs" % mode, ld["secs"])
            self.rec("z2f_load.%s.load_s" % mode, ld["load_s"])
            self.rec("z2f_load.%s.import_s" % mode, ld["import_s"])
            self.rec("z2f_load.%s.rss_kb" % mode, ld["rss_kb"])
            self.rec("z2f_total.%s.secs" % mode, r["secs"] + ld["secs"])
            self.logit_z2f = ld["logit0"]
        return out

    def mount(self, mode, view):
        mnt = os.path.join(self.work, "mnt")
        os.makedirs(mnt, exist_ok=True)
        args = ["--dtype", "fp32"] if view == "fp32" else []
        t0 = time.monotonic()
        d = subprocess.Popen([self.a.zerofs, "mount", "-f", self.ck, mnt] + args,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while not os.path.ismount(mnt):
            if d.poll() is not None:
                raise RuntimeError("zerofs mount exited: %s" % d.stderr.read()[-2000:])
            if time.monotonic() - t0 > 60:
                raise RuntimeError("zerofs mount: not mounted after 60 s")
            time.sleep(0.005)
        t_mounted = time.monotonic() - t0
        try:
            ld = self.loader(mnt, "float32" if view == "fp32" else "auto")
            io = proc_io(d.pid)
            hwm = status_kb(d.pid, "VmHWM")
        finally:
            subprocess.run([self.a.zerofs, "umount", mnt], capture_output=True)
            try:
                d.wait(timeout=30)
            except subprocess.TimeoutExpired:
                subprocess.run(["umount", "-l", mnt], capture_output=True)
                d.wait()
        what = "mount" if view == "fp32" else "mount16"
        self.rec("%s.%s.mount_s" % (what, mode), t_mounted)
        self.rec("%s_load.%s.secs" % (what, mode), ld["secs"])
        self.rec("%s_load.%s.load_s" % (what, mode), ld["load_s"])
        self.rec("%s_load.%s.import_s" % (what, mode), ld["import_s"])
        self.rec("%s_load.%s.rss_kb" % (what, mode), ld["rss_kb"])
        self.rec("%s_total.%s.secs" % (what, mode), t_mounted + ld["secs"])
        self.rec("%s.%s.daemon_rchar" % (what, mode), io["rchar"])
        self.rec("%s.%s.daemon_read_bytes" % (what, mode), io["read_bytes"])
        self.rec("%s.%s.daemon_hwm_kb" % (what, mode), hwm)
        if view == "fp32":
            self.logit_mount = ld["logit0"]
        self.meta("%s.dtype" % what, ld["dtype"])
        self.meta("params", ld["params"])

    # -- the run -----------------------------------------------------------------
    def main(self):
        a = self.a
        self.meta("source", "%d files, %d bytes (%s)" % (len(self.sources), self.src_bytes,
                                                        ", ".join(os.path.basename(s) for s in self.sources)))
        # What the peer reads before it reads the checkpoint (Python, torch, DeepSpeed).
        r = run([sys.executable, "-m", "deepspeed.utils.zero_to_fp32", "--help"], env=self.penv, cwd=self.work)
        self.meta("z2f_startup", "%.1f s, %d bytes read (rchar)" % (r["secs"], r["rchar"]))
        self.rec("z2f_startup.rchar", r["rchar"])
        # Once: do the two writers agree byte for byte?
        self.log("%s: zerofs export and zero_to_fp32 once, to compare their files" % a.name)
        e = self.export("first")
        z = self.z2f("first", load=False)
        same = all(subprocess.run(["cmp", "-s", os.path.join(e, f), os.path.join(z, f)]).returncode == 0
                   for f in os.listdir(z) if f.endswith(".safetensors") or f.endswith(".json"))
        self.meta("same_files", "%s (%s)" % ("yes" if same and os.listdir(z) else "NO",
                                             ", ".join(sorted(os.listdir(z)))))
        shutil.rmtree(e, ignore_errors=True)
        shutil.rmtree(z, ignore_errors=True)
        for mode in ("warm", "cold"):
            for i in range(a.runs):
                self.log("%s %s run %d/%d: export, zero_to_fp32 + load, mount + load (fp32, auto)"
                         % (a.name, mode, i + 1, a.runs))
                self.prepare(mode)
                shutil.rmtree(self.export(mode), ignore_errors=True)
                self.prepare(mode)
                shutil.rmtree(self.z2f(mode), ignore_errors=True)
                self.prepare(mode)
                self.mount(mode, "fp32")
                self.prepare(mode)
                self.mount(mode, "auto")
        self.meta("same_logits", "yes" if self.logit_mount == self.logit_z2f else
                  "NO (%r vs %r)" % (self.logit_mount, self.logit_z2f))
        shutil.rmtree(self.work, ignore_errors=True)


def tied_case(a):
    """zero_to_fp32 --safe_serialization on a checkpoint with a tied head."""
    out = os.path.join(a.work, "tied-out")
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.path.abspath(a.peer), DS_ACCELERATOR="cpu")
    r = run([sys.executable, "-m", "deepspeed.utils.zero_to_fp32", a.ckpt, out, "--safe_serialization"], env=env)
    lines = [ln.strip() for ln in r["err"].splitlines() if ln.strip()]
    at = max([i for i, ln in enumerate(lines) if "Error" in ln.split(":")[0]] or [len(lines)])
    msg = " ".join(lines[at:at + 3])[:400] if lines[at:] else "no error"
    with open(a.meta, "a") as f:
        f.write("peer.tied\texit %d: %s\n" % (r["rc"], msg.replace("\t", " ")))
    shutil.rmtree(a.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    for k in ("ckpt", "name", "work", "zerofs", "rd", "peer", "raw", "meta"):
        ap.add_argument("--" + k, required=True)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--idle", type=float, default=90, help="idle %% that counts as idle")
    ap.add_argument("--gate-max", type=float, default=60, help="seconds the idle gate may wait in all")
    ap.add_argument("--tied-only", action="store_true")
    a = ap.parse_args()
    if a.tied_only:
        tied_case(a)
    else:
        Bench(a).main()


if __name__ == "__main__":
    main()
