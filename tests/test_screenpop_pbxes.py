"""The console with several PBXes (issue 15): an operator's extension is his PBX's, so his
cards, his queue state, the PBX's clock and his own actions are that PBX's only. Two
operators with extension 101 on PBXes "a" and "b" never see each other's cards; a user
stored before PBX ids ("main") is the first PBX's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.ami.message import AmiMessage
from bridge.call_log.store import CallLogStore
from bridge.calls.pipeline import CallPipeline
from bridge.calls.replay import capture_events
from bridge.calls.tracker import CallTracker
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.lookup import LookupService
from screenpop.app import create_web_app
from screenpop.console_http import SCREENPOP_KEY
from screenpop.hub import BROADCAST_STEP, Hub
from screenpop.messages import CallerView, Card, CardRemoved, Hello
from screenpop.screenpop_service import ScreenPopService
from tests.capture_facts import capture_bytes
from tests.test_screenpop_console_actions import FakePbx
from tests.test_screenpop_server import Browser, StuckSocket, call_id_of, until
from web.access import USER_KEY
from web.audit_log import AuditLog
from web.users import User

USERS = {u.username: u for u in [
    User(username="ann", display_name="Ann on A", role="operator", extensions=["101"], pbx="a"),
    User(username="bob", display_name="Bob on B", role="operator", extensions=["101"], pbx="b"),
    User(username="old", display_name="Stored before PBX ids", role="operator", extensions=["101"]),
    User(username="gone", display_name="On a PBX no longer configured", role="operator",
         extensions=["101"], pbx="zz"),
]}


@web.middleware
async def stand_in_auth(request: web.Request, handler: Callable) -> web.StreamResponse:
    request[USER_KEY] = USERS.get(request.headers.get("X-Test-User", ""))
    return await handler(request)


class PbxSpy(FakePbx):
    """send_action that also records which PBX each action was for."""

    def __init__(self) -> None:
        super().__init__()
        self.pbxes: list[str | None] = []

    async def __call__(self, action: dict[str, str], **kw: Any) -> AmiMessage:
        self.pbxes.append(kw.get("pbx"))
        return await super().__call__(action)


def two_pbxes() -> CallPipeline:
    """As BridgeService makes it: call ids prefixed on every PBX but the first."""
    return CallPipeline(trackers=[CallTracker(pbx="a"), CallTracker(pbx="b", id_prefix="b:")])


def feed(pipeline: CallPipeline, capture: str, pbx: str) -> None:
    for message in capture_events(capture_bytes(capture)):
        if message.is_event:
            message.pbx = pbx  # what that PBX's link does
            pipeline.feed(message)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CallLogStore]:
    s = CallLogStore(f"sqlite+aiosqlite:///{tmp_path / 'cb.sqlite3'}")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def console(store: CallLogStore) -> AsyncIterator[tuple[TestClient, ScreenPopService, CallPipeline,
                                                              PbxSpy]]:
    lookup = LookupService([BuiltinCrm(store)])
    await lookup.open()
    pipeline, pbx = two_pbxes(), PbxSpy()
    app = create_web_app(pipeline, lookup, middlewares=[stand_in_auth], send_action=pbx, store=store)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, app[SCREENPOP_KEY], pipeline, pbx
    finally:
        await client.close()
        await lookup.close()


async def browser(client: TestClient, user: str) -> Browser:
    tab = Browser(await client.ws_connect("/ws/console", headers={"X-Test-User": user}))
    await until(lambda: tab.frames)
    return tab


async def test_two_operators_with_one_extension_on_two_pbxes_each_get_only_their_own_cards(
        console: tuple[TestClient, ScreenPopService, CallPipeline, PbxSpy]) -> None:
    client, _, pipeline, _ = console
    tabs = {u: await browser(client, u) for u in ("ann", "bob", "old")}
    assert (tabs["ann"].hello.pbx, tabs["bob"].hello.pbx, tabs["old"].hello.pbx) == ("a", "b", "a")
    assert tabs["ann"].hello.console is not None and tabs["ann"].hello.console.pbxes == ["a", "b"]
    call_a = call_id_of("queue_answered")
    call_b = f"b:{call_a}"  # the same Uniqueids on the other Asterisk
    feed(pipeline, "queue_answered", "b")
    await until(lambda: tabs["bob"].states(call_b)[-1:] == ["after_call"])
    feed(pipeline, "queue_answered", "a")
    await until(lambda: tabs["ann"].states(call_a)[-1:] == ["after_call"]
                and tabs["old"].states(call_a)[-1:] == ["after_call"])
    assert {(c.call_id, c.pbx, c.operator) for c in tabs["ann"].cards()} == {(call_a, "a", "101")}
    assert {(c.call_id, c.pbx, c.operator) for c in tabs["bob"].cards()} == {(call_b, "b", "101")}
    assert tabs["old"].cards() == tabs["ann"].cards()  # "main": the first PBX's 101

    # Notes and dismissals by call id, as with one PBX: his 101 is not the other PBX's 101.
    headers = {"X-Test-User": "bob"}
    refused = await client.post("/api/notes", json={"call_id": call_a, "text": "not mine"}, headers=headers)
    assert refused.status == 403 and "did not ring" in (await refused.json())["message"]
    saved = await client.post("/api/notes", json={"call_id": call_b, "text": "mine"}, headers=headers)
    assert saved.status == 200 and (await saved.json())["card"]["note"] == "mine"
    assert (await client.post("/api/cards/dismiss", json={"call_id": call_b}, headers=headers)).status == 200
    await until(lambda: any(f["type"] == "card_removed" for f in tabs["bob"].frames))
    assert not any(f["type"] == "card_removed" for f in tabs["ann"].frames)
    # A reconnecting page gets its own PBX's cards back, no other.
    again = await browser(client, "ann")
    assert [(c.call_id, c.pbx) for c in again.hello.cards] == [(call_a, "a")]
    for tab in (*tabs.values(), again):
        await tab.close()


async def test_his_queue_state_and_his_actions_are_his_pbxs(
        console: tuple[TestClient, ScreenPopService, CallPipeline, PbxSpy], store: CallLogStore) -> None:
    client, service, _, pbx = console
    ann, bob = await browser(client, "ann"), await browser(client, "bob")
    pause = AmiMessage.from_dict({"Event": "QueueMemberPause", "Queue": "support", "Paused": "1",
                                  "Interface": "Local/101@agents/n", "PausedReason": "Lunch"})
    pause.pbx = "b"
    service.on_raw(pause)
    await until(lambda: any(f["type"] == "agent_state" for f in bob.frames))
    assert service.hello(USERS["bob"]).agent.paused  # type: ignore[union-attr]
    assert not service.hello(USERS["ann"]).agent.known  # type: ignore[union-attr]
    member = AmiMessage.from_dict({"Event": "QueueMember", "Queue": "support", "Paused": "0",
                                   "Location": "Local/101@agents/n"})
    member.pbx = "a"
    service.on_resync([], [member], 0.0)  # PBX a's QueueStatus after its (re)connect
    await until(lambda: any(f["type"] == "agent_state" for f in ann.frames))
    assert [f["paused"] for f in bob.frames if f["type"] == "agent_state"] == [True]
    assert [f["paused"] for f in ann.frames if f["type"] == "agent_state"] == [False]

    for user, expected in (("bob", "b"), ("ann", "a"), ("old", "a")):
        headers = {"X-Test-User": user}
        assert (await client.post("/api/console/pause", json={"paused": True, "reason": "Lunch"},
                                  headers=headers)).status == 200
        assert (await client.post("/api/console/dial", json={"number": "+74951234567"},
                                  headers=headers)).status == 200
        assert pbx.pbxes[-2:] == [expected, expected], user
    sent = len(pbx.actions)
    resp = await client.post("/api/console/dial", json={"number": "+74951234567"},
                             headers={"X-Test-User": "gone"})
    assert resp.status == 409 and "not configured" in (await resp.json())["message"]
    assert len(pbx.actions) == sent
    assert service.hello(USERS["gone"]).console.can_dial is False  # type: ignore[union-attr]
    audit = await AuditLog(store).entries(username="bob")
    assert {e.detail.get("pbx_id") for e in audit} == {"b"}
    await ann.close()
    await bob.close()


def _card(call: str, pbx: str, version: int = 1) -> Card:
    return Card(card_id=f"{call}:101", version=version, call_id=call, pbx=pbx, operator="101",
                state="ringing", caller=CallerView(number_display="Unknown number"), entered_at=0.0)


async def test_the_hub_finds_connections_by_pbx_and_extension() -> None:
    hub = Hub()
    socks = {u: StuckSocket(block=False) for u in ("ann", "bob")}
    hello = Hello(user="x", display_name="x", role="operator", extensions=["101"], cards=[], server_time=0.0)
    conns = {u: hub.attach(socks[u], USERS[u], hello) for u in socks}
    assert (conns["ann"].pbx, conns["bob"].pbx) == ("a", "b")
    assert hub.connections("101", pbx="b") == [conns["bob"]]
    tasks = [asyncio.create_task(conn.run()) for conn in conns.values()]
    hub.push([_card("c1", "a"), _card("b:c1", "b")])
    await until(lambda: len(socks["ann"].sent) == 2 and len(socks["bob"].sent) == 2)
    hub.push([CardRemoved(card_id="b:c1:101", pbx="b")])
    hub.send("\0agent", '{"type": "agent_state"}', extension="101", pbx="a")
    hub.send("\0clock", '{"type": "clock"}', pbx="b")
    await until(lambda: len(socks["ann"].sent) == 3 and len(socks["bob"].sent) == 4)
    await asyncio.sleep(0.05)
    kinds = {u: [json.loads(t)["type"] for t in s.sent] for u, s in socks.items()}
    assert kinds == {"ann": ["hello", "card", "agent_state"],
                     "bob": ["hello", "card", "card_removed", "clock"]}
    assert [json.loads(t).get("pbx") for t in socks["ann"].sent[1:2] + socks["bob"].sent[1:2]] == ["a", "b"]
    # The removal names no PBX: the hub routes by it, the page needs only the card id.
    assert json.loads(socks["bob"].sent[2]) == {"type": "card_removed", "card_id": "b:c1:101"}
    for sock in socks.values():
        await sock.close()
    await asyncio.gather(*tasks)


async def test_frames_that_are_no_card_go_out_a_step_at_a_time_in_order_cards_at_once() -> None:
    hub = Hub()
    hello = Hello(user="x", display_name="x", role="operator", extensions=["101"], cards=[], server_time=0.0)
    conns = [hub.attach(StuckSocket(block=False), USERS["bob"], hello) for _ in range(250)]
    waiting = lambda: [c._pending.get("\0clock", ("", None))[0] for c in conns]  # noqa: E731
    hub.send("\0clock", "old", pbx="b")
    assert waiting().count("old") == BROADCAST_STEP  # the rest on the next turns of the loop
    hub.send("\0clock", "new", pbx="b")  # queued behind: "old" never overtakes it
    hub.push([_card("b:c1", "b")])  # a card meanwhile goes to its pages at once
    assert all("b:c1:101" in c._pending for c in conns)
    for _ in range(5):
        await asyncio.sleep(0)
    assert waiting() == ["new"] * 250
