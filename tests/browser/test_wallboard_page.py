"""The wallboard and the supervisor view in Chromium, on the real bridge and login.

The bridge (BridgeService with the wallboard attached as `_start_web` does) runs on the
test's loop thread; the PBX is the AMI simulator. Sam, a supervisor on extension 202, signs
in through the real login page before the PBX comes up, so every figure on the page
arrives live over the WebSocket.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from supervision.models import AlertThresholds
from supervision.pbx_actions import SupervisionSettings, spy_action
from supervision.wallboard_service import WallboardSettings
from tests.browser.harness import LoopThread, screenshot
from tests.test_wallboard_service import PASSWORD, WallboardStack

# Every value the support tile's "waiting" figure takes, so a rise of a few hundred ms is
# checked without racing it.
RECORD_WAITING = """() => {
  window.waitingLog = [];
  const note = () => {
    const num = document.querySelector('.queue[data-queue="support"] [data-field="waiting"] .num');
    const value = num ? Number(num.textContent) : null;
    const log = window.waitingLog;
    if (value !== null && log[log.length - 1] !== value) log.push(value);
  };
  new MutationObserver(note).observe(document.getElementById("queues"),
    {subtree: true, childList: true, characterData: true});
}"""
HOSTILE = '<img src=x onerror="window.pwned=1">Mallory'


@pytest.fixture
def stack(loop_thread: LoopThread, tmp_path: Path) -> Any:
    settings = WallboardSettings(coalesce_seconds=0.0, thresholds={
        "support": AlertThresholds(callers_waiting=5, longest_wait_seconds=None)})
    s = WallboardStack(tmp_path, ["burst_20_calls"], settings=settings)
    loop_thread.run(s.start(pbx=False))  # the PBX comes up once the page is open
    yield s
    loop_thread.run(s.stop())


def sign_in(page: Any, stack: WallboardStack, path: str) -> None:
    page.goto(stack.base_url + path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.locator("#username").fill("sam")
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))
    expect(page.locator("#conn-text")).to_have_text("live")


def test_wallboard_shows_waiting_callers_rising_in_the_burst_and_the_alert(
        page: Any, stack: WallboardStack, loop_thread: LoopThread) -> None:
    page.set_viewport_size({"width": 1920, "height": 1080})  # a TV on the wall
    sign_in(page, stack, "/wallboard")
    expect(page.locator("#pbx-lost")).to_be_visible()  # no PBX yet: the board says so
    page.evaluate(RECORD_WAITING)

    # 20 callers join within 15 ms of the PBX's time: slowed 50 times, the rise is visible.
    loop_thread.run(stack.start_pbx(speed=0.02))
    support = page.locator('.queue[data-queue="support"]')
    waiting = support.locator('[data-field="waiting"] .num')
    expect(waiting).to_have_text("20", timeout=15_000)
    expect(page.locator("#pbx-lost")).to_be_hidden()
    alert = page.locator('.alert[data-queue="support"][data-kind="callers_waiting"]')
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("20 callers waiting (limit 5)")
    expect(support).to_have_attribute("data-state", "alert")
    expect(support.locator('[data-field="waiting"]')).to_have_attribute("data-trouble", "")
    assert page.title().startswith("(!) support: 20 callers waiting")
    log = page.evaluate("window.waitingLog")
    rising = [v for v in log if v > 0]
    assert rising == sorted(rising) and rising[-1] == 20 and len(rising) >= 3, log  # steps, not a jump
    expect(support.locator('[data-field="longest"] .num')).not_to_have_text("0:00", timeout=5_000)
    expect(page.locator('.agent[data-operator="101"]')).to_be_visible()
    screenshot(page, "wallboard-burst-alert")


def test_supervisor_view_listens_in_ends_a_session_and_shows_the_pbx_answer(
        page: Any, stack: WallboardStack, loop_thread: LoopThread) -> None:
    sign_in(page, stack, "/supervisor")
    expect(page.locator("#whoami")).to_contain_text("Sam Supervisor")
    expect(page.locator("#listener")).to_have_attribute("placeholder", "your own phone (202)")
    # A CRM name is hostile input: it must show as text, never run.
    loop_thread.call(setattr, stack.wallboard, "caller_names", lambda call_id: HOSTILE)
    captures = [(Path(__file__).parents[1] / "fixtures" / "supervisor_spy.ami").read_bytes()]
    sim = loop_thread.run(stack.start_pbx(captures, speed=1.0))

    anna = page.locator('#operators-body tr[data-operator="101"]')
    expect(anna).to_have_attribute("data-status", "talking", timeout=15_000)
    expect(anna).to_contain_text(HOSTILE)
    call = page.locator("#calls-body tr")
    expect(call).to_have_count(1)  # the caller's call; the listener's own call is not one
    expect(call).to_contain_text(HOSTILE)
    spy = page.locator("#spies-body tr")
    expect(spy).to_have_count(1, timeout=10_000)  # supervisor 201 listens (in the capture)
    expect(spy).to_contain_text("Anna Operator (101)")

    # The simulated PBX answers Sam's phone within ~0.15 s: hold that, so his session stays
    # "calling" and the live row is the capture's supervisor 201.
    loop_thread.call(sim.hold_made_events)
    anna.get_by_role("button", name="Whisper").click()
    expect(page.locator("#answer")).to_have_attribute("data-state", "ok")
    expect(page.locator("#answer-text")).to_have_text("PBX: Success — Originate successfully queued")
    originate = loop_thread.run(sim.wait_for_action("Originate"))
    assert {k: v for k, v in originate.pairs if k != "ActionID"} == spy_action(
        SupervisionSettings(), "202", "101", "whisper", "Sam Supervisor")
    expect(page.locator('#spies-body tr[data-state="calling"]')).to_contain_text("calling the phone")
    page.locator("#operators-body tr[data-operator=\"102\"] .reason-input").fill("coaching")
    screenshot(page, "supervisor-view")

    page.locator('#spies-body tr[data-state="live"]').get_by_role("button", name="End").click()
    expect(page.locator("#answer-text")).to_have_text("PBX: Success — Channel Hungup")
    hangup = loop_thread.run(sim.wait_for_action("Hangup"))
    assert hangup["Channel"].startswith("Local/201@supervisor-")
    expect(page.locator("#activity li").first).to_contain_text("spy.end")

    page.locator('#operators-body tr[data-operator="102"]').get_by_role("button", name="Pause").click()
    expect(page.locator("#answer-text")).to_have_text("PBX: Success — Interface paused successfully")
    boris = page.locator('#operators-body tr[data-operator="102"]')
    expect(boris).to_have_attribute("data-status", "paused")
    expect(boris).to_contain_text("coaching")
    assert page.evaluate("window.pwned") is None
    assert page.locator("#operators-body img, #calls-body img").count() == 0


# -- issue 13: one spy session per phone, labels at 1366 px, PBX time, navigation ------------

DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Text boxes on the board whose words must stay on one line (a label broken over two lines
# reads as two labels from across the room).
WRAPPED_LABELS = """() => {
  const wrapped = [];
  for (const node of document.querySelectorAll(
      '.cap, .queue-name, .agent-status, .agent-day, .topbar .tool')) {
    const range = document.createRange();
    range.selectNodeContents(node);
    const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
    if (lines.size > 1) wrapped.push(node.textContent);
  }
  return wrapped;
}"""


def docs_screenshot(page: Any, name: str, full_page: bool = False) -> None:
    """A picture for the README (docs/screenshots/), the mouse out of the way; only with
    CALLBRIDGE_DOCS_SCREENSHOTS=1, so an ordinary run leaves the checkout as it was."""
    if os.environ.get("CALLBRIDGE_DOCS_SCREENSHOTS") != "1":
        return
    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)
    page.screenshot(path=str(DOCS_SHOTS / f"{name}.png"), full_page=full_page, animations="disabled")


def test_wallboard_labels_stay_on_one_line_its_clock_is_the_pbxs_and_it_links_to_reports(
        page: Any, stack: WallboardStack, loop_thread: LoopThread) -> None:
    page.set_viewport_size({"width": 1366, "height": 768})
    sign_in(page, stack, "/wallboard")
    loop_thread.run(stack.start_pbx(speed=0.02))
    expect(page.locator('.queue[data-queue="support"] [data-field="waiting"] .num')).to_have_text(
        "20", timeout=15_000)
    assert page.evaluate(WRAPPED_LABELS) == []
    # The clock is the PBX's (the burst was recorded at 08:19 UTC), not the browser's own time.
    expect(page.locator("#clock")).to_have_text(re.compile(r"^08:(19|2\d):\d\d$"))
    docs_screenshot(page, "wallboard-1366")
    docs_screenshot(page, "wallboard")
    page.set_viewport_size({"width": 800, "height": 1000})
    assert page.evaluate(WRAPPED_LABELS) == []
    docs_screenshot(page, "wallboard-800")
    page.get_by_role("link", name="Reports").click()
    expect(page).to_have_url(re.compile(r"/reports$"))
    page.get_by_role("link", name="Wallboard").click()
    expect(page).to_have_url(re.compile(r"/wallboard$"))


def test_a_second_click_switches_the_ringing_session_and_it_can_be_cancelled(
        page: Any, stack: WallboardStack, loop_thread: LoopThread) -> None:
    page.set_viewport_size({"width": 1366, "height": 768})
    sign_in(page, stack, "/supervisor")
    captures = [(Path(__file__).parents[1] / "fixtures" / "supervisor_spy.ami").read_bytes()]
    sim = loop_thread.run(stack.start_pbx(captures, speed=1.0))
    anna = page.locator('#operators-body tr[data-operator="101"]')
    expect(anna).to_have_attribute("data-status", "talking", timeout=15_000)
    loop_thread.call(sim.hold_made_events)  # Sam's phone keeps ringing: the session stays "calling"

    anna.get_by_role("button", name="Listen").click()
    calling = page.locator('#spies-body tr[data-state="calling"]')
    expect(calling).to_have_count(1)
    expect(calling.locator(".chip")).to_have_text("listen")
    anna.get_by_role("button", name="Whisper").click()
    expect(page.locator("#answer-text")).to_contain_text("the session starts as whisper")
    anna.get_by_role("button", name="Barge").click()
    expect(calling).to_have_count(1)  # one call to Sam's phone, its mode switched
    expect(calling.locator(".chip")).to_have_text("barge")
    expect(anna.get_by_role("button", name="Barge")).to_have_attribute("aria-pressed", "true")
    assert [a["Action"] for a in sim.actions].count("Originate") == 1
    docs_screenshot(page, "supervisor-1366", full_page=True)
    docs_screenshot(page, "supervisor", full_page=True)
    page.set_viewport_size({"width": 800, "height": 1000})
    docs_screenshot(page, "supervisor-800", full_page=True)

    calling.get_by_role("button", name="Cancel").click()
    expect(page.locator("#answer")).to_have_attribute("data-state", "ok")
    expect(calling).to_have_count(0)
    expect(page.locator("#activity li").first).to_contain_text("spy.cancel")
    page.get_by_role("link", name="Reports").click()
    expect(page).to_have_url(re.compile(r"/reports$"))
    page.get_by_role("link", name="Supervisor").click()
    expect(page).to_have_url(re.compile(r"/supervisor$"))
