"""Unit tests for fwdist.delta: round trips, the choice, exact sizes, hostile payloads."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

import bsdiff4
import pytest

from fwdist import delta
from fwdist.delta import (
    PIECE,
    Delta,
    DeltaError,
    # six private codec modules, on purpose: the stored stream forms (stripped zstd frames,
    # raw LZMA2, the bsdiff headers) are checked here, which encode/apply cannot show apart
    _bsdiff3_heatshrink,
    _bsdiff3_lzma,
    _bsdiff_lzma,
    _bsdiff_zstd,
    _lzma,
    _zstd,
    decode_ram,
    encode,
    encode_with,
)
from fwdist.delta._core import IO_BUFFER
from fwdist.sample import SampleFirmware
from tests.delta_helpers import apply_into, bsdiff_layout, run, uv, zz

ENCODER_NAMES = sorted(delta.ENCODERS)
BASE = 0x0800_0000  # flash base address of a typical Cortex-M image


def _firmware(
    rng: random.Random, functions: list[list[tuple[bytes, int | None]]], data: bytes
) -> bytes:
    """Lay out functions (opcodes + absolute call targets) then a data blob.

    Every call operand is the 32-bit address of its target, so inserting or
    deleting code shifts the addresses in every function after it -- the
    property that makes chunk dedup useless and byte deltas necessary.
    """
    addresses = []
    pos = BASE
    for fn in functions:
        addresses.append(pos)
        pos += sum(len(op) + (4 if target is not None else 0) for op, target in fn)
    out = bytearray()
    for fn in functions:
        for op, target in fn:
            out += op
            if target is not None:
                out += struct.pack("<I", addresses[target])
    return bytes(out) + data


def firmware_pair(seed: int, n_functions: int = 300) -> tuple[bytes, bytes]:
    """A seeded (old, new) pair that looks like two consecutive releases."""
    rng = random.Random(seed)
    opcodes = [rng.randbytes(rng.randint(1, 4)) for _ in range(48)]
    call = b"\xeb"

    def instr() -> tuple[bytes, int | None]:
        if rng.random() < 0.15:
            return call, rng.randrange(n_functions)
        return rng.choice(opcodes), None

    functions = [[instr() for _ in range(rng.randint(5, 60))] for _ in range(n_functions)]
    strings = b"".join(
        b"fwdist %d error: %s\x00" % (i, rng.choice([b"timeout", b"crc", b"nack", b"busy"]))
        for i in range(200)
    )
    old = _firmware(rng, functions, strings + b"v1.4.2\x00")
    # The next release: some functions grow, some shrink, one is new.
    for fn in rng.sample(functions, 25):
        at = rng.randrange(len(fn) + 1)
        fn[at:at] = [instr() for _ in range(rng.randint(1, 6))]
    for fn in rng.sample(functions, 10):
        del fn[rng.randrange(len(fn))]
    at = rng.randrange(n_functions)
    for fn in functions:  # targets index the grown table: shift them too
        fn[:] = [(op, t + (t >= at) if t is not None else None) for op, t in fn]
    functions.insert(at, [instr() for _ in range(30)])
    new = _firmware(rng, functions, strings.replace(b"busy", b"BUSY") + b"v1.5.0\x00")
    return old, new


OLD, NEW = firmware_pair(2024)


def lzma_ram(lc: int, lp: int, dict_log: int) -> int:
    """LzmaDec's RAM for one stream: dictionary, 16-bit probabilities, state, 16 KiB input."""
    return (1 << dict_log) + (1846 + (0x300 << (lc + lp))) * 2 + 128 + 16 * 1024


def test_fixture_is_realistic() -> None:
    assert len(OLD) == 34_505
    assert len(NEW) == 34_825
    assert OLD[:4096] != NEW[:4096]  # address shifts reach the first page


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
@pytest.mark.parametrize(
    "case",
    ["firmware", "empty-old", "empty-new", "both-empty", "identical", "smaller", "unrelated"],
)
def test_round_trip(encoder: str, case: str) -> None:
    old, new = {
        "firmware": (OLD, NEW),
        "empty-old": (b"", NEW),
        "empty-new": (OLD, b""),
        "both-empty": (b"", b""),
        "identical": (OLD, OLD),
        "smaller": (NEW, NEW[: len(NEW) // 3] + NEW[len(NEW) // 2 :]),
        "unrelated": (random.Random(1).randbytes(5000), random.Random(2).randbytes(3000)),
    }[case]
    payload = encode_with(encoder, old, new)
    pieces = run(encoder, old, payload, len(new))
    assert b"".join(pieces) == new
    assert all(0 < len(p) <= PIECE for p in pieces)


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_round_trip_spans_many_pieces(encoder: str) -> None:
    rng = random.Random(7)
    old = rng.randbytes(150_000)
    new = old[:70_000] + rng.randbytes(90_000) + old[60_000:]
    pieces = run(encoder, old, encode_with(encoder, old, new), len(new))
    assert b"".join(pieces) == new
    # the small-RAM formats hand the sink what their box-side output buffer holds; a Thumb-2
    # filter around them passes on up to the 3 bytes its codec held back from the chunk before
    if not encoder.startswith("bsdiff3"):
        assert max(len(p) for p in pieces) == PIECE
    elif encoder.endswith("+thumb2"):
        assert IO_BUFFER < max(len(p) for p in pieces) <= IO_BUFFER + 3
    else:
        assert max(len(p) for p in pieces) == IO_BUFFER


def test_exact_sizes_for_the_seeded_pair() -> None:
    """Pinned: a change to the format or the encoders' settings shows up here."""
    sizes = {name: len(encode_with(name, OLD, NEW)) for name in ENCODER_NAMES}
    assert sizes == {
        "bsdiff-lzma": 3_241,
        "bsdiff-zstd": 3_353,
        "bsdiff3-heatshrink": 4_288,
        "bsdiff3-lzma": 3_224,
        "zstd-dict": 3_888,
        "bsdiff-lzma+thumb2": 3_514,
        "bsdiff-zstd+thumb2": 3_644,
        "bsdiff3-lzma+thumb2": 3_497,
        "bsdiff3-heatshrink+thumb2": 4_610,
    }


def test_exact_sizes_identical_and_empty() -> None:
    # bsdiff-zstd: tag, new_size, 3 window-log bytes, 4 stream lengths; no frames.
    assert encode_with("bsdiff-zstd", b"", b"") == b"\x21\x00" + bytes(7)
    # zstd-dict: tag, old_size, new_size, one empty last raw block.
    assert encode_with("zstd-dict", b"", b"") == b"\x11\x00\x00\x01\x00\x00"
    # bsdiff-lzma: tag, new_size, five (0, 0) "no stream" coders, 4 stream lengths.
    assert encode_with("bsdiff-lzma", b"", b"") == b"\x31\x00" + bytes(10) + bytes(4)
    assert len(encode_with("bsdiff-zstd", OLD, OLD)) == 37
    assert len(encode_with("bsdiff-lzma", OLD, OLD)) == 44
    assert len(encode_with("zstd-dict", OLD, OLD)) == 20


def test_decode_ram() -> None:
    for name in ENCODER_NAMES:
        payload = encode_with(name, OLD, NEW)
        assert decode_ram(name, payload[:64]) == decode_ram(name, payload)
    zd = encode_with("zstd-dict", OLD, NEW)
    # entropy tables + one block of literals (the whole 34,825-byte image) + wildcopy slack
    assert decode_ram("zstd-dict", zd) == 29_340 + len(NEW) + 32 == 64_197
    bz = encode_with("bsdiff-zstd", OLD, NEW)
    assert decode_ram("bsdiff-zstd", bz) == 885_664
    bl = encode_with("bsdiff-lzma", OLD, NEW)
    # Four 4 KiB-dictionary streams and diff at 64 KiB, lc0/lp0/pb0 but y at lp2/pb2 (108,
    # as the cheap ranking has it; same bytes as lp0 at 9e): see lzma_ram.
    assert _bsdiff_lzma.FORMAT.header(bl[:64]).coders == [(0, 12)] * 2 + [(108, 12)] + [
        (0, 16),
        (0, 12),
    ]
    assert decode_ram("bsdiff-lzma", bl) == (
        3 * lzma_ram(0, 0, 12) + lzma_ram(0, 2, 12) + lzma_ram(0, 0, 16) + 3 * PIECE
    )
    assert decode_ram("bsdiff-lzma", bl) == 391_836
    with pytest.raises(DeltaError):
        decode_ram("bsdiff-zstd", bz[:3])
    with pytest.raises(DeltaError):
        decode_ram("zstd-dict", bz)


def test_encode_keeps_the_smallest() -> None:
    sizes = {name: len(encode_with(name, OLD, NEW)) for name in ENCODER_NAMES}
    chosen = encode(OLD, NEW)
    assert isinstance(chosen, Delta)
    assert len(chosen.data) == min(sizes.values())
    assert chosen.encoder == min(sizes, key=lambda n: sizes[n])
    assert chosen.data == encode_with(chosen.encoder, OLD, NEW)
    only = encode(OLD, NEW, formats=["zstd-dict"])
    assert only.encoder == "zstd-dict"
    with pytest.raises(ValueError):
        encode(OLD, NEW, formats=[])


def test_encode_breaks_ties_on_decode_ram(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(name: str, ram: int) -> delta.Encoder:
        def enc(old: bytes, new: bytes) -> bytes:
            return b"same-size"

        def dec(
            old: delta.ReadAt,
            old_size: int,
            payload: delta.ReadAt,
            payload_size: int,
            sink: Callable[[bytes], None],
            new_size: int,
        ) -> None:
            sink(b"new")

        return delta.Encoder(name, 0, enc, dec, lambda head: ram)

    table: Mapping[str, delta.Encoder] = MappingProxyType(
        {"big": fake("big", 900), "small": fake("small", 100), "mid": fake("mid", 500)}
    )
    monkeypatch.setattr(delta, "ENCODERS", table)
    assert encode(b"old", b"new").encoder == "small"
    assert encode(b"old", b"new", formats=["big", "mid"]).encoder == "mid"


def test_registry_rows_name_themselves_and_lead_their_payloads() -> None:
    """What adding an encoder must keep: key = name, a tag of its own first in every payload."""
    rows = list(delta.ENCODERS.values())
    assert [r.name for r in rows] == list(delta.ENCODERS)
    assert [(r.name, r.tag) for r in rows] == [  # order breaks exact ties in encode
        ("zstd-dict", 0x11),
        ("bsdiff-zstd", 0x21),
        ("bsdiff-lzma", 0x31),
        ("bsdiff3-lzma", 0x41),
        ("bsdiff3-heatshrink", 0x51),
        ("bsdiff-lzma+thumb2", 0x61),  # the filter's tag; the inner payload leads with its own
        ("bsdiff-zstd+thumb2", 0x61),
        ("bsdiff3-lzma+thumb2", 0x61),
        ("bsdiff3-heatshrink+thumb2", 0x61),
    ]
    for row in rows:
        assert encode_with(row.name, OLD, NEW)[0] == row.tag
    # the longest headers the bsdiff back ends read: within decode_ram's 64 bytes
    assert (_bsdiff_zstd.FORMAT.head_max, _bsdiff_lzma.FORMAT.head_max) == (54, 61)
    assert (_bsdiff3_lzma.LAYOUT.head_max, _bsdiff3_heatshrink.LAYOUT.head_max) == (44, 35)


def test_unknown_encoder() -> None:
    with pytest.raises(DeltaError, match="unknown delta encoder"):
        run("lzma", b"", b"x", 0)
    with pytest.raises(DeltaError):
        decode_ram("lzma", b"\x00")
    with pytest.raises(ValueError):
        encode_with("lzma", b"", b"")


def _expect_error(encoder: str, old: bytes, payload: bytes, new_size: int) -> list[bytes]:
    pieces: list[bytes] = []
    with pytest.raises(DeltaError) as info:
        apply_into(pieces, encoder, old, payload, new_size)
    assert "\n" not in str(info.value)
    assert sum(map(len, pieces)) <= new_size
    return pieces


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_every_truncation_is_rejected(encoder: str) -> None:
    payload = encode_with(encoder, OLD, NEW)
    for cut in range(1, len(payload)):
        _expect_error(encoder, OLD, payload[:cut], len(NEW))
    with pytest.raises(DeltaError, match="empty payload"):
        run(encoder, OLD, b"", len(NEW))


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_trailing_bytes_are_rejected(encoder: str) -> None:
    payload = encode_with(encoder, OLD, NEW)
    _expect_error(encoder, OLD, payload + b"\x00", len(NEW))


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_wrong_sizes_are_rejected(encoder: str) -> None:
    payload = encode_with(encoder, OLD, NEW)
    for new_size in (0, len(NEW) - 1, len(NEW) + 1):
        assert _expect_error(encoder, OLD, payload, new_size) == []
    if encoder == "zstd-dict":
        _expect_error(encoder, OLD + b"\x00", payload, len(NEW))
    other = next(n for n in ENCODER_NAMES if n != encoder)
    _expect_error(other, OLD, payload, len(NEW))


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_flipped_bits_give_an_error_or_an_image_of_the_right_size(encoder: str) -> None:
    """A flip inside a literal can still decode (the image hash catches that); most cannot."""
    payload = encode_with(encoder, OLD, NEW)
    rng = random.Random(3)
    errors = 0
    positions = list(range(min(40, len(payload)))) + rng.sample(range(len(payload)), 300)
    for pos in positions:
        bad = bytearray(payload)
        bad[pos] ^= 1 << rng.randrange(8)
        pieces: list[bytes] = []
        try:
            apply_into(pieces, encoder, OLD, bytes(bad), len(NEW))
        except DeltaError:
            errors += 1
            assert sum(map(len, pieces)) <= len(NEW)
        else:
            assert sum(map(len, pieces)) == len(NEW)
    assert (errors, len(positions)) == {
        "bsdiff-lzma": (324, 340),
        "bsdiff-zstd": (184, 340),
        "bsdiff3-heatshrink": (268, 340),  # heatshrink has no invalid codes: flips decode
        "bsdiff3-lzma": (334, 340),
        "zstd-dict": (165, 340),
        "bsdiff-lzma+thumb2": (315, 340),
        "bsdiff-zstd+thumb2": (159, 340),
        "bsdiff3-lzma+thumb2": (328, 340),
        "bsdiff3-heatshrink+thumb2": (263, 340),
    }[encoder]


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_garbage_is_rejected(encoder: str) -> None:
    rng = random.Random(11)
    tag = encode_with(encoder, b"", b"")[:1]
    for _ in range(200):
        junk = tag + rng.randbytes(rng.randint(0, 64))
        _expect_error(encoder, OLD, junk, len(NEW))


# ---------------------------------------------------------------------------
# hand-made bsdiff-zstd payloads: the control checks, one by one


def bsdiff_payload(
    new_size: int,
    triples: list[tuple[int, int, int]],
    diff: bytes,
    extra: bytes,
    *,
    window_logs: tuple[int, ...] | None = None,
    raw_seek_column: bytes | None = None,
) -> bytes:
    """A bsdiff-zstd payload from explicit (seek, x, y) triples, seeks as stored."""
    columns = [
        raw_seek_column
        if raw_seek_column is not None
        else b"".join(uv(zz(s)) for s, _, _ in triples),
        b"".join(uv(x) for _, x, _ in triples),
        b"".join(uv(y) for _, _, y in triples),
        diff,
        extra,
    ]
    logs: list[int] = []
    bodies: list[bytes] = []
    for data in columns:
        if data:
            log, body = _zstd.strip_stream_frame(_zstd.compress(data, 17))
        else:
            log, body = 10, b""
        logs.append(log)
        bodies.append(body)
    if window_logs is not None:
        logs = list(window_logs)
    nib = [w - 10 for w in logs] + [0]
    coders = bytes(nib[i] | nib[i + 1] << 4 for i in range(0, 6, 2))
    return bsdiff_layout(0x21, new_size, coders, bodies)


def lzma_payload(
    new_size: int,
    triples: list[tuple[int, int, int]],
    diff: bytes,
    extra: bytes,
    *,
    coders: list[tuple[int, int]] | None = None,
    bodies: dict[int, bytes] | None = None,
    props: int = 0,
    dict_log: int = 12,
) -> bytes:
    """A bsdiff-lzma payload from explicit triples: every stream raw LZMA2 (props, dict_log).

    ``coders`` replaces the header's coders, ``bodies`` the stored bytes of some streams.
    """
    columns = [
        b"".join(uv(zz(s)) for s, _, _ in triples),
        b"".join(uv(x) for _, x, _ in triples),
        b"".join(uv(y) for _, _, y in triples),
        diff,
        extra,
    ]
    stored = [_lzma.compress(c, props, dict_log) if c else b"" for c in columns]
    heads = [(props, dict_log) if c else (0, 0) for c in columns]
    for i, body in (bodies or {}).items():
        stored[i] = body
    if coders is not None:
        heads = coders
    return bsdiff_layout(0x31, new_size, bytes(b for c in heads for b in c), stored)


OLD16 = bytes(range(16))


def test_handmade_payload_decodes() -> None:
    payload = bsdiff_payload(10, [(2, 4, 2), (-6, 4, 0)], b"\x01\x00\x00\xff" + bytes(4), b"XY")
    # seek 2, copy 4 (+diff), 2 extra; then seek -6 + previous y (2) = -4 -> old_pos 2.
    assert b"".join(run("bsdiff-zstd", OLD16, payload, 10)) == (
        bytes([3, 3, 4, 4]) + b"XY" + bytes([2, 3, 4, 5])
    )


@pytest.mark.parametrize("fmt", ["bsdiff-zstd", "bsdiff-lzma"])
@pytest.mark.parametrize(
    ("triples", "diff", "extra", "message"),
    [
        ([(-1, 4, 0)], bytes(4), b"", "outside the old image"),
        ([(17, 0, 4)], b"", b"abcd", "outside the old image"),
        ([(14, 4, 0)], bytes(4), b"", "runs past the old image"),
        ([(0, 0, 0), (0, 4, 0)], bytes(4), b"", "outside the new image"),
        ([(0, 4, 1)], bytes(4), b"a", "outside the new image"),
        ([(0, 2, 0)], bytes(2), b"", "stream ends early"),
        ([(0, 4, 0)], bytes(3), b"", "diff stream ends early"),
        ([(0, 2, 2)], bytes(2), b"a", "extra stream ends early"),
        ([(0, 4, 0)], bytes(5), b"", "data past the end"),
        ([(0, 4, 0), (0, 1, 0)], bytes(5), b"", "data past the end"),
    ],
)
def test_control_values_are_checked(
    fmt: str, triples: list[tuple[int, int, int]], diff: bytes, extra: bytes, message: str
) -> None:
    build = bsdiff_payload if fmt == "bsdiff-zstd" else lzma_payload
    payload = build(4, triples, diff, extra)
    pieces = _expect_error(fmt, OLD16, payload, 4)
    with pytest.raises(DeltaError, match=message):
        run(fmt, OLD16, payload, 4)
    assert sum(map(len, pieces)) <= 4


def test_oversized_window_and_varint_are_rejected() -> None:
    big = bsdiff_payload(4, [(0, 4, 0)], bytes(4), b"", window_logs=(21, 10, 10, 10, 10))
    with pytest.raises(DeltaError, match="window log 21 exceeds 20"):
        run("bsdiff-zstd", OLD16, big, 4)
    with pytest.raises(DeltaError, match="window log"):
        decode_ram("bsdiff-zstd", big)
    long_varint = bsdiff_payload(4, [(0, 4, 0)], bytes(4), b"", raw_seek_column=b"\xff" * 11)
    with pytest.raises(DeltaError, match="oversized varint"):
        run("bsdiff-zstd", OLD16, long_varint, 4)
    lying_window = bsdiff_payload(4, [(0, 4, 0)], bytes(4), b"", window_logs=(10,) * 5)
    assert b"".join(run("bsdiff-zstd", OLD16, lying_window, 4)) == OLD16[:4]
    old = random.Random(5).randbytes(300_000)
    needs_17 = bsdiff_payload(
        300_000, [(0, 300_000, 0)], bytes(300_000), b"", window_logs=(10, 10, 10, 10, 10)
    )
    with pytest.raises(DeltaError, match="zstd block header invalid"):
        run("bsdiff-zstd", old, needs_17, 300_000)


def test_decompression_bomb_is_bounded() -> None:
    """A tiny payload that inflates to megabytes of diff stops at new_size, in pieces."""
    payload = bsdiff_payload(100, [(0, 16, 0)], bytes(4_000_000), b"")
    assert len(payload) < 300
    pieces = _expect_error("bsdiff-zstd", OLD16, payload, 100)
    assert sum(map(len, pieces)) <= 100


@pytest.mark.parametrize("encoder", ["bsdiff-zstd", "bsdiff-lzma"])
def test_sink_never_gets_more_than_new_size(encoder: str) -> None:
    payload = encode_with(encoder, OLD, NEW)
    pieces: list[bytes] = []
    with pytest.raises(DeltaError):
        apply_into(pieces, encoder, OLD, payload, len(NEW) - 1)
    assert sum(map(len, pieces)) == 0  # the header's new_size disagrees: refused before any output


# ---------------------------------------------------------------------------
# bsdiff-lzma: header, coders, LZMA2 chunk framing, dictionary bound


def test_lzma_handmade_payload_decodes_with_any_legal_props() -> None:
    want = bytes([3, 3, 4, 4]) + b"XY" + bytes([2, 3, 4, 5])
    triples = [(2, 4, 2), (-6, 4, 0)]
    for lc, lp, pb in [(0, 0, 0), (3, 0, 2), (0, 2, 2), (4, 0, 4), (0, 4, 0)]:
        props = (pb * 5 + lp) * 9 + lc
        payload = lzma_payload(10, triples, b"\x01\x00\x00\xff" + bytes(4), b"XY", props=props)
        assert b"".join(run("bsdiff-lzma", OLD16, payload, 10)) == want
        assert decode_ram("bsdiff-lzma", payload) == 5 * lzma_ram(lc, lp, 12) + 3 * PIECE


def test_lzma_payload_may_mix_in_zstd_streams() -> None:
    log, seek = _zstd.strip_stream_frame(_zstd.compress(uv(zz(2)) + uv(zz(-6)), 14))
    payload = lzma_payload(
        10,
        [(2, 4, 2), (-6, 4, 0)],
        b"\x01\x00\x00\xff" + bytes(4),
        b"XY",
        coders=[(0xFF, log)] + [(0, 12)] * 4,
        bodies={0: seek},
    )
    assert b"".join(run("bsdiff-lzma", OLD16, payload, 10)) == (
        bytes([3, 3, 4, 4]) + b"XY" + bytes([2, 3, 4, 5])
    )
    assert log == 10
    zstd_ram = 95_968 + 3 * 1024 + 64  # state, input block, window, slack
    assert decode_ram("bsdiff-lzma", payload) == zstd_ram + 4 * lzma_ram(0, 0, 12) + 3 * PIECE


@pytest.mark.parametrize(
    ("coder", "message"),
    [
        ((225, 12), "coder 0xe1 unknown"),
        ((0xFE, 12), "coder 0xfe unknown"),
        ((21, 12), "lc \\+ lp = 5 exceeds"),  # lc 3, lp 2
        ((0, 11), "dictionary log 11 not in 12..20"),
        ((0, 21), "dictionary log 21 not in 12..20"),
        ((0, 0xFF), "dictionary log 255"),
        ((0xFF, 9), "zstd window log 9 not in 10..20"),
        ((0xFF, 21), "zstd window log 21"),
    ],
)
def test_lzma_header_coders_are_checked(coder: tuple[int, int], message: str) -> None:
    payload = lzma_payload(4, [(0, 4, 0)], bytes(4), b"", coders=[(0, 12)] * 3 + [coder, (0, 0)])
    with pytest.raises(DeltaError, match=message):
        run("bsdiff-lzma", OLD16, payload, 4)
    with pytest.raises(DeltaError, match=message):
        decode_ram("bsdiff-lzma", payload)


def test_lzma_stream_presence_must_match_its_coder() -> None:
    declared_empty = lzma_payload(
        4, [(0, 4, 0)], bytes(4), b"", coders=[(0, 12)] * 3 + [(0, 0)] * 2
    )
    with pytest.raises(DeltaError, match="diff stream declared empty but has"):
        run("bsdiff-lzma", OLD16, declared_empty, 4)
    missing = lzma_payload(4, [(0, 4, 0)], bytes(4), b"", coders=[(0, 12)] * 5)
    with pytest.raises(DeltaError, match="extra stream has a coder but no bytes"):
        run("bsdiff-lzma", OLD16, missing, 4)


def test_lzma_chunk_properties_must_match_the_header() -> None:
    """liblzma would decode this; a device sized for lc0/lp0 could not."""
    wide = _lzma.compress(bytes(16), (2 * 5 + 2) * 9 + 2, 12)  # lc2 lp2 pb2
    assert wide[0] == 0xE0 and wide[5] == 0x6E  # an LZMA chunk that sets properties
    payload = lzma_payload(16, [(0, 16, 0)], bytes(16), b"", bodies={3: wide})
    assert decode_ram("bsdiff-lzma", payload) == 4 * lzma_ram(0, 0, 12) + 3 * PIECE
    with pytest.raises(DeltaError, match="chunk properties 0x6e differ from the header's 0x00"):
        run("bsdiff-lzma", OLD16, payload, 16)
    honest = lzma_payload(16, [(0, 16, 0)], bytes(16), b"", props=0x6E)
    assert b"".join(run("bsdiff-lzma", OLD16, honest, 16)) == OLD16


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x05", "control byte 0x05 invalid"),
        (b"\x7f" + bytes(8), "control byte 0x7f invalid"),
        (b"\x01\x00", "LZMA2 stream truncated"),  # stored chunk, header cut
        (b"\x01\x00\x03" + bytes(3), "LZMA2 stream truncated"),  # 4 bytes announced, 3 there
        (b"\x01\x00\x03" + bytes(4) + b"\x00", "control byte 0x00 invalid"),  # end marker stored
        (b"\x01\x00\x03" + bytes(5), "control byte 0x00 invalid"),
        (b"\xe0\x00\x03\x00\x05", "LZMA2 stream truncated"),  # LZMA chunk, no props byte
        (b"\x02\x00\x03" + bytes(4), "diff stream corrupt"),  # no dictionary reset first
        (b"\x80\x00\x03\x00\x04" + bytes(5), "diff stream corrupt"),  # no properties first
        (b"\xe0\x00\x03\x00\x04\x00" + b"\xff" * 5, "diff stream corrupt"),  # bad range coder
        (b"\x01\x00\x02" + bytes(3), "diff stream ends early"),  # stored chunk of 3, 4 needed
        (b"\x01\x00\x04" + bytes(5), "diff stream has data past the end"),
    ],
)
def test_lzma2_framing_is_checked(body: bytes, message: str) -> None:
    payload = lzma_payload(4, [(0, 4, 0)], bytes(4), b"", bodies={3: body})
    pieces = _expect_error("bsdiff-lzma", OLD16, payload, 4)
    assert sum(map(len, pieces)) <= 4
    with pytest.raises(DeltaError, match=message):
        run("bsdiff-lzma", OLD16, payload, 4)


def test_stored_lzma2_chunks_decode() -> None:
    """A stream of stored (uncompressed) chunks is legal LZMA2: no properties needed."""
    body = b"\x01\x00\x01" + bytes(2) + b"\x02\x00\x01" + b"\x01\x00"
    payload = lzma_payload(4, [(0, 4, 0)], bytes(4), b"", bodies={3: body})
    assert b"".join(run("bsdiff-lzma", OLD16, payload, 4)) == bytes([0, 1, 3, 3])


def test_lzma_dictionary_bound_is_enforced() -> None:
    """A match reaching further back than the declared dictionary is corrupt, not honoured."""
    block = random.Random(9).randbytes(20_000)
    extra = block * 3
    honest = lzma_payload(len(extra), [(0, 0, len(extra))], b"", extra, dict_log=16)
    assert b"".join(run("bsdiff-lzma", b"", honest, len(extra))) == extra
    coders = [(0, 16), (0, 16), (0, 16), (0, 0), (0, 12)]  # extra claims a 4 KiB dictionary
    lying = lzma_payload(len(extra), [(0, 0, len(extra))], b"", extra, dict_log=16, coders=coders)
    assert decode_ram("bsdiff-lzma", lying) < decode_ram("bsdiff-lzma", honest)
    with pytest.raises(DeltaError, match="extra stream corrupt"):
        run("bsdiff-lzma", b"", lying, len(extra))


def test_lzma_decompression_bomb_is_bounded() -> None:
    payload = lzma_payload(100, [(0, 16, 0)], bytes(4_000_000), b"", dict_log=16)
    assert len(payload) < 700
    pieces = _expect_error("bsdiff-lzma", OLD16, payload, 100)
    assert sum(map(len, pieces)) <= 100


def test_encoder_caps_the_dictionary_and_picks_per_stream() -> None:
    """Big streams get the 64 KiB cap, small ones the smallest power of two that holds them."""
    rng = random.Random(4)
    old = rng.randbytes(300_000)
    new = bytearray(old)
    for at in range(0, len(new), 997):
        new[at] ^= 0x5A
    payload = encode_with("bsdiff-lzma", old, bytes(new))
    coders = _bsdiff_lzma.FORMAT.header(payload[:64]).coders
    assert coders[3] == (0, 16)  # diff: 300 KB of sparse changes, capped at 64 KiB
    assert all(log == 12 for _, log in coders[:3])  # control columns fit 4 KiB
    assert coders[4] == (0, 0)  # no extra bytes
    assert decode_ram("bsdiff-lzma", payload) < decode_ram(
        "bsdiff-zstd", encode_with("bsdiff-zstd", old, bytes(new))
    )


@pytest.fixture(scope="module")
def sample_pair() -> tuple[bytes, bytes]:
    """The simulator's pair: the built-in sample firmware's first two releases."""
    sample = SampleFirmware()
    return sample.image(0), sample.image(1)


def test_sample_firmware_beats_bsdiff(sample_pair: tuple[bytes, bytes]) -> None:
    """bsdiff-lzma beats bsdiff 4.3's patch, measured here; the zstd back ends lose to it.

    The peer is bsdiff4, a dependency, which writes Debian bsdiff 4.3's patch
    byte for byte (the next test checks that when Debian's tool is installed).
    """
    old, new = sample_pair
    peer = len(bsdiff4.diff(old, new))
    chosen = encode(old, new)
    bsdiff_zstd = len(encode_with("bsdiff-zstd", old, new))
    assert len(chosen.data) < peer
    assert bsdiff_zstd > peer
    assert len(encode_with("zstd-dict", old, new)) > peer
    assert (chosen.encoder, len(chosen.data)) == ("bsdiff-lzma", 10_238)
    assert bsdiff_zstd == 11_514
    assert b"".join(run("bsdiff-lzma", old, chosen.data, len(new))) == new


@pytest.mark.skipif(
    shutil.which("bsdiff") is None, reason="Debian's bsdiff is not on PATH (apt-get install bsdiff)"
)
def test_bsdiff4_writes_debian_bsdiffs_patch(
    sample_pair: tuple[bytes, bytes], tmp_path: Path
) -> None:
    """So the peer figure above is Debian bsdiff 4.3's, wherever the suite runs."""
    old, new = sample_pair
    paths = [tmp_path / name for name in ("old", "new", "patch")]
    paths[0].write_bytes(old)
    paths[1].write_bytes(new)
    subprocess.run(["bsdiff", *map(str, paths)], check=True, capture_output=True, timeout=60)
    assert paths[2].read_bytes() == bsdiff4.diff(old, new)
