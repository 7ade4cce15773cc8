"""The decoder contract: any bytes parse to events or raise the protocol error, nothing else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwdist import protocol as p

TAG = b"\x01\x02\x03\x04"
VALID = [
    p.encode(p.Hello(1, 244)),
    p.encode(p.Status(1, "lockbox", "lb-r2", "1.0.0", 3, bytes(32), 87, 1, 8, 244,
                      p.Target(TAG, "1.1.0", 120, b"\xff\x01", ((3, 512),)))),
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
