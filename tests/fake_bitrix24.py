"""A fake Bitrix24 portal answering incoming-webhook REST calls as apidocs.bitrix24.com documents.

    POST /rest/<user_id>/<code>/<method>[.json]   JSON body of the method's parameters
    -> 200 {"result": ..., "time": {...}}                  list methods add "next" and "total"
    -> 4xx/5xx {"error": "CODE", "error_description": "..."}

Methods: crm.duplicate.findbycomm, crm.contact.get/add, crm.company.get/list/add,
crm.activity.list (50 a page, `start`/`next`/`total`), telephony.externalcall.register/finish,
crm.timeline.comment.add. Method names are case-insensitive, as on a real portal.

Failure modes (`portal.faults`): delay, status (500 INTERNAL_SERVER_ERROR, or an HTML page with
`html`), malformed, auth_fail (401 INVALID_CREDENTIALS), expired_token (401), rate_limit (503
QUERY_LIMIT_EXCEEDED), wrong_auth_type (telephony.* refused for a webhook).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

USER_ID, CODE = "1", "k3yc0de9x"
PAGE = 50
_DIGITS = re.compile(r"\D")


class B24Error(Exception):
    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status, self.code, self.description = status, code, description


@dataclass
class Faults:
    delay: float = 0.0
    status: int | None = None
    html: bool = False
    malformed: bool = False
    auth_fail: bool = False
    expired_token: bool = False
    rate_limit: bool = False
    wrong_auth_type: bool = False


@dataclass
class FakeBitrix24:
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    companies: dict[int, dict[str, Any]] = field(default_factory=dict)
    leads: dict[int, dict[str, Any]] = field(default_factory=dict)
    activities: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (method, params)
    overrides: dict[str, Any] = field(default_factory=dict)  # method -> canned `result` (odd shapes)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(9000))
    _calls: dict[str, dict[str, Any]] = field(default_factory=dict)

    def params_of(self, method: str) -> list[dict[str, Any]]:
        return [p for m, p in self.requests if m == method]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/rest/{user}/{code}/{method}", self._rest)
        return app

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"].lower().removesuffix(".json")
        params = await request.json() if request.can_read_body else {}
        self.requests.append((method, params))
        started = time.time()
        f = self.faults
        if f.delay:
            await asyncio.sleep(f.delay)
        if f.status is not None and f.html:
            return web.Response(status=f.status, text="<html>502 Bad Gateway</html>",
                                content_type="text/html")
        if f.malformed:
            return web.Response(text='{"result": {"CONTACT": [27', content_type="application/json")
        try:
            self._check_access(request, method)
            result = self._dispatch(method, params)
        except B24Error as exc:
            return web.json_response({"error": exc.code, "error_description": exc.description},
                                     status=exc.status)
        body = result if isinstance(result, dict) and "result" in result else {"result": result}
        body["time"] = {"start": started, "finish": time.time(), "duration": time.time() - started,
                        "processing": 0.001, "date_start": "2024-06-01T10:00:00+03:00",
                        "date_finish": "2024-06-01T10:00:00+03:00", "operating_reset_at": int(started) + 600,
                        "operating": 0}
        return web.json_response(body)

    def _check_access(self, request: web.Request, method: str) -> None:
        f = self.faults
        if f.auth_fail or (request.match_info["user"], request.match_info["code"]) != (USER_ID, CODE):
            raise B24Error(401, "INVALID_CREDENTIALS", "Invalid request credentials")
        if f.expired_token:
            raise B24Error(401, "expired_token", "The access token provided has expired.")
        if f.rate_limit:
            raise B24Error(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
        if f.status is not None:
            raise B24Error(f.status, "INTERNAL_SERVER_ERROR", "Internal server error")
        if f.wrong_auth_type and method.startswith("telephony."):
            raise B24Error(403, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method")

    def _dispatch(self, method: str, p: dict[str, Any]) -> Any:
        if method in self.overrides:
            return self.overrides[method]
        handler = {
            "crm.duplicate.findbycomm": self._findbycomm, "crm.contact.get": self._contact_get,
            "crm.company.get": self._company_get, "crm.contact.add": self._contact_add,
            "crm.company.list": self._company_list, "crm.company.add": self._company_add,
            "crm.activity.list": self._activity_list, "telephony.externalcall.register": self._register,
            "telephony.externalcall.finish": self._finish, "crm.timeline.comment.add": self._comment_add,
        }.get(method)
        if handler is None:
            raise B24Error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        return handler(p)

    # --- CRM ----------------------------------------------------------------------------

    def _findbycomm(self, p: dict[str, Any]) -> Any:
        if not p.get("type"):
            raise B24Error(400, "Communication type is not defined", "Parameter 'type' is required.")
        if p["type"] != "PHONE":
            raise B24Error(400, f"Communication type '{p['type']}' is not supported in current context", "")
        values = p.get("values") or []
        if not values:
            raise B24Error(400, "Communication values is not defined", "")
        wanted = {_DIGITS.sub("", v) for v in values[:20]}
        tables = {"LEAD": self.leads, "CONTACT": self.contacts, "COMPANY": self.companies}
        types = [p["entity_type"]] if p.get("entity_type") in tables else list(tables)
        found: dict[str, list[int]] = {}
        for name in types:
            ids = [i for i, r in sorted(tables[name].items())
                   if wanted & {_DIGITS.sub("", ph["VALUE"]) for ph in r.get("PHONE", [])}][:20]
            if ids:
                found[name] = ids
        return found or []  # PHP's empty array

    def _get(self, table: dict[int, dict[str, Any]], p: dict[str, Any]) -> dict[str, Any]:
        raw = p.get("id", p.get("ID"))
        if not str(raw).isdigit() or int(raw) <= 0:
            raise B24Error(400, "", "ID is not defined or invalid.")
        if int(raw) not in table:
            raise B24Error(400, "", "Not found")
        return table[int(raw)]

    def _contact_get(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._get(self.contacts, p)

    def _company_get(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._get(self.companies, p)

    def _contact_add(self, p: dict[str, Any]) -> int:
        fields = p.get("fields") or {}
        new_id = next(self._ids)
        self.contacts[new_id] = {"ID": str(new_id), "NAME": "", "LAST_NAME": "", "COMPANY_ID": "0",
                                 "DATE_MODIFY": "2024-06-01T10:00:00+03:00", **fields}
        return new_id

    def _company_list(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        title = (p.get("filter") or {}).get("=TITLE")
        return [{"ID": c["ID"]} for c in self.companies.values() if title is None or c["TITLE"] == title]

    def _company_add(self, p: dict[str, Any]) -> int:
        new_id = next(self._ids)
        self.companies[new_id] = {"ID": str(new_id), **(p.get("fields") or {})}
        return new_id

    def _activity_list(self, p: dict[str, Any]) -> dict[str, Any]:
        flt = p.get("filter") or {}
        rows = [a for a in self.activities if all(str(a.get(k)) == str(v) for k, v in flt.items())]
        for key, direction in reversed(list((p.get("order") or {"START_TIME": "ASC"}).items())):
            rows.sort(key=lambda a, k=key: (a.get(k) or "") if k != "ID" else int(a["ID"]),
                      reverse=direction.upper() == "DESC")
        start = int(p.get("start") or 0)
        select = p.get("select") or ["*"]
        page = [a if "*" in select else {k: a.get(k) for k in ["ID", *select]}
                for a in rows[start:start + PAGE]]
        reply: dict[str, Any] = {"result": page, "total": len(rows)}
        if start + PAGE < len(rows):
            reply["next"] = start + PAGE
        return reply

    def _comment_add(self, p: dict[str, Any]) -> int:
        fields = p.get("fields")
        if not isinstance(fields, dict) or not {"ENTITY_ID", "ENTITY_TYPE", "COMMENT"} <= fields.keys():
            raise B24Error(400, "100", "Required fields not provided")
        if not fields["COMMENT"]:
            raise B24Error(400, "INVALID_ARG_VALUE", "Empty comment")
        table = {"contact": self.contacts, "company": self.companies}.get(fields["ENTITY_TYPE"], {})
        if int(fields["ENTITY_ID"]) not in table:
            raise B24Error(400, "NOT_FOUND", "Not found.")
        self.comments.append(dict(fields))
        return next(self._ids)

    # --- telephony ----------------------------------------------------------------------

    def _register(self, p: dict[str, Any]) -> dict[str, Any]:
        if not (p.get("USER_ID") or p.get("USER_PHONE_INNER")):
            raise B24Error(400, "ERROR_CORE", "USER_ID or USER_PHONE_INNER should be set")
        if int(p.get("TYPE") or 0) not in (1, 2, 3, 4, 5):
            raise B24Error(400, "ERROR_CORE", "Unknown TYPE")
        for call_id, call in self._calls.items():  # re-registration of an open call: same CALL_ID
            if not call["finished"] and all(call["params"].get(k) == p.get(k) for k in
                                            ("PHONE_NUMBER", "TYPE", "USER_ID", "USER_PHONE_INNER",
                                             "EXTERNAL_CALL_ID")):
                return self._registration(call_id)
        entity_type, entity_id = p.get("CRM_ENTITY_TYPE"), p.get("CRM_ENTITY_ID")
        if not entity_type:
            found = self._findbycomm({"type": "PHONE", "values": [p["PHONE_NUMBER"]],
                                      "entity_type": "CONTACT"})
            if found:
                entity_type, entity_id = "CONTACT", found["CONTACT"][-1]
        call_id = f"externalCall.{next(self._ids):032x}.{int(time.time())}"
        self._calls[call_id] = {"params": dict(p), "finished": False, "entity": (entity_type, entity_id)}
        return self._registration(call_id)

    def _registration(self, call_id: str) -> dict[str, Any]:
        entity_type, entity_id = self._calls[call_id]["entity"]
        return {"CALL_ID": call_id, "CRM_CREATED_LEAD": None, "CRM_CREATED_ENTITIES": [],
                "CRM_ENTITY_TYPE": entity_type, "CRM_ENTITY_ID": entity_id}

    def _finish(self, p: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(p.get("CALL_ID"), str):
            raise B24Error(400, "INVALID_ARGUMENT", "CALL_ID must be a string")
        if not (p.get("USER_ID") or p.get("USER_PHONE_INNER")):
            raise B24Error(400, "ERROR_CORE", "USER_ID or USER_PHONE_INNER should be set")
        call = self._calls.get(p["CALL_ID"])
        if call is None or call["finished"]:
            raise B24Error(400, "ERROR_CORE",
                           "Call is not found (call should be registered prior to finishing)")
        call["finished"] = True
        reg = call["params"]
        entity_type, entity_id = call["entity"]
        activity_id = next(self._ids)
        duration = int(p.get("DURATION") or 0)
        if entity_type:
            self.activities.append({
                "ID": str(activity_id), "OWNER_TYPE_ID": "3" if entity_type == "CONTACT" else "4",
                "OWNER_ID": str(entity_id), "TYPE_ID": "2", "PROVIDER_ID": "VOXIMPLANT_CALL",
                "SUBJECT": ("Incoming" if reg["TYPE"] == 2 else "Outgoing") + " call",
                "START_TIME": reg.get("CALL_START_DATE"), "CREATED": reg.get("CALL_START_DATE"),
                "DIRECTION": "1" if reg["TYPE"] == 2 else "2", "COMPLETED": "Y", "RESPONSIBLE_ID": "1"})
        status = p.get("STATUS_CODE") or ("200" if duration > 0 else "304")
        return {"CALL_ID": p["CALL_ID"], "EXTERNAL_CALL_ID": reg.get("EXTERNAL_CALL_ID"),
                "PORTAL_USER_ID": 1, "PHONE_NUMBER": reg["PHONE_NUMBER"],
                "PORTAL_NUMBER": reg.get("LINE_NUMBER"),
                "INCOMING": str(reg["TYPE"]), "CALL_DURATION": duration, "CALL_START_DATE": {},
                "CALL_STATUS": 1 if status == "200" else 0, "CALL_VOTE": 0, "COST": 0, "COST_CURRENCY": "",
                "CALL_FAILED_CODE": status, "CALL_FAILED_REASON": p.get("FAILED_REASON", ""),
                "REST_APP_ID": None, "REST_APP_NAME": None,
                "CRM_ACTIVITY_ID": activity_id if entity_type else None, "COMMENT": None,
                "CRM_ENTITY_TYPE": entity_type, "CRM_ENTITY_ID": entity_id, "ID": activity_id}


def multifield(*values: str) -> list[dict[str, str]]:
    return [{"ID": str(100 + i), "VALUE_TYPE": "WORK", "VALUE": v, "TYPE_ID": "PHONE"}
            for i, v in enumerate(values)]


async def start(portal: FakeBitrix24) -> TestServer:
    server = TestServer(portal.app(), host="127.0.0.1")
    await server.start_server()
    return server
