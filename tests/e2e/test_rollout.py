"""Rollouts end to end: a real ``fwdist server`` process driven by the ``fwdist rollout``
and ``fwdist release yank`` commands, as a release engineer would."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import report
from fwdist.manifest import Version
from fwdist.protocol import BoxState
from fwdist.rollout import Answer, BoxView, SyncPolicy
from fwdist.server.auth import Scope
from fwdist.server.client import Client, publish
from fwdist.server.ingest import frame_reports
from fwdist.testing import Releases, make_releases
from tests.e2e.test_cli_conventions import documented_fields
from tests.e2e.test_server_publish import fwdist, publish_all
from tests.server_helpers import RunningServer, db_url, fleet_server

__all__ = ["db_url", "fleet_server"]  # fixtures


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return make_releases(tmp_path_factory.mktemp("rollout"), count=4, size=16 * 1024, seed=1)


def test_a_release_engineer_starts_pauses_resumes_and_yanks(fleet_server: RunningServer,
                                                            history: Releases) -> None:
    publish_all(fleet_server, history)
    url, token = fleet_server.url, fleet_server.tokens[Scope.RELEASE]

    def rollout(*args: str, tok: str = token) -> subprocess.CompletedProcess[str]:
        return fwdist("rollout", *args, "--server", url, "--token", tok)

    out = rollout("start", "lockbox@1.1.0", "--phases", "1,10,100", "--json")
    assert (out.returncode, out.stderr) == (0, "")
    doc = json.loads(out.stdout)
    assert (doc["id"], doc["state"], doc["phase"], doc["share_bp"]) == (
        "lockbox@1.1.0-1", "active", 0, 100)
    assert [p["share_bp"] for p in doc["plan"]["phases"]] == [100, 1000, 10_000]
    assert doc["decision"]["eligible"] == 0  # no box registered yet

    app_token = fleet_server.tokens[Scope.APP]
    refused = rollout("start", "lockbox@1.2.0", "--phases", "1,100", tok=app_token)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        "fwdist: error: POST /v1/rollouts: 403 a app token may not do this (needs release)\n")
    again = rollout("start", "lockbox@1.1.0", "--phases", "1,100")
    assert (again.returncode, again.stderr) == (
        1, "fwdist: error: POST /v1/rollouts: 409 lockbox@1.1.0 already has a rollout in progress: "
           "lockbox@1.1.0-1\n")
    shrinking = rollout("start", "lockbox@1.2.0", "--phases", "10,1")
    assert (shrinking.returncode, shrinking.stderr) == (
        1, "fwdist: error: phase shares must grow: 10 %, 1 %\n")
    unknown = rollout("start", "lockbox@9.9.9", "--phases", "100")
    assert unknown.returncode == 1
    assert unknown.stderr.endswith(
        "404 no release lockbox@9.9.9 on this server (publish it first)\n")
    nonsense = rollout("start", "lockbox@1.2.0", "--phases", "0,100")
    assert nonsense.returncode == 2
    assert "a phase share must be 0.01..100 %" in nonsense.stderr

    paused = rollout("pause", "lockbox@1.1.0-1", "--json")
    outputs = {"rollout start": doc, "rollout pause": json.loads(paused.stdout)}
    assert outputs["rollout pause"]["state"] == "paused"
    twice = rollout("pause", "lockbox@1.1.0-1")
    assert (twice.returncode, twice.stderr) == (
        1, "fwdist: error: POST /v1/rollouts/lockbox@1.1.0-1/pause: 409 lockbox@1.1.0-1: a rollout "
           "that is paused cannot pause\n")
    outputs["rollout resume"] = json.loads(rollout("resume", "lockbox@1.1.0-1", "--json").stdout)
    assert outputs["rollout resume"]["state"] == "active"
    outputs["rollout status"] = json.loads(rollout("status", "lockbox@1.1.0-1", "--json").stdout)
    other = json.loads(rollout("start", "lockbox@1.2.0", "--phases", "50,100", "--json").stdout)
    outputs["rollout abort"] = json.loads(rollout("abort", other["id"], "--json").stdout)
    assert (outputs["rollout abort"]["id"], outputs["rollout abort"]["state"]) == (
        "lockbox@1.2.0-1", "aborted")

    status = rollout("status", "lockbox@1.1.0-1")
    lines = status.stdout.splitlines()
    assert lines[0].startswith(
        "lockbox@1.1.0-1: active, phase 1 of 3 (1 %, 10 %, 100 %); offered to 1 % since ")
    assert lines[1] == ("  0 offered of 0 eligible; heard from 0 of 0 since the phase began; "
                        "0 installed, 0 in progress, 0 failed, 0 reverted, 0 rejected, "
                        "0 not heard from")
    assert lines[2] == "  decision: wait (no eligible box yet)"
    assert [line.split("  ")[-1] for line in lines[3:]] == [
        "start: pending -> active", "pause: active -> paused", "resume: paused -> active"]

    yank = fwdist("release", "yank", "lockbox@1.1.0", "--server", url, "--token", token, "--json")
    assert json.loads(yank.stdout) == {"schema": 1, "product": "lockbox", "version": "1.1.0",
                                       "state": "yanked", "rollouts_stopped": ["lockbox@1.1.0-1"]}
    outputs["release yank"] = json.loads(yank.stdout)
    outputs["rollout list"] = json.loads(rollout("list", "--json").stdout)
    listed = outputs["rollout list"]["rollouts"]
    assert [(r["id"], r["state"], r["share_bp"]) for r in listed] == [
        ("lockbox@1.1.0-1", "aborted", 0), ("lockbox@1.2.0-1", "aborted", 0)]
    documented = documented_fields()
    for command, out in outputs.items():
        assert (out["schema"], set(out)) == (1, documented[command]), command
    with fleet_server.client(Scope.READ) as reader:
        states = {r["version"]: r["state"] for r in reader.get("/v1/releases").json()["releases"]}
    assert states == {"1.0.0": "published", "1.1.0": "yanked", "1.2.0": "published",
                      "1.3.0": "published"}


# --- the end-to-end: phases, the automatic abort, yank --------------------------------

FLEET = [f"box-{i:03d}" for i in range(120)]


@dataclass
class Box:
    """An emulated box as its reports show it: what it runs, how its last install ended.

    Installs are modelled (a box offered a release runs it, or reverts it when the test says
    it fails); everything a box says leaves as a report signed by its own device key.
    """

    id: str
    running: str = "1.0.0"
    last: report.LastResult | None = None
    seq: int = 0
    key: Ed25519PrivateKey = field(init=False)

    def __post_init__(self) -> None:
        self.key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(self.id.encode()).digest())

    def registration(self) -> dict[str, object]:
        return {"id": self.id, "product": "lockbox", "hardware": "lb-r2", "tags": [],
                "public_key": self.key.public_key().public_bytes_raw().hex()}

    def failed(self, version: str) -> int:
        bad = (report.Outcome.SELF_TEST_FAILED, report.Outcome.BUILD_FAILED)
        return int(self.last is not None and self.last.version == version
                   and self.last.outcome in bad)

    def report(self) -> bytes:
        self.seq += 1
        rep = report.Report(self.id, self.seq, "lockbox", "lb-r2", self.running, bytes(8), None,
                            80, BoxState.IDLE, self.last, 0)
        return report.sign(rep, self.key)


@dataclass
class Phone:
    """A phone: syncs (uploading what it carries first), then visits boxes offline,
    offering what its last sync allows (:class:`fwdist.rollout.SyncPolicy`)."""

    http: httpx.Client
    policy: SyncPolicy = field(default_factory=lambda: SyncPolicy(frozenset()))
    outbox: list[bytes] = field(default_factory=list)

    def sync(self) -> dict[str, object]:
        if self.outbox:
            r = self.http.post("/v1/reports", content=frame_reports(self.outbox),
                               headers={"Content-Type": "application/x-fwdist-reports"})
            assert r.status_code == 200, r.text
            assert {x["status"] for x in r.json()["results"]} == {"accepted"}
            self.outbox = []
            time.sleep(1.1)  # the server's clock is in seconds: the next phase begins after
        doc: dict[str, object] = self.http.get("/v1/sync").json()
        self.policy = SyncPolicy.from_sync(doc)
        return doc

    def answer(self, box: Box, version: str) -> Answer:
        view = BoxView(box.id, failures=box.failed(version))
        return self.policy.answer("lockbox", version, view, int(time.time()))

    def visit(self, box: Box, failing: frozenset[str] = frozenset()) -> str | None:
        """One session: the newest release the policy offers this box, installed or
        reverted; the box's report collected either way. Returns the version offered."""
        offered = None
        mine = [v for p, v in self.policy.releases if p == "lockbox"]
        for version in sorted(mine, key=Version.parse, reverse=True):
            if Version.parse(version) <= Version.parse(box.running):
                break
            if self.answer(box, version) is Answer.OFFER:
                offered = version
                if box.id in failing:
                    box.last = report.LastResult(version, report.Outcome.SELF_TEST_FAILED)
                else:
                    box.running = version
                    box.last = report.LastResult(version, report.Outcome.INSTALLED)
                break
        self.outbox.append(box.report())
        return offered


def test_phases_an_automatic_abort_and_a_yank_over_emulated_boxes_and_phones(
    fleet_server: RunningServer, history: Releases, tmp_path: Path
) -> None:
    url, release_token = fleet_server.url, fleet_server.tokens[Scope.RELEASE]
    with Client(url, release_token) as c:
        for version in ("1.0.0", "1.1.0"):
            publish(c, history.store, "lockbox", version)
    boxes = [Box(b) for b in FLEET]
    with fleet_server.client(Scope.RELEASE) as engineer:
        for box in boxes:
            assert engineer.post("/v1/boxes", json=box.registration()).status_code == 201

    def cli(*args: str) -> dict[str, object]:
        out = fwdist(*args, "--server", url, "--token", release_token, "--json")
        assert (out.returncode, out.stderr) == (0, ""), out.stderr
        doc: dict[str, object] = json.loads(out.stdout)
        return doc

    def status(rid: str) -> dict[str, Any]:
        return cli("rollout", "status", rid)

    # 1 % -> 10 % -> 100 % of 120 boxes; a phase passes when all its boxes run 1.1.0
    started = cli("rollout", "start", "lockbox@1.1.0", "--phases", "1,10,100",
                  "--installed", "100", "--min-heard", "1")
    rid = "lockbox@1.1.0-1"
    assert (started["id"], started["share_bp"]) == (rid, 100)
    with fleet_server.client(Scope.APP) as app_a, fleet_server.client(Scope.APP) as app_b:
        phone, other = Phone(app_a), Phone(app_b)
        offered_per_phase = []
        for _ in range(3):
            phone.sync()
            offered_per_phase.append(sorted(b.id for b in boxes if phone.visit(b) == "1.1.0"))
            phone.sync()
        assert [len(o) for o in offered_per_phase] == [4, 9, 107]
        assert offered_per_phase[0] == ["box-015", "box-032", "box-043", "box-119"]
        assert set(offered_per_phase[0]) < set(offered_per_phase[0] + offered_per_phase[1])
        doc = status(rid)
        assert doc["state"] == "completed"
        assert [(e["event"], e["phase"]) for e in doc["events"]] == [
            ("start", 0), ("criteria_met", 0), ("start", 0), ("criteria_met", 1), ("start", 1),
            ("criteria_met", 2), ("finish", 2)]
        assert [e["decision"]["offered"] for e in doc["events"] if e["event"] == "criteria_met"] \
            == [4, 13, 120]
        fleet = cli("fleet", "status")
        assert fleet["products"]["lockbox"]["versions"] == {"1.1.0": 120}  # type: ignore[index]

        # 1.2.0 fails its self-test on the odd-numbered boxes: 10 % trips the abort
        with Client(url, release_token) as c:
            publish(c, history.store, "lockbox", "1.2.0")
        cli("rollout", "start", "lockbox@1.2.0", "--phases", "10,100", "--installed", "90",
            "--abort-threshold", "20", "--abort-min", "5")
        bad = "lockbox@1.2.0-1"
        failing = frozenset(b for b in FLEET if int(b[4:]) % 2)
        phone.sync()
        first = [b.id for b in boxes[:40] if phone.visit(b, failing) == "1.2.0"]
        assert first == ["box-016", "box-026", "box-031", "box-037"]
        phone.sync()
        d = status(bad)["decision"]
        assert (d["verdict"], d["offered"], d["heard"]) == ("wait", 11, 40)
        assert d["outcomes"] == {"installed": 2, "reverted": 2}
        assert (d["failure_share"], d["not_heard"]) == ([1, 2], 7)  # 50 %, but 4 < 5 finished
        other.sync()
        rest = [b.id for b in boxes[40:] if other.visit(b, failing) == "1.2.0"]
        assert rest == ["box-040", "box-061", "box-071", "box-086", "box-103", "box-107",
                        "box-117"]
        other.sync()
        doc = status(bad)
        d = doc["decision"]
        assert (doc["state"], doc["events"][-1]["event"]) == ("aborted", "auto_abort")
        assert d["outcomes"] == {"installed": 4, "reverted": 7}
        assert (d["eligible"], d["offered"], d["heard"], d["not_heard"]) == (120, 11, 120, 0)
        assert d["coverage"] == [1, 1] and d["failure_share"] == [7, 11]
        assert d["why"] == "7 of 11 finished boxes failed (threshold 20 %, minimum 5)"
        sync = phone.sync()
        assert ("lockbox", "1.2.0") not in phone.policy.releases
        assert [r["state"] for r in sync["rollouts"]] == ["completed"]  # type: ignore[index]
        assert all(phone.visit(b) is None for b in boxes if b.running == "1.1.0")
        phone.sync()

        # a yanked release is no longer offered after the phone's next sync
        with Client(url, release_token) as c:
            publish(c, history.store, "lockbox", "1.3.0")
        phone.sync()
        assert phone.answer(boxes[0], "1.3.0") is Answer.OFFER  # published, no rollout: everyone
        yanked = cli("release", "yank", "lockbox@1.3.0")
        assert yanked["rollouts_stopped"] == []
        assert phone.answer(boxes[0], "1.3.0") is Answer.OFFER  # not synced yet: the weaker rule
        phone.sync()
        assert phone.answer(boxes[0], "1.3.0") is Answer.STOPPED
        assert [phone.visit(b) for b in boxes[:10]] == [None] * 10
