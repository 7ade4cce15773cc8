"""The box's trust: the root it holds, the release policy it implies, and whether a relayed
root chain or timestamp may change them (each with its reason, like the acceptance rules).

Nothing here writes: the box commits what these functions allow as journal records
(``ROOT`` per link, ``STAMP`` per timestamp), so a power cut leaves the box on a whole
root and a whole timestamp, old or new, never between.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fwdist import protocol as p
from fwdist import trust
from fwdist.errors import TrustError
from fwdist.lockbox._config import BoxConfig
from fwdist.lockbox._state import MAX_REVOKED, ROOT_ROOM, PState
from fwdist.lockbox._update import RootLink, Stamp
from fwdist.manifest import Version


def current_root(s: PState, legacy: Mapping[bytes, Ed25519PublicKey]) -> trust.Root | None:
    """The root the box trusts: its signed root, else the legacy keys it was built with."""
    if s.root is not None:
        return trust.decode_root(s.root).root
    if not legacy:
        return None
    return trust.legacy_root(*legacy.values())


def policy(root: trust.Root | None,
           config: BoxConfig) -> tuple[dict[bytes, Ed25519PublicKey], int]:
    """The keys and threshold that sign this box's releases (none: it trusts no release)."""
    if root is None:
        return {}, 1
    try:
        return trust.release_policy(root, config.product, config.hardware)
    except TrustError:
        return {}, 1


def judge_links(root: trust.Root | None, links: Sequence[bytes],
                now: int) -> list[RootLink] | p.Reason:
    """The ROOT records a relayed chain allows (none: the box is current), or why not."""
    if root is None:
        return p.Reason.BAD_ROOT
    try:
        new = trust.verify_chain(root, links)
    except TrustError:
        return p.Reason.BAD_ROOT
    if new and trust.expired(new[-1], now):
        return p.Reason.METADATA_EXPIRED
    by_version: dict[int, bytes] = {}
    for wire in links:
        v = trust.decode_root(wire).root.version
        by_version.setdefault(v, wire)
    records = [RootLink(by_version[r.version]) for r in new]
    if any(len(rec.wire) > ROOT_ROOM for rec in records):
        return p.Reason.BAD_ROOT
    return records


def judge_stamp(root: trust.Root | None, s: PState, config: BoxConfig, wire: bytes,
                now: int) -> Stamp | p.Reason:
    """The STAMP record a relayed timestamp allows, or why not (a replay is STALE)."""
    if root is None:
        return p.Reason.BAD_TIMESTAMP
    try:
        signed = trust.decode_timestamp(wire)
        ts = signed.timestamp
    except TrustError:
        return p.Reason.BAD_TIMESTAMP
    if trust.signed_by(signed, root.timestamp) < root.timestamp.threshold:
        return p.Reason.BAD_TIMESTAMP
    old = s.stamp
    if old is not None and (ts.version <= old.version or ts.time < old.time):
        return p.Reason.STALE_TIMESTAMP
    if trust.expired(ts, max(now, s.clock, ts.time)):
        return p.Reason.METADATA_EXPIRED
    running = Version.parse(s.running_version)
    revoked = sorted({v for prod, v in ts.revoked
                      if prod == config.product and Version.parse(v) > running},
                     key=Version.parse)[:MAX_REVOKED]
    windows = [list(w) for w in ts.windows_for(config.product)] or None
    return Stamp(ts.version, ts.time, ts.expires, ts.latest_for(config.product), revoked,
                 windows)


def install_wait(s: PState, now: int, fresh: bool) -> bool:
    """Whether an install must wait for a maintenance window of the box's signed timestamp.

    The box's time is its clock ``now`` (0: it has none), raised to the proven lower bound
    ``s.clock``, so a clock that lags the signed time is not believed. A box with no clock
    knows only that lower bound, the moment a timestamp was signed, not the time now: it
    installs only in the power-on in which it verified a timestamp whose time is inside a
    window (``fresh``, which the box clears at each session's start), never on an old
    stamp's word (docs/rollouts.md says what that costs).
    """
    st = s.stamp
    if st is None or not st.windows:
        return False
    pairs = [(w[0], w[1]) for w in st.windows]
    if now > 0:
        return not trust.in_windows(pairs, max(now, s.clock))
    return not (fresh and trust.in_windows(pairs, s.clock))
