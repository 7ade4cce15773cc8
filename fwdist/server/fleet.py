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
from fwdist.server import catalog, db, rollouts
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


def versions_in_use(engine: Engine) -> dict[str, dict[str, int]]:
    """``summary``'s boxes per running version of each product, counted by the database.

    Every phone's sync asks for this, so it is one grouped query over each box's latest
    report instead of every box's row in Python; a test holds it to :func:`summary`.
    A product whose boxes have not been heard from maps to ``{}``, as in the summary.
    """
    b, r = db.boxes, db.reports
    query = (sa.select(b.c.product, r.c.running_version, sa.func.count())
             .select_from(b.outerjoin(r, sa.and_(r.c.box_id == b.c.id,
                                                 r.c.seq == b.c.last_seq)))
             .group_by(b.c.product, r.c.running_version))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    out: dict[str, dict[str, int]] = {}
    for product, version, count in rows:
        versions = out.setdefault(product, {})
        if version is not None:
            versions[version] = count
    return {p: dict(sorted(v.items())) for p, v in sorted(out.items())}


def trust_state(store: Store) -> dict[str, Any]:
    """How many root versions the store holds and the timestamp's ETag (None: none yet)."""
    stamp = store.get_timestamp()
    return {"root_versions": len(store.root_versions()),
            "timestamp_etag": None if stamp is None else hashlib.sha256(stamp).hexdigest()}


def sync(engine: Engine, store: Store, now: int) -> dict[str, Any]:
    """What a phone needs to decide what to fetch (``GET /v1/sync``): the published releases
    but those whose every rollout was aborted, and the rollouts that still offer (r1)."""
    withheld = rollouts.withheld(engine)
    releases = [r for r in catalog.list_releases(engine)
                if r["state"] == ReleaseState.PUBLISHED.value
                and (r["product"], r["version"]) not in withheld]
    in_use = versions_in_use(engine)
    offers = [o.to_json() for o in rollouts.offers(engine, now)]
    return {"releases": releases, "versions_in_use": in_use, "rollouts": offers,
            "trust": trust_state(store)}
