"""The admins' user administration in Chromium, on the real bridge and login (issue 13): an
admin who signs in lands on it (not on an empty operator console), adds an operator, is told
the CLI's rules when he breaks one, disables and re-enables a user and sets a new password.
Every change and every refusal is in the audit log; a hostile display name stays text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.harness import LoopThread
from tests.browser.test_wallboard_page import HOSTILE, docs_screenshot
from tests.test_wallboard_service import PASSWORD, WallboardStack
from web.audit_log import AuditLog
from web.users import UserStore


@pytest.fixture
def stack(loop_thread: LoopThread, tmp_path: Path) -> Any:
    s = WallboardStack(tmp_path, ["queue_answered"])
    loop_thread.run(s.start(pbx=False))
    yield s
    loop_thread.run(s.stop())


def audit_actions(loop_thread: LoopThread, stack: WallboardStack) -> list[tuple[str, str | None, str]]:
    async def read() -> list[tuple[str, str | None, str]]:
        rows = await AuditLog(stack.bridge.store).entries(username="root")
        return [(r.action, r.target, r.result or "") for r in reversed(rows)]
    return loop_thread.run(read())


def test_an_admin_lands_on_the_user_page_and_manages_users(
        page: Any, stack: WallboardStack, loop_thread: LoopThread) -> None:
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(stack.base_url + "/login")
    page.locator("#username").fill("root")
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/admin/users$"))  # not the operator console
    expect(page.locator('#users-body tr[data-user="anna"]')).to_be_visible()

    form = page.locator("#add-user")
    form.locator("#new-username").fill("olga")
    form.locator("#new-name").fill(HOSTILE)
    form.locator("#new-role").select_option("operator")
    form.locator("#new-password").fill("a long enough secret")
    form.get_by_role("button", name="Add user").click()  # no extension: the CLI's rule
    expect(page.locator("#answer")).to_have_attribute("data-state", "error")
    expect(page.locator("#answer")).to_contain_text("An operator needs at least one extension")
    form.locator("#new-extensions").fill("101")  # Anna's
    form.get_by_role("button", name="Add user").click()
    expect(page.locator("#answer")).to_contain_text("already bound to another user")
    form.locator("#new-extensions").fill("105")
    form.get_by_role("button", name="Add user").click()
    expect(page.locator("#answer")).to_have_attribute("data-state", "ok")
    olga = page.locator('#users-body tr[data-user="olga"]')
    expect(olga.get_by_label("Name of olga")).to_have_value(HOSTILE)
    expect(olga.get_by_label("Extensions of olga")).to_have_value("105")

    anna = page.locator('#users-body tr[data-user="anna"]')
    anna.get_by_role("button", name="Disable").click()
    expect(anna).to_have_attribute("data-active", "no")
    expect(anna.locator(".state")).to_have_text("disabled")
    anna.get_by_label("New password for anna").fill("a brand new password")
    anna.get_by_role("button", name="Set").click()
    expect(page.locator("#answer")).to_have_text("New password for anna: done.")
    root = page.locator('#users-body tr[data-user="root"]')
    expect(root.get_by_role("button", name="Disable")).to_be_disabled()
    docs_screenshot(page, "admin-1366", full_page=True)
    page.set_viewport_size({"width": 800, "height": 1000})
    docs_screenshot(page, "admin-800", full_page=True)
    anna.get_by_role("button", name="Enable").click()
    expect(anna).to_have_attribute("data-active", "yes")

    async def anna_signs_in() -> bool:
        return await UserStore(stack.bridge.store).authenticate("anna", "a brand new password") is not None
    assert loop_thread.run(anna_signs_in())
    assert page.evaluate("window.pwned") is None
    assert audit_actions(loop_thread, stack) == [
        ("user.add", "olga",
         "refused: An operator needs at least one extension (the phone whose calls he gets)."),
        ("user.add", "olga", "refused: extension already bound to another user: 101 (bound to anna)"),
        ("user.add", "olga", "ok"), ("user.disable", "anna", "ok"), ("user.password", "anna", "ok"),
        ("user.enable", "anna", "ok")]
