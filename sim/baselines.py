"""The field's strategies, modelled byte for byte: restart, offset-resume, object-4k, oracle.

These are models of other systems, not fwdist, so they are arithmetic: each
session's outcome is computed in closed form from the budget (and checked
against a frame-by-frame run over the trio link in the tests).

- ``offset-resume`` (MCUmgr/SMP as the field runs it, SentriLock's "starts from
  where the prior connection left off"): the whole raw image in order, in
  requests of ``smp_frame_payload`` bytes plus ``smp_frame_overhead``; the next
  session resumes at the last acknowledged offset.
- ``restart``: the same upload, but the offset is lost between sessions.
- ``object-4k`` (Nordic Secure DFU): 4 KiB objects sent as 244-byte packets; an
  object counts only once its CRC is checked and it is executed; a partial
  object is lost at the walk-away.
- ``oracle``: the bound. The smallest delta any peer tool makes for the box's
  (running, target) pair, zero protocol overhead, any byte in any order, no
  byte wasted: only the budget and the phone's cache limit it.

A phone with a partial cache holds 16 KiB blocks (:data:`~sim.strategy.BLOCK`)
chosen by the same per-access draw fwdist uses for its pieces; the in-order
strategies can send only up to the first block the phone lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sim.draws import Access, BoxDraw
from sim.scenario import BaselineSpec
from sim.strategy import BLOCK, FrameSession, Progress


def _held_until(a: Access, start: int, end: int) -> int:
    """First byte offset >= start the phone cannot send in order (``end`` if it holds all)."""
    if a.partial >= 1.0:
        return end if a.holds else start
    pos = start
    while pos < end and a.holds_block(pos // BLOCK):
        pos = (pos // BLOCK + 1) * BLOCK
    return min(pos, end)


# -- offset-resume and restart ---------------------------------------------------


class UploadModel:
    """An in-order raw-image upload (SMP-style); ``resume`` says whether the offset survives."""

    def __init__(self, image: int, spec: BaselineSpec, resume: bool) -> None:
        self.progress = Progress(payload=image)
        self.image = image
        self.p = spec.smp_frame_payload
        self.h = spec.smp_frame_overhead
        self.session_bytes = spec.smp_session_bytes
        self.resume = resume
        self.offset = 0

    def _begin(self) -> None:
        if not self.resume and self.offset:
            self.offset = 0
            self.progress.kept = 0

    def access(self, a: Access) -> int:
        if self.progress.done or not a.holds:
            return 0
        self._begin()
        pr = self.progress
        limit = _held_until(a, self.offset, self.image)
        budget = a.budget
        if limit == self.offset:
            return 0  # the phone holds nothing the box can take next: no session
        if budget < self.session_bytes:
            pr.air += budget
            return budget
        avail = budget - self.session_bytes
        pr.overhead += self.session_bytes
        todo = limit - self.offset
        frames = -(-todo // self.p)
        cost = todo + frames * self.h
        if cost <= avail:
            self.offset = limit
            pr.kept += todo
            pr.overhead += frames * self.h
            pr.air += self.session_bytes + cost
            pr.done = self.offset == self.image
            return self.session_bytes + cost
        n = min(avail // (self.p + self.h), frames - 1)
        self.offset += n * self.p
        pr.kept += n * self.p
        pr.overhead += n * self.h
        pr.air += budget
        return budget

    def open_session(self, a: Access) -> FrameSession | None:
        if self.progress.done or not a.holds:
            return None
        self._begin()
        if _held_until(a, self.offset, self.image) == self.offset:
            return None
        return _UploadSession(self, a)


class _UploadSession:
    def __init__(self, m: UploadModel, a: Access) -> None:
        self.m, self.a = m, a
        self.hello = True
        self.size = 0

    def next_frame(self) -> int | None:
        m = self.m
        if self.hello:
            self.size = m.session_bytes
            return self.size
        limit = _held_until(self.a, m.offset, m.image)
        if m.offset >= limit:
            return None
        self.size = min(m.p, limit - m.offset) + m.h
        return self.size

    def delivered(self) -> None:
        m, pr = self.m, self.m.progress
        pr.air += self.size
        pr.overhead += m.session_bytes if self.hello else m.h
        if not self.hello:
            data = self.size - m.h
            m.offset += data
            pr.kept += data
            pr.done = m.offset == m.image
        self.hello = False

    def lost(self, sent: int) -> None:
        self.m.progress.air += sent

    def finish(self) -> None:
        pass


# -- object-4k ---------------------------------------------------------------------


class ObjectModel:
    """Nordic-style DFU: only whole, executed objects survive a walk-away."""

    def __init__(self, image: int, spec: BaselineSpec) -> None:
        self.progress = Progress(payload=image)
        self.image = image
        self.obj = spec.dfu_object_bytes
        self.pp = spec.dfu_packet_payload
        self.ph = spec.dfu_packet_overhead
        self.oh = spec.dfu_object_overhead
        self.session_bytes = spec.dfu_session_bytes
        self.next_obj = 0
        self.n_obj = -(-image // self.obj)

    def object_size(self, i: int) -> int:
        """Bytes of object ``i`` (the last one may be short)."""
        return min(self.obj, self.image - i * self.obj)

    def _cost(self, size: int) -> int:
        return size + -(-size // self.pp) * self.ph + self.oh

    def holds_object(self, a: Access, i: int) -> bool:
        """Whether the access's phone holds every byte of object ``i``."""
        start = i * self.obj
        return _held_until(a, start, start + self.object_size(i)) == start + self.object_size(i)

    def access(self, a: Access) -> int:
        pr = self.progress
        if pr.done or not a.holds or not self.holds_object(a, self.next_obj):
            return 0
        budget = a.budget
        if budget < self.session_bytes:
            pr.air += budget
            return budget
        used = self.session_bytes
        pr.overhead += self.session_bytes
        while self.next_obj < self.n_obj and self.holds_object(a, self.next_obj):
            size = self.object_size(self.next_obj)
            cost = self._cost(size)
            if used + cost > budget:
                pr.air += budget
                return budget
            used += cost
            pr.kept += size
            pr.overhead += cost - size
            self.next_obj += 1
        pr.done = self.next_obj == self.n_obj
        pr.air += used
        return used

    def open_session(self, a: Access) -> FrameSession | None:
        if self.progress.done or not a.holds or not self.holds_object(a, self.next_obj):
            return None
        return _ObjectSession(self, a)


class _ObjectSession:
    """Frames: the session hello, then per object its packets and one control exchange."""

    def __init__(self, m: ObjectModel, a: Access) -> None:
        self.m, self.a = m, a
        self.hello = True
        self.in_obj = 0  # bytes of the current object delivered so far
        self.pending_air = 0  # air of the current, not yet executed object
        self.size = 0
        self.kind = ""

    def next_frame(self) -> int | None:
        m = self.m
        if self.hello:
            self.kind, self.size = "hello", m.session_bytes
            return self.size
        if m.next_obj >= m.n_obj or (self.in_obj == 0 and not m.holds_object(self.a, m.next_obj)):
            return None
        osize = m.object_size(m.next_obj)
        if self.in_obj < osize:
            data = min(m.pp, osize - self.in_obj)
            self.kind, self.size = "data", data + m.ph
        else:
            self.kind, self.size = "execute", m.oh
        return self.size

    def delivered(self) -> None:
        m, pr = self.m, self.m.progress
        if self.kind == "hello":
            pr.air += self.size
            pr.overhead += self.size
            self.hello = False
        elif self.kind == "data":
            self.in_obj += self.size - m.ph
            self.pending_air += self.size
        else:
            osize = m.object_size(m.next_obj)
            pr.air += self.pending_air + self.size
            pr.kept += osize
            pr.overhead += self.pending_air + self.size - osize
            m.next_obj += 1
            self.in_obj = self.pending_air = 0
            pr.done = m.next_obj == m.n_obj

    def lost(self, sent: int) -> None:
        self.m.progress.air += self.pending_air + sent  # the partial object is discarded

    def finish(self) -> None:
        pass


# -- oracle ------------------------------------------------------------------------


class OracleModel:
    """The bound: smallest peer delta, no overhead, any order, nothing wasted."""

    def __init__(self, payload: int) -> None:
        self.progress = Progress(payload=payload)
        self.blocks = [min(BLOCK, payload - off) for off in range(0, payload, BLOCK)]

    def access(self, a: Access) -> int:
        pr = self.progress
        if pr.done or not a.holds:
            return 0
        budget = a.budget
        sent = 0
        for i, left in enumerate(self.blocks):
            if left and a.holds_block(i):
                n = min(left, budget - sent)
                self.blocks[i] -= n
                sent += n
                if sent == budget:
                    break
        pr.kept += sent
        pr.air += sent
        pr.done = pr.kept == pr.payload
        return sent

    def open_session(self, a: Access) -> FrameSession | None:
        return None


# -- the strategies ------------------------------------------------------------------


@dataclass(frozen=True)
class Restart:
    image_bytes: int
    spec: BaselineSpec
    name: ClassVar[str] = "restart"
    description: ClassVar[str] = (
        "raw image in order; the transfer restarts from zero at each access"
    )

    def new_box(self, box: BoxDraw) -> UploadModel:
        return UploadModel(self.image_bytes, self.spec, resume=False)


@dataclass(frozen=True)
class OffsetResume:
    image_bytes: int
    spec: BaselineSpec
    name: ClassVar[str] = "offset-resume"
    description: ClassVar[str] = (
        "raw image in order, resumed from the last offset (the field today)"
    )

    def new_box(self, box: BoxDraw) -> UploadModel:
        return UploadModel(self.image_bytes, self.spec, resume=True)


@dataclass(frozen=True)
class Object4k:
    image_bytes: int
    spec: BaselineSpec
    name: ClassVar[str] = "object-4k"
    description: ClassVar[str] = (
        "4 KiB objects; a partial object is lost on disconnect (Nordic DFU)"
    )

    def new_box(self, box: BoxDraw) -> ObjectModel:
        return ObjectModel(self.image_bytes, self.spec)


@dataclass(frozen=True)
class Oracle:
    delta_bytes: dict[str, int]  # running version -> smallest peer delta to the target
    name: ClassVar[str] = "oracle"
    description: ClassVar[str] = (
        "smallest peer delta, zero protocol overhead, no byte wasted (the bound)"
    )

    def new_box(self, box: BoxDraw) -> OracleModel:
        return OracleModel(self.delta_bytes[box.running])
