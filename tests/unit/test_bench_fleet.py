"""The fleet benchmark's own parts: who carries what, the tally, server processes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from benchmarks import bench_fleet
from benchmarks.fleet_phones import Tally
from benchmarks.fleet_processes import FleetServer, ProcessError
from fwdist import report


def test_a_phone_carries_its_own_boxes_reports_in_seq_order_once_each() -> None:
    load = bench_fleet.Load(boxes=6, reports_per_box=2, phones=3, batch=3, fetchers=1,
                            image_bytes=1)  # fmt: skip
    reports = [[f"b{b}s{s}".encode() for s in (1, 2)] for b in range(6)]
    phones = bench_fleet.phone_batches(reports, load)
    assert phones[0] == [[b"b0s1", b"b3s1", b"b0s2"], [b"b3s2"]]
    assert phones[2] == [[b"b2s1", b"b5s1", b"b2s2"], [b"b5s2"]]
    carried = [w for p in phones for batch in p for w in batch]
    assert sorted(carried) == sorted(w for box in reports for w in box)


def test_the_bench_reports_verify_under_each_box_key_with_seq_one_up() -> None:
    load = bench_fleet.Load(boxes=3, reports_per_box=4, phones=1, batch=4, fetchers=1,
                            image_bytes=1)  # fmt: skip
    reports = bench_fleet.make_reports(load, "1.2.3")
    assert [len(r) for r in reports] == [4, 4, 4]
    for i, wires in enumerate(reports):
        key = bench_fleet.box_key(i).public_key()
        decoded = [report.verify(w, key) for w in wires]
        assert [(r.box_id, r.seq) for r in decoded] == [(f"bench-{i:06d}", s) for s in (1, 2, 3, 4)]
        assert {r.running_version for r in decoded} == {"1.2.3"}
    with pytest.raises(report.ReportError):
        report.verify(reports[0][0], bench_fleet.box_key(1).public_key())


def test_percentiles_are_nearest_rank() -> None:
    tally = Tally(latencies=[float(n) for n in range(100, 0, -1)])
    assert (tally.percentile(0.5), tally.percentile(0.99), tally.percentile(1.0)) == (50, 99, 100)
    with pytest.raises(ValueError, match="no request succeeded"):
        Tally().percentile(0.5)


def test_a_static_server_process_serves_is_killed_and_restarts(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "objects" / "ab").mkdir(parents=True)
    (root / "objects" / "ab" / "abcd").write_bytes(b"x" * 5000)
    server = FleetServer.static(root, tmp_path / "static.log")
    with server:
        first = server.url
        assert httpx.get(f"{first}/objects/ab/abcd").content == b"x" * 5000
        assert server.peak_rss_bytes() > 1 << 20 and server.cpu_seconds() > 0
        server.kill()
        assert server.proc is not None and server.proc.returncode == -9
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{first}/objects/ab/abcd")
        server.start()  # the log is appended to: the new ready line is the one read
        assert httpx.get(f"{server.url}/objects/ab/abcd").status_code == 200
    assert server.proc.poll() is not None


def test_a_server_that_exits_before_it_is_ready_says_so(tmp_path: Path) -> None:
    server = FleetServer.static(tmp_path / "missing", tmp_path / "static.log")
    server.argv = [*server.argv[:-1], "not-a-port"]
    with pytest.raises(ProcessError, match="exited 2 before it was ready"):
        server.start()
