"""Caller lookup in front of the CRM adapters: cache, single-flight, time budget, breakers.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.call_log_store import CallLogStore
from crm_adapters.builtin import BuiltinCrm, CallLogHistory, merge_history
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
from crm_adapters.settings import AdapterConfig, BreakerSettings, CrmSettings

log = logging.getLogger(__name__)

LookupStatus = Literal["found", "not_found", "pending", "unavailable", "colleague", "anonymous", "invalid"]
Clock = Callable[[], float]
Listener = Callable[["CallerCard"], Awaitable[None] | None]


class CallerCard(BaseModel):
    """What the screen-pop shows for a caller."""

    model_config = ConfigDict(frozen=True)

    lookup_id: int = 0  # a card with final=False is followed by one with the same id
    number: str | None = None  # the caller ID as received
    e164: str | None = None
    status: LookupStatus
    contact: Contact | None = None
    extension: str | None = None  # colleagues
    source: str | None = None  # the adapter that answered
    stale: bool = False  # the last known good answer, served while the CRM fails
    final: bool = True
    errors: list[str] = Field(default_factory=list)


class TtlCache:
    """LRU of cards by E.164 number; expired entries stay as last known good until evicted."""

    def __init__(self, max_entries: int, clock: Clock) -> None:
        self.max_entries = max_entries
        self._clock = clock
        # number -> (card, stored at, expires at)
        self._items: OrderedDict[str, tuple[CallerCard, float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: str, card: CallerCard, ttl: float) -> None:
        now = self._clock()
        self._items[key] = (card, now, now + ttl)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def get(self, key: str) -> CallerCard | None:
        item = self._items.get(key)
        if item is None or self._clock() >= item[2]:
            return None
        self._items.move_to_end(key)
        return item[0]

    def stale(self, key: str, max_age: float) -> CallerCard | None:
        item = self._items.get(key)
        return item[0] if item is not None and self._clock() - item[1] <= max_age else None

    def invalidate(self, key: str) -> None:
        self._items.pop(key, None)


class CircuitBreaker:
    def __init__(self, settings: BreakerSettings, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        self.state: Literal["closed", "open", "half_open"] = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.wait = settings.reset_after_seconds

    def allow(self) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open" and self._clock() >= self.opened_at + self.wait:
            self.state = "half_open"  # this caller makes the one trial request
            return True
        return False

    def success(self) -> None:
        self.state, self.failures, self.wait = "closed", 0, self.settings.reset_after_seconds

    def failure(self) -> None:
        self.failures += 1
        if self.state == "half_open":
            self.wait = min(self.wait * 2, self.settings.max_reset_after_seconds)
        elif self.failures < self.settings.failure_threshold:
            return
        self.state, self.opened_at = "open", self._clock()

    def abandon(self) -> None:
        """A trial request was cancelled: let the next request try again."""
        if self.state == "half_open":
            self.state, self.opened_at = "open", self._clock() - self.wait


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
        self.breakers = {a.name: CircuitBreaker(self.settings.breaker, clock) for a in self.adapters}
        self._inflight: dict[str, asyncio.Task[CallerCard]] = {}
        self._ids = itertools.count(1)
        self._subscribers: set[asyncio.Queue[CallerCard]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()  # deliveries in progress (kept referenced)

    @classmethod
    def from_settings(cls, settings: CrmSettings, store: CallLogStore, **kwargs: Any) -> LookupService:
        """Adapters as configured; the built-in CRM and the history share the call log's database."""
        return cls(build_adapters(settings, store), settings, call_log=store, **kwargs)

    async def open(self) -> None:
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
        caller = classify(number, s.default_region, min_extension_digits=s.min_extension_digits,
                          max_extension_digits=s.max_extension_digits)
        if not caller.matchable:
            return CallerCard(lookup_id=lookup_id, number=number, status=caller.kind,  # type: ignore[arg-type]
                              extension=caller.extension)
        e164 = caller.e164
        assert e164 is not None
        labels = {"lookup_id": lookup_id, "number": number}
        cached = self.cache.get(e164)
        if cached is not None:
            return cached.model_copy(update=labels)
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

    async def _call(self, adapter: CrmAdapter, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """One adapter request under its breaker and the request timeout; CrmError on failure."""
        breaker = self.breakers[adapter.name]
        if not breaker.allow():
            raise CrmCircuitOpen(f"not asked for {breaker.wait:g} s after repeated failures",
                                 adapter=adapter.name)
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
            return result
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


# -- adapters from configuration ---------------------------------------------------------

AdapterFactory = Callable[[AdapterConfig, CrmSettings, CallLogStore], CrmAdapter]
ADAPTER_TYPES: dict[str, AdapterFactory] = {}


def register_adapter_type(name: str, factory: AdapterFactory) -> None:
    """Make `type = name` usable in `[[crm.adapters]]`."""
    ADAPTER_TYPES[name] = factory


def _builtin(config: AdapterConfig, settings: CrmSettings, store: CallLogStore) -> CrmAdapter:
    return BuiltinCrm(store, name=config.display_name, default_region=settings.default_region,
                      **config.options)


register_adapter_type("builtin", _builtin)

# Short names for the adapters shipped with callbridge (`type = "odoo"` in [[crm.adapters]]).
SHIPPED_ADAPTERS = {
    "http_json": "crm_adapters.http_json:HttpJsonAdapter",
    "odoo": "crm_adapters.odoo:OdooAdapter",
    "bitrix24": "crm_adapters.bitrix24:Bitrix24Adapter",
}


def build_adapters(settings: CrmSettings, store: CallLogStore) -> list[CrmAdapter]:
    """The enabled adapters, in order. `module:Class` types get `Class.from_config(config, settings,
    store)` if the class has it, else `Class(**options)`."""
    adapters: list[CrmAdapter] = []
    for config in settings.adapters:
        if not config.enabled:
            continue
        kind = SHIPPED_ADAPTERS.get(config.type, config.type)
        if kind in ADAPTER_TYPES:
            adapter = ADAPTER_TYPES[kind](config, settings, store)
        elif ":" in kind:
            module, _, attr = kind.partition(":")
            cls = getattr(importlib.import_module(module), attr)
            adapter = (cls.from_config(config, settings, store) if hasattr(cls, "from_config")
                       else cls(**config.options))
        else:
            known = ", ".join(sorted({*ADAPTER_TYPES, *SHIPPED_ADAPTERS}))
            raise ValueError(f"unknown CRM adapter type {config.type!r} (known: {known}, or module:Class)")
        adapter.name = config.display_name
        adapters.append(adapter)
    return adapters
