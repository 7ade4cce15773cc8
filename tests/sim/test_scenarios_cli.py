"""Scenario files and the ``fwdist sim`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fwdist.cli import main
from sim.dists import ScenarioError
from sim.scenario import builtin_names, load, parse

from .conftest import SIZE


def test_builtin_scenarios_load() -> None:
    names = builtin_names()
    assert {"rmls-passive", "owner-manual", "partial-caches", "fleet-rollout"} <= set(names)
    assert load("fleet-rollout").run.boxes == 10_000
    s = load("rmls-passive")
    assert s.access.connected_s.kind == "lognormal" and s.access.connected_s.a == 11.0
    assert any(k == "access.throughput_Bps" for k, _, _ in s.assumptions())


@pytest.mark.parametrize(
    "text,message",
    [
        ("[access]\nconected_s = 3\n", "unknown keys"),
        ("[nope]\n", "unknown section"),
        ("[access]\nconnected_s = { dist = 'gamma' }\n", "dist must be one of"),
        ("[access]\nconnected_s = { dist = 'uniform', min = 5, max = 1 }\n", "below min"),
        ("[run]\nboxes = 0\n", "at least 1"),
        ("[run]\nboxes = 1.5\n", "integer"),
        ("[phone]\nholds_release = 1.5\n", "between 0 and 1"),
        ("[release]\nrunning = {}\n", "version = share"),
        ("[access\n", "not valid TOML"),
    ],
)
def test_bad_scenarios_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse(text)


def test_cli_json_on_a_small_fleet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    scenario = tmp_path / "s.toml"
    builtin = Path(__file__).parents[2] / "sim" / "scenarios" / "rmls-passive.toml"
    scenario.write_text(
        builtin.read_text().replace("sample_image_bytes = 262144", f"sample_image_bytes = {SIZE}")
    )
    code = main(
        [
            "sim",
            str(scenario),
            "--boxes",
            "30",
            "--runs",
            "1",
            "--days",
            "30",
            "--seed",
            "3",
            "--json",
            "--workers",
            "1",
            "--report",
            str(tmp_path / "rep"),
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scenario"] == "rmls-passive" and out["seed"] == 3
    assert set(out["strategies"]) == {
        "restart",
        "offset-resume",
        "object-4k",
        "fwdist-full",
        "fwdist-delta",
        "oracle",
    }
    for st in out["strategies"].values():
        for key in ("accesses_p50", "accesses_p90", "accesses_p99", "days_to_90"):
            assert st[key] is None or isinstance(st[key], float)
        assert isinstance(st["wasted_bytes"], int)
        assert 0.0 <= st["unfinished_share"] <= 1.0
    assert out["strategies"]["oracle"]["wasted_bytes"] == 0
    for f in ("report.md", "result.json", "accesses.png", "fleet.png", "air_per_box.png"):
        assert (tmp_path / "rep" / f).stat().st_size > 0
    assert json.loads((tmp_path / "rep" / "result.json").read_text()) == out


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", str(tmp_path / "missing.toml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fwdist: error:") and err.count("\n") == 1
    assert main(["sim", "--release", "x@1.0.0"]) == 1
    assert "--store" in capsys.readouterr().err
    assert main(["sim", "--strategies", "teleport"]) == 1
    assert "unknown strategy" in capsys.readouterr().err


def test_cli_fine_link_gives_the_same_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    builtin = Path(__file__).parents[2] / "sim" / "scenarios" / "partial-caches.toml"
    scenario = tmp_path / "p.toml"
    scenario.write_text(
        builtin.read_text().replace("[release]\n", f"[release]\nsample_image_bytes = {SIZE}\n")
    )
    args = [
        "sim",
        str(scenario),
        "--boxes",
        "8",
        "--runs",
        "1",
        "--days",
        "20",
        "--json",
        "--workers",
        "1",
    ]
    assert main(args) == 0
    coarse = json.loads(capsys.readouterr().out)
    assert main([*args, "--fine"]) == 0
    fine = json.loads(capsys.readouterr().out)
    assert fine["strategies"] == coarse["strategies"]
    assert coarse["box_accesses"] > 0
