"""A fleet in a migrated database, for the rollout tests: releases, boxes, signed reports.

Rows are written straight into the tables, as the server's routes would after their checks
(the rollout code reads them back and is what these tests check). Every box's report is
signed for real with one seeded device key, so :mod:`fwdist.report` decodes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine

from fwdist import report
from fwdist.protocol import BoxState
from fwdist.server import db
from fwdist.server.process import open_database

DEVICE_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"r1 test device").digest())


@dataclass
class Fleet:
    engine: Engine
    seqs: dict[str, int] = field(default_factory=dict)

    def release(self, version: str, product: str = "lockbox", state: str = "published") -> None:
        with self.engine.begin() as conn:
            conn.execute(db.releases.insert().values(
                product=product, version=version, state=state, published_at=1,
                manifest_sha256=hashlib.sha256(version.encode()).digest()))

    def boxes(self, ids: list[str], product: str = "lockbox", tags: tuple[str, ...] = ()) -> None:
        key = DEVICE_KEY.public_key().public_bytes_raw()
        with self.engine.begin() as conn:
            conn.execute(db.boxes.insert(), [
                {"id": b, "product": product, "hardware": "lb-r2", "public_key": key,
                 "registered_at": 1, "last_seq": None} for b in ids])
            rows = [{"box_id": b, "tag": t} for b in ids for t in tags]
            if rows:
                conn.execute(db.box_tags.insert(), rows)

    def report(self, box: str, at: int, running: str = "1.0.0", target: str | None = None,
               last: report.LastResult | None = None) -> None:
        seq = self.seqs[box] = self.seqs.get(box, 0) + 1
        rep = report.Report(
            box, seq, "lockbox", "lb-r2", running, bytes(8),
            report.TargetProgress(target, 1, 2) if target else None, 90,
            BoxState.RECEIVING if target else BoxState.IDLE, last, 0)
        with self.engine.begin() as conn:
            conn.execute(db.reports.insert().values(
                box_id=box, seq=seq, wire=report.sign(rep, DEVICE_KEY), received_at=at,
                running_version=running, target_version=target, held=None, total=None,
                battery=90, state="idle", result="none", reason=None, box_time=0))


def fleet(tmp: Path, url: str | None = None) -> Fleet:
    store = tmp / "server-store"
    store.mkdir(exist_ok=True)
    return Fleet(open_database(store, url))
