"""Small things users notice (issue 13), in Chromium against the bridge as `serve` builds it:
`BridgeService` on SQLite, its web app on a free port, a PBX that is not there (the pages
do not need one).

- Every page has the icon: /favicon.ico is an image, public (the login page has it too).
- A page the user's role may not open is a styled page that says so, with a link back to
  his own page; the JSON API keeps its JSON refusal.

Screenshots: artifacts/screenshots/small-*.png; with CALLBRIDGE_DOCS_SCREENSHOTS=1 also
docs/screenshots/login-1366.png and forbidden-1366.png (the README's).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from playwright.sync_api import expect

from bridge.call_log.store import CallLogStore
from bridge.service import BridgeService
from bridge.settings import load_settings
from tests.browser.harness import ROOT, LoopThread, screenshot
from web.users import UserStore

PASSWORD = "small-things-password-1"
USERS = [("anna", "operator", "Anna Operator", ["101"]), ("tina", "trainer", "Tina Trainer", [])]
DOCS = ROOT / "docs" / "screenshots"
WIDE = {"width": 1366, "height": 768}


def docs_screenshot(page: Any, name: str) -> None:
    """artifacts/screenshots/<name>.png, and docs/screenshots/ when asked to refresh them
    (`<name>-1366` also at 800 px wide, as `<name>-800`)."""
    path = screenshot(page, f"small-{name}")
    if os.environ.get("CALLBRIDGE_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(path, DOCS / f"{name}.png")
        if name.endswith("-1366"):
            before = page.viewport_size
            page.set_viewport_size({"width": 800, "height": 768})
            narrow = screenshot(page, f"small-{name[:-5]}-800")
            shutil.copyfile(narrow, DOCS / f"{name[:-5]}-800.png")
            page.set_viewport_size(before)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceStack:
    def __init__(self, loop_thread: LoopThread, tmp: Path) -> None:
        self.loop_thread, self.db = loop_thread, f"sqlite+aiosqlite:///{tmp / 'callbridge.sqlite3'}"
        self.bridge: BridgeService | None = None
        self.base_url = ""

    async def _start(self) -> None:
        store = CallLogStore(self.db)
        await store.open()
        try:  # the production hasher at its cheapest: the login is not what is tested here
            users = UserStore(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
            for name, role, display, exts in USERS:
                await users.add(name, PASSWORD, role=role, display_name=display, extensions=exts)
        finally:
            await store.close()
        settings = load_settings(database_url=self.db,
                                 ami={"host": "127.0.0.1", "port": free_port(), "backoff_max": 5.0},
                                 http={"host": "127.0.0.1", "port": 0, "secure_cookie": False})
        self.bridge = BridgeService(settings)
        await self.bridge.start()
        assert self.bridge.web_address is not None
        self.base_url = "http://{}:{}".format(*self.bridge.web_address)

    async def _stop(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop()

    def start(self) -> None:
        self.loop_thread.run(self._start())

    def stop(self) -> None:
        self.loop_thread.run(self._stop())


@pytest.fixture
def service(loop_thread: LoopThread, tmp_path: Path) -> Iterator[ServiceStack]:
    stack = ServiceStack(loop_thread, tmp_path)
    stack.start()
    yield stack
    stack.stop()


def sign_in(page: Any, base_url: str, username: str) -> None:
    page.goto(base_url + "/login")
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(r"/login"))


ICON_LOADS = """() => new Promise((resolve) => { const img = new Image();
    img.onload = () => resolve([img.naturalWidth, img.naturalHeight]); img.onerror = () => resolve(null);
    img.src = '/favicon.ico'; })"""


def test_every_page_has_the_icon(page: Any, service: ServiceStack) -> None:
    page.set_viewport_size(WIDE)
    answer = page.goto(service.base_url + "/favicon.ico")  # public: no sign-in needed
    assert answer is not None and answer.status == 200
    assert answer.headers["content-type"] == "image/svg+xml"
    page.goto(service.base_url + "/login")
    assert page.evaluate(ICON_LOADS) is not None  # an image the browser can draw, from the login page
    docs_screenshot(page, "login-1366")
    sign_in(page, service.base_url, "anna")
    for path in ("/console", "/my-reviews"):
        page.goto(service.base_url + path)
        assert page.evaluate(ICON_LOADS) is not None, path


def test_a_page_not_for_the_role_is_a_styled_refusal(page: Any, service: ServiceStack) -> None:
    page.set_viewport_size(WIDE)
    sign_in(page, service.base_url, "anna")
    for path in ("/reviews", "/wallboard"):
        answer = page.goto(service.base_url + path)
        assert answer is not None and answer.status == 403, path
        expect(page.locator("h1")).to_have_text("Not for your role")
        expect(page.locator(".message")).to_have_text(
            f"Your role (operator) may not open {path}. Ask an admin if you need it.")
        expect(page).to_have_title("Not for your role · Callbridge")
    # Styled (the inline style runs under a CSP that allows only its hash; the page fixture
    # fails on any CSP refusal): a card on a grey page, the way back a button.
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(243, 245, 248)"
    back = page.get_by_role("link", name="Back to your console")
    button = page.evaluate("getComputedStyle(document.querySelector('.btn')).backgroundColor")
    assert button == "rgb(11, 92, 173)"
    expect(page.get_by_role("link", name="Sign in as someone else")).to_have_attribute("href", "/login")
    docs_screenshot(page, "forbidden-1366")
    back.click()
    expect(page).to_have_url(re.compile(r"/console$"))

    # The API a page calls keeps a JSON refusal (scripts read it).
    answer = page.evaluate("""() => fetch('/api/reports').then(async r =>
        [r.status, r.headers.get('content-type'), await r.text()])""")
    assert answer[0] == 403 and answer[1].startswith("application/json")
    assert json.loads(answer[2]) == {"error": "forbidden", "message": "Your role may not do this."}


def test_the_refusal_page_shows_a_hostile_path_as_text(page: Any, service: ServiceStack) -> None:
    sign_in(page, service.base_url, "tina")
    answer = page.goto(service.base_url + "/wallboard?<img src=x onerror=alert(1)>")
    assert answer is not None and answer.status == 403
    expect(page.locator(".message")).to_contain_text("may not open /wallboard")
    expect(page.locator("img")).to_have_count(0)
    expect(page.get_by_role("link", name="Back to the review room")).to_have_attribute("href", "/reviews")
