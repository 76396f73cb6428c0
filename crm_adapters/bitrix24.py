"""Bitrix24 adapter over an incoming webhook: `POST https://<portal>/rest/<user>/<code>/<method>.json`.

Documentation followed (github.com/bitrix24/b24restdocs, published at apidocs.bitrix24.com):
- crm.duplicate.findbycomm: https://apidocs.bitrix24.com/api-reference/crm/duplicates/crm-duplicate-find-by-comm.html
- crm.contact.get / crm.contact.add: https://apidocs.bitrix24.com/api-reference/crm/contacts/crm-contact-get.html,
  https://apidocs.bitrix24.com/api-reference/crm/contacts/crm-contact-add.html
- crm.company.get / crm.company.list / crm.company.add: https://apidocs.bitrix24.com/api-reference/crm/companies/
- crm.activity.list: https://apidocs.bitrix24.com/api-reference/crm/timeline/activities/activity-base/crm-activity-list.html
- list pagination (`start`, `next`, `total`, 50 per page):
  https://apidocs.bitrix24.com/settings/how-to-call-rest-api/list-methods-pecularities.html
- telephony.externalCall.register / .finish:
  https://apidocs.bitrix24.com/api-reference/telephony/telephony-external-call-register.html,
  https://apidocs.bitrix24.com/api-reference/telephony/telephony-external-call-finish.html
- crm.timeline.comment.add: https://apidocs.bitrix24.com/api-reference/crm/timeline/comments/crm-timeline-comment-add.html
- errors `{"error": ..., "error_description": ...}` and the system codes (QUERY_LIMIT_EXCEEDED 503,
  OPERATION_TIME_LIMIT 429, INVALID_CREDENTIALS / expired_token / NO_AUTH_FOUND 401, ...):
  https://apidocs.bitrix24.com/_includes/system-errors.html

Lookup: `crm.duplicate.findbycomm` with the number in the forms it may be stored in (at most
20 values), contacts first, companies only when no contact has it (a per-type search, so 20+
lead duplicates cannot hide them). Several matches: the most recently created (highest ID)
of those returned (Bitrix24 returns at most 20 per type, the oldest ones). The card's id is
`contact:<ID>` or `company:<ID>`; a company name that cannot be read leaves the card without it.

History: `crm.activity.list` on the contact/company, newest first, paged with `start`/`next`.

Logging a call: `telephony.externalCall.register` + `.finish` (with EXTERNAL_CALL_ID = our call
id), which Bitrix24 documents as working only in an application's context (a webhook may get
WRONG_AUTH_TYPE); `log_call_via = "timeline_comment"` posts a timeline comment instead, which
webhooks may do. A call id logged once by this process is not logged again.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from crm_adapters.contract import Contact, FinishedCall, Interaction, NewContact
from crm_adapters.errors import (
    CrmAuthError,
    CrmBadResponse,
    CrmError,
    CrmRateLimited,
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

PAGE = 50  # Bitrix24 list methods always return 50 records a page
RATE_LIMIT = {"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT"}
AUTH = {"INVALID_CREDENTIALS", "NO_AUTH_FOUND", "expired_token", "invalid_token", "insufficient_scope",
        "user_access_error", "ACCESS_DENIED", "WRONG_AUTH_TYPE", "INVALID_REQUEST", "PORTAL_DELETED",
        "ERROR_METHOD_NOT_FOUND"}
DOWN = {"INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER", "OVERLOAD_LIMIT"}
OWNER_TYPES = {"contact": 3, "company": 4}  # crm_enum_ownertype
ACTIVITY_KINDS = {"1": "other", "2": "call", "3": "task", "4": "email"}  # crm_enum_activitytype
DIRECTIONS = {"1": "inbound", "2": "outbound"}  # crm_enum_activitydirection
STATUS_CODES = {"answered": "200", "unanswered": "304", "abandoned": "304", "busy": "486",
                "failed": "OTHER", "incomplete": "OTHER"}


class Bitrix24Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "bitrix24"
    # https://<portal>/rest/<user_id>/<code>/ -- the code is a secret, hence SecretStr.
    webhook_url: SecretStr
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)
    default_region: str = "RU"
    log_call_via: Literal["telephony", "timeline_comment"] = "telephony"
    # Who the call belongs to in Bitrix24: the operator's extension as UF_PHONE_INNER, mapped
    # here to a user ID where the extensions differ; `default_user_id` when no operator is known.
    operator_user_ids: dict[str, int] = Field(default_factory=dict)
    default_user_id: int | None = None
    line_number: str | None = None  # LINE_NUMBER of the external line, recommended by the docs
    create_leads: bool = False  # CRM_CREATE for calls from unknown numbers

    @field_validator("webhook_url")
    @classmethod
    def _webhook_shape(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        path = [p for p in parts.path.split("/") if p]
        if parts.scheme not in ("http", "https") or len(path) < 3 or path[-3] != "rest":
            raise ValueError("expected https://<portal>/rest/<user_id>/<webhook code>/")
        return value


class Bitrix24Adapter(HttpCrmAdapter):
    config_model = Bitrix24Config

    def __init__(self, config: Bitrix24Config | None = None, *, session: aiohttp.ClientSession | None = None,
                 **options: Any) -> None:
        """Either a ready `Bitrix24Config` or its fields as keyword options (the `[[crm.adapters]]` way)."""
        config = config or Bitrix24Config.model_validate(options)
        self.config = config
        self.name = config.name
        self._base = config.webhook_url.get_secret_value().rstrip("/") + "/"
        parts = urlsplit(self._base)
        self.portal = f"{parts.scheme}://{parts.netloc}"
        self.http = JsonHttp(self.name, timeout=config.timeout, session=session)
        self._logged: OrderedDict[str, str | None] = OrderedDict()  # call_id -> what we created

    # --- the contract -------------------------------------------------------------------

    @bad_data_is_bad_response
    async def find_contact(self, number: str) -> Contact | None:
        values = national_variants(number)[:20]  # the method takes at most 20 values
        for entity in ("CONTACT", "COMPANY"):
            found = await self.call("crm.duplicate.findbycomm",
                                    {"type": "PHONE", "values": values, "entity_type": entity})
            # An empty PHP array comes back as [] rather than {}.
            if not isinstance(found, dict | list) or (isinstance(found, list) and found):
                raise self._bad("crm.duplicate.findbycomm", f"unexpected result {found!r:.80}")
            listed = found.get(entity, []) if isinstance(found, dict) else []
            ids = [int(i) for i in listed if str(i).isdigit()] if isinstance(listed, list) else []
            if ids:
                best = max(ids)  # pick rule: the most recently created
                return await (self._contact(best) if entity == "CONTACT" else self._company(best))
        return None

    @bad_data_is_bad_response
    async def history(self, contact: Contact, limit: int = 20) -> list[Interaction]:
        kind, owner_id = self._owner(contact.id)
        items: list[Interaction] = []
        start: int | None = 0
        while start is not None and len(items) < limit:
            reply = await self.call("crm.activity.list", {
                "filter": {"OWNER_TYPE_ID": OWNER_TYPES[kind], "OWNER_ID": owner_id},
                "order": {"START_TIME": "DESC", "ID": "DESC"},
                "select": ["ID", "TYPE_ID", "PROVIDER_ID", "SUBJECT", "START_TIME", "CREATED", "DIRECTION",
                           "RESPONSIBLE_ID", "COMPLETED"],
                "start": start}, whole=True)
            page = reply.get("result")
            if not isinstance(page, list):
                raise self._bad("crm.activity.list", "result is not a list")
            items += [self._interaction(row) for row in page]
            nxt = reply.get("next")
            start = int(nxt) if isinstance(nxt, int | str) and str(nxt).isdigit() and page else None
        items.sort(key=lambda i: i.at, reverse=True)
        return items[:limit]

    @bad_data_is_bad_response
    async def create_contact(self, new: NewContact) -> Contact:
        fields: dict[str, Any] = {
            "NAME": new.display_name, "OPENED": "Y",
            "PHONE": [{"VALUE": p, "VALUE_TYPE": "WORK"} for p in new.phones]}
        if new.email:
            fields["EMAIL"] = [{"VALUE": new.email, "VALUE_TYPE": "WORK"}]
        if new.note:
            fields["COMMENTS"] = new.note
        if new.company:
            fields["COMPANY_ID"] = await self._company_id(new.company)
        created = await self.call("crm.contact.add",
                                  {"fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}})
        if not isinstance(created, int | str) or not str(created).isdigit():
            raise self._bad("crm.contact.add", f"result {created!r} is not an ID")
        if new.tags:
            log.info("crm %s: tags %s not stored: Bitrix24 contacts have no tags", self.name, new.tags)
        return Contact(id=f"contact:{created}", display_name=new.display_name, company=new.company,
                       phones=list(new.phones), email=new.email, source=self.name,
                       url=f"{self.portal}/crm/contact/details/{created}/")

    @bad_data_is_bad_response
    async def log_call(self, call: FinishedCall) -> str | None:
        if call.call_id in self._logged:
            log.info("crm %s: call %s already logged", self.name, call.call_id)
            return self._logged[call.call_id]
        if self.config.log_call_via == "telephony":
            created = await self._log_via_telephony(call)
        else:
            created = await self._log_via_comment(call)
        self._logged[call.call_id] = created
        while len(self._logged) > 10_000:
            self._logged.popitem(last=False)
        return created

    # --- REST ---------------------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any], *, whole: bool = False) -> Any:
        """`result` of one REST method (the whole reply with `whole`, for `next`/`total`)."""
        reply = await self.http.request("POST", f"{self._base}{method}.json", what=method, json_body=params)
        body = reply.body
        error = body.get("error") if isinstance(body, dict) else None
        if error is not None or not reply.ok:
            raise log_failure(self.name, method, self._error(reply.status, body, reply.retry_after()))
        if not isinstance(body, dict) or "result" not in body:
            raise self._bad(method, "reply without result")
        return body if whole else body["result"]

    def _error(self, status: int, body: Any, retry_after: float | None) -> CrmError:
        code = str(body.get("error") or "") if isinstance(body, dict) else ""
        text = str(body.get("error_description") or "") if isinstance(body, dict) else ""
        message = f"{code}: {text}" if code and text else code or text or f"HTTP {status}"
        if code in RATE_LIMIT:
            return CrmRateLimited(message, adapter=self.name, status=status, retry_after=retry_after)
        if code in AUTH or text.lower() == "access denied":
            if code == "WRONG_AUTH_TYPE":
                message += (" (a webhook cannot use telephony.externalCall.*:"
                            " set log_call_via = 'timeline_comment')")
            return CrmAuthError(message, adapter=self.name, status=status)
        if code in DOWN:
            return CrmUnavailable(message, adapter=self.name, status=status)
        if code and 400 <= status < 500:
            return CrmRejected(message, adapter=self.name, status=status)  # a method's own error
        return error_for_status(status, message, adapter=self.name, retry_after=retry_after)

    def _bad(self, method: str, message: str) -> CrmError:
        return log_failure(self.name, method, CrmBadResponse(message, adapter=self.name))

    # --- mapping ------------------------------------------------------------------------

    async def _contact(self, contact_id: int) -> Contact:
        row = await self.call("crm.contact.get", {"id": contact_id})
        if not isinstance(row, dict):
            raise self._bad("crm.contact.get", "result is not an object")
        name = " ".join(str(row.get(k) or "").strip() for k in ("NAME", "LAST_NAME")).strip()
        company = None
        if str(row.get("COMPANY_ID") or "0").isdigit() and int(row.get("COMPANY_ID") or 0) > 0:
            try:
                found = await self.call("crm.company.get", {"id": int(row["COMPANY_ID"])})
            except CrmRejected:  # deleted or not visible to the webhook's user: still show the card
                found = None
            if isinstance(found, dict):
                company = str(found.get("TITLE") or "").strip() or None
        return self._card("contact", contact_id, name or str(row.get("SECOND_NAME") or ""), row, company)

    async def _company(self, company_id: int) -> Contact:
        row = await self.call("crm.company.get", {"id": company_id})
        if not isinstance(row, dict):
            raise self._bad("crm.company.get", "result is not an object")
        return self._card("company", company_id, str(row.get("TITLE") or "").strip(), row, None)

    def _card(self, kind: str, eid: int, name: str, row: dict[str, Any], company: str | None) -> Contact:
        phones = [normalize(str(v), self.config.default_region) or str(v) for v in _multi(row, "PHONE")]
        emails = _multi(row, "EMAIL")
        return Contact(
            id=f"{kind}:{eid}", display_name=name or f"{kind.title()} #{eid}", company=company,
            phones=list(dict.fromkeys(phones)), email=emails[0] if emails else None, source=self.name,
            url=f"{self.portal}/crm/{kind}/details/{eid}/", updated_at=_time(row.get("DATE_MODIFY")),
        )

    def _owner(self, contact_id: str) -> tuple[str, int]:
        kind, _, raw = contact_id.partition(":")
        if kind not in OWNER_TYPES or not raw.isdigit():
            raise CrmRejected(f"{contact_id!r} is not a Bitrix24 contact/company id", adapter=self.name)
        return kind, int(raw)

    def _interaction(self, row: Any) -> Interaction:
        if not isinstance(row, dict):
            raise self._bad("crm.activity.list", "activity is not an object")
        at = _time(row.get("START_TIME")) or _time(row.get("CREATED"))
        if at is None or not str(row.get("ID") or "").isdigit():
            raise self._bad("crm.activity.list", "activity without ID or time")
        type_id = str(row.get("TYPE_ID"))
        kind = ACTIVITY_KINDS.get(type_id, "task" if row.get("PROVIDER_ID") == "CRM_TODO" else "other")
        return Interaction(
            id=str(row["ID"]), kind=kind, at=at, summary=str(row.get("SUBJECT") or ""),  # type: ignore[arg-type]
            source=self.name, direction=DIRECTIONS.get(str(row.get("DIRECTION"))) if kind == "call" else None,  # type: ignore[arg-type]
            operator=str(row["RESPONSIBLE_ID"]) if row.get("RESPONSIBLE_ID") else None,
            url=f"{self.portal}/crm/activity/?open_view={row['ID']}",
        )

    async def _company_id(self, title: str) -> int:
        found = await self.call("crm.company.list", {"filter": {"=TITLE": title}, "select": ["ID"]})
        if isinstance(found, list) and found and str(found[0].get("ID", "")).isdigit():
            return int(found[0]["ID"])
        created = await self.call("crm.company.add", {"fields": {"TITLE": title, "OPENED": "Y"}})
        if not str(created).isdigit():
            raise self._bad("crm.company.add", f"result {created!r} is not an ID")
        return int(created)

    def _user(self, operator: str | None) -> dict[str, Any]:
        if operator and operator in self.config.operator_user_ids:
            return {"USER_ID": self.config.operator_user_ids[operator]}
        if operator:
            return {"USER_PHONE_INNER": operator}
        if self.config.default_user_id is not None:
            return {"USER_ID": self.config.default_user_id}
        raise CrmRejected("no operator and no default_user_id to log the call under", adapter=self.name)

    async def _log_via_telephony(self, call: FinishedCall) -> str | None:
        user = self._user(call.operator)
        params: dict[str, Any] = {
            **user, "PHONE_NUMBER": call.number, "TYPE": 2 if call.direction == "inbound" else 1,
            "CALL_START_DATE": call.started_at.isoformat(), "CRM_CREATE": int(self.config.create_leads),
            "SHOW": 0, "EXTERNAL_CALL_ID": call.call_id}
        if call.contact_id:
            kind, eid = self._owner(call.contact_id)
            params |= {"CRM_ENTITY_TYPE": kind.upper(), "CRM_ENTITY_ID": eid}
        if self.config.line_number:
            params["LINE_NUMBER"] = self.config.line_number
        registered = await self.call("telephony.externalcall.register", params)
        call_id = registered.get("CALL_ID") if isinstance(registered, dict) else None
        if not isinstance(call_id, str) or not call_id:
            raise self._bad("telephony.externalcall.register", "no CALL_ID in the result")
        finish: dict[str, Any] = {"CALL_ID": call_id, **user, "DURATION": round(call.duration_seconds),
                                  "STATUS_CODE": STATUS_CODES[call.outcome], "ADD_TO_CHAT": 0}
        if call.outcome != "answered":
            finish["FAILED_REASON"] = call.outcome
        finished = await self.call("telephony.externalcall.finish", finish)
        activity = finished.get("CRM_ACTIVITY_ID") if isinstance(finished, dict) else None
        if call.note and isinstance(finished, dict) and str(finished.get("CRM_ENTITY_ID") or "").isdigit():
            entity_type = str(finished.get("CRM_ENTITY_TYPE") or "contact").lower()
            await self.call("crm.timeline.comment.add", {"fields": {
                "ENTITY_ID": int(finished["CRM_ENTITY_ID"]), "ENTITY_TYPE": entity_type,
                "COMMENT": call.note}})
        return str(activity) if activity else call_id

    async def _log_via_comment(self, call: FinishedCall) -> str | None:
        contact_id = call.contact_id
        if not contact_id:
            found = await self.find_contact(call.number)
            if found is None:
                log.info("crm %s: call %s from %s not logged: nobody has that number",
                         self.name, call.call_id, call.number)
                return None
            contact_id = found.id
        kind, eid = self._owner(contact_id)
        created = await self.call("crm.timeline.comment.add", {"fields": {
            "ENTITY_ID": eid, "ENTITY_TYPE": kind, "COMMENT": call_note(call)}})
        return str(created)


def _multi(row: dict[str, Any], field: str) -> list[str]:
    """Values of a crm_multifield (PHONE, EMAIL): [{"VALUE": ..., "VALUE_TYPE": ...}, ...]."""
    values = row.get(field)
    return [str(v["VALUE"]) for v in values if isinstance(v, dict) and v.get("VALUE")] \
        if isinstance(values, list) else []


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
