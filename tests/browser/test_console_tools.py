"""The console's day-long use in Chromium against the fake server (fake_console.py): a ringing
card always in view, the ring sound and desktop notification, the operator's own state and
pause, CRM search and click-to-dial, timers in the PBX's clock, the activity notices, and a
page closed because it is open in another tab."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from screenpop.messages import AgentState, CallerView, QueueMembership
from tests.browser.fake_console import CSRF_TOKEN, FakeConsoleServer
from tests.browser.harness import LoopThread, screenshot
from tests.browser.test_console_page import card_locator, make_card, open_console

# Stand-ins for what a headless browser cannot do for real: record every tone and notification.
FAKE_AUDIO_AND_NOTIFICATIONS = """
window.__tones = [];
window.__notes = [];
window.__asked = 0;
class FakeAudioContext {
  constructor() { this.currentTime = 0; this.state = "running"; this.destination = {}; }
  createGain() { return { gain: { value: 0 }, connect() {} }; }
  createOscillator() {
    const osc = { frequency: { value: 0 }, connect() {}, stop() {} };
    osc.start = () => window.__tones.push(osc.frequency.value);
    return osc;
  }
  resume() {}
}
window.AudioContext = FakeAudioContext;
class FakeNotification {
  constructor(title, options) { window.__notes.push({ title, body: options.body, tag: options.tag }); }
  close() {}
}
FakeNotification.permission = "default";
FakeNotification.requestPermission = () => { window.__asked += 1; FakeNotification.permission = "granted";
  return Promise.resolve("granted"); };
window.Notification = FakeNotification;
"""


@pytest.fixture
def server(loop_thread: LoopThread) -> Iterator[FakeConsoleServer]:
    srv = FakeConsoleServer(loop_thread)
    srv.start()
    yield srv
    srv.stop()


def in_viewport(page: Any, locator: Any) -> bool:
    box = locator.bounding_box()
    height = page.viewport_size["height"]
    return box is not None and box["y"] >= 0 and box["y"] + 40 <= height


def test_a_ringing_card_is_always_in_view_newest_on_top(page: Any, server: FakeConsoleServer) -> None:
    now = time.time()
    for n in range(6):  # a long page of after-call work
        server.set_card(make_card(f"1700000000.{n + 10}", state="after_call", answered_at=now - 300,
                                  ended_at=now - 100, entered_at=now - 400 + n))
    open_console(page, server)
    page.mouse.wheel(0, 5000)
    # A function, not a bare expression: Playwright eval()s an expression in the page when it
    # has to poll, and the page's CSP forbids eval (the test then failed now and then).
    page.wait_for_function("() => window.scrollY > 500")
    first = make_card("1700000001.1", entered_at=now - 5)
    server.push(first)
    ringing = card_locator(page, first)
    expect(ringing).to_have_attribute("data-state", "ringing")
    assert in_viewport(page, ringing.locator(".caller-name")), "the ringing card is off screen"
    olga = CallerView(number="+74957654321", number_display="+7 495 765-43-21", lookup="not_found")
    second = make_card("1700000001.2", entered_at=now - 1, caller=olga)
    server.push(second)
    strip = page.locator("#ringing article.card")
    expect(strip).to_have_count(2)
    expect(strip.first).to_have_attribute("data-card-id", second.card_id)  # the newest on top
    assert in_viewport(page, card_locator(page, second).locator(".caller-name"))
    # Answered: it leaves the strip for the board; the strip closes when nothing rings.
    server.push(make_card("1700000001.1", version=2, state="live", answered_at=time.time(),
                          entered_at=now - 5))
    expect(page.locator("#cards").locator(f'[data-card-id="{first.card_id}"]')).to_have_count(1)
    server.push(make_card("1700000001.2", version=2, state="withdrawn",
                          state_reason="answered by Boris (102)", entered_at=now - 1))
    expect(card_locator(page, second).locator(".state-reason")).to_have_text("Answered by Boris (102)")
    expect(page.locator("#ringing")).to_be_hidden(timeout=6000)


def test_ring_sound_when_switched_on_and_a_notification_asked_for_once(
        page: Any, server: FakeConsoleServer) -> None:
    page.add_init_script(FAKE_AUDIO_AND_NOTIFICATIONS)
    open_console(page, server)
    server.push(make_card("1700000002.1"))
    expect(page.locator("article.card")).to_have_count(1)
    page.wait_for_timeout(300)
    assert page.evaluate("window.__tones") == []  # off until the operator switches it on
    assert page.evaluate("window.__notes") == []  # no permission yet
    server.remove("1700000002.1:101")

    sound = page.locator("#sound-toggle")
    sound.click()  # his first click also asks for desktop notifications, once
    expect(sound).to_have_text("Ring sound: on")
    expect(sound).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("window.__asked") == 1
    page.evaluate("window.__tones = []")
    server.push(make_card("1700000002.2"))
    page.wait_for_function("() => window.__tones.length >= 4")
    assert set(page.evaluate("window.__tones")) == {440, 480}  # a phone's ring, made on the spot
    notes = page.evaluate("window.__notes")
    assert notes == [{"title": "Ringing: Ivan Petrov", "tag": "1700000002.2:101",
                      "body": "Romashka LLC · +7 495 123-45-67 · queue support"}]
    # Answered: the ring stops.
    server.push(make_card("1700000002.2", version=2, state="live", answered_at=time.time()))
    expect(page.locator("article.card")).to_have_attribute("data-state", "live")
    page.wait_for_timeout(200)
    count = len(page.evaluate("window.__tones"))
    page.wait_for_timeout(3500)
    assert len(page.evaluate("window.__tones")) == count

    # The choice is remembered; the permission is never asked again.
    page.reload()
    expect(page.locator("#sound-toggle")).to_have_text("Ring sound: on")
    page.locator("#search-q").click()
    assert page.evaluate("window.__asked") == 0


def test_own_state_and_pause_with_a_reason(page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    state = page.locator("#agent-state")
    expect(state).to_have_text("State unknown")
    server.send_agent(AgentState(extension="101", known=True, paused=False,
                                 queues=[QueueMembership(queue="support", paused=False)]))
    expect(state).to_have_text("Available")
    expect(state).to_have_attribute("data-state", "available")
    expect(page.locator("#pause-reason option")).to_have_text(["Reason…", "Break", "Lunch"])
    page.locator("#pause-toggle").click()
    expect(page.locator("#agent-status")).to_have_text("Choose a reason first")
    assert server.posts_to("/api/console/pause") == []
    page.locator("#pause-reason").select_option("Lunch")
    page.locator("#pause-toggle").click()
    expect(state).to_have_text("Paused: Lunch")
    posts = server.posts_to("/api/console/pause")
    assert [(p.csrf, p.json) for p in posts] == [(CSRF_TOKEN, {"paused": True, "reason": "Lunch"})]
    expect(page.locator("#pause-toggle")).to_have_text("Resume work")
    # The PBX has the last word (a supervisor unpaused him).
    server.send_agent(AgentState(extension="101", known=True, paused=False,
                                 queues=[QueueMembership(queue="support", paused=False)]))
    expect(state).to_have_text("Available")
    page.locator("#pause-toggle").click()
    assert server.posts_to("/api/console/pause")[-1].json == {"paused": True, "reason": "Lunch"}


def test_search_the_crm_and_click_to_dial(page: Any, server: FakeConsoleServer) -> None:
    server.search_answer = {
        "contacts": [{"id": "7", "source": "builtin", "name": "<img src=x onerror=alert(1)>",
                      "company": "Vector", "url": "javascript:alert(2)", "vip": False,
                      "phones": [{"number": "+74957654321", "display": "+7 495 765-43-21"}]}],
        "unsupported": ["odoo"], "failed": [],
    }
    open_console(page, server)
    page.locator("#search-q").fill("Olga")
    page.locator("#search-q").press("Enter")
    result = page.locator("#search-results .result")
    expect(result).to_have_count(1)
    expect(result.locator(".result-name")).to_have_text("<img src=x onerror=alert(1)>")
    expect(result.locator("a")).to_have_count(0)  # no javascript: link
    expect(page.locator("#search-results .result-note")).to_have_text("search not supported by odoo")
    assert server.loop_thread.call(list, server.searches) == ["Olga"]
    result.get_by_role("button", name="Call").click()
    expect(page.locator("#search-status")).to_have_text("Your phone rings: pick it up to call +74957654321")
    assert [(p.csrf, p.json) for p in server.posts_to("/api/console/dial")] == [
        (CSRF_TOKEN, {"number": "+74957654321"})]

    # From a history entry: calls the caller back.
    card = make_card("1700000003.1", state="after_call", answered_at=time.time() - 60,
                     ended_at=time.time() - 5)
    server.push(card)
    card_locator(page, card).locator(".history-row").first.get_by_role("button", name="Call").click()
    expect(page.locator("#search-status")).to_contain_text("+74951234567")
    assert server.posts_to("/api/console/dial")[-1].json == {"number": "+74951234567"}
    screenshot(page, "console-search")


def test_timers_count_in_the_pbx_clock_not_the_browsers(page: Any, server: FakeConsoleServer) -> None:
    server.pbx_offset = 300.0  # the PBX's clock runs five minutes ahead of the server's
    open_console(page, server)
    pbx_now = time.time() + 300
    card = make_card(entered_at=pbx_now - 23)
    server.push(card)
    expect(card_locator(page, card).locator(".timer-value")).to_have_text(re.compile(r"^0:2\d$"))
    # The PBX's clock is set right: told by a clock frame, the timer follows.
    server.send_clock(0.0)
    live = make_card(version=2, state="live", entered_at=time.time() - 30, answered_at=time.time() - 12)
    server.push(live)
    expect(card_locator(page, card).locator(".timer-value")).to_have_text(re.compile(r"^0:1\d$"))


def test_the_page_tells_the_server_its_user_is_active_at_most_once_a_minute(
        page: Any, server: FakeConsoleServer) -> None:
    page.clock.install()
    open_console(page, server)
    page.wait_for_timeout(200)
    assert server.frames_received() == []  # an open page alone is no activity
    page.locator("#search-q").click()
    page.keyboard.type("abc")
    deadline = time.time() + 5
    while not server.frames_received() and time.time() < deadline:
        page.wait_for_timeout(50)
    assert [json.loads(f) for f in server.frames_received()] == [{"type": "activity"}]
    page.keyboard.type("def")
    page.wait_for_timeout(200)
    assert len(server.frames_received()) == 1  # throttled
    page.clock.fast_forward(61_000)
    page.locator("#search-q").click()
    deadline = time.time() + 5
    while len(server.frames_received()) < 2 and time.time() < deadline:
        page.wait_for_timeout(50)
    assert len(server.frames_received()) == 2


def test_opened_in_another_tab_the_page_stays_closed_until_taken_over(
        page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    server.close_sockets(4008, "too many pages open: this one, the oldest, closed")
    banner = page.locator("#replaced")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("open in another tab")
    expect(page.locator("#conn-text")).to_have_text("open in another tab")
    page.wait_for_timeout(2500)  # longer than the first reconnect delays
    assert server.connections() == 0
    screenshot(page, "console-replaced")
    banner.get_by_role("button", name="Use it here").click()
    expect(page.locator("#conn-text")).to_have_text("connected")
    expect(banner).to_be_hidden()
    assert server.connections() == 1


def test_console_at_1366_and_800_px(page: Any, server: FakeConsoleServer) -> None:
    """A working moment, for a person to look at (copied to docs/screenshots/console-*.png):
    one call ringing in the strip, one live (transferred with the colleague's note), one in
    wrap-up; the operator available. Nothing overflows sideways at either width."""
    from screenpop.messages import HistoryItem, TransferView

    now = time.time()
    history = [
        HistoryItem(at="2026-11-23T15:12:00Z", kind="call", operator="Boris Operator", outcome="answered",
                    note="Invoice 5531 re-sent to the new address", detail="answered, talked 3:12",
                    transfers=["blind transfer Anna Operator → Boris Operator"], call_id="1795400000.2"),
        HistoryItem(at="2026-11-20T09:30:00Z", kind="note", operator="Anna Operator", note="Prefers e-mail"),
        HistoryItem(at="2026-11-18T11:02:00Z", kind="call", outcome="abandoned", detail="abandoned",
                    call_id="1795000000.1"),
    ]
    server.set_card(make_card("1795508000.1", state="after_call", entered_at=now - 400,
                              answered_at=now - 380, ended_at=now - 20, closes_at=now + 100,
                              note="Refund approved", history=history))
    server.set_card(make_card(
        "1795508100.4", state="live", entered_at=now - 140, answered_at=now - 95, wait_seconds=45,
        recording=True, history=history[1:],
        caller=CallerView(number="+74957654321", number_display="+7 495 765-43-21", name="Olga Smirnova",
                          company="Vector JSC", tags=["wholesale"], lookup="found"),
        transfer=TransferView(kind="blind", from_operator="102", from_name="Boris Operator",
                              note="Wants a refund for order 5531")))
    server.agent = AgentState(extension="101", known=True, paused=False,
                              queues=[QueueMembership(queue="support", paused=False)])
    for width, height, name in ((1366, 768, "console-1366"), (800, 1000, "console-800")):
        page.set_viewport_size({"width": width, "height": height})
        open_console(page, server)
        server.push(make_card("1795508200.9", entered_at=now - 6, history=history))
        expect(page.locator("#ringing article.card")).to_have_count(1)
        expect(page.locator("article.card")).to_have_count(3)
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"the page is {scroll} px wide at {width} px"
        screenshot(page, name)
        server.remove("1795508200.9:101")
