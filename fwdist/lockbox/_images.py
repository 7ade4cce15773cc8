"""Whether the journal agrees with the images it describes, and a consistent state if not.

The journal says which slot runs and the SHA-256 of what runs there; the flash
holds the images. The two can disagree: a bit flipped in the newest journal
snapshot makes boot replay the older half (which may name an image that was
since overwritten), and a bit flipped in the running slot leaves the journal
naming a hash the slot no longer has. A box that trusted the journal would
report a version it does not run and fetch a delta that cannot apply to what
it does run. So every boot hashes the running slot (reads cost no flash
operation), and when it disagrees the box rebuilds its state from what the
flash itself proves, in this order:

1. a verified manifest in a manifest slot whose image is whole in an image
   slot, newer than the journal's running version and never given up: the
   journal lost the records that installed it (the newest wins);
2. the journal's running image, found whole in the *other* slot;
3. otherwise the running image is damaged: the box keeps running it but
   reports its true SHA-256, so no delta (whose source is the signed image)
   matches and phones send the full payload; the release is not blacklisted.

In every case the target is dropped without a strike (what was staged was
chosen for the image the journal named) and the new state is written as a
fresh journal snapshot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgpack

from fwdist import protocol as p
from fwdist.errors import ManifestError
from fwdist.flash import Region
from fwdist.lockbox import _air
from fwdist.lockbox._state import PState
from fwdist.manifest import MAX_MANIFEST_BYTES, Manifest, Version

CHUNK = 4096  # images are hashed where they lie, a sector at a time


def image_sha256(slot: Region, size: int) -> bytes:
    """The SHA-256 of the first ``size`` bytes of an image slot (bounded RAM)."""
    h = hashlib.sha256()
    for off in range(0, size, CHUNK):
        h.update(slot.read(off, min(CHUNK, size - off)))
    return h.digest()


def _stored_manifest(region: Region,
                     verify: Callable[[bytes], Manifest]) -> tuple[bytes, Manifest] | None:
    """The verified manifest (wire, manifest) a manifest slot holds, if it holds one (its
    length is the length of the first msgpack object there, or what a format 2 manifest's
    own fields say)."""
    raw = region.read(0, min(region.size, MAX_MANIFEST_BYTES))
    if _air.is_format2(raw):  # a format 2 manifest knows its own length
        try:
            wire = _air.stored(raw)
            return wire, verify(wire)
        except ManifestError:
            return None
    unpacker = msgpack.Unpacker(max_buffer_size=len(raw) or 1, max_bin_len=MAX_MANIFEST_BYTES)
    unpacker.feed(raw)
    try:
        unpacker.skip()
        wire = raw[: unpacker.tell()]
        return wire, verify(wire)
    except (ValueError, msgpack.OutOfData, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError, ManifestError):
        return None


def reconcile(s: PState, slots: tuple[Region, Region], manifests: tuple[Region, Region],
              verify: Callable[[bytes], Manifest]) -> PState | None:
    """None when the running slot holds the journal's running image, else the state to adopt."""
    active = slots[s.active]
    if s.running_size <= active.size and image_sha256(active, s.running_size) == s.running_sha256:
        return None
    running = Version.parse(s.running_version)
    best: tuple[Manifest, int] | None = None
    for region in manifests:
        got = _stored_manifest(region, verify)
        if got is None or p.release_tag(got[0]) in s.failed:
            continue
        m = got[1]
        if m.parsed_version <= running or m.security_counter < s.running_counter:
            continue
        if best is not None and m.parsed_version <= best[0].parsed_version:
            continue
        for i, slot in enumerate(slots):
            if m.image_size <= slot.size and image_sha256(slot, m.image_size) == m.image_sha256:
                best = (m, i)
                break
    fresh = PState(s.running_version, s.running_counter, s.running_sha256, s.running_size,
                   s.active, failed=list(s.failed), last=s.last, clock=s.clock, root=s.root,
                   stamp=s.stamp)
    if best is not None:
        m, i = best
        fresh.running_version, fresh.running_counter = m.version, m.security_counter
        fresh.running_sha256, fresh.running_size, fresh.active = m.image_sha256, m.image_size, i
        fresh.last = (m.version, True)
        return fresh
    other = slots[1 - s.active]
    if s.running_size <= other.size and image_sha256(other, s.running_size) == s.running_sha256:
        fresh.active = 1 - s.active
        return fresh
    size = min(s.running_size, slots[s.active].size)
    fresh.running_sha256, fresh.running_size = image_sha256(slots[s.active], size), size
    return fresh
