"""The built-in CRM's hot statements, built once (SQLAlchemy's statement cache, and
crm_adapters.raw_reads compiling each once), and the rows they give back."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, false, select

from bridge.call_log.tables import CallRow
from crm_adapters.builtin_tables import COMPANIES, CONTACTS, INTERACTIONS, PHONES
from crm_adapters.raw_reads import json_list, utc

CALLS = CallRow.__table__

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

# Numbers added since the last read (crm_adapters.known_numbers), in id order.
NUMBERS_SINCE = (select(PHONES.c.id, PHONES.c.e164).where(PHONES.c.id > bindparam("after"))
                 .order_by(PHONES.c.id))


def contact_query(where: Any) -> Any:
    """One row per phone of the contact: contact, company and all its numbers in one round trip."""
    return (
        select(*_CONTACT_COLUMNS, PHONES.c.e164)
        .select_from(CONTACTS.outerjoin(COMPANIES, COMPANIES.c.id == CONTACTS.c.company_id)
                     .outerjoin(PHONES, PHONES.c.contact_id == CONTACTS.c.id))
        .where(where)
        .order_by(PHONES.c.id)
    )


BY_NUMBER = contact_query(CONTACTS.c.id == _best)
BY_ID = contact_query(CONTACTS.c.id == bindparam("contact_id"))


class ContactRow(NamedTuple):  # the columns of BY_NUMBER, in order
    id: int
    display_name: str
    email: str | None
    tags: list[str]
    updated_at: datetime
    company: str | None
    e164: str | None


def decode_contact(row: Sequence[Any]) -> ContactRow:
    """What SQLAlchemy's types would make of a driver row: JSON tags, UTC-aware times."""
    cid, name, email, tags, updated, company, e164 = row
    return ContactRow(cid, name, email, json_list(tags) or [], utc(updated), company, e164)  # type: ignore[arg-type]


class NoteRow(NamedTuple):  # the columns of notes_of_numbers, in order
    id: int
    kind: str
    at: datetime
    summary: str | None
    direction: str | None
    operator: str | None
    duration_seconds: float | None
    outcome: str | None
    url: str | None
    call_id: str | None


class LoggedCallRow(NamedTuple):  # the columns of calls_of_numbers, in order
    call_id: str
    caller_number: str | None
    entered_at: datetime
    answered_by: str | None
    outcome: str | None
    talk_seconds: float
    wait_seconds: float
    recording: str | None


@functools.lru_cache(maxsize=32)
def notes_of_numbers(count: int) -> Select[Any]:
    """Interactions logged by number (`n0`...), newest first: one statement per count of numbers."""
    return (select(INTERACTIONS.c.id, INTERACTIONS.c.kind, INTERACTIONS.c.at, INTERACTIONS.c.summary,
                   INTERACTIONS.c.direction, INTERACTIONS.c.operator, INTERACTIONS.c.duration_seconds,
                   INTERACTIONS.c.outcome, INTERACTIONS.c.url, INTERACTIONS.c.call_id)
            .where(INTERACTIONS.c.number.in_([bindparam(f"n{i}") for i in range(count)]))
            .order_by(INTERACTIONS.c.at.desc(), INTERACTIONS.c.id.desc()).limit(bindparam("limit")))


@functools.lru_cache(maxsize=32)
def calls_of_numbers(count: int) -> Select[Any]:
    """Ended calls in the log from these raw caller numbers (`n0`...), newest first."""
    return (select(CALLS.c.call_id, CALLS.c.caller_number, CALLS.c.entered_at, CALLS.c.answered_by,
                   CALLS.c.outcome, CALLS.c.talk_seconds, CALLS.c.wait_seconds, CALLS.c.recording)
            .where(CALLS.c.caller_number.in_([bindparam(f"n{i}") for i in range(count)]),
                   CALLS.c.ended_at.is_not(None), CALLS.c.internal == false())
            .order_by(CALLS.c.entered_at.desc()).limit(bindparam("limit")))


def numbered(values: Sequence[str], limit: int) -> dict[str, Any]:
    return {**{f"n{i}": v for i, v in enumerate(values)}, "limit": limit}
