"""The box: the glue between the two tables, the staging area, the builder and the journal.

Nothing in here does I/O, keeps time or threads: bytes come in through
:meth:`Lockbox.receive_data` and the bytes to send come back out; time is the
``now`` argument (seconds, used for manifest expiry); storage is an injected
:class:`~fwdist.flash.Flash`. That is what lets the same code run in a TCP
process, inside the simulator and under hypothesis' stateful testing.

Every change to what the box keeps goes through :meth:`Lockbox._commit`: the
record is applied to the state by the update table, then journalled.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fwdist import air, trust
from fwdist import protocol as p
from fwdist import protocol_v2 as v2
from fwdist.errors import ManifestError
from fwdist.flash import AlignedWriter, Flash
from fwdist.journal import Journal, JournalFull
from fwdist.lockbox import _accept, _air, _build, _images, _trust
from fwdist.lockbox._config import BoxConfig, Layout, LockboxError
from fwdist.lockbox._receive import Receiver
from fwdist.lockbox._reports import Facts, Identity, Reporter
from fwdist.lockbox._session import TRANSITIONS, Action, End, Open, Session
from fwdist.lockbox._staging import Staging, StagingFull
from fwdist.lockbox._state import PState, StampWire, Stream, TargetRec, unpack
from fwdist.lockbox._update import (
    TABLE,
    Built,
    Clock,
    Confirm,
    GiveUp,
    Record,
    Reset,
    Revert,
    Target,
    Trial,
    Trim,
    apply_record,
    record_from_wire,
    record_wire,
)
from fwdist.manifest import Manifest, PayloadRef, PieceTable, Version, verify
from fwdist.report import Outcome, TargetProgress


def _policy_give_up(why: p.Reason) -> GiveUp:
    """The record of a target dropped because a policy no longer holds. A manifest that no
    longer verifies (its key withdrawn by a rotation) is UNUSABLE, as when boot finds it so
    (``Receiver.load``): a power cut between the two must not change what the box reports."""
    if why is p.Reason.BAD_SIGNATURE:
        return GiveUp(Outcome.UNUSABLE, 0)
    return GiveUp(Outcome.REFUSED, int(why))


SelfTest = Callable[[Manifest, Callable[[int, int], bytes]], bool]
S = Session


class IdleStep(enum.Enum):
    """What one :meth:`Lockbox.idle` call did."""

    BUILT = "built"  # every piece was here: the new image is built and checked
    INSTALLED = "installed"  # the new image passed its self-test and runs
    REVERTED = "reverted"  # the new image failed its self-test: the old one runs
    FAILED = "failed"  # the pieces did not build the signed image: the release is dropped
    WAIT_BATTERY = "wait_battery"  # built, but the battery is below the manifest's minimum
    WAIT_WINDOW = "wait_window"  # built, but outside every install window of its timestamp
    REFUSED = "refused"  # built, but no longer passes the offer's rules (expired): dropped
    DAMAGED = "damaged"  # the running image does not match its hash: target dropped, no blame


def _always_ok(m: Manifest, read: Callable[[int, int], bytes]) -> bool:
    return True


class Lockbox:
    """One lockbox: drive it with :meth:`boot`, sessions, and :meth:`idle`."""

    def __init__(self, flash: Flash, config: BoxConfig, trusted: Mapping[bytes, Ed25519PublicKey],
                 self_test: SelfTest | None = None, identity: Identity | None = None) -> None:
        """``identity`` (an id and a device key) makes the box sign a report in each protocol 2
        session (:meth:`_report`); a box without one reports nothing, as the field's firmware
        before reports."""
        self.flash = flash
        self.config = config
        self.trusted = dict(trusted)
        self.self_test = self_test or _always_ok
        self.layout = Layout.of(flash, config)
        self.journal = Journal(self.layout.journal)
        self.staging = Staging(self.layout.staging, config.align, self._commit)
        self.builder = _build.Builder(self.staging)
        self.rx = Receiver(config, self.layout, self.staging, self.builder, self._commit,
                           self._verify)
        self.reporter = None if identity is None else Reporter(identity, self._commit)
        self.battery = 100
        self.session = Session.CLOSED
        self.s: PState | None = None
        self._news: tuple[str, bool] | None = None
        self._verified: tuple[bytes, bytes, Manifest] | None = None
        self._root: tuple[bytes | None, trust.Root | None] | None = None
        # one packer per box, reused: packb() sets one up (with a 1 MiB buffer) per call, and a
        # module-wide one would be state shared by every box
        self._pack: Callable[[object], bytes] = msgpack.Packer(use_bin_type=True).pack
        self._decoder: p.FrameDecoder | v2.FrameDecoder = p.FrameDecoder(config.max_frame)
        self._out_max = config.max_frame
        self.protocol = p.PROTOCOL_VERSION  # this session's (the Hello every version reads is v1's)
        self._offer = bytearray()
        self._offer_total = 0
        self._chain: list[bytes] = []  # root links of the chain a phone is relaying (CHAIN_RAM)
        # a timestamp verified since this session began: a clockless box's only proof that
        # the time is inside a window now (see _trust.install_wait); RAM, gone at power-off
        self._fresh_stamp = False
        self._window_wait = False  # the last idle step found every window closed
        self.frames_out = 0
        self.bytes_out = 0

    # -- provisioning and boot ----------------------------------------------------

    @classmethod
    def provision(cls, flash: Flash, config: BoxConfig, image: bytes, version: str,
                  counter: int = 0, clock: int = 0, root: bytes | None = None) -> None:
        """Factory programming: the image into slot 0 and a first journal snapshot.

        ``clock`` is the time of programming, if known: the box, which may have no clock of
        its own, then refuses manifests that expired before it was made. ``root`` is the
        signed root (:mod:`fwdist.trust`) it trusts; without one it trusts the keys it is
        built with (``trusted``), as a legacy single-key root.
        """
        _build.provision(flash, config, image, version, counter, clock, root)

    def boot(self, now: int = 0) -> None:
        """Power on: replay the journal, finish what a power cut interrupted, be ready."""
        replay = self.journal.load()
        s = PState.from_wire(unpack(replay.snapshot))
        for raw in replay.records:
            apply_record(s, record_from_wire(unpack(raw)))
        self.session = Session.CLOSED
        self.staging.torn.clear()
        self._verified = None  # keys may have changed since: verify the stored manifest again
        self.builder.forget()
        fresh = _images.reconcile(s, self.layout.slots, self.layout.manifests,
                                  lambda wire: self._verify(wire, s))
        if fresh is not None:  # the journal disagrees with the images: trust what flash proves
            s = fresh
        self.s = s
        if self.reporter is not None:
            self.reporter.boot(s)
        if replay.dirty or fresh is not None:
            self.journal.compact(self._pack(s.to_wire()))
        self.rx.load(self._state)
        t = s.target
        if t is None:
            return
        if t.phase == p.BoxState.TESTING:
            # we were running the new image in test mode and it never confirmed: revert
            back: Record = (GiveUp(Outcome.TRIALS_EXHAUSTED, 0)
                            if t.trials >= self.config.max_trials else Revert())
            self._commit(back)
            if s.target is None:
                self.rx.forget()
                return
        ss = self.config.sector_size
        for sid, st in list(t.streams.items()):
            if st.done:
                continue
            keep = math.ceil(st.received / ss)
            if len(st.sectors) > keep:
                self._commit(Trim(sid, keep))
            if st.received % ss:
                self.staging.torn[sid] = keep - 1
        if self.table is not None and s.prev is not None:
            self.rx.adopt_prev(s, t)
        self.rx.finish_streams(s, t)

    def _verify(self, wire: bytes, booting: PState | None = None) -> Manifest:
        """:func:`~fwdist.manifest.verify`, remembering the last manifest that verified.

        An offer is checked when it arrives, again when it becomes the target and
        again when read back from flash; the same bytes under the same keys give the
        same answer, so the signature is checked once. Bytes read back from flash
        are compared in full, so a slot that rotted still fails; boot forgets.
        A format 2 manifest (first byte 2) is checked by :func:`fwdist.air.verify`
        and read as its :func:`~fwdist.lockbox._air.view` for the image this box runs.
        """
        running = b"" if self.s is None else self.s.running_sha256
        if self._verified is not None and self._verified[:2] == (wire, running):
            return self._verified[2]
        keys, threshold = _trust.policy(self._root_of(booting or self._state), self.config)
        if _air.is_format2(wire):
            m = _air.view(air.verify(wire, keys, threshold), self.config, running)
        else:
            m = verify(wire, keys, threshold)
        self._verified = (wire, running, m)
        return m

    # -- trust -------------------------------------------------------------------------

    @property
    def root(self) -> trust.Root | None:
        """The root the box trusts (its legacy keys as root 0 when it holds no signed root)."""
        return self._root_of(self._state)

    def _root_of(self, s: PState) -> trust.Root | None:
        """The root state ``s`` trusts (decoded once per root bytes)."""
        if self._root is None or self._root[0] != s.root:
            self._root = (s.root, _trust.current_root(s, self.trusted))
        return self._root[1]

    def release_policy(self) -> tuple[dict[bytes, Ed25519PublicKey], int]:
        """The keys and threshold that sign this box's releases under its root."""
        return _trust.policy(self.root, self.config)

    def offer_root(self, links: list[bytes], now: int = 0) -> p.Reason | None:
        """Take a relayed root chain: each new link a ROOT record, then the target re-judged.

        Nothing changes unless the whole chain verifies (a bad link refuses all of it); a
        target that the new root's release role would not accept (a fast-forward a removed
        key signed) is dropped, as TUF resets after a fast-forward attack.
        """
        records = _trust.judge_links(self.root, links, max(now, self._state.clock))
        if isinstance(records, p.Reason):
            return records
        if records and not self._trust_fits(replace(self._state, root=records[-1].wire)):
            return p.Reason.TOO_LARGE
        for rec in records:
            self._commit(rec)
        self._verified = None
        self._recheck_target(now)  # (even when current: a cut may have come before the drop)
        return None

    def offer_timestamp(self, wire: bytes, now: int = 0) -> p.Reason | None:
        """Take a relayed timestamp: newer than the box's, signed by the timestamp role, not
        expired; its time raises the box's clock, a target it revokes is dropped."""
        rec = _trust.judge_stamp(self.root, self._state, self.config, wire, now)
        if isinstance(rec, p.Reason):
            return rec
        if not self._trust_fits(replace(self._state, stamp=StampWire(*rec))):
            return p.Reason.TOO_LARGE
        self._commit(rec)
        self._fresh_stamp = True
        self._recheck_target(now)
        return None

    def _trust_fits(self, s: PState) -> bool:
        """Whether a journal half holds ``s`` (the state with a new root or timestamp) at its
        target's worst case, as :func:`_accept.worst_snapshot` judged the target against the
        root and timestamp the box held then: whichever comes second is judged against the
        other, so no later compaction overflows."""
        t, m, ref = s.target, self.manifest, self.ref
        if t is not None and m is not None and ref is not None:
            size = _accept.worst_snapshot(s, self.config, self.layout.staging.sectors, m, ref,
                                          t.tag)
        else:
            size = len(self._pack(s.to_wire()))
        return size <= self.journal.snapshot_room()

    def _target_wire(self) -> bytes | None:
        t = self._state.target
        if t is None:
            return None
        return self.layout.manifests[t.mslot].read(0, t.mlen)

    def _policy_reason(self, now: int) -> p.Reason | None:
        """Why the target no longer passes: its signatures under the current root, the
        release's revocation, the root's and the manifest's expiry, counter and version."""
        wire = self._target_wire()
        if wire is None:
            return None
        try:
            m = self._verify(wire)
        except ManifestError:
            return p.Reason.BAD_SIGNATURE
        return _accept.still_valid(m, now, self._state)

    def _recheck_target(self, now: int) -> None:
        t = self._state.target
        if t is None or t.phase == p.BoxState.TESTING:
            return
        why = self._policy_reason(now)
        if why is not None:
            self._commit(_policy_give_up(why))
            self._news = (t.version, False)
            self.rx.forget()

    def trust_status(self) -> dict[str, Any]:
        """Root version, proven time, the timestamp's word on this product (its latest,
        revoked versions and daily UTC install windows), and whether the box is kept behind
        the latest release it has seen signed (a freeze)."""
        s = self._state
        root = self.root
        st = s.stamp
        latest = None if st is None else st.latest
        frozen = latest is not None and Version.parse(latest) > Version.parse(
            s.running_version)
        return {"root_version": None if root is None else root.version,
                "root_expires": None if root is None else root.expires,
                "time": s.clock, "timestamp_version": None if st is None else st.version,
                "latest": latest, "revoked": [] if st is None else list(st.revoked),
                "behind_latest": frozen,
                "windows": [trust.format_window(a, n) for a, n in (st.windows or [])] if st else []}

    @property
    def manifest(self) -> Manifest | None:
        """The target's manifest (verified), while there is a target."""
        return self.rx.manifest

    @property
    def ref(self) -> PayloadRef | None:
        """The target's payload this box takes (by the image it runs)."""
        return self.rx.ref

    @property
    def table(self) -> PieceTable | None:
        """The target's piece table, once it is whole."""
        return self.rx.table

    @property
    def _state(self) -> PState:
        if self.s is None:
            raise LockboxError("the box has not booted")
        return self.s

    @property
    def _target(self) -> TargetRec:
        t = self._state.target
        if t is None:
            raise LockboxError("no target")
        return t

    def _commit(self, rec: Record) -> None:
        """Apply one record to the state and append it to the journal (compacting when full)."""
        s = self._state
        apply_record(s, rec)
        if type(rec) is Reset:
            self.staging.torn.pop(rec.sid, None)  # its sectors are free now; nothing to relocate
        try:
            self.journal.append(self._pack(record_wire(rec)))
        except JournalFull:
            self.journal.compact(self._pack(s.to_wire()))

    def state_bytes(self) -> bytes:
        """The persistent state, canonically encoded (tests compare it before and after)."""
        return self._pack(self._state.to_wire())

    # -- sessions -----------------------------------------------------------------------

    def open_session(self, now: int = 0) -> bytes:
        """A phone connected. The box has already opened for the agent: nothing here waits.

        No flash operation happens here; the box says nothing until the phone's Hello.
        """
        out: list[bytes] = []
        self._fresh_stamp = False  # this phone has not proven the time yet
        self._dispatch(Open(), now, out)
        return b"".join(out)

    def receive_data(self, data: bytes, now: int = 0) -> bytes:
        """Bytes from the phone in, bytes to send back out."""
        state = self.session  # (read once: the loop below sees the handlers change it)
        if state is Session.CLOSED:
            raise p.LocalProtocolError("no session is open")
        if state is Session.DONE:
            return b""  # the session is over; drop input without buffering it
        out: list[bytes] = []
        view = memoryview(data)
        step = self.config.max_frame
        try:
            for i in range(0, len(view), step):
                self._decoder.feed(view[i : i + step])
                # (the Hello may switch the session to version 2's decoder: read it each time)
                while self.session is not Session.DONE and (ev := self._decoder.next_event()):
                    self._dispatch(ev, now, out)
        except p.RemoteProtocolError as e:
            self._send(out, p.Error(int(e.code), str(e)[:200]))
            self.session = Session.DONE
        except StagingFull as e:  # ours, not the phone's fault: the phone may come back later
            self._send(out, p.Error(int(p.ErrorCode.BUSY), str(e)[:200]))
            self.session = Session.DONE
        return b"".join(out)

    def end_session(self, now: int = 0) -> None:
        """The phone went away (or the agent walked off): what was persisted stays."""
        self._dispatch(End(), now, [])

    def _dispatch(self, ev: object, now: int, out: list[bytes]) -> None:
        entry = TRANSITIONS.get((self.session, type(ev)))
        if entry is None:
            if isinstance(ev, Open | End):
                raise p.LocalProtocolError(f"{type(ev).__name__} is not allowed in session state "
                                           f"{self.session.value}")
            raise p.RemoteProtocolError(f"{type(ev).__name__} frame is not allowed in session "
                                        f"state {self.session.value}", p.ErrorCode.UNEXPECTED)
        action, allowed = entry
        nxt: Session = _HANDLERS[action](self, ev, now, out)
        if nxt not in allowed:
            raise LockboxError(f"{action.name} in session state {self.session.value} led to "
                               f"{nxt.value}, which the session table does not allow")
        self.session = nxt

    def _encode(self, ev: p.Event) -> bytes:
        if self.protocol == p.PROTOCOL_VERSION:
            return p.encode(ev, self._out_max)
        if isinstance(ev, p.Status):
            return v2.encode(v2.summarize(ev), self._out_max)
        if isinstance(ev, p.Error):
            ev = v2.fit_error(ev, self._out_max)
        return v2.encode(ev, self._out_max)

    def _send(self, out: list[bytes], ev: p.Event) -> None:
        frame = self._encode(ev)
        out.append(frame)
        self.frames_out += 1
        self.bytes_out += len(frame)

    def _on_open(self, ev: Open, now: int, out: list[bytes]) -> Session:
        self._state  # noqa: B018 - must have booted
        self._decoder = p.FrameDecoder(self.config.max_frame)
        self._out_max = self.config.max_frame
        self.protocol = p.PROTOCOL_VERSION
        self._offer.clear()
        self._chain.clear()
        self.rx.new_session()
        return S.WAIT_HELLO

    def _on_end(self, ev: End, now: int, out: list[bytes]) -> Session:
        self._offer.clear()
        self._chain.clear()
        return S.CLOSED

    def _on_ignore(self, ev: p.Event, now: int, out: list[bytes]) -> Session:
        return S.DONE

    def _on_peer_error(self, ev: p.Error, now: int, out: list[bytes]) -> Session:
        return S.DONE

    def _on_hello(self, ev: p.Hello, now: int, out: list[bytes]) -> Session:
        version = p.negotiate(ev.version, self.config.protocols)
        if version is None:
            speaks = " or ".join(map(str, self.config.protocols))
            raise p.RemoteProtocolError(f"protocol version {ev.version} is not {speaks}",
                                        p.ErrorCode.UNSUPPORTED_VERSION)
        self._out_max = min(self.config.max_frame, ev.max_frame)
        if version != p.PROTOCOL_VERSION:  # the rest of the session is version 2's frames
            self.protocol = version
            old, self._decoder = self._decoder, v2.FrameDecoder(self._out_max)
            assert isinstance(old, p.FrameDecoder)  # (the Hello came in version 1's framing)
            self._decoder.feed(old.drain())
            self.rx.new_session(max(self.config.ack_every, v2.ACK_EVERY))
        status = self.status_frame()
        room = self._out_max if version == p.PROTOCOL_VERSION else v2.limit(self._out_max,
                                                                            v2.T_STATUS)

        def size(st: p.Status) -> int:
            if version == p.PROTOCOL_VERSION:
                return len(p.encode(st, p.MAX_FRAME))
            return len(v2.encode(v2.summarize(st), p.MAX_FRAME))

        # on a small link, report fewer partial pieces (a phone finds the rest through rewinds)
        while status.target is not None and status.target.partials and size(status) > room:
            t = status.target
            status = replace(status, target=replace(t, partials=t.partials[:-1]))
        if size(status) > room:
            raise p.RemoteProtocolError(f"a {self._out_max}-byte frame cannot carry this box's "
                                        "status", p.ErrorCode.FRAME_TOO_LARGE)
        self._send(out, status)
        if self._news is not None:
            self._send(out, p.Installed(*self._news))
            self._news = None
        self._report(out)
        return S.READY

    def _report(self, out: list[bytes]) -> None:
        """Send a signed report of the box as it is now (protocol 2, a box with an identity).

        When: right after the Summary (and Installed), so the first bytes of every session
        carry it and a walk-away at any later byte still leaves the phone with it; it says
        what any install between sessions did. Again after taking a new target (Accept) and
        after the last piece (ReleaseComplete), the two moments a session changes what the
        fleet should know; progress in between is not re-reported (a signature, a sequence
        number and ~140 bytes each), the next session's first report has it.
        """
        if self.reporter is None or self.protocol != v2.VERSION:
            return
        held, total = self._progress()
        t = self._state.target
        facts = Facts(self.config.product, self.config.hardware, self.battery, self.box_state(),
                      None if t is None else TargetProgress(t.version, min(held, total), total))
        self._send(out, v2.BoxReport(self.reporter.sign(self._state, facts)))

    def box_state(self) -> p.BoxState:
        t = self._state.target
        if t is None:
            return p.BoxState.IDLE
        if t.phase == p.BoxState.RECEIVING:
            return p.BoxState.COMPLETE if self.rx.all_done(t) else p.BoxState.RECEIVING
        low = self.manifest is not None and self.battery < self.manifest.min_battery
        if t.phase == p.BoxState.BUILT and low:
            return p.BoxState.WAIT_BATTERY
        if t.phase == p.BoxState.BUILT and self._window_wait:
            return p.BoxState.WAIT_WINDOW
        return t.phase

    def _payload_index(self) -> int:
        """Which of the target's payloads the box receives (0 when it has none loaded)."""
        if self.manifest is None or self.ref is None:
            return 0
        return _accept.payloads(self.manifest).index(self.ref)

    def status_frame(self) -> p.Status:
        s = self._state
        target = None
        t = s.target
        if t is not None:
            n = self.ref.pieces if self.ref else 0
            bits = bytearray((n + 7) // 8)
            partials: list[tuple[int, int]] = []
            for sid, st in sorted(t.streams.items()):
                if sid >= 0 and st.done and sid < n:
                    bits[sid // 8] |= 1 << (sid % 8)
                elif sid >= 0 and st.received and len(partials) < p.MAX_PARTIALS:
                    partials.append((sid, st.received))
            tbl = t.streams.get(TABLE, Stream())
            target = p.Target(t.tag, t.version, tbl.received, bytes(bits), tuple(partials),
                              self._payload_index())
        return p.Status(self.protocol, self.config.product, self.config.hardware,
                        s.running_version, s.running_counter, s.running_sha256,
                        max(0, min(100, self.battery)), int(self.box_state()), self.config.align,
                        self._out_max, target)

    # -- trust on the wire (protocol 2) ------------------------------------------------------

    def _on_trust(self, ev: v2.TrustAsk | v2.TrustLink | v2.TrustStamp, now: int,
                  out: list[bytes]) -> Session:
        """Answer what the box holds, or judge a relayed chain or timestamp and answer that.

        A chain is buffered (at most :data:`~fwdist.protocol_v2.CHAIN_RAM` bytes) until its
        last link and then taken whole or not at all by :meth:`offer_root`; each link becomes
        its own ROOT record, so a power cut leaves a whole root. Every refusal leaves the
        state as it was and the session READY: a hostile phone gets reasons, nothing more.
        """
        had = self._state.target
        reason: p.Reason | None = None
        if isinstance(ev, v2.TrustLink):
            self._chain.append(ev.wire)
            if sum(map(len, self._chain)) > v2.CHAIN_RAM:
                self._chain.clear()
                reason = p.Reason.CHAIN_TOO_LONG
            elif not ev.last:
                return S.READY  # (answered with the chain)
            else:
                links, self._chain = self._chain, []
                reason = self.offer_root(links, now)
        elif isinstance(ev, v2.TrustStamp):
            reason = self.offer_timestamp(ev.wire, now)
        self._send(out, self.trust_answer(reason, dropped=had is not None
                                          and self._state.target is None))
        return S.READY

    def trust_answer(self, reason: p.Reason | None = None,
                     dropped: bool = False) -> v2.TrustAnswer:
        """What the box holds, as its TRUST answer says it (with ``reason``'s verdict)."""
        s, root = self._state, self.root
        return v2.TrustAnswer(0 if reason is None else int(reason),
                              None if root is None else root.version, s.clock,
                              None if s.stamp is None else s.stamp.version, dropped)

    # -- offers ----------------------------------------------------------------------------

    def _on_offer(self, ev: p.Offer, now: int, out: list[bytes]) -> Session:
        if not self._offer:
            self._offer_total = ev.total
        if ev.total != self._offer_total:
            raise p.RemoteProtocolError("offer total changed mid-manifest", p.ErrorCode.BAD_OFFSET)
        if ev.total > self.layout.manifests[0].size:
            self._send(out, p.Reject(int(p.Reason.TOO_LARGE), self.layout.manifests[0].size))
            return S.DONE
        have = len(self._offer)
        if ev.offset > have:
            raise p.RemoteProtocolError(f"offer chunk at {ev.offset} leaves a gap after {have}",
                                        p.ErrorCode.BAD_OFFSET)
        self._offer += ev.data[have - ev.offset :]
        if len(self._offer) < ev.total:
            return S.OFFERING
        wire = bytes(self._offer)
        self._offer.clear()
        reason = self.judge(wire, now)
        if reason is not None:
            self._send(out, p.Reject(int(reason), _accept.limit(
                reason, self.config, self.layout.staging.sectors)))
            # a format 2 payload that does not fit: the phone may offer the next one
            stay = self.protocol == v2.VERSION and reason in v2.NEXT_OFFER
            return S.READY if stay else S.DONE
        tag = p.release_tag(wire)
        t = self._state.target
        created = self._verify(wire).created
        if created > max(now, self._state.clock):  # signed proof that it is later than we knew
            self._commit(Clock(created))  # (before the target: a cut between keeps the proof)
        new = t is None or t.tag != tag
        if new:
            self._take_target(wire, tag)
        self._send(out, p.Accept(tag, self._payload_index()))
        if new:
            self._report(out)
        return S.READY

    def judge(self, wire: bytes, now: int) -> p.Reason | None:
        """Why the box would reject these manifest bytes now, or None to accept."""
        return _accept.judge(wire, now, self._state, self.config, self.layout.staging.sectors,
                             self.release_policy()[0], self._verify,
                             self.journal.snapshot_room())

    def _take_target(self, wire: bytes, tag: bytes) -> None:
        s = self._state
        mslot = 0 if s.target is None else 1 - s.target.mslot
        region = self.layout.manifests[mslot]
        region.erase(0, region.size)
        w = AlignedWriter(region)
        w.write(wire)
        w.close()
        m = self._verify(wire)
        chosen = _accept.choose_payload(m, s, self.config, self.layout.staging.sectors, tag,
                                        self.journal.snapshot_room())
        # judge() accepted it, so some payload fits (unless a test overrode judge())
        ref = m.payload_for(s.running_sha256) if isinstance(chosen, p.Reason) else chosen
        self._commit(Target(tag, m.version, m.security_counter, mslot, len(wire),
                            ref.table_sha256))
        self.staging.torn.clear()
        self.rx.load(self._state)
        if s.prev is not None and s.target is not None and self.table is not None:
            self.rx.adopt_prev(s, s.target)  # format 2 rows inline: the table is here already

    # -- data --------------------------------------------------------------------------------

    def _on_data(self, ev: p.Data, now: int, out: list[bytes]) -> Session:
        sent: list[p.Event] = []

        def send(e: p.Event) -> None:
            sent.append(e)
            self._send(out, e)

        self.rx.data(self._state, ev, send)
        if any(isinstance(e, p.ReleaseComplete) for e in sent):
            self._report(out)
        return S.READY

    # -- installing ----------------------------------------------------------------------------

    def idle(self, now: int = 0) -> IdleStep | None:
        """Between sessions: build the new image when every piece is here, install when allowed.

        Returns what happened, or None when there was nothing to do. Does nothing while a
        phone is connected.
        """
        s = self._state
        t = s.target
        if t is None or self.session is not Session.CLOSED or self.manifest is None:
            return None
        if t.phase == p.BoxState.RECEIVING:
            if not self.rx.all_done(t):
                return None
            if not self._build_image():
                fresh = _images.reconcile(s, self.layout.slots, self.layout.manifests,
                                          self._verify)
                if fresh is not None:  # the running image rotted since boot: not the release's
                    self.s = fresh  # fault; report the image truthfully, fetch the full payload
                    self.journal.compact(self._pack(fresh.to_wire()))
                    self.rx.forget()
                    return IdleStep.DAMAGED
                self._commit(GiveUp(Outcome.BUILD_FAILED, 0))
                self.rx.forget()
                self._news = (self._state.last or ("", False))[0], False
                return IdleStep.FAILED
            self._commit(Built())
            self._window_wait = False  # (judged at the next step, the install's)
            return IdleStep.BUILT
        if t.phase == p.BoxState.BUILT:
            if self.battery < self.manifest.min_battery:
                return IdleStep.WAIT_BATTERY
            m = self.manifest
            why = self._policy_reason(now)
            if why is not None:  # expired, revoked, re-rooted since it was accepted
                self._commit(_policy_give_up(why))
                self._news = (m.version, False)
                self.rx.forget()
                return IdleStep.REFUSED
            self._window_wait = _trust.install_wait(s, now, self._fresh_stamp)
            if self._window_wait:  # not a refusal: the release stays, built, until a window
                return IdleStep.WAIT_WINDOW
            self._commit(Trial())
            slot = self.layout.slots[1 - s.active]
            ok = False
            try:
                ok = self.self_test(m, lambda off, n: slot.read(off, min(n, m.image_size - off)))
            except Exception:  # a crashing self-test is a failed self-test
                ok = False
            if ok:
                self._commit(Confirm(m.version, m.security_counter, m.image_sha256, m.image_size))
                self._news = (m.version, True)
                self.rx.forget()
                return IdleStep.INSTALLED
            self._commit(GiveUp(Outcome.SELF_TEST_FAILED, 0))
            self._news = (m.version, False)
            self.rx.forget()
            return IdleStep.REVERTED
        return None

    def _build_image(self) -> bool:
        m, ref, table = self.manifest, self.ref, self.table
        if m is None or ref is None or table is None:
            raise LockboxError("nothing to build: the target's manifest or table is not loaded")
        return self.builder.build(self._state, self._target, m, ref, table, self.rx.starts,
                                  self.layout.slots)

    # -- reporting -----------------------------------------------------------------------------

    def running_image(self) -> bytes:
        s = self._state
        return self.layout.slots[s.active].read(0, s.running_size)

    def _progress(self) -> tuple[int, int]:
        """(payload bytes held, payload bytes in all) of the target's payload; (0, 0) for none."""
        t = self._state.target
        if t is None or self.ref is None:
            return 0, 0
        pieces = self.table.pieces if self.table else ()
        held = sum(min(st.received, pieces[i].wire_size if i < len(pieces) else 0)
                   for i, st in t.streams.items() if i >= 0)
        return held, self.ref.size

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary for CLIs, tests and the simulator."""
        s = self._state
        t = s.target
        streams = t.streams if t else {}
        held, needed = self._progress()
        return {
            "state": self.box_state().name.lower(),
            "session": self.session.value,
            "product": self.config.product,
            "hardware": self.config.hardware,
            "running_version": s.running_version,
            "running_counter": s.running_counter,
            "running_sha256": s.running_sha256.hex(),
            "active_slot": s.active,
            "battery": self.battery,
            "target_version": t.version if t else None,
            "target_tag": t.tag.hex() if t else None,
            "encoder": self.ref.encoder if self.ref and t else None,
            "table_done": bool(t and streams.get(TABLE, Stream()).done),
            "pieces_total": self.ref.pieces if self.ref and t else 0,
            "pieces_done": sum(1 for i, st in streams.items() if i >= 0 and st.done),
            "received_bytes": held,
            "needed_bytes": needed,
            "last_result": None if s.last is None else {"version": s.last[0], "ok": s.last[1]},
            "failed_tags": [x.hex() for x in s.failed],
            "flash_ops": self.flash.ops,
            "journal_compactions": self.journal.compactions,
        }


_HANDLERS: dict[Action, Callable[..., Session]] = {
    action: getattr(Lockbox, "_on_" + action.value) for action in Action
}
"""Each action of :data:`TRANSITIONS` is the method ``Lockbox._on_<action>``."""
