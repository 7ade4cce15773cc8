"""Issue 13's "done means", with real processes on 127.0.0.1: a server, three `lockbox serve`
boxes and two phones. Publish a release, register the boxes, sync both phones, push with
the server down (no network at the box), sync again, and `fwdist fleet status --json` shows
every box's true state; a sync whose pack download breaks resumes at its byte.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fwdist import keys, protocol, sync
from fwdist.outbox import Outbox
from fwdist.releases import phone_cache
from fwdist.server.auth import Scope
from fwdist.server.client import Client, ServerError, publish
from fwdist.store import Store
from fwdist.testing import Releases, make_releases
from tests.e2e.test_cli_conventions import documented_fields
from tests.e2e.test_device_cli import Box, fwdist, fwdist_json
from tests.server_helpers import RunningServer, db_url, fleet_server, start_server

__all__ = ["db_url", "fleet_server"]  # (pytest fixtures used below)

V0, V1 = "1.0.0", "1.1.0"


@pytest.fixture
def released(tmp_path: Path) -> Releases:
    """lockbox 1.0.0 and 1.1.0 (with a delta from 1.0.0), signed by the key the server trusts."""
    rel = make_releases(tmp_path / "eng", count=2, size=48 * 1024, seed=1)
    (tmp_path / "release.pub").write_bytes(keys.public_pem(rel.key.public_key()))
    return rel


@pytest.fixture
def boxes(tmp_path: Path) -> Iterator[dict[str, Box]]:
    made = {}
    for name in ("box-a", "box-b", "box-c"):
        fwdist("lockbox", "init", "--state", tmp_path / name, "--product", "lockbox",
               "--hardware", "lb-r2", "--pubkey", tmp_path / "release.pub",
               "--image", tmp_path / "eng" / "image-0.bin", "--version", V0, "--id", name)
        made[name] = Box(tmp_path / name)
    try:
        yield made
    finally:
        for b in made.values():
            b.kill()


def _sync(server: RunningServer, cache: Path, tmp_path: Path, *extra: str) -> dict[str, Any]:
    out: dict[str, Any] = fwdist_json("app", "sync", "--server", server.url, "--token",
                                      server.tokens[Scope.APP], "--cache", cache,
                                      "--pubkey", tmp_path / "release.pub", *extra)
    return out


def _push(cache: Path, box: Box, tmp_path: Path, *extra: str) -> dict[str, Any]:
    out: dict[str, Any] = fwdist_json("app", "push", "--cache", cache, "--product", "lockbox",
                                      "--pubkey", tmp_path / "release.pub", "--to", box.address,
                                      *extra)
    return out


def _states(out: dict[str, Any]) -> list[tuple[int, str]]:
    (rel,) = out["releases"]
    assert (rel["product"], rel["version"]) == ("lockbox", V1)
    return [(p["index"], p["state"]) for p in rel["payloads"]]


def test_two_phones_carry_releases_out_and_reports_home(
        fleet_server: RunningServer, released: Releases, boxes: dict[str, Box],
        tmp_path: Path, db_url: str) -> None:
    server = fleet_server
    release_token = server.tokens[Scope.RELEASE]
    store = released.store.root
    for v in (V0, V1):
        fwdist("publish", "--store", store, "--server", server.url, "--token", release_token,
               f"lockbox@{v}")
    for name, b in boxes.items():
        reg = fwdist_json("box", "register", "--server", server.url, "--token", release_token,
                          "--state", b.state, "--tag", "north")
        assert (reg["id"], reg["product"], reg["hardware"]) == (name, "lockbox", "lb-r2")
        assert set(reg) == documented_fields()["box register"] and reg["tags"] == ["north"]
    m1 = released.releases[1].manifest
    full, delta = m1.full, m1.deltas[0]

    # phone 1 has room for everything; phone 2 only for the delta (the full image is skipped)
    p1, p2 = tmp_path / "phone1", tmp_path / "phone2"
    first = _sync(server, p1, tmp_path)
    assert _states(first) == [(0, "fetched"), (1, "fetched")]  # no box heard from: full first
    assert set(first) == documented_fields()["app sync"]
    room = str(delta.size + 2048)
    second = _sync(server, p2, tmp_path, "--max-cache", room)
    assert _states(second) == [(0, "skipped"), (1, "fetched")]
    assert second["cache_bytes"] <= int(room)
    assert Store.open(p2).releases() == [("lockbox", V1)]

    # at the boxes: no network (the server is down)
    assert server.stop(signal.SIGTERM) == 0
    for b in boxes.values():
        b.start()
    a = _push(p1, boxes["box-a"], tmp_path)  # the full image or the delta: the box chooses
    assert a["complete"] and a["box_reports_kept"] == 3  # Summary, Accept, ReleaseComplete
    a2 = _push(p1, boxes["box-a"], tmp_path)  # installed between sessions
    assert a2["installed"] and a2["reason"] == "box already runs this release"
    b = _push(p2, boxes["box-b"], tmp_path, "--max-bytes", "300")  # walked away early
    assert not b["complete"] and b["box_reports_kept"] == 2
    c = _push(p2, boxes["box-c"], tmp_path)
    assert c["complete"]
    c2 = _push(p2, boxes["box-c"], tmp_path)
    assert c2["installed"]
    assert len(Outbox(p1).pending()) == 4 and len(Outbox(p2).pending()) == 6

    # back in coverage: both phones sync, and the fleet is what the boxes are
    server = start_server(server.store, db_url, tmp_path / "server2.log")
    server.tokens = fleet_server.tokens
    try:
        up1, up2 = _sync(server, p1, tmp_path), _sync(server, p2, tmp_path)
        assert up1["reports"] == {"accepted": 4, "duplicate": 0, "rejected": 0,
                                  "rejected_reasons": []}
        assert up2["reports"]["accepted"] == 6
        assert Outbox(p1).pending() == [] and Outbox(p2).pending() == []
        status = fwdist_json("fleet", "status", "--server", server.url, "--token",
                             server.tokens[Scope.READ])
        assert status["products"] == {"lockbox": {
            "versions": {V0: 1, V1: 2}, "in_progress": 1, "failed": 0, "boxes": 3,
            "heard_from": 3}}
        # the newest report of each box, whatever order the phones delivered them in
        with server.client(Scope.READ) as http:
            rows = {name: http.get(f"/v1/boxes/{name}").json()["last_report"] for name in boxes}
        assert {n: (r["seq"], r["running_version"], r["state"]) for n, r in rows.items()} == {
            "box-a": (3, V1, "idle"), "box-b": (1, V0, "receiving"), "box-c": (3, V1, "idle")}
        assert rows["box-b"]["target_version"] == V1 and rows["box-b"]["total"] in (
            full.size, delta.size)
        assert rows["box-a"]["last_outcome"] == "installed"
        # a phone that carries a report the server has gets `duplicate`, and forgets it
        wire = bytes.fromhex(a2["box_reports"][0])
        Outbox(p1).add(wire)
        again = _sync(server, p1, tmp_path)
        assert (again["reports"]["duplicate"], Outbox(p1).pending()) == (1, [])
        # the fleet now runs 1.0.0 on one box: its delta comes first, then the full image
        assert _states(again) == [(1, "held"), (0, "held")]
        assert [p["boxes"] for p in again["releases"][0]["payloads"]] == [1, 1]
    finally:
        server.stop()


class DropAfter(httpx.BaseTransport):
    """The phone's link: the first pack download breaks after ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.limit = limit
        self.ranges: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        wanted = request.headers.get("range", "")
        if "/pack/" not in request.url.path or re.fullmatch(r"bytes=0-\d+", wanted):
            return response  # (not a pack, or the request for a pack's index)
        self.ranges.append(request.headers.get("range"))
        if self.limit < 0:
            return response
        limit, self.limit = self.limit, -1

        class Broken(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                sent = 0
                for chunk in response.stream:
                    take = chunk[: limit - sent]
                    sent += len(take)
                    yield take
                    if sent >= limit:
                        raise httpx.ReadError("link dropped")

        return httpx.Response(response.status_code, headers=response.headers, stream=Broken())


def test_a_broken_sync_resumes_its_pack_at_the_byte_it_stopped(
        fleet_server: RunningServer, released: Releases, tmp_path: Path) -> None:
    with Client(fleet_server.url, fleet_server.tokens[Scope.RELEASE]) as c:
        publish(c, released.store, "lockbox", V1)
    trusted = {k: v for k, v in released.trusted.items()}
    link = DropAfter(5000)
    client = Client(fleet_server.url, fleet_server.tokens[Scope.APP])
    client.http = httpx.Client(base_url=fleet_server.url, transport=link, headers={
        "Authorization": f"Bearer {fleet_server.tokens[Scope.APP]}"})
    cache = tmp_path / "phone"
    with pytest.raises(ServerError, match="link dropped"):
        sync.sync(client, cache, trusted)
    full = released.releases[1].manifest.full
    partial = cache / "partial" / f"{full.table_sha256.hex()}.pack"
    assert partial.stat().st_size == 5000
    out = sync.sync(client, cache, trusted)
    assert [(p["index"], p["state"]) for p in out.releases[0]["payloads"]] == [
        (0, "fetched"), (1, "fetched")]
    assert link.ranges[:2] == ["bytes=0-", "bytes=5000-"]  # the second asked for the rest only
    assert not partial.exists()
    # what the cache holds verifies: a phone pushes from it with no network
    pc = phone_cache(Store.open(cache), "lockbox", V1, trusted.values(), partial=True)
    assert set(pc.tables) == {full.table_sha256, released.releases[1].manifest.deltas[0]
                              .table_sha256}


def test_app_push_from_a_cache_offers_only_to_the_rollouts_cohort(
        fleet_server: RunningServer, released: Releases, tmp_path: Path) -> None:
    """Issue 14: `app push --cache` applies the rollout its last sync stored. The phone learns
    which box it reached from the box's signed report; at 1 %, box-015 is in the cohort of
    lockbox@1.1.0-1 and box-000 is not (fwdist.rollout.in_cohort)."""
    server = fleet_server
    token = server.tokens[Scope.RELEASE]
    for v in (V0, V1):
        fwdist("publish", "--store", released.store.root, "--server", server.url, "--token",
               token, f"lockbox@{v}")
    started = fwdist_json("rollout", "start", f"lockbox@{V1}", "--phases", "1,100",
                          "--server", server.url, "--token", token)
    assert (started["id"], started["share_bp"]) == ("lockbox@1.1.0-1", 100)
    made = {}
    for name in ("box-000", "box-015"):
        fwdist("lockbox", "init", "--state", tmp_path / name, "--product", "lockbox",
               "--hardware", "lb-r2", "--pubkey", tmp_path / "release.pub",
               "--image", tmp_path / "eng" / "image-0.bin", "--version", V0, "--id", name)
        fwdist("box", "register", "--server", server.url, "--token", token,
               "--state", tmp_path / name)
        made[name] = Box(tmp_path / name)
    phone = tmp_path / "phone"
    _sync(server, phone, tmp_path)
    policy = json.loads((phone / "policy.json").read_bytes())
    assert [(r["id"], r["state"], r["share_bp"]) for r in policy["rollouts"]] == [
        ("lockbox@1.1.0-1", "active", 100)]
    assert server.stop(signal.SIGTERM) == 0  # at the boxes: no network
    try:
        for b in made.values():
            b.start()
        out = _push(phone, made["box-000"], tmp_path)
        assert {k: out[k] for k in ("reason", "rollout", "payload_sent", "acked_bytes",
                                    "complete", "box_version", "protocol",
                                    "box_reports_kept")} == {
            "reason": "the rollout does not offer this release to this box",
            "rollout": "not_in_cohort", "payload_sent": 0, "acked_bytes": 0,
            "complete": False, "box_version": V0, "protocol": 2, "box_reports_kept": 1}
        hello = len(protocol.encode(protocol.Hello(2, protocol.DEFAULT_MAX_FRAME)))
        assert hello == 11  # the Hello alone: waiting for the report cost no byte
        assert (out["sent_bytes"], len(out["box_reports"])) == (hello, 1)
        inside = _push(phone, made["box-015"], tmp_path)
        assert (inside["rollout"], inside["complete"], inside["reason"]) == ("offer", True, None)
        assert inside["payload_sent"] > 0 and inside["box_reports_kept"] == 3
        made["box-000"].kill()
        made["box-015"].kill()
        status = {n: fwdist_json("lockbox", "status", "--state", tmp_path / n) for n in made}
        assert {n: (s["running_version"], s["state"], s["target_version"])
                for n, s in status.items()} == {
            "box-000": (V0, "idle", None), "box-015": (V1, "idle", None)}  # installed when idle
    finally:
        for b in made.values():
            b.kill()
