"""Peer tools (casync, bsdiff, xdelta3, zstd, rdiff, zsync): find them, install them, run them.

CI machines may not have the peers. The suite installs the missing ones from
Debian when it can (root and apt-get present: ``apt-get update`` then
``apt-get install -y``); when it cannot, each missing peer becomes a skipped
record carrying the reason, so a table with a hole says why it has one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# command -> Debian package that provides it
PACKAGES: dict[str, str] = {
    "casync": "casync",
    "bsdiff": "bsdiff",
    "bspatch": "bsdiff",
    "xdelta3": "xdelta3",
    "zstd": "zstd",
    "rdiff": "rdiff",
    "zsyncmake": "zsync",
    "time": "time",  # GNU time: peak memory of a peer, measured from a small parent
}

Which = Callable[[str], str | None]
Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=900)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


@dataclass
class Tools:
    """Which peer commands exist, and for each missing one, why it is missing."""

    found: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def path(self, command: str) -> str | None:
        return self.found.get(command)

    def why_missing(self, *commands: str) -> str | None:
        """The reason the first missing command of ``commands`` cannot run, or None if all can."""
        for c in commands:
            if c not in self.found:
                return self.missing.get(c, f"{c} was not looked for")
        return None


def ensure(
    commands: Sequence[str],
    install: bool = True,
    which: Which = shutil.which,
    run: Runner = _run,
    is_root: bool | None = None,
) -> Tools:
    """Find ``commands``; install the missing ones with apt-get if allowed and possible."""
    tools = Tools()
    absent = [c for c in commands if which(c) is None]
    for c in commands:
        if c not in absent:
            tools.found[c] = which(c) or c
    if not absent:
        return tools
    packages = sorted({PACKAGES.get(c, c) for c in absent})
    root = (os.geteuid() == 0) if is_root is None else is_root
    reason: str
    if not install:
        reason = "not installed (--no-install given)"
    elif which("apt-get") is None:
        reason = "not installed, and apt-get is not available to install it"
    elif not root:
        reason = (
            f"not installed, and not root to apt-get it (sudo apt-get install {' '.join(packages)})"
        )
    else:
        tools.log.append(f"installing peer tools: apt-get install -y {' '.join(packages)}")
        try:
            update = run(["apt-get", "update"])
            result = run(["apt-get", "install", "-y", "--no-install-recommends", *packages])
        except (OSError, subprocess.TimeoutExpired) as e:
            reason = f"not installed; apt-get failed: {e}"
        else:
            if result.returncode == 0:
                reason = "apt-get install reported success but the command is still not on PATH"
            else:
                detail = _last_line(result.stderr or result.stdout)
                if update.returncode != 0:
                    detail = f"apt-get update: {_last_line(update.stderr)}; {detail}"
                reason = f"not installed; apt-get install failed: {detail}"
    for c in absent:
        path = which(c)
        if path is not None:
            tools.found[c] = path
        else:
            tools.missing[c] = f"{c} {reason}"
    return tools


def version(command: str) -> str:
    """A one-line version string for the machine info (best effort, never fails)."""
    probes = {
        "zstd": ["zstd", "--version"],
        "casync": ["casync", "--version"],
        "xdelta3": ["xdelta3", "-V"],
        "rdiff": ["rdiff", "--version"],
        "zsyncmake": ["zsyncmake", "-V"],
    }
    if command in ("bsdiff", "bspatch", "time"):
        return _debian_version(PACKAGES[command])
    probe = probes.get(command)
    if probe is None:
        return "unknown"
    try:
        r = subprocess.run(probe, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (r.stdout or r.stderr).strip().splitlines()
    return text[0][:80] if text else "unknown"


def _debian_version(package: str) -> str:
    try:
        r = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{package} {r.stdout.strip()}" if r.returncode == 0 else "unknown"


class ToolError(Exception):
    """A peer (or fwdist's own CLI) exited non-zero."""


def timed(cmd: Sequence[str | Path], cwd: Path | None = None) -> tuple[float, str]:
    """Run ``cmd``; return (wall seconds, stdout). Raise :class:`ToolError` on failure."""
    argv = [str(c) for c in cmd]
    started = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    seconds = time.perf_counter() - started
    if r.returncode != 0:
        raise ToolError(
            f"{' '.join(argv[:3])}... exited {r.returncode}: {_last_line(r.stderr or r.stdout)}"
        )
    return seconds, r.stdout


def fwdist(*args: str | Path) -> list[str | Path]:
    """The ``fwdist`` command as a user runs it, with this interpreter."""
    return [sys.executable, "-m", "fwdist", *args]


@dataclass(frozen=True)
class Measured:
    """Wall seconds and peak resident memory of one command, and what it printed."""

    seconds: float
    peak_rss: int  # bytes
    stdout: str


def measured(cmd: Sequence[str | Path], rss_file: Path, cwd: Path | None = None) -> Measured:
    """Run ``cmd`` under GNU time and return its seconds and peak RSS (bytes).

    Not by ``getrusage`` from here: a child forked from this (large) Python
    process inherits its resident size in ``ru_maxrss``, which would hide any
    command smaller than the interpreter. GNU time is a small C parent.
    Raises :class:`ToolError` when the command fails (GNU time passes its status on).
    """
    seconds, stdout = timed(["time", "-f", "%M", "-o", rss_file, *cmd], cwd=cwd)
    try:
        kib = int(rss_file.read_text().split()[-1])
    except (OSError, ValueError, IndexError) as e:
        raise ToolError(f"GNU time left no peak RSS in {rss_file}: {e}") from None
    return Measured(seconds, kib * 1024, stdout)
