"""A real, throw-away PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` in a temp dir.

Why a real server and not a mock: the fleet service promises "the same schema on
PostgreSQL", and only the real planner, locking and type rules can break that promise
(``ON CONFLICT`` on a composite key, ``BYTEA`` against SQLite's ``BLOB``, transaction
isolation under concurrent ingest). The server listens on 127.0.0.1 only, on a free
port, with its socket and data in a private temp dir, and ``fsync=off`` (a test cluster
is thrown away, so durability would only cost time).

PostgreSQL refuses to run as root. CI runs as root, so the cluster is then owned by,
and every server binary runs as, the ``postgres`` system user (``runuser``), which
Debian's ``postgresql`` package creates.

Missing binaries: the tests that need the server skip with the reason, unless
``CI`` is set, where they fail: CI installs ``postgresql`` (``.ci/run``), so a
missing binary there is a broken CI, not an optional peer.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.fleet_processes import free_port

PG_ROOT = Path("/usr/lib/postgresql")
"""Where Debian installs each major version's server binaries (``15/bin/initdb``...)."""
RUN_AS = "postgres"
"""The system user that owns the cluster when the tests run as root."""
SUPERUSER = "fwdist"
"""The cluster's superuser (``initdb -U``); trust auth on loopback, a test-only cluster."""
START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries (or no psycopg) on this machine."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def find_bindir() -> Path:
    """The newest installed major version's bin dir (``FWDIST_PG_BIN`` overrides)."""
    override = os.environ.get("FWDIST_PG_BIN")
    candidates = [Path(override)] if override else []
    if PG_ROOT.is_dir():
        versions = [p for p in PG_ROOT.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: int(p.name), reverse=True)]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise PostgresUnavailable(
        f"no PostgreSQL server binaries (initdb, pg_ctl) under {PG_ROOT}/*/bin; "
        "install Debian's postgresql package"
    )


@dataclass
class PostgresServer:
    """One running cluster; :meth:`url` names a database on it, :meth:`create_database` adds one."""

    bindir: Path
    root: Path
    port: int
    as_user: str | None
    databases: int = field(default=0, init=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _cmd(self, *argv: str | Path) -> list[str]:
        cmd = [str(a) for a in argv]
        return ["runuser", "-u", self.as_user, "--", *cmd] if self.as_user else cmd

    def _run(self, *argv: str | Path) -> None:
        proc = subprocess.run(
            self._cmd(*argv), capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False
        )
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{Path(str(argv[0])).name} failed ({proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}\n{tail}"
            )

    @classmethod
    def start(cls) -> PostgresServer:
        bindir = find_bindir()
        as_user = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(RUN_AS)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root, and there is no {RUN_AS!r} user to run PostgreSQL as"
                ) from None
            as_user = RUN_AS
        # Not under pytest's tmp_path: its parent is 0700 root, which the postgres user cannot
        # traverse. A private dir of its own, owned by whoever runs the server.
        root = Path(tempfile.mkdtemp(prefix="fwdist-pg-"))
        if as_user:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        server = cls(bindir, root, free_port(), as_user)
        try:
            server._run(
                bindir / "initdb", "-D", server.data, "-U", SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--no-sync",
            )  # fmt: skip
            options = (
                f"-h 127.0.0.1 -p {server.port} -k {root} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            server._run(
                bindir / "pg_ctl", "-D", server.data, "-l", root / "server.log", "-o", options,
                "-w", "-t", str(START_TIMEOUT_S), "start",
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` (psycopg 3, the sync driver the server uses)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database (one per test, so tests never see each other's rows)."""
        import psycopg

        self.databases += 1
        name = f"test_{self.databases}"
        dsn = f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a cluster, yield it, always stop it and remove its files."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise PostgresUnavailable("psycopg is not installed (pip install -e '.[test]')") from None
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()
