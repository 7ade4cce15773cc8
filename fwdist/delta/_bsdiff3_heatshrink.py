"""The ``bsdiff3-heatshrink`` encoder: the 8 KiB mode, bsdiff's three streams as heatshrink.

For the smallest parts, where even one LZMA probability table (5,228 bytes)
plus its 4 KiB minimum dictionary is too much.  The box's decoder holds, per
present stream, a heatshrink window of 2^W bytes, one :data:`IO_BUFFER` of
input and 16 bytes of state, plus the replay's two buffers
(:data:`._bsdiff3.REPLAY_RAM`): three 2 KiB windows come to 7,504 bytes.
The diff stream is always zero-run coded, since heatshrink's longest match
(2^lookahead bytes) makes a long zero run cost one reference per 16-64 bytes
(nrf52-ble-conn-sd: 6,683 bytes raw, 252 zero-run coded).

Window and lookahead are chosen per stream from :data:`_GRID` -- every
combination whose RAM fits, smallest total payload wins; heatshrink's C
encoder makes trying them all cheap.

Payload format: :mod:`._bsdiff3`'s layout with tag 0x51; each stream's coder
is one byte, ``window log << 4 | lookahead log``, 0 for an absent stream.
"""

from __future__ import annotations

import itertools
from typing import Final

from fwdist.delta import _bsdiff3, _heatshrink
from fwdist.delta._core import Cursor, Encoder, ReadAt, Reader, sample
from fwdist.delta._pair import Pair, bsdiff_score

TAG: Final = 0x51
NAME: Final = "bsdiff3-heatshrink"

Coder = tuple[int, int]
"""(window log, lookahead log); (0, 0) for an absent stream."""

_NONE: Final[Coder] = (0, 0)

_GRID: Final = tuple(itertools.product((8, 9, 10, 11, 12), (4, 5)))
"""(window log, lookahead log) tried per stream: on the device pairs the best was always
W 8-10 with lookahead 4 (zero-run diff, extra) or 4-5 (control rows); 12 serves looser budgets."""


def _read_coders(cur: Cursor) -> list[Coder]:
    coders: list[Coder] = []
    for _ in _bsdiff3.STREAMS:
        b = cur.byte()
        coder = (b >> 4, b & 0x0F)
        if coder != _NONE:
            _heatshrink.check(*coder)
        coders.append(coder)
    return coders


def _open_stream(name: str, payload: ReadAt, start: int, end: int, coder: Coder) -> Reader:
    return _heatshrink.HeatshrinkStream(name, payload, start, end, *coder)


def _stream_ram(coder: Coder) -> int:
    return _heatshrink.ram(coder[0])


LAYOUT: Final = _bsdiff3.Layout[Coder](NAME, TAG, 3, _NONE, _read_coders, _open_stream, _stream_ram)


def _options(data: bytes) -> list[tuple[int, int, Coder, bytes | None]]:
    """(estimated bytes, RAM, coder, body if already made) for every grid point on one stream.

    A stream of at most :data:`._core.SAMPLE_SIZE` bytes is its own sample, so
    its estimates are its bodies; a longer one is estimated on a sample and
    only the chosen coder is run over all of it.
    """
    if not data:
        return [(0, 0, _NONE, b"")]
    probe = sample(data)
    whole = probe is data
    scale = len(data) / len(probe)
    out: list[tuple[int, int, Coder, bytes | None]] = []
    for w, la in _GRID:
        body = _heatshrink.compress(probe, w, la)
        out.append((round(len(body) * scale), _heatshrink.ram(w), (w, la), body if whole else None))
    return out


def fit(pair: Pair, max_ram: int | None) -> bytes | None:
    """The smallest bsdiff3-heatshrink payload whose decoder needs at most ``max_ram`` bytes.

    Every combination of grid points whose RAM fits is weighed by its
    (estimated) bytes; fewest bytes, then least RAM, wins.
    """
    control, _, coded, extra = _bsdiff3.streams(pair)
    streams = [control, coded, extra]
    options = [_options(data) for data in streams]
    room = None if max_ram is None else max_ram - _bsdiff3.REPLAY_RAM
    best: tuple[int, int, tuple[tuple[int, int, Coder, bytes | None], ...]] | None = None
    for combo in itertools.product(*options):
        ram = sum(o[1] for o in combo)
        if room is not None and ram > room:
            continue
        key = (sum(o[0] for o in combo), ram)
        if best is None or key < best[:2]:
            best = (*key, combo)
    if best is None:
        return None
    bodies = [
        _heatshrink.compress(data, *coder) if body is None else body
        for data, (_, _, coder, body) in zip(streams, best[2], strict=True)
    ]
    coders = bytes(c[0] << 4 | c[1] for _, _, c, _ in best[2])
    return LAYOUT.pack(len(pair.new), _bsdiff3.ZERO_RUNS, coders, bodies)


def encode(old: bytes, new: bytes) -> bytes:
    """The unbounded-RAM payload (the largest windows of the grid allowed)."""
    payload = fit(Pair(old, new), None)
    assert payload is not None
    return payload


ENCODER: Final = Encoder(
    NAME, TAG, encode, LAYOUT.apply, LAYOUT.decode_ram, fit, score=bsdiff_score
)
