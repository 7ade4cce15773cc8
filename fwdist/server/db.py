"""The fleet database: SQLAlchemy Core tables and the engine, for SQLite and PostgreSQL alike.

The schema is written once, here, dialect-neutral (no SQLite or PostgreSQL types), and
Alembic's revisions in ``migrations/versions`` create exactly these tables; a test compares
the two. SQLite is the embedded default, a file beside the store, so ``fwdist server
--store DIR`` needs no set-up: it runs in WAL mode (readers never wait for the one writer)
with a ``busy_timeout`` (a second writer waits instead of failing) and foreign keys on
(SQLite leaves them off unless every connection asks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fwdist.errors import FwdistError

DB_FILE = "fleet.db"
BUSY_TIMEOUT_MS = 30_000
"""How long an SQLite writer waits for another: longer than any one request's transaction."""

metadata = sa.MetaData()

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("secret_sha256", sa.LargeBinary(32), nullable=False, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
)

releases = sa.Table(
    "releases",
    metadata,
    sa.Column("product", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("published_at", sa.BigInteger, nullable=False),
    sa.Column("manifest_sha256", sa.LargeBinary(32), nullable=False),
)

payloads = sa.Table(
    "payloads",
    metadata,
    sa.Column("product", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("from_version", sa.String(32), nullable=True),
    sa.Column("encoder", sa.String(64), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("pieces", sa.Integer, nullable=False),
    sa.Column("table_sha256", sa.LargeBinary(32), nullable=False),
    sa.ForeignKeyConstraint(
        ["product", "version"], ["releases.product", "releases.version"], ondelete="CASCADE"
    ),
)

boxes = sa.Table(
    "boxes",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("product", sa.String(64), nullable=False, index=True),
    sa.Column("hardware", sa.String(64), nullable=False),
    sa.Column("public_key", sa.LargeBinary(32), nullable=False),
    sa.Column("registered_at", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=True),
)

box_tags = sa.Table(
    "box_tags",
    metadata,
    sa.Column("box_id", sa.String(64), sa.ForeignKey("boxes.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("tag", sa.String(64), primary_key=True, index=True),
)

reports = sa.Table(
    "reports",
    metadata,
    sa.Column("box_id", sa.String(64), sa.ForeignKey("boxes.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("wire", sa.LargeBinary, nullable=False),
    sa.Column("received_at", sa.BigInteger, nullable=False),
    sa.Column("running_version", sa.String(32), nullable=False),
    sa.Column("running_image", sa.LargeBinary(8), nullable=False),
    sa.Column("target_version", sa.String(32), nullable=True),
    sa.Column("held", sa.BigInteger, nullable=True),
    sa.Column("total", sa.BigInteger, nullable=True),
    sa.Column("battery", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("last_version", sa.String(32), nullable=True),
    sa.Column("last_outcome", sa.String(24), nullable=True),
    sa.Column("last_reason", sa.Integer, nullable=True),
    sa.Column("clock", sa.BigInteger, nullable=False),
)


# rollouts (r1, fwdist.server.rollouts): each rollout's plan and machine, every transition
rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("id", sa.String(112), primary_key=True),
    sa.Column("product", sa.String(64), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("plan", sa.Text, nullable=False),  # fwdist.rollout.Plan.to_json()
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("phase", sa.Integer, nullable=False),
    sa.Column("phase_began", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("decision", sa.Text, nullable=True),  # the latest Decision.to_json()
    sa.ForeignKeyConstraint(
        ["product", "version"], ["releases.product", "releases.version"], ondelete="CASCADE"
    ),
)

rollout_events = sa.Table(
    "rollout_events",
    metadata,
    sa.Column("rollout_id", sa.String(112), sa.ForeignKey("rollouts.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("before", sa.String(16), nullable=False),
    sa.Column("after", sa.String(16), nullable=False),
    sa.Column("phase", sa.Integer, nullable=False),
    sa.Column("decision", sa.Text, nullable=True),  # what an automatic event was decided on
)

# server_keys (fwdist.server.server_keys): secrets every server process on this database shares
server_keys = sa.Table(
    "server_keys",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("secret", sa.LargeBinary(32), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)


def default_url(store: Path) -> str:
    """The embedded database: ``fleet.db`` in the store directory."""
    return f"sqlite:///{(Path(store) / DB_FILE).resolve()}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at each checkpoint
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///PATH`` or ``postgresql+psycopg://...``).

    A URL that names another database, or no database, is refused in one line.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise FwdistError(f"--db {url!r} is not a database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise FwdistError("--db: an SQLite database must be a file (sqlite:///PATH)")
        engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_size=8, max_overflow=8, pool_pre_ping=True)
    raise FwdistError(f"--db: {backend} is not supported (use sqlite:/// or postgresql://)")


def insert_ignoring_duplicates(engine: Engine, table: sa.Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the engine's dialect (both spell it alike)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table).on_conflict_do_nothing()
