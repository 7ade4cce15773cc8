"""``fwdist stage`` imports what staging needs and nothing of the phone link, the server or
the fleet demo (issue 10: start-up is most of a small pair's stage time and memory)."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

from fwdist import cli
from fwdist.sample import SampleFirmware

# Packages and fwdist modules a stage has no use for; each cost start-up time or memory
# when the CLI imported every command's module to build its parser.
NOT_FOR_STAGING = (
    "trio",
    "sqlalchemy",
    "alembic",
    "httpx",
    "hypercorn",
    "starlette",
    "fwdist.trio_link",
    "fwdist.emulator",
    "fwdist.pump",
    "fwdist.sync",
    "fwdist.server",
    "fwdist.dashboard",
    "fwdist.rollout",
    "fwdist.cli.device",
    "fwdist.cli.demo",
    "fwdist.cli.demo_fleet",
    "fwdist.cli.server",
    "fwdist.cli.rollout",
)

# Runs one command through fwdist.cli.main in a fresh interpreter, then prints the
# modules of NOT_FOR_STAGING it holds.
PROBE = """
import sys
from fwdist.cli import main
code = main(sys.argv[2:])
banned = sys.argv[1].split(",")
print(code, sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in banned)))
"""


def loaded_after(tmp: Path, *args: str, banned: tuple[str, ...] = NOT_FOR_STAGING) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(banned), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()[-1]


def test_each_command_home_is_the_module_that_adds_it() -> None:
    added = {}
    for name in cli.COMMAND_MODULES:
        sub = cli.Parser(prog="t").add_subparsers(parser_class=cli.CommandParser)
        importlib.import_module(name).add_commands(sub)
        added |= dict.fromkeys(sub.choices, name)
    assert added == cli.COMMAND_HOMES
    assert len(added) == 23


def test_the_command_word_picks_its_module_and_anything_else_all_of_them() -> None:
    assert cli.command_modules(["-q", "stage", "fw.bin", "--from", "1.0.0"]) == (
        "fwdist.cli.release",
    )
    assert cli.command_modules(["-vv", "app", "push"]) == ("fwdist.cli.device",)
    assert cli.command_modules(["--help"]) == cli.COMMAND_MODULES
    assert cli.command_modules([]) == cli.COMMAND_MODULES
    assert cli.command_modules(["stgae"]) == cli.COMMAND_MODULES


def test_a_parser_of_one_module_parses_its_command_as_the_full_parser_does() -> None:
    argv = ["-q", "stage", "fw.bin", "--store", "S", "--product", "p", "--version", "1.0.1"]
    one = cli.build_parser(cli.command_modules(argv)).parse_args(argv)
    full = cli.build_parser().parse_args(argv)
    assert isinstance(one, argparse.Namespace)
    assert vars(one) == vars(full)


def test_stage_from_an_old_release_imports_no_link_server_or_fleet_module(tmp_path: Path) -> None:
    sample = SampleFirmware(size=48 * 1024, seed=10)
    (tmp_path / "old.bin").write_bytes(sample.image(0))
    (tmp_path / "new.bin").write_bytes(sample.image(1))
    common = ["--store", "s", "--product", "p", "--key", "k"]
    assert loaded_after(tmp_path, "keygen", "k") == "0 []"
    assert loaded_after(tmp_path, "stage", "old.bin", "--version", "1.0.0", "--init-store",
                        *common) == "0 []"  # fmt: skip
    assert loaded_after(tmp_path, "stage", "new.bin", "--version", "1.0.1", "--from", "1.0.0",
                        *common) == "0 []"  # fmt: skip
    # the probe sees what a command did import
    banned = ("fwdist.cli.release", "fwdist.cli.hardware")
    assert loaded_after(tmp_path, "inspect", "--store", "s", "p@1.0.1",
                        banned=banned) == "0 ['fwdist.cli.release']"  # fmt: skip
