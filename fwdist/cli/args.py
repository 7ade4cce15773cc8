"""Argument types that refuse nonsense while the command line is parsed.

A count of boxes, a number of days or a session size that cannot mean anything
(zero, negative, not a number) is a usage error: argparse reports it in one
line and exits 2 before any work starts, instead of a simulation or a demo
failing later with a traceback, or silently doing nothing.

Every subcommand takes ``--json``; :func:`subcommand` is the one place that adds it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer in ``low..high`` (no upper bound when ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high}, got {value}")
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {value}")
        return value

    return parse


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer ``>= low``."""
    return int_in(low)


def positive_float(text: str) -> float:
    """A finite number ``> 0``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def subcommand(parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
               handler: Callable[[argparse.Namespace], int], help: str
               ) -> argparse.ArgumentParser:
    """A subcommand of ``parent`` run by ``handler``, with the ``--json`` every command takes
    (its one-line help is also its description)."""
    p = parent.add_parser(name, help=help, description=help)
    p.set_defaults(handler=handler)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return p
