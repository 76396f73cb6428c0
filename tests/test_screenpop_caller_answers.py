"""One node asks the CRM about a caller, every node shows the answer (screenpop.caller_answers).

Two screen-pop services fed the same call stand for a PBX's owner and a node following it;
what the owner shares goes to the follower through JSON, as the PBX's stream carries it."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from bridge.calls.pipeline import CallPipeline
from bridge.calls.replay import capture_events
from crm_adapters.contract import Contact
from crm_adapters.lookup import LookupService
from screenpop.messages import Card
from screenpop.screenpop_service import ScreenPopService
from tests.capture_facts import capture_bytes
from tests.test_screenpop_console_actions import Silent

MAIN_CALL = "1795508277.0"


class Directory(Silent):
    """Knows every caller as Ivan Petrov; counts the questions."""

    name = "directory"

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def find_contact(self, number: str) -> Contact | None:
        self.asked.append(number)
        return Contact(id="7", display_name="Ivan Petrov", company="Romashka", phones=[number],
                       source=self.name)


class Node:
    """A screen-pop service as one node runs it, with the cards it pushed to its pages."""

    def __init__(self, *, owner: bool, wait: float = 5.0, cluster: bool = True) -> None:
        self.crm = Directory()
        self.service = ScreenPopService(LookupService([self.crm]))
        self.owner = owner
        self.shared: list[tuple[str, dict[str, Any], bool]] = []
        if cluster:  # as screenpop.app.console_cluster wires it
            self.service.answers.wait = wait
            self.service.answers.asks_crm = lambda pbx: self.owner
            self.service.answers.share = lambda pbx, data, urgent: self.shared.append((pbx, data, urgent))
        self.pushed: list[Card] = []
        self.service.hub.push = lambda messages: self.pushed.extend(  # type: ignore[method-assign]
            m for m in messages if isinstance(m, Card))

    def ring(self) -> None:
        """queue_answered up to the ring of Anna's phone (101), in one turn of the loop."""
        pipeline = CallPipeline()
        self.service.attach(pipeline)
        for message in capture_events(capture_bytes("queue_answered")):
            if message.is_event:
                pipeline.feed(message)
                if self.service.book.cards_for(["101"]):
                    return
        raise AssertionError("Anna's phone never rang")

    def card(self) -> Card:
        [card] = self.service.book.cards_for(["101"])
        return card

    async def settled(self) -> None:
        async with asyncio.timeout(5):
            while self.service._tasks:  # noqa: ASYNC110 (its lookups)
                await asyncio.sleep(0.01)


def through_the_stream(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data))


async def test_the_owner_asks_once_and_the_followers_card_pops_with_its_answer() -> None:
    owner, follower = Node(owner=True), Node(owner=False)
    owner.ring()
    follower.ring()
    assert follower.pushed == []  # held for the caller's name, as on one node
    await owner.settled()
    await follower.settled()
    assert follower.pushed == [] and follower.crm.asked == []  # the follower asks nobody
    [(pbx, data, urgent)] = owner.shared
    assert (pbx, data["call_id"], urgent) == ("main", MAIN_CALL, True)  # a held card waits for it
    follower.service.answers.told(pbx, through_the_stream(data))
    [card] = follower.pushed
    assert (card.operator, card.state, card.caller.lookup, card.caller.name, card.caller.company) == (
        "101", "ringing", "found", "Ivan Petrov", "Romashka")
    assert card == owner.card()
    assert len(owner.crm.asked) == 1 and follower.crm.asked == []
    await owner.service.lookup.close()
    await follower.service.lookup.close()


async def test_a_follower_that_hears_nothing_asks_the_crm_itself() -> None:
    follower = Node(owner=False, wait=0.05)  # the owner died before it answered
    follower.ring()
    assert follower.pushed == []
    async with asyncio.timeout(5):
        while not follower.pushed:  # noqa: ASYNC110 (its own lookup, after the wait)
            await asyncio.sleep(0.01)
    await follower.settled()
    assert follower.card().caller.name == "Ivan Petrov"
    assert len(follower.crm.asked) == 1 and follower.shared == []  # a follower shares nothing
    await follower.service.lookup.close()


async def test_a_new_owner_asks_at_once_for_the_calls_still_waiting_and_shares_the_answer() -> None:
    node = Node(owner=False)  # waits 5 s for the owner's answer...
    node.ring()
    node.owner = True  # ...and takes the PBX over meanwhile
    await node.service.answers.take_over("main")
    await node.settled()
    assert node.card().caller.name == "Ivan Petrov" and len(node.crm.asked) == 1
    [(pbx, data, _)] = node.shared  # for the nodes that still follow the PBX
    assert (pbx, data["call_id"], data["card"]["contact"]["display_name"]) == (
        "main", MAIN_CALL, "Ivan Petrov")
    await node.service.answers.take_over("main")  # nothing waits any more: not asked again
    await node.settled()
    assert len(node.crm.asked) == 1
    await node.service.lookup.close()


async def test_an_owners_answer_ends_the_wait_and_no_lookup_follows() -> None:
    owner, follower = Node(owner=True), Node(owner=False, wait=0.05)
    owner.ring()
    follower.ring()
    await owner.settled()
    follower.service.answers.told("main", through_the_stream(owner.shared[0][1]))
    await asyncio.sleep(0.15)  # past the wait
    await follower.settled()
    assert follower.crm.asked == [] and len(follower.pushed) == 1
    await owner.service.lookup.close()
    await follower.service.lookup.close()


DAMAGED = [None, {"call_id": MAIN_CALL}, {"call_id": MAIN_CALL, "number": "1", "card": {"status": "no such"}}]


@pytest.mark.parametrize("data", DAMAGED)
async def test_a_damaged_answer_is_ignored_with_a_warning(data: Any, caplog: Any) -> None:
    follower = Node(owner=False)
    follower.ring()
    with caplog.at_level(logging.WARNING, logger="screenpop.caller_answers"):
        follower.service.answers.told("main", data)
    assert follower.pushed == [] and "not one" in caplog.text
    await follower.service.lookup.close()


async def test_an_answer_about_another_number_is_not_put_on_the_card() -> None:
    owner, follower = Node(owner=True), Node(owner=False)
    owner.ring()
    follower.ring()
    await owner.settled()
    data = through_the_stream(owner.shared[0][1])
    follower.service.answers.told("main", {**data, "number": "+74950000000"})
    assert follower.pushed == []
    follower.service.answers.told("main", data)
    assert [c.caller.name for c in follower.pushed] == ["Ivan Petrov"]
    await owner.service.lookup.close()
    await follower.service.lookup.close()


async def test_one_process_asks_for_every_call_and_shares_with_nobody() -> None:
    node = Node(owner=False, cluster=False)  # `owner` is not asked: one process owns every PBX
    node.ring()
    assert node.pushed == []
    await node.settled()
    assert [c.caller.name for c in node.pushed] == ["Ivan Petrov"] and len(node.crm.asked) == 1
    assert node.service.answers.share is None
    await node.service.lookup.close()
