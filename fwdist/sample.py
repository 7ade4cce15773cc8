"""Sample firmware images that behave like real ones under chunking and deltas.

The demo, the tests and the simulator need image pairs without downloading
anything. Random bytes would be wrong (incompressible, no shared structure), and
so would a copy with a few flipped bytes (too easy). Real consecutive releases
are relinked: new code shifts everything after it, and every call that crosses
the shift changes its relative offset. So this module "links" a seeded list of
functions (instruction-like words from a small vocabulary, with calls to other
functions resolved to relative offsets at link time) followed by string and
lookup tables, and a release is an edit of that list, relinked.

How much a release edits, and how much entropy an instruction carries, is a
:class:`ReleaseModel`. Two are defined:

- :data:`SYNTHETIC` (the default, the generator's original behaviour, byte for
  byte): 2.5 % of functions rewritten and 1 % inserted per release, opcodes
  with no operand bits. Its images compress to ~19 % and its consecutive
  deltas are 4-5 % of the image: far easier than real firmware.
- :data:`DEVICE_MEDIAN`: calibrated to the median of the real device firmware
  pairs (docs/sample-firmware.md has the model, the measurements and the
  calibration): instructions carry random operand bits so that the whole image
  compresses like real firmware (~61 %), and a release recompiles enough
  functions, inserts new ones and rewrites strings so that a consecutive delta
  is ~9.4 % of the image on the air. The simulator's built-in release uses it.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

_OPCODES = [random.Random(7).randbytes(4) for _ in range(48)]
_WORDS = [
    "lock",
    "box",
    "agent",
    "door",
    "battery",
    "bluetooth",
    "key",
    "code",
    "showing",
    "listing",
    "error",
    "retry",
    "timeout",
    "update",
    "flash",
    "slot",
    "boot",
    "confirm",
    "revert",
    "audit",
]


@dataclass(frozen=True)
class ReleaseModel:
    """What a release does to the code, as fractions in thousandths (exact integer arithmetic).

    - ``bytes_per_function``: image bytes per function in release 0 (the original
      700 leaves ~48 % of the image code and ~32 % erased flash; 470 fills the
      72 % code budget, as a linked image does);
    - ``operand_bits``: random bits in every non-call instruction word (register
      fields, immediates): the code's entropy, so its compression ratio;
    - ``changed_per_mille``: functions recompiled per release (the new body shares
      nothing with the old one: an upper bound per function that the calibrated
      fraction absorbs);
    - ``inserted_per_mille``: new functions per release, at random places: code
      motion, so every call that crosses an insertion changes its displacement;
    - ``strings_per_mille``: string and lookup-table entries rewritten per release.

    Counts are ``max(1, n * per_mille // 1000)`` for ``n`` functions (or entries,
    where zero stays zero), so a model means the same at every image size.
    """

    bytes_per_function: int
    operand_bits: int
    changed_per_mille: int
    inserted_per_mille: int
    strings_per_mille: int

    def __post_init__(self) -> None:
        if self.bytes_per_function < 64:
            raise ValueError(f"bytes_per_function must be >= 64, got {self.bytes_per_function}")
        if not 0 <= self.operand_bits <= 24:
            raise ValueError(f"operand_bits must be 0..24, got {self.operand_bits}")
        for name in ("changed_per_mille", "inserted_per_mille", "strings_per_mille"):
            if not 0 <= getattr(self, name) <= 1000:
                raise ValueError(f"{name} must be 0..1000, got {getattr(self, name)}")


SYNTHETIC = ReleaseModel(
    bytes_per_function=700, operand_bits=0, changed_per_mille=25, inserted_per_mille=10,
    strings_per_mille=0,
)
"""The generator's original model (kept byte for byte): easy deltas, very compressible code."""

DEVICE_MEDIAN = ReleaseModel(
    bytes_per_function=470, operand_bits=16, changed_per_mille=60, inserted_per_mille=20,
    strings_per_mille=60,
)
"""Calibrated to the median real device firmware pair (docs/sample-firmware.md)."""


@dataclass(frozen=True)
class Function:
    """A function body with call sites: (offset in body, index of callee)."""

    body: bytes
    calls: tuple[tuple[int, int], ...]


def _function(rng: random.Random, n_functions: int, operand_bits: int = 0) -> Function:
    words = []
    calls = []
    for i in range(rng.randint(8, 160)):
        r = rng.random()
        if r < 0.12:
            calls.append((i * 4, rng.randrange(n_functions)))
            words.append(b"\xeb\x00\x00\x00")  # patched with the call offset at link time
        elif r < 0.2:
            words.append(struct.pack("<I", rng.getrandbits(12)))  # small immediates
        elif operand_bits:  # an opcode with its register fields and immediates
            op = int.from_bytes(rng.choice(_OPCODES), "little")
            words.append((op ^ rng.getrandbits(operand_bits)).to_bytes(4, "little"))
        else:
            words.append(rng.choice(_OPCODES))
    return Function(b"".join(words), tuple(calls))


def _table_entry(rng: random.Random) -> bytes:
    if rng.random() < 0.7:
        msg = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 6)))
        return f"{msg} %d\x00".encode()
    return struct.pack("<16H", *sorted(rng.getrandbits(16) for _ in range(16)))


def _tables(rng: random.Random, version: str, size: int) -> list[bytes]:
    """The version string, then string and lookup-table entries to at least ``size`` bytes."""
    parts = [f"firmware {version}\x00".encode()]
    total = len(parts[0])
    while total < size:
        parts.append(_table_entry(rng))
        total += len(parts[-1])
    return parts


def link(functions: list[Function], tables: bytes, size: int) -> bytes:
    """Lay functions out in order, resolve calls to relative offsets, pad to ``size`` with 0xFF."""
    starts = []
    pos = 256
    for f in functions:
        starts.append(pos)
        pos += len(f.body)
    image = bytearray(b"\xff" * max(size, pos + len(tables)))
    image[0:256] = b"".join(struct.pack("<I", s) for s in (starts + [0] * 64)[:64])
    for f, start in zip(functions, starts, strict=True):
        body = bytearray(f.body)
        for off, callee in f.calls:
            rel = (starts[callee % len(starts)] - (start + off)) & 0xFFFFFF
            body[off + 1 : off + 4] = rel.to_bytes(3, "little")
        image[start : start + len(body)] = body
    image[pos : pos + len(tables)] = tables
    return bytes(image)


@dataclass(frozen=True)
class SampleFirmware:
    """A release history: ``image(0)`` is the first release, each next one an edit of it."""

    size: int = 256 * 1024
    seed: int = 1
    model: ReleaseModel = SYNTHETIC

    def _base(self) -> list[Function]:
        rng = random.Random(self.seed)
        n = max(4, self.size // self.model.bytes_per_function)
        return [_function(rng, n, self.model.operand_bits) for _ in range(n)]

    def image(self, release: int = 0) -> bytes:
        """The image of release number ``release`` (0, 1, 2...)."""
        m = self.model
        bits = m.operand_bits
        functions = self._base()
        code_budget = int(self.size * 0.72)
        tables = _tables(random.Random(self.seed), self.version(release), self.size // 5)
        for r in range(1, release + 1):
            edit = random.Random(self.seed * 1000 + r)
            for _ in range(max(1, len(functions) * m.changed_per_mille // 1000)):  # recompiled
                i = edit.randrange(len(functions))
                functions[i] = _function(edit, len(functions), bits)
            for _ in range(max(1, len(functions) * m.inserted_per_mille // 1000)):  # new code
                functions.insert(
                    edit.randrange(len(functions)), _function(edit, len(functions), bits)
                )
            for _ in range((len(tables) - 1) * m.strings_per_mille // 1000):  # new strings
                tables[1 + edit.randrange(len(tables) - 1)] = _table_entry(edit)
        code_size = sum(len(f.body) for f in functions)
        while code_size > code_budget:
            code_size -= len(functions.pop().body)
        return link(functions, b"".join(tables)[: self.size // 5], self.size)[: self.size]

    def version(self, release: int = 0) -> str:
        return f"1.{release}.0"
