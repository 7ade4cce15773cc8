"""What every route handler shares: the store, the database, the clock, and the token check.

Handlers are ``async`` (they run on trio) but the database and the store are blocking,
so every call into them goes through :func:`blocking`, which runs it on a worker thread:
the event loop keeps serving other phones meanwhile. Errors a client caused leave as
:class:`ClientError`, one line of JSON (``{"error": "..."}``) with a 4xx status.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse

from fwdist.server import auth
from fwdist.server.auth import Scope
from fwdist.server.stamping import Stamper
from fwdist.store import Store

T = TypeVar("T")

MAX_JSON_BYTES = 256 * 1024
"""No JSON body of the API is larger (a manifest and its format 2 bundle, base64)."""


class ClientError(Exception):
    """A request the server refuses: its status and one line saying why."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(e: ClientError) -> JSONResponse:
    return JSONResponse({"error": e.message}, status_code=e.status, headers=e.headers)


@dataclass(frozen=True)
class Server:
    """The server's one state, built once at start and reached as ``request.app.state.server``."""

    store_root: Path
    engine: Engine
    clock: Callable[[], float] = field(default=time.time)
    stamper: Stamper | None = None  # the online timestamp role (``--timestamp-key``)

    def now(self) -> int:
        return int(self.clock())

    def store(self) -> Store:
        """A handle on the store, opened (and its layout checked) once at start.

        A fresh handle per call: a Store records what its transaction wrote, and two
        requests must not share that record.
        """
        return Store(self.store_root)


def server_of(request: Request) -> Server:
    server = request.app.state.server
    assert isinstance(server, Server)
    return server


async def blocking(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on a worker thread (database and file calls block)."""
    return await anyio.to_thread.run_sync(fn, *args)


async def require(request: Request, *allowed: Scope) -> Scope:
    """The caller's scope, if its bearer token is live and one of ``allowed``; else 401/403."""
    header = request.headers.get("authorization", "")
    kind, _, secret = header.partition(" ")
    if kind.lower() != "bearer" or not secret:
        raise ClientError(401, "this call needs a token (Authorization: Bearer TOKEN)",
                          {"WWW-Authenticate": "Bearer"})
    scope = await blocking(auth.scope_of, server_of(request).engine, secret.strip())
    if scope is None:
        raise ClientError(401, "the token is unknown or revoked", {"WWW-Authenticate": "Bearer"})
    if scope not in allowed:
        names = " or ".join(s.value for s in allowed)
        raise ClientError(403, f"a {scope.value} token may not do this (needs {names})")
    return scope


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ClientError(413, f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ClientError(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, limit: int = MAX_JSON_BYTES) -> Any:
    """The request body parsed as JSON; 413 past ``limit`` bytes, 400 when it is not JSON."""
    body = await read_body(request, limit)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClientError(400, f"the body is not JSON: {e}") from None
