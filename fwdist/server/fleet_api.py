"""The fleet's routes: the box registry, report upload, the summary, and a phone's sync."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fwdist.server import fleet, ingest, registry
from fwdist.server.auth import Scope
from fwdist.server.context import (
    ClientError,
    blocking,
    json_body,
    read_body,
    require,
    server_of,
)

READERS = (Scope.READ, Scope.RELEASE)
"""Who may read the registry and the summary: release engineers and read-only tokens."""


async def post_box(request: Request) -> Response:
    await require(request, Scope.RELEASE)
    box = registry.parse_entry(await json_body(request))
    server = server_of(request)
    created = await blocking(registry.register, server.engine, box, server.now())
    got = await blocking(registry.get_box, server.engine, box.id, 0)
    return JSONResponse(got, status_code=201 if created else 200)


async def list_boxes(request: Request) -> Response:
    await require(request, *READERS)
    q = request.query_params
    rows = await blocking(registry.list_boxes, server_of(request).engine, q.get("product"),
                          q.get("tag"))
    return JSONResponse({"boxes": rows})


async def get_box(request: Request) -> Response:
    await require(request, *READERS)
    text = request.query_params.get("limit", "50")
    if not text.isdigit() or not 0 <= int(text) <= registry.MAX_HISTORY:
        raise ClientError(400, f"limit must be 0..{registry.MAX_HISTORY}, got {text!r}")
    box_id = request.path_params["box_id"]
    got = await blocking(registry.get_box, server_of(request).engine, box_id, int(text))
    if got is None:
        raise ClientError(404, f"no box {box_id}")
    return JSONResponse(got)


async def post_reports(request: Request) -> Response:
    await require(request, Scope.APP)
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != ingest.MEDIA_TYPE:
        raise ClientError(415, f"reports are sent as {ingest.MEDIA_TYPE}")
    body = await read_body(request, ingest.MAX_BODY_BYTES)
    server = server_of(request)
    results = await blocking(ingest.ingest, server.engine, body, server.now(), server.verify)
    return JSONResponse({"results": [r.as_json() for r in results]})


async def get_fleet(request: Request) -> Response:
    await require(request, *READERS)
    return JSONResponse(await blocking(fleet.summary, server_of(request).engine))


async def get_sync(request: Request) -> Response:
    await require(request, Scope.APP)
    server = server_of(request)
    return JSONResponse(await blocking(fleet.sync, server.engine, server.store(),
                                       server.now()))


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/boxes", post_box, methods=["POST"]),
        Route("/v1/boxes", list_boxes, methods=["GET"]),
        Route("/v1/boxes/{box_id}", get_box, methods=["GET"]),
        Route("/v1/reports", post_reports, methods=["POST"]),
        Route("/v1/fleet", get_fleet, methods=["GET"]),
        Route("/v1/sync", get_sync, methods=["GET"]),
    ]
