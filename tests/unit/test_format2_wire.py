"""Manifest format 2 on the air: staged beside format 1, offered over protocol 2, taken by the box.

The sample release (test_app's): 1.0.0 -> 1.1.0, a 4-piece bsdiff-lzma delta (1,998 bytes)
and a 9-piece full image; their format 2 manifests are 234 and 392 bytes with the rows inline.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdist import air
from fwdist import protocol as p
from fwdist.app import App, AppError, PhoneCache
from fwdist.errors import ManifestError
from fwdist.lockbox import BoxConfig, IdleStep, Lockbox, _images
from fwdist.lockbox._update import TABLE
from fwdist.manifest import key_id
from fwdist.pump import pump_session
from fwdist.releases import phone_cache
from fwdist.store import Store
from fwdist.testing import Phone, box_config, make_releases
from fwdist.testing import new_box as new_test_box

sys.path.insert(0, str(Path(__file__).parent))
import test_app
from test_app import NOW, SAMPLE, sessions_until_installed, stage_releases

released = test_app.released
cache = test_app.cache


def new_box(key: Ed25519PrivateKey, image: bytes | None = None, **config: object) -> Lockbox:
    cfg = BoxConfig("lockbox", "lockbox", **{"ram_budget": 4 << 20, **config})  # type: ignore[arg-type]
    flash = cfg.make_flash()
    Lockbox.provision(flash, cfg, SAMPLE.image(0) if image is None else image, "1.0.0")
    box = Lockbox(flash, cfg, {key_id(key.public_key()): key.public_key()})
    box.boot(NOW)
    return box


def test_staging_signs_one_format_2_manifest_per_payload(
    released: tuple[Store, Ed25519PrivateKey], cache: PhoneCache
) -> None:
    store, key = released
    bundle = store.get_air("lockbox", "1.1.0")
    assert bundle is not None and bundle[0] == air.BUNDLE_FORMAT
    wires = air.decode_bundle(bundle)
    assert wires == cache.air and [len(w) for w in wires] == [392, 234]
    trusted = {key_id(key.public_key()): key.public_key()}
    full, delta = (air.verify(w, trusted) for w in wires)
    assert (full.encoder, full.pieces, full.source_id) == ("zstd-pieces", 9, None)
    assert (delta.encoder, delta.pieces, delta.size) == ("bsdiff3-lzma", 4, 1988)
    assert delta.source_id == hashlib.sha256(SAMPLE.image(0)).digest()[:4]
    assert store.strays() == []  # the bundle is part of the layout
    assert air.decode_bundle(store.get_air("lockbox", "1.0.0") or b"") != ()


def test_a_protocol_2_box_takes_the_format_2_delta(
    released: tuple[Store, Ed25519PrivateKey], cache: PhoneCache
) -> None:
    box = new_box(released[1], ack_every=512)
    first = pump_session(box, App(cache), 600, NOW)
    t = box.s.target if box.s else None
    assert t is not None and t.tag == p.release_tag(cache.air[1]) and t.mlen == 234
    assert TABLE not in t.streams  # the 4 rows came inside the signed manifest: no table
    assert box.status()["encoder"] == "bsdiff3-lzma" and box.status()["pieces_total"] == 4
    assert first.acked_bytes >= 234
    reports = [first, *sessions_until_installed(box, [cache], 600, make=App)]
    assert box.running_image() == SAMPLE.image(1)
    # format 1 over protocol 2 took 6 sessions: [(600, 476, 39), (600, 462, 46), ...]
    assert [(r.sent_bytes, r.payload_sent, r.received_bytes) for r in reports] == [
        (600, 474, 39), (600, 452, 48), (600, 512, 49), (600, 512, 49), (302, 272, 58),
        (11, 0, 41)]


def test_a_fit_refusal_leaves_the_session_open_for_the_full_image(
    released: tuple[Store, Ed25519PrivateKey], cache: PhoneCache
) -> None:
    """64 KiB of decoder RAM: the delta (358 KiB) is refused, the full image (16 KiB) taken."""
    box = new_box(released[1], ram_budget=64 << 10)
    r = pump_session(box, App(cache), None, NOW)
    assert r.end is None and r.installed is False and r.complete
    t = box.s.target if box.s else None
    assert t is not None and t.tag == p.release_tag(cache.air[0])
    assert box.status()["encoder"] == "zstd-pieces"
    assert box.idle(NOW) is IdleStep.BUILT and box.idle(NOW) is IdleStep.INSTALLED
    assert box.running_image() == SAMPLE.image(1)


def test_a_delta_for_another_base_is_refused_as_such(
    released: tuple[Store, Ed25519PrivateKey], cache: PhoneCache
) -> None:
    other = bytearray(SAMPLE.image(0))
    other[100] ^= 1
    box = new_box(released[1], image=bytes(other))
    assert box.judge(cache.air[1], NOW) is p.Reason.WRONG_BASE
    assert box.judge(cache.air[0], NOW) is None
    assert p.Reason.WRONG_BASE in p.Reason.__members__.values()
    # a phone never offers it: it offers the full image, and the box updates
    r = pump_session(box, App(cache), None, NOW)
    assert r.end is None and box.status()["encoder"] == "zstd-pieces"


def test_a_release_staged_before_format_2_goes_as_format_1_over_protocol_2(
    released: tuple[Store, Ed25519PrivateKey], cache: PhoneCache
) -> None:
    old = replace(cache, air=())
    box = new_box(released[1], ack_every=512)
    reports = sessions_until_installed(box, [old], 600, make=App)
    assert box.running_image() == SAMPLE.image(1)
    assert {r.protocol for r in reports} == {2} and len(reports) == 6


def test_a_store_without_bundles_serves_format_1(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    store = stage_releases(tmp_path, key)
    store.air_path("lockbox", "1.1.0").unlink()
    assert phone_cache(store, "lockbox").air == ()


def test_a_bundle_that_does_not_match_its_release_is_refused_in_one_line(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    store = stage_releases(tmp_path, key)
    wires = air.decode_bundle(store.get_air("lockbox", "1.1.0") or b"")
    store.put_air("lockbox", "1.1.0", air.encode_bundle(wires[::-1]))
    with pytest.raises(AppError, match=r"^lockbox@1\.1\.0: its format 2 manifests are unusable "
                                       r"\(a format 2 manifest does not match its payload\); "
                                       r"stage it again$"):
        phone_cache(store, "lockbox")
    store.put_air("lockbox", "1.1.0", b"\x07junk")
    with pytest.raises(AppError, match="stage it again"):
        phone_cache(store, "lockbox")


def test_a_reboot_mid_transfer_resumes_the_format_2_target(
    released: tuple[Store, Ed25519PrivateKey], cache: PhoneCache
) -> None:
    box = new_box(released[1], ack_every=512)
    pump_session(box, App(cache), 900, NOW)
    before = box.state_bytes()
    again = Lockbox(box.flash, box.config, box.trusted)
    again.boot(NOW)
    assert again.state_bytes() == before and again.rx.air is not None
    assert again.table is not None and len(again.table.pieces) == 4
    reports = sessions_until_installed(again, [cache], 900, make=App)
    assert again.running_image() == SAMPLE.image(1)
    assert reports[0].received_bytes < 64  # resuming costs a Summary and acks


def test_a_format_2_table_is_staged_to_its_exact_length(tmp_path: Path) -> None:
    """19 pieces: the rows travel as a table of 19 x 30 bytes, cut where it ends (no scan)."""
    rel = make_releases(tmp_path, count=2, size=64 * 1024, deltas=False)
    box = new_test_box(rel, box_config(rel))
    newest = rel.releases[-1]
    log = Phone([newest], protocol=2, air=True).session(box, NOW, 1200)
    assert log.error is None
    t = box.s.target if box.s else None
    assert t is not None and t.tag == p.release_tag(newest.air[0])
    assert t.streams[TABLE].done and t.streams[TABLE].received == 19 * 30
    for i in range(10):
        if box.status()["running_version"] == newest.version:
            break
        assert Phone([newest], protocol=2, air=True, order_seed=i).session(box, NOW).error is None
        while box.idle(NOW) in (IdleStep.BUILT,):
            pass
    assert box.running_image() == newest.image


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=400))
def test_any_manifest_bytes_are_judged_never_raise(data: bytes) -> None:
    """Bytes after a 0x02 go down the format 2 path: a Reason (or acceptance), never a crash."""
    box = _FUZZ_BOX[0]
    reason = box.judge(b"\x02" + data, NOW)
    assert reason is None or reason in p.Reason.__members__.values()


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=600))
def test_any_manifest_slot_bytes_read_back_or_none(data: bytes) -> None:
    box = _FUZZ_BOX[0]
    region = box.layout.manifests[1]
    region.erase(0, region.size)
    if data:
        region.write(0, (b"\x02" + data).ljust(-(-(len(data) + 1) // 8) * 8, b"\xff"))
    got = _images._stored_manifest(region, box._verify)
    assert got is None  # nothing the key did not sign reads back


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=300))
def test_any_bundle_bytes_decode_or_raise(data: bytes) -> None:
    try:
        wires = air.decode_bundle(data)
    except ManifestError:
        return
    assert b"".join(wires) == data[1:]


_FUZZ_BOX: list[Lockbox] = []


@pytest.fixture(autouse=True, scope="module")
def _fuzz_box(released: tuple[Store, Ed25519PrivateKey]) -> None:
    _FUZZ_BOX[:] = [new_box(released[1])]

