"""Report ingestion: the signed reports a phone carries, verified and stored idempotently.

A request body is the reports one after another, each prefixed by its length as a LEB128
varint (``application/x-fwdist-reports``). Each gets one result, in order:

- ``accepted``: new, signed by the registered key of the box it names; stored;
- ``duplicate``: exactly these bytes are stored already (a phone re-sending after a lost
  answer, or two phones carrying the same report); nothing changes;
- ``rejected`` (with a reason): malformed, an unknown box, another product than the box's,
  a signature that does not verify, or other bytes under a sequence number the server
  holds (Ed25519 signatures are deterministic, so a genuine report is always the same
  bytes: different bytes under a known seq are a forgery or a broken box). Nothing of it
  is stored.

Speed: one read of the boxes (and of the known (box, seq) pairs, when a report is not
newer than its box's newest) per request, then the signatures, all at once (in
:mod:`fwdist.server.signatures`' worker processes when the server has them), then one
write transaction: ``INSERT ... ON CONFLICT DO
NOTHING`` for all accepted rows at once and one update of each box's newest seq. The
write transaction holds no read of its own, so SQLite's ``busy_timeout`` applies to it
(a transaction that read before writing would fail at once under contention). A report
that another request stored between the read and the write is found by the insert's
count and classified again.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fwdist import leb128
from fwdist import report as box_report
from fwdist.report import Report, ReportError, SignedReport
from fwdist.server import db, signatures
from fwdist.server.context import ClientError

Verify = Callable[[Sequence[signatures.Check]], list[bool]]

MEDIA_TYPE = "application/x-fwdist-reports"
MAX_REPORTS = 4096
"""Reports in one request: a phone carries hundreds; more is split by the client."""
MAX_BODY_BYTES = MAX_REPORTS * (box_report.MAX_REPORT_BYTES + 2)


class Status(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Result:
    status: Status
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "reason": self.reason}


def frame_reports(wires: list[bytes]) -> bytes:
    """A request body: each report prefixed by its length (what a phone sends)."""
    return b"".join(leb128.encode(len(w)) + w for w in wires)


def split(body: bytes) -> Iterator[bytes]:
    """The reports of a body; a ClientError(400) for a length that is malformed (not a
    shortest-form varint of at most 3 bytes) or runs past the end."""
    pos, count = 0, 0
    while pos < len(body):
        try:
            n, pos = leb128.decode(body, pos, max_bytes=3)
        except leb128.Leb128Error:
            raise ClientError(400, f"report {count}: its length prefix is malformed") from None
        if n == 0 or n > box_report.MAX_REPORT_BYTES or pos + n > len(body):
            raise ClientError(400, f"report {count}: length {n} is out of range")
        count += 1
        if count > MAX_REPORTS:
            raise ClientError(413, f"more than {MAX_REPORTS} reports in one request")
        yield body[pos:pos + n]
        pos += n


def signature_check(signed: SignedReport, public_key: bytes) -> signatures.Check:
    """What checks a report's signature: over ``fwdist.report``'s context and the body
    :func:`fwdist.report.decode` parsed (what :func:`fwdist.report.verify` does, without
    decoding the report a second time)."""
    return public_key, signed.signature, box_report.SIGNING_CONTEXT + signed.body


def _row(r: Report, wire: bytes, now: int) -> dict[str, Any]:
    return {
        "box_id": r.box_id, "seq": r.seq, "wire": wire, "received_at": now,
        "running_version": r.running_version, "running_image": r.running_image,
        "target_version": r.target.version if r.target else None,
        "held": r.target.held if r.target else None,
        "total": r.target.total if r.target else None,
        "battery": r.battery, "state": r.state.name.lower(),
        "last_version": r.last.version if r.last else None,
        "last_outcome": r.last.outcome.name.lower() if r.last else None,
        "last_reason": r.last.reason if r.last else None,
        "clock": r.clock,
    }


def _known(engine: Engine, reports: list[Report]) -> tuple[dict[str, Any], dict[Any, bytes]]:
    """The boxes the reports name, and the stored bytes of those (box, seq) that may be
    stored: only a seq at or below the box's ``last_seq`` can be (``last_seq`` is the
    highest stored seq, written in the same transaction as the reports), so a batch of
    news, every seq above it, costs one query, not two."""
    ids = sorted({r.box_id for r in reports})
    boxes: dict[str, Any] = {}
    stored: dict[Any, bytes] = {}
    with engine.connect() as conn:
        for i in range(0, len(ids), 500):
            for b in conn.execute(sa.select(db.boxes.c.id, db.boxes.c.product,
                                            db.boxes.c.public_key, db.boxes.c.last_seq)
                                  .where(db.boxes.c.id.in_(ids[i:i + 500]))):
                boxes[b.id] = b
        keys = sorted({(r.box_id, r.seq) for r in reports if r.box_id in boxes
                       and boxes[r.box_id].last_seq is not None
                       and r.seq <= boxes[r.box_id].last_seq})
        pair = sa.tuple_(db.reports.c.box_id, db.reports.c.seq)
        for i in range(0, len(keys), 500):
            for s in conn.execute(sa.select(db.reports.c.box_id, db.reports.c.seq,
                                            db.reports.c.wire)
                                  .where(pair.in_(keys[i:i + 500]))):
                stored[(s.box_id, s.seq)] = s.wire
    return boxes, stored


def _needs_check(sr: SignedReport, boxes: dict[str, Any], stored: dict[Any, bytes]) -> bool:
    """Whether :func:`_classify` may ask for this report's signature (checked beforehand,
    all of a request's at once): a registered box of its product, bytes not stored."""
    r = sr.report
    box = boxes.get(r.box_id)
    return (box is not None and box.product == r.product
            and stored.get((r.box_id, r.seq)) != sr.wire)


def ingest(engine: Engine, body: bytes, now: int,
           verify: Verify = signatures.check) -> list[Result]:
    """Verify and store the reports of one request; one result per report, in order.

    ``verify`` checks a list of signatures at once (the server's
    :class:`fwdist.server.signatures.Verifier`, on the other cores).
    """
    wires = list(split(body))
    results: list[Result | None] = [None] * len(wires)
    signed: dict[int, SignedReport] = {}
    for i, wire in enumerate(wires):
        try:
            signed[i] = box_report.decode(wire)
        except ReportError as e:
            results[i] = Result(Status.REJECTED, str(e))
    decoded = {i: sr.report for i, sr in signed.items()}
    boxes, stored = _known(engine, list(decoded.values()))
    asked = [i for i, sr in signed.items() if _needs_check(sr, boxes, stored)]
    answers = verify([signature_check(signed[i], boxes[decoded[i].box_id].public_key)
                      for i in asked])
    good = {i for i, ok in zip(asked, answers, strict=True) if ok}
    fresh: dict[tuple[str, int], int] = {}  # (box, seq) -> index of the report that adds it
    for i, sr in signed.items():
        r = sr.report
        results[i] = _classify(sr, boxes, i in good, stored, fresh, wires)
        if results[i] is None:
            fresh[(r.box_id, r.seq)] = i
    if fresh:
        rows = [_row(decoded[i], wires[i], now) for i in fresh.values()]
        newest: dict[str, int] = {}
        for box_id, seq in fresh:
            newest[box_id] = max(seq, newest.get(box_id, -1))
        with engine.begin() as conn:
            inserted = conn.execute(db.insert_ignoring_duplicates(engine, db.reports),
                                    rows).rowcount
            conn.execute(
                db.boxes.update().where(db.boxes.c.id == sa.bindparam("b_id"), sa.or_(
                    db.boxes.c.last_seq.is_(None), db.boxes.c.last_seq < sa.bindparam("b_seq")))
                .values(last_seq=sa.bindparam("b_seq")),
                [{"b_id": b, "b_seq": s} for b, s in newest.items()])
        if inserted != len(rows):  # another request stored some of these meanwhile
            _, stored = _known(engine, [decoded[i] for i in fresh.values()])
            for key, i in fresh.items():
                if stored.get(key) != wires[i]:
                    results[i] = Result(Status.REJECTED, f"box report {key[0]}#{key[1]}: "
                                        "other bytes were stored under this seq meanwhile")
    return [res or Result(Status.ACCEPTED) for res in results]


def _classify(sr: SignedReport, boxes: dict[str, Any], signed_by_box: bool,
              stored: dict[Any, bytes], fresh: dict[tuple[str, int], int],
              wires: list[bytes]) -> Result | None:
    """The result of a decoded report, or None when it is new and is to be stored.

    A report whose exact bytes are stored is a duplicate without a second signature check
    (they were checked when they were stored): a phone's resend costs no Ed25519 work.
    """
    r, wire = sr.report, sr.wire
    box = boxes.get(r.box_id)
    name = f"box report {r.box_id}#{r.seq}"
    if box is None:
        return Result(Status.REJECTED, f"{name}: box {r.box_id} is not registered")
    key = (r.box_id, r.seq)
    known = stored.get(key)
    if known is None and key in fresh:
        known = wires[fresh[key]]
    if known == wire:
        return Result(Status.DUPLICATE)
    if box.product != r.product:
        return Result(Status.REJECTED, f"{name}: the box is registered as {box.product}")
    if not signed_by_box:
        return Result(Status.REJECTED, f"{name} is not signed by that box's key")
    if known is None:
        return None
    return Result(Status.REJECTED, f"{name}: the server holds other bytes under this seq")
