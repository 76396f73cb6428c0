"""WebSocket floods (issue 14, item 2): one operator opened 1,000 consoles in 2 s and took the
server from 136 MB to 571 MB, each socket with a 215 KB first frame. Now: sockets capped per
session and per user (the oldest closed with TOO_MANY), the first frame bounded, memory flat."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from tests.security.console_site import console_app
from tests.test_auth_http import Browser

ROOT = Path(__file__).resolve().parents[2]
# web.ws_tasks.CloseCode's values (what the pages see; literals so the test runs on any version)
TOO_MANY, SESSION_ENDED = 4008, 4401



@pytest.fixture(name="client")
async def client_fixture(tmp_path: Path) -> AsyncIterator[TestClient]:
    app, users = await console_app(tmp_path / "console.sqlite3")
    client = TestClient(TestServer(app), cookie_jar=aiohttp.DummyCookieJar())
    await client.start_server()
    yield client
    await client.close()
    await users.close()


async def signed_in(client: TestClient, name: str = "anna") -> Browser:
    browser = Browser(client)
    assert (await browser.login(name)).status == 303
    return browser


async def open_console(client: TestClient, browser: Browser) -> tuple[Any, dict[str, Any]]:
    own = f"http://{client.host}:{client.port}"
    ws = await client.ws_connect("/ws/console", headers=browser.headers({"Origin": own}))
    first = await ws.receive(timeout=10)
    assert first.type == WSMsgType.TEXT
    return ws, first.json()


async def close_code(ws: Any) -> int | None:
    """The close code the server sent (None if the socket is still open and quiet)."""
    try:
        msg = await ws.receive(timeout=5)
    except TimeoutError:
        return None
    return msg.data if msg.type == WSMsgType.CLOSE else None


async def test_one_session_opening_many_consoles_keeps_only_the_newest(client: TestClient) -> None:
    tab = await signed_in(client)
    sockets = [(await open_console(client, tab))[0] for _ in range(10)]
    codes = [await close_code(ws) for ws in sockets[:6]]
    assert codes == [TOO_MANY] * 6  # the oldest, with a code the page understands
    assert not any(ws.closed for ws in sockets[6:])  # the 4 newest (per session) stay
    # More browsers of the same user: 8 sockets per user in all, the oldest go first.
    second, third = await signed_in(client), await signed_in(client)
    more = [(await open_console(client, second))[0] for _ in range(4)]
    more += [(await open_console(client, third))[0] for _ in range(2)]
    assert [await close_code(ws) for ws in sockets[6:8]] == [TOO_MANY] * 2
    assert not any(ws.closed for ws in [*sockets[8:], *more])
    for ws in [*sockets, *more]:
        await ws.close()


async def test_the_first_frame_is_bounded(client: TestClient) -> None:
    tab = await signed_in(client)
    ws, hello = await open_console(client, tab)
    size = len(json.dumps(hello))
    assert size <= 64 * 1024, size
    calls = [c["call_id"] for c in hello["cards"]]
    assert calls == [f"call{i}" for i in range(99, 89, -1)]  # the newest 10 after-call cards
    await ws.close()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read the server's RSS")
async def test_many_consoles_keep_the_server_memory_flat(tmp_path: Path) -> None:
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.security.console_site", str(tmp_path / "flood.sqlite3"),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    try:
        assert server.stdout is not None
        async with asyncio.timeout(60):
            port = int(await server.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                         connector=aiohttp.TCPConnector(limit=0)) as http:
            page = await (await http.get("/login")).text()
            token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            resp = await http.post("/login", data={"username": "anna", "password": "correct horse battery",
                                                   "csrf_token": token}, allow_redirects=False)
            assert resp.status == 303
            opened = []
            for i in range(400):
                ws = await http.ws_connect("/ws/console", headers={"Origin": base})
                assert (await ws.receive(timeout=10)).type == WSMsgType.TEXT
                opened.append(ws)  # the attacker keeps every socket and reads nothing more
                if i == 19:
                    before = rss_bytes(server.pid)
            after = rss_bytes(server.pid)
            # Uncapped, 380 more consoles with 286 KB first frames cost the server > 150 MB.
            assert after - before < 40 * 1024 * 1024, (before, after)
    finally:
        server.terminate()
        await server.wait()
