"""Property tests for fwdist.delta: every encoder round-trips; the decoder parses or refuses."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwdist import delta
from fwdist.delta import PIECE, DeltaError, apply, encode, encode_with

ENCODER_NAMES = sorted(delta.ENCODERS)
TAGS = sorted({encode_with(name, b"", b"")[0] for name in ENCODER_NAMES})

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def reader(data: bytes) -> Callable[[int, int], bytes]:
    def read(offset: int, size: int) -> bytes:
        assert offset >= 0 and offset + size <= len(data), (offset, size, len(data))
        return data[offset : offset + size]

    return read


@st.composite
def edited(draw: st.DrawFn, old: bytes) -> bytes:
    """``old`` with a few insertions, deletions and overwrites: related images."""
    new = bytearray(old)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(new)))
        kind = draw(st.sampled_from(["insert", "delete", "overwrite"]))
        chunk = draw(st.binary(max_size=40))
        if kind == "insert":
            new[at:at] = chunk
        elif kind == "delete":
            del new[at : at + len(chunk)]
        else:
            new[at : at + len(chunk)] = chunk
    return bytes(new)


pairs = st.one_of(
    st.tuples(st.binary(max_size=600), st.binary(max_size=600)),
    st.binary(max_size=600).flatmap(lambda old: st.tuples(st.just(old), edited(old))),
)


@SETTINGS
@given(pair=pairs, encoder=st.sampled_from(ENCODER_NAMES))
def test_round_trip(pair: tuple[bytes, bytes], encoder: str) -> None:
    old, new = pair
    payload = encode_with(encoder, old, new)
    pieces: list[bytes] = []
    apply(
        encoder,
        reader(old),
        len(old),
        reader(payload),
        len(payload),
        pieces.append,
        new_size=len(new),
    )
    assert b"".join(pieces) == new
    assert all(0 < len(p) <= PIECE for p in pieces)


@SETTINGS
@given(pair=pairs)
def test_encode_is_the_minimum(pair: tuple[bytes, bytes]) -> None:
    old, new = pair
    chosen = encode(old, new)
    assert len(chosen.data) == min(len(encode_with(n, old, new)) for n in ENCODER_NAMES)


def _contract(encoder: str, old: bytes, payload: bytes, new_size: int) -> None:
    """Either an image of exactly new_size bytes, or DeltaError after at most new_size."""
    pieces: list[bytes] = []
    try:
        apply(
            encoder,
            reader(old),
            len(old),
            reader(payload),
            len(payload),
            pieces.append,
            new_size=new_size,
        )
    except DeltaError as exc:
        assert "\n" not in str(exc)
        assert sum(map(len, pieces)) <= new_size
    else:
        assert sum(map(len, pieces)) == new_size
    assert all(len(p) <= PIECE for p in pieces)


@SETTINGS
@given(
    encoder=st.sampled_from(ENCODER_NAMES),
    payload=st.one_of(
        st.binary(max_size=200),
        st.tuples(st.sampled_from(TAGS), st.binary(max_size=200)).map(
            lambda t: bytes([t[0]]) + t[1]
        ),
    ),
    old=st.binary(max_size=64),
    new_size=st.integers(0, 300),
)
def test_any_bytes_parse_or_raise_delta_error(
    encoder: str, payload: bytes, old: bytes, new_size: int
) -> None:
    _contract(encoder, old, payload, new_size)


@SETTINGS
@given(
    pair=pairs,
    encoder=st.sampled_from(ENCODER_NAMES),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 10**6),
)
def test_damaged_payloads_parse_or_raise_delta_error(
    pair: tuple[bytes, bytes], encoder: str, edits: list[tuple[int, int]], cut: int
) -> None:
    old, new = pair
    payload = bytearray(encode_with(encoder, old, new))
    for pos, value in edits:
        payload[pos % len(payload)] = value
    _contract(encoder, old, bytes(payload), len(new))
    _contract(encoder, old, bytes(payload[: cut % (len(payload) + 1)]), len(new))
