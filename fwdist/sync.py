"""The phone's sync with the fleet server: reports up, releases down, resumably.

A phone has coverage now and then, and none at the box; ``fwdist app sync`` is what it
does while it has some. In order, and why:

1. **Upload the outbox** (``POST /v1/reports``): the box reports this phone carried.
   First, because they are small and the rest depends on them: the server's count of
   versions in use (which deltas to fetch) includes the boxes this phone just met. Only
   reports the server answered ``accepted`` or ``duplicate`` leave the outbox; a
   ``rejected`` one stays (its box may be registered later) and is counted.
2. **Ask what there is** (``GET /v1/sync``): the published releases and how many boxes
   run each version.
3. **Fetch the newest release of each product**: its signed manifest and format 2
   bundle, checked against the user's trusted keys before either enters the cache;
   then its payloads within ``--max-cache``: the deltas from the versions boxes run,
   most boxes first, then the full image, then the other deltas. Each payload is one
   pack (``/v1/releases/P/V/pack/I``) downloaded into ``partial/`` and resumed with
   ``Range`` where a killed sync stopped; a whole pack is checked (every object against
   its name, the table against the manifest) before any of it is stored. Older
   releases of the product, and objects only they used, leave the cache: a phone
   carries the newest release.
4. **Trust files** (``/trust/root/N``, ``/trust/timestamp``) when the server has them,
   fetched only when changed, kept as they are for the boxes (which verify them).

Between 3 and 4 the sync document's releases and rollouts are kept as ``policy.json``
(:meth:`fwdist.rollout.SyncPolicy.FILE`), which ``fwdist app push --cache`` applies at the
box.

The cache is a fwdist store (so ``fwdist app push --cache`` reads it with no network)
plus ``outbox/`` (:mod:`fwdist.outbox`), ``partial/`` and ``trust/``;
docs/phone-cache.md gives the layout.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fwdist import air
from fwdist.errors import FwdistError, ManifestError, RolloutError, StoreError
from fwdist.manifest import (
    MAX_TABLE_BYTES,
    Manifest,
    PayloadRef,
    PieceTable,
    Version,
    decode_table,
    verify,
)
from fwdist.outbox import Outbox
from fwdist.releases import check_air_bundle, load_manifest
from fwdist.rollout import SyncPolicy
from fwdist.server.client import Client, ServerError
from fwdist.server.ingest import MAX_REPORTS, MEDIA_TYPE, frame_reports
from fwdist.server.pack import PackError, decode_index, decode_pack, index_size
from fwdist.store import MAX_FRAME_BYTES, Store, decompress

PARTIAL = "partial"
TRUST = "trust"
MAX_TRUST_FILE = 64 * 1024
MAX_POLICY_FILE = 1024 * 1024  # thousands of releases and rollouts


class SyncError(FwdistError):
    """A sync cannot go on (the cache cannot be used, the server sends what cannot be)."""


@dataclass
class PayloadResult:
    index: int
    from_version: str | None
    boxes: int  # boxes that run its base version (the full image: every box not on it)
    state: str  # "held" (already), "fetched", "skipped" (over --max-cache), "failed"
    bytes: int = 0  # store bytes it takes in the cache
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "from_version": self.from_version, "boxes": self.boxes,
                "state": self.state, "bytes": self.bytes, "detail": self.detail}


@dataclass
class SyncResult:
    accepted: int = 0
    duplicate: int = 0
    rejected: list[str] = field(default_factory=list)
    releases: list[dict[str, Any]] = field(default_factory=list)
    trust_files: int = 0
    cache_bytes: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"reports": {"accepted": self.accepted, "duplicate": self.duplicate,
                            "rejected": len(self.rejected), "rejected_reasons": self.rejected},
                "releases": self.releases, "trust_files": self.trust_files,
                "cache_bytes": self.cache_bytes}


def open_cache(cache: Path) -> Store:
    """The phone's cache directory (a store, made on first use)."""
    try:
        return Store.open(cache, create=True)
    except StoreError as e:
        raise SyncError(f"cannot use {cache} as a phone's cache: {e}") from None


# --------------------------------------------------------------------------- reports up


def upload_reports(client: Client, cache: Path, result: SyncResult) -> None:
    """Send the outbox in requests of at most MAX_REPORTS; keep what the server did not take."""
    outbox = Outbox(cache)
    pending = outbox.pending()
    for start in range(0, len(pending), MAX_REPORTS):
        batch = pending[start : start + MAX_REPORTS]
        r = client.request("POST", "/v1/reports", content=frame_reports([p.wire for p in batch]),
                           headers={"Content-Type": MEDIA_TYPE})
        results = r.json().get("results") if isinstance(r.json(), dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            raise SyncError("the server's answer to POST /v1/reports does not match the request")
        done = []
        for p, res in zip(batch, results, strict=True):
            status = res.get("status") if isinstance(res, dict) else None
            if status in ("accepted", "duplicate"):
                done.append(p.name)
                if status == "accepted":
                    result.accepted += 1
                else:
                    result.duplicate += 1
            else:
                result.rejected.append(f"{p.box_id}#{p.seq}: {res.get('reason')}"
                                       if isinstance(res, dict) else f"{p.box_id}#{p.seq}")
        outbox.remove(done)


# --------------------------------------------------------------------------- releases down


def _get(client: Client, path: str, ok: tuple[int, ...] = (200,)) -> httpx.Response:
    return client.request("GET", path, ok=ok)


def fetch_manifest(client: Client, store: Store, product: str, version: str,
                   trusted: Mapping[bytes, Ed25519PublicKey]) -> Manifest:
    """The release's manifest and bundle, verified, in the cache (written once)."""
    path = store.manifest_path(product, version)
    if path.exists():
        return verify(store.get_manifest(product, version), trusted)
    wire = _get(client, f"/releases/{product}/{version}").content
    try:
        m = verify(wire, trusted)
    except ManifestError as e:
        raise SyncError(f"{product}@{version} from the server does not verify: {e}") from None
    if (m.product, m.version) != (product, version):
        raise SyncError(f"the server's {product}@{version} is the manifest of "
                        f"{m.product}@{m.version}")
    bundle_r = _get(client, f"/releases/{product}/{version}.air", ok=(200, 404))
    bundle = bundle_r.content if bundle_r.status_code == 200 else None
    if bundle is not None:
        try:
            for w in check_air_bundle(m, bundle):
                air.verify(w, trusted)
        except ManifestError as e:
            raise SyncError(f"{product}@{version}: its format 2 manifests do not verify: "
                            f"{e}") from None
        store.put_air(product, version, bundle)
    store.put_manifest(product, version, wire)  # (last: the release is visible once whole)
    return m


def priority(m: Manifest, in_use: Mapping[str, int]) -> list[tuple[int, PayloadRef, int]]:
    """(index, payload, boxes) in the order a phone fetches them: deltas from the versions
    boxes run, most boxes first; the full image; then the other deltas, smallest first."""
    refs = air.payload_refs(m)
    others = sum(n for v, n in in_use.items() if v != m.version)
    deltas = [(i, r, in_use.get(r.source_version or "", 0)) for i, r in enumerate(refs) if i]
    used = sorted((d for d in deltas if d[2]), key=lambda d: (-d[2], d[1].size, d[0]))
    unused = sorted((d for d in deltas if not d[2]), key=lambda d: (d[1].size, d[0]))
    return [*used, (0, refs[0], others), *unused]


def _table(store: Store, ref: PayloadRef) -> PieceTable | None:
    """The payload's piece table if the cache holds it (checked against its name)."""
    if not store.has(ref.table_sha256):
        return None
    try:
        return decode_table(store.get_content(ref.table_sha256, MAX_TABLE_BYTES),
                            ref.table_sha256)
    except (StoreError, ManifestError):
        return None


def _held(store: Store, ref: PayloadRef) -> bool:
    """Whether the cache holds the payload's table and every piece of it."""
    table = _table(store, ref)
    return table is not None and all(store.has(e.id) for e in table.pieces)


def cache_bytes(store: Store) -> int:
    return sum(store.object_path(oid).stat().st_size for oid in store.object_ids())


def _download(client: Client, path: str, dest: Path, total: int) -> bytes:
    """The whole pack at ``path``, appended to ``dest`` from where an earlier sync stopped."""
    have = dest.stat().st_size if dest.exists() else 0
    if have > total:
        dest.unlink()
        have = 0
    if have < total:
        headers = {"Range": f"bytes={have}-"}
        try:
            with client.http.stream("GET", path, headers=headers) as r:
                if r.status_code not in (200, 206):
                    raise SyncError(f"GET {path}: {r.status_code}")
                mode = "ab" if r.status_code == 206 else "wb"  # 200: the server sent it all
                with open(dest, mode) as f:
                    for chunk in r.iter_bytes():  # (as they arrive: none held back)
                        f.write(chunk)
                        f.flush()  # (a killed sync keeps every byte that arrived)
                        if f.tell() > total:
                            break
        except httpx.HTTPError as e:
            raise ServerError(f"cannot reach {client.url}: {e}") from None
    data = dest.read_bytes()
    if len(data) != total:
        raise SyncError(f"GET {path}: the pack is {len(data)} bytes, not {total}")
    return data


def _index(client: Client, path: str, pieces: int) -> tuple[list[tuple[bytes, int]], int]:
    """The pack's index (a Range for its first bytes) and the pack's whole length."""
    want = index_size(pieces + 1)
    r = client.request("GET", path, ok=(200, 206), headers={"Range": f"bytes=0-{want - 1}"})
    try:
        index = decode_index(r.content)
    except PackError as e:
        raise SyncError(f"GET {path}: {e}") from None
    return index, index_size(len(index)) + sum(n for _, n in index)


def check_pack(ref: PayloadRef, data: bytes) -> list[tuple[bytes, bytes]]:
    """The pack's objects, each checked against its name, the table against ``ref``."""
    try:
        objects = list(decode_pack(data).objects)
        contents = {}
        for name, frame in objects:
            content = decompress(frame, MAX_FRAME_BYTES)
            if hashlib.sha256(content).digest() != name:
                raise SyncError(f"pack object {name.hex()[:16]} does not match its name")
            contents[name] = content
        if not objects or objects[0][0] != ref.table_sha256:
            raise SyncError("the pack does not start with the payload's piece table")
        table = decode_table(contents[ref.table_sha256], ref.table_sha256)
    except (PackError, StoreError, ManifestError) as e:
        raise SyncError(f"the pack is unusable: {e}") from None
    if (len(table.pieces), table.wire_size) != (ref.pieces, ref.size):
        raise SyncError("the pack's piece table does not match the manifest")
    missing = {e.id for e in table.pieces} - set(contents)
    if missing:
        raise SyncError(f"the pack lacks {len(missing)} of its table's pieces")
    return objects


def fetch_payload(client: Client, store: Store, m: Manifest, index: int, ref: PayloadRef,
                  room: int | None) -> PayloadResult:
    """One payload into the cache (resumed, checked, then stored), unless over ``room``."""
    base = PayloadResult(index, ref.source_version, 0, "held")
    if _held(store, ref):
        return base
    path = f"/v1/releases/{m.product}/{m.version}/pack/{index}"
    idx, total = _index(client, path, ref.pieces)
    need = sum(n for name, n in idx if not store.has(name))
    if room is not None and need > room:
        base.state, base.detail = "skipped", f"needs {need} bytes, {max(room, 0)} left"
        return base
    partial = store.root / PARTIAL
    partial.mkdir(exist_ok=True)
    dest = partial / f"{ref.table_sha256.hex()}.pack"
    data = _download(client, path, dest, total)
    try:
        objects = check_pack(ref, data)
    except SyncError:
        dest.unlink()  # never resume from bytes that did not check out
        raise
    for name, frame in objects:
        store.put_frame(name, frame, durable=False)
    store.sync()
    dest.unlink()
    base.state, base.bytes = "fetched", need
    return base


def _evict(store: Store, product: str, keep: str) -> None:
    """Drop the product's older releases, then every object no kept payload uses."""
    for p, v in store.releases(product):
        if v != keep:
            for path in (store.air_path(p, v), store.manifest_path(p, v)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    live: set[bytes] = set()
    for p, v in store.releases():
        for ref in air.payload_refs(load_manifest(store, p, v)):
            live.add(ref.table_sha256)
            table = _table(store, ref)
            live |= set() if table is None else {e.id for e in table.pieces}
    for oid in list(store.object_ids()):
        if oid not in live:
            store.remove_object(oid)
    partial = store.root / PARTIAL
    if partial.is_dir():
        tables = {oid.hex() for oid in live}
        for e in os.scandir(partial):
            if e.name.removesuffix(".pack") not in tables:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(e.path)


def sync_releases(client: Client, store: Store, doc: Mapping[str, Any],
                  trusted: Mapping[bytes, Ed25519PublicKey], max_cache: int | None,
                  result: SyncResult) -> None:
    newest: dict[str, str] = {}
    for rel in doc.get("releases", []):
        p, v = rel["product"], rel["version"]
        if p not in newest or Version.parse(v) > Version.parse(newest[p]):
            newest[p] = v
    for product, version in sorted(newest.items()):
        m = fetch_manifest(client, store, product, version, trusted)
        _evict(store, product, version)
        in_use = doc.get("versions_in_use", {}).get(product, {})
        payloads = []
        for index, ref, boxes in priority(m, in_use):
            room = None if max_cache is None else max_cache - cache_bytes(store)
            try:
                res = fetch_payload(client, store, m, index, ref, room)
            except SyncError as e:
                res = PayloadResult(index, ref.source_version, 0, "failed", detail=str(e))
            res.boxes = boxes
            payloads.append(res.as_json())
        result.releases.append({"product": product, "version": version, "payloads": payloads})


# --------------------------------------------------------------------------- trust files


def sync_trust(client: Client, store: Store, doc: Mapping[str, Any]) -> int:
    """Roots the cache lacks and a changed timestamp, kept as they are (the box verifies)."""
    state = doc.get("trust") or {}
    got = 0
    root_dir = store.root / TRUST / "root"
    for n in range(1, int(state.get("root_versions") or 0) + 1):
        if (root_dir / str(n)).exists():
            continue
        _keep(root_dir / str(n), _get(client, f"/trust/root/{n}").content)
        got += 1
    etag = state.get("timestamp_etag")
    ts = store.root / TRUST / "timestamp"
    held = hashlib.sha256(ts.read_bytes()).hexdigest() if ts.exists() else None
    if etag and etag != held:
        _keep(ts, _get(client, "/trust/timestamp").content)
        got += 1
    return got


def keep_policy(store: Store, doc: Mapping[str, Any]) -> None:
    """The sync document's releases and rollouts, for ``app push --cache`` to apply offline
    (checked first: a document the phone could not apply later is refused now)."""
    policy = {"releases": doc.get("releases", []), "rollouts": doc.get("rollouts", [])}
    try:
        SyncPolicy.from_sync(policy)
    except RolloutError as e:
        raise SyncError(f"the server's /v1/sync: {e}") from None
    _keep(store.root / SyncPolicy.FILE, json.dumps(policy, sort_keys=True).encode(),
          MAX_POLICY_FILE)


def _keep(path: Path, data: bytes, limit: int = MAX_TRUST_FILE) -> None:
    if not 0 < len(data) <= limit:
        raise SyncError(f"the server's {path.name} is {len(data)} bytes")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sync(client: Client, cache: Path, trusted: Mapping[bytes, Ed25519PublicKey],
         max_cache: int | None = None) -> SyncResult:
    """One whole sync (see the module docstring)."""
    store = open_cache(cache)
    result = SyncResult()
    with store.locked():
        upload_reports(client, cache, result)
        doc = client.get_json("/v1/sync")
        if not isinstance(doc, dict):
            raise SyncError("the server's /v1/sync is not a JSON object")
        sync_releases(client, store, doc, trusted, max_cache, result)
        keep_policy(store, doc)
        result.trust_files = sync_trust(client, store, doc)
        result.cache_bytes = cache_bytes(store)
    return result
