"""The console end to end: AMI simulator -> the real bridge (its web app) -> Chromium.

`BridgeService` runs as in production: call log, CRM lookup (the built-in CRM) and the
console's web app with the real auth, on SQLite. The built-in CRM knows +74951234567 as
"Ivan Petrov" (the PBX's caller-id name is "Иван Петров", so a card saying "Ivan Petrov"
came from the CRM). Anna logs in through the real login page as the operator bound to
extension 101; only then does "the PBX" (the simulator, on the port the bridge keeps
trying) come up and play queue_answered.ami, relabelled to today's clock: the queue rings
101, Anna answers. The note she types on the card is in the caller's history when he
calls again: the PBX restarts and plays the same capture relabelled as a new call.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from playwright.sync_api import expect

from bridge.call_log.store import CallLogStore
from bridge.service import BridgeService
from bridge.settings import load_settings
from bridge.simulator.relabel import relabel
from bridge.simulator.server import AmiSimulator, load_events
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.contract import NewContact
from tests.browser.harness import LoopThread, screenshot
from web.users import UserStore

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
  new MutationObserver(note).observe(document.body,  // the ringing strip and the board
    {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ConsoleStack:
    """The bridge with its web app; the PBX (a simulator) comes and goes."""

    loop_thread: LoopThread
    db: Path
    ami_port: int = 0
    base_url: str = ""
    bridge: BridgeService | None = None
    pbx: AmiSimulator | None = None

    @property
    def url(self) -> str:
        return f"sqlite+aiosqlite:///{self.db}"

    def start(self) -> None:
        self.loop_thread.run(self._start())

    def stop(self) -> None:
        self.loop_thread.run(self._stop())

    def play(self, pass_no: int, speed: float | None) -> None:
        """(Re)start the PBX replaying the capture as a new call (`pass_no` relabels it),
        its clock moved to now; the bridge reconnects to it by itself."""
        self.loop_thread.run(self._play(pass_no, speed))

    async def _seed(self) -> None:
        store = CallLogStore(self.url)
        await store.open()
        try:
            await BuiltinCrm(store).create_contact(
                NewContact(
                    display_name="Ivan Petrov", phones=[CALLER], company="Romashka LLC", tags=["wholesale"]
                )
            )
            # A cheap hash to seed with: the login is what is tested here, not argon2's cost.
            users = UserStore(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
            await users.add(
                "anna", PASSWORD, role="operator", display_name="Anna Operator", extensions=["101"]
            )
        finally:
            await store.close()

    async def _start(self) -> None:
        await self._seed()
        self.ami_port = free_port()  # nobody listens there until play()
        settings = load_settings(
            database_url=self.url,
            ami={"host": "127.0.0.1", "port": self.ami_port, "secret": "callbridge", "backoff_max": 0.5},
            http={"host": "127.0.0.1", "port": 0, "secure_cookie": False},
        )
        self.bridge = BridgeService(settings)
        await self.bridge.start()
        assert self.bridge.web_address is not None
        host, port = self.bridge.web_address
        self.base_url = f"http://{host}:{port}"

    async def _play(self, pass_no: int, speed: float | None) -> None:
        if self.pbx is not None:
            await self.pbx.stop()
        raw = CAPTURE.read_bytes()
        first = next(e.timestamp for e in load_events([raw]) if e.timestamp is not None)
        self.pbx = AmiSimulator([relabel(raw, pass_no, time.time() - first)], speed=speed, port=self.ami_port)
        await self.pbx.start()

    async def _stop(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop()
        if self.pbx is not None:
            await self.pbx.stop()


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
