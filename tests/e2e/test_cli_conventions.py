"""What a user expects of any command line, checked against docs/cli.md and the README.

--version, -q/-v, exit codes that mean one thing each, one line on stderr,
SIGPIPE-style exit under ``| head``, JSON that carries its layout version and
whose fields are the ones docs/cli.md lists, ISO 8601 times, and a one-line
refusal of pre-release versions.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fwdist.cli import ExitCode, log_level, logging_to_stderr, main
from fwdist.cli import output as cli_output
from fwdist.sample import SampleFirmware

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs" / "cli.md"
README = ROOT / "README.md"
SAMPLE = SampleFirmware(size=64 * 1024, seed=9)
TIMEOUT = 120


def fwdist(*args: str | Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fwdist", *map(str, args)], capture_output=True,
                          text=True, timeout=TIMEOUT, **kw)


def ok_json(*args: str | Path) -> Any:
    proc = fwdist(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def table_rows(text: str, at: int) -> list[list[str]]:
    """The cells of the first markdown table at or after ``text[at:]``, header row excluded."""
    rows = []
    for line in text[at:].splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
    return [r for r in rows[1:] if not set(r[0]) <= {"-"}]


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("conventions")
    for r in (0, 1):
        (d / f"fw-{SAMPLE.version(r)}.bin").write_bytes(SAMPLE.image(r))
    assert fwdist("keygen", d / "release.key").returncode == 0
    stages = (("1.0.0", ["--init-store"]), ("1.1.0", ["--from", "1.0.0", "--expires", "30"]))
    for version, extra in stages:
        proc = fwdist("stage", d / f"fw-{version}.bin", "--store", d / "store", "--product",
                      "lockbox", "--version", version, "--key", d / "release.key", *extra)
        assert proc.returncode == 0, proc.stderr
    return d


@pytest.fixture(scope="module")
def box(released: Path) -> Path:
    state = released / "box"
    proc = fwdist("lockbox", "init", "--state", state, "--product", "lockbox", "--pubkey",
                  released / "release.key.pub", "--image", released / "fw-1.0.0.bin",
                  "--version", "1.0.0")
    assert proc.returncode == 0, proc.stderr
    return state


# -- --version, -q, -v ------------------------------------------------------------------------


def test_version_is_the_installed_distribution() -> None:
    proc = fwdist("--version")
    assert proc.returncode == 0
    assert proc.stdout == f"fwdist {importlib.metadata.version('fwdist')}\n"


@pytest.fixture
def small_sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    builtin = ROOT / "sim" / "scenarios" / "rmls-passive.toml"
    s = tmp_path / "s.toml"
    s.write_text(builtin.read_text().replace("sample_image_bytes = 262144",
                                             "sample_image_bytes = 65536"))
    return ["sim", str(s), "--boxes", "4", "--runs", "1", "--days", "3", "--workers", "1",
            "--report", str(tmp_path / "rep")]


def untimed(out: str) -> list[str]:
    return [line for line in out.splitlines() if " simulated in " not in line]


def test_quiet_and_verbose_govern_stderr_for_any_command_in_either_position(
    small_sim: list[str], released: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(small_sim) == 0
    default = capsys.readouterr()
    assert "fwdist: staging the built-in sample release" in default.err
    assert "fwdist: report written:" in default.err
    for argv in (["-q", *small_sim], [*small_sim, "-q"], [*small_sim, "--quiet"]):
        assert main(argv) == 0
        quiet = capsys.readouterr()
        assert quiet.err == ""
        assert untimed(quiet.out) == untimed(default.out)  # stdout is the same at every level
    # a warning survives -q, not -qq
    stale = [*small_sim, "--store", str(released / "store"), "--release", "lockbox@1.0.0"]
    assert main(["-q", *stale]) == 0
    assert "fwdist: warning: lockbox@1.0.0 is not newer" in capsys.readouterr().err
    assert main(["-qq", *stale]) == 0
    assert capsys.readouterr().err == ""


def test_progress_bars_are_information_that_quiet_hides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with logging_to_stderr(log_level(quiet=0, verbose=0)):
        assert cli_output.show_progress(quiet=False)
        assert not cli_output.show_progress(quiet=True)  # --json
    with logging_to_stderr(log_level(quiet=1, verbose=0)):
        assert not cli_output.show_progress(quiet=False)


def test_logging_is_undone_after_each_command() -> None:
    before = [(logging.getLogger(n).level, list(logging.getLogger(n).handlers))
              for n in ("fwdist", "sim")]
    assert main(["--quiet", "plan", "--store", "/nonexistent", "--product", "p", "--from",
                 "1.0.0", "--to", "1.1.0"]) == 1
    after = [(logging.getLogger(n).level, list(logging.getLogger(n).handlers))
             for n in ("fwdist", "sim")]
    assert after == before


# -- exit codes -------------------------------------------------------------------------------


def test_the_exit_codes_are_documented_alike_in_the_readme_and_docs() -> None:
    code_enum = {int(c) for c in ExitCode}
    for path, heading in ((DOCS, "## Exit codes"), (README, "| exit code | meaning |")):
        text = path.read_text()
        rows = table_rows(text, text.index(heading))
        assert {int(r[0]) for r in rows} == code_enum, path


def test_exit_0_1_2_each_with_at_most_one_line(tmp_path: Path) -> None:
    ok = fwdist("--version")
    error = fwdist("inspect", "--store", tmp_path / "nowhere", "lockbox@1.0.0")
    usage = fwdist("sim", "--boxes", "0")
    no_command = fwdist()
    assert (ok.returncode, error.returncode, usage.returncode, no_command.returncode) == (
        ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE, ExitCode.USAGE)
    for proc in (error, usage, no_command):
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("fwdist"), proc.stderr
        assert "usage:" not in proc.stderr
    assert usage.stderr == ("fwdist sim: error: argument --boxes: must be 1 or more, got 0 "
                            "(see fwdist sim --help)\n")


def test_an_internal_error_is_exit_70_in_one_line_and_minus_v_adds_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object) -> dict[str, Any]:
        return {"n": 1 // 0}

    monkeypatch.setattr("fwdist.cli.demo.run_demo", broken)
    assert main(["demo"]) == ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert err == ("fwdist: internal error (a bug in fwdist): ZeroDivisionError: integer "
                   "division or modulo by zero; run with -v for the traceback\n")
    assert main(["demo", "-v"]) == ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("fwdist: debug: internal error\nTraceback (most recent call last):")
    assert "in broken" in err
    assert err.endswith("fwdist: internal error (a bug in fwdist): ZeroDivisionError: "
                        "integer division or modulo by zero\n")


def test_ctrl_c_is_exit_130(monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*args: object) -> dict[str, Any]:
        raise KeyboardInterrupt

    monkeypatch.setattr("fwdist.cli.demo.run_demo", interrupted)
    assert main(["demo"]) == ExitCode.INTERRUPTED == 130
    assert capsys.readouterr().err == "fwdist: interrupted\n"


@pytest.mark.parametrize("command", ["status", "keygen", "plan"])
def test_a_closed_stdout_exits_141_without_a_traceback(
    command: str, box: Path, tmp_path: Path
) -> None:
    """``fwdist lockbox status --json | head`` used to end in BrokenPipeError."""
    argv = {
        "status": ["lockbox", "status", "--state", str(box), "--json"],
        "keygen": ["keygen", str(tmp_path / "k"), "--json"],
        "plan": ["plan", "--store", str(box.parent / "store"), "--product", "lockbox", "--from",
                 "1.0.0", "--to", "1.1.0"],
    }[command]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before fwdist writes a byte: every write is EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "fwdist", *argv], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (ExitCode.BROKEN_PIPE, "")
    if command == "keygen":  # the work was done; only its report had nowhere to go
        assert (tmp_path / "k").stat().st_size > 0 and (tmp_path / "k.pub").stat().st_size > 0


# -- JSON: a schema version, and the fields docs/cli.md lists ---------------------------------


def documented_fields() -> dict[str, set[str]]:
    """``### `fwdist CMD --json` [and `fwdist CMD2 --json`]`` -> the field names of its table."""
    text = DOCS.read_text()
    out: dict[str, set[str]] = {}
    for m in re.finditer(r"^### (.*)$", text, re.M):
        commands = re.findall(r"`fwdist ([a-z ]+?) --json`", m[1])
        if not commands:
            continue
        rows = table_rows(text, m.start())
        for command in commands:
            solo = {f"(`{c}` only)" for c in commands if c != command}
            fields = {r[0].strip("`") for r in rows if not any(r[1].startswith(s) for s in solo)}
            out[command] = fields
    return out


CHECKED_ELSEWHERE = {  # commands that need a running server: their JSON is checked beside it
    "token create": "tests/e2e/test_server_cli.py", "token list": "tests/e2e/test_server_cli.py",
    "token revoke": "tests/e2e/test_server_cli.py", "publish": "tests/e2e/test_server_cli.py",
    "fleet status": "tests/e2e/test_server_cli.py", "fleet boxes": "tests/e2e/test_server_cli.py",
    "fleet box": "tests/e2e/test_server_cli.py",
    "app sync": "tests/e2e/test_phone_sync.py", "box register": "tests/e2e/test_phone_sync.py",
    **{f"rollout {c}": "tests/e2e/test_rollout.py"
       for c in ("start", "status", "list", "pause", "resume", "abort")},
    "release yank": "tests/e2e/test_rollout.py",
    "timestamp sign": "tests/e2e/test_trust_cli.py",  # (needs a K > 1 role and its draft)
}


@pytest.fixture
def serving(box: Path) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "fwdist", "lockbox", "serve", "--state",
                             str(box), "--listen", "127.0.0.1:0", "--json", "--max-sessions",
                             "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        hello = json.loads(proc.stdout.readline())
        yield hello["address"]
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)


def test_every_json_output_has_the_schema_and_exactly_the_documented_fields(
    released: Path, box: Path, serving: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = released / "store"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for r in (0, 2):
        (tmp_path / f"fw{r}.bin").write_bytes(SAMPLE.image(r))
    rk, root1 = tmp_path / "rk", tmp_path / "root1"
    assert fwdist("keygen", rk).returncode == 0
    outputs = {
        "keygen": ok_json("keygen", tmp_path / "k"),
        "key generate": ok_json("key", "generate", tmp_path / "k2"),
        "key show": ok_json("key", "show", tmp_path / "k2", "--public-out", tmp_path / "k2.pem"),
        "stage": ok_json("stage", tmp_path / "fw2.bin", "--store", tmp_path / "s", "--product",
                         "p", "--version", "2.0.0", "--key", tmp_path / "k", "--init-store"),
        "inspect": ok_json("inspect", "--store", store, "lockbox@1.1.0"),
        "verify": ok_json("verify", "--store", store, "--pubkey", released / "release.key.pub"),
        "plan": ok_json("plan", "--store", store, "--product", "lockbox", "--from", "1.0.0",
                        "--to", "1.1.0"),
        "gc": ok_json("gc", "--store", tmp_path / "s"),
        "root create": ok_json("root", "create", root1, "--root-keys", f"1:{rk}.pub",
                               "--timestamp-keys", f"1:{rk}.pub", "--release-keys",
                               f"1:{released}/release.key.pub,{tmp_path}/k.pub",
                               "--expires", "30"),
        "root sign": ok_json("root", "sign", root1, "--key", rk),
        "root publish": ok_json("root", "publish", root1, "--store", tmp_path / "s"),
        "root show": ok_json("root", "show", root1),
        "root rotate": ok_json("root", "rotate", tmp_path / "root2", "--store", tmp_path / "s",
                               "--root", root1, "--expires", "30"),
        "sign": ok_json("sign", "p@2.0.0", "--store", tmp_path / "s", "--root", root1, "--key",
                        released / "release.key"),
        "timestamp issue": ok_json("timestamp", "issue", "--store", tmp_path / "s", "--root",
                                   root1, "--key", rk),
        "revoke": ok_json("revoke", "p@2.0.0", "--store", tmp_path / "s", "--root", root1,
                          "--key", rk),
        "hardware set": ok_json("hardware", "set", "nrf52832", "--store", tmp_path / "s",
                                "--ram", "32768", "--flash", "524288", "--sector", "4096",
                                "--align", "4", "--slot", "163840", "--staging", "180224"),
        "hardware show": ok_json("hardware", "show", "nrf52832", "--store", tmp_path / "s"),
        "hardware list": ok_json("hardware", "list", "--store", tmp_path / "s"),
        "demo": ok_json("demo", "--image-size", "8192", "--boxes", "0"),
        "lockbox init": ok_json("lockbox", "init", "--state", tmp_path / "b", "--product", "p",
                                "--pubkey", released / "release.key.pub", "--image",
                                tmp_path / "fw0.bin", "--version", "1.0.0"),
        "lockbox status": ok_json("lockbox", "status", "--state", box),
        "app push": ok_json("app", "push", "--store", store, "--product", "lockbox", "--pubkey",
                            released / "release.key.pub", "--to",
                            serving, "--max-bytes", "600"),
        "sim": ok_json("sim", "--boxes", "3", "--runs", "1", "--days", "2", "--workers", "1"),
    }
    documented = documented_fields()
    assert set(documented) == set(outputs) | set(CHECKED_ELSEWHERE)
    for command, out in outputs.items():
        assert out["schema"] == cli_output.JSON_SCHEMA == 1, command
        assert set(out) == documented[command], command


# -- times and versions -----------------------------------------------------------------------


def test_inspect_shows_iso_8601_beside_the_epoch(released: Path) -> None:
    store = released / "store"
    m = ok_json("inspect", "--store", store, "lockbox@1.1.0")

    def iso(epoch: int) -> str:
        return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert m["expires"] - m["created"] == 30 * 86400
    assert abs(m["created"] - time.time()) < 3600
    assert (m["created_utc"], m["expires_utc"]) == (iso(m["created"]), iso(m["expires"]))
    text = fwdist("inspect", "--store", store, "lockbox@1.1.0").stdout
    assert f"expires {iso(m['expires'])}" in text and f"created   {iso(m['created'])}" in text
    assert str(m["expires"]) not in text
    never = ok_json("inspect", "--store", store, "lockbox@1.0.0")
    assert (never["expires"], never["expires_utc"]) == (None, None)


def test_iso_time_of_a_far_future_signed_time_is_still_one_line() -> None:
    assert cli_output.iso_time(0) == "1970-01-01T00:00:00Z"
    assert cli_output.iso_time(2**64 - 1) == "after 9999-12-31T23:59:59Z"


@pytest.mark.parametrize(
    "argv",
    [
        ["stage", "{d}/fw-1.0.0.bin", "--store", "{d}/store", "--product", "lockbox", "--version",
         "1.2.0-rc.1", "--key", "{d}/release.key"],
        ["plan", "--store", "{d}/store", "--product", "lockbox", "--from", "1.0.0", "--to",
         "1.2.0-rc.1"],
        ["inspect", "--store", "{d}/store", "lockbox@1.2.0-rc.1"],
        ["lockbox", "init", "--state", "{d}/rc-box", "--product", "lockbox", "--pubkey",
         "{d}/release.key.pub", "--image", "{d}/fw-1.0.0.bin", "--version", "1.2.0-rc.1"],
        ["sim", "--store", "{d}/store", "--release", "lockbox@1.2.0-rc.1"],
    ],
    ids=["stage", "plan", "inspect", "lockbox-init", "sim"],
)
def test_pre_release_versions_are_refused_in_the_line_docs_quote(
    argv: list[str], released: Path
) -> None:
    before = sorted(p.name for p in (released / "store" / "releases" / "lockbox").iterdir())
    proc = fwdist(*(a.format(d=released) for a in argv))
    quoted = re.search(r"^```text\n(fwdist: error: pre-release.*)\n```", DOCS.read_text(), re.M)
    assert quoted is not None
    assert proc.returncode == ExitCode.ERROR
    assert proc.stderr == quoted[1] + "\n"
    assert sorted(p.name for p in (released / "store" / "releases" / "lockbox").iterdir()) == before
    assert not (released / "rc-box").exists()


def test_build_metadata_is_refused_too(released: Path) -> None:
    proc = fwdist("plan", "--store", released / "store", "--product", "lockbox", "--from",
                  "1.0.0", "--to", "1.1.0+build.5")
    assert proc.returncode == 1
    assert proc.stderr == ("fwdist: error: pre-release and build versions such as "
                           "'1.1.0+build.5' are not supported; use X.Y.Z (docs/cli.md says why)\n")
