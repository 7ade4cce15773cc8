"""Raw LZMA2 streams stored without their one-byte end marker: compress, check, decode, size.

The decoder walks a stored stream's chunk headers before decoding a byte of
it, so a stream must end exactly where its length says; the end marker that
was not stored is put back behind it.  RAM is counted the way the LZMA SDK's
LzmaDec/Lzma2Dec lay it out, since that is what a device would run.
"""

from __future__ import annotations

import lzma
from typing import Final

from fwdist.delta._core import READ_SIZE, DeltaError, ReadAt, Reader, Source, read_exact

MIN_DICT_LOG: Final = 12  # liblzma's smallest dictionary, 4 KiB

# LzmaDec's CLzmaDec plus Lzma2Dec's few fields, without probabilities and
# dictionary, on a 32-bit MCU: about 100 bytes, rounded up.
_STATE_BYTES: Final = 128


def _filters(props: int, dict_log: int) -> list[dict[str, int]]:
    lc, lp, pb = lc_lp_pb(props)
    return [
        {
            "id": lzma.FILTER_LZMA2,
            "preset": 9 | lzma.PRESET_EXTREME,
            "dict_size": 1 << dict_log,
            "lc": lc,
            "lp": lp,
            "pb": pb,
        }
    ]


def props_byte(lc: int, lp: int, pb: int) -> int:
    """The standard LZMA properties byte, as in an .lzma header or an LZMA2 chunk."""
    return (pb * 5 + lp) * 9 + lc


def lc_lp_pb(props: int) -> tuple[int, int, int]:
    return props % 9, props // 9 % 5, props // 45


def compress(data: bytes, props: int, dict_log: int) -> bytes:
    """Raw LZMA2 at preset 9e, minus the one-byte end marker the decoder puts back."""
    raw = lzma.compress(data, format=lzma.FORMAT_RAW, filters=_filters(props, dict_log))
    if not raw or raw[-1] != 0x00:
        raise AssertionError("liblzma produced an LZMA2 stream without an end marker")
    return raw[:-1]


def ram(props: int, dict_log: int) -> int:
    """RAM of one streaming LZMA2 decoder the way LzmaDec/Lzma2Dec (LZMA SDK) lays it out.

    The dictionary (which is also the output history), 16-bit probabilities --
    1846 fixed plus 0x300 per literal coder, and there are 2^(lc+lp) literal
    coders -- the decoder's own state, and one input buffer.
    """
    lc, lp, _ = lc_lp_pb(props)
    probs = (1846 + (0x300 << (lc + lp))) * 2
    return (1 << dict_log) + probs + _STATE_BYTES + READ_SIZE


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
        self, name: str, payload: ReadAt, start: int, end: int, props: int, dict_log: int
    ) -> None:
        super().__init__(name)
        _check_chunks(payload, start, end, props)
        self._source = Source(b"", payload, start, end, trailer=b"\x00")
        try:
            self._lzma = lzma.LZMADecompressor(
                format=lzma.FORMAT_RAW, filters=_filters(props, dict_log)
            )
        except (lzma.LZMAError, ValueError) as exc:
            raise DeltaError(f"{name} stream: {exc}") from exc

    def _pull(self, size: int) -> bytes:
        while not self._lzma.eof:
            data = b""
            if self._lzma.needs_input:
                data = self._source.read(READ_SIZE)
                if not data:
                    return b""  # input exhausted before the end marker: "ends early"
            try:
                out = self._lzma.decompress(data, max_length=size)
            except lzma.LZMAError as exc:
                raise DeltaError(f"{self.name} stream corrupt: {exc}") from exc
            if out:
                return out
        return b""
