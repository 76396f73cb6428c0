"""The pop rules: which operator sees which card of which call, in which state. Pure: no I/O.

`CardBook` is fed the call-state model's domain events and what the CRM says about the
caller, and answers with the `Card`/`CardRemoved` messages to send. A card belongs to one
call and one operator extension (`card_id` = "<call_id>:<extension>"):

- ring -> a `ringing` card for that operator (ring-all: one per rung phone);
- answered -> the answering operator's card turns `live`; every other ringing card of
  the call is `withdrawn` ("answered by Anna Operator (101)");
- a phone that stops ringing (busy, no answer, caller gone) -> its card is `withdrawn`;
- hang-up -> `live` cards move to `after_call` (the operator finishes his note there);
- transfer -> the transferer's card moves to `after_call`; the next operator's card carries
  a `TransferView` with who transferred it and that operator's note (kept current).

A card is only ever sent to its own operator: his extension on the call's PBX (`Card.pbx`).
Withdrawn cards are sent once and forgotten; after-call cards stay until dismissed or
`after_call_seconds` pass. A card is re-sent
(same id, a higher version) only when something on it changed.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bridge.calls.events import (
    CallAnswered,
    CallEnded,
    CallRingEnded,
    CallRinging,
    CallTransferred,
    DomainEvent,
)
from bridge.calls.record import CallRecord, TransferKind
from crm_adapters.contract import Interaction
from crm_adapters.lookup import CallerCard
from screenpop.card_ids import card_id
from screenpop.card_views import (  # noqa: F401  # re-exported: the card's views live there
    UNKNOWN_NUMBER,
    OperatorNames,
    Transfers,
    caller_view,
    format_number,
    history_item,
    history_items,
    names_on,
    without_echoed_notes,
)
from screenpop.messages import Card, CardRemoved, CardState, HistoryItem, TransferView

Clock = Callable[[], float]
Outgoing = Card | CardRemoved
# A ring that ended without an answer (busy, no answer, the queue moved on): if a colleague
# answers within this many seconds (PBX clock), the card comes back saying who took it.
TAKEN_BY_WINDOW = 60.0
# Asterisk's DialStatus of a ring that ended without the operator answering, for people.
RING_END_REASONS = {
    "BUSY": "phone busy",
    "NOANSWER": "not answered",
    "CANCEL": "ringing stopped",
    "FORWARD": "forwarded",
    "CHANUNAVAIL": "phone unavailable",
    "CONGESTION": "phone unavailable",
    "DONTCALL": "refused",
    "TORTURE": "refused",
}


@dataclass
class _Slot:
    """One operator's card of one call, while it is shown."""

    operator: str
    state: CardState
    reason: str | None = None
    queue: str | None = None
    ring_started_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    transfer: tuple[TransferKind, str | None] | None = None  # (kind, from operator)
    after_call_since: float | None = None  # our clock, for the after-call timeout
    sent: Card | None = None  # what the operator has now


@dataclass
class _Call:
    record: CallRecord
    caller: CallerCard | None = None
    history: list[HistoryItem] = field(default_factory=list)
    slots: dict[str, _Slot] = field(default_factory=dict)  # extension -> card shown
    versions: dict[str, int] = field(default_factory=dict)  # survive a card's removal: only grow
    notes: dict[str, str] = field(default_factory=dict)  # extension -> his note on this call
    wrapups: dict[str, str] = field(default_factory=dict)  # extension -> his wrap-up code
    # extension -> (PBX time its ring ended unanswered, queue): told who took the call
    missed: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    pending_transfer: tuple[TransferKind, str | None, str | None] | None = None  # kind, from, to


def _contact_key(found: CallerCard | None) -> str | None:
    if found is None:
        return None
    return found.contact.id if found.contact is not None else found.e164


class CardBook:
    def __init__(self, *, default_region: str = "RU", after_call_seconds: float = 1800.0,
                 history_items: int = 10, operator_names: OperatorNames | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.default_region = default_region
        self.after_call_seconds = after_call_seconds
        self.history_items = history_items
        self.operator_names = operator_names  # extension -> display name (may be set later)
        self._clock = clock
        self._calls: dict[str, _Call] = {}
        # (since, n, call id, operator) of every after-call card by its start: `expire` looks at
        # the due ones only, not at every card of the last `after_call_seconds` (thousands, busy)
        self._closing: list[tuple[float, int, str, str]] = []
        self._closing_n = itertools.count()
        # (pbx, extension) -> queue member name seen on a ring
        self._member_names: dict[tuple[str, str], str] = {}

    # -- inputs -------------------------------------------------------------------------

    def on_event(self, event: DomainEvent) -> list[Outgoing]:
        call = self._calls.get(event.call_id)
        if call is None:
            if not event.call.live:  # nothing was shown for it: nothing to take back
                return []
            call = self._calls[event.call_id] = _Call(event.call)
        call.record = event.call
        if isinstance(event, CallRinging):  # remembered for "transferred to Clara Operator (103)"
            self._member_names.update(((call.record.pbx, r.operator), r.member_name)
                                      for r in event.call.rings if r.member_name)
        if isinstance(event, CallRinging):
            self._ring(call, event)
        elif isinstance(event, CallRingEnded):
            slot = call.slots.get(event.operator)
            if slot is not None and slot.state == "ringing":
                slot.state = "withdrawn"
                slot.reason = RING_END_REASONS.get(event.result, "ringing stopped")
                if call.record.answered_at is None:
                    call.missed[event.operator] = (event.at, slot.queue)
        elif isinstance(event, CallAnswered):
            self._answer(call, event)
        elif isinstance(event, CallTransferred):
            self._transfer(call, event)
        elif isinstance(event, CallEnded):
            self._end(call, event)
        out = self._refresh(call, list(call.slots))
        self._forget_if_done(call)
        return out

    def on_caller(self, call_id: str, found: CallerCard) -> list[Outgoing]:
        """What the CRM says about the caller (within the budget, later, or a new contact)."""
        call = self._calls.get(call_id)
        if call is None or found.number != call.record.caller_number:
            return []  # a call gone, or an answer about a number the call no longer has
        current = call.caller
        if current is not None and current.final and not found.final and current.lookup_id == found.lookup_id:
            return []  # the in-budget answer racing behind its own final update
        if _contact_key(current) != _contact_key(found):
            call.history = []
        call.caller = found
        return self._refresh(call, list(call.slots))

    def on_history(self, call_id: str, items: Iterable[Interaction],
                   contact_key: str | None, transfers: Transfers | None = None) -> list[Outgoing]:
        call = self._calls.get(call_id)
        if call is None or contact_key != _contact_key(call.caller):
            return []
        names = names_on(self.operator_names, call.record.pbx)
        call.history = history_items(items, self.history_items, names, transfers)
        return self._refresh(call, list(call.slots))

    def set_note(self, call_id: str, operator: str, text: str) -> list[Outgoing]:
        """An operator's note: on his card, and on the card of whoever he transferred it to."""
        call = self._calls.get(call_id)
        if call is None:
            return []
        call.notes[operator] = text
        touched = [op for op, s in call.slots.items()
                   if op == operator or (s.transfer is not None and s.transfer[1] == operator)]
        return self._refresh(call, touched)

    def dismiss(self, call_id: str, operator: str) -> CardRemoved | None:
        """The operator closes his after-call card (None when there is no such card)."""
        call = self._calls.get(call_id)
        slot = call.slots.get(operator) if call else None
        if call is None or slot is None or slot.state != "after_call":
            return None
        del call.slots[operator]
        self._forget_if_done(call)
        return CardRemoved(card_id=card_id(call_id, operator), pbx=call.record.pbx)

    def set_wrapup(self, call_id: str, operator: str, code: str) -> None:
        """The wrap-up code the operator chose as he closed his card (logged with the call)."""
        call = self._calls.get(call_id)
        if call is not None:
            call.wrapups[operator] = code

    def wrapups(self, call_id: str) -> dict[str, str]:
        call = self._calls.get(call_id)
        return dict(call.wrapups) if call else {}

    def expire(self) -> list[CardRemoved]:
        """After-call cards left open longer than `after_call_seconds` close themselves."""
        now = self._clock()
        out: list[CardRemoved] = []
        while self._closing and now - self._closing[0][0] >= self.after_call_seconds:
            since, _, call_id, operator = heapq.heappop(self._closing)
            call = self._calls.get(call_id)
            slot = call.slots.get(operator) if call is not None else None
            # Dismissed, answered again or after-call anew since: not this entry's to close.
            if call is None or slot is None or slot.state != "after_call" or slot.after_call_since != since:
                continue
            del call.slots[operator]
            out.append(CardRemoved(card_id=card_id(call_id, operator), pbx=call.record.pbx))
            self._forget_if_done(call)
        return out

    # -- what is shown ----------------------------------------------------------------------

    def cards_for(self, extensions: Iterable[str], pbx: str | None = None) -> list[Card]:
        """Every card these extensions (of that PBX; None: any) have now (for a browser that
        (re)connects)."""
        wanted = set(extensions)
        cards = [s.sent for c in self._calls.values() if pbx is None or c.record.pbx == pbx
                 for op, s in c.slots.items() if op in wanted and s.sent is not None]
        return sorted(cards, key=lambda c: (c.entered_at, c.card_id))

    def card(self, call_id: str, operator: str) -> Card | None:
        call = self._calls.get(call_id)
        slot = call.slots.get(operator) if call else None
        return slot.sent if slot else None

    def knows(self, call_id: str) -> bool:
        return call_id in self._calls

    def rang(self, call_id: str, operator: str) -> bool:
        """Did this call ring (or reach) this extension? Who may act on a call."""
        call = self._calls.get(call_id)
        return call is not None and (operator in call.record.rung or operator in call.slots)

    def record(self, call_id: str) -> CallRecord | None:
        call = self._calls.get(call_id)
        return call.record if call else None

    def caller(self, call_id: str) -> CallerCard | None:
        call = self._calls.get(call_id)
        return call.caller if call else None

    def notes(self, call_id: str) -> dict[str, str]:
        call = self._calls.get(call_id)
        return dict(call.notes) if call else {}

    def operator_label(self, call_id: str, operator: str | None) -> str:
        call = self._calls.get(call_id)
        return self._label(call.record, operator) if call else (operator or "?")

    @property
    def open_calls(self) -> int:
        """Calls the book still holds (live, or with cards left open)."""
        return len(self._calls)

    # -- rules --------------------------------------------------------------------------

    def _ring(self, call: _Call, ev: CallRinging) -> None:
        slot = call.slots.get(ev.operator)
        if slot is not None and slot.state in ("ringing", "live"):
            return  # the same ring seen twice, or a phone already talking
        call.slots.pop(ev.operator, None)  # rung again after his part ended: a new card state
        call.slots[ev.operator] = _Slot(ev.operator, "ringing", queue=ev.queue, ring_started_at=ev.at,
                                        transfer=self._transfer_into(call, ev.operator))

    def _transfer_into(self, call: _Call, operator: str) -> tuple[TransferKind, str | None] | None:
        pending = call.pending_transfer
        if pending is not None and pending[2] in (operator, None) and pending[1] != operator:
            call.pending_transfer = None
            return pending[0], pending[1]
        # A phone rung while a colleague talks to the caller: he is consulting before an
        # attended transfer (AttendedTransfer itself only comes when it completes).
        talking = [op for op, s in call.slots.items() if s.state == "live" and op != operator]
        return ("attended", talking[-1]) if talking else None

    def _answer(self, call: _Call, ev: CallAnswered) -> None:
        slot = call.slots.get(ev.operator)
        if slot is None or slot.state not in ("ringing", "live"):  # attached mid-call: no ring seen
            call.slots.pop(ev.operator, None)
            ring = next((r for r in reversed(call.record.rings) if r.operator == ev.operator), None)
            slot = call.slots[ev.operator] = _Slot(
                ev.operator, "live", queue=ring.queue if ring else None,
                ring_started_at=ring.started_at if ring else None,
                transfer=self._transfer_into(call, ev.operator))
        slot.state, slot.reason = "live", None
        slot.answered_at = slot.answered_at or ev.at
        who = self._label(call.record, ev.operator)
        for other in call.slots.values():
            if other.state == "ringing":
                other.state, other.reason = "withdrawn", f"answered by {who}"
        # Phones whose ring ended a moment before (the queue moved on, ring-all's cancels
        # ahead of the answer): their card comes back once, saying who took the call.
        for op, (ended, queue) in call.missed.items():
            if op != ev.operator and op not in call.slots and ev.at - ended <= TAKEN_BY_WINDOW:
                call.slots[op] = _Slot(op, "withdrawn", reason=f"answered by {who}", queue=queue)
        call.missed.clear()

    def _transfer(self, call: _Call, ev: CallTransferred) -> None:
        t = ev.transfer
        source = call.slots.get(t.from_operator or "")
        if source is not None and source.state == "live":
            self._after_call(call, source, t.at, f"transferred to {self._label(call.record, t.to_operator)}")
        target = call.slots.get(t.to_operator or "")
        if target is not None and target.state in ("ringing", "live"):
            target.transfer = (t.kind, t.from_operator)
        else:
            call.pending_transfer = (t.kind, t.from_operator, t.to_operator)

    def _end(self, call: _Call, ev: CallEnded) -> None:
        for slot in call.slots.values():
            if slot.state == "ringing":
                slot.state = "withdrawn"
                slot.reason = "caller hung up" if call.record.answered_at is None else "call ended"
            elif slot.state == "live":
                self._after_call(call, slot, ev.at, None)

    def _after_call(self, call: _Call, slot: _Slot, at: float, reason: str | None) -> None:
        slot.state, slot.reason, slot.ended_at = "after_call", reason, at
        slot.after_call_since = since = self._clock()
        heapq.heappush(self._closing, (since, next(self._closing_n), call.record.call_id, slot.operator))

    # -- rendering ----------------------------------------------------------------------------

    def _refresh(self, call: _Call, operators: list[str]) -> list[Outgoing]:
        """Send the cards that changed; a withdrawn card is sent once, then forgotten."""
        out: list[Outgoing] = []
        for op in operators:
            slot = call.slots.get(op)
            if slot is None:
                continue
            card = self._render(call, slot, call.versions.get(op, 0))
            if slot.sent is None or card != slot.sent:
                version = call.versions[op] = call.versions.get(op, 0) + 1
                slot.sent = card.model_copy(update={"version": version})
                out.append(slot.sent)
            if slot.state == "withdrawn":
                del call.slots[op]
        return out

    def _render(self, call: _Call, slot: _Slot, version: int) -> Card:
        record = call.record
        transfer = None
        if slot.transfer is not None:
            kind, source = slot.transfer
            transfer = TransferView(kind=kind, from_operator=source, from_name=self._name(record, source),
                                    note=call.notes.get(source or "") or None)
        return Card(
            card_id=card_id(record.call_id, slot.operator), version=version, call_id=record.call_id,
            pbx=record.pbx, operator=slot.operator, state=slot.state, state_reason=slot.reason,
            caller=caller_view(record, call.caller, self.default_region),
            queue=record.queue or slot.queue, dialed=record.dialed, entered_at=record.entered_at,
            ring_started_at=slot.ring_started_at, answered_at=slot.answered_at, ended_at=slot.ended_at,
            wait_seconds=record.wait_seconds, transfer=transfer, history=call.history,
            note=call.notes.get(slot.operator, ""),
            recording=record.live and any(r.stopped_at is None for r in record.recordings),
            closes_at=(slot.ended_at + self.after_call_seconds
                       if slot.state == "after_call" and slot.ended_at is not None else None),
        )

    def _name(self, record: CallRecord, operator: str | None) -> str | None:
        if operator is None:
            return None
        names = names_on(self.operator_names, record.pbx)  # his 101, not another PBX's
        if names is not None and (name := names(operator)):
            return name
        seen = self._member_names.get((record.pbx, operator))
        on_ring = (r.member_name for r in reversed(record.rings) if r.operator == operator and r.member_name)
        return next(on_ring, seen)

    def _label(self, record: CallRecord, operator: str | None) -> str:
        name = self._name(record, operator)
        if operator is None:
            return "another operator"
        return f"{name} ({operator})" if name else operator

    def _forget_if_done(self, call: _Call) -> None:
        if not call.record.live and not call.slots:
            self._calls.pop(call.record.call_id, None)


def superseded(messages: list[Outgoing], newer: list[Outgoing]) -> list[Outgoing]:
    """`messages`, with the cards that `newer` sends again left to `newer`."""
    if not newer:
        return messages
    again = {m.card_id for m in newer}
    return [*(m for m in messages if m.card_id not in again), *newer]
