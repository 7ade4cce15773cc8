"""One (old, new) pair and its bsdiff transform, computed at most once for every back end.

The transform (a suffix sort of old) is the most expensive step every bsdiff
back end shares; :func:`fwdist.delta.encode` hands all of them one ``Pair`` so
that trying five back ends costs one transform, not five.
"""

from __future__ import annotations

from functools import cached_property

from fwdist.delta import _bsdiff


class Pair:
    """The images being diffed, and what encoders derive from them, derived once."""

    def __init__(self, old: bytes, new: bytes) -> None:
        self.old = old
        self.new = new

    @cached_property
    def columns(self) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        """:func:`._bsdiff.columns` of the pair (seek, x, y, diff, extra)."""
        return _bsdiff.columns(self.old, self.new)
