"""An instruction-set filter around an inner encoder: the inner one diffs transformed images.

The stager hands the inner encoder (``bsdiff-lzma``, ``bsdiff-zstd``) old as
the box will see it -- addresses predicted for new (:func:`._thumb2.predict`)
-- and new with its calls made absolute (:func:`._thumb2.absolute`).  The box
reads old through the same prediction and writes new through the inverse
codec, so neither image is ever held whole; the filter adds its own small
state to the inner decoder's RAM (:func:`._thumb2.ram`).

Payload format (``uv`` = unsigned LEB128)::

    tag=0x61 (Thumb-2) | flags (bit 0: pointers predicted; others zero)
    | [uv base, if bit 0] | uv map entries | uv map bytes
    | the inner payload (its own tag first) | the address map:
      per entry uv (start - previous start), uv zigzag(delta - previous delta)

The map sits behind the inner payload so that the first 64 bytes hold the
inner header too (:func:`decode_ram` reads both from there).  The first
start may be 0; later gaps are at least 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from fwdist.delta import _bsdiff, _thumb2
from fwdist.delta._core import (
    PIECE,
    Cursor,
    DeltaError,
    Encoder,
    ReadAt,
    Sink,
    close,
    read_exact,
    unzigzag,
    zigzag,
)
from fwdist.delta._pair import Pair
from fwdist.leb128 import encode as uv

TAG: Final = 0x61

_POINTERS: Final = 0x01

_HEAD_MAX: Final = 1 + 1 + 3 * 10
"""Tag, flags and three varints at their longest: the filter's header."""

_MIN_COPY: Final = 32
"""Shortest matcher copy that places a map entry; doubled until the map fits.

Shorter copies are mostly bsdiff's fill-ins between real matches, whose
displacement says nothing about where code moved.
"""


def address_map(old: bytes, new_abs: bytes) -> _thumb2.AddressMap:
    """Where each region of old went in new, from bsdiff's copies: the fewest entries that say so.

    The copies come from matching old (calls made absolute, nothing
    predicted) against new with calls absolute, so that calls to moved
    functions do not break matches (:func:`_map_copies`).
    """
    return _map_of(_map_copies(old, new_abs), len(old))


def _map_copies(old: bytes, new_abs: bytes) -> _bsdiff.Transform:
    """bsdiff's transform of (old with calls made absolute, ``new_abs``): the map's copies."""
    seen = _thumb2.predict(old, 0, _thumb2.AddressMap((), (), len(old)), None, len(old))
    return _bsdiff.bsdiff4_triples(seen, new_abs)


def _map_of(transform: _bsdiff.Transform, old_size: int) -> _thumb2.AddressMap:
    """The address map a transform's copies say: the fewest entries that say so.

    Copies are taken in their start order; one that begins inside an earlier
    one counts from where that one ends (bsdiff's copies overlap by a byte or
    two at an insertion), one that ends inside it not at all; consecutive
    equal displacements merge.
    """
    triples, _, _ = transform
    copies: list[tuple[int, int, int]] = []
    old_pos = new_pos = 0
    for seek, x, y in triples:
        old_pos += seek
        if x:
            copies.append((old_pos, x, new_pos - old_pos))
        old_pos += x
        new_pos += x + y
    copies.sort()
    min_copy = _MIN_COPY
    while True:
        starts: list[int] = []
        deltas: list[int] = []
        end = 0
        for start, x, delta in copies:
            if x < min_copy or start + x <= end or not 0 <= start < old_size:
                continue
            start, end = max(start, end), start + x
            if (deltas and deltas[-1] == delta) or (not deltas and delta == 0):
                continue
            starts.append(start)
            deltas.append(delta)
        if len(starts) <= _thumb2.MAX_MAP_ENTRIES:
            return _thumb2.AddressMap(tuple(starts), tuple(deltas), old_size)
        min_copy *= 2


def _pack_map(amap: _thumb2.AddressMap) -> bytes:
    out = bytearray()
    prev_start = prev_delta = 0
    for start, delta in zip(amap.starts, amap.deltas, strict=True):
        out += uv(start - prev_start) + uv(zigzag(delta - prev_delta))
        prev_start, prev_delta = start, delta
    return bytes(out)


def _unpack_map(data: bytes, entries: int, old_size: int) -> _thumb2.AddressMap:
    cur = Cursor(data)
    starts: list[int] = []
    deltas: list[int] = []
    start = delta = 0
    for _ in range(entries):
        gap = cur.uv()
        if starts and gap == 0:
            raise DeltaError("thumb2 address map has two entries at one start")
        start += gap
        delta += unzigzag(cur.uv())
        starts.append(start)
        deltas.append(delta)
    if cur.pos != len(data):
        raise DeltaError("thumb2 address map has bytes past its entries")
    return _thumb2.AddressMap(tuple(starts), tuple(deltas), old_size)


def base_candidates(old: bytes) -> list[int | None]:
    """Link addresses worth trying for old's pointers: none, 0, and the reset vector's 4 KiB page.

    Word 1 of a Cortex-M image is the reset handler's address; an image
    linked at 0x23000 (a Nordic application above its SoftDevice) has it
    just above that page, one linked at 0 anywhere in it.
    """
    out: list[int | None] = [None, 0]
    if len(old) >= 8:
        reset = int.from_bytes(old[4:8], "little")
        page = reset & ~0xFFF
        if page > 0 and reset < page + len(old):
            out.append(page)
    return out


@dataclass(frozen=True)
class View:
    """One link address and the pair the inner encoder sees for it: (old predicted, new_abs)."""

    base: int | None
    pair: Pair
    score: int
    """:func:`._bsdiff.proxy_size` of the map's copies over this view."""


@dataclass(frozen=True)
class Views:
    """The address map and the views worth encoding, best score first (one or two)."""

    amap: _thumb2.AddressMap
    views: tuple[View, ...]
    score: int
    """The best view's score plus the packed map's bytes: comparable with an unfiltered
    pair's :func:`._bsdiff.proxy_size` of bsdiff's transform (:func:`score`)."""


def _choose(pair: Pair) -> Views:
    """Score every candidate link address cheaply and keep the best (and a close second).

    One suffix sort serves them all: the map's own bsdiff copies are
    re-diffed against each candidate's predicted old (:func:`._bsdiff.rediff`)
    and ranked by :func:`._bsdiff.proxy_size`.  Only a kept view is
    transformed in full (matcher and its own bsdiff, whichever is smaller:
    the re-diffed copies cost up to 3 bytes on nrf52-ble-conn-sd), once for
    all inner encoders.  Before, every candidate was transformed and encoded
    by every inner encoder.
    """
    old = pair.old
    new_abs = _thumb2.absolute(pair.new)
    copies = _map_copies(old, new_abs)
    amap = _map_of(copies, len(old))
    scored: list[View] = []
    for base in base_candidates(old):
        seen = _thumb2.predict(old, 0, amap, base, len(old))
        transform = _bsdiff.rediff(copies, seen, new_abs)
        scored.append(View(base, Pair(seen, new_abs), _bsdiff.proxy_size(transform)))
    scored.sort(key=lambda v: v.score)  # stable: ties keep the candidates' order
    best = scored[0].score
    kept = tuple(v for v in scored[:2] if close(v.score, best))
    return Views(amap, kept, best + len(_pack_map(amap)))


def views(pair: Pair) -> Views:
    """:func:`_choose` of ``pair``, made once per pair whichever inner encoder asks."""
    return pair.memo("thumb2", lambda: _choose(pair))


def score(pair: Pair) -> int:
    """The filter's estimate for ``pair``: see :attr:`Views.score`."""
    return views(pair).score


class _Header:
    """A parsed filter header: base (or None), map entries and bytes, where the inner starts."""

    def __init__(self, head: bytes) -> None:
        cur = Cursor(head)
        if cur.byte() != TAG:
            raise DeltaError("not a thumb2-filtered payload (tag)")
        flags = cur.byte()
        if flags & ~_POINTERS:
            raise DeltaError(f"thumb2 filter flags {flags:#04x} have reserved bits set")
        self.base: int | None = cur.uv() if flags & _POINTERS else None
        if self.base is not None and self.base >= 1 << 32:
            raise DeltaError(f"thumb2 base {self.base:#x} does not fit 32 bits")
        self.entries = cur.uv()
        if self.entries > _thumb2.MAX_MAP_ENTRIES:
            raise DeltaError(
                f"thumb2 address map has {self.entries} entries, more than "
                f"{_thumb2.MAX_MAP_ENTRIES}"
            )
        self.map_bytes = cur.uv()
        self.size = cur.pos


def _pack(base: int | None, amap: _thumb2.AddressMap, inner: bytes) -> bytes:
    packed = _pack_map(amap)
    flags = 0 if base is None else _POINTERS
    head = bytes([TAG, flags]) + (b"" if base is None else uv(base))
    return head + uv(len(amap.starts)) + uv(len(packed)) + inner + packed


def make(inner: Encoder) -> Encoder:
    """The Thumb-2-filtered twin of ``inner``: named ``inner.name + '+thumb2'``."""

    def fit(pair: Pair, max_ram: int | None) -> bytes | None:
        """The chosen link addresses' views (:func:`views`); the smallest payload that fits wins.

        The map's RAM comes off the budget first; the inner encoder fits what is left.
        """
        chosen = views(pair)
        budget = None if max_ram is None else max_ram - _thumb2.ram(len(chosen.amap.starts))
        if budget is not None and budget <= 0:
            return None
        best: bytes | None = None
        for view in chosen.views:
            if inner.fit is not None:
                data = inner.fit(view.pair, budget)
            else:
                data = inner.encode(view.pair.old, view.pair.new)
                if budget is not None and inner.decode_ram(data) > budget:
                    data = None
            if data is None:
                continue
            payload = _pack(view.base, chosen.amap, data)
            if best is None or len(payload) < len(best):
                best = payload
        return best

    def encode(old: bytes, new: bytes) -> bytes:
        payload = fit(Pair(old, new), None)
        assert payload is not None  # with no budget every inner encoder produces a payload
        return payload

    def apply(
        old: ReadAt, old_size: int, payload: ReadAt, payload_size: int, sink: Sink, new_size: int
    ) -> None:
        head = _Header(read_exact(payload, 0, min(payload_size, _HEAD_MAX), "payload"))
        inner_size = payload_size - head.size - head.map_bytes
        if inner_size <= 0:
            raise DeltaError("thumb2-filtered payload has no inner payload")
        amap = _unpack_map(
            read_exact(payload, head.size + inner_size, head.map_bytes, "payload"),
            head.entries,
            old_size,
        )
        inner.apply(
            _predicted_old(old, old_size, amap, head.base),
            old_size,
            _inner_payload(payload, head.size, inner_size),
            inner_size,
            _relative_sink(sink, codec := _thumb2.BlCodec(decode=True)),
            new_size,
        )
        tail = codec.flush()
        if tail:
            sink(tail)

    def decode_ram(head: bytes) -> int:
        parsed = _Header(head)
        return inner.decode_ram(head[parsed.size :]) + _thumb2.ram(parsed.entries)

    return Encoder(
        f"{inner.name}+thumb2", TAG, encode, apply, decode_ram, fit, score=score, family=inner.name
    )


def _predicted_old(
    old: ReadAt, old_size: int, amap: _thumb2.AddressMap, base: int | None
) -> ReadAt:
    """Old as the stager gave it to the inner encoder: a margin window read, predicted, cut."""
    margin = _thumb2.WINDOW_MARGIN

    def read(off: int, n: int) -> bytes:
        if off < 0 or n < 0 or off + n > old_size:
            raise DeltaError(f"old read at {off} of {n} bytes outside the old image")
        lo = max(0, off - margin) & ~3
        hi = min(old_size, off + n + margin)
        window = read_exact(old, lo, hi - lo, "old")
        return _thumb2.predict(window, lo, amap, base, old_size)[off - lo : off - lo + n]

    return read


def _inner_payload(payload: ReadAt, start: int, size: int) -> ReadAt:
    def read(off: int, n: int) -> bytes:
        n = max(0, min(n, size - off))  # a read past the inner payload comes back short
        return payload(start + off, n)

    return read


def _relative_sink(sink: Sink, codec: _thumb2.BlCodec) -> Callable[[bytes], None]:
    """The inner decoder's output made relative again, in pieces of at most PIECE bytes."""

    def write(chunk: bytes) -> None:
        out = codec.feed(chunk)
        for i in range(0, len(out), PIECE):
            sink(out[i : i + PIECE])

    return write
