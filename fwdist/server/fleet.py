"""What the fleet looks like from the reports: the summary and what a phone syncs.

Both are computed from each box's *latest* report (its highest seq, kept in
``boxes.last_seq`` by ingestion), because reports arrive late and out of order: an old
report carried by a slow phone must not overwrite what a newer one said.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fwdist.report import Outcome
from fwdist.server import catalog, db
from fwdist.server.publish import ReleaseState
from fwdist.store import Store

FAILURES = frozenset(o.name.lower() for o in (
    Outcome.BUILD_FAILED, Outcome.SELF_TEST_FAILED, Outcome.TRIALS_EXHAUSTED, Outcome.UNUSABLE,
    Outcome.FAILED))
"""A box whose last install ended so has *failed* (a refusal is the box's rule, not a fault)."""


def _latest(conn: sa.Connection) -> list[Any]:
    b, r = db.boxes, db.reports
    return list(conn.execute(
        sa.select(b.c.id, b.c.product, r.c.running_version, r.c.target_version,
                  r.c.last_outcome, r.c.last_version)
        .select_from(b.outerjoin(r, sa.and_(r.c.box_id == b.c.id, r.c.seq == b.c.last_seq)))))


def summary(engine: Engine) -> dict[str, Any]:
    """``{"products": {P: {"versions": {V: n}, "in_progress", "failed", "boxes",
    "heard_from"}}}``: boxes per running version, with a target, whose last install failed."""
    with engine.connect() as conn:
        rows = _latest(conn)
    products: dict[str, dict[str, Any]] = {}
    for row in rows:
        p = products.setdefault(row.product, {"versions": {}, "in_progress": 0, "failed": 0,
                                              "boxes": 0, "heard_from": 0})
        p["boxes"] += 1
        if row.running_version is None:
            continue
        p["heard_from"] += 1
        p["versions"][row.running_version] = p["versions"].get(row.running_version, 0) + 1
        p["in_progress"] += row.target_version is not None
        p["failed"] += row.last_outcome in FAILURES and row.last_version != row.running_version
    for p in products.values():
        p["versions"] = dict(sorted(p["versions"].items()))
    return {"products": dict(sorted(products.items()))}


def trust_state(store: Store) -> dict[str, Any]:
    """How many root versions the store holds and the timestamp's ETag (None: none yet)."""
    stamp = store.get_timestamp()
    return {"root_versions": len(store.root_versions()),
            "timestamp_etag": None if stamp is None else hashlib.sha256(stamp).hexdigest()}


def sync(engine: Engine, store: Store) -> dict[str, Any]:
    """What a phone needs to decide what to fetch (``GET /v1/sync``)."""
    releases = [r for r in catalog.list_releases(engine)
                if r["state"] == ReleaseState.PUBLISHED.value]
    in_use = {p: s["versions"] for p, s in summary(engine)["products"].items()}
    return {"releases": releases, "versions_in_use": in_use, "rollouts": [],
            "trust": trust_state(store)}
