"""The docs under ``docs/`` say what the code does, and nothing cites a file the repository lacks.

- Every hex example in ``docs/wire-format.md`` and ``docs/flash-layout.md`` (a fenced block
  after ``<!-- hex: NAME -->``) is compared byte for byte with what the encoders write for
  the objects built in :func:`examples`; ``python tests/unit/test_docs.py`` prints them.
- The module tables of ``docs/architecture.md`` (between ``<!-- layout -->`` and
  ``<!-- /layout -->``) list every module of ``fwdist/``, ``sim/`` and ``benchmarks/``,
  each ``sans-I/O`` claim holds for the module's imports, and the import picture is the
  import graph, a package's private modules (``fwdist.lockbox._box``) drawn as the package.
- No tracked file names a ``*.md`` path that is not in the repository.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import air, report
from fwdist import protocol as p
from fwdist import protocol_v2 as v2
from fwdist.flash import Region
from fwdist.journal import Journal
from fwdist.lockbox import BoxConfig, Lockbox, Rec
from fwdist.manifest import Manifest, PayloadRef, PieceEntry, PieceTable, decode, sign

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

# --- the worked examples --------------------------------------------------------------

EXAMPLE_KEY_SEED = hashlib.sha256(b"fwdist docs example key").digest()
CREATED = 1_700_000_000  # 2023-11-14T22:13:20Z


def _placeholder(i: int, size: int) -> PieceEntry:
    """A piece whose content is ``size`` bytes of value ``i`` (its id is that content's hash)."""
    return PieceEntry(hashlib.sha256(bytes([i]) * size).digest(), size, size)


def example_tables() -> tuple[PieceTable, PieceTable]:
    """(full-image table, delta table) of the example release."""
    full = PieceTable(
        True,
        tuple(
            PieceEntry(hashlib.sha256(bytes([i]) * 16384).digest(), 16384, 9000 + i)
            for i in range(16)
        ),
    )
    return full, PieceTable(False, (_placeholder(0xD0, 11368),))


def example_manifest() -> bytes:
    full, dtable = example_tables()
    m = Manifest(
        product="lockbox",
        hardware="lb-r2",
        version="1.1.0",
        security_counter=3,
        image_size=262144,
        image_sha256=hashlib.sha256(b"example image 1.1.0").digest(),
        full=PayloadRef("zstd-pieces", full.wire_size, 16, full.sha256, decode_ram=65536),
        deltas=(
            PayloadRef(
                "bsdiff-lzma",
                dtable.wire_size,
                1,
                dtable.sha256,
                decode_ram=376832,
                source_version="1.0.0",
                source_sha256=hashlib.sha256(b"example image 1.0.0").digest(),
            ),
        ),
        min_battery=30,
        created=CREATED,
        expires=CREATED + 90 * 86400,
    )
    return sign(m, Ed25519PrivateKey.from_private_bytes(EXAMPLE_KEY_SEED))


def example_air_manifest() -> bytes:
    """The example release's delta as format 2 (what a box on 1.0.0 is to receive)."""
    m = decode(example_manifest()).manifest
    lean = air.from_release(m, m.deltas[0], example_tables()[1])
    return air.sign(lean.manifest, [Ed25519PrivateKey.from_private_bytes(EXAMPLE_KEY_SEED)])


def example_box_report() -> bytes:
    """A box on 1.0.0, 4,096 of the example delta's 11,368 bytes held, signed by its device key
    (private bytes: SHA-256 of ``b"fwdist docs example device"``)."""
    rep = report.Report(
        "0123456789abcdef",
        17,
        "lockbox",
        "lb-r2",
        "1.0.0",
        hashlib.sha256(b"example image 1.0.0").digest()[:8],
        report.TargetProgress("1.1.0", 4096, 11368),
        87,
        p.BoxState.RECEIVING,
        report.LastResult("0.9.0", report.Outcome.INSTALLED),
        CREATED,
    )
    device = hashlib.sha256(b"fwdist docs example device").digest()
    return report.sign(rep, Ed25519PrivateKey.from_private_bytes(device))


def example_events() -> dict[str, p.Event]:
    tag = p.release_tag(example_manifest())
    running = hashlib.sha256(b"example image 1.0.0").digest()
    target = p.Target(tag, "1.1.0", 40, b"\x00", ((0, 4096),))
    return {
        "hello": p.Hello(p.PROTOCOL_VERSION, p.DEFAULT_MAX_FRAME),
        "status": p.Status(1, "lockbox", "lb-r2", "1.0.0", 0, running, 87, 1, 8, 244, target),
        "data": p.Data(tag, 0, 4096, bytes(range(16))),
        "ack": p.Ack(tag, 0, 6144),
        "piece-complete": p.PieceComplete(tag, 0),
    }


def example_v2_frames() -> dict[str, bytes]:
    """Protocol version 2's worked frames: the same session as version 1's examples."""
    ev = example_events()
    status = ev["status"]
    assert isinstance(status, p.Status)
    tag = p.release_tag(example_manifest())
    return {
        "v2-hello": p.encode(p.Hello(v2.VERSION, p.DEFAULT_MAX_FRAME)),
        "v2-summary": v2.encode(v2.summarize(status), 244),
        "v2-seek": v2.encode(v2.Seek(tag, 0, 4096), 244),
        "v2-data": v2.encode(ev["data"], 244, (0, 4096)),
        "v2-ack": v2.encode(ev["ack"], 244),
        "v2-piece-complete": v2.encode(ev["piece-complete"], 244),
    }


def example_journal() -> tuple[bytes, bytes]:
    """(first snapshot record of a provisioned box, the PROGRESS record appended after it)."""
    config = BoxConfig("lockbox", "lb-r2")
    flash = config.make_flash()
    image = bytes(range(256)) * 16  # a 4 KiB image, so the snapshot is small
    Lockbox.provision(flash, config, image, "1.0.0", 0)
    half = Region(flash, "journal0", 0, config.sector_size)
    journal = Journal((half, Region(flash, "journal1", config.sector_size, config.sector_size)))
    replay = journal.load()
    snapshot_end = journal.pos
    journal.append(msgpack.packb([int(Rec.PROGRESS), 0, 6144]))
    assert replay.records == []
    return half.read(0, snapshot_end), half.read(snapshot_end, journal.pos - snapshot_end)


def examples() -> dict[str, bytes]:
    """Every documented hex example, by name, as the code writes it today."""
    _, dtable = example_tables()
    snapshot, progress = example_journal()
    out = {name: p.encode(ev) for name, ev in example_events().items()}
    out |= {
        "manifest": example_manifest(),
        "delta-table": dtable.encode(),
        "air-manifest": example_air_manifest(),
        "box-report": example_box_report(),
        "journal-snapshot": snapshot,
        "journal-progress": progress,
    }
    return out | example_v2_frames()


HEX_BLOCK = re.compile(r"<!-- hex: ([\w-]+) -->\s*```[a-z]*\n(.*?)```", re.S)


def documented_hex() -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for doc in ("wire-format.md", "flash-layout.md"):
        for name, block in HEX_BLOCK.findall((DOCS / doc).read_text()):
            assert name not in found, f"hex example {name} appears twice"
            found[name] = bytes.fromhex(" ".join(line.split("|")[0] for line in block.splitlines()))
    return found


def test_every_documented_hex_example_is_what_the_code_writes() -> None:
    documented, actual = documented_hex(), examples()
    assert sorted(documented) == sorted(actual)
    for name, data in actual.items():
        assert documented[name].hex(" ") == data.hex(" "), name


def test_the_documented_frames_decode_to_their_events() -> None:
    documented = documented_hex()
    for name, event in example_events().items():
        assert p.decode_frames(documented[name]) == [event]


def test_the_documented_v2_frames_decode_to_their_events() -> None:
    documented, ev = documented_hex(), example_events()
    tag = p.release_tag(example_manifest())
    dec = v2.FrameDecoder(244, tag)
    dec.feed(b"".join(documented[n] for n in ("v2-summary", "v2-ack", "v2-piece-complete")))
    summary, ack, done = dec.events()
    assert isinstance(summary, v2.Summary) and summary.is_for("lockbox", "lb-r2")
    assert (ack, done) == (ev["ack"], ev["piece-complete"])
    box = v2.FrameDecoder(244)
    box.feed(documented["v2-seek"] + documented["v2-data"])
    assert box.events() == [ev["data"]]
    assert len(documented["v2-hello"]) + len(documented["v2-summary"]) == 59
    assert "59 bytes of set-up" in (DOCS / "wire-format.md").read_text()


def test_the_documented_sizes_are_the_encoded_sizes() -> None:
    """The sizes quoted in the prose of wire-format.md, next to what the encoder makes."""
    text = (DOCS / "wire-format.md").read_text()
    sizes = {name: len(data) for name, data in examples().items()}
    assert sizes["hello"] == 11 and "`Hello` is 11 bytes" in text
    assert sizes["data"] == 36 and "36 bytes on the air" in text
    assert sizes["manifest"] == 330 and "330 bytes" in text
    assert sizes["air-manifest"] == 159 and "159 bytes" in text
    tag = p.release_tag(example_manifest())
    capacities = [p.data_capacity(244, tag, 0, off) for off in (0, 128, 256, 65536)]
    assert capacities == [226, 225, 224, 222]
    assert "| 226 | 225 | 224 | 222 |" in text


# --- the architecture tables ------------------------------------------------------------

LAYOUT = re.compile(r"<!-- layout -->(.*?)<!-- /layout -->", re.S)
ROW = re.compile(r"^\|\s*`([\w.]+)`\s*\|(.*)\|\s*$", re.M)
# What a module may not import directly and still be called sans-I/O: clocks, files,
# processes, threads, sockets, trio, terminals, plots, and the store.
IO_MODULES = frozenset(
    {
        "asyncio", "concurrent", "fcntl", "matplotlib", "multiprocessing", "os", "pathlib",
        "rich", "selectors", "shutil", "socket", "ssl", "subprocess", "sys", "tempfile",
        "threading", "time", "trio", "zipfile",
    }
)  # fmt: skip
IO_PROJECT = frozenset({"fwdist.store", "fwdist.trio_link", "fwdist.emulator", "fwdist.cli"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def project_modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for top in ("fwdist", "sim", "benchmarks"):
        for path in sorted((REPO / top).rglob("*.py")):
            out[_module_name(path)] = path
    return out


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports anywhere (top level, in functions, under TYPE_CHECKING).

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module of the
    project, and as importing ``pkg`` otherwise.
    """
    found: set[str] = set()
    modules = project_modules()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found


def project_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    return {m for m in imports(path) if m in modules} - {_module_name(path)}


def does_io(path: Path) -> bool:
    """Whether the module imports an I/O library or an I/O module of fwdist itself, directly;
    a package (its ``__init__``) does I/O when a module it imports does."""
    direct = imports(path)
    if any(m.split(".")[0] in IO_MODULES for m in direct) or any(
        m == io or m.startswith(io + ".") for m in direct for io in IO_PROJECT
    ):
        return True
    modules = project_modules()
    return path.name == "__init__.py" and any(
        does_io(modules[m]) for m in project_imports(path, modules)
    )


def layout_rows() -> dict[str, list[str]]:
    text = (DOCS / "architecture.md").read_text()
    rows: dict[str, list[str]] = {}
    for block in LAYOUT.findall(text):
        for name, rest in ROW.findall(block):
            assert name not in rows, f"{name} is listed twice in docs/architecture.md"
            rows[name] = [cell.strip() for cell in rest.split("|")]
    return rows


def test_the_architecture_tables_list_every_module_and_no_other() -> None:
    listed, present = set(layout_rows()), set(project_modules())
    assert sorted(present - listed) == [], "modules missing from docs/architecture.md"
    assert sorted(listed - present) == [], "docs/architecture.md lists modules that are gone"


def test_every_io_claim_in_the_architecture_tables_holds() -> None:
    modules = project_modules()
    wrong = []
    for name, cells in layout_rows().items():
        if name.startswith("benchmarks"):
            continue  # the benchmark suite is a tool: its table has no I/O column
        claim = cells[-1]
        assert claim.startswith(("sans-I/O", "I/O")), f"{name}: I/O column says {claim!r}"
        if claim.startswith("sans-I/O") == does_io(modules[name]):
            wrong.append(f"{name}: the table says {claim!r}")
    assert wrong == []


def test_every_module_is_public_internal_or_private_and_private_means_underscore() -> None:
    """The surface column: *private* exactly for a ``_name`` module (not ``__main__``)."""
    wrong = []
    for name, cells in layout_rows().items():
        if name.startswith("benchmarks"):
            continue  # a tool, not an API: its table has no surface column
        underscore = any(p.startswith("_") and not p.startswith("__") for p in name.split("."))
        surface = cells[-2]
        if surface not in ("public", "internal", "private") or (surface == "private") != underscore:
            wrong.append(f"{name}: surface {surface!r}")
    assert wrong == []


def test_the_package_exports_exactly_the_public_names_it_imports() -> None:
    """``fwdist.__all__`` is what ``fwdist/__init__.py`` imports for the type checker (no more,
    none forgotten), each name resolves lazily to the object its module defines, and
    ``__all__`` holds the names the README and docs/architecture.md give as ``fwdist``'s."""
    import importlib

    import fwdist

    tree = ast.parse((REPO / "fwdist" / "__init__.py").read_text())
    (checking,) = [
        s for s in tree.body if isinstance(s, ast.If) and ast.unparse(s.test) == "TYPE_CHECKING"
    ]
    imported = {
        (stmt.module, alias.asname or alias.name)
        for stmt in checking.body
        if isinstance(stmt, ast.ImportFrom)
        for alias in stmt.names
    }
    assert len(imported) == len(fwdist.__all__) == 43
    assert sorted(name for _, name in imported) == sorted(fwdist.__all__)
    assert {(m, n) for m, names in fwdist._LAZY.items() for n in names} == imported
    for module, name in imported:
        assert getattr(fwdist, name) is getattr(importlib.import_module(str(module)), name)
    named = {"Lockbox", "BoxConfig", "IdleStep", "App", "FrameCache", "PhoneCache", "SessionEnd",
             "SessionReport", "phone_cache", "Pump", "pump_session", "BoxEndpoint", "Store",
             "StageOptions", "stage", "plan", "load_manifest", "verify_store", "gc"}  # fmt: skip
    assert sorted(named - set(fwdist.__all__)) == []


EDGE = re.compile(r"^\s*(\w+)\s*-->\s*(\w+)\s*$", re.M)
NODE = re.compile(r"^\s*(\w+)\s*$", re.M)
SUBGRAPH = re.compile(r'^\s*subgraph (\w+)\[?"?[^\n]*\n(.*?)^\s*end\s*$', re.M | re.S)


def library_modules() -> dict[str, Path]:
    """The library as the picture draws it: not cli, ``__init__``, ``__main__`` or errors."""
    return {
        m: path
        for m, path in project_modules().items()
        if m.startswith("fwdist.")
        and not m.startswith("fwdist.cli")
        and m not in ("fwdist.__main__", "fwdist.errors")
    }


def node(module: str) -> str:
    """The picture's node of a module: a private submodule (``fwdist.lockbox._box``) is drawn
    as its package (``lockbox``), any other module as its dotted name with ``_`` for dots."""
    parts = module.removeprefix("fwdist.").split(".")
    while len(parts) > 1 and parts[-1].startswith("_"):
        parts.pop()
    return "_".join(parts)


def marked_picture() -> str:
    text = (DOCS / "architecture.md").read_text()
    picture = re.search(r"<!-- layout -->\s*```mermaid\n(.*?)```", text, re.S)
    assert picture is not None, "the mermaid picture of docs/architecture.md is not marked"
    return picture.group(1)


def picture_problems(picture: str) -> list[str]:
    """What a mermaid picture gets wrong about the library, one line each (none: it is right).

    Every import between two nodes must be an arrow and every arrow an import; imports inside
    one package (between its private modules, or from its ``__init__``) are not drawn. Every
    node is declared once, in subgraph ``sans`` when none of its modules does I/O, else in
    ``io``; a package's private modules are not nodes of their own (the tables list them).
    """
    modules, library = project_modules(), library_modules()
    members: dict[str, list[str]] = {}
    for m in library:
        members.setdefault(node(m), []).append(m)
    actual = {
        (node(a), node(b))
        for a in library
        for b in project_imports(modules[a], modules)
        if b in library and node(a) != node(b)
    }
    drawn = set(EDGE.findall(picture))
    problems = [f"import not drawn: {a} --> {b}" for a, b in sorted(actual - drawn)]
    problems += [f"arrow without an import: {a} --> {b}" for a, b in sorted(drawn - actual)]
    side = {}
    for group, body in SUBGRAPH.findall(picture):
        for name in NODE.findall(body):
            if name in side:
                problems.append(f"node drawn twice: {name}")
            side[name] = group
    for name, ms in sorted(members.items()):
        want = "io" if any(does_io(library[m]) for m in ms) else "sans"
        if name not in side:
            problems.append(f"node not drawn: {name}")
        elif side[name] != want:
            problems.append(f"node {name} drawn in {side[name]}, belongs in {want}")
    problems += [f"node of no module: {name}" for name in sorted(set(side) - set(members))]
    return problems


def test_the_import_picture_is_the_import_graph_of_the_library() -> None:
    assert picture_problems(marked_picture()) == []


def test_the_picture_check_names_each_thing_a_picture_gets_wrong() -> None:
    """The real picture with one arrow erased and one invented, one node erased, one moved
    across the line, one private module drawn on its own, and one node drawn twice."""
    picture = marked_picture()
    for line in ("  lockbox --> journal\n", "    pump\n", "    releases\n"):
        assert line in picture
        picture = picture.replace(line, "", 1)
    picture = picture.replace("    chunker\n", "    chunker\n    releases\n    lockbox__box\n", 1)
    picture = picture.replace("    store\n", "    store\n    manifest\n", 1)
    picture += "  app --> store\n"
    assert picture_problems(picture) == [
        "import not drawn: lockbox --> journal",
        "arrow without an import: app --> store",
        "node drawn twice: manifest",
        "node manifest drawn in io, belongs in sans",
        "node not drawn: pump",
        "node releases drawn in sans, belongs in io",
        "node of no module: lockbox__box",
    ]
    assert node("fwdist.lockbox._box") == "lockbox" and node("fwdist.delta._lzma") == "delta"


# --- citations of markdown files ---------------------------------------------------------

MD_PATH = re.compile(r"(?:[a-z]+://\S*)?[\w./-]*\w\.md\b")
WRITTEN = {
    "report.md": "written by `fwdist sim --report DIR` (sim/report.py)",
    "reports/bench.md": "written by .ci/run (benchmarks --markdown)",
    "b.md": "a test's output file in tmp_path",
}
# Python joins a path from literals (``ROOT / "docs" / "cli.md"``): read as one path.
JOINED = re.compile(r"""(["'])([\w.-]+)\1\s*/\s*(["'])""")


def _joined(line: str) -> str:
    """``"docs" / "cli.md"`` becomes ``"docs/cli.md"``, so the join is checked as the path."""
    while (done := JOINED.sub(r"\3\2/", line)) != line:
        line = done
    return line


def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files"], capture_output=True, text=True, check=True
    ).stdout
    return out.splitlines()


def missing_citations(root: Path) -> list[tuple[str, str, int]]:
    """(file, cited path, line) of every ``*.md`` path a tracked file names that is not there.

    A path counts as there when it is a file inside ``root``, relative to ``root`` or to
    the citing file's directory; URLs and the files in :data:`WRITTEN` (in any directory:
    ``out/report.md``) are not citations.
    String literals joined with ``/`` (pathlib) count as the one path they make.
    """
    root = root.resolve()
    missing = []
    for name in tracked_files(root):
        path = root / name
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            for token in MD_PATH.findall(_joined(line)):
                if "://" in token or any(token == w or token.endswith("/" + w) for w in WRITTEN):
                    continue
                candidates = ((root / token).resolve(), (path.parent / token).resolve())
                if not any(c.is_relative_to(root) and c.is_file() for c in candidates):
                    missing.append((name, token, lineno))
    return missing


SELF = "tests/unit/test_docs.py"  # names missing files on purpose, to test the scan itself


def test_no_tracked_file_cites_a_markdown_file_the_repository_lacks() -> None:
    assert [m for m in missing_citations(REPO) if m[0] != SELF] == []


def test_the_citation_check_finds_what_is_missing_and_only_that(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("see b.md? no: see c.md and ../README.md\n")
    (tmp_path / "docs" / "c.md").write_text("back to docs/a.md; up to ../../outside.md\n")
    (tmp_path / "README.md").write_text("docs/a.md, DESIGN.md, https://example.org/x.md\n")
    (tmp_path / "tool.py").write_text(
        '"""Writes report.md; read docs/gone.md."""\n'
        'A, B = ROOT / "docs" / "a.md", ROOT / \'docs\' / "lost.md"\n'
        'C = tmp / "out" / "report.md"\n'
    )
    (tmp_path / "untracked.md").write_text("DESIGN.md\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "docs", "README.md", "tool.py"], check=True)
    assert missing_citations(tmp_path) == [
        ("README.md", "DESIGN.md", 1),
        ("docs/c.md", "../../outside.md", 1),
        ("tool.py", "docs/gone.md", 1),
        ("tool.py", "docs/lost.md", 2),
    ]


if __name__ == "__main__":  # print every example, 16 bytes a line, for the docs
    for name, data in examples().items():
        print(f"<!-- hex: {name} -->  ({len(data)} bytes)")
        for i in range(0, len(data), 16):
            print(data[i : i + 16].hex(" "))
        print()
    sys.exit(0)
