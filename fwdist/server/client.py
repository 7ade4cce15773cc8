"""The HTTP client side of the fleet API (httpx, synchronous): the CLI's and the phone's.

Every failure a user can meet (no server there, a refused token, a 4xx with its one-line
reason) becomes one :class:`ServerError` line; nothing here prints.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from fwdist import air
from fwdist.errors import FwdistError
from fwdist.manifest import decode, decode_table
from fwdist.store import Store

TIMEOUT_S = 60.0


class ServerError(FwdistError):
    """The server could not be reached, or refused the call (its reason is the message)."""


@dataclass
class Client:
    """A connection to ``url`` (``http://HOST:PORT``) with a bearer ``token`` (or none)."""

    url: str
    token: str | None = None
    http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ServerError(f"--server must be an http:// or https:// URL, got {self.url!r}")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url.rstrip("/"), headers=headers,
                                 timeout=TIMEOUT_S)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, ok: tuple[int, ...] = (200,),
                **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise ServerError(f"cannot reach {self.url}: {e}") from None
        if response.status_code not in ok:
            raise ServerError(f"{method} {path}: {response.status_code} {_reason(response)}")
        return response

    def get_json(self, path: str, **params: str) -> Any:
        return self.request("GET", path, params=params or None).json()


def _reason(response: httpx.Response) -> str:
    try:
        doc = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return str(doc["error"])
    return response.reason_phrase


def object_path(object_id: bytes) -> str:
    h = object_id.hex()
    return f"/objects/{h[:2]}/{h}"


def release_objects(store: Store, product: str, version: str) -> Iterator[bytes]:
    """Every object a release references: each payload's table, then its pieces, once each."""
    m = decode(store.get_manifest(product, version)).manifest
    seen: set[bytes] = set()
    for ref in air.payload_refs(m):
        table = decode_table(store.get_content(ref.table_sha256), ref.table_sha256)
        for oid in (ref.table_sha256, *(e.id for e in table.pieces)):
            if oid not in seen:
                seen.add(oid)
                yield oid


@dataclass(frozen=True)
class PublishResult:
    product: str
    version: str
    objects: int
    uploaded: int
    uploaded_bytes: int
    created: bool


def publish(client: Client, store: Store, product: str, version: str) -> PublishResult:
    """Upload the objects the server lacks, then the manifests (idempotent)."""
    manifest = store.get_manifest(product, version)
    bundle = store.get_air(product, version)
    objects = uploaded = uploaded_bytes = 0
    path = f"/v1/releases/{product}/{version}"
    # Authenticated first: a wrong token fails here, before any upload; a published
    # release needs no object uploaded (the PUT below still checks it is the same).
    known = client.request("GET", path, ok=(200, 404)).status_code == 200
    for oid in release_objects(store, product, version):
        objects += 1
        if known or client.request("HEAD", object_path(oid), ok=(200, 404)).status_code == 200:
            continue
        frame = store.get_frame(oid)
        client.request("POST", f"/v1/objects/{oid.hex()}", ok=(200, 201), content=frame)
        uploaded += 1
        uploaded_bytes += len(frame)
    body = {"manifest": base64.b64encode(manifest).decode(),
            "air": base64.b64encode(bundle).decode() if bundle is not None else None}
    r = client.request("PUT", path, ok=(200, 201), json=body)
    return PublishResult(product, version, objects, uploaded, uploaded_bytes,
                         r.status_code == 201)
