"""The Thumb-2 transform: exact encodings, a bijection on any bytes, and old-side prediction."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwdist import delta
from fwdist.delta import DeltaError, InstructionSet, encode, encode_with
from fwdist.delta._filtered import _Header
from fwdist.delta._thumb2 import WINDOW_MARGIN, AddressMap, BlCodec, absolute, predict, relative
from tests.delta_helpers import run

SETTINGS = settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

NO_MAP = AddressMap((), (), 0)


def hw(*halfwords: int) -> bytes:
    return b"".join(h.to_bytes(2, "little") for h in halfwords)


# Hand-assembled (GNU as, Thumb-2), halfwords in instruction order:
BL_SELF = (0xF7FF, 0xFFFE)  # bl .          (offset -4: S=1, I1=I2=1, imm10=0x3FF, imm11=0x7FE)
BL_PLUS_0x1000 = (0xF000, 0xFFFE)  # bl .+0x1000 (offset 0xFFC: S=0, J1=J2=1, imm11=0x7FE)
B_W_SELF = (0xF7FF, 0xBFFE)  # b.w .        (T4: hw2 = 10 J1 1 J2 imm11)
BEQ_W_SELF = (0xF43F, 0xAFFE)  # beq.w .      (T3: cond 0000, imm6=0x3F, hw2 = 10 J1 0 J2 imm11)
LDR_LIT = (0x4801,)  # ldr r0, [pc, #4]     (T1)
LDR_W_LIT = (0xF8DF, 0x0004)  # ldr.w r0, [pc, #4]   (T2)
ADR = (0xA001,)  # adr r0, .+4 (add r0, pc, #4, T1)
ADDW_PC = (0xF20F, 0x0004)  # addw r0, pc, #4 (ADR T3)


def test_bl_becomes_its_absolute_target() -> None:
    # bl . at 0x100 targets 0x100: halfword 0x80, S=I1=I2=0 so J1=J2=1 -> f000 f880
    image = bytes(0x100) + hw(*BL_SELF)
    assert absolute(image)[0x100:] == hw(0xF000, 0xF880)
    # bl .+0x1000 at 0x100 targets 0x1100: halfword 0x880 = imm10 1, imm11 0x080
    image = bytes(0x100) + hw(*BL_PLUS_0x1000)
    assert absolute(image)[0x100:] == hw(0xF001, 0xF880)
    # two calls to one function from different places: one absolute encoding
    a = bytes(0x100) + hw(*BL_PLUS_0x1000) + bytes(0x1C) + hw(0xF000, 0xFFEE)  # bl .+0xFE0
    out = absolute(a)
    assert out[0x100:0x104] == out[0x120:0x124] == hw(0xF001, 0xF880)
    assert relative(out) == a


@pytest.mark.parametrize("instr", [B_W_SELF, BEQ_W_SELF, LDR_LIT, LDR_W_LIT, ADR, ADDW_PC], ids=str)
def test_other_branches_and_pc_relative_loads_stay(instr: tuple[int, ...]) -> None:
    """Relative inside a function is what survives a move (measured: see _thumb2's docstring)."""
    image = bytes(0x40) + hw(*instr) + bytes(8)
    assert absolute(image) == image
    assert relative(image) == image


def test_a_bl_split_across_chunks_and_a_tail_of_one_to_three_bytes() -> None:
    image = bytes(6) + hw(*BL_SELF) + b"\xf0"
    codec = BlCodec(decode=False)
    out = b"".join(codec.feed(image[i : i + 1]) for i in range(len(image))) + codec.flush()
    assert out == bytes(6) + hw(0xF000, 0xF803) + b"\xf0"


thumbish = st.lists(
    st.one_of(
        st.integers(0, 0xFFFF),
        st.integers(0xF000, 0xF7FF),  # a first halfword of BL/B.W/B<cond>.W
        st.integers(0xD000, 0xFFFF),  # a possible BL second halfword
    ),
    max_size=300,
).map(lambda hws: hw(*hws))
images = st.one_of(
    thumbish,
    st.tuples(st.binary(max_size=3), thumbish).map(lambda t: t[0] + t[1]),  # odd alignment
    st.binary(max_size=600),
)


@SETTINGS
@given(image=images, cuts=st.lists(st.integers(0, 700), max_size=6))
def test_codec_is_a_bijection_in_any_chunks(image: bytes, cuts: list[int]) -> None:
    edges = [0, *sorted(c % (len(image) + 1) for c in cuts), len(image)]
    for decode, whole in ((False, absolute(image)), (True, relative(image))):
        codec = BlCodec(decode=decode)
        out = b"".join(codec.feed(image[a:b]) for a, b in itertools.pairwise(edges))
        assert out + codec.flush() == whole
        assert len(whole) == len(image)
    assert relative(absolute(image)) == image
    assert absolute(relative(image)) == image


@SETTINGS
@given(
    image=images,
    off=st.integers(0, 600),
    n=st.integers(0, 600),
    deltas=st.lists(st.integers(-5000, 5000), max_size=4),
    base=st.sampled_from([None, 0, 0x23000]),
)
def test_prediction_over_a_margin_window_is_the_whole_images(
    image: bytes, off: int, n: int, deltas: list[int], base: int | None
) -> None:
    """The box predicts old piece by piece; it must see what the stager saw whole."""
    size = len(image)
    off = off % (size + 1)
    n = n % (size - off + 1)
    starts = sorted({i * size // (len(deltas) + 1) for i in range(len(deltas))} - {size})
    amap = AddressMap(tuple(starts), tuple(deltas[: len(starts)]), size)
    whole = predict(image, 0, amap, base, size)
    lo = max(0, off - WINDOW_MARGIN) & ~3
    hi = min(size, off + n + WINDOW_MARGIN)
    part = predict(image[lo:hi], lo, amap, base, size)[off - lo : off - lo + n]
    assert part == whole[off : off + n]


def test_prediction_moves_calls_and_pointers_with_their_target() -> None:
    # old: a call at 0x10 to a function at 0x200, a pool word pointing at it (thumb bit set)
    old = bytearray(0x400)
    old[0x10:0x14] = hw(0xF000, 0xF8F6)  # bl .+0x1F0 -> 0x200
    old[0x20:0x24] = (0x23201).to_bytes(4, "little")  # linked at 0x23000
    # new: 0x40 bytes inserted before the function (map: from 0x100 on, +0x40)
    amap = AddressMap((0x100,), (0x40,), len(old))
    got = predict(bytes(old), 0, amap, 0x23000, len(old))
    new = bytearray(old)
    new[0x10:0x14] = hw(0xF000, 0xF916)  # bl .+0x230 -> 0x240
    new[0x20:0x24] = (0x23241).to_bytes(4, "little")
    assert got[0x10:0x14] == absolute(bytes(new))[0x10:0x14] == hw(0xF000, 0xF920)
    assert got[0x20:0x24] == new[0x20:0x24]
    assert got[0x24:] == old[0x24:] and got[:0x10] == old[:0x10]
    # pointers outside the image (ROM, peripherals) and without a base are left alone
    rom = bytes(old[:0x20]) + (0x800000).to_bytes(4, "little") + bytes(old[0x24:])
    assert predict(rom, 0, amap, 0x23000, len(old))[0x20:0x24] == rom[0x20:0x24]
    assert predict(bytes(old), 0, amap, None, len(old))[0x20:0x24] == old[0x20:0x24]


def test_address_map_refuses_what_a_payload_must_not_declare() -> None:
    with pytest.raises(DeltaError, match="out of order"):
        AddressMap((5, 5), (1, 2), 100)
    with pytest.raises(DeltaError, match="out of order or past old"):
        AddressMap((100,), (1,), 100)
    with pytest.raises(DeltaError, match="32 bits"):
        AddressMap((1,), (1 << 31,), 100)
    assert AddressMap((10,), (4,), 100)(9) == 9
    assert AddressMap((10,), (4,), 100)(10) == 14
    assert AddressMap((10,), (4,), 100)(100) == 100


def _thumb_pair(seed: int) -> tuple[bytes, bytes]:
    """A seeded toy firmware: functions calling each other, one grows in the new release."""
    rng = random.Random(seed)
    bodies = [
        bytes(rng.randrange(0, 0xE0) for _ in range(2 * rng.randrange(40, 120))) for _ in range(24)
    ]
    calls = [[rng.randrange(24) for _ in range(4)] for _ in range(24)]

    def build(grow: int) -> bytes:
        sizes = [len(b) + 16 + (grow if i == 3 else 0) for i, b in enumerate(bodies)]
        starts = [sum(sizes[:i]) for i in range(24)]
        out = bytearray()
        for i, body in enumerate(bodies):
            for callee in calls[i]:
                at = len(out)
                off = ((starts[callee] - (at + 4)) >> 1) & 0xFFFFFF
                s = off >> 23
                j1 = 1 ^ ((off >> 22) & 1) ^ s
                j2 = 1 ^ ((off >> 21) & 1) ^ s
                out += hw(
                    0xF000 | s << 10 | (off >> 11) & 0x3FF,
                    0xD000 | j1 << 13 | j2 << 11 | off & 0x7FF,
                )
            out += body + bytes(grow if i == 3 else 0)
        return bytes(out)

    return build(0), build(64)


def test_filtered_payload_round_trips_and_wins_on_thumb_code() -> None:
    old, new = _thumb_pair(7)
    sizes = {n: len(encode_with(n, old, new)) for n in ("bsdiff-lzma", "bsdiff-lzma+thumb2")}
    assert sizes["bsdiff-lzma+thumb2"] < sizes["bsdiff-lzma"]
    chosen = encode(old, new, arch=InstructionSet.THUMB2)
    assert chosen.encoder.endswith("+thumb2")
    assert b"".join(run(chosen.encoder, old, chosen.data, len(new))) == new
    assert not encode(old, new).encoder.endswith("+thumb2")


def test_filtered_decode_ram_is_inner_plus_map() -> None:
    old, new = _thumb_pair(7)
    payload = encode_with("bsdiff-lzma+thumb2", old, new)
    head = _Header(payload[:64])
    inner = payload[head.size :]
    assert payload[0] == 0x61 and inner[0] == 0x31
    assert delta.decode_ram("bsdiff-lzma+thumb2", payload[:64]) == (
        delta.decode_ram("bsdiff-lzma", inner[:64]) + 16 + 8 * head.entries
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x61", "truncated"),
        (b"\x61\x02\x00\x00", "reserved bits"),
        (b"\x61\x00\x81\x08\x00", "more than 1024"),
        (b"\x61\x00\x00\x00", "no inner payload"),
        (b"\x61\x00\x01\x02\x31\x80\x80", "truncated"),  # a map varint that never ends
        (b"\x61\x00\x01\x02\x31\x20\x00", "past old"),  # a map entry beyond old's 15 bytes
        (b"\x61\x00\x02\x04\x31\x01\x00\x00\x00", "two entries at one start"),
        (b"\x61\x00\x00\x00\x21", "not a bsdiff-lzma payload"),  # an inner of the other kind
        (b"\x61\x00\x01\x01\x31\x05", "header truncated"),
    ],
)
def test_malformed_filtered_payloads_raise_delta_error(payload: bytes, message: str) -> None:
    with pytest.raises(DeltaError, match=message):
        run("bsdiff-lzma+thumb2", b"old image bytes", payload, 3)


def test_link_addresses_are_scored_and_only_the_best_transformed() -> None:
    """The views of a Thumb-2 pair: every candidate base scored, the best (and a close
    second) kept, once per pair for all inner encoders."""
    from fwdist.delta import _bsdiff, _filtered, _thumb2
    from fwdist.delta._core import close
    from fwdist.delta._pair import Pair

    old, new = _thumb_pair(7)
    pair = Pair(old, new)
    views = _filtered.views(pair)
    assert views is _filtered.views(pair)  # memoized: the inner encoders share it
    scores = [v.score for v in views.views]
    assert scores == sorted(scores) and all(close(s, scores[0]) for s in scores)
    assert 1 <= len(views.views) <= 2
    assert views.score == scores[0] + len(_filtered._pack_map(views.amap))
    # the score is the map's copies re-diffed against that base's prediction
    new_abs = _thumb2.absolute(new)
    copies = _filtered._map_copies(old, new_abs)
    best = views.views[0]
    assert best.pair.new == new_abs
    assert best.pair.old == _thumb2.predict(old, 0, views.amap, best.base, len(old))
    assert best.score == _bsdiff.proxy_size(_bsdiff.rediff(copies, best.pair.old, new_abs))
    rest = [b for b in _filtered.base_candidates(old) if b not in {v.base for v in views.views}]
    for base in rest:
        seen = _thumb2.predict(old, 0, views.amap, base, len(old))
        other = _bsdiff.proxy_size(_bsdiff.rediff(copies, seen, new_abs))
        assert other >= scores[-1]
