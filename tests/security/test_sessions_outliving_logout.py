"""Sessions that outlive their end (issue 14, item 3): a logged-out console tab kept receiving
callers' names for 60 s. Logout, a disabled user and expiry close the session's sockets at
once; an open socket and its pings do not keep the session alive, activity does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from screenpop import console_http
from tests.security.console_site import console_app
from tests.security.test_websocket_flood import SESSION_ENDED, close_code, open_console, signed_in
from tests.test_auth_http import Clock

IDLE = 600


async def site(tmp_path: Path, **options: Any) -> tuple[TestClient, Any, Clock]:
    clock = Clock()
    app, users = await console_app(tmp_path / "s.sqlite3", clock=clock, idle_timeout=IDLE, **options)
    client = TestClient(TestServer(app), cookie_jar=aiohttp.DummyCookieJar())
    await client.start_server()
    return client, users, clock


@pytest.fixture(name="slow_sweep")
async def slow_sweep_fixture(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Any, Clock]]:
    # The sweep never runs in these tests: only the immediate paths can close the sockets.
    found = await site(tmp_path, sweep_interval=3600)
    yield found
    await found[0].close()
    await found[1].close()


async def test_logout_closes_the_sessions_sockets_at_once(slow_sweep: tuple[TestClient, Any, Clock]) -> None:
    client, _users, _clock = slow_sweep
    tab, colleague = await signed_in(client), await signed_in(client, "boris")
    ws, _ = await open_console(client, tab)
    other, _ = await open_console(client, colleague)
    await tab.request("POST", "/logout", headers={"X-CSRF-Token": await tab.csrf()})
    assert await close_code(ws) == SESSION_ENDED
    assert not other.closed  # another session's sockets stay
    await other.close()


async def test_disabling_a_user_closes_his_sockets_at_once(slow_sweep: tuple[TestClient, Any, Clock]) -> None:
    client, users, _clock = slow_sweep
    ws, _ = await open_console(client, await signed_in(client))
    await users.deactivate("anna")
    assert await close_code(ws) == SESSION_ENDED


async def test_expiry_closes_the_sockets(tmp_path: Path) -> None:
    client, users, clock = await site(tmp_path, sweep_interval=0.01)
    try:
        ws, _ = await open_console(client, await signed_in(client))
        clock.now += IDLE + 1
        assert await close_code(ws) == SESSION_ENDED
    finally:
        await client.close()
        await users.close()


async def step(clock: Clock, seconds: float) -> None:
    """Let the server's socket loops run a few rounds (what was sent is read), move the
    clock, and let them run again."""
    await asyncio.sleep(0.1)
    clock.now += seconds
    await asyncio.sleep(0.1)


async def test_an_open_socket_and_its_pings_do_not_keep_the_session_alive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever re-reads the session for a socket runs often here (the old watcher too).
    monkeypatch.setattr(console_http, "REVALIDATE_SECONDS", 0.01, raising=False)
    client, users, clock = await site(tmp_path, sweep_interval=0.01)
    try:
        tab = await signed_in(client)
        ws, _ = await open_console(client, tab)
        for _ in range(3):
            await ws.ping()
            await step(clock, IDLE / 3 - 5)
        await ws.ping()
        await step(clock, 20)  # IDLE + 5 after the last request
        assert (await tab.request("GET", "/api/session")).status == 401
        assert ws.closed or await close_code(ws) == SESSION_ENDED
    finally:
        await client.close()
        await users.close()


async def test_the_persons_activity_keeps_the_session_alive(tmp_path: Path) -> None:
    client, users, clock = await site(tmp_path, sweep_interval=0.01)
    try:
        tab = await signed_in(client)
        ws, _ = await open_console(client, tab)
        await step(clock, IDLE - 100)
        await ws.send_json({"type": "activity"})  # the page saw a key or a click
        await step(clock, IDLE - 100)
        assert not ws.closed
        assert (await tab.request("GET", "/api/session")).status == 200  # a request is activity too
        await step(clock, IDLE - 100)
        assert not ws.closed
        await ws.close()
    finally:
        await client.close()
        await users.close()
