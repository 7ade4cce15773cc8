"""The matcher behind every bsdiff back end: which bytes of new are copied (with a diff) from old.

The result is a *cover list*: ``(old_start, new_start, length)`` runs, in new
order, that do not overlap in new.  A cover's bytes go to the diff stream as
``new - old``; bytes no cover holds go to the extra stream raw.  That is the
bsdiff transform; only the choice of covers differs from bsdiff's own.

How covers are chosen, and why (after HDiffPatch's matcher, with a cost model
fitted to the column back ends):

1. **Longest exact match at every position of new**, from one suffix array
   over ``old + new`` and its LCP array (both C, :mod:`pydivsufsort`): the
   nearest old suffix before and after each new suffix in suffix order holds
   its longest match.  Everything after that is numpy over arrays, so the
   matcher runs at C speed.
2. **A cover is a displacement, not a match.**  Firmware changes shift code,
   and every shifted pointer breaks an exact match every few dozen bytes.
   A cover keeps its displacement across such mismatches (they become small,
   repeating diff bytes that compress to almost nothing) and ends only where
   a *much* longer match at another displacement starts (:data:`SWITCH_MARGIN`
   bytes longer: a new control triple costs a few bytes) or where mismatches
   outweigh matches (bsdiff's score: a matched byte +1, a mismatch -1).
3. **A new cover prefers the last displacement** when it is nearly as good:
   the seek column then stores 0, the cheapest triple there is.
4. **Short matches are not worth a triple**: a match shorter than
   :data:`MIN_MATCH` starts no cover (bsdiff's threshold is 8 bytes longer
   than what the current displacement already gives, everywhere).

Memory: about 33 bytes per byte of ``old + new`` at the peak (suffix and LCP
arrays 4 each, one 8-byte running minimum and its temporaries).  Above
:data:`MAX_IMAGE` bytes the caller uses bsdiff's own transform, whose suffix
sort needs 16 bytes per old byte.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt
import pydivsufsort

MIN_MATCH: Final = 6
"""Shortest exact match that may start a cover.

Bytes of bsdiff-lzma, summed over the six device pairs and the sample
firmware, against 47,581 with bsdiff's transform (measured with a switch
margin of 8): 6 -> 46,565, 8 -> 46,786, 10 -> 47,496; 4 starts covers that
cost more control bytes than they save (47,053 with a 4-byte floor for the
last displacement alone).
"""

SWITCH_MIN: Final = 8
"""Shortest match that may end a live cover for another displacement."""

SWITCH_MARGIN: Final = 4
"""How many more bytes a match must hold than the current displacement does over its span.

Bytes on the pairs below: 4 -> 46,458, 8 (bsdiff's margin) -> 46,565, 16 -> 46,821.
"""

MAX_IMAGE: Final = 4 * 1024 * 1024
"""Largest old + new this matcher takes on; bigger pairs use bsdiff's transform.

Every MCU image we have fits (40-800 KB), and the peak stays near 140 MB.
"""

_FIRST_WINDOW: Final = 512
"""Bytes a cover is first examined over; the window grows 4x while the cover lasts."""

Ints = npt.NDArray[np.int64]
Bytes = npt.NDArray[np.uint8]


class Cover(NamedTuple):
    """``length`` bytes of new at ``new_start`` are old's at ``old_start`` plus a diff."""

    old_start: int
    new_start: int
    length: int


def longest_matches(old: bytes, new: bytes) -> tuple[Ints, Ints]:
    """For each position of new: the length of its longest match in old, and where it starts.

    A length of 0 has position 0.  One suffix array over ``old + new`` with
    its LCP array; for a new suffix, the longest match is with the nearest old
    suffix before or after it in suffix order (the LCP minimum over the ranks
    between).  An old suffix's comparison may run on into new's bytes: the
    length is clamped to what is left of old, which keeps every match true but
    can make one that reaches old's last bytes shorter than the longest (an
    old suffix further away in suffix order may hold more); elsewhere it is
    the longest.
    """
    n, m = len(old), len(new)
    length = np.zeros(m, dtype=np.int64)
    where = np.zeros(m, dtype=np.int64)
    if not n or not m:
        return length, where
    text = old + new
    sa = pydivsufsort.divsufsort(text)  # int32 below 2 GiB
    lcp = pydivsufsort.kasai(text, sa)  # lcp[r]: between ranks r and r + 1
    del text
    big = len(sa) + 1
    is_old = sa < n
    ranks = np.arange(len(sa), dtype=sa.dtype)
    for direction in (1, -1):
        s = sa[::direction]
        o = is_old[::direction]
        # the LCP between a rank and the one before it, walking in this direction
        step = np.concatenate(([0], lcp[:-1])) if direction == 1 else lcp[::-1]
        # running minimum of step since the last old rank, for every rank at once:
        # each old rank starts a segment, shifted below every earlier one by big
        run = np.cumsum(o, dtype=np.int64)
        run *= -big
        run += step
        run[o] += big - 1 - step[o]
        np.minimum.accumulate(run, out=run)
        run += np.cumsum(o, dtype=np.int64) * big
        last_old = np.maximum.accumulate(np.where(o, ranks, -1))
        pick = ~o & (last_old >= 0)
        pos = s[last_old[pick]].astype(np.int64)
        got = np.minimum(run[pick], n - pos)
        del run, last_old
        at = s[pick].astype(np.int64) - n
        better = got > length[at]
        length[at[better]] = got[better]
        where[at[better]] = pos[better]
    where[length == 0] = 0
    return length, where


def _agree(a: Bytes, a0: int, b: Bytes, b0: int, size: int) -> npt.NDArray[np.bool_]:
    """``a[a0 + k] == b[b0 + k]`` for k < size (the caller keeps both in range)."""
    return np.asarray(a[a0 : a0 + size] == b[b0 : b0 + size])


def _held(o: Bytes, w: Bytes, i: int, d: int, size: int) -> int:
    """How many of new's ``size`` bytes from ``i`` equal old's at displacement ``d``."""
    if i + d < 0:
        return 0
    size = min(size, len(w) - i, len(o) - (i + d))
    if size <= 0:
        return 0
    return int(np.count_nonzero(_agree(w, i, o, i + d, size)))


def _extend_back(o: Bytes, w: Bytes, j: int, d: int, floor: int) -> int:
    """How far a cover at displacement d starting at j grows back (not before ``floor``).

    bsdiff's rule: the extension with the best (matches - mismatches), the shortest on ties.
    """
    size = min(j - floor, j + d)
    if size <= 0:
        return 0
    eq = _agree(w, j - size, o, j - size + d, size)[::-1]
    score = np.cumsum(np.where(eq, 1, -1))
    best = int(np.argmax(score))
    return best + 1 if score[best] > 0 else 0


def _extend_forward(o: Bytes, w: Bytes, length: Ints, j: int, d: int) -> int:
    """Where a cover at displacement d from j ends: exclusive end in new.

    Grows a window over new while the cover is alive; stops at the first
    position where a match at another displacement is :data:`SWITCH_MARGIN`
    longer than this displacement's run there, and ends the cover at the best
    (matches - mismatches) prefix before it.
    """
    limit = min(len(w) - j, len(o) - (j + d))
    window = _FIRST_WINDOW
    while True:
        size = min(window, limit)
        eq = _agree(w, j, o, j + d, size)
        held = np.concatenate(([0], np.cumsum(eq, dtype=np.int64)))
        k = np.arange(size, dtype=np.int64)
        ahead = np.minimum(length[j : j + size], size - k)
        kept = held[k + ahead] - held[k]  # bytes this displacement matches over that match
        switch = np.flatnonzero(
            (length[j : j + size] >= SWITCH_MIN) & (ahead > kept + SWITCH_MARGIN) & (k > 0)
        )
        stop = int(switch[0]) if len(switch) else size
        score = np.concatenate(([0], np.cumsum(np.where(eq[:stop], 1, -1))))
        best = int(np.argmax(score))
        if len(switch) or size == limit or score[-1] < score[best] - 2 * MIN_MATCH:
            return j + best
        window *= 4


def select_covers(old: bytes, new: bytes, length: Ints, where: Ints) -> list[Cover]:
    """The cover list for new, given its longest matches (see the module docstring)."""
    o = np.frombuffer(old, dtype=np.uint8)
    w = np.frombuffer(new, dtype=np.uint8)
    starts = np.flatnonzero(length >= MIN_MATCH)
    covers: list[Cover] = []
    i = 0  # where the next cover may start: the previous one's end
    last_d = 0
    while True:
        at = int(np.searchsorted(starts, i))
        if at == len(starts):
            break
        j = int(starts[at])
        best = int(length[j])
        d = int(where[j]) - j
        if d != last_d:
            held = _held(o, w, j, last_d, best)
            if held >= MIN_MATCH and held + SWITCH_MARGIN >= best:
                d = last_d
        start = j - _extend_back(o, w, j, d, i)
        end = _extend_forward(o, w, length, j, d)
        if end <= j:  # the preferred displacement matched nothing here after all
            end = j + max(1, _held(o, w, j, d, best))
        covers.append(Cover(start + d, start, end - start))
        i = end
        last_d = d
    return covers


def covers(old: bytes, new: bytes) -> list[Cover]:
    """The cover list the bsdiff back ends encode: longest matches, then cover selection."""
    length, where = longest_matches(old, new)
    return select_covers(old, new, length, where)
