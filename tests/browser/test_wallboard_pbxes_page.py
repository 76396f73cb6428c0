"""The wallboard and the supervisor view in Chromium with two PBXes (a and b, each with a
"support" queue and an operator 101): the PBX picker, the PBX on every tile and row when
both are shown, actions sent to the PBX of the row clicked, a lost PBX named.
With one PBX none of this shows (tests/browser/test_wallboard_page.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.harness import LoopThread, screenshot
from tests.test_wallboard_pbxes_http import TwoPbxes
from tests.test_wallboard_service import PASSWORD, until


@pytest.fixture
def site(loop_thread: LoopThread, tmp_path: Path) -> Iterator[TwoPbxes]:
    s = TwoPbxes(tmp_path)
    loop_thread.run(s.__aenter__())
    yield s
    loop_thread.run(s.__aexit__(None, None, None))


def sign_in(page: Any, site: TwoPbxes, path: str) -> None:
    page.goto(site.base_url + path)
    page.locator("#username").fill("sam")
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))
    expect(page.locator("#conn-text")).to_have_text("live")


def test_the_wallboard_shows_both_pbxes_picks_one_and_names_the_one_lost(
        page: Any, site: TwoPbxes, loop_thread: LoopThread) -> None:
    sign_in(page, site, "/wallboard")
    picker = page.locator("#pbx-select")
    expect(page.locator("#pbx-pick")).to_be_visible()
    picker.select_option("")  # every PBX (a choice left by another test is remembered)
    support = page.locator('.queue[data-queue="support"]')
    expect(support).to_have_count(2)
    expect(page.locator('.queue[data-queue="support"][data-pbx="b"] .queue-name')).to_have_text("b · support")
    a_calls = page.locator('.queue[data-queue="support"][data-pbx="a"] [data-field="calls"] .num')
    expect(a_calls).to_have_text("1")
    expect(page.locator('.agent[data-operator="101"]')).to_have_count(2)
    screenshot(page, "wallboard-two-pbxes")

    picker.select_option("b")
    expect(support).to_have_count(1)
    expect(support.first).to_have_attribute("data-pbx", "b")
    expect(support.locator(".queue-name")).to_have_text("support")  # one PBX shown: no label
    expect(page.locator("#pbx-lost")).to_be_hidden()

    loop_thread.run(site.sims["b"].stop())
    expect(page.locator("#pbx-lost")).to_be_visible()
    expect(page.locator("#pbx-lost")).to_contain_text("PBX b lost")
    expect(support).to_have_count(1)  # its last figures stay, flagged
    picker.select_option("a")
    expect(page.locator("#pbx-lost")).to_be_hidden()  # a is fine
    expect(support.first).to_have_attribute("data-pbx", "a")
    picker.select_option("")
    expect(page.locator("#pbx-lost")).to_contain_text("PBX b lost")
    expect(support).to_have_count(2)


def test_supervisor_actions_go_to_the_pbx_of_the_row_clicked(
        page: Any, site: TwoPbxes, loop_thread: LoopThread) -> None:
    page.set_viewport_size({"width": 1366, "height": 900})
    sign_in(page, site, "/supervisor")
    page.locator("#pbx-select").select_option("")
    b_anna = page.locator('#operators-body tr[data-operator="101"][data-pbx="b"]')
    expect(page.locator('#operators-body tr[data-operator="101"]')).to_have_count(2)
    expect(b_anna.locator(".ext")).to_have_text("b · 101")
    b_anna.locator(".reason-input").fill("training")
    b_anna.get_by_role("button", name="Pause").click()
    expect(page.locator("#answer")).to_have_attribute("data-state", "ok")
    expect(b_anna).to_have_attribute("data-status", "paused")
    assert [a["Interface"] for a in site.actions("b", "QueuePause")] == ["Local/101@agents/n"]
    assert site.actions("a", "QueuePause") == []

    page.locator("#reserve-queue").select_option(label="b · support")
    page.locator("#reserve-ext").fill("105")
    page.locator("#reserve-name").fill("Reserve Eve")
    page.get_by_role("button", name="Add to queue").click()
    expect(page.locator("#answer")).to_have_attribute("data-state", "ok")
    loop_thread.run(until(lambda: site.actions("b", "QueueAdd")))
    assert [a["Queue"] for a in site.actions("b", "QueueAdd")] == ["support"]
    assert site.actions("a", "QueueAdd") == []
    expect(page.locator('#operators-body tr[data-operator="105"][data-pbx="b"]')).to_be_visible()
    screenshot(page, "supervisor-two-pbxes")
