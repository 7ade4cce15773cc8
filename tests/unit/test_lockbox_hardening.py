"""The box against hostile phones and its own rotting flash (issue 9, items 1, 2, 6, 7, 8, 18)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

import msgpack
import pytest

from fwdist import protocol as p
from fwdist.journal import Journal
from fwdist.lockbox import IdleStep, Lockbox
from fwdist.manifest import sign
from fwdist.testing import Phone, Release, Releases, box_config, new_box

NOW = 1_700_000_100


@pytest.fixture(scope="module")
def rel(release_history: Callable[..., Releases]) -> Releases:
    return release_history(3, 24 * 1024, 2)


def install(box: Lockbox, rel: Releases, i: int, now: int = NOW) -> None:
    Phone([rel.releases[i]]).session(box, now)
    assert box.idle(now) is IdleStep.BUILT and box.idle(now) is IdleStep.INSTALLED
    assert box.running_image() == rel.releases[i].image


def reboot(box: Lockbox, rel: Releases) -> Lockbox:
    again = Lockbox(box.flash, box.config, rel.trusted)
    again.boot(0)
    return again


# --------------------------------------------------------------------------- items 6 and 7


def test_a_journal_older_than_the_flash_boots_the_image_the_flash_holds(rel: Releases) -> None:
    """Item 6: the newest journal half is lost (a flipped bit), the older one says 1.0.0 runs
    from slot 0, but slot 0 holds 1.2.0 (and its signed manifest is in a manifest slot)."""
    box = new_box(rel, box_config(rel))
    provisioned = box.state_bytes()
    install(box, rel, 1)
    install(box, rel, 2)
    assert box.status()["active_slot"] == 0
    Journal(box.layout.journal).format(provisioned)  # only the 1.0.0 snapshot survives
    again = reboot(box, rel)
    st = again.status()
    assert (st["running_version"], st["active_slot"]) == ("1.2.0", 0)
    assert st["running_sha256"] == hashlib.sha256(rel.releases[2].image).hexdigest()
    assert again.running_image() == rel.releases[2].image
    assert reboot(again, rel).state_bytes() == again.state_bytes()  # the repair was persisted


def test_a_journal_naming_the_wrong_slot_finds_its_image_in_the_other(rel: Releases) -> None:
    box = new_box(rel, box_config(rel))
    install(box, rel, 1)  # 1.1.0 runs from slot 1
    wrong = box.s
    assert wrong is not None and wrong.active == 1
    wrong.active = 0
    Journal(box.layout.journal).format(box.state_bytes())
    again = reboot(box, rel)
    assert (again.status()["running_version"], again.status()["active_slot"]) == ("1.1.0", 1)


def test_a_rotted_running_image_is_reported_and_gets_the_full_payload(rel: Releases) -> None:
    """Item 7: a bit flipped in the running slot: the box reports the hash it really has, the
    phone sends the full payload (no delta's source matches), and the release installs."""
    box = new_box(rel, box_config(rel))
    slot = box.layout.slots[0]
    data = bytearray(slot.read(0, slot.size))
    data[1000] ^= 0x10
    slot.erase(0, slot.size)
    slot.write(0, bytes(data))
    again = reboot(box, rel)
    damaged = hashlib.sha256(bytes(data[: len(rel.releases[0].image)])).digest()
    assert again.status_frame().running_sha256 == damaged
    assert again.status()["running_version"] == "1.0.0"
    target = rel.releases[1]
    Phone([target]).session(again, NOW)
    assert again.status()["encoder"] == target.manifest.full.encoder
    assert again.idle(NOW) is IdleStep.BUILT and again.idle(NOW) is IdleStep.INSTALLED
    assert again.running_image() == target.image


def test_rot_after_boot_drops_the_delta_without_blacklisting_the_release(rel: Releases) -> None:
    box = new_box(rel, box_config(rel))
    target = rel.releases[1]
    Phone([target]).session(box, NOW)
    assert box.ref is not None and box.ref.is_delta
    slot = box.layout.slots[0]
    data = bytearray(slot.read(0, slot.size))
    data[5] ^= 0x01
    slot.erase(0, slot.size)
    slot.write(0, bytes(data))
    assert box.idle(NOW) is IdleStep.DAMAGED
    assert box.status()["failed_tags"] == [] and box.status()["target_tag"] is None
    Phone([target]).session(box, NOW)
    assert box.ref is not None and not box.ref.is_delta
    assert box.idle(NOW) is IdleStep.BUILT and box.idle(NOW) is IdleStep.INSTALLED
    assert box.running_image() == target.image


# --------------------------------------------------------------------------- item 1


def table_of(box: Lockbox, i: int, rel: Releases) -> bytes:
    r = rel.releases[i]
    return r.payloads[r.manifest.payload_for(box.status_frame().running_sha256).table_sha256] \
        .table_bytes


def hostile_table(box: Lockbox, tag: bytes, blob: bytes, start: int = 0) -> list[p.Event]:
    """One session that sends ``blob`` as the table stream from ``start``, 160 bytes a frame."""
    box.open_session(NOW)
    out = box.receive_data(p.encode(p.Hello(1, 244)), NOW)
    for off in range(start, len(blob), 160):
        out += box.receive_data(p.encode(p.Data(tag, p.TABLE, off, blob[off : off + 160])), NOW)
    box.end_session(NOW)
    return p.decode_frames(out, p.MAX_FRAME)[1:]


def offer_only(box: Lockbox, wire: bytes) -> None:
    box.open_session(NOW)
    out = box.receive_data(p.encode(p.Hello(1, 244)), NOW)
    for off in range(0, len(wire), 180):
        out += box.receive_data(p.encode(p.Offer(len(wire), off, wire[off : off + 180])), NOW)
    box.end_session(NOW)
    assert isinstance(p.decode_frames(out, p.MAX_FRAME)[-1], p.Accept)


def table_staged(box: Lockbox) -> int:
    t = box.s.target if box.s else None
    assert t is not None
    st = t.streams.get(p.TABLE)
    return 0 if st is None else st.received


def test_junk_past_the_real_table_is_never_staged(rel: Releases) -> None:
    """Item 1: the table's last bytes and 64 more in one frame: the box stops at the table."""
    box = new_box(rel, box_config(rel))
    target = rel.releases[1]
    table = table_of(box, 1, rel)
    offer_only(box, target.wire)
    assert table_staged(box) == 0
    pad = -(len(table) + 64) % 8
    evs = hostile_table(box, target.tag, table + b"\x00" * (64 + pad))
    assert p.PieceComplete(target.tag, p.TABLE) in evs
    assert table_staged(box) == len(table)
    box = reboot(box, rel)
    install(box, rel, 1)


def test_a_junk_table_longer_than_the_real_one_is_replaced_in_one_session(
        rel: Releases) -> None:
    box = new_box(rel, box_config(rel))
    target = rel.releases[1]
    table = table_of(box, 1, rel)
    offer_only(box, target.wire)
    assert hostile_table(box, target.tag, bytes(64))[-1].code == p.ErrorCode.BAD_PIECE
    assert table_staged(box) == 0  # (a 0 is a whole msgpack object: junk, found at once)
    fmt, compressed, rows = msgpack.unpackb(table)
    longer = msgpack.packb([fmt, compressed, rows * 8], use_bin_type=True)
    junk = longer[: len(table) + 64 - len(table) % 8]  # a table-shaped object, unfinished
    assert hostile_table(box, target.tag, junk) == []
    assert table_staged(box) == len(junk)
    box = reboot(box, rel)  # the junk survives a restart; it must not wedge the target
    install(box, rel, 1)  # one honest session: it resends the table from 0, the box resets


def test_a_junk_table_prefix_costs_an_honest_phone_at_most_one_session(rel: Releases) -> None:
    box = new_box(rel, box_config(rel))
    target = rel.releases[1]
    table = table_of(box, 1, rel)
    offer_only(box, target.wire)
    forged = bytearray(table)
    forged[12] ^= 0x01  # inside the first id: the same shape, another hash
    junk = bytes(forged[: len(table) - len(table) % 8 - 8])  # unfinished: staged
    assert hostile_table(box, target.tag, junk) == []
    assert table_staged(box) == len(junk)
    first = Phone([target]).session(box, NOW)
    assert first.error is not None  # the staged table cannot verify: it is discarded
    assert table_staged(box) == 0
    box = reboot(box, rel)
    install(box, rel, 1)


def test_a_table_stream_past_max_table_leaves_nothing_staged(rel: Releases) -> None:
    box = new_box(rel, box_config(rel))
    target = rel.releases[1]
    offer_only(box, target.wire)
    fmt, compressed, rows = msgpack.unpackb(table_of(box, 1, rel))
    huge = msgpack.packb([fmt, compressed, rows * 400], use_bin_type=True)
    junk = huge[: box.config.max_table + 160]  # table-shaped, unfinished at max_table
    evs = hostile_table(box, target.tag, junk)
    assert isinstance(evs[-1], p.Error) and evs[-1].code == p.ErrorCode.BAD_OFFSET
    assert table_staged(box) == 0
    install(box, rel, 1)


# --------------------------------------------------------------------------- item 8


@pytest.fixture(scope="module")
def many(release_history: Callable[..., Releases]) -> Releases:
    return release_history(2, 384 * 1024, 7, deltas=False)


def test_a_release_whose_state_outgrows_the_journal_is_refused_up_front(many: Releases) -> None:
    """Item 8: a journal half of 1 KiB cannot hold the snapshot of this 112-piece release:
    the box says TOO_MANY_PIECES at the offer instead of failing mid-transfer (JournalError)."""
    target = many.releases[1]
    assert target.manifest.full.pieces == 112
    box = new_box(many, box_config(many, sector_size=1024))
    log = Phone([target]).session(box, NOW)
    assert log.rejected is p.Reason.TOO_MANY_PIECES
    assert box.status()["target_tag"] is None
    roomy = new_box(many, box_config(many, sector_size=1024, journal_sectors=3))
    install(roomy, many, 1)


# --------------------------------------------------------------------------- item 18

Y2001 = 978_307_200


def resigned(rel: Releases, i: int, **fields: int) -> Release:
    """Release ``i`` signed again with other times (same key, same payloads)."""
    r = rel.releases[i]
    m = replace(r.manifest, **fields)  # type: ignore[arg-type]
    wire = sign(m, rel.key)
    return Release(wire, m, r.image, r.payloads)


def test_a_box_without_a_clock_refuses_what_expired_before_a_time_it_has_seen(
        rel: Releases) -> None:
    """Item 18: ``now`` is 0 throughout (no clock). Having installed a release created in
    2023, the box refuses a newer-numbered one that expired in 2001."""
    box = new_box(rel, box_config(rel))
    Phone([rel.releases[1]]).session(box, 0)
    assert box.idle(0) is IdleStep.BUILT and box.idle(0) is IdleStep.INSTALLED
    assert box.s is not None and box.s.clock == rel.releases[1].manifest.created
    stale = resigned(rel, 2, created=Y2001, expires=Y2001 + 86_400)
    log = Phone([stale]).session(reboot(box, rel), 0)
    assert log.rejected is p.Reason.EXPIRED


def test_a_box_provisioned_with_the_time_refuses_a_long_expired_release(rel: Releases) -> None:
    cfg = box_config(rel)
    flash = cfg.make_flash()
    r0 = rel.releases[0]
    Lockbox.provision(flash, cfg, r0.image, r0.version, clock=NOW)
    box = Lockbox(flash, cfg, rel.trusted)
    box.boot(0)
    stale = resigned(rel, 1, created=Y2001, expires=Y2001 + 86_400)
    assert Phone([stale]).session(box, 0).rejected is p.Reason.EXPIRED


def test_expiry_is_checked_again_just_before_the_install(rel: Releases) -> None:
    box = new_box(rel, box_config(rel))
    short = resigned(rel, 1, expires=NOW + 100)
    Phone([short]).session(box, NOW)
    assert box.idle(NOW) is IdleStep.BUILT
    assert box.idle(NOW + 101) is IdleStep.REFUSED
    assert box.running_image() == rel.releases[0].image
    assert box.status()["last_result"] == {"version": "1.1.0", "ok": False}


# --------------------------------------------------------------------------- item 2


@pytest.fixture(scope="module")
def rel_full(release_history: Callable[..., Releases]) -> Releases:
    return release_history(2, 32 * 1024, 6, deltas=False)


I_BIG, LEN_BIG = 7, 1642  # the largest piece of the full payload, and its wire bytes


def piece_session(box: Lockbox, tag: bytes, piece: int, data: bytes, start: int,
                  end: int) -> list[p.Event]:
    """One session that sends bytes [start, end) of ``data`` as ``piece``, 160 a frame."""
    box.open_session(NOW)
    out = box.receive_data(p.encode(p.Hello(1, 244)), NOW)
    for off in range(start, end, 160):
        chunk = data[off : min(off + 160, end)]
        out += box.receive_data(p.encode(p.Data(tag, piece, off, chunk)), NOW)
    box.end_session(NOW)
    return p.decode_frames(out, p.MAX_FRAME)[1:]


def partial(box: Lockbox, piece: int) -> int:
    t = box.s.target if box.s else None
    assert t is not None
    st = t.streams.get(piece)
    return 0 if st is None else st.received


def test_junk_finishing_an_honest_prefix_destroys_only_the_junk(rel_full: Releases) -> None:
    """Item 2: an honest phone stages 320 bytes of piece 0; a hostile one finishes it with
    junk: BAD_PIECE, and the 320 honest bytes stay (the phone resumes at 320)."""
    box = new_box(rel_full, box_config(rel_full))
    target = rel_full.releases[1]
    pieces = target.payloads[target.manifest.full.table_sha256].pieces
    Phone([target], holds=set()).session(box, NOW)  # the table only
    i = max(range(len(pieces)), key=lambda k: len(pieces[k]))
    piece = pieces[i]
    assert (i, len(piece)) == (I_BIG, LEN_BIG)
    piece_session(box, target.tag, i, piece, 0, 320)
    junk = piece[:320] + bytes(len(piece) - 320)
    evs = piece_session(box, target.tag, i, junk, 320, len(piece))
    assert isinstance(evs[-1], p.Error) and evs[-1].code == p.ErrorCode.BAD_PIECE
    assert partial(box, i) == 320
    box = reboot(box, rel_full)  # the rollback is persisted, and the junk tail relocated
    assert partial(box, i) == 320
    evs = piece_session(box, target.tag, i, piece, 320, len(piece))
    assert p.PieceComplete(target.tag, i) in evs
    Phone([target]).session(box, NOW)
    assert box.idle(NOW) is IdleStep.BUILT and box.idle(NOW) is IdleStep.INSTALLED
    assert box.running_image() == target.image


def test_a_poisoned_prefix_costs_honest_phones_at_most_two_failed_sessions(
        rel_full: Releases) -> None:
    """The hostile phone stages junk first; an honest one finishing it fails once (rolled
    back to the junk, one strike), then again (reset whole), then succeeds."""
    box = new_box(rel_full, box_config(rel_full))
    target = rel_full.releases[1]
    piece = target.payloads[target.manifest.full.table_sha256].pieces[I_BIG]
    Phone([target], holds=set()).session(box, NOW)
    piece_session(box, target.tag, I_BIG, bytes(len(piece)), 0, 320)
    failed = 0
    for _ in range(4):
        log = Phone([target]).session(box, NOW)
        if log.error is None:
            break
        assert log.error.code == p.ErrorCode.BAD_PIECE
        failed += 1
    assert failed == 2
    assert box.idle(NOW) is IdleStep.BUILT and box.idle(NOW) is IdleStep.INSTALLED
