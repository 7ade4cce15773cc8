"""fwdist-full and fwdist-delta: the real lockbox, app and protocol inside every session.

Nothing here models fwdist: each box is a :class:`fwdist.lockbox.Lockbox` on
its own in-memory NOR :class:`~fwdist.flash.Flash`, each access is a fresh
:class:`fwdist.app.App` holding the release (or, for a partial phone, only some
of its pieces), and the bytes between them are the protocol's frames. The only
thing the simulator decides is how many bytes cross before the walk-away.

The link is fwdist's own in-memory pump (:class:`fwdist.pump.Pump`): one chunk
at a time, in either direction, out of the *same* byte budget
(:attr:`~fwdist.pump.Charge.AIR`): BLE air time is shared by both directions,
so the box's acknowledgements cost the transfer as they would on a real link
(the field models charge their responses the same way); the box speaks when
the phone has nothing to say (:attr:`~fwdist.pump.Turns.PHONE_FIRST`). A chunk
that does not fit is cut at the budget: the box (or phone) gets the prefix,
then the link drops: whole frames inside it count, the frame in flight is lost.
:class:`FwdistSession` is that pump seen frame by frame (for the trio link of
``--fine``) and the byte accounting around it.

- ``fwdist-delta``: the release as staged, with its deltas; each box takes the
  delta made from the image it runs (the box and the app both choose it by the
  running image's SHA-256).
- ``fwdist-full``: the same target image staged without deltas (same product,
  hardware, version, counter), so every box takes the compressed full pieces.

Factory programming is done once per running version and the flash image
cloned for every box (what a factory does); every box boots, journals, verifies
and installs on its own. After the box installs, the simulator checks that it
runs exactly the target image and then drops the box, handing its flash to the
next new box to be overwritten with the factory image (``Flash.clone(into=...)``):
memory stays bounded and a new box costs a copy, not fresh pages.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fwdist import keys
from fwdist.app import App, FrameCache, PhoneCache
from fwdist.errors import FwdistError
from fwdist.flash import Flash
from fwdist.lockbox import BoxConfig, IdleStep, Lockbox
from fwdist.manifest import Manifest, PayloadRef, Version, key_id
from fwdist.protocol_v2 import frame_size
from fwdist.pump import BoxEndpoint, Charge, Pump, Turns
from fwdist.releases import (
    load_manifest,
    load_table,
    phone_cache,
    recorded_keys,
    release_image,
)
from fwdist.staging import StageOptions, stage
from fwdist.store import Store
from sim.box import DECODER_RAM, FULL_PIECES, MCU, box_payload, mcu_config
from sim.draws import Access, BoxDraw
from sim.release import ReleaseInfo, cache_base
from sim.strategy import Progress

SPARE_FLASHES = 64  # flashes of finished boxes kept for new ones (fresh memory costs page faults)
FULL, DELTA = "fwdist-full", "fwdist-delta"
DESCRIPTIONS = {
    FULL: "fwdist: compressed full-image pieces, real lockbox + app + protocol",
    DELTA: "fwdist: delta pieces for the box's running version, real lockbox + app",
}


def whole_frames(chunk: bytes, sent: int) -> int:
    """Bytes of the whole frames within the first ``sent`` bytes of ``chunk``.

    Chunks are whole frames back to back, of either protocol version (their sizes:
    :func:`fwdist.protocol_v2.frame_size`).
    """
    pos = 0
    while pos + 2 <= sent:
        size = frame_size(chunk[pos : pos + 2])
        if pos + size > sent:
            break
        pos += size
    return pos


def full_only_store(release: ReleaseInfo) -> tuple[Path, dict[bytes, Ed25519PublicKey]]:
    """The target image staged without deltas, once, in a cache next to the store it came from.

    Built aside and renamed into place, so concurrent callers never see half of it
    (the runner calls this in the parent before it forks its workers).
    """
    src = Store.open(release.store)
    m = load_manifest(src, release.product, release.target)
    digest = hashlib.sha256(
        b"%s|%s|%s|%d"
        % (m.image_sha256, release.product.encode(), release.target.encode(), FULL_PIECES.max_size)
    ).hexdigest()[:24]
    base = cache_base() / "sim-full-only" / digest
    if not (base / "store" / "fwdist-store").exists():
        base.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=digest + ".tmp-", dir=base.parent))
        try:
            key_path, _ = keys.generate(work / "release.key")
            store = Store.open(work / "store", create=True)
            (work / "image.bin").write_bytes(release_image(src, m))
            stage(
                store,
                work / "image.bin",
                keys.load_private(key_path),
                StageOptions(
                    m.product,
                    m.version,
                    hardware=m.hardware,
                    security_counter=m.security_counter,
                    min_battery=m.min_battery,
                    min_app=m.min_app,
                    now=m.created,
                    chunker=FULL_PIECES,  # pieces the box's decoder RAM can take whole
                ),
            )
            (work / "image.bin").unlink()
            os.rename(work, base)
        except OSError:
            shutil.rmtree(work, ignore_errors=True)  # another process made it first
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    pub = keys.load_public(base / "release.key.pub")
    return base / "store", {key_id(pub): pub}


@dataclass
class FwdistStrategy:
    """One of the two fwdist strategies, ready to make boxes (one per worker process)."""

    name: str  # FULL or DELTA
    config: BoxConfig
    trusted: dict[bytes, Ed25519PublicKey]
    cache: PhoneCache
    manifest: Manifest
    templates: dict[str, Flash]  # running version -> factory-programmed flash
    payloads: dict[str, PayloadRef]  # running version -> the payload its boxes take
    index_of: dict[bytes, dict[bytes, int]]  # table sha -> piece id -> index
    target_sha256: bytes
    epoch: int
    spare: list[Flash] = field(default_factory=list)  # flashes of installed boxes, to reuse
    frame_cache: FrameCache = field(default_factory=FrameCache)  # shared by this strategy's phones

    @classmethod
    def load(cls, release: ReleaseInfo, delta: bool, max_frame: int = 244) -> FwdistStrategy:
        src = Store.open(release.store)
        if delta:
            store_dir, trusted = release.store, recorded_keys(src)
        else:
            store_dir, trusted = full_only_store(release)
        store = Store.open(store_dir)
        m = load_manifest(store, release.product, release.target)
        cache = phone_cache(store, release.product, release.target)
        olds = {
            v: release_image(src, load_manifest(src, release.product, v)) for v in release.sources
        }
        payloads = {}
        for v, o in olds.items():
            ref = box_payload(m, hashlib.sha256(o).digest())
            if ref is None and Version.parse(v) >= m.parsed_version:
                ref = m.full  # never taken: the box refuses a release that is not newer
            if ref is None:
                raise FwdistError(
                    f"no payload of {m.product}@{m.version} for a box on {v} decodes in the "
                    f"simulated box's RAM ({MCU}): stage it for that box "
                    f"(fwdist stage --max-piece {DECODER_RAM})"
                )
            payloads[v] = ref
        image_bytes = max(m.image_size, *(len(o) for o in olds.values()))
        config = mcu_config(m.product, m.hardware, image_bytes, payloads.values(), max_frame)
        templates = {}
        for v, image in olds.items():
            flash = config.make_flash()
            counter = load_manifest(src, release.product, v).security_counter
            Lockbox.provision(flash, config, image, v, counter)
            templates[v] = flash
        index_of = {}
        for ref in (m.full, *m.deltas):
            table = load_table(store, ref)
            index_of[ref.table_sha256] = {e.id: i for i, e in enumerate(table.pieces)}
        return cls(
            DELTA if delta else FULL,
            config,
            trusted,
            cache,
            m,
            templates,
            payloads,
            index_of,
            m.image_sha256,
            m.created,
        )

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.name]

    def new_box(self, box: BoxDraw) -> FwdistBox:
        return FwdistBox(self, box)


class FwdistBox:
    """One simulated lockbox under a fwdist strategy (the Lockbox is made at its first session)."""

    def __init__(self, strategy: FwdistStrategy, box: BoxDraw) -> None:
        self.st = strategy
        self.draw = box
        self.ref = strategy.payloads[box.running]
        self.progress = Progress(payload=self.ref.size)
        self._lockbox: Lockbox | None = None
        self.sessions = 0

    def lockbox(self) -> Lockbox:
        """The box's Lockbox, booted; made at the first call from the factory flash of its version.

        An installed box lets go of it (its flash goes to the next new box), so
        a later call would start a fresh box.
        """
        if self._lockbox is None:
            spare = self.st.spare.pop() if self.st.spare else None
            flash = self.st.templates[self.draw.running].clone(into=spare)
            self._lockbox = Lockbox(flash, self.st.config, self.st.trusted)
            self._lockbox.boot(self.st.epoch)
        return self._lockbox

    def phone_cache(self, a: Access) -> PhoneCache:
        """What the access's phone holds: the whole release, or the pieces its draw keeps."""
        if a.partial >= 1.0:
            return self.st.cache
        index = self.st.index_of[self.ref.table_sha256]
        return self.st.cache.keep_pieces(lambda pid: a.holds_block(index.get(pid, -1)))

    def open_session(self, a: Access) -> FwdistSession | None:
        if self.progress.done or not a.holds:
            return None
        return FwdistSession(self, a)

    def access(self, a: Access) -> int:
        session = self.open_session(a)
        if session is None:
            return 0
        session.pump.run(a.budget, Charge.AIR)
        session.finish()
        return session.pump.air

    def after_session(self, now: int) -> None:
        """The box's idle step: build when complete, install, and check the result."""
        lb = self.lockbox()
        pr = self.progress
        status = lb.status()
        if status["target_version"] == self.st.manifest.version:
            # (by encoder, size and pieces: a format 2 target names its table by 24 bytes)
            took = None if lb.ref is None else (lb.ref.encoder, lb.ref.size, lb.ref.pieces)
            if took is not None and took != (self.ref.encoder, self.ref.size, self.ref.pieces):
                raise FwdistError(
                    f"box {self.draw.index} took the {took[0]} payload, not the "
                    f"{self.ref.encoder} one the simulator counts (sim.box.box_payload)"
                )
            pr.kept = min(status["received_bytes"], self.ref.size)
        for _ in range(4):
            what = lb.idle(now)
            if what is None or what is IdleStep.WAIT_BATTERY:
                break
            if what in (IdleStep.FAILED, IdleStep.REVERTED):
                pr.errors += 1
                break
            if what is IdleStep.INSTALLED:
                if hashlib.sha256(lb.running_image()).digest() != self.st.target_sha256:
                    raise FwdistError(
                        f"box {self.draw.index} installed an image that is not the target"
                    )
                pr.kept = self.ref.size
                pr.done = True
                if len(self.st.spare) < SPARE_FLASHES:  # the next new box reuses its memory
                    self.st.spare.append(lb.flash)
                self._lockbox = None  # installed and checked: done with its flash
                break


class FwdistSession:
    """One access's conversation on the pump: frame by frame for the trio link, or coarse.

    The frame-by-frame surface is :class:`sim.strategy.FrameSession`'s; the
    coarse mode (:meth:`FwdistBox.access`) runs ``pump`` under the access's
    budget and then calls :meth:`finish`, the same accounting.
    """

    def __init__(self, box: FwdistBox, a: Access) -> None:
        self.box = box
        self.now = box.st.epoch + int(a.t)
        endpoint = BoxEndpoint(box.lockbox(), self.now)
        phone = App(box.phone_cache(a), max_frame=box.st.config.max_frame,
                    frame_cache=box.st.frame_cache)
        self.pump = Pump(endpoint, phone, Turns.PHONE_FIRST)

    def next_frame(self) -> int | None:
        chunk = self.pump.next_chunk()
        return None if chunk is None else len(chunk)

    def delivered(self) -> None:
        self.pump.deliver()

    def lost(self, sent: int) -> None:
        """Walk-away: the peer gets the first ``sent`` bytes of the chunk, then the link drops."""
        self.pump.cut(sent)

    def finish(self) -> None:
        pump = self.pump
        pump.close()  # the box's end_session: what was persisted stays
        left = len(pump.cut_prefix)
        cut = left - whole_frames(pump.cut_prefix, left)  # the frame in flight, lost
        pr = self.box.progress
        before = pr.kept
        pr.air += pump.air
        self.box.after_session(self.now)
        # every byte on the air that is neither kept payload nor the cut frame is protocol
        pr.overhead += pump.air - cut - (pr.kept - before)
