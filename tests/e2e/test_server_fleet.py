"""A real ``fwdist server``: the box registry, signed report ingestion, the fleet summary, sync."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fwdist import report
from fwdist.protocol import BoxState
from fwdist.report import LastResult, Outcome, Report, TargetProgress
from fwdist.server.auth import Scope
from fwdist.server.ingest import MEDIA_TYPE, frame_reports
from tests.server_helpers import RunningServer, db_url, fleet_server

__all__ = ["db_url", "fleet_server"]  # fixtures

IMAGE = bytes(range(8))


def device_key(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"box %d" % n).digest())


def raw(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def signed(n: int, seq: int, running: str = "1.0.0", target: TargetProgress | None = None,
           last: LastResult | None = None, state: BoxState = BoxState.IDLE,
           key: Ed25519PrivateKey | None = None, battery: int = 80) -> bytes:
    r = Report(f"box-{n}", seq, "lockbox", "lb-r2", running, IMAGE, target, battery, state,
               last, 1_700_000_000 + seq)
    return report.sign(r, key or device_key(n))


def register(c: httpx.Client, n: int, tags: list[str]) -> httpx.Response:
    return c.post("/v1/boxes", json={"id": f"box-{n}", "product": "lockbox",
                                     "hardware": "lb-r2", "public_key": raw(device_key(n)),
                                     "tags": tags})


def upload(server: RunningServer, wires: list[bytes]) -> list[tuple[str, str | None]]:
    with server.client(Scope.APP) as phone:
        r = phone.post("/v1/reports", content=frame_reports(wires),
                       headers={"Content-Type": MEDIA_TYPE})
    assert r.status_code == 200, r.text
    return [(x["status"], x["reason"]) for x in r.json()["results"]]


@pytest.fixture
def three_boxes(fleet_server: RunningServer) -> RunningServer:
    with fleet_server.client(Scope.RELEASE) as c:
        codes = [register(c, n, tags).status_code
                 for n, tags in ((1, ["north", "pilot"]), (2, ["north"]), (3, []))]
    assert codes == [201, 201, 201]
    return fleet_server


def test_registration_is_idempotent_and_refuses_another_key(fleet_server: RunningServer) -> None:
    with fleet_server.client(Scope.RELEASE) as c:
        assert register(c, 1, ["a"]).status_code == 201
        assert register(c, 1, ["a"]).status_code == 200
        r = c.post("/v1/boxes", json={"id": "box-1", "product": "lockbox", "hardware": "lb-r2",
                                      "public_key": raw(device_key(9)), "tags": []})
        assert (r.status_code, r.json()) == (409, {"error": "box box-1 is registered with "
                                                            "another key"})
        for bad in ({"id": "../x"}, {"public_key": "00"}, {"tags": "north"}):
            doc = {"id": "box-2", "product": "lockbox", "hardware": "lb-r2",
                   "public_key": raw(device_key(2)), "tags": [], **bad}
            assert c.post("/v1/boxes", json=doc).status_code == 422, bad
        assert c.post("/v1/boxes", content=b"{nope").status_code == 400
    with fleet_server.client(Scope.APP) as phone:
        assert register(phone, 2, []).status_code == 403
    with fleet_server.client(Scope.READ) as reader:
        boxes = reader.get("/v1/boxes").json()["boxes"]
    assert [(b["id"], b["tags"], b["last_report"]) for b in boxes] == [("box-1", ["a"], None)]


def test_reports_are_accepted_once_and_forgeries_rejected(three_boxes: RunningServer) -> None:
    good = [signed(1, 1), signed(1, 2), signed(2, 1)]
    assert upload(three_boxes, good) == [("accepted", None)] * 3
    forged = signed(3, 1, key=device_key(99))  # box 3's report signed by another key
    unknown = signed(7, 1)  # a box nobody registered
    other_bytes = signed(1, 2, battery=5)  # seq 2 of box 1 again, saying something else
    got = upload(three_boxes, [*good, forged, unknown, other_bytes, b"\x01\x02", good[0]])
    assert got == [
        ("duplicate", None), ("duplicate", None), ("duplicate", None),
        ("rejected", "box report box-3#1 is not signed by that box's key"),
        ("rejected", "box report box-7#1: box box-7 is not registered"),
        ("rejected", "box report box-1#2: the server holds other bytes under this seq"),
        ("rejected", "box report of 2 bytes is not 65..512"),
        ("duplicate", None),
    ]
    with three_boxes.client(Scope.READ) as reader:
        box1 = reader.get("/v1/boxes/box-1").json()
        box3 = reader.get("/v1/boxes/box-3").json()
    assert [h["seq"] for h in box1["history"]] == [2, 1]
    assert box1["last_report"]["battery"] == 80  # the forgery changed nothing
    assert (box3["last_report"], box3["history"]) == (None, [])


def test_one_request_with_the_same_new_report_twice_stores_it_once(
        three_boxes: RunningServer) -> None:
    wire = signed(2, 5)
    assert upload(three_boxes, [wire, wire, signed(2, 5, battery=1)]) == [
        ("accepted", None), ("duplicate", None),
        ("rejected", "box report box-2#5: the server holds other bytes under this seq")]


def test_the_fleet_summary_counts_each_box_by_its_newest_report(
        three_boxes: RunningServer) -> None:
    newest_first = [
        signed(1, 9, running="1.1.0", last=LastResult("1.1.0", Outcome.INSTALLED)),
        signed(1, 3, running="1.0.0", state=BoxState.RECEIVING,
               target=TargetProgress("1.1.0", 100, 4000)),  # older, arrives later
        signed(2, 4, running="1.0.0", last=LastResult("1.1.0", Outcome.SELF_TEST_FAILED),
               target=TargetProgress("1.1.0", 4000, 4000), state=BoxState.COMPLETE),
    ]
    assert [s for s, _ in upload(three_boxes, newest_first)] == ["accepted"] * 3
    with three_boxes.client(Scope.READ) as reader:
        summary = reader.get("/v1/fleet").json()
        north = reader.get("/v1/boxes", params={"tag": "north"}).json()["boxes"]
    assert summary == {"products": {"lockbox": {
        "versions": {"1.0.0": 1, "1.1.0": 1}, "in_progress": 1, "failed": 1, "boxes": 3,
        "heard_from": 2}}}
    assert [(b["id"], b["last_report"]["seq"]) for b in north] == [("box-1", 9), ("box-2", 4)]
    with three_boxes.client(Scope.APP) as phone:
        sync = phone.get("/v1/sync").json()
    assert sync == {"releases": [], "versions_in_use": {"lockbox": {"1.0.0": 1, "1.1.0": 1}},
                    "rollouts": [], "trust": {"root_versions": 0, "timestamp_etag": None}}


def test_hostile_report_uploads_get_one_clear_4xx(three_boxes: RunningServer) -> None:
    with three_boxes.client(Scope.APP) as phone:
        r = phone.post("/v1/reports", content=b"\x05abc", headers={"Content-Type": MEDIA_TYPE})
        assert (r.status_code, r.json()) == (400, {"error": "report 0: length 5 is out of range"})
        r = phone.post("/v1/reports", content=b"x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        r = phone.post("/v1/reports", content=b"\x80" * 4_000_000,
                       headers={"Content-Type": MEDIA_TYPE})
        assert r.status_code == 413
    with three_boxes.client(Scope.READ) as reader:
        assert reader.post("/v1/reports", content=b"").status_code == 403
        assert reader.get("/v1/boxes/box-1", params={"limit": "x"}).status_code == 400
        assert reader.get("/v1/boxes/nobody").status_code == 404


def test_fleet_cli_prints_the_summary(three_boxes: RunningServer) -> None:
    upload(three_boxes, [signed(1, 1), signed(2, 1, running="1.1.0")])
    out = subprocess.run(
        [sys.executable, "-m", "fwdist", "fleet", "status", "--server", three_boxes.url,
         "--token", three_boxes.tokens[Scope.READ]], capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stdout) == (
        0, "lockbox: 3 boxes, heard from 2; 1.0.0: 1, 1.1.0: 1; 0 in progress, 0 failed\n")


def test_sync_names_the_trust_roots_and_the_timestamp_etag(fleet_server: RunningServer) -> None:
    from fwdist import trust
    from fwdist.store import Store
    from tests.trust_helpers import ROOT_KEYS, T0, root_v1, timestamp

    store = Store.open(fleet_server.store)
    store.put_root(trust.sign(root_v1(), ROOT_KEYS[:2]))
    stamp = timestamp(1, T0)
    with store.locked():
        store.put_timestamp(stamp)
    with fleet_server.client(Scope.APP) as phone:
        got = phone.get("/v1/sync").json()["trust"]
        served = phone.get("/trust/timestamp")
    etag = hashlib.sha256(stamp).hexdigest()
    assert got == {"root_versions": 1, "timestamp_etag": etag}
    assert (served.content, served.headers["etag"]) == (stamp, f'"{etag}"')
