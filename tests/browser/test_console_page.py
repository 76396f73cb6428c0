"""The operator console page in headless Chromium, against a fake server (fake_console.py).

Screenshots land in artifacts/screenshots/ (console-ringing, console-live,
console-after-call, console-xss) for a person to look at.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from screenpop.messages import CallerView, Card, HistoryItem, TransferView
from tests.browser.fake_console import CSRF_TOKEN, FakeConsoleServer
from tests.browser.harness import LoopThread, screenshot

XSS = "<img src=x onerror=alert(1)>"


def make_card(call_id: str = "1700000000.1", version: int = 1, state: str = "ringing", **fields: Any) -> Card:
    caller = fields.pop("caller", None) or CallerView(
        number="+74951234567",
        number_display="+7 495 123-45-67",
        name="Ivan Petrov",
        company="Romashka LLC",
        tags=["VIP", "wholesale", "Moscow"],  # as a CRM may send them: the tag is the badge
        vip=True,
        crm_url="https://crm.example.test/contacts/42",
        contact_id="42",
        contact_source="builtin",
        lookup="found",
    )
    now = time.time()
    base: dict[str, Any] = {
        "card_id": f"{call_id}:101",
        "version": version,
        "call_id": call_id,
        "operator": "101",
        "state": state,
        "caller": caller,
        "queue": "support",
        "entered_at": now - 23,
        "ring_started_at": now - 4,
        "wait_seconds": 23.0,
        "history": [
            HistoryItem(
                at="2024-03-12T14:05:00Z",
                kind="call",
                operator="Boris",
                outcome="answered",
                summary="Asked about the March invoice",
                note="Asked about the March invoice",
                detail="answered, talked 4:05",
                transfers=["blind transfer Anna Operator → Boris"],
                call_id="1699990000.7",
            ),
            HistoryItem(at="2024-02-28T09:30:00Z", kind="note", operator="Anna", summary="Prefers e-mail",
                        note="Prefers e-mail"),
            HistoryItem(at="2024-01-15T16:45:00Z", kind="call", operator=None, outcome="abandoned",
                        summary="abandoned after 40 s", detail="abandoned", call_id="1699000000.1"),
        ],
    }
    base.update(fields)
    return Card(**base)


@pytest.fixture
def server(loop_thread: LoopThread) -> Iterator[FakeConsoleServer]:
    srv = FakeConsoleServer(loop_thread)
    srv.start()
    yield srv
    srv.stop()


def open_console(page: Any, server: FakeConsoleServer) -> None:
    page.goto(server.base_url + "/console")
    expect(page.locator("#conn-text")).to_have_text("connected")


def card_locator(page: Any, card: Card) -> Any:
    return page.locator(f'article.card[data-card-id="{card.card_id}"]')


def assert_no_stray_words(page: Any) -> None:
    """A missing field must leave a gap, never the words "null", "undefined" or "NaN"."""
    text = page.locator("body").inner_text()
    assert not re.search(r"\b(null|undefined|NaN)\b", text), text


def test_ringing_card_shows_the_caller_at_a_glance(page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    expect(page.locator("#empty")).to_be_visible()
    card = make_card()
    server.push(card)
    el = card_locator(page, card)
    expect(el).to_have_attribute("data-state", "ringing")
    expect(el.locator(".state-label")).to_have_text("Ringing")
    name = el.locator(".caller-name")
    expect(name).to_have_text("Ivan Petrov")
    # "name big": the biggest text on the card.
    size = float(name.evaluate("n => getComputedStyle(n).fontSize").removesuffix("px"))
    assert size >= 28
    expect(el.locator(".company")).to_have_text("Romashka LLC")
    expect(el.locator(".number")).to_have_text("+7 495 123-45-67")
    expect(el.locator(".vip-badge")).to_have_text("VIP")
    expect(el.locator(".tag")).to_have_text(["wholesale", "Moscow"])  # no second "VIP"
    expect(el.locator(".badges").get_by_text("VIP", exact=True)).to_have_count(1)
    expect(el.locator(".queue")).to_have_text("Queue support")
    expect(el.locator(".timer-label")).to_have_text("Waiting")
    expect(el.locator(".timer-value")).to_have_text(re.compile(r"^0:2\d$"))
    link = el.locator("a.crm-link")
    expect(link).to_have_attribute("href", "https://crm.example.test/contacts/42")
    expect(link).to_have_attribute("rel", re.compile(r"\bnoopener\b"))
    rows = el.locator(".history-row")
    expect(rows).to_have_count(3)
    # When, who, what happened (with the transfer), the note: notes only in the Note column.
    expect(rows.nth(0).locator("td")).to_have_text(
        ["2024-03-12 14:05", "Boris", "Callanswered, talked 4:05blind transfer Anna Operator → Boris",
         "Asked about the March invoice", "Call"]
    )
    expect(rows.nth(1).locator("td")).to_have_text(["2024-02-28 09:30", "Anna", "Note", "Prefers e-mail", ""])
    expect(rows.nth(2).locator(".h-operator")).to_have_text("—")
    expect(rows.nth(2).locator(".h-what")).to_have_text("Callabandoned")
    expect(rows.nth(2).locator(".h-note")).to_have_text("")  # the call log's words are no note
    # History sits below the name; ringing cards have no note box yet.
    assert el.locator(".history").bounding_box()["y"] > name.bounding_box()["y"]
    expect(el.locator(".note")).to_be_hidden()
    expect(page.locator("#empty")).to_be_hidden()

    # Several calls may ring at once: a second card, unknown caller, dialled number.
    other = make_card(
        "1700000000.2",
        caller=CallerView(number="+74957654321", number_display="+7 495 765-43-21", lookup="not_found"),
        queue=None,
        dialed="+7 495 000-00-00",
        history=[],
        entered_at=time.time() - 2,
    )
    server.push(other)
    second = card_locator(page, other)
    expect(second.locator(".caller-name")).to_have_text("+7 495 765-43-21")
    expect(second.locator(".dialed")).to_have_text("Dialled +7 495 000-00-00")
    expect(second.locator(".lookup")).to_have_text("New caller")
    expect(second.locator(".history-empty")).to_have_text("No earlier interactions")
    expect(page.locator("article.card")).to_have_count(2)
    assert page.title() == "(2) ringing — Callbridge"
    assert_no_stray_words(page)
    screenshot(page, "console-ringing")


def test_card_update_replaces_in_place(page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    pending = make_card(
        version=1,
        caller=CallerView(number="+74951234567", number_display="+7 495 123-45-67", lookup="pending"),
        history=[],
    )
    server.push(pending)
    el = card_locator(page, pending)
    expect(el.locator(".caller-name")).to_have_text("+7 495 123-45-67")
    expect(el.locator(".lookup")).to_have_text("Looking up…")

    server.push(make_card(version=2))  # the CRM answered
    expect(el.locator(".caller-name")).to_have_text("Ivan Petrov")
    expect(page.locator("article.card")).to_have_count(1)
    expect(el.locator(".lookup")).to_have_count(0)

    server.push(pending)  # a late, older frame must not undo the newer one
    server.push(make_card("1700000000.9", version=1))  # a later frame to wait for
    expect(page.locator("article.card")).to_have_count(2)
    expect(el.locator(".caller-name")).to_have_text("Ivan Petrov")


def test_live_card_runs_a_talk_timer(page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    now = time.time()
    card = make_card(
        state="live",
        version=3,
        answered_at=now - 65,
        entered_at=now - 95,
        wait_seconds=30,
        recording=True,
        transfer=TransferView(
            kind="blind", from_operator="102", from_name="Boris", note="Wants a refund for order 5531"
        ),
        note="Calling about the refund",
    )
    server.push(card)
    el = card_locator(page, card)
    expect(el.locator(".state-label")).to_have_text("On call")
    expect(el.locator(".timer-label")).to_have_text("Talking")
    timer = el.locator(".timer-value")
    expect(timer).to_have_text(re.compile(r"^1:0[5-9]$"))
    first = timer.text_content()
    expect(timer).not_to_have_text(first, timeout=3000)  # it ticks
    expect(el.locator(".waited")).to_have_text("waited 0:30")
    expect(el.locator(".transfer-banner")).to_have_text(
        "Transferred by Boris (102): Wants a refund for order 5531"
    )
    expect(el.locator(".recording")).to_be_visible()
    expect(el.locator(".note-text")).to_have_value("Calling about the refund")
    expect(el.locator(".actions")).to_be_hidden()  # "done" only once the call is over
    assert_no_stray_words(page)
    screenshot(page, "console-live")

    # The caller is about to read his card number: pause the recording, then resume it.
    el.locator(".pause-recording").click()
    expect(el.locator(".pause-recording")).to_have_text("Resume recording")
    expect(el.locator(".pause-status")).to_contain_text("Recording paused")
    el.locator(".pause-recording").click()
    expect(el.locator(".pause-recording")).to_have_text("Pause recording")
    controls = [p for p in server.posts if "/recording/" in p.path]
    assert [p.path for p in controls] == [f"/api/calls/{card.call_id}/recording/pause",
                                          f"/api/calls/{card.call_id}/recording/resume"]
    assert all(p.csrf == CSRF_TOKEN for p in controls)


def test_withdrawn_card_says_who_answered_and_goes_away(page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    card = make_card()
    server.push(card)
    el = card_locator(page, card)
    expect(el).to_have_attribute("data-state", "ringing")
    server.push(make_card(version=2, state="withdrawn", state_reason="answered by Anna Operator (101)"))
    expect(el.locator(".state-reason")).to_have_text("Answered by Anna Operator (101)")
    screenshot(page, "console-withdrawn")
    expect(el).to_have_count(0, timeout=6000)
    expect(page.locator("#empty")).to_be_visible()


def test_after_call_note_is_saved_with_the_csrf_token(page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    now = time.time()
    card = make_card(state="after_call", version=5, answered_at=now - 200, ended_at=now - 8,
                     closes_at=now - 8 + 120)
    server.push(card)
    el = card_locator(page, card)
    expect(el.locator(".state-label")).to_have_text("After-call work")
    expect(el.locator(".timer-label")).to_have_text("Talked")
    expect(el.locator(".timer-value")).to_have_text("3:12")
    note = el.locator(".note-text")
    expect(note).to_be_visible()

    # Typing saves by itself a moment later (debounced): one POST with the whole text.
    note.fill("Refund approved, call back on Monday")
    expect(el.locator(".note-status")).to_have_text("Unsaved changes")
    expect(el.locator(".note-status")).to_have_text("Saved", timeout=5000)
    posts = server.posts_to("/api/notes")
    assert len(posts) == 1
    assert posts[0].csrf == CSRF_TOKEN
    assert posts[0].json == {"call_id": card.call_id, "text": "Refund approved, call back on Monday"}
    assert_no_stray_words(page)
    screenshot(page, "console-after-call")

    # The explicit button saves at once; a failure says so.
    server.loop_thread.call(setattr, server, "fail_posts", True)
    note.fill("Refund approved, call back on Monday at 10")
    el.locator(".note-save").click()
    expect(el.locator(".note-status")).to_have_text("Not saved: retry")
    server.loop_thread.call(setattr, server, "fail_posts", False)
    el.locator(".note-save").click()
    expect(el.locator(".note-status")).to_have_text("Saved")
    assert server.posts_to("/api/notes")[-1].json["text"] == "Refund approved, call back on Monday at 10"

    # Wrap-up: the card says when it closes itself; the operator picks a code and closes it
    # early ("Done"): on the server and here, with the code.
    expect(el.locator(".wrapup-left")).to_have_text(re.compile(r"^closes by itself in 1:5\d$"))
    expect(el.locator(".wrapup-code option")).to_have_text(["Wrap-up code…", "Resolved", "Call back", "Sale"])
    el.locator(".wrapup-code").select_option("Sale")
    el.locator("button.done").click()
    expect(el).to_have_count(0)
    dismiss = server.posts_to("/api/cards/dismiss")
    expected = {"call_id": card.call_id, "wrapup_code": "Sale"}
    assert [(p.csrf, p.json) for p in dismiss] == [(CSRF_TOKEN, expected)]


def test_card_frame_does_not_overwrite_a_note_being_typed(page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    card = make_card(state="live", version=1, answered_at=time.time() - 5, note="")
    server.push(card)
    note = card_locator(page, card).locator(".note-text")
    note.fill("half a sentence")
    server.push(make_card(state="live", version=2, answered_at=time.time() - 5, note="older text"))
    expect(card_locator(page, card)).to_have_attribute("data-state", "live")
    expect(note).to_have_value("half a sentence")


def test_unknown_caller_can_be_created_as_a_contact(page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    card = make_card(
        state="live",
        answered_at=time.time() - 3,
        caller=CallerView(number="+74957654321", number_display="+7 495 765-43-21", lookup="not_found"),
        history=[],
    )
    server.push(card)
    form = card_locator(page, card).locator("form.new-contact")
    expect(form).to_be_visible()
    form.locator('input[name="name"]').fill("Olga Smirnova")
    form.locator('input[name="company"]').fill("Vector JSC")
    # A refusal shows the server's own words; a retry goes through.
    server.loop_thread.call(setattr, server, "fail_posts", True)
    form.locator('button[type="submit"]').click()
    expect(form.locator(".contact-status")).to_have_text("Not created: The CRM is down.")
    server.loop_thread.call(setattr, server, "fail_posts", False)
    form.locator('button[type="submit"]').click()
    expect(form.locator(".contact-status")).to_have_text("Contact created")
    posts = server.posts_to("/api/contacts")
    expected = {"call_id": card.call_id, "name": "Olga Smirnova", "company": "Vector JSC"}
    assert [(p.csrf, p.json) for p in posts] == [(CSRF_TOKEN, expected)] * 2


def test_hostile_caller_text_is_shown_as_text(page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    card = make_card(
        state="live",
        answered_at=time.time() - 12,
        caller=CallerView(
            number="+74951234567",
            number_display="+7 495 123-45-67",
            name=XSS,
            company='"><script>alert(2)</script>',
            tags=["<b>bold</b>"],
            lookup="found",
        ),
        transfer=TransferView(kind="attended", from_operator="102", note="<svg onload=alert(3)>"),
        history=[HistoryItem(at="2024-03-12T14:05:00Z", kind="note", operator="<i>x</i>", summary=XSS)],
        note="<iframe src=javascript:alert(4)>",
    )
    server.push(card)
    el = card_locator(page, card)
    name = el.locator(".caller-name")
    expect(name).to_have_text(XSS)
    assert name.evaluate("n => n.textContent") == XSS
    assert name.evaluate("n => n.childElementCount") == 0
    expect(el.locator(".company")).to_have_text('"><script>alert(2)</script>')
    expect(el.locator(".tag")).to_have_text("<b>bold</b>")
    expect(el.locator(".transfer-note")).to_have_text("<svg onload=alert(3)>")
    expect(el.locator(".h-note")).to_have_text(XSS)
    expect(el.locator(".note-text")).to_have_value("<iframe src=javascript:alert(4)>")
    for tag in ("img", "script", "svg", "iframe", "b", "i"):
        assert el.locator(tag).count() == 0, f"a <{tag}> element made it into the card"
    page.wait_for_timeout(300)  # give a broken page the chance to fire onerror
    assert page.watch.dialogs == []
    screenshot(page, "console-xss")


def test_javascript_urls_are_not_links(page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    caller = CallerView(
        number="+74951234567",
        number_display="+7 495 123-45-67",
        name="Ivan Petrov",
        crm_url="javascript:alert(document.cookie)",
        lookup="found",
    )
    history = [
        HistoryItem(
            at="2024-03-12T14:05:00Z", kind="ticket", summary="Broken router", url="JavaScript:alert(1)"
        ),
        HistoryItem(at="2024-03-11T14:05:00Z", kind="ticket", summary="Invoice", url="http://crm.test/t/7"),
    ]
    card = make_card(caller=caller, history=history)
    server.push(card)
    el = card_locator(page, card)
    expect(el.locator(".caller-name")).to_have_text("Ivan Petrov")
    expect(el.locator("a.crm-link")).to_have_count(0)
    expect(el.locator("a")).to_have_count(1)  # only the http history link
    expect(el.locator("a")).to_have_attribute("href", "http://crm.test/t/7")
    expect(el.locator(".history-row").first.locator(".h-detail")).to_have_text("Broken router")
    expect(el.locator(".history-row").first.locator(".h-note")).to_have_text("")  # a subject is no note


def test_reconnect_restores_the_cards_from_hello(page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    ringing = make_card("1700000000.1")
    gone = make_card("1700000000.2", entered_at=time.time() - 1)
    server.push(ringing)
    server.push(gone)
    expect(page.locator("article.card")).to_have_count(2)

    server.drop(refuse=True)
    expect(page.locator("#conn-text")).to_have_text("reconnecting…")
    expect(page.locator("body")).to_have_attribute("data-conn", "reconnecting")
    screenshot(page, "console-reconnecting")
    # While the browser is away, the first call is answered and the second one ends.
    server.set_card(make_card("1700000000.1", version=2, state="live", answered_at=time.time() - 1))
    server.forget_card(gone.card_id)
    server.accept()

    expect(page.locator("#conn-text")).to_have_text("connected", timeout=8000)
    expect(card_locator(page, ringing)).to_have_attribute("data-state", "live")
    expect(card_locator(page, ringing).locator(".caller-name")).to_have_text("Ivan Petrov")
    expect(page.locator("article.card")).to_have_count(1)
    assert server.connections() == 1


def test_sign_out_and_an_expired_session_lead_to_the_login_page(page: Any, server: FakeConsoleServer) -> None:
    open_console(page, server)
    page.locator("#signout").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    assert [(p.csrf, p.json) for p in server.posts_to("/logout")] == [(CSRF_TOKEN, {})]

    # Logged out (or expired): the page goes to the login form, which will send it back.
    page.goto(server.base_url + "/console")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fconsole$"))
