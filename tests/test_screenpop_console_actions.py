"""The operator's own console actions and what the console adds around cards: pause/unpause in
his queues (and his state from the PBX's events), click-to-dial, CRM search, the wrap-up code
kept with the call, no after-call cards from before the login, the PBX's clock offset."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bridge.ami.message import AmiMessage
from bridge.call_log.store import CallLogStore
from bridge.calls.pipeline import CallPipeline
from bridge.calls.replay import capture_events
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.builtin_tables import INTERACTIONS
from crm_adapters.contract import Contact, CrmAdapter, FinishedCall, Interaction, NewContact
from crm_adapters.lookup import LookupService
from screenpop.app import create_web_app
from screenpop.card_actions import ScreenPopError
from screenpop.console_http import SCREENPOP_KEY
from screenpop.screenpop_service import ScreenPopService
from screenpop.settings import ConsoleSettings
from tests.capture_facts import capture_bytes
from tests.test_screenpop_server import USERS, call_id_of, stand_in_auth
from web.audit_log import AuditLog

ANNA = {"X-Test-User": "anna"}


class FakePbx:
    """send_action as the AMI client's: records each action, answers as told."""

    def __init__(self) -> None:
        self.actions: list[dict[str, str]] = []
        self.reply = {"Response": "Success", "Message": "Interface paused successfully"}

    async def __call__(self, action: dict[str, str], **_: Any) -> AmiMessage:
        self.actions.append(dict(action))
        return AmiMessage.from_dict(self.reply)


class Silent(CrmAdapter):  # an adapter without search
    name = "silent"
    can_create_contacts = False

    async def find_contact(self, number: str) -> Contact | None:
        return None

    async def history(self, contact: Contact, limit: int = 20) -> list[Interaction]:
        return []

    async def create_contact(self, new: NewContact) -> Contact:
        raise NotImplementedError

    async def log_call(self, call: FinishedCall) -> str | None:
        return None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CallLogStore]:
    s = CallLogStore(f"sqlite+aiosqlite:///{tmp_path / 'cb.sqlite3'}")
    await s.open()
    yield s
    await s.close()


async def console(store: CallLogStore, pbx: FakePbx | None, adapters: list[CrmAdapter] | None = None,
                  **settings: Any) -> tuple[TestClient, ScreenPopService]:
    lookup = LookupService(adapters if adapters is not None else [BuiltinCrm(store)])
    await lookup.open()
    app = create_web_app(CallPipeline(), lookup, middlewares=[stand_in_auth], send_action=pbx, store=store,
                         console=ConsoleSettings(**settings))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, app[SCREENPOP_KEY]


async def test_pause_and_unpause_in_every_queue_with_a_reason_audited(store: CallLogStore) -> None:
    pbx = FakePbx()
    client, service = await console(store, pbx, member_interface="PJSIP/{ext}")
    try:
        hello = service.hello(USERS["anna"])
        assert hello.console is not None and hello.console.can_pause and hello.console.can_dial
        assert hello.console.pause_reasons == ["Break", "Lunch", "Training", "Back office"]
        assert hello.agent is not None and not hello.agent.known

        bad = await client.post("/api/console/pause", json={"paused": True, "reason": "Nap"}, headers=ANNA)
        assert bad.status == 400 and "Lunch" in (await bad.json())["message"] and pbx.actions == []
        ok = await client.post("/api/console/pause", json={"paused": True, "reason": "Lunch"}, headers=ANNA)
        assert ok.status == 200
        assert pbx.actions == [{"Action": "QueuePause", "Interface": "PJSIP/101", "Paused": "true",
                                "Reason": "Lunch"}]
        await client.post("/api/console/pause", json={"paused": False}, headers=ANNA)
        assert pbx.actions[-1] == {"Action": "QueuePause", "Interface": "PJSIP/101", "Paused": "false"}
        pbx.reply = {"Response": "Error", "Message": "Interface not found"}
        refused = await client.post("/api/console/pause", json={"paused": True, "reason": "Break"},
                                    headers=ANNA)
        assert refused.status == 502 and "Interface not found" in (await refused.json())["message"]
        audit = await AuditLog(store).entries(username="anna")
        assert sorted((e.action, e.target, e.result, e.detail.get("reason")) for e in audit) == [
            ("console.pause", "101", "error", "Break"), ("console.pause", "101", "ok", "Lunch"),
            ("console.unpause", "101", "ok", None)]
        assert (await client.post("/api/console/pause", json={"paused": False},
                                  headers={"X-Test-User": "root"})).status == 403  # no extension
    finally:
        await client.close()


async def test_his_own_state_comes_from_the_queue_member_events(store: CallLogStore) -> None:
    client, service = await console(store, FakePbx())
    try:
        ws = await client.ws_connect("/ws/console", headers=ANNA)
        hello = json.loads((await ws.receive()).data)
        assert hello["agent"]["known"] is False
        pause = {"Event": "QueueMemberPause", "Queue": "support", "Interface": "Local/101@agents/n",
                 "Paused": "1", "PausedReason": "Lunch"}
        service.on_raw(AmiMessage.from_dict({**pause, "Interface": "Local/102@agents/n"}))  # Boris: not hers
        service.on_raw(AmiMessage.from_dict(pause))
        frame = json.loads((await ws.receive(timeout=5)).data)
        assert frame == {"type": "agent_state", "extension": "101", "known": True, "paused": True,
                         "reason": "Lunch",
                         "queues": [{"queue": "support", "paused": True, "reason": "Lunch"}]}
        service.on_raw(AmiMessage.from_dict({**pause, "Queue": "sales", "Paused": "0", "PausedReason": ""}))
        frame = json.loads((await ws.receive(timeout=5)).data)
        assert frame["paused"] is False and [q["paused"] for q in frame["queues"]] == [False, True]
        assert service.hello(USERS["anna"]).agent == service.agents.state("101")
        # After a (re)connect the QueueStatus answer's QueueMember items set it at once.
        member = {"Event": "QueueMember", "Queue": "support", "Location": "Local/101@agents/n",
                  "Paused": "0", "PausedReason": ""}
        service.on_resync([], [AmiMessage.from_dict(member),
                               AmiMessage.from_dict({**member, "Queue": "sales"})], 0.0)
        frame = json.loads((await ws.receive(timeout=5)).data)
        assert frame["paused"] is False and [q["paused"] for q in frame["queues"]] == [False, False]
        await ws.close()
    finally:
        await client.close()


async def test_click_to_dial_rings_his_phone_first_and_is_audited(store: CallLogStore) -> None:
    pbx = FakePbx()
    pbx.reply = {"Response": "Success", "Message": "Originate successfully queued"}
    client, _ = await console(store, pbx, originate_channel="Local/{ext}@phones",
                              originate_context="outbound")
    try:
        resp = await client.post("/api/console/dial", json={"number": "+7 (495) 123-45-67"}, headers=ANNA)
        assert resp.status == 200 and (await resp.json())["number"] == "+74951234567"
        assert pbx.actions == [{"Action": "Originate", "Channel": "Local/101@phones", "Exten": "+74951234567",
                                "Context": "outbound", "Priority": "1", "CallerID": '"Anna Operator" <101>',
                                "Timeout": "30000", "Async": "true"}]
        for hostile in ("101&Hangup", "1\r\nAction: Logoff", "x"):
            bad = await client.post("/api/console/dial", json={"number": hostile}, headers=ANNA)
            assert bad.status == 400
        assert len(pbx.actions) == 1
        audit = await AuditLog(store).entries(username="anna")
        assert [(e.action, e.target, e.result) for e in audit] == [("console.dial", "+74951234567", "ok")]
    finally:
        await client.close()


async def test_without_the_pbx_the_actions_say_so(store: CallLogStore) -> None:
    client, service = await console(store, None)
    try:
        assert service.hello(USERS["anna"]).console.can_pause is False  # type: ignore[union-attr]
        resp = await client.post("/api/console/dial", json={"number": "101"}, headers=ANNA)
        assert resp.status == 503
    finally:
        await client.close()


async def test_search_the_crm_by_name_or_number(store: CallLogStore) -> None:
    client, service = await console(store, None, adapters=[Silent(), BuiltinCrm(store)])
    try:
        await service.lookup.create_contact(NewContact(display_name="<b>Ivan</b> Petrov",
                                                       phones=["+74951234567"], tags=["VIP"]))
        found = await (await client.get("/api/console/search", params={"q": "ivan"}, headers=ANNA)).json()
        assert [(c["name"], c["vip"], c["phones"]) for c in found["contacts"]] == [
            ("<b>Ivan</b> Petrov", True, [{"number": "+74951234567", "display": "+7 495 123-45-67"}])]
        assert found["unsupported"] == ["silent"]
        by_number = await (await client.get("/api/console/search", params={"q": "84951234567"},
                                            headers=ANNA)).json()
        assert len(by_number["contacts"]) == 1
        short = await client.get("/api/console/search", params={"q": "i"}, headers=ANNA)
        assert short.status == 400
    finally:
        await client.close()
    client, _ = await console(store, None, adapters=[Silent()])
    try:
        resp = await client.get("/api/console/search", params={"q": "ivan"}, headers=ANNA)
        assert resp.status == 501 and "search not supported" in (await resp.json())["message"]
    finally:
        await client.close()


def feed(service: ScreenPopService, capture: str) -> None:
    pipeline = CallPipeline()
    service.attach(pipeline)
    for message in capture_events(capture_bytes(capture)):
        if message.is_event:
            pipeline.feed(message)


async def test_wrap_up_code_is_kept_with_the_note_and_the_logged_call(store: CallLogStore) -> None:
    builtin = BuiltinCrm(store)
    lookup = LookupService([builtin])
    await lookup.open()
    service = ScreenPopService(lookup, console=ConsoleSettings(wrapup_codes=["Resolved", "Sale"]))
    assert service.settings.after_call_seconds == 120  # [console] wrapup_seconds
    feed(service, "queue_answered")
    call_id = call_id_of("queue_answered")
    anna = USERS["anna"]
    await service.save_note(anna, call_id, "Wants the invoice re-sent")
    with pytest.raises(ScreenPopError, match="unknown wrap-up code"):
        await service.dismiss(anna, call_id, "Nap")
    assert await service.dismiss(anna, call_id, "Sale") is True
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(INTERACTIONS.c.kind, INTERACTIONS.c.summary, INTERACTIONS.c.outcome)
                                   .order_by(INTERACTIONS.c.id))).all()
    assert [tuple(r) for r in rows] == [("note", "Wants the invoice re-sent", "Sale"),
                                        ("call", "Wants the invoice re-sent\nWrap-up: Sale", "answered")]
    await lookup.close()


async def test_hello_leaves_out_after_call_cards_from_before_the_login_and_sends_the_pbx_offset(
        store: CallLogStore) -> None:
    lookup = LookupService([])
    server_clock: Callable[[], float] = lambda: 1795508277.0 + 1000  # noqa: E731  # the PBX runs 1000 s late
    service = ScreenPopService(lookup, wall_clock=server_clock)
    frames: list[str] = []
    service.hub.send = lambda key, text, **_: frames.append(text)  # type: ignore[method-assign]
    feed(service, "queue_answered")
    anna = USERS["anna"]
    [card] = service.book.cards_for(["101"])
    assert card.state == "after_call" and card.ended_at is not None
    hello = service.hello(anna)
    assert hello.pbx_offset == pytest.approx(-1000, abs=5) and hello.cards == [card]
    ended_here = card.ended_at - hello.pbx_offset  # the call's end in the server's clock
    assert service.hello(anna, since=ended_here - 60).cards == [card]  # logged in before it ended
    assert service.hello(anna, since=ended_here + 60).cards == []  # logged in after: not his business
    clock_frames = [json.loads(f) for f in frames if '"clock"' in f]
    # Told when it moved (the test's server clock stands still while the capture's 2 s pass).
    assert 1 <= len(clock_frames) <= 2
    assert all(f["pbx_offset"] == pytest.approx(-1000, abs=5) for f in clock_frames)
    await lookup.close()


async def test_the_rung_operators_card_leaves_before_the_clock_frame_to_every_page() -> None:
    lookup = LookupService([])
    service = ScreenPopService(lookup, wall_clock=lambda: 1795508277.0 + 1000)  # the PBX runs late
    sent: list[str] = []
    push = service.hub.push
    service.hub.push = lambda messages: (sent.extend(m.card_id for m in messages), push(messages))  # type: ignore[method-assign]
    service.hub.send = lambda key, text, **_: sent.append(key)  # type: ignore[method-assign]
    pipeline = CallPipeline()
    service.attach(pipeline)
    for message in capture_events(capture_bytes("queue_answered")):
        if message.is_event:
            pipeline.feed(message)
            for _ in range(3):  # the caller's lookup answers before the phone rings, as it does live
                await asyncio.sleep(0)
    first_clock = sent.index("\0clock")
    assert first_clock > 0 and ":101" in sent[first_clock - 1]  # the ring's card, then the clock
    await lookup.close()
