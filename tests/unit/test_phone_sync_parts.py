"""The phone's outbox and the parts of its sync that need no server: what is fetched first,
and the checks a pack must pass before anything of it is kept (fwdist.outbox, fwdist.sync)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import report, sync
from fwdist.manifest import decode
from fwdist.outbox import Outbox, OutboxError
from fwdist.protocol import BoxState
from fwdist.server import pack
from fwdist.testing import Releases

DEVICE = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fwdist outbox test").digest())


def _report(box_id: str, seq: int) -> bytes:
    return report.sign(report.Report(box_id, seq, "lockbox", "lb-r2", "1.0.0", bytes(8), None,
                                     90, BoxState.IDLE, None, 0), DEVICE)


def test_the_outbox_keeps_one_file_per_box_and_seq(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    assert [box.add(_report("b", 2)), box.add(_report("a", 7)), box.add(_report("b", 2))] == [
        True, True, False]
    assert [(p.name, p.box_id, p.seq) for p in box.pending()] == [
        ("a.7.report", "a", 7), ("b.2.report", "b", 2)]
    assert (tmp_path / "outbox" / "b.2.report").read_bytes() == _report("b", 2)
    box.remove(["a.7.report"])
    assert [p.name for p in box.pending()] == ["b.2.report"]
    assert sorted(p.name for p in (tmp_path / "outbox").iterdir()) == ["b.2.report"]


def test_the_outbox_never_sends_or_deletes_what_is_not_its_report(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.add(_report("a", 1))
    d = tmp_path / "outbox"
    (d / "notes.txt").write_text("mine")
    (d / "a.2.report").write_bytes(b"junk")  # a report's name, not a report
    (d / "a.3.report").write_bytes(_report("a", 4))  # a report under another's name
    assert [p.name for p in box.pending()] == ["a.1.report"]
    with pytest.raises(OutboxError, match=r"'notes\.txt' is not a report's name"):
        box.remove(["notes.txt"])
    assert (d / "notes.txt").read_text() == "mine"
    with pytest.raises(report.ReportError):
        box.add(b"not a report")
    assert sorted(p.name for p in d.iterdir()) == [
        "a.1.report", "a.2.report", "a.3.report", "notes.txt"]


@pytest.fixture(scope="module")
def rel(release_history: Callable[..., Releases]) -> Releases:
    return release_history(3, 24 * 1024, 2)


def test_deltas_for_the_versions_in_use_come_first_by_box_count(rel: Releases) -> None:
    m = rel.releases[2].manifest  # 1.2.0: deltas from 1.0.0 and 1.1.0
    sources = {i: r.source_version for i, r in enumerate((m.full, *m.deltas))}
    order = sync.priority(m, {"1.0.0": 2, "1.1.0": 5, "1.2.0": 4})
    assert [(sources[i], boxes) for i, _, boxes in order] == [
        ("1.1.0", 5), ("1.0.0", 2), (None, 7)]
    order = sync.priority(m, {"1.1.0": 1})
    assert [(sources[i], boxes) for i, _, boxes in order] == [
        ("1.1.0", 1), (None, 1), ("1.0.0", 0)]


def test_a_whole_pack_checks_out_and_a_damaged_one_is_refused(rel: Releases) -> None:
    _, data = pack.build(rel.store, "lockbox", rel.releases[1].version, 0)
    m = decode(rel.releases[1].wire).manifest
    objects = sync.check_pack(m.full, data)
    assert objects[0][0] == m.full.table_sha256
    assert len(objects) == 1 + len({e.id for e in
                                    rel.releases[1].payloads[m.full.table_sha256].table.pieces})
    bad = bytearray(data)
    bad[-1] ^= 1
    with pytest.raises(sync.SyncError, match="the pack is unusable: frame is not a valid zstd"):
        sync.check_pack(m.full, bytes(bad))
    renamed = bytearray(data)
    renamed[pack.index_size(1)] ^= 1  # the first byte of object 1's name in the index
    with pytest.raises(sync.SyncError, match=r"pack object [0-9a-f]{16} does not match its name"):
        sync.check_pack(m.full, bytes(renamed))
    with pytest.raises(sync.SyncError, match="does not start with the payload's piece table"):
        sync.check_pack(m.deltas[0], data)
    short = pack.encode(list(pack.decode_pack(data).objects)[:-1])
    with pytest.raises(sync.SyncError, match="lacks 1 of its table's pieces"):
        sync.check_pack(m.full, short)
