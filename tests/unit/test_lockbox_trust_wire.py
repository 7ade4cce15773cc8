"""Trust on the wire, the box's side: protocol 2's TRUST frame (type 13) against a box with a
2-of-3 root. Every refusal leaves the state bytes as they were and the session READY."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fwdist import protocol as p
from fwdist import protocol_v2 as v2
from fwdist import trust
from fwdist.lockbox import Lockbox, Session
from fwdist.lockbox._session import TRANSITIONS
from fwdist.testing import Phone, Releases
from tests.trust_helpers import ROOT_KEYS, T0, key, root_v1, threshold, timestamp
from tests.unit.test_lockbox_trust import NOW, boxed, good

MAX = 244


@pytest.fixture(scope="module")
def rel(release_history: Callable[..., Releases]) -> Releases:
    return release_history(3, 24 * 1024, 2, deltas=False)


def opened(box: Lockbox) -> v2.FrameDecoder:
    """A protocol 2 session past the Summary (and the box's report): the phone's decoder."""
    box.open_session(NOW)
    dec = v2.FrameDecoder(p.MAX_FRAME)
    dec.feed(box.receive_data(p.encode(p.Hello(2, MAX)), NOW))
    assert [type(e) for e in dec.events()] == [v2.Summary]
    assert box.session is Session.READY
    return dec


def say(box: Lockbox, dec: v2.FrameDecoder, *events: p.Event) -> list[p.Event]:
    dec.feed(box.receive_data(b"".join(v2.encode(e, MAX) for e in events), NOW))
    return dec.events()


def chain(n: int) -> list[bytes]:
    """Links 2..n+1 after root_v1, each signed by a threshold of the old root and the new."""
    out, r = [], root_v1()
    for _ in range(n):
        r = trust.next_root(r)
        out.append(trust.sign(r, ROOT_KEYS[:2]))
    return out


def links(wires: list[bytes]) -> list[v2.TrustLink]:
    return [v2.TrustLink(w, i == len(wires) - 1) for i, w in enumerate(wires)]


def answer(reason: int, root: int, time: int = 0, stamp: int | None = None,
           dropped: bool = False) -> v2.TrustAnswer:
    return v2.TrustAnswer(int(reason), root, time, stamp, dropped)


def test_the_box_says_what_it_holds_and_writes_nothing(rel: Releases) -> None:
    box = boxed(rel)
    dec = opened(box)
    before = box.state_bytes()
    assert say(box, dec, v2.TrustAsk()) == [answer(0, 1)]
    assert box.state_bytes() == before and box.session is Session.READY


def test_a_two_link_chain_in_two_frames_is_answered_once_and_taken_whole(
        rel: Releases) -> None:
    box = boxed(rel)
    dec = opened(box)
    assert say(box, dec, *links(chain(2))) == [answer(0, 3)]
    assert box.trust_status()["root_version"] == 3
    assert say(box, dec, v2.TrustStamp(timestamp(4, T0))) == [answer(0, 3, T0, 4)]
    assert box.trust_status()["time"] == T0


@pytest.mark.parametrize("attack", ["garbage", "missing_link", "out_of_order", "badly_signed"])
def test_a_bad_chain_gets_a_reason_and_changes_nothing(rel: Releases, attack: str) -> None:
    box = boxed(rel)
    dec = opened(box)
    before = box.state_bytes()
    v2_, v3_ = chain(2)
    sent = {"garbage": [b"\x94" + b"\x00" * 3000], "missing_link": [v3_],
            "out_of_order": [v3_, v2_],
            "badly_signed": [v2_, trust.sign(trust.decode_root(v3_).root,
                                             [ROOT_KEYS[0], key("stranger")])]}[attack]
    assert say(box, dec, *links(sent)) == [answer(p.Reason.BAD_ROOT, 1)]
    assert box.state_bytes() == before and box.session is Session.READY
    assert say(box, dec, *links([v2_, v3_])) == [answer(0, 3)]  # the session goes on


def test_ten_thousand_links_are_refused_in_bounded_ram_and_change_nothing(
        rel: Releases) -> None:
    box = boxed(rel)
    dec = opened(box)
    before = box.state_bytes()
    link = chain(1)[0]
    per_chain = v2.CHAIN_RAM // len(link) + 1  # the link that overflows the buffer
    got: list[p.Event] = []
    for _ in range(100):  # 100 frames of 100 links, never a last one
        got += say(box, dec, *[v2.TrustLink(link, False)] * 100)
        assert sum(map(len, box._chain)) <= v2.CHAIN_RAM
    assert got == [answer(p.Reason.CHAIN_TOO_LONG, 1)] * (10_000 // per_chain)
    assert box.state_bytes() == before and box.session is Session.READY


def test_a_stale_and_a_forged_timestamp_change_nothing(rel: Releases) -> None:
    box = boxed(rel)
    dec = opened(box)
    assert say(box, dec, v2.TrustStamp(timestamp(2, T0 + 50))) == [answer(0, 1, T0 + 50, 2)]
    before = box.state_bytes()
    forged = trust.sign(trust.decode_timestamp(timestamp(3, T0 + 60)).timestamp,
                        [key("stranger")])
    assert say(box, dec, v2.TrustStamp(timestamp(1, T0 + 60)), v2.TrustStamp(forged),
               v2.TrustStamp(b"\x00garbage")) == [
        answer(p.Reason.STALE_TIMESTAMP, 1, T0 + 50, 2),
        answer(p.Reason.BAD_TIMESTAMP, 1, T0 + 50, 2),
        answer(p.Reason.BAD_TIMESTAMP, 1, T0 + 50, 2)]
    assert box.state_bytes() == before and box.session is Session.READY


def test_a_revoking_timestamp_drops_the_target_and_says_so(rel: Releases) -> None:
    box = boxed(rel)
    r1 = good(rel.releases[1])
    assert Phone([r1], holds=set()).session(box, NOW).rejected is None
    assert box.status()["target_version"] == r1.version
    clock = box.trust_status()["time"]
    assert clock == r1.manifest.created > T0  # (the accepted manifest's time is a proof too)
    dec = opened(box)
    revoke = timestamp(1, T0, revoked=(("lockbox", r1.version),))
    assert say(box, dec, v2.TrustStamp(revoke)) == [answer(0, 1, clock, 1, dropped=True)]
    assert (box.status()["state"], box.status()["target_version"]) == ("idle", None)


def test_trust_inside_an_offer_ends_the_session_and_changes_nothing(rel: Releases) -> None:
    box = boxed(rel)
    dec = opened(box)
    wire = good(rel.releases[1]).wire
    before = box.state_bytes()
    got = say(box, dec, p.Offer(len(wire), 0, wire[:100]), *links(chain(1)))
    assert [type(e) for e in got] == [p.Error] and box.session is Session.DONE
    assert got[0].code == p.ErrorCode.UNEXPECTED  # type: ignore[attr-defined]
    assert box.state_bytes() == before


def test_the_box_refuses_a_trust_answer_from_a_phone(rel: Releases) -> None:
    box = boxed(rel)
    dec = opened(box)
    got = say(box, dec, answer(0, 9))
    assert [type(e) for e in got] == [p.Error] and box.session is Session.DONE


@pytest.mark.parametrize("state", list(Session), ids=lambda s: s.name)
def test_trust_cells_of_the_session_table(state: Session) -> None:
    """Only READY takes the phone's three trust frames; no state takes the box's answer."""
    for ev in (v2.TrustAsk, v2.TrustLink, v2.TrustStamp):
        entry = TRANSITIONS.get((state, ev))
        if state is Session.READY:
            assert entry is not None and entry[1] == frozenset({Session.READY})
        else:
            assert entry is None
    assert (state, v2.TrustAnswer) not in TRANSITIONS


def test_a_box_a_rotation_leaves_behind_still_verifies_under_a_new_release_role(
        rel: Releases) -> None:
    """After a relayed rotation to new release keys the old signers' release is refused."""
    box = boxed(rel)
    dec = opened(box)
    new_keys = [key(f"release-w{i}") for i in range(3)]
    r2 = trust.next_root(root_v1(), releases=(trust.ReleaseRole(threshold(2, new_keys)),))
    assert say(box, dec, v2.TrustLink(trust.sign(r2, ROOT_KEYS[:2]))) == [answer(0, 2)]
    assert box.judge(good(rel.releases[1]).wire, NOW) is p.Reason.UNKNOWN_KEY
