"""The Bitrix24 adapter against a fake portal (incoming-webhook REST) on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from crm_adapters.bitrix24 import Bitrix24Adapter, Bitrix24Config
from crm_adapters.contract import FinishedCall, NewContact
from crm_adapters.errors import (
    CrmAuthError,
    CrmBadResponse,
    CrmRateLimited,
    CrmTimeout,
    CrmUnavailable,
)
from crm_adapters.phone_numbers import national_variants
from crm_adapters.settings import AdapterConfig, CrmSettings
from tests.fake_bitrix24 import CODE, USER_ID, FakeBitrix24, multifield, start

NUMBER = "+74951234567"
CALL = FinishedCall(call_id="1717236000.42", direction="inbound", number=NUMBER, operator="101",
                    started_at=datetime(2024, 6, 1, 10, 0, tzinfo=UTC), duration_seconds=95.4,
                    outcome="answered", note="Просил перезвонить 📞")


def seeded() -> FakeBitrix24:
    portal = FakeBitrix24()
    portal.companies[12] = {"ID": "12", "TITLE": "ООО «Ромашка»", "PHONE": multifield("+7 495 111-11-11")}
    portal.contacts[275] = {"ID": "275", "NAME": "Иван", "SECOND_NAME": "Иванович", "LAST_NAME": "Петров",
                            "COMPANY_ID": "12", "PHONE": multifield("8 (495) 123-45-67", "+7 916 123 45 67"),
                            "EMAIL": [{"ID": "9", "VALUE_TYPE": "WORK", "VALUE": "ivan@example.ru",
                                       "TYPE_ID": "EMAIL"}],
                            "DATE_MODIFY": "2024-03-01T12:00:00+03:00"}
    return portal


@asynccontextmanager
async def running(portal: FakeBitrix24, **options: object) -> AsyncIterator[Bitrix24Adapter]:
    server = await start(portal)
    webhook = str(server.make_url(f"/rest/{USER_ID}/{options.pop('code', CODE)}/"))
    adapter = Bitrix24Adapter(webhook_url=webhook, timeout=0.5, **options)
    try:
        await adapter.open()
        yield adapter
    finally:
        await adapter.close()
        await server.close()


@pytest.fixture
async def portal() -> FakeBitrix24:
    return seeded()


@pytest.fixture
async def adapter(portal: FakeBitrix24) -> AsyncIterator[Bitrix24Adapter]:
    async with running(portal) as adapter:
        yield adapter


async def test_found_contact(adapter: Bitrix24Adapter, portal: FakeBitrix24) -> None:
    contact = await adapter.find_contact(NUMBER)
    assert contact is not None
    assert (contact.id, contact.display_name) == ("contact:275", "Иван Петров")
    assert contact.company == "ООО «Ромашка»"
    assert contact.phones == [NUMBER, "+79161234567"] and contact.email == "ivan@example.ru"
    assert contact.url == f"{adapter.portal}/crm/contact/details/275/" and contact.source == "bitrix24"
    assert contact.updated_at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    assert portal.requests == [
        ("crm.duplicate.findbycomm", {"type": "PHONE", "values": national_variants(NUMBER),
                                      "entity_type": "CONTACT"}),
        ("crm.contact.get", {"id": 275}),
        ("crm.company.get", {"id": 12}),
    ]


async def test_found_company_when_no_contact(adapter: Bitrix24Adapter, portal: FakeBitrix24) -> None:
    contact = await adapter.find_contact("+74951111111")
    assert contact is not None and contact.id == "company:12" and contact.display_name == "ООО «Ромашка»"
    assert contact.url == f"{adapter.portal}/crm/company/details/12/"
    assert [p["entity_type"] for p in portal.params_of("crm.duplicate.findbycomm")] == ["CONTACT", "COMPANY"]


async def test_many_lead_duplicates_do_not_hide_the_contact(adapter: Bitrix24Adapter,
                                                             portal: FakeBitrix24) -> None:
    for i in range(1, 25):
        portal.leads[i] = {"ID": str(i), "PHONE": multifield(NUMBER)}
    contact = await adapter.find_contact(NUMBER)
    assert contact is not None and contact.id == "contact:275"


async def test_not_found(adapter: Bitrix24Adapter, portal: FakeBitrix24) -> None:
    assert await adapter.find_contact("+74950000000") is None
    assert len(portal.params_of("crm.duplicate.findbycomm")) == 2


async def test_several_matches_most_recent_id(adapter: Bitrix24Adapter, portal: FakeBitrix24) -> None:
    portal.contacts[300] = {"ID": "300", "NAME": "Зоя 🌟", "LAST_NAME": "Новикова", "COMPANY_ID": "0",
                            "PHONE": multifield("74951234567")}
    portal.contacts[100] = {"ID": "100", "NAME": "Old", "PHONE": multifield(NUMBER)}
    contact = await adapter.find_contact(NUMBER)
    assert contact is not None and contact.id == "contact:300" and contact.display_name == "Зоя 🌟 Новикова"
    assert contact.company is None


async def test_slow_portal_times_out(adapter: Bitrix24Adapter, portal: FakeBitrix24,
                                     caplog: pytest.LogCaptureFixture) -> None:
    portal.faults.delay = 2.0
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "callbridge.crm"), pytest.raises(CrmTimeout):
        await adapter.find_contact(NUMBER)
    assert time.monotonic() - started < 1.5
    assert "crm bitrix24: crm.duplicate.findbycomm failed: [bitrix24] timeout" in caplog.text
    assert CODE not in caplog.text  # the webhook secret never reaches the log


@pytest.mark.parametrize("html", [False, True])
async def test_down(adapter: Bitrix24Adapter, portal: FakeBitrix24, html: bool) -> None:
    portal.faults.status, portal.faults.html = (502, True) if html else (500, False)
    with pytest.raises(CrmUnavailable) as caught:
        await adapter.find_contact(NUMBER)
    assert caught.value.status == (502 if html else 500)


async def test_wrong_webhook_code(portal: FakeBitrix24) -> None:
    async with running(portal, code="wrong") as adapter:
        with pytest.raises(CrmAuthError, match="INVALID_CREDENTIALS: Invalid request credentials"):
            await adapter.find_contact(NUMBER)


async def test_expired_token(adapter: Bitrix24Adapter, portal: FakeBitrix24) -> None:
    portal.faults.expired_token = True
    with pytest.raises(CrmAuthError, match="expired_token") as caught:
        await adapter.find_contact(NUMBER)
    assert caught.value.status == 401


async def test_rate_limited(adapter: Bitrix24Adapter, portal: FakeBitrix24) -> None:
    portal.faults.rate_limit = True
    with pytest.raises(CrmRateLimited, match="QUERY_LIMIT_EXCEEDED") as caught:
        await adapter.find_contact(NUMBER)
    assert caught.value.status == 503


async def test_malformed_json(adapter: Bitrix24Adapter, portal: FakeBitrix24) -> None:
    portal.faults.malformed = True
    with pytest.raises(CrmBadResponse):
        await adapter.find_contact(NUMBER)


async def test_history_paginates_newest_first(adapter: Bitrix24Adapter, portal: FakeBitrix24) -> None:
    base = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
    for i in range(1, 121):
        portal.activities.append({
            "ID": str(i), "OWNER_TYPE_ID": "3", "OWNER_ID": "275", "TYPE_ID": "2" if i % 2 else "4",
            "SUBJECT": f"Звонок №{i} ☎️", "DIRECTION": "1" if i % 4 == 1 else "2", "RESPONSIBLE_ID": "5",
            "START_TIME": (base + timedelta(hours=i)).isoformat(), "CREATED": base.isoformat()})
    portal.activities.append({"ID": "999", "OWNER_TYPE_ID": "3", "OWNER_ID": "1", "TYPE_ID": "2",
                              "START_TIME": "2030-01-01T00:00:00+00:00", "SUBJECT": "someone else"})
    contact = await adapter.find_contact(NUMBER)
    assert contact is not None
    items = await adapter.history(contact, limit=60)
    assert [i.id for i in items] == [str(n) for n in range(120, 60, -1)]
    assert [p["start"] for p in portal.params_of("crm.activity.list")] == [0, 50]
    first = portal.params_of("crm.activity.list")[0]
    assert first["filter"] == {"OWNER_TYPE_ID": 3, "OWNER_ID": 275}
    assert first["order"] == {"START_TIME": "DESC", "ID": "DESC"}
    assert (items[0].kind, items[0].direction) == ("email", None)  # 120
    # 119 and 117: calls, outgoing and incoming
    assert (items[1].kind, items[1].direction, items[3].direction) == ("call", "outbound", "inbound")
    assert items[0].at == base + timedelta(hours=120) and items[0].summary == "Звонок №120 ☎️"
    everything = await adapter.history(contact, limit=500)
    assert len(everything) == 120 and everything[-1].id == "1"
    assert [p["start"] for p in portal.params_of("crm.activity.list")][2:] == [0, 50, 100]


async def test_create_contact(adapter: Bitrix24Adapter, portal: FakeBitrix24) -> None:
    new = NewContact(display_name="Анна Смирнова 🌸", phones=["+74957654321"], company="ООО «Ромашка»",
                     email="anna@example.ru", note="Первый звонок")
    contact = await adapter.create_contact(new)
    [add] = portal.params_of("crm.contact.add")
    assert add == {"fields": {"NAME": "Анна Смирнова 🌸", "OPENED": "Y",
                              "PHONE": [{"VALUE": "+74957654321", "VALUE_TYPE": "WORK"}],
                              "EMAIL": [{"VALUE": "anna@example.ru", "VALUE_TYPE": "WORK"}],
                              "COMMENTS": "Первый звонок", "COMPANY_ID": 12},
                   "params": {"REGISTER_SONET_EVENT": "N"}}
    assert portal.params_of("crm.company.add") == []  # the existing company was reused
    found = await adapter.find_contact("+74957654321")
    assert found is not None and found.id == contact.id and found.display_name == "Анна Смирнова 🌸"
    assert found.company == "ООО «Ромашка»"


async def test_log_call_via_telephony(adapter: Bitrix24Adapter, portal: FakeBitrix24) -> None:
    call = CALL.model_copy(update={"contact_id": "contact:275"})
    created = await adapter.log_call(call)
    [register] = portal.params_of("telephony.externalcall.register")
    assert register == {"USER_PHONE_INNER": "101", "PHONE_NUMBER": NUMBER, "TYPE": 2,
                        "CALL_START_DATE": "2024-06-01T10:00:00+00:00", "CRM_CREATE": 0, "SHOW": 0,
                        "EXTERNAL_CALL_ID": "1717236000.42", "CRM_ENTITY_TYPE": "CONTACT",
                        "CRM_ENTITY_ID": 275}
    [finish] = portal.params_of("telephony.externalcall.finish")
    assert finish == {"CALL_ID": finish["CALL_ID"], "USER_PHONE_INNER": "101", "DURATION": 95,
                      "STATUS_CODE": "200", "ADD_TO_CHAT": 0}
    assert finish["CALL_ID"].startswith("externalCall.")
    assert created == portal.activities[-1]["ID"]
    assert portal.comments == [{"ENTITY_ID": 275, "ENTITY_TYPE": "contact",
                                "COMMENT": "Просил перезвонить 📞"}]
    before = len(portal.requests)
    assert await adapter.log_call(call) == created  # once per call id
    assert len(portal.requests) == before
    [item] = await adapter.history((await adapter.find_contact(NUMBER)), limit=5)  # type: ignore[arg-type]
    assert item.kind == "call" and item.direction == "inbound"


async def test_log_missed_call_with_mapped_operator(portal: FakeBitrix24) -> None:
    async with running(portal, operator_user_ids={"101": 17}, line_number="74950000000") as adapter:
        call = CALL.model_copy(update={"outcome": "unanswered", "duration_seconds": 0, "note": None})
        await adapter.log_call(call)
        [register] = portal.params_of("telephony.externalcall.register")
        assert register["USER_ID"] == 17 and "USER_PHONE_INNER" not in register
        assert register["LINE_NUMBER"] == "74950000000" and "CRM_ENTITY_TYPE" not in register
        [finish] = portal.params_of("telephony.externalcall.finish")
        assert (finish["STATUS_CODE"], finish["DURATION"]) == ("304", 0)
        assert finish["FAILED_REASON"] == "unanswered"
        assert portal.comments == []


async def test_telephony_refused_for_webhook(adapter: Bitrix24Adapter, portal: FakeBitrix24) -> None:
    portal.faults.wrong_auth_type = True
    with pytest.raises(CrmAuthError, match="log_call_via = 'timeline_comment'"):
        await adapter.log_call(CALL)


async def test_log_call_via_timeline_comment(portal: FakeBitrix24) -> None:
    async with running(portal, log_call_via="timeline_comment") as adapter:
        created = await adapter.log_call(CALL)
        assert created is not None
        assert portal.params_of("crm.timeline.comment.add") == [{"fields": {
            "ENTITY_ID": 275, "ENTITY_TYPE": "contact",
            "COMMENT": "Incoming call +74951234567, answered, talk 1:35, operator 101, 2024-06-01 10:00 UTC. "
                       "Просил перезвонить 📞 [call 1717236000.42]"}}]
        unknown = CALL.model_copy(update={"number": "+74950000000", "call_id": "x.2"})
        assert await adapter.log_call(unknown) is None


def test_webhook_url_is_validated_and_secret() -> None:
    with pytest.raises(ValidationError, match="rest/<user_id>/<webhook code>"):
        Bitrix24Config(webhook_url="https://portal.bitrix24.ru/api/")  # type: ignore[arg-type]
    config = Bitrix24Config(webhook_url="https://portal.bitrix24.ru/rest/1/s3cr3t/")  # type: ignore[arg-type]
    assert "s3cr3t" not in repr(config)


@pytest.mark.parametrize(("method", "result"), [
    ("crm.duplicate.findbycomm", "garbage"),
    ("crm.duplicate.findbycomm", [275]),
    ("crm.contact.get", ["not", "an object"]),
])
async def test_unexpected_shapes_are_bad_responses(adapter: Bitrix24Adapter, portal: FakeBitrix24,
                                                   method: str, result: object) -> None:
    portal.overrides[method] = result
    with pytest.raises(CrmBadResponse):
        await adapter.find_contact(NUMBER)


async def test_odd_activity_row_is_bad_response(adapter: Bitrix24Adapter, portal: FakeBitrix24) -> None:
    portal.overrides["crm.activity.list"] = {"result": [{"ID": "1", "START_TIME": None}], "total": 1}
    contact = await adapter.find_contact(NUMBER)
    assert contact is not None
    with pytest.raises(CrmBadResponse, match="activity without ID or time"):
        await adapter.history(contact)


def test_from_config_uses_crm_settings() -> None:
    settings = CrmSettings(default_region="KZ")
    config = AdapterConfig(type="crm_adapters.bitrix24:Bitrix24Adapter", name="b24",
                           options={"webhook_url": "https://p.bitrix24.kz/rest/1/s3cr3t/", "timeout": 1.5,
                                    "log_call_via": "timeline_comment"})
    adapter = Bitrix24Adapter.from_config(config, settings, None)
    assert (adapter.name, adapter.http.adapter, adapter.config.default_region) == ("b24", "b24", "KZ")
    assert adapter.http.timeout == 1.5 and adapter.portal == "https://p.bitrix24.kz"


async def test_unreadable_company_leaves_the_card_without_it(adapter: Bitrix24Adapter,
                                                              portal: FakeBitrix24) -> None:
    del portal.companies[12]
    contact = await adapter.find_contact(NUMBER)
    assert contact is not None and contact.id == "contact:275" and contact.company is None
