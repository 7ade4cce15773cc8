"""How the simulator writes sizes, shares and counts for people.

One size unit everywhere a person reads (table, markdown, plots, release lines):
KiB, 1,024 bytes, because images and flash are sized in powers of two and the
scenarios say "a 256 KiB image". JSON keeps exact bytes. A share is never
rounded to "0.0%" or "100.0%" when it is not exactly that: a release engineer
reading "unfinished 0.0%" must be able to trust that no box was left behind.
"""

from __future__ import annotations

KIB = 1024


def kib(n: float) -> str:
    """``n`` bytes as KiB with one decimal, no unit (for a column headed KiB)."""
    return f"{n / KIB:.1f}"


def kib_text(n: float) -> str:
    """``n`` bytes as ``"12.3 KiB"``."""
    return f"{kib(n)} KiB"


def share(x: float) -> str:
    """A share in 0..1 as a percentage that is 0 or 100 only when exactly so."""
    if x <= 0.0:
        return "0%"
    if x >= 1.0:
        return "100%"
    if x < 0.0005:
        return "<0.1%"
    if x > 0.9995:
        return ">99.9%"
    return f"{x:.1%}"


def plural(n: float, one: str, many: str) -> str:
    """``"1 run"``, ``"2 runs"``: the count and the word that goes with it."""
    count = str(n) if isinstance(n, int) else f"{n:g}"
    return f"{count} {one if n == 1 else many}"
