"""Small helpers shared by the console's and the wallboard's WebSockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

T = TypeVar("T")


async def beside(helper: Coroutine[Any, Any, Any], main: Awaitable[T], *, name: str | None = None) -> T:
    """Await `main` while `helper` runs as a task beside it; the helper is cancelled after."""
    task = asyncio.create_task(helper, name=name)
    try:
        return await main
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def read_until_closed(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the page sends until the socket closes: the pages act
    through POSTs, the socket only pushes."""
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            break
