"""A TCP proxy for tests: stands between a client and PostgreSQL, and can make the link
between them stall (`freeze()`: no byte, not even a close, goes either way, while both TCP
connections stay up, as on a network that silently drops everything) or break (`close()`:
both sides are reset, as when a node dies and its peer's kernel answers at last)."""

from __future__ import annotations

import asyncio
import contextlib


class PgProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        """Stop listening and reset every connection, upstream ones included."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._writers.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> PgProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._track(asyncio.current_task())
        self._writers.add(writer)
        # Cancelled only by close(); ending quietly, since Python 3.11's streams log a cancelled
        # connection handler as an error.
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await self._flowing.wait()  # a stalled network connects nobody either
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            self._writers.add(up_writer)
            pumps = [asyncio.create_task(self._pump(reader, up_writer)),
                     asyncio.create_task(self._pump(up_reader, writer))]
            for pump in pumps:
                self._track(pump)
            await asyncio.gather(*pumps, return_exceptions=True)
        writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                await self._flowing.wait()
                data = await reader.read(65536)
                await self._flowing.wait()  # what was read just before a freeze is held back too
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        if self._flowing.is_set():  # pass the end on (a frozen link does not even do that)
            writer.close()

    def _track(self, task: asyncio.Task[None] | None) -> None:
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
