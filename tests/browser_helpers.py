"""A real browser for the dashboard's tests: headless Chromium driven by Selenium.

``browser`` is a fixture (registered for every test by ``tests/conftest.py``): Debian's
``chromium`` driven through ``/usr/bin/chromedriver``, with the flags that keep it off the
network (no sync, no component updates, no QUIC, no first-run calls) and a fresh profile in
the test's temporary directory. Without the binaries a test is skipped with the reason,
unless ``CI`` is set: there ``.ci/run`` installs them, so their absence is a failure.
``serve_asgi`` runs an ASGI app on Hypercorn's trio worker in a thread, on 127.0.0.1 and a
free port, for tests that need a page without the whole fleet server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from queue import Queue
from typing import TYPE_CHECKING, Any

import pytest
import trio

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "reports" / "dashboard"
DRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,1600",
)  # fmt: skip


def chromium_or_skip() -> tuple[str, Path]:
    chromium = shutil.which("chromium")
    if chromium and DRIVER.exists():
        return chromium, DRIVER
    reason = "Debian's chromium and chromium-driver are not installed (.ci/run installs them)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromium, driver = chromium_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=str(driver), log_output=str(tmp_path / "chromedriver.log"))
    web = webdriver.Chrome(options=options, service=service)
    web.set_page_load_timeout(30)
    try:
        yield web
    finally:
        web.quit()


def screenshot(web: WebDriver, name: str) -> Path:
    """Save the whole window as ``reports/dashboard/NAME.png`` (reports/ is ignored by git)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert web.save_screenshot(str(path)), f"chromium could not save {path}"
    return path


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "the page") -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def text_of(web: WebDriver, element_id: str) -> str:
    """The element's rendered text ("" if absent), read in one script: a live update may
    replace the element between a find and a read, which Selenium calls a stale element."""
    got = web.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.innerText.trim() : '';",
        element_id,
    )
    return str(got)


def cells_of(web: WebDriver, element_id: str) -> list[str]:
    """The rendered text of each ``td`` under the element, read in one script."""
    got = web.execute_script(
        "const e = document.getElementById(arguments[0]);"
        "return e ? Array.from(e.querySelectorAll('td'), td => td.innerText.trim()) : [];",
        element_id,
    )
    return [str(c) for c in got]


@contextlib.contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) with Hypercorn's trio worker; yield its URL."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 0.5  # open event streams must not hold the shutdown up
    config.accesslog = None
    stop = threading.Event()
    bound: Queue[list[str] | BaseException] = Queue()

    async def until_stopped() -> None:
        while not stop.is_set():
            await trio.sleep(0.05)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, app, config, shutdown_trigger=until_stopped))
            bound.put(binds)

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # handed to the test thread, which raises it
            bound.put(exc)

    thread = threading.Thread(target=run, name="hypercorn", daemon=True)
    thread.start()
    got = bound.get(timeout=30)
    if isinstance(got, BaseException):
        raise got
    try:
        yield got[0].rstrip("/")
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive(), "hypercorn did not stop"
