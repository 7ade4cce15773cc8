"""Real server processes for the fleet benchmark and the fault tests: start, wait, kill, restart.

Both the load benchmark and ``tests/e2e/test_server_faults.py`` need the same thing: a
real ``fwdist server`` process (not an in-process app, so a ``kill -9`` really loses
whatever the process held), started on ``127.0.0.1:0``, with the port read from its one
ready line, ``fwdist server: listening on http://HOST:PORT``. The peer, ``python -m
http.server`` serving the same store directory, is started the same way.

stderr goes to a file, not a pipe: a server that logs more than a pipe holds would
otherwise block on a reader nobody runs. The ready line is read from that file.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

READY = re.compile(r"fwdist server: listening on (http://[0-9.]+:\d+)")
STATIC_READY = re.compile(r"Serving HTTP on ([0-9.]+) port (\d+)")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    """A loopback port free just now: a server restarted on it is found by the same URL."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ProcessError(RuntimeError):
    """A server process did not start, or died: the message carries its log's tail."""


@dataclass
class ServerProcess:
    """One server process; :meth:`start` runs it and waits for its ready line.

    ``argv`` is run as it is; ``ready`` matches the line that says it serves (and holds the
    URL); ``log`` is where its stdout and stderr go (appended to across restarts, so a
    restarted server's ready line is looked for after the previous one).
    """

    argv: Sequence[str]
    log: Path
    ready: re.Pattern[str] = READY
    env: dict[str, str] | None = None
    url: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def fwdist(
        cls, store: Path, log: Path, *extra: str, listen: str = "127.0.0.1:0"
    ) -> ServerProcess:
        """``fwdist server --store STORE --listen LISTEN [extra...]``."""
        argv = [sys.executable, "-m", "fwdist", "server", "--store", str(store)]
        return cls([*argv, "--listen", listen, *extra], log)

    @classmethod
    def static(cls, directory: Path, log: Path) -> ServerProcess:
        """``python -m http.server`` on a free loopback port, serving ``directory``."""
        argv = [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1"]
        return cls([*argv, "--directory", str(directory), "0"], log, STATIC_READY)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ProcessError("the server is not running")
        return self.proc.pid

    def start(self) -> ServerProcess:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                list(self.argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.env
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self._log_text(offset)
            if (m := self.ready.search(text)) is not None:
                self.url = self._url(m)
                return self
            if self.proc.poll() is not None:
                raise ProcessError(
                    f"{self.argv[3] if len(self.argv) > 3 else self.argv[0]} exited "
                    f"{self.proc.returncode} before it was ready: {text[-1500:].strip()}"
                )
            time.sleep(0.05)
        self.kill()
        raise ProcessError(
            f"not ready after {START_TIMEOUT_S:.0f} s: {self._log_text(offset)[-1500:]}"
        )

    def _url(self, m: re.Match[str]) -> str:
        if self.ready is STATIC_READY:
            return f"http://{m.group(1)}:{m.group(2)}"
        return m.group(1)

    def _log_text(self, offset: int) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def peak_rss_bytes(self) -> int:
        """The process's peak resident set (VmHWM) so far: read it before the process ends."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise ProcessError(f"no VmHWM in /proc/{self.pid}/status")

    def cpu_seconds(self) -> float:
        """User + system CPU the process (all its threads) has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """``kill -9``: no clean-up of any kind runs in the server (the fault tests' point)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)

    def stop(self) -> int:
        """SIGTERM, as an operator stops it; the exit status (``kill -9`` after a timeout)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


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
