"""The app↔lockbox conversation: frames, events, and protocol version 1's strict codec.

The events here are every version's; the codec is version 1's, which the boxes
in the field speak and every Hello is written in (:func:`negotiate` says who
speaks what). Version 2, the lean wire, writes the same events in 4 bytes of
framing: :mod:`fwdist.protocol_v2`. In version 1, a frame on the wire is::

    u16 big-endian L | msgpack body (L - 4 bytes) | CRC-32 of the body (u32 big-endian)

so every frame, however small, carries its own check and link corruption is
caught where it happens. The whole frame (2 + L bytes) must fit the session's
maximum frame size, small by default (:data:`DEFAULT_MAX_FRAME` = 244 bytes:
one BLE ATT notification with data-length extension, 251 - 4 L2CAP - 3 ATT).

The body is a msgpack array ``[type, field, ...]``. Each frame type is a small
frozen dataclass (an *event*, as in h11); :func:`encode` turns one into bytes
and :class:`FrameDecoder` turns a byte stream back into events. Decoding is
strict and bounded: the length prefix is checked against the maximum before
anything is buffered, msgpack runs with tight container/string limits, every
field has an exact type and range, and the body must be in canonical form (it
re-encodes to the same bytes). A decoder either returns an event or raises
:class:`RemoteProtocolError` — never another exception; a hypothesis test holds
it to that. Trying to *send* a frame that breaks these rules raises
:class:`LocalProtocolError` instead, so a bug on our side is never blamed on
the peer.

Large objects (the signed manifest, the piece table, the pieces) travel in
chunks with offsets. Data frames name their release by a 4-byte *tag* (the
first bytes of SHA-256 of the manifest wire bytes) and their piece by its index
in the accepted payload's table (:data:`TABLE` = -1 for the table itself), so a
data frame spends 18-22 bytes on framing, checking and addressing (6 of them the
tag; the offset grows from 1 to 5 bytes) where a 32-byte piece id alone would
cost 34: at the default 244-byte frame, 226 bytes of every frame are payload.

The manifest travels in :class:`Offer` chunks that the box keeps in RAM until the
last one arrives and the signature checks: a box writes flash only for signed
data, so no phone can wear its flash or change its state with unsigned bytes,
and a manifest (hundreds of bytes) fits in the first second of any session. The
piece table and the pieces, whose hashes the signed manifest fixes, are persisted
as they arrive and resume across sessions.
"""

from __future__ import annotations

import enum
import hashlib
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, ClassVar

import msgpack

from fwdist.errors import FwdistError

PROTOCOL_VERSION = 1  # the version this module's codec writes (version 2: fwdist.protocol_v2)
PROTOCOL_VERSIONS = (1, 2)  # every version fwdist speaks


def negotiate(phone: int, box: tuple[int, ...]) -> int | None:
    """The version a box speaks with a phone whose Hello names ``phone``, or None to refuse.

    Version-1 firmware predates negotiation: it takes a Hello naming 1 and refuses any
    other (so a newer phone falls back to 1 for it). From version 2 on, a Hello names
    the highest version the phone speaks and the box answers in the highest both speak.
    """
    if max(box) == 1:
        return 1 if phone == 1 else None
    common = [v for v in box if v <= phone]
    return max(common) if common else None
DEFAULT_MAX_FRAME = 244
MIN_FRAME = 128
MIN_FRAME_V2 = 20  # protocol 2: BLE ATT MTU 23 less the 3-byte ATT header
MAX_FRAME = 4096
HEADER_BYTES = 2
CRC_BYTES = 4
TAG_BYTES = 4
SHA256_BYTES = 32
TABLE = -1
MAX_NAME = 64
MAX_PARTIALS = 4
MAX_OBJECT = 1 << 24
_U32 = (1 << 32) - 1


class ErrorCode(enum.IntEnum):
    """Why a session was ended with an :class:`Error` frame."""

    FRAME_TOO_LARGE = 1
    BAD_CRC = 2
    MALFORMED = 3
    UNKNOWN_TYPE = 4
    UNEXPECTED = 5
    WRONG_RELEASE = 6
    BAD_OFFSET = 7
    BAD_PIECE = 8
    UNSUPPORTED_VERSION = 9
    BUSY = 10
    INTERNAL = 11


class Reason(enum.IntEnum):
    """Why a box rejected an offered release (the :class:`Reject` frame)."""

    MALFORMED = 1
    UNKNOWN_KEY = 2
    BAD_SIGNATURE = 3
    WRONG_PRODUCT = 4
    WRONG_HARDWARE = 5
    EXPIRED = 6
    COUNTER_LOWER = 7
    NOT_NEWER = 8
    OLDER_THAN_TARGET = 9
    TOO_LARGE = 10  # the image is larger than a slot (or the manifest than its region, or a
    # root or timestamp than the journal holds beside the target)
    FAILED_BEFORE = 11
    # No payload fits the box; which limit the smallest candidate broke:
    TOO_MANY_PIECES = 12  # more pieces than the box tracks
    NOT_ENOUGH_RAM = 13  # its decoder needs more RAM than the box gives
    NO_STAGING_ROOM = 14  # its bytes do not fit the staging area
    UNKNOWN_ENCODER = 15  # the box cannot apply that delta encoder
    WRONG_BASE = 16  # a format 2 delta made from another image than the one the box runs
    # Trust (fwdist.trust): a release, or the root links and timestamp a phone relays
    REVOKED = 17  # the box's latest timestamp revokes this release
    ROOT_EXPIRED = 18  # the box's root has expired: it takes no release until a rotation
    BAD_ROOT = 19  # a root link is malformed, under-signed, skips a version or is too large
    BAD_TIMESTAMP = 20  # a timestamp is malformed or not signed by the root's timestamp role
    STALE_TIMESTAMP = 21  # a timestamp no newer than the box's own (a replay)
    METADATA_EXPIRED = 22  # the chain's last root, or the timestamp, expired at the box's time
    CHAIN_TOO_LONG = 23  # a relayed root chain over the box's buffer (protocol_v2.CHAIN_RAM)


class BoxState(enum.IntEnum):
    """What the box is doing about updates, as reported in :class:`Status`."""

    IDLE = 0  # running, no target
    RECEIVING = 1  # a target is accepted, pieces are missing
    COMPLETE = 2  # every piece is verified; building the new image is next
    BUILT = 3  # the new image is in the other slot and verified; waiting to install
    WAIT_BATTERY = 4  # built, but the battery is below the manifest's minimum
    TESTING = 5  # booted the new image in test mode
    WAIT_WINDOW = 6  # built, but its signed timestamp's install windows are all closed


class ProtocolError(FwdistError):
    """The conversation broke its rules; ``code`` says how (an :class:`ErrorCode`)."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.MALFORMED) -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol does not allow (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


def release_tag(manifest_wire: bytes) -> bytes:
    """The 4-byte name data frames use for a release: SHA-256 of the manifest bytes, truncated."""
    return hashlib.sha256(manifest_wire).digest()[:TAG_BYTES]


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    """Base class of the frames; ``TYPE`` is the first element of the body array."""

    TYPE: ClassVar[int] = 0


@dataclass(frozen=True)
class Hello(Event):
    """Phone → box, first frame of a session: our protocol version and the largest frame we take."""

    TYPE: ClassVar[int] = 1
    version: int
    max_frame: int


@dataclass(frozen=True)
class Target:
    """The release a box works towards and how far it got (inside :class:`Status`).

    ``table_received`` is how many bytes of the payload's piece table are
    persisted; ``bitmap`` has bit ``i % 8`` of byte ``i // 8`` set when piece
    ``i`` is verified; ``partials`` lists ``(piece, persisted offset)`` of pieces
    begun but not complete (at most :data:`MAX_PARTIALS`). ``payload`` says
    which of the manifest's payloads the box receives (as in :class:`Accept`).
    """

    tag: bytes
    version: str
    table_received: int
    bitmap: bytes
    partials: tuple[tuple[int, int], ...] = ()
    payload: int = 0

    def has(self, piece: int) -> bool:
        byte = piece // 8
        return 0 <= byte < len(self.bitmap) and bool(self.bitmap[byte] >> (piece % 8) & 1)


@dataclass(frozen=True)
class Status(Event):
    """Box → phone, the answer to :class:`Hello`: who the box is and what it has.

    ``align`` is the box's write granularity: data offsets must be multiples of
    it, and so must data lengths except for the last chunk of a piece.
    """

    TYPE: ClassVar[int] = 2
    version: int
    product: str
    hardware: str
    running_version: str
    running_counter: int
    running_sha256: bytes
    battery: int
    state: int
    align: int
    max_frame: int
    target: Target | None = None

    def is_for(self, product: str, hardware: str) -> bool:
        """Whether the box is this product and hardware (as version 2's Summary says it)."""
        return self.product == product and self.hardware == hardware

    def runs(self, image_sha256: bytes) -> bool:
        """Whether the box runs the image with this SHA-256."""
        return self.running_sha256 == image_sha256


@dataclass(frozen=True)
class Offer(Event):
    """Phone → box: a chunk of a signed manifest of ``total`` bytes, at ``offset``."""

    TYPE: ClassVar[int] = 3
    total: int
    offset: int
    data: bytes


@dataclass(frozen=True)
class Accept(Event):
    """Box → phone: the offered manifest is now the box's target, and which payload it takes.

    ``payload`` indexes the manifest's payloads: 0 the full image, ``k`` its
    ``k``-th delta. The box picks the one it can hold and apply (the smallest
    that fits its RAM, piece and staging limits), so the phone never has to
    know those limits; it sends what the box names.
    """

    TYPE: ClassVar[int] = 4
    tag: bytes
    payload: int = 0


@dataclass(frozen=True)
class Reject(Event):
    """Box → phone: the offered manifest is refused (a :class:`Reason`); the session ends
    (under protocol 2, a refusal in :data:`fwdist.protocol_v2.NEXT_OFFER` leaves it open).

    ``limit`` is the box's own figure for the limit the reason names (decoder RAM
    bytes, pieces it tracks, staging bytes, slot bytes; 0 for other reasons): what
    the payload needs is in the manifest the phone holds, what the box has is not.
    """

    TYPE: ClassVar[int] = 5
    reason: int
    limit: int = 0


@dataclass(frozen=True)
class Data(Event):
    """Phone → box: bytes of piece ``piece`` (or :data:`TABLE`) of release ``tag`` at ``offset``."""

    TYPE: ClassVar[int] = 6
    tag: bytes
    piece: int
    offset: int
    data: bytes


@dataclass(frozen=True)
class Ack(Event):
    """Box → phone: bytes of ``piece`` persisted so far (also sent to rewind a phone)."""

    TYPE: ClassVar[int] = 7
    tag: bytes
    piece: int
    offset: int


@dataclass(frozen=True)
class PieceComplete(Event):
    """Box → phone: ``piece`` (or the table) is whole and its SHA-256 matched."""

    TYPE: ClassVar[int] = 8
    tag: bytes
    piece: int


@dataclass(frozen=True)
class ReleaseComplete(Event):
    """Box → phone: every piece of the release is verified; the box will install it when idle."""

    TYPE: ClassVar[int] = 9
    tag: bytes


@dataclass(frozen=True)
class Installed(Event):
    """Box → phone: since the last session the box installed (or reverted) a release."""

    TYPE: ClassVar[int] = 10
    version: str
    ok: bool


@dataclass(frozen=True)
class Error(Event):
    """Either way: the sender ends the session because the protocol broke (:class:`ErrorCode`)."""

    TYPE: ClassVar[int] = 11
    code: int
    message: str


EVENT_TYPES: dict[int, type[Event]] = {
    cls.TYPE: cls
    for cls in (Hello, Status, Offer, Accept, Reject, Data, Ack, PieceComplete,
                ReleaseComplete, Installed, Error)
}

# --------------------------------------------------------------------------- encoding


_PACKER = msgpack.Packer(use_bin_type=True)  # one reused packer: packb() builds one per call


def _pack(obj: Any) -> bytes:
    return _PACKER.pack(obj)  # type: ignore[no-any-return]


_FIELDS: Mapping[type, tuple[str, ...]] = MappingProxyType(
    {cls: tuple(f.name for f in fields(cls)) for cls in EVENT_TYPES.values()})
"""Each frame type's fields in wire order, read once at import (and never changed after)."""


def _names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    return names if names is not None else tuple(f.name for f in fields(cls))


def _to_wire(event: Event) -> list[Any]:
    body: list[Any] = [event.TYPE]
    for name in _names(type(event)):
        value = getattr(event, name)
        if isinstance(value, Target):
            value = [value.tag, value.version, value.table_received, value.bitmap,
                     [list(p) for p in value.partials], value.payload]
        body.append(value)
    return body


def encode(event: Event, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """The frame bytes of ``event``; raise :class:`LocalProtocolError` if it breaks a rule."""
    if type(event) is Data:
        return encode_data(event.tag, event.piece, event.offset, event.data, max_frame)
    if type(event) is Ack or type(event) is PieceComplete:
        body = _progress_body(event)
        if body is not None:
            return _framed(body, type(event).__name__, max_frame)
    return _encode_generic(event, max_frame)


def _encode_generic(event: Event, max_frame: int) -> bytes:
    try:
        body = _pack(_to_wire(event))
        _check(event)
    except RemoteProtocolError as e:
        raise LocalProtocolError(f"refusing to send {type(event).__name__}: {e}", e.code) from None
    except (TypeError, ValueError, OverflowError) as e:
        raise LocalProtocolError(f"cannot encode {type(event).__name__}: {e}") from None
    frame = struct.pack(">H", len(body) + CRC_BYTES) + body + struct.pack(">I", zlib.crc32(body))
    if len(frame) > max_frame:
        raise LocalProtocolError(
            f"{type(event).__name__} frame is {len(frame)} bytes, over the {max_frame}-byte limit",
            ErrorCode.FRAME_TOO_LARGE,
        )
    return frame


# --------------------------------------------------------------------------- Data fast path
#
# Data frames are nearly every byte a session moves, so they get an encoder and a
# decoder of their own that build and read the canonical msgpack bytes directly
# (what ``msgpack.packb([6, tag, piece, offset, data])`` produces) instead of going
# through the generic list/dataclass/re-encode path. Both are exact: the encoder
# falls back to the generic path for any field the generic checks would refuse (so
# errors read the same), and the decoder accepts a body only if re-encoding the
# fields it read gives the same bytes back, otherwise it leaves the body to the
# generic decoder, which raises (or decodes) exactly as before.
# ``tests/unit/test_protocol.py`` holds the two paths to the same bytes and events.

_DATA_PREFIX = bytes((0x95, Data.TYPE, 0xC4, TAG_BYTES))  # fixarray(5), type, bin8(4): the tag
_SMALL_INTS = [bytes((i,)) for i in range(128)]  # positive fixints
_PACK_CRC = struct.Struct(">I").pack
_PACK_LEN = struct.Struct(">H").pack


def _uint(v: int) -> bytes:
    """msgpack's canonical bytes for an integer 0 <= v < 2**32 (or -1, a negative fixint)."""
    if v < 128:
        return b"\xff" if v == -1 else _SMALL_INTS[v]
    if v < 0x100:
        return bytes((0xCC, v))
    if v < 0x10000:
        return bytes((0xCD, v >> 8, v & 0xFF))
    return b"\xce" + v.to_bytes(4, "big")


def _data_body(tag: bytes, piece: int, offset: int, data: bytes) -> bytes:
    n = len(data)
    head = bytes((0xC4, n)) if n < 0x100 else bytes((0xC5, n >> 8, n & 0xFF))
    return b"".join((_DATA_PREFIX, tag, _uint(piece), _uint(offset), head, data))


def encode_data(tag: bytes, piece: int, offset: int, data: bytes,
                max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """``encode(Data(tag, piece, offset, data), max_frame)``, without building the event."""
    if not (type(tag) is bytes and len(tag) == TAG_BYTES and type(piece) is int
            and TABLE <= piece <= 0xFFFF and type(offset) is int and 0 <= offset <= MAX_OBJECT
            and type(data) is bytes and 0 < len(data) <= MAX_FRAME):
        return _encode_generic(Data(tag, piece, offset, data), max_frame)
    return _framed(_data_body(tag, piece, offset, data), "Data", max_frame)


def _framed(body: bytes, name: str, max_frame: int) -> bytes:
    size = HEADER_BYTES + len(body) + CRC_BYTES
    if size > max_frame:
        raise LocalProtocolError(
            f"{name} frame is {size} bytes, over the {max_frame}-byte limit",
            ErrorCode.FRAME_TOO_LARGE,
        )
    return b"".join((_PACK_LEN(len(body) + CRC_BYTES), body, _PACK_CRC(zlib.crc32(body))))


_ACK_PREFIX = bytes((0x94, Ack.TYPE, 0xC4, TAG_BYTES))
_PIECE_PREFIX = bytes((0x93, PieceComplete.TYPE, 0xC4, TAG_BYTES))


def _progress_body(event: Ack | PieceComplete) -> bytes | None:
    """The canonical body of a valid Ack or PieceComplete (the box's frequent answers), or None."""
    tag, piece = event.tag, event.piece
    if not (type(tag) is bytes and len(tag) == TAG_BYTES and type(piece) is int
            and TABLE <= piece <= 0xFFFF):
        return None
    if not isinstance(event, Ack):
        return b"".join((_PIECE_PREFIX, tag, _uint(piece)))
    offset = event.offset
    if not (type(offset) is int and 0 <= offset <= MAX_OBJECT):
        return None
    return b"".join((_ACK_PREFIX, tag, _uint(piece), _uint(offset)))


def _decode_progress(body: bytes) -> Ack | PieceComplete | None:
    """The Ack or PieceComplete of a canonical, valid body with its prefix, or None."""
    try:
        piece, pos = _read_uint(body, 8, TABLE, 0xFFFF)
        if piece < TABLE:
            return None
        if body[1] == PieceComplete.TYPE:
            return PieceComplete(body[4:8], piece) if pos == len(body) else None
        offset, pos = _read_uint(body, pos, 0, MAX_OBJECT)
    except IndexError:
        return None
    if offset < 0 or pos != len(body):
        return None
    return Ack(body[4:8], piece, offset)


def _read_uint(body: bytes, pos: int, lo: int, hi: int) -> tuple[int, int]:
    """(value, next position) of the canonical msgpack integer at ``pos`` if ``lo <= value <= hi``.

    Canonical means the shortest form: a positive fixint below 128, -1 as a negative
    fixint, uint8/16/32 only for values that need them. Anything else gives (lo - 1, pos).
    """
    b = body[pos]
    if b < 0x80:
        v, pos = b, pos + 1
    elif b == 0xFF:
        v, pos = -1, pos + 1
    elif b == 0xCC:
        v, pos = body[pos + 1], pos + 2
        if v < 0x80:
            return lo - 1, pos
    elif b == 0xCD:
        v, pos = int.from_bytes(body[pos + 1 : pos + 3], "big"), pos + 3
        if v < 0x100:
            return lo - 1, pos
    elif b == 0xCE:
        v, pos = int.from_bytes(body[pos + 1 : pos + 5], "big"), pos + 5
        if v < 0x10000:
            return lo - 1, pos
    else:
        return lo - 1, pos
    return (v, pos) if lo <= v <= hi else (lo - 1, pos)


def _decode_data(body: bytes) -> Data | None:
    """The Data event of a canonical, valid Data body, or None (then the generic path decides).

    The body starts with :data:`_DATA_PREFIX`; this reads the piece, the offset and
    the data's bin header in their shortest msgpack forms only, so a body it accepts
    is exactly ``_data_body`` of what it returns (a test holds it to that).
    """
    try:
        b = body[8]
        if b < 0x80:  # a positive fixint piece (most are): _read_uint's first case, inlined
            piece, pos = b, 9
        else:
            piece, pos = _read_uint(body, 8, TABLE, 0xFFFF)
            if piece < TABLE:
                return None
        b = body[pos]
        if b == 0xCD:  # a uint16 offset (most are): _read_uint's case, inlined
            offset, pos = body[pos + 1] << 8 | body[pos + 2], pos + 3
            if offset < 0x100:  # not the shortest form
                return None
        else:
            offset, pos = _read_uint(body, pos, 0, MAX_OBJECT)
            if offset < 0:
                return None
        b = body[pos]
        if b == 0xC4:
            n, pos = body[pos + 1], pos + 2
        elif b == 0xC5:
            n, pos = int.from_bytes(body[pos + 1 : pos + 3], "big"), pos + 3
            if n < 0x100:
                return None
        else:
            return None
    except IndexError:
        return None
    if n == 0 or pos + n != len(body):
        return None
    return Data(body[4:8], piece, offset, body[pos:])


def data_capacity(max_frame: int, tag: bytes, piece: int, offset: int) -> int:
    """How many data bytes fit in one :class:`Data` frame at this address (exact)."""
    return _capacity(max_frame, Data(tag, piece, offset, b"\x00"))


def offer_capacity(max_frame: int, total: int, offset: int) -> int:
    """How many manifest bytes fit in one :class:`Offer` frame at this offset (exact)."""
    return _capacity(max_frame, Offer(total, offset, b"\x00"))


def _capacity(max_frame: int, probe: Data | Offer) -> int:
    """Bytes of ``data`` a frame like ``probe`` (one data byte) holds within ``max_frame``."""
    room = max_frame - (len(encode(probe, MAX_FRAME)) - 1)
    # a bin's length header grows from 1 byte (< 256) to 2 bytes (< 65536)
    if room > 255:
        room -= 1
    return max(0, room)


# --------------------------------------------------------------------------- decoding


def _fail(message: str, code: ErrorCode = ErrorCode.MALFORMED) -> RemoteProtocolError:
    return RemoteProtocolError(message, code)


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise _fail(message)


def _is_int(v: Any, lo: int = 0, hi: int = _U32) -> bool:
    return type(v) is int and lo <= v <= hi


def _is_name(v: Any) -> bool:
    return type(v) is str and 0 < len(v) <= MAX_NAME


def _check(event: Event) -> None:
    """Field types and ranges of an event; raise :class:`RemoteProtocolError`."""
    if isinstance(event, Hello):
        _need(_is_int(event.version, 0, 255), "hello version out of range")
        # from version 2 on a phone may ask for frames as small as one BLE ATT write (20 bytes)
        low = MIN_FRAME if event.version < 2 else MIN_FRAME_V2
        _need(_is_int(event.max_frame, low, MAX_FRAME), "hello max frame out of range")
    elif isinstance(event, Status):
        _need(_is_int(event.version, 0, 255), "status version out of range")
        names = (event.product, event.hardware, event.running_version)
        _need(all(_is_name(n) for n in names), "status names malformed")
        _need(_is_int(event.running_counter), "status counter out of range")
        _need(type(event.running_sha256) is bytes and len(event.running_sha256) == SHA256_BYTES,
              "status image hash malformed")
        _need(_is_int(event.battery, 0, 100), "status battery out of range")
        _need(_is_int(event.state, 0, 255), "status state out of range")
        _need(_is_int(event.align, 1, 256), "status alignment out of range")
        _need(_is_int(event.max_frame, MIN_FRAME, MAX_FRAME), "status max frame out of range")
        t = event.target
        if t is not None:
            _need(isinstance(t, Target), "status target malformed")
            _need(type(t.tag) is bytes and len(t.tag) == TAG_BYTES, "status target tag malformed")
            _need(_is_name(t.version), "status target version malformed")
            _need(_is_int(t.table_received), "status table offset out of range")
            _need(type(t.bitmap) is bytes and len(t.bitmap) <= MAX_FRAME, "status bitmap malformed")
            _need(type(t.partials) is tuple and len(t.partials) <= MAX_PARTIALS,
                  "status partials malformed")
            for p in t.partials:
                _need(type(p) is tuple and len(p) == 2 and _is_int(p[0]) and _is_int(p[1]),
                      "status partial malformed")
            _need(_is_int(t.payload, 0, 255), "status target payload out of range")
    elif isinstance(event, Offer):
        _need(_is_int(event.total, 1, MAX_OBJECT) and _is_int(event.offset, 0, MAX_OBJECT - 1),
              "offer total/offset out of range")
        _need(type(event.data) is bytes and len(event.data) > 0, "offer data malformed")
        _need(event.offset + len(event.data) <= event.total, "offer chunk runs past the manifest")
    elif isinstance(event, Accept | PieceComplete | ReleaseComplete | Ack | Data):
        _need(type(event.tag) is bytes and len(event.tag) == TAG_BYTES, "release tag malformed")
        if isinstance(event, Accept):
            _need(_is_int(event.payload, 0, 255), "accept payload out of range")
        if isinstance(event, PieceComplete | Ack | Data):
            _need(_is_int(event.piece, TABLE, 0xFFFF), "piece index out of range")
        if isinstance(event, Ack | Data):
            _need(_is_int(event.offset, 0, MAX_OBJECT), "offset out of range")
        if isinstance(event, Data):
            _need(type(event.data) is bytes and len(event.data) > 0, "data frame carries no bytes")
    elif isinstance(event, Reject):
        _need(_is_int(event.reason, 0, 255), "reject reason out of range")
        _need(_is_int(event.limit), "reject limit out of range")
    elif isinstance(event, Installed):
        _need(_is_name(event.version) and type(event.ok) is bool, "installed frame malformed")
    elif isinstance(event, Error):
        _need(_is_int(event.code, 0, 255), "error code out of range")
        _need(type(event.message) is str and len(event.message) <= 200, "error message malformed")


def _from_wire(raw: Any) -> Event:
    _need(isinstance(raw, list) and len(raw) >= 1, "frame body must be an array [type, ...]")
    kind = raw[0]
    _need(type(kind) is int, "frame type must be an integer")
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise _fail(f"unknown frame type {kind}", ErrorCode.UNKNOWN_TYPE)
    names = _names(cls)
    values = raw[1:]
    _need(len(values) == len(names),
          f"{cls.__name__} frame needs {len(names)} fields, got {len(values)}")
    kwargs = dict(zip(names, values, strict=True))
    if cls is Status and kwargs["target"] is not None:
        t = kwargs["target"]
        _need(isinstance(t, list) and len(t) == 6 and isinstance(t[4], list),
              "status target malformed")
        _need(all(isinstance(p, list) for p in t[4]), "status partial malformed")
        kwargs["target"] = Target(t[0], t[1], t[2], t[3], tuple(tuple(p) for p in t[4]), t[5])
    try:
        event = cls(**kwargs)
    except TypeError:  # pragma: no cover - field names come from the class itself
        raise _fail(f"{cls.__name__} frame malformed") from None
    _check(event)
    return event


def decode_body(body: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> Event:
    """Decode one msgpack body (no length prefix, no CRC)."""
    if type(body) is bytes and len(body) <= max_frame:
        fast = _FAST_DECODERS.get(body[:4])
        if fast is not None and (event := fast(body)) is not None:
            return event
    return _decode_generic(body, max_frame)


_FAST_DECODERS: dict[bytes, Callable[[bytes], Event | None]] = {
    _DATA_PREFIX: _decode_data,
    _ACK_PREFIX: _decode_progress,
    _PIECE_PREFIX: _decode_progress,
}
"""Bodies whose first four bytes are these have a decoder of their own (the generic one decides
whatever it returns None for)."""


def _decode_generic(body: bytes, max_frame: int) -> Event:
    """Any body: msgpack with tight limits, exact fields, and canonical form (re-encoded)."""
    try:
        raw = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=max_frame,
            max_str_len=max_frame,
            max_array_len=16,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            UnicodeDecodeError, RecursionError) as e:
        raise _fail(f"frame body is not valid msgpack ({type(e).__name__})") from None
    event = _from_wire(raw)
    try:
        canonical = _pack(_to_wire(event))
    except (TypeError, ValueError, OverflowError):  # pragma: no cover - checked fields always pack
        raise _fail("frame body cannot be re-encoded") from None
    _need(canonical == body, "frame body is not in canonical form")
    return event


class FrameDecoder:
    """Turns a byte stream into events, one frame at a time, in bounded memory.

    ``feed`` buffers bytes; ``next_event`` returns the next whole event or None
    when more bytes are needed, and raises :class:`RemoteProtocolError` on any
    broken frame. A length prefix over ``max_frame`` is refused before its body
    is buffered, so the buffer never holds more than one maximum frame plus
    what was fed in one call.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not MIN_FRAME <= max_frame <= MAX_FRAME:
            raise LocalProtocolError(f"max frame must be {MIN_FRAME}..{MAX_FRAME}, got {max_frame}")
        self.max_frame = max_frame
        self._buf = bytearray()
        self.bytes_in = 0
        self.frames_in = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data
        self.bytes_in += len(data)

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet part of a decoded frame."""
        return len(self._buf)

    def drain(self) -> bytes:
        """Hand over the buffered bytes (a session that switches to version 2 after Hello)."""
        out = bytes(self._buf)
        self._buf.clear()
        return out

    def next_event(self) -> Event | None:
        buf = self._buf
        if len(buf) < HEADER_BYTES:
            return None
        length = buf[0] << 8 | buf[1]
        end = HEADER_BYTES + length
        if end > self.max_frame:
            raise _fail(f"frame length {end} is over the "
                        f"{self.max_frame}-byte maximum", ErrorCode.FRAME_TOO_LARGE)
        if length <= CRC_BYTES:
            raise _fail(f"frame length {length} is too short for a body and a CRC")
        if len(buf) < end:
            return None
        body = bytes(buf[HEADER_BYTES : end - CRC_BYTES])
        crc = int.from_bytes(buf[end - CRC_BYTES : end], "big")
        del buf[:end]
        if zlib.crc32(body) != crc:
            raise _fail("frame CRC does not match its body", ErrorCode.BAD_CRC)
        event = decode_body(body, self.max_frame)
        self.frames_in += 1
        return event

    def events(self) -> list[Event]:
        """Every whole event buffered now."""
        out = []
        while (ev := self.next_event()) is not None:
            out.append(ev)
        return out


def decode_frames(data: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> list[Event]:
    """Decode a byte string that must be whole frames (raises on a trailing partial frame)."""
    dec = FrameDecoder(max_frame)
    dec.feed(data)
    out = dec.events()
    if dec.pending:
        raise _fail(f"{dec.pending} trailing bytes are not a whole frame")
    return out
