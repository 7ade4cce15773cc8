"""Test support in the library (zarr-style): releases and a reference phone.

Library users may test against a lockbox with these, and need nothing beyond
fwdist's own dependencies (hypothesis is not one of them):

* :func:`make_releases` stages a small release history (SampleFirmware images,
  small chunker parameters, deltas from every earlier release) into a store.
* :class:`Phone` is a minimal, independent phone written straight from the
  protocol spec: it holds some or all pieces of some releases, talks to a
  :class:`~fwdist.lockbox.Lockbox` one session at a time and can walk away
  after any number of bytes. The real phone lives in :mod:`fwdist.app`; this one
  exists so the box's tests do not depend on it.

The hypothesis state machine that drives a box with these lives with the tests
(``tests/property/test_lockbox_stateful.py``).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fwdist import air
from fwdist import protocol as p
from fwdist import protocol_v2 as v2
from fwdist.chunker import ChunkerParams
from fwdist.flash import Flash
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
    air: tuple[bytes, ...] = ()  # its format 2 manifests, one per payload (full, deltas)

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
                  counters: tuple[int, ...] | None = None,
                  encoders: tuple[str, ...] | None = None) -> Releases:
    """Stage ``count`` releases of a seeded SampleFirmware into a store under ``root``.

    ``encoders`` restricts the delta encoders (a test that must exercise one decoder).
    """
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
            level=19, chunker=SMALL_CHUNKS, delta_piece_size=1024, encoders=encoders,
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
        bundle = store.get_air(product, fw.version(r))
        air_wires = () if bundle is None else air.decode_bundle(bundle)
        out.append(Release(wire, m, image, payloads, air_wires))
    return Releases(store, key, tuple(out))


def box_config(releases: Releases, **overrides: Any) -> BoxConfig:
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
    """A phone holding some releases, and of their pieces only ``holds`` (None: all).

    ``protocol`` is the version it speaks (2: Seek and chunks, the box's Summary);
    with ``air`` (protocol 2 only) it offers the releases' format 2 manifests, the
    deltas from the box's image smallest first and the full image last, the next one
    after each refusal the box stays ready from.
    """

    releases: list[Release]
    holds: set[int] | None = None
    max_frame: int = p.DEFAULT_MAX_FRAME
    order_seed: int | None = None
    protocol: int = p.PROTOCOL_VERSION
    air: bool = False
    _tag: bytes | None = field(default=None, init=False, repr=False)  # the release it sends

    def session(self, box: Lockbox, now: int = 0, budget: int | None = None) -> SessionLog:
        """One whole session against ``box``; walk away once ``budget`` bytes are sent."""
        log = SessionLog()
        dec: p.FrameDecoder | v2.FrameDecoder = p.FrameDecoder(p.MAX_FRAME)
        cursor: list[tuple[bytes, int, int] | None] = [None]  # where version 2's chunks go
        box.open_session(now)

        def encode(ev: p.Event) -> bytes:
            if self.protocol == p.PROTOCOL_VERSION or isinstance(ev, p.Hello):
                return p.encode(ev, self.max_frame)
            if not isinstance(ev, p.Data):
                return v2.encode(ev, self.max_frame)
            seek = b""
            if cursor[0] != (ev.tag, ev.piece, ev.offset):
                seek = v2.encode(v2.Seek(ev.tag, ev.piece, ev.offset), self.max_frame)
            cursor[0] = (ev.tag, ev.piece, ev.offset + len(ev.data))
            return seek + v2.encode(ev, self.max_frame, (ev.piece, ev.offset))

        def send(ev: p.Event) -> list[p.Event]:
            nonlocal dec
            if isinstance(ev, p.Hello) and self.protocol != p.PROTOCOL_VERSION:
                dec = v2.FrameDecoder(p.MAX_FRAME)
            if isinstance(dec, v2.FrameDecoder):
                dec.tag = self._tag  # (version 2's progress frames name no release)
            frame = encode(ev)
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

    def _pick(self, status: p.Status | v2.Summary) -> Release | None:
        best = None
        for rel in self.releases:
            if not status.is_for(rel.manifest.product, rel.manifest.hardware):
                continue
            if status.target is not None and status.target.tag in (rel.tag, *map(
                    p.release_tag, rel.air)):
                return rel
            if best is None or rel.manifest.parsed_version > best.manifest.parsed_version:
                best = rel
        return best

    def _converse(self, send: object, log: SessionLog) -> None:
        assert callable(send)
        evs = send(p.Hello(self.protocol, self.max_frame))
        status = next((e for e in evs if isinstance(e, p.Status | v2.Summary)), None)
        if status is None:
            return
        rel = self._pick(status)
        if rel is None:
            return
        self._tag = rel.tag
        running = Version.parse(status.running_version)
        target = status.target
        # format 2 (unless the box's target is this release's format 1 manifest: resume that)
        tags = [p.release_tag(w) for w in rel.air] if self.air else []
        if target is not None and target.tag == rel.tag:
            tags = []
        refs = (rel.manifest.full, *rel.manifest.deltas)
        if target is not None and target.tag in tags:
            self._tag = target.tag
            target = replace(target, payload=tags.index(target.tag))
        if tags and (target is None or target.tag not in tags):
            if rel.manifest.parsed_version <= running:
                return
            if target is not None and rel.manifest.parsed_version <= Version.parse(target.version):
                return
            order = sorted((i for i, r in enumerate(refs) if r.source_sha256 is not None
                            and status.runs(r.source_sha256)), key=lambda i: refs[i].size)
            accept = None
            for index in [*order, 0]:
                self._tag, wire = tags[index], rel.air[index]
                for off in range(0, len(wire), 180):
                    evs = send(p.Offer(len(wire), off, wire[off : off + 180]))
                accept = next((e for e in evs if isinstance(e, p.Accept)), None)
                reject = next((e for e in evs if isinstance(e, p.Reject)), None)
                if accept is not None or reject is None or reject.reason not in v2.NEXT_OFFER:
                    break
            if accept is None:
                for e in evs:
                    if isinstance(e, p.Reject):
                        log.rejected = p.Reason(e.reason)
                return
            table_received, bitmap, partials = 0, b"", dict[int, int]()
        elif target is None or target.tag not in (rel.tag, *tags):
            if rel.manifest.parsed_version <= running:
                return
            if target is not None and rel.manifest.parsed_version <= Version.parse(target.version):
                return
            for off in range(0, len(rel.wire), 180):
                evs = send(p.Offer(len(rel.wire), off, rel.wire[off : off + 180]))
            accept = next((e for e in evs if isinstance(e, p.Accept)), None)
            if accept is None:
                for e in evs:
                    if isinstance(e, p.Reject):
                        log.rejected = p.Reason(e.reason)
                return
            table_received, bitmap, partials, index = 0, b"", {}, accept.payload
        else:
            table_received, bitmap = target.table_received, target.bitmap
            partials, index = dict(target.partials), target.payload
        # the payload the box named (it picks the smallest it can hold and apply)
        ref = refs[index]
        payload = rel.payloads[ref.table_sha256]
        if tags:  # format 2: the rows travel inside the manifest, or as a table of rows
            rows = air.rows_of(payload.table)
            inline = len(rows) <= air.INLINE_PIECES
            payload = replace(payload, table_bytes=b"" if inline else air.encode_table(
                rows, payload.table.compressed))
        align = status.align
        tag = self._tag
        done: set[int] = {i for i in range(len(payload.pieces)) if bitmap and
                          p.Target(tag, "x", 0, bitmap).has(i)}

        def stream(piece: int, data: bytes, start: int) -> None:
            off = start
            while off < len(data):
                room = (p.data_capacity(status.max_frame, tag, piece, off)
                        if self.protocol == p.PROTOCOL_VERSION
                        else v2.data_capacity(status.max_frame))
                room -= room % align
                evs = send(p.Data(tag, piece, off, data[off : off + room]))
                for e in evs:
                    if isinstance(e, p.PieceComplete):
                        done.add(e.piece)
                    if isinstance(e, p.Error):
                        return
                off += room

        if table_received != len(payload.table_bytes):  # (more is junk: resend it all)
            start = table_received if table_received < len(payload.table_bytes) else 0
            stream(p.TABLE, payload.table_bytes, start - start % align)
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
