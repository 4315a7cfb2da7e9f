"""Every real DeepSpeed fixture: `zerofs inspect --json` names, shapes and
kinds equal the reference, and every tensor's bytes, read by following the
extents core computed, hash to the reference sha256 (DeepSpeed's own
reconstruction, or the live model's state_dict where zero_to_fp32 has no
answer). This proves the byte mapping before any FUSE code relies on it."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from zftest import Tap, fixtures  # noqa: E402
from zfinspect import check  # noqa: E402

tap = Tap()
fx = fixtures()
if not fx:
    tap.skip("real fixtures", "../shared/fixtures/real is absent (generated checkpoints cover the features)")
    tap.done()

for name, d, ref in fx:
    check(tap, name, d, ref)

tap.done()
