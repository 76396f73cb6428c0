"""Caller lookup in front of the CRM adapters: the LookupService (single-flight, time budget,
cache and breakers applied, history merge, writes).

`LookupService.lookup(number)` always answers within the budget (`budget_ms`):
- not a customer number: `colleague` (an extension), `anonymous`, `invalid`: no CRM asked;
- in the cache (TTL, bounded LRU): the cached card;
- otherwise the adapters are asked in order, the first that finds the caller wins.
  Concurrent lookups of one number share one request (a ring-all queue rings five
  phones at once). If the answer is not there within the budget, the card comes back
  with `final=False` (status `pending`: "looking up...", or the last known good answer
  marked `stale`), and exactly one card with the same `lookup_id` and `final=True`
  follows, to the lookup's `on_update` callback and to every `subscribe()` iterator.
Each adapter has a circuit breaker: after `failure_threshold` consecutive failures it is
skipped for `reset_after_seconds`, then one trial request decides (waits double while
trials fail). With an adapter failing or skipped and nobody finding the caller, the last
known good answer (kept beyond its TTL, up to `stale_max_age_seconds`) is served, marked
`stale`; without one the status is `unavailable`.

The card and its cache live in `crm_adapters.caller_card`, the breaker in
`crm_adapters.circuit_breaker`, adapters from configuration in `crm_adapters.adapter_registry`;
their names are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from pydantic import BaseModel

from bridge.call_log.store import CallLogStore
from crm_adapters.adapter_registry import (
    ADAPTER_TYPES,
    SHIPPED_ADAPTERS,
    AdapterFactory,
    build_adapters,
    register_adapter_type,
)
from crm_adapters.builtin import BuiltinCrm, CallLogHistory, merge_history
from crm_adapters.caller_card import CallerCard, Clock, LookupStatus, TtlCache
from crm_adapters.circuit_breaker import CircuitBreaker
from crm_adapters.contract import Contact, CrmAdapter, FinishedCall, Interaction, NewContact
from crm_adapters.errors import (
    CrmBadResponse,
    CrmCircuitOpen,
    CrmError,
    CrmNotSupported,
    CrmRejected,
    CrmTimeout,
)
from crm_adapters.phone_numbers import classify, normalize
from crm_adapters.settings import CrmSettings

__all__ = [
    "ADAPTER_TYPES", "SHIPPED_ADAPTERS", "AdapterFactory", "CallerCard", "CircuitBreaker", "LogResult",
    "LookupService", "LookupStatus", "TtlCache", "build_adapters", "register_adapter_type",
]

log = logging.getLogger(__name__)
_SAMPLE_NUMBER = "0123456789"  # national: its parse reads the default region's metadata

Listener = Callable[[CallerCard], Awaitable[None] | None]


class LogResult(BaseModel):
    adapter: str | None
    crm_id: str | None = None
    error: str | None = None


class LookupService:
    def __init__(self, adapters: Sequence[CrmAdapter], settings: CrmSettings | None = None, *,
                 call_log: CallLogStore | CallLogHistory | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.adapters = list(adapters)
        self.settings = settings or CrmSettings()
        self._by_name = {a.name: a for a in self.adapters}
        self._call_log = call_log  # extra history for contacts of external CRMs
        self.cache = TtlCache(self.settings.cache.max_entries, clock)
        # (adapter, "lookup" | "history", seconds) of every request: /metrics (bridge.metrics)
        self.on_request_time: Callable[[str, str, float], None] | None = None
        self.breakers = {a.name: CircuitBreaker(self.settings.breaker, clock) for a in self.adapters}
        # History has breakers of its own: history requests piling up under load (slow,
        # heavier) must not stop the lookups that put the caller's name on the card.
        self.history_breakers = {a.name: CircuitBreaker(self.settings.breaker, clock) for a in self.adapters}
        self._inflight: dict[str, asyncio.Task[CallerCard]] = {}
        self._ids = itertools.count(1)
        self._subscribers: set[asyncio.Queue[CallerCard]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()  # deliveries in progress (kept referenced)

    @classmethod
    def from_settings(cls, settings: CrmSettings, store: CallLogStore, **kwargs: Any) -> LookupService:
        """Adapters as configured; the built-in CRM and the history share the call log's database."""
        return cls(build_adapters(settings, store), settings, call_log=store, **kwargs)

    async def open(self) -> None:
        # phonenumbers reads a region's metadata on its first number: before the first call.
        normalize(_SAMPLE_NUMBER, self.settings.default_region)
        for adapter in self.adapters:
            try:
                await adapter.open()
            except Exception as exc:  # a CRM down at start must not stop the bridge
                log.warning("CRM adapter %s did not open: %s", adapter.name, exc)
                self.breakers[adapter.name].failure()

    async def close(self) -> None:
        for task in [*self._inflight.values(), *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._inflight.values(), *self._tasks, return_exceptions=True)
        for adapter in self.adapters:
            try:
                await adapter.close()
            except Exception as exc:
                log.warning("CRM adapter %s did not close cleanly: %s", adapter.name, exc)

    # -- lookups -------------------------------------------------------------------------

    async def lookup(self, number: str | None, *, on_update: Listener | None = None,
                     wait: bool = False) -> CallerCard:
        """The caller's card within the budget (or, with `wait`, the final answer however long)."""
        s = self.settings
        lookup_id = next(self._ids)
        known, e164 = self._without_asking(number, lookup_id)
        if known is not None:
            return known
        assert e164 is not None
        labels = {"lookup_id": lookup_id, "number": number}
        task = self._inflight.get(e164)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._resolve(e164), name=f"crm-lookup {e164}")
            self._inflight[e164] = task
            task.add_done_callback(lambda _t: self._inflight.pop(e164, None))
        if wait:
            return (await asyncio.shield(task)).model_copy(update=labels)
        done, _ = await asyncio.wait({task}, timeout=s.budget_seconds)
        if done:
            return task.result().model_copy(update=labels)
        task.add_done_callback(lambda t: self._deliver(t, labels, on_update))
        stale = self.cache.stale(e164, s.cache.stale_max_age_seconds)
        if stale is not None:
            return stale.model_copy(update={**labels, "stale": True, "final": False})
        return CallerCard(**labels, e164=e164, status="pending", final=False)

    def answer_at_once(self, number: str | None) -> CallerCard | None:
        """The card `lookup` would give, when no CRM need be asked: a number that is nobody's
        customer (an extension, anonymous, invalid), a cached answer, or "not found" when every
        adapter is sure of it from memory (`CrmAdapter.knows_not`) and none is failing. None:
        only a lookup can tell."""
        lookup_id = next(self._ids)
        known, e164 = self._without_asking(number, lookup_id)
        if known is not None or e164 is None or not self.adapters:
            return known
        if all(self.breakers[a.name].state == "closed" and a.knows_not(e164) for a in self.adapters):
            return CallerCard(lookup_id=lookup_id, number=number, e164=e164, status="not_found")
        return None

    def _without_asking(self, number: str | None, lookup_id: int) -> tuple[CallerCard | None, str | None]:
        """(the card, if classification or the cache tell it; the number in E.164, if any)."""
        s = self.settings
        caller = classify(number, s.default_region, min_extension_digits=s.min_extension_digits,
                          max_extension_digits=s.max_extension_digits)
        if not caller.matchable:
            return CallerCard(lookup_id=lookup_id, number=number, status=caller.kind,  # type: ignore[arg-type]
                              extension=caller.extension), None
        cached = self.cache.get(caller.e164) if caller.e164 is not None else None
        if cached is not None:
            return cached.model_copy(update={"lookup_id": lookup_id, "number": number}), caller.e164
        return None, caller.e164

    def subscribe(self) -> AsyncIterator[CallerCard]:
        """Every late (final) card, for any lookup that answered `final=False` first."""
        queue: asyncio.Queue[CallerCard] = asyncio.Queue()
        self._subscribers.add(queue)

        async def updates() -> AsyncIterator[CallerCard]:
            try:
                while True:
                    yield await queue.get()
            finally:
                self._subscribers.discard(queue)

        return updates()

    def _deliver(self, task: asyncio.Task[CallerCard], labels: dict[str, Any],
                 on_update: Listener | None) -> None:
        if task.cancelled() or task.exception() is not None:  # shutting down (_resolve never raises)
            return
        card = task.result().model_copy(update=labels)
        for queue in self._subscribers:
            queue.put_nowait(card)
        if on_update is None:
            return
        try:
            result = on_update(card)
        except Exception:
            log.exception("lookup update listener failed for %s", card.e164)
            return
        if inspect.isawaitable(result):
            delivery = asyncio.ensure_future(result)
            self._tasks.add(delivery)
            delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Future[Any]) -> None:
        self._tasks.discard(delivery)  # type: ignore[arg-type]
        if not delivery.cancelled() and delivery.exception() is not None:
            log.error("lookup update listener failed: %r", delivery.exception())

    def _timed(self, adapter: str, what: str, started: float) -> None:
        if self.on_request_time is not None:
            self.on_request_time(adapter, what, time.monotonic() - started)

    async def _call(self, adapter: CrmAdapter, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """One adapter request under its breaker and the request timeout; CrmError on failure."""
        breaker = (self.history_breakers if what == "history" else self.breakers)[adapter.name]
        if not breaker.allow():
            raise CrmCircuitOpen(f"not asked for {breaker.wait:g} s after repeated failures",
                                 adapter=adapter.name)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.request_timeout_seconds):
                result = await call()
        except asyncio.CancelledError:
            breaker.abandon()
            raise
        except TimeoutError:
            error: CrmError = CrmTimeout(f"no answer in {self.settings.request_timeout_seconds:g} s",
                                         adapter=adapter.name)
        except CrmError as exc:
            error = exc
            error.adapter = error.adapter or adapter.name
        except Exception as exc:  # an adapter bug: keep the call going, say loudly what broke
            log.exception("CRM adapter %s crashed in %s", adapter.name, what)
            error = CrmBadResponse(f"unexpected {type(exc).__name__}: {exc}", adapter=adapter.name)
        else:
            breaker.success()
            self._timed(adapter.name, what, started)
            return result
        self._timed(adapter.name, what, started)
        if error.counts_for_breaker:
            breaker.failure()
            if breaker.state == "open":
                log.warning("CRM %s: circuit open for %g s after %d failures", adapter.name, breaker.wait,
                            breaker.failures)
        else:
            breaker.success()  # the CRM answered; it just said no
        log.warning("CRM %s %s failed: %s", adapter.name, what, error)
        raise error

    async def _resolve(self, e164: str) -> CallerCard:
        errors: list[str] = []
        for adapter in self.adapters:
            try:
                contact = await self._call(adapter, "lookup", lambda a=adapter: a.find_contact(e164))
            except CrmError as exc:
                errors.append(str(exc))
                continue
            if contact is not None:
                card = CallerCard(e164=e164, status="found", contact=contact, source=adapter.name)
                self.cache.put(e164, card, self.settings.cache.ttl_seconds)
                return card
        if errors:  # somebody could not answer: "not found" would be a guess
            stale = self.cache.stale(e164, self.settings.cache.stale_max_age_seconds)
            if stale is not None:
                return stale.model_copy(update={"stale": True, "errors": errors})
            return CallerCard(e164=e164, status="unavailable", errors=errors)
        card = CallerCard(e164=e164, status="not_found")
        self.cache.put(e164, card, self.settings.cache.not_found_ttl_seconds)
        return card

    # -- history and writes --------------------------------------------------------------

    async def history(self, contact: Contact, limit: int | None = None) -> list[Interaction]:
        """The contact's CRM history merged with the call log's calls, newest first."""
        limit = limit or self.settings.history_limit
        adapter = self._by_name.get(contact.source)
        items: list[Interaction] = []
        if adapter is not None:
            with contextlib.suppress(CrmError):  # logged; the call log still has something to show
                items = await self._call(adapter, "history", lambda: adapter.history(contact, limit))
        calls: list[Interaction] = []
        if self.settings.merge_call_log_history and not isinstance(adapter, BuiltinCrm):
            try:
                history = self._call_log_history()
                if history is not None:
                    calls = await history.calls(contact.phones, limit)
            except Exception as exc:  # the CRM's own history still shows
                log.warning("call log history for %s failed: %s", contact.id, exc)
        return merge_history(items, calls, limit)

    def _call_log_history(self) -> CallLogHistory | None:
        if isinstance(self._call_log, CallLogStore):
            self._call_log = CallLogHistory(self._call_log.engine, self.settings.default_region)
        return self._call_log

    def _writer(self, name: str | None, capable: str) -> CrmAdapter:
        if name is not None:
            if name not in self._by_name:
                raise CrmNotSupported(f"no adapter named {name!r}")
            return self._by_name[name]
        for adapter in self.adapters:
            if getattr(adapter, capable):
                return adapter
        raise CrmNotSupported(f"no configured adapter has {capable}")

    async def create_contact(self, new: NewContact, *, adapter: str | None = None) -> Contact:
        """Create in the named adapter, or the first that can; raises CrmError (already logged)."""
        phones = [normalize(p, self.settings.default_region) for p in new.phones]
        if None in phones:
            raise CrmRejected(f"not a phone number among {new.phones}")
        target = self._writer(adapter, "can_create_contacts")
        new = new.model_copy(update={"phones": list(dict.fromkeys(p for p in phones if p))})
        contact = await self._call(target, "create contact", lambda: target.create_contact(new))
        for phone in new.phones:
            self.cache.invalidate(phone)
        return contact

    async def log_call(self, call: FinishedCall, *, adapter: str | None = None) -> LogResult:
        """Log into the named adapter, else the one that found the caller, else the first that can.
        Never raises: the result says what went wrong."""
        e164 = normalize(call.number, self.settings.default_region) or call.number
        if adapter is None:
            known = self.cache.stale(e164, float("inf"))
            source = self._by_name.get(known.source or "") if known is not None else None
            adapter = source.name if source is not None and source.can_log_calls else None
        try:
            target = self._writer(adapter, "can_log_calls")
            call = call.model_copy(update={"number": e164})
            return LogResult(adapter=target.name,
                             crm_id=await self._call(target, "log call", lambda: target.log_call(call)))
        except CrmError as exc:
            return LogResult(adapter=adapter or exc.adapter, error=str(exc))
