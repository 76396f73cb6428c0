"""A login site for the attack tests: the real auth (web.auth_http) on a temp SQLite, a
fake clock, and a stand-in for the TCP peer's address (`X-Test-Peer`), so one test client
can play many machines — or a proxy they all come through."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.test_auth_http import FAST, PW, Browser, Clock
from web.auth_http import setup_auth
from web.users import UserStore

PEER_HEADER = "X-Test-Peer"


@web.middleware
async def fake_peer(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Tests only: the TCP peer's address is the X-Test-Peer header (default 127.0.0.1)."""
    peer = request.headers.get(PEER_HEADER)
    return await handler(request.clone(remote=peer) if peer else request)


class LoginSite:
    def __init__(self, client: TestClient, users: UserStore, clock: Clock, app: web.Application) -> None:
        self.client, self.users, self.clock, self.app = client, users, clock, app
        self._token: tuple[str, str] | None = None

    def browser(self) -> Browser:
        return Browser(self.client)

    async def _form_token(self) -> tuple[str, str]:
        """One login form's (nonce cookie, token): an attacker reuses it for every try."""
        if self._token is None:
            page = await self.client.get("/login")
            found = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
            assert found is not None
            nonce = next(v.value for k, v in page.cookies.items() if k.endswith("callbridge_login"))
            self._token = (nonce, found.group(1))
        return self._token

    async def attempt(self, username: str, password: str, *, peer: str = "127.0.0.1",
                      forwarded_for: str | None = None, cookies: dict[str, str] | None = None) -> int:
        """One scripted login try (no browser): its HTTP status."""
        nonce, token = await self._form_token()
        jar = {"callbridge_login": nonce, **(cookies or {})}
        headers = {PEER_HEADER: peer, "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
        if forwarded_for is not None:
            headers["X-Forwarded-For"] = forwarded_for
        resp = await self.client.post("/login", data={"username": username, "password": password,
                                                      "csrf_token": token},
                                      headers=headers, allow_redirects=False)
        await resp.release()
        return resp.status

    async def close(self) -> None:
        await self.client.close()
        await self.users.close()


async def login_site(tmp_path: Path, hasher: Any = FAST, **options: Any) -> LoginSite:
    users = UserStore(f"sqlite+aiosqlite:///{tmp_path / 'auth.sqlite3'}", hasher=hasher)
    await users.open()
    for name, role, exts in (("anna", "operator", ["101"]), ("boris", "operator", ["102"]),
                             ("sam", "supervisor", [])):
        await users.add(name, PW, role=role, display_name=name.title(), extensions=exts)
    clock = Clock()
    app = web.Application(middlewares=[fake_peer])
    setup_auth(app, users, **{"secure_cookie": False, "clock": clock, **options})
    client = TestClient(TestServer(app), cookie_jar=aiohttp.DummyCookieJar())
    await client.start_server()
    return LoginSite(client, users, clock, app)
