"""The dashboard in headless Chromium over a fake fleet: log in, read it, watch it change live.

The fleet server's own test (tests/e2e/test_dashboard.py) drives real reports and rollouts;
this one holds the page to exact figures the fake fleet makes, and shows that each change
reaches an open page without a reload: the same window, and a marker the test leaves in the
page's JavaScript state survives (a reload or navigation would wipe it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from starlette.applications import Starlette
from starlette.routing import Mount

from fwdist.dashboard import ReportRow, create_app
from tests.browser_helpers import cells_of, screenshot, serve_asgi, wait_until
from tests.browser_helpers import text_of as text
from tests.dashboard_helpers import APP_TOKEN, READ_TOKEN, RELEASE_TOKEN, T0, FakeFleet, rollout

MARK = "window.__fwdistNoReload = 'still here'"


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet()


@pytest.fixture
def url(fleet: FakeFleet) -> Iterator[str]:
    app = Starlette(routes=[Mount("/dashboard", create_app(fleet, fleet, interval=0.2))])
    with serve_asgi(app) as base:
        yield base + "/dashboard"


def log_in(web: WebDriver, url: str, token: str) -> None:
    web.get(url + "/")
    wait_until(lambda: web.find_elements(By.ID, "token"), what="the login form")
    web.find_element(By.ID, "token").send_keys(token)
    web.find_element(By.ID, "login").click()


def still_same_page(web: WebDriver, handle: str) -> None:
    assert web.window_handles == [handle]
    assert web.execute_script("return window.__fwdistNoReload") == "still here"


def test_an_app_token_may_not_log_in(browser: WebDriver, url: str) -> None:
    log_in(browser, url, APP_TOKEN)
    error = wait_until(lambda: text(browser, "login-error"), what="the login error")
    assert error == "That token is unknown, revoked, or of scope app."
    assert browser.current_url == url + "/login"
    screenshot(browser, "live-01-login-refused")


def test_the_open_overview_follows_the_fleet_without_a_reload(
    browser: WebDriver, url: str, fleet: FakeFleet
) -> None:
    log_in(browser, url, READ_TOKEN)
    wait_until(lambda: text(browser, "live-status").startswith("live"), what="the event stream")
    assert browser.current_url == url + "/"
    assert text(browser, "version-lockbox-1.1.0") == "98"
    assert text(browser, "coverage-lockbox") == "99.0 %"
    assert text(browser, "marks-lockbox") == (
        "1.1.0: 50 % 2026-09-21 16:13 UTC; 90 % 2026-09-21 18:13 UTC; 99 % 2026-09-21 20:13 UTC"
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.curve polyline.version")) == 2
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.curve line.mark")) == 3
    handle = browser.current_window_handle
    browser.execute_script(MARK)
    screenshot(browser, "live-02-overview")

    fleet.set_versions({"1.1.0": 97, "1.2.0": 2}, failed=3)  # a new version appears
    wait_until(lambda: text(browser, "version-lockbox-1.2.0") == "2", what="the 1.2.0 row")
    assert text(browser, "version-lockbox-1.1.0") == "97"
    assert text(browser, "failed-lockbox") == "3"
    assert text(browser, "version-lockbox-1.0.0") == ""  # its row went with its last box
    still_same_page(browser, handle)

    decision = "abort: 12 of 62 reporting boxes failed"
    aborted = rollout(installed=40, failed=12, state="aborted")
    fleet.set_rollout(dataclasses.replace(aborted, decision=decision))
    wait_until(lambda: text(browser, "rollout-state-r1") == "aborted", what="the abort")
    assert cells_of(browser, "phase-r1-2")[4:] == ["100", "90", "5", "40", "12", "2", "31"]
    assert text(browser, "rollout-coverage-r1") == (
        "59 of 100 eligible boxes heard from since phase 2 began (59.0 %)"
    )
    assert text(browser, "rollout-decision-r1") == f"Decision: {decision}"
    still_same_page(browser, handle)
    screenshot(browser, "live-03-rollout-aborted")


def test_a_box_page_grows_its_history_live(browser: WebDriver, url: str, fleet: FakeFleet) -> None:
    log_in(browser, url, RELEASE_TOKEN)
    browser.get(url + "/boxes/box-001")
    wait_until(lambda: text(browser, "live-status").startswith("live"), what="the event stream")
    assert cells_of(browser, "history")[::7] == ["3", "2", "1"]  # seq, the first of 7 columns
    handle = browser.current_window_handle
    browser.execute_script(MARK)
    fleet.add_report("box-001", ReportRow(4, T0 + 9000, "1.2.0", "installing",
                                          "1.2.0 (4,096 of 65,536 B)", 71, None))  # fmt: skip
    wait_until(lambda: len(cells_of(browser, "history")) == 4 * 7, what="the new report's row")
    assert cells_of(browser, "history")[:7] == [
        "4", "2026-09-21 16:43 UTC", "1.2.0", "installing", "1.2.0 (4,096 of 65,536 B)", "71 %", "–"
    ]  # fmt: skip
    still_same_page(browser, handle)
    screenshot(browser, "live-04-box-history")
