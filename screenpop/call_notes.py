"""Operators' notes on calls, kept in the CRM: one note interaction per operator and call in
the built-in CRM (updated as he edits it, with the wrap-up code he closed his card with), and
the finished call logged to the CRM with every operator's note (`LookupService.log_call`).

What is on the cards (the note text, the codes) is the CardBook's; this keeps the rows."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import SQLAlchemyError

from bridge.calls.record import CallRecord
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.builtin_tables import INTERACTIONS
from crm_adapters.contract import FinishedCall
from crm_adapters.errors import CrmUnavailable
from crm_adapters.lookup import CallerCard, LogResult, LookupService
from crm_adapters.phone_numbers import normalize
from screenpop.cards import CardBook

log = logging.getLogger(__name__)


class NoteNotSaved(Exception):
    """The database or the CRM did not take the note (the console answers 503)."""


class CallNotes:
    def __init__(self, lookup: LookupService, notes: BuiltinCrm | None, book: CardBook, region: str) -> None:
        self.lookup, self.notes, self.book, self.region = lookup, notes, book, region
        self._rows: dict[tuple[str, str], int] = {}  # (call id, extension) -> interaction id
        self._log_locks: dict[str, asyncio.Lock] = {}

    def of_call(self, call_id: str) -> dict[str, str]:
        """Each operator's note on the call, with the wrap-up code he closed his card with."""
        notes, codes = self.book.notes(call_id), self.book.wrapups(call_id)
        out: dict[str, str] = {}
        for ext in {**notes, **codes}:
            code = f"Wrap-up: {codes[ext]}" if ext in codes else ""
            out[ext] = "\n".join(p for p in (notes.get(ext, ""), code) if p)
        return out

    def forget_gone(self) -> None:
        """Drop the rows of calls the book no longer holds (their cards are closed)."""
        self._rows = {k: v for k, v in self._rows.items() if self.book.knows(k[0])}

    async def store(self, call_id: str, ext: str, text: str) -> None:
        """One note interaction per operator and call, updated as he edits it."""
        if self.notes is None:
            return
        record, found = self.book.record(call_id), self.book.caller(call_id)
        contact = found.contact if found is not None else None
        mine = contact is not None and contact.source == self.notes.name and contact.id.isdigit()
        number = (found.e164 if found else None) or normalize(record.caller_number if record else None,
                                                               self.region)
        row_id = self._rows.get((call_id, ext))
        values = {"summary": text, "at": datetime.now(UTC)}
        try:
            async with self.notes.engine.begin() as conn:
                if row_id is not None and not text:
                    await conn.execute(delete(INTERACTIONS).where(INTERACTIONS.c.id == row_id))
                    self._rows.pop((call_id, ext), None)
                    return
                if row_id is not None:
                    done = await conn.execute(update(INTERACTIONS).where(INTERACTIONS.c.id == row_id)
                                              .values(**values))
                    if done.rowcount:
                        return
                if not text:
                    return
                self._rows[(call_id, ext)] = (await conn.execute(
                    insert(INTERACTIONS).returning(INTERACTIONS.c.id),
                    {**values, "contact_id": int(contact.id) if mine and contact else None, "number": number,
                     "kind": "note", "operator": ext})).scalar_one()
        except (OSError, SQLAlchemyError) as exc:
            raise NoteNotSaved(f"the note was not saved (database error: {exc})") from exc
        except CrmUnavailable as exc:
            raise NoteNotSaved(f"the note was not saved ({exc})") from exc

    async def store_wrapup(self, call_id: str, ext: str, code: str) -> None:
        """The code on the operator's note (its `outcome`), when he wrote one."""
        row_id = self._rows.get((call_id, ext))
        if self.notes is None or row_id is None:
            return
        try:
            async with self.notes.engine.begin() as conn:
                await conn.execute(update(INTERACTIONS).where(INTERACTIONS.c.id == row_id)
                                   .values(outcome=code))
        except (OSError, SQLAlchemyError, CrmUnavailable) as exc:
            log.warning("wrap-up code of call %s not saved with the note: %s", call_id, exc)

    async def log_finished(self, record: CallRecord, notes: dict[str, str],
                           found: CallerCard | None) -> LogResult | None:
        """Log the finished call with its notes to the CRM (again, when a note changes)."""
        texts = {ext: t for ext, t in notes.items() if t}
        if not texts or not record.caller_number:
            return None
        call_id = record.call_id
        contact = found.contact if found is not None else None
        if len(texts) == 1:
            note = next(iter(texts.values()))
        else:
            note = "\n".join(f"{self.book.operator_label(call_id, ext)}: {t}" for ext, t in texts.items())
        talked = [r.operator for r in record.rings if r.answered_at is not None]
        adapter = next((a.name for a in self.lookup.adapters
                        if contact is not None and a.name == contact.source and a.can_log_calls), None)
        finished = FinishedCall(
            call_id=record.call_id, direction="inbound", number=record.caller_number,
            operator=talked[-1] if talked else record.answered_by,
            started_at=datetime.fromtimestamp(record.entered_at, UTC), duration_seconds=record.talk_seconds,
            outcome=record.outcome or "incomplete", recording_url=record.recording, note=note,
            contact_id=contact.id if contact is not None and adapter else None)
        lock = self._log_locks.setdefault(call_id, asyncio.Lock())
        try:
            async with lock:  # a note saved while the hang-up's log runs must not race it
                result = await self.lookup.log_call(finished, adapter=adapter)
        finally:
            if not lock.locked():
                self._log_locks.pop(call_id, None)
        if result.error:
            log.warning("call %s with its note not logged to the CRM: %s", call_id, result.error)
        return result
