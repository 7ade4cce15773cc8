"""What a lockbox is, and how its flash is carved up (configuration and layout).

Flash layout (:class:`Layout`), in this order: two journal halves, two manifest
slots, image slots 0 and 1 (direct-XIP style: ``active`` says which one runs, a
new image is built in the other, and confirming it flips ``active``, leaving
the old image behind for the next update), and a staging area of sectors
handed out to pieces one at a time (:mod:`fwdist.lockbox._staging`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fwdist import delta
from fwdist import protocol as p
from fwdist.errors import FwdistError
from fwdist.flash import Flash, Region


class LockboxError(FwdistError):
    """The box cannot be built or provisioned as asked (layout, image size...)."""


@dataclass(frozen=True)
class BoxConfig:
    """What a lockbox is (product, hardware) and how its flash is carved up."""

    product: str
    hardware: str
    slot_size: int = 64 * 1024
    staging_size: int = 96 * 1024
    sector_size: int = 4096
    align: int = 8
    journal_sectors: int = 1
    manifest_sectors: int = 1
    max_frame: int = p.DEFAULT_MAX_FRAME
    ack_every: int = 2048
    max_pieces: int = 256
    ram_budget: int = 1024 * 1024
    max_trials: int = 3
    formats: tuple[str, ...] | None = None
    """The delta encoders the box's firmware decodes (None: every one fwdist has); the full
    image's pieces always decode. From a hardware profile (:mod:`fwdist.hardware`)."""
    # the protocol versions its firmware speaks: (1,) is the field's version-1 firmware
    protocols: tuple[int, ...] = (1, 2)

    def __post_init__(self) -> None:
        ss = self.sector_size
        for name in ("slot_size", "staging_size"):
            if getattr(self, name) <= 0 or getattr(self, name) % ss:
                raise LockboxError(f"{name} must be a positive multiple of the sector size {ss}")
        if not p.MIN_FRAME <= self.max_frame <= p.MAX_FRAME:
            raise LockboxError(f"max frame must be {p.MIN_FRAME}..{p.MAX_FRAME}")
        if isinstance(self.protocols, list):  # (as read back from box.json)
            object.__setattr__(self, "protocols", tuple(self.protocols))
        if (not isinstance(self.protocols, tuple) or not self.protocols
                or not set(self.protocols) <= set(p.PROTOCOL_VERSIONS)):
            raise LockboxError(f"protocols must be some of {p.PROTOCOL_VERSIONS}")
        if self.formats is not None and not isinstance(self.formats, tuple):
            raise LockboxError("formats must be a tuple of delta encoder names (or None)")

    def decodes(self, encoder: str) -> bool:
        """Whether the box's firmware has a decoder for delta ``encoder``."""
        return encoder in delta.ENCODERS and (self.formats is None or encoder in self.formats)

    @property
    def max_table(self) -> int:
        return 16 + 48 * self.max_pieces

    def staging_sectors_for(self, payload_size: int, pieces: int) -> int:
        """Staging sectors a payload may need: pieces start on sector boundaries (so one can
        be erased alone), so each may end in a partial sector; the table needs its own; and
        relocating a torn tail after a reboot needs one spare."""
        ss = self.sector_size
        return math.ceil(payload_size / ss) + pieces + math.ceil(self.max_table / ss) + 1

    def flash_size(self) -> int:
        ss = self.sector_size
        meta = ss * 2 * (self.journal_sectors + self.manifest_sectors)
        return meta + 2 * self.slot_size + self.staging_size

    def make_flash(self) -> Flash:
        return Flash(self.flash_size(), self.sector_size, self.align)

    def as_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["formats"] = None if self.formats is None else list(self.formats)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> BoxConfig:
        """The inverse of :meth:`as_json` (JSON has lists where the config has tuples)."""
        formats = obj.get("formats")
        fields = {**obj, "formats": tuple(formats) if isinstance(formats, list) else formats}
        return cls(**fields)


@dataclass(frozen=True)
class Layout:
    """The regions of one box's flash."""

    journal: tuple[Region, Region]
    manifests: tuple[Region, Region]
    slots: tuple[Region, Region]
    staging: Region

    @classmethod
    def of(cls, flash: Flash, config: BoxConfig) -> Layout:
        if flash.sector_size != config.sector_size or flash.align != config.align:
            raise LockboxError("flash geometry differs from the box configuration")
        if flash.size < config.flash_size():
            raise LockboxError(f"flash of {flash.size} bytes is smaller than the layout needs")
        pos = 0

        def take(name: str, size: int) -> Region:
            nonlocal pos
            r = Region(flash, name, pos, size)
            pos += size
            return r

        js = config.journal_sectors * flash.sector_size
        ms = config.manifest_sectors * flash.sector_size
        return cls(
            journal=(take("journal0", js), take("journal1", js)),
            manifests=(take("manifest0", ms), take("manifest1", ms)),
            slots=(take("slot0", config.slot_size), take("slot1", config.slot_size)),
            staging=take("staging", config.staging_size),
        )
