"""Box reports end to end with real processes: `lockbox init` makes the device key and id,
`lockbox serve` signs a report in each session, `app push --cache` keeps them in the outbox."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fwdist import keys, report
from fwdist.manifest import key_id
from fwdist.outbox import Outbox
from fwdist.protocol import BoxState
from tests.e2e.test_device_cli import Box, fwdist, fwdist_json
from tests.e2e.test_device_cli import release as release  # (the staged store, as a fixture)


def _init(release: Path, state: Path, *extra: str) -> dict[str, object]:
    out: dict[str, object] = fwdist_json(
        "lockbox", "init", "--state", state, "--product", "lockbox", "--pubkey",
        release / "release.key.pub", "--image", release / "fw0.bin", "--version", "1.0.0",
        *extra)
    return out


@pytest.fixture
def box(release: Path, tmp_path: Path) -> Iterator[Box]:
    _init(release, tmp_path / "box", "--id", "lb-0001")
    b = Box(tmp_path / "box")
    try:
        yield b
    finally:
        b.kill()


def test_init_makes_a_private_device_key_and_an_id_from_it(release: Path, tmp_path: Path) -> None:
    out = _init(release, tmp_path / "box")
    key = tmp_path / "box" / "device.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    public = keys.load_public(tmp_path / "box" / "device.key.pub")
    assert out["box_id"] == key_id(public).hex() and len(str(out["box_id"])) == 16
    meta = json.loads((tmp_path / "box" / "box.json").read_text())
    assert meta["id"] == out["box_id"]


def test_init_refuses_a_bad_id_and_leaves_nothing(release: Path, tmp_path: Path) -> None:
    proc = fwdist("lockbox", "init", "--state", tmp_path / "box", "--product", "lockbox",
                  "--pubkey", release / "release.key.pub", "--image", release / "fw0.bin",
                  "--version", "1.0.0", "--id", "../evil", ok=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "box id must be 1-64 of [A-Za-z0-9._-]" in proc.stderr
    assert not (tmp_path / "box").exists() and list(tmp_path.iterdir()) == []


def test_push_with_a_cache_keeps_the_boxes_reports(release: Path, box: Box,
                                                   tmp_path: Path) -> None:
    box.start()
    cache = tmp_path / "phone"
    device = keys.load_public(box.state / "device.key.pub")
    seqs = []
    for budget in ("2000", "2000"):
        out = fwdist_json("app", "push", "--store", release / "store", "--product", "lockbox",
                          "--pubkey", release / "release.key.pub", "--connect", box.address,
                          "--cache", cache, "--max-bytes", budget)
        assert out["box_reports_kept"] == len(out["box_reports"]) >= 1
        seqs += [report.verify(bytes.fromhex(w), device).seq for w in out["box_reports"]]
    # session 1: after the Summary and after the Accept of 1.1.0; session 2: after the Summary
    assert seqs == [0, 1, 2]
    pending = Outbox(cache).pending()
    assert [(p.box_id, p.seq, p.name) for p in pending] == [
        ("lb-0001", 0, "lb-0001.0.report"), ("lb-0001", 1, "lb-0001.1.report"),
        ("lb-0001", 2, "lb-0001.2.report")]
    last = report.verify(pending[-1].wire, device)
    assert (last.running_version, last.target is not None, last.state) == (
        "1.0.0", True, BoxState.RECEIVING)
    assert last.target is not None and 0 < last.target.held < last.target.total
