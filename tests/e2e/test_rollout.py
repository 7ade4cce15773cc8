"""Rollouts end to end: a real ``fwdist server`` process driven by the ``fwdist rollout``
and ``fwdist release yank`` commands, as a release engineer would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fwdist.server.auth import Scope
from fwdist.server.client import Client, publish
from fwdist.testing import Releases, make_releases
from tests.server_helpers import RunningServer, db_url, fleet_server

__all__ = ["db_url", "fleet_server"]  # fixtures


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return make_releases(tmp_path_factory.mktemp("rollout"), count=3, size=16 * 1024, seed=1)


def fwdist(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fwdist", *args], capture_output=True,
                          text=True, timeout=120)


def publish_all(server: RunningServer, history: Releases) -> None:
    with Client(server.url, server.tokens[Scope.RELEASE]) as c:
        for r in history.releases:
            publish(c, history.store, "lockbox", r.version)


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
    assert json.loads(paused.stdout)["state"] == "paused"
    twice = rollout("pause", "lockbox@1.1.0-1")
    assert (twice.returncode, twice.stderr) == (
        1, "fwdist: error: POST /v1/rollouts/lockbox@1.1.0-1/pause: 409 lockbox@1.1.0-1: a rollout "
           "that is paused cannot pause\n")
    assert json.loads(rollout("resume", "lockbox@1.1.0-1", "--json").stdout)["state"] == "active"

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
    listed = json.loads(rollout("status", "--json").stdout)["rollouts"]
    assert [(r["id"], r["state"], r["share_bp"]) for r in listed] == [
        ("lockbox@1.1.0-1", "aborted", 0)]
    with fleet_server.client(Scope.READ) as reader:
        states = {r["version"]: r["state"] for r in reader.get("/v1/releases").json()["releases"]}
    assert states == {"1.0.0": "published", "1.1.0": "yanked", "1.2.0": "published"}
