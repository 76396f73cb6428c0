"""A small in-house CRM (the kind a 1C HTTP service exposes) for the generic HTTP/JSON adapter.

Its shapes are deliberately not ours, so the tests exercise the adapter's mapping:

    GET  /api/contacts?phone=+7...        -> {"data": {"items": [record, ...]}}
    GET  /api/contacts/{guid}/events      -> {"events": [event, ...]}   (oldest first)
    POST /api/contacts                    -> 201 {"data": record}
    POST /api/calls                       -> 201 {"call": {"num": 1}}; 409 for a repeated Idempotency-Key

Auth is `Authorization: Bearer <token>`. Failure modes are switched by the test through
`crm.faults`: delay, status (5xx), malformed, auth_fail, rate_limit.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

TOKEN = "in-house-token"


@dataclass
class Faults:
    delay: float = 0.0
    status: int | None = None  # answer every request with this status (e.g. 502)
    malformed: bool = False
    auth_fail: bool = False
    rate_limit: bool = False
    html_error: bool = False  # a proxy's HTML page with `status`


@dataclass
class FakeHttpCrm:
    contacts: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    logged_calls: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1001))
    _idempotency: set[str] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults])
        app.router.add_get("/api/contacts", self._find)
        app.router.add_get("/api/contacts/{guid}/events", self._events)
        app.router.add_post("/api/contacts", self._create)
        app.router.add_post("/api/calls", self._log_call)
        return app

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path_qs, dict(request.headers), body))
        f = self.faults
        if f.delay:
            await asyncio.sleep(f.delay)
        if f.auth_fail or request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "unauthorized", "message": "token rejected"}, status=401)
        if f.rate_limit:
            return web.json_response({"message": "slow down"}, status=429, headers={"Retry-After": "7"})
        if f.status is not None:
            if f.html_error:
                return web.Response(text="<html>Bad Gateway</html>", status=f.status,
                                    content_type="text/html")
            return web.json_response({"message": "internal error"}, status=f.status)
        if f.malformed:
            return web.Response(text='{"data": {"items": [', content_type="application/json")
        return await handler(request)

    async def _find(self, request: web.Request) -> web.Response:
        phone = request.query.get("phone", "")
        items = [c for c in self.contacts if phone in [p["number"] for p in c.get("phones", [])]]
        return web.json_response({"data": {"items": items}})

    async def _events(self, request: web.Request) -> web.Response:
        guid = request.match_info["guid"]
        if not any(c["guid"] == guid for c in self.contacts):
            return web.json_response({"message": "no such contact"}, status=404)
        return web.json_response({"events": self.events.get(guid, [])})

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        record = {
            "guid": f"g-{next(self._ids)}", "surname": body["fio"], "name": "",
            "org": {"title": body.get("organisation")}, "phones": [{"number": n} for n in body["tel"]],
            "email": body.get("mail"), "tags": body.get("labels", []), "modified": "2024-05-01T10:00:00",
        }
        self.contacts.append(record)
        return web.json_response({"data": record}, status=201)

    async def _log_call(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        if key in self._idempotency:
            return web.json_response({"message": "duplicate"}, status=409)
        self._idempotency.add(key)
        self.logged_calls.append(await request.json())
        return web.json_response({"call": {"num": len(self.logged_calls)}}, status=201)


async def start(crm: FakeHttpCrm) -> TestServer:
    server = TestServer(crm.app(), host="127.0.0.1")
    await server.start_server()
    return server
