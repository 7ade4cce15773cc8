"""``fwdist sim`` refuses nonsense before it simulates anything, and says when a target is stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fwdist import keys
from fwdist.cli import main
from fwdist.sample import SampleFirmware
from fwdist.staging import StageOptions, stage
from fwdist.store import Store
from sim.box import FULL_PIECES

SIZE = 64 * 1024
SMALL = ["--boxes", "6", "--runs", "1", "--days", "5", "--workers", "1", "--seed", "2"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the simulator would stage its built-in sample: it must stay empty on bad input."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def small_scenario(tmp_path: Path) -> Path:
    builtin = Path(__file__).parents[2] / "sim" / "scenarios" / "rmls-passive.toml"
    s = tmp_path / "small.toml"
    s.write_text(builtin.read_text().replace("sample_image_bytes = 262144",
                                             f"sample_image_bytes = {SIZE}"))
    return s


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lockbox 1.0.0, 1.1.0 and 1.2.0, each with a delta from the one before."""
    d = tmp_path_factory.mktemp("sim-store")
    private, _ = keys.generate(d / "release.key")
    key = keys.load_private(private)
    st = Store.open(d / "store", create=True)
    sample = SampleFirmware(size=SIZE, seed=5)
    for r in range(3):
        image = d / f"fw{r}.bin"
        image.write_bytes(sample.image(r))
        sources = (sample.version(r - 1),) if r else ()
        # pieces of at most the simulated box's decoder RAM (sim.box): staged for that box
        opts = StageOptions("lockbox", sample.version(r), sources=sources, chunker=FULL_PIECES)
        stage(st, image, key, opts)
    return d / "store"


def test_a_release_staged_for_a_bigger_box_is_one_clear_error(
    cache: Path, tmp_path: Path, small_scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private, _ = keys.generate(tmp_path / "release.key")
    key = keys.load_private(private)
    st = Store.open(tmp_path / "store", create=True)
    sample = SampleFirmware(size=SIZE, seed=5)
    for r in range(3):  # default pieces: up to 64 KiB, decoded whole: over the 32 KiB box
        image = tmp_path / f"fw{r}.bin"
        image.write_bytes(sample.image(r))
        sources = (sample.version(r - 1),) if r else ()
        stage(st, image, key, StageOptions("lockbox", sample.version(r), sources=sources))
    code = main(["sim", str(small_scenario), "--store", str(tmp_path / "store"), "--release",
                 "lockbox@1.2.0", *SMALL, "--json"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "fwdist: error: no payload of lockbox@1.2.0 for a box on 1.1.0 decodes in the "
        "simulated box's RAM (nRF52840-class: 32 KiB decoder RAM, 1 MiB flash, 4 KiB "
        "sectors): stage it for that box (fwdist stage --max-piece 32768)"
    )


@pytest.mark.parametrize(
    "option,value,says",
    [("--boxes", "0", "must be 1 or more, got 0"), ("--boxes", "-3", "must be 1 or more, got -3"),
     ("--runs", "0", "must be 1 or more, got 0"), ("--days", "-1", "must be a positive number"),
     ("--days", "0", "must be a positive number"), ("--days", "nan", "must be a positive number"),
     ("--workers", "-2", "must be 1 or more, got -2"), ("--workers", "0", "must be 1 or more")],
)
def test_nonsense_run_sizes_are_usage_errors_before_any_work(
    cache: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, says: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["sim", option, value])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert f"argument {option}: {says}" in captured.err
    assert not cache.exists()


def test_an_unwritable_report_directory_fails_before_the_simulation(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", "--report", "/proc/forbidden", *SMALL]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("fwdist: error: --report /proc/forbidden: cannot write there")
    assert not cache.exists()  # the sample was not even staged


def test_a_report_path_that_is_a_file_is_refused_and_kept(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "report.md"
    f.write_text("mine\n")
    assert main(["sim", "--report", str(f), *SMALL]) == 1
    assert "exists and is not a directory" in capsys.readouterr().err
    assert f.read_text() == "mine\n" and not cache.exists()


@pytest.mark.parametrize("target,stale", [("1.1.0", "85%"), ("1.0.0", "100%")])
def test_a_target_the_fleet_already_runs_is_warned_about(
    cache: Path, store: Path, small_scenario: Path, capsys: pytest.CaptureFixture[str],
    target: str, stale: str
) -> None:
    """rmls-passive's fleet runs 1.1.0 (85 %) and 1.0.0 (15 %)."""
    code = main(["sim", str(small_scenario), "--store", str(store), "--release",
                 f"lockbox@{target}", *SMALL, "--json"])
    assert code == 0
    captured = capsys.readouterr()
    warning = f"lockbox@{target} is not newer than what {stale} of the fleet runs"
    assert f"fwdist: warning: {warning}" in captured.err
    assert any(n.startswith(warning) for n in json.loads(captured.out)["notes"])


def test_a_newer_target_gets_no_warning(
    cache: Path, store: Path, small_scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["sim", str(small_scenario), "--store", str(store), "--release",
                 "lockbox@1.2.0", *SMALL, "--json"])
    assert code == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert not any("not newer" in n for n in json.loads(captured.out)["notes"])
