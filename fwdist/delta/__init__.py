"""Byte-level deltas between firmware images: encode, choose the smallest, apply.

Between releases of compiled code nearly every byte window changes (shifted
addresses touch everything), so content-defined chunking reuses almost nothing
and the bytes over the air are decided here.  Five encoders are offered and
:func:`encode` keeps whichever produces fewer bytes for the pair at hand among
those whose box-side decoder fits the box's RAM (docs/decoders.md lists every
buffer each decoder holds):

``zstd-dict`` (:mod:`._zstd_dict`)
    The whole new image as one zstd frame with the old image as a raw-content
    dictionary; its decoder addresses old + new in place (XIP flash).
``bsdiff-zstd`` (:mod:`._bsdiff_zstd`)
    bsdiff's transform as five column streams, each a stripped zstd frame
    with a small, capped window; a streaming decoder in bounded RAM.
``bsdiff-lzma`` (:mod:`._bsdiff_lzma`)
    The same columns, each stored as raw LZMA2 or zstd, whichever is
    smaller; 0.4-0.6 MB of decoder RAM.
``bsdiff3-lzma`` (:mod:`._bsdiff3_lzma`)
    bsdiff as three streams (control rows, diff, extra) of raw LZMA2 whose
    dictionaries and lc/lp are sized to the budget: decodes in 32 KiB.
``bsdiff3-heatshrink`` (:mod:`._bsdiff3_heatshrink`)
    The same three streams as heatshrink: the 8 KiB mode.

Everything here is sans-I/O: images come in as bytes (encode) or as
``ReadAt`` callables (apply), and the new image leaves through ``sink`` in
pieces of at most :data:`PIECE` bytes.  Payloads are untrusted until the
image hash checks, so :func:`apply` validates every field and raises
:class:`DeltaError` -- and only that -- on anything malformed.

The first byte of every payload is the format/version tag, so formats can
evolve.  Stored streams drop what the decoder can rebuild: zstd frames have
no magic, frame header or checksum (:mod:`._zstd`), raw LZMA2 streams no end
marker (:mod:`._lzma`).  What the bsdiff back ends share -- the transform,
header layout, control replay and its checks -- is :mod:`._bsdiff`; the
error, varints and stream readers every format uses are :mod:`._core`.

Adding an encoder is a module that defines an :class:`Encoder` row (with a
tag no other row uses) and one entry in :data:`ENCODERS`; a bsdiff variant
is a :class:`~._bsdiff.ColumnFormat` plus its encode and RAM functions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from fwdist.delta import (
    _bsdiff3_heatshrink,
    _bsdiff3_lzma,
    _bsdiff_lzma,
    _bsdiff_zstd,
    _filtered,
    _zstd_dict,
)
from fwdist.delta._bsdiff import MAX_WINDOW_LOG
from fwdist.delta._bsdiff_lzma import LZMA_DICT_LOG, MAX_LZMA_DICT_LOG
from fwdist.delta._core import (
    PIECE,
    DeltaError,
    Encoder,
    InstructionSet,
    ReadAt,
    Sink,
    close,
)
from fwdist.delta._pair import Pair
from fwdist.delta._zstd import LEVEL

__all__ = [
    "ARCH_ENCODERS",
    "ENCODERS",
    "LEVEL",
    "LZMA_DICT_LOG",
    "MAX_LZMA_DICT_LOG",
    "MAX_WINDOW_LOG",
    "PIECE",
    "Delta",
    "DeltaError",
    "Encoder",
    "InstructionSet",
    "ReadAt",
    "Sink",
    "apply",
    "decode_ram",
    "encode",
    "encode_with",
]


@dataclass(frozen=True)
class Delta:
    """A payload plus the name of the encoder (a key of :data:`ENCODERS`) that made it."""

    encoder: str
    data: bytes


_GENERIC: Final = (
    _zstd_dict.ENCODER,
    _bsdiff_zstd.ENCODER,
    _bsdiff_lzma.ENCODER,
    _bsdiff3_lzma.ENCODER,
    _bsdiff3_heatshrink.ENCODER,
)
_THUMB2: Final = tuple(
    _filtered.make(row)
    for row in (_bsdiff_lzma.ENCODER, _bsdiff_zstd.ENCODER, _bsdiff3_lzma.ENCODER,
                _bsdiff3_heatshrink.ENCODER)
)

ENCODERS: Mapping[str, Encoder] = MappingProxyType({row.name: row for row in (*_GENERIC, *_THUMB2)})
"""Encoder name -> row.  The name is what a manifest records; the order breaks exact ties."""

ARCH_ENCODERS: Mapping[InstructionSet, tuple[str, ...]] = MappingProxyType(
    {InstructionSet.THUMB2: tuple(row.name for row in _THUMB2)}
)
"""The filtered encoders :func:`encode` also tries for a box of that instruction set."""


def _encoder(name: str) -> Encoder:
    try:
        return ENCODERS[name]
    except KeyError:
        raise DeltaError(f"unknown delta encoder {name!r}") from None


def encode_with(encoder: str, old: bytes, new: bytes) -> bytes:
    """The payload ``encoder`` makes for (old, new) with no RAM limit, checked by decoding it."""
    row = _encoder(encoder)
    payload = row.encode(old, new)
    _check(row, old, new, payload)
    return payload


def _check(row: Encoder, old: bytes, new: bytes, payload: bytes) -> None:
    """Decode ``payload`` and insist on ``new``.

    The check costs one decode (well under the encode time) and means a
    payload that would brick nothing but waste a whole fleet's transfer --
    because of an encoder bug -- never leaves the build machine.
    """
    out: list[bytes] = []
    row.apply(
        lambda off, n: old[off : off + n],
        len(old),
        lambda off, n: payload[off : off + n],
        len(payload),
        out.append,
        len(new),
    )
    if b"".join(out) != new:
        raise AssertionError(f"{row.name} payload does not reproduce the new image")


def encode(
    old: bytes,
    new: bytes,
    *,
    max_ram: int | None = None,
    formats: Collection[str] | None = None,
    arch: InstructionSet = InstructionSet.NONE,
) -> Delta:
    """The smallest payload among ``formats`` whose decoder needs <= ``max_ram``.

    ``formats=None`` means the generic encoders plus, for ``arch``, their
    filtered twins (:data:`ARCH_ENCODERS`): a Thumb-2 transform only helps
    Thumb-2 code.  Every encoder sees the same :class:`Pair`, so the bsdiff
    transform is computed once; encoders that cannot fit the budget say so
    before encoding where they can.  Ties go to the decoder needing less RAM,
    so a box with a small budget is never excluded for nothing.  Only the
    winner is checked by decoding it.  Raises :class:`DeltaError` naming the
    limit when nothing fits.
    """
    if formats is None:
        filtered = {name for names in ARCH_ENCODERS.values() for name in names}
        names = [n for n in ENCODERS if n not in filtered] + list(ARCH_ENCODERS.get(arch, ()))
    else:
        names = list(formats)
    if not names:
        raise ValueError("no encoders to choose from")
    rows = [_encoder(name) for name in names]
    pair = Pair(old, new)
    best: tuple[int, int, Encoder, bytes] | None = None
    for row, data in _payloads(rows, pair, max_ram):
        ram = row.decode_ram(data)
        if best is None or (len(data), ram) < best[:2]:
            best = (len(data), ram, row, data)
    if best is None:
        raise DeltaError(
            f"no delta encoder among {', '.join(names)} decodes within {max_ram} bytes of RAM"
        )
    _check(best[2], old, new, best[3])
    return Delta(best[2].name, best[3])


def _fitted(row: Encoder, pair: Pair, max_ram: int | None) -> bytes | None:
    """The row's payload for the pair within ``max_ram``, or None when it cannot fit."""
    data = row.fit(pair, max_ram) if row.fit is not None else row.encode(pair.old, pair.new)
    if data is None or (max_ram is not None and row.decode_ram(data) > max_ram):
        return None
    return data


def _payloads(
    rows: list[Encoder], pair: Pair, max_ram: int | None
) -> Iterator[tuple[Encoder, bytes]]:
    """The payloads worth comparing: per family, the best-scored row that fits, and a close second.

    Rows of one family (a back end and its filtered twins) encode different
    views of the pair with the same coder, so their cheap scores
    (:attr:`Encoder.score`) say which view will be smaller; encoding every
    view in full is what made staging slow.  Rows are tried best score first;
    after the first payload, a later row is tried only while its score is
    :func:`._core.close` to that payload's row, and at most two payloads per
    family are made.  A row that cannot fit does not count.  Rows without a
    score are always encoded.
    """
    families: dict[str, list[Encoder]] = {}
    for row in rows:
        families.setdefault(row.family or row.name, []).append(row)
    for members in families.values():
        ranked: list[tuple[int, int, Encoder]] = []
        for k, row in enumerate(members):
            if row.score is None or len(members) == 1:
                data = _fitted(row, pair, max_ram)
                if data is not None:
                    yield row, data
            else:
                ranked.append((row.score(pair), k, row))
        ranked.sort(key=lambda t: t[:2])
        made: list[int] = []
        for value, _, row in ranked:
            if made and (len(made) == 2 or not close(value, made[0])):
                break
            data = _fitted(row, pair, max_ram)
            if data is not None:
                made.append(value)
                yield row, data


def apply(
    encoder: str,
    old: ReadAt,
    old_size: int,
    payload: ReadAt,
    payload_size: int,
    sink: Sink,
    *,
    new_size: int,
) -> None:
    """Decode ``payload`` against ``old`` and stream the new image into ``sink``.

    Pieces are at most :data:`PIECE` bytes, never more than ``new_size`` in
    total.  Any malformed, truncated or oversized payload raises
    :class:`DeltaError`; exceptions raised by ``old``, ``payload`` or ``sink``
    themselves propagate unchanged (they are the caller's, not the payload's).
    Bytes already given to the sink before an error are not taken back: the
    caller writes into an inactive slot and only trusts it after the image hash.
    """
    row = _encoder(encoder)
    if old_size < 0 or payload_size < 0 or new_size < 0:
        raise DeltaError("negative size")
    if payload_size == 0:
        raise DeltaError("empty payload")
    row.apply(old, old_size, payload, payload_size, sink, new_size)


def decode_ram(encoder: str, payload_head: bytes) -> int:
    """Bytes of memory the decoder needs, read from the payload's header.

    ``payload_head`` must hold the header (the first 64 bytes always do).  It
    is every buffer the box's decoder holds (docs/decoders.md): for
    ``zstd-dict`` its entropy tables and one block of literals (the window is
    flash); for the bsdiff back ends every stream decoder (they are all open
    at once) plus their I/O buffers -- three :data:`PIECE` for the five-column
    formats, :data:`~._core.IO_BUFFER`-sized ones for ``bsdiff3-*``.
    """
    return _encoder(encoder).decode_ram(payload_head)
