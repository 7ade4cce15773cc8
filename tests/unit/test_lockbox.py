"""The lockbox: both its tables cell by cell, acceptance rules, transfer, install, revert."""

from __future__ import annotations

import copy
import hashlib
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import protocol as p
from fwdist.flash import Flash, Region
from fwdist.lockbox import (
    PHASES,
    RECORD_TYPES,
    SESSION_EVENTS,
    TRANSITIONS,
    UPDATE_PHASES,
    BoxConfig,
    DropPrev,
    End,
    IdleStep,
    Lockbox,
    LockboxError,
    Open,
    Prev,
    PState,
    Rec,
    Session,
    Staging,
    StagingFull,
    Stream,
    TargetRec,
    apply_record,
    phase_of,
    record_from_wire,
    record_wire,
)
from fwdist.testing import Phone, Release, Releases, box_config, make_releases, new_box

NOW = 1_700_000_100


@pytest.fixture(scope="module")
def rel(release_history: Callable[..., Releases]) -> Releases:
    return release_history(3, 24 * 1024, 2)


@pytest.fixture(scope="module")
def rel_full(release_history: Callable[..., Releases]) -> Releases:
    return release_history(2, 32 * 1024, 6, deltas=False)


def hello(box: Lockbox) -> list[p.Event]:
    box.open_session(NOW)
    return p.decode_frames(box.receive_data(p.encode(p.Hello(1, 244)), NOW), p.MAX_FRAME)


def offer(box: Lockbox, wire: bytes, now: int = NOW) -> list[p.Event]:
    """A session that only offers ``wire``; returns the box's frames after the status."""
    hello(box)
    out = b""
    for off in range(0, len(wire), 180):
        out += box.receive_data(p.encode(p.Offer(len(wire), off, wire[off : off + 180])), now)
    box.end_session(now)
    return p.decode_frames(out, p.MAX_FRAME)


def payload_of(r: Release, box: Lockbox) -> tuple[bytes, tuple[bytes, ...]]:
    pl = r.payloads[r.manifest.payload_for(box.status_frame().running_sha256).table_sha256]
    return pl.table_bytes, pl.pieces


# --------------------------------------------------------------------------- the session table


def _into(box: Lockbox, state: Session, r: Release) -> None:
    if state is Session.CLOSED:
        return
    box.open_session(NOW)
    if state is Session.WAIT_HELLO:
        return
    if state is Session.DONE:
        box.receive_data(b"\xff\xff", NOW)
        return
    box.receive_data(p.encode(p.Hello(1, 244)), NOW)
    if state is Session.OFFERING:
        box.receive_data(p.encode(p.Offer(len(r.wire), 0, r.wire[:100])), NOW)
    assert box.session is state


def _example(kind: type, r: Release) -> object:
    tag = r.tag
    return {
        Open: Open(), End: End(),
        p.Hello: p.Hello(1, 244),
        p.Status: p.Status(1, "lockbox", "lb-r2", "1.0.0", 0, bytes(32), 50, 0, 8, 244, None),
        p.Offer: p.Offer(len(r.wire), 0, r.wire[:100]),
        p.Accept: p.Accept(tag), p.Reject: p.Reject(1),
        p.Data: p.Data(tag, p.TABLE, 0, b"x" * 16),
        p.Ack: p.Ack(tag, 0, 0), p.PieceComplete: p.PieceComplete(tag, 0),
        p.ReleaseComplete: p.ReleaseComplete(tag), p.Installed: p.Installed("1.0.0", True),
        p.Error: p.Error(1, "bye"),
    }[kind]


@pytest.mark.parametrize("kind", SESSION_EVENTS, ids=lambda k: k.__name__)
@pytest.mark.parametrize("state", list(Session), ids=lambda s: s.name)
def test_every_cell_of_the_session_table(rel: Releases, state: Session, kind: type) -> None:
    """Each (state, event) is either in the table (and lands in an allowed state) or an error."""
    box = new_box(rel, box_config(rel))
    r = rel.releases[1]
    _into(box, state, r)
    before = box.state_bytes()
    ev = _example(kind, r)
    entry = TRANSITIONS.get((state, kind))
    if kind in (Open, End):
        if entry is None:
            with pytest.raises(p.LocalProtocolError):
                box.open_session(NOW) if kind is Open else box.end_session(NOW)
        else:
            box.open_session(NOW) if kind is Open else box.end_session(NOW)
            assert box.session in entry[1]
        return
    assert isinstance(ev, p.Event)
    if state is Session.CLOSED:
        with pytest.raises(p.LocalProtocolError):
            box.receive_data(p.encode(ev), NOW)
        return
    out = p.decode_frames(box.receive_data(p.encode(ev), NOW), p.MAX_FRAME)
    if entry is None:
        assert box.session is Session.DONE
        assert out and isinstance(out[-1], p.Error) and out[-1].code == p.ErrorCode.UNEXPECTED
        assert box.state_bytes() == before
    else:  # allowed; the action itself may still find the content wrong and end the session
        assert box.session in entry[1] or isinstance(out[-1], p.Error)
        assert not any(isinstance(e, p.Error) and e.code == p.ErrorCode.UNEXPECTED for e in out)


def _in_phase(phase: p.BoxState) -> PState:
    s = PState("1.0.0", 0, bytes(32), 1000)
    if phase is not p.BoxState.IDLE:
        s.target = TargetRec(b"tag1", "1.1.0", 0, 0, 300, bytes(32), int(phase), 0,
                             {p.TABLE: Stream(40, True, [1]), 0: Stream(100, False, [3])})
        s.prev = Prev(bytes(32), 40, [2], {0: [4]})
    return s


RECORDS: dict[Rec, list[object]] = {
    Rec.TARGET: [1, b"tag2", "1.2.0", 0, 1, 300, bytes(32)],
    Rec.ALLOC: [2, 0, 5], Rec.REPLACE: [3, 0, 0, 6], Rec.TRIM: [4, 0, 0],
    Rec.PROGRESS: [5, 0, 200], Rec.DONE: [6, 0], Rec.KEEP: [7, 1, 0, 100],
    Rec.DROP_PREV: [8], Rec.RESET: [9, 0], Rec.BUILT: [10], Rec.TRIAL: [11], Rec.REVERT: [12],
    Rec.CONFIRM: [13, "1.1.0", 0, bytes(32), 1000], Rec.FAIL: [14], Rec.CLOCK: [15, 1_700_000_000],
    Rec.ROLLBACK: [16, 0, 64, 1], Rec.ROOT: [17, b"root"],
    Rec.STAMP: [18, 3, 1_700_000_000, 1_700_086_400, "1.3.0", ["1.2.0"]],
    Rec.REPORT_SEQ: [21, 16], Rec.GIVE_UP: [22, 5, 6],
}


@pytest.mark.parametrize("rec", list(Rec), ids=lambda r: r.name)
@pytest.mark.parametrize("phase", UPDATE_PHASES, ids=lambda ph: ph.name)
def test_every_cell_of_the_update_table(phase: p.BoxState, rec: Rec) -> None:
    s = _in_phase(phase)
    after = PHASES.get((phase, rec))
    record = record_from_wire(RECORDS[rec])
    if after is None:
        before = copy.deepcopy(s)
        with pytest.raises(LockboxError, match="not allowed"):
            apply_record(s, record)
        assert s == before  # a refused record changes nothing
    else:
        apply_record(s, record)
        assert phase_of(s) is after


# each record as the journal holds it (msgpack, from before the records had names): the bytes
RECORD_BYTES: dict[Rec, str] = {
    Rec.TARGET: "9701c40474616732a5312e322e300001cd012cc420" + "00" * 32,
    Rec.ALLOC: "93020005", Rec.REPLACE: "9403000006", Rec.TRIM: "93040000",
    Rec.PROGRESS: "930500ccc8", Rec.DONE: "920600", Rec.KEEP: "9407010064", Rec.DROP_PREV: "9108",
    Rec.RESET: "920900", Rec.BUILT: "910a", Rec.TRIAL: "910b", Rec.REVERT: "910c",
    Rec.CONFIRM: "950da5312e312e3000c420" + "00" * 32 + "cd03e8", Rec.FAIL: "910e",
    Rec.CLOCK: "920fce6553f100", Rec.ROLLBACK: "9410004001", Rec.ROOT: "9211c404726f6f74",
    Rec.STAMP: "961203ce6553f100ce65554280a5312e332e3091a5312e322e30",
    Rec.REPORT_SEQ: "921510", Rec.GIVE_UP: "93160506",
}


@pytest.mark.parametrize("rec", list(Rec), ids=lambda r: r.name)
def test_named_records_keep_their_journal_bytes(rec: Rec) -> None:
    record = record_from_wire(RECORDS[rec])
    assert type(record) is RECORD_TYPES[rec]
    assert msgpack.packb(record_wire(record), use_bin_type=True).hex() == RECORD_BYTES[rec]


def test_named_snapshot_keeps_its_journal_bytes() -> None:
    s = _in_phase(p.BoxState.RECEIVING)
    s.failed, s.last = [b"old-tag"], ("0.9.0", False)
    raw = msgpack.packb(s.to_wire(), use_bin_type=True)
    zeros = "c420" + "00" * 32  # bin 8 of 32 zero bytes (the SHA-256 fields)
    assert raw.hex() == (
        f"99a5312e302e3000{zeros}cd03e800"  # running version, counter, sha256, size, active
        f"99c40474616731a5312e312e300000cd012c{zeros}0100"  # target: tag ... phase, trials
        "92" "94ff28c39101" "940064c29103"  # streams: table (40 B, done, [1]), 0 (100 B, [3])
        f"94{zeros}2891029192009104"  # prev: table sha256, 40 B, [2], pieces {0: [4]}
        "91c4076f6c642d746167" "92a5302e392e30c2"  # failed tags; last result
    )
    assert PState.from_wire(msgpack.unpackb(raw, raw=False, strict_map_key=False)) == s


def test_an_update_writes_the_same_journal_and_flash_bytes(rel_full: Releases) -> None:
    """Pinned from before the lockbox became a package: 700-byte sessions of a full update on
    1 KiB sectors (the journal switches halves once), then build and install."""
    box = new_box(rel_full, box_config(rel_full, sector_size=1024))
    sessions = 0
    while box.status()["state"] != "complete":
        Phone([rel_full.releases[1]], order_seed=sessions).session(box, NOW, 700)
        sessions += 1
    assert [box.idle(NOW), box.idle(NOW)] == [IdleStep.BUILT, IdleStep.INSTALLED]
    j0, j1 = box.layout.journal
    journal = hashlib.sha256(j0.read(0, j0.size) + j1.read(0, j1.size)).hexdigest()
    flash = hashlib.sha256(box.flash.read(0, box.flash.size)).hexdigest()
    assert (sessions, box.journal.records_written, box.journal.compactions, box.flash.ops) == (
        17, 73, 1, 365)
    assert journal == "f64a49dda6bc76e5e14f03b83584c01bd06aee610f9a4f85f66fb95799f949f0"
    assert flash == "a94024f7f27f9e8f0b1772b60b486b20be5b598fcf67b48740ba3d6b3d15a61f"


def test_the_update_table_uses_only_journal_phases() -> None:
    """The derived states (COMPLETE, WAIT_BATTERY) are reports, never in the journal."""
    assert UPDATE_PHASES == (p.BoxState.IDLE, p.BoxState.RECEIVING, p.BoxState.BUILT,
                             p.BoxState.TESTING)
    assert {phase for phase, _ in PHASES} | set(PHASES.values()) == set(UPDATE_PHASES)
    # (20, CLOCK, ROOT, STAMP and REPORT_SEQ in each of the four phases, ROLLBACK,
    # GIVE_UP where FAIL is)
    assert len(PHASES) == 40


def test_table_covers_the_conversation() -> None:
    assert (Session.WAIT_HELLO, p.Hello) in TRANSITIONS
    assert (Session.READY, p.Data) in TRANSITIONS
    assert (Session.WAIT_HELLO, p.Data) not in TRANSITIONS  # no data before hello
    assert (Session.OFFERING, p.Data) not in TRANSITIONS  # finish the offer first
    assert len(TRANSITIONS) == 26


# --------------------------------------------------------------------------- acceptance


def test_open_touches_no_flash(rel: Releases) -> None:
    box = new_box(rel, box_config(rel))
    ops = box.flash.ops
    assert box.open_session(NOW) == b""
    assert box.flash.ops == ops


def test_status_reports_the_box(rel: Releases) -> None:
    box = new_box(rel, box_config(rel))
    box.battery = 64
    (status,) = hello(box)
    assert isinstance(status, p.Status)
    first = rel.releases[0]
    names = (status.product, status.hardware, status.running_version)
    assert names == ("lockbox", "lb-r2", "1.0.0")
    assert status.running_sha256 == first.manifest.image_sha256
    assert (status.battery, status.state, status.align, status.target) == (64, 0, 8, None)


def _reason(box: Lockbox, wire: bytes, now: int = NOW) -> p.Reason | None:
    before = box.state_bytes()
    evs = offer(box, wire, now)
    rejects = [e for e in evs if isinstance(e, p.Reject)]
    if rejects:
        assert box.state_bytes() == before  # a rejection changes nothing persistent
        return p.Reason(rejects[0].reason)
    assert any(isinstance(e, p.Accept) for e in evs)
    return None


def test_rejections_with_reason_codes(rel: Releases, tmp_path: Path) -> None:
    cfg = box_config(rel)
    r1, r2 = rel.releases[1], rel.releases[2]
    other_key = make_releases(tmp_path / "k", count=2, size=24 * 1024, seed=2,
                              key=Ed25519PrivateKey.generate())
    other_hw = make_releases(tmp_path / "hw", count=2, size=24 * 1024, seed=2, hardware="lb-r3")
    other_product = make_releases(tmp_path / "pr", count=2, size=24 * 1024, seed=2,
                                  product="keysafe")
    expiring = make_releases(tmp_path / "ex", count=2, size=24 * 1024, seed=2, expires_days=1,
                             key=rel.key)
    box = new_box(rel, cfg)
    assert _reason(box, b"\x93" + b"\x00" * 40) == p.Reason.MALFORMED
    assert _reason(box, other_key.releases[1].wire) == p.Reason.UNKNOWN_KEY
    assert _reason(box, r1.wire[:-1] + bytes([r1.wire[-1] ^ 1])) == p.Reason.BAD_SIGNATURE
    assert _reason(box, other_hw.releases[1].wire) == p.Reason.WRONG_HARDWARE
    assert _reason(box, other_product.releases[1].wire) == p.Reason.WRONG_PRODUCT
    exp = expiring.releases[1]
    assert exp.manifest.expires is not None
    assert _reason(box, exp.wire, now=exp.manifest.expires + 1) == p.Reason.EXPIRED
    assert _reason(box, rel.releases[0].wire) == p.Reason.NOT_NEWER
    # a box that runs 1.1.0 with security counter 5
    flash = cfg.make_flash()
    Lockbox.provision(flash, cfg, r1.image, r1.version, counter=5)
    box5 = Lockbox(flash, cfg, rel.trusted)
    box5.boot(NOW)
    assert _reason(box5, r2.wire) == p.Reason.COUNTER_LOWER
    assert _reason(box5, r1.wire) == p.Reason.COUNTER_LOWER
    # a replayed old manifest once a newer one is the target
    assert _reason(box, r2.wire) is None
    assert _reason(box, r1.wire) == p.Reason.OLDER_THAN_TARGET
    assert _reason(box, r2.wire) is None  # re-offering the target is harmless
    assert box.status()["target_version"] == "1.2.0"
    small = BoxConfig("lockbox", "lb-r2", slot_size=cfg.slot_size, staging_size=8192)
    assert _reason(new_box(rel, small), r1.wire) == p.Reason.NO_STAGING_ROOM


def test_a_newer_release_mid_transfer_replaces_the_target(rel: Releases) -> None:
    box = new_box(rel, box_config(rel))
    Phone([rel.releases[1]]).session(box, NOW, budget=900)
    assert box.status()["target_version"] == "1.1.0" and box.status()["received_bytes"] > 0
    Phone([rel.releases[2]]).session(box, NOW)
    st_ = box.status()
    assert st_["target_version"] == "1.2.0" and st_["state"] == "complete"
    assert box.idle(NOW) is IdleStep.BUILT and box.idle(NOW) is IdleStep.INSTALLED
    assert box.running_image() == rel.releases[2].image


# --------------------------------------------------------------------------- transfer


def test_full_update_from_many_tiny_sessions_and_partial_phones(rel_full: Releases) -> None:
    """Three phones each hold some pieces; 700-byte sessions, random order; the image is exact."""
    box = new_box(rel_full, box_config(rel_full))
    target = rel_full.releases[1]
    table, pieces = payload_of(target, box)
    n = len(pieces)
    rng = random.Random(11)
    holds = [set(rng.sample(range(n), k=n // 2)) for _ in range(3)]
    holds[0] |= set(range(n)) - holds[0] - holds[1] - holds[2]  # together they hold everything
    sessions = 0
    while box.status()["state"] != "complete":
        sessions += 1
        assert sessions < 300
        phone = Phone([target], holds=holds[sessions % 3], order_seed=rng.randrange(1000))
        before = box.status()["received_bytes"]
        log = phone.session(box, NOW, budget=700)
        assert log.error is None
        assert box.status()["received_bytes"] >= before
    assert box.status()["received_bytes"] == box.status()["needed_bytes"] == sum(map(len, pieces))
    assert box.idle(NOW) is IdleStep.BUILT
    assert box.idle(NOW) is IdleStep.INSTALLED
    assert box.running_image() == target.image
    assert box.status()["active_slot"] == 1 and box.status()["last_result"] == {
        "version": target.version, "ok": True}
    print(f"\nfull image {len(target.image)} B as {n} pieces, {sum(map(len, pieces))} B on the air"
          f" + {len(table)} B table: {sessions} sessions of 700 B from 3 partial phones")


def test_reboot_resumes_exactly_where_it_left_off(rel_full: Releases) -> None:
    cfg = box_config(rel_full)
    box = new_box(rel_full, cfg)
    target = rel_full.releases[1]
    table, pieces = payload_of(target, box)
    Phone([target]).session(box, NOW, budget=3000)
    persisted = sum(s.received for s in box.s.target.streams.values())  # type: ignore[union-attr]
    again = Lockbox(box.flash, cfg, rel_full.trusted)
    again.boot(NOW)
    (status,) = hello(again)
    again.end_session(NOW)
    assert isinstance(status, p.Status) and status.target is not None
    assert status.target.table_received == len(table)
    log = Phone([target]).session(again, NOW)
    # the second phone sends exactly what is missing, nothing twice
    assert log.payload_sent == len(table) + sum(map(len, pieces)) - persisted
    assert again.idle(NOW) is IdleStep.BUILT and again.idle(NOW) is IdleStep.INSTALLED
    assert again.running_image() == target.image


def test_walk_away_at_any_byte_keeps_what_was_persisted(rel: Releases) -> None:
    cfg = box_config(rel)
    target = rel.releases[1]
    full = Phone([target]).session(new_box(rel, cfg), NOW)
    points = 0
    for budget in range(1, full.sent, 7):  # a budget of full.sent completes: no walk-away
        box = new_box(rel, cfg)
        log = Phone([target]).session(box, NOW, budget=budget)
        assert log.walked_away
        got = box.status()["received_bytes"]
        Phone([target]).session(box, NOW)
        assert box.status()["state"] == "complete" and box.status()["received_bytes"] >= got
        points += 1
    assert points == len(range(1, full.sent, 7))


def test_session_overhead_is_counted(rel: Releases) -> None:
    """Bytes on the air for one whole delta update beyond the manifest, table and payload."""
    box = new_box(rel, box_config(rel))
    target = rel.releases[1]
    table, pieces = payload_of(target, box)
    log = Phone([target]).session(box, NOW)
    content = len(target.wire) + len(table) + sum(map(len, pieces))
    assert log.payload_sent == content
    frames = [type(e).__name__ for e in log.events]
    print(f"\none session: {log.sent} B sent, {log.received} B received, {content} B content, "
          f"{log.overhead} B overhead ({100 * log.overhead / content:.1f}%); box frames {frames}")
    # overhead: the 115 B the phone sent beyond the content (hello, frame headers) and the
    # 129 B the box sent (status, accept with the payload's number, completes), by the box's
    # own count too
    assert (box.frames_out, box.bytes_out) == (len(log.events), log.received) == (5, 129)
    assert (log.sent, content, log.overhead) == (946, 831, 244)
    assert log.overhead < 300  # hello, status, accept, acks, completes and 6-18 B per frame


def test_duplicates_are_ignored_and_gaps_rewind(rel_full: Releases) -> None:
    box = new_box(rel_full, box_config(rel_full))
    target = rel_full.releases[1]
    table, pieces = payload_of(target, box)
    offer(box, target.wire)
    hello(box)
    tag = target.tag
    out = box.receive_data(p.encode(p.Data(tag, p.TABLE, 0, table[:160])), NOW)
    out += box.receive_data(p.encode(p.Data(tag, p.TABLE, 0, table[:160])), NOW)  # duplicate
    assert out == b""
    gap = p.decode_frames(
        box.receive_data(p.encode(p.Data(tag, p.TABLE, 320, table[320:480])), NOW))
    assert gap == [p.Ack(tag, p.TABLE, 160)]
    rest = []
    for off in range(160, len(table), 160):
        rest += p.decode_frames(box.receive_data(
            p.encode(p.Data(tag, p.TABLE, off, table[off : off + 160])), NOW))
    assert rest == [p.PieceComplete(tag, p.TABLE)]
    misaligned = p.decode_frames(
        box.receive_data(p.encode(p.Data(tag, 0, 4, pieces[0][4:20])), NOW))
    assert isinstance(misaligned[-1], p.Error) and misaligned[-1].code == p.ErrorCode.BAD_OFFSET


def test_tampered_piece_ends_the_session_and_is_discarded(rel_full: Releases) -> None:
    box = new_box(rel_full, box_config(rel_full))
    target = rel_full.releases[1]
    _, pieces = payload_of(target, box)
    Phone([target], holds={1}).session(box, NOW)  # table and piece 1
    verified = box.status()["pieces_done"]
    before = box.state_bytes()
    bad = bytearray(pieces[0])
    bad[len(bad) // 2] ^= 0x40
    hello(box)
    out = b""
    for off in range(0, len(bad), 200):
        frame = p.encode(p.Data(target.tag, 0, off, bytes(bad[off : off + 200])))
        out += box.receive_data(frame, NOW)
    box.end_session(NOW)
    evs = p.decode_frames(out)
    assert isinstance(evs[-1], p.Error) and evs[-1].code == p.ErrorCode.BAD_PIECE
    assert box.status()["pieces_done"] == verified == 1
    assert box.state_bytes() == before  # the tampered piece left no trace
    Phone([target]).session(box, NOW)
    assert box.idle(NOW) is IdleStep.BUILT and box.idle(NOW) is IdleStep.INSTALLED
    assert box.running_image() == target.image


def test_a_full_staging_area_ends_the_session_busy(rel_full: Releases) -> None:
    """Only a box too small for what it accepted runs out of staging: the phone hears BUSY."""
    cfg = replace(box_config(rel_full), staging_size=4 * 4096)
    box = new_box(rel_full, cfg)
    box.judge = lambda wire, now: None  # type: ignore[method-assign]  # (judge() says TOO_LARGE)
    log = Phone([rel_full.releases[1]]).session(box, NOW)
    assert log.error == p.Error(int(p.ErrorCode.BUSY), "staging area is full")
    assert [type(e) for e in log.events] == [p.Status, p.Accept, *[p.PieceComplete] * 4, p.Error]
    st_ = box.status()
    assert (st_["pieces_done"], st_["received_bytes"], box.flash.ops) == (3, 1429, 177)
    again = Lockbox(box.flash, cfg, rel_full.trusted)
    again.boot(NOW)  # what was persisted before the staging ran out stays
    assert (again.status()["pieces_done"], again.status()["received_bytes"]) == (3, 1429)


def test_staging_hands_out_each_free_sector_once_then_is_full() -> None:
    flash = Flash(4 * 4096, 4096, 8)
    s = PState("1.0.0", 0, bytes(32), 1000)
    s.target = TargetRec(b"tag1", "1.1.0", 0, 0, 300, bytes(32), streams={0: Stream(0, False, [1])})
    s.prev = Prev(bytes(32), 40, [0], {})
    commits: list[object] = []

    def commit(rec: object) -> None:  # the box's commit, as far as the allocator needs it
        commits.append(rec)
        apply_record(s, rec)  # type: ignore[arg-type]

    staging = Staging(Region(flash, "staging", 4096, 3 * 4096), 8, commit)
    assert staging.alloc(s) == 2 and flash.erase_counts == [0, 0, 0, 1] and commits == []
    s.target.streams[0].sectors.append(2)
    assert staging.alloc(s) == 0 and commits == [DropPrev()]  # the replaced target's sector
    s.target.streams[0].sectors.append(0)
    with pytest.raises(StagingFull, match="staging area is full"):
        staging.alloc(s)
    assert flash.erase_counts == [0, 1, 0, 1] and s.prev is None


def test_data_for_another_release_changes_nothing(rel: Releases) -> None:
    box = new_box(rel, box_config(rel))
    Phone([rel.releases[1]]).session(box, NOW, budget=1000)
    before = box.state_bytes()
    hello(box)
    evs = p.decode_frames(box.receive_data(
        p.encode(p.Data(rel.releases[2].tag, p.TABLE, 0, b"x" * 64)), NOW))
    box.end_session(NOW)
    assert evs == [p.Error(int(p.ErrorCode.WRONG_RELEASE),
                           "data for a release that is not the box's target")]
    assert box.state_bytes() == before


@pytest.mark.parametrize("junk", [
    b"\xff\xff" + b"x" * 10,  # oversized length prefix
    p.encode(p.Hello(1, 244))[:-1] + b"\x00",  # bad CRC
    p.encode(p.Status(1, "a", "b", "1.0.0", 0, bytes(32), 1, 0, 8, 244, None)),  # wrong direction
    b"\x00\x08\x92\x63\x01" + b"\x00" * 5,  # unknown frame type
])
def test_garbage_ends_the_session_and_changes_nothing(rel: Releases, junk: bytes) -> None:
    box = new_box(rel, box_config(rel))
    Phone([rel.releases[1]]).session(box, NOW, budget=1200)
    before = box.state_bytes()
    hello(box)
    evs = p.decode_frames(box.receive_data(junk, NOW))
    assert len(evs) == 1 and isinstance(evs[0], p.Error)
    assert box.session is Session.DONE
    assert box.receive_data(p.encode(p.Hello(1, 244)), NOW) == b""  # input after errors is dropped
    box.end_session(NOW)
    assert box.state_bytes() == before


# --------------------------------------------------------------------------- installing


def test_install_waits_for_the_battery(tmp_path: Path) -> None:
    rel = make_releases(tmp_path, count=2, size=24 * 1024, seed=8, min_battery=40)
    box = new_box(rel, box_config(rel))
    Phone([rel.releases[1]]).session(box, NOW)
    box.battery = 39
    assert box.idle(NOW) is IdleStep.BUILT
    assert box.idle(NOW) is IdleStep.WAIT_BATTERY and box.status()["state"] == "wait_battery"
    assert box.status()["running_version"] == "1.0.0"
    box.battery = 40
    assert box.idle(NOW) is IdleStep.INSTALLED
    assert box.running_image() == rel.releases[1].image


def test_failed_self_test_reverts_to_the_old_image(rel: Releases) -> None:
    tested: list[str] = []

    def self_test(m: object, read: object) -> bool:
        tested.append(getattr(m, "version", "?"))
        return getattr(m, "version", "") != "1.1.0"

    box = new_box(rel, box_config(rel), self_test=self_test)
    Phone([rel.releases[1]]).session(box, NOW)
    assert box.idle(NOW) is IdleStep.BUILT
    assert box.idle(NOW) is IdleStep.REVERTED
    st_ = box.status()
    assert st_["running_version"] == "1.0.0" and st_["active_slot"] == 0
    assert st_["last_result"] == {"version": "1.1.0", "ok": False}
    assert box.running_image() == rel.releases[0].image
    assert hello(box)[1:] == [p.Installed("1.1.0", False)]  # reported after the next status
    box.end_session(NOW)
    assert _reason(box, rel.releases[1].wire) == p.Reason.FAILED_BEFORE
    Phone([rel.releases[2]]).session(box, NOW)  # a newer release still gets through
    assert box.idle(NOW) is IdleStep.BUILT and box.idle(NOW) is IdleStep.INSTALLED
    assert box.running_image() == rel.releases[2].image
    assert tested == ["1.1.0", "1.2.0"]


def test_unconfirmed_trial_reverts_on_reboot(rel: Releases) -> None:
    cfg = box_config(rel)
    box = new_box(rel, cfg)
    Phone([rel.releases[1]]).session(box, NOW)
    assert box.idle(NOW) is IdleStep.BUILT

    def hang(m: object, read: object) -> bool:
        raise SystemExit  # the new image never comes back to confirm

    box.self_test = hang
    with pytest.raises(SystemExit):
        box.idle(NOW)
    again = Lockbox(box.flash, cfg, rel.trusted)
    again.boot(NOW)
    assert again.status()["running_version"] == "1.0.0" and again.status()["state"] == "built"
    assert again.idle(NOW) is IdleStep.INSTALLED  # tried again (trials are counted)
    assert again.running_image() == rel.releases[1].image


def test_status_fits_the_smallest_link(tmp_path: Path) -> None:
    names = make_releases(tmp_path, count=2, size=24 * 1024, seed=6, deltas=False,
                          product="lockbox-pro-eu-2026", hardware="lb-r2-rev-c-eu-2026")
    box = new_box(names, box_config(names))
    target = names.releases[1]
    Phone([target], holds=set()).session(box, NOW)  # the manifest and the table
    for i in range(4):  # four pieces begun, none finished
        Phone([target], holds={i}).session(box, NOW, budget=420)
    (full,) = hello(box)[:1]
    box.end_session(NOW)
    assert isinstance(full, p.Status) and full.target is not None and len(full.target.partials) == 4
    box.open_session(NOW)
    out = box.receive_data(p.encode(p.Hello(1, 128)), NOW)
    box.end_session(NOW)
    (small,) = p.decode_frames(out, 128)
    assert isinstance(small, p.Status) and small.target is not None
    kept = small.target.partials
    assert len(out) <= 128 and len(kept) < 4 and kept == full.target.partials[: len(kept)]
    print(f"\nstatus: {len(p.encode(full, 512))} B with 4 partials, {len(out)} B with {len(kept)}")


def test_a_withdrawn_key_drops_the_target_at_boot(rel: Releases) -> None:
    cfg = box_config(rel)
    box = new_box(rel, cfg)
    Phone([rel.releases[1]]).session(box, NOW, budget=1000)
    assert box.status()["target_version"] == "1.1.0"
    again = Lockbox(box.flash, cfg, {})
    again.boot(NOW)
    assert again.status()["target_version"] is None and again.status()["running_version"] == "1.0.0"
    assert again.running_image() == rel.releases[0].image


def test_input_after_the_session_ended_is_not_buffered(rel: Releases) -> None:
    box = new_box(rel, box_config(rel))
    hello(box)
    box.receive_data(b"\x00\x01", NOW)  # a frame too short to be one: the session ends
    assert box.session is Session.DONE
    pending = box._decoder.pending  # the frame buffer is internal: read on purpose, no API has it
    assert box.receive_data(b"x" * 100_000, NOW) == b""
    assert box._decoder.pending == pending <= 2


def test_installed_frame_after_the_next_status(rel: Releases) -> None:
    box = new_box(rel, box_config(rel))
    Phone([rel.releases[1]]).session(box, NOW)
    box.idle(NOW)
    box.idle(NOW)
    evs = hello(box)
    box.end_session(NOW)
    assert evs[1:] == [p.Installed("1.1.0", True)]
    assert hello(box)[1:] == []


@pytest.mark.parametrize("max_frame", [244, 512])
def test_figures_for_a_256k_image(tmp_path: Path, max_frame: int) -> None:
    """Air bytes, per-session overhead and flash work for one whole update of a 256 KiB image."""
    rel = make_releases(tmp_path, count=2, size=256 * 1024, seed=1)
    cfg = box_config(rel, max_frame=512)
    target = rel.releases[1]
    for kind in ("delta", "full"):
        box = new_box(rel, cfg)
        if kind == "full":  # a box whose running image no delta starts from
            assert box.s is not None
            box.s.running_sha256 = bytes(32)
        ref = target.manifest.payload_for(box.status_frame().running_sha256)
        assert (ref.source_version is not None) == (kind == "delta")
        table = target.payloads[ref.table_sha256].table_bytes
        ops, erases = box.flash.ops, box.flash.erases
        log = Phone([target], max_frame=max_frame).session(box, NOW)
        content = len(target.wire) + len(table) + ref.size
        assert log.error is None and log.payload_sent == content
        transfer_ops, transfer_erases = box.flash.ops - ops, box.flash.erases - erases
        assert box.idle(NOW) is IdleStep.BUILT and box.idle(NOW) is IdleStep.INSTALLED
        if kind == "delta":
            assert box.running_image() == target.image
        print(f"\n{max_frame}-byte frames, {kind} ({ref.encoder}): {content} B content "
              f"(manifest {len(target.wire)}, table {len(table)}, {ref.pieces} pieces {ref.size}); "
              f"one session sent {log.sent} B, received {log.received} B, "
              f"overhead {log.overhead} B "
              f"= {100 * log.overhead / content:.1f}%; transfer flash ops {transfer_ops} "
              f"({transfer_erases} erases), journal records {box.journal.records_written}, "
              f"compactions {box.journal.compactions}")
        assert log.overhead < (0.13 if max_frame == 244 else 0.09) * content


def test_unsupported_protocol_version_ends_the_session(rel: Releases) -> None:
    """Version-1 firmware refuses a Hello naming 2; a version-2-only box one naming 1."""
    box = new_box(rel, box_config(rel, protocols=(1,)))
    box.open_session(NOW)
    evs = p.decode_frames(box.receive_data(p.encode(p.Hello(2, 244)), NOW))
    assert [type(e) for e in evs] == [p.Error] and evs[0].code == p.ErrorCode.UNSUPPORTED_VERSION
    assert box.session is Session.DONE
    box.end_session(NOW)
    box = new_box(rel, box_config(rel, protocols=(2,)))
    box.open_session(NOW)
    evs = p.decode_frames(box.receive_data(p.encode(p.Hello(1, 244)), NOW))
    assert [type(e) for e in evs] == [p.Error] and evs[0].code == p.ErrorCode.UNSUPPORTED_VERSION


def test_a_file_backed_box_persists_between_runs(rel_full: Releases, tmp_path: Path) -> None:
    from fwdist.flash import FileFlash

    cfg = box_config(rel_full)
    target = rel_full.releases[1]
    path = tmp_path / "flash.bin"
    flash = FileFlash(path, cfg.flash_size(), cfg.sector_size, cfg.align)
    first = rel_full.releases[0]
    Lockbox.provision(flash, cfg, first.image, first.version)
    flash.close()
    for run in range(100):  # each run is a new process: open the file, boot, one session
        flash = FileFlash(path, cfg.flash_size(), cfg.sector_size, cfg.align)
        box = Lockbox(flash, cfg, rel_full.trusted)
        box.boot(NOW)
        if box.status()["running_version"] == target.version:
            break
        Phone([target], order_seed=run).session(box, NOW, budget=6000)
        box.idle(NOW)
        box.idle(NOW)
        flash.close()
    assert box.running_image() == target.image
    assert run == 2  # two 6000-byte sessions carry the 8.4 KB; the third run finds it running


def test_the_test_support_needs_no_hypothesis() -> None:
    """``fwdist.testing`` is for library users, who may not have the ``[test]`` extra."""
    code = ("import sys; sys.modules['hypothesis'] = None; import fwdist.testing; "
            "print(sorted(m for m in sys.modules if m.startswith('hypothesis')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "['hypothesis']\n"  # only the blocked entry: nothing imported it
