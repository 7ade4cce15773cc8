"""Unit tests for fwdist.delta: round trips, the choice, exact sizes, hostile payloads."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Mapping
from types import MappingProxyType

import pytest

from fwdist import delta
from fwdist.delta import PIECE, Delta, DeltaError, apply, decode_ram, encode, encode_with

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


def reader(data: bytes) -> Callable[[int, int], bytes]:
    def read(offset: int, size: int) -> bytes:
        assert offset >= 0 and offset + size <= len(data), (offset, size, len(data))
        return data[offset : offset + size]

    return read


def run(encoder: str, old: bytes, payload: bytes, new_size: int) -> list[bytes]:
    pieces: list[bytes] = []
    apply(
        encoder,
        reader(old),
        len(old),
        reader(payload),
        len(payload),
        pieces.append,
        new_size=new_size,
    )
    return pieces


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
    assert max(len(p) for p in pieces) == PIECE


def test_exact_sizes_for_the_seeded_pair() -> None:
    """Pinned: a change to the format or the encoders' settings shows up here."""
    sizes = {name: len(encode_with(name, OLD, NEW)) for name in ENCODER_NAMES}
    assert sizes == {"bsdiff-zstd": 3_353, "zstd-dict": 3_888}


def test_exact_sizes_identical_and_empty() -> None:
    # bsdiff-zstd: tag, new_size, 3 window-log bytes, 4 stream lengths; no frames.
    assert encode_with("bsdiff-zstd", b"", b"") == b"\x21\x00" + bytes(7)
    # zstd-dict: tag, old_size, new_size, one empty last raw block.
    assert encode_with("zstd-dict", b"", b"") == b"\x11\x00\x00\x01\x00\x00"
    assert len(encode_with("bsdiff-zstd", OLD, OLD)) == 37
    assert len(encode_with("zstd-dict", OLD, OLD)) == 20


def test_decode_ram() -> None:
    for name in ENCODER_NAMES:
        payload = encode_with(name, OLD, NEW)
        assert decode_ram(name, payload[:64]) == decode_ram(name, payload)
    zd = encode_with("zstd-dict", OLD, NEW)
    assert decode_ram("zstd-dict", zd) == len(OLD) + len(NEW) + 95_968
    bz = encode_with("bsdiff-zstd", OLD, NEW)
    assert decode_ram("bsdiff-zstd", bz) == 885_664
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
    only = encode(OLD, NEW, encoders=["zstd-dict"])
    assert only.encoder == "zstd-dict"
    with pytest.raises(ValueError):
        encode(OLD, NEW, encoders=[])


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
    assert encode(b"old", b"new", encoders=["big", "mid"]).encoder == "mid"


def test_unknown_encoder() -> None:
    with pytest.raises(DeltaError, match="unknown delta encoder"):
        apply("lzma", reader(b""), 0, reader(b"x"), 1, lambda b: None, new_size=0)
    with pytest.raises(DeltaError):
        decode_ram("lzma", b"\x00")
    with pytest.raises(ValueError):
        encode_with("lzma", b"", b"")


def _expect_error(encoder: str, old: bytes, payload: bytes, new_size: int) -> list[bytes]:
    pieces: list[bytes] = []
    with pytest.raises(DeltaError) as info:
        apply(
            encoder,
            reader(old),
            len(old),
            reader(payload),
            len(payload),
            pieces.append,
            new_size=new_size,
        )
    assert "\n" not in str(info.value)
    assert sum(map(len, pieces)) <= new_size
    return pieces


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_every_truncation_is_rejected(encoder: str) -> None:
    payload = encode_with(encoder, OLD, NEW)
    for cut in range(1, len(payload)):
        _expect_error(encoder, OLD, payload[:cut], len(NEW))
    with pytest.raises(DeltaError, match="empty payload"):
        apply(encoder, reader(OLD), len(OLD), reader(b""), 0, lambda b: None, new_size=len(NEW))


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
            apply(
                encoder,
                reader(OLD),
                len(OLD),
                reader(bytes(bad)),
                len(bad),
                pieces.append,
                new_size=len(NEW),
            )
        except DeltaError:
            errors += 1
            assert sum(map(len, pieces)) <= len(NEW)
        else:
            assert sum(map(len, pieces)) == len(NEW)
    assert (errors, len(positions)) == {"bsdiff-zstd": (184, 340), "zstd-dict": (165, 340)}[encoder]


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_garbage_is_rejected(encoder: str) -> None:
    rng = random.Random(11)
    tag = encode_with(encoder, b"", b"")[:1]
    for _ in range(200):
        junk = tag + rng.randbytes(rng.randint(0, 64))
        _expect_error(encoder, OLD, junk, len(NEW))


# ---------------------------------------------------------------------------
# hand-made bsdiff-zstd payloads: the control checks, one by one


def _uv(v: int) -> bytes:
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v >> 7 else 0))
        v >>= 7
        if not v:
            return bytes(out)


def _zz(v: int) -> int:
    return v << 1 if v >= 0 else ((-v) << 1) - 1


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
        else b"".join(_uv(_zz(s)) for s, _, _ in triples),
        b"".join(_uv(x) for _, x, _ in triples),
        b"".join(_uv(y) for _, _, y in triples),
        diff,
        extra,
    ]
    logs: list[int] = []
    bodies: list[bytes] = []
    for data in columns:
        if data:
            log, body = delta._strip_stream_frame(delta._compress(data, 17))
        else:
            log, body = 10, b""
        logs.append(log)
        bodies.append(body)
    if window_logs is not None:
        logs = list(window_logs)
    nib = [w - 10 for w in logs] + [0]
    head = b"\x21" + _uv(new_size) + bytes(nib[i] | nib[i + 1] << 4 for i in range(0, 6, 2))
    return head + b"".join(_uv(len(b)) for b in bodies[:-1]) + b"".join(bodies)


OLD16 = bytes(range(16))


def test_handmade_payload_decodes() -> None:
    payload = bsdiff_payload(10, [(2, 4, 2), (-6, 4, 0)], b"\x01\x00\x00\xff" + bytes(4), b"XY")
    # seek 2, copy 4 (+diff), 2 extra; then seek -6 + previous y (2) = -4 -> old_pos 2.
    assert b"".join(run("bsdiff-zstd", OLD16, payload, 10)) == (
        bytes([3, 3, 4, 4]) + b"XY" + bytes([2, 3, 4, 5])
    )


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
    triples: list[tuple[int, int, int]], diff: bytes, extra: bytes, message: str
) -> None:
    payload = bsdiff_payload(4, triples, diff, extra)
    pieces = _expect_error("bsdiff-zstd", OLD16, payload, 4)
    with pytest.raises(DeltaError, match=message):
        run("bsdiff-zstd", OLD16, payload, 4)
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


def test_sink_never_gets_more_than_new_size() -> None:
    payload = encode_with("bsdiff-zstd", OLD, NEW)
    got: list[int] = []
    with pytest.raises(DeltaError):
        apply(
            "bsdiff-zstd",
            reader(OLD),
            len(OLD),
            reader(payload),
            len(payload),
            lambda b: got.append(len(b)),
            new_size=len(NEW) - 1,
        )
    assert sum(got) == 0  # the header's new_size disagrees: refused before any output
