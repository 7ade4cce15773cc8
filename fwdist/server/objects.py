"""The static-compatible paths: the store's own files, at the store's own layout.

``/objects/ab/<sha256>``, ``/releases/<product>/<version>[.air]`` and ``/trust/...`` are
what a plain static server (nginx) pointed at the store would serve, so a CDN or a mirror
can take over downloads: no authentication (everything here is signed or named by its
hash, and a phone checks both), long cache lifetimes, ETag and Range. Names are checked
against the store's layout before any file is touched: a path trick (``..``, a link, a
name that is not a hash) is a 404, never a read outside the store.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from fwdist.errors import FwdistError, StoreError
from fwdist.manifest import Version, check_name
from fwdist.server.caching import Cache, static_response
from fwdist.server.context import ClientError, blocking, server_of
from fwdist.store import AIR_SUFFIX, Store

OCTETS = "application/octet-stream"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TRUST_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_TRUST_FILE = 64 * 1024
"""No trust file (a root or a timestamp) is larger."""
TIMESTAMP = "timestamp"
"""The one trust file that changes in place (the others are named by their version)."""


def _not_found(what: str) -> ClientError:
    return ClientError(404, f"no {what} here")


async def get_object(request: Request) -> Response:
    fan, name = request.path_params["fan"], request.path_params["name"]
    if not (_HEX64.fullmatch(name) and name[:2] == fan):
        raise _not_found("object")
    store = server_of(request).store()
    try:
        frame = await blocking(store.get_frame, bytes.fromhex(name))
    except StoreError:
        raise _not_found(f"object {name}") from None
    return static_response(request, frame, name, Cache.IMMUTABLE, OCTETS)


def parse_release_file(product: str, file: str) -> tuple[str, str, bool]:
    """(product, version, is_air) for a ``/releases`` path, or a 404 for anything else."""
    is_air = file.endswith(AIR_SUFFIX)
    version = file.removesuffix(AIR_SUFFIX)
    try:
        check_name("product", product)
        if str(Version.parse(version)) != version:
            raise FwdistError("not canonical")
    except FwdistError:
        raise _not_found("release") from None
    return product, version, is_air


def read_release_file(store_root: Path, product: str, version: str, is_air: bool) -> bytes:
    store = Store(store_root)
    if is_air:
        data = store.get_air(product, version)
        if data is None:
            raise StoreError("no format 2 bundle")
        return data
    return store.get_manifest(product, version)


async def get_release_file(request: Request) -> Response:
    product, version, is_air = parse_release_file(
        request.path_params["product"], request.path_params["file"])
    root = server_of(request).store_root
    try:
        data = await blocking(read_release_file, root, product, version, is_air)
    except StoreError:
        raise _not_found(f"release file {product}/{request.path_params['file']}") from None
    etag = hashlib.sha256(data).hexdigest()
    return static_response(request, data, etag, Cache.IMMUTABLE, OCTETS)


def read_trust_file(store_root: Path, parts: list[str]) -> bytes:
    """A regular file under ``trust/``; no component may be a link. Missing: StoreError."""
    path = store_root / "trust"
    for part in parts:
        path = path / part
        try:
            st = os.lstat(path)
        except OSError:
            raise StoreError("missing") from None
        if stat.S_ISLNK(st.st_mode):
            raise StoreError("a link")
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_TRUST_FILE:
        raise StoreError("not a trust file")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read(MAX_TRUST_FILE)


async def get_trust_file(request: Request) -> Response:
    parts = request.path_params["path"].split("/")
    if not parts or not all(_TRUST_PART.fullmatch(p) and ".." not in p for p in parts):
        raise _not_found("trust file")
    try:
        data = await blocking(read_trust_file, server_of(request).store_root, parts)
    except StoreError:
        raise _not_found("trust file") from None
    cache = Cache.REVALIDATE if parts == [TIMESTAMP] else Cache.IMMUTABLE
    return static_response(request, data, hashlib.sha256(data).hexdigest(), cache, OCTETS)


def routes() -> list[BaseRoute]:
    methods = ["GET", "HEAD"]
    return [
        Route("/objects/{fan}/{name}", get_object, methods=methods),
        Route("/releases/{product}/{file}", get_release_file, methods=methods),
        Route("/trust/{path:path}", get_trust_file, methods=methods),
    ]
