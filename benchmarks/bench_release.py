"""Per-release overhead: the bytes a box receives that are not payload (issue 11).

The built-in sample firmware (:class:`fwdist.sample.SampleFirmware`, 256 KiB, the
release the demo stages) is staged twice, 1.0.0 then 1.1.0 with a delta from 1.0.0,
and :func:`fwdist.releases.plan` says what a box receives for each payload: the
signed manifest and the piece table. fwdist's value is format 2 (the payload's own
manifest, :mod:`fwdist.air`, one signature); the "peer" is format 1, what crosses
the air today (the release's whole manifest and the payload's table), so the ratio
is what format 2 saves. Two figures, both deterministic and held to stored limits:

- ``release/sample-delta/overhead_bytes``: a box on 1.0.0 takes the one-piece delta
  (issue 11's target: at most 160 bytes);
- ``release/sample-full/overhead_bytes``: a box on an image no delta starts from takes
  the full image's pieces (12 here; each piece past the first costs one 30-byte row).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from benchmarks.record import Record

FORMAT1 = "format 1 (today)"


def run() -> list[Record]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fwdist.releases import plan
    from fwdist.sample import SampleFirmware
    from fwdist.staging import StageOptions, stage
    from fwdist.store import Store

    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fwdist benchmark key").digest())
    sample = SampleFirmware()
    with tempfile.TemporaryDirectory(prefix="fwdist-bench-release-") as tmp:
        work = Path(tmp)
        store = Store.open(work / "store", create=True)
        for r in range(2):
            image = work / f"fw-{r}.bin"
            image.write_bytes(sample.image(r))
            sources = (sample.version(r - 1),) if r else ()
            stage(store, image, key, StageOptions("lockbox", sample.version(r), sources=sources,
                                                  now=1_700_000_000))
        old, new = sample.version(0), sample.version(1)
        cases = {"sample-delta": plan(store, "lockbox", old, new),
                 "sample-full": plan(store, "lockbox", "0.0.1", new)}
    return [
        Record(f"release/{name}/overhead_bytes", p.format2_overhead_bytes, "bytes",
               peer=FORMAT1, peer_value=p.overhead_bytes, checked=True,
               note=f"{p.encoder}, {p.pieces} piece(s): manifest + table + signature")
        for name, p in cases.items()
    ]
