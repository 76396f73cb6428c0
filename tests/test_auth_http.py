"""Login, sessions, CSRF and role checks over HTTP (aiohttp test server, temp SQLite; one flow on PG)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from sqlalchemy import func, select

from tests.db_fixtures import Database, database_fixture  # noqa: F401  # fixture
from web.access import USER_KEY, require_role
from web.auth import AUTH_KEY, revalidate, unguarded_routes
from web.auth_http import setup_auth
from web.users import SESSIONS, UserStore

PW = "correct horse battery"
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
IDLE, MAX_AGE = 600, 3600


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Browser:
    """A client that keeps cookies by hand (Secure ones too, over the test's plain HTTP)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.cookies: dict[str, str] = {}

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      **kwargs: Any) -> aiohttp.ClientResponse:
        resp = await self.client.request(method, path, headers=self.headers(headers), allow_redirects=False,
                                         **kwargs)
        for name, morsel in resp.cookies.items():
            if morsel.value == "" or morsel["max-age"] == "0":
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value
        await resp.read()
        return resp

    async def login(self, username: str, password: str = PW, next_path: str | None = None,
                    **extra: str) -> aiohttp.ClientResponse:
        page = await self.request("GET", "/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert token is not None
        form = {"username": username, "password": password, "csrf_token": token.group(1), **extra}
        if next_path is not None:
            form["next"] = next_path
        return await self.request("POST", "/login", data=form)

    async def csrf(self) -> str:
        resp = await self.request("GET", "/api/session")
        assert resp.status == 200
        return (await resp.json())["csrf_token"]

    def session_cookie(self) -> str:
        return next(v for k, v in self.cookies.items() if k.endswith("callbridge_session"))


@require_role("operator", "admin")
async def console(request: web.Request) -> web.Response:
    return web.Response(text=f"console of {request[USER_KEY].username}")


@require_role("supervisor", "admin")
async def wallboard(request: web.Request) -> web.Response:
    return web.Response(text="wallboard")


@require_role("supervisor")
async def api_ops(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@require_role("operator")
async def api_note(request: web.Request) -> web.Response:
    if request.content_type == "application/json":
        return web.json_response({"saved": (await request.json())["text"]})
    return web.json_response({"saved": (await request.post())["text"]})


@require_role("operator", "admin")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    user = request[USER_KEY]
    await ws.send_json({"user": user.username, "extensions": user.extensions})
    async for msg in ws:
        if msg.data == "check":
            alive = await revalidate(request)
            if alive is None:
                await ws.close(code=4401, message=b"session ended")
                break
            await ws.send_json({"alive": alive.username})
    return ws


async def forgotten(request: web.Request) -> web.Response:  # no require_role: unguarded_routes finds it
    return web.Response(text="?")


class Site:
    def __init__(self, client: TestClient, users: UserStore, clock: Clock, app: web.Application) -> None:
        self.client, self.users, self.clock, self.app = client, users, clock, app

    def browser(self) -> Browser:
        return Browser(self.client)

    async def sessions(self) -> int:
        async with self.users.engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(SESSIONS))).scalar_one()


async def _site(url: str, engine_options: dict[str, Any] | None = None, **options: Any) -> Site:
    users = UserStore(url, hasher=FAST, **(engine_options or {}))
    await users.open()
    for name, role, exts in (("anna", "operator", ["101", "102"]), ("sam", "supervisor", []),
                             ("tina", "trainer", []), ("root", "admin", ["100"])):
        await users.add(name, PW, role=role, display_name=name.title(), extensions=exts)
    clock = Clock()
    app = web.Application()
    setup_auth(app, users, **{"secure_cookie": False, "session_max_age": MAX_AGE, "idle_timeout": IDLE,
                              "clock": clock, **options})
    app.router.add_get("/console", console)
    app.router.add_get("/wallboard", wallboard)
    app.router.add_get("/api/ops", api_ops)
    app.router.add_post("/api/note", api_note)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/forgotten", forgotten)
    client = TestClient(TestServer(app), cookie_jar=aiohttp.DummyCookieJar())
    await client.start_server()
    return Site(client, users, clock, app)


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[Site]:
    site = await _site(f"sqlite+aiosqlite:///{tmp_path / 'auth.sqlite3'}")
    yield site
    await site.client.close()
    await site.users.close()


def _set_cookie(resp: aiohttp.ClientResponse, name: str) -> str:
    found = [h for h in resp.headers.getall("Set-Cookie", []) if h.startswith(name + "=")]
    assert len(found) == 1, resp.headers.getall("Set-Cookie", [])
    return found[0]


async def test_login_sets_a_secure_httponly_lax_session_cookie(tmp_path: Path) -> None:
    site = await _site(f"sqlite+aiosqlite:///{tmp_path / 'a.sqlite3'}", secure_cookie=True)
    try:
        browser = site.browser()
        resp = await browser.login("anna")
        assert (resp.status, resp.headers["Location"]) == (303, "/console")
        cookie = _set_cookie(resp, "__Host-callbridge_session")
        attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "secure", "path", "samesite"} <= attrs and "samesite=lax" in cookie.lower()
        assert "max-age" not in attrs and "expires" not in attrs  # dies with the browser
        assert (await browser.request("GET", "/console")).status == 200
    finally:
        await site.client.close()
        await site.users.close()


async def test_demo_mode_cookie_is_not_secure(site: Site) -> None:
    resp = await site.browser().login("anna")
    cookie = _set_cookie(resp, "callbridge_session")
    lower = cookie.lower()
    assert "httponly" in lower and "samesite=lax" in lower and "secure" not in lower


async def test_session_api_describes_the_user(site: Site) -> None:
    browser = site.browser()
    await browser.login("Anna")
    resp = await browser.request("GET", "/api/session")
    body = await resp.json()
    assert resp.headers["Cache-Control"] == "no-store"
    assert {k: body[k] for k in ("user", "display_name", "role", "extensions")} == {
        "user": "anna", "display_name": "Anna", "role": "operator", "extensions": ["101", "102"]}
    assert len(body["csrf_token"]) >= 40 and body["expires_at"] == site.clock.now + MAX_AGE
    await site.users.update("anna", extensions=["103"], role="admin")  # applies on the next request
    body = await (await browser.request("GET", "/api/session")).json()
    assert (body["role"], body["extensions"]) == ("admin", ["103"])


@pytest.mark.parametrize(("user", "home"), [("anna", "/console"), ("sam", "/wallboard"), ("tina", "/reviews"),
                                            ("root", "/admin/users")])  # issue 13: not the console
async def test_login_goes_to_the_role_home(site: Site, user: str, home: str) -> None:
    assert (await site.browser().login(user)).headers["Location"] == home


async def test_next_is_followed_only_to_local_paths(site: Site) -> None:
    resp = await site.browser().login("sam", next_path="/wallboard?queue=sales")
    assert resp.headers["Location"] == "/wallboard?queue=sales"
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)",
                 "/\t/evil.example", "evil.example", "/login"):
        resp = await site.browser().login("sam", next_path=evil)
        assert resp.headers["Location"] == "/wallboard", evil
    page = await site.browser().request("GET", "/login", params={"next": "//evil.example"})
    assert 'name="next" value=""' in await page.text()


async def test_unauthenticated_api_is_401_and_pages_redirect_to_login(site: Site) -> None:
    browser = site.browser()
    for method, path in (("GET", "/api/session"), ("GET", "/api/ops"), ("POST", "/api/note"), ("GET", "/ws")):
        resp = await browser.request(method, path)
        assert resp.status == 401, path
        assert (await resp.json())["error"] == "unauthenticated"
    resp = await browser.request("GET", "/console?tab=2&x=1")
    assert (resp.status, resp.headers["Location"]) == (302, "/login?next=/console%3Ftab%3D2%26x%3D1")
    resp = await browser.login("anna", next_path="/console?tab=2&x=1")
    assert resp.headers["Location"] == "/console?tab=2&x=1"
    made_up = {"Cookie": "callbridge_session=" + "A" * 43}  # refused, and the browser told to drop it
    resp = await site.browser().request("GET", "/api/ops", headers=made_up)
    assert resp.status == 401 and 'callbridge_session=""' in _set_cookie(resp, "callbridge_session")


async def test_login_page_is_public_and_locked_down(site: Site) -> None:
    browser = site.browser()
    resp = await browser.request("GET", "/login")
    text = await resp.text()
    assert resp.status == 200 and "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert '<label for="username">' in text and 'autocomplete="current-password"' in text
    assert (await browser.request("GET", "/login.css")).status == 200
    await browser.login("sam")
    resp = await browser.request("GET", "/login")  # signed in already: sent on
    assert (resp.status, resp.headers["Location"]) == (302, "/wallboard")


async def test_wrong_password_and_unknown_user_look_the_same(site: Site) -> None:
    wrong = await site.browser().login("anna", "wrong password!")
    unknown = await site.browser().login("nobody", PW)
    for resp in (wrong, unknown):
        assert resp.status == 401 and "Wrong username or password." in await resp.text()
        assert not any(k.endswith("callbridge_session") for k in resp.cookies)
    await site.users.deactivate("tina")
    assert (await site.browser().login("tina")).status == 401


async def test_login_form_needs_its_own_csrf_token(site: Site) -> None:
    browser = site.browser()
    resp = await browser.request("POST", "/login", data={"username": "anna", "password": PW})
    assert resp.status == 403 and "expired" in await resp.text()
    resp = await browser.request("POST", "/login", data={"username": "anna", "password": PW,
                                                          "csrf_token": "0" * 64})
    assert resp.status == 403
    other = site.browser()  # a token from another browser's form does not fit this nonce
    page = await other.request("GET", "/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert token is not None
    resp = await browser.request("POST", "/login", data={"username": "anna", "password": PW,
                                                          "csrf_token": token.group(1)})
    assert resp.status == 403 and await site.sessions() == 0


async def test_csrf_token_is_required_on_state_changes(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    browser = site.browser()
    await browser.login("anna")
    token = await browser.csrf()
    with caplog.at_level(logging.WARNING, logger="callbridge.audit"):
        resp = await browser.request("POST", "/api/note", json={"text": "hi"})
        assert resp.status == 403 and (await resp.json())["error"] == "csrf"
    assert "audit: user=anna role=operator csrf refused POST /api/note" in caplog.text
    resp = await browser.request("POST", "/api/note", json={"text": "hi"},
                                 headers={"X-CSRF-Token": "x" + token})
    assert resp.status == 403
    resp = await browser.request("POST", "/api/note", data={"text": "hi", "csrf_token": "nope"})
    assert resp.status == 403
    resp = await browser.request("POST", "/api/note", json={"text": "hi"}, headers={"X-CSRF-Token": token})
    assert (resp.status, await resp.json()) == (200, {"saved": "hi"})
    resp = await browser.request("POST", "/api/note", data={"text": "form", "csrf_token": token})
    assert (resp.status, await resp.json()) == (200, {"saved": "form"})
    other = site.browser()  # another session's token does not fit
    await other.login("root")
    resp = await browser.request("POST", "/api/note", json={"text": "hi"},
                                 headers={"X-CSRF-Token": await other.csrf()})
    assert resp.status == 403


async def test_cross_origin_requests_are_refused(site: Site) -> None:
    browser = site.browser()
    await browser.login("anna")
    token = await browser.csrf()
    own = f"http://{site.client.host}:{site.client.port}"
    for headers, status in (({"Origin": "https://evil.example"}, 403), ({"Origin": "null"}, 403),
                            ({"Referer": "https://evil.example/page"}, 403), ({"Origin": own}, 200),
                            ({"Referer": own + "/console"}, 200)):
        resp = await browser.request("POST", "/api/note", json={"text": "x"},
                                     headers={"X-CSRF-Token": token, **headers})
        assert resp.status == status, headers
        if status == 403:
            assert (await resp.json())["error"] == "cross_origin"
    fresh = site.browser()
    page = await fresh.request("GET", "/login")
    token_field = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert token_field is not None
    resp = await fresh.request("POST", "/login", headers={"Origin": "https://evil.example"},
                               data={"username": "anna", "password": PW, "csrf_token": token_field.group(1)})
    assert resp.status == 403 and await site.sessions() == 1  # login CSRF: no session made
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await site.client.ws_connect("/ws", headers=browser.headers({"Origin": "https://evil.example"}))
    assert refused.value.status == 403


async def test_allowed_origins_cover_a_tls_proxy(tmp_path: Path) -> None:
    site = await _site(f"sqlite+aiosqlite:///{tmp_path / 'p.sqlite3'}",
                       allowed_origins=["https://callbridge.example.com/"])
    try:
        browser = site.browser()
        await browser.login("anna")
        headers = {"X-CSRF-Token": await browser.csrf(), "Origin": "https://callbridge.example.com"}
        assert (await browser.request("POST", "/api/note", json={"text": "x"}, headers=headers)).status == 200
    finally:
        await site.client.close()
        await site.users.close()


async def test_login_rotates_the_session(site: Site) -> None:
    browser = site.browser()
    browser.cookies["callbridge_session"] = "planted-by-an-attacker-0123456789abcdefghijk"
    await browser.login("anna")
    first = browser.session_cookie()
    assert first != "planted-by-an-attacker-0123456789abcdefghijk"
    stale = {"Cookie": f"callbridge_session={first}"}
    # A second login while signed in (the form from another tab): the old session ends.
    del browser.cookies["callbridge_session"]
    page = await browser.request("GET", "/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert token is not None
    browser.cookies["callbridge_session"] = first
    resp = await browser.request("POST", "/login", data={"username": "sam", "password": PW,
                                                          "csrf_token": token.group(1)})
    assert resp.headers["Location"] == "/wallboard"
    second = browser.session_cookie()
    assert second != first
    assert (await site.client.get("/api/session", headers=stale)).status == 401
    assert (await browser.request("GET", "/api/session")).status == 200
    assert await site.sessions() == 1


async def test_logout_ends_the_session(site: Site) -> None:
    browser = site.browser()
    await browser.login("anna")
    cookie = {"Cookie": f"callbridge_session={browser.session_cookie()}"}
    assert (await browser.request("POST", "/logout")).status == 403  # no CSRF token: still signed in
    assert (await site.client.get("/api/session", headers=cookie)).status == 200
    resp = await browser.request("POST", "/logout", data={"csrf_token": await browser.csrf()})
    assert (resp.status, resp.headers["Location"]) == (303, "/login")
    assert "storage" in resp.headers["Clear-Site-Data"]
    assert 'callbridge_session=""' in _set_cookie(resp, "callbridge_session")
    assert (await site.client.get("/api/session", headers=cookie)).status == 401  # a kept copy too
    assert await site.sessions() == 0
    await browser.login("anna")
    resp = await browser.request("POST", "/logout", headers={"X-CSRF-Token": await browser.csrf(),
                                                             "Accept": "application/json"})
    assert (resp.status, await resp.json()) == (200, {"logged_out": True})


async def test_sessions_expire_when_idle_and_absolutely(site: Site) -> None:
    browser = site.browser()
    await browser.login("anna")
    site.clock.now += IDLE - 1
    assert (await browser.request("GET", "/api/session")).status == 200  # activity renews the idle timer
    site.clock.now += IDLE - 1
    assert (await browser.request("GET", "/api/session")).status == 200
    site.clock.now += IDLE + 1
    assert (await browser.request("GET", "/api/session")).status == 401
    assert await site.sessions() == 0

    await browser.login("anna")
    started = site.clock.now
    while site.clock.now < started + MAX_AGE - IDLE:  # always active, until the absolute end
        site.clock.now += IDLE // 2
        assert (await browser.request("GET", "/api/session")).status == 200
    site.clock.now = started + MAX_AGE
    resp = await browser.request("GET", "/console")
    assert (resp.status, resp.headers["Location"]) == (302, "/login?next=/console")


async def test_password_change_and_disable_end_sessions(site: Site) -> None:
    anna, root = site.browser(), site.browser()
    await anna.login("anna")
    await root.login("root")
    await site.users.set_password("anna", "a brand new password")
    assert (await anna.request("GET", "/api/session")).status == 401
    await site.users.deactivate("root")
    assert (await root.request("GET", "/api/session")).status == 401


async def test_role_check_answers_403_and_audits(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    browser = site.browser()
    await browser.login("anna")
    with caplog.at_level(logging.WARNING, logger="callbridge.audit"):
        resp = await browser.request("GET", "/api/ops")
        assert (resp.status, (await resp.json())["error"]) == (403, "forbidden")
        page = await browser.request("GET", "/wallboard")
        assert page.status == 403 and page.content_type == "text/html"
    assert "audit: user=anna role=operator denied GET /api/ops" in caplog.text
    assert "audit: user=anna role=operator denied GET /wallboard" in caplog.text
    sam = site.browser()
    await sam.login("sam")
    assert (await sam.request("GET", "/api/ops")).status == 200
    assert (await sam.request("GET", "/console")).status == 403
    assert unguarded_routes(site.app) == ["GET /forgotten"]


async def test_login_is_rate_limited_per_user_and_address(site: Site) -> None:
    for _ in range(5):
        assert (await site.browser().login("anna", "wrong password!")).status == 401
    resp = await site.browser().login("anna")  # the right password, but too soon
    assert resp.status == 429 and int(resp.headers["Retry-After"]) == 60
    assert "Too many failed sign-in attempts. Please wait 60 seconds" in await resp.text()
    assert (await site.browser().login("sam")).status == 303  # another account is not locked
    site.clock.now += 30
    assert int((await site.browser().login("ANNA")).headers["Retry-After"]) == 30
    site.clock.now += 31
    assert (await site.browser().login("anna")).status == 303


async def test_websocket_authenticates_and_revalidates(site: Site) -> None:
    browser = site.browser()
    await browser.login("anna")
    own = f"http://{site.client.host}:{site.client.port}"
    ws = await site.client.ws_connect("/ws", headers=browser.headers({"Origin": own}))
    assert await ws.receive_json() == {"user": "anna", "extensions": ["101", "102"]}
    await ws.send_str("check")
    assert await ws.receive_json() == {"alive": "anna"}
    await browser.request("POST", "/logout", headers={"X-CSRF-Token": await browser.csrf()})
    await ws.send_str("check")
    msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401
    await ws.close()
    sam = site.browser()
    await sam.login("sam")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await site.client.ws_connect("/ws", headers=sam.headers())
    assert refused.value.status == 403


async def test_login_logout_flow_on_both_databases(database: Database) -> None:
    site = await _site(database.url, database.engine_options)
    try:
        browser = site.browser()
        assert (await browser.login("anna")).status == 303
        token = await browser.csrf()
        assert (await browser.request("POST", "/api/note", json={"text": "é"},
                                      headers={"X-CSRF-Token": token})).status == 200
        site.clock.now += IDLE + 1
        assert (await browser.request("GET", "/api/session")).status == 401
        await browser.login("anna")
        resp = await browser.request("POST", "/logout", headers={"X-CSRF-Token": await browser.csrf()})
        assert resp.status == 303
        assert (await browser.request("GET", "/api/session")).status == 401
        assert site.app[AUTH_KEY].secure_cookie is False
    finally:
        await site.client.close()
        await site.users.close()
