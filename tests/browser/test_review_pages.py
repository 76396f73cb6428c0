"""The review room (/reviews) and an operator's own reviews (/my-reviews) in Chromium.

A real app: `create_web_app` with the real auth and user store, the recordings API of
recordings.http and the pages of recordings.pages, on SQLite. The call log holds a call
of Ivan Petrov that Anna (ext 101) answered, paused while he dictated his card number, and
handed over to Clara (103) after a consultation; Anna's leg is a real WAV made here (a
few seconds of tones, silence where the recording was paused). Two more calls: one of a
caller whose caller-id name is markup (sales, Boris), one of the day before whose file is
missing.

Tina, a trainer, signs in through the real login page, opens Anna's recording, plays it,
seeks (the audio is fetched with Range: a 206 was served), comments at a time stamp
(one comment is markup: it shows as text) and scores it. Anna then signs in and sees the
score and the comments on /my-reviews; /reviews is a 403 for her.

Screenshots: artifacts/screenshots/reviews-*.png.
"""

from __future__ import annotations

import math
import os
import re
import struct
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from argon2 import PasswordHasher
from playwright.sync_api import expect

from bridge.call_log.store import CallLogStore
from bridge.calls.record import CallRecord, RingRecord, TransferRecord
from crm_adapters.lookup import LookupService
from recordings.http import RecordingsApi, setup_recordings
from recordings.pages import add_review_pages
from recordings.review_store import ReviewStore
from recordings.settings import Criterion, RecordingSettings
from recordings.store import PausedSpan, RecordingInfo, RecordingStore
from screenpop.app import create_web_app
from tests.browser.harness import ROOT, LoopThread, screenshot, serve_on_free_port
from web.audit_log import AuditLog
from web.auth import unguarded_routes
from web.users import UserStore

PASSWORD = "review-room-password-1"
CRITERIA = [Criterion(name="Greeted by name", max_points=5),
            Criterion(name="Identified the issue", max_points=5),
            Criterion(name="Offered a solution", max_points=5)]
T0 = datetime(2026, 11, 23, 14, 5, tzinfo=UTC).timestamp()  # Ivan Petrov's call entered the queue
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_COMMENT = "<b>bold</b><img src=x onerror=alert(2)> & \"quoted\""
COMMENT = "should have confirmed the address"
SCORE_NOTE = "Friendly and quick; confirm the address next time."

# Anna's leg of Ivan Petrov's call, in seconds of her recording.
ANNA_SECONDS = 32.0
PAUSED = (9.0, 15.0)  # the caller dictated his card number
CONSULT_RING, CONSULT_ANSWER, TRANSFER = 22.0, 24.0, 28.0


def tone_wav(path: Path, segments: list[tuple[float, float]], rate: int = 8000) -> int:
    """A 16-bit mono WAV of (seconds, Hz) segments (0 Hz: silence); returns its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples: list[int] = []
    for seconds, hz in segments:
        for i in range(int(seconds * rate)):
            samples.append(int(9000 * math.sin(2 * math.pi * hz * i / rate)) if hz else 0)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return path.stat().st_size


def petrov_call() -> CallRecord:
    """Anna answers at T0+14; a consultation rings Clara, who takes the call at T0+42."""
    a = T0 + 14.0  # Anna's recording starts at her answer
    return CallRecord(
        call_id="1795443900.12", caller_number="+74951234567", caller_name="Ivan Petrov", queue="support",
        answered_by="101", rung=["101", "103"], outcome="answered", entered_at=T0, answered_at=a,
        ended_at=a + 62.0,
        rings=[RingRecord(operator="101", queue="support", started_at=T0 + 10.0, ended_at=a, answered_at=a,
                          result="ANSWER"),
               RingRecord(operator="103", started_at=a + CONSULT_RING, ended_at=a + CONSULT_ANSWER,
                          answered_at=a + CONSULT_ANSWER, result="ANSWER")],
        transfers=[TransferRecord(kind="attended", from_operator="101", to_operator="103", at=a + TRANSFER)])


def hostile_call() -> CallRecord:
    t = T0 + 3600.0
    return CallRecord(
        call_id="1795447500.40", caller_number="+74957654321", caller_name=HOSTILE_NAME, queue="sales",
        answered_by="102", rung=["102"], outcome="answered", entered_at=t, answered_at=t + 5.0,
        ended_at=t + 25.0,
        rings=[RingRecord(operator="102", queue="sales", started_at=t + 1.0, ended_at=t + 5.0,
                          answered_at=t + 5.0, result="ANSWER")])


def yesterdays_call() -> CallRecord:
    t = T0 - 86400.0
    return CallRecord(
        call_id="1795357500.7", caller_number="+74950000001", caller_name="Мария Иванова", queue="billing",
        answered_by="101", rung=["101"], outcome="incomplete", entered_at=t, answered_at=t + 3.0,
        ended_at=t + 40.0,
        rings=[RingRecord(operator="101", queue="billing", started_at=t + 1.0, ended_at=t + 3.0,
                          answered_at=t + 3.0, result="ANSWER")])


def leg(call: CallRecord, seq: int, operator: str, start: float, seconds: float, path: str | None,
        **fields: Any) -> RecordingInfo:
    values: dict[str, Any] = {
        "call_id": call.call_id, "seq": seq, "source": "bridge", "operator": operator,
        "channel": f"Local/{operator}@agents-0000{seq:04d};1", "file": None, "path": path, "format": "wav",
        "started_at": start, "stopped_at": start + seconds, "offset_seconds": start - call.entered_at,
        "duration_seconds": seconds, "status": "ok"}
    return RecordingInfo(**(values | fields))


@dataclass
class ReviewStack:
    """The web app with its stores; `ids` maps a name to a recording id."""

    loop_thread: LoopThread
    tmp: Path
    base_url: str = ""
    ids: dict[str, int] = field(default_factory=dict)
    unguarded: list[str] = field(default_factory=list)
    store: CallLogStore | None = None
    runner: web.AppRunner | None = None
    more_calls: int = 0  # that many more answered calls of Boris's, each recorded (a long list)
    problems: bool = False  # and recordings of every state a user may meet
    pbxes: tuple[str, ...] = ("main",)  # with a second PBX: a call of its own, recorded there

    def start(self) -> None:
        self.loop_thread.run(self._start())

    def stop(self) -> None:
        self.loop_thread.run(self._stop())

    async def _seed(self, store: CallLogStore, users: UserStore, root: Path) -> None:
        await users.add("tina", PASSWORD, role="trainer", display_name="Tina Trainer")
        await users.add("anna", PASSWORD, role="operator", display_name="Anna Operator", extensions=["101"])
        await users.add("clara", PASSWORD, role="operator", display_name="Clara Operator", extensions=["103"])
        petrov, hostile, yesterday = petrov_call(), hostile_call(), yesterdays_call()
        await store.save([petrov, hostile, yesterday])
        anna_path, clara_path, boris_path = (f"2026/11/23/{c}.wav" for c in (
            "1795443900.12-101-1", "1795443900.12-103-2", "1795447500.40-102-1"))
        # Anna talks (440 Hz), the recording is muted (silence), she talks on (523 Hz).
        size = tone_wav(root / anna_path, [(PAUSED[0], 440.0), (PAUSED[1] - PAUSED[0], 0.0),
                                           (ANNA_SECONDS - PAUSED[1], 523.0)])
        tone_wav(root / clara_path, [(38.0, 392.0)])
        tone_wav(root / boris_path, [(20.0, 330.0)])
        recs = RecordingStore(store)
        a = petrov.answered_at
        assert a is not None
        self.ids["anna"] = await recs.save(leg(petrov, 1, "101", a, ANNA_SECONDS, anna_path, size_bytes=size,
                                               paused=[PausedSpan(start=PAUSED[0], end=PAUSED[1])]))
        self.ids["clara"] = await recs.save(leg(petrov, 2, "103", a + CONSULT_ANSWER, 38.0, clara_path))
        self.ids["boris"] = await recs.save(leg(hostile, 1, "102", T0 + 3605.0, 20.0, boris_path))
        self.ids["missing"] = await recs.save(leg(yesterday, 1, "101", T0 - 86397.0, 37.0,
                                                  "2026/11/22/1795357500.7-101-1.wav", status="missing"))
        if self.problems:  # more legs of Boris's call: one that plays, and what can go wrong
            for seq, status in enumerate(("stopped", "failed", "empty", "purged", "recording"), start=2):
                self.ids[status] = await recs.save(leg(hostile, seq, "102", T0 + 3605.0 + seq, 20.0,
                                                       boris_path, status=status))
        if len(self.pbxes) > 1:  # Boris's call again, on the second PBX (its ids are prefixed)
            other = self.pbxes[1]
            call = hostile_call().model_copy(update={"call_id": f"{other}:1795447500.40", "pbx": other})
            await store.save([call])
            self.ids[other] = await recs.save(leg(call, 1, "102", T0 + 3605.0, 20.0,
                                                  f"{other}/{boris_path}", pbx=other))
        for n in range(self.more_calls):  # older calls, so the list runs far below the first screen
            fields = {"call_id": f"1795300000.{n}", "caller_name": f"Caller {n}",
                      "entered_at": T0 - 7200.0 - 60 * n}
            call = hostile_call().model_copy(update=fields)
            await store.save([call])
            self.ids[f"more{n}"] = await recs.save(leg(call, 1, "102", T0 - 7195.0 - 60 * n, 20.0,
                                                       boris_path))

    async def _start(self) -> None:
        self.store = CallLogStore(f"sqlite+aiosqlite:///{self.tmp / 'calls.sqlite3'}")
        await self.store.open()
        root = self.tmp / "recordings"
        # A cheap hash to seed with: the login is what is tested here, not argon2's cost.
        users = UserStore(self.store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        await self._seed(self.store, users, root)
        settings = RecordingSettings(policy="all", directory=root, review_criteria=CRITERIA)
        app = create_web_app(None, LookupService([]), user_store=users, auth_options={"secure_cookie": False})
        api = RecordingsApi(settings, RecordingStore(self.store), ReviewStore(self.store, CRITERIA),
                            AuditLog(self.store), self.store, pbxes=self.pbxes)
        setup_recordings(app, api)
        add_review_pages(app)
        self.unguarded = unguarded_routes(app)
        self.runner, self.base_url = await serve_on_free_port(app)

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.store is not None:
            await self.store.close()


@pytest.fixture
def stack(loop_thread: LoopThread, tmp_path: Path) -> Iterator[ReviewStack]:
    s = ReviewStack(loop_thread, tmp_path)
    s.start()
    yield s
    s.stop()


def docs_screenshot(page: Any, *names: str, width: int = 1366, then: Any = None) -> None:
    """With CALLBRIDGE_DOCS_SCREENSHOTS=1: the window at `width` x 768 as docs/screenshots/<name>.png."""
    if os.environ.get("CALLBRIDGE_DOCS_SCREENSHOTS") != "1":
        return
    before = page.viewport_size
    page.set_viewport_size({"width": width, "height": 768})
    if then is not None:
        then()
    page.wait_for_timeout(300)  # the pins' labels are laid out again on resize
    for name in names:
        page.screenshot(path=str(ROOT / "docs" / "screenshots" / f"{name}.png"), animations="disabled")
    page.set_viewport_size(before)


def log_in(page: Any, stack: ReviewStack, username: str, path: str) -> None:
    """Open `path` signed out: the login page comes, then `path` after the password."""
    page.goto(stack.base_url + path)
    expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)" + re.escape(path.lstrip("/")) + "$"))
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))


def audio_state(page: Any) -> dict[str, Any]:
    return page.evaluate("""() => { const a = document.getElementById('audio');
        return {t: a.currentTime, d: a.duration, ready: a.readyState, paused: a.paused,
                seekable: a.seekable.length ? a.seekable.end(0) : 0}; }""")


def wait_audio(page: Any, condition: str) -> None:
    page.wait_for_function(f"() => {{ const a = document.getElementById('audio'); return {condition}; }}")


LABEL_BOXES = """() => [...document.querySelectorAll('#event-lane .pin-label')].map(l => {
    const b = l.getBoundingClientRect(); return [b.left, b.right, b.top, b.bottom]; })"""


def assert_labels_readable(page: Any) -> None:
    """No two event labels overlap, and none runs past the ends of the bar."""
    boxes = page.evaluate(LABEL_BOXES)
    track = page.locator("#track").bounding_box()
    for i, (left, right, top, bottom) in enumerate(boxes):
        assert track["x"] - 1 <= left and right <= track["x"] + track["width"] + 1, boxes
        for left2, right2, top2, bottom2 in boxes[i + 1:]:
            assert not (left < right2 and left2 < right and top < bottom2 and top2 < bottom), boxes


def test_trainer_reviews_a_recording_and_the_operator_sees_it(page: Any, stack: ReviewStack) -> None:
    assert stack.unguarded == []  # every route of the app is under require_role (or public)
    audio_answers: list[tuple[int, str | None]] = []
    page.on("response", lambda r: audio_answers.append((r.status, r.request.headers.get("range")))
            if "/audio" in r.url else None)

    log_in(page, stack, "tina", "/reviews")
    expect(page.locator("#whoami")).to_contain_text("Tina Trainer")
    rows = page.locator(".call-row")
    expect(rows).to_have_count(4)
    hostile_row = page.locator(f'.call-row[data-id="{stack.ids["boris"]}"] .row-caller')
    expect(hostile_row).to_have_text(HOSTILE_NAME)  # markup in a caller-id name is text
    expect(page.locator(".call-list img")).to_have_count(0)
    screenshot(page, "reviews-list")

    # Tina opens Anna's leg of Ivan Petrov's call: the caller card, the events on the bar.
    page.locator(f'.call-row[data-id="{stack.ids["anna"]}"]').click()
    expect(page.locator("#caller-card .caller-name")).to_have_text("Ivan Petrov")
    expect(page.locator("#caller-card")).to_contain_text("+74951234567")
    expect(page.locator("#caller-card")).to_contain_text("Queue support")
    wait_audio(page, "a.readyState >= 1 && Math.abs(a.duration - 32) < 0.1")
    expect(page.locator("#length")).to_have_text("00:32")
    # On the bar: Anna answers (00:00), Clara is rung and answers (consultation), the transfer.
    pins = page.locator("#event-lane .pin")
    expect(pins).to_have_text(["Answered 101", "Rang 103", "Answered 103", "Transferred"])
    assert_labels_readable(page)
    span = page.locator("#spans .span-paused")
    expect(span).to_have_count(1)
    assert (span.get_attribute("data-start"), span.get_attribute("data-end")) == ("9", "15")
    span_box, track_box = span.bounding_box(), page.locator("#track").bounding_box()
    assert abs((span_box["x"] - track_box["x"]) / track_box["width"] - 9 / 32) < 0.01  # drawn where it is
    expect(page.locator("#event-list .ev-entered")).to_contain_text("before the recording")
    expect(page.locator("#event-list .ev-hung_up")).to_contain_text("after the recording")
    expect(page.locator("#event-list .ev-transferred")).to_contain_text(
        "Transferred (attended) ext 101 → ext 103")

    # Play: time moves. Seek by clicking the bar, then by the "Rang 103" pin.
    page.locator("#play").click()
    wait_audio(page, "!a.paused && a.currentTime > 0.5")
    page.locator("#play").click()
    wait_audio(page, "a.paused")
    track = page.locator("#track")
    track.click(position={"x": track_box["width"] * 0.75, "y": track_box["height"] / 2})
    wait_audio(page, "Math.abs(a.currentTime - 24) < 0.3")
    expect(page.locator("#now")).to_have_text(re.compile(r"00:2[34]"))
    page.locator("#event-lane .pin[data-event=rung]").click()
    wait_audio(page, "Math.abs(a.currentTime - 22) < 0.05 && !a.seeking")
    state = audio_state(page)
    assert state["seekable"] > 31.9, state  # the server answers ranges: the whole file is seekable
    assert any(status == 206 for status, _ in audio_answers), audio_answers
    assert all(status in (200, 206) for status, _ in audio_answers), audio_answers
    expect(page.locator("#now")).to_have_text("00:22")

    # A comment stamped with the playback time.
    expect(page.locator("#stamp")).to_have_text("00:22")
    page.locator("#comment-text").fill(COMMENT)
    page.locator("#comment-add").click()
    expect(page.locator("#comment-status")).to_have_text("Added at 00:22")
    first = page.locator("#comment-list .comment").filter(has_text=COMMENT)
    expect(first.locator(".c-time")).to_have_text("00:22")
    expect(page.locator("#comment-lane .dot")).to_have_count(1)

    # Keyboard: Home, then two steps right: 00:10, inside the paused span. Markup is text.
    track.focus()
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    wait_audio(page, "Math.abs(a.currentTime - 10) < 0.05")
    page.locator("#comment-text").fill(HOSTILE_COMMENT)
    page.locator("#comment-add").click()
    expect(page.locator("#comment-status")).to_have_text("Added at 00:10")
    hostile = page.locator("#comment-list .comment").first  # sorted by time: 00:10 first
    expect(hostile.locator(".c-text")).to_have_text(HOSTILE_COMMENT)
    expect(page.locator("#comment-list img, #comment-list b")).to_have_count(0)

    # Clicking a comment's time seeks there (and plays).
    first.locator(".c-time").click()
    wait_audio(page, "a.currentTime >= 22")
    page.evaluate("document.getElementById('audio').pause()")

    # The score card of the configured criteria.
    expect(page.locator("#criteria tr.criterion")).to_have_count(3)
    for name, points in (("Greeted by name", 5), ("Identified the issue", 4), ("Offered a solution", 4)):
        page.get_by_label(name).fill(str(points))
    expect(page.locator("#score-total")).to_have_text("13 / 15 (86.7 %)")
    page.locator("#score-comment").fill(SCORE_NOTE)
    page.locator("#score-save").click()
    expect(page.locator("#score-status")).to_have_text("Saved: 13 / 15 (86.7 %)")
    expect(page.locator('#other-cards .card-row[data-reviewer="tina"]')).to_contain_text("13 / 15")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "reviews-player")
    docs_screenshot(page, "review-1366", "review-room",
                    then=lambda: page.evaluate("document.getElementById('detail').scrollTop = 0"))
    docs_screenshot(page, "review-800", width=800,  # stacked: the click scrolls to the call
                    then=page.locator(f'.call-row[data-id="{stack.ids["anna"]}"]').click)

    # It is stored: a fresh load of the same recording shows it all again.
    page.goto(f"{stack.base_url}/reviews#recording={stack.ids['anna']}")
    expect(page.locator("#comment-list .comment")).to_have_count(2)
    expect(page.get_by_label("Identified the issue")).to_have_value("4")
    expect(page.locator("#score-comment")).to_have_value(SCORE_NOTE)

    # Anna signs in: her own page shows the score, the note and both comments.
    page.locator("#signout").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    log_in(page, stack, "anna", "/my-reviews")
    expect(page.locator("#whoami")).to_contain_text("Anna Operator")
    review = page.locator(f'article.review[data-id="{stack.ids["anna"]}"]')
    expect(page.locator("article.review")).to_have_count(1)  # only her own reviewed call
    expect(review.locator(".caller-name")).to_have_text("Ivan Petrov")
    expect(review.locator(".score-total")).to_have_text("13 / 15")
    expect(review.locator(".score-note-text")).to_have_text(SCORE_NOTE)
    expect(review.locator(".comment .c-text")).to_have_text([HOSTILE_COMMENT, COMMENT])
    expect(review.locator(".comment .c-time")).to_have_text(["00:10", "00:22"])
    expect(review.locator(".comments img, .comments b")).to_have_count(0)
    expect(page.locator(".big-percent")).to_have_text("86.7 %")
    expect(page.locator(".summary-sub")).to_contain_text("1 score card · 13 of 15 points")
    expect(review.locator("audio")).to_have_attribute("src", f"/recordings/{stack.ids['anna']}/audio")
    # Her comment times play her recording from there.
    review.locator(".comment .c-time").nth(1).click()
    page.wait_for_function("() => { const a = document.querySelector('article.review audio');"
                           " return a.currentTime >= 22 && !a.paused; }")
    page.evaluate("document.querySelector('article.review audio').pause()")
    screenshot(page, "reviews-my-reviews")
    page.evaluate("window.scrollTo(0, 0)")
    docs_screenshot(page, "my-reviews-1366")
    docs_screenshot(page, "my-reviews-800", width=800)


def test_filters_narrow_the_list(page: Any, stack: ReviewStack) -> None:
    log_in(page, stack, "tina", "/reviews")
    rows = page.locator(".call-row")
    expect(rows).to_have_count(4)
    ids = lambda: sorted(int(x) for x in rows.evaluate_all("rs => rs.map(r => r.dataset.id)"))  # noqa: E731

    page.locator("#f-operator").fill("102")
    page.locator("#f-apply").click()
    expect(rows).to_have_count(1)
    assert ids() == [stack.ids["boris"]]

    page.locator("#f-reset").click()
    expect(rows).to_have_count(4)
    page.locator("#f-queue").select_option("support")
    page.locator("#f-apply").click()
    expect(rows).to_have_count(2)
    assert ids() == sorted([stack.ids["anna"], stack.ids["clara"]])

    page.locator("#f-reset").click()
    expect(rows).to_have_count(4)
    page.locator("#f-outcome").select_option("incomplete")
    page.locator("#f-apply").click()
    expect(rows).to_have_count(1)
    assert ids() == [stack.ids["missing"]]
    expect(rows.first.locator(".row-status")).to_have_text("file missing")

    page.locator("#f-reset").click()
    page.locator("#f-since").fill("2026-11-23")
    page.locator("#f-until").fill("2026-11-23")
    page.locator("#f-apply").click()
    expect(rows).to_have_count(3)
    assert stack.ids["missing"] not in ids()
    page.locator("#f-operator").fill("101")
    page.locator("#f-apply").click()
    expect(rows).to_have_count(1)
    expect(page.locator("#list-status")).to_have_text("1 recording")
    screenshot(page, "reviews-filtered")

    # Clara's leg of the same call: her answer, the transfer 4 s later, the hang-up at the
    # very end (its label hangs left of its pin); no label hides another.
    page.locator("#f-reset").click()
    page.locator(f'.call-row[data-id="{stack.ids["clara"]}"]').click()
    expect(page.locator("#event-lane .pin")).to_have_text(["Answered 103", "Transferred", "Hung up"])
    expect(page.locator("#event-lane .pin[data-event=hung_up]")).to_have_attribute("data-align", "end")
    expect(page.locator("#event-list .ev-outside")).to_have_count(4)  # entered, rung 101 and 103, answered
    assert_labels_readable(page)
    screenshot(page, "reviews-second-leg")

    # The missing recording opens without a player.
    page.locator("#f-reset").click()
    page.locator(f'.call-row[data-id="{stack.ids["missing"]}"]').click()
    expect(page.locator("#caller-card .caller-name")).to_have_text("Мария Иванова")
    expect(page.locator("#no-audio")).to_have_text(
        "No audio: the recording's file is missing (the PBX did not write it, or it was moved).")
    expect(page.locator("#play")).to_be_disabled()


def test_with_several_pbxes_calls_name_theirs_and_the_list_filters_by_pbx(
        page: Any, loop_thread: LoopThread, tmp_path: Path) -> None:
    one = ReviewStack(loop_thread, tmp_path / "one")
    one.start()
    try:
        log_in(page, one, "tina", "/reviews")
        expect(page.locator(".call-row")).to_have_count(4)
        expect(page.locator("#f-pbx-label")).to_be_hidden()  # one PBX: as ever
        expect(page.locator(".call-row .row-facts").first).not_to_contain_text("PBX")
    finally:
        one.stop()
    two = ReviewStack(loop_thread, tmp_path / "two", pbxes=("main", "b"))
    two.start()
    try:
        log_in(page, two, "tina", "/reviews")
        rows = page.locator(".call-row")
        expect(rows).to_have_count(5)
        expect(page.locator("#f-pbx-label")).to_be_visible()
        expect(page.locator(f'.call-row[data-id="{two.ids["b"]}"] .row-facts')).to_contain_text("PBX b")
        page.locator("#f-pbx").select_option("b")
        page.locator("#f-apply").click()
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-pbx", "b")
        rows.first.click()
        expect(page.locator("#caller-card .facts")).to_contain_text("PBX")
        page.locator("#f-pbx").select_option("main")
        page.locator("#f-apply").click()
        expect(rows).to_have_count(4)
    finally:
        two.stop()


def test_an_operator_may_not_enter_the_review_room(page: Any, stack: ReviewStack) -> None:
    log_in(page, stack, "anna", "/my-reviews")
    expect(page.locator("#status")).to_have_text("None of your calls has been reviewed yet.")
    response = page.goto(stack.base_url + "/reviews")
    assert response is not None and response.status == 403
    expect(page.locator("h1")).to_have_text("Not for your role")
    expect(page.get_by_role("link", name="Back to your console")).to_have_attribute("href", "/console")
    # Nor can she reach Clara's recording through the API the page uses.
    page.goto(stack.base_url + "/my-reviews")
    status = page.evaluate(f"fetch('/api/recordings/{stack.ids['clara']}').then(r => r.status)")
    assert status == 403
    csp = page.evaluate("fetch('/my-reviews').then(r => r.headers.get('content-security-policy'))")
    assert "script-src 'self'" in csp and "media-src 'self'" in csp and "unsafe-inline" not in csp


@pytest.fixture
def long_stack(loop_thread: LoopThread, tmp_path: Path) -> Iterator[ReviewStack]:
    s = ReviewStack(loop_thread, tmp_path, more_calls=60, problems=True)
    s.start()
    yield s
    s.stop()


def test_badges_say_what_the_user_needs(page: Any, long_stack: ReviewStack) -> None:
    """A recording that plays has no badge; one that does not says why, in the user's words."""
    stack = long_stack
    log_in(page, stack, "tina", "/reviews")
    expect(page.locator(".call-row")).to_have_count(4 + 5 + 60)
    row = lambda name: page.locator(f'.call-row[data-id="{stack.ids[name]}"]')  # noqa: E731
    for playing in ("anna", "boris", "stopped", "more0"):
        expect(row(playing).locator(".row-status")).to_have_count(0)
    words = {"missing": "file missing", "failed": "not recorded", "empty": "nothing recorded",
             "purged": "deleted (retention)", "recording": "still recording"}
    for name, badge in words.items():
        expect(row(name).locator(".row-status")).to_have_text(badge)
    badges = page.locator(".row-status").all_text_contents()
    assert not [b for b in badges if "no audio" in b or b in ("missing", "failed", "empty", "purged")], badges
    # The one stopped by a hang-up mid-write plays: the player is on, nothing says "no audio".
    row("stopped").click()
    expect(page.locator("#play")).to_be_enabled()
    expect(page.locator("#no-audio")).to_be_hidden()
    row("failed").click()
    expect(page.locator("#no-audio")).to_have_text(
        "No audio: this call was not recorded (the PBX refused to record it).")
    expect(page.locator("#play")).to_be_disabled()
    # The call's outcome is a word for people, not the call log's value.
    row("missing").click()
    expect(page.locator("#caller-card .outcome")).to_have_text("end not seen")


@pytest.mark.parametrize("width", [800, 1366])
def test_the_call_opens_where_the_reviewer_clicked(page: Any, long_stack: ReviewStack, width: int) -> None:
    """Far down a long list, the picked call shows at once: beside the list (wide) or right
    below it, scrolled to (stacked at 800 px) — never thousands of pixels below."""
    stack = long_stack
    page.set_viewport_size({"width": width, "height": 768})
    log_in(page, stack, "tina", "/reviews")
    target = page.locator(f'.call-row[data-id="{stack.ids["more50"]}"]')
    target.scroll_into_view_if_needed()
    target.click()
    name = page.locator("#caller-card .caller-name")
    expect(name).to_have_text("Caller 50")
    expect(name).to_be_in_viewport()
    expect(page.locator("#play")).to_be_in_viewport()
    if width == 800:  # stacked: the list is a box of its own, the call right below it
        scrolled = page.evaluate("window.scrollY")
        assert scrolled < 1500, scrolled
        list_box = page.locator("#call-list").bounding_box()
        detail_box = page.locator("#detail").bounding_box()
        assert detail_box["y"] >= list_box["y"] + list_box["height"]
        assert abs(detail_box["x"] - list_box["x"]) < 30
    else:  # beside: the row clicked stays in view too
        expect(target).to_be_in_viewport()
