"""The box's signed reports in protocol 2 sessions: when they are sent, what they say, and
sequence numbers that never repeat across reboots (fwdist.lockbox._reports)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import protocol as p
from fwdist import protocol_v2 as v2
from fwdist import report
from fwdist.app import App, SessionEnd
from fwdist.lockbox import SEQ_BLOCK, Identity, IdleStep, Lockbox, PState, Rec
from fwdist.pump import pump_session
from fwdist.releases import phone_cache
from fwdist.testing import Releases, box_config, new_box

NOW = 1_700_000_100
DEVICE = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fwdist test device").digest())
IDENT = Identity("box-1", DEVICE)


@pytest.fixture(scope="module")
def rel(release_history: Callable[..., Releases]) -> Releases:
    return release_history(3, 24 * 1024, 2)


def _box(rel: Releases, identity: Identity | None = IDENT, **cfg: object) -> Lockbox:
    return new_box(rel, box_config(rel, **cfg), identity=identity)


def v2_hello(box: Lockbox) -> list[p.Event]:
    box.open_session(NOW)
    dec = v2.FrameDecoder(p.MAX_FRAME, tag=b"\0" * 4)
    dec.feed(box.receive_data(p.encode(p.Hello(2, 244)), NOW))
    box.end_session(NOW)
    return dec.events()


def reports_of(events: list[p.Event]) -> list[report.Report]:
    return [report.verify(e.wire, DEVICE.public_key()) for e in events
            if isinstance(e, v2.BoxReport)]


def test_the_first_report_follows_the_summary_and_says_what_the_box_is(rel: Releases) -> None:
    box = _box(rel)
    events = v2_hello(box)
    assert [type(e) for e in events] == [v2.Summary, v2.BoxReport]
    (rep,) = reports_of(events)
    image = hashlib.sha256(rel.releases[0].image).digest()[:8]
    assert rep == report.Report("box-1", 0, "lockbox", "lb-r2", rel.releases[0].version, image,
                                None, 100, p.BoxState.IDLE, None, 0)


def test_a_version_1_session_and_a_box_without_identity_report_nothing(rel: Releases) -> None:
    box = _box(rel)
    box.open_session(NOW)
    frames = p.decode_frames(box.receive_data(p.encode(p.Hello(1, 244)), NOW), p.MAX_FRAME)
    assert [type(e) for e in frames] == [p.Status]
    plain, signed = _box(rel, None), _box(rel)
    without, with_ = v2_hello(plain), v2_hello(signed)
    assert without == with_[:1]  # the same Summary, and no report
    assert plain.flash.ops == signed.flash.ops - 1  # the one reservation the report cost


def test_seq_numbers_rise_and_a_reboot_skips_the_unused_reservation(rel: Releases) -> None:
    box = _box(rel)
    seqs = [reports_of(v2_hello(box))[0].seq for _ in range(20)]
    assert seqs == list(range(20))
    box.boot(NOW)  # 20..31 were reserved and not used: never signed now
    after = [reports_of(v2_hello(box))[0].seq for _ in range(3)]
    assert after == [2 * SEQ_BLOCK, 2 * SEQ_BLOCK + 1, 2 * SEQ_BLOCK + 2]


def test_one_reservation_record_per_sixteen_reports(rel: Releases) -> None:
    box = _box(rel)
    before = box.journal.records_written
    for _ in range(2 * SEQ_BLOCK + 1):
        v2_hello(box)
    assert box.journal.records_written - before == 3
    kinds = [msgpack.unpackb(r)[0] for r in box.journal.load().records]
    assert kinds.count(int(Rec.REPORT_SEQ)) == 3


def _phone(rel: Releases, version: int) -> App:
    return App(phone_cache(rel.store, "lockbox", rel.releases[version].version))


def test_a_whole_update_reports_at_hello_accept_and_release_complete(rel: Releases) -> None:
    box = _box(rel)
    session = pump_session(box, _phone(rel, 1), now=NOW)
    assert session.complete
    reps = [report.verify(w, DEVICE.public_key()) for w in session.box_reports]
    assert [(r.seq, r.state, r.target) for r in reps[:2]] == [
        (0, p.BoxState.IDLE, None),
        (1, p.BoxState.RECEIVING, report.TargetProgress(rel.releases[1].version, 0,
                                                        box.ref.size if box.ref else -1))]
    last = reps[2]
    assert len(reps) == 3 and last.seq == 2 and last.state == p.BoxState.COMPLETE
    assert last.target is not None and last.target.held == last.target.total > 0
    assert [box.idle(NOW), box.idle(NOW)] == [IdleStep.BUILT, IdleStep.INSTALLED]
    after = pump_session(box, _phone(rel, 1), now=NOW)
    (rep,) = [report.verify(w, DEVICE.public_key()) for w in after.box_reports]
    assert rep.seq == 3 and rep.running_version == rel.releases[1].version
    assert rep.last == report.LastResult(rel.releases[1].version, report.Outcome.INSTALLED)


def test_a_phone_whose_rollout_does_not_offer_still_hears_the_box(rel: Releases) -> None:
    box = _box(rel)
    cache = phone_cache(rel.store, "lockbox", rel.releases[1].version)
    session = pump_session(box, App(cache, offer=False), now=NOW)
    assert (session.end, session.sent_bytes > 0, session.payload_sent) == (
        SessionEnd.NOT_OFFERED, True, 0)
    (rep,) = [report.verify(w, DEVICE.public_key()) for w in session.box_reports]
    assert (rep.seq, rep.state, rep.target, rep.running_version) == (
        0, p.BoxState.IDLE, None, rel.releases[0].version)
    assert box.status()["state"] == "idle" and box.ref is None
    offered = pump_session(box, App(cache), now=NOW)  # the next phone may offer: it installs
    assert offered.complete and offered.payload_sent > 0


def test_a_walk_away_after_the_first_frames_still_leaves_the_report(rel: Releases) -> None:
    box = _box(rel)
    session = pump_session(box, _phone(rel, 2), budget_bytes=200, now=NOW)
    assert not session.complete and len(session.box_reports) >= 1
    assert report.verify(session.box_reports[0], DEVICE.public_key()).seq == 0


def test_a_failed_self_test_is_reported_with_its_cause(rel: Releases) -> None:
    box = new_box(rel, box_config(rel), identity=IDENT, self_test=lambda m, read: False)
    pump_session(box, _phone(rel, 1), now=NOW)
    assert [box.idle(NOW), box.idle(NOW)] == [IdleStep.BUILT, IdleStep.REVERTED]
    (rep,) = reports_of(v2_hello(box))
    assert rep.last == report.LastResult(rel.releases[1].version,
                                         report.Outcome.SELF_TEST_FAILED)
    box.boot(NOW)  # the cause survives a reboot (journal replay)
    assert reports_of(v2_hello(box))[0].last == rep.last


def test_a_snapshot_keeps_the_cause_and_the_reservation(rel: Releases) -> None:
    s = PState("1.0.0", 0, bytes(32), 1000, last=("1.1.0", False), outcome=5, reason=6,
               seq_limit=48)
    raw = msgpack.packb(s.to_wire(), use_bin_type=True)
    zeros = "c420" + "00" * 32
    assert raw.hex() == (f"9ba5312e302e3000{zeros}cd03e800" "c0c090"
                         "94a5312e312e30c20506" "00" "30")
    assert PState.from_wire(msgpack.unpackb(raw, raw=False, strict_map_key=False)) == s


def test_a_phone_that_waits_for_the_report_to_decide_costs_no_air_byte(rel: Releases) -> None:
    """``App(decide=)`` (issue 14: `app push` does not know which box it reached): the offer
    waits for the report that follows the Summary; both ways, the bytes are those of a phone
    that knew the answer from the start."""
    cache = phone_cache(rel.store, "lockbox", rel.releases[1].version)
    asked: list[str | None] = []

    def rule(answer: bool) -> Callable[[report.Report | None], bool]:
        def decide(rep: report.Report | None) -> bool:
            asked.append(None if rep is None else rep.box_id)
            return answer
        return decide

    no = pump_session(_box(rel), App(cache, decide=rule(False)), now=NOW)
    told_no = pump_session(_box(rel), App(cache, offer=False), now=NOW)
    assert (no.end, no.payload_sent, no.sent_bytes, no.received_bytes) == (
        SessionEnd.NOT_OFFERED, 0, told_no.sent_bytes, told_no.received_bytes)
    assert no.sent_bytes == len(p.encode(p.Hello(2, 244))) and len(no.box_reports) == 1
    yes = pump_session(_box(rel), App(cache, decide=rule(True)), now=NOW)
    plain = pump_session(_box(rel), App(cache), now=NOW)
    assert yes.complete and (yes.sent_bytes, yes.received_bytes, yes.box_reports) == (
        plain.sent_bytes, plain.received_bytes, plain.box_reports)
    assert asked == ["box-1", "box-1"]
    # a protocol 2 box with no identity sends no report: the phone waits, offers nothing,
    # and the link ends it (here the in-memory pump: neither side has anything to say)
    silent = pump_session(_box(rel, None), App(cache, decide=rule(True)), now=NOW)
    assert (silent.end, silent.link_end, silent.payload_sent, silent.box_reports) == (
        SessionEnd.LINK_DROPPED, "stalled: neither side has anything to send", 0, ())
    assert asked == ["box-1", "box-1"]
