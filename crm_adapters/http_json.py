"""Generic HTTP/JSON adapter for in-house CRMs (1C HTTP services and the like).

Configured, not coded: URL templates, an auth header, and a mapping from the CRM's JSON
to `Contact` / `Interaction`. Example (TOML)::

    [crm.http_json]
    find_url = "https://crm.local/api/contacts?phone={e164}"
    history_url = "https://crm.local/api/contacts/{id}/events?limit={limit}"
    create_url = "https://crm.local/api/contacts"
    log_call_url = "https://crm.local/api/calls"
    auth_value = "Bearer 0123abcd"          # sent as the `Authorization` header
    contacts_path = "data.items"            # where the list (or the one object) is
    contact_url = "https://crm.local/#/contact/{id}"
    [crm.http_json.contact]
    id = "guid"
    display_name = ["surname", "name"]      # several paths are joined with a space
    company = "org.title"
    phones = "phones[*].number"

URL placeholders: `{e164}` (`+74951234567`), `{digits}` (`74951234567`), `{id}`,
`{limit}`, `{call_id}`, `{contact_id}`; values are URL-encoded (`+` becomes `%2B`).

Paths are a small dotted syntax written here rather than a library: `a.b`, `a[0].b`,
`a[*].b` (collects a list), `""` (the value itself). JMESPath or glom would do more, but the
in-house CRMs this serves return flat records, and a 30-line resolver keeps the adapter free
of a new dependency and its error messages ours (a bad path fails at config load).

Rules:
- Not found: an empty list/object/body, `null`, or a status in `not_found_statuses` (404).
- Several matches: the one with the latest `updated_at` when that field is mapped and
  present, otherwise the first in the CRM's order.
- History is sorted newest first here and cut to `limit`; the server's order is not trusted.
- `log_call` sends `Idempotency-Key: <call_id>`; a 409 answer means "already logged".
- Errors: 401/403 -> CrmAuthError, 429 -> CrmRateLimited, 5xx -> CrmUnavailable,
  timeout -> CrmTimeout, non-JSON or a record without id/name -> CrmBadResponse.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from crm_adapters.contract import Contact, FinishedCall, Interaction, NewContact
from crm_adapters.errors import CrmBadResponse, CrmNotSupported, error_for_status
from crm_adapters.http_session import (
    DEFAULT_TIMEOUT,
    HttpCrmAdapter,
    JsonHttp,
    JsonReply,
    bad_data_is_bad_response,
    log_failure,
)
from crm_adapters.phone_numbers import normalize

log = logging.getLogger("callbridge.crm")

_STEP = re.compile(r"\[(\d+|\*)\]|([^.\[\]]+)")
_KINDS = {"call", "note", "ticket", "deal", "email", "task", "other"}
_DIRECTIONS = {"in": "inbound", "inbound": "inbound", "incoming": "inbound",
               "out": "outbound", "outbound": "outbound", "outgoing": "outbound"}


def parse_path(path: str) -> list[str | int | None]:
    """`a.b[0][*]` -> ["a", "b", 0, None]; raises ValueError on anything else."""
    steps: list[str | int | None] = []
    pos = 0
    while pos < len(path):
        if path[pos] == "." and steps:
            pos += 1
        match = _STEP.match(path, pos)
        if match is None:
            raise ValueError(f"bad path {path!r} at {pos}")
        index, key = match.groups()
        steps.append(key if key is not None else (None if index == "*" else int(index)))
        pos = match.end()
    return steps


def resolve(data: Any, path: str) -> Any:
    """The value at `path`, or None where anything on the way is missing."""
    return _walk(data, parse_path(path))


def _walk(data: Any, steps: list[str | int | None]) -> Any:
    for i, step in enumerate(steps):
        if step is None:  # [*]: the rest of the path on every element, flattened
            if not isinstance(data, list):
                return None
            out: list[Any] = []
            for item in data:
                value = _walk(item, steps[i + 1:])
                if isinstance(value, list):
                    out.extend(value)
                elif value is not None:
                    out.append(value)
            return out
        if isinstance(step, int):
            data = data[step] if isinstance(data, list) and -len(data) <= step < len(data) else None
        else:
            data = data.get(step) if isinstance(data, dict) else None
        if data is None:
            return None
    return data


def _check_paths(value: Any) -> Any:
    for path in [value] if isinstance(value, str) else (value or []):
        parse_path(path)
    return value


class _PathMapping(BaseModel):
    """Fields naming JSON paths in the CRM's response; every path is checked at load."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _valid_paths(cls, value: Any) -> Any:
        return _check_paths(value)


class ContactMapping(_PathMapping):
    id: str = "id"
    display_name: str | list[str] = "name"
    company: str | None = "company"
    phones: str | None = "phones"
    email: str | None = "email"
    tags: str | None = "tags"
    url: str | None = "url"
    updated_at: str | None = "updated_at"


class InteractionMapping(_PathMapping):
    id: str = "id"
    kind: str | None = "kind"  # values outside the contract's kinds become "other"
    at: str = "at"
    summary: str | None = "summary"
    direction: str | None = "direction"
    operator: str | None = "operator"
    duration_seconds: str | None = "duration"
    outcome: str | None = "outcome"
    url: str | None = "url"


class HttpJsonConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "http_json"
    find_url: str
    history_url: str | None = None
    create_url: str | None = None
    log_call_url: str | None = None
    auth_header: str = "Authorization"
    auth_value: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)
    timezone: str = "UTC"  # for naive timestamps (1C often sends local time without offset)
    default_region: str = "RU"  # for phones the CRM stores in national form
    not_found_statuses: list[int] = Field(default_factory=lambda: [404])
    contacts_path: str = ""
    contact: ContactMapping = Field(default_factory=ContactMapping)
    contact_url: str | None = None  # used when the record carries no link; `{id}`
    history_path: str = ""
    interaction: InteractionMapping = Field(default_factory=InteractionMapping)
    created_path: str = ""  # the created contact in create_url's reply
    log_call_id_path: str = "id"
    # Body keys (dotted paths build nested objects) -> our field names; None sends our names.
    create_fields: dict[str, str] | None = None
    log_call_fields: dict[str, str] | None = None

    @field_validator("contacts_path", "history_path", "created_path", "log_call_id_path")
    @classmethod
    def _valid_path(cls, value: str) -> str:
        parse_path(value)
        return value


class HttpJsonAdapter(HttpCrmAdapter):
    config_model = HttpJsonConfig

    def __init__(self, config: HttpJsonConfig | None = None, *, session: aiohttp.ClientSession | None = None,
                 **options: Any) -> None:
        """Either a ready `HttpJsonConfig` or its fields as keyword options (the `[[crm.adapters]]` way)."""
        config = config or HttpJsonConfig.model_validate(options)
        self.config = config
        self.name = config.name
        self.can_create_contacts = config.create_url is not None
        self.can_log_calls = config.log_call_url is not None
        headers = dict(config.headers)
        if config.auth_value is not None:
            headers[config.auth_header] = config.auth_value.get_secret_value()
        self.http = JsonHttp(self.name, timeout=config.timeout, session=session, headers=headers)
        self._tz = ZoneInfo(config.timezone)

    # --- the contract -------------------------------------------------------------------

    @bad_data_is_bad_response
    async def find_contact(self, number: str) -> Contact | None:
        url = self._url(self.config.find_url, e164=number, digits=number.lstrip("+"))
        reply = await self._call("GET", url, what="find contact", not_found_ok=True)
        if reply is None:
            return None
        found = resolve(reply.body, self.config.contacts_path)
        records = [r for r in (found if isinstance(found, list) else [found]) if r]
        if not records:
            return None
        contacts = [self._contact(record, "find contact") for record in records]
        # Pick rule (module docstring): latest updated_at, else the CRM's first.
        dated = [c for c in contacts if c.updated_at is not None]
        return max(dated, key=lambda c: c.updated_at) if dated else contacts[0]  # type: ignore[arg-type, return-value]

    @bad_data_is_bad_response
    async def history(self, contact: Contact, limit: int = 20) -> list[Interaction]:
        if self.config.history_url is None:
            return []
        url = self._url(self.config.history_url, id=contact.id, limit=str(limit))
        reply = await self._call("GET", url, what="history", not_found_ok=True)
        items = resolve(reply.body, self.config.history_path) if reply is not None else None
        if items is None:
            return []
        if not isinstance(items, list):
            raise log_failure(self.name, "history", CrmBadResponse(
                f"history at {self.config.history_path!r} is not a list", adapter=self.name))
        interactions = [self._interaction(item) for item in items if isinstance(item, dict)]
        interactions.sort(key=lambda i: i.at, reverse=True)
        return interactions[:limit]

    @bad_data_is_bad_response
    async def create_contact(self, new: NewContact) -> Contact:
        if self.config.create_url is None:
            raise CrmNotSupported("no create_url configured", adapter=self.name)
        body = _body(new.model_dump(mode="json"), self.config.create_fields)
        reply = await self._call("POST", self._url(self.config.create_url), what="create contact",
                                 json_body=body)
        assert reply is not None
        record = resolve(reply.body, self.config.created_path)
        return self._contact(record, "create contact")

    @bad_data_is_bad_response
    async def log_call(self, call: FinishedCall) -> str | None:
        if self.config.log_call_url is None:
            raise CrmNotSupported("no log_call_url configured", adapter=self.name)
        url = self._url(self.config.log_call_url, call_id=call.call_id, contact_id=call.contact_id or "")
        body = _body(call.model_dump(mode="json"), self.config.log_call_fields)
        reply = await self._call("POST", url, what=f"log call {call.call_id}", json_body=body,
                                 headers={"Idempotency-Key": call.call_id}, duplicate_ok=True)
        if reply is None:
            log.info("crm %s: call %s was already logged", self.name, call.call_id)
            return None
        created = resolve(reply.body, self.config.log_call_id_path) if reply.body is not None else None
        return None if created is None else str(created)

    # --- helpers ------------------------------------------------------------------------

    def _url(self, template: str, **values: str) -> str:
        encoded = {key: quote(value, safe="") for key, value in values.items()}
        try:
            return template.format(**encoded)
        except (KeyError, IndexError) as exc:
            raise log_failure(self.name, "build URL", CrmNotSupported(
                f"URL template {template!r} uses an unknown placeholder {exc}", adapter=self.name)) from None

    async def _call(self, method: str, url: str, *, what: str, json_body: Any = None,
                    headers: dict[str, str] | None = None, not_found_ok: bool = False,
                    duplicate_ok: bool = False) -> JsonReply | None:
        reply = await self.http.request(method, url, what=what, json_body=json_body, headers=headers)
        if not_found_ok and reply.status in self.config.not_found_statuses:
            return None
        if duplicate_ok and reply.status == 409:
            return None
        if not reply.ok:
            message = _error_text(reply.body) or f"HTTP {reply.status}"
            raise log_failure(self.name, what, error_for_status(
                reply.status, message, adapter=self.name, retry_after=reply.retry_after()))
        return reply

    def _contact(self, record: Any, what: str) -> Contact:
        m = self.config.contact
        if not isinstance(record, dict):
            raise log_failure(self.name, what, CrmBadResponse(
                f"expected a JSON object for a contact, got {type(record).__name__}", adapter=self.name))
        cid = resolve(record, m.id)
        names = [m.display_name] if isinstance(m.display_name, str) else m.display_name
        parts = [resolve(record, path) for path in names]
        name = " ".join(str(part).strip() for part in parts if part not in (None, ""))
        if cid in (None, "") or not name.strip():
            raise log_failure(self.name, what, CrmBadResponse(
                f"contact without {'id' if cid in (None, '') else 'name'}", adapter=self.name))
        url = _text(record, m.url)
        if url is None and self.config.contact_url:
            url = self.config.contact_url.replace("{id}", quote(str(cid), safe=""))
        return Contact(
            id=str(cid), display_name=name.strip(), company=_text(record, m.company),
            phones=[normalize(p, self.config.default_region) or p for p in _texts(record, m.phones)],
            email=_text(record, m.email), tags=_texts(record, m.tags), url=url, source=self.name,
            updated_at=self._time(resolve(record, m.updated_at)) if m.updated_at else None,
        )

    def _interaction(self, item: dict[str, Any]) -> Interaction:
        m = self.config.interaction
        iid, at = resolve(item, m.id), self._time(resolve(item, m.at))
        if iid in (None, "") or at is None:
            raise log_failure(self.name, "history", CrmBadResponse(
                "history item without id or time", adapter=self.name))
        kind = (_text(item, m.kind) or "other").lower()
        direction = _DIRECTIONS.get((_text(item, m.direction) or "").lower())
        duration = _number(resolve(item, m.duration_seconds)) if m.duration_seconds else None
        return Interaction(
            id=str(iid), kind=kind if kind in _KINDS else "other", at=at,  # type: ignore[arg-type]
            summary=_text(item, m.summary) or "", source=self.name, direction=direction,  # type: ignore[arg-type]
            operator=_text(item, m.operator), outcome=_text(item, m.outcome), url=_text(item, m.url),
            duration_seconds=duration,
        )

    def _time(self, value: Any) -> datetime | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if not isinstance(value, str) or not value:
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise log_failure(self.name, "parse time", CrmBadResponse(
                f"not an ISO 8601 time: {value!r}", adapter=self.name)) from None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=self._tz)).astimezone(UTC)


def _text(record: Any, path: str | None) -> str | None:
    value = resolve(record, path) if path else None
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value) if value not in (None, "") else None


def _texts(record: Any, path: str | None) -> list[str]:
    value = resolve(record, path) if path else None
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if v not in (None, "") and not isinstance(v, dict | list)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _body(ours: dict[str, Any], mapping: dict[str, str] | None) -> dict[str, Any]:
    """Our record re-keyed for the CRM: {"client.phone": "phones"} -> {"client": {"phone": [...]}}."""
    if mapping is None:
        return ours
    body: dict[str, Any] = {}
    for their_key, our_field in mapping.items():
        *parents, leaf = their_key.split(".")
        node = body
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = ours.get(our_field)
    return body


def _error_text(body: Any) -> str | None:
    if isinstance(body, dict):
        for key in ("error_description", "message", "error", "detail"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key]
    return None
