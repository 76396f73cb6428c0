"""The built-in CRM: contacts in the call log's own database (SQLite or PostgreSQL).

Several contacts may share a number (a switchboard, a family phone): the lookup returns
the most recently updated one (ties: the newest contact id). A contact's history is its
notes and logged calls, merged with the calls in the call log from any of its numbers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, bindparam, false, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge.call_log.store import CallLogStore
from bridge.call_log.tables import CallRow
from crm_adapters.builtin_tables import COMPANIES, CONTACTS, INTERACTIONS, PHONES
from crm_adapters.contract import Contact, CrmAdapter, FinishedCall, Interaction, NewContact, utc_now
from crm_adapters.errors import CrmRejected, CrmUnavailable
from crm_adapters.phone_numbers import national_variants, normalize

log = logging.getLogger(__name__)

CALLS = CallRow.__table__
CALL_LOG_SOURCE = "call_log"

# Built once: the statement cache then skips compiling on every lookup.
_best = (
    select(PHONES.c.contact_id)
    .join(CONTACTS, CONTACTS.c.id == PHONES.c.contact_id)
    .where(PHONES.c.e164 == bindparam("number"))
    .order_by(CONTACTS.c.updated_at.desc(), CONTACTS.c.id.desc())
    .limit(1)
    .scalar_subquery()
)
_CONTACT_COLUMNS = (CONTACTS.c.id, CONTACTS.c.display_name, CONTACTS.c.email, CONTACTS.c.tags,
                    CONTACTS.c.updated_at, COMPANIES.c.name.label("company"))


def _contact_query(where: Any) -> Any:
    """One row per phone of the contact: contact, company and all its numbers in one round trip."""
    return (
        select(*_CONTACT_COLUMNS, PHONES.c.e164)
        .select_from(CONTACTS.outerjoin(COMPANIES, COMPANIES.c.id == CONTACTS.c.company_id)
                     .outerjoin(PHONES, PHONES.c.contact_id == CONTACTS.c.id))
        .where(where)
        .order_by(PHONES.c.id)
    )


_BY_NUMBER = _contact_query(CONTACTS.c.id == _best)
_BY_ID = _contact_query(CONTACTS.c.id == bindparam("contact_id"))


class _ContactRow(NamedTuple):  # the columns of _BY_NUMBER, in order
    id: int
    display_name: str
    email: str | None
    tags: list[str]
    updated_at: datetime
    company: str | None
    e164: str | None


def _decode(row: Sequence[Any]) -> _ContactRow:
    """What SQLAlchemy's types would make of a driver row: JSON tags, UTC-aware times."""
    cid, name, email, tags, updated, company, e164 = row
    if isinstance(tags, str):
        tags = json.loads(tags)
    if isinstance(updated, str):
        updated = datetime.fromisoformat(updated)
    if updated is not None:
        updated = updated.replace(tzinfo=UTC) if updated.tzinfo is None else updated.astimezone(UTC)
    return _ContactRow(cid, name, email, tags, updated, company, e164)


class _LookupConnection:
    """A connection kept open for caller lookups and queried through its driver.

    A pool checkout (pre-ping, reset on return) and SQLAlchemy's async cursor adaption cost
    several thread or network round trips each: ~0.6-1 ms against ~0.15 ms for the indexed
    query alone on SQLite (bench/crm_lookup.py). aiosqlite and asyncpg only; other drivers
    go through the pool.
    """

    DRIVERS = ("aiosqlite", "asyncpg")

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.fast = engine.dialect.driver in self.DRIVERS
        compiled = _BY_NUMBER.compile(dialect=engine.dialect)
        self._sql = str(compiled)
        self._names, self._values = list(compiled.positiontup or []), compiled.params
        self._conn: AsyncConnection | None = None
        self._raw: Any = None
        self._lock = asyncio.Lock()  # one statement at a time on the connection (asyncpg insists)

    async def fetch(self, number: str) -> list[_ContactRow]:
        params = tuple(number if n == "number" else self._values[n] for n in self._names)
        async with self._lock:
            try:
                if self._raw is None:
                    conn = await self.engine.connect()
                    self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    self._raw = (await self._conn.get_raw_connection()).driver_connection
                if self.engine.dialect.driver == "asyncpg":
                    rows = await self._raw.fetch(self._sql, *params)
                else:
                    rows = await self._raw.execute_fetchall(self._sql, params)
            except BaseException:
                await self.close()  # a broken connection is replaced on the next lookup
                raise
        return [_decode(row) for row in rows]

    async def close(self) -> None:
        conn, self._conn, self._raw = self._conn, None, None
        if conn is not None:
            try:
                await conn.close()
            except Exception as exc:  # already broken: nothing more to release
                log.debug("closing the lookup connection: %s", exc)


def merge_history(primary: Iterable[Interaction], secondary: Iterable[Interaction],
                  limit: int) -> list[Interaction]:
    """Newest first, at most `limit`; a call in both (same call_id) appears once, as the
    primary's entry, with what only the secondary knew (recording, duration) filled in."""
    merged: list[Interaction] = list(primary)
    by_call = {i.call_id: n for n, i in enumerate(merged) if i.call_id}
    for item in secondary:
        at = by_call.get(item.call_id) if item.call_id else None
        if at is None:
            merged.append(item)
            continue
        known = merged[at]
        fill = {f: getattr(item, f) for f in ("url", "duration_seconds", "operator", "outcome", "direction")
                if getattr(known, f) is None and getattr(item, f) is not None}
        if fill:
            merged[at] = known.model_copy(update=fill)
    merged.sort(key=lambda i: i.at, reverse=True)
    return merged[:limit]


def _call_summary(row: Row[Any]) -> str:
    if row.outcome == "answered":
        who = f" by {row.answered_by}" if row.answered_by else ""
        return f"answered{who}, talked {round(row.talk_seconds)} s"
    return f"{row.outcome or 'ended'} after {round(row.wait_seconds)} s"


class CallLogHistory:
    """The bridge's own call log as a history source, matched by normalised caller number."""

    def __init__(self, engine: AsyncEngine, default_region: str = "RU") -> None:
        self.engine = engine
        self.default_region = default_region

    async def calls(self, phones: Iterable[str], limit: int = 20,
                    conn: AsyncConnection | None = None) -> list[Interaction]:
        wanted = {p for p in phones if p}
        if not wanted:
            return []
        # The log keeps the raw caller ID: look for every form of the numbers through the
        # index, then keep what really normalises to one of them.
        forms = sorted({form for p in wanted for form in national_variants(p)})
        query = (
            select(CALLS.c.call_id, CALLS.c.caller_number, CALLS.c.entered_at, CALLS.c.answered_by,
                   CALLS.c.outcome, CALLS.c.talk_seconds, CALLS.c.wait_seconds, CALLS.c.recording)
            .where(CALLS.c.caller_number.in_(forms), CALLS.c.ended_at.is_not(None),
                   CALLS.c.internal == false())
            .order_by(CALLS.c.entered_at.desc())
            .limit(limit * 2)
        )
        if conn is None:
            async with self.engine.connect() as own:
                rows = (await own.execute(query)).all()
        else:
            rows = (await conn.execute(query)).all()
        found = [
            Interaction(id=row.call_id, kind="call", at=row.entered_at, summary=_call_summary(row),
                        source=CALL_LOG_SOURCE, direction="inbound", operator=row.answered_by,
                        duration_seconds=row.talk_seconds, outcome=row.outcome, url=row.recording,
                        call_id=row.call_id)
            for row in rows
            if normalize(row.caller_number, self.default_region) in wanted
        ]
        return found[:limit]


class BuiltinCrm(CrmAdapter):
    """`BuiltinCrm(url)` opens (and migrates) the database itself; `BuiltinCrm(store)` shares an
    open call log's engine."""

    def __init__(self, database: str | CallLogStore, *, name: str = "builtin", default_region: str = "RU",
                 url_template: str | None = None, **engine_options: Any) -> None:
        self.name = name
        self.default_region = default_region
        self.url_template = url_template  # e.g. "https://intranet/crm/contacts/{id}"
        self._owns_store = isinstance(database, str)
        self._store = CallLogStore(database, **engine_options) if isinstance(database, str) else database
        self._call_log: CallLogHistory | None = None
        self._lookups: _LookupConnection | None = None

    @property
    def engine(self) -> AsyncEngine:
        try:
            return self._store.engine
        except RuntimeError as exc:  # not open (it failed to): an outage, not a bug
            raise CrmUnavailable("the database is not open", adapter=self.name) from exc

    @property
    def call_log(self) -> CallLogHistory:
        if self._call_log is None:
            self._call_log = CallLogHistory(self.engine, self.default_region)
        return self._call_log

    async def open(self) -> None:
        try:
            await self._store.open()  # migrates to head: the CRM tables come with 0002
        except (OSError, SQLAlchemyError) as exc:
            raise CrmUnavailable(f"cannot open the database: {exc}", adapter=self.name) from exc
        # The lookup connection now, not with the first caller (whose card waits for it):
        # a PostgreSQL connect under load took ~50 ms (bench/cluster.py's first pops).
        await self.find_contact("+0")

    async def close(self) -> None:
        if self._lookups is not None:
            await self._lookups.close()
            self._lookups = None
        if self._owns_store:
            await self._store.close()

    def _contact(self, rows: Sequence[Row[Any] | _ContactRow]) -> Contact | None:
        if not rows:
            return None
        first = rows[0]
        cid = str(first.id)
        return Contact(
            id=cid, display_name=first.display_name, company=first.company, email=first.email,
            phones=[r.e164 for r in rows if r.e164], tags=list(first.tags or []),
            url=self.url_template.format(id=cid) if self.url_template else None,
            source=self.name, updated_at=first.updated_at,
        )

    async def _run(self, query: Any, params: dict[str, Any]) -> list[Row[Any]]:
        try:
            async with self.engine.connect() as conn:
                return list((await conn.execute(query, params)).all())
        except (OSError, SQLAlchemyError) as exc:
            raise CrmUnavailable(f"database error: {exc}", adapter=self.name) from exc

    async def find_contact(self, number: str) -> Contact | None:
        if self._lookups is None:
            self._lookups = _LookupConnection(self.engine)
        if not self._lookups.fast:
            return self._contact(await self._run(_BY_NUMBER, {"number": number}))
        try:
            return self._contact(await self._lookups.fetch(number))
        except Exception as exc:  # sqlite3.Error, asyncpg errors, OSError, SQLAlchemyError
            raise CrmUnavailable(f"database error: {exc}", adapter=self.name) from exc

    async def get_contact(self, contact_id: str | int) -> Contact | None:
        try:
            cid = int(contact_id)
        except ValueError:
            return None
        return self._contact(await self._run(_BY_ID, {"contact_id": cid}))

    async def search(self, query: str, limit: int = 20) -> list[Contact]:
        """Contacts by name (or company) containing the text, or by number (whole or a run of
        at least 3 digits), the most recently updated first."""
        text = " ".join(query.split())[:100]
        if len(text) < 2:
            return []
        digits = re.sub(r"\D", "", text)
        wanted: list[Any] = []
        if digits and not re.sub(r"[\d\s()+\-.]", "", text):  # a number, as people write them
            e164 = normalize(text, self.default_region)
            if e164 is not None:
                wanted.append(PHONES.c.e164 == e164)
            if len(digits) >= 3:
                wanted.append(PHONES.c.e164.like(f"%{digits}%"))
        else:
            pattern = re.sub(r"([\\%_])", r"\\\1", text)
            # ILIKE folds ASCII everywhere and all of Unicode on PostgreSQL; SQLite's LIKE folds
            # ASCII only, so the usual spellings of a Cyrillic name are asked for as well.
            forms = dict.fromkeys((pattern, pattern.lower(), pattern.capitalize(), pattern.title()))
            wanted += [column.ilike(f"%{form}%", escape="\\") for form in forms
                       for column in (CONTACTS.c.display_name, COMPANIES.c.name)]
        if not wanted:
            return []
        ids = (select(CONTACTS.c.id, CONTACTS.c.updated_at)
               .select_from(CONTACTS.outerjoin(COMPANIES, COMPANIES.c.id == CONTACTS.c.company_id)
                            .outerjoin(PHONES, PHONES.c.contact_id == CONTACTS.c.id))
               .where(or_(*wanted)).distinct()
               .order_by(CONTACTS.c.updated_at.desc(), CONTACTS.c.id.desc()).limit(max(1, min(limit, 100))))
        found = [r.id for r in await self._run(ids, {})]
        if not found:
            return []
        rows = await self._run(_contact_query(CONTACTS.c.id.in_(found)), {})
        by_id: dict[int, list[Row[Any]]] = {}
        for row in rows:
            by_id.setdefault(row.id, []).append(row)
        return [c for cid in found if (c := self._contact(by_id.get(cid, []))) is not None]

    async def history(self, contact: Contact, limit: int = 20) -> list[Interaction]:
        mine = contact.source == self.name and contact.id.isdigit()
        phones = set(contact.phones)
        try:
            async with self.engine.connect() as conn:
                # Reads only: no BEGIN and ROLLBACK round trips around each (a card's history,
                # on every node showing it, under load).
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                if mine:
                    phones |= set((await conn.scalars(
                        select(PHONES.c.e164).where(PHONES.c.contact_id == int(contact.id)))).all())
                where = [INTERACTIONS.c.number.in_(sorted(phones))] if phones else []
                if mine:
                    where.append(INTERACTIONS.c.contact_id == int(contact.id))
                notes = []
                if where:
                    rows = (await conn.execute(
                        select(INTERACTIONS).where(or_(*where))
                        .order_by(INTERACTIONS.c.at.desc(), INTERACTIONS.c.id.desc()).limit(limit))).all()
                    notes = [self._interaction(r) for r in rows]
                calls = await self.call_log.calls(phones, limit, conn)
        except (OSError, SQLAlchemyError) as exc:
            raise CrmUnavailable(f"database error: {exc}", adapter=self.name) from exc
        return merge_history(notes, calls, limit)

    def _interaction(self, row: Row[Any]) -> Interaction:
        return Interaction(
            id=str(row.id), kind=row.kind, at=row.at, summary=row.summary or "", source=self.name,
            direction=row.direction, operator=row.operator, duration_seconds=row.duration_seconds,
            outcome=row.outcome, url=row.url, call_id=row.call_id,
        )

    def _phones(self, numbers: Iterable[str]) -> list[str]:
        phones: list[str] = []
        for raw in numbers:
            e164 = normalize(raw, self.default_region)
            if e164 is None:
                raise CrmRejected(f"not a phone number: {raw!r}", adapter=self.name)
            phones.append(e164)
        return list(dict.fromkeys(phones))

    async def create_contact(self, new: NewContact) -> Contact:
        phones = self._phones(new.phones)
        now = utc_now()
        try:
            async with self.engine.begin() as conn:
                company_id = await company_id_for(conn, new.company, now)
                cid = (await conn.execute(insert(CONTACTS).returning(CONTACTS.c.id), {
                    "display_name": new.display_name.strip(), "company_id": company_id,
                    "email": new.email, "tags": list(new.tags), "created_at": now, "updated_at": now,
                })).scalar_one()
                await conn.execute(insert(PHONES), [{"contact_id": cid, "e164": p} for p in phones])
                if new.note:
                    await conn.execute(insert(INTERACTIONS), {
                        "contact_id": cid, "kind": "note", "at": now, "summary": new.note})
        except (OSError, SQLAlchemyError) as exc:
            raise CrmUnavailable(f"database error: {exc}", adapter=self.name) from exc
        created = await self.get_contact(cid)
        assert created is not None
        return created

    async def add_note(self, contact_id: str, text: str, *, operator: str | None = None,
                       at: datetime | None = None) -> str:
        """A note on a contact (the built-in CRM's own extra, outside the contract)."""
        try:
            async with self.engine.begin() as conn:
                new_id = (await conn.execute(insert(INTERACTIONS).returning(INTERACTIONS.c.id), {
                    "contact_id": int(contact_id), "kind": "note", "at": at or utc_now(), "summary": text,
                    "operator": operator})).scalar_one()
                await conn.execute(update(CONTACTS).where(CONTACTS.c.id == int(contact_id))
                                   .values(updated_at=utc_now()))
        except IntegrityError as exc:
            raise CrmRejected(f"no contact {contact_id}", adapter=self.name) from exc
        except (OSError, SQLAlchemyError) as exc:
            raise CrmUnavailable(f"database error: {exc}", adapter=self.name) from exc
        return str(new_id)

    async def log_call(self, call: FinishedCall) -> str | None:
        number = normalize(call.number, self.default_region) or call.number
        contact_id: int | None = int(call.contact_id) if (call.contact_id or "").isdigit() else None
        if contact_id is None:
            found = await self.find_contact(number)
            contact_id = int(found.id) if found else None
        values = {
            "contact_id": contact_id, "number": number, "kind": "call", "at": call.started_at,
            "summary": call.note or "", "direction": call.direction, "operator": call.operator,
            "duration_seconds": call.duration_seconds, "outcome": call.outcome,
            "url": call.recording_url, "call_id": call.call_id,
        }
        try:
            async with self.engine.begin() as conn:
                existing = (await conn.execute(select(INTERACTIONS.c.id)
                                               .where(INTERACTIONS.c.call_id == call.call_id))).scalar()
                if existing is not None:  # logged before (a retry, an edited note): update it
                    await conn.execute(update(INTERACTIONS).where(INTERACTIONS.c.id == existing)
                                       .values(**values))
                    return str(existing)
                return str((await conn.execute(insert(INTERACTIONS).returning(INTERACTIONS.c.id),
                                               values)).scalar_one())
        except IntegrityError as exc:
            raise CrmRejected(f"call {call.call_id} not logged: {exc.orig}", adapter=self.name) from exc
        except (OSError, SQLAlchemyError) as exc:
            raise CrmUnavailable(f"database error: {exc}", adapter=self.name) from exc


async def company_id_for(conn: AsyncConnection, name: str | None, now: datetime,
                         known: dict[str, int] | None = None) -> int | None:
    """The id of the company with this name (case and spaces as typed), created if new."""
    name = (name or "").strip()
    if not name:
        return None
    if known is not None and name in known:
        return known[name]
    found = (await conn.execute(select(COMPANIES.c.id).where(COMPANIES.c.name == name)
                                .order_by(COMPANIES.c.id).limit(1))).scalar()
    if found is None:
        found = (await conn.execute(insert(COMPANIES).returning(COMPANIES.c.id),
                                    {"name": name, "created_at": now})).scalar_one()
    if known is not None:
        known[name] = found
    return found

