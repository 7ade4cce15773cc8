"""Power cuts at every flash operation of a box that signs reports: no sequence number is
ever signed twice, and a reboot skips at most one reserved block (fwdist.lockbox._reports).

The run: protocol 2 phones deliver a release in small sessions (each session's reports:
after the Summary, after the Accept, after ReleaseComplete), the box builds and installs
it, then more phones call (a report each). On 1 KiB sectors the journal switches halves,
so reservations meet compactions. Power is cut before, and in the middle of, every flash
operation of the run; the box reboots and runs the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import report
from fwdist.app import App
from fwdist.flash import Flash, PowerCut
from fwdist.lockbox import SEQ_BLOCK, BoxConfig, Identity, IdleStep, Lockbox
from fwdist.pump import pump_session
from fwdist.releases import phone_cache
from fwdist.testing import Releases, box_config

NOW = 1_700_000_500
DEVICE = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fwdist sweep device").digest())


class Recorder:
    """The device key, noting the sequence number of every report it signs."""

    def __init__(self) -> None:
        self.seqs: list[int] = []

    def sign(self, data: bytes) -> bytes:
        body = data[len(report.SIGNING_CONTEXT):]
        self.seqs.append(msgpack.unpackb(body)[2])
        return DEVICE.sign(data)


@pytest.fixture(scope="module")
def rel(release_history: Callable[..., Releases]) -> Releases:
    return release_history(2, 24 * 1024, 4, deltas=False)


def _config(rel: Releases) -> BoxConfig:
    return box_config(rel, sector_size=1024)


def _fresh(rel: Releases) -> Flash:
    config = _config(rel)
    flash = config.make_flash()
    r = rel.releases[0]
    Lockbox.provision(flash, config, r.image, r.version, r.manifest.security_counter)
    return flash


def _run(rel: Releases, flash: Flash, signer: Recorder) -> Lockbox:
    """Boot, deliver and install the release in 1,500-byte sessions, then 36 more calls."""
    box = Lockbox(flash, _config(rel), rel.trusted, identity=Identity("sweep-box", signer))
    box.boot(NOW)
    cache = phone_cache(rel.store, "lockbox", rel.releases[1].version)
    for _ in range(60):
        if box.status()["running_version"] == rel.releases[1].version:
            break
        pump_session(box, App(cache), budget_bytes=1500, now=NOW)
        while box.idle(NOW) not in (None, IdleStep.WAIT_BATTERY):
            pass
    for _ in range(36):
        pump_session(box, App(cache), now=NOW)
    return box


def test_the_reference_run_reports_and_installs(rel: Releases) -> None:
    signer = Recorder()
    flash = _fresh(rel)
    base = flash.ops
    box = _run(rel, flash, signer)
    assert box.status()["running_version"] == rel.releases[1].version
    assert signer.seqs == list(range(43))  # (pinned: a change is a change in the box's work)
    assert (box.journal.compactions, flash.ops - base) == (1, 145)


@pytest.mark.parametrize("torn", [False, True], ids=["before", "torn"])
def test_a_cut_at_every_flash_operation_never_repeats_a_seq(rel: Releases, torn: bool) -> None:
    reference = _fresh(rel)
    base = reference.ops
    _run(rel, reference, Recorder())
    total = reference.ops - base
    tried = 0
    for k in range(total):
        flash = _fresh(rel)
        signer = Recorder()
        flash.arm(flash.ops + k, torn=torn, seed=k)
        try:
            _run(rel, flash, signer)
        except PowerCut:
            pass
        else:
            raise AssertionError(f"operation {k} of {total} never came")
        before = list(signer.seqs)
        flash.power_on()
        box = _run(rel, flash, signer)
        seqs = signer.seqs
        assert seqs == sorted(set(seqs)), f"cut at operation {k}: a seq signed twice"
        if before and len(seqs) > len(before):
            assert seqs[len(before)] - before[-1] <= SEQ_BLOCK, f"cut at {k}: gap too large"
        assert box.status()["running_version"] == rel.releases[1].version
        tried += 1
    assert tried == total
    print(f"{tried} cut points, {'torn' if torn else 'before'} each operation")
