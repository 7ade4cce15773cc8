"""Hardware profiles: strict fields, canonical bytes in the store, and what staging makes of them.

Issue 10 items 1, 3-5: a profile names one box model's decoder RAM, flash geometry,
instruction set and payload formats; a stage for its hardware id makes only payloads such
a box decodes (the full image always among them), and the box refuses what it cannot
decode, naming its own figure for the limit.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdist import delta, hardware, pump
from fwdist import protocol as p
from fwdist.app import App
from fwdist.chunker import ChunkerParams
from fwdist.delta import InstructionSet
from fwdist.errors import StagingError, StoreError
from fwdist.hardware import NRF52832, HardwareError, Profile
from fwdist.lockbox import Lockbox
from fwdist.manifest import key_id
from fwdist.releases import load_manifest, phone_cache, plan
from fwdist.sample import SampleFirmware
from fwdist.staging import StageOptions, stage
from fwdist.store import Store

SAMPLE = SampleFirmware(size=96 * 1024, seed=3)
BIG = 1 << 20


def profile(**changes: Any) -> Profile:
    """A valid profile for id ``lockbox`` (the product's default hardware id), changed."""
    return replace(NRF52832, **{"id": "lockbox", **changes})


# -- the fields -------------------------------------------------------------------------------


def test_the_documented_profile_is_exact() -> None:
    assert NRF52832.encode() == (
        b'{"align":4,"arch":"thumb2","decoder_ram":32768,"flash_size":524288,"formats":'
        b'["bsdiff3-heatshrink","bsdiff3-heatshrink+thumb2","bsdiff3-lzma","bsdiff3-lzma+thumb2",'
        b'"full"],"id":"nrf52832","schema":1,'
        b'"sector_size":4096,"slot_size":163840,"staging_size":180224}\n')
    box = NRF52832.box_config("lockbox")
    assert box.flash_size() == NRF52832.flash_size == 512 * 1024  # the layout uses every byte
    assert (box.ram_budget, box.sector_size, box.align, box.hardware) == (32768, 4096, 4,
                                                                          "nrf52832")
    assert box.formats == ("bsdiff3-heatshrink", "bsdiff3-heatshrink+thumb2", "bsdiff3-lzma",
                           "bsdiff3-lzma+thumb2")


@pytest.mark.parametrize(("changes", "message"), [
    ({"id": "-x"}, "hardware id must be 1-64 of [A-Za-z0-9._-] starting alphanumeric, got '-x'"),
    ({"decoder_ram": 1023}, "decoder RAM must be 1024..4294967295 bytes, got 1023"),
    ({"decoder_ram": 1 << 32}, "decoder RAM must be 1024..4294967295 bytes, got 4294967296"),
    ({"decoder_ram": True}, "decoder RAM must be 1024..4294967295 bytes, got True"),
    ({"flash_size": 0}, "flash size must be a positive number of bytes, got 0"),
    ({"sector_size": 3000}, "sector size must be a power of two, 256..1048576 bytes, got 3000"),
    ({"sector_size": 128}, "sector size must be a power of two, 256..1048576 bytes, got 128"),
    ({"align": 3}, "write alignment must be a power of two, 1..256 bytes, got 3"),
    ({"align": 512}, "write alignment must be a power of two, 1..256 bytes, got 512"),
    ({"flash_size": 524289}, "flash size must be a positive multiple of the 4096-byte sector, "
                             "got 524289"),
    ({"slot_size": 4095}, "slot size must be a positive multiple of the 4096-byte sector, "
                          "got 4095"),
    ({"staging_size": -4096}, "staging size must be a positive multiple of the 4096-byte "
                              "sector, got -4096"),
    ({"arch": "thumb2"}, "instruction set must be one of ['none', 'thumb2', 'xtensa'], "
                         "got 'thumb2'"),
    ({"formats": ("bsdiff-lzma", "foo", "full")},
     "unknown payload format 'foo' (known: bsdiff-lzma, bsdiff-lzma+thumb2, bsdiff-zstd, "
     "bsdiff-zstd+thumb2, bsdiff3-heatshrink, bsdiff3-heatshrink+thumb2, bsdiff3-lzma, "
     "bsdiff3-lzma+thumb2, full, zstd-dict)"),
    ({"formats": ("bsdiff-lzma",)},
     "formats must be sorted, unique and include 'full', got ['bsdiff-lzma']"),
    ({"formats": ("full", "bsdiff-lzma")},
     "formats must be sorted, unique and include 'full', got ['full', 'bsdiff-lzma']"),
    ({"staging_size": 180224 + 4096},
     "two 163840-byte slots, a 184320-byte staging area and 4 sectors of journal and manifests "
     "need 528384 bytes of flash, more than its 524288"),
])
def test_each_bad_field_is_named_in_one_line(changes: dict[str, Any], message: str) -> None:
    name = changes.get("id", "lockbox")
    with pytest.raises(HardwareError) as e:
        profile(**changes)
    assert str(e.value) == f"hardware profile {name!r}: {message}"


def test_formats_are_kept_sorted_with_full_and_a_repeat_is_refused() -> None:
    assert hardware.canonical_formats(["zstd-dict", "bsdiff-lzma"]) == (
        "bsdiff-lzma", "full", "zstd-dict")
    assert hardware.canonical_formats([]) == ("full",)
    with pytest.raises(HardwareError, match=r"^payload format 'zstd-dict' is named twice$"):
        hardware.canonical_formats(["zstd-dict", "zstd-dict"])


def test_json_round_trip_is_exact_and_show_output_loads() -> None:
    for prof in (NRF52832, profile(arch=InstructionSet.XTENSA, formats=("full",))):
        assert Profile.parse(prof.encode(), "x") == prof
        pretty = json.dumps(prof.as_json(), indent=2).encode()  # what `show --json` prints
        assert Profile.parse(pretty, "x") == prof


@pytest.mark.parametrize(("edit", "message"), [
    (lambda o: o.pop("align"), "p.json: missing field 'align'"),
    (lambda o: o.update(extra=1), "p.json: unknown field 'extra'"),
    (lambda o: o.update(schema=2), "p.json: schema must be 1, got 2"),
    (lambda o: o.update(schema=True), "p.json: schema must be 1, got True"),
    (lambda o: o.update(arch="arm"), "p.json: arch must be one of ['none', 'thumb2', 'xtensa'], "
                                     "got 'arm'"),
    (lambda o: o.update(formats="full"), "p.json: formats must be a list of format names"),
    (lambda o: o.update(formats=["zstd-dict", "full"]),
     "p.json: formats must be sorted, unique and include 'full', got ['zstd-dict', 'full']"),
    (lambda o: o.update(sector_size="4096"), "p.json: hardware profile 'nrf52832': sector size "
                                             "must be a power of two, 256..1048576 bytes, "
                                             "got '4096'"),
])
def test_loading_is_strict(edit: Any, message: str) -> None:
    obj = NRF52832.as_json()
    edit(obj)
    with pytest.raises(HardwareError) as e:
        Profile.parse(json.dumps(obj).encode(), "p.json")
    assert str(e.value) == message
    with pytest.raises(HardwareError, match=r"^p.json is not JSON: "):
        Profile.parse(b"{", "p.json")
    with pytest.raises(HardwareError, match=r"^p.json: a hardware profile is a JSON object$"):
        Profile.parse(b"[]", "p.json")


def test_pieces_shrink_to_the_decoder_ram() -> None:
    default = ChunkerParams()
    assert hardware.chunker_within(default, 1 << 20) == default
    assert hardware.chunker_within(default, 32768) == ChunkerParams(4096, 16384, 32768)
    assert hardware.chunker_within(default, 8192) == ChunkerParams(1024, 4096, 8192)
    assert hardware.chunker_within(default, 3000) == ChunkerParams(256, 1024, 3000)


# -- the store --------------------------------------------------------------------------------


def test_profiles_live_in_the_store_canonically(store: Store) -> None:
    assert hardware.load(store, "nrf52832") is None and store.profile_ids() == []
    hardware.save(store, NRF52832)
    path = store.root / "hardware" / "nrf52832.json"
    assert path.read_bytes() == NRF52832.encode()
    smaller = replace(NRF52832, decoder_ram=8192)
    hardware.save(store, smaller)  # set replaces
    assert hardware.load(store, "nrf52832") == smaller
    hardware.save(store, profile())
    assert store.profile_ids() == ["lockbox", "nrf52832"]
    assert [x.id for x in hardware.profiles(store)] == ["lockbox", "nrf52832"]
    assert os.listdir(store.root / "tmp") == []
    assert store.strays() == []


def test_a_store_without_profiles_opens_as_before(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    assert not (tmp_path / "s" / "hardware").exists()
    with pytest.raises(HardwareError) as e:
        hardware.require(store, "x")
    assert str(e.value) == ("the store has no hardware profile 'x' (profiles: none; "
                            "`fwdist hardware set` makes one)")


def test_a_planted_link_or_stray_or_misnamed_profile_is_refused(store: Store,
                                                                tmp_path: Path) -> None:
    hardware.save(store, NRF52832)
    hw = store.root / "hardware"
    (hw / "notes.txt").write_text("x")
    assert store.strays() == ["hardware/notes.txt"]
    (hw / "notes.txt").unlink()
    (hw / "lockbox.json").write_bytes(NRF52832.encode())
    with pytest.raises(HardwareError) as e:
        hardware.load(store, "lockbox")
    assert str(e.value) == "hardware/lockbox.json holds the profile of 'nrf52832'"
    (hw / "lockbox.json").unlink()
    (tmp_path / "elsewhere.json").write_bytes(profile().encode())
    (hw / "lockbox.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(StoreError, match=r"hardware/lockbox\.json is a symbolic link"):
        Store.open(store.root)


# -- staging for a profile --------------------------------------------------------------------


def stage_pair(store: Store, key: Ed25519PrivateKey, tmp: Path, **options: Any) -> None:
    for r in (0, 1):
        (tmp / f"fw{r}.bin").write_bytes(SAMPLE.image(r))
    stage(store, tmp / "fw0.bin", key, StageOptions("lockbox", "1.0.0", now=1_700_000_000))
    stage(store, tmp / "fw1.bin", key, StageOptions("lockbox", "1.1.0", sources=("1.0.0",),
                                                    now=1_700_000_000, **options))


def unconstrained(old: bytes, new: bytes) -> dict[str, tuple[int, int]]:
    """encoder -> (payload bytes, decoder RAM) with no limit at all."""
    out = {}
    for name in delta.ENCODERS:
        data = delta.encode_with(name, old, new)
        out[name] = (len(data), delta.decode_ram(name, data[:64]))
    return out


def test_a_profile_limits_the_formats(store: Store, private_key: Ed25519PrivateKey,
                                      tmp_path: Path) -> None:
    hardware.save(store, profile(decoder_ram=BIG, formats=("full", "zstd-dict")))
    stage_pair(store, private_key, tmp_path)
    m = load_manifest(store, "lockbox", "1.1.0")
    (d,) = m.deltas
    assert d.encoder == "zstd-dict"
    assert d.decode_ram <= BIG and m.full.decode_ram == ChunkerParams().max_size <= BIG


def test_a_profile_passes_over_a_delta_whose_decoder_needs_more_ram(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    sizes = unconstrained(SAMPLE.image(0), SAMPLE.image(1))
    winner = min(sizes, key=lambda n: sizes[n])
    budget = sizes[winner][1] - 1  # one byte short of the smallest payload's decoder
    fitting = {n: v for n, v in sizes.items() if v[1] <= budget}
    hardware.save(store, profile(decoder_ram=budget, formats=hardware.canonical_formats(
        delta.ENCODERS)))
    stage_pair(store, private_key, tmp_path)
    m = load_manifest(store, "lockbox", "1.1.0")
    assert [d.encoder for d in m.deltas] == ([min(fitting, key=lambda n: fitting[n])]
                                             if fitting else [])
    assert all(d.decode_ram <= budget for d in (m.full, *m.deltas))
    assert winner not in [d.encoder for d in m.deltas]


def test_no_delta_fits_the_full_image_serves_and_the_stage_says_so(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    # no heatshrink: every other delta decoder needs more than 8 KiB
    no_8k_mode = ("bsdiff-lzma", "bsdiff3-lzma", "bsdiff3-lzma+thumb2", "full")
    hardware.save(store, profile(decoder_ram=8192, formats=no_8k_mode))
    for r in (0, 1):
        (tmp_path / f"fw{r}.bin").write_bytes(SAMPLE.image(r))
    stage(store, tmp_path / "fw0.bin", private_key, StageOptions("lockbox", "1.0.0"))
    result = stage(store, tmp_path / "fw1.bin", private_key,
                   StageOptions("lockbox", "1.1.0", sources=("1.0.0",)))
    m = result.manifest
    assert m.deltas == () and m.full.decode_ram == 8192
    assert result.skipped == ("no delta from 1.0.0 decodes in 8192 bytes of RAM with the "
                              "formats of 'lockbox': boxes on 1.0.0 take the full image",)
    p_ = plan(store, "lockbox", "1.0.0", "1.1.0")
    assert (p_.encoder, p_.decoder_ram) == ("zstd-pieces", 8192)
    assert p_.as_json()["decoder_ram"] == 8192


def test_max_decoder_ram_overrides_the_profile_for_one_stage(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    hardware.save(store, profile(decoder_ram=BIG, formats=("bsdiff-lzma", "bsdiff3-lzma", "full")))
    stage_pair(store, private_key, tmp_path, max_decoder_ram=8192)
    m = load_manifest(store, "lockbox", "1.1.0")
    assert m.deltas == () and m.full.decode_ram == 8192
    # the stage before, without the flag: the profile's budget, so the default 64 KiB pieces
    assert load_manifest(store, "lockbox", "1.0.0").full.decode_ram == 65536
    with pytest.raises(StagingError, match=r"^--max-decoder-ram must be 1024..4294967295 "
                                           r"bytes, got 1000$"):
        stage(store, tmp_path / "fw1.bin", private_key,
              StageOptions("lockbox", "1.2.0", max_decoder_ram=1000))


def test_an_image_larger_than_the_profile_slot_is_refused_untouched(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    hardware.save(store, profile(slot_size=64 * 1024, staging_size=352 * 1024))
    (tmp_path / "fw.bin").write_bytes(SAMPLE.image(0))
    before = sorted(p_.relative_to(store.root) for p_ in store.root.rglob("*"))
    with pytest.raises(StagingError) as e:
        stage(store, tmp_path / "fw.bin", private_key, StageOptions("lockbox", "1.0.0"))
    assert str(e.value) == (f"image {tmp_path / 'fw.bin'} is 98304 bytes, larger than the "
                            "65536-byte slot of hardware 'lockbox'")
    assert sorted(p_.relative_to(store.root) for p_ in store.root.rglob("*")) == before


def test_a_full_image_the_staging_area_cannot_hold_is_refused(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    hardware.save(store, profile(staging_size=16384, flash_size=16 * 4096 + 2 * 163840))
    (tmp_path / "fw.bin").write_bytes(SAMPLE.image(0))
    with pytest.raises(StagingError, match=r"^hardware 'lockbox' cannot take the full image "
                                           r"\(NO_STAGING_ROOM: \d+ bytes in \d+ pieces\); "
                                           r"every box must$"):
        stage(store, tmp_path / "fw.bin", private_key, StageOptions("lockbox", "1.0.0"))
    assert store.releases() == []


# -- the box ----------------------------------------------------------------------------------


def box_for(store: Store, key: Ed25519PrivateKey, prof: Profile) -> Lockbox:
    config = prof.box_config("lockbox")
    flash = config.make_flash()
    Lockbox.provision(flash, config, SAMPLE.image(0), "1.0.0")
    pub = key.public_key()
    box = Lockbox(flash, config, {key_id(pub): pub})
    box.boot(1_700_000_000)
    return box


def offer(box: Lockbox, store: Store) -> Any:
    return pump.pump_session(box, App(phone_cache(store, "lockbox")), 4000, 1_700_000_000)


def test_a_box_that_lacks_the_deltas_format_takes_the_full_image(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    stage_pair(store, private_key, tmp_path)  # no profile: a delta of the smallest encoder
    m = load_manifest(store, "lockbox", "1.1.0")
    (d,) = m.deltas
    others = tuple(sorted({"full", *delta.ENCODERS} - {d.encoder}))
    box = box_for(store, private_key, profile(decoder_ram=BIG, formats=others))
    report = offer(box, store)
    assert report.rejected is None
    assert box.status_frame().target is not None
    assert box.status_frame().target.payload == 0  # the full image


def test_a_box_refusal_names_the_limit_and_its_figure(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    stage_pair(store, private_key, tmp_path)
    m = load_manifest(store, "lockbox", "1.1.0")
    (d,) = m.deltas
    need = min(m.full.decode_ram, d.decode_ram)
    every_format = tuple(sorted({*delta.ENCODERS, "full"}))
    box = box_for(store, private_key, profile(decoder_ram=need - 1, formats=every_format))
    report = offer(box, store)
    assert (report.rejected, report.box_limit, report.needed) == ("NOT_ENOUGH_RAM", need - 1,
                                                                  need)
    assert report.reason == (f"box rejected the release: NOT_ENOUGH_RAM (the box has "
                             f"{need - 1}, the release needs {need})")
    assert report.as_json()["box_limit"] == need - 1
    # the delta's format unknown and the full image too big: under protocol 2 the phone offers
    # the delta, hears UNKNOWN_ENCODER, offers the full image in the same session, and the
    # last refusal is the one that stands
    box = box_for(store, private_key, profile(decoder_ram=m.full.decode_ram - 1,
                                              formats=("full",)))
    report = offer(box, store)
    assert (report.rejected, report.box_limit, report.needed) == (
        "NOT_ENOUGH_RAM", m.full.decode_ram - 1, m.full.decode_ram)


def test_reject_frames_carry_the_limit_as_one_varint() -> None:
    frame = p.encode(p.Reject(int(p.Reason.NOT_ENOUGH_RAM), 32768))
    # u16 length 10 | msgpack [5, 13, 32768] | CRC-32: the limit costs 3 bytes here
    assert frame.hex() == "000a" + "93050dcd8000" + "b24e0fbb"
    assert p.decode_frames(frame) == [p.Reject(13, 32768)]


# -- the codec, by hypothesis -----------------------------------------------------------------

SECTORS = st.sampled_from([256, 1024, 4096, 65536])


@st.composite
def profiles(draw: st.DrawFn) -> Profile:
    ss = draw(SECTORS)
    slot = ss * draw(st.integers(1, 64))
    staging = ss * draw(st.integers(1, 64))
    formats = draw(st.sets(st.sampled_from(sorted(delta.ENCODERS))))
    return Profile(
        id=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)),
        decoder_ram=draw(st.integers(hardware.MIN_DECODER_RAM, hardware.MAX_U32)),
        flash_size=4 * ss + 2 * slot + staging + ss * draw(st.integers(0, 8)),
        sector_size=ss, align=draw(st.sampled_from([1, 2, 4, 8, 16, 256])),
        slot_size=slot, staging_size=staging, arch=draw(st.sampled_from(list(InstructionSet))),
        formats=hardware.canonical_formats(formats))


@settings(max_examples=200, deadline=None)
@given(profiles())
def test_any_profile_round_trips_through_its_canonical_bytes(prof: Profile) -> None:
    data = prof.encode()
    assert Profile.parse(data, "x") == prof
    assert Profile.parse(data, "x").encode() == data


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@st.composite
def damaged(draw: st.DrawFn) -> object:
    """A valid profile's JSON with one field given any JSON value, or any JSON at all."""
    if draw(st.booleans()):
        return draw(JSON)
    obj = draw(profiles()).as_json()
    obj[draw(st.sampled_from(sorted(obj)))] = draw(JSON)
    return obj


@settings(max_examples=300, deadline=None)
@given(damaged())
def test_any_json_either_loads_or_raises_one_line_hardware_error(obj: object) -> None:
    try:
        prof = Profile.parse(json.dumps(obj).encode(), "x")
    except HardwareError as e:
        assert "\n" not in str(e)
    else:
        assert prof.as_json() == obj
