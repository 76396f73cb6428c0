"""The caller card the screen-pop shows, and the cache that keeps cards by E.164 number.

`TtlCache` is a bounded LRU: an entry answers until its TTL, then stays on as the last known
good card (for `stale`, while the CRM fails) until the LRU evicts it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_adapters.contract import Contact

LookupStatus = Literal["found", "not_found", "pending", "unavailable", "colleague", "anonymous", "invalid"]
Clock = Callable[[], float]


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
