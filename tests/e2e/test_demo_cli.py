"""``fwdist demo`` as a user runs it: it never touches what it did not write, leaves no key behind,
refuses nonsense in one line, and installs at every image size it accepts."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fwdist.cli.demo import ENTRIES, FLEET_ENTRIES, MARKER, run_demo
from fwdist.sample import SampleFirmware


def fwdist(*args: str | Path, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``fwdist demo`` without its fleet part (``--boxes 0``) unless the test asks for one:
    the fleet has its own test below, and these check the pipeline and the directory."""
    argv = [*map(str, args)]
    if argv[:1] == ["demo"] and "--boxes" not in argv:
        argv += ["--boxes", "0"]
    return subprocess.run([sys.executable, "-m", "fwdist", *argv], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env={**os.environ, **(env or {})})


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def test_a_directory_with_user_files_is_refused_and_left_alone(tmp_path: Path) -> None:
    user = tmp_path / "mine"
    (user / "src").mkdir(parents=True)
    (user / "notes.txt").write_text("my notes\n")
    (user / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    (user / "store").mkdir()  # a name the demo uses, but not the demo's
    before = tree(user)
    proc = fwdist("demo", "--dir", user)
    assert proc.returncode == 1
    assert "not made by fwdist demo" in one_error_line(proc)
    assert tree(user) == before and sorted(p.name for p in user.iterdir()) == [
        "notes.txt", "src", "store"]


def test_dir_dot_does_not_empty_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("\\documentclass{article}\n")
    proc = fwdist("demo", "--dir", ".", cwd=tmp_path)
    assert proc.returncode == 1
    one_error_line(proc)
    assert tree(tmp_path) == {"thesis.tex": b"\\documentclass{article}\n"}


def test_a_file_given_as_dir_is_one_line_and_untouched(tmp_path: Path) -> None:
    f = tmp_path / "firmware.bin"
    f.write_bytes(b"\x01\x02")
    proc = fwdist("demo", "--dir", f)
    assert proc.returncode == 1
    assert "is not a directory" in one_error_line(proc)
    assert f.read_bytes() == b"\x01\x02"


def test_the_demo_reuses_its_own_directory_but_not_one_a_user_added_to(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    first = fwdist("demo", "--dir", d, "--image-size", "8192", "--json")
    assert first.returncode == 0, first.stderr
    assert {p.name for p in d.iterdir()} == ENTRIES - FLEET_ENTRIES
    assert json.loads(first.stdout)["workdir"] == str(d)
    again = fwdist("demo", "--dir", d, "--image-size", "8192", "--json")
    assert again.returncode == 0, again.stderr
    assert {p.name for p in d.iterdir()} == ENTRIES - FLEET_ENTRIES
    (d / "my-results.csv").write_text("1,2\n")
    before = tree(d)
    proc = fwdist("demo", "--dir", d, "--image-size", "8192")
    assert proc.returncode == 1 and "my-results.csv" in one_error_line(proc)
    assert tree(d) == before


def test_an_empty_directory_is_used_and_marked(tmp_path: Path) -> None:
    d = tmp_path / "empty"
    d.mkdir()
    proc = fwdist("demo", "--dir", d, "--image-size", "8192")
    assert proc.returncode == 0, proc.stderr
    assert (d / MARKER).is_file() and (d / "store" / "fwdist-store").exists()


def test_no_temporary_directory_and_no_private_key_are_left_behind(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = fwdist("demo", "--image-size", "8192", "--json", env={"TMPDIR": str(tmp)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["installed"] is True
    assert (out["workdir"], out["store"], out["pubkey"]) == (None, None, None)
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize(
    "option,value",
    [("--session-bytes", "0"), ("--session-bytes", "-5"), ("--session-bytes", "511"),
     ("--image-size", "-1"), ("--image-size", "0"), ("--image-size", "4095"),
     ("--image-size", str((4 << 20) + 1)), ("--image-size", "lots")],
)
def test_nonsense_numbers_are_usage_errors(tmp_path: Path, option: str, value: str) -> None:
    proc = fwdist("demo", "--dir", tmp_path / "d", option, value)
    assert proc.returncode == 2
    assert f"argument {option}" in one_error_line(proc)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("size,session_bytes", [(4096, 512), (8192, 2000), (100_000, 700)])
def test_every_accepted_image_size_installs(tmp_path: Path, size: int, session_bytes: int) -> None:
    """8192 used to end "NOT the new image": the demo's box had no room for the piece table."""
    out = run_demo(tmp_path, size, session_bytes)
    new = SampleFirmware(size=size).image(1)
    assert out["installed"] is True and out["verified"] is True
    assert out["lockbox"]["running_version"] == "1.1.0"
    assert out["lockbox"]["running_sha256"] == hashlib.sha256(new).hexdigest()
    plan = out["plan"]  # protocol 2 moves the format 2 manifest, its table if any, the payload
    moved = plan["format2_overhead_bytes"] + plan["payload_bytes"]
    assert out["lockbox"]["sessions"] >= -(-moved // session_bytes)
    assert (tmp_path / "fw-1.1.0.bin").read_bytes() == new


def test_the_fleet_part_rolls_one_release_out_and_aborts_the_failing_one() -> None:
    """A real server process, nine boxes, two phones: 1.1.0 reaches every box in three phases;
    1.2.0 fails its self-test on every third box and its rollout aborts in its first phase,
    after which phones offer 1.1.0 again. Cohorts are fixed by (rollout, box), so the counts
    are exact."""
    proc = fwdist("demo", "--image-size", "16384", "--boxes", "9", "--json")
    assert proc.returncode == 0, proc.stderr
    fleet = json.loads(proc.stdout)["fleet"]
    good, bad = fleet["rollouts"]
    assert (good["id"], good["state"], good["events"]) == (
        "lockbox-demo@1.1.0-1", "completed",
        ["start", "criteria_met", "start", "criteria_met", "start", "criteria_met", "finish"])
    assert [r["versions"] for r in good["rounds"]][-1] == {"1.1.0": 9}
    assert good["decision"]["why"] == "9 of 9 installed, criteria met"
    assert (bad["id"], bad["state"], bad["events"]) == (
        "lockbox-demo@1.2.0-1", "aborted", ["start", "auto_abort"])
    assert bad["decision"]["why"] == "1 of 2 finished boxes failed (threshold 20 %, minimum 2)"
    assert fleet["fleet"]["products"]["lockbox-demo"] == {
        "boxes": 9, "failed": 1, "heard_from": 9, "in_progress": 0,
        "versions": {"1.1.0": 8, "1.2.0": 1}}
    assert fleet["offered_after_abort"] == ["1.1.0"]
    assert fleet["dashboard"] == fleet["server"] + "/dashboard"
