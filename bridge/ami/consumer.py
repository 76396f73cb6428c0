"""The AMI client's one event consumer: every event, the `on_ready` call, the `on_disconnect`
call and each `in_order` call go through ONE queue drained by ONE task, awaited one after
another, so a handler sees them exactly in arrival order (bridge.ami.client's docstring).

A hot standby's events may bypass it undecoded (`keep_raw`); mixed into AmiClient, whose
state (queue, read gate, session, callbacks) it reads.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.ami.message import AmiMessage

if TYPE_CHECKING:
    from bridge.ami.client import AmiClient
    from bridge.ami.protocol import AmiProtocol

log = logging.getLogger("bridge.ami.client")  # one logger for the client, as before the split


@dataclass(frozen=True)
class _Marker:
    kind: str  # "ready" | "disconnect" | "call"
    session: int
    reason: str = ""
    call: Callable[[], Awaitable[None]] | None = None  # "call": run in order (`in_order`)
    done: asyncio.Future[bool] | None = None


_STOP = object()
_YIELD_EVERY = 32  # events handled before the consumer lets other tasks run


class EventConsumer:
    """Mixed into AmiClient: the queue's producer side and its consumer."""

    async def in_order(self: AmiClient, call: Callable[[], Awaitable[None]]) -> bool:
        """Await `call` in the event consumer, between the events queued before and those
        after (as `on_ready` runs): events it awaits replies for wait behind it. False when
        the session ended first (its next `on_ready` does it) or the client stopped."""
        if self._consumer is None or self._consumer.done() or not self.authenticated:
            return False
        if asyncio.current_task() is self._consumer:  # from a handler: it is in order already
            await call()
            return True
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Marker("call", self._session, call=call, done=done))
        return await done

    def may_keep_raw(self: AmiClient, protocol: AmiProtocol, block: bytes) -> bool:
        """May this event go to `raw_sink` undecoded, bypassing the queue (a standby parses
        only what a takeover feeds)? Only while the queue is empty, so none overtakes an
        earlier one; FullyBooted always goes the parsed way (it makes the session ready)."""
        return (protocol is self.protocol and self._queue.empty()
                and not block.startswith(b"Event: FullyBooted"))

    def keep_raw(self: AmiClient, arrived: float, blocks: list[bytes]) -> None:
        """Hand a read's run of undecoded events (`may_keep_raw`) to `raw_sink`, in order."""
        self._tracker.stream_position += len(blocks)
        if self.raw_sink is None:
            return
        try:
            self.raw_sink(arrived, blocks)
        except Exception:
            log.exception("AMI raw event sink failed; continuing")

    def dispatch(self: AmiClient, event: AmiMessage) -> list[str]:  # type: ignore[override]
        self._tracker.stream_position += 1
        self._queue.put_nowait(event)
        self._gate.after_put(self.protocol, self._queue.qsize(), len(self._tracker))
        return []

    def _mark_ready(self: AmiClient) -> None:
        if self._ready_marked != self._session:
            self._ready_marked = self._session
            self._queue.put_nowait(_Marker("ready", self._session))

    # -- the one consumer -------------------------------------------------------------
    async def _consume(self: AmiClient) -> None:
        since_yield = 0
        while True:
            if self._queue.empty():
                since_yield = 0  # the get below waits: other tasks run then
            elif since_yield >= _YIELD_EVERY:
                # A read of a busy socket brings hundreds of events: let what the first ones
                # made (a card, a published entry) leave before handling the rest.
                since_yield = 0
                await asyncio.sleep(0)
            item = await self._queue.get()
            self._gate.after_get(self._queue.qsize())
            since_yield += 1
            if item is _STOP:
                self._drop_calls()
                return
            if isinstance(item, AmiMessage):
                if self._handler is not None:
                    await self._guarded("event handler", self._handler, item)
                for pattern, regexp in self.patterns:
                    if regexp.match(item.event or ""):
                        for callback in self.callbacks[pattern]:
                            await self._guarded(f"callback for {pattern}", callback, self, item)
            elif item.kind == "call":
                current = item.session == self._session and self.authenticated
                if current and item.call is not None:
                    await self._guarded("in-order call", item.call)
                if item.done is not None and not item.done.done():
                    item.done.set_result(current)
            elif item.kind == "ready":
                if item.session != self._session or not self.authenticated:
                    continue  # that session is already gone
                if self._ready_cb is not None:
                    await self._guarded("on_ready callback", self._ready_cb)
                if item.session == self._session and self.authenticated:
                    self._ready.set()
            elif self._disconnect_cb is not None:
                await self._guarded("on_disconnect callback", self._disconnect_cb, item.reason)

    def _drop_calls(self: AmiClient) -> None:
        """At stop: in-order calls still queued will not run."""
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Marker) and item.done is not None and not item.done.done():
                item.done.set_result(False)

    @staticmethod
    async def _guarded(what: str, fn: Callable[..., Any], *args: Any) -> None:
        try:
            result = fn(*args)  # sync or async, awaited before the next item either way
            if inspect.isawaitable(result):
                await result
        except Exception:  # one failing callback must not stop the event stream
            log.exception("AMI %s failed; continuing", what)
