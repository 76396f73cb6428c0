"""The built-in CRM's numbers in memory (crm_adapters.known_numbers): an unknown caller's card
pops at once, with "not found" on it, instead of waiting for a database round trip; a contact
added behind the set's back still reaches the card, in place, and joins the set."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from bridge.call_log.store import CallLogStore
from bridge.calls.pipeline import CallPipeline
from bridge.calls.replay import capture_events
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.contract import NewContact
from crm_adapters.known_numbers import KnownNumbers
from crm_adapters.lookup import LookupService
from crm_adapters.settings import CrmSettings
from screenpop.messages import Card
from screenpop.screenpop_service import ScreenPopService
from tests.capture_facts import capture_bytes
from tests.db_fixtures import Database, database_fixture, store_fixture  # noqa: F401  # fixtures
from tests.test_screenpop_console_actions import Silent

CALLER = "+74951234567"  # queue_answered's caller: Anna's phone (101) rings for him


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def read_numbers(crm: BuiltinCrm) -> None:
    """Ask, and wait for the read that asking starts when one is due."""
    crm.knows_not("+0")
    if crm._reading_known is not None:
        await crm._reading_known


def test_the_set_is_sure_only_once_read_and_reads_again_when_due() -> None:
    clock = Clock()
    known = KnownNumbers(refresh_every=10, clock=clock)
    assert not known.ready and not known.surely_unknown("+79990000000") and known.due()
    known.reading()
    assert not known.due()  # a read in progress (or failed) is not asked again at once
    known.absorb([(3, "+74951234567"), (7, "+79161112233")])
    assert known.ready and known.last_id == 7 and len(known) == 2
    assert known.surely_unknown("+79990000000") and not known.surely_unknown("+79161112233")
    known.add(["+79990000000"])
    assert not known.surely_unknown("+79990000000")
    clock.now += 9.9
    assert not known.due()
    clock.now += 0.1
    assert known.due()
    with pytest.raises(ValueError):
        KnownNumbers(refresh_every=0)


async def test_numbers_are_read_then_grown_by_writes_lookups_and_refreshes(store: CallLogStore) -> None:
    clock = Clock()
    crm, elsewhere = BuiltinCrm(store), BuiltinCrm(store)  # `elsewhere`: another node, or the CLI
    crm.known = KnownNumbers(refresh_every=10, clock=clock)
    await crm.create_contact(NewContact(display_name="Ivan Petrov", phones=[CALLER]))
    assert crm.knows_not("+79990000000") is False  # not read yet: not sure
    await read_numbers(crm)
    assert crm.known.ready and crm.knows_not("+79990000000") and not crm.knows_not(CALLER)

    await crm.create_contact(NewContact(display_name="Here", phones=["+79161112233"]))
    assert not crm.knows_not("+79161112233")  # its own writes at once
    await elsewhere.create_contact(NewContact(display_name="There", phones=["+79035554433"]))
    await elsewhere.create_contact(NewContact(display_name="Later", phones=["+79267778899"]))
    assert crm.knows_not("+79035554433")  # behind the database until due...
    assert (await crm.find_contact("+79035554433")).display_name == "There"
    assert not crm.knows_not("+79035554433")  # ... or until a lookup finds it
    assert crm.knows_not("+79267778899")
    clock.now += 10
    await read_numbers(crm)
    assert not crm.knows_not("+79267778899")
    await crm.close()
    await elsewhere.close()


def test_asked_with_no_event_loop_it_is_never_sure(tmp_path: Any) -> None:
    crm = BuiltinCrm(f"sqlite+aiosqlite:///{tmp_path / 'offline.sqlite3'}")
    assert crm.knows_not("+79990000000") is False  # an offline replay: no read, no error
    assert crm.known.due()
    with pytest.raises(ValueError, match="known_refresh_seconds must be a positive number of seconds, not 0"):
        BuiltinCrm(f"sqlite+aiosqlite:///{tmp_path / 'offline.sqlite3'}", known_refresh_seconds=0)


async def test_a_database_that_fails_the_read_leaves_every_lookup_to_the_database(tmp_path: Any) -> None:
    crm = BuiltinCrm(CallLogStore(f"sqlite+aiosqlite:///{tmp_path / 'never-opened.sqlite3'}"))
    await read_numbers(crm)  # the store is not open: logged, nothing known
    assert not crm.known.ready and crm.knows_not("+79990000000") is False
    assert not crm.known.due()  # and not asked again on every call


async def test_the_lookup_answers_at_once_only_what_needs_no_request(store: CallLogStore) -> None:
    crm = BuiltinCrm(store)
    lookup = LookupService([crm], CrmSettings(default_region="RU"))
    await lookup.open()
    await crm.create_contact(NewContact(display_name="Ivan Petrov", phones=[CALLER]))
    assert lookup.answer_at_once("+79990000000") is None  # the numbers are not read yet
    await read_numbers(crm)
    card = lookup.answer_at_once("89990000000")
    assert card is not None and (card.status, card.e164, card.number, card.final) == (
        "not_found", "+79990000000", "89990000000", True)
    assert lookup.answer_at_once(CALLER) is None  # a contact's number: the database says who
    colleague = lookup.answer_at_once("102")
    assert colleague is not None and (colleague.status, colleague.extension) == ("colleague", "102")
    found = await lookup.lookup(CALLER)
    cached = lookup.answer_at_once(CALLER)
    assert cached is not None and cached.contact == found.contact and cached.lookup_id != found.lookup_id
    lookup.breakers[crm.name].failure()  # failing (the breaker counts): no guesses then
    for _ in range(lookup.settings.breaker.failure_threshold):
        lookup.breakers[crm.name].failure()
    assert lookup.answer_at_once("+79990000000") is None
    await lookup.close()

    with_plain = LookupService([Silent(), BuiltinCrm(store)])  # Silent: no numbers in memory
    await with_plain.open()
    await read_numbers(with_plain.adapters[1])  # type: ignore[arg-type]
    assert with_plain.answer_at_once("+79990000000") is None  # one adapter cannot be sure
    await with_plain.close()


def _ring(service: ScreenPopService) -> list[Card]:
    """Feed queue_answered up to the ring of Anna's phone, with no await between events (as
    a turn of the event loop): the cards pushed to the browsers by then."""
    pushed: list[Card] = []
    service.hub.push = lambda messages: pushed.extend(m for m in messages if isinstance(m, Card))  # type: ignore[method-assign]
    pipeline = CallPipeline()
    service.attach(pipeline)
    for message in capture_events(capture_bytes("queue_answered")):
        if message.is_event:
            pipeline.feed(message)
            if service.book.cards_for(["101"]):
                return pushed
    raise AssertionError("Anna's phone never rang")


async def _settled(service: ScreenPopService) -> None:
    async with asyncio.timeout(5):
        while service._tasks:  # noqa: ASYNC110 (the lookups behind the answer)
            await asyncio.sleep(0.01)


async def _service(store: CallLogStore,
                   contact: Callable[[BuiltinCrm], Any] | None = None) -> ScreenPopService:
    crm = BuiltinCrm(store)
    lookup = LookupService([crm])
    await lookup.open()
    if contact is not None:
        await contact(crm)
    await read_numbers(crm)
    return ScreenPopService(lookup)


async def test_an_unknown_callers_card_pops_at_once_saying_so(store: CallLogStore) -> None:
    service = await _service(store)
    [card] = _ring(service)  # in the ring's own turn: no lookup waited for
    assert (card.operator, card.state, card.caller.lookup) == ("101", "ringing", "not_found")
    assert card.caller.name == "Иван Петров"  # the caller id's name
    before = len(service.book.cards_for(["101"]))
    await _settled(service)  # the lookup behind it agrees: nothing more is sent
    assert len(service.book.cards_for(["101"])) == before and service.book.cards_for(["101"])[0] == card
    await service.lookup.close()


async def test_a_known_callers_card_waits_for_his_name(store: CallLogStore) -> None:
    async def ivan(crm: BuiltinCrm) -> None:
        await crm.create_contact(NewContact(display_name="Ivan Petrov", company="Romashka", phones=[CALLER]))

    service = await _service(store, ivan)
    pushed = _ring(service)
    assert pushed == []  # held for the lookup, as before
    await _settled(service)
    [card] = service.book.cards_for(["101"])
    assert (card.caller.lookup, card.caller.name, card.caller.company) == ("found", "Ivan Petrov", "Romashka")
    await service.lookup.close()


async def test_a_contact_added_elsewhere_updates_the_card_in_place(store: CallLogStore) -> None:
    service = await _service(store)
    elsewhere = BuiltinCrm(store)
    await elsewhere.create_contact(NewContact(display_name="Ivan Petrov", phones=[CALLER]))
    await elsewhere.close()
    [card] = _ring(service)  # the set had not read him yet
    assert card.caller.lookup == "not_found"
    await _settled(service)
    [now] = service.book.cards_for(["101"])
    assert (now.card_id, now.caller.lookup, now.caller.name) == (card.card_id, "found", "Ivan Petrov")
    assert now.version > card.version
    crm = service.lookup.adapters[0]
    assert not crm.knows_not(CALLER)  # learnt from the lookup
    await service.lookup.close()
