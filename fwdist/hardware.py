"""Hardware profiles: what one box model can hold and decode, declared once and used everywhere.

A release is staged for a hardware id, and every box of that id runs the same
firmware on the same part: so what the box's decoder may use (its RAM budget,
the payload formats its firmware has, the instruction set a transform may
undo) and how its flash is carved up are facts about the hardware, not about a
release. A :class:`Profile` writes them down once, in the store
(``hardware/ID.json``, :meth:`fwdist.store.Store.put_profile`), so that every
later ``fwdist stage`` for that hardware makes only payloads such a box can
decode, and ``fwdist lockbox init --hardware`` provisions a box from the same
facts (:meth:`Profile.box_config`).

The file is canonical JSON (sorted keys, no spaces, one trailing newline) and
has the shape ``fwdist hardware show ID --json`` prints, so that output can be
handed straight to ``lockbox init``. Loading is strict: every field must be
there, with its exact type and a value a box can have, and nothing else may be;
the first field that is wrong is named in one line (:class:`HardwareError`).

:data:`NRF52832` is the documented microcontroller profile (the README, the
simulator): a Nordic nRF52832 with 64 KiB of RAM, half of it for the decoder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from fwdist import delta
from fwdist.chunker import ChunkerParams
from fwdist.delta import InstructionSet
from fwdist.errors import FwdistError, ManifestError
from fwdist.lockbox import BoxConfig, LockboxError
from fwdist.manifest import check_name
from fwdist.store import Store

SCHEMA: Final = 1
"""The profile file's layout version (the ``schema`` of the CLI's JSON, which it equals)."""
FULL: Final = "full"
"""The full image's format name: every box decodes it, so every profile lists it."""
MIN_DECODER_RAM: Final = 1024
"""Below this not even the full image's smallest pieces decode; a smaller budget is a typo."""
MAX_U32: Final = (1 << 32) - 1
"""The manifest records decoder RAM as a u32: a larger budget could never be compared."""
MIN_SECTOR: Final = 256
MAX_SECTOR: Final = 1 << 20
MAX_ALIGN: Final = 256
"""The largest write alignment a box can report in its Status frame."""

_FIELDS: Final = ("schema", "id", "decoder_ram", "flash_size", "sector_size", "align",
                  "slot_size", "staging_size", "arch", "formats")


class HardwareError(FwdistError):
    """A hardware profile is malformed, missing or impossible; the message names the field."""


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is an int to isinstance, and never a size


def _power_of_two(n: int) -> bool:
    return n > 0 and not n & (n - 1)


@dataclass(frozen=True)
class Profile:
    """One box model: decoder RAM budget, flash geometry, instruction set, payload formats.

    ``formats`` are the payload formats the box's firmware decodes: names of
    :data:`fwdist.delta.ENCODERS` and :data:`FULL`, which is always among them
    (every box can take the full image, so no box is ever left without a
    payload). They are kept sorted and unique, so equal profiles are equal bytes.
    """

    id: str
    decoder_ram: int
    flash_size: int
    sector_size: int
    align: int
    slot_size: int
    staging_size: int
    arch: InstructionSet = InstructionSet.NONE
    formats: tuple[str, ...] = (FULL,)

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem is not None:
            raise HardwareError(f"hardware profile {self.id!r}: {problem}")

    def _problem(self) -> str | None:
        """The first field (in declaration order) that no box can have, in words."""
        if not isinstance(self.id, str):
            return "the id must be a string"
        try:
            check_name("hardware id", self.id)
        except ManifestError as e:
            return str(e)
        ram, ss = self.decoder_ram, self.sector_size
        if not (_is_int(ram) and MIN_DECODER_RAM <= ram <= MAX_U32):
            return f"decoder RAM must be {MIN_DECODER_RAM}..{MAX_U32} bytes, got {ram!r}"
        if not (_is_int(self.flash_size) and self.flash_size > 0):
            return f"flash size must be a positive number of bytes, got {self.flash_size!r}"
        if not (_is_int(ss) and _power_of_two(ss) and MIN_SECTOR <= ss <= MAX_SECTOR):
            return (f"sector size must be a power of two, {MIN_SECTOR}..{MAX_SECTOR} bytes, "
                    f"got {ss!r}")
        if not (_is_int(self.align) and _power_of_two(self.align)
                and self.align <= min(ss, MAX_ALIGN)):
            return (f"write alignment must be a power of two, 1..{min(ss, MAX_ALIGN)} bytes, "
                    f"got {self.align!r}")
        for name, value in (("flash size", self.flash_size), ("slot size", self.slot_size),
                            ("staging size", self.staging_size)):
            if not (_is_int(value) and value > 0 and value % ss == 0):
                return f"{name} must be a positive multiple of the {ss}-byte sector, got {value!r}"
        if not isinstance(self.arch, InstructionSet):
            return f"instruction set must be one of {_arch_names()}, got {self.arch!r}"
        problem = _format_problem(self.formats)
        if problem is not None:
            return problem
        need = self.box_config("profile").flash_size()
        if need > self.flash_size:
            return (f"two {self.slot_size}-byte slots, a {self.staging_size}-byte staging area "
                    f"and 4 sectors of journal and manifests need {need} bytes of flash, more "
                    f"than its {self.flash_size}")
        return None

    # -- what the rest of fwdist reads off a profile ----------------------------------

    @property
    def delta_formats(self) -> tuple[str, ...]:
        """The delta encoders the box decodes (its formats without the full image)."""
        return tuple(f for f in self.formats if f != FULL)

    def box_config(self, product: str, **overrides: Any) -> BoxConfig:
        """The :class:`~fwdist.lockbox.BoxConfig` of a box of this model running ``product``."""
        fields: dict[str, Any] = {
            "slot_size": self.slot_size, "staging_size": self.staging_size,
            "sector_size": self.sector_size, "align": self.align,
            "ram_budget": self.decoder_ram, "formats": self.delta_formats}
        fields.update(overrides)
        try:
            return BoxConfig(product, self.id, **fields)
        except LockboxError as e:
            raise HardwareError(f"hardware profile {self.id!r}: {e}") from None

    def chunker(self, params: ChunkerParams) -> ChunkerParams:
        """``params`` with pieces no larger than the decoder RAM (a full-image piece is
        decompressed whole: its size is the full payload's decoder RAM)."""
        return chunker_within(params, self.decoder_ram)

    # -- JSON ------------------------------------------------------------------------------

    def as_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "id": self.id, "decoder_ram": self.decoder_ram,
                "flash_size": self.flash_size, "sector_size": self.sector_size,
                "align": self.align, "slot_size": self.slot_size,
                "staging_size": self.staging_size, "arch": self.arch.value,
                "formats": list(self.formats)}

    def encode(self) -> bytes:
        """The canonical bytes of the profile file."""
        return (json.dumps(self.as_json(), sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_json(cls, obj: object, what: str) -> Profile:
        """A profile from decoded JSON, checked field by field; ``what`` names it in errors."""
        if not isinstance(obj, dict):
            raise HardwareError(f"{what}: a hardware profile is a JSON object")
        for name in _FIELDS:
            if name not in obj:
                raise HardwareError(f"{what}: missing field {name!r}")
        extra = sorted(set(obj) - set(_FIELDS))
        if extra:
            raise HardwareError(f"{what}: unknown field {extra[0]!r}")
        if obj["schema"] != SCHEMA or not _is_int(obj["schema"]):
            raise HardwareError(f"{what}: schema must be {SCHEMA}, got {obj['schema']!r}")
        arch = obj["arch"]
        if arch not in _arch_names():
            raise HardwareError(f"{what}: arch must be one of {_arch_names()}, got {arch!r}")
        formats = obj["formats"]
        if not (isinstance(formats, list) and all(isinstance(f, str) for f in formats)):
            raise HardwareError(f"{what}: formats must be a list of format names")
        if formats != sorted(set(formats)) or FULL not in formats:
            raise HardwareError(f"{what}: formats must be sorted, unique and include {FULL!r}, "
                                f"got {formats!r}")
        fields = {k: obj[k] for k in _FIELDS if k not in ("schema", "arch", "formats")}
        try:
            return cls(**fields, arch=InstructionSet(arch), formats=tuple(formats))
        except HardwareError as e:
            raise HardwareError(f"{what}: {e}") from None

    @classmethod
    def parse(cls, data: bytes, what: str) -> Profile:
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, ValueError) as e:
            raise HardwareError(f"{what} is not JSON: {e}") from None
        return cls.from_json(obj, what)


def _arch_names() -> list[str]:
    return [a.value for a in InstructionSet]


def _format_problem(formats: object) -> str | None:
    if not (isinstance(formats, tuple) and all(isinstance(f, str) for f in formats)):
        return "formats must be a tuple of format names"
    known = sorted({*delta.ENCODERS, FULL})
    for f in formats:
        if f not in known:
            return f"unknown payload format {f!r} (known: {', '.join(known)})"
    if list(formats) != sorted(set(formats)) or FULL not in formats:
        return f"formats must be sorted, unique and include {FULL!r}, got {list(formats)!r}"
    return None


def canonical_formats(names: Collection[str]) -> tuple[str, ...]:
    """``names`` as a profile keeps them (sorted, with :data:`FULL`); a duplicate is refused,
    since a list that names a format twice was not written as meant."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise HardwareError(f"payload format {name!r} is named twice")
        seen.add(name)
    return tuple(sorted(seen | {FULL}))


def chunker_within(params: ChunkerParams, budget: int) -> ChunkerParams:
    """``params`` with the largest piece at most ``budget`` bytes (and the average and the
    smallest shrunk with it, to the largest power of two at most half of it and a quarter of
    that); unchanged when its pieces already fit."""
    if params.max_size <= budget:
        return params
    avg = min(params.avg_size, 1 << int(math.log2(budget // 2)))
    return ChunkerParams(min(params.min_size, avg // 4), avg, budget)


def load(store: Store, hardware: str) -> Profile | None:
    """The profile the store holds for ``hardware``, or None when it holds none."""
    data = store.get_profile(hardware)
    if data is None:
        return None
    profile = Profile.parse(data, f"hardware/{hardware}.json")
    if profile.id != hardware:
        raise HardwareError(f"hardware/{hardware}.json holds the profile of {profile.id!r}")
    return profile


def require(store: Store, hardware: str) -> Profile:
    """The profile of ``hardware``, or one line saying the store has none."""
    profile = load(store, hardware)
    if profile is None:
        known = ", ".join(store.profile_ids()) or "none"
        raise HardwareError(f"the store has no hardware profile {hardware!r} (profiles: {known}; "
                            "`fwdist hardware set` makes one)")
    return profile


def save(store: Store, profile: Profile) -> None:
    """Create or replace the profile in the store, atomically, under the store's lock."""
    with store.locked():
        store.put_profile(profile.id, profile.encode())


def profiles(store: Store) -> list[Profile]:
    """Every profile in the store, by id (each strictly loaded: a bad one is an error)."""
    return [require(store, hw) for hw in store.profile_ids()]


NRF52832: Final = Profile(
    id="nrf52832",
    decoder_ram=32 * 1024,
    flash_size=512 * 1024,
    sector_size=4096,
    align=4,
    slot_size=160 * 1024,
    staging_size=176 * 1024,
    arch=InstructionSet.THUMB2,
    formats=canonical_formats(("bsdiff3-lzma", "bsdiff3-lzma+thumb2", "bsdiff3-heatshrink",
                               "bsdiff3-heatshrink+thumb2")),
)
"""A Nordic nRF52832 box (Cortex-M4F, 64 KiB of RAM of which 32 KiB for the delta decoder,
512 KiB of NOR flash in 4 KiB pages, 4-byte word writes; its firmware carries the two
small-RAM decoders and the Thumb-2 filter, the formats that decode in 32 KiB): four sectors
of journal and manifests, two 160 KiB image slots and 176 KiB of staging, enough for a whole
160 KiB image's compressed pieces with their table (so the full image always fits: no box is
ever stuck)."""
