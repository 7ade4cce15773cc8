"""Unsigned LEB128 varints, the one integer encoding of fwdist's binary formats.

Format 2 manifests, protocol 2 frames and delta payloads all count lengths and
offsets that are usually small: LEB128 gives 0-127 one byte and grows by a byte
per 7 bits. Every writer uses :func:`encode`, so the formats cannot drift apart.

Readers must also refuse what a writer never makes — a value in a longer form
than it needs, or more bytes than the field allows — so that one value has one
encoding (a signed or hashed body then has one form too). :func:`decode` does
that for new code; the older readers in :mod:`fwdist.air`,
:mod:`fwdist.protocol_v2` and :mod:`fwdist.delta` check the same rules in
their own error types.
"""

from __future__ import annotations

__all__ = ["Leb128Error", "decode", "encode"]


class Leb128Error(ValueError):
    """The bytes hold no varint in its shortest form within the allowed length."""


def encode(value: int) -> bytes:
    """``value`` (>= 0) in unsigned LEB128, shortest form."""
    if value < 0:
        raise ValueError(f"LEB128 encodes unsigned integers, got {value}")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode(data: bytes | bytearray | memoryview, pos: int = 0, *,
           max_bytes: int = 5) -> tuple[int, int]:
    """The varint at ``data[pos:]`` and the position after it.

    Raises :class:`Leb128Error` if the data ends inside it, if it takes more than
    ``max_bytes`` bytes, or if it is not in its shortest form (a final 0x00 byte
    after the first).
    """
    value = shift = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise Leb128Error("data ends inside a varint")
        b = data[pos + i]
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            if b == 0 and i:
                raise Leb128Error("varint not in its shortest form")
            return value, pos + i + 1
    raise Leb128Error(f"varint longer than {max_bytes} bytes")
