"""The phone's side: what it carries, what it sends for each thing a box can say, what it counts.

Box replies are crafted with the protocol's own encoder, so every branch of the
App's table is reached without a lockbox; the conversation with the real
lockbox (in memory and over trio streams) is at the end of the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdist import app as appmod
from fwdist import protocol, pump, report, trio_link, trust
from fwdist import protocol_v2 as v2
from fwdist.app import App as _App
from fwdist.app import FrameCache, PhoneCache, Send, SessionEnd, SessionReport, send_order
from fwdist.chunker import ChunkerParams
from fwdist.errors import ManifestError
from fwdist.lockbox import BoxConfig, IdleStep, Lockbox
from fwdist.manifest import PieceEntry, PieceTable, key_id
from fwdist.protocol import (
    Accept,
    Ack,
    BoxState,
    Data,
    Error,
    Installed,
    Offer,
    PieceComplete,
    Reject,
    ReleaseComplete,
    Status,
    Target,
)
from fwdist.pump import BoxEndpoint, LinkEnd, pump_session
from fwdist.releases import load_manifest, phone_cache, release_image
from fwdist.sample import SampleFirmware
from fwdist.staging import StageOptions, stage
from fwdist.store import Store
from tests.trust_helpers import ROOT_KEYS, T0, root_v1
from tests.trust_helpers import timestamp as ts_wire

CHUNKS = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)
SAMPLE = SampleFirmware(size=64 * 1024, seed=3)



def App(cache: PhoneCache, **kwargs: object) -> _App:
    """The phone speaking version 1: these tests script version-1 boxes byte for byte
    (``test_protocol_v2.py`` runs version 2, and the fallback from it)."""
    return _App(cache, version=1, **kwargs)  # type: ignore[arg-type]

def stage_releases(root: Path, key: Ed25519PrivateKey, releases: int = 2) -> Store:
    store = Store.open(root / "store", create=True)
    for r in range(releases):
        image = root / f"fw-{r}.bin"
        image.write_bytes(SAMPLE.image(r))
        sources = (SAMPLE.version(r - 1),) if r else ()
        stage(store, image, key, StageOptions("lockbox", SAMPLE.version(r), sources=sources,
                                              chunker=CHUNKS, delta_piece_size=512,
                                              now=1_700_000_000))
    return store


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    return stage_releases(tmp_path_factory.mktemp("app"), key), key


@pytest.fixture(scope="module")
def cache(released: tuple[Store, Ed25519PrivateKey]) -> PhoneCache:
    return phone_cache(released[0], "lockbox")


V1_SHA = hashlib.sha256(SAMPLE.image(0)).digest()
V2_SHA = hashlib.sha256(SAMPLE.image(1)).digest()


def status(target: Target | None = None, running: str = "1.0.0", sha: bytes = V1_SHA,
           state: int = BoxState.IDLE, align: int = 8, max_frame: int = 244) -> bytes:
    return protocol.encode(Status(protocol.PROTOCOL_VERSION, "lockbox", "lockbox", running, 0, sha,
                                  100, int(state), align, max_frame, target))


def events(data: bytes) -> list[protocol.Event]:
    return protocol.decode_frames(data, protocol.MAX_FRAME)


# -- the cache ---------------------------------------------------------------------


def test_phone_cache_holds_every_payload(
    cache: PhoneCache, released: tuple[Store, object]
) -> None:
    store = released[0]
    m = cache.manifest
    assert m.version == "1.1.0" and len(m.deltas) == 1
    assert set(cache.tables) == {m.full.table_sha256, m.deltas[0].table_sha256}
    assert (len(cache.frames), len(cache.raw)) == (m.full.pieces, m.deltas[0].pieces)
    assert sum(map(len, cache.frames.values())) == m.full.size
    assert sum(map(len, cache.raw.values())) == m.deltas[0].size
    assert cache.manifest_wire == store.get_manifest("lockbox", "1.1.0")
    older = phone_cache(store, "lockbox", "1.0.0")
    assert older.manifest.version == "1.0.0" and not older.raw
    with pytest.raises(appmod.AppError, match="no release of other"):
        phone_cache(store, "other")


def test_keep_pieces_shares_bytes(cache: PhoneCache) -> None:
    ids = sorted(cache.raw)[:3]
    half = cache.keep_pieces(lambda pid: pid in ids)
    assert sorted(half.raw) == ids and not half.frames
    assert all(half.raw[i] is cache.raw[i] for i in ids)
    assert half.tables is cache.tables


# -- the order pieces go in ----------------------------------------------------------


def test_send_order_table_then_begun_then_smallest() -> None:
    sizes = [900, 300, 500, 300, 700, 100]
    table = PieceTable(False, tuple(PieceEntry(bytes([i]) * 32, s, s) for i, s in enumerate(sizes)))
    bitmap = bytes([0b0000_0100])  # piece 2 is verified
    target = Target(b"tag1", "1.1.0", 10, bitmap, ((0, 800), (4, 200)))
    held = {i: bytes(s) for i, s in enumerate(sizes) if i != 5}  # phone lacks piece 5
    order = send_order(table, b"t" * 42, target, held.get)
    assert [(s.piece, s.offset) for s in order] == [
        (protocol.TABLE, 10), (0, 800), (4, 200), (1, 0), (3, 0)]
    # a table already whole is not sent; a partial offset past the end restarts the piece
    whole = Target(b"tag1", "1.1.0", 42, bitmap, ((0, 5000),))
    assert [s.piece for s in send_order(table, b"t" * 42, whole, held.get)] == [1, 3, 4, 0]
    assert Send(0, 800, bytes(900)).remaining == 100


# -- the decision table ----------------------------------------------------------------


def test_opens_with_hello(cache: PhoneCache) -> None:
    a = App(cache)
    assert events(a.data_to_send()) == [protocol.Hello(protocol.PROTOCOL_VERSION, 244)]
    assert a.data_to_send() == b"" and not a.session_over


@pytest.mark.parametrize(
    ("box", "end", "reason", "installed", "complete"),
    [
        (status(running="1.1.0", sha=V2_SHA), SessionEnd.UP_TO_DATE,
         "box already runs this release", True, True),
        (status(running="1.2.0", sha=b"\x01" * 32), SessionEnd.BOX_NEWER,
         "box runs a newer release", False, False),
        (status(Target(b"abcd", "1.3.0", 0, b"")), SessionEnd.TARGET_NEWER,
         "box is receiving a newer release", False, False),
        (status(Target(b"abcd", "1.1.0", 0, b"")), SessionEnd.TARGET_OTHER,
         "box is receiving another build of this version", False, False),
    ],
)
def test_nothing_to_do_ends_politely(
    cache: PhoneCache, box: bytes, end: SessionEnd, reason: str, installed: bool, complete: bool
) -> None:
    a = App(cache)
    hello = a.data_to_send()
    a.receive_data(box)
    assert a.session_over and a.data_to_send() == b""
    r = a.report()
    assert (r.end, r.reason, r.installed, r.complete) == (end, reason, installed, complete)
    assert r.as_json()["reason"] == reason
    assert r.sent_bytes == len(hello) and r.acked_bytes == 0 and r.payload_sent == 0


def test_other_product_is_left_alone(cache: PhoneCache) -> None:
    a = App(cache)
    a.data_to_send()
    a.receive_data(protocol.encode(Status(1, "doorbell", "doorbell", "1.0.0", 0, V1_SHA, 100,
                                          0, 8, 244, None)))
    assert a.session_over and a.report().end is SessionEnd.OTHER_PRODUCT


def offered(a: App) -> bytes:
    out = events(a.data_to_send())
    assert all(isinstance(e, Offer) for e in out)
    return b"".join(e.data for e in out if isinstance(e, Offer))


def test_offers_the_manifest_in_frames_that_fit(cache: PhoneCache) -> None:
    for target in (None, Target(b"abcd", "1.0.5", 99, b"\xff")):  # nothing, or an older target
        a = App(cache)
        a.data_to_send()
        a.receive_data(status(target, max_frame=protocol.MIN_FRAME))
        out = a.data_to_send()
        assert max(len(f) for f in _split(out)) == protocol.MIN_FRAME
        assert b"".join(e.data for e in events(out)) == cache.manifest_wire  # type: ignore[attr-defined]
        assert a.phase is appmod.Phase.OFFERING


def test_reject_ends_with_the_reason(cache: PhoneCache) -> None:
    a = App(cache)
    a.data_to_send()
    a.receive_data(status())
    a.data_to_send()
    a.receive_data(protocol.encode(Reject(int(protocol.Reason.COUNTER_LOWER))))
    r = a.report()
    assert a.session_over and r.reason == "box rejected the release: COUNTER_LOWER"
    assert (r.end, r.detail) == (SessionEnd.REJECTED, "COUNTER_LOWER")


def _split(data: bytes) -> list[bytes]:
    out = []
    while data:
        n = 2 + int.from_bytes(data[:2], "big")
        out.append(data[:n])
        data = data[n:]
    return out


def stream_all(a: App) -> list[Data]:
    frames: list[Data] = []
    while chunk := a.data_to_send():
        assert len(chunk) <= appmod.BATCH_BYTES + 244
        frames += [e for e in events(chunk) if isinstance(e, Data)]
    return frames


def reassemble(frames: list[Data]) -> dict[int, bytes]:
    out: dict[int, bytearray] = {}
    for f in frames:
        buf = out.setdefault(f.piece, bytearray())
        assert f.offset == len(buf) or f.offset < len(buf)
        buf[f.offset : f.offset + len(f.data)] = f.data
    return {k: bytes(v) for k, v in out.items()}


def test_accepted_release_streams_table_then_delta_pieces(cache: PhoneCache) -> None:
    a = App(cache)
    a.data_to_send()
    a.receive_data(status())  # runs 1.0.0: the delta applies
    a.data_to_send()
    a.receive_data(protocol.encode(Accept(cache.tag, 1)))
    frames = stream_all(a)
    ref = cache.manifest.deltas[0]
    got = cache.table(ref)
    assert got is not None
    table_data, table = got
    assert frames[0].piece == protocol.TABLE and all(f.tag == cache.tag for f in frames)
    assert all(f.offset % 8 == 0 for f in frames)
    pieces = reassemble(frames)
    assert pieces[protocol.TABLE] == table_data
    assert [pieces[i] for i in range(len(table.pieces))] == [
        cache.raw[e.id] for e in table.pieces]
    # smallest first: the short last piece of the delta leads the 512-byte ones
    order = list(dict.fromkeys(f.piece for f in frames))
    assert order[:2] == [protocol.TABLE, len(table.pieces) - 1]
    assert not a.session_over  # waits for the box to verify what it sent
    assert a.report().payload_sent == len(cache.manifest_wire) + len(table_data) + ref.size


def test_unknown_running_image_gets_full_pieces(cache: PhoneCache) -> None:
    a = App(cache)
    a.data_to_send()
    a.receive_data(status(running="0.9.0", sha=b"\x07" * 32))
    a.data_to_send()
    a.receive_data(protocol.encode(Accept(cache.tag)))
    pieces = reassemble(stream_all(a))
    m = cache.manifest
    got = cache.table(m.full)
    assert got is not None
    assert [pieces[i] for i in range(m.full.pieces)] == [cache.frames[e.id] for e in got[1].pieces]


def test_resume_at_the_box_offsets_and_count_acks(cache: PhoneCache) -> None:
    ref = cache.manifest.deltas[0]
    got = cache.table(ref)
    assert got is not None
    table_data, table = got
    sizes = [e.wire_size for e in table.pieces]
    assert sizes == [512, 512, 512, 452]
    target = Target(cache.tag, "1.1.0", len(table_data), b"\x03", ((3, 256),), 1)  # 0, 1 verified
    a = App(cache)
    a.data_to_send()
    a.receive_data(status(target, state=BoxState.RECEIVING))
    frames = stream_all(a)
    assert (frames[0].piece, frames[0].offset) == (3, 256)
    assert list(dict.fromkeys(f.piece for f in frames)) == [3, 2]
    assert a.report().acked_bytes == 0
    a.receive_data(protocol.encode(Ack(cache.tag, 3, 384)))
    assert a.report().acked_bytes == 128  # only what the box persisted since the session began
    for i in (3, 2):
        assert not a.session_over
        a.receive_data(protocol.encode(PieceComplete(cache.tag, i)))
    assert a.report().acked_bytes == (452 - 256) + 512
    # every piece the box lacked is verified now: complete, even before ReleaseComplete
    assert a.session_over and a.report().reason is None and a.report().complete
    # a phone holding only piece 3 finishes its part; the box is not complete
    only3 = cache.keep_pieces(lambda pid: pid == table.pieces[3].id)
    b = App(only3)
    b.data_to_send()
    b.receive_data(status(target, state=BoxState.RECEIVING))
    assert {f.piece for f in stream_all(b)} == {3}
    b.receive_data(protocol.encode(PieceComplete(cache.tag, 3)))
    assert b.session_over and not b.report().complete
    b.receive_data(protocol.encode(ReleaseComplete(cache.tag)))  # late news still counts
    assert b.report().complete


def test_box_holding_everything_waits_for_install(cache: PhoneCache) -> None:
    a = App(cache)
    a.data_to_send()
    a.receive_data(status(Target(cache.tag, "1.1.0", 42, b"\xff"), state=BoxState.BUILT)
                   + protocol.encode(Installed("1.0.0", True)))
    r = a.report()
    assert a.session_over and r.complete and not r.installed and r.end is SessionEnd.WAITING_INSTALL


def test_installed_event_counts(cache: PhoneCache) -> None:
    a = App(cache)
    a.data_to_send()
    a.receive_data(status(running="1.1.0", sha=V2_SHA) + protocol.encode(Installed("1.1.0", True)))
    assert a.report().installed


def test_phone_without_the_pieces_says_so(cache: PhoneCache) -> None:
    a = App(cache.keep_pieces(lambda pid: False))
    a.data_to_send()
    whole = len(cache.tables[cache.manifest.full.table_sha256])  # the named payload's table
    a.receive_data(status(Target(cache.tag, "1.1.0", whole, b""), state=BoxState.RECEIVING))
    assert a.session_over and a.report().end is SessionEnd.NOTHING_HELD


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"\x00\x05\x90\x00\x00\x00\x00", "box broke the protocol"),
        (b"\xff\xff" + bytes(10), "box broke the protocol"),
        (protocol.encode(Accept(b"abcd")), "box broke the protocol: unexpected Accept"),
        (protocol.encode(Error(int(protocol.ErrorCode.BUSY), "busy")),
         "box ended the session: BUSY"),
    ],
)
def test_a_broken_box_ends_the_session(cache: PhoneCache, garbage: bytes, reason: str) -> None:
    a = App(cache)
    a.data_to_send()
    a.receive_data(garbage)
    assert a.session_over
    report = a.report()
    assert report.reason is not None and report.reason.startswith(reason)
    sent = events(a.data_to_send())
    if "ended" not in reason:
        assert [type(e) for e in sent] == [Error]


def test_link_drop_and_a_cut_frame(cache: PhoneCache) -> None:
    a = App(cache)
    hello = a.data_to_send()
    a.receive_data(status())
    offer = a.data_to_send()
    first = len(_split(offer)[0])
    a.receive_data(b"")
    assert a.session_over and a.report().end is SessionEnd.LINK_DROPPED
    assert a.report().reason == "link dropped"
    # the link ended 3 bytes into the second Offer frame: only the first frame's content counts
    r = a.report(sent_bytes=len(hello) + first + 3)
    offer_room = len(events(_split(offer)[0])[0].data)  # type: ignore[attr-defined]
    assert (len(hello), first, offer_room) == (11, 244, 230)
    assert r.payload_sent == offer_room
    # overhead: the Hello (11), the first Offer's framing (244 - 230), the 3 cut bytes, and
    # the box's 72-byte Status
    assert (r.sent_bytes, r.received_bytes, r.overhead_bytes) == (258, 72, 11 + 14 + 3 + 72)


def test_v1_image_round_trip(released: tuple[Store, object]) -> None:
    """The fixture's releases are what the hashes above assume."""
    store = released[0]
    assert release_image(store, load_manifest(store, "lockbox", "1.0.0")) == SAMPLE.image(0)


# -- a frame cache is a memo: it changes no byte -------------------------------------------


def whole_session(phone: PhoneCache, box: bytes, frame_cache: FrameCache | None,
                  max_frame: int = 244) -> tuple[bytes, SessionReport]:
    """Everything the phone sends to a box that says ``box`` (and accepts any offer)."""
    a = App(phone, max_frame=max_frame, frame_cache=frame_cache)
    out = a.data_to_send()
    a.receive_data(box)
    out += a.data_to_send()
    if a.phase is appmod.Phase.OFFERING:
        a.receive_data(protocol.encode(Accept(phone.tag)))
    while chunk := a.data_to_send():
        out += chunk
    return out, a.report()


def test_data_frames_fill_each_frame() -> None:
    """The one Data-frame path: full frames, aligned cuts, the offset's width growing midway."""
    data = bytes(range(256)) * 3
    # unaligned: every frame but the last is the whole 128 bytes; the room shrinks by one as
    # the offset grows from a fixint (< 128) to a uint8 (< 256) and a uint16
    frames = list(appmod.data_frames(b"abcd", 3, data, 0, 1, 128))
    assert [(len(f), n) for f, n in frames] == [(128, 110)] * 2 + [(128, 109)] + [(128, 108)] * 4 \
        + [(27, 7)]
    # 8-byte alignment: a resume at 13 restarts at 8, and every cut but the last is a multiple of 8
    frames = list(appmod.data_frames(b"abcd", 3, data, 13, 8, 128))
    assert [(len(f), n) for f, n in frames] == [(122, 104)] * 2 + [(123, 104)] + [(124, 104)] * 4 \
        + [(52, 32)]
    decoded = [e for f, _ in frames for e in events(f) if isinstance(e, Data)]
    assert [d.offset for d in decoded] == [8, 112, 216, 320, 424, 528, 632, 736]
    assert b"".join(d.data for d in decoded) == data[8:]


def _forged(cache: PhoneCache) -> PhoneCache:
    """A phone holding other bytes (zeros) under the same piece ids."""
    return replace(cache, frames={k: bytes(len(v)) for k, v in cache.frames.items()},
                   raw={k: bytes(len(v)) for k, v in cache.raw.items()})


def _same_with_and_without(phone: PhoneCache, box: bytes, shared: FrameCache,
                           phone_frame: int) -> SessionReport:
    out, report = whole_session(phone, box, None, phone_frame)
    assert whole_session(phone, box, shared, phone_frame) == (out, report)
    # not vacuous: frames went out, unless the alignment leaves no room or the box has it all
    assert report.payload_sent > 0 or report.end in (SessionEnd.BOX_BROKE, SessionEnd.NOTHING_HELD)
    return report


@pytest.mark.parametrize("max_frames", [40, 16_384])
def test_a_frame_cache_changes_no_byte(cache: PhoneCache, max_frames: int) -> None:
    """One cache shared by sessions of every alignment, frame size and payload, and by a phone
    holding other bytes under the same ids: each sends exactly what it sends without one."""
    shared = FrameCache(max_frames)
    forged = _forged(cache)
    ends = []
    for align in (1, 2, 8, 16, 256):
        for box_frame in (128, 244, 1000, 4096):
            for phone_frame in (128, 244, 4096):
                for sha in (V1_SHA, bytes(32)):  # the delta, the full image
                    box = status(sha=sha, align=align, max_frame=box_frame)
                    for phone in (cache, forged, cache):
                        ends.append(_same_with_and_without(phone, box, shared, phone_frame).end)
    # 256-byte alignment leaves no room in the 10 sessions of 128 or 244 bytes (each 3 phones x
    # 2 payloads); every other session streams
    assert (len(ends), ends.count(SessionEnd.BOX_BROKE)) == (360, 10 * 3 * 2)


_resumes = st.tuples(st.integers(0, 3000), st.binary(max_size=2),
                     st.lists(st.tuples(st.integers(0, 40), st.integers(0, 20_000)), max_size=4))


@settings(max_examples=60, deadline=None)
@given(resumes=st.lists(st.tuples(_resumes, st.sampled_from([1, 8, 16]), st.booleans(),
                                  st.booleans()), min_size=1, max_size=6))
def test_a_frame_cache_changes_no_byte_on_resume(
    released: tuple[Store, object], resumes: list[tuple[tuple[int, bytes, list[tuple[int, int]]],
                                                        int, bool, bool]],
) -> None:
    """Resumed at any offsets the box reports, with and without the cache: the same bytes."""
    cache = phone_cache(released[0], "lockbox")  # loaded here: a fixture's repr fills a screen
    phones = {True: cache, False: _forged(cache)}
    shared = FrameCache()
    for (table_at, bitmap, partials), align, on_v1, real in resumes:
        target = Target(cache.tag, "1.1.0", table_at, bitmap, tuple(partials))
        box = status(target, sha=V1_SHA if on_v1 else bytes(32), align=align,
                     state=BoxState.RECEIVING)
        _same_with_and_without(phones[real], box, shared, 244)


def test_a_frame_cache_decodes_each_table_once_and_never_vouches_for_other_bytes(
    cache: PhoneCache,
) -> None:
    shared = FrameCache()
    ref = cache.manifest.deltas[0]
    data = cache.tables[ref.table_sha256]
    first = shared.table(data, ref.table_sha256)
    assert shared.table(bytes(data), ref.table_sha256) is first and len(first.pieces) == 4
    with pytest.raises(ManifestError, match="does not match the hash"):
        shared.table(data[:-1] + b"\x00", ref.table_sha256)


def test_a_frame_cache_keeps_no_more_than_its_bound(cache: PhoneCache) -> None:
    sizes = []
    for bound in (16_384, 40, 5):
        shared = FrameCache(max_frames=bound)
        out, _ = whole_session(cache, status(sha=bytes(32)), shared)
        assert len(_split(out)) == 71  # Hello, 2 Offers, 68 Data frames of the full payload
        sizes.append(len(shared))
    # objects in send order hold 2 (the table), 1, 4, 5, 5, 6, 6, 8, 15 and 16 frames: a bound
    # of 40 starts over at the 15-frame piece and keeps 15 + 16; a bound of 5 keeps nothing
    # once the 6-frame pieces come (each start-over empties it, and they do not fit)
    assert sizes == [68, 31, 0]


# -- with a real lockbox ------------------------------------------------------------------

NOW = 1_700_000_100


def new_box(key: Ed25519PrivateKey) -> Lockbox:
    config = BoxConfig("lockbox", "lockbox", ram_budget=4 << 20, ack_every=512)
    flash = config.make_flash()
    Lockbox.provision(flash, config, SAMPLE.image(0), "1.0.0")
    box = Lockbox(flash, config, {key_id(key.public_key()): key.public_key()})
    box.boot(NOW)
    return box


def idle(box: Lockbox) -> list[IdleStep]:
    steps: list[IdleStep] = []
    while (step := box.idle(NOW)) is not None and step not in steps:
        steps.append(step)
    return steps


def sessions_until_installed(box: Lockbox, phones: list[PhoneCache], budget: int | None,
                             limit: int = 50, make: Callable[[PhoneCache], _App] | None = None
                             ) -> list[SessionReport]:
    """Sessions of ``budget`` bytes, phones taking turns (``make`` builds each session's App:
    default, one speaking version 1), until the box installs the release."""
    make = make or App
    reports: list[SessionReport] = []
    while len(reports) < limit:
        r = pump_session(box, make(phones[len(reports) % len(phones)]), budget, NOW)
        reports.append(r)
        idle(box)
        if r.installed:
            return reports
    raise AssertionError(f"not installed after {limit} sessions: {reports[-1]}")


def test_small_budget_sessions_until_installed(
    cache: PhoneCache, released: tuple[Store, Ed25519PrivateKey]
) -> None:
    box = new_box(released[1])
    reports = sessions_until_installed(box, [cache], budget=600)
    air = len(cache.manifest_wire) + len(cache.tables[cache.manifest.deltas[0].table_sha256]) \
        + cache.manifest.deltas[0].size
    assert air == 2465 and -(-air // 600) == 5
    # 5 sessions of 600 bytes carry it all (the ceiling), a 6th finds the new image running
    assert [r.complete for r in reports] == [False] * 4 + [True, True]
    assert [r.reason for r in reports[:4]] == ["max-bytes"] * 4
    assert all(r.sent_bytes == 600 for r in reports[:4])
    assert reports[-1].installed and reports[-1].end is SessionEnd.UP_TO_DATE
    assert box.running_image() == SAMPLE.image(1)
    # overhead: everything on the air that was not manifest, table or piece content
    assert sum(r.payload_sent for r in reports) >= air
    assert [(r.sent_bytes, r.payload_sent, r.received_bytes) for r in reports] == [
        (600, 477, 87), (600, 452, 91), (600, 512, 91), (600, 512, 91), (580, 512, 120),
        (11, 0, 87)]  # Accept and a target's Status carry the payload's number: 1 byte each
    assert [r.overhead_bytes for r in reports] == [210, 239, 179, 179, 188, 98]


def test_unbounded_session_delivers_everything_at_once(
    cache: PhoneCache, released: tuple[Store, Ed25519PrivateKey]
) -> None:
    box = new_box(released[1])
    r = pump_session(box, App(cache), None, NOW)
    ref = cache.manifest.deltas[0]
    table = len(cache.tables[ref.table_sha256])
    assert r.complete and not r.installed and r.reason is None
    assert r.acked_bytes == r.payload_sent == len(cache.manifest_wire) + table + ref.size
    assert idle(box) == [IdleStep.BUILT, IdleStep.INSTALLED]
    r2 = pump_session(box, App(cache), None, NOW)
    assert r2.installed and r2.sent_bytes == 11  # a Hello, and the box says it runs it
    assert (r.sent_bytes, r.payload_sent, r.received_bytes) == (2751, 2465, 176)
    assert r.overhead_bytes == 462  # 286 bytes of framing out, 176 of the box's answers back


def test_a_box_on_an_unknown_image_takes_the_full_pieces(
    cache: PhoneCache, released: tuple[Store, Ed25519PrivateKey]
) -> None:
    key = released[1]
    config = BoxConfig("lockbox", "lockbox", ram_budget=4 << 20, ack_every=512)
    flash = config.make_flash()
    Lockbox.provision(flash, config, SampleFirmware(size=40_000, seed=99).image(0), "0.9.0")
    box = Lockbox(flash, config, {key_id(key.public_key()): key.public_key()})
    box.boot(NOW)
    reports = sessions_until_installed(box, [cache], budget=4000)
    full = cache.manifest.full
    air = len(cache.manifest_wire) + len(cache.tables[full.table_sha256]) + full.size
    assert (air, -(-air // 4000)) == (14_201, 4)
    assert [r.complete for r in reports] == [False] * 3 + [True, True]  # ceil() sessions
    assert box.running_image() == SAMPLE.image(1)


def test_partial_phones_finish_together(
    cache: PhoneCache, released: tuple[Store, Ed25519PrivateKey]
) -> None:
    ref = cache.manifest.deltas[0]
    got = cache.table(ref)
    assert got is not None
    ids = [e.id for e in got[1].pieces]
    first, second = (cache.keep_pieces(lambda pid, part=part: pid in part)
                     for part in (set(ids[:2]), set(ids[2:])))
    box = new_box(released[1])
    a = pump_session(box, App(first), None, NOW)
    assert not a.complete and a.reason is None  # it gave what it had and left
    assert idle(box) == []
    b = pump_session(box, App(first), None, NOW)
    assert b.end is SessionEnd.NOTHING_HELD and b.payload_sent == 0
    c = pump_session(box, App(second), None, NOW)
    assert c.complete and idle(box) == [IdleStep.BUILT, IdleStep.INSTALLED]
    assert box.running_image() == SAMPLE.image(1)


def test_a_newer_release_overtakes_an_older_target(
    tmp_path: Path, released: tuple[Store, Ed25519PrivateKey]
) -> None:
    key = released[1]
    store = stage_releases(tmp_path, key, releases=3)  # 1.2.0 has a delta from 1.1.0 only
    v2 = phone_cache(store, "lockbox", "1.1.0")
    v3 = phone_cache(store, "lockbox", "1.2.0")
    box = new_box(key)
    r = pump_session(box, App(v2), 1000, NOW)
    assert box.status()["target_version"] == "1.1.0" and not r.complete
    old = pump_session(box, App(v2), 100, NOW)  # a phone with 1.1.0 resumes it
    assert old.target_version == "1.1.0"
    r = pump_session(box, App(v3), None, NOW)
    assert r.target_version == "1.1.0" and r.complete  # offered 1.2.0; the box switched
    assert idle(box) == [IdleStep.BUILT, IdleStep.INSTALLED]
    assert box.running_image() == SAMPLE.image(2)
    late = pump_session(box, App(v2), None, NOW)  # the old phone has nothing to do
    assert late.end is SessionEnd.BOX_NEWER and late.sent_bytes == 11


async def test_the_same_sessions_over_trio_memory_streams(
    cache: PhoneCache, released: tuple[Store, Ed25519PrivateKey]
) -> None:
    """trio_link.converse on both ends reaches the same box state as the in-memory pump."""
    box = new_box(released[1])
    reports = []
    for _ in range(10):
        phone_end, box_end = trio.testing.memory_stream_pair()
        phone = App(cache)
        endpoint = BoxEndpoint(box, NOW)
        stats: dict[str, trio_link.LinkStats] = {}

        async def run(name: str, stream: trio.abc.Stream, ep: pump.Endpoint,
                      budget: int | None, stats: dict[str, trio_link.LinkStats] = stats) -> None:
            stats[name] = await trio_link.converse(stream, ep, max_send_bytes=budget)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "phone", phone_end, phone, 600)
            nursery.start_soon(run, "box", box_end, endpoint, None)
        ps = stats["phone"]
        walked = ps.reason.value if ps.reason is LinkEnd.MAX_BYTES else None
        reports.append(phone.report(ps.sent_bytes, walked))
        idle(box)
        if reports[-1].installed:
            break
    assert [r.complete for r in reports] == [False] * 4 + [True, True]
    assert box.running_image() == SAMPLE.image(1)


# -- whatever the box says, the phone answers with valid frames or ends --------------------

_versions = st.sampled_from(["1.0.0", "1.1.0", "1.0.9", "2.0.0", "x", "1.0"])


def _box_events(tag: bytes) -> st.SearchStrategy[bytes]:
    tags = st.sampled_from([tag, b"abcd"])
    pieces = st.integers(-1, 6)
    target = st.builds(
        Target, tags, _versions, st.integers(0, 3000), st.binary(max_size=3),
        st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3000)), max_size=4).map(tuple))
    status_ = st.builds(
        Status, st.just(protocol.PROTOCOL_VERSION), st.sampled_from(["lockbox", "doorbell"]),
        st.just("lockbox"), _versions, st.integers(0, 9),
        st.sampled_from([V1_SHA, V2_SHA, bytes(32)]), st.integers(0, 100), st.integers(0, 6),
        st.sampled_from([1, 2, 8, 16, 256]), st.sampled_from([128, 244, 4096]),
        st.none() | target)
    event = st.one_of(
        status_, st.builds(Accept, tags), st.builds(Reject, st.integers(0, 12)),
        st.builds(Ack, tags, pieces, st.integers(0, 5000)), st.builds(PieceComplete, tags, pieces),
        st.builds(ReleaseComplete, tags), st.builds(Installed, _versions, st.booleans()),
        st.builds(Error, st.integers(0, 12), st.text(max_size=20)))
    return st.one_of(event.map(protocol.encode), st.binary(max_size=40))


@settings(max_examples=300)
@given(data=st.data())
def test_any_box_gets_valid_frames_or_an_end(cache: PhoneCache, data: st.DataObject) -> None:
    a = App(cache)
    out = a.data_to_send()
    for chunk in data.draw(st.lists(_box_events(cache.tag), max_size=8)):
        a.receive_data(chunk)
        out += a.data_to_send()
    while more := a.data_to_send():
        out += more
    a.receive_data(b"")
    assert a.session_over
    sent = protocol.decode_frames(out, protocol.MAX_FRAME)  # every byte is a whole, valid frame
    assert isinstance(sent[0], protocol.Hello)
    assert all(len(f) <= 4096 for f in _split(out))
    r = a.report()
    assert 0 <= r.payload_sent <= r.sent_bytes == len(out) and r.acked_bytes >= 0


def _app_in(phase: appmod.Phase, cache: PhoneCache) -> App:
    a = App(cache)
    a.data_to_send()
    if phase is appmod.Phase.HELLO:
        return a
    if phase is appmod.Phase.DONE:
        a.receive_data(status(running="2.0.0"))
    else:
        a.receive_data(status())
        if phase is appmod.Phase.SENDING:
            a.receive_data(protocol.encode(Accept(cache.tag)))
    a.data_to_send()
    assert a.phase is phase
    return a


@pytest.mark.parametrize("phase", [ph for ph in appmod.Phase
                                   if ph not in (appmod.Phase.WAIT_REPORT, appmod.Phase.TRUST)])
def test_every_cell_of_the_table(cache: PhoneCache, phase: appmod.Phase) -> None:
    # (TRUST is protocol 2's: tests/unit/test_app_trust.py enumerates its cells)
    """h2-style: each (phase, event type) either has an action or is the box's mistake."""
    samples: list[protocol.Event] = [
        protocol.Hello(1, 244),
        Status(1, "lockbox", "lockbox", "1.0.0", 0, V1_SHA, 100, 0, 8, 244, None),
        protocol.Offer(3, 0, b"abc"), Accept(cache.tag), Reject(1), Data(cache.tag, 0, 0, b"x"),
        Ack(cache.tag, 0, 8), PieceComplete(cache.tag, 0), ReleaseComplete(cache.tag),
        Installed("1.1.0", True), Error(3, "no"),
    ]
    assert {type(e) for e in samples} == set(protocol.EVENT_TYPES.values())
    for ev in samples:
        a = _app_in(phase, cache)
        a.receive_data(protocol.encode(ev))
        answer = [type(e) for e in events(a.data_to_send())]
        action = appmod.TRANSITIONS.get((phase, type(ev)))
        if action is None and phase is not appmod.Phase.DONE:
            assert a.session_over and answer == [Error], (phase, ev)
            assert (a.report().reason or "").startswith("box broke the protocol: unexpected")
        else:
            assert Error not in answer, (phase, ev)
            if action is None:
                assert answer == [] and a.session_over


def _waiting(cache: PhoneCache, seen: list[object]) -> _App:
    """A version-2 App whose offer waits for the box's report (``decide`` records its input)."""
    a = _App(cache, decide=lambda rep: seen.append(rep) is None)
    a.data_to_send()
    a.receive_data(v2.encode(v2.summarize(Status(2, "lockbox", "lockbox", "1.0.0", 0, V1_SHA,
                                                 100, 0, 8, 244, None)), 244))
    assert (a.phase, a.data_to_send(), seen) == (appmod.Phase.WAIT_REPORT, b"", [])
    return a


def test_every_cell_of_the_waiting_phase(cache: PhoneCache) -> None:
    """WAIT_REPORT (protocol 2 only): the report decides, Installed is news, an Error ends
    the session, anything else is the box's mistake; each cell of the row, exactly."""
    rep = report.sign(report.Report("box-9", 4, "lockbox", "lockbox", "1.0.0", V1_SHA[:8], None,
                                    100, BoxState.IDLE, None, 0),
                      Ed25519PrivateKey.from_private_bytes(bytes(32)))
    tag = cache.tag
    samples: list[protocol.Event] = [
        v2.summarize(Status(2, "lockbox", "lockbox", "1.0.0", 0, V1_SHA, 100, 0, 8, 244, None)),
        protocol.Offer(3, 0, b"abc"), Accept(tag), Reject(1), Data(tag, 0, 0, b"x"),
        Ack(tag, 0, 8), PieceComplete(tag, 0), ReleaseComplete(tag), Installed("1.1.0", True),
        Error(3, "no"), v2.BoxReport(rep),
        v2.TrustAsk(), v2.TrustLink(trust.sign(root_v1(), ROOT_KEYS[:2])),
        v2.TrustStamp(ts_wire(1, T0)), v2.TrustAnswer(0, 1, T0, 1),
    ]
    assert {type(e) for e in samples} == set(v2._TYPES) - {v2.Seek}  # (a Seek is no event)
    ends = {}
    for ev in samples:
        seen: list[object] = []
        a = _waiting(cache, seen)
        seek = v2.encode(v2.Seek(tag, 0, 0), 244) if isinstance(ev, Data) else b""
        a.receive_data(seek + v2.encode(ev, 244, (0, 0) if seek else None))
        dec = v2.FrameDecoder(4096, tag=a.tag)
        dec.feed(a.data_to_send())
        answer = [type(e) for e in dec.events()]
        action = appmod.TRANSITIONS.get((appmod.Phase.WAIT_REPORT, type(ev)))
        ends[type(ev).__name__] = (action, a.phase, a.end, answer[:1], len(seen))
    broke = (None, appmod.Phase.DONE, SessionEnd.BOX_BROKE, [Error], 0)
    assert ends == {
        "Summary": broke, "Offer": broke, "Accept": broke, "Reject": broke, "Data": broke,
        "Ack": broke, "PieceComplete": broke, "ReleaseComplete": broke, "TrustAsk": broke,
        "TrustLink": broke, "TrustStamp": broke, "TrustAnswer": broke,
        "Installed": ("installed", appmod.Phase.WAIT_REPORT, None, [], 0),
        "Error": ("error", appmod.Phase.DONE, SessionEnd.BOX_ENDED, [], 0),
        "BoxReport": ("report_decides", appmod.Phase.OFFERING, None, [Offer], 1),
    }


def test_the_waiting_phone_hands_decide_the_decoded_report_or_none(cache: PhoneCache) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    body = report.Report("box-9", 4, "lockbox", "lockbox", "1.0.0", V1_SHA[:8], None, 100,
                         BoxState.IDLE, None, 0)
    seen: list[object] = []
    a = _waiting(cache, seen)
    a.receive_data(v2.encode(v2.BoxReport(report.sign(body, key)), 244))
    assert seen == [body] and a.box_report == body and len(a.box_reports) == 1
    refused = _App(cache, decide=lambda rep: False)
    refused.data_to_send()
    refused.receive_data(v2.encode(v2.summarize(Status(2, "lockbox", "lockbox", "1.0.0", 0,
                                                       V1_SHA, 100, 0, 8, 244, None)), 244))
    refused.receive_data(v2.encode(v2.BoxReport(report.sign(body, key)), 244))
    r = refused.report()
    assert (r.end, r.payload_sent, refused.data_to_send()) == (SessionEnd.NOT_OFFERED, 0, b"")
    one = App(cache, decide=lambda rep: seen.append(rep) is None)  # protocol 1: no report frame
    one.data_to_send()
    one.receive_data(status())
    assert one.phase is appmod.Phase.OFFERING and seen[-1] is None and len(seen) == 2


def test_same_image_under_an_older_version_is_offered_not_called_installed(
    cache: PhoneCache,
) -> None:
    """Issue 9 item 22: the box runs the phone's image bytes, but as an older version."""
    a = App(cache)
    a.data_to_send()
    a.receive_data(status(running="1.0.0", sha=V2_SHA))  # the phone carries 1.1.0 = V2 bytes
    assert a.phase is appmod.Phase.OFFERING
    assert b"".join(e.data for e in events(a.data_to_send())) == cache.manifest_wire  # type: ignore[attr-defined]
    r = a.report()
    assert (r.installed, r.end, r.box_version) == (False, None, "1.0.0")
