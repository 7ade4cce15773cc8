"""The acceptance rules: whether the box takes an offered manifest, and if not, why.

The rules are checked in a fixed order, so a manifest wrong in several ways
always gets the same reason: the bytes, the key, the signature, what the
release is for, its age, its security counter and version against what runs,
its history on this box, against the current target, and last whether the box
can hold and apply it at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fwdist import delta
from fwdist import protocol as p
from fwdist.errors import ManifestError
from fwdist.lockbox._config import BoxConfig
from fwdist.lockbox._state import PState
from fwdist.manifest import Manifest, PayloadRef, Version, decode


def judge(wire: bytes, now: int, state: PState, config: BoxConfig, staging_sectors: int,
          trusted: Mapping[bytes, Ed25519PublicKey],
          verify: Callable[[bytes], Manifest]) -> p.Reason | None:
    """Why a box in ``state`` would reject these manifest bytes at ``now``, or None to accept.

    ``verify`` checks the signature against ``trusted`` (the box remembers its last answer).
    """
    s = state
    try:
        sm = decode(wire)
    except ManifestError:
        return p.Reason.MALFORMED
    if sm.key_id not in trusted:
        return p.Reason.UNKNOWN_KEY
    try:
        m = verify(wire)
    except ManifestError:
        return p.Reason.BAD_SIGNATURE
    if m.product != config.product:
        return p.Reason.WRONG_PRODUCT
    if m.hardware != config.hardware:
        return p.Reason.WRONG_HARDWARE
    if m.expires is not None and now > m.expires:
        return p.Reason.EXPIRED
    if m.security_counter < s.running_counter:
        return p.Reason.COUNTER_LOWER
    if m.parsed_version <= Version.parse(s.running_version):
        return p.Reason.NOT_NEWER
    tag = p.release_tag(wire)
    if tag in s.failed:
        return p.Reason.FAILED_BEFORE
    t = s.target
    if t is not None and t.tag != tag:
        if m.parsed_version <= Version.parse(t.version):
            return p.Reason.OLDER_THAN_TARGET
        if m.security_counter < t.counter:
            return p.Reason.COUNTER_LOWER
    if m.image_size > config.slot_size:
        return p.Reason.TOO_LARGE
    chosen = choose_payload(m, s.running_sha256, config, staging_sectors)
    return chosen if isinstance(chosen, p.Reason) else None


# --- issue 9 item 9 (helper w2): the payload the box takes, a rule the phone need not know ---


def payloads(m: Manifest) -> tuple[PayloadRef, ...]:
    """The manifest's payloads as :class:`~fwdist.protocol.Accept` numbers them: full, deltas."""
    return (m.full, *m.deltas)


def _misfit(ref: PayloadRef, config: BoxConfig, staging_sectors: int) -> p.Reason | None:
    """Which of the box's limits ``ref`` breaks (the first, in a fixed order), or None."""
    if ref.is_delta and ref.encoder not in delta.ENCODERS:
        return p.Reason.UNKNOWN_ENCODER
    if ref.pieces > config.max_pieces:
        return p.Reason.TOO_MANY_PIECES
    if ref.decode_ram > config.ram_budget:
        return p.Reason.NOT_ENOUGH_RAM
    if config.staging_sectors_for(ref.size, ref.pieces) > staging_sectors:
        return p.Reason.NO_STAGING_ROOM
    return None


def choose_payload(m: Manifest, running_sha256: bytes, config: BoxConfig,
                   staging_sectors: int) -> PayloadRef | p.Reason:
    """The smallest payload this box can apply and hold, or the limit that rules them all out.

    The candidates are the deltas made from exactly the running image and the
    full image; a delta that needs more RAM (or pieces, or staging) than the box
    has is passed over for the next smallest, so a box is never stuck while some
    payload fits. When none does, the reason is the limit the smallest broke.
    """
    candidates = sorted((r for r in payloads(m)
                         if not r.is_delta or r.source_sha256 == running_sha256),
                        key=lambda r: (r.size, r.is_delta is False))
    first: p.Reason | None = None
    for ref in candidates:
        why = _misfit(ref, config, staging_sectors)
        if why is None:
            return ref
        first = first or why
    assert first is not None  # the full payload is always a candidate
    return first
