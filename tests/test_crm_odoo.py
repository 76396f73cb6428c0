"""The Odoo adapter against a fake Odoo JSON-RPC server on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from crm_adapters.contract import FinishedCall, NewContact
from crm_adapters.errors import (
    CrmAuthError,
    CrmBadResponse,
    CrmRateLimited,
    CrmTimeout,
    CrmUnavailable,
)
from crm_adapters.http_session import call_note
from crm_adapters.odoo import OdooAdapter
from crm_adapters.settings import AdapterConfig, CrmSettings
from tests.fake_odoo import DB, LOGIN, ODOO_17_FIELDS, PASSWORD, UID, FakeOdoo, start

CALL = FinishedCall(call_id="1717236000.42", direction="inbound", number="+74951234567", operator="101",
                    started_at=datetime(2024, 6, 1, 10, 0, tzinfo=UTC), duration_seconds=95,
                    outcome="answered", note="Хочет скидку 🎁")


def seeded() -> FakeOdoo:
    odoo = FakeOdoo(categories={1: "VIP", 2: "Опт"})
    odoo.add_partner(10, name="ООО «Ромашка»", is_company=True, phone="+7 495 111-11-11")
    odoo.add_partner(11, name="Иван Петров", parent_id=[10, "ООО «Ромашка»"], phone="+7 495 123-45-67",
                     mobile="8 916 123 45 67", email="ivan@example.ru", category_id=[1, 2],
                     write_date="2024-03-01 09:00:00")
    return odoo


@pytest.fixture
async def odoo() -> FakeOdoo:
    return seeded()


@asynccontextmanager
async def running(odoo: FakeOdoo, **options: object) -> AsyncIterator[OdooAdapter]:
    server = await start(odoo)
    adapter = OdooAdapter(url=str(server.make_url("")), database=DB, login=LOGIN, password=PASSWORD,
                          timeout=0.5, **options)
    try:
        await adapter.open()
        yield adapter
    finally:
        await adapter.close()
        await server.close()


@pytest.fixture
async def adapter(odoo: FakeOdoo) -> AsyncIterator[OdooAdapter]:
    async with running(odoo) as adapter:
        yield adapter


async def test_found_by_sanitized_number(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    contact = await adapter.find_contact("+74951234567")
    assert contact is not None
    assert (contact.id, contact.display_name, contact.company) == ("11", "Иван Петров", "ООО «Ромашка»")
    assert contact.phones == ["+74951234567", "+79161234567"] and contact.email == "ivan@example.ru"
    assert contact.tags == ["VIP", "Опт"] and contact.vip
    assert contact.url == f"{adapter.base}/web#id=11&model=res.partner&view_type=form"
    assert contact.updated_at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC) and contact.source == "odoo"
    # The documented JSON-RPC envelope: authenticate first, then execute_kw.
    first = odoo.calls[0]
    assert first == {"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
        "service": "common", "method": "authenticate", "args": [DB, LOGIN, PASSWORD, {}]}}
    [search] = odoo.executed("res.partner", "search_read")
    assert search[:3] == [DB, UID, PASSWORD]
    domain = search[5][0]
    assert domain[:3] == ["|", "|", "|"]
    assert domain[3:5] == [["phone_sanitized", "=", "+74951234567"],
                           ["phone_mobile_search", "=", "+74951234567"]]
    assert domain[5][:2] == ["phone", "in"] and {"84951234567", "+7 495 123-45-67"} <= set(domain[5][2])
    assert domain[6][:2] == ["mobile", "in"]
    assert search[6] == {"fields": ["name", "parent_id", "company_name", "phone", "mobile", "email",
                                    "category_id", "write_date"],
                         "order": "write_date desc, id desc", "limit": 5}


async def test_found_by_mobile_without_phone_validation(odoo: FakeOdoo) -> None:
    odoo.partner_fields = ODOO_17_FIELDS - {"phone_sanitized", "phone_mobile_search"}
    async with running(odoo) as adapter:
        # Without phone_validation only exact stored forms match: "8 916 123 45 67" is none of them.
        assert await adapter.find_contact("+79161234567") is None
        odoo.partners[11]["mobile"] = "8 (916) 123-45-67"  # Odoo's national format
        contact = await adapter.find_contact("+79161234567")
        assert contact is not None and contact.id == "11"
        [_, search] = odoo.executed("res.partner", "search_read")
        assert [t[0] for t in search[5][0] if isinstance(t, list)] == ["phone", "mobile"]


async def test_newer_odoo_without_mobile_field(odoo: FakeOdoo) -> None:
    odoo.partner_fields = ODOO_17_FIELDS - {"mobile"}
    async with running(odoo) as adapter:
        contact = await adapter.find_contact("+74951234567")
        assert contact is not None and contact.phones == ["+74951234567"]
        [search] = odoo.executed("res.partner", "search_read")
        assert "mobile" not in search[6]["fields"]


async def test_not_found(adapter: OdooAdapter) -> None:
    assert await adapter.find_contact("+74950000000") is None


async def test_several_matches_most_recently_written(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    odoo.add_partner(12, name="Пётр 🛠️ Сидоров", phone="+74951234567", write_date="2024-05-05 05:05:05")
    odoo.add_partner(13, name="Old", phone="84951234567", write_date="2020-01-01 00:00:00")
    contact = await adapter.find_contact("+74951234567")
    assert contact is not None and contact.id == "12" and contact.display_name == "Пётр 🛠️ Сидоров"


async def test_slow_odoo_times_out(adapter: OdooAdapter, odoo: FakeOdoo,
                                   caplog: pytest.LogCaptureFixture) -> None:
    odoo.faults.delay = 2.0
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "callbridge.crm"), pytest.raises(CrmTimeout):
        await adapter.find_contact("+74951234567")
    assert time.monotonic() - started < 1.5
    assert "crm odoo: login failed: [odoo] timeout: no answer within 0.5s" in caplog.text


async def test_down_behind_proxy(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    odoo.faults.status = 502
    with pytest.raises(CrmUnavailable) as caught:
        await adapter.find_contact("+74951234567")
    assert caught.value.status == 502


async def test_server_exception_is_unavailable(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    odoo.faults.server_error = True
    with pytest.raises(CrmUnavailable, match="psycopg2.OperationalError: could not connect"):
        await adapter.find_contact("+74951234567")


async def test_login_rejected(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    odoo.faults.auth_fail = True
    with pytest.raises(CrmAuthError, match="login 'bridge@acme.example' rejected"):
        await adapter.find_contact("+74951234567")


async def test_key_revoked_after_login_then_restored(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    assert await adapter.find_contact("+74951234567") is not None
    odoo.faults.auth_fail = True
    with pytest.raises(CrmAuthError, match="Access Denied"):
        await adapter.find_contact("+74951234567")
    odoo.faults.auth_fail = False
    assert await adapter.find_contact("+74951234567") is not None
    logins = [c for c in odoo.calls if c["params"]["method"] == "authenticate"]
    assert len(logins) == 2  # the refused key made the adapter log in afresh


async def test_rate_limited(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    odoo.faults.rate_limit = True
    with pytest.raises(CrmRateLimited) as caught:
        await adapter.find_contact("+74951234567")
    assert caught.value.retry_after == 3.0


async def test_malformed_json(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    odoo.faults.malformed = True
    with pytest.raises(CrmBadResponse, match="malformed JSON"):
        await adapter.find_contact("+74951234567")


async def test_history_newest_first(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    def message(mid: int, res_id: int, kind: str, date: str, body: str, **more: object) -> dict[str, object]:
        return {"id": mid, "model": "res.partner", "res_id": res_id, "message_type": kind,
                "date": date, "body": body, **more}
    odoo.messages += [
        message(1, 11, "comment", "2024-01-01 08:00:00", "<p>Звонил &amp; просил <b>счёт</b></p>",
                author_id=[3, "Мария"]),
        message(2, 11, "email", "2024-02-01 08:00:00", "", subject="Счёт №5 📄"),
        message(3, 11, "notification", "2024-03-01 08:00:00", "<p>Stage changed</p>"),
        message(4, 99, "comment", "2024-04-01 08:00:00", "<p>someone else</p>"),
        message(5, 11, "comment", "2024-05-01 08:00:00",
                "<p>Incoming call +74951234567, answered [call 1700000000.1]</p>"),
    ]
    contact = await adapter.find_contact("+74951234567")
    assert contact is not None
    items = await adapter.history(contact, limit=10)
    assert [i.id for i in items] == ["5", "2", "1"]
    assert (items[0].kind, items[0].call_id) == ("call", "1700000000.1")
    assert (items[1].kind, items[1].summary) == ("email", "Счёт №5 📄")
    assert (items[2].kind, items[2].summary, items[2].operator) == ("note", "Звонил & просил счёт", "Мария")
    assert items[2].at == datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
    [args] = odoo.executed("mail.message", "search_read")
    assert args[5] == [[["model", "=", "res.partner"], ["res_id", "=", 11],
                        ["message_type", "in", ["comment", "email", "email_outgoing"]]]]
    assert args[6]["order"] == "date desc, id desc" and args[6]["limit"] == 10


async def test_create_contact(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    new = NewContact(display_name="Анна Смирнова 🌸", phones=["+74957654321", "+79260000000"],
                     company="ИП Смирнова", email="anna@example.ru", tags=["VIP", "Новый"],
                     note="Первый звонок")
    contact = await adapter.create_contact(new)
    assert contact.display_name == "Анна Смирнова 🌸" and contact.tags == ["VIP", "Новый"]
    assert contact.phones == ["+74957654321", "+79260000000"] and contact.company == "ИП Смирнова"
    [create] = odoo.executed("res.partner", "create")
    new_tag = max(odoo.categories)
    assert create[5] == [{"name": "Анна Смирнова 🌸", "phone": "+74957654321", "mobile": "+79260000000",
                          "email": "anna@example.ru", "company_name": "ИП Смирнова",
                          "category_id": [[6, 0, [1, new_tag]]]}]
    assert odoo.categories[new_tag] == "Новый"
    [post] = odoo.executed("res.partner", "message_post")
    assert post[5:] == [[[int(contact.id)]], {"body": "Первый звонок", "message_type": "comment",
                                               "subtype_xmlid": "mail.mt_note"}]
    assert await adapter.find_contact("+79260000000") == contact


async def test_log_call_posts_a_note_once(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    call = CALL.model_copy(update={"contact_id": "11"})
    message_id = await adapter.log_call(call)
    text = ("Incoming call +74951234567, answered, talk 1:35, operator 101, 2024-06-01 10:00 UTC. "
            "Хочет скидку 🎁 [call 1717236000.42]")
    assert call_note(call) == text
    request = odoo.calls[-1]
    assert request["jsonrpc"] == "2.0" and request["method"] == "call"
    assert request["params"]["service"] == "object" and request["params"]["method"] == "execute_kw"
    assert request["params"]["args"] == [
        DB, UID, PASSWORD, "res.partner", "message_post", [[11]],
        {"body": text, "message_type": "comment", "subtype_xmlid": "mail.mt_note"}]
    assert message_id == str(odoo.messages[-1]["id"])
    assert await adapter.log_call(call) == message_id  # the marker is found: no second note
    assert len(odoo.executed("res.partner", "message_post")) == 1
    [item] = await adapter.history((await adapter.find_contact("+74951234567")), limit=5)  # type: ignore[arg-type]
    assert item.kind == "call" and item.call_id == "1717236000.42"


async def test_log_call_finds_partner_by_number_or_skips(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    assert await adapter.log_call(CALL) is not None
    assert odoo.messages[-1]["res_id"] == 11
    unknown = CALL.model_copy(update={"number": "+74950000000", "call_id": "x.1"})
    assert await adapter.log_call(unknown) is None


@pytest.mark.parametrize("result", [{"not": "a list"}, [{"id": 11, "name": False}],
                                    [{"id": "x", "name": "N"}], [["a row", "not an object"]]])
async def test_unexpected_shapes_are_bad_responses(adapter: OdooAdapter, odoo: FakeOdoo,
                                                   result: object) -> None:
    odoo.overrides["res.partner", "search_read"] = result
    with pytest.raises(CrmBadResponse):
        await adapter.find_contact("+74951234567")


async def test_reply_to_another_request_is_bad(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    odoo.faults.wrong_id = True
    with pytest.raises(CrmBadResponse, match="not a JSON-RPC reply to this request"):
        await adapter.find_contact("+74951234567")


async def test_database_with_only_a_phone_field(adapter: OdooAdapter, odoo: FakeOdoo) -> None:
    odoo.overrides["res.partner", "fields_get"] = {"name": {}, "phone": {}}
    contact = await adapter.find_contact("+74951234567")
    assert contact is not None and contact.id == "11"
    [search] = odoo.executed("res.partner", "search_read")
    assert [term[:2] for term in search[5][0]] == [["phone", "in"]]
    assert search[6]["fields"] == ["name", "phone"]


def test_from_config_uses_crm_settings() -> None:
    settings = CrmSettings(default_region="UA", request_timeout_seconds=2.0)
    config = AdapterConfig(type="crm_adapters.odoo:OdooAdapter", name="sales",
                           options={"url": "https://odoo.example", "database": DB, "login": LOGIN,
                                    "password": PASSWORD})
    adapter = OdooAdapter.from_config(config, settings, None)
    assert (adapter.name, adapter.config.default_region, adapter.http.timeout) == ("sales", "UA", 2.0)
    adapter.name = "renamed"  # what the lookup service does after building
    assert adapter.http.adapter == "renamed"
    assert PASSWORD not in repr(adapter.config)
