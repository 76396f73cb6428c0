"""The numbers a CRM holds, kept in memory: a caller outside them is answered at once.

A new call's first cards wait for the caller lookup (screenpop holds them, so the card pops
with the name), and a built-in CRM lookup is a database round trip on every node that shows
the call. Under load (bench/cluster.py: 50 new calls/s, every caller unknown) that wait was
the largest part of a card's pop on a follower node: the ring comes a millisecond after the
caller's number, and the lookup waits for a CPU for PostgreSQL, then for the node. Most
callers of a call centre are not (yet) contacts; for them the answer is known beforehand.

So the built-in CRM keeps the set of its E.164 numbers: a number outside the set is surely
nobody's, and the card pops at once as an unknown caller. The set is never ahead of the
database, only behind it by numbers added elsewhere (another node, `callbridge crm import`):

- the lookup still runs behind an instant answer: a contact it finds updates the card in
  place, and its numbers join the set;
- every `refresh_every` seconds the numbers added since are read (`crm_phones.id` above the
  highest seen; a slower transaction's lower ids can slip past that, and the lookup heals them).

A number removed from the CRM stays in the set: its lookups wait for the database, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class KnownNumbers:
    def __init__(self, *, refresh_every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not refresh_every > 0:
            raise ValueError(f"must be a positive number of seconds, not {refresh_every!r}")
        self.refresh_every = refresh_every
        self._clock = clock
        self._numbers: set[str] = set()
        self.last_id = 0  # the highest crm_phones.id read
        # Read from the database at least once: until then nothing is surely unknown.
        self.ready = False
        self._asked_at: float | None = None  # when a read last began (a failed one waits too)

    def __len__(self) -> int:
        return len(self._numbers)

    def absorb(self, rows: Iterable[tuple[int, str]]) -> None:
        """A read of `crm_phones` rows (id, e164) above `last_id`: the set is now that fresh."""
        for row_id, e164 in rows:
            self._numbers.add(e164)
            self.last_id = max(self.last_id, row_id)
        self.ready = True

    def add(self, numbers: Iterable[str]) -> None:
        """Numbers seen on a contact (created here, or found by a lookup)."""
        self._numbers.update(numbers)

    def surely_unknown(self, e164: str) -> bool:
        return self.ready and e164 not in self._numbers

    def reading(self) -> None:
        """A read of the database begins (`due` counts from here: a failing one is not retried
        on every call)."""
        self._asked_at = self._clock()

    def due(self) -> bool:
        """Never read, or last asked `refresh_every` seconds ago or more."""
        return self._asked_at is None or self._clock() - self._asked_at >= self.refresh_every
