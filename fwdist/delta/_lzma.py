"""Raw LZMA2 streams stored without their one-byte end marker: compress, check, decode, size.

The decoder walks a stored stream's chunk headers before decoding a byte of
it, so a stream must end exactly where its length says; the end marker that
was not stored is put back behind it.  RAM is counted the way the LZMA SDK's
LzmaDec/Lzma2Dec lay it out, since that is what a device would run.
"""

from __future__ import annotations

import lzma
from collections.abc import Iterable
from typing import Final

from fwdist.delta._core import READ_SIZE, DeltaError, ReadAt, Reader, Source, read_exact, sample

MIN_DICT_LOG: Final = 12  # liblzma's smallest dictionary, 4 KiB

# LzmaDec's CLzmaDec plus Lzma2Dec's few fields, without probabilities and
# dictionary, on a 32-bit MCU: about 100 bytes, rounded up.
_STATE_BYTES: Final = 128


FULL_PRESET: Final = 9 | lzma.PRESET_EXTREME
"""What a payload is encoded at; the cheap estimate below only ranks lc/lp/pb."""

ESTIMATE_PRESET: Final = 1
"""The preset (with :data:`_ESTIMATE_NICE_LEN`) lc/lp/pb are ranked at before one 9e encode.

Measured on the 24 streams of the six device pairs, five variants each:
ranking at preset 1 with nice_len 273 picks the 9e-best variant on 22 of 24
streams and loses 9 bytes in all, in a tenth of the time of ranking at 9e
(0.21 s against 2.32 s); preset 6 loses 38 bytes (its nice_len of 64 cuts
the long zero runs of a diff short), preset 6 with nice_len 273 costs as
much as 9e.
"""

_ESTIMATE_NICE_LEN: Final = 273

MIN_DICT_SIZE: Final = 1 << MIN_DICT_LOG


def _filters(props: int, dict_size: int, preset: int = FULL_PRESET) -> list[dict[str, int]]:
    lc, lp, pb = lc_lp_pb(props)
    spec = {
        "id": lzma.FILTER_LZMA2,
        "preset": preset,
        "dict_size": max(MIN_DICT_SIZE, dict_size),
        "lc": lc,
        "lp": lp,
        "pb": pb,
    }
    if preset == ESTIMATE_PRESET:
        spec["nice_len"] = _ESTIMATE_NICE_LEN
    return [spec]


def rank(data: bytes, variants: Iterable[tuple[int, int, int]], dict_size: int) -> list[int]:
    """The props bytes of ``variants`` (lc, lp, pb), best first, as the cheap estimate ranks them.

    A stream longer than :data:`._core.SAMPLE_SIZE` is ranked on its
    :func:`._core.sample`, then the sample's best two are ranked again on the
    whole stream: on pydantic-core 2.14.5 -> 2.14.6 (a 5.1 MB diff) the sample
    put 0/2/2 first by 14 bytes of 58 K, 3,701 bytes worse at 9e than the 3/0/0
    the whole stream ranks first.  Two whole-stream passes, not one per
    variant, keep the choice near the sample's cost.  Ties keep the order given.
    """
    props = [props_byte(lc, lp, pb) for lc, lp, pb in variants]
    probe = sample(data)
    ranked = _estimated(probe, props, dict_size)
    if len(probe) == len(data):
        return ranked
    return _estimated(data, ranked[:2], dict_size) + ranked[2:]


def _estimated(data: bytes, props: list[int], dict_size: int) -> list[int]:
    """``props`` sorted by their estimate on ``data`` (stable: ties keep the order given)."""
    dict_size = min(dict_size, len(data))  # no longer: same output, and liblzma sets it up faster
    sized = [len(compress_sized(data, p, dict_size, ESTIMATE_PRESET)) for p in props]
    return [p for _, p in sorted(zip(sized, props, strict=True), key=lambda t: t[0])]


def props_byte(lc: int, lp: int, pb: int) -> int:
    """The standard LZMA properties byte, as in an .lzma header or an LZMA2 chunk."""
    return (pb * 5 + lp) * 9 + lc


def check_props(what: str, props: int) -> None:
    """DeltaError unless ``props`` is a properties byte LZMA2 allows (lc + lp <= 4)."""
    if props >= 225:
        raise DeltaError(f"{what}: coder {props:#04x} unknown")
    lc, lp, _ = lc_lp_pb(props)
    if lc + lp > 4:
        raise DeltaError(f"{what}: lc + lp = {lc + lp} exceeds LZMA2's 4")


def lc_lp_pb(props: int) -> tuple[int, int, int]:
    return props % 9, props // 9 % 5, props // 45


def compress(data: bytes, props: int, dict_log: int, preset: int = FULL_PRESET) -> bytes:
    """Raw LZMA2 at preset 9e, minus the one-byte end marker the decoder puts back."""
    return compress_sized(data, props, 1 << dict_log, preset)


def compress_sized(data: bytes, props: int, dict_size: int, preset: int = FULL_PRESET) -> bytes:
    """:func:`compress` with any dictionary size (liblzma uses at least 4 KiB).

    A dictionary larger than the data buys nothing, so a decoder may allocate
    ``min(dict_size, len(data))`` -- which is what the small-RAM formats declare.
    """
    raw = lzma.compress(data, format=lzma.FORMAT_RAW, filters=_filters(props, dict_size, preset))
    if not raw or raw[-1] != 0x00:
        raise AssertionError("liblzma produced an LZMA2 stream without an end marker")
    return raw[:-1]


def ram(props: int, dict_log: int) -> int:
    """RAM of one streaming LZMA2 decoder the way LzmaDec/Lzma2Dec (LZMA SDK) lays it out.

    The dictionary (which is also the output history), 16-bit probabilities --
    1846 fixed plus 0x300 per literal coder, and there are 2^(lc+lp) literal
    coders -- the decoder's own state, and one input buffer.
    """
    return (1 << dict_log) + probs_ram(props) + _STATE_BYTES + READ_SIZE


def probs_ram(props: int) -> int:
    """LzmaDec's 16-bit probabilities: 1846 fixed plus 0x300 per literal coder (2^(lc+lp))."""
    lc, lp, _ = lc_lp_pb(props)
    return (1846 + (0x300 << (lc + lp))) * 2


def small_ram(props: int, dict_size: int, in_buffer: int) -> int:
    """One LZMA2 decoder of the small-RAM formats: dictionary, probabilities, state, input."""
    return dict_size + probs_ram(props) + _STATE_BYTES + in_buffer


def _check_chunks(payload: ReadAt, start: int, end: int, props: int) -> None:
    """Walk the LZMA2 chunk headers of a stored stream before decoding a byte of it.

    The stream must end exactly at ``end`` (its end marker is not stored), and
    every chunk that sets properties must set the ones the payload header
    declared: liblzma would accept any, but a device decoder sizes its
    probability table from the header, and ``decode_ram`` reports that size.
    """
    pos = start
    while pos < end:
        control = read_exact(payload, pos, 1, "payload")[0]
        if control in (1, 2):  # stored chunk (1: with dictionary reset)
            head = 3
        elif control >= 0x80:  # LZMA chunk; bits 5-6 say what it resets
            head = 6 if control >= 0xC0 else 5
        else:  # 0x00 would be the end marker, which is not stored; 0x03-0x7F are invalid
            raise DeltaError(f"LZMA2 chunk control byte {control:#04x} invalid")
        if pos + head > end:
            raise DeltaError("LZMA2 stream truncated")
        fields = read_exact(payload, pos + 1, head - 1, "payload")
        if control < 0x80:
            size = int.from_bytes(fields[0:2], "big") + 1
        else:
            size = int.from_bytes(fields[2:4], "big") + 1
            if head == 6 and fields[4] != props:
                raise DeltaError(
                    f"LZMA2 chunk properties {fields[4]:#04x} differ from the header's {props:#04x}"
                )
        pos += head + size
    if pos != end:
        raise DeltaError("LZMA2 stream truncated")


class LzmaStream(Reader):
    """Reader of one stored raw LZMA2 stream: liblzma, fed 16 KiB at a time.

    ``decompress(data, max_length)`` keeps unconsumed input inside the
    decompressor and never returns more than asked for, so neither the stream
    nor its output is ever held whole.  Every liblzma error becomes DeltaError.
    """

    def __init__(
        self,
        name: str,
        payload: ReadAt,
        start: int,
        end: int,
        props: int,
        dict_log: int,
        *,
        dict_size: int | None = None,
        read_size: int = READ_SIZE,
    ) -> None:
        super().__init__(name)
        _check_chunks(payload, start, end, props)
        self._source = Source(b"", payload, start, end, trailer=b"\x00")
        self._read_size = read_size
        size = 1 << dict_log if dict_size is None else dict_size
        # liblzma's dictionary is at least 4 KiB; a smaller declared one bounds the output
        # instead (no match can reach further back than the stream's start)
        self._left = size if size < MIN_DICT_SIZE else -1
        try:
            self._lzma = lzma.LZMADecompressor(
                format=lzma.FORMAT_RAW, filters=_filters(props, size)
            )
        except (lzma.LZMAError, ValueError) as exc:
            raise DeltaError(f"{name} stream: {exc}") from exc

    def _pull(self, size: int) -> bytes:
        while not self._lzma.eof:
            data = b""
            if self._lzma.needs_input:
                data = self._source.read(self._read_size)
                if not data:
                    return b""  # input exhausted before the end marker: "ends early"
            try:
                out = self._lzma.decompress(data, max_length=size)
            except lzma.LZMAError as exc:
                raise DeltaError(f"{self.name} stream corrupt: {exc}") from exc
            if out:
                if self._left >= 0:
                    self._left -= len(out)
                    if self._left < 0:
                        raise DeltaError(f"{self.name} stream outgrows its dictionary")
                return out
        return b""
