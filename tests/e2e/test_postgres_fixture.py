"""The PostgreSQL the fleet tests run against is a real server, private to the run.

These check the fixture itself: that it is PostgreSQL (not a stand-in), on loopback,
that each test gets an empty database of its own, and the server features the fleet
schema leans on (``ON CONFLICT DO NOTHING`` on a composite key, ``BYTEA``).
"""

from __future__ import annotations

import psycopg
import pytest

from tests.pg_helpers import PostgresServer


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def test_the_server_is_postgresql_on_loopback(pg_url: str, pg_server: PostgresServer) -> None:
    assert pg_url.startswith(f"postgresql+psycopg://fwdist@127.0.0.1:{pg_server.port}/test_")
    with _connect(pg_url) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        addr = conn.execute("SELECT inet_server_addr()::text").fetchone()
    assert version is not None and int(str(version[0])) >= 150000
    assert addr == ("127.0.0.1/32",)


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_gets_an_empty_database(pg_url: str, round_: int) -> None:
    """Run twice: the second run must not see the first run's table."""
    with _connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE left_behind (n int)")


def test_idempotent_insert_on_a_composite_key(pg_url: str) -> None:
    """The report ingest's primitive: a second insert of (box, seq) changes nothing."""
    with _connect(pg_url) as conn:
        conn.execute("CREATE TABLE r (box text, seq bigint, wire bytea, PRIMARY KEY (box, seq))")
        rows = [("box-1", 1, b"\x00a"), ("box-1", 2, b"\x00b"), ("box-1", 1, b"\xffother")]
        inserted = 0
        for row in rows:
            cur = conn.execute(
                "INSERT INTO r VALUES (%s, %s, %s) ON CONFLICT (box, seq) DO NOTHING", row
            )
            inserted += cur.rowcount
        stored = conn.execute("SELECT seq, wire FROM r ORDER BY seq").fetchall()
    assert inserted == 2
    assert stored == [(1, b"\x00a"), (2, b"\x00b")]
