"""Reading releases back out of a store: load, reassemble, plan, verify, collect garbage.

This is the I/O side of a release: what the sans-I/O phone (:mod:`fwdist.app`)
carries is loaded here (:func:`phone_cache`), so that the phone never reads a store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fwdist import air, delta
from fwdist.app import AppError, PhoneCache
from fwdist.errors import FwdistError, ManifestError, PlanError, StoreError
from fwdist.keys import load_public
from fwdist.manifest import (
    MAX_TABLE_BYTES,
    Manifest,
    PayloadRef,
    PieceTable,
    Version,
    decode,
    decode_table,
    key_id,
    verify,
)
from fwdist.store import MAX_OBJECT_BYTES, Store


def load_manifest(store: Store, product: str, version: str) -> Manifest:
    """The decoded manifest (structure checked; signatures are :func:`verify_store`'s job)."""
    return decode(store.get_manifest(product, version)).manifest


def load_verified(
    store: Store, product: str, version: str, trusted: Mapping[bytes, Ed25519PublicKey]
) -> Manifest:
    """The manifest, decoded and checked against ``trusted`` keys; it names itself."""
    m = verify(store.get_manifest(product, version), trusted)
    if (m.product, m.version) != (product, version):
        raise StoreError(f"{product}@{version} holds the manifest of {m.product}@{m.version}")
    return m


@dataclass(frozen=True)
class ReleaseScan:
    """One product's releases split by trust: only ``verified`` ones may count for anything."""

    verified: tuple[Manifest, ...]  # oldest version first
    ignored: tuple[str, ...]  # "NAME@X.Y.Z: why", for manifests that do not verify


def scan_releases(store: Store, product: str, trusted: Iterable[Ed25519PublicKey]) -> ReleaseScan:
    """Which of ``product``'s staged manifests verify against ``trusted``.

    Whoever can write the store can plant a manifest; the version floor and
    security counter of the next release, and what a phone offers, must come from
    releases the user's keys signed, never from whatever sits in the directory.
    """
    keys = {key_id(k): k for k in trusted}
    verified, ignored = [], []
    for _, version in store.releases(product):
        try:
            verified.append(load_verified(store, product, version, keys))
        except FwdistError as e:
            ignored.append(f"{product}@{version}: {e}")
    return ReleaseScan(tuple(verified), tuple(ignored))


def load_table(store: Store, ref: PayloadRef) -> PieceTable:
    return decode_table(table_bytes(store, ref), ref.table_sha256)


def table_bytes(store: Store, ref: PayloadRef) -> bytes:
    return store.get_content(ref.table_sha256, MAX_TABLE_BYTES)


def wire_piece(store: Store, table: PieceTable, index: int) -> bytes:
    """The bytes that travel for piece ``index``: the zstd frame, or the raw delta slice."""
    entry = table.pieces[index]
    if table.compressed:
        return store.get_frame(entry.id)
    return store.get_content(entry.id, entry.size)


def phone_cache(
    store: Store,
    product: str,
    version: str | None = None,
    trusted: Iterable[Ed25519PublicKey] | None = None,
    *,
    partial: bool = False,
    released: Iterable[str] | None = None,
) -> PhoneCache:
    """Everything of one release a phone needs to serve every box.

    ``partial``: the store is a phone's cache (``fwdist app sync`` within ``--max-cache``),
    which may hold some payloads of the release and not others; those it lacks are left
    out (a box that needs one is told the phone lacks it) instead of being an error.

    With ``trusted`` keys (what a user's phone has: ``app push --pubkey``) only a
    release they verify is carried, by default the newest verified one: a manifest
    planted in the store is never offered. Without them the newest staged release
    is taken as it is, for callers that staged the store themselves moments ago
    (the demo, the simulator, the benchmarks). ``released`` instead names the versions
    a root's release role signed to its threshold (``app push --root``).

    The store's root links and timestamp (``trust/``, what ``fwdist app sync`` fetched)
    ride along for the phone to relay (:class:`PhoneCache`); the box checks them itself.
    """
    releases = store.releases(product)
    if not releases:
        raise AppError(f"the store holds no release of {product}")
    if trusted is not None or released is not None:
        if released is not None:  # a root's verdict (signoff.carried): its threshold met
            good = [v for _, v in releases if v in set(released)]
        else:
            assert trusted is not None
            good = [v.version for v in scan_releases(store, product, trusted).verified]
        if not good:
            raise AppError(f"no release of {product} verifies against the given keys")
        if version is None:
            version = good[-1]
        elif version not in good:
            known = version in (v for _, v in releases)
            raise AppError(f"{product}@{version} "
                           + ("does not verify against the given keys" if known
                              else "is not in the store"))
    elif version is None:
        version = releases[-1][1]
    m = load_manifest(store, product, version)
    tables: dict[bytes, bytes] = {}
    frames: dict[bytes, bytes] = {}
    raw: dict[bytes, bytes] = {}
    for ref in (m.full, *m.deltas):
        if partial and not store.has(ref.table_sha256):
            continue
        data = tables[ref.table_sha256] = table_bytes(store, ref)
        table = decode_table(data, ref.table_sha256)
        held = frames if table.compressed else raw
        for i, entry in enumerate(table.pieces):
            if not partial or store.has(entry.id):
                held[entry.id] = wire_piece(store, table, i)
    return PhoneCache(store.get_manifest(product, version), tables, frames, raw,
                      air_manifests(store, m), tuple(store.root_chain()), store.get_timestamp())


def air_manifests(store: Store, m: Manifest) -> tuple[bytes, ...]:
    """The release's format 2 manifests (none for a release staged before format 2).

    Each must describe the payload of ``m`` it stands for; a bundle that does not is
    refused in one line (stage the release again), never offered.
    """
    data = store.get_air(m.product, m.version)
    if data is None:
        return ()
    try:
        return check_air_bundle(m, data)
    except ManifestError as e:
        raise AppError(f"{m.product}@{m.version}: its format 2 manifests are unusable ({e}); "
                       "stage it again") from None


def check_air_bundle(m: Manifest, data: bytes) -> tuple[bytes, ...]:
    """The format 2 manifests of bundle ``data``, one per payload of ``m``, each describing
    its payload (signatures are the caller's to check); ManifestError otherwise."""
    wires = air.decode_bundle(data)
    refs = air.payload_refs(m)
    if len(wires) != len(refs):
        raise ManifestError(f"{len(wires)} format 2 manifests for {len(refs)} payloads")
    for wire, ref in zip(wires, refs, strict=True):
        am = air.decode(wire).manifest
        if (am.image_sha256, am.pieces, am.size) != (m.image_sha256, ref.pieces, ref.size) or (
                am.version != m.version or am.is_delta != ref.is_delta):
            raise ManifestError("a format 2 manifest does not match its payload")
    return wires


def read_image(store: Store, m: Manifest) -> Iterator[bytes]:
    """The release's image, piece by piece, each checked against its id."""
    table = load_table(store, m.full)
    for entry in table.pieces:
        yield store.get_content(entry.id, entry.size)


def release_image(store: Store, m: Manifest) -> bytes:
    return b"".join(read_image(store, m))


def apply_delta(store: Store, m: Manifest, ref: PayloadRef, old: bytes) -> bytes:
    """Rebuild the new image from ``old`` and the delta payload ``ref``."""
    table = load_table(store, ref)
    payload = b"".join(store.get_content(e.id, e.size) for e in table.pieces)
    out: list[bytes] = []
    delta.apply(
        ref.encoder,
        lambda off, n: old[off : off + n],
        len(old),
        lambda off, n: payload[off : off + n],
        len(payload),
        out.append,
        new_size=m.image_size,
    )
    return b"".join(out)


@dataclass(frozen=True)
class Plan:
    """What a box on ``source`` must receive to reach ``target``."""

    product: str
    source: str
    target: str
    encoder: str
    manifest_bytes: int
    table_bytes: int
    payload_bytes: int
    pieces: int
    image_bytes: int
    format2_manifest_bytes: int
    format2_table_bytes: int
    decoder_ram: int = 0  # what the box's decoder needs for this payload (the manifest says)

    @property
    def air_bytes(self) -> int:
        return self.manifest_bytes + self.table_bytes + self.payload_bytes

    @property
    def overhead_bytes(self) -> int:
        """What the box receives that is not payload: manifest (with signature) and table."""
        return self.manifest_bytes + self.table_bytes

    @property
    def format2_overhead_bytes(self) -> int:
        """The same in format 2 (:mod:`fwdist.air`): the payload's own manifest and table."""
        return self.format2_manifest_bytes + self.format2_table_bytes

    def as_json(self) -> dict[str, object]:
        return {
            "product": self.product,
            "from": self.source,
            "to": self.target,
            "air_bytes": self.air_bytes,
            "decoder_ram": self.decoder_ram,
            "image_bytes": self.image_bytes,
            "encoder": self.encoder,
            "pieces": self.pieces,
            "manifest_bytes": self.manifest_bytes,
            "table_bytes": self.table_bytes,
            "payload_bytes": self.payload_bytes,
            "overhead_bytes": self.overhead_bytes,
            "format2_overhead_bytes": self.format2_overhead_bytes,
        }


def plan(store: Store, product: str, source: str, target: str) -> Plan:
    """What a box running ``source`` receives to reach ``target``; refused if a box would refuse."""
    if Version.parse(target) == Version.parse(source):
        raise PlanError(f"a box on {source} already runs it")
    if Version.parse(target) < Version.parse(source):
        raise PlanError(f"a box on {source} refuses {target}: it is not newer")
    wire = store.get_manifest(product, target)
    m = decode(wire).manifest
    ref = m.delta_from(source) or m.full
    lean = air.from_release(m, ref, load_table(store, ref))
    return Plan(
        product=product,
        source=source,
        target=m.version,
        encoder=ref.encoder,
        manifest_bytes=len(wire),
        table_bytes=len(table_bytes(store, ref)),
        payload_bytes=ref.size,
        pieces=ref.pieces,
        image_bytes=m.image_size,
        decoder_ram=ref.decode_ram,
        format2_manifest_bytes=len(air.encode_body(lean.manifest)) + air.signature_block_bytes(),
        format2_table_bytes=len(lean.table),
    )


@dataclass
class VerifyReport:
    releases: int = 0
    objects: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_trusted(pubkeys: Path | Sequence[Path]) -> dict[bytes, Ed25519PublicKey]:
    """The user's trusted keys, by key id, from public key files the user names."""
    paths = [pubkeys] if isinstance(pubkeys, Path) else list(pubkeys)
    if not paths:
        raise FwdistError("name at least one trusted public key")
    keys = [load_public(p) for p in paths]
    return {key_id(k): k for k in keys}


def recorded_keys(store: Store) -> dict[bytes, Ed25519PublicKey]:
    """The keys stagers recorded in ``keys/``: a record, NOT a trust root.

    Anyone who can write the store can add a key there; only a tool that made the
    store itself moments ago (the simulator) may take these as trusted.
    """
    keys = [load_public(p) for p in store.key_files()]
    return {key_id(k): k for k in keys}


def check_release(
    store: Store, product: str, version: str, trusted: Mapping[bytes, Ed25519PublicKey]
) -> Iterator[str]:
    name = f"{product}@{version}"
    try:
        m = load_verified(store, product, version, trusted)
    except FwdistError as e:
        yield f"{name}: {e}"
        return
    whole, size = hashlib.sha256(), 0
    try:
        for piece in read_image(store, m):  # streamed: an image may be larger than RAM
            whole.update(piece)
            size += len(piece)
    except FwdistError as e:
        yield f"{name}: full image: {e}"
        return
    if size != m.image_size or whole.digest() != m.image_sha256:
        yield f"{name}: full image does not match the manifest's size and SHA-256"
    if load_table(store, m.full).wire_size != m.full.size:
        yield f"{name}: full payload size differs from the manifest"
    for ref in m.deltas:
        try:
            source = load_verified(store, product, ref.source_version or "", trusted)
            old = release_image(store, source)
            if hashlib.sha256(old).digest() != ref.source_sha256:
                yield f"{name}: delta source {ref.source_version} is not the image it was made from"
                continue
            if load_table(store, ref).wire_size != ref.size:
                yield f"{name}: delta from {ref.source_version} size differs from the manifest"
            rebuilt = apply_delta(store, m, ref, old)
            if hashlib.sha256(rebuilt).digest() != m.image_sha256:
                yield f"{name}: delta from {ref.source_version} does not rebuild the image"
        except (FwdistError, delta.DeltaError) as e:
            yield f"{name}: delta from {ref.source_version}: {e}"


def check_objects(store: Store, report: VerifyReport) -> None:
    """Strays are problems, and every object is re-hashed: counted into ``report``."""
    report.problems.extend(
        f"{stray}: not part of an fwdist store; left alone" for stray in store.strays()
    )
    for oid in store.object_ids():
        report.objects += 1
        try:
            store.get_content(oid, MAX_OBJECT_BYTES)
        except StoreError as e:
            report.problems.append(str(e))


def verify_store(
    store: Store, pubkey: Path | Sequence[Path], only: tuple[str, str] | None = None
) -> VerifyReport:
    """Re-hash every object and check every release end to end (signature, image, deltas).

    Trust comes from ``pubkey`` (one public key file or several), which the user
    names: never from the keys recorded in the store, which anyone who can write the
    store could have planted. Strays (entries fwdist did not write) are problems.
    """
    report = VerifyReport()
    trusted = load_trusted(pubkey)
    if only is None:
        check_objects(store, report)
    releases = [only] if only else store.releases()
    for product, version in releases:
        report.releases += 1
        report.problems.extend(check_release(store, product, version, trusted))
    return report


@dataclass(frozen=True)
class GcReport:
    removed_objects: int
    removed_bytes: int
    removed_tmp: int
    kept_objects: int
    strays: tuple[str, ...] = ()  # entries fwdist did not write: left alone
    skipped: tuple[str, ...] = ()  # "NAME@X.Y.Z: why" for releases whose references are unknown


def referenced_objects(store: Store) -> tuple[set[bytes], list[str]]:
    """Objects some staged manifest references, and the releases that could not be read.

    Any manifest that decodes counts, verified or not: keeping an object costs
    space, removing one a release may need costs the release.
    """
    live: set[bytes] = set()
    skipped: list[str] = []
    for product, version in store.releases():
        try:
            m = load_manifest(store, product, version)
            for ref in (m.full, *m.deltas):
                live.add(ref.table_sha256)
                live.update(e.id for e in load_table(store, ref).pieces)
        except FwdistError as e:
            skipped.append(f"{product}@{version}: {e}")
    return live, skipped


def gc(store: Store) -> GcReport:
    """Remove objects no manifest references, and leftovers of killed writes.

    While any release cannot be read, gc cannot tell which objects it needs, so it
    removes no objects at all (it says which releases, in ``skipped``); strays are
    never removed.
    """
    with store.locked():
        live, skipped = referenced_objects(store)
        removed = removed_bytes = kept = 0
        for oid in list(store.object_ids()):
            if oid in live or skipped:
                kept += 1
            else:
                removed_bytes += store.remove_object(oid)
                removed += 1
        tmp = store.clean_tmp()
        strays = tuple(store.strays())
    return GcReport(removed, removed_bytes, tmp, kept, strays, tuple(skipped))
