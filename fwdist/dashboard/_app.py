"""The dashboard as a Starlette application the fleet server mounts at ``/dashboard``.

Who may log in: anyone holding an API token of scope ``read`` or ``release`` made by
``fwdist token create``. Not user accounts, because the server already has one credential a
release engineer is given, stores it hashed and revokes it from the command line; a second
kind (passwords, their reset and lock-out) would be a second thing to get right. Not ``app``
tokens: they live on phones in the field, and a lost phone must not show the whole fleet.
The token is checked once at login; the session cookie (:mod:`._session`) names it, and every
request asks whether it still stands, so a revoked token's sessions end at their next request.

Every page is whole without JavaScript; ``live.js`` only swaps in the sections the event
stream (:mod:`._events`) sends. Blocking calls (the read model, the authenticator: a
database) run in worker threads, as the server's own routes do.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from fwdist.dashboard import _events as events
from fwdist.dashboard import _session as session
from fwdist.dashboard._model import Authenticator, Principal, ReadModel
from fwdist.dashboard._render import Renderer

COOKIE = "fwdist_dashboard"
MAX_FORM = 4096  # a login form is a token of ~50 characters
DEFAULT_HISTORY, MAX_HISTORY = 50, 1000
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    return await anyio.to_thread.run_sync(fn, *args)


def cross_site(request: Request) -> bool:
    """Whether a browser says this request comes from another site's page.

    The two forms (log in, log out) change only the session, and the cookie is
    ``SameSite=Strict``, so a forged logout carries no cookie. A forged *login* needs none:
    a page elsewhere could post its own token and leave the victim looking at the
    attacker's view. Browsers name a request's origin (``Origin`` on every POST,
    ``Sec-Fetch-Site`` in current ones), and checking them is OWASP's standard defence for
    forms without a token of their own. A client that sends neither (curl, a script) is
    no browser to forge with, and passes.
    """
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin != own


async def _form(request: Request) -> dict[str, str] | None:
    """The urlencoded form's first value per field, or None for a body too large or not text."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in fields.items()}


class Dashboard:
    """The routes, bound to one read model, one authenticator and one session key."""

    def __init__(
        self,
        model: ReadModel,
        auth: Authenticator,
        key: bytes,
        base: str,
        interval: float,
        secure_cookie: bool,
        clock: Callable[[], float],
    ) -> None:
        self.model, self.auth, self.key, self.base = model, auth, key, base
        self.interval, self.secure_cookie, self.clock = interval, secure_cookie, clock
        self.render = Renderer(base)
        self.script = resources.files(__package__).joinpath("templates/live.js").read_bytes()

    def routes(self) -> list[Route]:
        return [
            Route("/", self.overview, methods=["GET"]),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/boxes/{box_id:str}", self.box_page, methods=["GET"]),
            Route("/events", self.events, methods=["GET"]),
            Route("/live.js", self.live_js, methods=["GET"]),
        ]

    # -- sessions ----------------------------------------------------------------------

    async def principal(self, request: Request) -> Principal | None:
        cookie = request.cookies.get(COOKIE)
        if cookie is None:
            return None
        who = session.decode(cookie, self.key, int(self.clock()))
        if who is None or not await _run(self.auth.active, who):
            return None
        return who

    def html(self, template: str, code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.render.page(template, **context), code, headers=HEADERS)

    def message(self, code: int, text: str, who: Principal | None) -> HTMLResponse:
        return self.html("message.html", code, status=code, message=text, principal=who,
                         events=None)  # fmt: skip

    def to_login(self) -> Response:
        return RedirectResponse(f"{self.base}/login", 303, headers=HEADERS)

    async def login_form(self, request: Request) -> Response:
        return self.html("login.html", principal=None, events=None, error=None)

    def refuse_cross_site(self) -> Response:
        return self.message(403, "This form was posted from a page on another site.", None)

    async def login(self, request: Request) -> Response:
        if cross_site(request):
            return self.refuse_cross_site()
        form = await _form(request)
        if form is None:
            return self.message(400, "The login form was too large or not text.", None)
        who = await _run(self.auth.login, form.get("token", "").strip())
        if who is None:
            return self.html("login.html", 403, principal=None, events=None,
                             error="That token is unknown, revoked, or of scope app.")  # fmt: skip
        response = RedirectResponse(f"{self.base}/", 303, headers=HEADERS)
        response.set_cookie(
            COOKIE,
            session.encode(who, self.key, int(self.clock())),
            max_age=session.LIFETIME,
            path=self.base or "/",
            secure=self.secure_cookie,
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(self, request: Request) -> Response:
        if cross_site(request):
            return self.refuse_cross_site()
        response = self.to_login()
        response.delete_cookie(COOKIE, path=self.base or "/")
        return response

    # -- pages -------------------------------------------------------------------------

    async def overview_sections(self) -> Mapping[str, str]:
        fleet = await _run(self.model.fleet)
        rollouts = await _run(self.model.rollouts)
        releases = await _run(self.model.releases)
        boxes = await _run(self.model.boxes)
        return self.render.overview_sections(fleet, rollouts, releases, boxes)

    async def overview(self, request: Request) -> Response:
        who = await self.principal(request)
        if who is None:
            return self.to_login()
        return self.html("overview.html", principal=who, sections=await self.overview_sections(),
                         events=f"{self.base}/events")  # fmt: skip

    def history_limit(self, request: Request) -> int | None:
        raw = request.query_params.get("limit", str(DEFAULT_HISTORY))
        return int(raw) if raw.isdigit() and 1 <= int(raw) <= MAX_HISTORY else None

    async def box_page(self, request: Request) -> Response:
        who = await self.principal(request)
        if who is None:
            return self.to_login()
        limit = self.history_limit(request)
        if limit is None:
            return self.message(400, f"limit must be a whole number from 1 to {MAX_HISTORY}.", who)
        box_id = request.path_params["box_id"]
        detail = await _run(self.model.box, box_id, limit)
        if detail is None:
            return self.message(404, f"No box {box_id!r} is registered.", who)
        events = f"{self.base}/events?box={request.path_params['box_id']}&limit={limit}"
        return self.html("box.html", principal=who, box_id=box_id, events=events,
                         sections=self.render.box_sections(detail))  # fmt: skip

    # -- live updates ------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        who = await self.principal(request)
        if who is None:
            return Response("log in first\n", 401, media_type="text/plain", headers=HEADERS)
        box_id = request.query_params.get("box")
        limit = self.history_limit(request)
        if limit is None:
            return Response("bad limit\n", 400, media_type="text/plain", headers=HEADERS)

        async def snapshot() -> Mapping[str, str] | None:
            if not await _run(self.auth.active, who):
                return None
            if box_id is None:
                return await self.overview_sections()
            detail = await _run(self.model.box, box_id, limit)
            return None if detail is None else self.render.box_sections(detail)

        return StreamingResponse(
            events.stream(snapshot, anyio.sleep, self.interval),
            media_type="text/event-stream",
            headers=HEADERS | {"X-Accel-Buffering": "no"},
        )

    async def live_js(self, request: Request) -> Response:
        return Response(self.script, media_type="text/javascript",
                        headers=HEADERS | {"Cache-Control": "no-cache"})  # fmt: skip


def create_app(
    model: ReadModel,
    auth: Authenticator,
    *,
    key: bytes | None = None,
    base: str = "/dashboard",
    interval: float = 1.0,
    secure_cookie: bool = False,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The dashboard application, to mount at ``base``.

    ``key`` signs session cookies; by default a fresh random one, so a restart logs everyone
    out and there is no key file to protect. ``secure_cookie`` belongs on behind HTTPS.
    """
    dash = Dashboard(model, auth, key or secrets.token_bytes(32), base.rstrip("/"), interval,
                     secure_cookie, clock)  # fmt: skip
    return Starlette(routes=dash.routes())
