"""One client connection of `AmiSimulator`: its stream, the replay session it holds and
how bytes reach it, one message at a time and in order — awaited (`send`: the connection's
own replay and replies wait for a slow client) or not (`post`: the shared PBX's events,
which must not wait for any one client)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from bridge.simulator.replay import ReplaySession

HIGH_WATER = 64 * 1024  # asyncio's default for a transport: `drain` waits above it


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.lock = asyncio.Lock()  # one message at a time, even when written in chunks
        # Posted while a send held the lock, numbered in posting order: they go next.
        self.outbox: list[tuple[int, bytes]] = []
        self.posted = 0
        self._waiting: list[int] = []  # `posted` when each send waiting for the lock was made
        self._flushing = False
        self.session: ReplaySession | None = None
        self.authenticated = self.logged_off = self.closing = False
        self.events_on = True
        self.replayed = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, data: bytes | Callable[[], bytes], chunk_size: int | None,
                   on_written: Callable[[], None] | None = None) -> None:
        """Write `data` (a callable: made under the lock, right before it is written, so what
        it commits goes out in the same step); `on_written` runs as soon as the last byte is
        handed over. What was posted before `data` was made goes first, what was posted while
        it waited for the lock after it: an answer made before those events (a CoreShowChannels
        list) must not reach the client behind them, as Asterisk never writes it there."""
        made = self.posted
        self._waiting.append(made)
        try:
            await self.lock.acquire()
        finally:
            self._waiting.remove(made)
        try:
            if self.writer.is_closing():
                raise ConnectionResetError("connection closed")
            if callable(data):
                # Made now, but not ahead of a message made earlier that waits for the lock.
                data, made = data(), min([self.posted, *self._waiting])
            earlier = [posted for number, posted in self.outbox if number <= made]
            if earlier:
                data = b"".join([*earlier, data])
                self.outbox = [(number, posted) for number, posted in self.outbox if number > made]
            step = chunk_size or len(data) or 1
            for offset in range(0, len(data), step):
                if self.writer.is_closing():
                    raise ConnectionResetError("connection closed")
                self.writer.write(data[offset : offset + step])
                if chunk_size and offset + step < len(data):
                    await self.writer.drain()
                    await asyncio.sleep(0)  # a separate segment: the client's reads split
            if on_written is not None:
                on_written()
            if self.outbox:  # posted after `data` was made: next, in order
                self._flush_soon(chunk_size)
            await self.writer.drain()
        finally:
            self.lock.release()

    def post(self, data: bytes, chunk_size: int | None) -> None:
        """Write `data` without waiting: at once when nothing else is being written, else
        right after what is (in order). The transport buffers what the client does not read."""
        if self.closing or self.writer.is_closing():
            return
        self.posted += 1
        if not chunk_size and not self.outbox and not self.lock.locked():
            self.writer.write(data)
            return
        self.outbox.append((self.posted, data))
        self._flush_soon(chunk_size)

    def _flush_soon(self, chunk_size: int | None) -> None:
        if not self._flushing:  # one task sends all that waits
            self._flushing = True
            task = asyncio.create_task(self._flush(chunk_size))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _flush(self, chunk_size: int | None) -> None:
        try:
            with contextlib.suppress(ConnectionError):
                await self.send(self._flushed, chunk_size)  # takes the whole outbox with it
        finally:
            if self.closing and not self.outbox:  # closed meanwhile: after its last bytes
                self.writer.close()

    def _flushed(self) -> bytes:
        self._flushing = False  # under the lock: what is posted from now on needs a flush
        return b""

    @property
    def backlog(self) -> int:
        """Bytes given to this connection that have not reached the kernel yet: what a client
        that stops reading piles up once the socket buffers are full."""
        return self.writer.transport.get_write_buffer_size() + sum(len(data) for _, data in self.outbox)

    @property
    def behind(self) -> bool:
        """More is waiting to go out than asyncio lets a writer pile up before `drain` waits."""
        return self.backlog > HIGH_WATER

    async def drained(self) -> None:
        """Until what was given to it so far has (mostly) gone out."""
        async with self.lock:
            await self.writer.drain()

    def close(self) -> None:
        self.closing = True
        if not self.outbox:  # else the flush closes it, once the posted bytes are out
            self.writer.close()

    def abort(self) -> None:
        """Cut at once, unsent bytes dropped (a stuck client: Asterisk ends such a session)."""
        self.closing = True
        self.writer.transport.abort()
