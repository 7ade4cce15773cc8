"""Frames round-trip exactly, fit the link, and broken frames raise the protocol error."""

from __future__ import annotations

import struct
import zlib

import msgpack
import pytest

from fwdist import protocol as p

TAG = b"\x01\x02\x03\x04"
SHA = bytes(range(32))

EXAMPLES: list[tuple[p.Event, int]] = [
    (p.Hello(1, 244), 11),
    (p.Status(1, "lockbox", "lb-r2", "1.0.0", 3, SHA, 87, 1, 8, 244,
              p.Target(TAG, "1.1.0", 120, b"\xff\x01", ((3, 512), (5, 16)))), 97),
    (p.Status(1, "lockbox", "lb-r2", "1.0.0", 0, SHA, 100, 0, 8, 244, None), 70),
    (p.Offer(316, 180, b"m" * 136), 151),
    (p.Accept(TAG), 15),
    (p.Reject(int(p.Reason.NOT_NEWER)), 10),
    (p.Reject(int(p.Reason.NOT_ENOUGH_RAM), 32768), 12),
    (p.Data(TAG, p.TABLE, 0, b"t" * 42), 60),
    (p.Data(TAG, 7, 65536, b"d" * 200), 222),
    (p.Ack(TAG, 7, 2048), 18),
    (p.PieceComplete(TAG, 7), 15),
    (p.ReleaseComplete(TAG), 14),
    (p.Installed("1.1.0", True), 15),
    (p.Error(int(p.ErrorCode.BAD_CRC), "frame CRC does not match"), 34),
]


@pytest.mark.parametrize(("event", "size"), EXAMPLES, ids=[type(e).__name__ for e, _ in EXAMPLES])
def test_round_trip_and_exact_size(event: p.Event, size: int) -> None:
    frame = p.encode(event)
    assert len(frame) == size
    assert p.decode_frames(frame) == [event]
    assert struct.unpack(">H", frame[:2])[0] == len(frame) - 2
    assert struct.unpack(">I", frame[-4:])[0] == zlib.crc32(frame[2:-4])


def test_every_frame_type_has_an_example() -> None:
    assert {type(e) for e, _ in EXAMPLES} == set(p.EVENT_TYPES.values())


def test_stream_decoding_byte_by_byte() -> None:
    frames = b"".join(p.encode(e) for e, _ in EXAMPLES)
    dec = p.FrameDecoder()
    got = []
    for b in frames:
        dec.feed(bytes([b]))
        got.extend(dec.events())
    assert got == [e for e, _ in EXAMPLES] and dec.pending == 0


def test_data_capacity_is_exact() -> None:
    for max_frame in (128, 244, 512, 4096):
        for offset in (0, 100, 70000):
            n = p.data_capacity(max_frame, TAG, 3, offset)
            assert len(p.encode(p.Data(TAG, 3, offset, b"x" * n), max_frame)) == max_frame
            with pytest.raises(p.LocalProtocolError):
                p.encode(p.Data(TAG, 3, offset, b"x" * (n + 1)), max_frame)
    # the per-frame cost of a data frame at the default size: 18 bytes, 226 of payload
    assert p.data_capacity(244, TAG, 3, 100) == 226


def test_offer_capacity_is_exact() -> None:
    rooms = []
    total = 1 << 20
    for max_frame in (128, 244, 512, 4096):
        for offset in (0, 200, 70_000):
            n = p.offer_capacity(max_frame, total, offset)
            assert len(p.encode(p.Offer(total, offset, b"m" * n), max_frame)) == max_frame
            with pytest.raises(p.LocalProtocolError, match="over the"):
                p.encode(p.Offer(total, offset, b"m" * (n + 1)), max_frame)
            rooms.append(n)
    # 16 bytes of frame around the data at offset 0 (2 length, 4 CRC, 10 of body), one more for
    # a uint8 offset, four more for a uint32 one; one more again for a bin16 header past 255
    assert rooms == [112, 111, 108, 228, 227, 224, 495, 494, 491, 4079, 4078, 4075]


def _frame(body: bytes) -> bytes:
    return struct.pack(">H", len(body) + 4) + body + struct.pack(">I", zlib.crc32(body))


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("data", "code"), [
    (struct.pack(">H", 60000) + b"x" * 10, p.ErrorCode.FRAME_TOO_LARGE),
    (struct.pack(">H", 243), p.ErrorCode.FRAME_TOO_LARGE),
    (struct.pack(">H", 3) + b"abc", p.ErrorCode.MALFORMED),
    (_frame(_pack([99, 1])), p.ErrorCode.UNKNOWN_TYPE),
    (_frame(_pack([1, "1", 244])), p.ErrorCode.MALFORMED),  # wrong type
    (_frame(_pack([1, True, 244])), p.ErrorCode.MALFORMED),  # bool is not an int
    (_frame(_pack([1, 1, 244, 5])), p.ErrorCode.MALFORMED),  # extra field
    (_frame(_pack([1, 1, 32])), p.ErrorCode.MALFORMED),  # max frame below the minimum
    (_frame(_pack([6, b"abc", 0, 0, b"x"])), p.ErrorCode.MALFORMED),  # short tag
    (_frame(_pack([6, TAG, -2, 0, b"x"])), p.ErrorCode.MALFORMED),  # piece index below TABLE
    (_frame(_pack([6, TAG, 0, 0, b""])), p.ErrorCode.MALFORMED),  # empty data
    (_frame(_pack([3, 10, 8, b"abc"])), p.ErrorCode.MALFORMED),  # offer past its total
    (_frame(_pack({1: 2})), p.ErrorCode.MALFORMED),
    (_frame(b"\xc1"), p.ErrorCode.MALFORMED),  # never-used msgpack byte
    (_frame(_pack([1, 1, 244]) + b"\x00"), p.ErrorCode.MALFORMED),  # trailing data
    (_frame(b"\x93\xd0\x01\x01\xcc\xf4"), p.ErrorCode.MALFORMED),  # not canonical (int8 for 1)
    (p.encode(p.Hello(1, 244))[:-1] + b"\x00", p.ErrorCode.BAD_CRC),
])
def test_broken_frames_raise_the_protocol_error(data: bytes, code: p.ErrorCode) -> None:
    dec = p.FrameDecoder()
    dec.feed(data)
    with pytest.raises(p.RemoteProtocolError) as e:
        dec.next_event()
    assert e.value.code == code


def test_oversized_prefix_is_refused_before_buffering_the_body() -> None:
    dec = p.FrameDecoder(244)
    dec.feed(struct.pack(">H", 5000))
    with pytest.raises(p.RemoteProtocolError):
        dec.next_event()


def test_truncated_stream_is_not_a_frame() -> None:
    frame = p.encode(p.Hello(1, 244))
    with pytest.raises(p.RemoteProtocolError, match="trailing"):
        p.decode_frames(frame[:-1])


def test_sending_bad_frames_is_our_error() -> None:
    with pytest.raises(p.LocalProtocolError):
        p.encode(p.Hello(1, 10))
    with pytest.raises(p.LocalProtocolError, match="over the 244-byte"):
        p.encode(p.Offer(1000, 0, b"x" * 400))
    assert issubclass(p.LocalProtocolError, p.ProtocolError)
    assert not issubclass(p.LocalProtocolError, p.RemoteProtocolError)


def test_release_tag() -> None:
    assert p.release_tag(b"manifest") == bytes.fromhex("05b3abf2")
    assert len(p.release_tag(b"x")) == 4 and p.release_tag(b"x") != p.release_tag(b"y")
