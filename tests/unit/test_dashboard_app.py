"""The dashboard's routes over a fake fleet: who gets in, what each page says, what is refused.

Driven in-process through httpx's ASGI transport on trio; the browser tests
(tests/e2e/test_dashboard*.py) show the same pages in Chromium.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from fwdist.dashboard import Principal, create_app
from fwdist.dashboard._app import HEADERS
from tests.dashboard_helpers import APP_TOKEN, READ_TOKEN, RELEASE_TOKEN, FakeFleet, box

KEY = b"k" * 32
NOW = 1_800_000_000


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(fleet: FakeFleet, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(fleet, fleet, key=KEY, interval=0.01, clock=clock)
    outer = Starlette(routes=[Mount("/dashboard", app)])
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash.test") as c:
        yield c


async def log_in(client: httpx.AsyncClient, token: str = READ_TOKEN) -> httpx.Response:
    return await client.post("/dashboard/login", data={"token": token})


def cells(html: str, element_id: str) -> str:
    found = re.search(rf'id="{re.escape(element_id)}"[^>]*>([^<]*)<', html)
    assert found, f"no element {element_id}"
    return found.group(1)


async def test_without_a_session_pages_send_you_to_the_login_and_events_refuse(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/dashboard/", "/dashboard/boxes/box-001"):
        r = await client.get(path)
        assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")
    r = await client.get("/dashboard/events")
    assert (r.status_code, r.text) == (401, "log in first\n")
    form = await client.get("/dashboard/login")
    assert form.status_code == 200 and 'name="token"' in form.text


@pytest.mark.parametrize("token", [APP_TOKEN, "fwd_read_wrong", ""])
async def test_app_tokens_and_unknown_tokens_do_not_log_in(
    client: httpx.AsyncClient, token: str
) -> None:
    r = await log_in(client, token)
    assert r.status_code == 403
    assert "set-cookie" not in r.headers
    assert cells(r.text, "login-error") == "That token is unknown, revoked, or of scope app."


async def test_a_read_token_logs_in_to_a_strict_http_only_cookie_and_sees_the_fleet(
    client: httpx.AsyncClient,
) -> None:
    r = await log_in(client)
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("fwdist_dashboard=")
    assert sorted(cookie.split("; ")[1:]) == [
        "HttpOnly", "Max-Age=28800", "Path=/dashboard", "SameSite=strict"
    ]  # fmt: skip
    page = await client.get("/dashboard/")
    assert page.status_code == 200
    assert {k: page.headers[k] for k in HEADERS} == HEADERS
    html = page.text  # everything a person needs is in the HTML: no script required
    assert [cells(html, i) for i in ("boxes-lockbox", "heard-lockbox", "coverage-lockbox")] == [
        "100", "99", "99.0 %"
    ]  # fmt: skip
    assert cells(html, "version-lockbox-1.1.0") == "98"
    assert cells(html, "rollout-state-r1") == "active"
    assert cells(html, "rollout-coverage-r1") == (
        "11 of 100 eligible boxes heard from since phase 2 began (11.0 %)"
    )
    assert html.count('<tr id="box-') == 3
    releases = html.split('id="releases"')[1]
    assert re.findall(r'<tr id="release-([^"]+)">', releases) == ["lockbox@1.1.0", "lockbox@1.0.0"]
    assert "<td>21,003 B</td>" in releases
    assert html.count("<polyline") == 2
    assert 'data-events="/dashboard/events"' in html and "/dashboard/live.js" in html


async def test_a_release_token_logs_in_too(client: httpx.AsyncClient) -> None:
    assert (await log_in(client, RELEASE_TOKEN)).status_code == 303
    assert ">release-eng<" in (await client.get("/dashboard/")).text


async def test_an_oversized_login_form_is_refused_unread(client: httpx.AsyncClient) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = await client.post("/dashboard/login", content=b"token=" + b"x" * 5000, headers=form)
    assert r.status_code == 400 and "set-cookie" not in r.headers
    assert cells(r.text, "message") == "The login form was too large or not text."


async def test_a_tampered_expired_or_revoked_session_goes_back_to_the_login(
    client: httpx.AsyncClient, fleet: FakeFleet, clock: Clock
) -> None:
    await log_in(client)
    good = client.cookies["fwdist_dashboard"]
    body, mac = good.split(".")
    client.cookies.set("fwdist_dashboard", f"{body}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}")
    assert (await client.get("/dashboard/")).status_code == 303
    client.cookies.set("fwdist_dashboard", good)
    assert (await client.get("/dashboard/")).status_code == 200
    clock.now += 8 * 3600  # the session's lifetime, to the second
    assert (await client.get("/dashboard/")).status_code == 303
    clock.now -= 1
    assert (await client.get("/dashboard/")).status_code == 200
    fleet.revoked.add("t-read")
    assert (await client.get("/dashboard/")).status_code == 303


async def test_logging_out_clears_the_cookie(client: httpx.AsyncClient) -> None:
    await log_in(client)
    r = await client.post("/dashboard/logout")
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")
    assert 'fwdist_dashboard=""' in r.headers["set-cookie"]
    assert (await client.get("/dashboard/")).status_code == 303


@pytest.mark.parametrize("headers", [
    {"origin": "https://evil.test"},
    {"origin": "null"},
    {"origin": "http://dash.test:8080"},
    {"sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site", "origin": "http://dash.test"},
])
async def test_a_form_posted_from_another_site_changes_no_session(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await client.post("/dashboard/login", data={"token": READ_TOKEN}, headers=headers)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    assert cells(r.text, "message") == "This form was posted from a page on another site."
    await log_in(client)
    r = await client.post("/dashboard/logout", headers=headers)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    assert (await client.get("/dashboard/")).status_code == 200  # still logged in


@pytest.mark.parametrize("headers", [
    {},  # a client that is no browser (curl, a script)
    {"origin": "http://dash.test"},
    {"sec-fetch-site": "same-origin", "origin": "http://dash.test"},
    {"sec-fetch-site": "none"},  # typed into the address bar or a bookmark
])
async def test_a_form_from_the_dashboard_itself_logs_in(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await client.post("/dashboard/login", data={"token": READ_TOKEN}, headers=headers)
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/")


async def test_a_box_page_shows_its_history_newest_first_up_to_the_limit(
    client: httpx.AsyncClient,
) -> None:
    await log_in(client)
    page = await client.get("/dashboard/boxes/box-001", params={"limit": "2"})
    assert page.status_code == 200
    history = page.text.split('id="history"')[1]
    assert re.findall(r"<tr><td>(\d+)</td>", history) == ["3", "2"]
    assert cells(page.text, "box-version") == "1.1.0"
    assert 'data-events="/dashboard/events?box=box-001&amp;limit=2"' in page.text


@pytest.mark.parametrize("limit", ["0", "1001", "ten", "-1"])
async def test_a_bad_history_limit_is_one_clear_400(client: httpx.AsyncClient, limit: str) -> None:
    await log_in(client)
    r = await client.get("/dashboard/boxes/box-001", params={"limit": limit})
    assert r.status_code == 400
    assert cells(r.text, "message") == "limit must be a whole number from 1 to 1000."


async def test_an_unknown_box_is_a_404_and_a_hostile_id_is_escaped(
    client: httpx.AsyncClient, fleet: FakeFleet
) -> None:
    await log_in(client)
    r = await client.get("/dashboard/boxes/nope")
    assert r.status_code == 404
    assert cells(r.text, "message") == "No box &#39;nope&#39; is registered."
    fleet.box_rows = (dataclasses.replace(box(9), id="<script>x</script>"),)
    page = await client.get("/dashboard/")
    assert "<script>x" not in page.text and "&lt;script&gt;x&lt;/script&gt;" in page.text
    assert 'href="/dashboard/boxes/%3Cscript%3Ex%3C%2Fscript%3E"' in page.text


async def test_the_event_stream_sends_every_section_once_then_ends_with_the_session(
    client: httpx.AsyncClient, fleet: FakeFleet
) -> None:
    await log_in(client)
    checks = iter([True, True])  # the request's check, then the first snapshot's
    fleet.active = lambda principal: next(checks, False)  # type: ignore[method-assign]
    r = await client.get("/dashboard/events")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    retry, event, end = r.text.split("\n\n")
    assert (retry, end) == ("retry: 2000", "")
    lines = event.split("\n")
    assert lines[0] == "event: sections" and len(lines) == 2
    assert lines[1].startswith('data: {"boxes":"') and '"fleet":"' in lines[1]


async def test_the_live_script_is_served_as_javascript(client: httpx.AsyncClient) -> None:
    r = await client.get("/dashboard/live.js")
    assert r.headers["content-type"].startswith("text/javascript")
    assert 'addEventListener("sections"' in r.text


def test_principal_never_holds_the_token() -> None:
    assert [f.name for f in dataclasses.fields(Principal)] == ["token_id", "name"]
