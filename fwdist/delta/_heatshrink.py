"""heatshrink streams: compress, decode in a window of 2^W bytes, size the box's decoder.

heatshrink (LZSS with bit-packed literals and back-references, no entropy
stage) is the coder of the 8 KiB mode: its decoder holds only the window and
its input buffer, ``(1 << W) + input_buffer_size`` bytes in the C library's
``heatshrink_decoder`` plus a dozen bytes of state.  The ``heatshrink2``
package wraps that same C decoder, so the Python side allocates exactly the
window and input buffer a box would (``input_buffer_size`` is
:data:`IO_BUFFER`).  A stream stores no header: window and lookahead come
from the payload's header.
"""

from __future__ import annotations

import array
from typing import Final

import heatshrink2.core

from fwdist.delta._core import IO_BUFFER, DeltaError, ReadAt, Reader, Source

MIN_WINDOW_LOG: Final = 4
MAX_WINDOW_LOG: Final = 14
"""Largest window a stream may declare (16 KiB: more than any budget this coder is for)."""
MIN_LOOKAHEAD_LOG: Final = 3

STATE_BYTES: Final = 16
"""``heatshrink_decoder``'s fields besides its buffers (counters, state, bit index)."""


def check(window_log: int, lookahead_log: int) -> None:
    """The limits heatshrink itself has, and the window cap: DeltaError outside them."""
    if not MIN_WINDOW_LOG <= window_log <= MAX_WINDOW_LOG:
        raise DeltaError(f"heatshrink window log {window_log} not in 4..{MAX_WINDOW_LOG}")
    if not MIN_LOOKAHEAD_LOG <= lookahead_log < window_log:
        raise DeltaError(f"heatshrink lookahead log {lookahead_log} not in 3..{window_log - 1}")


def compress(data: bytes, window_log: int, lookahead_log: int) -> bytes:
    out = heatshrink2.core.encode(data, window_sz2=window_log, lookahead_sz2=lookahead_log)
    assert isinstance(out, bytes)
    return out


def ram(window_log: int) -> int:
    """One box-side heatshrink decoder: window, input buffer, state."""
    return (1 << window_log) + IO_BUFFER + STATE_BYTES


class HeatshrinkStream(Reader):
    """Reader of one stored heatshrink stream, fed :data:`IO_BUFFER` bytes at a time.

    Each feed yields a bounded amount of output (at most 2^lookahead bytes per
    13 bits or so of input), kept until it is asked for: a bomb costs time, not memory.
    """

    def __init__(
        self, name: str, payload: ReadAt, start: int, end: int, window_log: int, lookahead: int
    ) -> None:
        super().__init__(name)
        check(window_log, lookahead)
        self._source = Source(b"", payload, start, end)
        self._decoder = heatshrink2.core.Encoder(
            heatshrink2.core.Reader(
                input_buffer_size=IO_BUFFER, window_sz2=window_log, lookahead_sz2=lookahead
            )
        )
        self._out = b""
        self._off = 0
        self._done = False

    def _pull(self, size: int) -> bytes:
        while self._off >= len(self._out) and not self._done:
            data = self._source.read(IO_BUFFER)
            try:
                if data:
                    got = self._decoder.fill(array.array("B", data))
                else:
                    got = self._decoder.finish()
                    self._done = True
            except (RuntimeError, ValueError) as exc:
                raise DeltaError(f"{self.name} stream corrupt: {exc}") from exc
            self._out, self._off = bytes(got), 0
        out = self._out[self._off : self._off + size]
        self._off += len(out)
        return out
