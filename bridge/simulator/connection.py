"""One client connection of `AmiSimulator`: its stream, the replay session it holds and
the tasks writing to it (one message at a time)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bridge.simulator.replay import ReplaySession


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.lock = asyncio.Lock()  # one message at a time, even when written in chunks
        self.session: ReplaySession | None = None
        self.authenticated = self.logged_off = self.closing = False
        self.events_on = True
        self.replayed = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, data: bytes, chunk_size: int | None,
                   on_written: Callable[[], None] | None = None) -> None:
        """Write `data`; `on_written` runs as soon as the last byte is handed over."""
        async with self.lock:
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
            await self.writer.drain()

    def close(self) -> None:
        self.closing = True
        self.writer.close()
