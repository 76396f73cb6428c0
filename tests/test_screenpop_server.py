"""Screen-pop end to end: AMI simulator playing real captures -> the bridge's pipeline ->
the console app -> one WebSocket client per operator. Plus the hub's slow-socket rules."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel
from sqlalchemy import select

from bridge.calls.replay import replay_bytes
from bridge.service import BridgeService
from bridge.settings import load_settings
from bridge.simulator.server import AmiSimulator
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.builtin_tables import INTERACTIONS
from crm_adapters.contract import Contact, CrmAdapter, FinishedCall, Interaction, NewContact
from crm_adapters.lookup import LookupService
from crm_adapters.settings import CrmSettings
from screenpop.app import create_web_app
from screenpop.hub import Hub
from screenpop.messages import CallerView, Card, CardRemoved, Hello
from tests.capture_facts import FIXTURES, capture_bytes
from web.access import USER_KEY

# The auth contract keeps the user under the plain key "user" (request[USER_KEY]).


class TestUser(BaseModel):  # the shape of web.users.User
    __test__ = False
    username: str
    display_name: str
    role: str
    extensions: list[str]


USERS = {u.username: u for u in [
    TestUser(username="anna", display_name="Anna Operator", role="operator", extensions=["101"]),
    TestUser(username="boris", display_name="Boris Operator", role="operator", extensions=["102"]),
    TestUser(username="clara", display_name="Clara Operator", role="operator", extensions=["103"]),
    TestUser(username="denis", display_name="Denis Operator", role="operator", extensions=["104"]),
    TestUser(username="eve", display_name="Eve Reserve", role="operator", extensions=["105"]),
    TestUser(username="sam", display_name="Sam Supervisor", role="supervisor", extensions=["103", "104"]),
    TestUser(username="root", display_name="Admin", role="admin", extensions=[]),
]}


@web.middleware
async def stand_in_auth(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Stands in for web.auth: the user named in a test header."""
    request[USER_KEY] = USERS.get(request.headers.get("X-Test-User", ""))
    return await handler(request)


def call_id_of(capture: str) -> str:
    return replay_bytes(capture_bytes(capture))[0].call_id


async def until(predicate: Callable[[], Any], limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 (frames arrive on reader tasks)
            await asyncio.sleep(0.01)


class Browser:
    """One console tab: its WebSocket frames, as parsed JSON."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                self.frames.append(json.loads(msg.data))

    @property
    def hello(self) -> Hello:
        return Hello.model_validate(self.frames[0])

    def cards(self, call_id: str | None = None) -> list[Card]:
        return [Card.model_validate(f) for f in self.frames[1:]
                if f["type"] == "card" and (call_id is None or f["call_id"] == call_id)]

    def states(self, call_id: str) -> list[str]:
        """The card's states, repeats (in-place updates) collapsed."""
        out: list[str] = []
        for card in self.cards(call_id):
            if not out or out[-1] != card.state:
                out.append(card.state)
        return out

    async def close(self) -> None:
        await self.ws.close()
        await self.task


class Stack:
    """Simulator -> BridgeService -> console app (built-in CRM on the call log's SQLite)."""

    def __init__(self, tmp: Path, captures: list[str], *, speed: float, loop: bool = False,
                 extra_adapters: list[CrmAdapter] = (), budget_ms: int = 300) -> None:
        self.tmp, self.captures, self.speed, self.loop = tmp, captures, speed, loop
        self.extra_adapters, self.budget_ms = list(extra_adapters), budget_ms
        self.browsers: list[Browser] = []

    async def __aenter__(self) -> Stack:
        self.sim = AmiSimulator([FIXTURES / f"{n}.ami" for n in self.captures], speed=self.speed,
                                loop=self.loop)
        host, port = await self.sim.start()
        self.bridge = BridgeService(load_settings(
            database_url=f"sqlite+aiosqlite:///{self.tmp / 'cb.sqlite3'}",
            ami={"host": host, "port": port, "ping_interval": 5.0, "backoff_max": 0.5},
            http={"port": 0}))  # the bridge's own web app too: never a fixed port in tests
        self.builtin = BuiltinCrm(self.bridge.store, url_template="https://crm.local/contacts/{id}")
        self.lookup = LookupService([*self.extra_adapters, self.builtin],
                                    CrmSettings(budget_ms=self.budget_ms), call_log=self.bridge.store)
        await self.lookup.open()  # opens (and migrates) the call log's database
        self.app = create_web_app(self.bridge.pipeline, self.lookup, middlewares=[stand_in_auth])
        self.client = TestClient(TestServer(self.app))
        await self.client.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for browser in self.browsers:
            with contextlib.suppress(Exception):
                await browser.close()
        await self.client.close()
        await self.lookup.close()
        await self.bridge.stop()
        await self.sim.stop()

    async def browser(self, username: str) -> Browser:
        ws = await self.client.ws_connect("/ws/console", headers={"X-Test-User": username})
        browser = Browser(ws)
        self.browsers.append(browser)
        await until(lambda: browser.frames)
        return browser

    async def post(self, path: str, user: str, body: Any) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, str) else json.dumps(body)
        resp = await self.client.post(path, data=data, headers={"X-Test-User": user,
                                                                "Content-Type": "application/json"})
        return resp.status, await resp.json()


async def test_each_operator_gets_his_own_cards_at_ring_answer_transfer_hang_up(tmp_path: Path) -> None:
    names = ["queue_answered", "ringall_two_agents", "blind_transfer", "attended_transfer"]
    qa, ringall, blind, attended = (call_id_of(n) for n in names)
    async with Stack(tmp_path, names, speed=15) as stack:
        await stack.builtin.create_contact(NewContact(display_name="Ivan Petrov", company="Romashka",
                                                      phones=["+74951234567"], tags=["VIP"]))
        tabs = {u: await stack.browser(u) for u in ("anna", "boris", "clara", "denis", "eve", "sam", "root")}
        assert tabs["sam"].hello.extensions == ["103", "104"] and tabs["anna"].hello.cards == []
        await stack.bridge.start()

        # Anna writes a note while talking, before she transfers the caller to Clara.
        await until(lambda: "live" in tabs["anna"].states(blind))
        status, body = await stack.post("/api/notes", "anna", {"call_id": blind, "text": "Wants a refund"})
        assert status == 200 and body["card"]["note"] == "Wants a refund" and body["crm"] is None

        await until(lambda: tabs["clara"].states(attended)[-1:] == ["after_call"]
                    and tabs["boris"].states(attended)[-1:] == ["after_call"], limit=15)

        anna, boris, clara, denis = (tabs[u] for u in ("anna", "boris", "clara", "denis"))
        expected = {
            "anna": {qa: ["ringing", "live", "after_call"], blind: ["ringing", "live", "after_call"]},
            "boris": {attended: ["ringing", "live", "after_call"]},
            "clara": {ringall: ["ringing", "withdrawn"], blind: ["ringing", "live", "after_call"],
                      attended: ["ringing", "live", "after_call"]},
            "denis": {ringall: ["ringing", "live", "after_call"]},
            "eve": {}, "root": {},
        }
        for user, calls in expected.items():
            seen = {c.call_id for c in tabs[user].cards()}
            assert seen == set(calls), user
            assert {cid: tabs[user].states(cid) for cid in seen} == calls, user
            assert {c.operator for c in tabs[user].cards()} <= set(USERS[user].extensions)
        # The supervisor bound to 103 and 104 sees exactly Clara's and Denis's cards.
        assert sorted((c.card_id, c.version) for c in tabs["sam"].cards()) == sorted(
            (c.card_id, c.version) for c in clara.cards() + denis.cards())

        # The CRM knew the first caller: his card popped with the CRM's name (the ring waited
        # for the lookup's budget), VIP, and a link to his record.
        first = anna.cards(qa)[0]
        assert first.state == "ringing" and first.caller.lookup == "found"
        assert (first.caller.name, first.caller.company, first.caller.vip) == ("Ivan Petrov", "Romashka",
                                                                               True)
        assert first.caller.crm_url and first.caller.crm_url.startswith("https://crm.local/contacts/")
        unknown = denis.cards(ringall)[-1].caller
        assert (unknown.lookup, unknown.name, unknown.number_display) == ("not_found", "Олена Коваль",
                                                                          "+380 44 123 4567")
        assert clara.cards(ringall)[-1].state_reason == "answered by Denis Operator (104)"
        assert anna.cards(blind)[-1].state_reason == "transferred to Clara Operator (103)"
        for call_id, source, kind in ((blind, "101", "blind"), (attended, "102", "attended")):
            transfer = clara.cards(call_id)[-1].transfer
            assert transfer is not None and (transfer.kind, transfer.from_operator) == (kind, source)
        assert clara.cards(blind)[-1].transfer.note == "Wants a refund"
        assert clara.cards(blind)[-1].transfer.from_name == "Anna Operator"
        assert boris.cards(attended)[-1].transfer is None
        # Versions only grow; never two cards for one ring (one card id per call and phone).
        for tab in tabs.values():
            by_id: dict[str, list[int]] = {}
            for card in tab.cards():
                by_id.setdefault(card.card_id, []).append(card.version)
            assert all(v == sorted(set(v)) for v in by_id.values())


async def test_a_reconnecting_browser_gets_the_call_in_progress_back(tmp_path: Path) -> None:
    call_id = call_id_of("queue_answered")
    async with Stack(tmp_path, ["queue_answered"], speed=3) as stack:
        first_tab = await stack.browser("anna")
        second_tab = await stack.browser("anna")  # several tabs are fine
        await stack.bridge.start()
        await until(lambda: first_tab.states(call_id) == ["ringing", "live"])
        live = first_tab.cards(call_id)[-1]
        await first_tab.close()  # network blip / page reload
        again = await stack.browser("anna")
        assert [(c.card_id, c.state) for c in again.hello.cards] == [(live.card_id, "live")]
        assert again.hello.cards[0].version >= live.version
        assert again.hello.user == "anna" and again.hello.role == "operator"
        await until(lambda: again.states(call_id) == ["after_call"])
        await until(lambda: second_tab.states(call_id) == ["ringing", "live", "after_call"])
        # ... and not a second time on a tab that already had it.
        assert [c.state for c in again.cards(call_id)] == ["after_call"]
        other = await stack.browser("boris")
        assert other.hello.cards == []


async def test_notes_contacts_and_dismiss_endpoints(tmp_path: Path) -> None:
    async with Stack(tmp_path, ["direct_call"], speed=4, loop=True) as stack:
        boris = await stack.browser("boris")
        await stack.bridge.start()
        await until(lambda: boris.cards() and boris.cards()[-1].state == "live")
        card = boris.cards()[-1]
        call_id = card.call_id
        assert card.caller.lookup == "not_found" and card.caller.name == "ООО Ромашка"

        # Not his call / no such call / bad input.
        assert (await stack.post("/api/notes", "anna", {"call_id": call_id, "text": "x"}))[0] == 403
        assert (await stack.post("/api/contacts", "anna", {"call_id": call_id, "name": "X"}))[0] == 403
        assert (await stack.post("/api/notes", "boris", {"call_id": "nope", "text": "x"}))[0] == 404
        status, body = await stack.post("/api/notes", "boris", {"call_id": call_id, "text": "x" * 4001})
        assert status == 400 and "text" in body["message"] and body["error"] == "bad_request"
        status, body = await stack.post("/api/notes", "boris", {"text": "no call"})
        assert status == 400 and "call_id" in body["message"]
        assert (await stack.post("/api/notes", "boris", "{not json"))[0] == 400
        assert (await stack.post("/api/contacts", "boris", {"call_id": call_id, "name": "  "}))[0] == 400
        assert (await stack.post("/api/cards/dismiss", "boris", {"call_id": call_id}))[0] == 409  # still live
        resp = await stack.client.post("/api/notes", json={"call_id": call_id, "text": "x"})
        assert resp.status == 401

        status, body = await stack.post("/api/notes", "boris", {"call_id": call_id, "text": "Call back at 5"})
        assert status == 200 and body["card"]["note"] == "Call back at 5"
        await until(lambda: boris.cards(call_id)[-1].note == "Call back at 5")
        status, body = await stack.post("/api/contacts", "boris",
                                        {"call_id": call_id, "name": "Roman Ivanov", "company": "Romashka"})
        assert status == 200 and body["contact"]["display_name"] == "Roman Ivanov"
        await until(lambda: boris.cards(call_id)[-1].caller.lookup == "found")
        caller = boris.cards(call_id)[-1].caller
        assert (caller.name, caller.company, caller.contact_source) == ("Roman Ivanov", "Romashka", "builtin")
        assert (await stack.post("/api/contacts", "boris", {"call_id": call_id, "name": "Twice"}))[0] == 409

        # After the hang-up the note goes to the CRM with the call.
        await until(lambda: boris.states(call_id)[-1] == "after_call")
        status, body = await stack.post("/api/notes", "boris", {"call_id": call_id, "text": "Call back at 6"})
        assert status == 200 and body["crm"]["adapter"] == "builtin" and body["crm"]["error"] is None
        async with stack.bridge.store.engine.connect() as conn:
            i = INTERACTIONS.c
            rows = (await conn.execute(select(i.kind, i.summary, i.call_id, i.operator, i.number)
                                       .order_by(i.id))).all()
        assert [tuple(r) for r in rows] == [("note", "Call back at 6", None, "102", "+74997001122"),
                                            ("call", "Call back at 6", call_id, "102", "+74997001122")]

        status, body = await stack.post("/api/cards/dismiss", "boris", {"call_id": call_id})
        assert status == 200 and body["removed"] is True
        await until(lambda: any(f["type"] == "card_removed" for f in boris.frames))
        assert CardRemoved.model_validate(boris.frames[-1]).card_id == card.card_id

        # The next call from him pops with his name at once, with the note in his history.
        await until(lambda: any(c.call_id != call_id for c in boris.cards()), limit=10)
        nxt = next(c for c in boris.cards() if c.call_id != call_id)
        assert nxt.state == "ringing" and nxt.caller.name == "Roman Ivanov" and nxt.caller.lookup == "found"
        await until(lambda: any(h.summary == "Call back at 6"
                                for c in boris.cards(nxt.call_id) for h in c.history))


class SlowCrm(CrmAdapter):
    name = "slowcrm"

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def find_contact(self, number: str) -> Contact | None:
        await asyncio.sleep(self.delay)
        return Contact(id="s1", display_name="Slow Sally", phones=[number], source=self.name, tags=["VIP"])

    async def history(self, contact: Contact, limit: int = 20) -> list[Interaction]:
        return []

    async def create_contact(self, new: NewContact) -> Contact:
        raise NotImplementedError

    async def log_call(self, call: FinishedCall) -> str | None:
        return None


async def test_a_crm_slower_than_the_budget_updates_the_card_in_place(tmp_path: Path) -> None:
    call_id = call_id_of("queue_answered")
    async with Stack(tmp_path, ["queue_answered"], speed=4, extra_adapters=[SlowCrm(0.4)],
                     budget_ms=100) as stack:
        anna = await stack.browser("anna")
        await stack.bridge.start()
        await until(lambda: any(c.caller.lookup == "found" for c in anna.cards(call_id)))
        cards = anna.cards(call_id)
        assert cards[0].state == "ringing" and cards[0].caller.lookup == "pending"
        assert cards[0].caller.name == "Иван Петров"  # the caller id's name meanwhile
        found = next(c for c in cards if c.caller.lookup == "found")
        assert found.card_id == cards[0].card_id and found.version > cards[0].version
        caller = found.caller
        assert (caller.name, caller.vip, caller.contact_source) == ("Slow Sally", True, "slowcrm")
        await until(lambda: anna.states(call_id)[-1] == "after_call")
        assert anna.cards(call_id)[-1].caller.name == "Slow Sally"


# -- the hub alone -------------------------------------------------------------------------


class StuckSocket:
    """A browser that stops reading: every send blocks until `release`."""

    def __init__(self, block: bool = True) -> None:
        self.sent: list[str] = []
        self.release = asyncio.Event()
        if not block:
            self.release.set()
        self.closed = asyncio.Event()
        self.close_code: int | None = None

    async def send_str(self, text: str) -> None:
        await self.release.wait()
        self.sent.append(text)

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        self.close_code = code
        self.closed.set()
        return True

    def __aiter__(self) -> StuckSocket:
        return self

    async def __anext__(self) -> Any:
        await self.closed.wait()
        raise StopAsyncIteration


def _card(call: str, op: str, version: int, state: str = "ringing") -> Card:
    return Card(card_id=f"{call}:{op}", version=version, call_id=call, operator=op, state=state,
                caller=CallerView(number_display="Unknown number"), entered_at=0.0)


def _hello(user: TestUser) -> Hello:
    return Hello(user=user.username, display_name=user.display_name, role=user.role,
                 extensions=user.extensions, cards=[], server_time=0.0)


async def test_hub_drops_a_stuck_browser_without_ever_blocking_the_pipeline() -> None:
    hub = Hub(queue_size=8, send_timeout=0.3)
    anna = USERS["anna"]
    stuck, fine = StuckSocket(), StuckSocket(block=False)
    stuck_conn = hub.attach(stuck, anna, _hello(anna))
    fine_conn = hub.attach(fine, anna, _hello(anna))
    runs = [asyncio.create_task(c.run()) for c in (stuck_conn, fine_conn)]
    await asyncio.sleep(0.01)
    slowest = 0.0
    for n in range(200):
        started = time.perf_counter()
        hub.push([_card(f"c{n}", "101", 1)])
        slowest = max(slowest, time.perf_counter() - started)
        if n % 4 == 3:
            await asyncio.sleep(0)  # the pipeline goes on; the healthy tab's writer keeps up
    assert slowest < 0.01  # push never waits on a socket
    assert stuck_conn.closing is not None and hub.dropped == 1
    await asyncio.wait_for(stuck.closed.wait(), 2.0)
    await until(lambda: len(fine.sent) == 201)  # the healthy tab got everything
    assert fine_conn.closing is None
    hub.detach(stuck_conn)
    assert hub.connections("101") == [fine_conn]
    await fine.close()
    await asyncio.gather(*runs)


async def test_hub_sends_the_newest_version_and_nothing_of_a_ring_over_before_it_left() -> None:
    hub = Hub()
    sam = USERS["sam"]
    sock = StuckSocket()
    conn = hub.attach(sock, sam, _hello(sam))
    run = asyncio.create_task(conn.run())
    hub.push([_card("a", "103", 1), _card("a", "103", 2), _card("a", "103", 3, "live"),
              _card("b", "104", 1), _card("b", "104", 2, "withdrawn"),  # over before it was sent
              _card("c", "101", 1)])  # not his extension
    sock.release.set()
    await until(lambda: len(sock.sent) == 2)
    await asyncio.sleep(0.05)
    assert [json.loads(t)["type"] for t in sock.sent] == ["hello", "card"]
    assert (json.loads(sock.sent[1])["card_id"], json.loads(sock.sent[1])["version"]) == ("a:103", 3)
    hub.push([CardRemoved(card_id="a:103"), CardRemoved(card_id="b:104")])
    await until(lambda: len(sock.sent) == 3)
    await asyncio.sleep(0.05)
    assert json.loads(sock.sent[2]) == {"type": "card_removed", "card_id": "a:103"}
    await sock.close()
    await run



async def test_hub_tells_a_withdrawn_card_who_answered_after_all() -> None:
    """A ring that ended ("not answered") and then "answered by Boris": the second withdrawn
    frame reaches the browser that showed the card; one never shown stays unsent."""
    hub = Hub()
    anna = USERS["anna"]
    sock = StuckSocket(block=False)
    conn = hub.attach(sock, anna, _hello(anna))
    run = asyncio.create_task(conn.run())
    hub.push([_card("a", "101", 1)])
    await until(lambda: len(sock.sent) == 2)
    hub.push([_card("a", "101", 2, "withdrawn")])
    await until(lambda: len(sock.sent) == 3)
    hub.push([_card("a", "101", 3, "withdrawn"), _card("z", "101", 1, "withdrawn")])
    await until(lambda: len(sock.sent) == 4)
    await asyncio.sleep(0.05)
    assert [(json.loads(t)["card_id"], json.loads(t)["version"]) for t in sock.sent[1:]] == [
        ("a:101", 1), ("a:101", 2), ("a:101", 3)]
    await sock.close()
    await run

# -- the page, and the real auth in front of it ------------------------------------------------


async def test_console_page_and_assets_under_a_strict_csp(tmp_path: Path) -> None:
    app = create_web_app(None, LookupService([]), middlewares=[stand_in_auth])
    async with TestClient(TestServer(app)) as client:
        page = await client.get("/console", headers={"X-Test-User": "anna"})
        assert page.status == 200 and "console.js" in await page.text()
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert (await client.get("/static/console.js", headers={"X-Test-User": "anna"})).status == 200
        assert (await client.get("/static/..%2Fapp.py", headers={"X-Test-User": "anna"})).status == 404
        assert (await client.get("/console")).status == 401  # nobody signed in
    bare = create_web_app(None, LookupService([]), middlewares=[stand_in_auth], static_dir=tmp_path)
    async with TestClient(TestServer(bare)) as client:
        page = await client.get("/console", headers={"X-Test-User": "anna"})
        assert page.status == 200 and "not installed" in await page.text()


async def test_through_the_real_auth_login_csrf_and_roles(tmp_path: Path) -> None:
    from argon2 import PasswordHasher

    from bridge.call_log.store import CallLogStore
    from bridge.calls.pipeline import CallPipeline
    from bridge.calls.replay import capture_events
    from web import auth_http
    from web.auth import unguarded_routes
    from web.users import UserStore

    store = CallLogStore(f"sqlite+aiosqlite:///{tmp_path / 'cb.sqlite3'}")
    users = UserStore(store, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    await users.open()
    for name, ext in (("anna", "101"), ("boris", "102")):
        await users.add(name, "correct horse battery", role="operator", display_name=name.title(),
                        extensions=[ext])
    lookup = LookupService([BuiltinCrm(store)])
    await lookup.open()
    pipeline = CallPipeline()
    app = create_web_app(pipeline, lookup, user_store=users, auth_options={"secure_cookie": False})
    assert auth_http.setup_auth is not None and unguarded_routes(app) == []
    clients = {u: TestClient(TestServer(app)) for u in ("anna", "boris")}
    try:
        anon = clients["anna"]
        await anon.start_server()
        assert (await anon.get("/ws/console")).status == 401
        assert (await anon.post("/api/notes", json={"call_id": "x", "text": "y"})).status == 401
        csrf = {}
        for name, client in clients.items():
            if client is not anon:
                await client.start_server()
            form = await (await client.get("/login")).text()
            token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            resp = await client.post("/login", data={"username": name, "password": "correct horse battery",
                                                     "csrf_token": token}, allow_redirects=False)
            assert resp.status == 303
            csrf[name] = (await (await client.get("/api/session")).json())["csrf_token"]
        ws = await clients["anna"].ws_connect("/ws/console")
        browser = Browser(ws)
        await until(lambda: browser.frames)
        assert (browser.hello.user, browser.hello.extensions) == ("anna", ["101"])
        for message in capture_events(capture_bytes("queue_answered")):
            if message.is_event:
                pipeline.feed(message)
        call_id = call_id_of("queue_answered")
        await until(lambda: browser.states(call_id)[-1:] == ["after_call"])
        note = {"call_id": call_id, "text": "Sent the invoice"}
        assert (await clients["anna"].post("/api/notes", json=note)).status == 403  # no CSRF token
        refused = await clients["boris"].post("/api/notes", json=note,
                                              headers={"X-CSRF-Token": csrf["boris"]})
        assert refused.status == 403 and "did not ring" in (await refused.json())["message"]
        saved = await clients["anna"].post("/api/notes", json=note, headers={"X-CSRF-Token": csrf["anna"]})
        assert saved.status == 200 and (await saved.json())["card"]["note"] == "Sent the invoice"
        await browser.close()
    finally:
        for client in clients.values():
            await client.close()
        await lookup.close()
        await users.close()
        await store.close()
