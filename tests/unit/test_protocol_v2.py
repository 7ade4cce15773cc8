"""Protocol version 2: exact frame sizes, strict decoding, negotiation, and whole updates.

The version-1 box (``BoxConfig(protocols=(1,))``, the field's firmware) against
today's phone, a version-2 box against it, and the byte counts that are the
point of version 2 (4 bytes around a data chunk, a resumed session's set-up
under 64 bytes both ways, acknowledgements under 1 %).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdist import protocol as p
from fwdist import protocol_v2 as v2
from fwdist.app import App, FrameCache, PhoneCache, SessionEnd, data_frames_v2
from fwdist.lockbox import BoxConfig, IdleStep, Lockbox
from fwdist.manifest import key_id
from fwdist.pump import pump_session
from fwdist.releases import phone_cache
from fwdist.store import Store

sys.path.insert(0, str(Path(__file__).parent))
import test_app
from test_app import (
    NOW,
    SAMPLE,
    idle,
    sessions_until_installed,
)

TAG = b"\x9a\xac\x0f\x86"


# the same staged releases as test_app's (its module-scoped fixtures, staged once here too)
released = test_app.released
cache = test_app.cache


def new_box(key: Ed25519PrivateKey, **config: object) -> Lockbox:
    cfg = BoxConfig("lockbox", "lockbox", ram_budget=4 << 20, **config)  # type: ignore[arg-type]
    flash = cfg.make_flash()
    Lockbox.provision(flash, cfg, SAMPLE.image(0), "1.0.0")
    box = Lockbox(flash, cfg, {key_id(key.public_key()): key.public_key()})
    box.boot(NOW)
    return box


def decode(data: bytes, max_frame: int = 244, tag: bytes | None = TAG) -> list[p.Event]:
    dec = v2.FrameDecoder(max_frame, tag)
    dec.feed(data)
    out = dec.events()
    assert dec.pending == 0
    return out


STATUS = p.Status(2, "lockbox", "lb-r2", "1.0.0", 0, bytes(range(32)), 87, 1, 8, 244,
                  p.Target(TAG, "1.1.0", 40, b"\x00\x00", ((0, 4096),), 0))


# -- frames, byte for byte -----------------------------------------------------------------


def test_a_full_data_chunk_spends_4_bytes_of_244() -> None:
    frames = list(data_frames_v2(TAG, 0, bytes(1000), 4096 - 3000, 8, 244))
    assert frames == []  # nothing at or past the end
    frames = list(data_frames_v2(TAG, 3, bytes(range(256)) * 4, 0, 8, 244))
    assert [len(f) for f, _ in frames] == [10, 244, 244, 244, 244, 68]
    assert [n for _, n in frames] == [0, 240, 240, 240, 240, 64]
    assert frames[0][0][:8].hex() == "c006" + TAG.hex() + "0400"  # Seek: piece 3 (+1), offset 0
    evs = decode(b"".join(f for f, _ in frames))
    assert [(e.piece, e.offset, len(e.data)) for e in evs if isinstance(e, p.Data)] == [
        (3, 0, 240), (3, 240, 240), (3, 480, 240), (3, 720, 240), (3, 960, 64)]
    assert v2.data_capacity(244) == 240 and v2.data_capacity(20) == 16
    assert v2.data_capacity(4096) == 4092


def test_progress_and_set_up_frames_are_small() -> None:
    assert len(v2.encode(p.Ack(TAG, 0, 6144), 244)) == 7
    assert len(v2.encode(p.PieceComplete(TAG, 0), 244)) == 5
    assert len(v2.encode(p.ReleaseComplete(TAG), 244)) == 4
    assert len(v2.encode(p.Accept(TAG, 1), 244)) == 9
    assert len(p.encode(p.Hello(2, 244))) == 11
    summary = v2.encode(v2.summarize(STATUS), 244)
    assert len(summary) == 48  # 11 + 48: a resumed target's set-up, both ways, is 59 bytes
    assert summary.hex() == ("202c" "02" "fcd2450f" "05312e302e30" "00" "0001020304050607"
                             "570107" "f401" "01" "9aac0f86" "05312e312e30" "00" "28" "00" "00"
                             "01" "0180" "20" + summary[-2:].hex())


def test_the_summary_carries_the_targets_picture() -> None:
    bitmap = b"\xff\xff\x0f\x00\x00"
    t = p.Target(TAG, "1.1.0", 90, bitmap, ((20, 512), (22, 8)), 3)
    (got,) = decode(v2.encode(v2.summarize(replace(STATUS, target=t)), 244))
    assert isinstance(got, v2.Summary) and got.target is not None
    assert got.target == replace(t, bitmap=b"\xff\xff\x0f")  # trailing zero bytes cut
    assert [got.target.has(i) for i in (15, 19, 20, 40)] == [True, True, False, False]
    assert got.is_for("lockbox", "lb-r2") and not got.is_for("lockbox", "lb-r3")
    assert got.runs(bytes(range(32))) and not got.runs(bytes(32))


def test_a_chunk_out_of_step_is_refused_at_once() -> None:
    """The check covers the chunk's implied place: a lost frame shows at the next one."""
    frames = [f for f, _ in data_frames_v2(TAG, 1, bytes(720), 0, 8, 244)]
    with pytest.raises(p.RemoteProtocolError) as e:
        decode(frames[0] + frames[1] + frames[3])  # the chunk at 240 went missing
    assert e.value.code is p.ErrorCode.BAD_CRC
    with pytest.raises(p.RemoteProtocolError) as e:
        decode(frames[1])  # a chunk with no seek before it
    assert e.value.code is p.ErrorCode.UNEXPECTED


@pytest.mark.parametrize(("frame", "code"), [
    (bytes.fromhex("f00000"), p.ErrorCode.UNKNOWN_TYPE),
    (bytes.fromhex("1000"), p.ErrorCode.UNKNOWN_TYPE),
    (bytes.fromhex("20ff"), p.ErrorCode.FRAME_TOO_LARGE),  # 259 bytes of status at 244
    (v2.encode(p.Ack(TAG, 0, 5), 244)[:-1] + b"\x00", p.ErrorCode.BAD_CRC),
])
def test_broken_frames_raise_the_protocol_error(frame: bytes, code: p.ErrorCode) -> None:
    with pytest.raises(p.RemoteProtocolError) as e:
        decode(frame + bytes(2))
    assert e.value.code is code


def test_integers_must_be_in_their_shortest_form() -> None:
    good = v2.encode(p.Reject(3), 244)
    body = (v2.T_ACK << 12 | 3).to_bytes(2, "big") + b"\x01\x85\x00"  # 5 as two bytes
    bad = body + v2._check_word(b"", body)
    assert decode(good) == [p.Reject(3)]
    with pytest.raises(p.RemoteProtocolError, match="shortest"):
        decode(bad)


_events = st.one_of(
    st.builds(v2.Summary, st.integers(0, 255), st.binary(min_size=4, max_size=4),
              st.sampled_from(["1.0.0", "22.3.999"]), st.integers(0, 2**32 - 1),
              st.binary(min_size=8, max_size=8), st.integers(0, 100), st.integers(0, 255),
              st.integers(1, 256), st.integers(20, 4096),
              st.none() | st.builds(
                  p.Target, st.just(TAG), st.just("1.1.0"), st.integers(0, 2**32 - 1),
                  st.binary(max_size=40).map(lambda b: b.rstrip(b"\x00")),
                  st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1)),
                           max_size=4).map(tuple), st.integers(0, 255))),
    st.builds(p.Offer, st.just(300), st.integers(0, 200), st.binary(min_size=1, max_size=100)),
    st.builds(p.Accept, st.just(TAG), st.integers(0, 255)),
    st.builds(p.Reject, st.integers(0, 255)),
    st.builds(p.Ack, st.just(TAG), st.integers(-1, 0xFFFF), st.integers(0, 1 << 24)),
    st.builds(p.PieceComplete, st.just(TAG), st.integers(-1, 0xFFFF)),
    st.builds(p.ReleaseComplete, st.just(TAG)),
    st.builds(p.Installed, st.sampled_from(["1.1.0", "x" * 64]), st.booleans()),
    st.builds(p.Error, st.integers(0, 255), st.text(max_size=60)),
)


@settings(max_examples=500, derandomize=True)
@given(_events)
def test_every_event_round_trips(ev: p.Event) -> None:
    frame = v2.encode(ev, 4096)
    assert decode(frame, 4096) == [ev]
    assert v2.encode(decode(frame, 4096)[0], 4096) == frame


# -- negotiation and whole updates -----------------------------------------------------------


def test_the_version_1_box_updates_from_todays_phone(
    cache: PhoneCache, released: tuple[Store, Ed25519PrivateKey]
) -> None:
    """Version-1 firmware refuses the Hello naming 2; the phone calls again speaking 1."""
    box = new_box(released[1], protocols=(1,), ack_every=512)
    reports = sessions_until_installed(box, [cache], 600, make=App)
    assert box.running_image() == SAMPLE.image(1)
    assert {r.protocol for r in reports} == {1}
    # each session: the refused link (an 11-byte Hello, the box's 37-byte Error), then version 1
    # on the rest of the 600 bytes (as test_app's version-1 sessions, 11 bytes shorter)
    assert [(r.sent_bytes, r.received_bytes) for r in reports] == [
        (600, 124), (600, 128), (600, 128), (600, 128), (591, 157), (22, 124)]


def test_a_version_2_box_updates_in_version_2(
    cache: PhoneCache, released: tuple[Store, Ed25519PrivateKey]
) -> None:
    box = new_box(released[1], ack_every=512)
    reports = sessions_until_installed(box, [cache], 600, make=App)
    assert box.running_image() == SAMPLE.image(1)
    assert {r.protocol for r in reports} == {2}
    # the 235-byte format 2 delta manifest (4 rows inline, no table) instead of format 1's 320 +
    # its table: 5 sessions where format 1 over protocol 2 took 6 ([(600, 476, 39), (600, 462,
    # 46), (600, 512, 47), (600, 512, 47), (545, 512, 56), (11, 0, 41)])
    assert [(r.sent_bytes, r.payload_sent, r.received_bytes) for r in reports] == [
        (600, 474, 39), (600, 452, 48), (600, 512, 49), (600, 512, 49), (302, 272, 58),
        (11, 0, 41)]
    # version 1 spent [211, 229, 179, 179, 188, 98] bytes of overhead on the same sessions;
    # format 1 over protocol 2 [163, 184, 135, 135, 89, 52]
    assert [r.overhead_bytes for r in reports] == [165, 196, 137, 137, 88, 52]


def test_resuming_a_known_target_costs_under_64_bytes_of_set_up(
    cache: PhoneCache, released: tuple[Store, Ed25519PrivateKey]
) -> None:
    box = new_box(released[1])
    first = pump_session(box, App(cache), 900, NOW)  # the manifest and one of the 4 pieces
    assert not first.complete and box.status()["target_version"] == "1.1.0"
    assert box.status()["pieces_done"] == 1
    box.open_session(NOW)
    hello = p.encode(p.Hello(2, 244))
    answer = box.receive_data(hello, NOW)
    (summary,) = decode(answer)
    assert isinstance(summary, v2.Summary) and summary.target is not None
    # (format 1 over protocol 2 left piece 3 at 240 bytes, and the resume cost 60 bytes)
    assert summary.target.partials == () and len(hello) + len(answer) == 57
    box.end_session(NOW)


def test_a_version_1_phone_cannot_talk_to_a_version_2_only_box(
    cache: PhoneCache, released: tuple[Store, Ed25519PrivateKey]
) -> None:
    box = new_box(released[1], protocols=(2,))
    r = pump_session(box, App(cache, version=1), None, NOW)
    assert r.end is SessionEnd.BOX_ENDED and r.detail is not None
    assert r.detail.startswith("UNSUPPORTED_VERSION") and r.protocol == 1


@pytest.mark.parametrize(("max_frame", "sent"), [(20, 2786), (64, 2438), (244, 2324),
                                                 (4096, 2325)])  # format 1: 3096 2724 2598 2599
def test_any_ble_frame_size_carries_the_release(
    cache: PhoneCache, released: tuple[Store, Ed25519PrivateKey], max_frame: int, sent: int
) -> None:
    """ATT MTU 23 (20-byte writes) up to an L2CAP channel's 4096: the same release arrives."""
    box = new_box(released[1])
    r = pump_session(box, App(cache, max_frame=max_frame), None, NOW)
    assert r.complete and r.protocol == 2 and r.sent_bytes == sent
    assert idle(box) == [IdleStep.BUILT, IdleStep.INSTALLED]


def test_acknowledgements_stay_under_1_percent(released: tuple[Store, Ed25519PrivateKey]) -> None:
    """A box on an unknown image takes the full image's pieces (14 KB): its Acks, counted."""
    from fwdist.sample import SampleFirmware

    key = released[1]
    cache = phone_cache(released[0], "lockbox")
    cfg = BoxConfig("lockbox", "lockbox", ram_budget=4 << 20)  # the library's ack_every: 2048
    flash = cfg.make_flash()
    Lockbox.provision(flash, cfg, SampleFirmware(size=40_000, seed=99).image(0), "0.9.0")
    box = Lockbox(flash, cfg, {key_id(key.public_key()): key.public_key()})
    box.boot(NOW)
    said: list[bytes] = []
    receive = box.receive_data
    box.receive_data = lambda data, now=0: said.append(receive(data, now)) or said[-1]  # type: ignore[method-assign]
    r = pump_session(box, App(cache), None, NOW)
    assert r.complete and r.protocol == 2
    evs = decode(b"".join(said), tag=cache.tag)
    acks = [e for e in evs if isinstance(e, p.Ack)]
    # pieces of 2-3 KB compressed: a version-2 box acks every 4 KiB (v2.ACK_EVERY) it persists
    # of a piece, so these get only their PieceComplete; version 1 acked two of them at 2048
    # (format 1's manifest and msgpack table: 14,582 and 93)
    assert acks == [] and r.sent_bytes == 14_265
    assert r.received_bytes == sum(map(len, said)) == 88
    big = new_box(key, ack_every=512)  # ... and a box that asks for more still gets 4 KiB
    assert big.rx.ack_every == 512
    big.open_session(NOW)
    big.receive_data(p.encode(p.Hello(2, 244)), NOW)
    assert big.rx.ack_every == v2.ACK_EVERY == 4096
    assert 7 / v2.ACK_EVERY < 0.002  # 0.17 % of the bytes at most


def test_a_walk_away_loses_no_whole_frame(
    cache: PhoneCache, released: tuple[Store, Ed25519PrivateKey]
) -> None:
    """The box persists every chunk before it counts: what left whole is what it kept."""
    for budget in (700, 900, 1333, 2000):
        box = new_box(released[1])
        r = pump_session(box, App(cache), budget, NOW)
        st = box.status()
        table = box.status_frame().target
        assert table is not None
        t = box.s.target if box.s else None
        assert t is not None and t.mlen == len(cache.air[1])  # the format 2 delta manifest
        kept = t.mlen + table.table_received + st["received_bytes"]
        assert kept == r.payload_sent, budget


def test_the_frame_cache_changes_no_byte_in_version_2(cache: PhoneCache) -> None:
    fc = FrameCache()
    data = bytes(range(256)) * 9
    plain = list(data_frames_v2(TAG, 2, data, 100, 8, 244))
    assert list(fc.frames(TAG, 2, data, 100, 8, 244, version=2)) == plain
    assert list(fc.frames(TAG, 2, data, 100, 8, 244, version=2)) == plain
    assert list(fc.frames(TAG, 2, data, 100, 8, 244)) != plain  # version 1's frames
