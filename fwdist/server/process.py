"""The ``fwdist server`` process: open the store, migrate, serve on Hypercorn's trio worker.

Hypercorn is the ASGI server that runs on trio (uvicorn does not). The process says it is
ready in exactly one line on stderr, ``fwdist server: listening on http://HOST:PORT``,
with the port the socket really got (``--listen 127.0.0.1:0`` picks a free one), so a
test or a script waits for that line instead of polling. SIGINT and SIGTERM stop it
cleanly: requests in flight finish, the process exits 0.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from sqlalchemy.engine import Engine

from fwdist.errors import FwdistError
from fwdist.server import db, migrate
from fwdist.server.app import make_app
from fwdist.server.context import Server
from fwdist.server.stamping import Stamper
from fwdist.store import Store

READY_PREFIX = "fwdist server: listening on "


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
            await trio.to_thread.run_sync(stamper.refresh, server.store(), server.now())


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
    if stamper is not None:  # a key or root that cannot sign: one line before serving
        stamper.refresh(Store(root), int(time.time()))
    engine = open_database(root, db_url)
    try:
        trio.run(_serve, Server(root, engine, stamper=stamper), host, port)
    except OSError as e:
        raise FwdistError(f"cannot listen on {listen}: {e.strerror or e}") from None
    finally:
        engine.dispose()
    return 0
