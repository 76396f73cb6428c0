"""The console and the user administration in Chromium with several PBXes (issue 15): a card
names its PBX, the admin page asks which PBX an operator's extensions are on. With one PBX
neither shows (test_console_page.py, test_admin_page.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.fake_console import FakeConsoleServer
from tests.browser.harness import LoopThread
from tests.browser.test_console_page import card_locator, make_card, open_console
from tests.test_wallboard_pbxes_http import TwoPbxes
from tests.test_wallboard_service import PASSWORD


@pytest.fixture
def server(loop_thread: LoopThread) -> Iterator[FakeConsoleServer]:
    srv = FakeConsoleServer(loop_thread)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def site(loop_thread: LoopThread, tmp_path: Path) -> Iterator[TwoPbxes]:
    s = TwoPbxes(tmp_path)
    loop_thread.run(s.__aenter__())
    yield s
    loop_thread.run(s.__aexit__(None, None, None))


def test_a_card_names_its_pbx_only_when_there_are_several(page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    one = make_card("1700000000.1")
    server.push(one)
    expect(card_locator(page, one).locator(".queue")).to_have_text("Queue support")
    expect(card_locator(page, one).locator(".pbx-tag")).to_have_count(0)  # one PBX: nothing new

    server.console = server.console.model_copy(update={"pbxes": ["a", "b"]})
    page.reload()
    expect(page.locator("#conn-text")).to_have_text("connected")
    other = make_card("b:1700000000.2", pbx="b")
    server.push(other)
    expect(card_locator(page, other).locator(".pbx-tag")).to_have_text("b")


def test_the_admin_puts_an_operators_extensions_on_a_pbx(page: Any, site: TwoPbxes) -> None:
    page.goto(site.base_url + "/login")
    page.locator("#username").fill("root")
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/admin/users$"))
    anna = page.locator('#users-body tr[data-user="anna"]')
    expect(anna.get_by_label("PBX of anna")).to_have_value("a")  # stored before PBX ids: the first
    expect(page.locator("#pbx-head")).to_be_visible()

    form = page.locator("#add-user")
    form.locator("#new-username").fill("olga")
    form.locator("#new-role").select_option("operator")
    form.locator("#new-extensions").fill("101")  # anna's on a, free on b
    form.locator("#new-password").fill("a long enough secret")
    form.get_by_label("PBX").select_option("b")
    form.get_by_role("button", name="Add user").click()
    expect(page.locator("#answer")).to_have_attribute("data-state", "ok")
    olga = page.locator('#users-body tr[data-user="olga"]')
    expect(olga.get_by_label("PBX of olga")).to_have_value("b")
    expect(olga.get_by_label("Extensions of olga")).to_have_value("101")

    olga.get_by_label("PBX of olga").select_option("a")  # anna's 101 there: refused, as said
    olga.get_by_role("button", name="Save").click()
    expect(page.locator("#answer")).to_contain_text("already bound to another user")
    expect(page.locator('#users-body tr[data-user="olga"]').get_by_label("PBX of olga")).to_have_value("b")
