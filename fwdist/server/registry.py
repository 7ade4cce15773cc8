"""The box registry: each box's id, product, hardware, device public key and tags.

A box is registered once, by a release engineer (``fwdist box register``), with the
Ed25519 public key it made at ``lockbox init``; from then on the server accepts a report
only if that key signed it. Registering the same box with the same key again is a no-op
(a script may re-run); with another key it is refused (409): re-keying a box would let
whoever asks speak for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from fwdist.errors import FwdistError
from fwdist.manifest import check_name
from fwdist.server import db
from fwdist.server.context import ClientError

MAX_TAGS = 32
MAX_HISTORY = 1000
_HEX32 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class BoxEntry:
    id: str
    product: str
    hardware: str
    public_key: bytes
    tags: tuple[str, ...]


def _name(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise ClientError(422, f"{kind} must be a string")
    try:
        return check_name(kind, value)
    except FwdistError as e:
        raise ClientError(422, str(e)) from None


def parse_entry(doc: Any) -> BoxEntry:
    """A registration body, checked field by field (422 for the first wrong one)."""
    if not isinstance(doc, dict):
        raise ClientError(422, "the body must be a JSON object {id, product, hardware, "
                               "public_key, tags}")
    key = doc.get("public_key")
    if not (isinstance(key, str) and _HEX32.fullmatch(key)):
        raise ClientError(422, "public_key must be 64 lowercase hex digits (raw Ed25519)")
    tags = doc.get("tags", [])
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise ClientError(422, f"tags must be a list of at most {MAX_TAGS} names")
    return BoxEntry(_name("box id", doc.get("id")), _name("product", doc.get("product")),
                    _name("hardware", doc.get("hardware")), bytes.fromhex(key),
                    tuple(sorted({_name("tag", t) for t in tags})))


def register(engine: Engine, box: BoxEntry, now: int) -> bool:
    """Register ``box``; False when it was registered with this key already."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(db.boxes.c.public_key).where(db.boxes.c.id == box.id)
                           ).first()
        if row is not None:
            if row.public_key != box.public_key:
                raise ClientError(409, f"box {box.id} is registered with another key")
            return False
        conn.execute(db.boxes.insert().values(
            id=box.id, product=box.product, hardware=box.hardware,
            public_key=box.public_key, registered_at=now, last_seq=None))
        if box.tags:
            conn.execute(db.box_tags.insert(), [{"box_id": box.id, "tag": t} for t in box.tags])
    return True


def report_json(row: Any) -> dict[str, Any]:
    """One stored report as the API shows it (docs/fleet-api.md)."""
    return {
        "seq": row.seq, "received_at": row.received_at,
        "running_version": row.running_version, "running_image": row.running_image.hex(),
        "target_version": row.target_version, "held": row.held, "total": row.total,
        "battery": row.battery, "state": row.state, "last_version": row.last_version,
        "last_outcome": row.last_outcome, "last_reason": row.last_reason, "clock": row.clock,
    }


def _report_columns() -> list[Any]:
    return [c for c in db.reports.c if c.name not in ("box_id", "wire")]


def _boxes_json(conn: Connection, rows: list[Any]) -> list[dict[str, Any]]:
    ids = [r.id for r in rows]
    tags: dict[str, list[str]] = {}
    last: dict[str, dict[str, Any]] = {}
    for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
        for t in conn.execute(sa.select(db.box_tags).where(db.box_tags.c.box_id.in_(chunk))
                              .order_by(db.box_tags.c.tag)):
            tags.setdefault(t.box_id, []).append(t.tag)
        latest = sa.select(db.reports.c.box_id, *_report_columns()).join(
            db.boxes, sa.and_(db.boxes.c.id == db.reports.c.box_id,
                              db.boxes.c.last_seq == db.reports.c.seq)
        ).where(db.reports.c.box_id.in_(chunk))
        for r in conn.execute(latest):
            last[r.box_id] = report_json(r)
    return [{"id": r.id, "product": r.product, "hardware": r.hardware,
             "public_key": r.public_key.hex(), "tags": tags.get(r.id, []),
             "registered_at": r.registered_at, "last_report": last.get(r.id)} for r in rows]


def list_boxes(engine: Engine, product: str | None, tag: str | None) -> list[dict[str, Any]]:
    query = sa.select(db.boxes).order_by(db.boxes.c.id)
    if product is not None:
        query = query.where(db.boxes.c.product == product)
    if tag is not None:
        query = query.where(db.boxes.c.id.in_(
            sa.select(db.box_tags.c.box_id).where(db.box_tags.c.tag == tag)))
    with engine.connect() as conn:
        return _boxes_json(conn, list(conn.execute(query)))


def get_box(engine: Engine, box_id: str, limit: int) -> dict[str, Any] | None:
    """The box's row, last report and ``limit`` newest reports; None if unknown."""
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(db.boxes).where(db.boxes.c.id == box_id)))
        if not rows:
            return None
        out = _boxes_json(conn, rows)[0]
        history = conn.execute(
            sa.select(*_report_columns()).where(db.reports.c.box_id == box_id)
            .order_by(db.reports.c.seq.desc()).limit(limit))
        out["history"] = [report_json(r) for r in history]
    return out
