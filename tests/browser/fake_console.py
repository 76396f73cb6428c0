"""A stand-in for the console's server side, for testing the page alone.

It serves web/static/ the way the real app does (page at `/console`, assets under
`/static/`, with a strict Content-Security-Policy), a fake `GET /api/session` (401 once
`logged_in` is off, as after a logout), a stub `/login`, and a fake
`GET /ws/console` that sends `hello` with the cards it holds and then every `card` /
`card_removed` the test pushes. Every POST is recorded with its CSRF header. The frames are
built with the pydantic models of screenpop/messages.py, so the page is tested against the
contract itself.

All of it runs on a `LoopThread`; the synchronous helpers (`push`, `drop`, ...) hop onto
that loop so tests can call them between Playwright steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from screenpop.messages import AgentState, Card, CardRemoved, Clock, ConsoleInfo, Hello
from tests.browser.harness import STATIC, LoopThread

CSRF_TOKEN = "csrf-test-token-1"

# As strict as a policy gets for this page: nothing inline, nothing from elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass
class Post:
    path: str
    csrf: str | None
    json: Any


@dataclass
class FakeConsoleServer:
    loop_thread: LoopThread
    cards: dict[str, Card] = field(default_factory=dict)
    posts: list[Post] = field(default_factory=list)
    refuse_ws: bool = False  # answer /ws/console with 503, as while the server is away
    fail_posts: bool = False
    logged_in: bool = True
    base_url: str = ""
    # What the next hello says about the console and the clocks (tests change them).
    console: ConsoleInfo = field(default_factory=lambda: ConsoleInfo(
        wrapup_seconds=120, wrapup_codes=["Resolved", "Call back", "Sale"], pause_reasons=["Break", "Lunch"],
        can_pause=True, can_dial=True))
    agent: AgentState | None = None
    pbx_offset: float = 0.0
    search_answer: dict[str, Any] = field(
        default_factory=lambda: {"contacts": [], "unsupported": [], "failed": []})
    received: list[str] = field(default_factory=list)  # text frames the pages sent on their sockets
    searches: list[str] = field(default_factory=list)
    _sockets: set[web.WebSocketResponse] = field(default_factory=set)
    _runner: web.AppRunner | None = None

    # ---- lifecycle (called from the test thread) ----

    def start(self) -> str:
        self.base_url = self.loop_thread.run(self._start())
        return self.base_url

    def stop(self) -> None:
        self.loop_thread.run(self._stop())

    async def _start(self) -> str:
        app = web.Application(middlewares=[self._csp_middleware])
        app.router.add_get("/console", self._page)
        app.router.add_get("/login", self._login)
        app.router.add_static("/static/", STATIC)
        app.router.add_get("/api/session", self._session)
        app.router.add_get("/ws/console", self._ws)
        app.router.add_get("/api/console/search", self._search)
        for path in ("/api/notes", "/api/contacts", "/api/cards/dismiss", "/logout",
                     "/api/calls/{call_id}/recording/{verb}", "/api/console/pause", "/api/console/dial"):
            app.router.add_post(path, self._post)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        await self._drop()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- what tests do (called from the test thread) ----

    def push(self, card: Card) -> None:
        """The server's card changed: keep it (for the next hello) and send it."""
        self.loop_thread.run(self._push(card))

    def remove(self, card_id: str) -> None:
        self.loop_thread.run(self._remove(card_id))

    def drop(self, refuse: bool = True) -> None:
        """Close every console socket; with `refuse`, new ones fail until `accept()`."""
        self.loop_thread.call(setattr, self, "refuse_ws", refuse)
        self.loop_thread.run(self._drop())

    def accept(self) -> None:
        self.loop_thread.call(setattr, self, "refuse_ws", False)

    def set_card(self, card: Card) -> None:
        """Change the server's state without telling anybody (as while a browser is away)."""
        self.loop_thread.call(self.cards.__setitem__, card.card_id, card)

    def forget_card(self, card_id: str) -> None:
        self.loop_thread.call(self.cards.pop, card_id, None)

    def send_agent(self, state: AgentState) -> None:
        """The PBX said the operator's queue state changed."""
        self.loop_thread.call(setattr, self, "agent", state)
        self.loop_thread.run(self._broadcast(state.model_dump_json()))

    def send_clock(self, pbx_offset: float) -> None:
        self.loop_thread.call(setattr, self, "pbx_offset", pbx_offset)
        frame = Clock(server_time=time.time(), pbx_offset=pbx_offset)
        self.loop_thread.run(self._broadcast(frame.model_dump_json()))

    def close_sockets(self, code: int, message: str = "") -> None:
        """Close every console socket with this code (4008: too many pages open)."""
        self.loop_thread.run(self._close_with(code, message))

    def frames_received(self) -> list[str]:
        return self.loop_thread.call(list, self.received)

    def posts_to(self, path: str) -> list[Post]:
        return [p for p in self.loop_thread.call(list, self.posts) if p.path == path]

    def connections(self) -> int:
        return self.loop_thread.call(len, self._sockets)

    # ---- on the loop ----

    async def _push(self, card: Card) -> None:
        self.cards[card.card_id] = card
        await self._broadcast(card.model_dump_json())

    async def _remove(self, card_id: str) -> None:
        self.cards.pop(card_id, None)
        await self._broadcast(CardRemoved(card_id=card_id).model_dump_json())

    async def _broadcast(self, text: str) -> None:
        for ws in list(self._sockets):
            if not ws.closed:
                await ws.send_str(text)

    async def _close_with(self, code: int, message: str) -> None:
        for ws in list(self._sockets):
            await ws.close(code=code, message=message.encode())
        self._sockets.clear()

    async def _drop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1012, message=b"restarting")
        self._sockets.clear()

    # ---- HTTP handlers ----

    @web.middleware
    async def _csp_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        response.headers["Content-Security-Policy"] = CSP
        return response

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "console.html")

    async def _login(self, request: web.Request) -> web.Response:
        return web.Response(
            text="<!doctype html><title>Sign in</title><h1>Sign in</h1>", content_type="text/html"
        )

    async def _session(self, request: web.Request) -> web.Response:
        if not self.logged_in:
            return web.json_response({"error": "unauthenticated"}, status=401)
        return web.json_response({"user": "anna", "csrf_token": CSRF_TOKEN})

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_ws:
            raise web.HTTPServiceUnavailable()
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        hello = Hello(
            user="anna",
            display_name="Anna Operator",
            role="operator",
            extensions=["101"],
            cards=sorted(self.cards.values(), key=lambda c: c.entered_at),
            server_time=time.time(),
            pbx_offset=self.pbx_offset,
            console=self.console,
            agent=self.agent,
        )
        await ws.send_str(hello.model_dump_json())
        self._sockets.add(ws)
        try:
            async for msg in ws:  # the browser sends only its activity notices
                if msg.type == WSMsgType.ERROR:
                    break
                if msg.type == WSMsgType.TEXT:
                    self.received.append(msg.data)
        finally:
            self._sockets.discard(ws)
        return ws

    async def _search(self, request: web.Request) -> web.Response:
        self.searches.append(request.query.get("q", ""))
        return web.json_response(self.search_answer)

    async def _post(self, request: web.Request) -> web.Response:
        csrf = request.headers.get("X-CSRF-Token")
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.posts.append(Post(request.path, csrf, body))
        if csrf != CSRF_TOKEN:
            return web.json_response({"error": "csrf"}, status=403)
        if self.fail_posts:
            return web.json_response({"error": "unavailable", "message": "The CRM is down."}, status=503)
        if request.path == "/logout":
            self.logged_in = False
            return web.json_response({"logged_out": True})
        if "verb" in request.match_info:  # recording pause/resume, as recordings/http.py answers
            return web.json_response({"call_id": request.match_info["call_id"],
                                      "paused": request.match_info["verb"] == "pause", "recordings": []})
        return web.json_response({"ok": True})
