"""Every example in README.md runs as written.

The README is read here, not copied: its fenced blocks and the shell column of
its side-by-side table are run in document order in one fresh directory, as a
reader would type them (``sh`` lines one by one, a ``toml`` block whose first
line names a file is written to that file, a ``python`` block as a program in a
directory of its own);
``text`` blocks are layouts and synopses, not examples. Only three things are
adapted, none of them the commands: the Quickstart is left to CI (``.ci/run``
runs its two commands: one makes a virtualenv, the other runs this suite),
port 7000 becomes a free port (several test runs share the machine), and a
line ending in ``&`` runs in the background until its first line of output (a
reader waits for ``serve`` to say it listens), and is stopped at the end.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```", re.S | re.M)
TABLE_HEADER = "| | Python | shell |"
LANGUAGES = {"sh", "python", "toml", "text"}
TIMEOUT = 600


@dataclass(frozen=True)
class Example:
    kind: str  # "sh" (one command line), "toml" (a file to write) or "python" (a program)
    text: str
    name: str = ""  # the file a toml block is written to


def quickstart(text: str) -> re.Match[str]:
    """The block ``.ci/run`` reads its two commands from (the same expression)."""
    m = re.search(r"^#+\s*Quick ?start.*?```[a-z]*\n(.*?)```", text, re.S | re.M | re.I)
    assert m is not None, "README.md has no Quickstart block"
    return m


def table(text: str) -> tuple[int, list[list[str]]]:
    """Where the side-by-side table starts, and its rows' cells (header and rule left out)."""
    start = text.index(TABLE_HEADER)
    rows = []
    for line in text[start:].splitlines():
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
    return start, rows[2:]


def spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def examples(text: str) -> list[Example]:
    """Every runnable example, in document order."""
    skip = quickstart(text).start(1)
    found: list[tuple[int, Example]] = []
    for m in FENCE.finditer(text):
        lang, body = m[1], m[2]
        assert lang in LANGUAGES, f"a ``` block without one of {sorted(LANGUAGES)}: {body[:60]!r}"
        if m.start(2) == skip or lang == "text":
            continue
        if lang == "sh":
            for line in body.splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    found.append((m.start(), Example("sh", line)))
        elif lang == "toml":
            first = body.splitlines()[0]
            name = re.match(r"# (\S+\.toml)\b", first)
            assert name, f"a toml block must start with '# NAME.toml', not {first!r}"
            found.append((m.start(), Example("toml", body, name[1])))
        else:
            found.append((m.start(), Example("python", body)))
    start, rows = table(text)
    for row in rows:
        found += [(start, Example("sh", command)) for command in spans(row[2])]
    found.sort(key=lambda pair: pair[0])  # stable: a table's rows keep their order
    return [example for _, example in found]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Session:
    """One directory and one environment where the README's commands run one after another."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"],
                    "XDG_CACHE_HOME": str(root.parent / "cache"), "COLUMNS": "200"}
        self.background: list[subprocess.Popen[bytes]] = []

    def adapt(self, text: str) -> str:
        return text.replace("127.0.0.1:7000", f"127.0.0.1:{self.port}")

    def run(self, example: Example) -> str:
        text = self.adapt(example.text)
        if example.kind == "toml":
            (self.root / example.name).write_text(text)
            return ""
        cwd = self.root
        if example.kind == "python":  # a program is a world of its own: a fresh directory
            argv = [sys.executable, "-c", text]
            cwd = Path(tempfile.mkdtemp(prefix="program-", dir=self.root.parent))
        elif text.rstrip().endswith("&"):
            return self.start(text.rstrip()[:-1])
        else:
            argv = ["bash", "-c", text]
        proc = subprocess.run(argv, cwd=cwd, env=self.env, capture_output=True, text=True,
                              timeout=TIMEOUT)
        assert proc.returncode == 0, f"README example failed: {text}\n{proc.stderr}"
        return proc.stdout

    def start(self, command: str) -> str:
        proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=self.root, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.background.append(proc)
        assert proc.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        while not select.select([proc.stdout], [], [], 0.1)[0]:
            assert proc.poll() is None, f"README background command died: {command}"
            assert time.monotonic() < deadline, f"README background command is silent: {command}"
        return proc.stdout.readline().decode()

    def stop(self) -> None:
        for proc in self.background:
            proc.kill()
            proc.wait(timeout=TIMEOUT)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    root = tmp_path / "reader"
    root.mkdir()
    s = Session(root)
    try:
        yield s
    finally:
        s.stop()


def test_every_block_says_what_it_is_and_the_quickstart_is_two_commands() -> None:
    text = README.read_text()
    assert all(m[1] in LANGUAGES for m in FENCE.finditer(text))
    commands = [line for line in quickstart(text)[1].splitlines()
                if line.strip() and not line.strip().startswith("#")]
    assert len(commands) == 2 and commands[0].endswith("fwdist demo")
    assert commands[1].endswith("python -m pytest -q -n 2 --dist loadfile")


def test_the_python_column_is_made_of_lines_of_the_program_below_it() -> None:
    text = README.read_text()
    start, rows = table(text)
    program = next(m[2] for m in FENCE.finditer(text, start) if m[1] == "python")
    cells = [span for row in rows for span in spans(row[1])]
    assert len(cells) == 12
    for cell in cells:
        assert cell in program, f"the table's {cell!r} is not in the program that follows it"


@pytest.mark.slow
def test_every_readme_example_runs_as_written(session: Session) -> None:
    ran = {"sh": 0, "toml": 0, "python": 0}
    outputs = []
    for example in examples(README.read_text()):
        outputs.append(session.run(example))
        ran[example.kind] += 1
    assert ran == {"sh": 17, "toml": 1, "python": 1}
    # what the README says of the results
    program = next(out for out, ex in zip(outputs, examples(README.read_text()), strict=True)
                   if ex.kind == "python")
    plan = json.loads(program[program.index("{\n"):program.index("\n}\n") + 2])
    assert plan["from"] == "1.0.0" and plan["to"] == "1.1.0"
    assert plan["air_bytes"] == plan["manifest_bytes"] + plan["table_bytes"] + plan[
        "payload_bytes"]
    assert program.rstrip().endswith("the box runs 1.1.0")
    status = json.loads(session.run(Example("sh", "fwdist lockbox status --state box --json")))
    assert status["running_version"] == "1.1.0"  # "... and the box runs 1.1.0"
    assert {p.name for p in (session.root / "out").iterdir()} >= {"report.md", "result.json"}
