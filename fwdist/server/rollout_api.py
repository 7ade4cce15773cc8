"""The rollout routes under ``/v1``: start, list, status, pause/resume/abort, and yank.

Thin handlers over :mod:`fwdist.server.rollouts`: scope first (``release`` for anything
that changes a rollout, any token to read), the body bounded and parsed into a
:class:`~fwdist.rollout.Plan` (a malformed plan is one 422 line), the work on a worker
thread. A command that does not fit the rollout's state is a 409 naming both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fwdist.errors import RolloutError
from fwdist.rollout import Plan
from fwdist.server import rollouts
from fwdist.server.api import release_name
from fwdist.server.auth import Scope
from fwdist.server.context import ClientError, Server, blocking, json_body, require, server_of

READERS = (Scope.READ, Scope.RELEASE, Scope.APP)
MAX_PLAN_BYTES = 16 * 1024


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    """The blocking call, its refusals mapped to statuses: 404 unknown, 409 wrong state,
    422 a plan that means nothing."""
    try:
        return await blocking(fn, *args)
    except rollouts.NotFound as e:
        raise ClientError(404, str(e)) from None
    except rollouts.Conflict as e:
        raise ClientError(409, str(e)) from None
    except RolloutError as e:
        raise ClientError(422, str(e)) from None


async def _restamp(server: Server, revoke: tuple[tuple[str, str], ...] = ()) -> None:
    """With the online timestamp role, a new timestamp: the live rollouts' install windows
    changed (a start or a command), or a release was yanked (``revoke``)."""
    if server.stamper is not None:
        await blocking(server.stamper.issue, server.store(), server.now(), revoke, server.engine)


async def start(request: Request) -> Response:
    await require(request, Scope.RELEASE)
    doc = await json_body(request, MAX_PLAN_BYTES)
    try:
        plan = Plan.from_json(doc)
    except RolloutError as e:
        raise ClientError(422, str(e)) from None
    server = server_of(request)
    status = await _run(rollouts.start, server.engine, plan, server.now())
    await _restamp(server)
    return JSONResponse(status, status_code=201)


async def list_all(request: Request) -> Response:
    await require(request, *READERS)
    q = request.query_params
    server = server_of(request)
    found = await _run(rollouts.list_rollouts, server.engine, server.now(), q.get("product"),
                       q.get("version"))
    return JSONResponse({"rollouts": found})


async def status(request: Request) -> Response:
    await require(request, *READERS)
    server = server_of(request)
    rid = request.path_params["id"]
    return JSONResponse(await _run(rollouts.status, server.engine, rid, server.now()))


def _command(what: str) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        await require(request, Scope.RELEASE)
        server = server_of(request)
        rid = request.path_params["id"]
        done = await _run(rollouts.command, server.engine, rid, what, server.now())
        await _restamp(server)
        return JSONResponse(done)

    handle.__name__ = what
    return handle


async def yank(request: Request) -> Response:
    await require(request, Scope.RELEASE)
    product, version = release_name(request)
    server = server_of(request)
    stopped = await _run(rollouts.yank, server.engine, product, version, server.now())
    await _restamp(server, ((product, version),))  # the yank as a signed revocation
    return JSONResponse({"product": product, "version": version, "state": "yanked",
                         "rollouts_stopped": stopped})


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/rollouts", start, methods=["POST"]),
        Route("/v1/rollouts", list_all, methods=["GET"]),
        Route("/v1/rollouts/{id}", status, methods=["GET"]),
        *(Route(f"/v1/rollouts/{{id}}/{what}", _command(what), methods=["POST"])
          for what in rollouts.Command.ALL),
        Route("/v1/releases/{product}/{version}/yank", yank, methods=["POST"]),
    ]
