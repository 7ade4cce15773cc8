"""Output helpers shared by subcommands: JSON, human lines, times, and progress on a terminal.

The JSON every command prints carries ``"schema": JSON_SCHEMA`` so a script can
tell a layout it understands from a newer one (docs/cli.md lists every field).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fwdist.errors import FwdistError

# Bumped when a field of a command's JSON is removed or changes meaning; new fields do not bump it.
JSON_SCHEMA = 1

log = logging.getLogger(__name__)


def emit_json(obj: dict[str, Any]) -> None:
    json.dump({"schema": JSON_SCHEMA, **obj}, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def iso_time(epoch: int | None) -> str | None:
    """An epoch second as ISO 8601 UTC (``2025-06-01T12:00:00Z``); None (no time) stays None."""
    if epoch is None:
        return None
    try:
        moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    except (OverflowError, OSError, ValueError):  # a signed manifest may say year 10000 or later
        return "after 9999-12-31T23:59:59Z"
    return moment.isoformat().replace("+00:00", "Z")


def show_progress(quiet: bool) -> bool:
    """Progress is information: drawn on a terminal, unless --json, -q or -qq said otherwise."""
    return not quiet and log.isEnabledFor(logging.INFO) and sys.stderr.isatty()


@contextlib.contextmanager
def progress_bar(
    description: str, total: int | None, quiet: bool
) -> Iterator[Callable[[int], None]]:
    """Yield an ``advance(n)`` callback; draws a bar only when :func:`show_progress` says so."""
    if not show_progress(quiet):
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def check_output_dir(path: Path, option: str) -> None:
    """Fail now, in one line, if ``path`` cannot become a directory we write files into.

    Commands that run for minutes before writing (``sim --report``) call this
    first. A directory that does not exist yet is created (that much was asked
    for) and a probe file is written and removed in it; nothing else is touched.
    """
    if path.exists() and not path.is_dir():
        raise FwdistError(f"{option} {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".fwdist-probe-"):
            pass
    except OSError as e:
        raise FwdistError(f"{option} {path}: cannot write there ({e.strerror})") from None


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
