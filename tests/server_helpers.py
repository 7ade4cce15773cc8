"""Real ``fwdist server`` processes for tests: started on 127.0.0.1:0, waited for, killed.

Use the fixtures by importing them into a test module::

    from tests.server_helpers import db_url, fleet_server  # noqa: F401 (fixtures)

``fleet_server`` starts a server on an empty store (made under ``tmp_path``) that trusts
the key of ``fwdist.testing.make_releases`` (seed 1), with one live token per scope in
``server.tokens``; ``server.client(Scope.RELEASE)`` is an ``httpx.Client`` that sends it.
``db_url`` is the database the server uses: the embedded SQLite file, and a PostgreSQL
database (the fixture is parametrized: each test runs on both).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import keys
from fwdist.manifest import key_id
from fwdist.server import auth, db
from fwdist.server.auth import Scope
from fwdist.server.process import READY_PREFIX, open_database
from fwdist.store import Store

START_TIMEOUT_S = 60.0
TEST_KEY_SEED = hashlib.sha256(b"fwdist test key 1").digest()
"""The key :func:`fwdist.testing.make_releases` signs with at seed 1."""


def test_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(TEST_KEY_SEED)


@dataclass
class RunningServer:
    """A live ``fwdist server`` process and what a test needs to talk to it."""

    store: Path
    db_url: str
    proc: subprocess.Popen[bytes]
    url: str
    tokens: dict[Scope, str] = field(default_factory=dict)
    stderr: Path | None = None

    def client(self, scope: Scope | None = None, token: str | None = None) -> httpx.Client:
        secret = token if token is not None else self.tokens[scope] if scope else None
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def start_server(store: Path, db_url: str, log: Path, listen: str = "127.0.0.1:0",
                 *extra: str) -> RunningServer:
    """Start ``fwdist server`` (with ``extra`` options) and return once it printed its
    listening line."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    err = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fwdist", "server", "--store", str(store), "--db", db_url,
         "--listen", listen, *extra], stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith(READY_PREFIX):
                return RunningServer(store, db_url, proc, line.removeprefix(READY_PREFIX),
                                     stderr=log)
        if proc.poll() is not None:
            raise RuntimeError(f"fwdist server exited {proc.returncode}: {text}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"fwdist server did not start in {START_TIMEOUT_S}s")


def prepare(store_dir: Path, db_url: str, trusted: list[Ed25519PrivateKey]
            ) -> dict[Scope, str]:
    """A server store that trusts ``trusted``, its database migrated, one token per scope."""
    store = Store.open(store_dir, create=True)
    with store.locked():
        for k in trusted:
            store.put_key(key_id(k.public_key()), keys.public_pem(k.public_key()))
    engine = open_database(store_dir, db_url)
    try:
        return {s: auth.create(engine, f"test-{s.value}", s, 1_700_000_000) for s in Scope}
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The server's database: the embedded SQLite file, then a fresh database on a real
    PostgreSQL server (``pg_url``, tests/pg_helpers.py): every server test runs on both."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        return url
    return db.default_url(tmp_path)  # tmp_path/fleet.db, beside the server's store


@pytest.fixture
def fleet_server(tmp_path: Path, db_url: str) -> Iterator[RunningServer]:
    store = tmp_path / "server-store"
    tokens = prepare(store, db_url, [test_key()])
    server = start_server(store, db_url, tmp_path / "server.log")
    server.tokens = tokens
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.stop()
        if server.proc.poll() is None:
            server.proc.kill()
