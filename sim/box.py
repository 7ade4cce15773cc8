"""The simulated lockbox's hardware: a documented MCU, and the payload such a box takes.

A simulation that lets every box hold megabytes of decoder RAM flatters every
strategy that sends deltas: real lockboxes are Bluetooth microcontrollers. The
simulated box is an nRF52840-class part (the chip of the ``nrf52840-ble-conn-app``
device pair the benchmarks fetch): 256 KiB of RAM of which the update's
decoder may use :data:`DECODER_RAM` (32 KiB), and 1 MiB of NOR flash in 4 KiB
sectors. The flash is a 1 MiB part rather than a 512 KiB one because the box
keeps two slots of the image (A/B, MCUboot-style) *and* a staging area that
can hold the full-image payload (the fallback that keeps a box from ever being
stuck): for the scenario's 256 KiB image that is 16 KiB of journal and
manifests + 2 x 256 KiB of slots + 252 KiB of staging (780 KiB). A 512 KiB part caps the
image at ~160 KiB.

The box takes, as a real one does (:func:`fwdist.lockbox._accept.choose_payload`),
the smallest payload made for its running image whose decoder fits its RAM:
:func:`box_payload` is that rule, and the simulator checks after every session
that the box took exactly that payload.

Hardware profiles (``fwdist.hardware``, issue 10 item 1) are not on main yet:
:func:`mcu_config` is the one place to build the box from the documented
profile instead once they land.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from fwdist.chunker import ChunkerParams
from fwdist.errors import FwdistError
from fwdist.lockbox import BoxConfig
from fwdist.manifest import Manifest, PayloadRef

DECODER_RAM = 32 * 1024
"""Bytes of RAM the box's update decoder may hold (a 32 KiB budget of a 256 KiB part)."""
SECTOR_SIZE = 4 * 1024
"""NOR erase sector (nRF52840: 4 KiB pages)."""
FLASH_SIZE = 1024 * 1024
"""The part's whole flash: journal, manifests, two slots and staging must fit it."""
MCU = "nRF52840-class: 32 KiB decoder RAM, 1 MiB flash, 4 KiB sectors"
"""The box in one line, for reports."""

FULL_PIECES = ChunkerParams(max_size=DECODER_RAM)
"""Pieces of the full-image payload: the box decompresses a piece whole, in RAM, so the
largest piece (the full payload's ``decode_ram``) is at most the decoder budget."""


def box_payload(m: Manifest, running_sha256: bytes, ram: int = DECODER_RAM) -> PayloadRef | None:
    """The payload a box running ``running_sha256`` takes: the smallest whose decoder fits.

    The box's rule (``fwdist.lockbox._accept.choose_payload``) restricted to RAM:
    the simulator sizes pieces and staging so that no other limit binds. None when
    no payload fits (a release staged for a bigger box).
    """
    candidates = [m.full, *(r for r in m.deltas if r.source_sha256 == running_sha256)]
    fitting = [r for r in candidates if r.decode_ram <= ram]
    return min(fitting, key=lambda r: (r.size, not r.is_delta), default=None)


def mcu_config(
    product: str, hardware: str, image_bytes: int, payloads: Iterable[PayloadRef], max_frame: int
) -> BoxConfig:
    """The simulated box for a release: the documented MCU, slots and staging carved for it.

    (Where ``fwdist.hardware``'s documented MCU profile replaces these constants.)
    """
    refs = list(payloads)
    ss = SECTOR_SIZE
    slot = math.ceil(image_bytes / ss) * ss
    max_pieces = max(256, *(r.pieces for r in refs))
    max_table = 16 + 48 * max_pieces
    need = max(math.ceil(r.size / ss) + r.pieces for r in refs)
    config = BoxConfig(
        product=product,
        hardware=hardware,
        slot_size=slot,
        staging_size=(need + math.ceil(max_table / ss) + 4) * ss,
        sector_size=ss,
        max_pieces=max_pieces,
        ram_budget=DECODER_RAM,
        max_frame=max_frame,
    )
    if config.flash_size() > FLASH_SIZE:
        raise FwdistError(
            f"the release needs {config.flash_size()} bytes of flash (two {slot}-byte slots "
            f"and staging), more than the simulated box's {FLASH_SIZE} ({MCU})"
        )
    return config
