"""The phone's outbox: box reports it collected, kept until the server has them.

A phone meets boxes where there is no coverage; what each box said (its signed report,
:mod:`fwdist.report`) waits here until the next ``fwdist app sync`` uploads it, and
leaves only when the server answered ``accepted`` or ``duplicate`` for it. One file per
report, named by what makes it unique to the server::

    CACHE/outbox/<box id>.<seq>.report    the report's bytes as the box signed them

A report is written to a temporary name, synced and renamed, so a phone killed at any
instant holds whole reports or none; the same ``(box id, seq)`` twice is one file (the
box signs a sequence number once: the same number is the same report). Files that are not
reports are left alone, never uploaded and never deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from fwdist import report
from fwdist.errors import FwdistError

OUTBOX = "outbox"
SUFFIX = ".report"
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})\.(0|[1-9][0-9]{0,18})\.report$")


class OutboxError(FwdistError):
    """The outbox cannot be read or written."""


@dataclass(frozen=True)
class Pending:
    """One report waiting in the outbox."""

    name: str
    box_id: str
    seq: int
    wire: bytes


class Outbox:
    """The ``outbox/`` directory of a phone's cache."""

    def __init__(self, cache: Path) -> None:
        self.dir = Path(cache) / OUTBOX

    @staticmethod
    def name_of(r: report.Report) -> str:
        return f"{r.box_id}.{r.seq}{SUFFIX}"

    def add(self, wire: bytes) -> bool:
        """Keep one report (checked to parse first); False when the outbox already has it."""
        sr = report.decode(wire)
        path = self.dir / self.name_of(sr.report)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(path):
                return False
            tmp = self.dir / f".{path.name}.{secrets.token_hex(4)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(sr.wire)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as e:
            raise OutboxError(f"cannot write the outbox {self.dir}: {e.strerror}") from None
        return True

    def pending(self) -> list[Pending]:
        """Every report waiting, ordered by box id then seq (what is not a report is skipped)."""
        try:
            entries = list(os.scandir(self.dir)) if self.dir.is_dir() else []
        except OSError as e:
            raise OutboxError(f"cannot read the outbox {self.dir}: {e.strerror}") from None
        out = []
        for entry in entries:
            m = _NAME.fullmatch(entry.name)
            if m is None or not entry.is_file(follow_symlinks=False):
                continue
            try:
                with open(entry.path, "rb") as f:
                    wire = f.read(report.MAX_REPORT_BYTES + 1)
                sr = report.decode(wire)
            except (OSError, report.ReportError):
                continue  # not a report this phone wrote: never uploaded, never deleted
            if self.name_of(sr.report) == entry.name:
                out.append(Pending(entry.name, m[1], int(m[2]), wire))
        return sorted(out, key=lambda p: (p.box_id, p.seq))

    def remove(self, names: list[str]) -> None:
        """Forget reports the server has (accepted or duplicate)."""
        for name in names:
            if _NAME.fullmatch(name) is None:
                raise OutboxError(f"{name!r} is not a report's name")
            with contextlib.suppress(FileNotFoundError):
                (self.dir / name).unlink()
