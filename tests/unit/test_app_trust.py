"""Trust on the wire, the phone's side: a PhoneCache with root links and a timestamp relays
them to a protocol 2 box after its Summary and only then decides what to offer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import protocol as p
from fwdist import protocol_v2 as v2
from fwdist import trust
from fwdist.app import TRANSITIONS, App, Phase, PhoneCache, Relayed, SessionEnd, root_chains
from fwdist.lockbox import Identity, IdleStep, Lockbox
from fwdist.pump import pump_session
from fwdist.releases import phone_cache
from fwdist.testing import Releases
from tests.trust_helpers import ROOT_KEYS, T0, key, root_v1, threshold, timestamp
from tests.unit.test_lockbox_trust import NOW, ROOT1, boxed, good, resign

NEW_KEYS = [key(f"release-n{i}") for i in range(3)]


@pytest.fixture(scope="module")
def rel(release_history: Callable[..., Releases]) -> Releases:
    return release_history(3, 24 * 1024, 2, deltas=False)


def carrying(rel: Releases, i: int, wire: bytes, roots: tuple[bytes, ...] = (),
             stamp: bytes | None = None) -> PhoneCache:
    """Release ``i`` as a phone carries it, under manifest ``wire`` (re-signed), and trust."""
    cache = phone_cache(rel.store, "lockbox", rel.releases[i].version)
    return replace(cache, manifest_wire=wire, air=(), roots=roots, timestamp=stamp)


def rotation() -> list[bytes]:
    """Root 2 keeps the release role; root 3 hands releases to NEW_KEYS (2-of-3)."""
    r2 = trust.next_root(root_v1())
    r3 = trust.next_root(r2, releases=(trust.ReleaseRole(threshold(2, NEW_KEYS)),))
    return [trust.sign(r, ROOT_KEYS[:2]) for r in (r2, r3)]


def ans(reason: int, root: int | None, time: int = 0, stamp: int | None = None,
        dropped: bool = False) -> v2.TrustAnswer:
    return v2.TrustAnswer(int(reason), root, time, stamp, dropped)


def test_a_rotation_then_a_release_only_the_new_root_accepts_in_one_session(
        rel: Releases) -> None:
    box = boxed(rel)
    r1 = resign(rel.releases[1], NEW_KEYS[:2])
    assert box.judge(r1.wire, NOW) is p.Reason.UNKNOWN_KEY  # root 1 does not know the signers
    cache = carrying(rel, 1, r1.wire, (ROOT1, *reversed(rotation())), timestamp(5, T0))
    got = pump_session(box, App(cache), now=NOW)
    assert got.trust == ((Relayed.ASK, ans(0, 1)), (Relayed.ROOT_CHAIN, ans(0, 3)),
                         (Relayed.TIMESTAMP, ans(0, 3, T0, 5)))
    assert (got.complete, got.rejected, got.end) == (True, None, None)
    assert [box.idle(NOW), box.idle(NOW)] == [IdleStep.BUILT, IdleStep.INSTALLED]
    ts = box.trust_status()
    # (the accepted manifest's creation time, one second after the stamp's, raised the clock)
    assert r1.manifest.created == T0 + 1
    assert (ts["root_version"], ts["time"], ts["timestamp_version"]) == (3, T0 + 1, 5)
    assert got.as_json()["trust"][1] == {"sent": "root_chain", "reason": None,
                                         "root_version": 3, "time": 0,
                                         "timestamp_version": None, "dropped": False}


def test_a_current_box_is_only_asked(rel: Releases) -> None:
    box = boxed(rel)
    stamp = timestamp(2, T0)
    assert box.offer_timestamp(stamp, NOW) is None
    cache = carrying(rel, 1, good(rel.releases[1]).wire, (ROOT1,), stamp)
    got = pump_session(box, App(cache), now=NOW)
    assert got.trust == ((Relayed.ASK, ans(0, 1, T0, 2)),)
    assert got.complete


def test_a_phone_without_trust_files_and_a_version_1_session_send_no_trust_frame(
        rel: Releases) -> None:
    wire = good(rel.releases[1]).wire
    plain = pump_session(boxed(rel), App(carrying(rel, 1, wire)), now=NOW)
    v1box = boxed(rel)
    cache = carrying(rel, 1, wire, tuple(rotation()), timestamp(5, T0))
    v1 = pump_session(v1box, App(cache, version=p.PROTOCOL_VERSION), now=NOW)
    assert (plain.trust, v1.trust, plain.complete, v1.complete) == ((), (), True, True)
    assert v1box.trust_status()["root_version"] == 1  # nothing relayed over version 1


def test_a_refused_chain_is_reported_and_the_release_still_offered(rel: Releases) -> None:
    box = boxed(rel)
    bad = trust.sign(trust.decode_root(rotation()[0]).root, [ROOT_KEYS[0], key("stranger")])
    cache = carrying(rel, 1, good(rel.releases[1]).wire, (bad,), None)
    got = pump_session(box, App(cache), now=NOW)
    assert got.trust == ((Relayed.ASK, ans(0, 1)), (Relayed.ROOT_CHAIN, ans(p.Reason.BAD_ROOT, 1)))
    assert got.complete and box.trust_status()["root_version"] == 1
    assert got.as_json()["trust"][1]["reason"] == "BAD_ROOT"


def test_a_target_the_timestamp_revokes_is_dropped_and_then_refused(rel: Releases) -> None:
    box = boxed(rel)
    r1 = good(rel.releases[1])
    first = pump_session(box, App(carrying(rel, 1, r1.wire)), budget_bytes=2000, now=NOW)
    assert box.status()["target_version"] == r1.version and not first.complete
    clock = box.trust_status()["time"]
    revoke = timestamp(1, T0, revoked=(("lockbox", r1.version),))
    got = pump_session(box, App(carrying(rel, 1, r1.wire, (), revoke)), now=NOW)
    assert got.trust == ((Relayed.ASK, ans(0, 1, clock)),
                         (Relayed.TIMESTAMP, ans(0, 1, clock, 1, dropped=True)))
    assert (got.rejected, got.payload_sent) == ("REVOKED", len(r1.wire))
    assert (box.status()["state"], box.status()["target_version"]) == ("idle", None)


def test_a_long_catch_up_is_cut_into_chains_the_box_buffers(rel: Releases) -> None:
    links, r = [], root_v1()
    for _ in range(25):
        r = trust.next_root(r)
        links.append(trust.sign(r, ROOT_KEYS[:2]))
    chains = root_chains(links)
    assert [len(c) for c in chains] == [19, 6]
    box = boxed(rel)
    got = pump_session(box, App(carrying(rel, 1, good(rel.releases[1]).wire, tuple(links))),
                       now=NOW)
    assert got.trust == ((Relayed.ASK, ans(0, 1)), (Relayed.ROOT_CHAIN, ans(0, 20)),
                         (Relayed.ROOT_CHAIN, ans(0, 26)))
    assert box.trust_status()["root_version"] == 26


def test_the_trust_phase_cells(rel: Releases) -> None:
    """In TRUST only a TrustAnswer is news; anything else but Installed, a report or an Error
    is the box's mistake (the phone answers Error and ends); a second answer to one ASK too."""
    cache = carrying(rel, 1, good(rel.releases[1]).wire, (), timestamp(1, T0))

    def in_trust() -> App:
        a = App(cache)
        a.data_to_send()
        a.receive_data(_summary(boxed(rel)))
        assert a.phase is Phase.TRUST
        a.data_to_send()
        return a

    assert {ev for (ph, ev) in TRANSITIONS if ph is Phase.TRUST} == {
        v2.TrustAnswer, p.Installed, v2.BoxReport, p.Error}
    a = in_trust()
    a.receive_data(v2.encode(p.Accept(cache.tag), 244))
    assert a.session_over and a.report().end is SessionEnd.BOX_BROKE
    a = in_trust()
    a.receive_data(v2.encode(ans(0, 1), 244))  # the ASK's answer: the phone sends its stamp
    assert a.phase is Phase.TRUST
    a.receive_data(v2.encode(ans(0, 1), 244) + v2.encode(ans(0, 1), 244))
    assert a.report().end is SessionEnd.BOX_BROKE  # (the second was answer to nothing)


def _summary(box: Lockbox) -> bytes:
    """``box``'s version 2 Summary (a box without a device key sends no report after it)."""
    box.open_session(NOW)
    out = box.receive_data(p.encode(p.Hello(2, 244)), NOW)
    box.end_session(NOW)
    return out


def test_a_cohort_rule_decides_after_the_trust_relay_from_the_report_that_came_first(
        rel: Releases) -> None:
    """w1 + t3: the box's report arrives with its Summary, before the trust answers; a
    ``decide`` rule is asked once the relay is over, with that report. A box outside the
    cohort still gets the timestamp (trust is not a rollout's to withhold)."""
    device = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    for answer in (False, True):
        plain = boxed(rel)
        box = Lockbox(plain.flash, plain.config, {}, identity=Identity("box-3", device))
        box.boot(NOW)
        seen: list[str | None] = []

        def decide(rep: object, answer: bool = answer, seen: list[str | None] = seen) -> bool:
            seen.append(getattr(rep, "box_id", None))
            return answer

        cache = carrying(rel, 1, good(rel.releases[1]).wire, (ROOT1,), timestamp(4, T0))
        got = pump_session(box, App(cache, decide=decide), now=NOW)
        assert got.trust == ((Relayed.ASK, ans(0, 1)), (Relayed.TIMESTAMP, ans(0, 1, T0, 4)))
        assert seen == ["box-3"] and box.trust_status()["timestamp_version"] == 4
        assert (got.end, got.complete) == ((None, True) if answer
                                           else (SessionEnd.NOT_OFFERED, False))
