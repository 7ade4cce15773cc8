"""The phone's side of a session, sans-I/O: given what the box reports, what to send next.

A phone is a courier. It carries one release of a product (its newest) in a
:class:`PhoneCache` — the signed manifest, piece tables, and some or all of the
pieces in the form they travel — and the box tells it, when a session opens,
what it runs and what it already holds. From that the :class:`App` decides:

- **which payload**: the one the box names (in its Accept, and in its Status
  for a target it is receiving): the smallest it can hold and apply, the delta
  made from exactly the image it runs or the full image's pieces. The phone
  never needs to know the box's RAM or staging limits; it follows.
- **which pieces, in what order**: only the pieces the box lacks and the phone
  holds; first the piece in progress, resumed at the box's offset (the bytes
  before it are already in the box's flash), then the others fewest remaining
  bytes first, so that a walk-away at any instant leaves as many whole,
  verified pieces behind as the bytes allowed.
- **what counts**: only acknowledged progress. A byte the phone sent is not a
  byte the box kept; the box acknowledges what it has persisted, and only
  those bytes enter ``acked_bytes``.

It also ends politely when there is nothing to do: the box already runs this
release or a newer one, or is receiving a newer release than the phone
carries. A box working on an *older* release is offered the newer manifest;
the box decides whether to switch.

Like the lockbox, the App never touches a socket, a clock or a store: the
transport (:mod:`fwdist.pump` in memory, :mod:`fwdist.trio_link` over streams)
feeds it bytes and sends what it returns, and :func:`fwdist.releases.phone_cache`
loads what it carries. It keeps no
state between sessions but its own; work worth sharing across many phones
(the simulator's) goes in a :class:`FrameCache` their owner passes in. What it
does with each thing the box says is a table (:data:`TRANSITIONS`), as in h11.

The phone streams without waiting for acknowledgements (the link paces it)
and never resends within a session: over the links fwdist runs on (TCP, the
in-memory pump) frames arrive in order or the link is gone, and the next
session resumes at the offsets the box reports.
"""

from __future__ import annotations

import bisect
import enum
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from fwdist import air, protocol, trust
from fwdist import protocol_v2 as v2
from fwdist.errors import FwdistError, ManifestError
from fwdist.manifest import Manifest, PayloadRef, PieceTable, Version, decode, decode_table
from fwdist.protocol import (
    Accept,
    Ack,
    BoxState,
    Error,
    ErrorCode,
    Event,
    FrameDecoder,
    Hello,
    Installed,
    Offer,
    PieceComplete,
    Reason,
    Reject,
    ReleaseComplete,
    Status,
    Target,
)
from fwdist.report import Report
from fwdist.report import decode as decode_report

Decide = Callable[[Report | None], bool]
"""The caller's offer rule for the box in front of it, given its report (None: it sent none).

See :class:`App`: the phone learns which box it reached only from the box's signed report,
which follows the Summary, so a rule that needs the box's id (a rollout's cohort) runs then.
"""

# How many bytes one ``data_to_send()`` call hands out at most. Not a window:
# the phone never waits for acks to keep sending (the link paces it); this only
# keeps each batch small enough that a box's Error or rewind is heard soon.
BATCH_BYTES = 4096


class AppError(FwdistError):
    """The phone cannot serve this product (nothing staged, a damaged cache...)."""


# ================================================================================
# What the phone carries
# ================================================================================


@dataclass(frozen=True)
class PhoneCache:
    """One release as a phone carries it: signed manifest, piece tables, some or all pieces.

    ``air`` holds the release's format 2 manifests, one per payload (in
    :func:`fwdist.air.payload_refs` order), which a box speaking protocol 2 is
    offered instead of ``manifest_wire``; a release staged before format 2 has none,
    and its boxes are offered ``manifest_wire`` over either protocol.
    ``tables`` maps a table's SHA-256 to its bytes. Pieces are held in the form
    they travel: ``frames`` holds zstd frames of full-image pieces (compressed
    tables), ``raw`` the bytes of delta pieces (already compressed), both keyed
    by piece id. A phone that met the release only partly (the simulator's
    phones) holds a subset: see :meth:`keep_pieces`.

    ``roots`` (the signed root links the phone synced, any order) and ``timestamp``
    (the latest signed timestamp) are relayed to a protocol 2 box before any offer
    (:class:`~fwdist.protocol_v2.TrustAsk` and what follows); a cache without them
    asks nothing and its sessions are byte for byte as before.
    """

    manifest_wire: bytes
    tables: Mapping[bytes, bytes]
    frames: Mapping[bytes, bytes] = field(default_factory=dict)
    raw: Mapping[bytes, bytes] = field(default_factory=dict)
    air: tuple[bytes, ...] = ()
    roots: tuple[bytes, ...] = ()
    timestamp: bytes | None = None

    @functools.cached_property
    def root_links(self) -> tuple[tuple[int, bytes], ...]:
        """(version, link) of each root the phone carries, oldest first (TrustError if one
        does not decode: the loader checked them)."""
        return tuple(sorted((trust.decode_root(w).root.version, w) for w in self.roots))

    @functools.cached_property
    def timestamp_version(self) -> int | None:
        if self.timestamp is None:
            return None
        return trust.decode_timestamp(self.timestamp).timestamp.version

    @property
    def carries_trust(self) -> bool:
        """Whether a session asks the box what it holds (see :class:`App`)."""
        return bool(self.roots) or self.timestamp is not None

    @functools.cached_property
    def manifest(self) -> Manifest:
        return decode(self.manifest_wire).manifest

    @functools.cached_property
    def air_tags(self) -> dict[bytes, int]:
        """The release tag of each format 2 manifest -> the payload it carries."""
        return {protocol.release_tag(w): i for i, w in enumerate(self.air)}

    @functools.cached_property
    def tag(self) -> bytes:
        return protocol.release_tag(self.manifest_wire)

    def table(
        self, ref: PayloadRef, frame_cache: FrameCache | None = None
    ) -> tuple[bytes, PieceTable] | None:
        """The bytes and decoded form of ``ref``'s piece table, if the phone holds it."""
        data = self.tables.get(ref.table_sha256)
        if data is None:
            return None
        decode_ = decode_table if frame_cache is None else frame_cache.table
        return data, decode_(data, ref.table_sha256)

    def wire_piece(self, table: PieceTable, index: int) -> bytes | None:
        """The bytes that travel for piece ``index`` of ``table``, if the phone holds them."""
        entry = table.pieces[index]
        return (self.frames if table.compressed else self.raw).get(entry.id)

    def keep_pieces(self, keep: Callable[[bytes], bool]) -> PhoneCache:
        """The same release with only the pieces whose id ``keep`` accepts (bytes are shared)."""
        return replace(
            self,
            frames={k: v for k, v in self.frames.items() if keep(k)},
            raw={k: v for k, v in self.raw.items() if keep(k)},
        )


# ================================================================================
# Data frames, and a memo of them for an owner of many phones
# ================================================================================


def data_frames(
    tag: bytes, piece: int, data: bytes, offset: int, align: int, max_frame: int
) -> Iterator[tuple[bytes, int]]:
    """The Data frames that carry ``data`` from ``offset`` to its end, each with its content bytes.

    The offset is rounded down to ``align`` (the box persisted whole write units
    only), every frame is as full as ``max_frame`` allows, and every frame but
    the last carries a multiple of ``align`` bytes, as the box requires.
    """
    offset -= offset % align
    size = len(data)
    while offset < size:
        room = protocol.data_capacity(max_frame, tag, piece, offset)
        end = size if offset + room >= size else offset + room - room % align
        yield protocol.encode_data(tag, piece, offset, data[offset:end], max_frame), end - offset
        offset = end


def data_frames_v2(
    tag: bytes, piece: int, data: bytes, offset: int, align: int, max_frame: int
) -> Iterator[tuple[bytes, int]]:
    """Version 2's frames for the same bytes: one Seek (no content), then chunks that continue it.

    Every chunk is as full as the frame allows and, but for the last, a multiple of
    ``align`` bytes, as :func:`data_frames`; the offsets are implied by the Seek.
    """
    offset -= offset % align
    size = len(data)
    if offset >= size:
        return
    yield v2.encode(v2.Seek(tag, piece, offset), max_frame), 0
    room = v2.data_capacity(max_frame)
    step = room - room % align
    while offset < size:
        end = size if offset + room >= size else offset + step
        chunk = protocol.Data(tag, piece, offset, data[offset:end])
        yield v2.encode(chunk, max_frame, (piece, offset)), end - offset
        offset = end


_FRAMERS = {protocol.PROTOCOL_VERSION: data_frames, v2.VERSION: data_frames_v2}
"""Each protocol version's Data framer, by version."""

_FrameKey = tuple[bytes, int, bytes, int, int, int, int]


class FrameCache:
    """Work the Apps of one owner would repeat: decoding piece tables, encoding Data frames.

    A fleet's phones send the same release's frames again and again (the
    simulator, thousands of times over), so the owner that runs many Apps (the
    simulator, one per strategy) creates one and hands it to each; an App
    without one computes everything itself. The bytes are the same either way
    (``tests/unit/test_app.py`` holds them to that): a table is a pure function
    of its bytes, and an object's frames of (its bytes, offset, tag, piece,
    alignment, frame size), which is the key. Bounded: past ``max_frames``
    frames it starts again empty.
    """

    def __init__(self, max_frames: int = 16_384) -> None:  # about 4 MB of 244-byte frames
        self.max_frames = max_frames
        self._tables: dict[tuple[bytes, bytes], PieceTable] = {}  # a few per release
        self._frames: dict[_FrameKey, tuple[tuple[bytes, int], ...]] = {}
        self._held = 0

    def table(self, data: bytes, sha256: bytes) -> PieceTable:
        """``decode_table(data, sha256)``, decoded once (a table that fails is never kept)."""
        key = (sha256, data)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = decode_table(data, sha256)
        return table

    def frames(
        self, tag: bytes, piece: int, data: bytes, offset: int, align: int, max_frame: int,
        version: int = protocol.PROTOCOL_VERSION,
    ) -> Iterable[tuple[bytes, int]]:
        """``data_frames(...)`` (or version 2's) of these arguments, encoded once."""
        framer = _FRAMERS[version]
        if type(data) is not bytes:  # only bytes are keys (their hash is cached, too)
            return framer(tag, piece, data, offset, align, max_frame)
        key = (data, offset - offset % align, tag, piece, align, max_frame, version)
        got = self._frames.get(key)
        if got is None:
            got = tuple(framer(tag, piece, data, offset, align, max_frame))
            if self._held + len(got) > self.max_frames:
                self._frames.clear()
                self._held = 0
            if len(got) <= self.max_frames:
                self._frames[key] = got
                self._held += len(got)
        return got

    def __len__(self) -> int:
        """How many encoded frames it holds (never more than ``max_frames``)."""
        return self._held


# ================================================================================
# Deciding what to send
# ================================================================================


@dataclass(frozen=True)
class Send:
    """One object to stream: ``piece`` (or ``protocol.TABLE``) from ``offset`` to its end."""

    piece: int
    offset: int
    data: bytes

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset


def send_order(
    table: PieceTable,
    table_data: bytes,
    target: Target,
    held: Callable[[int], bytes | None],
) -> list[Send]:
    """What the box lacks and the phone holds, in the order that finishes pieces soonest.

    The table first (nothing can be verified without it), resumed at the
    bytes the box persisted; then the pieces the box has begun, resumed at
    their persisted offsets; then the untouched pieces, smallest first. Ties
    go to the lower index so the order is deterministic.
    """
    out: list[Send] = []
    if target.table_received != len(table_data):
        # more staged than the table holds is a hostile phone's junk: resend from the start,
        # which makes the box discard it (its staged prefix differs from the table's)
        start = target.table_received if target.table_received < len(table_data) else 0
        out.append(Send(protocol.TABLE, start, table_data))
    partial = dict(target.partials)
    begun: list[Send] = []
    fresh: list[Send] = []
    for i in range(len(table.pieces)):
        if target.has(i):
            continue
        data = held(i)
        if data is None:
            continue
        offset = partial.get(i, 0)
        if not 0 <= offset < len(data):
            offset = 0
        (begun if offset else fresh).append(Send(i, offset, data))
    begun.sort(key=lambda s: (s.remaining, s.piece))
    fresh.sort(key=lambda s: (s.remaining, s.piece))
    return out + begun + fresh


class Phase(enum.Enum):
    """Where the phone is in a session (one step of the table in :meth:`App._on_event`)."""

    HELLO = "hello"  # Hello sent, waiting for the box's Status
    WAIT_REPORT = "wait_report"  # Status heard; the offer waits for the box's signed report
    TRUST = "trust"  # protocol 2: relaying root links and a timestamp, waiting for the answers
    OFFERING = "offering"  # manifest chunks sent, waiting for Accept / Reject
    SENDING = "sending"  # streaming table and pieces, counting acks
    DONE = "done"  # nothing more to say; the transport closes the link

    __hash__ = object.__hash__  # identity, as equality is: in C, not Enum's Python __hash__


class Relayed(enum.Enum):
    """What a box's :class:`~fwdist.protocol_v2.TrustAnswer` answers (in the report)."""

    ASK = "ask"
    ROOT_CHAIN = "root_chain"
    TIMESTAMP = "timestamp"


def root_chains(links: Iterable[bytes]) -> list[list[bytes]]:
    """``links`` in order, cut into chains the box buffers whole (at most CHAIN_RAM bytes)."""
    out: list[list[bytes]] = []
    held = v2.CHAIN_RAM
    for w in links:
        if held + len(w) > v2.CHAIN_RAM:
            out.append([])
            held = 0
        out[-1].append(w)
        held += len(w)
    return out


class SessionEnd(enum.Enum):
    """Why the phone ended a session (None where it did what it could and left).

    Code compares members; the value is the :attr:`description` reports and the
    CLI print (the last three are followed by the box's words: see
    :attr:`SessionReport.reason`).
    """

    UP_TO_DATE = "box already runs this release"
    BOX_NEWER = "box runs a newer release"
    BOX_OTHER_BUILD = "box runs another build of this version"
    TARGET_NEWER = "box is receiving a newer release"
    TARGET_OTHER = "box is receiving another build of this version"
    WAITING_INSTALL = "box holds the whole release and installs it when idle"
    OTHER_PRODUCT = "box is another product or hardware"
    NOT_OFFERED = "the rollout does not offer this release to this box"
    NO_TABLE = "phone lacks the piece table for this box"
    NOTHING_HELD = "phone holds none of the pieces the box lacks"
    OLD_PROTOCOL = "box speaks an older protocol"  # the caller retries: see App.fallback
    LINK_DROPPED = "link dropped"
    REJECTED = "box rejected the release"  # detail: the box's Reason
    BOX_ENDED = "box ended the session"  # detail: the box's ErrorCode and message
    BOX_BROKE = "box broke the protocol"  # detail: what the box got wrong

    @property
    def description(self) -> str:
        """The human text for output."""
        return str(self.value)


@dataclass(frozen=True)
class SessionReport:
    """What one session achieved, from the phone's side (only acknowledged progress counts)."""

    sent_bytes: int
    received_bytes: int
    acked_bytes: int
    payload_sent: int
    complete: bool
    installed: bool
    end: SessionEnd | None  # why the phone ended it (None: it did what it could and left)
    detail: str | None  # the box's words after REJECTED, BOX_ENDED, BOX_BROKE
    link_end: str | None  # the transport's reason, when its budget ended the session
    box_version: str | None
    target_version: str | None
    box_limit: int | None = None  # after REJECTED for a size: the box's figure (its Reject)
    needed: int | None = None  # ... and what the least demanding payload for it needs
    protocol: int | None = None  # the version the session spoke (None: the box never answered)
    box_reports: tuple[bytes, ...] = ()  # the box's signed reports (fwdist.report), to carry home
    trust: tuple[tuple[Relayed, v2.TrustAnswer], ...] = ()  # what the box said to each relay

    @property
    def reason(self) -> str | None:
        """Why the session ended, in words (what JSON output and the CLI print)."""
        if self.link_end is not None:
            return self.link_end
        if self.end is None:
            return None
        if self.detail is None:
            return self.end.description
        limit = ""
        if self.box_limit:
            limit = f" (the box has {self.box_limit}, the release needs {self.needed})"
        return f"{self.end.description}: {self.detail}{limit}"

    @property
    def rejected(self) -> str | None:
        """The box's :class:`~fwdist.protocol.Reason` name when it refused the release."""
        return self.detail if self.end is SessionEnd.REJECTED else None

    @property
    def overhead_bytes(self) -> int:
        """Bytes on the air, both ways, that carried no manifest, table or piece content."""
        return self.sent_bytes - self.payload_sent + self.received_bytes

    def after(self, refused: SessionReport) -> SessionReport:
        """This report with the bytes of the refused link before it (a version fallback) added."""
        return replace(self, sent_bytes=refused.sent_bytes + self.sent_bytes,
                       received_bytes=refused.received_bytes + self.received_bytes)

    def as_json(self) -> dict[str, object]:
        return {
            "sent_bytes": self.sent_bytes,
            "received_bytes": self.received_bytes,
            "acked_bytes": self.acked_bytes,
            "payload_sent": self.payload_sent,
            "overhead_bytes": self.overhead_bytes,
            "complete": self.complete,
            "installed": self.installed,
            "reason": self.reason,
            "rejected": self.rejected,
            "box_version": self.box_version,
            "target_version": self.target_version,
            "box_limit": self.box_limit,
            "needed": self.needed,
            "protocol": self.protocol,
            "box_reports": [w.hex() for w in self.box_reports],
            "trust": [{"sent": sent.value,
                       "reason": None if a.reason == 0 else _name(Reason, a.reason),
                       "root_version": a.root_version, "time": a.time,
                       "timestamp_version": a.timestamp_version, "dropped": a.dropped}
                      for sent, a in self.trust],
        }


def _name(kind: type[enum.IntEnum], value: int) -> str:
    try:
        return kind(value).name
    except ValueError:
        return str(value)


_LIVE = (Phase.HELLO, Phase.TRUST, Phase.WAIT_REPORT, Phase.OFFERING, Phase.SENDING)

TRANSITIONS: dict[tuple[Phase, type[Event]], str] = {
    (Phase.HELLO, Status): "status_event",
    (Phase.HELLO, v2.Summary): "status_event",
    (Phase.TRUST, v2.TrustAnswer): "trust_answer",
    (Phase.OFFERING, Accept): "accept",
    (Phase.OFFERING, Reject): "reject",
    # progress after our last word (the box verifies what we sent last) still counts
    **{(ph, ev): "progress" for ph in (Phase.SENDING, Phase.DONE)
       for ev in (Ack, PieceComplete, ReleaseComplete)},
    **{(ph, Installed): "installed" for ph in Phase},
    **{(ph, v2.BoxReport): "box_report" for ph in Phase if ph is not Phase.WAIT_REPORT},
    (Phase.WAIT_REPORT, v2.BoxReport): "report_decides",  # the cohort needs the box's id
    **{(ph, Error): "error" for ph in _LIVE},
}
"""The phone's table, h11-style: (phase, event from the box) -> action (``App._on_<action>``).

A cell missing in a live phase is a protocol error (the phone answers with an
Error frame and ends); in DONE it is news after our last word, ignored.
"""


class App:
    """The phone's side of one session (h11-shaped: bytes in, bytes out, no I/O).

    Use one App per session: ``data_to_send()`` first yields a Hello; feed the
    box's bytes to ``receive_data``; when ``session_over`` is true and nothing
    is left to send, close the link. :meth:`report` says what was achieved.
    """

    def __init__(
        self,
        cache: PhoneCache,
        *,
        max_frame: int = protocol.DEFAULT_MAX_FRAME,
        batch_bytes: int = BATCH_BYTES,
        frame_cache: FrameCache | None = None,
        version: int = v2.VERSION,
        offer: bool = True,
        decide: Decide | None = None,
    ) -> None:
        """``offer=False``: the phone's rollout policy (:class:`fwdist.rollout.SyncPolicy`,
        decided by the caller, who knows which box it reached) does not offer this release
        to this box now. The session still runs to the box's status and signed report, so
        the box is heard from, and ends NOT_OFFERED before any of the release is sent.

        ``decide``: the caller does not know which box it will reach (``fwdist app push``
        to an address), so the offer waits for the box's signed report, which carries its
        id, and ``decide(report)`` says whether to offer (False: NOT_OFFERED, as above).
        The wait costs no air byte: a protocol 2 box sends its report right after its
        Summary, unasked, and the phone says nothing meanwhile. The rule for a box that
        sends none: over protocol 1 there is no report frame, so ``decide(None)`` is asked
        at once; a protocol 2 box that stays silent after its Summary is waited for until
        the link gives up (its idle timeout), and nothing is offered. Why not offer: the
        cohort is a function of the box's id, so a box the phone cannot place must not
        widen a 1 % phase; ``decide(None)`` (:meth:`fwdist.rollout.SyncPolicy.answer` with
        no box) says yes only when every box is offered. The phone cannot check the
        report's signature (the server holds the box's key): a box that lies about its id
        only chooses its own cohort, and its report is then refused at ingest."""
        if version not in protocol.PROTOCOL_VERSIONS:
            raise protocol.LocalProtocolError(f"the phone speaks versions "
                                              f"{protocol.PROTOCOL_VERSIONS}, not {version}")
        self.cache = cache
        self.version = version  # what the Hello names: the highest the phone will speak
        self.offer = offer
        self.decide = decide
        self.box_report: Report | None = None  # the decoded report ``decide`` was given
        self.protocol: int | None = None  # what the box answered in
        self.frame_cache = frame_cache
        self.manifest = cache.manifest
        self.tag = cache.tag
        self.max_frame = max_frame
        self.batch_bytes = batch_bytes
        self.phase = Phase.HELLO
        self.end: SessionEnd | None = None
        self.detail: str | None = None  # the box's words, for the ends that carry them
        self._limit: tuple[int, int] | None = None  # (box's figure, release's need) of a Reject
        self.status: Status | v2.Summary | None = None
        self.complete = False
        self.installed = False
        # the box's first byte says which version it answers in (see receive_data)
        self._decoder: FrameDecoder | v2.FrameDecoder | None = None
        self._out = bytearray()
        self._frame_ends: list[tuple[int, int]] = []  # (bytes produced, payload bytes) per frame
        self._session_max = max_frame
        self._align = 1
        self._queue: list[Send] = []
        self._stream: Iterator[bytes] | None = None  # the Data frames still to send
        self._outstanding: set[int] = set()  # pieces (and TABLE) sent whole, not yet verified
        self._acked: dict[int, int] = {}  # piece -> persisted offset the box acknowledged
        self._start: dict[int, int] = {}  # piece -> persisted offset when the session began
        self._sizes: dict[int, int] = {}
        self._missing: set[int] = set()  # pieces (and TABLE) the box has not verified
        self._manifest_acked = 0
        self._air: int | None = None  # the payload whose format 2 manifest this session names
        self._next_offers: list[int] = []  # format 2 payloads to offer after a fit refusal
        self._deaf = False  # the link is gone or the box broke the protocol: ignore input
        self.produced_bytes = 0
        self.payload_produced = 0
        self.received_bytes = 0
        self.box_reports: list[bytes] = []  # (checked by the frame decoder; signed by the box)
        self.trust: list[tuple[Relayed, v2.TrustAnswer]] = []
        self._asked: list[Relayed] = []  # relays the box has not answered yet, in order
        self._send(Hello(version, max_frame))

    # -- the sans-I/O surface ----------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if not data:
            if self.phase is not Phase.DONE:
                self._finish(SessionEnd.LINK_DROPPED)
            self._deaf = True
            return
        self.received_bytes += len(data)
        if self._deaf:
            return
        try:
            decoder = self._decoder or self._pick_decoder(data[0])
            decoder.feed(data)
            while not self._deaf and (event := decoder.next_event()) is not None:
                self._on_event(event)
        except protocol.RemoteProtocolError as e:
            if self.phase is not Phase.DONE:
                self._send(Error(int(e.code), str(e)[:200]))
            self._deaf = True
            self._finish(SessionEnd.BOX_BROKE, str(e))

    def _pick_decoder(self, first: int) -> FrameDecoder | v2.FrameDecoder:
        """The decoder for the version the box answers in, told by its first byte.

        A box that speaks version 2 answers a Hello naming 2 in version 2's frames;
        version-1 firmware answers in version 1's (its Error, or its Status to a
        phone that named 1).
        """
        decoder: FrameDecoder | v2.FrameDecoder
        if self.version >= v2.VERSION and v2.speaks_v2(first):
            self.protocol = v2.VERSION
            decoder = v2.FrameDecoder(self.max_frame, tag=self.tag)
        else:
            self.protocol = protocol.PROTOCOL_VERSION
            decoder = FrameDecoder(max(protocol.MIN_FRAME, self.max_frame))
        self._decoder = decoder
        return decoder

    def fallback(self) -> App | None:
        """A fresh App speaking version 1, when the box refused our Hello's version (else None).

        Version-1 firmware ends a session whose Hello names another version; the
        caller opens the next link with this App (the bytes of the refused one are
        in this App's report).
        """
        if self.end is not SessionEnd.OLD_PROTOCOL or self.version == protocol.PROTOCOL_VERSION:
            return None
        return App(self.cache, max_frame=max(protocol.MIN_FRAME, self.max_frame),
                   batch_bytes=self.batch_bytes, frame_cache=self.frame_cache,
                   version=protocol.PROTOCOL_VERSION, offer=self.offer, decide=self.decide)

    def data_to_send(self) -> bytes:
        if self.phase is Phase.SENDING and self._stream is not None:
            while len(self._out) < self.batch_bytes:
                frame = next(self._stream, None)
                if frame is None:
                    self._stream = None
                    self._maybe_done()
                    break
                self._out += frame
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def session_over(self) -> bool:
        return self.phase is Phase.DONE

    # -- progress ----------------------------------------------------------------

    @property
    def acked_bytes(self) -> int:
        """Bytes of table and pieces the box acknowledged as persisted in this session."""
        pieces = sum(max(0, off - self._start.get(p, 0)) for p, off in self._acked.items())
        return self._manifest_acked + pieces

    def payload_within(self, sent_bytes: int) -> int:
        """Content bytes carried by the frames that left whole within the first ``sent_bytes``."""
        i = bisect.bisect_right(self._frame_ends, (sent_bytes, math.inf))
        return self._frame_ends[i - 1][1] if i else 0

    def report(
        self, sent_bytes: int | None = None, link_reason: str | None = None
    ) -> SessionReport:
        """The session's outcome; ``sent_bytes`` is what really left (the transport knows).

        A frame cut by the end of the link carried no content: its bytes count
        as sent, and as overhead. ``link_reason`` is the transport's word for a
        budget that ended the session; it is the report's ``reason`` when given.
        """
        sent = self.produced_bytes if sent_bytes is None else sent_bytes
        payload = self.payload_within(sent)
        target = self.status.target.version if self.status and self.status.target else None
        return SessionReport(
            sent_bytes=sent,
            received_bytes=self.received_bytes,
            acked_bytes=self.acked_bytes,
            payload_sent=payload,
            complete=self.complete or self.installed,
            installed=self.installed,
            end=self.end,
            detail=self.detail,
            link_end=link_reason,
            box_version=self.status.running_version if self.status else None,
            target_version=target,
            box_limit=self._limit[0] if self._limit else None,
            needed=self._limit[1] if self._limit else None,
            protocol=self.protocol,
            box_reports=tuple(self.box_reports),
            trust=tuple(self.trust),
        )

    # -- the conversation ----------------------------------------------------------

    def _encode(self, event: Event) -> bytes:
        if self.protocol == v2.VERSION:
            if isinstance(event, Error):
                event = v2.fit_error(event, self._session_max)
            return v2.encode(event, self._session_max)
        return protocol.encode(event, self._session_max)  # (the Hello, too, for every version)

    def _send(self, event: Event, payload: int = 0) -> None:
        self._out += self._account(self._encode(event), payload)

    def _account(self, frame: bytes, payload: int) -> bytes:
        self.produced_bytes += len(frame)
        self.payload_produced += payload
        self._frame_ends.append((self.produced_bytes, self.payload_produced))
        return frame

    def _finish(self, end: SessionEnd | None, detail: str | None = None) -> None:
        """Stop; the first reason given is the one the report keeps."""
        self.phase = Phase.DONE
        self._stream = None
        if self.end is None:
            self.end, self.detail = end, detail

    def _on_event(self, ev: Event) -> None:
        """One step of :data:`TRANSITIONS`; a cell not in the table is the box's mistake."""
        action = TRANSITIONS.get((self.phase, type(ev)))
        if action is None:
            if self.phase is not Phase.DONE:  # after our last word, other news is ignored
                self._box_broke(ErrorCode.UNEXPECTED, f"unexpected {type(ev).__name__}")
            return
        tag = getattr(ev, "tag", self.tag)
        if tag != self.tag:
            self._box_broke(ErrorCode.WRONG_RELEASE, f"{type(ev).__name__} names another release")
            return
        getattr(self, "_on_" + action)(ev)

    def _on_error(self, ev: Error) -> None:
        self._deaf = True
        old = (self.phase is Phase.HELLO and ev.code == ErrorCode.UNSUPPORTED_VERSION
               and self.protocol == protocol.PROTOCOL_VERSION < self.version)
        end = SessionEnd.OLD_PROTOCOL if old else SessionEnd.BOX_ENDED
        self._finish(end, f"{_name(ErrorCode, ev.code)}: {ev.message}")

    def _on_installed(self, ev: Installed) -> None:
        if ev.ok and ev.version == self.manifest.version:
            self.installed = True

    def _on_box_report(self, ev: v2.BoxReport) -> None:
        """Keep the box's report to carry home; the phone cannot check its signature (the
        server holds the box's key) and need not: it only stores and forwards."""
        self.box_reports.append(ev.wire)

    def _on_report_decides(self, ev: v2.BoxReport) -> None:
        """The report the offer waited for: keep it, then ask the caller's rule."""
        self._on_box_report(ev)
        self.box_report = decode_report(ev.wire).report  # (the frame decoder parsed it once)
        self._decided(self.box_report)

    def _decided(self, box: Report | None) -> None:
        assert self.decide is not None and self.status is not None
        if not self.decide(box):
            return self._finish(SessionEnd.NOT_OFFERED)
        try:
            self._toward_offer(self.status)
        except ManifestError as e:
            self._box_broke(ErrorCode.MALFORMED, f"unusable status: {e}")

    def _on_status_event(self, ev: Status | v2.Summary) -> None:
        if self.protocol == v2.VERSION and self.cache.carries_trust:
            # trust first: a rotation can change which release signatures the box takes
            self.status = ev
            self._session_max = min(self.max_frame, ev.max_frame)
            self.phase = Phase.TRUST
            self._relay(Relayed.ASK, v2.TrustAsk())
            return
        self._judge_status(ev)

    def _relay(self, what: Relayed, *frames: Event) -> None:
        for ev in frames:
            self._send(ev)
        self._asked.append(what)

    def _on_trust_answer(self, ev: v2.TrustAnswer) -> None:
        """The box's word on one relay; after the ASK's, send what the box lacks; after the
        last, judge the box as its Summary (less a target it just dropped) says."""
        if not self._asked:
            return self._box_broke(ErrorCode.UNEXPECTED, "a trust answer to nothing asked")
        what = self._asked.pop(0)
        self.trust.append((what, ev))
        st = self.status
        assert st is not None  # (the TRUST phase begins at the Summary)
        if ev.dropped and st.target is not None:
            st = self.status = replace(st, target=None, state=int(BoxState.IDLE))
        if what is Relayed.ASK:
            cache = self.cache
            if ev.root_version is not None:
                newer = [w for v, w in cache.root_links if v > ev.root_version]
                for chain in root_chains(newer):
                    self._relay(Relayed.ROOT_CHAIN, *(v2.TrustLink(w, i == len(chain) - 1)
                                                      for i, w in enumerate(chain)))
            mine = cache.timestamp_version
            if cache.timestamp is not None and mine is not None and (
                    ev.timestamp_version is None or mine > ev.timestamp_version):
                self._relay(Relayed.TIMESTAMP, v2.TrustStamp(cache.timestamp))
        if not self._asked:
            self._judge_status(st)

    def _judge_status(self, ev: Status | v2.Summary) -> None:
        try:
            self._on_status(ev)
        except (ManifestError, protocol.LocalProtocolError) as e:
            # a version that is not X.Y.Z, or frame/alignment limits that leave no room
            self._box_broke(ErrorCode.MALFORMED, f"unusable status: {e}")

    def _on_accept(self, ev: Accept) -> None:
        self._manifest_acked = len(self._offered_wire())
        payload = ev.payload if self._air is None else self._air
        self._start_sending(Target(self.tag, self.manifest.version, 0, b"", (), payload))

    def _on_reject(self, ev: Reject) -> None:
        if self._next_offers and ev.reason in v2.NEXT_OFFER:
            return self._offer()  # this payload does not fit the box: the next one may
        need = self._need(ev.reason)
        if ev.limit and need is not None:
            self._limit = (ev.limit, need)
        self._finish(SessionEnd.REJECTED, _name(Reason, ev.reason))

    def _need(self, reason: int) -> int | None:
        """What the release asks of the limit a Reject names: the least any payload the box
        could take (the full image, a delta from what it runs) needs of it."""
        m, st = self.manifest, self.status
        refs = [r for r in (m.full, *m.deltas)
                if r.source_sha256 is None or (st is not None and st.runs(r.source_sha256))]
        need: dict[int, Callable[[PayloadRef], int]] = {
            Reason.NOT_ENOUGH_RAM: lambda r: r.decode_ram,
            Reason.TOO_MANY_PIECES: lambda r: r.pieces,
            Reason.NO_STAGING_ROOM: lambda r: r.size,
            Reason.TOO_LARGE: lambda r: m.image_size,
        }
        of = need.get(reason)
        return None if of is None else min(of(r) for r in refs)

    def _box_broke(self, code: ErrorCode, message: str) -> None:
        """The box said something we cannot act on: tell it why, stop listening, end."""
        self._send(Error(int(code), message[:200]))
        self._deaf = True
        self._finish(SessionEnd.BOX_BROKE, message)

    def _on_status(self, st: Status | v2.Summary) -> None:
        m = self.manifest
        self.status = st
        self._session_max = min(self.max_frame, st.max_frame)
        self._align = st.align
        if self.protocol == v2.VERSION:
            worst = v2.data_capacity(self._session_max)
        else:
            worst = protocol.data_capacity(self._session_max, self.tag, 0xFFFF,
                                           protocol.MAX_OBJECT)
        if worst - worst % st.align <= 0:
            raise protocol.LocalProtocolError(
                f"{st.align}-byte alignment leaves no room in a {self._session_max}-byte frame")
        mine = m.parsed_version
        if not st.is_for(m.product, m.hardware):
            return self._finish(SessionEnd.OTHER_PRODUCT)
        theirs = Version.parse(st.running_version)
        # Up to date means this version AND these bytes: the same image staged again as a
        # newer version is still a release the box has to take (its version moves).
        if st.runs(m.image_sha256) and theirs == mine:
            self.installed = True
            return self._finish(SessionEnd.UP_TO_DATE)
        if theirs > mine:
            return self._finish(SessionEnd.BOX_NEWER)
        if theirs == mine:
            return self._finish(SessionEnd.BOX_OTHER_BUILD)
        if not self.offer:
            return self._finish(SessionEnd.NOT_OFFERED)
        if self.decide is not None:
            if self.box_reports:  # it came already (before an exchange that ran first)
                self.box_report = decode_report(self.box_reports[0]).report
                return self._decided(self.box_report)
            if self.protocol == v2.VERSION:
                self.phase = Phase.WAIT_REPORT  # the box's report follows, unasked
                return None
            return self._decided(None)  # version 1 has no report frame
        self._toward_offer(st)

    def _toward_offer(self, st: Status | v2.Summary) -> None:
        """The box may be offered the release: resume its target, or offer the manifest."""
        mine = self.manifest.parsed_version
        t = st.target
        if t is not None and self._speaks_air() and t.tag in self.cache.air_tags:
            self._use_air(self.cache.air_tags[t.tag])  # a format 2 target: its payload is known
            t = replace(t, payload=self._air or 0)
        if t is not None and t.tag == self.tag:
            if st.state >= BoxState.COMPLETE:
                self.complete = True
                return self._finish(SessionEnd.WAITING_INSTALL)
            return self._start_sending(t)
        if t is not None:
            theirs = Version.parse(t.version)
            if theirs > mine:
                return self._finish(SessionEnd.TARGET_NEWER)
            if theirs == mine:
                return self._finish(SessionEnd.TARGET_OTHER)
        if self._speaks_air():
            self._next_offers = self._air_order(st)
        self._offer()

    def _speaks_air(self) -> bool:
        """Whether this session offers format 2 manifests (protocol 2, a release that has them)."""
        return self.protocol == v2.VERSION and bool(self.cache.air)

    def _air_order(self, st: Status | v2.Summary) -> list[int]:
        """The payloads to offer, as :func:`fwdist.air.payloads_for` orders them: the deltas
        from the image the box runs, smallest first, then the full image (payload 0)."""
        refs = air.payload_refs(self.manifest)
        deltas = sorted((i for i, r in enumerate(refs)
                         if r.source_sha256 is not None and st.runs(r.source_sha256)),
                        key=lambda i: (refs[i].size, i))
        return [*deltas, 0]

    def _use_air(self, payload: int) -> None:
        """Speak of payload ``payload``'s format 2 manifest: its tag names the release now."""
        self._air = payload
        self.tag = protocol.release_tag(self.cache.air[payload])
        if isinstance(self._decoder, v2.FrameDecoder):
            self._decoder.tag = self.tag

    def _offered_wire(self) -> bytes:
        return self.cache.manifest_wire if self._air is None else self.cache.air[self._air]

    def _offer(self) -> None:
        if self._next_offers:
            self._use_air(self._next_offers.pop(0))
        wire = self._offered_wire()
        self.phase = Phase.OFFERING
        offset = 0
        capacity = (v2.offer_capacity if self.protocol == v2.VERSION
                    else protocol.offer_capacity)
        while offset < len(wire):
            room = capacity(self._session_max, len(wire), offset)
            chunk = wire[offset : offset + room]
            self._send(Offer(len(wire), offset, chunk), len(chunk))
            offset += len(chunk)

    def _start_sending(self, target: Target) -> None:
        payloads = (self.manifest.full, *self.manifest.deltas)
        if not 0 <= target.payload < len(payloads):
            return self._box_broke(ErrorCode.MALFORMED,
                                   f"payload {target.payload} is not in the manifest")
        ref = payloads[target.payload]  # the box names the payload it takes; the phone follows
        got = self.cache.table(ref, self.frame_cache)
        if got is None:
            return self._finish(SessionEnd.NO_TABLE)
        data, table = got
        if self._air is not None:  # format 2: the table travels as rows, or inside the manifest
            rows = air.rows_of(table)
            inline = len(rows) <= air.INLINE_PIECES
            data = b"" if inline else air.encode_table(rows, table.compressed)
        self._queue = send_order(table, data, target, lambda i: self.cache.wire_piece(table, i))
        self._sizes = {s.piece: len(s.data) for s in self._queue}
        self._start = {s.piece: s.offset for s in self._queue}
        self._acked = dict(self._start)
        self._missing = {i for i in range(len(table.pieces)) if not target.has(i)}
        if target.table_received != len(data):
            self._missing.add(protocol.TABLE)
        if not self._queue:
            return self._finish(SessionEnd.NOTHING_HELD)
        self.phase = Phase.SENDING
        self._stream = self._data_frames(self._queue)

    def _data_frames(self, queue: Iterable[Send]) -> Iterator[bytes]:
        """Data frames for each object in order, aligned as the box requires."""
        cache = self.frame_cache
        version = self.protocol or protocol.PROTOCOL_VERSION
        framer = _FRAMERS[version]
        for s in queue:
            args = (self.tag, s.piece, s.data, s.offset, self._align, self._session_max)
            frames = framer(*args) if cache is None else cache.frames(*args, version=version)
            for frame, payload in frames:
                yield self._account(frame, payload)
            self._outstanding.add(s.piece)

    def _on_progress(self, ev: Ack | PieceComplete | ReleaseComplete) -> None:
        if isinstance(ev, Ack):
            if ev.piece in self._sizes:
                self._acked[ev.piece] = max(self._acked.get(ev.piece, 0), ev.offset)
                if ev.offset < self._start.get(ev.piece, 0):
                    self._start[ev.piece] = ev.offset  # a rewind below where we began
        elif isinstance(ev, PieceComplete):
            if ev.piece in self._sizes:
                self._acked[ev.piece] = self._sizes[ev.piece]
            self._outstanding.discard(ev.piece)
            self._missing.discard(ev.piece)
            if not self._missing:
                self.complete = True
        else:
            self.complete = True
            self._outstanding.clear()
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.phase is Phase.SENDING and self._stream is None and not self._outstanding:
            self._finish(None)
