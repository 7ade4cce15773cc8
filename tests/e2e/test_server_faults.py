"""Faults with real processes: ``kill -9`` the server in a burst of uploads (the phones retry),
and ``kill -9`` a phone's ``fwdist app sync`` in the middle of a pack (it resumes).

The promise under test (issue 13): after the phones retry, no report is lost and none
is counted twice. A ``kill -9`` is the honest fault: no handler runs, the open SQLite
transaction (or PostgreSQL session) is cut wherever it was, and a phone whose answer
was lost cannot know whether its batch was stored, so it sends it again. Ingest is
idempotent on (box id, seq), so the second copy of a stored report is a
``duplicate``, and the server's history per box is then exactly seq 1..N.

The burst runs on the embedded SQLite and on a real PostgreSQL server (tests/pg_helpers.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

from benchmarks import bench_fleet
from benchmarks.fleet_phones import Tally, upload
from benchmarks.fleet_processes import FleetServer, free_port, fwdist_cli
from fwdist import keys
from fwdist.releases import phone_cache
from fwdist.store import Store
from fwdist.testing import make_releases
from tests.counting_proxy import CountingProxy
from tests.server_helpers import db_url

BOXES = 24
REPORTS_PER_BOX = 50
PHONES = 6
BATCH = 10
KILL_AFTER = BOXES * REPORTS_PER_BOX // 3
"""The server is killed once this many reports were answered accepted: mid-burst, for sure."""
DOWN_S = 0.5
RETRY_FOR_S = 120.0


__all__ = ["db_url"]  # the fixture: SQLite, then PostgreSQL


@pytest.fixture
def db_args(db_url: str) -> tuple[str, ...]:
    """``fwdist server`` and ``fwdist token`` arguments naming the database."""
    return ("--db", db_url)


def _token(store: Path, db_args: tuple[str, ...], scope: str) -> str:
    out = fwdist_cli(
        "token", "create", "--store", store, *db_args, "--scope", scope, f"t-{scope}", "--json"
    )
    secret: str = json.loads(out)["token"]
    return secret


def _register(url: str, token: str) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        for i in range(BOXES):
            public = bench_fleet.box_key(i).public_key().public_bytes_raw()
            r = client.post("/v1/boxes", json={
                "id": bench_fleet.box_id(i), "product": bench_fleet.PRODUCT,
                "hardware": bench_fleet.HARDWARE, "public_key": public.hex(), "tags": [],
            })  # fmt: skip
            assert r.status_code == 201, r.text


async def _burst_with_a_kill(
    server: FleetServer, token: str, phones: list[list[list[bytes]]]
) -> tuple[Tally, int]:
    """All phones upload at once; the server is killed -9 mid-burst and restarted."""
    tally = Tally()
    deadline = time.monotonic() + RETRY_FOR_S

    async def phone(batches: list[list[bytes]]) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            await upload(client, token, batches, tally, retry_until=deadline)

    async with trio.open_nursery() as nursery:
        for batches in phones:
            nursery.start_soon(phone, batches)
        while tally.results["accepted"] < KILL_AFTER:
            await trio.sleep(0.002)
        accepted_at_kill = tally.results["accepted"]
        await trio.to_thread.run_sync(server.kill)
        await trio.sleep(DOWN_S)  # the phones fail against a dead port meanwhile
        await trio.to_thread.run_sync(server.start)
    return tally, accepted_at_kill


def test_kill_9_in_a_burst_loses_no_report_and_counts_none_twice(
    tmp_path: Path, db_args: tuple[str, ...]
) -> None:
    store = tmp_path / "server-store"
    load = bench_fleet.Load(boxes=BOXES, reports_per_box=REPORTS_PER_BOX, phones=PHONES,
                            batch=BATCH, fetchers=0, image_bytes=0)  # fmt: skip
    phones = bench_fleet.phone_batches(bench_fleet.make_reports(load, "1.0.0"), load)
    total = BOXES * REPORTS_PER_BOX
    listen = f"127.0.0.1:{free_port()}"
    server = FleetServer.fwdist(store, tmp_path / "server.log", *db_args, listen=listen)
    with server:
        release, app, read = (_token(store, db_args, s) for s in ("release", "app", "read"))
        _register(server.url, release)
        first_pid = server.pid

        tally, accepted_at_kill = trio.run(_burst_with_a_kill, server, app, phones)

        assert server.pid != first_pid
        assert KILL_AFTER <= accepted_at_kill < total
        assert sum(tally.failures.values()) > 0 and tally.retries > 0  # the kill was felt
        # Every report was answered once in the end: stored now, or stored before the kill
        # and its answer lost (then its retry is a duplicate). Nothing rejected.
        assert set(tally.results) <= {"accepted", "duplicate"}
        assert tally.results["accepted"] + tally.results["duplicate"] == total

        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {read}"}) as c:
            for i in range(BOXES):
                r = c.get(f"/v1/boxes/{bench_fleet.box_id(i)}", params={"limit": 1000})
                assert r.status_code == 200, r.text
                seqs = [h["seq"] for h in r.json()["history"]]
                assert seqs == list(range(REPORTS_PER_BOX, 0, -1)), bench_fleet.box_id(i)
            fleet = c.get("/v1/fleet").json()["products"][bench_fleet.PRODUCT]
        assert (fleet["boxes"], fleet["heard_from"], fleet["versions"]) == (
            BOXES, BOXES, {"1.0.0": BOXES}
        )  # fmt: skip
    assert server.proc is not None and server.proc.returncode == 0  # SIGTERM: a clean stop


def test_a_phone_sync_killed_mid_pack_fetches_only_the_rest_and_the_cache_verifies(
        tmp_path: Path) -> None:
    """``fwdist app sync``, a real process, is killed -9 a third of the way through a pack
    (behind a proxy that slows it down and counts what it relays); the next ``app sync``
    fetches the pack's index and then exactly the bytes it lacked, and the cache holds a
    release that verifies."""
    releases = make_releases(tmp_path / "staging", count=1, size=256 * 1024, seed=13,
                             deltas=False)  # fmt: skip
    manifest = releases.releases[0].manifest
    pubkey = tmp_path / "release.pub"
    pubkey.write_bytes(keys.public_pem(releases.key.public_key()))
    served = tmp_path / "served"
    bench_fleet.serving_store(releases.store.root, served)
    with FleetServer.fwdist(served, tmp_path / "server.log") as server, \
            CountingProxy(("127.0.0.1", int(server.url.rpartition(":")[2])),
                          delay_per_kib=0.02) as proxy:  # fmt: skip
        release, app = (_token(served, (), s) for s in ("release", "app"))
        fwdist_cli("publish", "--store", releases.store.root, "--server", server.url,
                   "--token", release, f"{bench_fleet.PRODUCT}@{manifest.version}")  # fmt: skip
        path = f"/v1/releases/{bench_fleet.PRODUCT}/{manifest.version}/pack/0"
        whole = httpx.get(server.url + path, headers={"Authorization": f"Bearer {app}"}).content
        assert len(whole) > 30 * 1024

        cache = tmp_path / "phone"
        argv = [sys.executable, "-m", "fwdist", "app", "sync", "--server", proxy.url,
                "--token", app, "--cache", str(cache), "--pubkey", str(pubkey), "--json"]
        part = cache / "partial" / f"{manifest.full.table_sha256.hex()}.pack"
        phone = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size >= len(whole) // 3):
            assert phone.poll() is None, "the phone ended before it could be killed"
            assert time.monotonic() < deadline, "the phone made no progress"
            time.sleep(0.005)
        phone.kill()
        assert phone.wait(10) == -signal.SIGKILL
        held = part.stat().st_size
        assert len(whole) // 3 <= held < len(whole)

        proxy.wait_idle()  # the killed run's cut answer is logged before the next run
        proxy.delay_per_kib, first = 0.0, len(proxy.log)
        again = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert again.returncode == 0, again.stderr
        out = json.loads(again.stdout)
        packs = [(x.range, x.body_bytes) for x in proxy.log[first:]
                 if x.request.split()[1] == path]
    (rel,) = out["releases"]
    assert [(p["index"], p["state"]) for p in rel["payloads"]] == [(0, "fetched")]
    index_bytes = 9 + 36 * (manifest.full.pieces + 1)  # the index: the table, every piece
    assert packs == [(f"bytes=0-{index_bytes - 1}", index_bytes),
                     (f"bytes={held}-", len(whole) - held)]
    assert not part.exists()
    pc = phone_cache(Store.open(cache), bench_fleet.PRODUCT, manifest.version,
                     [releases.key.public_key()])  # fmt: skip
    assert set(pc.tables) == {manifest.full.table_sha256}
