"""The fleet commands as a user runs them: JSON fields as docs/cli.md lists, one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fwdist.server.auth import Scope
from fwdist.server.ingest import MEDIA_TYPE, frame_reports
from fwdist.testing import Releases, make_releases
from tests.e2e.test_cli_conventions import documented_fields
from tests.e2e.test_server_fleet import register, signed
from tests.server_helpers import RunningServer, db_url, fleet_server

__all__ = ["db_url", "fleet_server"]  # fixtures


def fwdist(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fwdist", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def ok_json(*args: str | Path) -> Any:
    out = fwdist(*args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return make_releases(tmp_path_factory.mktemp("cli"), count=1, size=16 * 1024, seed=1)


def test_every_fleet_command_prints_exactly_the_documented_json(
        fleet_server: RunningServer, history: Releases) -> None:
    store, db = fleet_server.store, fleet_server.db_url
    with fleet_server.client(Scope.RELEASE) as c:
        assert register(c, 1, ["north"]).status_code == 201
    with fleet_server.client(Scope.APP) as phone:
        phone.post("/v1/reports", content=frame_reports([signed(1, 1)]),
                   headers={"Content-Type": MEDIA_TYPE})
    remote = ["--server", fleet_server.url, "--token", fleet_server.tokens[Scope.RELEASE]]
    outputs = {
        "token create": ok_json("token", "create", "--store", store, "--db", db, "--scope",
                                "read", "dash"),
        "token list": ok_json("token", "list", "--store", store, "--db", db),
        "token revoke": ok_json("token", "revoke", "--store", store, "--db", db, "dash"),
        "publish": ok_json("publish", "--store", history.store.root, *remote, "lockbox@1.0.0"),
        "fleet status": ok_json("fleet", "status", *remote),
        "fleet boxes": ok_json("fleet", "boxes", *remote),
        "fleet box": ok_json("fleet", "box", "box-1", *remote),
    }
    documented = documented_fields()
    for command, out in outputs.items():
        assert out["schema"] == 1, command
        assert set(out) == documented[command], command
    assert outputs["token create"]["token"].startswith("fwd_read_")
    assert [t["name"] for t in outputs["token list"]["tokens"]] == [
        "dash", "test-app", "test-read", "test-release"]
    assert outputs["publish"]["created"] is True
    assert outputs["fleet status"]["products"]["lockbox"]["versions"] == {"1.0.0": 1}
    assert [h["seq"] for h in outputs["fleet box"]["history"]] == [1]


def test_the_server_stops_cleanly_on_sigterm(fleet_server: RunningServer) -> None:
    assert fleet_server.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize(("args", "line"), [
    (["server", "--store", "{tmp}/s", "--listen", "nowhere"],
     "fwdist: error: --listen must be HOST:PORT, got 'nowhere'\n"),
    (["server", "--store", "{tmp}/s", "--db", "mysql://x/y"],
     "fwdist: error: --db: mysql is not supported (use sqlite:/// or postgresql://)\n"),
    (["server", "--store", "{tmp}/full"],
     "fwdist: error: {tmp}/full exists and is not empty; refusing to make it a store\n"),
    (["fleet", "status", "--server", "ftp://x", "--token", "t"],
     "fwdist: error: --server must be an http:// or https:// URL, got 'ftp://x'\n"),
    (["token", "revoke", "--store", "{tmp}/s", "nobody"], "fwdist: error: no store at {tmp}/s\n"),
    (["token", "create", "--store", "{tmp}/s", "--scope", "app", "bad name"],
     "fwdist: error: token name 'bad name' must be 1-64 letters, digits, '.', '_' or '-', "
     "starting with a letter or digit\n"),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, args: list[str], line: str) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    out = fwdist(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert (out.returncode, out.stderr) == (1, line.replace("{tmp}", str(tmp_path)))
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["mine.txt"]


def test_revoking_an_unknown_token_is_one_line(fleet_server: RunningServer) -> None:
    out = fwdist("token", "revoke", "--store", fleet_server.store, "--db", fleet_server.db_url,
                 "nobody")
    assert (out.returncode, out.stderr) == (1, "fwdist: error: no token named 'nobody'\n")


def test_a_server_that_is_not_there_is_one_line() -> None:
    out = fwdist("fleet", "status", "--server", "http://127.0.0.1:9", "--token", "t")
    assert out.returncode == 1
    assert out.stderr.startswith("fwdist: error: cannot reach http://127.0.0.1:9: ")
    assert out.stderr.count("\n") == 1
