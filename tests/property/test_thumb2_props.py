"""The Thumb-2 filter's numpy fast paths, held byte for byte to their bytewise twins.

The fast paths hand inputs shorter than ``NUMPY_MIN`` to the twins, so the
tests lower it to 0: every example then runs the numpy code.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdist.delta import _thumb2

# bytes that make BL first and second halfwords (0xF0-0xF7 / 0xD0, 0xF8, 0xFF high bytes),
# pointer-looking words near 0 and 0x23000, and anything else
_BYTE = st.one_of(
    st.sampled_from([0xF0, 0xF7, 0xD0, 0xE8, 0xF8, 0xFF, 0x00, 0x02, 0x30]), st.integers(0, 255)
)
_IMAGE = st.lists(_BYTE, max_size=96).map(bytes)


@pytest.fixture(autouse=True, scope="module")
def _numpy_always() -> Iterator[None]:
    """Every input takes the numpy path in this module; the threshold is put back after."""
    saved = _thumb2.NUMPY_MIN
    setattr(_thumb2, "NUMPY_MIN", 0)  # noqa: B010 - a Final constant, patched for the module
    yield
    setattr(_thumb2, "NUMPY_MIN", saved)  # noqa: B010


@st.composite
def _maps(draw: st.DrawFn) -> _thumb2.AddressMap:
    old_size = draw(st.integers(1, 1 << 20))
    starts = sorted(draw(st.sets(st.integers(0, old_size - 1), max_size=6)))
    deltas = [draw(st.integers(-(1 << 16), 1 << 16)) for _ in starts]
    return _thumb2.AddressMap(tuple(starts), tuple(deltas), old_size)


@settings(max_examples=400, deadline=None)
@given(
    _IMAGE,
    st.integers(0, 1 << 20),
    _maps(),
    st.one_of(st.none(), st.sampled_from([0, 0x23000]), st.integers(0, (1 << 32) - 1)),
)
def test_predict_fast_path_is_its_bytewise_twin(
    window: bytes, at: int, amap: _thumb2.AddressMap, base: int | None
) -> None:
    assert _thumb2.predict(window, at, amap, base, amap.old_size) == _thumb2.predict_bytewise(
        window, at, amap, base, amap.old_size
    )


@settings(max_examples=400, deadline=None)
@given(_IMAGE, st.lists(st.integers(0, 96), max_size=4), st.booleans())
def test_bl_codec_fast_path_is_its_bytewise_twin(
    image: bytes, cuts: list[int], decode: bool
) -> None:
    """Chunk by chunk, the numpy feed settles the same bytes and holds back the same tail."""
    fast, slow = _thumb2.BlCodec(decode=decode), _thumb2.BlCodec(decode=decode)
    pos = 0
    for cut in [*sorted(min(c, len(image)) for c in cuts), len(image)]:
        assert fast.feed(image[pos:cut]) == slow.feed_bytewise(image[pos:cut])
        pos = cut
    assert fast.flush() == slow.flush()
    assert _thumb2.absolute(image) == _thumb2.absolute_bytewise(image)
