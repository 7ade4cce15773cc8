"""The acceptance rules: whether the box takes an offered manifest, and if not, why.

The rules are checked in a fixed order, so a manifest wrong in several ways
always gets the same reason: the bytes, the key, the signature, what the
release is for, its age, its security counter and version against what runs,
its history on this box, against the current target, the image size, for a
format 2 delta whether its base is the image the box runs (``WRONG_BASE``), and
last whether the box can hold and apply it at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fwdist import air, report
from fwdist import protocol as p
from fwdist.errors import ManifestError
from fwdist.lockbox import _air
from fwdist.lockbox._config import BoxConfig
from fwdist.lockbox._state import Prev, PState, Stream, TargetRec
from fwdist.manifest import Manifest, PayloadRef, Version, decode


def judge(wire: bytes, now: int, state: PState, config: BoxConfig, staging_sectors: int,
          trusted: Mapping[bytes, Ed25519PublicKey],
          verify: Callable[[bytes], Manifest], snapshot_room: int) -> p.Reason | None:
    """Why a box in ``state`` would reject these manifest bytes at ``now``, or None to accept.

    ``verify`` checks the signature against ``trusted`` (the box remembers its last answer);
    ``snapshot_room`` is the largest state snapshot the journal can hold.
    """
    s = state
    try:
        if _air.is_format2(wire):
            hints = {sig.hint for sig in air.decode(wire).signatures}
            known = any(kid[0] in hints for kid in trusted)
        else:
            known = decode(wire).key_id in trusted
    except ManifestError:
        return p.Reason.MALFORMED
    if not known:
        return p.Reason.UNKNOWN_KEY
    try:
        m = verify(wire)
    except ManifestError:
        return p.Reason.BAD_SIGNATURE
    if m.product != config.product:
        return p.Reason.WRONG_PRODUCT
    if m.hardware != config.hardware:
        return p.Reason.WRONG_HARDWARE
    reason = still_valid(m, now, s)
    if reason is not None:
        return reason
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
    if m.full.source_sha256 not in (None, s.running_sha256):  # (a format 2 view's payload)
        return p.Reason.WRONG_BASE
    chosen = choose_payload(m, s, config, staging_sectors, tag, snapshot_room)
    return chosen if isinstance(chosen, p.Reason) else None


# --- issue 9 item 9 (helper w2): the payload the box takes, a rule the phone need not know ---


def payloads(m: Manifest) -> tuple[PayloadRef, ...]:
    """The manifest's payloads as :class:`~fwdist.protocol.Accept` numbers them: full, deltas."""
    return (m.full, *m.deltas)


def _misfit(ref: PayloadRef, config: BoxConfig, staging_sectors: int) -> p.Reason | None:
    """Which of the box's limits ``ref`` breaks (the first, in a fixed order), or None."""
    if ref.is_delta and not config.decodes(ref.encoder):
        return p.Reason.UNKNOWN_ENCODER
    if ref.pieces > config.max_pieces:
        return p.Reason.TOO_MANY_PIECES
    if ref.decode_ram > config.ram_budget:
        return p.Reason.NOT_ENOUGH_RAM
    if config.staging_sectors_for(ref.size, ref.pieces) > staging_sectors:
        return p.Reason.NO_STAGING_ROOM
    return None


def misfit(ref: PayloadRef, config: BoxConfig) -> p.Reason | None:
    """Which limit of a box built as ``config`` (an empty staging area) ``ref`` breaks, or None.

    The stager asks this of every payload it makes for a hardware profile, so it never
    makes one the box would pass over: the same rule, not a copy of it.
    """
    return _misfit(ref, config, config.staging_size // config.sector_size)


def limit(reason: p.Reason, config: BoxConfig, staging_sectors: int) -> int:
    """The box's own figure for the limit ``reason`` names, for its Reject frame.

    The phone holds the manifest, so it knows what the payload needs; what the box
    has is the one number it cannot know: decoder RAM in bytes, pieces tracked,
    staging bytes, slot bytes. 0 where the reason is not a size (UNKNOWN_ENCODER:
    the manifest names the encoder).
    """
    figures = {p.Reason.NOT_ENOUGH_RAM: config.ram_budget,
               p.Reason.TOO_MANY_PIECES: config.max_pieces,
               p.Reason.NO_STAGING_ROOM: staging_sectors * config.sector_size,
               p.Reason.TOO_LARGE: config.slot_size}
    return figures.get(reason, 0)


def still_valid(m: Manifest, now: int, s: PState) -> p.Reason | None:
    """The rules time and installs can break, checked at the offer and again just before
    the install: expiry against the latest time the box can prove (``now``, or for a box
    without a clock the newest signed ``created`` it has seen), counter and version against
    what runs."""
    if m.expires is not None and max(now, s.clock) > m.expires:
        return p.Reason.EXPIRED
    if m.security_counter < s.running_counter:
        return p.Reason.COUNTER_LOWER
    if m.parsed_version <= Version.parse(s.running_version):
        return p.Reason.NOT_NEWER
    return None


def worst_snapshot(s: PState, config: BoxConfig, staging_sectors: int, m: Manifest,
                   ref: PayloadRef, tag: bytes) -> int:
    """The largest snapshot (bytes) the state can need while this release is the target.

    A release whose state would not fit a journal half is refused here, up front, rather
    than accepted and then failing mid-transfer when the journal compacts. The bound
    packs a real worst case: a stream per piece and the table, each with the largest
    ``received`` and a strike; a clock and a report sequence limit; the replaced
    target's pieces kept beside them; as many staging sectors as the payload and the
    replaced target can hold, named with the highest (longest) numbers.
    """
    old = s.target
    held = 0 if old is None else sum(len(st.sectors) for st in old.streams.values())
    used = min(staging_sectors, config.staging_sectors_for(ref.size, ref.pieces) + held)
    sectors = list(range(staging_sectors - 1, staging_sectors - 1 - used, -1))
    streams = {sid: Stream(ref.size, False, [], 1) for sid in range(-1, ref.pieces)}
    prev_ids = [] if old is None else [i for i in old.streams if i >= 0]
    owners: list[list[int]] = [st.sectors for st in streams.values()]
    prev_pieces: dict[int, list[int]] = {i: [] for i in prev_ids}
    owners += prev_pieces.values()
    for k, sector in enumerate(sectors):
        owners[k % len(owners)].append(sector)
    # (failed and last grow only as the target goes: FAIL and CONFIRM drop it)
    worst = PState(s.running_version, s.running_counter, s.running_sha256, s.running_size,
                   s.active, failed=list(s.failed), last=s.last,
                   clock=max(s.clock, m.created, (1 << 32) - 1),
                   seq_limit=max(s.seq_limit, report.MAX_SEQ))
    worst.target = TargetRec(tag, m.version, m.security_counter, 1,
                             config.manifest_sectors * config.sector_size, ref.table_sha256,
                             p.BoxState.TESTING, config.max_trials, streams)
    if old is not None:
        worst.prev = Prev(old.table_sha256, config.max_table, [], prev_pieces)
    return len(msgpack.packb(worst.to_wire(), use_bin_type=True))


def choose_payload(m: Manifest, s: PState, config: BoxConfig, staging_sectors: int,
                   tag: bytes, snapshot_room: int) -> PayloadRef | p.Reason:
    """The smallest payload this box can apply and hold, or the limit that rules them all out.

    The candidates are the deltas made from exactly the running image and the
    full image; a delta that needs more RAM (or pieces, or staging) than the box
    has is passed over for the next smallest, so a box is never stuck while some
    payload fits. A payload whose worst-case state snapshot would not fit a journal
    half (:func:`worst_snapshot` against ``snapshot_room``) counts as too many pieces.
    When none fits, the reason is the limit the smallest broke.
    """
    candidates = sorted((r for r in payloads(m)
                         if not r.is_delta or r.source_sha256 == s.running_sha256),
                        key=lambda r: (r.size, r.is_delta is False))
    first: p.Reason | None = None
    for ref in candidates:
        why = _misfit(ref, config, staging_sectors)
        if why is None and worst_snapshot(s, config, staging_sectors, m, ref, tag) > snapshot_room:
            why = p.Reason.TOO_MANY_PIECES
        if why is None:
            return ref
        first = first or why
    assert first is not None  # the full payload is always a candidate
    return first
