"""The ``fwdist server`` process: open the store, migrate, serve on Hypercorn's trio worker.

Hypercorn is the ASGI server that runs on trio (uvicorn does not). The process says it is
ready in exactly one line on stderr, ``fwdist server: listening on http://HOST:PORT``,
with the port the socket really got (``--listen 127.0.0.1:0`` picks a free one), so a
test or a script waits for that line instead of polling. SIGINT and SIGTERM stop it
cleanly: requests in flight finish, the process exits 0. Report signatures are checked
in worker processes on the other cores (:mod:`fwdist.server.signatures`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from sqlalchemy.engine import Engine

from fwdist.errors import FwdistError
from fwdist.server import db, migrate
from fwdist.server.app import make_app
from fwdist.server.context import Server
from fwdist.server.signatures import Verifier, default_workers
from fwdist.server.stamping import Stamper
from fwdist.store import Store

READY_PREFIX = "fwdist server: listening on "
READY = re.compile(re.escape(READY_PREFIX) + r"(http://\S+)")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise FwdistError(f"--listen must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def open_database(store: Path, url: str | None) -> Engine:
    """The engine for ``url`` (default: ``STORE/fleet.db``), migrated to the newest schema."""
    engine = db.make_engine(url or db.default_url(store))
    try:
        migrate.upgrade(engine)
    except Exception as e:  # a database that is not there or refuses us: one line
        raise FwdistError(f"cannot migrate the database: {type(e).__name__}: {e}") from None
    return engine


def open_store(path: Path) -> Path:
    """The store the server serves, made when absent (checked once, here)."""
    return Store.open(path, create=True).root


def _config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.loglevel = "WARNING"
    config.max_app_queue_size = 10
    config.h11_max_incomplete_size = 64 * 1024
    config.graceful_timeout = 5
    return config


async def _keep_stamped(server: Server, stamper: Stamper, stop: trio.Event) -> None:
    """Re-issue the timestamp when it is a period old, checking once a minute (or period)."""
    while not stop.is_set():
        with trio.move_on_after(min(stamper.every, 60)):
            await stop.wait()
        if not stop.is_set():
            await trio.to_thread.run_sync(stamper.refresh, server.store(), server.now(),
                                         server.engine)


async def _serve(server: Server, host: str, port: int) -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status=trio.TASK_STATUS_IGNORED: serve(
            cast(Any, make_app(server)), _config(host, port), shutdown_trigger=stop.wait,
            task_status=task_status))
        print(f"{READY_PREFIX}{binds[0]}", file=sys.stderr, flush=True)
        if server.stamper is not None:
            nursery.start_soon(_keep_stamped, server, server.stamper, stop)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                stop.set()
                break


def run(store: Path, db_url: str | None, listen: str, stamper: Stamper | None = None) -> int:
    host, port = parse_listen(listen)
    root = open_store(store)
    engine = open_database(root, db_url)
    if stamper is not None:  # a key or root that cannot sign: one line before serving
        stamper.refresh(Store(root), int(time.time()), engine)
    verifier = Verifier(default_workers())
    try:
        trio.run(_serve, Server(root, engine, stamper=stamper, verify=verifier), host, port)
    except OSError as e:
        raise FwdistError(f"cannot listen on {listen}: {e.strerror or e}") from None
    finally:
        verifier.close()
        engine.dispose()
    return 0


class ProcessError(FwdistError):
    """A server process did not start, or died: the message carries its log's tail."""


@dataclass
class ServerProcess:
    """A server in a process of its own, started and waited for: the one way the demo, the
    tests and the benchmarks run ``fwdist server`` (and the benchmark's static peer).

    ``argv`` is run as it is; ``ready`` matches the line that says it serves, its group 1
    the URL (``url_of`` turns a match into the URL when the line is not one). stdout and
    stderr go to ``log``, a file, not a pipe (a server that logs more than a pipe holds
    would block on a reader nobody runs); it is appended to across restarts, and a
    restart looks for its ready line after the previous one.
    """

    argv: Sequence[str]
    log: Path
    ready: re.Pattern[str] = READY
    env: dict[str, str] | None = None
    url: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def fwdist(cls, store: Path, log: Path, *extra: str, db_url: str | None = None,
               listen: str = "127.0.0.1:0") -> Self:
        """``fwdist server --store STORE [--db URL] --listen LISTEN [extra...]``."""
        argv = [sys.executable, "-m", "fwdist", "server", "--store", str(store)]
        if db_url is not None:
            argv += ["--db", db_url]
        return cls([*argv, "--listen", listen, *extra], log,
                   env={**os.environ, "PYTHONUNBUFFERED": "1"})

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ProcessError("the server is not running")
        return self.proc.pid

    def url_of(self, m: re.Match[str]) -> str:
        return m.group(1)

    def start(self) -> Self:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                list(self.argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.env
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self._log_text(offset)
            if (m := self.ready.search(text)) is not None:
                self.url = self.url_of(m)
                return self
            if self.proc.poll() is not None:
                tail = text.strip().splitlines()[-1:] or ["no output"]
                raise ProcessError(
                    f"{' '.join(self.argv[2:4])} exited {self.proc.returncode} before it was "
                    f"ready: {tail[0]}")
            time.sleep(0.05)
        self.kill()
        raise ProcessError(f"not ready after {START_TIMEOUT_S:.0f} s: "
                           f"{self._log_text(offset)[-1500:].strip()}")

    def _log_text(self, offset: int) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def kill(self) -> None:
        """``kill -9``: no clean-up of any kind runs in the server (the fault tests' point)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """``sig`` (SIGTERM, as an operator stops it); the exit status (``kill -9`` after a
        timeout)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
