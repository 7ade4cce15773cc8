"""A strict Intel HEX reader, and the flat image a device pair's HEX file stands for.

Nordic's connectivity firmware ships as Intel HEX inside the ``pc-ble-driver-py``
wheels. A delta is computed between flat images (what the box's flash holds), so
the HEX records are laid out over an address range with the gaps erased (0xFF,
as NOR flash reads after an erase). Strict because a benchmark input that parses
"mostly" would move every figure silently: a bad checksum, a short line, an
overlap or data after the end record is an error naming the line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ERASED = 0xFF
MIN_LAST_SEGMENT = 64  # a shorter last segment is a marker word (nRF52 settings), not image

_DATA, _EOF, _SEGMENT, _START_SEGMENT, _LINEAR, _START_LINEAR = range(6)


class HexError(ValueError):
    """The text is not well-formed Intel HEX (the message names the line)."""


@dataclass(frozen=True)
class Segment:
    """Contiguous bytes at ``address``."""

    address: int
    data: bytes

    @property
    def end(self) -> int:
        return self.address + len(self.data)


def _record(lineno: int, line: str) -> tuple[int, int, int, bytes]:
    if not line.startswith(":"):
        raise HexError(f"line {lineno}: does not start with ':'")
    try:
        raw = bytes.fromhex(line[1:])
    except ValueError:
        raise HexError(f"line {lineno}: not hexadecimal") from None
    if len(line) % 2 != 1 or len(raw) < 5:
        raise HexError(f"line {lineno}: too short or odd length")
    count, kind = raw[0], raw[3]
    if len(raw) != count + 5:
        raise HexError(f"line {lineno}: byte count {count} does not match the line's length")
    if sum(raw) & 0xFF:
        raise HexError(f"line {lineno}: bad checksum")
    return kind, (raw[1] << 8) | raw[2], count, raw[4 : 4 + count]


def parse(text: str) -> list[Segment]:
    """Every data byte of ``text``, as sorted, merged, non-overlapping segments."""
    chunks: list[Segment] = []
    base = 0
    ended = False
    for lineno, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line:
            continue
        if ended:
            raise HexError(f"line {lineno}: data after the end-of-file record")
        kind, offset, count, data = _record(lineno, line)
        if kind == _DATA:
            if data:
                chunks.append(Segment(base + offset, data))
        elif kind == _EOF:
            if count:
                raise HexError(f"line {lineno}: end-of-file record carries data")
            ended = True
        elif kind in (_SEGMENT, _LINEAR):
            if count != 2:
                raise HexError(f"line {lineno}: address record must carry 2 bytes")
            value = int.from_bytes(data, "big")
            base = value << 4 if kind == _SEGMENT else value << 16
        elif kind in (_START_SEGMENT, _START_LINEAR):
            if count != 4:
                raise HexError(f"line {lineno}: start address record must carry 4 bytes")
        else:
            raise HexError(f"line {lineno}: unknown record type {kind:#04x}")
    if not ended:
        raise HexError("no end-of-file record")
    return merge(chunks)


def merge(chunks: Iterable[Segment]) -> list[Segment]:
    """Sort ``chunks`` and join the touching ones; overlapping bytes are an error."""
    out: list[Segment] = []
    for c in sorted(chunks, key=lambda s: s.address):
        if out and c.address < out[-1].end:
            raise HexError(f"data overlaps at {c.address:#x}")
        if out and c.address == out[-1].end:
            out[-1] = Segment(out[-1].address, out[-1].data + c.data)
        else:
            out.append(c)
    return out


def flat_image(segments: Iterable[Segment], start: int, end: int) -> bytes:
    """The image over ``[start, end)``: from ``start`` to the last data byte, gaps 0xFF.

    Data outside the range is ignored; a last segment shorter than
    :data:`MIN_LAST_SEGMENT` bytes is dropped (an isolated marker word, such as
    the nRF52 bootloader-settings word at 0x50000 just past the application).
    """
    inside: list[Segment] = []
    for s in segments:
        lo, hi = max(s.address, start), min(s.end, end)
        if lo < hi:
            inside.append(Segment(lo, s.data[lo - s.address : hi - s.address]))
    if inside and len(inside[-1].data) < MIN_LAST_SEGMENT:
        inside.pop()
    if not inside:
        raise HexError(f"no data in [{start:#x}, {end:#x})")
    image = bytearray([ERASED]) * (inside[-1].end - start)
    for s in inside:
        image[s.address - start : s.end - start] = s.data
    return bytes(image)
