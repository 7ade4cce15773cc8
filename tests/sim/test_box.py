"""The simulated box: the documented MCU, and the payload it takes (the box's own rule)."""

from __future__ import annotations

import hashlib

import pytest

from fwdist.errors import FwdistError
from fwdist.manifest import PayloadRef
from fwdist.staging import FULL_ENCODER
from sim.box import DECODER_RAM, FLASH_SIZE, SECTOR_SIZE, box_payload, mcu_config
from sim.fwdist_strategy import FULL, FwdistStrategy
from sim.release import ReleaseInfo

RUNNING = hashlib.sha256(b"running").digest()
OTHER = hashlib.sha256(b"other").digest()


def _ref(encoder: str, size: int, ram: int, source: bytes | None = None) -> PayloadRef:
    return PayloadRef(
        encoder, size, 1, hashlib.sha256(b"%s%d" % (encoder.encode(), size)).digest(),
        decode_ram=ram, source_version=None if source is None else "1.0.0",
        source_sha256=source,
    )


class _M:
    """The two fields of a manifest box_payload reads."""

    def __init__(self, full: PayloadRef, *deltas: PayloadRef) -> None:
        self.full, self.deltas = full, deltas


def test_the_box_is_the_documented_mcu() -> None:
    assert (DECODER_RAM, SECTOR_SIZE, FLASH_SIZE) == (32768, 4096, 1 << 20)


def test_box_payload_takes_the_smallest_that_fits_its_ram() -> None:
    full = _ref(FULL_ENCODER, 150_000, DECODER_RAM)
    big = _ref("bsdiff-lzma", 20_000, 394_908, RUNNING)
    fits = _ref("bsdiff-lzma", 24_000, 30_000, RUNNING)
    other = _ref("bsdiff-zstd", 1_000, 10_000, OTHER)  # made from another image
    assert box_payload(_M(full, big, other), RUNNING) is full  # type: ignore[arg-type]
    assert box_payload(_M(full, big, fits, other), RUNNING) is fits  # type: ignore[arg-type]
    assert box_payload(_M(full, big), RUNNING, ram=1 << 20) is big  # type: ignore[arg-type]
    huge = _ref(FULL_ENCODER, 150_000, 65536)
    assert box_payload(_M(huge, big), RUNNING) is None  # type: ignore[arg-type]


def test_mcu_config_refuses_a_release_the_flash_cannot_hold() -> None:
    full = _ref(FULL_ENCODER, 150_000, DECODER_RAM)
    c = mcu_config("p", "p", 262144, [full], 244)
    assert (c.ram_budget, c.sector_size, c.slot_size) == (32768, 4096, 262144)
    # staging: 37 payload sectors, one per piece, 4 for the table, 4 spare
    assert c.flash_size() == 16384 + 2 * 262144 + 4096 * (37 + 1 + 4 + 4)
    with pytest.raises(FwdistError) as e:
        mcu_config("p", "p", 420 * 1024, [full], 244)
    assert str(e.value).startswith("the release needs 1064960 bytes of flash (two 430080-byte")


def test_strategy_boxes_take_the_payload_the_box_chooses(small_release: ReleaseInfo) -> None:
    st = FwdistStrategy.load(small_release, delta=True)
    assert st.config.ram_budget == DECODER_RAM
    for v, ref in st.payloads.items():
        assert ref.decode_ram <= DECODER_RAM
        assert ref.encoder == small_release.fwdist_delta_encoder[v]
    full = FwdistStrategy.load(small_release, delta=False)
    assert full.name == FULL and full.manifest.full.decode_ram == DECODER_RAM
