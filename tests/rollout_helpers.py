"""A fleet in a migrated database, for the rollout tests: releases, boxes, signed reports.

Releases are rows written straight into the table (publishing is tested elsewhere); boxes
are registered and reports ingested through the server's own registry and ingest, each
report signed for real with one seeded device key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine

from fwdist import report
from fwdist.protocol import BoxState
from fwdist.server import db, ingest, registry
from fwdist.server.process import open_database
from fwdist.server.registry import BoxEntry

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
        for b in ids:
            registry.register(self.engine, BoxEntry(b, product, "lb-r2", key, tags), 1)

    def report(self, box: str, at: int, running: str = "1.0.0", target: str | None = None,
               last: report.LastResult | None = None) -> None:
        """A signed report from ``box``, ingested at ``at`` as ``POST /v1/reports`` would."""
        seq = self.seqs[box] = self.seqs.get(box, 0) + 1
        rep = report.Report(
            box, seq, "lockbox", "lb-r2", running, bytes(8),
            report.TargetProgress(target, 1, 2) if target else None, 90,
            BoxState.RECEIVING if target else BoxState.IDLE, last, 0)
        body = ingest.frame_reports([report.sign(rep, DEVICE_KEY)])
        [result] = ingest.ingest(self.engine, body, at)
        assert result.status is ingest.Status.ACCEPTED, result


def fleet(tmp: Path, url: str | None = None) -> Fleet:
    store = tmp / "server-store"
    store.mkdir(exist_ok=True)
    return Fleet(open_database(store, url))
