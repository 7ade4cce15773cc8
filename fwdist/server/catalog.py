"""The releases as the API lists them: rows of the database, one JSON shape everywhere.

``GET /v1/releases``, ``GET /v1/releases/{product}/{version}`` and ``GET /v1/sync`` all
describe a release with :func:`release_json`, so a phone and a release engineer read one
shape (docs/fleet-api.md).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fwdist.manifest import Version
from fwdist.server import db


def pack_path(product: str, version: str, index: int) -> str:
    return f"/v1/releases/{product}/{version}/pack/{index}"


def list_releases(engine: Engine, product: str | None = None,
                  version: str | None = None) -> list[dict[str, Any]]:
    """Every release (or one product's, or one), oldest version first within a product."""
    r, p = db.releases, db.payloads
    query = sa.select(r).order_by(r.c.product)
    if product is not None:
        query = query.where(r.c.product == product)
    if version is not None:
        query = query.where(r.c.version == version)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        payload_rows = conn.execute(
            sa.select(p).order_by(p.c.product, p.c.version, p.c.idx)
            .where(p.c.product == product) if product is not None
            else sa.select(p).order_by(p.c.product, p.c.version, p.c.idx)).all()
    by_release: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in payload_rows:
        by_release.setdefault((row.product, row.version), []).append({
            "index": row.idx, "from_version": row.from_version, "encoder": row.encoder,
            "bytes": row.bytes, "pieces": row.pieces, "table_sha256": row.table_sha256.hex(),
            "pack": pack_path(row.product, row.version, row.idx)})
    out = [{"product": row.product, "version": row.version, "state": row.state,
            "published_at": row.published_at,
            "payloads": by_release.get((row.product, row.version), [])} for row in rows]
    out.sort(key=lambda rel: (rel["product"], Version.parse(rel["version"])))
    return out
