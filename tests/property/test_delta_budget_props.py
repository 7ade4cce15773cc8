"""Property tests for the small-RAM back ends: budgets hold, the zero-run codec round-trips, and
framed payloads of the three-stream formats parse or raise DeltaError."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fwdist.delta import DeltaError, _bsdiff3, decode_ram, encode
from fwdist.delta._core import IO_BUFFER, Reader
from tests.delta_helpers import run, uv
from tests.property.test_delta_props import (
    LEGAL_PROPS,
    SETTINGS,
    _contract,
    lzma2_chunk,
    pairs,
)


@SETTINGS
@given(pair=pairs, budget=st.sampled_from([1024, 2048, 4096, 8192, 16384, 32768]))
def test_budgeted_encode_fits_and_round_trips(pair: tuple[bytes, bytes], budget: int) -> None:
    old, new = pair
    try:
        d = encode(old, new, max_ram=budget)
    except DeltaError as exc:
        assert f"within {budget} bytes" in str(exc)
        # three 256-byte heatshrink windows with their buffers and the replay's: 2,128 bytes
        assert budget <= 2048
        return
    assert decode_ram(d.encoder, d.data) <= budget
    pieces = run(d.encoder, old, d.data, len(new))
    assert b"".join(pieces) == new
    if d.encoder.startswith("bsdiff3"):
        assert all(len(p) <= IO_BUFFER for p in pieces)


class _Bytes(Reader):
    def __init__(self, data: bytes) -> None:
        super().__init__("diff")
        self._data = data

    def _pull(self, size: int) -> bytes:
        out, self._data = self._data[:size], self._data[size:]
        return out


@SETTINGS
@given(
    diff=st.lists(
        st.one_of(st.binary(max_size=20), st.integers(1, 400).map(bytes)), max_size=12
    ).map(b"".join)
)
def test_zero_runs_round_trip(diff: bytes) -> None:
    coded = _bsdiff3.zero_runs(diff)
    decoded = _bsdiff3.ZeroRunReader(_Bytes(coded))
    assert decoded.take(len(diff)) == diff
    decoded.finish()


@st.composite
def framed_bsdiff3(draw: st.DrawFn) -> tuple[bytes, int]:
    """(payload, new size): a valid bsdiff3-lzma or -heatshrink header around arbitrary streams.

    Random bytes rarely get past the header; these reach liblzma, heatshrink,
    the zero-run records and the replay.
    """
    lzma_format = draw(st.booleans())
    coders = b""
    bodies: list[bytes] = []
    for _ in range(3):
        if lzma_format:
            props = draw(st.sampled_from(LEGAL_PROPS))
            chunks = draw(st.lists(lzma2_chunk(props), max_size=3))
            coders += bytes([props]) + uv(draw(st.integers(1, 9000))) if chunks else b"\xff"
            bodies.append(b"".join(chunks))
        else:
            body = draw(st.binary(max_size=60))
            w = draw(st.integers(4, 14))
            coders += bytes([w << 4 | draw(st.integers(3, w - 1))]) if body else b"\x00"
            bodies.append(body)
    new_size = draw(st.integers(0, 300))
    flags = draw(st.sampled_from([0, _bsdiff3.ZERO_RUNS]))
    head = bytes([0x41 if lzma_format else 0x51]) + uv(new_size) + bytes([flags]) + coders
    payload = head + uv(len(bodies[0])) + uv(len(bodies[1])) + b"".join(bodies)
    return payload, new_size


@SETTINGS
@given(framed=framed_bsdiff3(), old=st.binary(max_size=64))
def test_framed_bsdiff3_payloads_parse_or_raise_delta_error(
    framed: tuple[bytes, int], old: bytes
) -> None:
    payload, new_size = framed
    name = "bsdiff3-lzma" if payload[0] == 0x41 else "bsdiff3-heatshrink"
    _contract(name, old, payload, new_size)
    _contract(name, old, payload, new_size + 1)
