"""The sample firmware generator: exact images per model and seed, and the calibrated delta share.

The DEVICE_MEDIAN model is calibrated (docs/sample-firmware.md) to the median of
the real device firmware pairs: a consecutive delta of 9.375 % of the image on the
air, a full image of 60.65 %. The bands below are +/- 1.5 points around those
medians: wide enough for a better encoder or matcher to move the figures a little,
narrow enough that the sample can no longer flatter deltas (the old model: 4-5 %).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdist import keys
from fwdist.releases import plan
from fwdist.sample import DEVICE_MEDIAN, SYNTHETIC, ReleaseModel, SampleFirmware
from fwdist.staging import StageOptions, stage
from fwdist.store import Store

DEVICE_MEDIAN_SHARE = 9.375  # % : median of the six pairs' air bytes / new image size
DEVICE_MEDIAN_FULL = 60.65  # % : median of the six pairs' full-image air bytes / image size
BAND = 1.5  # percentage points either side


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_synthetic_model_is_the_original_generator_byte_for_byte() -> None:
    fw = SampleFirmware(size=32 * 1024, seed=2)
    assert fw.model is SYNTHETIC
    assert [_sha(fw.image(r)) for r in range(3)] == [
        "ed6488cb90adfbaaf763a7627d036d85a778139b849a88dcbbe1d408438e5023",
        "10c6a00ddf49957f9af12e2a305b956a438050b69bf9531598bcc3c6e684fd3b",
        "edaec2d824d21cf584e9cca30f05fb2771205c018cc05935aa85637dc9675b06",
    ]


def test_device_median_images_are_pinned_for_the_simulators_seed() -> None:
    fw = SampleFirmware(size=256 * 1024, seed=1, model=DEVICE_MEDIAN)
    assert [_sha(fw.image(r)) for r in range(3)] == [
        "d2777176edccb571261a74f59c4a955dbcef4cc446dec46afa7916700ecb66d1",
        "5d5bf4c79dd61e50065347cc4d6b0b49545b1a36fb4ebe57671fad65f1c39ccd",
        "aa0fc0b1d3e573ebf99d2387c54cf30668342616f8109df24935a36db3c4ce3c",
    ]


def test_device_median_delta_and_full_shares_match_the_real_pairs(tmp_path: Path) -> None:
    size = 256 * 1024
    fw = SampleFirmware(size=size, seed=1, model=DEVICE_MEDIAN)
    key_path, _ = keys.generate(tmp_path / "k")
    key = keys.load_private(key_path)
    store = Store.open(tmp_path / "store", create=True)
    for r in (1, 2):
        image = tmp_path / f"fw-{r}.bin"
        image.write_bytes(fw.image(r))
        sources = (fw.version(1),) if r == 2 else ()
        stage(store, image, key, StageOptions("p", fw.version(r), sources=sources, now=0))
    delta = plan(store, "p", fw.version(1), fw.version(2))
    full = plan(store, "p", "0.0.0", fw.version(2))
    assert delta.encoder != "zstd-pieces"
    delta_share = 100 * delta.air_bytes / size
    full_share = 100 * full.air_bytes / size
    assert abs(delta_share - DEVICE_MEDIAN_SHARE) <= BAND, delta_share
    assert abs(full_share - DEVICE_MEDIAN_FULL) <= BAND, full_share


def test_synthetic_deltas_are_the_easy_ones_the_model_replaces() -> None:
    """The reason DEVICE_MEDIAN exists: the old model's code compresses to a fifth."""
    import zstandard

    size = 64 * 1024
    syn = SampleFirmware(size=size, seed=1).image(0)
    dev = SampleFirmware(size=size, seed=1, model=DEVICE_MEDIAN).image(0)
    c = zstandard.ZstdCompressor(level=19)
    assert len(c.compress(syn)) < size * 0.25 < size * 0.55 < len(c.compress(dev))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"operand_bits": 25}, "operand_bits must be 0..24, got 25"),
        ({"operand_bits": -1}, "operand_bits must be 0..24, got -1"),
        ({"changed_per_mille": 1001}, "changed_per_mille must be 0..1000, got 1001"),
        ({"inserted_per_mille": -1}, "inserted_per_mille must be 0..1000, got -1"),
        ({"strings_per_mille": 2000}, "strings_per_mille must be 0..1000, got 2000"),
        ({"bytes_per_function": 63}, "bytes_per_function must be >= 64, got 63"),
    ],
)
def test_release_model_refuses_out_of_range_fields(changes: dict[str, int], message: str) -> None:
    fields = {
        "bytes_per_function": 470,
        "operand_bits": 16,
        "changed_per_mille": 60,
        "inserted_per_mille": 20,
        "strings_per_mille": 60,
    }
    with pytest.raises(ValueError) as e:
        ReleaseModel(**{**fields, **changes})
    assert str(e.value) == message


@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(4096, 24 * 1024),
    seed=st.integers(0, 1000),
    release=st.integers(0, 3),
    bits=st.integers(0, 24),
    changed=st.integers(0, 1000),
    strings=st.integers(0, 1000),
)
def test_any_model_gives_an_image_of_the_exact_size_that_only_edits_change(
    size: int, seed: int, release: int, bits: int, changed: int, strings: int
) -> None:
    model = ReleaseModel(470, bits, changed, 20, strings)
    fw = SampleFirmware(size=size, seed=seed, model=model)
    image = fw.image(release)
    assert len(image) == size
    assert image == SampleFirmware(size=size, seed=seed, model=model).image(release)
    if release:
        assert image != fw.image(release - 1)  # at least one function changes per release
