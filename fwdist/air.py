"""The manifest as it crosses the air (format 2): one payload, fixed binary, a few bytes.

The store's manifest (:mod:`fwdist.manifest`, format 1) describes a whole
release for people and tools: names, every delta, the full image, tables by
SHA-256. A box needs much less: the release *as it applies to that box* — one
payload (the delta from the image it runs, or the full image), the piece hashes
it checks before a piece counts, and what it checks the built image against.
Every byte of that is a byte of firmware that did not move in an access of a
few kilobytes, so format 2 is a fixed binary layout (docs/wire-format.md gives
it byte by byte) rather than msgpack: the same fields as canonical msgpack with
integer keys cost 28-31 bytes more (keys, type and bin headers), and the layout is
just as strictly decoded (parse or raise, one encoding per value).

What is cut, and why it is still safe:

- **product and hardware** are 4-byte ids (SHA-256 of the name, domain
  separated, truncated). A box compares them with the ids of its own names; a
  release counts only if the vendor's key signed it, so only the vendor's own
  products can collide, and staging refuses (:func:`check_ids_distinct`) a
  product whose id equals that of another product in the store (odds for 1,000 products: 1 in
  8,600, before that check).
- **the base image** of a delta is the first 4 bytes of its SHA-256. A box
  cannot be made to run another base (it runs what it runs), and a delta
  applied to a wrong base cannot install: the built image is checked against
  the full 32-byte ``image_sha256``. A collision (odds ~n²/2³³ for n base
  images of one product) costs that box the delta, never a wrong image.
- **piece hashes** are SHA-256/192 (the first 24 bytes of SHA-256, as NIST
  SP 800-208 defines it): finding other bytes for a piece takes 2¹⁹² work,
  and a collision 2⁹⁶ — and even then the built image fails its full SHA-256.
- **the key** is named by one byte (the first of its 8-byte key id); a box
  tries each trusted key with that first byte. A wrong hint costs a verify.
- **decoder RAM** is rounded up to whole KiB (the box's comparison only gets
  more cautious).

Pieces: a payload of up to :data:`INLINE_PIECES` pieces carries its piece rows
inside the signed manifest (a single-piece payload's row *is* its hash: no
table at all); a larger one carries the SHA-256/192 of a separate table of the
same rows, which the box stages and resumes like a piece. Rows are 27 bytes
(a delta piece: hash, size) or 30 (a full-image piece: hash, size, zstd frame
size), so each piece past the first costs at most 30 bytes. A Merkle root with
a proof per piece was the other choice: it saves the box from staging the
table, but a proof is ``ceil(log2 n)`` hashes per piece, so past two pieces it
costs more bytes on the air than the table it replaces, and a box has the
flash for a table (one sector per 150 pieces).

Signatures: a count (1..:data:`MAX_SIGNATURES`), then that many (key hint,
Ed25519 signature) entries, each over :data:`SIGNING_CONTEXT` + body, in
ascending byte order. One signature is what format 1 had; the count is what
lets a release carry a threshold of signers later without a new format.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fwdist.errors import ManifestError
from fwdist.keys import Signer
from fwdist.manifest import (
    MAX_PIECE_SIZE,
    SHA256_BYTES,
    SIGNATURE_BYTES,
    Manifest,
    PayloadRef,
    PieceTable,
    Version,
    key_id,
)

FORMAT = 2
SIGNING_CONTEXT = b"fwdist manifest v2\x00"
"""Domain separation: a format 1 signature (``fwdist manifest v1``) never verifies a format 2
body, nor the other way round."""
ID_BYTES = 4
SOURCE_ID_BYTES = 4
PIECE_HASH_BYTES = 24
INLINE_PIECES = 16
MAX_SIGNATURES = 8
MAX_PIECES = 1 << 20
MAX_TABLE_BYTES = MAX_PIECES * 30
_U24 = (1 << 24) - 1
_U32 = (1 << 32) - 1
_MAX_VERSION_PART = 999_999_999
KIB = 1024


class Flag(enum.IntFlag):
    """Bit 1 of the body: which optional fields follow, and where the piece rows are."""

    REQUIRED = 0x01
    EXPIRES = 0x02
    MIN_BATTERY = 0x04
    TABLE = 0x08  # the rows are in a separate table (more than INLINE_PIECES pieces)


_KNOWN_FLAGS = int(Flag.REQUIRED | Flag.EXPIRES | Flag.MIN_BATTERY | Flag.TABLE)

FULL_ENCODER = "zstd-pieces"
ENCODER_IDS: Mapping[str, int] = {
    FULL_ENCODER: 0, "zstd-dict": 1, "bsdiff-zstd": 2, "bsdiff-lzma": 3,
    "bsdiff3-lzma": 4, "bsdiff3-heatshrink": 5,
    "bsdiff-lzma+thumb2": 6, "bsdiff-zstd+thumb2": 7,
    "bsdiff3-lzma+thumb2": 8, "bsdiff3-heatshrink+thumb2": 9,
}
"""Encoder names as one byte. Numbers are never reused; a box meets an id it has no name for as
``#<id>`` (an encoder it cannot apply, refused as such, not as a malformed manifest)."""
_ENCODER_NAMES = {v: k for k, v in ENCODER_IDS.items()}


def short_hash(data: bytes) -> bytes:
    """SHA-256/192: what names a piece and a table on the air."""
    return hashlib.sha256(data).digest()[:PIECE_HASH_BYTES]


def product_id(product: str) -> bytes:
    return hashlib.sha256(b"fwdist product\x00" + product.encode()).digest()[:ID_BYTES]


def hardware_id(product: str, hardware: str) -> bytes:
    """Scoped by the product: two products' "rev-b" boards are different hardware."""
    data = b"fwdist hardware\x00" + product.encode() + b"\x00" + hardware.encode()
    return hashlib.sha256(data).digest()[:ID_BYTES]


def check_ids_distinct(products: Iterable[str]) -> None:
    """Refuse a set of product names two of which share an id (the store's check)."""
    seen: dict[bytes, str] = {}
    for name in products:
        other = seen.setdefault(product_id(name), name)
        if other != name:
            raise ManifestError(f"products {other!r} and {name!r} share the 4-byte product id "
                                f"{product_id(name).hex()}; rename one")


def encoder_id(name: str) -> int:
    if name in ENCODER_IDS:
        return ENCODER_IDS[name]
    if name.startswith("#") and name[1:].isdigit() and str(int(name[1:])) == name[1:]:
        number = int(name[1:])
        if number not in _ENCODER_NAMES and number <= 255:
            return number
    raise ManifestError(f"encoder {name!r} has no format 2 id")


def encoder_name(number: int) -> str:
    return _ENCODER_NAMES.get(number, f"#{number}")


@dataclass(frozen=True)
class Row:
    """One piece: its SHA-256/192, content bytes, and the bytes that travel (a zstd frame for
    a full-image piece; the content itself for a delta piece)."""

    id: bytes
    size: int
    wire_size: int


@dataclass(frozen=True)
class AirManifest:
    """One release as one box takes it: the release's fields and exactly one payload.

    ``rows`` holds the piece rows when they travel inline (at most
    :data:`INLINE_PIECES`), else is empty and ``table_id`` names the table
    (SHA-256/192 of :func:`encode_table`); ``pieces`` and ``size`` (wire bytes)
    are then stated, as the box must judge the payload before the table arrives.
    """

    product_id: bytes
    hardware_id: bytes
    version: str
    security_counter: int
    created: int
    image_size: int
    image_sha256: bytes
    encoder: str
    pieces: int
    size: int
    decode_ram_kib: int
    rows: tuple[Row, ...] = ()
    table_id: bytes | None = None
    source_id: bytes | None = None
    required: bool = False
    min_battery: int = 0
    expires: int | None = None

    @property
    def is_delta(self) -> bool:
        return self.encoder != FULL_ENCODER

    @property
    def compressed(self) -> bool:
        """Whether pieces travel as zstd frames (the full image) rather than as they are."""
        return not self.is_delta

    @property
    def decode_ram(self) -> int:
        return self.decode_ram_kib * KIB

    @property
    def parsed_version(self) -> Version:
        return Version.parse(self.version)

    def applies_to(self, running_sha256: bytes) -> bool:
        """A full payload applies to any box; a delta to a box running its base image."""
        return self.source_id is None or running_sha256[:SOURCE_ID_BYTES] == self.source_id


# --------------------------------------------------------------------------- integers


def _varint(v: int) -> bytes:
    """Unsigned LEB128, shortest form."""
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


class _Reader:
    """Reads the body front to back; any shortfall or non-canonical form raises."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise ManifestError("manifest is truncated")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def fixed(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def varint(self, hi: int, what: str) -> int:
        value = shift = 0
        for i in range(5):
            b = self.u8()
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b == 0 and i:
                    raise ManifestError(f"manifest {what} is not in its shortest form")
                if value > hi:
                    raise ManifestError(f"manifest {what} is out of range")
                return value
        raise ManifestError(f"manifest {what} is longer than 5 bytes")


# --------------------------------------------------------------------------- rows and tables


def _row_bytes(row: Row, compressed: bool) -> bytes:
    out = row.id + row.size.to_bytes(3, "big")
    return out + row.wire_size.to_bytes(3, "big") if compressed else out


def row_width(compressed: bool) -> int:
    return PIECE_HASH_BYTES + (6 if compressed else 3)


def _read_rows(r: _Reader, n: int, compressed: bool) -> tuple[Row, ...]:
    rows = []
    for _ in range(n):
        pid = r.take(PIECE_HASH_BYTES)
        size = r.fixed(3)
        wire = r.fixed(3) if compressed else size
        if not (0 < size <= MAX_PIECE_SIZE and 0 < wire <= MAX_PIECE_SIZE + 1024):
            raise ManifestError("piece size out of range")
        rows.append(Row(pid, size, wire))
    return tuple(rows)


def encode_table(rows: Sequence[Row], compressed: bool) -> bytes:
    """A payload's separate table: its rows back to back (its length is pieces x width)."""
    return b"".join(_row_bytes(r, compressed) for r in rows)


def decode_table(data: bytes, m: AirManifest) -> tuple[Row, ...]:
    """The rows of ``m``'s separate table, checked against its id, count and size."""
    if m.table_id is None:
        raise ManifestError("this manifest carries its pieces inline: it has no table")
    if len(data) != m.pieces * row_width(m.compressed):
        raise ManifestError(f"piece table is {len(data)} bytes, not the "
                            f"{m.pieces * row_width(m.compressed)} the manifest says")
    if short_hash(data) != m.table_id:
        raise ManifestError("piece table does not match the manifest")
    rows = _read_rows(_Reader(data), m.pieces, m.compressed)
    if sum(row.wire_size for row in rows) != m.size:
        raise ManifestError("piece table disagrees with the manifest's payload size")
    return rows


# --------------------------------------------------------------------------- the body


def _check(m: AirManifest) -> None:
    """Every rule a manifest must meet, so that encode and decode refuse the same things."""
    if len(m.product_id) != ID_BYTES or len(m.hardware_id) != ID_BYTES:
        raise ManifestError("product and hardware ids must be 4 bytes")
    Version.parse(m.version)
    if not 0 <= m.security_counter <= _U32:
        raise ManifestError("security counter must be 0..2^32-1")
    if not 0 <= m.created <= _U32 or (m.expires is not None and not m.created <= m.expires <= _U32):
        raise ManifestError("created/expires times out of range")
    if not 0 <= m.min_battery <= 100:
        raise ManifestError("minimum battery must be 0..100 percent")
    if not 0 < m.image_size <= _U32 or len(m.image_sha256) != SHA256_BYTES:
        raise ManifestError("image size or hash out of range")
    encoder_id(m.encoder)
    if (m.source_id is None) == m.is_delta or (
            m.source_id is not None and len(m.source_id) != SOURCE_ID_BYTES):
        raise ManifestError("a delta names its 4-byte base image id; the full payload none")
    if not 0 <= m.decode_ram_kib <= _U32 or not 0 < m.pieces <= MAX_PIECES:
        raise ManifestError("decode RAM or piece count out of range")
    if not 0 < m.size <= _U32:
        raise ManifestError("payload size out of range")
    inline = m.pieces <= INLINE_PIECES
    if inline != (m.table_id is None) or inline != (len(m.rows) == m.pieces):
        raise ManifestError(f"up to {INLINE_PIECES} pieces travel inline, more in a table")
    if m.table_id is not None and len(m.table_id) != PIECE_HASH_BYTES:
        raise ManifestError("a table id is 24 bytes")
    for row in m.rows:
        wire_ok = row.wire_size == row.size or m.compressed
        if len(row.id) != PIECE_HASH_BYTES or not (0 < row.size <= MAX_PIECE_SIZE) or not (
                0 < row.wire_size <= MAX_PIECE_SIZE + 1024) or not wire_ok:
            raise ManifestError("piece row out of range")
    if m.rows and sum(row.wire_size for row in m.rows) != m.size:
        raise ManifestError("the pieces' wire sizes do not add up to the payload size")


def encode_body(m: AirManifest) -> bytes:
    """The signed bytes (docs/wire-format.md, "Manifest format 2")."""
    _check(m)
    flags = ((Flag.REQUIRED if m.required else 0) | (Flag.EXPIRES if m.expires is not None else 0)
             | (Flag.MIN_BATTERY if m.min_battery else 0) | (Flag.TABLE if m.table_id else 0))
    v = m.parsed_version
    out = bytearray((FORMAT, int(flags)))
    out += m.product_id + m.hardware_id
    out += _varint(v.major) + _varint(v.minor) + _varint(v.patch)
    out += _varint(m.security_counter) + m.created.to_bytes(4, "big")
    if m.expires is not None:
        out += m.expires.to_bytes(4, "big")
    if m.min_battery:
        out.append(m.min_battery)
    out += _varint(m.image_size) + m.image_sha256
    out.append(encoder_id(m.encoder))
    if m.source_id is not None:
        out += m.source_id
    out += _varint(m.decode_ram_kib) + _varint(m.pieces)
    if m.table_id is not None:
        out += _varint(m.size) + m.table_id
    else:
        out += b"".join(_row_bytes(row, m.compressed) for row in m.rows)
    return bytes(out)


def _read_body(r: _Reader) -> AirManifest:
    if r.u8() != FORMAT:
        raise ManifestError(f"not a format {FORMAT} manifest")
    flags = r.u8()
    if flags & ~_KNOWN_FLAGS:
        raise ManifestError(f"manifest has unknown flags {flags:#04x}")
    pid, hid = r.take(ID_BYTES), r.take(ID_BYTES)
    parts = [r.varint(_MAX_VERSION_PART, "version") for _ in range(3)]
    counter = r.varint(_U32, "security counter")
    created = r.fixed(4)
    expires = r.fixed(4) if flags & Flag.EXPIRES else None
    battery = r.u8() if flags & Flag.MIN_BATTERY else 0
    if flags & Flag.MIN_BATTERY and battery == 0:
        raise ManifestError("manifest states a minimum battery of 0 (it omits it instead)")
    image_size = r.varint(_U32, "image size")
    image_sha = r.take(SHA256_BYTES)
    encoder = encoder_name(r.u8())
    source = r.take(SOURCE_ID_BYTES) if encoder != FULL_ENCODER else None
    ram = r.varint(_U32, "decode RAM")
    pieces = r.varint(MAX_PIECES, "piece count")
    rows: tuple[Row, ...] = ()
    table_id = None
    if flags & Flag.TABLE:
        size = r.varint(_U32, "payload size")
        table_id = r.take(PIECE_HASH_BYTES)
    else:
        if pieces > INLINE_PIECES:
            raise ManifestError(f"more than {INLINE_PIECES} pieces travel in a table")
        rows = _read_rows(r, pieces, encoder == FULL_ENCODER)
        size = sum(row.wire_size for row in rows)
    m = AirManifest(pid, hid, ".".join(map(str, parts)), counter, created, image_size, image_sha,
                    encoder, pieces, size, ram, rows, table_id, source,
                    bool(flags & Flag.REQUIRED), battery, expires)
    _check(m)
    return m


# --------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class Signature:
    hint: int  # the first byte of the signer's key id
    signature: bytes


@dataclass(frozen=True)
class SignedAir:
    """A decoded manifest, its signed body and its signatures (checked by :func:`verify`)."""

    manifest: AirManifest
    body: bytes
    signatures: tuple[Signature, ...]

    @property
    def wire(self) -> bytes:
        return self.body + _signature_block(self.signatures)


def _signature_block(sigs: Sequence[Signature]) -> bytes:
    return bytes((len(sigs),)) + b"".join(bytes((s.hint,)) + s.signature for s in sigs)


def signature_block_bytes(count: int = 1) -> int:
    """Bytes the signature block takes: what a body is short of its wire form."""
    return 1 + count * (1 + SIGNATURE_BYTES)


def sign(m: AirManifest, keys: Sequence[Signer]) -> bytes:
    """The manifest's wire bytes, signed by each key (distinct keys, 1..MAX_SIGNATURES)."""
    body = encode_body(m)
    if not 0 < len(keys) <= MAX_SIGNATURES:
        raise ManifestError(f"a manifest carries 1..{MAX_SIGNATURES} signatures")
    return _signed(body, [_signature(body, k) for k in keys])


def _signature(body: bytes, signer: Signer) -> Signature:
    return Signature(key_id(signer.public_key())[0], signer.sign(SIGNING_CONTEXT + body))


def _signed(body: bytes, sigs: Sequence[Signature]) -> bytes:
    if len(sigs) > MAX_SIGNATURES:
        raise ManifestError(f"a manifest carries 1..{MAX_SIGNATURES} signatures")
    return body + _signature_block(sorted(sigs, key=lambda s: (s.hint, s.signature)))


def add_signature(wire: bytes, signer: Signer) -> bytes:
    """The same manifest with one more signature: signers of a threshold sign one by one."""
    sa = decode(wire)
    public = signer.public_key()
    if signers(sa, {key_id(public): public}):
        raise ManifestError("manifest already carries a signature of that key")
    return _signed(sa.body, [*sa.signatures, _signature(sa.body, signer)])


def decode_prefix(data: bytes) -> tuple[SignedAir, int]:
    """The manifest at the start of ``data`` and its length (a manifest slot holds more)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ManifestError("manifest must be bytes")
    data = bytes(data)
    r = _Reader(data)
    m = _read_body(r)
    body = data[: r.pos]
    count = r.u8()
    if not 0 < count <= MAX_SIGNATURES:
        raise ManifestError(f"a manifest carries 1..{MAX_SIGNATURES} signatures, not {count}")
    sigs = []
    for _ in range(count):
        hint = r.u8()
        sigs.append(Signature(hint, r.take(SIGNATURE_BYTES)))
    entries = [bytes((s.hint,)) + s.signature for s in sigs]
    if any(a >= b for a, b in itertools.pairwise(entries)):
        raise ManifestError("manifest signatures are not in ascending order, or repeat")
    return SignedAir(m, body, tuple(sigs)), r.pos


def decode(wire: bytes) -> SignedAir:
    """Strictly decode a manifest's wire bytes (not its signatures); raise or return."""
    sa, n = decode_prefix(wire)
    if n != len(wire):
        raise ManifestError(f"{len(wire) - n} bytes follow the manifest")
    return sa


def signers(sa: SignedAir, trusted: Mapping[bytes, Ed25519PublicKey]) -> set[bytes]:
    """The key ids of the trusted keys whose signature over the body verifies."""
    good: set[bytes] = set()
    message = SIGNING_CONTEXT + sa.body
    for s in sa.signatures:
        for kid, key in trusted.items():
            if kid[0] != s.hint or kid in good:
                continue
            try:
                key.verify(s.signature, message)
            except InvalidSignature:
                continue
            good.add(kid)
            break
    return good


def verify(wire: bytes, trusted: Mapping[bytes, Ed25519PublicKey],
           threshold: int = 1) -> AirManifest:
    """Decode and require ``threshold`` distinct trusted keys to have signed the body."""
    sa = decode(wire)
    if not any(kid[0] == s.hint for s in sa.signatures for kid in trusted):
        raise ManifestError("manifest is signed by no key this box trusts")
    if len(signers(sa, trusted)) < threshold:
        raise ManifestError("manifest signature does not verify")
    return sa.manifest


# --------------------------------------------------------------------------- from a release


@dataclass(frozen=True)
class AirPayload:
    """One payload of a release as a box receives it: the manifest, and its table if any."""

    manifest: AirManifest
    table: bytes

    @property
    def overhead_bytes(self) -> int:
        """Manifest + table + one signature: the bytes a box receives that are not payload."""
        return len(encode_body(self.manifest)) + signature_block_bytes() + len(self.table)


def rows_of(table: PieceTable) -> tuple[Row, ...]:
    """A store table's rows with SHA-256/192 ids (the first 24 bytes of the pieces' SHA-256)."""
    return tuple(Row(e.id[:PIECE_HASH_BYTES], e.size, e.wire_size) for e in table.pieces)


def from_release(m: Manifest, ref: PayloadRef, table: PieceTable) -> AirPayload:
    """The format 2 manifest (and table) of one payload of a stored release."""
    rows = rows_of(table)
    compressed = not ref.is_delta
    inline = len(rows) <= INLINE_PIECES
    table_bytes = b"" if inline else encode_table(rows, compressed)
    air = AirManifest(
        product_id=product_id(m.product),
        hardware_id=hardware_id(m.product, m.hardware),
        version=m.version,
        security_counter=m.security_counter,
        created=m.created,
        image_size=m.image_size,
        image_sha256=m.image_sha256,
        encoder=ref.encoder if ref.is_delta else FULL_ENCODER,
        pieces=len(rows),
        size=sum(r.wire_size for r in rows),
        decode_ram_kib=-(-ref.decode_ram // KIB),
        rows=rows if inline else (),
        table_id=None if inline else short_hash(table_bytes),
        source_id=None if ref.source_sha256 is None else ref.source_sha256[:SOURCE_ID_BYTES],
        required=m.required,
        min_battery=m.min_battery,
        expires=m.expires,
    )
    return AirPayload(air, table_bytes)


def payloads_for(m: Manifest, tables: Mapping[bytes, PieceTable],
                 running_sha256: bytes | None = None,
                 encoders: Collection[str] | None = None) -> list[AirPayload]:
    """The format 2 payloads a box running ``running_sha256`` may take, smallest first.

    Deltas from exactly that image come first (smallest payload first), the full image
    last: the order a phone offers them in when a box refuses one that does not fit it.
    """
    refs = [d for d in m.deltas if running_sha256 is not None and d.source_sha256 == running_sha256
            and (encoders is None or d.encoder in encoders)]
    refs.sort(key=lambda d: d.size)
    return [from_release(m, ref, tables[ref.table_sha256]) for ref in (*refs, m.full)]


def payload_refs(m: Manifest) -> tuple[PayloadRef, ...]:
    """A release's payloads in the order its format 2 bundle holds them: full, then deltas."""
    return (m.full, *m.deltas)


def sign_release(m: Manifest, tables: Mapping[bytes, PieceTable],
                 keys: Sequence[Signer]) -> tuple[bytes, ...]:
    """One signed format 2 manifest per payload of ``m``, in :func:`payload_refs` order."""
    return tuple(sign(from_release(m, ref, tables[ref.table_sha256]).manifest, keys)
                 for ref in payload_refs(m))


# --------------------------------------------------------------------------- the store's bundle

BUNDLE_FORMAT = 1
"""The first byte of a release's bundle of format 2 manifests (``releases/P/X.Y.Z.air``)."""


def encode_bundle(wires: Sequence[bytes]) -> bytes:
    """Signed format 2 manifests back to back after a format byte (each knows its length)."""
    return bytes((BUNDLE_FORMAT,)) + b"".join(wires)


def decode_bundle(data: bytes) -> tuple[bytes, ...]:
    """The wires of a bundle, each strictly decoded (signatures are the box's to check)."""
    if data[:1] != bytes((BUNDLE_FORMAT,)):
        raise ManifestError("not a format 2 bundle this fwdist reads")
    out, pos = [], 1
    while pos < len(data):
        _, n = decode_prefix(data[pos:])
        out.append(data[pos : pos + n])
        pos += n
    if not out:
        raise ManifestError("format 2 bundle holds no manifest")
    return tuple(out)
