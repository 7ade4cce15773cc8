"""The JSON API under ``/v1``: thin handlers over the modules that do the work.

Each handler checks the caller's scope first (:func:`require`), parses and bounds its
input, runs the blocking work on a worker thread, and answers JSON. docs/fleet-api.md
documents every route; ``/v1/openapi.json`` (``fwdist.server.openapi``) describes them and
a test holds the two to the routes registered here.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fwdist.errors import FwdistError, StoreError
from fwdist.manifest import MAX_MANIFEST_BYTES, Version, check_name
from fwdist.server import catalog, pack
from fwdist.server.auth import Scope
from fwdist.server.caching import Cache, static_response
from fwdist.server.context import (
    ClientError,
    blocking,
    json_body,
    read_body,
    require,
    server_of,
)
from fwdist.server.publish import Outcome, Upload, publish, put_object
from fwdist.store import MAX_AIR_BYTES, MAX_FRAME_BYTES

READERS = (Scope.READ, Scope.RELEASE, Scope.APP)
"""Who may read releases: everyone with a token (the manifests are public anyway)."""
_HEX64 = re.compile(r"[0-9a-f]{64}")


def release_name(request: Request) -> tuple[str, str]:
    product, version = request.path_params["product"], request.path_params["version"]
    try:
        check_name("product", product)
        if str(Version.parse(version)) != version:
            raise FwdistError(f"version {version!r} is not canonical (X.Y.Z)")
    except FwdistError as e:
        raise ClientError(404, f"no release {product}@{version}: {e}") from None
    return product, version


def b64_field(doc: dict[str, Any], key: str, limit: int, optional: bool) -> bytes | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ClientError(422, f"field {key!r} must be a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError(422, f"field {key!r} is not valid base64") from None
    if len(data) > limit:
        raise ClientError(422, f"field {key!r} is larger than {limit} bytes")
    return data


# --------------------------------------------------------------------------- releases


async def list_releases(request: Request) -> Response:
    await require(request, *READERS)
    product = request.query_params.get("product")
    rels = await blocking(catalog.list_releases, server_of(request).engine, product)
    return JSONResponse({"releases": rels})


async def get_release(request: Request) -> Response:
    await require(request, *READERS)
    product, version = release_name(request)
    rels = await blocking(catalog.list_releases, server_of(request).engine, product, version)
    if not rels:
        raise ClientError(404, f"no release {product}@{version}")
    return JSONResponse(rels[0])


async def put_release(request: Request) -> Response:
    await require(request, Scope.RELEASE)
    product, version = release_name(request)
    doc = await json_body(request)
    if not isinstance(doc, dict):
        raise ClientError(422, "the body must be a JSON object {manifest, air}")
    manifest = b64_field(doc, "manifest", MAX_MANIFEST_BYTES, optional=False)
    assert manifest is not None
    up = Upload(product, version, manifest, b64_field(doc, "air", MAX_AIR_BYTES, optional=True))
    server = server_of(request)
    outcome = await blocking(publish, server.store(), server.engine, up, server.now())
    if server.stamper is not None and outcome is Outcome.CREATED:  # `latest` moved
        await blocking(server.stamper.issue, server.store(), server.now(), (), server.engine)
    rels = await blocking(catalog.list_releases, server.engine, product, version)
    return JSONResponse(rels[0], status_code=outcome.value)


async def post_object(request: Request) -> Response:
    await require(request, Scope.RELEASE)
    name = request.path_params["name"]
    if not _HEX64.fullmatch(name):
        raise ClientError(404, "an object is named by 64 lowercase hex digits")
    frame = await read_body(request, MAX_FRAME_BYTES)
    outcome = await blocking(put_object, server_of(request).store(), name, frame)
    return JSONResponse({"object": name}, status_code=outcome.value)


async def get_pack(request: Request) -> Response:
    await require(request, *READERS)
    product, version = release_name(request)
    index_text = request.path_params["index"]
    if not index_text.isdigit() or len(index_text) > 3:
        raise ClientError(404, f"no payload {index_text!r}")
    server = server_of(request)
    rels = await blocking(catalog.list_releases, server.engine, product, version)
    if not rels:
        raise ClientError(404, f"no release {product}@{version}")
    index = int(index_text)
    payloads = rels[0]["payloads"]
    if index >= len(payloads):
        raise ClientError(404, f"{product}@{version} has no payload {index}")
    table = bytes.fromhex(payloads[index]["table_sha256"])
    if request.headers.get("if-none-match") is not None and "range" not in request.headers:
        empty = static_response(request, b"", pack.etag(table), Cache.IMMUTABLE, pack.MEDIA_TYPE)
        if empty.status_code == 304:
            return empty
    try:
        _, data = await blocking(pack.build, server.store(), product, version, index)
    except StoreError as e:
        raise ClientError(404, str(e)) from None
    return static_response(request, data, pack.etag(table), Cache.IMMUTABLE, pack.MEDIA_TYPE)


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/releases", list_releases, methods=["GET"]),
        Route("/v1/releases/{product}/{version}", get_release, methods=["GET"]),
        Route("/v1/releases/{product}/{version}", put_release, methods=["PUT"]),
        Route("/v1/releases/{product}/{version}/pack/{index}", get_pack,
              methods=["GET", "HEAD"]),
        Route("/v1/objects/{name}", post_object, methods=["POST"]),
    ]
