"""The decoder contract: any bytes parse to events or raise the protocol error, nothing else.

The last two tests hold protocol's fast paths (the Data, Ack and PieceComplete
bodies' own encoders and decoders) to their generic twins byte for byte, so
they name those private twins on purpose: ``_FAST_DECODERS``, ``_decode_generic``
and ``_encode_generic``. The public surface cannot reach them apart.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwdist import protocol as p

TAG = b"\x01\x02\x03\x04"


def _fast_decode(body: bytes) -> p.Event | None:
    """What the body's own decoder makes of it (None: it has none, or it leaves it to generic)."""
    decode = p._FAST_DECODERS.get(body[:4])
    return decode(body) if decode is not None else None
VALID = [
    p.encode(p.Hello(1, 244)),
    p.encode(p.Status(1, "lockbox", "lb-r2", "1.0.0", 3, bytes(32), 87, 1, 8, 244,
                      p.Target(TAG, "1.1.0", 120, b"\xff\x01", ((3, 512),), 2))),
    p.encode(p.Accept(TAG, 1)),
    p.encode(p.Reject(int(p.Reason.NOT_ENOUGH_RAM))),
    p.encode(p.Offer(316, 0, b"m" * 100)),
    p.encode(p.Data(TAG, 3, 1024, b"d" * 180)),
    p.encode(p.Ack(TAG, 3, 2048)),
    p.encode(p.Error(3, "x")),
]


def _decode_all(data: bytes, max_frame: int) -> None:
    dec = p.FrameDecoder(max_frame)
    dec.feed(data)
    try:
        for ev in dec.events():
            assert isinstance(ev, p.Event)
            assert p.decode_frames(p.encode(ev, p.MAX_FRAME), p.MAX_FRAME) == [ev]
    except p.ProtocolError:
        pass
    assert dec.pending <= len(data)


@settings(max_examples=3000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.sampled_from([128, 244, 512, 4096]))
def test_any_bytes_parse_or_raise_protocol_error(data: bytes, max_frame: int) -> None:
    _decode_all(data, max_frame)


@settings(max_examples=3000, derandomize=True)
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)),
                                        max_size=4), st.integers(0, 300))
def test_mutated_valid_frames(frame: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(frame)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    _decode_all(bytes(data[: len(data) - cut % (len(data) + 1)]), 244)


@settings(max_examples=2000, derandomize=True)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.binary(max_size=40)
    | st.text(max_size=20) | st.floats(),
    lambda kids: st.lists(kids, max_size=6) | st.dictionaries(st.integers(0, 5), kids, max_size=3),
    max_leaves=20))
def test_any_msgpack_body_with_good_crc(obj: object) -> None:
    """Well-framed bodies with a valid CRC: any structure parses or raises the protocol error."""
    import struct
    import zlib

    import msgpack

    for head in ([], [1], [2], [6], [11]):
        try:
            body = msgpack.packb([*head, obj] if head else obj, use_bin_type=True)
        except (OverflowError, ValueError, TypeError):
            return
        frame = struct.pack(">H", len(body) + 4) + body + struct.pack(">I", zlib.crc32(body))
        _decode_all(frame, p.MAX_FRAME)


_INTS = st.sampled_from([-2, -1, 0, 1, 127, 128, 255, 256, 65535, 65536, 1 << 24, (1 << 24) + 1,
                         (1 << 32) - 1])


@settings(max_examples=3000, derandomize=True)
@given(_INTS | st.integers(-1, 1 << 25), _INTS | st.integers(0, 1 << 25),
       st.binary(min_size=0, max_size=300),
       st.sampled_from([None, "uint8", "uint16", "uint32", "bin16"]),
       st.lists(st.tuples(st.integers(4, 40), st.integers(0, 255)), max_size=3))
def test_data_fast_path_agrees_with_the_generic_decoder(
    piece: int, offset: int, data: bytes, widen: str | None, flips: list[tuple[int, int]]
) -> None:
    """The Data frames' own encoder and decoder give exactly what the generic path gives."""
    import msgpack

    body = bytearray(msgpack.packb([6, TAG, piece, offset, data], use_bin_type=True))
    if widen == "bin16" and len(data) < 256:  # the same data under a longer, non-canonical header
        at = len(body) - len(data) - 2
        body[at : at + 2] = b"\xc5" + len(data).to_bytes(2, "big")
    elif widen is not None and 0 <= offset < 1 << 16:  # the offset in a longer, non-canonical form
        off_bytes = msgpack.packb(offset)
        wide = {"uint8": b"\xcc" + bytes([offset % 256]),
                "uint16": b"\xcd" + offset.to_bytes(2, "big"),
                "uint32": b"\xce" + offset.to_bytes(4, "big")}[widen]
        at = 8 + len(msgpack.packb(piece))
        body[at : at + len(off_bytes)] = wide
    for pos, value in flips:
        if pos < len(body):
            body[pos] = value
    raw = bytes(body)
    fast = _fast_decode(raw)
    try:
        generic: p.Event | None = p._decode_generic(raw, p.MAX_FRAME)
    except p.RemoteProtocolError:
        generic = None
    if fast is not None:
        assert fast == generic
        assert isinstance(fast, p.Data)
        assert p.encode_data(fast.tag, fast.piece, fast.offset, fast.data, p.MAX_FRAME)[2:-4] == raw
    if isinstance(generic, p.Data):
        assert fast == generic
        assert p.encode(generic, p.MAX_FRAME)[2:-4] == raw
    try:
        p.encode(p.Data(TAG, piece, offset, data), p.MAX_FRAME)
        sendable = True
    except p.LocalProtocolError:
        sendable = False
    try:
        p._encode_generic(p.Data(TAG, piece, offset, data), p.MAX_FRAME)
        assert sendable
    except p.LocalProtocolError:
        assert not sendable


@settings(max_examples=2000, derandomize=True)
@given(st.sampled_from([7, 8]), _INTS | st.integers(-1, 1 << 17), _INTS | st.integers(0, 1 << 25),
       st.sampled_from([None, "uint8", "uint16", "uint32", "extra"]),
       st.lists(st.tuples(st.integers(4, 16), st.integers(0, 255)), max_size=2))
def test_ack_and_piece_complete_fast_paths_agree_with_the_generic_ones(
    kind: int, piece: int, offset: int, widen: str | None, flips: list[tuple[int, int]]
) -> None:
    """The box's frequent answers have their own encoder and decoder: same bytes, same events."""
    import msgpack

    fields = [kind, TAG, piece, offset] if kind == 7 else [kind, TAG, piece]
    body = bytearray(msgpack.packb(fields, use_bin_type=True))
    if widen == "extra":
        body += b"\x00"  # a trailing byte after the last field
    elif widen is not None and 0 <= piece < 1 << 16:  # the piece in a longer, non-canonical form
        wide = {"uint8": b"\xcc" + bytes([piece % 256]),
                "uint16": b"\xcd" + piece.to_bytes(2, "big"),
                "uint32": b"\xce" + piece.to_bytes(4, "big")}[widen]
        size = len(msgpack.packb(piece))
        body[8 : 8 + size] = wide
    for pos, value in flips:
        if pos < len(body):
            body[pos] = value
    raw = bytes(body)
    fast = _fast_decode(raw)
    try:
        generic: p.Event | None = p._decode_generic(raw, p.MAX_FRAME)
    except p.RemoteProtocolError:
        generic = None
    if fast is not None:
        assert fast == generic
    if isinstance(generic, p.Ack | p.PieceComplete):
        assert fast == generic
        assert p.encode(generic, p.MAX_FRAME)[2:-4] == raw
        assert p._encode_generic(generic, p.MAX_FRAME) == p.encode(generic, p.MAX_FRAME)
    event = p.Ack(TAG, piece, offset) if kind == 7 else p.PieceComplete(TAG, piece)
    try:
        fast_frame: bytes | None = p.encode(event, p.MAX_FRAME)
    except p.LocalProtocolError:
        fast_frame = None
    try:
        assert p._encode_generic(event, p.MAX_FRAME) == fast_frame
    except p.LocalProtocolError:
        assert fast_frame is None


# -- version 2 -------------------------------------------------------------------------------

from fwdist import protocol_v2 as v2  # noqa: E402

_SEEK = v2.encode(v2.Seek(TAG, 3, 1024), 244)
VALID_V2 = [
    v2.encode(v2.summarize(p.Status(2, "lockbox", "lb-r2", "1.0.0", 3, bytes(32), 87, 1, 8, 244,
                                    p.Target(TAG, "1.1.0", 120, b"\xff\x01", ((3, 512),), 2))),
              244),
    v2.encode(p.Accept(TAG, 1), 244),
    v2.encode(p.Reject(int(p.Reason.NOT_ENOUGH_RAM)), 244),
    v2.encode(p.Offer(316, 0, b"m" * 100), 244),
    _SEEK + v2.encode(p.Data(TAG, 3, 1024, b"d" * 180), 244, (3, 1024)),
    v2.encode(p.Ack(TAG, 3, 2048), 244),
    v2.encode(p.PieceComplete(TAG, -1), 244),
    v2.encode(p.Installed("1.1.0", True), 244),
    v2.encode(p.Error(3, "x"), 244),
    v2.encode(v2.TrustAsk(), 244),
    v2.encode(v2.TrustLink(b"\x93\x01" + b"r" * 200, False), 244),
    v2.encode(v2.TrustStamp(b"\x93\x02" + b"t" * 120), 244),
    v2.encode(v2.TrustAnswer(int(p.Reason.BAD_ROOT), 3, 1_700_000_000, None, True), 244),
]


def _decode_all_v2(data: bytes, max_frame: int, tag: bytes | None) -> None:
    dec = v2.FrameDecoder(max_frame, tag)
    dec.feed(data)
    try:
        while (ev := dec.next_event()) is not None:
            assert isinstance(ev, p.Event)
            if not isinstance(ev, p.Data):  # (a chunk's frame depends on its stream)
                again = v2.FrameDecoder(p.MAX_FRAME, tag)
                again.feed(v2.encode(ev, p.MAX_FRAME))
                assert again.events() == [ev]
    except p.RemoteProtocolError:
        pass
    assert dec.pending <= len(data)


@settings(max_examples=3000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.sampled_from([20, 128, 244, 4096]), st.sampled_from([None, TAG]))
def test_v2_any_bytes_parse_or_raise_protocol_error(data: bytes, max_frame: int,
                                                    tag: bytes | None) -> None:
    _decode_all_v2(data, max_frame, tag)


@settings(max_examples=3000, derandomize=True)
@given(st.sampled_from(VALID_V2), st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)),
                                           max_size=4), st.integers(0, 300))
def test_v2_mutated_valid_frames(frame: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(frame)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    _decode_all_v2(bytes(data[: len(data) - cut % (len(data) + 1)]), 244, TAG)


@settings(max_examples=2000, derandomize=True)
@given(st.integers(2, 13), st.binary(max_size=80))
def test_v2_any_body_with_a_good_check(kind: int, body: bytes) -> None:
    """Well-framed bodies whose check is right: any body parses or raises the protocol error."""
    frame = (kind << 12 | len(body)).to_bytes(2, "big") + body
    seed = v2._position(3, 1024) if kind == v2.T_DATA else b""
    _decode_all_v2(_SEEK * (kind == v2.T_DATA) + frame + v2._check_word(seed, frame), 244, TAG)


_U32 = st.integers(0, (1 << 32) - 1)
_OPT = st.none() | st.integers(0, (1 << 32) - 2)


@settings(max_examples=1000, derandomize=True)
@given(st.one_of(
    st.just(v2.TrustAsk()),
    st.builds(v2.TrustLink, st.binary(min_size=1, max_size=3072), st.booleans()),
    st.builds(v2.TrustStamp, st.binary(min_size=1, max_size=3072)),
    st.builds(v2.TrustAnswer, st.integers(0, 255), _OPT, _U32, _OPT, st.booleans())),
    st.sampled_from([20, 244, 4096]))
def test_v2_trust_frames_round_trip_at_every_frame_size(ev: p.Event, max_frame: int) -> None:
    """Every trust frame fits any session (up to its 3,077 bytes) and decodes to itself."""
    frame = v2.encode(ev, max_frame)
    assert len(frame) <= v2.TRUST_FRAME
    dec = v2.FrameDecoder(max_frame)
    dec.feed(frame)
    assert dec.events() == [ev]
