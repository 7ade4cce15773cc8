"""The dashboard on a real ``fwdist server``, in headless Chromium, while the fleet changes.

One page stays open through the whole story, and every step must reach it without a reload
(the same window, and a marker left in the page's JavaScript state survives): boxes report
1.0.0; a release engineer starts a 25 % -> 100 % rollout of 1.1.0 with ``fwdist rollout
start``; the first cohort reports 1.1.0 installed and the rollout moves to its second phase;
five boxes outside that cohort report failed installs and the automatic abort fires; ``fwdist
release yank`` withdraws the release. Then a box page follows a new report live.
Screenshots go to ``reports/dashboard/``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from fwdist import report
from fwdist.protocol import BoxState
from fwdist.report import LastResult, Outcome, Report, TargetProgress
from fwdist.rollout import in_cohort
from fwdist.server.auth import Scope
from fwdist.server.client import Client, publish
from fwdist.server.ingest import MEDIA_TYPE, frame_reports
from fwdist.testing import Releases, make_releases
from tests.browser_helpers import cells_of as row
from tests.browser_helpers import screenshot, wait_until
from tests.browser_helpers import text_of as text
from tests.server_helpers import RunningServer, db_url, fleet_server

__all__ = ["db_url", "fleet_server"]  # fixtures

BOXES = 40
ROLLOUT = "lockbox@1.1.0-1"
MARK = "window.__fwdistNoReload = 'still here'"


def device_key(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"dash box %d" % n).digest())


def box_id(n: int) -> str:
    return f"box-{n:02d}"


def signed(n: int, seq: int, running: str, last: LastResult | None = None,
           target: TargetProgress | None = None, state: BoxState = BoxState.IDLE) -> bytes:
    r = Report(box_id(n), seq, "lockbox", "lb-r2", running, bytes(8), target, 70 + n % 30,
               state, last, 0)  # fmt: skip
    return report.sign(r, device_key(n))


def upload(server: RunningServer, wires: list[bytes]) -> None:
    with server.client(Scope.APP) as phone:
        r = phone.post("/v1/reports", content=frame_reports(wires),
                       headers={"Content-Type": MEDIA_TYPE})  # fmt: skip
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == ["accepted"] * len(wires)


def fwdist(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fwdist", *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return make_releases(tmp_path_factory.mktemp("dash"), count=2, size=16 * 1024, seed=1)


@pytest.fixture
def fleet(fleet_server: RunningServer, history: Releases) -> Iterator[RunningServer]:
    """The server with 1.0.0 and 1.1.0 published and 40 boxes registered, none heard from."""
    with Client(fleet_server.url, fleet_server.tokens[Scope.RELEASE]) as c:
        for r in history.releases:
            publish(c, history.store, "lockbox", r.version)
    with fleet_server.client(Scope.RELEASE) as c:
        for n in range(BOXES):
            key = device_key(n).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            doc = {"id": box_id(n), "product": "lockbox", "hardware": "lb-r2",
                   "public_key": key.hex(), "tags": ["pilot"] if n < 4 else []}  # fmt: skip
            assert c.post("/v1/boxes", json=doc).status_code == 201
    yield fleet_server


def same_page(web: WebDriver, handle: str) -> None:
    assert web.window_handles == [handle]
    assert web.execute_script("return window.__fwdistNoReload") == "still here"


def test_the_dashboard_follows_a_rollout_to_its_automatic_abort_without_a_reload(
    browser: WebDriver, fleet: RunningServer
) -> None:
    dash = fleet.url + "/dashboard"
    with httpx.Client() as anon:  # no session: the login page, and the stream refuses
        assert anon.get(dash + "/").headers["location"] == "/dashboard/login"
        assert anon.get(dash + "/events").status_code == 401
    upload(fleet, [signed(n, 1, "1.0.0") for n in range(BOXES)])

    browser.get(dash + "/")
    browser.find_element(By.ID, "token").send_keys(fleet.tokens[Scope.READ])
    browser.find_element(By.ID, "login").click()
    wait_until(lambda: text(browser, "live-status").startswith("live"), what="the live stream")
    assert browser.current_url == dash + "/"
    assert [text(browser, i) for i in ("boxes-lockbox", "heard-lockbox", "coverage-lockbox")] == [
        "40", "40", "100.0 %"
    ]  # fmt: skip
    assert text(browser, "version-lockbox-1.0.0") == "40"
    assert "No rollouts." in text(browser, "rollouts")
    assert row(browser, "release-lockbox@1.1.0")[:2] == ["lockbox 1.1.0", "published"]
    handle = browser.current_window_handle
    browser.execute_script(MARK)
    screenshot(browser, "01-fleet-on-1.0.0")

    # a release engineer starts the rollout from the command line
    server = ("--server", fleet.url, "--token", fleet.tokens[Scope.RELEASE])
    started = fwdist("rollout", "start", "lockbox@1.1.0", "--phases", "25,100",
                     "--abort-threshold", "20", "--abort-min", "3", *server, "--json")
    assert (started.returncode, started.stderr) == (0, "")
    assert json.loads(started.stdout)["id"] == ROLLOUT
    cohort = [n for n in range(BOXES) if in_cohort(ROLLOUT, box_id(n), 2500)]
    assert len(cohort) == 9  # of 40: the keyed hash's draw for these ids
    wait_until(lambda: text(browser, f"rollout-state-{ROLLOUT}").startswith("active"),
               what="the rollout's first phase")  # fmt: skip
    assert text(browser, f"rollout-state-{ROLLOUT}") == "active, offered to 25 %"
    assert row(browser, f"phase-{ROLLOUT}-1")[4:] == ["40", "9", "0", "0", "0", "0", "9"]
    same_page(browser, handle)
    screenshot(browser, "02-rollout-started")

    # the first cohort's phones come back: every box of it installed 1.1.0
    upload(fleet, [signed(n, 2, "1.1.0", LastResult("1.1.0", Outcome.INSTALLED)) for n in cohort])
    wait_until(lambda: row(browser, f"phase-{ROLLOUT}-1")[2] == "succeeded",
               what="the first phase's success")  # fmt: skip
    assert row(browser, f"phase-{ROLLOUT}-1")[4:] == ["40", "9", "0", "9", "0", "0", "0"]
    assert text(browser, f"rollout-state-{ROLLOUT}") == "active, offered to 100 %"
    assert text(browser, "version-lockbox-1.1.0") == "9"
    assert text(browser, "version-lockbox-1.0.0") == "31"
    same_page(browser, handle)
    screenshot(browser, "03-first-phase-succeeded")

    # five boxes of the second phase fail to install it: the automatic abort trips
    failing = [n for n in range(BOXES) if n not in cohort][:5]
    upload(fleet, [signed(n, 2, "1.0.0", LastResult("1.1.0", Outcome.FAILED)) for n in failing])
    wait_until(lambda: text(browser, f"rollout-state-{ROLLOUT}").startswith("aborted"),
               what="the automatic abort")  # fmt: skip
    status = fwdist("rollout", "status", ROLLOUT, "--json", "--server", fleet.url,
                    "--token", fleet.tokens[Scope.READ])  # fmt: skip
    doc = json.loads(status.stdout)
    assert (doc["state"], doc["phase"]) == ("aborted", 1)
    assert text(browser, f"rollout-decision-{ROLLOUT}") == f"Decision: {doc['decision']['why']}"
    assert row(browser, f"phase-{ROLLOUT}-2")[2] == "aborted"
    assert row(browser, f"phase-{ROLLOUT}-2")[8] == "5"  # failed
    assert row(browser, f"reasons-{ROLLOUT}") == ["install failed", "5"]
    assert text(browser, "failed-lockbox") == "5"
    same_page(browser, handle)
    screenshot(browser, "04-automatic-abort")

    # the release engineer withdraws the release: the page says so
    yanked = fwdist("release", "yank", "lockbox@1.1.0", *server)
    assert (yanked.returncode, yanked.stderr) == (0, "")
    wait_until(lambda: row(browser, "release-lockbox@1.1.0")[1] == "yanked", what="the yank")
    assert row(browser, "release-lockbox@1.0.0")[1] == "published"
    same_page(browser, handle)
    screenshot(browser, "05-release-yanked")


def test_a_box_page_shows_its_history_and_grows_live(browser: WebDriver,
                                                     fleet: RunningServer) -> None:
    upload(fleet, [signed(7, 1, "1.0.0"), signed(7, 2, "1.0.0")])
    browser.get(fleet.url + "/dashboard/login")
    browser.find_element(By.ID, "token").send_keys(fleet.tokens[Scope.RELEASE])
    browser.find_element(By.ID, "login").click()
    wait_until(lambda: text(browser, "live-status").startswith("live"), what="the live stream")
    link = browser.execute_script("return document.querySelector('#box-box-07 a').href")
    browser.get(link)
    wait_until(lambda: text(browser, "live-status").startswith("live"), what="the live stream")
    assert browser.current_url == fleet.url + "/dashboard/boxes/box-07"
    assert row(browser, "history")[::7] == ["2", "1"]  # seq, the first of 7 columns
    handle = browser.current_window_handle
    browser.execute_script(MARK)
    upload(fleet, [signed(7, 3, "1.0.0", target=TargetProgress("1.1.0", 4096, 16384),
                          state=BoxState.RECEIVING)])  # fmt: skip
    wait_until(lambda: text(browser, "box-state") == "receiving", what="the new report")
    cells = row(browser, "history")[:7]
    assert (cells[0], cells[2:]) == ("3", ["1.0.0", "receiving", "1.1.0 (4,096 of 16,384 B)",
                                          "77 %", "–"])  # fmt: skip
    same_page(browser, handle)
    screenshot(browser, "06-box-history")
