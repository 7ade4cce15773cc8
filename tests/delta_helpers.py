"""The delta tests' one way to run a decoder over bytes, and their own varints.

``reader`` refuses any read outside its bytes, so every test that decodes
through it also checks that the decoder never reads past the old image or
the payload.  The varints are written independently of :mod:`fwdist.delta`
so that hand-made payloads do not inherit a bug from the code they test.
"""

from __future__ import annotations

from collections.abc import Callable

from fwdist.delta import apply


def reader(data: bytes) -> Callable[[int, int], bytes]:
    """``data`` as a ``ReadAt`` that fails the test on a read outside it."""

    def read(offset: int, size: int) -> bytes:
        assert offset >= 0 and offset + size <= len(data), (offset, size, len(data))
        return data[offset : offset + size]

    return read


def apply_into(
    pieces: list[bytes], encoder: str, old: bytes, payload: bytes, new_size: int
) -> None:
    """Decode ``payload`` against ``old``, appending the output pieces to ``pieces``.

    The list is the caller's, so the pieces written before an error stay inspectable.
    """
    apply(
        encoder,
        reader(old),
        len(old),
        reader(payload),
        len(payload),
        pieces.append,
        new_size=new_size,
    )


def run(encoder: str, old: bytes, payload: bytes, new_size: int) -> list[bytes]:
    """The pieces ``payload`` decodes to (errors propagate)."""
    pieces: list[bytes] = []
    apply_into(pieces, encoder, old, payload, new_size)
    return pieces


def uv(v: int) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v >> 7 else 0))
        v >>= 7
        if not v:
            return bytes(out)


def zz(v: int) -> int:
    """Zigzag: signed to unsigned."""
    return v << 1 if v >= 0 else ((-v) << 1) - 1


def bsdiff_layout(tag: int, new_size: int, coders: bytes, bodies: list[bytes]) -> bytes:
    """A bsdiff back end's payload: tag, new_size, coders, four stream lengths, five streams."""
    head = bytes([tag]) + uv(new_size) + coders
    return head + b"".join(uv(len(b)) for b in bodies[:-1]) + b"".join(bodies)
