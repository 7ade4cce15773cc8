"""A yank as a signed revocation: ``fwdist server --timestamp-key`` re-issues the timestamp
when a release is published or yanked; a phone syncs it and relays it, and a box holding the
yanked release as its target drops it (a real server, a real ``lockbox serve``)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fwdist import trust
from fwdist.sample import SampleFirmware
from fwdist.server import db, stamping
from fwdist.server.auth import Scope
from fwdist.store import Store
from tests.e2e.test_device_cli import Box, fwdist, fwdist_json
from tests.e2e.test_key_cli import refused
from tests.server_helpers import RunningServer, prepare, start_server

SAMPLE = SampleFirmware(size=48 * 1024, seed=21)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Any]]:
    """What the test started (servers and boxes), stopped at the end."""
    made: list[Any] = []
    yield made
    for thing in made:
        if isinstance(thing, Box):
            thing.kill()
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                thing.stop()


def test_a_yank_reaches_a_box_as_a_revocation(tmp_path: Path, running: list[Any]) -> None:
    d = tmp_path
    for name in ("r", "a", "ts"):
        fwdist("keygen", d / name)
    for v in range(2):
        (d / f"fw{v}.bin").write_bytes(SAMPLE.image(v))
    fwdist("root", "create", d / "root1", "--root-keys", f"1:{d}/r.pub", "--timestamp-keys",
           f"1:{d}/ts.pub", "--release-keys", f"1:{d}/a.pub", "--expires", "30")
    fwdist("root", "sign", d / "root1", "--key", d / "r")
    eng, srv = d / "eng", d / "server-store"
    fwdist("stage", d / "fw0.bin", "--store", eng, "--init-store", "--product", "lockbox",
           "--version", "1.0.0", "--key", d / "a")
    fwdist("stage", d / "fw1.bin", "--store", eng, "--product", "lockbox", "--version", "1.1.0",
           "--key", d / "a")
    fwdist("root", "publish", d / "root1", "--store", eng)
    url = db.default_url(d)
    tokens = prepare(srv, url, [])
    fwdist("root", "publish", d / "root1", "--store", srv)
    server: RunningServer = start_server(srv, url, d / "server.log", "127.0.0.1:0",
                                         "--timestamp-key", str(d / "ts"))
    server.tokens = tokens
    running.append(server)
    # at start, and after each publish, a timestamp: version 3 names 1.1.0 as the latest
    assert trust.decode_timestamp(Store.open(srv).get_timestamp() or b"").timestamp.version == 1
    for v in ("1.0.0", "1.1.0"):
        fwdist("publish", "--store", eng, "--server", server.url, "--token",
               tokens[Scope.RELEASE], f"lockbox@{v}")
    ts = trust.decode_timestamp(Store.open(srv).get_timestamp() or b"").timestamp
    assert (ts.version, ts.latest, ts.revoked) == (3, (("lockbox", "1.1.0"),), ())

    fwdist("lockbox", "init", "--state", d / "box", "--product", "lockbox", "--root",
           d / "root1", "--image", d / "fw0.bin", "--version", "1.0.0")
    box = Box(d / "box")
    box.start()
    running.append(box)
    cache = d / "phone"

    def sync() -> Any:
        return fwdist_json("app", "sync", "--server", server.url, "--token", tokens[Scope.APP],
                           "--cache", cache, "--pubkey", d / "a.pub")

    def push(*extra: str) -> Any:
        return fwdist_json("app", "push", "--cache", cache, "--product", "lockbox", "--root",
                           d / "root1", "--to", box.address, *extra)

    assert sync()["trust_files"] == 2  # root 1 and the timestamp
    first = push("--max-bytes", "1500")
    assert [(a["sent"], a["reason"], a["timestamp_version"]) for a in first["trust"]] == [
        ("ask", None, None), ("timestamp", None, 3)]
    st = fwdist_json("lockbox", "status", "--state", box.state)
    assert (st["target_version"], st["trust"]["latest"], st["trust"]["behind_latest"]) == (
        "1.1.0", "1.1.0", True)

    with server.client(Scope.RELEASE) as c:
        r = c.post("/v1/releases/lockbox/1.1.0/yank")
        assert r.status_code == 200, r.text
    ts = trust.decode_timestamp(Store.open(srv).get_timestamp() or b"").timestamp
    assert (ts.version, ts.latest, ts.revoked) == (
        4, (("lockbox", "1.0.0"),), (("lockbox", "1.1.0"),))
    assert sync()["trust_files"] == 1  # the new timestamp
    after = push()
    assert [(a["sent"], a["reason"], a["timestamp_version"], a["dropped"])
            for a in after["trust"]] == [("ask", None, 3, False), ("timestamp", None, 4, True)]
    st = fwdist_json("lockbox", "status", "--state", box.state)
    assert (st["running_version"], st["target_version"], st["state"]) == ("1.0.0", None, "idle")
    assert (st["trust"]["revoked"], st["trust"]["timestamp_version"]) == (["1.1.0"], 4)


def test_a_timestamp_key_the_root_does_not_name_is_refused_at_start(tmp_path: Path) -> None:
    d = tmp_path
    for name in ("r", "a", "ts"):
        fwdist("keygen", d / name)
    fwdist("root", "create", d / "root1", "--root-keys", f"1:{d}/r.pub", "--timestamp-keys",
           f"1:{d}/ts.pub", "--release-keys", f"1:{d}/a.pub", "--expires", "30")
    fwdist("root", "sign", d / "root1", "--key", d / "r")
    srv = d / "server-store"
    Store.open(srv, create=True)
    fwdist("root", "publish", d / "root1", "--store", srv)
    refused(fwdist("server", "--store", srv, "--timestamp-key", d / "a", ok=False),
            "the timestamp key is not root 1's timestamp role alone (its threshold is 1)")
    assert Store.open(srv).get_timestamp() is None


def test_a_timestamp_is_due_once_a_period_old(tmp_path: Path) -> None:
    """The period rule the server's background task applies (no waiting on a clock here)."""
    from tests.trust_helpers import ROOT_KEYS, TIMESTAMP_KEY, root_v1

    store = Store.open(tmp_path / "s", create=True)
    with store.locked():
        store.put_root(trust.sign(root_v1(), ROOT_KEYS[:2]))
    stamper = stamping.Stamper(TIMESTAMP_KEY, every=600)  # type: ignore[arg-type]
    assert stamping.due(store, 1_700_000_000, 600)
    assert stamper.refresh(store, 1_700_000_000)
    assert not stamper.refresh(store, 1_700_000_599)
    assert stamper.refresh(store, 1_700_000_600)
    ts = trust.decode_timestamp(store.get_timestamp() or b"").timestamp
    assert (ts.version, ts.time, ts.expires) == (2, 1_700_000_600, 1_700_000_600 + 4 * 600)
