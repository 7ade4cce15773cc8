"""The ASGI application: the route modules, put together, and one way to fail.

Each module in :data:`ROUTE_MODULES` has ``routes() -> list[BaseRoute]``; a new part of
the service (rollouts, the dashboard) adds its module here and nowhere else. Every
refusal is one line of JSON with a 4xx status (:class:`ClientError`); an unexpected
exception is a 500 whose body says only that, while the traceback goes to the log.
"""

from __future__ import annotations

import importlib
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from fwdist.server.context import ClientError, Server, error_response

ROUTE_MODULES = (
    "fwdist.server.objects",
    "fwdist.server.api",
    "fwdist.server.fleet_api",
    "fwdist.server.rollout_api",
    "fwdist.server.openapi",
    "fwdist.server.dashboard",
)
"""Modules whose ``routes()`` make up the application, in matching order."""

log = logging.getLogger(__name__)


def all_routes() -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for name in ROUTE_MODULES:
        out.extend(importlib.import_module(name).routes())
    return out


async def _client_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    return error_response(exc)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                        headers=dict(exc.headers or {}))


async def _internal_error(_request: Request, exc: Exception) -> Response:
    log.error("internal error", exc_info=exc)
    return JSONResponse({"error": "internal server error"}, status_code=500)


def make_app(server: Server) -> Starlette:
    app = Starlette(
        routes=all_routes(),
        exception_handlers={
            ClientError: _client_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.server = server
    return app
