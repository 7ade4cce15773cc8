"""The small-RAM back ends and the budgeted choice: exact decoder RAM, buffers the decoder holds,
what fits 32 KiB and 8 KiB, and that the bsdiff transform and full-cost LZMA encodes are not
repeated."""

from __future__ import annotations

import lzma
import random
from typing import Any

import heatshrink2.core
import pytest

from fwdist import delta
from fwdist.delta import (
    DeltaError,
    _bsdiff,
    _bsdiff3,
    _bsdiff3_heatshrink,
    _bsdiff3_lzma,
    _lzma,
    decode_ram,
    encode,
)
from fwdist.delta._core import IO_BUFFER, SAMPLE_SIZE
from fwdist.delta._pair import Pair
from tests.delta_helpers import reader, run, uv, zz
from tests.unit.test_delta import NEW, OLD


def lzma_stream_ram(lc: int, lp: int, dictionary: int) -> int:
    """LzmaDec: 16-bit probabilities 1846 + 0x300 << (lc + lp), dictionary, state, input buffer."""
    return 2 * (1846 + (0x300 << (lc + lp))) + dictionary + 128 + 256


REPLAY = 2 * 256 + 32  # old-read and output buffers, counters


def test_bsdiff3_lzma_at_32_kib_declares_exactly_its_buffers() -> None:
    d = encode(OLD, NEW, max_ram=32768, formats=["bsdiff3-lzma"])
    head = _bsdiff3_lzma.LAYOUT.header(d.data[:64])
    # control rows and extra get all they need (158 and 357 bytes), diff the rest of 32 KiB
    assert head.coders == [(0, 158), (0, 14873), (0, 357)]
    assert head.flags == 0  # this diff is dense: stored raw
    assert len(d.data) == 3_222
    expected = (
        lzma_stream_ram(0, 0, 158) + lzma_stream_ram(0, 0, 14873) + lzma_stream_ram(0, 0, 357)
        + REPLAY
    )
    assert decode_ram("bsdiff3-lzma", d.data) == expected == 32_768


def test_bsdiff3_heatshrink_at_8_kib_declares_exactly_its_buffers() -> None:
    d = encode(OLD, NEW, max_ram=8192, formats=["bsdiff3-heatshrink"])
    head = _bsdiff3_heatshrink.LAYOUT.header(d.data[:64])
    assert head.coders == [(8, 4), (11, 4), (8, 4)]
    assert head.flags == _bsdiff3.ZERO_RUNS
    assert len(d.data) == 4_288
    # window 2^W + 256-byte input buffer + 16 bytes of state, per stream
    expected = (256 + 256 + 16) * 2 + (2048 + 256 + 16) + REPLAY
    assert decode_ram("bsdiff3-heatshrink", d.data) == expected == 3_920


def test_budget_picks_the_smallest_that_fits() -> None:
    at = {b: encode(OLD, NEW, max_ram=b) for b in (8192, 32768, None)}
    assert {b: (d.encoder, len(d.data)) for b, d in at.items()} == {
        8192: ("bsdiff3-heatshrink", 4_288),
        32768: ("bsdiff3-lzma", 3_222),  # a larger diff dictionary happens to cost 2 bytes
        None: ("bsdiff3-lzma", 3_224),
    }
    for budget in (4000, 8192, 12000, 20000, 32768, 65536):
        d = encode(OLD, NEW, max_ram=budget)
        assert decode_ram(d.encoder, d.data) <= budget
        assert b"".join(run(d.encoder, OLD, d.data, len(NEW))) == NEW
    with pytest.raises(DeltaError, match="within 1500 bytes"):
        encode(OLD, NEW, max_ram=1500)
    with pytest.raises(DeltaError, match="within 32768 bytes"):
        encode(OLD, NEW, max_ram=32768, formats=["zstd-dict", "bsdiff-lzma", "bsdiff-zstd"])


def test_zstd_dict_and_five_column_formats_cannot_fit_32_kib() -> None:
    """The figures behind leaving them out: a block of literals, three 64 KiB pieces."""
    for name in ("zstd-dict", "bsdiff-lzma", "bsdiff-zstd"):
        row = delta.ENCODERS[name]
        assert row.fit is not None
        assert row.fit(Pair(OLD, NEW), 32768) is None
    assert delta._zstd_dict.ram(2800) == 29_340 + 2800 + 32 < 32768
    assert delta._zstd_dict.ram(len(NEW)) == 64_197


def test_transform_is_computed_once_per_encode(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = _bsdiff.columns

    def counting(
        old: bytes, new: bytes, bsdiffs: _bsdiff.Transform | None = None
    ) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        calls.append(1)
        return real(old, new, bsdiffs)

    monkeypatch.setattr(_bsdiff, "columns", counting)
    encode(OLD, NEW)
    assert len(calls) == 1


def test_lzma_variants_are_ranked_cheaply_and_encoded_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bsdiff3-lzma: one 9e encode per stream, the diff twice (raw and zero runs)."""
    presets: list[int] = []
    real = _lzma.compress_sized

    def spy(data: bytes, props: int, size: int, preset: int = _lzma.FULL_PRESET) -> bytes:
        presets.append(preset)
        return real(data, props, size, preset)

    monkeypatch.setattr(_lzma, "compress_sized", spy)
    encode(OLD, NEW, formats=["bsdiff3-lzma"], max_ram=32768)
    assert presets.count(_lzma.FULL_PRESET) == 4
    assert presets.count(_lzma.ESTIMATE_PRESET) == 2 * 3 * 5  # both diff codings x 3 x 5


def _spy_reads(data: bytes, sizes: list[int]) -> Any:
    inner = reader(data)

    def read(offset: int, size: int) -> bytes:
        sizes.append(size)
        return inner(offset, size)

    return read


@pytest.mark.parametrize("name", ["bsdiff3-lzma", "bsdiff3-heatshrink"])
def test_python_decoder_holds_the_declared_buffers(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every read of old and of the payload, every piece out: at most one IO_BUFFER; the
    stream decoders get exactly the declared dictionaries, windows and input buffers."""
    d = encode(OLD, NEW, max_ram=32768 if name == "bsdiff3-lzma" else 8192, formats=[name])
    made: list[tuple[str, Any]] = []
    real_lzma = lzma.LZMADecompressor
    real_hs = heatshrink2.core.Reader

    def lzma_spy(**kw: Any) -> Any:
        made.append(("lzma", kw["filters"][0]["dict_size"]))
        return real_lzma(**kw)

    def hs_spy(**kw: Any) -> Any:
        made.append(("hs", (kw["input_buffer_size"], kw["window_sz2"], kw["lookahead_sz2"])))
        return real_hs(**kw)

    monkeypatch.setattr(lzma, "LZMADecompressor", lzma_spy)
    monkeypatch.setattr(heatshrink2.core, "Reader", hs_spy)
    old_reads: list[int] = []
    payload_reads: list[int] = []
    out: list[bytes] = []
    delta.apply(
        name,
        _spy_reads(OLD, old_reads),
        len(OLD),
        _spy_reads(d.data, payload_reads),
        len(d.data),
        out.append,
        new_size=len(NEW),
    )
    assert b"".join(out) == NEW
    assert max(map(len, out)) == IO_BUFFER
    assert max(old_reads) == IO_BUFFER
    header_read = payload_reads.pop(0)  # one read of the header, then stream input
    assert header_read <= 64 and max(payload_reads) <= IO_BUFFER
    if name == "bsdiff3-lzma":
        # liblzma's dictionary is at least 4 KiB; smaller declared ones are enforced on output
        assert made == [("lzma", 4096), ("lzma", 14873), ("lzma", 4096)]
    else:
        assert made == [("hs", (256, 8, 4)), ("hs", (256, 11, 4)), ("hs", (256, 8, 4))]


def test_a_stream_outgrowing_a_small_declared_dictionary_is_refused() -> None:
    """A dictionary under liblzma's 4 KiB is declared as the stream's length: more is refused."""
    rows = uv(zz(0)) + uv(0) + uv(600)
    extra = bytes(range(256)) * 2 + bytes(88)
    body_c = _lzma.compress_sized(rows, 0, 4)
    body_e = _lzma.compress_sized(extra, 0, 600)
    head = bytes([0x41]) + uv(600) + b"\x00"
    honest = head + b"\x00" + uv(4) + b"\xff" + b"\x00" + uv(600) + uv(len(body_c)) + uv(0)
    assert b"".join(run("bsdiff3-lzma", b"", honest + body_c + body_e, 600)) == extra
    lying = head + b"\x00" + uv(4) + b"\xff" + b"\x00" + uv(599) + uv(len(body_c)) + uv(0)
    with pytest.raises(DeltaError, match="extra stream outgrows its dictionary"):
        run("bsdiff3-lzma", b"", lying + body_c + body_e, 600)


def test_control_rows_and_zero_runs_exact_bytes() -> None:
    assert _bsdiff3.control_rows(b"\x01\x82\x01", b"\x03\x04", b"\x05\x86\x02") == (
        b"\x01\x03\x05\x82\x01\x04\x86\x02"
    )
    # zeros, literals (a zero run under 4 stays literal), a long run, a tail
    diff = bytes(5) + b"\x07\x00\x00\x08" + bytes(300) + b"\x09"
    assert _bsdiff3.zero_runs(diff) == (
        uv(5) + uv(4) + b"\x07\x00\x00\x08" + uv(300) + uv(1) + b"\x09"
    )
    assert _bsdiff3.zero_runs(bytes(10)) == uv(10) + uv(0)
    assert _bsdiff3.zero_runs(b"") == b""


@pytest.mark.parametrize(
    ("flags", "coders", "message"),
    [
        (b"\x02", b"\xff\xff\xff", "reserved flags"),
        (b"\x00", b"\xe1", "coder 0xe1 unknown"),
        (b"\x00", b"\x25\x00", "lc \\+ lp = 5"),  # lc 1, lp 4: props 37
        (b"\x00", b"\x00\x00", "dictionary of 0 bytes"),
        (b"\x00", b"\x00\x81\x80\x40", "dictionary of 1048577 bytes"),
    ],
)
def test_bsdiff3_lzma_header_is_checked(flags: bytes, coders: bytes, message: str) -> None:
    payload = bytes([0x41]) + uv(5) + flags + coders + bytes(20)
    with pytest.raises(DeltaError, match=message):
        run("bsdiff3-lzma", b"", payload, 5)


@pytest.mark.parametrize(
    ("coder", "message"),
    [(0x80 | 8, "lookahead log 8 not in 3..7"), (0xF4, "window log 15"), (0x32, "window log 3")],
)
def test_bsdiff3_heatshrink_header_is_checked(coder: int, message: str) -> None:
    payload = bytes([0x51]) + uv(5) + b"\x01" + bytes([coder, 0, 0]) + bytes(4)
    with pytest.raises(DeltaError, match=message):
        run("bsdiff3-heatshrink", b"", payload, 5)


def test_empty_zero_run_record_is_refused() -> None:
    rows = uv(zz(0)) + uv(4) + uv(0)
    diff = uv(0) + uv(0)
    hs_rows = heatshrink2.core.encode(rows, window_sz2=8, lookahead_sz2=4)
    hs_diff = heatshrink2.core.encode(diff, window_sz2=8, lookahead_sz2=4)
    payload = (
        bytes([0x51]) + uv(4) + b"\x01" + bytes([0x84, 0x84, 0]) + uv(len(hs_rows))
        + uv(len(hs_diff)) + hs_rows + hs_diff
    )
    with pytest.raises(DeltaError, match="empty zero-run record"):
        run("bsdiff3-heatshrink", bytes(4), payload, 4)


def test_only_the_best_scored_view_of_a_back_end_is_encoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """encode() ranks a back end's rows (plain, +thumb2) by their cheap scores and encodes the
    best; the other only when its score is within SCORE_MARGIN of it."""
    from fwdist.delta import _core

    fitted: list[str] = []
    real = delta._fitted

    def spy(row: _core.Encoder, pair: Pair, max_ram: int | None) -> bytes | None:
        fitted.append(row.name)
        return real(row, pair, max_ram)

    monkeypatch.setattr(delta, "_fitted", spy)
    names = ["bsdiff3-lzma", "bsdiff3-lzma+thumb2"]
    pair = Pair(OLD, NEW)
    scores = {n: delta.ENCODERS[n].score(pair) for n in names}  # type: ignore[misc]
    assert scores == {"bsdiff3-lzma": 3_906, "bsdiff3-lzma+thumb2": 4_201}
    assert not _core.close(scores["bsdiff3-lzma+thumb2"], scores["bsdiff3-lzma"])
    d = encode(OLD, NEW, max_ram=32768, formats=names)
    assert fitted == ["bsdiff3-lzma"] and d.encoder == "bsdiff3-lzma"
    # within the margin the second is encoded too, and the smaller payload still wins
    fitted.clear()
    monkeypatch.setattr(_core, "SCORE_MARGIN", 0.1)
    assert encode(OLD, NEW, max_ram=32768, formats=names) == d
    assert fitted == ["bsdiff3-lzma", "bsdiff3-lzma+thumb2"]


def test_rediffed_copies_rebuild_new_from_another_old() -> None:
    """bsdiff's copies found on one old, re-diffed against another of its size, still spell new."""

    def spell(old: bytes, transform: _bsdiff.Transform) -> bytes:
        triples, diff, extra = transform
        out, pos, d, e = bytearray(), 0, 0, 0
        for seek, x, y in triples:
            pos += seek
            pairs = zip(old[pos : pos + x], diff[d : d + x], strict=True)
            out += bytes((a + b) & 0xFF for a, b in pairs)
            out += extra[e : e + y]
            pos, d, e = pos + x, d + x, e + y
        return bytes(out)

    t = _bsdiff.bsdiff4_triples(OLD, NEW)
    assert _bsdiff.rediff(t, OLD, NEW) == t
    other = bytes(b ^ 0x5A for b in OLD)
    again = _bsdiff.rediff(t, other, NEW)
    assert (again[0], again[2]) == (t[0], t[2]) and again[1] != t[1]
    assert spell(other, again) == spell(OLD, t) == NEW
    with pytest.raises(ValueError, match="does not fit"):
        _bsdiff.rediff(t, other[:100], NEW)


def test_zstd_tables_are_capped_for_large_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Level 22 sizes chain and hash tables to the window; above MAX_TABLE_LOG they are capped
    (the 11 MB pair's zstd-dict encoder held 385 MB of them), below it nothing changes."""
    import zstandard

    from fwdist.delta import _zstd

    made: list[tuple[int, int]] = []
    real = zstandard.ZstdCompressionParameters.from_level

    def spy(level: int, **kw: Any) -> zstandard.ZstdCompressionParameters:
        params = real(level, **kw)
        made.append((params.chain_log, params.hash_log))
        return params

    monkeypatch.setattr(zstandard.ZstdCompressionParameters, "from_level", spy)
    small = _zstd.compress(NEW, 20, OLD, content_size=True)
    assert made == [(18, 17)]  # a small pair: the level's own tables, one call
    made.clear()
    monkeypatch.setattr(_zstd, "MAX_TABLE_LOG", 16)
    capped = _zstd.compress(NEW, 20, OLD, content_size=True)
    assert made == [(18, 17), (16, 16)]
    assert len(capped) >= len(small)


def test_bsdiff_zstd_and_bsdiff_lzma_share_their_zstd_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bsdiff-lzma weighs the very frames bsdiff-zstd stores: one level-22 encode per column."""
    from fwdist.delta import _zstd

    calls: list[int] = []
    real = _zstd.compress

    def spy(data: bytes, window_log: int, *args: Any, **kw: Any) -> bytes:
        calls.append(window_log)
        return real(data, window_log, *args, **kw)

    monkeypatch.setattr(_zstd, "compress", spy)
    d = encode(OLD, NEW, formats=["bsdiff-zstd", "bsdiff-lzma"])
    assert calls == list(_bsdiff.ZSTD_WINDOW_LOGS)  # five columns, once each
    assert d == delta.Delta("bsdiff-lzma", delta.encode_with("bsdiff-lzma", OLD, NEW))


def test_lzma_variants_of_a_long_stream_are_ranked_on_a_sample_then_the_best_two_on_all_of_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 1 MiB sample of pydantic-core's 5.1 MB diff ranked 0/2/2 first, 3,701 bytes worse at
    9e than the 3/0/0 the whole stream ranks first: the sample's best two are ranked again on
    every byte, the others keep the sample's order."""
    seen: list[tuple[int, int]] = []
    real = _lzma.compress_sized

    def spy(data: bytes, props: int, size: int, preset: int = _lzma.FULL_PRESET) -> bytes:
        seen.append((len(data), size))
        return real(data, props, size, preset)

    rng = random.Random(11)
    stream = bytes(rng.choice((0, 0, 0, 1, 4, 255)) for _ in range(3 * SAMPLE_SIZE // 2))
    monkeypatch.setattr(_lzma, "compress_sized", spy)
    ranked = _lzma.rank(stream, ((0, 0, 0), (3, 0, 0), (0, 2, 2)), 1 << 16)
    assert seen == [(SAMPLE_SIZE, 1 << 16)] * 3 + [(3 * SAMPLE_SIZE // 2, 1 << 16)] * 2
    assert sorted(ranked) == [0, 3, 108]
    seen.clear()
    assert _lzma.rank(stream[:SAMPLE_SIZE], ((0, 0, 0), (3, 0, 0)), 1 << 16) in ([0, 3], [3, 0])
    assert seen == [(SAMPLE_SIZE, 1 << 16)] * 2  # a short stream is its own sample: ranked once
