"""One (old, new) pair and what encoders derive from it, each derived at most once.

The transform (a suffix sort of old) is the most expensive step every bsdiff
back end shares; :func:`fwdist.delta.encode` hands all of them one ``Pair`` so
that trying five back ends costs one transform, not five.  A filter that
encodes another view of the pair (:mod:`._filtered`) keeps that view in the
pair's :meth:`~Pair.memo`, so its inner encoders share it too.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TypeVar, cast

from fwdist.delta import _bsdiff

T = TypeVar("T")


class Pair:
    """The images being diffed, and what encoders derive from them, derived once."""

    def __init__(self, old: bytes, new: bytes) -> None:
        self.old = old
        self.new = new
        self._memo: dict[str, object] = {}

    @cached_property
    def bsdiffs(self) -> _bsdiff.Transform:
        """bsdiff's own transform of the pair (:func:`._bsdiff.bsdiff4_triples`): scored by
        :func:`bsdiff_score` and a candidate of :attr:`columns`, made once for both."""
        return _bsdiff.bsdiff4_triples(self.old, self.new)

    @cached_property
    def columns(self) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        """:func:`._bsdiff.columns` of the pair (seek, x, y, diff, extra)."""
        return _bsdiff.columns(self.old, self.new, self.bsdiffs)

    def memo(self, key: str, make: Callable[[], T]) -> T:
        """``make()``, called the first time ``key`` is asked for; the same object after."""
        if key not in self._memo:
            self._memo[key] = make()
        return cast(T, self._memo[key])


def bsdiff_score(pair: Pair) -> int:
    """The cheap score of a back end that encodes the pair as it is: bsdiff's transform under
    :func:`._bsdiff.proxy_size` (what :attr:`._core.Encoder.score` compares)."""
    return _bsdiff.proxy_size(pair.bsdiffs)
