"""The shared PBX's fan-out (`AmiSimulator(shared=True)`): every manager event goes to every
logged-in connection with events on, the same bytes in the same order, as Asterisk's
manager_event queues each event for every session.

No connection can hold the others up: bytes are handed to each connection without waiting
for it to drain (`Connection.post`). A client that stops reading piles them up in its
transport; past `max_backlog` bytes it is cut, as Asterisk ends a session whose writes time
out (manager.c send_string / process_events: a failed write ends the session). A paced
replay waits for nobody; an unpaced one (speed None) goes as fast as the fastest listener.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from bridge.simulator.connection import Connection


class Broadcast:
    def __init__(self, *, max_backlog: int, chunk_size: Callable[[], int | None],
                 drop_after: Callable[[], int | None]) -> None:
        self.max_backlog = max_backlog
        self._chunk_size, self._drop_after = chunk_size, drop_after  # read at every event
        self.listeners: list[Connection] = []  # in login order
        self.replayed = 0  # capture events the PBX has said (to whoever listened)
        self.cut = 0  # connections cut for falling behind
        self.started = False

    def listen(self, conn: Connection) -> bool:
        """`conn` gets the events from now on. True for the first listener ever: the PBX's
        replay starts then (after its login's FullyBooted, so it misses nothing)."""
        first = not self.started
        self.started = True
        if conn not in self.listeners:
            self.listeners.append(conn)
        return first

    def forget(self, conn: Connection) -> None:
        if conn in self.listeners:
            self.listeners.remove(conn)

    def events(self, data: bytes) -> None:
        """Events the PBX made (an action's, ChanSpy's, ...): to every listener."""
        for conn in self._listening():
            self._post(conn, data)

    def replayed_events(self, raws: Sequence[bytes]) -> None:
        """Replayed capture events, in one write per connection. `drop_after_events` counts
        per connection: one that reaches it is closed right after its N-th event."""
        if not raws:
            return
        self.replayed += len(raws)
        whole = b"".join(raws)
        drop_after = self._drop_after()
        for conn in self._listening():
            room = len(raws) if drop_after is None else max(0, drop_after - conn.replayed)
            if room >= len(raws):
                self._post(conn, whole)
            elif room:
                self._post(conn, b"".join(raws[:room]))
            conn.replayed += min(room, len(raws))
            if drop_after is not None and conn.replayed >= drop_after:
                conn.close()

    async def fastest_drained(self) -> None:
        """An unpaced replay goes as fast as its fastest listener reads: while every listener
        is behind, wait for one to catch up. The slower fall behind and are cut past
        `max_backlog`; a paced replay waits for nobody, as a PBX."""
        conns = self._listening()
        if not conns or not all(c.behind for c in conns):
            return
        waits = [asyncio.ensure_future(c.drained()) for c in conns]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    def _listening(self) -> list[Connection]:
        return [c for c in self.listeners if c.events_on and not c.closing]

    def _post(self, conn: Connection, data: bytes) -> None:
        conn.post(data, self._chunk_size())
        if conn.backlog > self.max_backlog:
            self.cut += 1
            conn.abort()
