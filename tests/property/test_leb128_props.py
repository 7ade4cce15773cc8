"""LEB128: one encoding per value, and any bytes either decode or raise Leb128Error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdist import leb128


@given(st.integers(min_value=0, max_value=(1 << 35) - 1))
def test_every_value_decodes_back_from_its_shortest_form(value: int) -> None:
    wire = leb128.encode(value)
    assert len(wire) == max(1, (value.bit_length() + 6) // 7)
    assert leb128.decode(wire + b"\xff") == (value, len(wire))


@settings(max_examples=500)
@given(st.binary(max_size=8), st.integers(min_value=1, max_value=6))
def test_any_bytes_decode_to_their_one_encoding_or_raise(data: bytes, max_bytes: int) -> None:
    try:
        value, end = leb128.decode(data, 0, max_bytes=max_bytes)
    except leb128.Leb128Error:
        return
    assert data[:end] == leb128.encode(value)
    assert end <= max_bytes


@pytest.mark.parametrize(("wire", "why"), [
    (b"", "data ends inside a varint"),
    (b"\x80", "data ends inside a varint"),
    (b"\x80\x00", "varint not in its shortest form"),
    (b"\xff\xff\xff\xff\xff\x01", "varint longer than 5 bytes"),
])
def test_what_no_writer_makes_is_refused(wire: bytes, why: str) -> None:
    with pytest.raises(leb128.Leb128Error, match=why):
        leb128.decode(wire)


def test_known_encodings() -> None:
    assert [leb128.encode(v).hex() for v in (0, 127, 128, 300, 16384)] == [
        "00", "7f", "8001", "ac02", "808001"]
    with pytest.raises(ValueError, match="unsigned"):
        leb128.encode(-1)
