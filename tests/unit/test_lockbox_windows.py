"""Maintenance windows carried to the box as signed policy (issue 14): the timestamp's
windows for the box's product, kept in its STAMP record, and an install that waits while
the box's time is outside every one of them. Not a rejection: the release stays, built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdist import manifest, report, trust
from fwdist import protocol as p
from fwdist import protocol_v2 as v2
from fwdist.app import App, SessionEnd
from fwdist.errors import TrustError
from fwdist.lockbox import Identity, IdleStep, Lockbox
from fwdist.pump import pump_session
from fwdist.releases import phone_cache
from fwdist.testing import Phone, Release, Releases
from tests.trust_helpers import RELEASE_KEYS, T0, timestamp
from tests.unit.test_lockbox_trust import boxed

DAY = 86_400
MIDNIGHT = T0 - T0 % DAY + DAY  # 00:00 UTC the day after T0
NIGHT = (("lockbox", ((120, 60),)),)  # lockbox installs 02:00-03:00 UTC
OTHER = (("other", ((120, 60),)),)  # another product's window: not this box's


def at(hh: int, mm: int = 0, day: int = 0) -> int:
    return MIDNIGHT + day * DAY + hh * 3600 + mm * 60


@pytest.fixture(scope="module")
def rel(release_history: Callable[..., Releases]) -> Releases:
    return release_history(2, 24 * 1024, 2, deltas=False)


def release(rel: Releases) -> Release:
    r = rel.releases[1]
    return replace(r, wire=manifest.sign_all(r.manifest, RELEASE_KEYS[1:]), air=())


def built(rel: Releases, now: int, stamp: bytes | None = None) -> Lockbox:
    """A box on root 1 that verified ``stamp`` (if any) and then built release 1 at ``now``."""
    box = boxed(rel)
    if stamp is not None:
        assert box.offer_timestamp(stamp, now) is None
    assert Phone([release(rel)]).session(box, now).rejected is None
    assert box.idle(now) is IdleStep.BUILT
    return box


def relay(box: Lockbox, stamp: bytes, now: int = 0) -> p.Reason | None:
    """One phone session in which the phone relays ``stamp`` and nothing else."""
    box.open_session(now)
    why = box.offer_timestamp(stamp, now)
    box.end_session(now)
    return why


def test_no_windows_keeps_a_timestamps_bytes_and_the_box_installs_at_once(rel: Releases) -> None:
    plain = trust.Timestamp(1, T0, T0 + DAY)
    body = trust.encode_body(plain)
    assert body.hex() == "85010102ce6553f10003ce6555428004900590"  # main's bytes, before windows
    assert trust.decode_timestamp(trust.sign(plain)).timestamp == plain
    box = built(rel, at(14), timestamp(1, T0))
    windowed = built(rel, at(14), timestamp(1, T0, windows=NIGHT))
    # the journal's room: a window is 4 bytes of the snapshot ([[120, 60]]), none is 0
    assert len(windowed.state_bytes()) - len(box.state_bytes()) == 4
    stamps = [msgpack.unpackb(b.state_bytes())[-1] for b in (box, windowed)]
    assert stamps == [[1, T0, T0 + DAY, None, []], [1, T0, T0 + DAY, None, [], [[120, 60]]]]
    assert (box.trust_status()["windows"], box.idle(at(14))) == ([], IdleStep.INSTALLED)
    other = built(rel, at(14), timestamp(1, T0, windows=OTHER))  # another product's only
    assert (other.trust_status()["windows"], other.idle(at(14))) == ([], IdleStep.INSTALLED)


def test_a_box_with_a_clock_waits_outside_every_window_and_installs_inside(
        rel: Releases) -> None:
    box = built(rel, at(14), timestamp(1, T0, windows=NIGHT))
    before = box.state_bytes()
    for now in (at(14), at(1, 59), at(3, 0, day=1), at(23, 59, day=1)):
        assert box.idle(now) is IdleStep.WAIT_WINDOW, now
    assert box.state_bytes() == before  # waiting writes nothing: the release stays
    st = box.status()
    assert (st["state"], st["target_version"], st["running_version"]) == (
        "wait_window", rel.releases[1].version, rel.releases[0].version)
    assert box.status_frame().state == p.BoxState.WAIT_WINDOW  # what Summary and report say
    assert box.trust_status()["windows"] == ["02:00-03:00"]
    assert box.idle(at(2, 30, day=2)) is IdleStep.INSTALLED
    assert box.status()["running_version"] == rel.releases[1].version


def test_a_clock_behind_the_signed_time_is_not_believed(rel: Releases) -> None:
    """The box's time is its clock raised to its proof: a clock stuck at 02:30 of an earlier
    day than the timestamp's 14:00 does not open the window."""
    stamp = timestamp(1, at(14, day=3), expires=at(14, day=9), windows=NIGHT)
    box = built(rel, at(14, day=3), stamp)
    assert box.idle(at(2, 30)) is IdleStep.WAIT_WINDOW
    assert box.idle(at(2, 30, day=4)) is IdleStep.INSTALLED


def test_a_box_without_a_clock_installs_only_after_a_timestamp_inside_a_window(
        rel: Releases) -> None:
    """It knows only a lower bound on the time: a timestamp verified in the session just
    ended, signed inside a window, is its one proof that the time is in the window now."""
    box = built(rel, 0, timestamp(1, at(2, 10), expires=at(0, day=9), windows=NIGHT))
    assert box.idle(0) is IdleStep.WAIT_WINDOW  # its stamp is from before this session
    assert relay(box, timestamp(2, at(14), expires=at(0, day=9), windows=NIGHT)) is None
    assert box.idle(0) is IdleStep.WAIT_WINDOW  # fresh, but signed outside the window
    box.open_session(0)  # a phone that relays nothing: the proof is not carried over
    box.end_session(0)
    assert relay(box, timestamp(3, at(2, 20, day=1), expires=at(0, day=9),
                                windows=NIGHT)) is None
    box.open_session(0)
    box.end_session(0)
    assert box.idle(0) is IdleStep.WAIT_WINDOW
    assert relay(box, timestamp(4, at(2, 40, day=1), expires=at(0, day=9),
                                windows=NIGHT)) is None
    assert box.idle(0) is IdleStep.INSTALLED


def test_a_phone_that_relays_nothing_or_replays_cannot_make_the_box_install(
        rel: Releases) -> None:
    """The windows came signed; a phone can relay an older timestamp (refused as stale) or
    nothing; sessions and idle steps at 14:00 leave the release built and waiting."""
    stamp = timestamp(2, T0, windows=NIGHT)
    for clock in (at(14), 0):
        box = built(rel, clock, stamp)
        before = box.state_bytes()
        assert relay(box, timestamp(1, T0 + 10), clock) is p.Reason.STALE_TIMESTAMP
        assert relay(box, stamp, clock) is p.Reason.STALE_TIMESTAMP  # the same one again
        for _ in range(3):
            Phone([release(rel)]).session(box, clock)
            assert box.idle(clock) is IdleStep.WAIT_WINDOW, clock
        assert box.state_bytes() == before
        # the vendor's next timestamp lifts the windows: the box installs
        assert relay(box, timestamp(3, at(14), expires=at(14, day=2)), clock) is None
        assert box.idle(clock) is IdleStep.INSTALLED


def test_a_timestamp_revoking_a_waiting_release_drops_it(rel: Releases) -> None:
    box = built(rel, at(14), timestamp(1, T0, windows=NIGHT))
    assert box.idle(at(14)) is IdleStep.WAIT_WINDOW
    revoke = timestamp(2, T0 + 1, windows=NIGHT, revoked=(("lockbox", rel.releases[1].version),))
    assert relay(box, revoke, at(14)) is None
    assert (box.status()["state"], box.status()["target_version"]) == ("idle", None)


_minutes = st.integers(0, trust.MINUTES_A_DAY - 1)
_window = st.tuples(_minutes, st.integers(1, trust.MINUTES_A_DAY))


@settings(max_examples=400, derandomize=True)
@given(st.lists(_window, max_size=4), st.integers(0, 1 << 32))
def test_window_arithmetic_across_midnight(windows: list[tuple[int, int]], now: int) -> None:
    """``in_windows`` against the definition: minute m of the day is in (start, minutes)
    when m is start + k (mod a day) for some 0 <= k < minutes."""
    minute = now % DAY // 60
    want = not windows or any(minute in {(s + k) % trust.MINUTES_A_DAY for k in range(n)}
                              for s, n in windows)
    assert trust.in_windows(windows, now) is want


def test_window_arithmetic_at_the_edges() -> None:
    late = [(23 * 60 + 30, 60)]  # 23:30-00:30
    got = [trust.in_windows(late, at(hh, mm)) for hh, mm in
           ((23, 29), (23, 30), (23, 59), (0, 0), (0, 29), (0, 30))]
    assert got == [False, True, True, True, True, False]
    assert trust.in_windows([(0, trust.MINUTES_A_DAY)], at(13, 13))
    assert trust.format_window(23 * 60 + 30, 60) == "23:30-00:30"


_products = st.sampled_from(["lockbox", "gate", "other-7"])
_ts_windows = st.dictionaries(
    _products, st.sets(_window, min_size=1, max_size=5).map(lambda s: tuple(sorted(s))),
    max_size=3).map(lambda d: tuple(sorted(d.items())))


@settings(max_examples=300, derandomize=True)
@given(_ts_windows, st.integers(0, 1 << 31))
def test_the_windows_codec_round_trips_canonically(
        windows: tuple[tuple[str, tuple[tuple[int, int], ...]], ...], time: int) -> None:
    ts = trust.Timestamp(7, time, time + DAY, windows=windows)
    wire = trust.sign(ts)
    signed = trust.decode_timestamp(wire)
    assert signed.timestamp == ts and signed.wire == wire
    plain = trust.encode_body(replace(ts, windows=()))
    assert (signed.body == plain) is (not windows)  # no windows: no field 6, the old bytes


@pytest.mark.parametrize(("windows", "why"), [
    ((("lockbox", ()),), "1..16 windows"),
    ((("lockbox", ((1440, 1),)),), "starts at minute 0..1439"),
    ((("lockbox", ((0, 0),)),), "lasts 1..1440"),
    ((("lockbox", ((60, 1), (0, 1))),), "sorted and distinct"),
    ((("z", ((0, 1),)), ("a", ((0, 1),))), "sorted by product"),
    ((("Bad Name", ((0, 1),)),), "product"),
])
def test_malformed_windows_are_refused(
        windows: tuple[tuple[str, tuple[tuple[int, int], ...]], ...], why: str) -> None:
    with pytest.raises(TrustError, match=why):
        trust.sign(trust.Timestamp(1, T0, T0 + DAY, windows=windows))


def test_an_empty_windows_field_is_not_canonical() -> None:
    body = trust.encode_body(trust.Timestamp(1, T0, T0 + DAY))
    fields = msgpack.unpackb(body, strict_map_key=False)
    fields[6] = []
    wire = msgpack.packb([1, int(trust.Kind.TIMESTAMP), msgpack.packb(fields), []])
    with pytest.raises(TrustError, match="non-empty list"):
        trust.decode_timestamp(wire)


def test_a_waiting_box_says_so_in_its_summary_and_signed_report_after_a_reboot(
        rel: Releases) -> None:
    box = built(rel, at(14), timestamp(1, T0, windows=NIGHT))
    device = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    again = Lockbox(box.flash, box.config, {}, identity=Identity("box-7", device))
    again.boot(at(15))  # the windows are in the journal: a power cut forgets nothing
    assert again.idle(at(15)) is IdleStep.WAIT_WINDOW
    session = pump_session(again, App(phone_cache(rel.store, "lockbox")), now=at(15))
    (rep,) = [report.verify(w, device.public_key()) for w in session.box_reports]
    assert (rep.state, rep.target) == (p.BoxState.WAIT_WINDOW, report.TargetProgress(
        rel.releases[1].version, again.ref.size if again.ref else -1,
        again.ref.size if again.ref else -1))
    # (this phone's copy of 1.1.0 is signed by other keys: another build, nothing is sent)
    assert (session.end, session.payload_sent) == (SessionEnd.TARGET_OTHER, 0)


def test_over_the_trust_frame_the_session_that_relays_a_timestamp_inside_a_window_installs(
        rel: Releases) -> None:
    """Protocol 2's frame 13 (t3's TrustStamp) is how a phone relays the timestamp: the
    clockless box's proof is that session's, and a session without it proves nothing."""
    box = built(rel, 0, timestamp(1, at(2, 10), expires=at(0, day=9), windows=NIGHT))

    def session(*events: p.Event) -> list[p.Event]:
        box.open_session(0)
        dec = v2.FrameDecoder(p.MAX_FRAME)
        dec.feed(box.receive_data(p.encode(p.Hello(2, 244)), 0))
        dec.feed(box.receive_data(b"".join(v2.encode(e, 244) for e in events), 0))
        box.end_session(0)
        return dec.events()

    assert [type(e) for e in session()] == [v2.Summary]
    assert box.idle(0) is IdleStep.WAIT_WINDOW
    stamp = timestamp(2, at(2, 30, day=1), expires=at(0, day=9), windows=NIGHT)
    got = session(v2.TrustStamp(stamp))
    assert got[1:] == [v2.TrustAnswer(0, 1, at(2, 30, day=1), 2, False)]
    assert box.idle(0) is IdleStep.INSTALLED
