"""Real server processes for the fleet benchmark and the fault tests: start, measure, kill.

Both the load benchmark and ``tests/e2e/test_server_faults.py`` need a real ``fwdist
server`` process (not an in-process app, so a ``kill -9`` really loses whatever the
process held), started on ``127.0.0.1:0`` and found by its ready line:
:class:`fwdist.server.process.ServerProcess` does that, for the demo and the tests too.
This module adds what the benchmark reads of it (peak RSS, CPU), and the peer,
``python -m http.server`` serving the same store directory, started the same way.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from fwdist.server.process import ProcessError, ServerProcess

__all__ = ["FleetServer", "ProcessError", "StaticServer", "free_port", "fwdist_cli"]

STATIC_READY = re.compile(r"Serving HTTP on ([0-9.]+) port (\d+)")


def free_port() -> int:
    """A loopback port free just now: a server restarted on it is found by the same URL."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux lists them per thread)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out.extend(int(c) for c in (task / "children").read_text().split())
    return out


class FleetServer(ServerProcess):
    """:class:`fwdist.server.process.ServerProcess` with what the benchmark measures of it."""

    @classmethod
    def static(cls, directory: Path, log: Path) -> FleetServer:
        """``python -m http.server`` on a free loopback port, serving ``directory``."""
        argv = [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1"]
        return StaticServer([*argv, "--directory", str(directory), "0"], log, STATIC_READY)

    def peak_rss_bytes(self) -> int:
        """The process's peak resident set (VmHWM) so far: read it before the process ends."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise ProcessError(f"no VmHWM in /proc/{self.pid}/status")

    def cpu_seconds(self) -> float:
        """User + system CPU the process (all its threads) and its live children (the
        server's signature workers) have used so far."""
        return sum(_cpu_seconds(pid) for pid in (self.pid, *_children(self.pid)))


class StaticServer(FleetServer):
    """The static peer: its ready line names the address and the port apart."""

    def url_of(self, m: re.Match[str]) -> str:
        return f"http://{m.group(1)}:{m.group(2)}"


def fwdist_cli(*args: str | Path, env: dict[str, str] | None = None) -> str:
    """Run ``fwdist ARGS``, return its stdout; :class:`ProcessError` with its stderr if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "fwdist", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env or dict(os.environ),
        check=False,
    )
    if proc.returncode != 0:
        raise ProcessError(f"fwdist {args[0]}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout
