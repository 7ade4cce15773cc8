"""Protocol version 2: the lean wire. Every byte that is not payload is counted and cut.

Version 1 (:mod:`fwdist.protocol`) wraps every frame in a u16 length, a msgpack
array and a CRC-32, and names release, piece and offset in every data frame:
20 bytes around 224 of data. Version 2 keeps the same events (the box's and the
phone's session tables do not change) and writes them in a fixed binary form::

    u16 big-endian (type << 12 | n) | body: n bytes | u16 check

4 bytes of framing on every frame, whatever its size (n < 4096). What the link
needs from them, and why each byte is there:

- **the length** lets a byte stream (TCP, an L2CAP credit-based channel, GATT
  writes reassembled) be cut back into frames, and a frame torn by a walk-away
  is never acted on: the box acts on whole frames only;
- **the type** (the high 4 bits, 2..12) says how to read the body; a version-1
  frame starts with 0x00..0x0f (its length is at most 4094), so the first byte
  of any answer tells the phone which version the box speaks;
- **the check** is CRC-16/XMODEM (``binascii.crc_hqx``, init 0) over the header
  and the body; for a data chunk it also covers the chunk's implied position
  (piece and offset, which the chunk does not carry), so a decoder that got out
  of step with its sender (a lost, repeated or misaligned frame) refuses the
  very next chunk instead of writing bytes to the wrong place and finding out
  at the piece's SHA-256 16 KiB later. The SHA-256 per piece (in the signed
  piece table) is what guarantees integrity; the check only guards alignment.

Data no longer names its place: a :class:`Seek` (tag, piece, offset) opens a
stream and the :class:`~fwdist.protocol.Data` chunks that follow continue it, so
the decoder turns each chunk back into the same ``Data(tag, piece, offset,
data)`` event version 1 carries and the box's receiver is the same for both.
Progress frames (Ack, PieceComplete, ReleaseComplete) drop the tag: the box
only reports on its target, which the session has named; the phone's decoder
puts its own tag back (:attr:`FrameDecoder.tag`).

The box's answer to Hello is a :class:`Summary` instead of version 1's Status:
the same facts with the long ones cut to what the phone compares (4 bytes of
SHA-256 of product and hardware, 8 bytes of the running image's hash) and the
target's picture summarised (the leading run of whole 0xff bitmap bytes as a
count, the rest with trailing zero bytes cut), so a session that resumes a
known target costs about 60 bytes of set-up both ways.

Integers in bodies are unsigned LEB128 in their shortest form (1 byte below
128); pieces are written as ``piece + 1`` so the table (-1) is 0. Decoding is
strict and canonical, as version 1's: any bytes either decode or raise
:class:`~fwdist.protocol.RemoteProtocolError`.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
from dataclasses import dataclass, replace

from fwdist import leb128, report, trust
from fwdist import protocol as p

VERSION = 2
MIN_FRAME = p.MIN_FRAME_V2
HEAD_BYTES = 2
CHECK_BYTES = 2
OVERHEAD = HEAD_BYTES + CHECK_BYTES
MAX_BODY = 0xFFF
CONTROL_FRAME = p.MIN_FRAME
"""Frames other than data chunks may be up to this size even on a smaller link: the link
layer carries them over several writes (L2CAP segmentation), once per session or less."""
ACK_EVERY = 4096
"""A version-2 box acknowledges at least this many persisted bytes at a time (7-byte Acks:
0.17 %). Acks only tell the phone what counted; the box persists every chunk before it counts
and a new session resumes from the Summary, so rarer Acks lose nothing on a walk-away."""
NEXT_OFFER = frozenset({p.Reason.TOO_MANY_PIECES, p.Reason.NOT_ENOUGH_RAM,
                        p.Reason.NO_STAGING_ROOM, p.Reason.UNKNOWN_ENCODER, p.Reason.WRONG_BASE})
"""Refusals of one format 2 manifest that say nothing against the release, only that this
payload does not fit this box: the box stays ready, and the phone offers its next payload
(the full image last) in the same session."""
IDENTITY_BYTES = 4
IMAGE_BYTES = 8
_MAX_VARINT = 5  # 2**35 > every value here (u32 at most)

# frame types (the high nibble of the first byte); 0 and 1 are never used, so a
# version-1 frame (first byte 0x00..0x0f) is never a version-2 one
T_STATUS = 2
T_OFFER = 3
T_ACCEPT = 4
T_REJECT = 5
T_DATA = 6
T_ACK = 7
T_PIECE = 8
T_RELEASE = 9
T_INSTALLED = 10
T_ERROR = 11
T_SEEK = 12
T_TRUST = 13
T_REPORT = 14


def speaks_v2(first_byte: int) -> bool:
    """Whether a frame starting with this byte is a version-2 frame (else version 1)."""
    return first_byte >> 4 >= T_STATUS


def frame_size(head: bytes | memoryview) -> int:
    """The whole size of the frame whose first two bytes are ``head``, of either version.

    (A phone's stream starts with version 1's Hello and goes on in the version the box
    answered in; each frame's first byte says which it is.)
    """
    if speaks_v2(head[0]):
        return OVERHEAD + ((head[0] & 0x0F) << 8 | head[1])
    return p.HEADER_BYTES + (head[0] << 8 | head[1])


def identity(product: str, hardware: str) -> bytes:
    """The 4 bytes a Summary names a box's product and hardware by."""
    return hashlib.sha256(f"{product}\x00{hardware}".encode()).digest()[:IDENTITY_BYTES]


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Seek(p.Event):
    """Phone → box: the chunks that follow are piece ``piece`` of release ``tag`` from ``offset``.

    Never reaches the session tables: the decoder keeps it as its cursor and
    hands out each following chunk as a ``Data`` event at its implied offset.
    """

    TYPE = T_SEEK
    tag: bytes
    piece: int
    offset: int


@dataclass(frozen=True)
class Summary(p.Event):
    """Box → phone, the answer to a version-2 Hello: version 1's Status, summarised.

    ``identity`` is :func:`identity` of product and hardware, ``running_image``
    the first 8 bytes of the running image's SHA-256: the phone only compares
    them with its manifest (a collision costs one Offer the box then refuses).
    ``target`` carries the whole picture (:class:`~fwdist.protocol.Target`); its
    bitmap is normalised (trailing zero bytes dropped), which ``has`` reads alike.
    """

    TYPE = T_STATUS
    version: int
    identity: bytes
    running_version: str
    running_counter: int
    running_image: bytes
    battery: int
    state: int
    align: int
    max_frame: int
    target: p.Target | None = None

    def is_for(self, product: str, hardware: str) -> bool:
        return self.identity == identity(product, hardware)

    def runs(self, image_sha256: bytes) -> bool:
        return self.running_image == image_sha256[:IMAGE_BYTES]


@dataclass(frozen=True)
class BoxReport(p.Event):
    """Box → phone: the box's signed report (:mod:`fwdist.report`), for the phone to carry home.

    Version 1 has no such frame: a box in the field with version-1 firmware reports nothing.
    """

    TYPE = T_REPORT
    wire: bytes


class TrustKind(enum.IntEnum):
    """The first byte of a TRUST frame's body: which of the four trust frames it is."""

    ASK = 1  # phone -> box: what root, time and timestamp do you hold?
    LINK = 2  # phone -> box: a root link; more links of the same chain follow
    LAST_LINK = 3  # phone -> box: the last root link of a chain: judge the chain now
    TIMESTAMP = 4  # phone -> box: a signed timestamp
    ANSWER = 5  # box -> phone: the verdict on the last ASK / chain / timestamp, and what it holds


CHAIN_RAM = 8192
"""The most root-link bytes a box buffers in one chain (19 links of a 2-of-3 root). A longer
chain is refused (CHAIN_TOO_LONG) and forgotten; a phone sends a longer catch-up as several
chains, each under this, which the box judges one after the other."""


@dataclass(frozen=True)
class TrustAsk(p.Event):
    """Phone → box: the box answers with a :class:`TrustAnswer` of what it holds.

    Sent only by a phone that carries root links or a timestamp, so sessions of
    phones without them cost not a byte more (the Summary stays as it was).
    """

    TYPE = T_TRUST


@dataclass(frozen=True)
class TrustLink(p.Event):
    """Phone → box: one root link (:func:`fwdist.trust.encode_root` bytes) of a chain.

    The box buffers links until ``last`` and then takes the chain whole or not at
    all (TUF: only the chain's last root must be unexpired), answering once.
    """

    TYPE = T_TRUST
    wire: bytes
    last: bool = True


@dataclass(frozen=True)
class TrustStamp(p.Event):
    """Phone → box: a signed timestamp (:func:`fwdist.trust.encode_timestamp` bytes)."""

    TYPE = T_TRUST
    wire: bytes


@dataclass(frozen=True)
class TrustAnswer(p.Event):
    """Box → phone: ``reason`` 0 (accepted) or a :class:`~fwdist.protocol.Reason`, and what
    the box holds after it: its root's version, its proven time, its timestamp's version
    (None: it holds no root / no timestamp). ``dropped``: the box just dropped its target
    (revoked, or signed by a key the new root removed), so the Summary's target is gone."""

    TYPE = T_TRUST
    reason: int
    root_version: int | None
    time: int
    timestamp_version: int | None
    dropped: bool = False


TRUST_EVENTS = (TrustAsk, TrustLink, TrustStamp, TrustAnswer)


def summarize(st: p.Status, version: int = VERSION) -> Summary:
    """The Summary a box sends for this Status."""
    t = st.target
    if t is not None:
        t = replace(t, bitmap=t.bitmap.rstrip(b"\x00"))
    return Summary(version, identity(st.product, st.hardware), st.running_version,
                   st.running_counter, st.running_sha256[:IMAGE_BYTES], st.battery, st.state,
                   st.align, st.max_frame, t)


# --------------------------------------------------------------------------- LEB128


def _str(s: str) -> bytes:
    raw = s.encode()
    return leb128.encode(len(raw)) + raw


class _Reader:
    """Reads a body strictly: shortest LEB128, exact lengths, nothing left over."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pos = 0

    def varint(self, hi: int = (1 << 32) - 1) -> int:
        v = shift = 0
        for i in range(_MAX_VARINT):
            if self.pos >= len(self.body):
                raise p.RemoteProtocolError("frame body ends inside an integer")
            b = self.body[self.pos]
            self.pos += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b == 0 and i:
                    raise p.RemoteProtocolError("integer not in its shortest form")
                if v > hi:
                    raise p.RemoteProtocolError(f"integer {v} is over {hi}")
                return v
        raise p.RemoteProtocolError("integer longer than 5 bytes")

    def u8(self) -> int:
        return self.take(1)[0]

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.body):
            raise p.RemoteProtocolError("frame body too short")
        out = self.body[self.pos : self.pos + n]
        self.pos += n
        return out

    def text(self, limit: int) -> str:
        raw = self.take(self.varint(limit * 4))
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise p.RemoteProtocolError("text is not UTF-8") from None

    def piece(self) -> int:
        return self.varint(0x10000) - 1

    def rest(self) -> bytes:
        out = self.body[self.pos :]
        self.pos = len(self.body)
        return out

    def end(self) -> None:
        if self.pos != len(self.body):
            raise p.RemoteProtocolError(f"{len(self.body) - self.pos} bytes after the fields")


# --------------------------------------------------------------------------- bodies


def _target_body(t: p.Target) -> bytes:
    bits = t.bitmap.rstrip(b"\x00")
    full = len(bits) - len(bits.lstrip(b"\xff"))
    rest = bits[full:]
    parts = [t.tag, _str(t.version), bytes((t.payload,)), leb128.encode(t.table_received),
             leb128.encode(full), leb128.encode(len(rest)), rest, bytes((len(t.partials),))]
    parts += [leb128.encode(piece + 1) + leb128.encode(off) for piece, off in t.partials]
    return b"".join(parts)


def _read_target(r: _Reader) -> p.Target:
    tag = r.take(p.TAG_BYTES)
    version = r.text(p.MAX_NAME)
    payload = r.u8()
    table_received = r.varint()
    full = r.varint(p.MAX_FRAME)
    rest = r.take(r.varint(p.MAX_FRAME))
    if rest[:1] == b"\xff" or rest[-1:] == b"\x00":
        raise p.RemoteProtocolError("target bitmap not in its shortest form")
    n = r.u8()
    if n > p.MAX_PARTIALS:
        raise p.RemoteProtocolError("status partials malformed")
    partials = tuple((r.piece(), r.varint()) for _ in range(n))
    if any(piece < 0 for piece, _ in partials):
        raise p.RemoteProtocolError("status partial malformed")
    return p.Target(tag, version, table_received, b"\xff" * full + rest, partials, payload)


def _body(ev: p.Event) -> bytes:
    """The body of one event (checked by :func:`encode` first)."""
    if isinstance(ev, Summary):
        head = [bytes((ev.version,)), ev.identity, _str(ev.running_version),
                leb128.encode(ev.running_counter), ev.running_image,
                bytes((ev.battery, ev.state, ev.align - 1)), leb128.encode(ev.max_frame)]
        tail = b"\x00" if ev.target is None else b"\x01" + _target_body(ev.target)
        return b"".join(head) + tail
    if isinstance(ev, p.Offer):
        return leb128.encode(ev.total) + leb128.encode(ev.offset) + ev.data
    if isinstance(ev, p.Accept):
        return ev.tag + bytes((ev.payload,))
    if isinstance(ev, p.Reject):
        return bytes((ev.reason,)) + leb128.encode(ev.limit)
    if isinstance(ev, p.Data):
        return ev.data
    if isinstance(ev, Seek):
        return ev.tag + leb128.encode(ev.piece + 1) + leb128.encode(ev.offset)
    if isinstance(ev, p.Ack):
        return leb128.encode(ev.piece + 1) + leb128.encode(ev.offset)
    if isinstance(ev, p.PieceComplete):
        return leb128.encode(ev.piece + 1)
    if isinstance(ev, p.ReleaseComplete):
        return b""
    if isinstance(ev, p.Installed):
        return bytes((ev.ok,)) + _str(ev.version)
    if isinstance(ev, p.Error):
        return bytes((ev.code,)) + ev.message.encode()
    if isinstance(ev, BoxReport):
        return ev.wire
    if isinstance(ev, TrustAsk):
        return bytes((TrustKind.ASK,))
    if isinstance(ev, TrustLink):
        return bytes((TrustKind.LAST_LINK if ev.last else TrustKind.LINK,)) + ev.wire
    if isinstance(ev, TrustStamp):
        return bytes((TrustKind.TIMESTAMP,)) + ev.wire
    if isinstance(ev, TrustAnswer):
        return b"".join((bytes((TrustKind.ANSWER, ev.reason, ev.dropped)),
                         leb128.encode(_opt(ev.root_version)), leb128.encode(ev.time),
                         leb128.encode(_opt(ev.timestamp_version))))
    raise p.LocalProtocolError(f"{type(ev).__name__} has no version-2 form")


_TYPES: dict[type, int] = {
    Summary: T_STATUS, p.Offer: T_OFFER, p.Accept: T_ACCEPT, p.Reject: T_REJECT,
    p.Data: T_DATA, Seek: T_SEEK, p.Ack: T_ACK, p.PieceComplete: T_PIECE,
    p.ReleaseComplete: T_RELEASE, p.Installed: T_INSTALLED, p.Error: T_ERROR,
    BoxReport: T_REPORT, **{cls: T_TRUST for cls in TRUST_EVENTS},
}
_KINDS = frozenset(_TYPES.values())


def _opt(v: int | None) -> int:
    """An optional count as one varint: None is 0, n is n + 1."""
    return 0 if v is None else v + 1


_U32 = (1 << 32) - 1


def _check_trust(ev: p.Event) -> None:
    if isinstance(ev, TrustLink | TrustStamp):
        ok = (type(ev.wire) is bytes and 0 < len(ev.wire) <= trust.MAX_META_BYTES
              and (isinstance(ev, TrustStamp) or type(ev.last) is bool))
    elif isinstance(ev, TrustAnswer):
        ok = (p._is_int(ev.reason, 0, 255) and type(ev.dropped) is bool
              and p._is_int(ev.time, 0, _U32)
              and all(v is None or p._is_int(v, 0, _U32 - 1)
                      for v in (ev.root_version, ev.timestamp_version)))
    else:
        ok = True
    if not ok:
        raise p.RemoteProtocolError("trust frame fields malformed")


def _check_event(ev: p.Event) -> None:
    """Field types and ranges (raise RemoteProtocolError), version 1's rules plus Summary's."""
    if isinstance(ev, Summary):
        ok = (type(ev.identity) is bytes and len(ev.identity) == IDENTITY_BYTES
              and type(ev.running_image) is bytes and len(ev.running_image) == IMAGE_BYTES
              and p._is_int(ev.version, 0, 255) and p._is_int(ev.max_frame, MIN_FRAME, p.MAX_FRAME))
        if not ok:
            raise p.RemoteProtocolError("summary fields malformed")
        p._check(p.Status(1, "x", "x", ev.running_version, ev.running_counter, bytes(32),
                          ev.battery, ev.state, ev.align, p.MIN_FRAME, ev.target))
        if ev.target is not None and ev.target.bitmap[-1:] == b"\x00":
            raise p.RemoteProtocolError("target bitmap not in its shortest form")
    elif isinstance(ev, Seek):
        p._check(p.Ack(ev.tag, ev.piece, ev.offset))
    elif isinstance(ev, p.Error):
        p._check(ev)
        if len(ev.message.encode()) > 200:
            raise p.RemoteProtocolError("error message malformed")
    elif isinstance(ev, TRUST_EVENTS):
        _check_trust(ev)
    elif isinstance(ev, BoxReport):
        try:
            report.decode(ev.wire)
        except report.ReportError as e:
            raise p.RemoteProtocolError(str(e)) from None
    else:
        p._check(ev)


def _check_word(seed: bytes, frame: bytes) -> bytes:
    return binascii.crc_hqx(seed + frame, 0).to_bytes(CHECK_BYTES, "big")


def _position(piece: int, offset: int) -> bytes:
    """What a chunk's check covers besides its bytes: where it belongs."""
    return (piece + 1).to_bytes(2, "big") + offset.to_bytes(4, "big")


REPORT_FRAME = OVERHEAD + report.MAX_REPORT_BYTES
"""A report frame may be this large on any link (its signature alone is 64 bytes); like
other control frames it crosses a small link in several writes, once or twice a session."""


TRUST_FRAME = OVERHEAD + 1 + trust.MAX_META_BYTES
"""A trust frame may be this large on any link: a root link or a timestamp whole (a 2-of-3
root is 423 B), so the box checks it from one buffer of at most this many bytes."""


def limit(max_frame: int, kind: int) -> int:
    """The largest frame of ``kind`` a session of this frame size carries."""
    if kind == T_DATA:
        return max_frame
    big = {T_REPORT: REPORT_FRAME, T_TRUST: TRUST_FRAME}.get(kind, CONTROL_FRAME)
    return max(max_frame, big)


def encode(ev: p.Event, max_frame: int, position: tuple[int, int] | None = None) -> bytes:
    """The version-2 frame of ``ev``; a chunk (``Data``) needs the ``(piece, offset)`` it continues.

    Raises :class:`~fwdist.protocol.LocalProtocolError` for an event that breaks a rule.
    """
    kind = _TYPES.get(type(ev))
    if kind is None:
        raise p.LocalProtocolError(f"{type(ev).__name__} has no version-2 form")
    try:
        _check_event(ev)
    except p.RemoteProtocolError as e:
        raise p.LocalProtocolError(f"refusing to send {type(ev).__name__}: {e}", e.code) from None
    body = _body(ev)
    size = OVERHEAD + len(body)
    if len(body) > MAX_BODY or size > limit(max_frame, kind):
        raise p.LocalProtocolError(f"{type(ev).__name__} frame is {size} bytes, over the "
                                   f"{limit(max_frame, kind)}-byte limit",
                                   p.ErrorCode.FRAME_TOO_LARGE)
    frame = (kind << 12 | len(body)).to_bytes(HEAD_BYTES, "big") + body
    seed = b""
    if kind == T_DATA:
        if position is None:
            raise p.LocalProtocolError("a chunk needs the position it continues")
        seed = _position(*position)
    return frame + _check_word(seed, frame)


def fit_error(ev: p.Error, max_frame: int) -> p.Error:
    """``ev`` with its message cut (on a character boundary) to fit one frame of this size."""
    room = limit(max_frame, T_ERROR) - OVERHEAD - 1
    msg = ev.message
    while len(msg.encode()) > room:
        msg = msg[:-1]
    return p.Error(ev.code, msg)


def offer_capacity(max_frame: int, total: int, offset: int) -> int:
    """Manifest bytes one Offer frame carries at this offset."""
    varints = len(leb128.encode(total)) + len(leb128.encode(offset))
    return limit(max_frame, T_OFFER) - OVERHEAD - varints


def data_capacity(max_frame: int) -> int:
    """Data bytes one chunk carries at this frame size (the same at every offset)."""
    return min(max_frame, MAX_BODY + OVERHEAD) - OVERHEAD


# --------------------------------------------------------------------------- decoding


def _decode_body(kind: int, body: bytes, tag: bytes | None) -> p.Event:
    r = _Reader(body)
    ev: p.Event
    if kind == T_STATUS:
        version = r.u8()
        ident = r.take(IDENTITY_BYTES)
        running = r.text(p.MAX_NAME)
        counter = r.varint()
        image = r.take(IMAGE_BYTES)
        battery, state, align = r.take(3)
        max_frame = r.varint(p.MAX_FRAME)
        has = r.u8()
        if has > 1:
            raise p.RemoteProtocolError("summary target flag malformed")
        target = _read_target(r) if has else None
        ev = Summary(version, ident, running, counter, image, battery, state, align + 1,
                     max_frame, target)
    elif kind == T_OFFER:
        ev = p.Offer(r.varint(), r.varint(), r.rest())
    elif kind == T_ACCEPT:
        ev = p.Accept(r.take(p.TAG_BYTES), r.u8())
    elif kind == T_REJECT:
        ev = p.Reject(r.u8(), r.varint())
    elif kind == T_SEEK:
        ev = Seek(r.take(p.TAG_BYTES), r.piece(), r.varint())
    elif kind in (T_ACK, T_PIECE, T_RELEASE):
        if tag is None:
            raise p.RemoteProtocolError("progress before the session named a release",
                                        p.ErrorCode.UNEXPECTED)
        if kind == T_ACK:
            ev = p.Ack(tag, r.piece(), r.varint())
        elif kind == T_PIECE:
            ev = p.PieceComplete(tag, r.piece())
        else:
            ev = p.ReleaseComplete(tag)
    elif kind == T_INSTALLED:
        ok = r.u8()
        if ok > 1:
            raise p.RemoteProtocolError("installed frame malformed")
        ev = p.Installed(r.text(p.MAX_NAME), bool(ok))
    elif kind == T_REPORT:
        ev = BoxReport(r.rest())
    elif kind == T_TRUST:
        ev = _read_trust(r)
    elif kind == T_ERROR:
        code = r.u8()
        try:
            ev = p.Error(code, r.rest().decode())
        except UnicodeDecodeError:
            raise p.RemoteProtocolError("error message is not UTF-8") from None
    else:
        raise p.RemoteProtocolError(f"unknown frame type {kind}", p.ErrorCode.UNKNOWN_TYPE)
    r.end()
    _check_event(ev)
    return ev


def _read_trust(r: _Reader) -> p.Event:
    kind = r.u8()
    if kind == TrustKind.ASK:
        return TrustAsk()
    if kind in (TrustKind.LINK, TrustKind.LAST_LINK):
        return TrustLink(r.rest(), kind == TrustKind.LAST_LINK)
    if kind == TrustKind.TIMESTAMP:
        return TrustStamp(r.rest())
    if kind == TrustKind.ANSWER:
        reason, dropped = r.u8(), r.u8()
        if dropped > 1:
            raise p.RemoteProtocolError("trust answer flag malformed")
        root, time, stamp = r.varint(), r.varint(), r.varint()
        return TrustAnswer(reason, root - 1 if root else None, time,
                           stamp - 1 if stamp else None, bool(dropped))
    raise p.RemoteProtocolError(f"unknown trust frame kind {kind}", p.ErrorCode.UNKNOWN_TYPE)


class FrameDecoder:
    """Version-2 frames from a byte stream, in bounded memory; h11's contract as version 1's.

    A box's decoder keeps the :class:`Seek` cursor and returns each chunk as a
    ``Data`` event at its implied offset; a phone's sets :attr:`tag` to its
    release so progress frames come back whole. ``next_event`` returns None
    until a whole frame is buffered and raises
    :class:`~fwdist.protocol.RemoteProtocolError` on any broken one; a frame over
    the session's limit is refused from its header, before its body is buffered.
    """

    def __init__(self, max_frame: int, tag: bytes | None = None) -> None:
        if not MIN_FRAME <= max_frame <= p.MAX_FRAME:
            raise p.LocalProtocolError(f"max frame must be {MIN_FRAME}..{p.MAX_FRAME}")
        self.max_frame = max_frame
        self.tag = tag
        self._cursor: tuple[bytes, int, int] | None = None  # (tag, piece, offset) of the stream
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        return len(self._buf)

    def next_event(self) -> p.Event | None:
        while True:
            buf = self._buf
            if len(buf) < HEAD_BYTES:
                return None
            kind, n = buf[0] >> 4, (buf[0] & 0x0F) << 8 | buf[1]
            end = HEAD_BYTES + n + CHECK_BYTES
            if kind not in _KINDS:
                raise p.RemoteProtocolError(f"unknown frame type {kind}", p.ErrorCode.UNKNOWN_TYPE)
            if end > limit(self.max_frame, kind):
                raise p.RemoteProtocolError(f"frame of {end} bytes is over the "
                                            f"{limit(self.max_frame, kind)}-byte limit",
                                            p.ErrorCode.FRAME_TOO_LARGE)
            if len(buf) < end:
                return None
            frame = bytes(buf[: end - CHECK_BYTES])
            check = bytes(buf[end - CHECK_BYTES : end])
            del buf[:end]
            if kind == T_DATA:
                return self._chunk(frame, check)
            if _check_word(b"", frame) != check:
                raise p.RemoteProtocolError("frame check does not match", p.ErrorCode.BAD_CRC)
            ev = _decode_body(kind, frame[HEAD_BYTES:], self.tag)
            if isinstance(ev, Seek):
                self._cursor = (ev.tag, ev.piece, ev.offset)
                continue  # the cursor is all a Seek is
            return ev

    def _chunk(self, frame: bytes, check: bytes) -> p.Data:
        if self._cursor is None:
            raise p.RemoteProtocolError("a data chunk before any seek", p.ErrorCode.UNEXPECTED)
        tag, piece, offset = self._cursor
        if _check_word(_position(piece, offset), frame) != check:
            raise p.RemoteProtocolError(f"chunk check does not match piece {piece} at {offset}",
                                        p.ErrorCode.BAD_CRC)
        data = frame[HEAD_BYTES:]
        if not data or offset + len(data) > p.MAX_OBJECT:
            raise p.RemoteProtocolError("data chunk empty or past the largest object",
                                        p.ErrorCode.BAD_OFFSET)
        self._cursor = (tag, piece, offset + len(data))
        return p.Data(tag, piece, offset, data)

    def events(self) -> list[p.Event]:
        out = []
        while (ev := self.next_event()) is not None:
            out.append(ev)
        return out
