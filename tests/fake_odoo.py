"""A fake Odoo speaking the JSON-RPC external API as Odoo's documentation and odoo/http.py do.

    POST /jsonrpc  {"jsonrpc": "2.0", "method": "call", "id": N,
                    "params": {"service": "common"|"object", "method": ..., "args": [...]}}
    -> HTTP 200 {"jsonrpc": "2.0", "id": N, "result": ...}
    -> HTTP 200 {"jsonrpc": "2.0", "id": N, "error": {"code": 200, "message": "Odoo Server Error",
                 "data": {"name": "odoo.exceptions.AccessDenied", "message": ..., "arguments": [...],
                          "context": {}, "debug": "Traceback ..."}}}

`common.authenticate(db, login, password, {})` returns the uid or False; `object.execute_kw(db,
uid, password, model, method, args, kwargs)` on res.partner (fields_get, search_read, read,
create, message_post), res.partner.category (read, search_read, create) and mail.message
(search_read, search). Domains are Odoo's prefix notation. `phone_sanitized` and
`phone_mobile_search` behave as phone_validation's mail.thread.phone mixin does; a profile
without them (no phone_validation) or without `mobile` (newer Odoo) is `partner_fields=...`.

Failure modes (`odoo.faults`): delay, status (an nginx HTML page, e.g. 502), malformed,
auth_fail (the password is refused), rate_limit (HTTP 429 from the front proxy), server_error.
"""

from __future__ import annotations

import asyncio
import html
import re
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from aiohttp import web
from aiohttp.test_utils import TestServer

DB, LOGIN, PASSWORD, UID = "acme", "bridge@acme.example", "api-key-123", 7
ODOO_17_FIELDS = frozenset({"id", "name", "display_name", "parent_id", "company_name", "phone", "mobile",
                            "email", "category_id", "write_date", "phone_sanitized", "phone_mobile_search",
                            "comment", "is_company", "active"})
PHONE_PUNCT = re.compile(r"[\s\\./()\-]")  # phone_validation's PHONE_REGEX_PATTERN


class OdooError(Exception):
    def __init__(self, name: str, message: str, code: int = 200) -> None:
        super().__init__(message)
        self.name, self.message, self.code = name, message, code


@dataclass
class Faults:
    delay: float = 0.0
    status: int | None = None
    malformed: bool = False
    auth_fail: bool = False
    rate_limit: bool = False
    server_error: bool = False
    wrong_id: bool = False  # answer with another request's id


@dataclass
class FakeOdoo:
    partners: dict[int, dict[str, Any]] = field(default_factory=dict)
    categories: dict[int, str] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    partner_fields: frozenset[str] = ODOO_17_FIELDS
    faults: Faults = field(default_factory=Faults)
    calls: list[dict[str, Any]] = field(default_factory=list)  # every JSON-RPC request body
    overrides: dict[tuple[str, str], Any] = field(default_factory=dict)  # (model, method) -> canned result
    _next_id: int = 500

    def add_partner(self, pid: int, **values: Any) -> None:
        self.partners[pid] = {"id": pid, "parent_id": False, "company_name": False, "phone": False,
                              "mobile": False, "email": False, "category_id": [],
                              "write_date": "2024-01-01 00:00:00", "active": True, **values}

    def executed(self, model: str, method: str) -> list[list[Any]]:
        """The args of every execute_kw call on model.method, in order."""
        return [c["params"]["args"] for c in self.calls
                if c["params"]["method"] == "execute_kw" and c["params"]["args"][3:5] == [model, method]]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/jsonrpc", self._jsonrpc)
        return app

    async def _jsonrpc(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        self.calls.append(payload)
        f = self.faults
        if f.delay:
            await asyncio.sleep(f.delay)
        if f.rate_limit:
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "3"})
        if f.status is not None:
            return web.Response(status=f.status, text="<html><body>502 Bad Gateway</body></html>",
                                content_type="text/html")
        if f.malformed:
            return web.Response(text='{"jsonrpc": "2.0", "id": ', content_type="application/json")
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": payload.get("id") + 1000 * f.wrong_id}
        try:
            params = payload["params"]
            reply["result"] = self._dispatch(params["service"], params["method"], params["args"])
        except OdooError as exc:
            reply["error"] = {"code": exc.code, "message": "Odoo Server Error", "data": {
                "name": exc.name, "message": exc.message, "arguments": [exc.message], "context": {},
                "debug": f"Traceback (most recent call last):\n  ...\n{exc.name}: {exc.message}\n"}}
        return web.json_response(reply)

    def _dispatch(self, service: str, method: str, args: list[Any]) -> Any:
        if self.faults.server_error:
            raise OdooError("psycopg2.OperationalError", "could not connect to server")
        if service == "common" and method in ("login", "authenticate"):
            db, login, password = args[:3]
            good = (db, login, password) == (DB, LOGIN, PASSWORD) and not self.faults.auth_fail
            return UID if good else False
        if service == "object" and method == "execute_kw":
            db, uid, password, model, name, margs = args[:6]
            kwargs = args[6] if len(args) > 6 else {}
            if (db, uid, password) != (DB, UID, PASSWORD) or self.faults.auth_fail:
                raise OdooError("odoo.exceptions.AccessDenied", "Access Denied")
            return self._execute(model, name, margs, kwargs)
        raise OdooError("werkzeug.exceptions.NotFound", "404: Not Found", code=404)

    # --- models -------------------------------------------------------------------------

    def _execute(self, model: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if (model, method) in self.overrides:
            return self.overrides[model, method]
        if model == "res.partner":
            if method == "fields_get":
                return {name: {"type": "char"} for name in sorted(self.partner_fields)}
            if method == "search_read":
                rows = [p for p in self.partners.values()
                        if p["active"] and self._match(p, args[0], self.partner_fields)]
                return [self._partner(p, kwargs.get("fields")) for p in self._page(rows, kwargs)]
            if method == "read":
                return [self._partner(self.partners[i], kwargs.get("fields")) for i in args[0]]
            if method == "create":
                return self._create_partner(args[0])
            if method == "message_post":
                return self._message_post(args[0], kwargs)
        if model == "res.partner.category":
            if method == "read":
                return [{"id": i, "name": self.categories[i]} for i in args[0] if i in self.categories]
            if method == "search_read":
                rows = [{"id": i, "name": n} for i, n in self.categories.items()]
                return [r for r in rows if self._match(r, args[0])]
            if method == "create":
                self._next_id += 1
                self.categories[self._next_id] = args[0]["name"]
                return self._next_id
        if model == "mail.message" and method in ("search_read", "search"):
            rows = self._page([m for m in self.messages if self._match(m, args[0])], kwargs)
            if method == "search":
                return [m["id"] for m in rows]
            return [{k: m.get(k, False) for k in ["id", *kwargs.get("fields", m)]} for m in rows]
        raise OdooError("builtins.AttributeError", f"The method '{model}.{method}' does not exist")

    @staticmethod
    def _page(rows: list[dict[str, Any]], kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        """`order` ("write_date desc, id desc"), then `offset` and `limit`, as search_read does."""
        for part in reversed((kwargs.get("order") or "id").split(",")):
            name, _, direction = part.strip().partition(" ")
            rows = sorted(rows, key=lambda r: (r.get(name) is False, r.get(name) or 0),
                          reverse=direction.lower() == "desc")
        offset = kwargs.get("offset", 0)
        limit = kwargs.get("limit")
        return rows[offset:offset + limit if limit else None]

    def _partner(self, p: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        for name in fields or []:
            if name not in self.partner_fields:
                raise OdooError("builtins.ValueError", f"Invalid field {name!r} on model 'res.partner'")
        return {k: p.get(k, False) for k in ["id", *(fields or p)]}

    def _create_partner(self, values: dict[str, Any]) -> int:
        if not values.get("name"):
            raise OdooError("odoo.exceptions.ValidationError", "Contacts require a name")
        self._next_id += 1
        values = dict(values)  # the recorded request must stay as it was sent
        tags = [i for command in values.pop("category_id", []) if command[0] == 6 for i in command[2]]
        self.add_partner(self._next_id, **values, category_id=tags, write_date="2024-06-01 10:00:00")
        return self._next_id

    def _message_post(self, ids: list[int], kwargs: dict[str, Any]) -> int:
        if len(ids) != 1 or ids[0] not in self.partners:
            raise OdooError("ValueError", f"Expected singleton: res.partner{tuple(ids)}")
        self._next_id += 1
        # A plain str body is escaped by message_post (Markup is not sent over RPC).
        self.messages.append({"id": self._next_id, "model": "res.partner", "res_id": ids[0],
                              "body": f"<p>{html.escape(kwargs['body'])}</p>", "subject": False,
                              "message_type": kwargs.get("message_type", "notification"),
                              "subtype_id": [2, "Note"], "author_id": [3, "Bridge Bot"],
                              "date": "2024-06-01 10:00:00"})
        return self._next_id

    # --- domains ------------------------------------------------------------------------

    def _match(self, record: dict[str, Any], domain: list[Any], known: frozenset[str] | None = None) -> bool:
        stack: list[bool] = []
        for term in reversed(domain):  # prefix notation, evaluated right to left
            if term == "|":
                stack.append(stack.pop() | stack.pop())
            elif term == "&":
                stack.append(stack.pop() & stack.pop())
            elif term == "!":
                stack.append(not stack.pop())
            else:
                if known is not None and term[0] not in known:
                    raise OdooError("builtins.ValueError", f"Invalid field {term[0]!r} in leaf {term!r}")
                stack.append(self._leaf(record, *term))
        return all(stack)  # implicit AND between top-level terms

    def _leaf(self, record: dict[str, Any], name: str, op: str, value: Any) -> bool:
        if name == "phone_mobile_search":
            return self._phone_search(record, value)
        actual = _sanitized(record) if name == "phone_sanitized" else record.get(name, False)
        if op == "=":
            return actual == value
        if op == "in":
            return actual in value
        if op == "ilike":
            return isinstance(actual, str) and value.lower() in actual.lower()
        raise OdooError("builtins.ValueError", f"Invalid leaf operator {op!r}")

    def _phone_search(self, record: dict[str, Any], value: str) -> bool:
        fields = [f for f in ("mobile", "phone") if f in self.partner_fields]
        stored = [PHONE_PUNCT.sub("", record[f]) for f in fields if record.get(f)]
        if value.startswith(("+", "00")):
            term = PHONE_PUNCT.sub("", value[1 if value.startswith("+") else 2:])
            return any(s in ("00" + term, "+" + term) for s in stored)
        return PHONE_PUNCT.sub("", value) in stored


def _sanitized(record: dict[str, Any]) -> str | bool:
    """mail.thread.phone: the first of mobile, phone that formats to E.164 (country RU here)."""
    for name in ("mobile", "phone"):
        raw = record.get(name)
        if raw:
            try:
                number = phonenumbers.parse(raw, "RU")
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return False


async def start(odoo: FakeOdoo) -> TestServer:
    server = TestServer(odoo.app(), host="127.0.0.1")
    await server.start_server()
    return server
