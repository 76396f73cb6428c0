"""The built-in CRM: contacts in the call log's own database (SQLite or PostgreSQL).

Several contacts may share a number (a switchboard, a family phone): the lookup returns
the most recently updated one (ties: the newest contact id). A contact's history is its
notes and logged calls, merged with the calls in the call log from any of its numbers.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge.call_log.store import CallLogStore
from bridge.call_log.tables import CallRow
from crm_adapters.builtin_queries import (
    BY_ID,
    BY_NUMBER,
    NUMBERS_SINCE,
    ContactRow,
    LoggedCallRow,
    NoteRow,
    calls_of_numbers,
    contact_query,
    decode_contact,
    notes_of_numbers,
    numbered,
)
from crm_adapters.builtin_tables import COMPANIES, CONTACTS, INTERACTIONS, PHONES
from crm_adapters.contract import Contact, CrmAdapter, FinishedCall, Interaction, NewContact, utc_now
from crm_adapters.errors import CrmRejected, CrmUnavailable
from crm_adapters.known_numbers import KnownNumbers
from crm_adapters.phone_numbers import national_variants, normalize
from crm_adapters.raw_reads import RawReads, utc

log = logging.getLogger(__name__)

CALLS = CallRow.__table__
CALL_LOG_SOURCE = "call_log"
_BY_NUMBER = BY_NUMBER  # bench/crm_lookup.py compiles it from here

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

    async def calls(self, phones: Iterable[str], limit: int = 20, conn: AsyncConnection | None = None,
                    reads: RawReads | None = None) -> list[Interaction]:
        """`reads`: through that kept connection (a card's history), else `conn` or the pool."""
        wanted = {p for p in phones if p}
        if not wanted:
            return []
        # The log keeps the raw caller ID: look for every form of the numbers through the
        # index, then keep what really normalises to one of them.
        forms = sorted({form for p in wanted for form in national_variants(p)})
        query, params = calls_of_numbers(len(forms)), numbered(forms, limit * 2)
        rows: Sequence[Any]
        if reads is not None:
            rows = [LoggedCallRow(*r[:2], utc(r[2]), *r[3:]) for r in await reads.fetch(query, params)]
        elif conn is None:
            async with self.engine.connect() as own:
                rows = (await own.execute(query, params)).all()
        else:
            rows = (await conn.execute(query, params)).all()
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
                 url_template: str | None = None, known_refresh_seconds: float = 10.0,
                 **engine_options: Any) -> None:
        self.name = name
        self.default_region = default_region
        self.url_template = url_template  # e.g. "https://intranet/crm/contacts/{id}"
        self._owns_store = isinstance(database, str)
        self._store = CallLogStore(database, **engine_options) if isinstance(database, str) else database
        self._call_log: CallLogHistory | None = None
        self._lookups: RawReads | None = None  # the callers' lookups: never behind a history
        self._histories: RawReads | None = None
        # Its numbers in memory: an unknown caller's card pops without a query (`knows_not`).
        try:
            self.known = KnownNumbers(refresh_every=known_refresh_seconds)
        except ValueError as exc:  # the option's name, for the admin who set it
            raise ValueError(f"CRM {name}: known_refresh_seconds {exc}") from None
        self._reading_known: asyncio.Task[None] | None = None

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
        if self._reading_known is not None:
            self._reading_known.cancel()
            await asyncio.gather(self._reading_known, return_exceptions=True)
            self._reading_known = None
        for reads in (self._lookups, self._histories):
            if reads is not None:
                await reads.close()
        self._lookups = self._histories = None
        if self._owns_store:
            await self._store.close()

    def _contact(self, rows: Sequence[Row[Any] | ContactRow]) -> Contact | None:
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
            self._lookups = RawReads(self.engine)
        if not self._lookups.fast:
            found = self._contact(await self._run(BY_NUMBER, {"number": number}))
        else:
            try:
                rows = await self._lookups.fetch(BY_NUMBER, {"number": number})
            except Exception as exc:  # sqlite3.Error, asyncpg errors, OSError, SQLAlchemyError
                raise CrmUnavailable(f"database error: {exc}", adapter=self.name) from exc
            found = self._contact([decode_contact(r) for r in rows])
        if found is not None:
            self.known.add(found.phones)  # added elsewhere since the last read, maybe
        return found

    def knows_not(self, number: str) -> bool:
        """Surely no contact's number, by the numbers in memory (read again when due, in the
        background: this answer never waits)."""
        if self.known.due() and self._reading_known is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (an offline replay): nothing is read
                return self.known.surely_unknown(number)
            self.known.reading()
            self._reading_known = loop.create_task(self._read_known(), name=f"crm {self.name}: known numbers")
        return self.known.surely_unknown(number)

    async def _read_known(self) -> None:
        try:
            rows = await self._run(NUMBERS_SINCE, {"after": self.known.last_id})
            first = not self.known.ready
            self.known.absorb((row.id, row.e164) for row in rows)
            if first:
                log.info("CRM %s: %d numbers in memory (callers without one pop at once)",
                         self.name, len(self.known))
        except CrmUnavailable as exc:
            log.warning("CRM %s: could not read its numbers (lookups wait for the database): %s",
                        self.name, exc)
        finally:
            self._reading_known = None

    async def get_contact(self, contact_id: str | int) -> Contact | None:
        try:
            cid = int(contact_id)
        except ValueError:
            return None
        return self._contact(await self._run(BY_ID, {"contact_id": cid}))

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
        rows = await self._run(contact_query(CONTACTS.c.id.in_(found)), {})
        by_id: dict[int, list[Row[Any]]] = {}
        for row in rows:
            by_id.setdefault(row.id, []).append(row)
        return [c for cid in found if (c := self._contact(by_id.get(cid, []))) is not None]

    async def history(self, contact: Contact, limit: int = 20) -> list[Interaction]:
        mine = contact.source == self.name and contact.id.isdigit()
        phones = set(contact.phones)
        if self._histories is None:
            self._histories = RawReads(self.engine)
        if not mine and phones and self._histories.fast:  # a caller by his number: every unknown one
            return await self._history_of_numbers(sorted(phones), limit)
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

    async def _history_of_numbers(self, phones: list[str], limit: int) -> list[Interaction]:
        """`history` of numbers no contact of ours owns, on the kept connection (same rows)."""
        try:
            reads = self._histories
            assert reads is not None
            rows = await reads.fetch(notes_of_numbers(len(phones)), numbered(phones, limit))
            notes = [self._interaction(NoteRow(*r[:2], utc(r[2]), *r[3:])) for r in rows]
            calls = await self.call_log.calls(phones, limit, reads=reads)
        except Exception as exc:  # sqlite3.Error, asyncpg errors, OSError, SQLAlchemyError
            raise CrmUnavailable(f"database error: {exc}", adapter=self.name) from exc
        return merge_history(notes, calls, limit)

    def _interaction(self, row: Row[Any] | NoteRow) -> Interaction:
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
        self.known.add(phones)
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

