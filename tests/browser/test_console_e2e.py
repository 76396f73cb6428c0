"""The console end to end: AMI simulator -> bridge -> screen-pop -> the real app -> Chromium.

The real web app (`create_web_app` with the real auth) runs on SQLite with the built-in
CRM, which knows +74951234567 as "Ivan Petrov" (the PBX's caller-id name is
"Иван Петров", so a card saying "Ivan Petrov" came from the CRM). Anna logs in through
the real login page as the operator bound to extension 101; the simulator plays
queue_answered.ami (the queue rings 101, Anna answers), relabelled to today's clock.
The note she types on the card is in the caller's history when he calls again (the same
capture replayed as a new call: relabelled with a new pass number).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from argon2 import PasswordHasher
from playwright.sync_api import expect

from bridge.ami_simulator import AmiSimulator, load_events
from bridge.call_log_store import CallLogStore
from bridge.capture_relabel import relabel
from bridge.service import BridgeService
from bridge.settings import load_settings
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.contract import NewContact
from crm_adapters.lookup import LookupService
from screenpop.app import create_web_app
from screenpop.console_http import SCREENPOP_KEY
from screenpop.users import UserStore
from tests.browser.fake_console import CSP
from tests.browser.harness import LoopThread, screenshot

CAPTURE = Path(__file__).resolve().parents[1] / "fixtures" / "queue_answered.ami"
CALLER = "+74951234567"
PASSWORD = "anna-secret-password-1"
NOTE = "Wants the invoice re-sent to the new address"

# Records every (state, name) a card shows, so a short-lived state (2 s of ringing) is
# checked without racing it.
RECORD_CARDS = """() => {
  window.cardLog = [];
  const note = () => {
    for (const card of document.querySelectorAll("article.card")) {
      const name = card.querySelector(".caller-name");
      window.cardLog.push([card.dataset.state, name ? name.textContent : null]);
    }
  };
  new MutationObserver(note).observe(document.getElementById("cards"),
    {subtree: true, childList: true, attributes: true, characterData: true});
}"""


@web.middleware
async def strict_csp(request: web.Request, handler: Any) -> web.StreamResponse:
    """The console as it should be deployed: the strictest policy the page allows."""
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    return response


@dataclass
class ConsoleStack:
    """Database, built-in CRM, users, the web app; bridges to simulators come and go."""

    loop_thread: LoopThread
    db: Path
    base_url: str = ""
    contact_id: str = ""
    _closers: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"sqlite+aiosqlite:///{self.db}"

    def start(self) -> None:
        self.loop_thread.run(self._start())

    def stop(self) -> None:
        self.loop_thread.run(self._stop())

    def play(self, pass_no: int, speed: float | None) -> None:
        """Replay the capture as a new call (`pass_no` relabels it), its clock moved to now."""
        self.loop_thread.run(self._play(pass_no, speed))

    async def _start(self) -> None:
        store = CallLogStore(self.url)
        await store.open()
        self._closers.append(store.close)
        crm = BuiltinCrm(store)
        lookup = LookupService([crm], call_log=store)
        await lookup.open()
        self._closers.append(lookup.close)
        contact = await crm.create_contact(
            NewContact(
                display_name="Ivan Petrov", phones=[CALLER], company="Romashka LLC", tags=["wholesale"]
            )
        )
        self.contact_id = contact.id
        # A cheap hash: the login is what is tested here, not argon2's cost.
        users = UserStore(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        await users.add("anna", PASSWORD, role="operator", display_name="Anna Operator", extensions=["101"])

        self.app = create_web_app(
            None, lookup, user_store=users, auth_options={"secure_cookie": False}, middlewares=[strict_csp]
        )
        runner = web.AppRunner(self.app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._closers.append(runner.cleanup)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"

    async def _play(self, pass_no: int, speed: float | None) -> None:
        raw = CAPTURE.read_bytes()
        first = next(e.timestamp for e in load_events([raw]) if e.timestamp is not None)
        sim = AmiSimulator([relabel(raw, pass_no, time.time() - first)], speed=speed)
        await sim.start()
        self._closers.append(sim.stop)
        host, port = sim.address
        settings = load_settings(
            database_url=self.url,
            ami={"host": host, "port": port, "secret": "callbridge", "backoff_max": 0.5},
        )
        bridge = BridgeService(settings)
        self.app[SCREENPOP_KEY].attach(bridge.pipeline)
        await bridge.start()
        self._closers.append(bridge.stop)

    async def _stop(self) -> None:
        for close in reversed(self._closers):
            await close()
        self._closers.clear()


@pytest.fixture
def stack(loop_thread: LoopThread, tmp_path: Path) -> Any:
    s = ConsoleStack(loop_thread, tmp_path / "callbridge.sqlite3")
    s.start()
    yield s
    s.stop()


def log_in(page: Any, stack: ConsoleStack) -> None:
    page.goto(stack.base_url + "/console")
    expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)console$"))
    page.locator("#username").fill("anna")
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console$"))
    expect(page.locator("#conn-text")).to_have_text("connected")
    expect(page.locator("#whoami")).to_contain_text("Anna Operator")
    expect(page.locator("#whoami")).to_contain_text("ext 101")


def test_operator_gets_the_crm_card_and_her_note_is_in_the_next_calls_history(
    page: Any, stack: ConsoleStack
) -> None:
    log_in(page, stack)
    expect(page.locator("#empty")).to_be_visible()

    # The queue rings Anna's phone (101) for 2 s: the card pops with the CRM's name.
    page.evaluate(RECORD_CARDS)
    stack.play(pass_no=1, speed=1.0)
    card = page.locator("article.card")
    expect(card).to_have_count(1)
    expect(card.locator(".caller-name")).to_have_text("Ivan Petrov")
    expect(card.locator(".company")).to_have_text("Romashka LLC")
    expect(card.locator(".tag")).to_have_text("wholesale")
    expect(card.locator(".queue")).to_have_text("Queue support")
    if card.get_attribute("data-state") == "ringing":
        screenshot(page, "e2e-ringing")

    # She answers (in the capture), hangs up 4.4 s later, and writes her note.
    expect(card).to_have_attribute("data-state", "after_call", timeout=15_000)
    states = [state for state, name in page.evaluate("window.cardLog") if name == "Ivan Petrov"]
    assert "ringing" in states and "live" in states, states
    card.locator(".note-text").fill(NOTE)
    card.locator(".note-save").click()
    expect(card.locator(".note-status")).to_have_text("Saved")
    screenshot(page, "e2e-after-call")
    card.locator("button.done").click()
    expect(card).to_have_count(0)

    # He calls again: the new card shows Anna's note in his history.
    stack.play(pass_no=2, speed=None)
    expect(card).to_have_count(1)
    expect(card.locator(".caller-name")).to_have_text("Ivan Petrov")
    expect(card.locator(".history-row .h-note").filter(has_text=NOTE).first).to_be_visible()
    screenshot(page, "e2e-second-call")
