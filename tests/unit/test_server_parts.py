"""The fleet server's parts without a process: schema, OpenAPI table, ranges, packs, framing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from fwdist.server import auth, db, ingest, migrate, openapi, pack
from fwdist.server import fleet as fleet_counts
from fwdist.server.app import all_routes
from fwdist.server.auth import Scope
from fwdist.server.caching import byte_range
from fwdist.server.context import ClientError
from tests.server_helpers import db_url

__all__ = ["db_url"]  # fixture


def test_the_migrations_make_exactly_the_tables_db_declares(db_url: str) -> None:
    engine = db.make_engine(db_url)
    assert migrate.current(engine) is None
    assert migrate.upgrade(engine) == migrate.head() == "0003_server_keys"
    assert migrate.upgrade(engine) == "0003_server_keys"  # a second start changes nothing
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        names = set(sa.inspect(conn).get_table_names())
    assert names >= {"tokens", "releases", "payloads", "boxes", "box_tags", "reports",
                     "rollouts", "rollout_events", "server_keys", "alembic_version"}
    engine.dispose()


def test_sqlite_runs_in_wal_with_a_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    engine = db.make_engine(db.default_url(tmp_path))
    with engine.connect() as conn:
        pragmas = [conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                   for p in ("journal_mode", "busy_timeout", "foreign_keys")]
    assert pragmas == ["wal", db.BUSY_TIMEOUT_MS, 1]
    engine.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://x/y", "nonsense"])
def test_a_database_url_fwdist_cannot_use_is_one_line(url: str) -> None:
    with pytest.raises(Exception, match="--db") as e:
        db.make_engine(url)
    assert "\n" not in str(e.value)


def test_tokens_are_stored_hashed_and_revocation_sticks(tmp_path: Path) -> None:
    engine = db.make_engine(db.default_url(tmp_path))
    migrate.upgrade(engine)
    secret = auth.create(engine, "ci", Scope.APP, 100)
    assert secret.startswith("fwd_app_") and len(secret) == len("fwd_app_") + 43
    with engine.connect() as conn:
        stored = conn.execute(sa.select(db.tokens.c.secret_sha256)).scalar_one()
    assert stored == hashlib.sha256(secret.encode()).digest()
    assert auth.scope_of(engine, secret) is Scope.APP
    assert auth.scope_of(engine, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert (auth.revoke(engine, "ci", 200), auth.revoke(engine, "ci", 300)) == (True, False)
    assert auth.scope_of(engine, secret) is None
    assert [(t.name, t.revoked_at) for t in auth.listing(engine)] == [("ci", 200)]
    engine.dispose()


def test_the_openapi_document_describes_exactly_the_registered_routes() -> None:
    registered = {(m.lower(), r.path.replace(":path}", "}"))
                  for r in all_routes() if isinstance(r, Route)
                  for m in (r.methods or ()) if m != "HEAD"}
    documented = {(m, p) for p, ops in openapi.document()["paths"].items() for m in ops}
    assert documented == registered


@given(st.integers(0, 300), st.integers(0, 300) | st.none(), st.integers(0, 200))
def test_a_satisfiable_range_is_the_slice_rfc_9110_names(first: int, last: int | None,
                                                         size: int) -> None:
    header = f"bytes={first}-" + ("" if last is None else str(last))
    got = byte_range(header, size)
    if last is not None and last < first:
        assert got is None
    elif first >= size:
        assert got is False
    else:
        end = size if last is None else min(last + 1, size)
        assert got == (first, end)


@given(st.integers(0, 300), st.integers(0, 200))
def test_a_suffix_range_is_the_last_n_bytes(n: int, size: int) -> None:
    got = byte_range(f"bytes=-{n}", size)
    assert got == (False if n == 0 else (max(0, size - n), size))


@pytest.mark.parametrize("header", ["bytes=1-2,4-5", "items=0-1", "bytes=-", "bytes=a-b"])
def test_a_range_we_do_not_answer_gets_the_whole_body(header: str) -> None:
    assert byte_range(header, 100) is None


@given(st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.binary(min_size=1,
                                                                          max_size=64)),
                max_size=8))
def test_a_pack_decodes_to_what_it_encodes(objects: list[tuple[bytes, bytes]]) -> None:
    data = pack.encode(objects)
    assert list(pack.decode_pack(data).objects) == objects
    assert len(data) == pack.index_size(len(objects)) + sum(len(f) for _, f in objects)
    if objects:
        with pytest.raises(pack.PackError):
            pack.decode_pack(data[:-1])


def test_a_pack_index_is_nine_bytes_then_thirty_six_per_object() -> None:
    data = pack.encode([(b"\xab" * 32, b"xyz")])
    assert data == b"fwpk\x01\x00\x00\x00\x01" + b"\xab" * 32 + b"\x00\x00\x00\x03xyz"


@given(st.lists(st.binary(min_size=1, max_size=512), max_size=20))
def test_report_framing_splits_back_into_the_reports(wires: list[bytes]) -> None:
    assert list(ingest.split(ingest.frame_reports(wires))) == wires


@given(st.binary(max_size=64))
def test_any_body_splits_or_is_refused_with_a_4xx(body: bytes) -> None:
    try:
        list(ingest.split(body))
    except ClientError as e:
        assert e.status in (400, 413)


def test_a_body_frames_each_report_by_its_length_seven_bits_a_byte_low_first() -> None:
    assert ingest.frame_reports([b"a", b"b" * 300]) == b"\x01a\xac\x02" + b"b" * 300
    for bad in (b"\x80\x00", b"\x81\x80\x80\x00", b"\x80"):  # long form, too long, cut
        with pytest.raises(ClientError, match="length prefix is malformed"):
            list(ingest.split(bad))


def test_the_cli_offers_exactly_the_token_scopes() -> None:
    from fwdist.cli.server import SCOPES

    assert tuple(s.value for s in Scope) == SCOPES


def test_a_live_token_is_believed_for_the_revocation_delay_and_no_longer() -> None:
    cache = auth.TokenCache(ttl=2.0, max_entries=2)
    live = "fwd_app_" + "A" * 43
    assert cache.get(live, 10.0) is None  # never seen: ask the database
    cache.put(live, Scope.APP, 10.0)
    assert [cache.get(live, t) for t in (10.0, 11.999)] == [Scope.APP, Scope.APP]
    assert cache.get(live, 12.0) is None  # revoked meanwhile or not, the database decides
    assert cache.get("fwd_app_" + "B" * 43, 10.5) is None
    for i, t in enumerate((20.0, 20.5, 21.0)):  # full: expired entries go, then all
        cache.put(f"fwd_read_{i:043d}", Scope.READ, t)
    assert [cache.get(f"fwd_read_{i:043d}", 21.0) for i in range(3)] == [None, None, Scope.READ]


def test_inline_and_pool_signature_checks_agree_and_a_dead_pool_falls_back() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fwdist.server import signatures

    keys = [Ed25519PrivateKey.from_private_bytes(bytes([i]) * 32) for i in range(3)]
    raw = [k.public_key().public_bytes_raw() for k in keys]
    checks = [(raw[i % 3], keys[i % 3].sign(b"m%d" % i), b"m%d" % i) for i in range(12)]
    checks[4] = (raw[4 % 3], checks[4][1], b"other message")
    checks[7] = (raw[0], checks[7][1], checks[7][2])  # signed by key 1, checked against key 0
    checks[9] = (b"\x00" * 31, checks[9][1], checks[9][2])  # no key at all
    expected = [i not in (4, 7, 9) for i in range(12)]
    assert signatures.check(checks) == expected
    verifier = signatures.Verifier(1)
    try:
        assert verifier(checks) == expected
        assert verifier(checks[:3]) == [True, True, True]  # few: inline
        pool = verifier._pool
        assert pool is not None
        for proc in list(pool._processes.values()):
            proc.kill()
            proc.join()
        assert verifier(checks) == expected  # the broken pool is replaced by inline checks
        assert verifier._pool is None
    finally:
        verifier.close()


_BOX = st.tuples(st.sampled_from(["lockbox", "keysafe"]),
                 st.lists(st.sampled_from(["1.0.0", "1.1.0", "1.2.0", "2.0.0"]), max_size=4))


@given(st.lists(_BOX, max_size=12))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_grouped_versions_in_use_are_the_summary_s_versions(
    tmp_path: Path, fleet: list[tuple[str, list[str]]]
) -> None:
    """The sync's grouped count (the fast path) against the summary's row-by-row count."""
    engine = db.make_engine(db.default_url(tmp_path))
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(db.reports.delete())
        conn.execute(db.boxes.delete())
        for n, (product, versions) in enumerate(fleet):
            box = f"box-{n:03d}"
            conn.execute(db.boxes.insert().values(
                id=box, product=product, hardware="hw", public_key=bytes(32), registered_at=1,
                last_seq=len(versions) or None))
            for seq, version in enumerate(versions, start=1):
                conn.execute(db.reports.insert().values(
                    box_id=box, seq=seq, wire=b"w", received_at=1, running_version=version,
                    running_image=bytes(8), battery=90, state="idle", clock=0))
    summary = {p: s["versions"] for p, s in fleet_counts.summary(engine)["products"].items()}
    assert fleet_counts.versions_in_use(engine) == summary
    expected: dict[str, dict[str, int]] = {}
    for product, versions in fleet:  # each box counts once, by its newest report
        counts = expected.setdefault(product, {})
        if versions:
            counts[versions[-1]] = counts.get(versions[-1], 0) + 1
    assert summary == {p: dict(sorted(c.items())) for p, c in sorted(expected.items())}
    engine.dispose()
