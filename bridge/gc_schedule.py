"""When Python's cyclic garbage collector runs in the bridge: on a timer, not mid-burst.

By default CPython collects whenever allocations outrun deallocations by 700 objects, and
every so often walks every object the process holds. Under load (bench/cluster.py: 2,000
pages, 50 calls/s) those full passes over the calls, cards and sockets stalled a node's
event loop for 60-140 ms each, several times a minute: the tail of every card pop. The
bridge makes little cyclic garbage (a few hundred objects in 3 s under that load), so:

- what start-up built is frozen (gc.freeze: it lives as long as the process);
- automatic collection only as a safety net (a burst of `SAFETY_NET` net allocations);
- the young objects every `young_every` seconds (a short pass over what was made since: the
  shorter the interval, the shorter each pause, for about the same CPU);
- a full pass every `full_every` seconds (one stall in minutes instead of several a minute).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress

log = logging.getLogger(__name__)

SAFETY_NET = 200_000  # net allocations that trigger a young collection anyway


class CollectorSchedule:
    def __init__(self, *, young_every: float = 0.5, full_every: float = 600.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if young_every <= 0 or full_every < young_every:
            raise ValueError("collect the young objects more often than all of them, at least once a second")
        self.young_every, self.full_every = young_every, full_every
        self._sleep = sleep
        self.young_passes = self.full_passes = 0
        self.longest = 0.0  # seconds: the longest pass so far
        self._task: asyncio.Task[None] | None = None
        self._thresholds: tuple[int, int, int] | None = None

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        # Generation 0 only by the safety net; 1 and 2 never on their own (the timer's).
        gc.set_threshold(SAFETY_NET, 1_000_000, 1_000_000)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gc schedule")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def collect(self, generation: int) -> float:
        """One pass over `generation` and the younger ones; its seconds."""
        started = time.perf_counter()
        gc.collect(generation)
        took = time.perf_counter() - started
        self.longest = max(self.longest, took)
        if generation == 2:
            self.full_passes += 1
            log.debug("full garbage collection: %.1f ms", took * 1000)
        else:
            self.young_passes += 1
        return took

    async def _run(self) -> None:
        since_full = 0.0
        while True:
            await self._sleep(self.young_every)
            since_full += self.young_every
            if since_full >= self.full_every:
                since_full = 0.0
                self.collect(2)
            else:
                self.collect(1)
