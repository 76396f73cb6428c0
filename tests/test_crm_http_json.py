"""The generic HTTP/JSON adapter against a fake in-house CRM on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from crm_adapters.contract import FinishedCall, NewContact
from crm_adapters.errors import (
    CrmAuthError,
    CrmBadResponse,
    CrmNotSupported,
    CrmRateLimited,
    CrmTimeout,
    CrmUnavailable,
)
from crm_adapters.http_json import HttpJsonAdapter, HttpJsonConfig, parse_path, resolve
from crm_adapters.http_session import new_session
from crm_adapters.settings import AdapterConfig, CrmSettings
from tests.fake_http_crm import TOKEN, FakeHttpCrm, start

IVAN = {
    "guid": "g-1", "surname": "Петров", "name": "Иван", "org": {"title": "ООО «Ромашка»"},
    "phones": [{"number": "+74951234567"}, {"number": "8 (916) 123-45-67"}],
    "email": "ivan@example.ru", "tags": ["VIP"], "modified": "2024-03-01T12:00:00+03:00",
}


def config(base: str, **overrides: object) -> HttpJsonConfig:
    values: dict[str, object] = {
        "name": "inhouse",
        "find_url": base + "/api/contacts?phone={e164}",
        "history_url": base + "/api/contacts/{id}/events?limit={limit}",
        "create_url": base + "/api/contacts",
        "log_call_url": base + "/api/calls",
        "auth_value": f"Bearer {TOKEN}",
        "timeout": 0.5,
        "timezone": "Europe/Moscow",
        "contacts_path": "data.items",
        "contact": {"id": "guid", "display_name": ["name", "surname"], "company": "org.title",
                    "phones": "phones[*].number", "url": None, "updated_at": "modified"},
        "contact_url": "https://crm.local/#/contact/{id}",
        "history_path": "events",
        "interaction": {"id": "uid", "kind": "type", "at": "when", "summary": "text",
                        "direction": "dir", "operator": "agent", "duration_seconds": "secs"},
        "created_path": "data",
        "create_fields": {"fio": "display_name", "tel": "phones", "organisation": "company",
                          "mail": "email", "labels": "tags"},
        "log_call_fields": {"id": "call_id", "client.phone": "number", "client.ref": "contact_id",
                            "dir": "direction", "talk": "duration_seconds", "result": "outcome",
                            "text": "note", "start": "started_at"},
        "log_call_id_path": "call.num",
    }
    values.update(overrides)
    return HttpJsonConfig.model_validate(values)


@pytest.fixture
async def crm() -> FakeHttpCrm:
    return FakeHttpCrm(contacts=[dict(IVAN)])


@pytest.fixture
async def adapter(crm: FakeHttpCrm) -> AsyncIterator[HttpJsonAdapter]:
    server = await start(crm)
    adapter = HttpJsonAdapter(config(str(server.make_url("")).rstrip("/")))
    await adapter.open()
    yield adapter
    await adapter.close()
    await server.close()


def test_paths() -> None:
    data = {"a": [{"b": {"c": 1}}, {"b": {"c": 2}}], "x": None}
    assert parse_path("a[0].b.c") == ["a", 0, "b", "c"]
    assert resolve(data, "a[1].b.c") == 2
    assert resolve(data, "a[*].b.c") == [1, 2]
    assert resolve(data, "a[5].b") is None and resolve(data, "x.y") is None
    assert resolve(data, "") is data
    with pytest.raises(ValidationError):
        config("http://x", contact={"id": "guid[", "display_name": "n"})


async def test_found_with_cyrillic_and_mapping(adapter: HttpJsonAdapter, crm: FakeHttpCrm) -> None:
    contact = await adapter.find_contact("+74951234567")
    assert contact is not None
    assert contact.id == "g-1" and contact.display_name == "Иван Петров"
    assert contact.company == "ООО «Ромашка»" and contact.vip and contact.email == "ivan@example.ru"
    # The national-form number the CRM stores comes back as E.164.
    assert contact.phones == ["+74951234567", "+79161234567"]
    assert contact.url == "https://crm.local/#/contact/g-1" and contact.source == "inhouse"
    assert contact.updated_at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    method, path, headers, _ = crm.requests[-1]
    assert (method, path) == ("GET", "/api/contacts?phone=%2B74951234567")
    assert headers["Authorization"] == f"Bearer {TOKEN}"


async def test_not_found(adapter: HttpJsonAdapter) -> None:
    assert await adapter.find_contact("+74950000000") is None


async def test_several_matches_latest_updated_wins(adapter: HttpJsonAdapter, crm: FakeHttpCrm) -> None:
    older = {**IVAN, "guid": "g-2", "name": "Старый", "modified": "2023-01-01T00:00:00"}
    newer = {**IVAN, "guid": "g-3", "name": "Новый 🚀", "modified": "2024-06-01T08:00:00Z"}
    crm.contacts[:] = [older, dict(IVAN), newer]
    contact = await adapter.find_contact("+74951234567")
    assert contact is not None and contact.id == "g-3" and contact.display_name == "Новый 🚀 Петров"


async def test_several_matches_without_dates_first_wins(crm: FakeHttpCrm) -> None:
    crm.contacts[:] = [{**IVAN, "guid": "g-a"}, {**IVAN, "guid": "g-b"}]
    server = await start(crm)
    base = str(server.make_url("")).rstrip("/")
    mapping = {"id": "guid", "display_name": "surname", "updated_at": None}
    adapter = HttpJsonAdapter(config(base, contact=mapping))
    try:
        contact = await adapter.find_contact("+74951234567")
        assert contact is not None and contact.id == "g-a"
    finally:
        await adapter.close()
        await server.close()


async def test_slow_crm_times_out_as_unavailable(adapter: HttpJsonAdapter, crm: FakeHttpCrm,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    crm.faults.delay = 2.0
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "callbridge.crm"), pytest.raises(CrmTimeout) as caught:
        await adapter.find_contact("+74951234567")
    assert time.monotonic() - started < 1.5
    assert isinstance(caught.value, CrmUnavailable)
    assert "crm inhouse: find contact failed: [inhouse] timeout: no answer within 0.5s" in caplog.text


@pytest.mark.parametrize("html", [False, True])
async def test_down_5xx(adapter: HttpJsonAdapter, crm: FakeHttpCrm, html: bool) -> None:
    crm.faults.status, crm.faults.html_error = 502, html
    with pytest.raises(CrmUnavailable) as caught:
        await adapter.find_contact("+74951234567")
    assert caught.value.status == 502


async def test_connection_refused_is_unavailable() -> None:
    adapter = HttpJsonAdapter(config("http://127.0.0.1:9"))
    try:
        with pytest.raises(CrmUnavailable):
            await adapter.find_contact("+74951234567")
    finally:
        await adapter.close()


async def test_auth_failure(adapter: HttpJsonAdapter, crm: FakeHttpCrm) -> None:
    crm.faults.auth_fail = True
    with pytest.raises(CrmAuthError) as caught:
        await adapter.find_contact("+74951234567")
    assert caught.value.status == 401 and "token rejected" in str(caught.value)


async def test_rate_limited(adapter: HttpJsonAdapter, crm: FakeHttpCrm) -> None:
    crm.faults.rate_limit = True
    with pytest.raises(CrmRateLimited) as caught:
        await adapter.find_contact("+74951234567")
    assert caught.value.retry_after == 7.0


async def test_malformed_json(adapter: HttpJsonAdapter, crm: FakeHttpCrm) -> None:
    crm.faults.malformed = True
    with pytest.raises(CrmBadResponse):
        await adapter.find_contact("+74951234567")


async def test_record_without_id_is_bad_response(adapter: HttpJsonAdapter, crm: FakeHttpCrm) -> None:
    crm.contacts[:] = [{k: v for k, v in IVAN.items() if k != "guid"} | {"guid": None}]
    with pytest.raises(CrmBadResponse, match="without id"):
        await adapter.find_contact("+74951234567")


async def test_history_newest_first(adapter: HttpJsonAdapter, crm: FakeHttpCrm) -> None:
    crm.events["g-1"] = [
        {"uid": 1, "type": "call", "when": "2024-01-01T10:00:00", "dir": "incoming", "secs": 30,
         "agent": "101", "text": "Спросил про доставку 📦"},
        {"uid": 2, "type": "NOTE", "when": "2024-02-01T10:00:00Z", "text": "Перезвонить"},
        {"uid": 3, "type": "invoice", "when": 1717236000, "text": "Счёт №5"},
    ]
    contact = await adapter.find_contact("+74951234567")
    assert contact is not None
    items = await adapter.history(contact, limit=2)
    assert [i.id for i in items] == ["3", "2"]
    assert items[0].kind == "other" and items[1].kind == "note"
    every = await adapter.history(contact)
    call = every[-1]
    assert call.kind == "call" and call.direction == "inbound" and call.duration_seconds == 30.0
    assert call.at == datetime(2024, 1, 1, 7, 0, tzinfo=UTC) and call.summary == "Спросил про доставку 📦"
    assert crm.requests[-1][1] == "/api/contacts/g-1/events?limit=20"


async def test_create_contact(adapter: HttpJsonAdapter, crm: FakeHttpCrm) -> None:
    new = NewContact(display_name="Анна Смирнова 🌸", phones=["+74957654321"], company="ИП Смирнова",
                     email="anna@example.ru", tags=["new"])
    contact = await adapter.create_contact(new)
    assert contact.id == "g-1001" and contact.display_name == "Анна Смирнова 🌸"
    assert contact.phones == ["+74957654321"] and contact.company == "ИП Смирнова"
    assert crm.requests[-1][3] == {"fio": "Анна Смирнова 🌸", "tel": ["+74957654321"],
                                   "organisation": "ИП Смирнова", "mail": "anna@example.ru",
                                   "labels": ["new"]}
    assert (await adapter.find_contact("+74957654321")) == contact


async def test_log_call_exact_request_and_idempotency(adapter: HttpJsonAdapter, crm: FakeHttpCrm) -> None:
    call = FinishedCall(call_id="1717236000.42", direction="inbound", number="+74951234567",
                        operator="101", started_at=datetime(2024, 6, 1, 10, 0, tzinfo=UTC),
                        duration_seconds=95.5, outcome="answered", note="Заказ 🚚", contact_id="g-1")
    assert await adapter.log_call(call) == "1"
    method, path, headers, body = crm.requests[-1]
    assert (method, path, headers["Idempotency-Key"]) == ("POST", "/api/calls", "1717236000.42")
    assert body == {"id": "1717236000.42", "client": {"phone": "+74951234567", "ref": "g-1"},
                    "dir": "inbound", "talk": 95.5, "result": "answered", "text": "Заказ 🚚",
                    "start": "2024-06-01T10:00:00Z"}
    assert await adapter.log_call(call) is None  # 409: already logged, not a second entry
    assert len(crm.logged_calls) == 1


async def test_write_operations_not_configured(crm: FakeHttpCrm) -> None:
    adapter = HttpJsonAdapter(config("http://127.0.0.1:9", create_url=None, log_call_url=None))
    assert not adapter.can_create_contacts and not adapter.can_log_calls
    with pytest.raises(CrmNotSupported):
        await adapter.create_contact(NewContact(display_name="X", phones=["+74951234567"]))
    await adapter.close()


async def test_unexpected_shape_is_bad_response(adapter: HttpJsonAdapter, crm: FakeHttpCrm) -> None:
    crm.contacts[:] = [{**IVAN, "modified": "вчера"}]
    with pytest.raises(CrmBadResponse, match="not an ISO 8601 time"):
        await adapter.find_contact("+74951234567")
    crm.events["g-1"] = {"not": "a list"}  # type: ignore[assignment]
    crm.contacts[:] = [dict(IVAN)]
    contact = await adapter.find_contact("+74951234567")
    assert contact is not None
    with pytest.raises(CrmBadResponse, match="is not a list"):
        await adapter.history(contact)


def test_from_config_uses_crm_settings() -> None:
    settings = CrmSettings(default_region="DE", request_timeout_seconds=10)
    config = AdapterConfig(type="crm_adapters.http_json:HttpJsonAdapter", name="1c",
                           options={"find_url": "https://crm.local/api?phone={e164}"})
    adapter = HttpJsonAdapter.from_config(config, settings, None)
    assert (adapter.name, adapter.config.default_region, adapter.http.timeout) == ("1c", "DE", 3.0)
    assert not adapter.can_create_contacts and not adapter.can_log_calls


async def test_adapters_share_one_session(crm: FakeHttpCrm) -> None:
    server = await start(crm)
    session = new_session()
    try:
        base = str(server.make_url("")).rstrip("/")
        one = HttpJsonAdapter(config(base, name="one"), session=session)
        two = HttpJsonAdapter(config(base, name="two"), session=session)
        assert await one.find_contact("+74951234567") == (await two.find_contact("+74951234567")).model_copy(
            update={"source": "one"})  # type: ignore[union-attr]
        await one.close()
        await two.close()
        assert not session.closed  # the owner of a shared session closes it
    finally:
        await session.close()
        await server.close()
