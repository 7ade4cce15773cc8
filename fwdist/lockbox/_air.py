"""Format 2 manifests on the box: what the box keeps of one, in the shape format 1 has.

A format 2 manifest (:mod:`fwdist.air`) names one payload, its product and
hardware by 4-byte ids, its base image by 4 bytes and its pieces by
SHA-256/192. The box's rules, receiver and builder work on a
:class:`~fwdist.manifest.Manifest` and its :class:`~fwdist.manifest.PayloadRef`;
rather than teach each of them a second format, the box reads a format 2
manifest as a *view*: a Manifest whose only payload (``full``, whatever it is)
is the one the manifest carries. The view's names are the box's own when the
ids match (and a name no box has when not, so the product rule refuses it),
a delta's base is the running image when the 4-byte id matches it, and the
payload's table is named by 24 bytes (the table's id, or for inline rows the
SHA-256/192 of the rows), so a format 2 target never shares a key with a
format 1 one. Which format a manifest slot holds is its first byte: 0x02 for
format 2, a msgpack array (0x94) for format 1.
"""

from __future__ import annotations

from fwdist import air
from fwdist.lockbox._config import BoxConfig
from fwdist.manifest import Manifest, PayloadRef, PieceEntry, PieceTable

UNKNOWN_BASE = ""
"""The view's ``source_version`` for a delta: the box never learns its base's version."""


def is_format2(wire: bytes) -> bool:
    return wire[:1] == bytes((air.FORMAT,))


def table_key(m: air.AirManifest) -> bytes:
    """What the box's records name the payload's table by (24 bytes)."""
    if m.table_id is not None:
        return m.table_id
    return air.short_hash(air.encode_table(m.rows, m.compressed))


def view(m: air.AirManifest, config: BoxConfig, running_sha256: bytes) -> Manifest:
    """``m`` as the box's rules read a manifest (see the module's docstring)."""
    own = m.product_id == air.product_id(config.product)
    product = config.product if own else f"#{m.product_id.hex()}"
    hw_own = m.hardware_id == air.hardware_id(config.product, config.hardware)
    hardware = config.hardware if hw_own else f"#{m.hardware_id.hex()}"
    source: bytes | None = None
    if m.source_id is not None:
        source = running_sha256 if m.applies_to(running_sha256) else m.source_id
    ref = PayloadRef(m.encoder, m.size, m.pieces, table_key(m), m.decode_ram,
                     UNKNOWN_BASE if m.is_delta else None, source)
    return Manifest(product=product, hardware=hardware, version=m.version,
                    security_counter=m.security_counter, image_size=m.image_size,
                    image_sha256=m.image_sha256, full=ref, required=m.required,
                    min_battery=m.min_battery, created=m.created, expires=m.expires)


def piece_table(rows: tuple[air.Row, ...], compressed: bool) -> PieceTable:
    """Rows as the box's piece table (ids of 24 bytes: :mod:`._build` compares that many)."""
    return PieceTable(compressed, tuple(PieceEntry(r.id, r.size, r.wire_size) for r in rows))


def table_length(m: air.AirManifest) -> int:
    """The exact bytes of the table stream (0: the rows travel inside the manifest)."""
    return 0 if m.table_id is None else m.pieces * air.row_width(m.compressed)


def decode_table(data: bytes, m: air.AirManifest) -> PieceTable:
    """A staged format 2 table, checked against its manifest (raises ManifestError)."""
    return piece_table(air.decode_table(data, m), m.compressed)


def stored(raw: bytes) -> bytes:
    """The format 2 manifest at the start of a manifest slot's bytes (raises ManifestError)."""
    _, n = air.decode_prefix(raw)
    return raw[:n]

