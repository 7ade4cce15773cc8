"""Sample firmware images that behave like real ones under chunking and deltas.

The demo, the tests and the simulator need image pairs without downloading
anything. Random bytes would be wrong (incompressible, no shared structure), and
so would a copy with a few flipped bytes (too easy). Real consecutive releases
are relinked: new code shifts everything after it, and every call that crosses
the shift changes its relative offset. So this module "links" a seeded list of
functions (instruction-like words from a small vocabulary, with calls to other
functions resolved to relative offsets at link time) followed by string and
lookup tables, and a release is an edit of that list, relinked.
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
class Function:
    """A function body with call sites: (offset in body, index of callee)."""

    body: bytes
    calls: tuple[tuple[int, int], ...]


def _function(rng: random.Random, n_functions: int) -> Function:
    words = []
    calls = []
    for i in range(rng.randint(8, 160)):
        r = rng.random()
        if r < 0.12:
            calls.append((i * 4, rng.randrange(n_functions)))
            words.append(b"\xeb\x00\x00\x00")  # patched with the call offset at link time
        elif r < 0.2:
            words.append(struct.pack("<I", rng.getrandbits(12)))  # small immediates
        else:
            words.append(rng.choice(_OPCODES))
    return Function(b"".join(words), tuple(calls))


def _tables(rng: random.Random, version: str, size: int) -> bytes:
    parts = [f"firmware {version}\x00".encode()]
    total = len(parts[0])
    while total < size:
        if rng.random() < 0.7:
            msg = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 6)))
            parts.append(f"{msg} %d\x00".encode())
        else:
            parts.append(struct.pack("<16H", *sorted(rng.getrandbits(16) for _ in range(16))))
        total += len(parts[-1])
    return b"".join(parts)[:size]


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

    def _base(self) -> list[Function]:
        rng = random.Random(self.seed)
        n = max(4, self.size // 700)
        return [_function(rng, n) for _ in range(n)]

    def image(self, release: int = 0) -> bytes:
        """The image of release number ``release`` (0, 1, 2...)."""
        functions = self._base()
        code_budget = int(self.size * 0.72)
        for r in range(1, release + 1):
            edit = random.Random(self.seed * 1000 + r)
            for _ in range(max(1, len(functions) // 40)):  # patch a few functions
                i = edit.randrange(len(functions))
                functions[i] = _function(edit, len(functions))
            for _ in range(max(1, len(functions) // 100)):  # new code in the middle
                functions.insert(edit.randrange(len(functions)), _function(edit, len(functions)))
        code_size = sum(len(f.body) for f in functions)
        while code_size > code_budget:
            code_size -= len(functions.pop().body)
        version = f"1.{release}.0"
        tables = _tables(random.Random(self.seed), version, self.size // 5)
        return link(functions, tables, self.size)[: self.size]

    def version(self, release: int = 0) -> str:
        return f"1.{release}.0"
