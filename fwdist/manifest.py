"""Release manifests: what a release is, in canonical msgpack, signed with Ed25519.

A manifest is the one thing a lockbox must trust before it spends flash on a
release, so it is small (a box on the old version receives it over Bluetooth),
canonical (one release has exactly one encoding, so a flipped bit can never
decode to an equal value) and strictly decoded (bounded sizes, exact types,
unknown formats and fields rejected). Like SUIT manifests for constrained
devices, the body is a map with small integer keys rather than strings.

Wire form: ``msgpack([FORMAT, body, key_id, signature])`` where ``body`` is the
canonical msgpack of the fields, ``key_id`` the first 8 bytes of SHA-256 of the
raw Ed25519 public key, and ``signature`` Ed25519 over ``SIGNING_CONTEXT + body``.
A release signed by a threshold of signers (or not yet by anyone: the offline flow's
draft) is ``msgpack([FORMAT, body, [[key_id, signature], ...]])``, signatures in
ascending key id order; one signature always takes the first form, so every manifest
signed before thresholds keeps its bytes, and one manifest has one encoding.

The piece tables are not inside the manifest: each payload names its table by
SHA-256, and a box fetches only the table of the payload it takes (the delta for
its running version, or the full image).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fwdist.errors import ManifestError

if TYPE_CHECKING:
    from fwdist.keys import Signer

FORMAT = 1
SIGNING_CONTEXT = b"fwdist manifest v1\x00"
MAX_MANIFEST_BYTES = 16 * 1024
MAX_TABLE_BYTES = 1 << 20
MAX_DELTAS = 32
MAX_NAME = 64
KEY_ID_BYTES = 8
SHA256_BYTES = 32
SIGNATURE_BYTES = 64
MAX_SIGNATURES = 8

_VERSION_RE = re.compile(r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, order=True)
class Version:
    """A release version X.Y.Z, ordered numerically (1.10.0 > 1.9.0)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        m = _VERSION_RE.match(text)
        if not m and re.match(r"^\d+\.\d+\.\d+[-+]", text):
            raise ManifestError(
                f"pre-release and build versions such as {text!r} are not supported; "
                "use X.Y.Z (docs/cli.md says why)"
            )
        if not m:
            raise ManifestError(f"version must look like X.Y.Z (numbers), got {text!r}")
        return cls(int(m[1]), int(m[2]), int(m[3]))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def check_name(kind: str, text: str) -> str:
    if not _NAME_RE.match(text):
        raise ManifestError(
            f"{kind} must be 1-64 of [A-Za-z0-9._-] starting alphanumeric, got {text!r}"
        )
    return text


def key_id(public_key: Ed25519PublicKey) -> bytes:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KEY_ID_BYTES]


@dataclass(frozen=True)
class PayloadRef:
    """One way to reach the release: the full image, or a delta from one source image.

    ``size`` is the total of the pieces' wire bytes; ``table_sha256`` names the
    piece table object; ``decode_ram`` is the RAM the box's decoder needs.
    A full payload has ``source_version`` None.
    """

    encoder: str
    size: int
    pieces: int
    table_sha256: bytes
    decode_ram: int = 0
    source_version: str | None = None
    source_sha256: bytes | None = None

    @property
    def is_delta(self) -> bool:
        return self.source_version is not None


@dataclass(frozen=True)
class Manifest:
    """Everything a box needs to accept, receive and install one release."""

    product: str
    hardware: str
    version: str
    security_counter: int
    image_size: int
    image_sha256: bytes
    full: PayloadRef
    deltas: tuple[PayloadRef, ...] = ()
    required: bool = False
    min_battery: int = 0
    min_app: str = "0.0.0"
    created: int = 0
    expires: int | None = None

    @property
    def parsed_version(self) -> Version:
        return Version.parse(self.version)

    def payload_for(self, running_sha256: bytes | None) -> PayloadRef:
        """The delta whose source is the given running image, else the full payload."""
        for ref in self.deltas:
            if running_sha256 is not None and ref.source_sha256 == running_sha256:
                return ref
        return self.full

    def delta_from(self, version: str) -> PayloadRef | None:
        for ref in self.deltas:
            if ref.source_version == version:
                return ref
        return None


# Field keys. Integers keep the manifest small on the air; the table is the spec.
_M_PRODUCT, _M_HARDWARE, _M_VERSION, _M_COUNTER = 1, 2, 3, 4
_M_IMAGE_SIZE, _M_IMAGE_SHA, _M_FULL, _M_DELTAS = 5, 6, 7, 8
_M_REQUIRED, _M_MIN_BATTERY, _M_MIN_APP, _M_CREATED, _M_EXPIRES = 9, 10, 11, 12, 13
_P_ENCODER, _P_SIZE, _P_PIECES, _P_TABLE, _P_RAM, _P_SRC_VERSION, _P_SRC_SHA = 1, 2, 3, 4, 5, 6, 7

_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _payload_to_map(ref: PayloadRef) -> dict[int, Any]:
    m: dict[int, Any] = {
        _P_ENCODER: ref.encoder,
        _P_SIZE: ref.size,
        _P_PIECES: ref.pieces,
        _P_TABLE: ref.table_sha256,
        _P_RAM: ref.decode_ram,
    }
    if ref.source_version is not None:
        m[_P_SRC_VERSION] = ref.source_version
        m[_P_SRC_SHA] = ref.source_sha256
    return m


def encode_body(m: Manifest) -> bytes:
    """Canonical body bytes: integer keys in ascending order, optional fields omitted."""
    body: dict[int, Any] = {
        _M_PRODUCT: m.product,
        _M_HARDWARE: m.hardware,
        _M_VERSION: m.version,
        _M_COUNTER: m.security_counter,
        _M_IMAGE_SIZE: m.image_size,
        _M_IMAGE_SHA: m.image_sha256,
        _M_FULL: _payload_to_map(m.full),
    }
    if m.deltas:
        body[_M_DELTAS] = [_payload_to_map(d) for d in m.deltas]
    if m.required:
        body[_M_REQUIRED] = True
    if m.min_battery:
        body[_M_MIN_BATTERY] = m.min_battery
    if m.min_app != "0.0.0":
        body[_M_MIN_APP] = m.min_app
    body[_M_CREATED] = m.created
    if m.expires is not None:
        body[_M_EXPIRES] = m.expires
    _validate(m)
    return _pack(dict(sorted(body.items())))


def sign(m: Manifest, private_key: Signer) -> bytes:
    """The manifest's wire bytes, signed."""
    return sign_all(m, [private_key])


def sign_all(m: Manifest, signers: Sequence[Signer]) -> bytes:
    """The manifest's wire bytes signed by each of ``signers`` (none: an unsigned draft)."""
    body = encode_body(m)
    return _envelope(body, [_signature(body, s) for s in signers])


def _signature(body: bytes, signer: Signer) -> tuple[bytes, bytes]:
    return key_id(signer.public_key()), signer.sign(SIGNING_CONTEXT + body)


def _envelope(body: bytes, sigs: Sequence[tuple[bytes, bytes]]) -> bytes:
    ordered = sorted(sigs)
    if len(ordered) > MAX_SIGNATURES:
        raise ManifestError(f"a manifest carries at most {MAX_SIGNATURES} signatures")
    if any(a[0] == b[0] for a, b in itertools.pairwise(ordered)):
        raise ManifestError("manifest already carries a signature of that key")
    if len(ordered) == 1:
        wire = _pack([FORMAT, body, *ordered[0]])
    else:
        wire = _pack([FORMAT, body, [list(sig) for sig in ordered]])
    if len(wire) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"manifest is {len(wire)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit"
        )
    return wire


def add_signature(wire: bytes, signer: Signer) -> bytes:
    """The same manifest with one more signature: signers of a threshold sign one by one."""
    sm = decode(wire)
    return _envelope(sm.body, [*sm.signatures, _signature(sm.body, signer)])


@dataclass(frozen=True)
class SignedManifest:
    """A decoded manifest with the signatures it carries, checked by :func:`verify`.

    ``key_id`` and ``signature`` are the first (key id order) signature's, empty for a draft.
    """

    manifest: Manifest
    key_id: bytes
    body: bytes
    signature: bytes
    signatures: tuple[tuple[bytes, bytes], ...] = ()


def _unpack_limited(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            use_list=True,
            max_bin_len=MAX_MANIFEST_BYTES,
            max_str_len=MAX_NAME * 4,
            max_array_len=MAX_DELTAS * 2,
            max_map_len=32,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise ManifestError(f"{what} is not valid msgpack: {type(e).__name__}") from None


def decode(wire: bytes) -> SignedManifest:
    """Strictly decode a manifest's wire bytes; raise :class:`ManifestError` or return.

    The signature is *not* checked here (see :func:`verify`); everything else is:
    size, format, exact types, ranges, canonical encoding.
    """
    if not isinstance(wire, bytes | bytearray | memoryview):
        raise ManifestError("manifest must be bytes")
    wire = bytes(wire)
    if len(wire) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"manifest is {len(wire)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit"
        )
    env = _unpack_limited(wire, "manifest")
    if not isinstance(env, list) or len(env) not in (3, 4):
        raise ManifestError("manifest envelope must be a 3- or 4-element array")
    fmt, body = env[:2]
    if type(fmt) is not int:
        raise ManifestError("manifest format must be an integer")
    if fmt != FORMAT:
        raise ManifestError(f"unknown manifest format {fmt} (this fwdist reads format {FORMAT})")
    raw_sigs = [env[2:]] if len(env) == 4 else env[2]
    if not isinstance(raw_sigs, list) or len(raw_sigs) > MAX_SIGNATURES:
        raise ManifestError(f"a manifest carries a list of at most {MAX_SIGNATURES} signatures")
    if not isinstance(body, bytes) or not all(
            isinstance(e, list) and len(e) == 2 and all(isinstance(v, bytes) for v in e)
            for e in raw_sigs):
        raise ManifestError("manifest envelope fields must be byte strings")
    sigs = tuple((e[0], e[1]) for e in raw_sigs)
    if any(len(kid) != KEY_ID_BYTES or len(sig) != SIGNATURE_BYTES for kid, sig in sigs):
        raise ManifestError("manifest key id or signature has the wrong length")
    fields = _unpack_limited(body, "manifest body")
    m = _manifest_from_map(fields)
    if encode_body(m) != body:
        raise ManifestError("manifest body is not in canonical form")
    if any(a[0] >= b[0] for a, b in itertools.pairwise(sigs)):
        raise ManifestError("manifest signatures are not in ascending key id order, or repeat")
    if _envelope(body, sigs) != wire:
        raise ManifestError("manifest envelope is not in canonical form")
    first = sigs[0] if sigs else (b"", b"")
    return SignedManifest(m, first[0], body, first[1], sigs)


def verify(wire: bytes, trusted: Mapping[bytes, Ed25519PublicKey], threshold: int = 1) -> Manifest:
    """Decode and require ``threshold`` distinct trusted keys (by key id) to have signed."""
    sm = decode(wire)
    known = [(kid, sig) for kid, sig in sm.signatures if kid in trusted]
    if not known:
        unknown = sm.key_id.hex() if sm.signatures else "(none: an unsigned draft)"
        raise ManifestError(f"manifest is signed by unknown key {unknown}")
    good = 0
    for kid, sig in known:
        try:
            trusted[kid].verify(sig, SIGNING_CONTEXT + sm.body)
        except InvalidSignature:
            continue
        good += 1
    if good < max(threshold, 1):
        raise ManifestError("manifest signature does not verify" if threshold <= 1 else
                            f"manifest has {good} of the {threshold} signatures it needs")
    return sm.manifest


def _take(fields: dict[Any, Any], key: int, typ: type, what: str, default: Any = ...) -> Any:
    if key not in fields:
        if default is ...:
            raise ManifestError(f"manifest lacks {what}")
        return default
    value = fields.pop(key)
    if type(value) is not typ:
        raise ManifestError(f"manifest {what} must be {typ.__name__}")
    return value


def _payload_from_map(raw: Any) -> PayloadRef:
    if not isinstance(raw, dict):
        raise ManifestError("manifest payload must be a map")
    f = dict(raw)
    ref = PayloadRef(
        encoder=_take(f, _P_ENCODER, str, "payload encoder"),
        size=_take(f, _P_SIZE, int, "payload size"),
        pieces=_take(f, _P_PIECES, int, "payload piece count"),
        table_sha256=_take(f, _P_TABLE, bytes, "payload table hash"),
        decode_ram=_take(f, _P_RAM, int, "payload decode RAM"),
        source_version=_take(f, _P_SRC_VERSION, str, "delta source version", None),
        source_sha256=_take(f, _P_SRC_SHA, bytes, "delta source hash", None),
    )
    if f:
        raise ManifestError(f"manifest payload has unknown fields {sorted(map(str, f))}")
    return ref


def _manifest_from_map(raw: Any) -> Manifest:
    if not isinstance(raw, dict):
        raise ManifestError("manifest body must be a map")
    f = dict(raw)
    deltas_raw = _take(f, _M_DELTAS, list, "delta list", [])
    m = Manifest(
        product=_take(f, _M_PRODUCT, str, "product"),
        hardware=_take(f, _M_HARDWARE, str, "hardware"),
        version=_take(f, _M_VERSION, str, "version"),
        security_counter=_take(f, _M_COUNTER, int, "security counter"),
        image_size=_take(f, _M_IMAGE_SIZE, int, "image size"),
        image_sha256=_take(f, _M_IMAGE_SHA, bytes, "image hash"),
        full=_payload_from_map(f.pop(_M_FULL, None)),
        deltas=tuple(_payload_from_map(d) for d in deltas_raw),
        required=_take(f, _M_REQUIRED, bool, "required flag", False),
        min_battery=_take(f, _M_MIN_BATTERY, int, "minimum battery", 0),
        min_app=_take(f, _M_MIN_APP, str, "minimum app version", "0.0.0"),
        created=_take(f, _M_CREATED, int, "created time"),
        expires=_take(f, _M_EXPIRES, int, "expiry time", None),
    )
    if f:
        raise ManifestError(f"manifest has unknown fields {sorted(map(str, f))}")
    _validate(m)
    return m


def _validate_payload(ref: PayloadRef, full: bool) -> None:
    if not 0 < len(ref.encoder) <= MAX_NAME:
        raise ManifestError("payload encoder name is empty or too long")
    if not (0 <= ref.size <= _U64 and 0 <= ref.pieces <= _U32 and 0 <= ref.decode_ram <= _U32):
        raise ManifestError("payload size, piece count or decode RAM out of range")
    if len(ref.table_sha256) != SHA256_BYTES:
        raise ManifestError("payload table hash must be 32 bytes")
    if full != (ref.source_version is None) or (ref.source_version is None) != (
        ref.source_sha256 is None
    ):
        raise ManifestError(
            "a delta names its source version and hash; the full payload names neither"
        )
    if ref.source_version is not None:
        Version.parse(ref.source_version)
    if ref.source_sha256 is not None and len(ref.source_sha256) != SHA256_BYTES:
        raise ManifestError("delta source hash must be 32 bytes")


def _validate(m: Manifest) -> None:
    check_name("product", m.product)
    check_name("hardware", m.hardware)
    Version.parse(m.version)
    Version.parse(m.min_app)
    if not 0 <= m.security_counter <= _U32:
        raise ManifestError("security counter must be 0..2^32-1")
    if not 0 < m.image_size <= _U64:
        raise ManifestError("image size must be positive")
    if len(m.image_sha256) != SHA256_BYTES:
        raise ManifestError("image hash must be 32 bytes")
    if not 0 <= m.min_battery <= 100:
        raise ManifestError("minimum battery must be 0..100 percent")
    if not 0 <= m.created <= _U64 or (m.expires is not None and not m.created <= m.expires <= _U64):
        raise ManifestError("created/expires times out of range")
    if len(m.deltas) > MAX_DELTAS:
        raise ManifestError(f"at most {MAX_DELTAS} deltas per release")
    _validate_payload(m.full, full=True)
    for d in m.deltas:
        _validate_payload(d, full=False)


@dataclass(frozen=True)
class PieceEntry:
    """One piece of a payload: its id (SHA-256 of its content), content and wire sizes."""

    id: bytes
    size: int
    wire_size: int


@dataclass(frozen=True)
class PieceTable:
    """The ordered pieces of one payload.

    When ``compressed`` is true (full-image payloads) each piece travels as a
    zstd frame of ``wire_size`` bytes that decompresses to ``size`` bytes whose
    SHA-256 is ``id``; otherwise (delta payloads, already compressed) the piece
    travels as its content and ``wire_size == size``. Concatenating the contents
    in order gives the image (full) or the delta stream (delta).
    """

    compressed: bool
    pieces: tuple[PieceEntry, ...]

    @property
    def wire_size(self) -> int:
        return sum(p.wire_size for p in self.pieces)

    @property
    def content_size(self) -> int:
        return sum(p.size for p in self.pieces)

    def encode(self) -> bytes:
        if self.compressed:
            rows: list[list[Any]] = [[p.id, p.size, p.wire_size] for p in self.pieces]
        else:
            rows = [[p.id, p.size] for p in self.pieces]
        return _pack([FORMAT, self.compressed, rows])

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()


MAX_PIECE_SIZE = 1 << 20


def decode_table(data: bytes, expected_sha256: bytes | None = None) -> PieceTable:
    """Strictly decode a piece table; with ``expected_sha256``, check it names these bytes."""
    if len(data) > MAX_TABLE_BYTES:
        raise ManifestError(
            f"piece table is {len(data)} bytes, over the {MAX_TABLE_BYTES}-byte limit"
        )
    if expected_sha256 is not None and hashlib.sha256(data).digest() != expected_sha256:
        raise ManifestError("piece table does not match the hash in the manifest")
    try:
        raw = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            max_bin_len=64,
            max_str_len=0,
            max_array_len=MAX_TABLE_BYTES // 32,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise ManifestError(f"piece table is not valid msgpack: {type(e).__name__}") from None
    if not (isinstance(raw, list) and len(raw) == 3 and type(raw[0]) is int):
        raise ManifestError("piece table must be [format, compressed, rows]")
    fmt, compressed, rows = raw
    if fmt != FORMAT:
        raise ManifestError(f"unknown piece table format {fmt}")
    if type(compressed) is not bool or not isinstance(rows, list):
        raise ManifestError("piece table must be [format, compressed, rows]")
    width = 3 if compressed else 2
    pieces = []
    for row in rows:
        if not (
            isinstance(row, list)
            and len(row) == width
            and isinstance(row[0], bytes)
            and len(row[0]) == SHA256_BYTES
            and all(type(v) is int for v in row[1:])
        ):
            raise ManifestError("piece table row is malformed")
        size = row[1]
        wire = row[2] if compressed else size
        if not (0 < size <= MAX_PIECE_SIZE and 0 < wire <= MAX_PIECE_SIZE + 1024):
            raise ManifestError("piece size out of range")
        pieces.append(PieceEntry(row[0], size, wire))
    table = PieceTable(compressed, tuple(pieces))
    if table.encode() != data:
        raise ManifestError("piece table is not in canonical form")
    return table
