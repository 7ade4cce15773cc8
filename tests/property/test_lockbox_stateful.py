"""A hypothesis state machine against the lockbox: sessions, walk-aways, hostile frames, reboots,
power cuts, with full-image and delta releases.

:class:`LockboxMachine` interleaves sessions, walk-aways at random byte
offsets, duplicated, reordered and corrupted frames, data from other releases,
replayed manifests, reboots and power cuts, and checks the box against a plain
model of its own: which release runs, which release is the target, and which
pieces a phone saw confirmed. Invariants: the box's verified set always
contains the model's (progress never goes backwards without a target change),
the box runs the release the model says and exactly its image, and after a
final full session plus idle the box runs the newest release.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from fwdist import protocol as p
from fwdist.flash import PowerCut
from fwdist.lockbox import IdleStep, Lockbox, PState
from fwdist.manifest import Version
from fwdist.testing import Phone, Release, Releases, SessionLog, box_config, make_releases, new_box

_RELEASES: dict[bool, Releases] = {}


def releases(deltas: bool) -> Releases:
    """The machine's three releases (the same images either way), staged once per run."""
    if deltas not in _RELEASES:
        root = Path(tempfile.mkdtemp(prefix="fwdist-machine-"))
        _RELEASES[deltas] = make_releases(root, count=3, size=24 * 1024, seed=5, deltas=deltas)
    return _RELEASES[deltas]


def decoded(state: bytes) -> PState:
    return PState.from_wire(msgpack.unpackb(state, raw=False, strict_map_key=False))


def only_progress(before: bytes, after: bytes) -> bool:
    """Whether ``after`` differs from ``before`` only by staged bytes added to the target's streams.

    (Random bytes can in principle form a valid Data frame for the target; that may add
    bytes to a stream, and sectors for them, and must change nothing else.)
    """
    b, a = decoded(before), decoded(after)
    if b.target is None or a.target is None:
        return False
    old, new = b.target.streams, a.target.streams
    if not set(old) <= set(new):
        return False
    for sid, st_ in new.items():
        was = old.get(sid)
        if was is None:
            continue
        grew = st_.received >= was.received and st_.sectors[: len(was.sectors)] == was.sectors
        if not grew or st_.done != was.done:
            return False
    b.target.streams = a.target.streams = {}
    return a == b


class LockboxMachine(RuleBasedStateMachine):
    """Sessions, walk-aways, hostile frames, reboots and power cuts against a plain model.

    The model is deliberately simple and independent of the box's code: the
    running version, the target version (what an Accept made the target, until
    an install, a revert or a failure ends it), the target's tag and the set of
    piece indices a phone saw confirmed (PieceComplete) for it. Only a power cut
    leaves the model unsure (the phone's log of the cut session is lost): then
    the box's account is taken, after checking that it is one of the few outcomes
    the cut could have had.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_700_000_100
        self.model_tag: bytes | None = None
        self.model_done: set[int] = set()
        self.model_target: str | None = None

    # -- helpers --
    def _by_tag(self, tag: bytes) -> Release:
        # (a format 2 manifest is a release of its own to the box: one tag per payload)
        return next(r for r in self.rel.releases
                    if tag == r.tag or tag in map(p.release_tag, r.air))

    def _new_target(self, tag: bytes) -> None:
        if tag != self.model_tag:
            self.model_tag, self.model_done = tag, set()
        self.model_target = self._by_tag(tag).version

    def _no_target(self) -> None:
        self.model_tag, self.model_done, self.model_target = None, set(), None

    def _observe(self, log: SessionLog) -> None:
        for e in log.events:
            if isinstance(e, p.Accept):
                self._new_target(e.tag)
            if isinstance(e, p.PieceComplete) and e.tag == self.model_tag and e.piece >= 0:
                self.model_done.add(e.piece)

    def _idle_step(self, step: IdleStep | None) -> None:
        """What the model expects an idle step to have done."""
        if step is IdleStep.INSTALLED:
            assert self.model_target is not None
            self.model_running = self.model_target
            self._no_target()
        elif step in (IdleStep.FAILED, IdleStep.REVERTED):
            self._no_target()

    def _verified(self) -> set[int]:
        t = self.box.s.target if self.box.s else None
        if t is None:
            return set()
        return {i for i, s in t.streams.items() if i >= 0 and s.done}

    def _reboot(self) -> None:
        self.flash.power_on()
        self.box = Lockbox(self.flash, self.config, self.rel.trusted)
        self.box.boot(self.now)

    def _after_cut(self, offered: Release) -> None:
        """A power cut lost the session's log: the box may have taken ``offered`` as its target,
        built, installed or reverted it, or the target it had. Check it did one of those."""
        st_ = self.box.status()
        maybe = {v for v in (self.model_target, offered.version) if v is not None}
        running, target = st_["running_version"], st_["target_version"]
        if running != self.model_running:
            assert running in maybe, (running, self.model_running, maybe)
            assert Version.parse(running) > Version.parse(self.model_running)
            self.model_running = running
        assert target is None or (target in maybe and Version.parse(target) >
                                  Version.parse(running)), (target, running, maybe)
        if target is None:
            self._no_target()
        elif target != self.model_target:
            self._new_target(bytes.fromhex(st_["target_tag"]))

    # -- rules --
    @initialize(first=st.integers(0, 1), deltas=st.booleans())
    def start(self, first: int, deltas: bool) -> None:
        self.rel = releases(deltas)
        # 1 KiB sectors: pieces span sectors and the journal switches halves often
        self.config = box_config(self.rel, sector_size=1024, journal_sectors=2, max_trials=50)
        self.flash = self.config.make_flash()
        self.box = new_box(self.rel, self.config, self.flash, first=first)
        self.model_running = self.rel.releases[first].version
        self.images = {r.version: r.image for r in self.rel.releases}

    @rule(which=st.integers(0, 2), budget=st.integers(1, 3000), holds=st.sets(st.integers(0, 12)),
          seed=st.integers(0, 1000))
    def session(self, which: int, budget: int, holds: set[int], seed: int) -> None:
        phone = Phone([self.rel.releases[which]], holds=holds or None, order_seed=seed)
        log = phone.session(self.box, self.now, budget)
        self._observe(log)
        assert log.error is None, log.error  # an honest phone never breaks the protocol
        self.now += 60

    @rule(which=st.integers(0, 2), budget=st.integers(1, 3000), holds=st.sets(st.integers(0, 12)),
          seed=st.integers(0, 1000))
    def session_format_2(self, which: int, budget: int, holds: set[int], seed: int) -> None:
        """Protocol 2 with format 2 manifests: the payloads offered in turn, rows inline."""
        phone = Phone([self.rel.releases[which]], holds=holds or None, order_seed=seed,
                      protocol=2, air=True)
        log = phone.session(self.box, self.now, budget)
        self._observe(log)
        assert log.error is None, log.error
        self.now += 60

    @rule(data=st.binary(max_size=300), prefix_frames=st.integers(0, 2))
    def garbage_session(self, data: bytes, prefix_frames: int) -> None:
        """Hostile bytes (after a proper hello, maybe) never change persistent state."""
        self.box.open_session(self.now)
        if prefix_frames:
            self.box.receive_data(p.encode(p.Hello(p.PROTOCOL_VERSION, 244)), self.now)
        before = self.box.state_bytes()
        dec = p.FrameDecoder(p.MAX_FRAME)
        dec.feed(self.box.receive_data(data, self.now))
        evs = dec.events()
        after = self.box.state_bytes()
        if any(isinstance(e, p.Error) for e in evs) or not evs:
            assert before == after or only_progress(before, after)
        self.box.end_session(self.now)

    @rule(seed=st.integers(0, 1000), mode=st.sampled_from(
        ["duplicate", "reorder", "corrupt", "foreign"]))
    def hostile_data(self, seed: int, mode: str) -> None:
        """A phone whose data frames are duplicated, reordered, corrupted, or of another release."""
        status = self.box.status_frame()
        t = status.target
        if t is None or self.box.table is None:
            return
        rel = self._by_tag(t.tag)
        payload = rel.payloads[rel.manifest.payload_for(status.running_sha256).table_sha256]
        rng = random.Random(seed)
        piece = rng.randrange(len(payload.pieces))
        data = payload.pieces[piece]
        frames = []
        step = 64
        for off in range(0, len(data), step):
            frames.append(p.encode(p.Data(t.tag, piece, off, data[off : off + step])))
        if mode == "duplicate":
            frames = [f for f in frames for _ in (0, 1)]
        elif mode == "reorder":
            rng.shuffle(frames)
        elif mode == "corrupt":
            i = rng.randrange(len(frames))
            flipped = bytearray(frames[i])
            flipped[rng.randrange(2, len(flipped))] ^= 1 << rng.randrange(8)
            frames[i] = bytes(flipped)
        else:  # a piece of another release (real tag, real bytes)
            other = next(r for r in self.rel.releases if r.tag != t.tag)
            frames = [p.encode(p.Data(other.tag, piece, 0, data[:64]))]
        before = self._verified()
        self.box.open_session(self.now)
        out = self.box.receive_data(p.encode(p.Hello(p.PROTOCOL_VERSION, 244)), self.now)
        for f in frames:
            out += self.box.receive_data(f, self.now)
        self.box.end_session(self.now)
        evs = p.decode_frames(out, p.MAX_FRAME)
        for e in evs:
            if isinstance(e, p.PieceComplete) and e.tag == self.model_tag and e.piece >= 0:
                self.model_done.add(e.piece)
        if mode == "foreign":
            assert any(isinstance(e, p.Error) and e.code == p.ErrorCode.WRONG_RELEASE for e in evs)
        assert before <= self._verified()

    @rule(seed=st.integers(0, 1000), length=st.integers(1, 40))
    def junk_table(self, seed: int, length: int) -> None:
        """A phone that knows the tag sends junk as the piece table (from the staged offset,
        from 0, or past the real table's end): it must never wedge the target (issue 9.1)."""
        status = self.box.status_frame()
        t = status.target
        if t is None or self.box.table is not None:
            return
        rel = self._by_tag(t.tag)
        table = rel.payloads[rel.manifest.payload_for(status.running_sha256).table_sha256]
        rng = random.Random(seed)
        junk = rng.randbytes(8 * length)
        start = rng.choice([t.table_received, 0, len(table.table_bytes)])
        blob = table.table_bytes[:start] + junk
        start -= start % 8
        self.box.open_session(self.now)
        self.box.receive_data(p.encode(p.Hello(p.PROTOCOL_VERSION, 244)), self.now)
        for off in range(start, len(blob), 160):
            self.box.receive_data(p.encode(p.Data(t.tag, p.TABLE, off, blob[off : off + 160])),
                                  self.now)
        self.box.end_session(self.now)
        # the bound: honest phones need at most one failed session to get the table in
        errors = 0
        while self.box.table is None:
            log = Phone([rel]).session(self.box, self.now)
            self._observe(log)
            if log.error is not None:
                assert log.error.code in (p.ErrorCode.BAD_PIECE, p.ErrorCode.UNEXPECTED)
                errors += 1
            assert errors <= 1 and (log.error or self.box.table is not None), log

    @rule(which=st.integers(0, 2))
    def replay_manifest(self, which: int) -> None:
        """Offer a manifest outright, as a replaying attacker would: old ones change nothing."""
        rel = self.rel.releases[which]
        status = self.box.status_frame()
        stale = Version.parse(rel.version) <= Version.parse(status.running_version) or (
            status.target is not None and status.target.tag != rel.tag
            and Version.parse(rel.version) <= Version.parse(status.target.version))
        before = self.box.state_bytes()
        self.box.open_session(self.now)
        out = self.box.receive_data(p.encode(p.Hello(p.PROTOCOL_VERSION, 244)), self.now)
        for off in range(0, len(rel.wire), 180):
            out += self.box.receive_data(
                p.encode(p.Offer(len(rel.wire), off, rel.wire[off : off + 180])), self.now)
        self.box.end_session(self.now)
        evs = p.decode_frames(out, p.MAX_FRAME)
        if stale:
            assert isinstance(evs[-1], p.Reject) and self.box.state_bytes() == before
        else:
            accepted = evs[-1]
            assert isinstance(accepted, p.Accept) and accepted.tag == rel.tag
            # the box names the smallest payload that fits: the delta from what runs, or full
            m, running = rel.manifest, self.box.status_frame().running_sha256
            named = (m.full, *m.deltas)[accepted.payload]
            usable = [r for r in (m.full, *m.deltas) if not r.is_delta
                      or r.source_sha256 == running]
            assert named in usable and named.size == min(r.size for r in usable)
            self._new_target(rel.tag)

    @rule()
    def idle(self) -> None:
        self._idle_step(self.box.idle(self.now))

    @rule(battery=st.integers(0, 100))
    def battery(self, battery: int) -> None:
        self.box.battery = battery

    @rule()
    def reboot(self) -> None:
        """A clean reboot (no power cut in flight) restores exactly the state it left."""
        before = self.box.state_bytes()
        self._reboot()
        assert self.box.state_bytes() == before

    @precondition(lambda self: self.box.s is not None and self.box.s.target is not None)
    @rule(after=st.integers(0, 400), torn=st.booleans(), seed=st.integers(0, 1000),
          which=st.integers(0, 2))
    def power_cut(self, after: int, torn: bool, seed: int, which: int) -> None:
        """Cut power ``after`` flash operations into a session followed by idle, then reboot."""
        self.flash.arm(self.flash.ops + after, torn=torn, seed=seed)
        offered = self.rel.releases[which]
        try:
            log = Phone([offered], order_seed=seed).session(self.box, self.now, 3000)
            step = self.box.idle(self.now)
        except PowerCut:
            self._reboot()
            self._after_cut(offered)
        else:
            self._observe(log)
            assert log.error is None, log.error
            self._idle_step(step)
            self._reboot()

    # -- invariants --
    @invariant()
    def progress_never_goes_backwards(self) -> None:
        t = self.box.s.target if self.box.s else None
        if t is not None and t.tag == self.model_tag:
            assert self.model_done <= self._verified(), (self.model_done, self._verified())

    @invariant()
    def runs_the_model_release_exactly(self) -> None:
        st_ = self.box.status()
        assert (st_["running_version"], st_["target_version"]) == (
            self.model_running, self.model_target)
        assert self.box.running_image() == self.images[self.model_running]

    def teardown(self) -> None:
        """Finish: a full battery, a phone with the newest release, idle; the newest image runs."""
        if not hasattr(self, "box"):
            return
        self.box.battery = 100
        newest = self.rel.releases[-1]
        for _ in range(4):
            # (protocol 2 with format 2: it resumes a target of either format; a format 1
            # phone cannot take over a format 2 target of the same version, OLDER_THAN_TARGET)
            log = Phone([newest], protocol=2, air=True).session(self.box, self.now)
            assert log.error is None, log.error
            while self.box.idle(self.now) in (IdleStep.BUILT, IdleStep.REVERTED, IdleStep.FAILED):
                pass
            if self.box.status()["running_version"] == newest.version:
                break
        assert self.box.status()["running_version"] == newest.version
        assert self.box.running_image() == newest.image


LockboxMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestLockboxMachine = LockboxMachine.TestCase


@pytest.mark.slow
def test_longer_seeded_runs() -> None:
    """Ten times the examples and longer runs (about half a minute)."""
    run_state_machine_as_test(LockboxMachine, settings=settings(
        max_examples=1000,
        stateful_step_count=60,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    ))
