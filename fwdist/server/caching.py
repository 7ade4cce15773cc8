"""HTTP responses a CDN could cache: ETag, 304, single ranges (206, 416), cache lifetimes.

Every object the server hands out is named by its content, so a response never changes
under its URL and may be cached for a year (``immutable``): the one exception is the
trust timestamp, which changes in place and must be revalidated (``no-cache``). A client
resumes a download with ``Range``; the server answers one range (a request for several
gets the whole body, which RFC 9110 allows) and says 416 for a range past the end.
"""

from __future__ import annotations

import enum
import re

from starlette.requests import Request
from starlette.responses import Response

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class Cache(enum.Enum):
    """How long a response may be reused without asking."""

    IMMUTABLE = "public, max-age=31536000, immutable"
    REVALIDATE = "no-cache"


def quoted(etag: str) -> str:
    return f'"{etag}"'


def _matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return quoted(etag) in tags


def byte_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """``(start, end)`` (end exclusive) for a satisfiable single range; False when it is
    unsatisfiable (416); None when the header is not one range we answer (serve it all)."""
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # the last N bytes
        n = int(last)
        if n == 0:
            return False
        return max(0, size - n), size
    start = int(first)
    end = size if not last else int(last) + 1
    if not last or end > size:
        end = size
    if last and int(last) < start:
        return None  # syntactically invalid: ignored, as RFC 9110 says
    if start >= size:
        return False
    return start, end


def static_response(
    request: Request, data: bytes, etag: str, cache: Cache, media_type: str
) -> Response:
    """``data`` as a cacheable response to ``request`` (GET or HEAD), honouring
    ``If-None-Match`` and one ``Range``."""
    headers = {"ETag": quoted(etag), "Cache-Control": cache.value, "Accept-Ranges": "bytes"}
    inm = request.headers.get("if-none-match")
    if inm is not None and _matches(inm, etag):
        return Response(status_code=304, headers=headers)
    status, body = 200, data
    rng = request.headers.get("range")
    if rng is not None:
        span = byte_range(rng, len(data))
        if span is False:
            headers["Content-Range"] = f"bytes */{len(data)}"
            return Response(status_code=416, headers=headers)
        if isinstance(span, tuple):
            start, end = span
            status, body = 206, data[start:end]
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(status_code=status, headers=headers, media_type=media_type)
    return Response(body, status_code=status, headers=headers, media_type=media_type)
