"""Publishing: objects uploaded one by one, then the release, re-verified before it is visible.

A client uploads the objects the server lacks (each checked against its name as it
arrives), then the signed manifest and its format 2 bundle. The server trusts nothing it
was sent: it checks the manifest's signatures against the server store's own trust (when
the store holds a root chain, ``trust/root/N``: the newest root's release role for the
product and hardware, with its threshold; else the keys in ``STORE/keys/``, any one of
them; both are written by whoever runs the server, never by a client), that
the manifest names the release it is published as, that every table and piece it
references is in the store and hashes to its name, and that each format 2 manifest is
signed and describes its payload. Only then are the files written (bundle first, the
manifest last, as staging does) and the release row inserted: a release is all there or
absent. Publishing the same bytes again is a no-op; other bytes under a published
version are refused (a version names one release, forever).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine

from fwdist import air, trust
from fwdist.errors import FwdistError, ManifestError, StoreError, TrustError
from fwdist.manifest import MAX_TABLE_BYTES, Manifest, decode, decode_table, verify
from fwdist.releases import check_air_bundle, recorded_keys
from fwdist.server import db
from fwdist.server.context import ClientError
from fwdist.store import MAX_OBJECT_BYTES, Store, decompress


class ReleaseState(enum.Enum):
    PUBLISHED = "published"
    YANKED = "yanked"


class Outcome(enum.Enum):
    """What an upload did: 201 for a new thing, 200 for one the server had."""

    CREATED = 201
    HAD = 200


def put_object(store: Store, name: str, frame: bytes) -> Outcome:
    """Store an uploaded object after checking its content hashes to ``name``."""
    object_id = bytes.fromhex(name)
    try:
        content = decompress(frame, MAX_OBJECT_BYTES, what=f"object {name}")
    except StoreError as e:
        raise ClientError(422, str(e)) from None
    if hashlib.sha256(content).digest() != object_id:
        raise ClientError(422, f"object {name}: its content does not hash to its name")
    if store.has(object_id) and store.reuse_frame(object_id, frame, MAX_OBJECT_BYTES):
        return Outcome.HAD
    store.put_frame(object_id, frame)
    return Outcome.CREATED


@dataclass(frozen=True)
class Upload:
    """A release as a client sends it."""

    product: str
    version: str
    manifest: bytes
    air: bytes | None


def _check_payloads(store: Store, m: Manifest) -> None:
    """Every table and piece of every payload is in the store and hashes to its name."""
    for ref in air.payload_refs(m):
        name = f"payload from {ref.source_version}" if ref.is_delta else "full payload"
        try:
            table = decode_table(store.get_content(ref.table_sha256, MAX_TABLE_BYTES),
                                 ref.table_sha256)
            if table.compressed == ref.is_delta or len(table.pieces) != ref.pieces:
                raise ManifestError("its piece table does not match the manifest")
            if table.wire_size != ref.size:
                raise ManifestError("its size differs from the manifest")
            for entry in table.pieces:
                store.get_content(entry.id, entry.size)
                if table.compressed and len(store.get_frame(entry.id)) != entry.wire_size:
                    raise ManifestError(f"piece {entry.id.hex()} is not the frame its table names")
        except FwdistError as e:
            raise ClientError(422, f"{name}: {e}") from None


def release_signers(store: Store, product: str, hardware: str,
                    now: int) -> tuple[dict[bytes, Ed25519PublicKey], int]:
    """The keys (by id) and threshold a release of ``product`` on ``hardware`` needs.

    With a root chain in the store: its first root must verify by its own keys, each later
    one by the chain rule, and the newest root's release policy decides. Without one: the
    recorded keys, any one of them (what ``fwdist server --trust KEY.pub`` records).
    """
    versions = store.root_versions()
    if not versions:
        keys = recorded_keys(store)
        if not keys:
            raise ClientError(422, "the server trusts no signing key "
                                   "(fwdist server --trust KEY.pub)")
        return keys, 1
    try:
        first = store.get_root(versions[0])
        assert first is not None
        root = trust.verify_root(first)
        chain = trust.verify_chain(root, store.root_chain(after=versions[0]), now)
        return trust.release_policy(chain[-1] if chain else root, product, hardware)
    except (TrustError, StoreError) as e:
        raise ClientError(422, f"the server's trust root: {e}") from None


def check_upload(store: Store, up: Upload, now: int) -> Manifest:
    """The verified manifest of ``up``; ClientError(422) for the first thing wrong."""
    try:
        claimed = decode(up.manifest).manifest
    except ManifestError as e:
        raise ClientError(422, f"manifest: {e}") from None
    trusted, threshold = release_signers(store, claimed.product, claimed.hardware, now)
    try:
        m = verify(up.manifest, trusted, threshold)
    except ManifestError as e:
        raise ClientError(422, f"manifest: {e}") from None
    if (m.product, m.version) != (up.product, up.version):
        raise ClientError(422, f"the manifest is {m.product}@{m.version}, "
                               f"not {up.product}@{up.version}")
    _check_payloads(store, m)
    if up.air is not None:
        try:
            for wire in check_air_bundle(m, up.air):
                air.verify(wire, trusted, threshold)
        except ManifestError as e:
            raise ClientError(422, f"format 2 bundle: {e}") from None
    return m


def publish(store: Store, engine: Engine, up: Upload, now: int) -> Outcome:
    """Verify ``up`` and make it visible; HAD when exactly these bytes were published."""
    m = check_upload(store, up, now)
    with store.transaction():  # the store's writer lock: two publishers do not interleave
        try:
            existing: bytes | None = store.get_manifest(up.product, up.version)
        except StoreError:
            existing = None
        if existing is None:
            if up.air is not None:
                store.put_air(up.product, up.version, up.air)
            store.put_manifest(up.product, up.version, up.manifest)
        elif existing != up.manifest or store.get_air(up.product, up.version) != up.air:
            raise ClientError(409, f"{up.product}@{up.version} is published with other bytes")
    # A crash between the files and the row leaves the files: publishing again adds the row.
    inserted = _record(engine, m, up.manifest, now)
    return Outcome.CREATED if existing is None or inserted else Outcome.HAD


def _record(engine: Engine, m: Manifest, wire: bytes, now: int) -> bool:
    """Insert the release's rows unless there; True when they were inserted now."""
    with engine.begin() as conn:
        there = conn.execute(sa.select(db.releases.c.state).where(
            db.releases.c.product == m.product, db.releases.c.version == m.version)).first()
        if there is not None:
            return False
        conn.execute(db.releases.insert().values(
            product=m.product, version=m.version, state=ReleaseState.PUBLISHED.value,
            published_at=now, manifest_sha256=hashlib.sha256(wire).digest()))
        conn.execute(db.payloads.insert(), [
            {"product": m.product, "version": m.version, "idx": i,
             "from_version": ref.source_version, "encoder": ref.encoder, "bytes": ref.size,
             "pieces": ref.pieces, "table_sha256": ref.table_sha256}
            for i, ref in enumerate(air.payload_refs(m))])
    return True
