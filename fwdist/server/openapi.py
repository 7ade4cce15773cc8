"""The OpenAPI 3 document of the API, served at ``/v1/openapi.json``.

Written out operation by operation (a table, not introspection), so the document says
what each route promises: who may call it, what it answers. A test holds this table to
the routes the application really registers: a route added without a line here, or a
line whose route is gone, fails it. docs/fleet-api.md is the prose of the same contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import fwdist


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    scopes: tuple[str, ...]  # () : no token needed
    responses: tuple[int, ...]
    body: str | None = None  # the request's media type


STATIC = ()
READ_ANY = ("read", "release", "app")
FLEET_READ = ("read", "release")

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/objects/{fan}/{name}", "a store object (zstd frame), by its SHA-256",
              STATIC, (200, 206, 304, 404, 416)),
    Operation("get", "/releases/{product}/{file}", "a signed manifest (VERSION) or its format "
              "2 bundle (VERSION.air)", STATIC, (200, 206, 304, 404, 416)),
    Operation("get", "/trust/{path}", "the trust root chain (root/N) and timestamp", STATIC,
              (200, 206, 304, 404, 416)),
    Operation("get", "/v1/releases", "every release with its payloads", READ_ANY, (200, 401)),
    Operation("get", "/v1/releases/{product}/{version}", "one release", READ_ANY,
              (200, 401, 404)),
    Operation("put", "/v1/releases/{product}/{version}", "publish: manifest and format 2 "
              "bundle, re-verified", ("release",), (200, 201, 400, 401, 403, 409, 422),
              "application/json"),
    Operation("get", "/v1/releases/{product}/{version}/pack/{index}", "a payload's table and "
              "pieces in one rangeable pack", READ_ANY, (200, 206, 304, 401, 404, 416)),
    Operation("post", "/v1/objects/{name}", "upload one store object, checked against its name",
              ("release",), (200, 201, 401, 403, 413, 422), "application/octet-stream"),
    Operation("post", "/v1/boxes", "register a box and its device key", ("release",),
              (200, 201, 400, 401, 403, 409, 422), "application/json"),
    Operation("get", "/v1/boxes", "the registry (?product=, ?tag=) with last reports",
              FLEET_READ, (200, 401, 403)),
    Operation("get", "/v1/boxes/{box_id}", "one box: row, last report, history (?limit=)",
              FLEET_READ, (200, 400, 401, 403, 404)),
    Operation("post", "/v1/reports", "signed box reports, each prefixed by its LEB128 length",
              ("app",), (200, 400, 401, 403, 413, 415), "application/x-fwdist-reports"),
    Operation("get", "/v1/fleet", "boxes per version, in progress, failed, heard from",
              FLEET_READ, (200, 401, 403)),
    Operation("get", "/v1/sync", "what a phone needs to decide what to fetch", ("app",),
              (200, 401, 403)),
    Operation("get", "/v1/openapi.json", "this document", STATIC, (200,)),
    # rollouts (r1): docs/rollouts.md
    Operation("post", "/v1/rollouts", "start a rollout of a published release (a plan)",
              ("release",), (201, 400, 401, 403, 404, 409, 413, 422), "application/json"),
    Operation("get", "/v1/rollouts", "every rollout (?product=, ?version=), each weighed now",
              READ_ANY, (200, 401)),
    Operation("get", "/v1/rollouts/{id}", "one rollout: plan, state, latest decision, history",
              READ_ANY, (200, 401, 404)),
    *(Operation("post", f"/v1/rollouts/{{id}}/{what}", f"{what} a rollout", ("release",),
                (200, 401, 403, 404, 409)) for what in ("pause", "resume", "abort")),
    Operation("post", "/v1/releases/{product}/{version}/yank", "withdraw a release; its "
              "rollouts stop", ("release",), (200, 401, 403, 404)),
)

_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        item: dict[str, Any] = {
            "summary": op.summary,
            "parameters": [{"name": n, "in": "path", "required": True,
                            "schema": {"type": "string"}} for n in _PARAM.findall(op.path)],
            "responses": {str(c): {"description": _REASONS[c]} for c in op.responses},
            "security": [{"bearer": []}] if op.scopes else [],
        }
        if op.scopes:
            item["x-fwdist-scopes"] = list(op.scopes)
        if op.body:
            item["requestBody"] = {"required": True, "content": {op.body: {}}}
        paths.setdefault(op.path, {})[op.method] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "fwdist fleet API", "version": fwdist.__version__,
                 "description": "docs/fleet-api.md"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }


_REASONS = {200: "OK", 201: "created", 206: "partial content (Range)", 304: "not modified",
            400: "malformed request", 401: "no live token", 403: "token of another scope",
            404: "not found", 409: "conflicts with what is stored", 413: "body too large",
            415: "wrong media type", 416: "range not satisfiable",
            422: "refused: does not verify or is incomplete"}


async def get_openapi(_request: Request) -> Response:
    return JSONResponse(document())


def routes() -> list[BaseRoute]:
    return [Route("/v1/openapi.json", get_openapi, methods=["GET"])]
