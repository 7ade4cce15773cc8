"""The embedded-delta peers on device firmware, each patch round-tripped before it counts.

bsdiff, xdelta3 and zstd are the general tools; detools and HDiffPatch/HPatchLite
are what an embedded team would actually ship. detools is given its best chance:
every patch type, algorithm and compression it offers (and its ARM or Xtensa data
format where the pair's code is), and the smallest patch that rebuilds the new
image is its figure. Time and peak memory are those of the encoder run alone,
measured by GNU time (:func:`benchmarks.tools.measured`).
"""

from __future__ import annotations

import enum
import hashlib
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import tools
from benchmarks.devices import DevicePair, Isa

SEGMENT = 4096  # a NOR flash sector: detools' in-place segment


@dataclass(frozen=True)
class PeerPatch:
    size: int
    encode: tools.Measured
    note: str


def _check(out: Path, new_sha: str, who: str) -> None:
    if hashlib.sha256(out.read_bytes()).hexdigest() != new_sha:
        raise tools.ToolError(f"{who} did not rebuild the new image")


def _cli_peer(
    encode: list[str | Path], decode: list[str | Path], patch: Path, out: Path, new_sha: str
) -> tools.Measured:
    run = tools.measured(encode, patch.with_suffix(".rss"))
    tools.timed(decode)
    _check(out, new_sha, str(decode[0]))
    return run


def bsdiff(pair: DevicePair, old: Path, new: Path, work: Path, quick: bool) -> PeerPatch:
    patch, out = work / "bsdiff.patch", work / "bsdiff.out"
    run = _cli_peer(
        ["bsdiff", old, new, patch], ["bspatch", old, out, patch], patch, out, _sha(new)
    )
    return PeerPatch(patch.stat().st_size, run, "bsdiff 4.3 (bzip2)")


def xdelta3(pair: DevicePair, old: Path, new: Path, work: Path, quick: bool) -> PeerPatch:
    patch, out = work / "xdelta3.patch", work / "xdelta3.out"
    run = _cli_peer(
        ["xdelta3", "-9", "-e", "-f", "-s", old, new, patch],
        ["xdelta3", "-d", "-f", "-s", old, patch, out],
        patch,
        out,
        _sha(new),
    )
    return PeerPatch(patch.stat().st_size, run, "xdelta3 -9")


def zstd(pair: DevicePair, old: Path, new: Path, work: Path, quick: bool) -> PeerPatch:
    patch, out = work / "zstd.patch", work / "zstd.out"
    ref = f"--patch-from={old}"
    run = _cli_peer(
        ["zstd", "--ultra", "-22", "--long=27", ref, new, "-o", patch, "-f", "-q"],
        ["zstd", "-d", "--long=27", ref, patch, "-o", out, "-f", "-q"],
        patch,
        out,
        _sha(new),
    )
    return PeerPatch(patch.stat().st_size, run, "zstd --ultra -22 --long=27 --patch-from")


def _hdiff(mode: str, pair: DevicePair, old: Path, new: Path, work: Path) -> PeerPatch:
    patch, out = work / f"{mode}.patch", work / f"{mode}.out"
    helper = [sys.executable, "-m", "benchmarks.hdiff"]
    run = _cli_peer(
        [*helper, mode, "diff", old, new, patch],
        [*helper, mode, "apply", old, patch, out],
        patch,
        out,
        _sha(new),
    )
    from benchmarks.hdiff import NOTES

    return PeerPatch(patch.stat().st_size, run, NOTES[mode])


def hdiffpatch(pair: DevicePair, old: Path, new: Path, work: Path, quick: bool) -> PeerPatch:
    return _hdiff("hdiffpatch", pair, old, new, work)


def hpatchlite(pair: DevicePair, old: Path, new: Path, work: Path, quick: bool) -> PeerPatch:
    return _hdiff("hpatchlite", pair, old, new, work)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- detools: every option set, the smallest round-tripped patch wins ---------------


class PatchType(enum.Enum):
    SEQUENTIAL = "sequential"
    IN_PLACE = "in-place"
    HDIFFPATCH = "hdiffpatch"


class Algorithm(enum.Enum):
    BSDIFF = "bsdiff"
    HDIFFPATCH = "hdiffpatch"
    MATCH_BLOCKS = "match-blocks"


class Compression(enum.Enum):
    LZMA = "lzma"
    HEATSHRINK = "heatshrink"
    CRLE = "crle"


class DataFormat(enum.Enum):
    NONE = "none"
    ARM_CORTEX_M4 = "arm-cortex-m4"
    XTENSA_LX106 = "xtensa-lx106"


_FORMAT_FOR: dict[Isa, DataFormat] = {
    Isa.NONE: DataFormat.NONE,
    Isa.THUMB2: DataFormat.ARM_CORTEX_M4,
    Isa.XTENSA: DataFormat.XTENSA_LX106,
}


@dataclass(frozen=True)
class Ranges:
    """detools' ARM address ranges for one image: ``(begin, end)`` each."""

    data_offsets: tuple[int, int]
    code: tuple[int, int]
    data: tuple[int, int]


def cortex_m_ranges(image: bytes, base: int) -> Ranges:
    """The ranges detools' ``arm-cortex-m4`` format needs, read from the image itself.

    A Cortex-M image starts with its vector table: the initial stack pointer,
    then handler addresses (odd: Thumb) inside the image, or zero. That table
    is the data segment whose words are code pointers; the code range is the
    image's own span from ``base``; the data (RAM) range runs from the start of
    the stack pointer's 256 MiB region up to the stack pointer (an image whose
    stack pointer is zero or inside the image sets it in code: its RAM is its
    own span).
    """
    end = base + len(image)
    words = len(image) // 4
    sp = struct.unpack_from("<I", image, 0)[0] if words else 0
    n = 1
    while n < words:
        w = struct.unpack_from("<I", image, 4 * n)[0]
        if not (w == 0 or (w & 1 and base <= w < end)):
            break
        n += 1
    data = (base, end) if sp == 0 or base <= sp < end else (sp & 0xF000_0000, (sp + 3) & ~3)
    return Ranges((0, 4 * n), (base, end), data)


def _range(r: tuple[int, int]) -> str:
    return f"{r[0]:#x}-{r[1]:#x}"


@dataclass(frozen=True)
class Options:
    patch_type: PatchType
    algorithm: Algorithm
    compression: Compression
    data_format: DataFormat = DataFormat.NONE
    ranges: bool = False  # pass the ranges of :func:`cortex_m_ranges`
    match_score: int | None = None  # hdiffpatch's (detools' default 6; 0-4 suit binaries)

    @property
    def label(self) -> str:
        parts = [self.patch_type.value, self.algorithm.value, self.compression.value]
        if self.match_score is not None:
            parts.append(f"match-score {self.match_score}")
        if self.data_format is not DataFormat.NONE:
            parts.append(self.data_format.value + ("+ranges" if self.ranges else ""))
        return "/".join(parts)

    def create(self, pair: DevicePair, old: Path, new: Path, patch: Path) -> list[str | Path]:
        args: list[str | Path] = ["-c", self.compression.value]
        if self.patch_type is PatchType.IN_PLACE:
            memory = _memory_size(old, new)
            args = ["create_patch_in_place", *args, "--memory-size", str(memory)]
            args += ["--segment-size", str(SEGMENT)]
        else:
            args = ["create_patch", *args, "-t", self.patch_type.value]
            args += ["-a", self.algorithm.value]
        if self.match_score is not None:
            args += ["--match-score", str(self.match_score)]
        if self.data_format is not DataFormat.NONE:
            args += ["--data-format", self.data_format.value]
        if self.ranges:
            for side, path in (("from", old), ("to", new)):
                r = cortex_m_ranges(path.read_bytes(), pair.base)
                args += [f"--{side}-data-offsets", _range(r.data_offsets)]
                args += [f"--{side}-code-addresses", _range(r.code)]
                args += [f"--{side}-data-addresses", _range(r.data)]
        return [sys.executable, "-m", "detools", *args, old, new, patch]


def _memory_size(old: Path, new: Path) -> int:
    """An in-place memory region: the larger image rounded to sectors, plus two sectors."""
    biggest = max(old.stat().st_size, new.stat().st_size)
    return -(-biggest // SEGMENT) * SEGMENT + 2 * SEGMENT


MATCH_SCORES = (0, 2, 4, 6)
QUICK_MATCH_SCORES = (0, 2)


def option_sets(arch: Isa, quick: bool) -> list[Options]:
    """detools' option sets for a pair: all of them, or in quick mode five that matter.

    Quick mode keeps the usual winners (sequential bsdiff, and hdiffpatch at
    the two low match scores, lzma), heatshrink (the small-RAM decoder) and
    the arch data format.
    """
    fmt = _FORMAT_FOR[arch]
    seq, inp, hdp = PatchType.SEQUENTIAL, PatchType.IN_PLACE, PatchType.HDIFFPATCH
    bs, mb, hd = Algorithm.BSDIFF, Algorithm.MATCH_BLOCKS, Algorithm.HDIFFPATCH
    if quick:
        sets = [Options(seq, bs, Compression.LZMA), Options(seq, bs, Compression.HEATSHRINK)]
        sets += [Options(hdp, hd, Compression.LZMA, match_score=m) for m in QUICK_MATCH_SCORES]
        if fmt is not DataFormat.NONE:
            sets.append(Options(seq, bs, Compression.LZMA, fmt))
        return sets
    sets = []
    for c in Compression:
        sets += [Options(seq, bs, c), Options(seq, mb, c), Options(inp, bs, c)]
        sets += [Options(hdp, hd, c, match_score=m) for m in MATCH_SCORES]
        if fmt is not DataFormat.NONE:
            sets += [Options(seq, bs, c, fmt), Options(seq, mb, c, fmt), Options(inp, bs, c, fmt)]
    if fmt is DataFormat.ARM_CORTEX_M4:
        sets.append(Options(seq, bs, Compression.LZMA, fmt, ranges=True))
    return sets


def _detools_once(
    o: Options, pair: DevicePair, old: Path, new: Path, work: Path, new_sha: str
) -> tools.Measured:
    patch = work / "detools.patch"
    run = tools.measured(o.create(pair, old, new, patch), work / "detools.rss")
    detools = [sys.executable, "-m", "detools"]
    if o.patch_type is PatchType.IN_PLACE:
        memory = work / "detools.mem"
        image = old.read_bytes()
        memory.write_bytes(image + b"\xff" * (_memory_size(old, new) - len(image)))
        tools.timed([*detools, "apply_patch_in_place", memory, patch])
        rebuilt = memory.read_bytes()[: new.stat().st_size]
        if hashlib.sha256(rebuilt).hexdigest() != new_sha:
            raise tools.ToolError("detools in-place did not rebuild the new image")
    else:
        out = work / "detools.out"
        tools.timed([*detools, "apply_patch", old, patch, out])
        _check(out, new_sha, "detools")
    return run


def detools(pair: DevicePair, old: Path, new: Path, work: Path, quick: bool) -> PeerPatch:
    new_sha = _sha(new)
    best: tuple[int, Options, tools.Measured] | None = None
    failures: list[str] = []
    sets = option_sets(pair.arch, quick)
    for o in sets:
        try:
            run = _detools_once(o, pair, old, new, work, new_sha)
        except (tools.ToolError, OSError) as e:
            failures.append(f"{o.label} ({str(e).rsplit(': ', 1)[-1][:60] or 'failed'})")
            continue
        size = (work / "detools.patch").stat().st_size
        if best is None or size < best[0]:
            best = (size, o, run)
    if best is None:
        raise tools.ToolError(f"no detools option set round-tripped: {'; '.join(failures)}")
    size, o, run = best
    note = f"detools best of {len(sets) - len(failures)} round-tripped option sets: {o.label}"
    if quick:
        note += " (quick run: 4-5 option sets, not all)"
    if failures:
        note += f"; did not round-trip: {', '.join(failures)}"
    return PeerPatch(size, run, note)


Runner = Callable[[DevicePair, Path, Path, Path, bool], PeerPatch]

# label -> (commands it needs, runner)
PEERS: dict[str, tuple[tuple[str, ...], Runner]] = {
    "bsdiff": (("bsdiff", "bspatch", "time"), bsdiff),
    "xdelta3 -9": (("xdelta3", "time"), xdelta3),
    "zstd -22 --patch-from": (("zstd", "time"), zstd),
    "detools": (("time",), detools),
    "HDiffPatch": (("time",), hdiffpatch),
    "HPatchLite": (("time",), hpatchlite),
}
NEEDED = sorted({c for cmds, _ in PEERS.values() for c in cmds})
PYTHON_PEERS = {"detools": "detools", "HDiffPatch": "hdiffpatch", "HPatchLite": "hdiffpatch"}
"""Peers that are Python packages (the ``bench`` extra): label -> module to import."""
