"""The lookup service: numbers, cache, single-flight, time budget, breaker, adapter chain."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from bridge.call_log.store import CallLogStore
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.contract import Contact, CrmAdapter, FinishedCall, Interaction, NewContact
from crm_adapters.errors import CrmAuthError, CrmRateLimited, CrmRejected, CrmUnavailable
from crm_adapters.lookup import CallerCard, LookupService, build_adapters
from crm_adapters.settings import AdapterConfig, BreakerSettings, CacheSettings, CrmSettings

IVAN = "+74951234567"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeCrm(CrmAdapter):
    """Answers from a dict; `gate` holds requests back, `fail` makes them raise."""

    def __init__(self, name: str = "fake", contacts: dict[str, str] | None = None) -> None:
        self.name = name
        self.contacts = {n: Contact(id=f"{name}-{i}", display_name=who, phones=[n], source=name)
                         for i, (n, who) in enumerate((contacts or {}).items())}
        self.asked: list[str] = []
        self.gate: asyncio.Event | None = None
        self.fail: BaseException | None = None
        self.logged: list[FinishedCall] = []
        self.interactions: list[Interaction] = []

    async def find_contact(self, number: str) -> Contact | None:
        self.asked.append(number)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.contacts.get(number)

    async def history(self, contact: Contact, limit: int = 20) -> list[Interaction]:
        return self.interactions[:limit]

    async def create_contact(self, new: NewContact) -> Contact:
        contact = Contact(id=f"{self.name}-new", display_name=new.display_name, phones=new.phones,
                          source=self.name)
        self.contacts.update(dict.fromkeys(new.phones, contact))
        return contact

    async def log_call(self, call: FinishedCall) -> str | None:
        if self.fail is not None:
            raise self.fail
        self.logged.append(call)
        return f"{self.name}-log-{len(self.logged)}"


def service(*adapters: CrmAdapter, clock: FakeClock | None = None, **settings: object) -> LookupService:
    return LookupService(adapters, CrmSettings.model_validate(settings), clock=clock or FakeClock())


async def test_colleagues_and_anonymous_callers_never_reach_a_crm() -> None:
    crm = FakeCrm(contacts={IVAN: "Иван"})
    lookups = service(crm)
    cards = [await lookups.lookup(n) for n in ("102", "1001", "<unknown>", "anonymous", "", None, "12")]
    assert [(c.status, c.extension) for c in cards] == [
        ("colleague", "102"), ("colleague", "1001"), ("anonymous", None), ("anonymous", None),
        ("anonymous", None), ("anonymous", None), ("invalid", None)]
    assert crm.asked == [] and all(c.final for c in cards)


async def test_found_then_served_from_the_cache_in_any_form() -> None:
    crm = FakeCrm(contacts={IVAN: "Иван"})
    lookups = service(crm)
    first = await lookups.lookup("84951234567")
    second = await lookups.lookup("+7 (495) 123-45-67")
    assert first.status == second.status == "found" and second.contact == first.contact
    assert (first.number, second.number) == ("84951234567", "+7 (495) 123-45-67")
    assert first.lookup_id != second.lookup_id and first.source == "fake"
    assert crm.asked == [IVAN]


async def test_ttl_expiry_asks_again_and_not_found_expires_sooner() -> None:
    clock = FakeClock()
    crm = FakeCrm(contacts={IVAN: "Иван"})
    lookups = service(crm, clock=clock, cache={"ttl_seconds": 60, "not_found_ttl_seconds": 10})
    assert (await lookups.lookup(IVAN)).status == "found"
    assert (await lookups.lookup("+74959999999")).status == "not_found"
    clock.now += 11
    await lookups.lookup(IVAN)
    await lookups.lookup("+74959999999")
    assert crm.asked == [IVAN, "+74959999999", "+74959999999"]
    clock.now += 50
    await lookups.lookup(IVAN)
    assert crm.asked.count(IVAN) == 2


async def test_the_cache_is_bounded_least_recently_used_first() -> None:
    numbers = ["+74951110001", "+74951110002", "+74951110003"]
    crm = FakeCrm(contacts=dict.fromkeys(numbers, "x"))
    lookups = service(crm, cache={"max_entries": 2})
    await lookups.lookup(numbers[0])
    await lookups.lookup(numbers[1])
    await lookups.lookup(numbers[0])  # used again: number 2 is now the oldest
    await lookups.lookup(numbers[2])
    assert len(lookups.cache) == 2
    await lookups.lookup(numbers[0])
    await lookups.lookup(numbers[1])
    assert crm.asked == [numbers[0], numbers[1], numbers[2], numbers[1]]


async def test_five_phones_ringing_at_once_make_one_crm_request() -> None:
    crm = FakeCrm(contacts={IVAN: "Иван"})
    crm.gate = asyncio.Event()
    lookups = service(crm, budget_ms=5000)
    pending = [asyncio.create_task(lookups.lookup(form)) for form in
               ("84951234567", "+74951234567", "8 (495) 123-45-67", "74951234567", "4951234567")]
    await asyncio.sleep(0.01)
    crm.gate.set()
    cards = await asyncio.gather(*pending)
    assert crm.asked == [IVAN]
    assert {c.status for c in cards} == {"found"} and len({c.lookup_id for c in cards}) == 5


async def test_over_budget_answers_looking_up_at_once_and_delivers_the_update() -> None:
    crm = FakeCrm(contacts={IVAN: "Иван"})
    crm.gate = asyncio.Event()
    lookups = service(crm, budget_ms=20)
    updates = lookups.subscribe()
    received: list[CallerCard] = []

    async def on_update(card: CallerCard) -> None:
        received.append(card)

    card = await lookups.lookup("84951234567", on_update=on_update)
    assert (card.status, card.final, card.contact) == ("pending", False, None)
    assert received == []
    crm.gate.set()
    late = await asyncio.wait_for(anext(updates), 1)
    await asyncio.sleep(0)
    assert received == [late]
    assert (late.lookup_id, late.status, late.final, late.number) == (card.lookup_id, "found", True,
                                                                      "84951234567")
    assert late.contact is not None and late.contact.display_name == "Иван"
    assert (await lookups.lookup(IVAN)).status == "found" and crm.asked == [IVAN]  # now cached
    await updates.aclose()


async def test_over_budget_with_a_known_answer_shows_it_marked_stale_until_the_update() -> None:
    clock = FakeClock()
    crm = FakeCrm(contacts={IVAN: "Иван"})
    lookups = service(crm, clock=clock, budget_ms=20, cache={"ttl_seconds": 60})
    await lookups.lookup(IVAN)
    clock.now += 61
    crm.gate = asyncio.Event()
    updates: list[CallerCard] = []
    card = await lookups.lookup(IVAN, on_update=updates.append)
    assert (card.status, card.stale, card.final) == ("found", True, False)
    crm.gate.set()
    await asyncio.sleep(0.01)
    assert [(u.status, u.stale, u.final, u.lookup_id) for u in updates] == [("found", False, True,
                                                                             card.lookup_id)]


async def test_breaker_opens_after_n_failures_serves_last_known_good_and_retries_half_open(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    crm = FakeCrm(contacts={IVAN: "Иван"})
    lookups = service(crm, clock=clock, cache={"ttl_seconds": 60},
                      breaker={"failure_threshold": 3, "reset_after_seconds": 30,
                               "max_reset_after_seconds": 100})
    good = await lookups.lookup(IVAN)
    crm.fail = CrmUnavailable("HTTP 502 from upstream", status=502)
    clock.now += 61
    with caplog.at_level(logging.WARNING, logger="crm_adapters.lookup"):
        cards = [await lookups.lookup(IVAN) for _ in range(3)]
    assert [(c.status, c.stale, c.contact) for c in cards] == [("found", True, good.contact)] * 3
    assert "[fake] unavailable: HTTP 502 from upstream (HTTP 502)" in cards[0].errors
    assert lookups.breakers["fake"].state == "open" and len(crm.asked) == 4
    assert "circuit open for 30 s after 3 failures" in caplog.text

    skipped = await lookups.lookup(IVAN)  # not asked while open
    assert len(crm.asked) == 4 and skipped.stale and "circuit open" in skipped.errors[0]
    unknown = await lookups.lookup("+74950000000")
    assert unknown.status == "unavailable" and len(crm.asked) == 4  # nothing known: no guess

    clock.now += 30  # half-open: one trial, which fails: open again, waiting twice as long
    await lookups.lookup(IVAN)
    assert len(crm.asked) == 5 and lookups.breakers["fake"].state == "open"
    clock.now += 30
    await lookups.lookup(IVAN)
    assert len(crm.asked) == 5
    clock.now += 30
    crm.fail = None  # the CRM is back: the trial succeeds and the circuit closes
    fresh = await lookups.lookup(IVAN)
    assert (fresh.status, fresh.stale) == ("found", False) and lookups.breakers["fake"].state == "closed"
    assert len(crm.asked) == 6


async def test_a_rejected_request_does_not_count_against_the_crm() -> None:
    crm = FakeCrm()
    crm.fail = CrmRejected("bad query", status=400)
    lookups = service(crm, breaker={"failure_threshold": 1})
    assert (await lookups.lookup(IVAN)).status == "unavailable"
    assert lookups.breakers["fake"].state == "closed"
    crm.fail = CrmRateLimited("slow down", retry_after=5)
    await lookups.lookup(IVAN)
    assert lookups.breakers["fake"].state == "open"


async def test_request_timeout_and_adapter_bugs_become_typed_errors(caplog: pytest.LogCaptureFixture) -> None:
    slow = FakeCrm("slow")
    slow.gate = asyncio.Event()
    lookups = service(slow, request_timeout_seconds=0.02)
    card = await lookups.lookup(IVAN, wait=True)
    assert card.status == "unavailable" and card.errors == ["[slow] timeout: no answer in 0.02 s"]
    buggy = FakeCrm("buggy")
    buggy.fail = KeyError("contacts")
    with caplog.at_level(logging.ERROR):
        card = await service(buggy).lookup(IVAN)
    assert card.errors == ["[buggy] bad response: unexpected KeyError: 'contacts'"]
    assert "CRM adapter buggy crashed in lookup" in caplog.text


async def test_adapters_in_order_first_that_finds_wins() -> None:
    first, second = FakeCrm("first"), FakeCrm("second", contacts={IVAN: "From second"})
    lookups = service(first, second)
    card = await lookups.lookup(IVAN)
    assert (card.source, card.contact.display_name) == ("second", "From second")  # type: ignore[union-attr]
    first.contacts = FakeCrm("first", contacts={"+74950000001": "From first"}).contacts
    other = await lookups.lookup("+74950000001")
    assert other.source == "first" and second.asked == [IVAN]
    # The first adapter down and the second without the caller: unknown, not "not found".
    first.fail = CrmAuthError("token expired", status=401)
    third = await lookups.lookup("+7 495 000-00-02")
    assert third.status == "unavailable"
    assert third.errors == ["[first] auth failure: token expired (HTTP 401)"]
    # ... but the second finding the caller is an answer, with nothing stale about it.
    second.contacts["+74950000003"] = Contact(id="s-3", display_name="Found", source="second")
    found = await lookups.lookup("+74950000003")
    assert (found.status, found.stale, found.source) == ("found", False, "second")


async def test_history_merges_the_crm_and_the_call_log() -> None:
    crm = FakeCrm(contacts={IVAN: "Иван"})
    crm.interactions = [
        Interaction(id="n1", kind="note", at=T0 + timedelta(hours=2), summary="Called back", source="fake"),
        Interaction(id="a7", kind="call", at=T0, call_id="c-1", summary="Logged by operator", source="fake"),
    ]

    class CallLog:
        async def calls(self, phones: list[str], limit: int = 20) -> list[Interaction]:
            assert phones == [IVAN]
            return [Interaction(id="c-2", kind="call", at=T0 + timedelta(hours=1), source="call_log",
                                call_id="c-2"),
                    Interaction(id="c-1", kind="call", at=T0, source="call_log", call_id="c-1",
                                url="/rec/c-1.wav")]

    lookups = LookupService([crm], CrmSettings(), call_log=CallLog())  # type: ignore[arg-type]
    card = await lookups.lookup(IVAN)
    history = await lookups.history(card.contact)  # type: ignore[arg-type]
    assert [(i.id, i.source) for i in history] == [("n1", "fake"), ("c-2", "call_log"), ("a7", "fake")]
    assert history[2].url == "/rec/c-1.wav"
    assert len(await lookups.history(card.contact, limit=1)) == 1  # type: ignore[arg-type]


async def test_create_contact_makes_the_next_lookup_find_it() -> None:
    crm = FakeCrm()
    lookups = service(crm)
    assert (await lookups.lookup("84951234567")).status == "not_found"
    created = await lookups.create_contact(NewContact(display_name="Новый", phones=["8 (495) 123-45-67"]))
    assert created.phones == [IVAN]
    assert (await lookups.lookup("84951234567")).status == "found" and crm.asked == [IVAN, IVAN]
    with pytest.raises(CrmRejected):
        await lookups.create_contact(NewContact(display_name="X", phones=["12"]))


async def test_log_call_goes_to_the_crm_that_found_the_caller_and_never_raises() -> None:
    first, second = FakeCrm("first"), FakeCrm("second", contacts={IVAN: "Иван"})
    lookups = service(first, second)
    await lookups.lookup(IVAN)
    finished = FinishedCall(call_id="c-1", direction="inbound", number="84951234567", started_at=T0,
                            duration_seconds=42, outcome="answered", note="ok")
    result = await lookups.log_call(finished)
    assert (result.adapter, result.crm_id, result.error) == ("second", "second-log-1", None)
    assert second.logged[0].number == IVAN and first.logged == []
    unknown = await lookups.log_call(finished.model_copy(update={"number": "+74950000000"}))
    assert unknown.adapter == "first"  # nobody found this caller: the first adapter
    second.fail = CrmUnavailable("down")
    failed = await lookups.log_call(finished)
    assert failed.crm_id is None and failed.error == "[second] unavailable: down"


async def test_the_builtin_crm_through_the_service(tmp_path: Path) -> None:
    store = CallLogStore(f"sqlite+aiosqlite:///{tmp_path}/crm.sqlite3")
    settings = CrmSettings(default_region="UA")
    lookups = LookupService.from_settings(settings, store)
    await lookups.open()
    try:
        builtin = lookups.adapters[0]
        assert isinstance(builtin, BuiltinCrm) and builtin.default_region == "UA"
        await lookups.create_contact(NewContact(display_name="Оксана", phones=["044 123 4567"]))
        card = await lookups.lookup("0441234567")
        assert card.status == "found" and card.contact.phones == ["+380441234567"]  # type: ignore[union-attr]
    finally:
        await lookups.close()
        await store.close()


def test_settings_validate_and_adapters_are_built_in_order() -> None:
    settings = CrmSettings()
    assert (settings.default_region, settings.budget_ms, settings.budget_seconds) == ("RU", 300, 0.3)
    assert settings.cache == CacheSettings() and settings.breaker == BreakerSettings()
    assert CrmSettings(default_region="ua").default_region == "UA"
    with pytest.raises(ValidationError, match="unknown region"):
        CrmSettings(default_region="XX")
    with pytest.raises(ValidationError, match="unique"):
        CrmSettings(adapters=[AdapterConfig(), AdapterConfig()])
    configured = CrmSettings(adapters=[
        AdapterConfig(type="tests.test_crm_lookup:FakeCrm", name="ext", options={"name": "ignored"}),
        AdapterConfig(name="mine"),
        AdapterConfig(type="tests.test_crm_lookup:FakeCrm", name="off", enabled=False),
    ])
    adapters = build_adapters(configured, CallLogStore("sqlite+aiosqlite://"))
    assert [(type(a).__name__, a.name) for a in adapters] == [("FakeCrm", "ext"), ("BuiltinCrm", "mine")]
    with pytest.raises(ValueError, match="unknown CRM adapter type 'nope'"):
        build_adapters(CrmSettings(adapters=[AdapterConfig(type="nope")]), CallLogStore("sqlite+aiosqlite://"))


async def test_a_crm_down_at_start_or_a_failing_listener_never_crashes(
        caplog: pytest.LogCaptureFixture) -> None:
    class Unreachable(FakeCrm):
        async def open(self) -> None:
            raise CrmUnavailable("connection refused")

    crm = Unreachable(contacts={IVAN: "Иван"})
    lookups = service(crm, budget_ms=10)
    with caplog.at_level(logging.WARNING):
        await lookups.open()
    assert "CRM adapter fake did not open: unavailable: connection refused" in caplog.text
    assert lookups.breakers["fake"].failures == 1

    def broken_listener(card: CallerCard) -> None:
        raise RuntimeError("screen gone")

    crm.gate = asyncio.Event()
    card = await lookups.lookup(IVAN, on_update=broken_listener)
    assert card.status == "pending"
    crm.gate.set()
    await asyncio.sleep(0.01)
    assert "lookup update listener failed" in caplog.text
    assert (await lookups.lookup(IVAN)).status == "found"  # the service carries on
    await lookups.close()


def test_shipped_adapters_have_short_type_names(tmp_path) -> None:
    from bridge.call_log.store import CallLogStore
    from crm_adapters.bitrix24 import Bitrix24Adapter
    from crm_adapters.lookup import build_adapters
    from crm_adapters.odoo import OdooAdapter
    from crm_adapters.settings import CrmSettings

    settings = CrmSettings.model_validate({"adapters": [
        {"type": "odoo", "options": {"url": "https://odoo.example", "database": "db", "login": "bot",
                                     "password": "secret"}},
        {"type": "bitrix24", "options": {"webhook_url": "https://b24.example/rest/1/abcdef123456/"}},
        {"type": "builtin"},
    ]})
    store = CallLogStore(f"sqlite+aiosqlite:///{tmp_path}/x.sqlite3")
    adapters = build_adapters(settings, store)
    assert [type(a) for a in adapters[:2]] == [OdooAdapter, Bitrix24Adapter]
    assert [a.name for a in adapters] == ["odoo", "bitrix24", "builtin"]


async def test_failing_history_does_not_stop_lookups() -> None:
    from crm_adapters.contract import Contact, CrmAdapter
    from crm_adapters.errors import CrmUnavailable
    from crm_adapters.lookup import LookupService
    from crm_adapters.settings import CrmSettings

    class HistoryDown(CrmAdapter):
        name = "flaky"

        def __init__(self) -> None:
            self.lookups = 0

        async def find_contact(self, number: str) -> Contact | None:
            self.lookups += 1
            return Contact(id="7", display_name="Иван Петров", phones=[number], source=self.name)

        async def history(self, contact, limit=20):
            raise CrmUnavailable("history backend down", adapter=self.name)

        async def create_contact(self, new):
            raise NotImplementedError

        async def log_call(self, call):
            return None

    crm = HistoryDown()
    settings = CrmSettings.model_validate({"breaker": {"failure_threshold": 2}, "cache": {"ttl_seconds": 0}})
    service = LookupService([crm], settings)
    card = await service.lookup("+74951234567")
    for _ in range(3):
        assert await service.history(card.contact) == []
    assert service.history_breakers["flaky"].state == "open"
    assert service.breakers["flaky"].state == "closed"
    again = await service.lookup("+74951234567")
    assert (again.status, again.contact.display_name, crm.lookups) == ("found", "Иван Петров", 2)
    await service.close()
