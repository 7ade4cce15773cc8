"""The ``bsdiff3-lzma`` encoder: bsdiff's three streams as raw LZMA2, sized to a RAM budget.

The box's decoder holds, per present stream (all three are open at once), the
LZMA probabilities ``2 * (1846 + 0x300 << (lc + lp))`` bytes, a dictionary of
the declared size, 128 bytes of decoder state and one :data:`IO_BUFFER` of
input; and the replay's two buffers (:data:`._bsdiff3.REPLAY_RAM`).  That is
exactly what :func:`decode_ram` adds up from the header.  At 32 KiB every
device pair we have fits with lc + lp <= 1 and dictionaries of 4-11 KiB, and
the dictionary size barely matters there (hackrf-one: 11,858 bytes at 26 KiB
against 11,857 at 1 MiB).  It cannot reach 8 KiB: three probability tables
alone are 15,684 bytes (:mod:`._bsdiff3_heatshrink` is the 8 KiB mode).

Choosing lc/lp/pb: every variant is ranked on every stream by a cheap
estimate (:func:`._lzma.rank`), then each stream is encoded once at 9e with
the best-ranked variant that fits.  The diff stream is encoded twice, raw and
zero-run coded, and the smaller kept: the cheap estimate misjudges that
choice (cyfmac43430: it prefers zero runs by 1,900 bytes, 9e prefers raw by
1,060).

Payload format: :mod:`._bsdiff3`'s layout with tag 0x41; each stream's coder
is its LZMA properties byte and ``uv`` dictionary size in bytes, or the single
byte 0xFF for an absent stream.
"""

from __future__ import annotations

from typing import Final

from fwdist.delta import _bsdiff3, _lzma
from fwdist.delta._core import (
    IO_BUFFER,
    Cursor,
    DeltaError,
    Encoder,
    ReadAt,
    Reader,
)
from fwdist.delta._pair import Pair, bsdiff_score
from fwdist.leb128 import encode as uv

TAG: Final = 0x41
NAME: Final = "bsdiff3-lzma"

_ABSENT: Final = 0xFF

MAX_DICT: Final = 1 << 20
"""Largest dictionary a stream may declare (and what an unbounded budget gives a stream)."""

# (lc, lp, pb) tried on every stream; each was the best on some stream of the device or x86
# pairs (0/2/2 on 4-byte-aligned code, 3/0/0 on literal-heavy extra, 1/0/0 on control rows)
_VARIANTS: Final = ((0, 0, 0), (1, 0, 0), (2, 0, 0), (3, 0, 0), (0, 2, 2))

Coder = tuple[int, int]
"""(props, dictionary bytes) of a present stream, (0xFF, 0) of an absent one."""

_NONE: Final[Coder] = (_ABSENT, 0)


def _read_coders(cur: Cursor) -> list[Coder]:
    coders: list[Coder] = []
    for name in _bsdiff3.STREAMS:
        props = cur.byte()
        if props == _ABSENT:
            coders.append(_NONE)
            continue
        _lzma.check_props(f"{NAME} {name} stream", props)
        size = cur.uv()
        if not 1 <= size <= MAX_DICT:
            raise DeltaError(
                f"{NAME} {name} stream: dictionary of {size} bytes not in 1..{MAX_DICT}"
            )
        coders.append((props, size))
    return coders


def _open_stream(name: str, payload: ReadAt, start: int, end: int, coder: Coder) -> Reader:
    props, size = coder
    return _lzma.LzmaStream(
        name, payload, start, end, props, 0, dict_size=size, read_size=IO_BUFFER
    )


def _stream_ram(coder: Coder) -> int:
    return _lzma.small_ram(coder[0], coder[1], IO_BUFFER)


_CODER_MAX: Final = 3 * (1 + 3)
"""Three props bytes and dictionary varints: MAX_DICT (2^20) takes 3 bytes at most."""

LAYOUT: Final = _bsdiff3.Layout[Coder](
    NAME, TAG, _CODER_MAX, _NONE, _read_coders, _open_stream, _stream_ram
)


def _fixed_ram(props: int) -> int:
    """A stream's RAM besides its dictionary."""
    return _lzma.small_ram(props, 0, IO_BUFFER)


def _dictionaries(needs: list[int], room: int) -> list[int] | None:
    """Dictionary sizes within ``room`` bytes: small streams get all they need, the rest share.

    None when some stream would get less than liblzma's 4 KiB minimum and
    more than nothing would do (a stream shorter than its dictionary needs no more).
    """
    sizes = [0] * len(needs)
    left = room
    order = sorted(range(len(needs)), key=lambda i: needs[i])
    for rank, i in enumerate(order):
        share = left // (len(needs) - rank)
        sizes[i] = min(needs[i], share, MAX_DICT)
        if sizes[i] < min(needs[i], _lzma.MIN_DICT_SIZE):
            return None
        left -= sizes[i]
    return sizes


def _plan(streams: list[bytes], budget: int) -> tuple[list[int], list[int]] | None:
    """(props, dictionary size) per stream within ``budget``, or None.

    Each stream starts at its best-ranked variant; while the dictionaries do
    not fit, the stream whose probabilities cost most falls back to its
    best-ranked variant with fewer literal contexts.
    """
    ranks = [_lzma.rank(s, _VARIANTS, MAX_DICT) if s else [] for s in streams]
    choice = [r[0] if r else _ABSENT for r in ranks]
    present = [i for i, s in enumerate(streams) if s]
    while True:
        room = budget - _bsdiff3.REPLAY_RAM - sum(_fixed_ram(choice[i]) for i in present)
        sizes = _dictionaries([len(streams[i]) for i in present], room) if room >= 0 else None
        if sizes is not None:
            dicts = [0] * len(streams)
            for i, size in zip(present, sizes, strict=True):
                dicts[i] = size
            return choice, dicts
        heavy = [i for i in present if _lzma.probs_ram(choice[i]) > _lzma.probs_ram(0)]
        if not heavy:
            return None
        i = max(heavy, key=lambda k: _lzma.probs_ram(choice[k]))
        choice[i] = next(p for p in ranks[i] if _lzma.probs_ram(p) < _lzma.probs_ram(choice[i]))


def _pack(
    new_size: int,
    flags: int,
    streams: list[bytes],
    plan: tuple[list[int], list[int]],
    bodies: dict[tuple[int, int, int], bytes],
) -> bytes:
    """The payload for ``plan``; ``bodies`` keeps each (stream, props, size) encoded once."""
    coders = bytearray()
    stored = []
    for i, (data, props, size) in enumerate(zip(streams, *plan, strict=True)):
        if not data:
            coders.append(_ABSENT)
            stored.append(b"")
            continue
        coders += bytes([props]) + uv(size)
        key = (i if i != 1 else 1 + 2 * flags, props, size)
        if key not in bodies:
            bodies[key] = _lzma.compress_sized(data, props, size)
        stored.append(bodies[key])
    return LAYOUT.pack(new_size, flags, bytes(coders), stored)


def fit(pair: Pair, max_ram: int | None) -> bytes | None:
    """The smallest bsdiff3-lzma payload whose decoder needs at most ``max_ram`` bytes.

    Diff raw and diff zero-run coded are planned and encoded each; the smaller payload wins.
    """
    control, diff, zero_coded, extra = _bsdiff3.streams(pair)
    budget = 1 << 62 if max_ram is None else max_ram
    best: bytes | None = None
    bodies: dict[tuple[int, int, int], bytes] = {}
    for flags, coded in ((0, diff), (_bsdiff3.ZERO_RUNS, zero_coded)):
        streams = [control, coded, extra]
        plan = _plan(streams, budget)
        if plan is None:
            continue
        payload = _pack(len(pair.new), flags, streams, plan, bodies)
        if best is None or len(payload) < len(best):
            best = payload
        if not diff:
            break
    return best


def encode(old: bytes, new: bytes) -> bytes:
    """The unbounded-RAM payload (every stream gets the dictionary it can use)."""
    payload = fit(Pair(old, new), None)
    assert payload is not None
    return payload


ENCODER: Final = Encoder(
    NAME, TAG, encode, LAYOUT.apply, LAYOUT.decode_ram, fit, score=bsdiff_score
)
