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
from fwdist.manifest import Manifest, Version, decode


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
    ref = m.payload_for(s.running_sha256)
    need = config.staging_sectors_for(ref.size, ref.pieces)
    if (m.image_size > config.slot_size or ref.pieces > config.max_pieces
            or ref.decode_ram > config.ram_budget or need > staging_sectors
            or (ref.is_delta and ref.encoder not in delta.ENCODERS)):
        return p.Reason.TOO_LARGE
    return None
