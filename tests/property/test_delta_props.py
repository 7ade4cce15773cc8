"""Property tests for fwdist.delta: every encoder round-trips; the decoder parses or refuses."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwdist import delta
from fwdist.delta import PIECE, DeltaError, _bsdiff3, encode, encode_with
from tests.delta_helpers import apply_into, bsdiff_layout, run

ENCODER_NAMES = sorted(delta.ENCODERS)
TAGS = sorted({encode_with(name, b"", b"")[0] for name in ENCODER_NAMES})

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


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
    pieces = run(encoder, old, payload, len(new))
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
        apply_into(pieces, encoder, old, payload, new_size)
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


LEGAL_PROPS = [(pb * 5 + lp) * 9 + lc for lc in range(5) for lp in range(5) for pb in range(5)]
LEGAL_PROPS = [p for p in LEGAL_PROPS if p % 9 + p // 9 % 5 <= 4]


@st.composite
def lzma2_chunk(draw: st.DrawFn, props: int) -> bytes:
    """One well-framed LZMA2 chunk with arbitrary contents (stored, or LZMA with any resets)."""
    if draw(st.booleans()):
        data = draw(st.binary(min_size=1, max_size=48))
        control = draw(st.sampled_from([1, 2]))
        return bytes([control]) + (len(data) - 1).to_bytes(2, "big") + data
    control = draw(st.sampled_from([0x80, 0xA0, 0xC0, 0xE0])) | draw(st.integers(0, 1))
    unpacked = draw(st.integers(0, 400))
    packed = draw(st.binary(min_size=1, max_size=48))
    own = draw(st.sampled_from([props, props, draw(st.integers(0, 255))]))
    head = bytes([control]) + unpacked.to_bytes(2, "big") + (len(packed) - 1).to_bytes(2, "big")
    return head + (bytes([own]) if control >= 0xC0 else b"") + packed


@st.composite
def framed_lzma_payloads(draw: st.DrawFn) -> tuple[bytes, int]:
    """(payload, its new size): bsdiff-lzma payloads with a valid header and framing around
    arbitrary LZMA data.

    Random bytes rarely get past the header and the chunk walk; these reach
    liblzma itself, whose every complaint must come out as DeltaError.
    """
    coders: list[tuple[int, int]] = []
    bodies: list[bytes] = []
    for _ in range(5):
        props = draw(st.sampled_from(LEGAL_PROPS))
        chunks = draw(st.lists(lzma2_chunk(props), max_size=3))
        if chunks:
            coders.append((props, draw(st.integers(12, 16))))
        else:
            coders.append((0, 0))
        bodies.append(b"".join(chunks))
    new_size = draw(st.integers(0, 300))
    return bsdiff_layout(0x31, new_size, bytes(b for c in coders for b in c), bodies), new_size


@SETTINGS
@given(framed=framed_lzma_payloads(), old=st.binary(max_size=64))
def test_framed_lzma_payloads_parse_or_raise_delta_error(
    framed: tuple[bytes, int], old: bytes
) -> None:
    payload, new_size = framed
    _contract("bsdiff-lzma", old, payload, new_size)
    _contract("bsdiff-lzma", old, payload, new_size + 1)


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


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"\0", b"\0" * 3, b"\0" * 4, b"\0" * 9, b"\x01", b"\xff\x02"]), max_size=40
    )
)
def test_zero_runs_fast_path_is_its_bytewise_twin(parts: list[bytes]) -> None:
    """The ``re`` fast path of the zero-run coder makes the bytewise records, byte for byte."""
    diff = b"".join(parts)
    assert _bsdiff3.zero_runs(diff) == _bsdiff3.zero_runs_bytewise(diff)
