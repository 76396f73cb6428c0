"""How a card shows its caller and his history: pure functions from the CRM's records to the
card's `CallerView` and `HistoryItem`s (no I/O)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, timedelta

import phonenumbers

from bridge.calls.record import CallRecord
from crm_adapters.contract import VIP_TAG, Interaction
from crm_adapters.lookup import CallerCard
from crm_adapters.phone_numbers import ANONYMOUS_IDS, is_anonymous, normalize
from screenpop.messages import CallerView, HistoryItem

OperatorNames = Callable[[str], str | None]
# call id -> its transfers as (kind, from operator, to operator), from the call log
Transfers = Mapping[str, Sequence[tuple[str, str | None, str | None]]]

UNKNOWN_NUMBER = "Unknown number"
CALL_LOG_SOURCE = "call_log"  # the bridge's own call log as a history source (its summary is no note)
_ECHO_WINDOW = timedelta(days=1)  # a note is saved during or shortly after its call


@functools.lru_cache(maxsize=4096)  # every card of a call, every update: the same few numbers
def format_number(raw: str | None, region: str = "RU") -> str:
    """"+7 495 123-45-67" for a phone number, the raw text for anything else (an extension)."""
    if raw is None or is_anonymous(raw):
        return UNKNOWN_NUMBER
    e164 = normalize(raw, region)
    if e164 is None:
        return raw.strip()
    return phonenumbers.format_number(phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def caller_view(record: CallRecord, found: CallerCard | None, region: str = "RU") -> CallerView:
    number = record.caller_number
    cid_name = (record.caller_name or "").strip()
    # The PBX's caller-id name is shown until a CRM knows better ("<unknown>" is no name).
    name = None if cid_name.casefold() in ANONYMOUS_IDS or cid_name == (number or "").strip() else cid_name
    if found is None:
        return CallerView(number=number, number_display=format_number(number, region), name=name,
                          lookup="anonymous" if is_anonymous(number) else "pending")
    contact = found.contact
    # The "VIP" tag is what makes the VIP badge: shown once, as the badge.
    tags = [t for t in contact.tags if t.strip().casefold() != VIP_TAG.casefold()] if contact else []
    return CallerView(
        number=number, number_display=format_number(number, region),
        name=contact.display_name if contact else name,
        company=contact.company if contact else None,
        tags=list(dict.fromkeys(tags)),
        vip=contact.vip if contact else False,
        crm_url=contact.url if contact else None,
        contact_id=contact.id if contact else None,
        contact_source=contact.source if contact else None,
        lookup=found.status, stale=found.stale,
    )


def names_on(names: OperatorNames | None, pbx: str) -> OperatorNames | None:
    """The names of one PBX's extensions: a directory that knows PBXes (one with `on(pbx)`,
    screenpop.app.OperatorDirectory) answers for that PBX; any other is taken as it is."""
    on = getattr(names, "on", None)
    return on(pbx) if callable(on) else names


def _who(operator: str | None, names: OperatorNames | None) -> str | None:
    if operator and names is not None and (name := names(operator)):
        return name  # people read "Anna Operator", not "101"
    return operator


def _talk(seconds: float | None) -> str:
    s = max(0, round(seconds or 0))
    return f"{s // 60}:{s % 60:02d}"


def history_item(item: Interaction, names: OperatorNames | None = None,
                 transfers: Sequence[tuple[str, str | None, str | None]] = ()) -> HistoryItem:
    """One row of the card's history. `note` holds notes only: a note's text, the note logged
    with a call; what happened (a call's outcome and talk, a ticket's subject) is `detail`."""
    note, detail = "", None
    if item.kind == "note":
        note = item.summary
        detail = f"wrap-up: {item.outcome}" if item.outcome else None
    elif item.kind == "call":
        if item.source != CALL_LOG_SOURCE:
            note = item.summary  # a call logged back with the operator's note
        parts = [item.outcome or "call"]
        if item.outcome == "answered" and item.duration_seconds:
            parts.append(f"talked {_talk(item.duration_seconds)}")
        detail = ", ".join(parts)
    else:
        detail = " · ".join(p for p in (item.summary, item.outcome) if p) or None
    moves = [f"{kind} transfer {_who(a, names) or '?'} → {_who(b, names) or '?'}" for kind, a, b in transfers]
    return HistoryItem(at=item.at.astimezone(UTC).isoformat(), kind=item.kind,
                       operator=_who(item.operator, names), outcome=item.outcome, summary=item.summary,
                       url=item.url, note=note, detail=detail,
                       transfers=moves, call_id=item.call_id)


def _note_lines(summary: str) -> set[str]:
    """The texts a logged call's note is made of: each line, and each line without the
    "Anna Operator (101): " a call with several operators' notes puts before it."""
    out: set[str] = set()
    for line in summary.splitlines():
        line = line.strip()
        if line:
            out.add(line)
            if ": " in line:
                out.add(line.split(": ", 1)[1].strip())
    return out


def without_echoed_notes(items: Iterable[Interaction]) -> list[Interaction]:
    """A note saved during a call is also logged with that call (its text, or one line of it
    when several operators wrote): show it once, on the call. A call known to two sources
    (same call id) shows once too, the first (the one with the note) kept."""
    items = list(items)
    best: dict[str, Interaction] = {}  # call id -> the entry shown: the one with the note
    for i in items:
        if i.kind == "call" and i.call_id:
            known = best.get(i.call_id)
            if known is None or (known.source == CALL_LOG_SOURCE and i.source != CALL_LOG_SOURCE):
                best[i.call_id] = i
    calls = [(i.at, _note_lines(i.summary)) for i in items
             if i.kind == "call" and i.summary and i.source != CALL_LOG_SOURCE]
    out: list[Interaction] = []
    for i in items:
        if i.kind == "call" and i.call_id and best.get(i.call_id) is not i:
            continue
        if i.kind == "note":
            text = i.summary.strip()
            if any(text in lines and at - timedelta(minutes=1) <= i.at <= at + _ECHO_WINDOW
                   for at, lines in calls):
                continue
        out.append(i)
    return out


def history_items(items: Iterable[Interaction], limit: int, names: OperatorNames | None = None,
                  transfers: Transfers | None = None) -> list[HistoryItem]:
    """The card's history: newest first in one order, without echoed notes or duplicate calls."""
    shown = sorted(without_echoed_notes(items), key=lambda i: i.at, reverse=True)[:limit]
    transfers = transfers or {}
    return [history_item(i, names, transfers.get(i.call_id or "", ())) for i in shown]
