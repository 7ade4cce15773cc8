"""The ``bsdiff-lzma`` encoder: bsdiff's five columns, each stored whichever way is smallest.

Raw LZMA2 at preset 9e (lc/lp/pb chosen per stream -- lp2/pb2 suits the diff
of 4-byte-aligned code) or a stripped zstd frame as in bsdiff-zstd.  LZMA's
range coder beats zstd's entropy stage on bsdiff streams (-5 % to -11 % on
every real pair we have, and it beats Debian's bsdiff on the sample firmware,
which the zstd back ends do not).  The dictionary is capped at
:data:`LZMA_DICT_LOG` whatever the image size, so this streaming decoder
needs less RAM than bsdiff-zstd's (0.4-0.6 MB against 0.9-1.6 MB).

Payload format (``uv`` = unsigned LEB128)::

    tag=0x31 | uv new_size | 5 x 2 bytes: (method, log) per stream
    | uv length of the first four streams | five stored streams
    (the last one runs to the end of the payload)

(method, log) is (0, 0) for no stream, (props, dictionary log) for raw LZMA2
with that LZMA properties byte (lc + lp <= 4) and a 2^log dictionary,
(0xFF, window log) for a stripped zstd frame.
"""

from __future__ import annotations

from typing import Final

from fwdist.delta import _bsdiff, _bsdiff_zstd, _lzma, _zstd
from fwdist.delta._core import Cursor, DeltaError, Encoder, ReadAt, Reader
from fwdist.delta._pair import Pair, bsdiff_score

TAG: Final = 0x31

LZMA_DICT_LOG: Final = 16
"""Largest LZMA2 dictionary (64 KiB) the bsdiff-lzma encoder uses: bounds decoder RAM.

Measured on whole bsdiff-lzma payloads, bytes against a 4 MiB cap (which
holds every stream but zstandard's diff): sample firmware +6 (10,238),
orjson +33 (41,838), pydantic-core +964 (256,565, +0.4 %), zstandard
+4,083 (1,187,682, +0.3 %).  A 128 KiB cap saves 542 of those on
zstandard and 652 on pydantic-core, 256 KiB 3,494 and 750 -- for 64 or
192 KiB more RAM per data stream, which a lockbox MCU does not have to spare.
"""

MAX_LZMA_DICT_LOG: Final = 20
"""Largest dictionary a bsdiff-lzma stream may declare; the decoder refuses bigger ones."""

_ZSTD_CODER: Final = 0xFF

# (lc, lp, pb) the bsdiff-lzma encoder tries on every stream.  Each was the
# best on some stream of our pairs: 0/2/2 on the sample firmware's and
# zstandard's diff (4-byte-aligned code), 0/0/0 on orjson's diff, 3/0/0 on
# pydantic-core's diff and orjson's extra, 1/0/0 on most control columns.  On
# the sample firmware and orjson a grid of all 36 legal triples (lp, pb <= 2)
# found nothing better than the best of these four.
_LZMA_VARIANTS: Final = ((0, 0, 0), (1, 0, 0), (3, 0, 0), (0, 2, 2))

Coder = tuple[int, int]
"""How one bsdiff-lzma stream is stored: (method, log), two header bytes.

``(0, 0)`` no stream; ``(props, log)`` with props < 225 the LZMA properties
byte and a ``1 << log`` dictionary; ``(0xFF, log)`` a stripped zstd frame
with a ``1 << log`` window.
"""

_EMPTY: Final[Coder] = (0, 0)


def _check_coder(name: str, coder: Coder) -> None:
    method, log = coder
    if coder == _EMPTY:
        return
    if method == _ZSTD_CODER:
        if not 10 <= log <= _bsdiff.MAX_WINDOW_LOG:
            raise DeltaError(f"bsdiff-lzma {name} stream: zstd window log {log} not in 10..20")
        return
    _lzma.check_props(f"bsdiff-lzma {name} stream", method)
    if not _lzma.MIN_DICT_LOG <= log <= MAX_LZMA_DICT_LOG:
        raise DeltaError(
            f"bsdiff-lzma {name} stream: dictionary log {log} not in "
            f"{_lzma.MIN_DICT_LOG}..{MAX_LZMA_DICT_LOG}"
        )


def _read_coders(cur: Cursor) -> list[Coder]:
    """Five (method, log) pairs, each checked as soon as it is read."""
    coders: list[Coder] = []
    for name in _bsdiff.STREAMS:
        coder = (cur.byte(), cur.byte())
        _check_coder(name, coder)
        coders.append(coder)
    return coders


def _open_stream(name: str, payload: ReadAt, start: int, end: int, coder: Coder) -> Reader:
    method, log = coder
    if coder == _EMPTY:
        if start != end:
            raise DeltaError(f"{name} stream declared empty but has {end - start} bytes")
        return Reader(name)
    if start == end:
        raise DeltaError(f"{name} stream has a coder but no bytes")
    if method == _ZSTD_CODER:
        return _zstd.open_stream(name, payload, start, end, log)
    return _lzma.LzmaStream(name, payload, start, end, method, log)


FORMAT: Final = _bsdiff.ColumnFormat[Coder](
    "bsdiff-lzma", TAG, 2 * len(_bsdiff.STREAMS), _read_coders, _open_stream
)


def _smallest_coding(data: bytes, zstd_frame: tuple[int, bytes]) -> tuple[Coder, bytes]:
    """zstd and the best-ranked LZMA variant on one stream; keep the fewest bytes (then least RAM).

    The variants are ranked by :func:`._lzma.rank`'s cheap estimate and only
    the first is encoded at full cost (trying all four at 9e was half of the
    stage time); the zstd frame is the one :func:`._bsdiff_zstd.frames` made, shared with
    ``bsdiff-zstd``.  The LZMA dictionary is the stream's size rounded up to a
    power of two, capped at :data:`LZMA_DICT_LOG`: a small control column gets
    a small dictionary, so the decoder's RAM follows what the payload needs.
    """
    if not data:
        return _EMPTY, b""
    got_log, body = zstd_frame
    options = [(len(body), _zstd.window_ram(got_log), (_ZSTD_CODER, got_log), body)]
    dict_log = min(LZMA_DICT_LOG, max(_lzma.MIN_DICT_LOG, (len(data) - 1).bit_length()))
    props = _lzma.rank(data, _LZMA_VARIANTS, 1 << dict_log)[0]
    body = _lzma.compress(data, props, dict_log)
    options.append((len(body), _lzma.ram(props, dict_log), (props, dict_log), body))
    _, _, coder, body = min(options, key=lambda o: o[:2])
    return coder, body


def fit(pair: Pair, max_ram: int | None) -> bytes | None:
    """bsdiff transform (the pair's, shared), five columns, each stored the smallest way found.

    The columns are not shrunk to a budget: with three 64 KiB pieces this
    decoder needs 387 KB at least, so a budget below that gets None at once.
    """
    if max_ram is not None and max_ram < _MIN_RAM:
        return None
    coded = [
        _smallest_coding(data, frame)
        for data, frame in zip(pair.columns, _bsdiff_zstd.frames(pair), strict=True)
    ]
    coders = bytes(b for coder, _ in coded for b in coder)
    return FORMAT.pack(len(pair.new), coders, (body for _, body in coded))


def encode(old: bytes, new: bytes) -> bytes:
    """bsdiff transform, five columns, each stored the smallest way found."""
    payload = fit(Pair(old, new), None)
    assert payload is not None
    return payload


def _coder_ram(coder: Coder) -> int:
    method, log = coder
    if coder == _EMPTY:
        return 0
    if method == _ZSTD_CODER:
        return _zstd.window_ram(log)
    return _lzma.ram(method, log)


def decode_ram(head: bytes) -> int:
    """Every present stream's decoder (all five are open at once), plus three 64 KiB pieces.

    The header names every stream's coder and dictionary, so this is exact
    for what the payload declares -- and the decoder refuses a stream that
    would need more (bigger dictionary, other LZMA properties).
    """
    return sum(_coder_ram(c) for c in FORMAT.header(head).coders) + _bsdiff.BUFFERS_RAM


_MIN_RAM: Final = _bsdiff.BUFFERS_RAM
"""No bsdiff-lzma payload decodes in less: the three pieces alone."""

ENCODER: Final = Encoder(
    "bsdiff-lzma", TAG, encode, FORMAT.apply, decode_ram, fit, score=bsdiff_score
)
