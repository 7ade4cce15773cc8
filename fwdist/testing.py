"""Test support in the library (zarr-style): releases, a reference phone, a stateful machine.

* :func:`make_releases` stages a small release history (SampleFirmware images,
  small chunker parameters, deltas from every earlier release) into a store.
* :class:`Phone` is a minimal, independent phone written straight from the
  protocol spec: it holds some or all pieces of some releases, talks to a
  :class:`~fwdist.lockbox.Lockbox` one session at a time and can walk away
  after any number of bytes. The real phone lives in :mod:`fwdist.app`; this one
  exists so the box's tests do not depend on it.
* :class:`LockboxMachine` is a hypothesis ``RuleBasedStateMachine`` that
  interleaves sessions, walk-aways at random byte offsets, duplicated,
  reordered and corrupted frames, data from other releases, reboots and power
  cuts, and checks the box against a plain model: verified progress never goes
  backwards except by a target change, and the box ends with exactly the new
  image. ``tests/property/test_lockbox_stateful.py`` runs it.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fwdist import protocol as p
from fwdist.chunker import ChunkerParams
from fwdist.flash import Flash, PowerCut
from fwdist.lockbox import BoxConfig, Lockbox
from fwdist.manifest import Manifest, PieceTable, Version, decode, key_id
from fwdist.releases import load_table, table_bytes, wire_piece
from fwdist.sample import SampleFirmware
from fwdist.staging import StageOptions, stage
from fwdist.store import Store

SMALL_CHUNKS = ChunkerParams(1024, 2048, 8192)


@dataclass(frozen=True)
class Payload:
    """One payload of a release as a phone carries it: table bytes and wire pieces."""

    table: PieceTable
    table_bytes: bytes
    pieces: tuple[bytes, ...]


@dataclass(frozen=True)
class Release:
    """A staged release: manifest wire bytes, image, and every payload by table SHA-256."""

    wire: bytes
    manifest: Manifest
    image: bytes
    payloads: dict[bytes, Payload]

    def __repr__(self) -> str:
        return f"Release({self.version})"

    @property
    def tag(self) -> bytes:
        return p.release_tag(self.wire)

    @property
    def version(self) -> str:
        return self.manifest.version


@dataclass(frozen=True)
class Releases:
    """A product's release history and the key that signed it."""

    store: Store
    key: Ed25519PrivateKey
    releases: tuple[Release, ...]

    def __repr__(self) -> str:
        return f"Releases({', '.join(r.version for r in self.releases)})"

    @property
    def trusted(self) -> dict[bytes, Ed25519PublicKey]:
        pub = self.key.public_key()
        return {key_id(pub): pub}


def make_releases(root: Path, count: int = 3, size: int = 32 * 1024, seed: int = 1, *,
                  product: str = "lockbox", hardware: str = "lb-r2", deltas: bool = True,
                  key: Ed25519PrivateKey | None = None, min_battery: int = 0,
                  expires_days: float | None = None, now: int = 1_700_000_000,
                  counters: tuple[int, ...] | None = None) -> Releases:
    """Stage ``count`` releases of a seeded SampleFirmware into a store under ``root``."""
    seed_key = hashlib.sha256(b"fwdist test key %d" % seed).digest()
    key = key or Ed25519PrivateKey.from_private_bytes(seed_key)
    store = Store.open(root / "store", create=True)
    fw = SampleFirmware(size=size, seed=seed)
    out = []
    for r in range(count):
        image = fw.image(r)
        path = root / f"image-{r}.bin"
        path.write_bytes(image)
        opts = StageOptions(
            product=product, version=fw.version(r), hardware=hardware,
            security_counter=None if counters is None else counters[r],
            min_battery=min_battery, expires_days=expires_days, now=now + r,
            sources=tuple(fw.version(i) for i in range(r)) if deltas else (),
            level=19, chunker=SMALL_CHUNKS, delta_piece_size=1024,
        )
        stage(store, path, key, opts)
        wire = store.get_manifest(product, fw.version(r))
        m = decode(wire).manifest
        payloads = {}
        for ref in (m.full, *m.deltas):
            table = load_table(store, ref)
            payloads[ref.table_sha256] = Payload(
                table, table_bytes(store, ref),
                tuple(wire_piece(store, table, i) for i in range(len(table.pieces))))
        out.append(Release(wire, m, image, payloads))
    return Releases(store, key, tuple(out))


def box_config(releases: Releases, **overrides: int) -> BoxConfig:
    """A box sized for the releases: slots fit the images, staging fits any payload."""
    biggest = max(len(r.image) for r in releases.releases)
    ss = int(overrides.pop("sector_size", 4096))
    slot = -(-biggest // ss) * ss
    return BoxConfig(
        product=releases.releases[0].manifest.product,
        hardware=releases.releases[0].manifest.hardware,
        slot_size=int(overrides.pop("slot_size", slot)),
        staging_size=int(overrides.pop("staging_size", 2 * slot + 8 * ss)),
        sector_size=ss,
        # bsdiff-zstd declares ~0.8-1.1 MB of decoder RAM even for small images
        ram_budget=int(overrides.pop("ram_budget", 4 << 20)),
        **overrides,
    )


def new_box(releases: Releases, config: BoxConfig, flash: Flash | None = None, first: int = 0,
            **kwargs: object) -> Lockbox:
    """A provisioned, booted box running release ``first``."""
    flash = flash or config.make_flash()
    r = releases.releases[first]
    Lockbox.provision(flash, config, r.image, r.version, r.manifest.security_counter)
    box = Lockbox(flash, config, releases.trusted, **kwargs)  # type: ignore[arg-type]
    box.boot(0)
    return box


# --------------------------------------------------------------------------- a reference phone


class WalkAway(Exception):
    """The phone's byte budget ran out (the agent walked away)."""


@dataclass
class SessionLog:
    """What one session did, in bytes and events."""

    sent: int = 0
    received: int = 0
    payload_sent: int = 0
    events: list[p.Event] = field(default_factory=list)
    walked_away: bool = False
    error: p.Error | None = None
    rejected: p.Reason | None = None

    @property
    def overhead(self) -> int:
        """Bytes on the air in both directions that were not piece or table content."""
        return self.sent + self.received - self.payload_sent


@dataclass
class Phone:
    """A phone holding some releases, and of their pieces only ``holds`` (None: all)."""

    releases: list[Release]
    holds: set[int] | None = None
    max_frame: int = p.DEFAULT_MAX_FRAME
    order_seed: int | None = None

    def session(self, box: Lockbox, now: int = 0, budget: int | None = None) -> SessionLog:
        """One whole session against ``box``; walk away once ``budget`` bytes are sent."""
        log = SessionLog()
        dec = p.FrameDecoder(p.MAX_FRAME)
        box.open_session(now)

        def send(ev: p.Event) -> list[p.Event]:
            frame = p.encode(ev, self.max_frame)
            cut = budget is not None and log.sent + len(frame) > budget
            chunk = frame[: budget - log.sent] if cut and budget is not None else frame
            reply = box.receive_data(chunk, now)
            log.sent += len(chunk)
            log.received += len(reply)
            if isinstance(ev, p.Data | p.Offer) and not cut:
                log.payload_sent += len(ev.data)
            dec.feed(reply)
            evs = dec.events()
            log.events.extend(evs)
            for e in evs:
                if isinstance(e, p.Error):
                    log.error = e
            if cut:
                raise WalkAway
            return evs

        try:
            self._converse(send, log)
        except WalkAway:
            log.walked_away = True
        box.end_session(now)
        return log

    def _pick(self, status: p.Status) -> Release | None:
        best = None
        for rel in self.releases:
            if rel.manifest.product != status.product:
                continue
            if status.target is not None and rel.tag == status.target.tag:
                return rel
            if best is None or rel.manifest.parsed_version > best.manifest.parsed_version:
                best = rel
        return best

    def _converse(self, send: object, log: SessionLog) -> None:
        assert callable(send)
        evs = send(p.Hello(p.PROTOCOL_VERSION, self.max_frame))
        status = next((e for e in evs if isinstance(e, p.Status)), None)
        if status is None:
            return
        rel = self._pick(status)
        if rel is None:
            return
        running = Version.parse(status.running_version)
        target = status.target
        if target is None or target.tag != rel.tag:
            if rel.manifest.parsed_version <= running:
                return
            if target is not None and rel.manifest.parsed_version <= Version.parse(target.version):
                return
            for off in range(0, len(rel.wire), 180):
                evs = send(p.Offer(len(rel.wire), off, rel.wire[off : off + 180]))
            if not any(isinstance(e, p.Accept) for e in evs):
                for e in evs:
                    if isinstance(e, p.Reject):
                        log.rejected = p.Reason(e.reason)
                return
            table_received, bitmap, partials = 0, b"", {}
        else:
            table_received, bitmap = target.table_received, target.bitmap
            partials = dict(target.partials)
        payload = rel.payloads[rel.manifest.payload_for(status.running_sha256).table_sha256]
        align = status.align
        tag = rel.tag
        done: set[int] = {i for i in range(len(payload.pieces)) if bitmap and
                          p.Target(tag, "x", 0, bitmap).has(i)}

        def stream(piece: int, data: bytes, start: int) -> None:
            off = start
            while off < len(data):
                room = p.data_capacity(status.max_frame, tag, piece, off)
                room -= room % align
                evs = send(p.Data(tag, piece, off, data[off : off + room]))
                for e in evs:
                    if isinstance(e, p.PieceComplete):
                        done.add(e.piece)
                    if isinstance(e, p.Error):
                        return
                off += room

        if table_received < len(payload.table_bytes):
            stream(p.TABLE, payload.table_bytes, table_received - table_received % align)
            if log.error:
                return
        order = list(range(len(payload.pieces)))
        if self.order_seed is not None:
            random.Random(self.order_seed).shuffle(order)
        for i in order:
            if i in done or (self.holds is not None and i not in self.holds):
                continue
            stream(i, payload.pieces[i], partials.get(i, 0))
            if log.error:
                return


# --------------------------------------------------------------------------- the stateful machine


class LockboxMachine(RuleBasedStateMachine):
    """Sessions, walk-aways, hostile frames, reboots and power cuts against a plain model.

    The model is deliberately simple and independent of the box's code: the set
    of piece indices a phone saw confirmed (PieceComplete) for the current
    target tag, the target tag itself, and the running version. Invariants:
    the box's verified set always contains the model's (progress never goes
    backwards without a target change), what runs is always a release's exact
    image, and after a final full session plus idle the box runs the newest
    release.
    """

    RELEASES: Releases | None = None

    @classmethod
    def releases(cls) -> Releases:
        if cls.RELEASES is None:
            root = Path(tempfile.mkdtemp(prefix="fwdist-machine-"))
            cls.RELEASES = make_releases(root, count=3, size=24 * 1024, seed=5, deltas=False)
        return cls.RELEASES

    def __init__(self) -> None:
        super().__init__()
        self.rel = self.releases()
        # 1 KiB sectors: pieces span sectors and the journal switches halves often
        self.config = box_config(self.rel, sector_size=1024, journal_sectors=2, max_trials=50)
        self.flash = self.config.make_flash()
        self.box = new_box(self.rel, self.config, self.flash)
        self.now = 1_700_000_100
        self.model_tag: bytes | None = None
        self.model_done: set[int] = set()
        self.model_running = self.rel.releases[0].version
        self.images = {r.version: r.image for r in self.rel.releases}

    # -- helpers --
    def _observe(self, log: SessionLog) -> None:
        for e in log.events:
            if isinstance(e, p.Accept) and e.tag != self.model_tag:
                self.model_tag, self.model_done = e.tag, set()
            if isinstance(e, p.PieceComplete) and e.tag == self.model_tag and e.piece >= 0:
                self.model_done.add(e.piece)

    def _verified(self) -> set[int]:
        t = self.box.s.target if self.box.s else None
        if t is None:
            return set()
        return {i for i, s in t.streams.items() if i >= 0 and s.done}

    def _reboot(self) -> None:
        self.flash.power_on()
        self.box = Lockbox(self.flash, self.config, self.rel.trusted)
        self.box.boot(self.now)
        self._sync_running()

    def _sync_running(self) -> None:
        st = self.box.status()
        if st["running_version"] != self.model_running:
            self.model_running = st["running_version"]
            self.model_tag, self.model_done = None, set()

    # -- rules --
    @initialize(first=st.integers(0, 1))
    def start(self, first: int) -> None:
        if first:
            self.box = new_box(self.rel, self.config, self.flash, first=first)
            self.model_running = self.rel.releases[first].version

    @rule(which=st.integers(0, 2), budget=st.integers(1, 3000), holds=st.sets(st.integers(0, 12)),
          seed=st.integers(0, 1000))
    def session(self, which: int, budget: int, holds: set[int], seed: int) -> None:
        phone = Phone([self.rel.releases[which]], holds=holds or None, order_seed=seed)
        log = phone.session(self.box, self.now, budget)
        self._observe(log)
        assert log.error is None, log.error  # an honest phone never breaks the protocol
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
            assert before == after or self._only_progress(before, after)
        self.box.end_session(self.now)

    def _only_progress(self, before: bytes, after: bytes) -> bool:
        # random bytes can in principle form a valid Data frame; that may add progress only
        return self.box.s is not None and self.box.s.target is not None

    @rule(which=st.integers(0, 2), seed=st.integers(0, 1000), mode=st.sampled_from(
        ["duplicate", "reorder", "corrupt", "foreign"]))
    def hostile_data(self, which: int, seed: int, mode: str) -> None:
        """A phone whose data frames are duplicated, reordered, corrupted, or of another release."""
        status = self.box.status_frame()
        t = status.target
        if t is None or self.box.table is None:
            return
        rel = next((r for r in self.rel.releases if r.tag == t.tag), None)
        assert rel is not None
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
            assert evs[-1] == p.Accept(rel.tag)
            if rel.tag != self.model_tag:
                self.model_tag, self.model_done = rel.tag, set()

    @rule()
    def idle(self) -> None:
        self.box.idle(self.now)
        self._sync_running()

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
        try:
            phone = Phone([self.rel.releases[which]], order_seed=seed)
            log = phone.session(self.box, self.now, 3000)
            self._observe(log)
            assert log.error is None, log.error
            self.box.idle(self.now)
        except PowerCut:
            pass
        self._reboot()

    # -- invariants --
    @invariant()
    def progress_never_goes_backwards(self) -> None:
        t = self.box.s.target if self.box.s else None
        if t is not None and t.tag == self.model_tag:
            assert self.model_done <= self._verified(), (self.model_done, self._verified())

    @invariant()
    def runs_an_exact_release(self) -> None:
        st_ = self.box.status()
        assert st_["running_version"] == self.model_running
        assert self.box.running_image() == self.images[self.model_running]

    def teardown(self) -> None:
        """Finish: a full battery, a phone with the newest release, idle; the newest image runs."""
        self.box.battery = 100
        newest = self.rel.releases[-1]
        for _ in range(4):
            log = Phone([newest]).session(self.box, self.now)
            assert log.error is None, log.error
            while self.box.idle(self.now) in ("built", "reverted", "failed"):
                pass
            if self.box.status()["running_version"] == newest.version:
                break
        assert self.box.status()["running_version"] == newest.version
        assert self.box.running_image() == newest.image
