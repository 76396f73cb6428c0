"""Odoo adapter: JSON-RPC `/jsonrpc`, `common.authenticate` then `object.execute_kw`.

Documentation followed:
- External RPC API (authenticate, execute_kw, search_read, read, create, fields_get):
  https://www.odoo.com/documentation/17.0/developer/reference/external_api.html
  (source: github.com/odoo/documentation content/developer/reference/external_rpc_api.rst)
- JSON-RPC envelope, `{"jsonrpc": "2.0", "method": "call", "params": {"service", "method",
  "args"}}` posted to `/jsonrpc`: "JSON-RPC Library" in
  https://www.odoo.com/documentation/17.0/developer/howtos/web_services.html
- Error envelope (HTTP 200, `error: {code: 200, message: "Odoo Server Error", data: {name,
  message, arguments, debug}}`; code 100 = session expired): odoo/http.py, JsonRPCDispatcher.
- `phone_sanitized` (E.164, stored) and `phone_mobile_search` (ignores spaces, dots, dashes,
  brackets; `+` and `00` equivalent) come with the phone_validation module's
  `mail.thread.phone` mixin: odoo/addons/phone_validation/models/mail_thread_phone.py.
Odoo 19 deprecates `/jsonrpc` in favour of the JSON-2 API (`/json/2/<model>/<method>`,
external_api.rst there); its removal is scheduled for a later major version.

Lookup: `fields_get` once tells which of `phone_sanitized`, `phone_mobile_search`, `phone`,
`mobile` this database has (`mobile` may be absent in newer versions, the first two need
phone_validation); the domain ORs every one present. Several matches: the most recently
written partner (`order="write_date desc"`).

History: the partner's chatter (`mail.message`, comments and e-mails), newest first. A call
logged by this adapter is a note ending in `[call <call_id>]`; history reports it as a
call with that `call_id`, and `log_call` checks for the marker first (idempotent).

Errors: AccessDenied / AccessError / session expired / `authenticate` returning false ->
CrmAuthError; UserError / ValidationError / MissingError -> CrmRejected; any other server
exception, HTTP 5xx or a timeout -> CrmUnavailable; HTTP 429 (Odoo.sh / Online front proxy)
-> CrmRateLimited; non-JSON or a reply without `result` -> CrmBadResponse.
"""

from __future__ import annotations

import html
import itertools
import logging
import re
from datetime import UTC, datetime
from typing import Any

import aiohttp
import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from crm_adapters.contract import Contact, FinishedCall, Interaction, NewContact
from crm_adapters.errors import (
    CrmAuthError,
    CrmBadResponse,
    CrmError,
    CrmRejected,
    CrmUnavailable,
    error_for_status,
)
from crm_adapters.http_session import (
    DEFAULT_TIMEOUT,
    HttpCrmAdapter,
    JsonHttp,
    bad_data_is_bad_response,
    call_note,
    log_failure,
)
from crm_adapters.phone_numbers import national_variants, normalize

log = logging.getLogger("callbridge.crm")

PHONE_FIELDS = ("phone_sanitized", "phone_mobile_search", "phone", "mobile")
PARTNER_FIELDS = ("name", "parent_id", "company_name", "phone", "mobile", "email", "category_id",
                  "write_date")
MESSAGE_TYPES = ["comment", "email", "email_outgoing"]
AUTH_ERRORS = ("odoo.exceptions.AccessDenied", "odoo.exceptions.AccessError",
               "odoo.http.SessionExpiredException")
REJECTED_ERRORS = ("odoo.exceptions.UserError", "odoo.exceptions.ValidationError",
                   "odoo.exceptions.MissingError")
CALL_MARKER = re.compile(r"\[call ([^\]\s]+)\]")
_TAGS = re.compile(r"<[^>]+>")


class OdooConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "odoo"
    url: str  # https://mycompany.odoo.com (no /jsonrpc)
    database: str
    login: str
    password: SecretStr  # the user's password or, better, an API key (Odoo 14+)
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)
    default_region: str = "RU"  # for numbers stored in national form
    history_limit_cap: int = Field(100, ge=1)


class OdooAdapter(HttpCrmAdapter):
    config_model = OdooConfig

    def __init__(self, config: OdooConfig | None = None, *, session: aiohttp.ClientSession | None = None,
                 **options: Any) -> None:
        """Either a ready `OdooConfig` or its fields as keyword options (the `[[crm.adapters]]` way)."""
        config = config or OdooConfig.model_validate(options)
        self.config = config
        self.name = config.name
        self.base = config.url.rstrip("/")
        self.http = JsonHttp(self.name, timeout=config.timeout, session=session)
        self._uid: int | None = None
        self._fields: set[str] | None = None  # res.partner fields present in this database
        self._ids = itertools.count(1)

    # --- the contract -------------------------------------------------------------------

    @bad_data_is_bad_response
    async def find_contact(self, number: str) -> Contact | None:
        fields = await self._partner_fields()
        domain = self._phone_domain(number, fields)
        if not domain:
            raise log_failure(self.name, "find contact", CrmBadResponse(
                "res.partner has none of the phone fields " + ", ".join(PHONE_FIELDS), adapter=self.name))
        wanted = [f for f in PARTNER_FIELDS if f in fields]
        rows = await self._execute("res.partner", "search_read", [domain],
                                   {"fields": wanted, "order": "write_date desc, id desc", "limit": 5},
                                   what="find contact")
        if not isinstance(rows, list):
            raise self._bad("find contact", "search_read did not return a list")
        if not rows:
            return None
        return (await self._contacts(rows[:1]))[0]  # pick rule: most recently written

    @bad_data_is_bad_response
    async def history(self, contact: Contact, limit: int = 20) -> list[Interaction]:
        if not contact.id.isdigit():
            raise CrmRejected(f"{contact.id!r} is not a res.partner id", adapter=self.name)
        domain = [["model", "=", "res.partner"], ["res_id", "=", int(contact.id)],
                  ["message_type", "in", MESSAGE_TYPES]]
        rows = await self._execute(
            "mail.message", "search_read", [domain],
            {"fields": ["date", "body", "subject", "message_type", "subtype_id", "author_id"],
             "order": "date desc, id desc", "limit": min(limit, self.config.history_limit_cap)},
            what="history")
        if not isinstance(rows, list):
            raise self._bad("history", "search_read did not return a list")
        items = [self._interaction(row) for row in rows]
        items.sort(key=lambda i: i.at, reverse=True)
        return items[:limit]

    @bad_data_is_bad_response
    async def create_contact(self, new: NewContact) -> Contact:
        fields = await self._partner_fields()
        values: dict[str, Any] = {"name": new.display_name, "phone": new.phones[0]}
        if len(new.phones) > 1 and "mobile" in fields:
            values["mobile"] = new.phones[1]
        if new.email:
            values["email"] = new.email
        if new.company:
            values["company_name"] = new.company
        if new.tags:
            values["category_id"] = [[6, 0, await self._tag_ids(new.tags)]]  # Command.set
        partner_id = await self._execute("res.partner", "create", [values], what="create contact")
        if not isinstance(partner_id, int):
            raise self._bad("create contact", f"create returned {partner_id!r}")
        if new.note:
            await self._post_note(partner_id, new.note, what="create contact")
        wanted = [f for f in PARTNER_FIELDS if f in fields]
        rows = await self._execute("res.partner", "read", [[partner_id]], {"fields": wanted},
                                   what="create contact")
        if not isinstance(rows, list) or not rows:
            raise self._bad("create contact", "the new partner cannot be read back")
        return (await self._contacts(rows))[0]

    @bad_data_is_bad_response
    async def log_call(self, call: FinishedCall) -> str | None:
        partner_id = int(call.contact_id) if call.contact_id and call.contact_id.isdigit() else None
        if partner_id is None:
            found = await self.find_contact(call.number)
            if found is None:
                log.info("crm %s: call %s from %s not logged: no partner with that number",
                         self.name, call.call_id, call.number)
                return None
            partner_id = int(found.id)
        marker = f"[call {call.call_id}]"
        existing = await self._execute(
            "mail.message", "search", [[["model", "=", "res.partner"], ["res_id", "=", partner_id],
                                        ["body", "ilike", marker]]], {"limit": 1}, what="log call")
        if isinstance(existing, list) and existing:
            log.info("crm %s: call %s already logged as message %s", self.name, call.call_id, existing[0])
            return str(existing[0])
        message_id = await self._post_note(partner_id, call_note(call), what="log call")
        return str(message_id)

    # --- JSON-RPC -----------------------------------------------------------------------

    async def _rpc(self, service: str, method: str, args: list[Any], *, what: str) -> Any:
        request_id = next(self._ids)
        body = {"jsonrpc": "2.0", "method": "call", "id": request_id,
                "params": {"service": service, "method": method, "args": args}}
        reply = await self.http.request("POST", self.base + "/jsonrpc", what=what, json_body=body)
        if not reply.ok:
            raise log_failure(self.name, what, error_for_status(
                reply.status, f"HTTP {reply.status} from /jsonrpc", adapter=self.name,
                retry_after=reply.retry_after()))
        envelope = reply.body
        if not isinstance(envelope, dict) or envelope.get("id") != request_id:
            raise self._bad(what, "not a JSON-RPC reply to this request")
        if envelope.get("error") is not None:
            raise log_failure(self.name, what, self._server_error(envelope["error"]))
        if "result" not in envelope:
            raise self._bad(what, "JSON-RPC reply without result")
        return envelope["result"]

    async def _execute(self, model: str, method: str, args: list[Any],
                       kwargs: dict[str, Any] | None = None, *, what: str) -> Any:
        uid = await self._login()
        password = self.config.password.get_secret_value()
        try:
            return await self._rpc("object", "execute_kw",
                                   [self.config.database, uid, password, model, method, args, kwargs or {}],
                                   what=what)
        except CrmAuthError:
            self._uid = None  # password/key changed or revoked: log in afresh next time
            raise

    async def _login(self) -> int:
        if self._uid is None:
            uid = await self._rpc("common", "authenticate",
                                  [self.config.database, self.config.login,
                                   self.config.password.get_secret_value(), {}], what="login")
            if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
                raise log_failure(self.name, "login", CrmAuthError(
                    f"login {self.config.login!r} rejected by database {self.config.database!r}",
                    adapter=self.name))
            self._uid = uid
        return self._uid

    def _server_error(self, error: Any) -> CrmError:
        data = error.get("data") if isinstance(error, dict) else None
        data = data if isinstance(data, dict) else {}
        name = str(data.get("name") or "")
        message = str(data.get("message") or (error.get("message") if isinstance(error, dict) else error))
        if name in AUTH_ERRORS or (isinstance(error, dict) and error.get("code") == 100):
            return CrmAuthError(message, adapter=self.name)
        if name in REJECTED_ERRORS:
            return CrmRejected(message, adapter=self.name)
        return CrmUnavailable(f"{name or 'server error'}: {message}", adapter=self.name)

    def _bad(self, what: str, message: str) -> CrmError:
        return log_failure(self.name, what, CrmBadResponse(message, adapter=self.name))

    # --- mapping ------------------------------------------------------------------------

    async def _partner_fields(self) -> set[str]:
        if self._fields is None:
            described = await self._execute("res.partner", "fields_get", [], {"attributes": ["type"]},
                                            what="describe res.partner")
            if not isinstance(described, dict):
                raise self._bad("describe res.partner", "fields_get did not return an object")
            self._fields = set(described)
        return self._fields

    def _phone_domain(self, e164: str, fields: set[str]) -> list[Any]:
        # What users type and Odoo's own onchange writes ("+7 495 123-45-67"), plus bare digits.
        forms = national_variants(e164)
        try:
            parsed = phonenumbers.parse(e164, None)
            forms += [phonenumbers.format_number(parsed, fmt) for fmt in
                      (phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.NATIONAL)]
        except phonenumbers.NumberParseException:
            pass
        terms: list[list[Any]] = []
        for field in PHONE_FIELDS:
            if field not in fields:
                continue
            if field in ("phone_sanitized", "phone_mobile_search"):
                terms.append([field, "=", e164])
            else:
                terms.append([field, "in", list(dict.fromkeys(forms))])
        return ["|"] * (len(terms) - 1) + terms  # Odoo domains are prefix (Polish) notation

    async def _contacts(self, rows: list[dict[str, Any]]) -> list[Contact]:
        tag_ids = sorted({t for row in rows for t in (row.get("category_id") or [])})
        names: dict[int, str] = {}
        if tag_ids:
            tags = await self._execute("res.partner.category", "read", [tag_ids], {"fields": ["name"]},
                                       what="read tags")
            for tag in tags if isinstance(tags, list) else []:
                if isinstance(tag, dict) and {"id", "name"} <= tag.keys():
                    names[tag["id"]] = str(tag["name"])
        return [self._contact(row, names) for row in rows]

    def _contact(self, row: dict[str, Any], tag_names: dict[int, str]) -> Contact:
        pid, name = row.get("id"), row.get("name")
        if not isinstance(pid, int) or not isinstance(name, str) or not name.strip():
            raise self._bad("find contact", f"partner without id or name: {row.get('id')!r}")
        parent = row.get("parent_id")
        company = _text(parent[1]) if isinstance(parent, list) and len(parent) == 2 else None
        company = company or _text(row.get("company_name"))
        phones = [normalize(p, self.config.default_region) or p
                  for p in (_text(row.get("phone")), _text(row.get("mobile"))) if p]
        return Contact(
            id=str(pid), display_name=name.strip(), company=company, phones=list(dict.fromkeys(phones)),
            email=_text(row.get("email")),
            tags=[tag_names[t] for t in row.get("category_id") or [] if t in tag_names],
            url=f"{self.base}/web#id={pid}&model=res.partner&view_type=form", source=self.name,
            updated_at=_odoo_time(row.get("write_date")),
        )

    def _interaction(self, row: Any) -> Interaction:
        at = _odoo_time(row.get("date")) if isinstance(row, dict) else None
        if at is None or not isinstance(row.get("id"), int):
            raise self._bad("history", "mail.message without id or date")
        text = _plain(row.get("body")) or _text(row.get("subject")) or ""
        marker = CALL_MARKER.search(text)
        author = row.get("author_id")
        return Interaction(
            id=str(row["id"]), kind="call" if marker else ("email" if row.get("message_type") != "comment"
                                                           else "note"),
            at=at, summary=text[:200], source=self.name, call_id=marker.group(1) if marker else None,
            operator=author[1] if isinstance(author, list) and len(author) == 2 else None,
        )

    async def _post_note(self, partner_id: int, text: str, *, what: str) -> int:
        # A plain-text body: Odoo escapes it, so nothing the operator typed becomes HTML.
        message_id = await self._execute(
            "res.partner", "message_post", [[partner_id]],
            {"body": text, "message_type": "comment", "subtype_xmlid": "mail.mt_note"}, what=what)
        if not isinstance(message_id, int):
            raise self._bad(what, f"message_post returned {message_id!r}")
        return message_id

    async def _tag_ids(self, tags: list[str]) -> list[int]:
        found = await self._execute("res.partner.category", "search_read", [[["name", "in", tags]]],
                                    {"fields": ["name"]}, what="create contact")
        ids = {t["name"]: t["id"] for t in found if isinstance(t, dict) and {"id", "name"} <= t.keys()} \
            if isinstance(found, list) else {}
        for tag in tags:
            if tag not in ids:
                ids[tag] = await self._execute("res.partner.category", "create", [{"name": tag}],
                                               what="create contact")
        return [ids[tag] for tag in tags]


def _text(value: Any) -> str | None:
    # Odoo returns False, not null, for an empty field.
    return value.strip() or None if isinstance(value, str) else None


def _plain(body: Any) -> str:
    return " ".join(html.unescape(_TAGS.sub(" ", body)).split()) if isinstance(body, str) else ""


def _odoo_time(value: Any) -> datetime | None:
    # Odoo datetimes travel as "YYYY-MM-DD HH:MM:SS" in UTC.
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
