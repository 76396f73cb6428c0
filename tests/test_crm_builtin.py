"""The built-in CRM on SQLite and PostgreSQL: schema, lookups, history, writes, CSV import."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, update

from bridge.call_log.store import CallLogStore, head_revision
from bridge.call_log.tables import Base
from bridge.calls.record import CallRecord, RecordingRecord
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.builtin_tables import CONTACTS, CRM_TABLES, INTERACTIONS
from crm_adapters.contract import FinishedCall, NewContact
from crm_adapters.csv_import import CsvFormatError, import_csv, write_rejections
from crm_adapters.errors import CrmRejected, CrmUnavailable
from tests.db_fixtures import Database, database_fixture, store_fixture  # noqa: F401  # fixtures

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(name="crm")
async def crm_fixture(store: CallLogStore) -> AsyncIterator[BuiltinCrm]:
    adapter = BuiltinCrm(store, url_template="https://intranet/crm/{id}")
    await adapter.open()
    yield adapter
    await adapter.close()


def call(call_id: str, number: str | None, at: datetime, **extra: object) -> CallRecord:
    start = at.timestamp()
    values: dict[str, object] = {
        "call_id": call_id, "caller_number": number, "queue": "support", "answered_by": "102",
        "rung": ["102"], "outcome": "answered", "entered_at": start, "answered_at": start + 3,
        "ended_at": start + 63,
    }
    values.update(extra)
    return CallRecord.model_validate(values)


async def test_migration_0002_builds_the_crm_tables(store: CallLogStore) -> None:
    async with store.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        phone_indexes = await conn.run_sync(lambda c: {i["name"]: i["column_names"]
                                                       for i in inspect(c).get_indexes("crm_phones")})
        diff = await conn.run_sync(lambda c: compare_metadata(
            MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata))
    assert set(CRM_TABLES) <= tables and "calls" in tables  # one database with the call log
    assert phone_indexes["ix_crm_phones_e164"] == ["e164", "contact_id"]
    assert diff == []  # migration 0002 builds what builtin_tables describes
    assert await store.revision() == head_revision()


async def test_found_by_each_of_its_numbers(crm: BuiltinCrm) -> None:
    created = await crm.create_contact(NewContact(
        display_name="Мария Иванова", phones=["8 (495) 111-44-55", "+79161234567"], company="ООО «Ромашка»",
        email="maria@example.ru", tags=["VIP"], note="Prefers mornings"))
    assert created.phones == ["+74951114455", "+79161234567"]  # stored normalised
    for number in created.phones:
        found = await crm.find_contact(number)
        assert found == created
    assert created.display_name == "Мария Иванова" and created.company == "ООО «Ромашка»"
    assert created.vip and created.tags == ["VIP"] and created.source == "builtin"
    assert created.url == f"https://intranet/crm/{created.id}"
    assert created.updated_at is not None and created.updated_at.tzinfo is not None


async def test_not_found(crm: BuiltinCrm) -> None:
    await crm.create_contact(NewContact(display_name="Someone", phones=["+74951114455"]))
    assert await crm.find_contact("+74951114456") is None
    assert await crm.get_contact("999999") is None and await crm.get_contact("x") is None


async def test_several_matches_the_most_recently_updated_contact_wins(crm: BuiltinCrm) -> None:
    older = await crm.create_contact(NewContact(display_name="Reception", phones=["+74957770000"]))
    newer = await crm.create_contact(NewContact(display_name="Director", phones=["+74957770000"],
                                                company="Acme"))

    async def touch(contact_id: str, at: datetime) -> None:
        async with crm.engine.begin() as conn:
            await conn.execute(update(CONTACTS).where(CONTACTS.c.id == int(contact_id)).values(updated_at=at))

    await touch(older.id, T0)
    await touch(newer.id, T0 + timedelta(days=1))
    assert (await crm.find_contact("+74957770000")).id == newer.id  # type: ignore[union-attr]
    await touch(older.id, T0 + timedelta(days=2))
    assert (await crm.find_contact("+74957770000")).id == older.id  # type: ignore[union-attr]
    await touch(newer.id, T0 + timedelta(days=2))  # a tie: the newest contact
    assert (await crm.find_contact("+74957770000")).id == newer.id  # type: ignore[union-attr]


async def test_unicode_names_round_trip(crm: BuiltinCrm) -> None:
    names = ["Алёна Щукина-Эрдман", "Ёлка 🎄 Новогодняя", "Zoë 👩‍💻 Ångström", "李小龍"]
    for n, name in enumerate(names):
        await crm.create_contact(NewContact(display_name=name, phones=[f"+7495000000{n}"],
                                            company="Торговый дом «Ёж» 🦔", tags=["постоянный", "⭐"]))
    for n, name in enumerate(names):
        found = await crm.find_contact(f"+7495000000{n}")
        assert found is not None and found.display_name == name
        assert found.company == "Торговый дом «Ёж» 🦔" and found.tags == ["постоянный", "⭐"]


async def test_create_contact_rejects_a_bad_number(crm: BuiltinCrm) -> None:
    with pytest.raises(CrmRejected, match="not a phone number"):
        await crm.create_contact(NewContact(display_name="X", phones=["12"]))
    async with crm.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(CONTACTS))).scalar_one() == 0


async def test_history_newest_first_merges_call_log_calls_and_notes(store: CallLogStore,
                                                                    crm: BuiltinCrm) -> None:
    contact = await crm.create_contact(NewContact(display_name="Пётр",
                                                  phones=["+74951114455", "+79161234567"]))
    await crm.add_note(contact.id, "Asked for an invoice", operator="102", at=T0 + timedelta(hours=2))
    await crm.add_note(contact.id, "Старая заметка", at=T0 - timedelta(days=3))
    await store.save([
        call("c-national", "84951114455", T0 + timedelta(hours=1)),  # as the PBX sent it
        call("c-e164", "+79161234567", T0 + timedelta(hours=3), outcome="abandoned", answered_by=None,
             answered_at=None, rung=[]),
        call("c-other", "+74951114466", T0 + timedelta(hours=4)),  # somebody else
        call("c-internal", "+74951114455", T0 + timedelta(hours=5), internal=True),
        call("c-live", "+74951114455", T0 + timedelta(hours=6), outcome=None, ended_at=None),
    ])
    history = await crm.history(contact, limit=10)
    kinds = [(i.kind, i.source, i.call_id or i.summary) for i in history]
    assert kinds[:4] == [
        ("call", "call_log", "c-e164"),
        ("note", "builtin", "Asked for an invoice"),
        ("call", "call_log", "c-national"),
        ("note", "builtin", "Старая заметка"),
    ]
    assert [i.at for i in history] == sorted((i.at for i in history), reverse=True)
    answered = history[2]
    assert answered.operator == "102" and answered.duration_seconds == 60 and answered.direction == "inbound"
    assert history[0].outcome == "abandoned"
    assert len(await crm.history(contact, limit=2)) == 2


async def test_log_call_back_merges_with_the_call_log_and_is_idempotent(store: CallLogStore,
                                                                        crm: BuiltinCrm) -> None:
    contact = await crm.create_contact(NewContact(display_name="Anna", phones=["+74951114455"]))
    recording = RecordingRecord(file="/rec/c-1.wav", channel="PJSIP/102-1", started_at=T0.timestamp() + 3)
    await store.save([call("c-1", "84951114455", T0, recordings=[recording])])
    finished = FinishedCall(call_id="c-1", direction="inbound", number="+74951114455", operator="102",
                            started_at=T0, duration_seconds=60, outcome="answered", note="Wants a callback")
    first = await crm.log_call(finished)
    again = await crm.log_call(finished.model_copy(update={"note": "Wants a callback on Monday"}))
    assert first == again  # the same entry, updated
    history = await crm.history(contact)
    assert len(history) == 1  # the call once, not twice
    entry = history[0]
    assert entry.source == "builtin" and entry.summary == "Wants a callback on Monday"
    assert entry.url == "/rec/c-1.wav"  # filled in from the call log
    async with crm.engine.connect() as conn:
        row = (await conn.execute(select(INTERACTIONS).where(INTERACTIONS.c.call_id == "c-1"))).one()
    assert row.contact_id == int(contact.id) and row.operator == "102" and row.direction == "inbound"


async def test_a_call_logged_before_the_contact_existed_shows_in_its_history(crm: BuiltinCrm) -> None:
    await crm.log_call(FinishedCall(call_id="c-9", direction="outbound", number="8 916 123-45-67",
                                    started_at=T0, outcome="unanswered", note="No answer"))
    contact = await crm.create_contact(NewContact(display_name="New", phones=["+79161234567"]))
    history = await crm.history(contact)
    assert [(i.call_id, i.direction, i.summary) for i in history] == [("c-9", "outbound", "No answer")]


async def test_an_unusable_database_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    crm = BuiltinCrm(f"sqlite+aiosqlite:///{tmp_path / 'not-a-dir' / 'crm.sqlite3'}")
    with pytest.raises(CrmUnavailable, match="cannot open the database"):
        await crm.open()


# -- CSV import ----------------------------------------------------------------------------

def write_csv(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle, delimiter=delimiter).writerows(rows)
    return path


async def test_csv_import_with_a_rejection_report(crm: BuiltinCrm, tmp_path: Path) -> None:
    existing = await crm.create_contact(NewContact(display_name="Already here", phones=["+74950000001"]))
    source = write_csv(tmp_path / "contacts.csv", [
        ["Name", "Company", "Phone", "Phone 2", "Email", "Tags", "Note"],
        ["Мария Иванова", "ООО «Ромашка»", "8 (495) 111-44-55", "+7 916 123-45-67", "m@example.ru", "VIP;опт",
         "First order in May"],
        ["", "Nameless Ltd", "+74951112233", "", "", "", ""],  # missing name
        ["Bad Number", "", "12-34", "", "", "", ""],  # bad number
        ["Maria again", "", "84951114455", "", "", "", ""],  # duplicate of line 2
        ["Old customer", "", "8 495 000-00-01", "", "", "", ""],  # already in the database
        ["No phone", "", "", "", "", "", ""],
        ["Emoji 🙂", "ООО «Ромашка»", "+74951112244, +74951112255", "", "", "", ""],
    ], delimiter=";")
    report = await import_csv(crm, source, batch_size=2)
    assert report.imported == 2
    assert [(r.line, r.reason) for r in report.rejected] == [
        (3, "missing name"),
        (4, "bad number '12-34'"),
        (5, "duplicate number +74951114455 (line 2)"),
        (6, f"duplicate number +74950000001 (contact {existing.id} in the database)"),
        (7, "no phone number"),
    ]
    maria = await crm.find_contact("+79161234567")
    assert maria is not None and maria.display_name == "Мария Иванова" and maria.tags == ["VIP", "опт"]
    assert maria.phones == ["+74951114455", "+79161234567"] and maria.email == "m@example.ru"
    assert [i.summary for i in await crm.history(maria)] == ["First order in May"]
    emoji = await crm.find_contact("+74951112255")
    assert emoji is not None and emoji.display_name == "Emoji 🙂" and emoji.company == maria.company

    rejects = tmp_path / "rejects.csv"
    write_rejections(report, rejects)
    with rejects.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["line"], r["Name"], r["Phone"]) for r in rows][:2] == [("3", "", "+74951112233"),
                                                                     ("4", "Bad Number", "12-34")]


async def test_csv_without_a_phone_column_is_refused(crm: BuiltinCrm, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "x.csv", [["name", "email"], ["A", "a@example.com"]])
    with pytest.raises(CsvFormatError, match="phone column"):
        await import_csv(crm, source)


async def test_search_by_name_company_or_number(crm: BuiltinCrm) -> None:
    ivan = await crm.create_contact(NewContact(display_name="Иван Петров", phones=["+74951234567"],
                                               company="Romashka LLC"))
    olga = await crm.create_contact(NewContact(display_name="Olga Smirnova", phones=["+74957654321"]))
    await crm.create_contact(NewContact(display_name="100% Sure_Thing", phones=["+74950000001"]))
    assert [c.id for c in await crm.search("иван")] == [ivan.id]  # Cyrillic, any case
    assert [c.id for c in await crm.search("ПЕТРОВ")] == [ivan.id]
    assert [c.id for c in await crm.search("smirn")] == [olga.id]
    assert [c.id for c in await crm.search("romashka")] == [ivan.id]  # by company
    assert [c.id for c in await crm.search("8 (495) 123-45-67")] == [ivan.id]  # a national form
    assert [c.id for c in await crm.search("654")] == [olga.id]  # a run of digits
    assert {c.display_name for c in await crm.search("495")} == {"Иван Петров", "Olga Smirnova",
                                                                   "100% Sure_Thing"}
    # LIKE's wildcards are text: "%" finds only the name that has one.
    assert [c.display_name for c in await crm.search("0%")] == ["100% Sure_Thing"]
    assert await crm.search("Sur_") == []  # "_" is no wildcard either ("Sure" has no "Sur_")
    assert await crm.search("x") == [] and await crm.search("   ") == []
    found = (await crm.search("Olga"))[0]
    assert found.phones == ["+74957654321"] and found.source == "builtin"


async def test_adapters_without_search_say_so() -> None:
    from crm_adapters.contract import Contact, CrmAdapter, Interaction
    from crm_adapters.errors import CrmNotSupported

    class Minimal(CrmAdapter):
        name = "minimal"

        async def find_contact(self, number: str) -> Contact | None:
            return None

        async def history(self, contact: Contact, limit: int = 20) -> list[Interaction]:
            return []

        async def create_contact(self, new: NewContact) -> Contact:
            raise CrmNotSupported("no")

        async def log_call(self, call: FinishedCall) -> str | None:
            return None

    with pytest.raises(CrmNotSupported, match="search not supported"):
        await Minimal().search("ivan")
