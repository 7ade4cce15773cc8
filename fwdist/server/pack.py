"""A pack: one payload's piece table and all its pieces in one rangeable response.

One request per piece costs a phone a round trip each (SWUpdate gave up per-chunk
requests for that); one pack per payload costs one, and ``Range`` resumes it at the byte
where a dropped connection stopped. Byte layout (docs/fleet-api.md), integers big-endian::

    magic   4  b"fwpk"
    format  1  1
    count   4  number of objects N (the piece table, then each distinct piece in table order)
    index   N x (sha256 32, length 4)   each object's name and byte length
    objects    the N store files (zstd frames, as /objects/ serves them), in index order

The index comes first so a phone that has some pieces can skip to the ones it lacks with
a Range computed from the lengths; every object is checked by the phone against its name.
A pack is a function of its piece table, so its ETag is the table's hash.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from fwdist import air
from fwdist.errors import FwdistError
from fwdist.manifest import MAX_TABLE_BYTES, decode, decode_table
from fwdist.store import MAX_FRAME_BYTES, Store

MAGIC = b"fwpk"
FORMAT = 1
_HEADER = struct.Struct(">4sBI")
_ENTRY = struct.Struct(">32sI")
MEDIA_TYPE = "application/x-fwdist-pack"
MAX_OBJECTS = 1 << 20
"""No piece table holds more pieces (air.MAX_PIECES)."""


class PackError(FwdistError):
    """Bytes that are not a pack."""


@dataclass(frozen=True)
class Pack:
    """A decoded pack: (name, store file) pairs, the piece table's first."""

    objects: tuple[tuple[bytes, bytes], ...]


def etag(table_sha256: bytes) -> str:
    return f"pack{FORMAT}-{table_sha256.hex()}"


def encode(objects: list[tuple[bytes, bytes]]) -> bytes:
    head = [_HEADER.pack(MAGIC, FORMAT, len(objects))]
    head += [_ENTRY.pack(name, len(frame)) for name, frame in objects]
    return b"".join(head + [frame for _, frame in objects])


def index_size(count: int) -> int:
    """Bytes before the first object of a pack of ``count`` objects."""
    return _HEADER.size + count * _ENTRY.size


def decode_index(data: bytes) -> list[tuple[bytes, int]]:
    """The (name, length) index at the start of ``data`` (which may hold more)."""
    if len(data) < _HEADER.size:
        raise PackError("pack is shorter than its header")
    magic, fmt, count = _HEADER.unpack_from(data)
    if magic != MAGIC or fmt != FORMAT:
        raise PackError("not a format 1 fwdist pack")
    if count > MAX_OBJECTS or len(data) < index_size(count):
        raise PackError("pack index is truncated or too large")
    out = []
    for i in range(count):
        name, length = _ENTRY.unpack_from(data, _HEADER.size + i * _ENTRY.size)
        if not 0 < length <= MAX_FRAME_BYTES:
            raise PackError(f"pack object {i} has length {length}")
        out.append((name, length))
    return out


def decode_pack(data: bytes) -> Pack:
    """Split a whole pack into its objects (names not checked: the caller hashes them)."""
    index = decode_index(data)
    pos, objects = index_size(len(index)), []
    for name, length in index:
        if pos + length > len(data):
            raise PackError("pack is truncated")
        objects.append((name, data[pos:pos + length]))
        pos += length
    if pos != len(data):
        raise PackError(f"{len(data) - pos} bytes follow the last object of the pack")
    return Pack(tuple(objects))


def build(store: Store, product: str, version: str, index: int) -> tuple[bytes, bytes]:
    """(table sha256, pack bytes) of payload ``index`` (0 full, then the deltas) of a release."""
    m = decode(store.get_manifest(product, version)).manifest
    refs = air.payload_refs(m)
    if not 0 <= index < len(refs):
        raise PackError(f"{product}@{version} has no payload {index}")
    ref = refs[index]
    table = decode_table(store.get_content(ref.table_sha256, MAX_TABLE_BYTES), ref.table_sha256)
    objects = [(ref.table_sha256, store.get_frame(ref.table_sha256))]
    seen = set()
    for entry in table.pieces:
        if entry.id not in seen:
            seen.add(entry.id)
            objects.append((entry.id, store.get_frame(entry.id)))
    return ref.table_sha256, encode(objects)
