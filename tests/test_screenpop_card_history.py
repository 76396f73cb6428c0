"""A caller's history is fetched only where a page shows one of the call's cards: every node
of a cluster runs the same pop rules, and the history's queries are wasted on a node where
no browser of a rung operator is open. The CRM lookup (the caller's name) still runs for
every call. Captures are fed a step at a time; the service's own tasks are awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.calls.events import CallAnswered, CallRinging, DomainEvent
from bridge.calls.pipeline import CallPipeline
from bridge.calls.replay import capture_events
from crm_adapters.contract import Contact, CrmAdapter, FinishedCall, Interaction, NewContact
from crm_adapters.lookup import LookupService
from crm_adapters.settings import CrmSettings
from screenpop.app import create_web_app
from screenpop.console_http import SCREENPOP_KEY
from screenpop.screenpop_service import ScreenPopService
from tests.capture_facts import capture_bytes
from tests.test_screenpop_pbxes import browser
from tests.test_screenpop_server import USERS, call_id_of, stand_in_auth, until


class SpyCrm(CrmAdapter):
    """Knows every caller; counts lookups and history fetches. Each can be held back."""

    name = "spy"
    can_create_contacts = False

    def __init__(self) -> None:
        self.asked: list[str] = []  # numbers looked up
        self.histories: list[str] = []  # contact ids whose history was asked for
        self.answer, self.history_gate = asyncio.Event(), asyncio.Event()
        self.answer.set()
        self.history_gate.set()

    async def find_contact(self, number: str) -> Contact | None:
        self.asked.append(number)
        await self.answer.wait()
        return Contact(id=f"id{number}", display_name="Ivan Petrov", phones=[number], source=self.name)

    async def history(self, contact: Contact, limit: int = 20) -> list[Interaction]:
        self.histories.append(contact.id)
        await self.history_gate.wait()
        return [Interaction(id="n1", kind="note", at=datetime(2026, 1, 5, tzinfo=UTC),
                            summary="Wants a refund", source=self.name)]

    async def create_contact(self, new: NewContact) -> Contact:
        raise NotImplementedError

    async def log_call(self, call: FinishedCall) -> str | None:
        return None


class Feed:
    """A capture fed to the pipeline a step at a time."""

    def __init__(self, pipeline: CallPipeline, capture: str) -> None:
        self.pipeline = pipeline
        self.messages = iter([m for m in capture_events(capture_bytes(capture)) if m.is_event])
        self.events: list[DomainEvent] = []
        pipeline.subscribe(self.events.append)

    def until(self, kind: type[DomainEvent], operator: str | None = None) -> None:
        """Up to and with the first such event (for that operator)."""
        for message in self.messages:
            seen = len(self.events)
            self.pipeline.feed(message)
            if any(isinstance(e, kind) and operator in (None, getattr(e, "operator", None))
                   for e in self.events[seen:]):
                return
        raise AssertionError(f"no {kind.__name__} for {operator} in the capture")

    def rest(self) -> None:
        for message in self.messages:
            self.pipeline.feed(message)


async def settle(service: ScreenPopService) -> None:
    """Until the service's lookups and history fetches (and what they start) are done."""
    async with asyncio.timeout(5):
        while service._tasks:
            await asyncio.gather(*list(service._tasks), return_exceptions=True)


@pytest.fixture
async def node() -> AsyncIterator[tuple[TestClient, ScreenPopService, CallPipeline, SpyCrm]]:
    """One node's console: no call log, so the spy's history is the only history query."""
    crm = SpyCrm()
    lookup = LookupService([crm], CrmSettings(budget_ms=50))
    await lookup.open()
    pipeline = CallPipeline()
    app = create_web_app(pipeline, lookup, middlewares=[stand_in_auth])
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, app[SCREENPOP_KEY], pipeline, crm
    finally:
        await client.close()
        await lookup.close()


Node = tuple[TestClient, ScreenPopService, CallPipeline, SpyCrm]


async def test_without_a_page_of_a_rung_operator_no_history_is_fetched(node: Node) -> None:
    client, service, pipeline, crm = node
    other = await browser(client, "boris")  # a page here, but not of the rung operator (101)
    call_id = call_id_of("queue_answered")
    feed = Feed(pipeline, "queue_answered")
    feed.until(CallRinging, "101")
    await settle(service)
    feed.rest()
    await settle(service)
    [card] = service.book.cards_for(["101"])
    # The lookup ran as ever: the card has the caller's name; no history was asked for.
    assert crm.asked == ["+74951234567"] and card.caller.name == "Ivan Petrov"
    assert crm.histories == [] and card.history == [] and card.state == "after_call"
    assert other.cards() == []
    # The card closed, nothing is kept about the call.
    assert await service.dismiss(USERS["anna"], call_id) is True
    assert not service.book.knows(call_id) and service.card_history.calls == 0


async def test_a_watching_page_gets_the_card_then_its_history(node: Node) -> None:
    client, service, pipeline, crm = node
    anna = await browser(client, "anna")
    call_id = call_id_of("queue_answered")
    crm.history_gate.clear()
    feed = Feed(pipeline, "queue_answered")
    feed.until(CallRinging, "101")
    await until(lambda: anna.cards(call_id))
    first = anna.cards(call_id)[0]
    assert first.state == "ringing" and first.caller.name == "Ivan Petrov" and first.history == []
    await until(lambda: crm.histories == ["id+74951234567"])  # asked for, once the card was out
    crm.history_gate.set()
    await settle(service)
    await until(lambda: anna.cards(call_id)[-1].history)
    update = anna.cards(call_id)[-1]
    assert update.card_id == first.card_id and update.version > first.version
    assert [h.summary for h in update.history] == ["Wants a refund"]
    feed.rest()
    await settle(service)
    await until(lambda: anna.states(call_id)[-1:] == ["after_call"])
    assert crm.histories == ["id+74951234567"]  # the answer and the hang-up fetch nothing more
    assert anna.cards(call_id)[-1].history == update.history
    # Kept while the after-call card is open; forgotten once it is closed.
    assert service.card_history.calls == 1
    assert await service.dismiss(USERS["anna"], call_id) is True
    assert service.card_history.calls == 0


async def test_a_page_opened_after_the_ring_gets_the_history_after_its_hello(node: Node) -> None:
    client, service, pipeline, crm = node
    call_id = call_id_of("queue_answered")
    feed = Feed(pipeline, "queue_answered")
    feed.until(CallRinging, "101")
    await settle(service)
    assert crm.asked == ["+74951234567"] and crm.histories == []  # nobody watches yet
    [card] = service.book.cards_for(["101"])
    assert not service.hub.watching(card.pbx, "101")
    anna = await browser(client, "anna")
    assert service.hub.watching(card.pbx, "101")
    assert [(c.card_id, c.caller.name, c.history) for c in anna.hello.cards] == [
        (card.card_id, "Ivan Petrov", [])]
    await settle(service)
    assert crm.histories == ["id+74951234567"]
    await until(lambda: anna.cards(call_id))
    update = anna.cards(call_id)[-1]  # in place: the Hello's card, a newer version
    assert update.card_id == card.card_id and update.version > anna.hello.cards[0].version
    assert [h.summary for h in update.history] == ["Wants a refund"]
    # A second page of hers: the history is on its Hello, not fetched again.
    again = await browser(client, "anna")
    await settle(service)
    assert [h.summary for h in again.hello.cards[0].history] == ["Wants a refund"]
    assert crm.histories == ["id+74951234567"]


async def test_the_history_is_fetched_once_for_a_call_ringing_several_watched_operators(node: Node) -> None:
    client, service, pipeline, crm = node
    tabs = {u: await browser(client, u) for u in ("clara", "denis", "sam")}  # 103, 104, both
    call_id = call_id_of("ringall_two_agents")
    feed = Feed(pipeline, "ringall_two_agents")
    feed.until(CallRinging, "103")
    await settle(service)  # the lookup and the history of the first ring
    feed.until(CallRinging, "104")
    await settle(service)
    feed.rest()
    await settle(service)
    assert crm.asked == ["+380441234567"] and crm.histories == ["id+380441234567"]
    await until(lambda: tabs["denis"].states(call_id)[-1:] == ["after_call"])
    for user, ops in (("clara", {"103"}), ("denis", {"104"}), ("sam", {"103", "104"})):
        cards = tabs[user].cards(call_id)
        with_history = {c.operator for c in cards if [h.summary for h in c.history] == ["Wants a refund"]}
        assert with_history == ops, user


async def test_a_final_answer_after_the_card_popped_brings_the_history_then(node: Node) -> None:
    client, service, pipeline, crm = node
    anna = await browser(client, "anna")
    call_id = call_id_of("queue_answered")
    crm.answer.clear()  # the CRM is slower than the lookup's budget
    feed = Feed(pipeline, "queue_answered")
    feed.until(CallRinging, "101")
    await until(lambda: anna.cards(call_id))
    assert anna.cards(call_id)[0].caller.lookup == "pending" and crm.histories == []
    feed.until(CallAnswered, "101")
    await until(lambda: anna.states(call_id) == ["ringing", "live"])
    assert crm.histories == []  # no final answer yet: nothing to fetch
    crm.answer.set()  # the final answer comes to the lookup's on_update (the lookup service's task)
    await until(lambda: crm.histories)
    await settle(service)
    assert crm.histories == ["id+74951234567"]
    await until(lambda: anna.cards(call_id)[-1].history)
    last = anna.cards(call_id)[-1]
    assert (last.state, last.caller.name, [h.summary for h in last.history]) == (
        "live", "Ivan Petrov", ["Wants a refund"])
    feed.rest()
    await settle(service)
    assert crm.histories == ["id+74951234567"]
