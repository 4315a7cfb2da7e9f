"""The real Hugging Face clients (transformers, safetensors, huggingface_hub,
tokenizers) the tests read mounts with. They come from PyPI into the venv
scripts/setup-debian.sh makes ($ZEROFS_VENV, default .venv in the
repository; Debian's python3-torch stays the torch), and `make check` runs
the suite with that venv's python.

    import zfclients
    zfclients.require()      # first thing in a client test, before any output

require() returns when the clients import here. When this python lacks them
but the venv exists, it re-runs the test with the venv's python (os.execv),
so `/usr/bin/python3 tests/tNNN-...py` works too. Otherwise it prints one
"not ok" line saying what is missing and exits 1: a missing client is a
failure, never a skip (scripts/setup-debian.sh installs them).
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.environ.get("ZEROFS_VENV") or os.path.join(ROOT, ".venv")
MODULES = ("safetensors", "transformers", "huggingface_hub", "tokenizers")


def _missing():
    bad = []
    for m in MODULES:
        try:
            __import__(m)
        except Exception as e:  # noqa: BLE001 - any import failure counts
            bad.append("%s (%s: %s)" % (m, type(e).__name__, e))
    return bad


def venv_python():
    return os.path.join(VENV, "bin", "python3")


def require():
    bad = _missing()
    if not bad:
        return
    py = venv_python()
    here = os.path.realpath(sys.prefix)
    if os.access(py, os.X_OK) and os.path.realpath(VENV) != here \
            and not os.environ.get("ZEROFS_CLIENTS_REEXEC"):
        os.environ["ZEROFS_CLIENTS_REEXEC"] = "1"
        sys.stdout.flush()
        os.execv(py, [py] + sys.argv)
    print("not ok 1 - the Python clients import (%s)" % "; ".join(bad))
    print("#   %s has no client venv with them: run scripts/setup-debian.sh "
          "(it installs scripts/clients-requirements.txt into %s)" % (sys.executable, VENV))
    print("1..1")
    sys.exit(1)


def versions():
    """'transformers 4.47.1, safetensors 0.7.0, ... torch 1.13...' for logs."""
    import torch
    out = []
    for m in MODULES:
        out.append("%s %s" % (m, getattr(__import__(m), "__version__", "?")))
    out.append("torch %s (%s)" % (torch.__version__, os.path.dirname(torch.__file__)))
    return ", ".join(out)
